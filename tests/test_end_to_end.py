"""The whole path over real servers: replies in Dovecot, `mailer once`, answers at an SMTP sink."""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pytest
from icalendar import Calendar
from sqlalchemy import select

from mailer import store
from mailer.config import Imap, Organiser, Paths, Settings, Staff, Store
from mailer.daemon import PassReport, run_once
from tests.mailgen import INBOX, wave
from tests.servers.imap import ImapServer
from tests.servers.smtp import SmtpSink, smtp_settings

ROOT = Path(__file__).resolve().parent.parent
# After the invitations went out (3 June 2020), before the first webinar (24 June).
NOW = datetime(2020, 6, 20, 12, 0, tzinfo=timezone.utc)


def settings_for(tmp_path: Path, imap: Imap, sink: SmtpSink) -> Settings:
    return Settings(
        organiser=Organiser(name="Cybercrime Programme Office", address=INBOX,
                            staff_address="staff@secretariat.example"),
        imap=imap, smtp=smtp_settings(sink), store=Store(url=f"sqlite:///{tmp_path}/m.db"),
        paths=Paths(schedules=ROOT / "schedules", templates=ROOT / "templates", packs=ROOT),
        staff=Staff(digest=False))   # the daily digest has tests of its own (test_staff_digest)


def append_all(server: ImapServer, messages: list[bytes]) -> None:
    client = server.client()
    try:
        for raw in messages:
            client.append("INBOX", raw)
    finally:
        client.logout()


def parsed(sink: SmtpSink) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(m.content, policy=email.policy.default)
            for m in sink.messages]


def test_the_demo_replies_become_registrations_and_answers(
        tmp_path: Path, dovecot: ImapServer, smtp_sink: SmtpSink) -> None:
    """Thirteen realistic replies become the right registrations and the right answers."""
    demo = sorted((ROOT / "mailer" / "demo_data").glob("*.eml"))
    append_all(dovecot, [p.read_bytes() for p in demo])
    settings = settings_for(tmp_path, dovecot.settings(), smtp_sink)
    report = asyncio.run(run_once(settings, now=NOW))
    assert report.read == 13 and report.quarantined == 0
    st = store.Store(settings.store.url)
    with st.transaction() as session:
        status = {(r.event_id, r.email): (r.country, r.status)
                  for r in store.all_registrations(session)}
    assert status[("africa-fr", "awa.diop@justice.gouv.sn.example")] == ("SN", "confirmed")
    ci = [s for (e, _), (c, s) in status.items() if e == "africa-fr" and c == "CI"]
    # Four delegates, a fifth waiting, then one cancels: the fifth is promoted.
    assert Counter(ci) == Counter({"confirmed": 4, "cancelled": 1})
    assert status[("africa-fr", "i.ouattara@justice.gouv.ci.example")] == ("CI", "confirmed")
    assert status[("africa-en", "pierre.martin@diplomatie.gouv.fr.example")] == ("FR", "review")
    assert status[("lac-en", "k.ramlogan@ag.gov.tt.example")] == ("TT", "confirmed")
    sent = Counter((m["To"].addresses[0].addr_spec, m["Subject"]) for m in parsed(smtp_sink))
    to = Counter(addr for addr, _ in sent.elements())
    assert to["j.smith@foreign.gov.jm.example"] == 0          # the out-of-office
    assert to["MAILER-DAEMON@mx.secretariat.example".lower()] == 0
    assert to["focal.point@mofa.gov.gh.example"] == 0          # bounced: suppressed
    assert to["staff@secretariat.example"] == 1                # the question, forwarded
    assert to["i.ouattara@justice.gouv.ci.example"] == 2       # waiting list, then promotion
    st.close()


def test_a_wave_of_replies_ends_with_exactly_the_right_registrations(
        tmp_path: Path, dovecot: ImapServer, smtp_sink: SmtpSink) -> None:
    """220 generated replies: the store matches the rules, each seat gets one invitation."""
    generated = wave(220, seed=11)
    append_all(dovecot, generated.messages)
    settings = settings_for(tmp_path, dovecot.settings(), smtp_sink)
    report = asyncio.run(run_once(settings, now=NOW))
    assert report.read == 220 and report.quarantined == 0

    st = store.Store(settings.store.url)
    with st.transaction() as session:
        stored = {(r.event_id, r.email): r.status for r in store.all_registrations(session)}
        failed = session.scalars(select(store.OutboxRow).where(
            store.OutboxRow.status == "failed")).all()
        # Answers still queued when their person cancelled in a later reply of the wave.
        held_back = {(r.event_id, r.recipient) for r in session.scalars(
            select(store.OutboxRow).where(store.OutboxRow.status == "missed"))}
    assert stored == generated.oracle.status
    assert failed == []
    for event in {e for e, _ in stored}:
        per_country = Counter(generated.oracle.country[k] for k, s in stored.items()
                              if k[0] == event and s == "confirmed")
        assert max(per_country.values()) <= 4

    messages = parsed(smtp_sink)
    calendar_invites: Counter[tuple[str, str]] = Counter()
    for msg in messages:
        to = msg["To"].addresses[0].addr_spec.lower()
        assert to not in generated.never_answered and to not in generated.bounced
        assert msg["Auto-Submitted"] in ("auto-replied", "auto-generated")
        for part in msg.walk():
            if part.get_content_type() == "text/calendar":
                cal = Calendar.from_ical(part.get_content())
                assert cal["METHOD"] == part.get_param("method").upper()
                if cal["METHOD"] == "CANCEL":       # a withdrawal confirmed
                    continue
                (vevent,) = cal.walk("VEVENT")
                event_id = msg["Subject"].rsplit("[", 1)[1].rstrip("]")
                assert vevent["ATTENDEE"].lower() == f"mailto:{to}"
                calendar_invites[(event_id, to)] += 1
    # Everyone who ever held a seat got exactly one invitation (acknowledgement or promotion),
    # unless they had cancelled before it went: then it was held back, never sent.
    assert set(calendar_invites) | held_back == generated.oracle.ever_confirmed
    assert not set(calendar_invites) & held_back
    assert all(stored[key] != "confirmed" for key in held_back)
    assert max(calendar_invites.values()) == 1

    before = len(smtp_sink.messages)
    again = asyncio.run(run_once(settings, now=NOW))
    assert again.drain.sent == 0 and len(smtp_sink.messages) == before
    st.close()


@pytest.mark.parametrize("server_name", ["pymap"])
def test_pymap_inbox_works_end_to_end(tmp_path: Path, pymap: ImapServer, smtp_sink: SmtpSink,
                                      server_name: str) -> None:
    """The same pass works against pymap, whose flags cannot be stored: Message-IDs dedup."""
    demo = sorted((ROOT / "mailer" / "demo_data").glob("0[1-3]*.eml"))
    append_all(pymap, [p.read_bytes() for p in demo])
    settings = settings_for(tmp_path, pymap.settings(), smtp_sink)
    first = asyncio.run(run_once(settings, now=NOW))
    second = asyncio.run(run_once(settings, now=NOW))
    assert first.handled == 3 and second.handled == 0
    assert len(smtp_sink.messages) == first.drain.sent > 0 and second.drain.sent == 0


def test_a_message_whose_handling_fails_is_read_again_next_pass(
        tmp_path: Path, dovecot: ImapServer, smtp_sink: SmtpSink,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A reply that failed stays unflagged and is handled on the next pass; the others are not."""
    from mailer import handling

    demo = sorted((ROOT / "mailer" / "demo_data").glob("0[12]*.eml"))
    append_all(dovecot, [p.read_bytes() for p in demo])
    settings = settings_for(tmp_path, dovecot.settings(), smtp_sink)
    real = handling.decide
    broken = {"awa.diop@justice.gouv.sn.example"}

    def flaky(intent, *args, **kwargs):
        if intent.sender in broken:
            raise RuntimeError("database hiccup")
        return real(intent, *args, **kwargs)

    monkeypatch.setattr(handling, "decide", flaky)
    first = asyncio.run(run_once(settings, now=NOW))
    assert (first.failed, first.handled) == (1, 1)
    broken.clear()
    second = asyncio.run(run_once(settings, now=NOW))
    assert (second.read, second.handled, second.failed) == (1, 1, 0)
    acks = [m for m in parsed(smtp_sink) if m["X-Mailer-Kind"] == "acknowledgement"]
    assert sorted(m["To"].addresses[0].addr_spec for m in acks) == [
        "awa.diop@justice.gouv.sn.example", "mc.reyes@dfa.gov.ph.example"]


def test_answers_go_out_while_the_rest_of_the_wave_is_read(
        tmp_path: Path, dovecot: ImapServer, smtp_sink: SmtpSink,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Fetched in batches of 3, the first answers reach the server before the last reply is read."""
    from mailer import daemon

    append_all(dovecot, wave(24).messages)
    settings = settings_for(tmp_path, dovecot.settings(batch_size=3), smtp_sink)
    at_sink_when_handled: list[int] = []
    real_handle = daemon.handle_group

    def handle_and_note(st: object, catalog: object, arrivals: list[object],
                        policy: object) -> object:
        at_sink_when_handled.extend([len(smtp_sink.messages)] * len(arrivals))
        return real_handle(st, catalog, arrivals, policy)

    monkeypatch.setattr(daemon, "handle_group", handle_and_note)
    report = asyncio.run(run_once(settings, now=NOW))
    assert report.read == len(at_sink_when_handled) and report.drain.failed == 0
    assert at_sink_when_handled[0] == 0 and at_sink_when_handled[-1] > 0
    # Answers sent during the read and by the final drain add up to everything sent.
    assert report.drain.sent == len(smtp_sink.messages)


class Died(BaseException):
    """Stands for the process dying mid-message (a crash, not an error the loop catches)."""


def after_three_deaths(settings: Settings, poison: str, monkeypatch: pytest.MonkeyPatch,
                       now: datetime = NOW) -> PassReport:
    """Three passes die handling the message ``poison`` (its Message-ID); the report of the
    fourth."""
    from mailer import handling

    real_settle = handling._settle

    def dies_on_the_poison(session: object, catalog: object, arrival: handling.Arrival,
                           *args: object) -> object:
        if arrival.message_id == poison:
            raise Died
        return real_settle(session, catalog, arrival, *args)

    monkeypatch.setattr(handling, "_settle", dies_on_the_poison)
    for _ in range(3):
        with pytest.raises(Died):
            asyncio.run(run_once(settings, now=now))
    return asyncio.run(run_once(settings, now=now))


def test_a_message_that_kills_the_pass_is_quarantined_after_three_deaths(
        tmp_path: Path, dovecot: ImapServer, smtp_sink: SmtpSink,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Three passes die on one reply; the fourth sets it aside and answers the others once."""

    messages = wave(12).messages[:6]
    poison = email.message_from_bytes(messages[2])["Message-ID"]
    append_all(dovecot, messages)
    settings = settings_for(tmp_path, dovecot.settings(quarantine_folder="Quarantine"),
                            smtp_sink)
    report = after_three_deaths(settings, poison, monkeypatch)
    assert report.quarantined == 1 and report.failed == 0
    [set_aside] = [o for o in report.outcomes if o.outcome == "quarantined"]
    assert set_aside.message_id == poison
    assert set_aside.reason == "the mailer stopped 3 times while handling it"
    with dovecot.client() as client:
        client.select_folder("Quarantine", readonly=True)
        assert len(client.search("ALL")) == 1
    # The first pass died with the whole group in hand (nothing of it committed); the next
    # took each claimed reply alone: those before the poison were handled in the second
    # pass, those after it in the last; no message went twice for the passes that died.
    sent = Counter(m["Message-ID"] for m in parsed(smtp_sink))
    assert sent and max(sent.values()) == 1
    acknowledged = {m["To"].addresses[0].addr_spec for m in parsed(smtp_sink)
                    if m["X-Mailer-Kind"] == "acknowledgement"}
    assert len(acknowledged) >= 4
    st = store.Store(settings.store.url)
    with st.transaction() as session:
        outcomes = Counter(session.scalars(select(store.Inbound.outcome)))
    st.close()
    assert outcomes["quarantined"] == 1 and outcomes["claimed"] == 0
    assert outcomes["handled"] + outcomes["duplicate"] == 5
