"""Limits that protect staff, and data protection in the logs: forwarded questions count
against the sender's daily ration; logs name participants by REF, except a delivery failure,
where the operator needs the address."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import select
from structlog.testing import capture_logs

from mailer import store
from mailer.config import Settings
from mailer.domain import Kind
from mailer.handling import Policy, handle
from mailer.outbox import drain
from mailer.schedule import Catalog
from mailer.smtp import Sender
from mailer.staff.digest import questions
from tests.builders import make_catalog
from tests.servers.smtp import SmtpSink, smtp_settings
from tests.staffkit import MOMENT, question, registration_reply

POLICY = Policy(inbox_address="webinars@example.org", staff_address="staff@example.org",
                domain="example.org", answers_per_day=3)
NOSY = "nosy@example.net"


def kinds_to(st: store.Store, address: str) -> list[str]:
    with st.transaction() as session:
        return [r.kind for r in session.scalars(select(store.OutboxRow).order_by(
            store.OutboxRow.id)) if r.recipient == address]


def test_forwarded_questions_count_against_the_senders_ration(st: store.Store,
                                                              tmp_path: Path) -> None:
    """With three automatic answers a day, a sender's fourth question is not forwarded (it is
    kept, and says why), and questions and answers share one ration."""
    catalog = make_catalog(tmp_path)
    outcomes = [handle(st, catalog, question(NOSY, mid=f"q{n}", text=f"Question number {n}?"),
                       now=MOMENT, policy=POLICY) for n in range(4)]
    assert kinds_to(st, "staff@example.org") == ["staff_question"] * 3
    assert "not forwarded: the sender's daily ration is used up" in outcomes[3].summary
    with st.transaction() as session:
        (kept,) = session.scalars(select(store.Inbound).where(
            store.Inbound.message_id == "<q3@client.example>"))
    assert kept.intent == "question" and "not forwarded" in kept.reason
    # Held back, but staff still see it, in `mailer review` and the digest.
    with st.transaction() as session:
        asked = questions(session, MOMENT.replace(hour=0))
    assert [(q["sender"], q["status"]) for q in asked] == [
        (NOSY, "pending")] * 3 + [(NOSY, "held")]
    assert f"M{kept.id}" in asked[-1]["subject"]
    # A day later the ration is back.
    later = handle(st, catalog, question(NOSY, mid="q9"), now=MOMENT.replace(day=22),
                   policy=POLICY)
    assert later.answers == 1
    # Two clarifications answered, then a question: the third automatic thing of the day.
    other = "other@example.net"
    for n in range(2):
        handle(st, catalog, f"From: {other}\r\nTo: webinars@example.org\r\nSubject: hm\r\n"
               f"Message-ID: <c{n}@x>\r\n\r\nxyzzy\r\n".encode(), now=MOMENT, policy=POLICY)
    handle(st, catalog, question(other, mid="o1"), now=MOMENT, policy=POLICY)
    handle(st, catalog, question(other, mid="o2"), now=MOMENT, policy=POLICY)
    assert kinds_to(st, other) == ["clarification", "clarification"]
    with st.transaction() as session:
        forwarded = [r.context["sender"] for r in session.scalars(select(store.OutboxRow).where(
            store.OutboxRow.kind == str(Kind.STAFF_QUESTION)))]
    assert forwarded.count(other) == 1


def test_logs_name_participants_by_ref_and_a_delivery_failure_by_address(
        st: store.Store, tmp_path: Path, smtp_sink: SmtpSink) -> None:
    """Handling a registration logs R1, never the address; a 550 at delivery logs the
    address, which the operator needs to act."""
    catalog: Catalog = make_catalog(tmp_path)
    awa = "awa.diop@justice.gouv.sn"
    with capture_logs() as logs:
        handle(st, catalog, registration_reply(awa, "Awa Diop", "Senegal", mid="a1"),
               now=MOMENT, policy=POLICY)
        handle(st, catalog, registration_reply(awa, "Awa Diop", "Senegal", mid="a2"),
               now=MOMENT, policy=POLICY)
    with st.transaction() as session:
        (reg,) = store.all_registrations(session)
    handled = [e for e in logs if e["event"] == "message handled"]
    assert [e["outcome"] for e in handled] == [f"R{reg.id} (SN) confirmed",
                                               f"R{reg.id} already registered"]
    assert awa not in repr(logs) and "Awa Diop" not in repr(logs)

    smtp_sink.fail_rcpt[awa] = (550, "5.1.1 no such user")
    settings = Settings(smtp=smtp_settings(smtp_sink))

    async def send() -> None:
        from mailer.compose import Composer

        composer = Composer(settings.model_copy(update={"paths": settings.paths.model_copy(
            update={"templates": Path(__file__).parent.parent / "templates"})}), catalog)
        async with Sender(settings.smtp, envelope_from="webinars@example.org") as sender:
            await drain(st, composer.compose, sender, catalog=catalog, settings=settings,
                        now=MOMENT)

    with capture_logs() as logs:
        asyncio.run(send())
    failures = [e for e in logs if e["event"] == "smtp.send_failed"]
    assert failures and failures[0]["recipient"] == awa
