"""Handling inbound mail on real SQLite and PostgreSQL: one transaction, no double handling."""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import event, func, select

from mailer import handling, store
from mailer.domain import IntentKind, Kind, Status
from mailer.handling import (
    Arrival,
    Policy,
    groups,
    handle,
    handle_group,
    handle_one,
    message_key,
)
from mailer.schedule import Catalog, read_catalog
from tests.builders import make_catalog
from tests.conftest import ROOT
from tests.mailgen import INBOX, wave

NOW = datetime(2020, 7, 1, 12, 0, tzinfo=timezone.utc)
POLICY = Policy(inbox_address="webinars@example.org", staff_address="staff@example.org",
                domain="example.org", answers_per_day=3)


def reply(sender: str, name: str, country: str, *, mid: str, subject: str = "Re: [africa-fr]",
          extra: str = "") -> bytes:
    return (f"From: {name} <{sender}>\r\nTo: webinars+africa-fr@example.org\r\n"
            f"Subject: {subject}\r\nMessage-ID: <{mid}@client.example>\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n\r\n"
            f"Name: {name}\r\nCountry: {country}\r\nPosition: Prosecutor\r\n"
            f"Organisation: Ministry of Justice\r\n{extra}").encode()


def cancellation(sender: str, mid: str) -> bytes:
    return (f"From: {sender}\r\nTo: webinars+africa-fr@example.org\r\n"
            f"Subject: Re: [africa-fr]\r\nMessage-ID: <{mid}@x>\r\n\r\n"
            "Please cancel my registration.\r\n").encode()


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    return make_catalog(tmp_path)


def count(st: store.Store, model: type, *where: object) -> int:
    with st.transaction() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where)) or 0


def test_a_registration_is_stored_with_its_acknowledgement(st: store.Store,
                                                           catalog: Catalog) -> None:
    """A readable reply becomes a confirmed registration and a queued acknowledgement."""
    result = handle(st, catalog, reply("awa@justice.sn", "Awa Diop", "Senegal", mid="a1"),
                    now=NOW, policy=POLICY)
    assert result.outcome == "handled"
    with st.transaction() as session:
        (reg,) = store.registrations_of(session, "africa-fr")
        (row,) = session.scalars(select(store.OutboxRow))
    assert (reg.email, reg.country, reg.status) == ("awa@justice.sn", "SN", "confirmed")
    assert (row.kind, row.recipient, row.status) == ("acknowledgement", "awa@justice.sn",
                                                     "pending")
    assert row.in_reply_to == "<a1@client.example>"


def test_the_same_message_is_never_handled_twice(st: store.Store, catalog: Catalog) -> None:
    """Handling a message again (same Message-ID) changes nothing."""
    raw = reply("awa@justice.sn", "Awa Diop", "SN", mid="a1")
    handle(st, catalog, raw, now=NOW, policy=POLICY)
    again = handle(st, catalog, raw, now=NOW, policy=POLICY)
    assert again.outcome == "duplicate"
    assert count(st, store.OutboxRow) == 1 and count(st, store.Registration) == 1


def test_a_crash_before_commit_leaves_nothing_and_the_retry_succeeds(
        st: store.Store, catalog: Catalog, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure inside the transaction rolls everything back; handling it again stores it."""
    raw = reply("awa@justice.sn", "Awa Diop", "SN", mid="a1")
    real = store.enqueue

    def crash(*args: object, **kwargs: object) -> int:
        raise RuntimeError("power cut")

    monkeypatch.setattr(store, "enqueue", crash)
    assert handle(st, catalog, raw, now=NOW, policy=POLICY).outcome == "failed"
    assert count(st, store.Registration) == 0 and count(st, store.OutboxRow) == 0
    monkeypatch.setattr(store, "enqueue", real)
    assert handle(st, catalog, raw, now=NOW, policy=POLICY).outcome == "handled"
    assert count(st, store.Registration) == 1 and count(st, store.OutboxRow) == 1


def test_the_country_limit_holds_under_concurrent_registrations(st: store.Store,
                                                                catalog: Catalog) -> None:
    """Twelve people of one country registering at once get exactly four seats."""
    barrier = threading.Barrier(12)
    errors: list[BaseException] = []

    def register(i: int) -> None:
        try:
            barrier.wait()
            handle(st, catalog, reply(f"p{i}@gouv.sn", f"Person {i}", "SN", mid=f"c{i}"),
                   now=NOW, policy=POLICY)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=register, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert count(st, store.Registration, store.Registration.status == "confirmed") == 4
    assert count(st, store.Registration, store.Registration.status == "waiting") == 8
    assert count(st, store.OutboxRow, store.OutboxRow.kind == "acknowledgement") == 4


def test_a_cancellation_promotes_once(st: store.Store, catalog: Catalog) -> None:
    """Cancelling a seat promotes the first waiting person; a repeated cancellation does not."""
    for i in range(5):
        handle(st, catalog, reply(f"p{i}@gouv.sn", f"Person {i}", "SN", mid=f"r{i}"),
               now=NOW.replace(minute=i), policy=POLICY)
    handle(st, catalog, cancellation("p0@gouv.sn", "cancel1"), now=NOW.replace(hour=13),
           policy=POLICY)
    handle(st, catalog, cancellation("p0@gouv.sn", "cancel2"), now=NOW.replace(hour=14),
           policy=POLICY)
    with st.transaction() as session:
        status = {r.email: r.status for r in store.registrations_of(session, "africa-fr")}
        promotions = session.scalars(select(store.OutboxRow.recipient).where(
            store.OutboxRow.kind == str(Kind.PROMOTION))).all()
    assert status["p0@gouv.sn"] == Status.CANCELLED and status["p4@gouv.sn"] == Status.CONFIRMED
    assert promotions == ["p4@gouv.sn"]


def test_a_sender_gets_a_few_automatic_answers_a_day_at_most(st: store.Store,
                                                             catalog: Catalog) -> None:
    """Ten unreadable messages from one sender get three clarification requests, not ten."""
    for i in range(10):
        raw = (f"From: loop@x.org\r\nTo: webinars@example.org\r\nSubject: hello\r\n"
               f"Message-ID: <u{i}@x>\r\n\r\n\r\n").encode()
        assert handle(st, catalog, raw, now=NOW, policy=POLICY).outcome == "handled"
    assert count(st, store.OutboxRow, store.OutboxRow.recipient == "loop@x.org") == 3


def test_huge_mail_is_quarantined_and_remembered(st: store.Store, catalog: Catalog) -> None:
    """A message over the size limit is quarantined with a reason, once."""
    small = Policy(**{**POLICY.__dict__, "max_bytes": 10_000})
    raw = reply("big@x.org", "Big", "SN", mid="big", extra="x" * 20_000)
    result = handle(st, catalog, raw, now=NOW, policy=small)
    assert result.outcome == "quarantined" and "too large" in result.reason
    assert handle(st, catalog, raw, now=NOW, policy=small).outcome == "duplicate"
    assert count(st, store.Registration) == 0


def test_bounces_suppress_and_are_not_answered(st: store.Store, catalog: Catalog,
                                              corpus: Path) -> None:
    """A real bounce from the corpus suppresses the failed address and is not answered."""
    raw = (corpus / "bounces" / "postfix_01.txt").read_bytes()
    result = handle(st, catalog, raw, now=NOW, policy=POLICY)
    assert result.intent is not None and result.intent.kind == "bounce"
    assert count(st, store.OutboxRow) == 0
    assert count(st, store.Suppression) >= 1


def test_a_full_country_puts_newcomers_on_the_waiting_list_behind_a_long_queue(
        st: store.Store, catalog: Catalog) -> None:
    """With the seats taken and people waiting, the next one waits too; a returning one is known."""
    for i in range(7):
        handle(st, catalog, reply(f"p{i}@gouv.sn", f"Person {i}", "SN", mid=f"w{i}"),
               now=NOW.replace(minute=i), policy=POLICY)
    again = handle(st, catalog, reply("p5@gouv.sn", "Person 5", "SN", mid="w5-again"),
                   now=NOW.replace(minute=30), policy=POLICY)
    late = handle(st, catalog, reply("p7@gouv.sn", "Person 7", "SN", mid="w7"),
                  now=NOW.replace(minute=31), policy=POLICY)
    other = handle(st, catalog, reply("q@gouv.ci", "Other Country", "CI", mid="c1"),
                   now=NOW.replace(minute=32), policy=POLICY)
    assert again.decision is not None and "already registered" in again.decision.summary
    assert late.decision is not None and late.decision.summary == "p7@gouv.sn (SN) waiting"
    assert other.decision is not None and other.decision.summary == "q@gouv.ci (CI) confirmed"
    assert count(st, store.Registration, store.Registration.status == "confirmed") == 5
    assert count(st, store.Registration, store.Registration.status == "waiting") == 4


def test_a_cancelled_person_registering_again_queues_anew(st: store.Store,
                                                          catalog: Catalog) -> None:
    """Someone who cancelled and registers again into a full country joins the waiting list."""
    for i in range(4):
        handle(st, catalog, reply(f"p{i}@gouv.sn", f"Person {i}", "SN", mid=f"s{i}"),
               now=NOW.replace(minute=i), policy=POLICY)
    handle(st, catalog, cancellation("p0@gouv.sn", "cancel-p0"), now=NOW.replace(minute=10),
           policy=POLICY)
    handle(st, catalog, reply("p9@gouv.sn", "Person 9", "SN", mid="s9"),
           now=NOW.replace(minute=11), policy=POLICY)          # takes the freed seat
    back = handle(st, catalog, reply("p0@gouv.sn", "Person 0", "SN", mid="s0-back"),
                  now=NOW.replace(minute=12), policy=POLICY)
    assert back.decision is not None and back.decision.summary == "p0@gouv.sn (SN) waiting"
    with st.transaction() as session:
        status = {r.email: r.status for r in store.registrations_of(session, "africa-fr")}
    assert status == {"p0@gouv.sn": "waiting", "p1@gouv.sn": "confirmed",
                      "p2@gouv.sn": "confirmed", "p3@gouv.sn": "confirmed",
                      "p9@gouv.sn": "confirmed"}


def test_a_reply_correcting_the_country_moves_the_registration(st: store.Store,
                                                                tmp_path: Path) -> None:
    """ "Je suis du Ghana et non du Sénégal", answered to the acknowledgement: the registration
    takes a Ghana seat, its Senegal seat goes to the first Senegalese waiting, and both are
    told; the corrected person's name and address stay."""
    catalog = make_catalog(tmp_path, limit=1)
    handle(st, catalog, reply("ama.owusu@gmail.com", "Ama Owusu", "Sénégal", mid="ama"),
           now=NOW, policy=POLICY)
    handle(st, catalog, reply("bea@gouv.sn", "Bea Ndiaye", "Sénégal", mid="bea"),
           now=NOW.replace(minute=1), policy=POLICY)
    correction = ("From: Ama Owusu <ama.owusu@gmail.com>\r\nTo: webinars@example.org\r\n"
                  "Subject: Re: Inscription confirmée : Webinaire Afrique [africa-fr]\r\n"
                  "Message-ID: <fix@gmail.example>\r\n"
                  "Content-Type: text/plain; charset=utf-8\r\n\r\n"
                  "Bonjour, petite correction : je suis du Ghana et non du Sénégal. Merci.\r\n"
                  ).encode()
    fixed = handle(st, catalog, correction, now=NOW.replace(minute=5), policy=POLICY)
    assert fixed.intent is not None and fixed.intent.kind is IntentKind.REGISTRATION
    with st.transaction() as session:
        rows = {r.email: (r.name, r.country, r.status)
                for r in store.registrations_of(session, "africa-fr")}
        answers = [(r.kind, r.recipient) for r in session.scalars(
            select(store.OutboxRow).order_by(store.OutboxRow.id))]
    assert rows == {"ama.owusu@gmail.com": ("Ama Owusu", "GH", "confirmed"),
                    "bea@gouv.sn": ("Bea Ndiaye", "SN", "confirmed")}
    assert answers == [("acknowledgement", "ama.owusu@gmail.com"),
                       ("waiting_list", "bea@gouv.sn"),
                       ("acknowledgement", "ama.owusu@gmail.com"),
                       ("promotion", "bea@gouv.sn")]


def test_only_the_person_or_who_registered_them_corrects_a_registration(
        st: store.Store, catalog: Catalog) -> None:
    """A form from another address naming a registered person's address ("Email: ama...,
    Country: Ghana") moves, renames and flags nothing of theirs; the focal point who
    registered a delegate may correct the delegate, as the delegate may."""
    def form(sender: str, mid: str, *fields: str) -> bytes:
        return (f"From: {sender}\r\nTo: webinars+africa-fr@example.org\r\n"
                f"Subject: Re: [africa-fr]\r\nMessage-ID: <{mid}@client.example>\r\n"
                "Content-Type: text/plain; charset=utf-8\r\n\r\n"
                + "".join(f"{field}\r\n" for field in fields)).encode()

    def stored() -> dict[str, tuple[str, str | None, str, str, bool]]:
        with st.transaction() as session:
            return {r.email: (r.name, r.country, r.position, r.status,
                              r.certificate_requested)
                    for r in store.registrations_of(session, "africa-fr")}

    handle(st, catalog, reply("ama.owusu@gmail.com", "Ama Owusu", "Senegal", mid="ama"),
           now=NOW, policy=POLICY)
    handle(st, catalog, form("focal@gouv.sn", "focal", "Name: Moussa Sow",
                             "Email: moussa@gouv.sn", "Country: Senegal"),
           now=NOW.replace(minute=1), policy=POLICY)
    before = stored()
    for n, (name, address) in enumerate([("Ama Owusu", "ama.owusu@gmail.com"),
                                         ("Moussa Ndiaye Sow", "moussa@gouv.sn")]):
        handle(st, catalog, form("mallory@elsewhere.example", f"m{n}", f"Name: {name}",
                                 f"Email: {address}", "Country: Ghana", "Position: Clerk",
                                 "I would also like a certificate."),
               now=NOW.replace(minute=2 + n), policy=POLICY)
    assert stored() == before
    handle(st, catalog, form("focal@gouv.sn", "fix", "Name: Moussa Sow",
                             "Email: moussa@gouv.sn", "Country: Ghana"),
           now=NOW.replace(minute=5), policy=POLICY)
    assert stored()["moussa@gouv.sn"][1] == "GH"


def test_a_seat_freed_by_a_correction_goes_to_the_first_waiting_not_to_a_newcomer(
        st: store.Store, tmp_path: Path) -> None:
    """A focal point's reply moves their delegate from Senegal to Ghana and registers a new
    Senegalese: the freed Senegal seat goes to the Senegalese waiting first (promoted once),
    the newcomer waits behind, and Senegal keeps its two seats."""
    catalog = make_catalog(tmp_path, limit=2)

    def form(sender: str, mid: str, *people: tuple[str, str, str]) -> bytes:
        blocks = "\r\n".join(f"Name: {name}\r\nEmail: {address}\r\nCountry: {country}\r\n"
                              for name, address, country in people)
        return (f"From: {sender}\r\nTo: webinars+africa-fr@example.org\r\n"
                f"Subject: Re: [africa-fr]\r\nMessage-ID: <{mid}@client.example>\r\n"
                f"Content-Type: text/plain; charset=utf-8\r\n\r\n{blocks}").encode()

    handle(st, catalog, form("focal@gouv.sn", "f1", ("Awa Diop", "awa@gouv.sn", "Senegal")),
           now=NOW, policy=POLICY)
    for minute, (address, name) in enumerate([("ousmane@gouv.sn", "Ousmane Ba"),
                                              ("bea@gouv.sn", "Bea Ndiaye")], start=1):
        handle(st, catalog, reply(address, name, "Senegal", mid=name[:3]),
               now=NOW.replace(minute=minute), policy=POLICY)
    handle(st, catalog, form("focal@gouv.sn", "f2", ("Awa Diop", "awa@gouv.sn", "Ghana"),
                             ("Cheikh Fall", "cheikh@gouv.sn", "Senegal")),
           now=NOW.replace(minute=3), policy=POLICY)
    with st.transaction() as session:
        rows = {r.email: (r.country, r.status)
                for r in store.registrations_of(session, "africa-fr")}
        promotions = [r.recipient for r in session.scalars(select(store.OutboxRow).where(
            store.OutboxRow.kind == "promotion"))]
    assert rows == {"awa@gouv.sn": ("GH", "confirmed"), "bea@gouv.sn": ("SN", "confirmed"),
                    "ousmane@gouv.sn": ("SN", "confirmed"), "cheikh@gouv.sn": ("SN", "waiting")}
    assert promotions == ["bea@gouv.sn"]


def test_a_cancellation_naming_someone_elses_address_cancels_only_what_the_sender_may(
        st: store.Store, catalog: Catalog) -> None:
    """ "Please cancel the registration of ama.owusu@gmail.com" from another address frees
    nobody's seat (the sender is told no registration is under their address); the focal
    point who registered a delegate may cancel the delegate."""
    def text(sender: str, mid: str, body: str) -> bytes:
        return (f"From: {sender}\r\nTo: webinars+africa-fr@example.org\r\n"
                f"Subject: Re: [africa-fr]\r\nMessage-ID: <{mid}@client.example>\r\n"
                f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n").encode()

    handle(st, catalog, reply("ama.owusu@gmail.com", "Ama Owusu", "Senegal", mid="ama"),
           now=NOW, policy=POLICY)
    handle(st, catalog, text("focal@gouv.sn", "focal", "Name: Moussa Sow\r\n"
                             "Email: moussa@gouv.sn\r\nCountry: Senegal"),
           now=NOW.replace(minute=1), policy=POLICY)
    for n, address in enumerate(["ama.owusu@gmail.com", "moussa@gouv.sn"]):
        refused = handle(st, catalog, text("mallory@elsewhere.example", f"m{n}",
                                           f"Please cancel the registration of {address}."),
                         now=NOW.replace(minute=2 + n), policy=POLICY)
        assert refused.intent is not None
        assert refused.intent.kind is IntentKind.CANCELLATION
    handle(st, catalog, text("focal@gouv.sn", "drop", "Please cancel the registration of "
                             "moussa@gouv.sn, he cannot attend."),
           now=NOW.replace(minute=5), policy=POLICY)
    with st.transaction() as session:
        status = {r.email: r.status for r in store.registrations_of(session, "africa-fr")}
        answers = [(r.kind, r.recipient, (r.context or {}).get("reason")) for r in
                   session.scalars(select(store.OutboxRow).where(store.OutboxRow.id > 2)
                                   .order_by(store.OutboxRow.id))]
    assert status == {"ama.owusu@gmail.com": "confirmed", "moussa@gouv.sn": "cancelled"}
    assert answers == [("clarification", "mallory@elsewhere.example", "no_registration")] * 2 \
        + [("withdrawal", "moussa@gouv.sn", None)]


def test_a_calendar_answer_naming_two_events_takes_the_senders_registration(
        st: store.Store, catalog: Catalog) -> None:
    """ "Accepted: Cybercrime webinars" (the series' title) names both events; the sender is
    registered for one, so it is that one: nobody is asked which."""
    handle(st, catalog, reply("awa@justice.sn", "Awa Diop", "Senegal", mid="a1"), now=NOW,
           policy=POLICY)
    accepted = (b"From: Awa Diop <awa@justice.sn>\r\nTo: webinars@example.org\r\n"
                b"Subject: Accepted: Cybercrime webinars\r\nMessage-ID: <cal@x>\r\n\r\n")
    result = handle(st, catalog, accepted, now=NOW, policy=POLICY)
    assert result.intent is not None and result.intent.event_id == "africa-fr"
    assert result.decision is not None and result.decision.answers == ()


def test_no_answer_goes_to_a_suppressed_address_but_the_others_still_go(
        st: store.Store, catalog: Catalog) -> None:
    """A delegation naming a bounced address registers both; only the live one is answered."""
    with st.transaction() as session:
        store.suppress(session, "Gone@Gouv.SN", "bounce <b@x>", NOW)
    raw = (b"From: Chef <chef@gouv.sn>\r\nTo: webinars+africa-fr@example.org\r\n"
           b"Subject: Re: [africa-fr]\r\nMessage-ID: <deleg@x>\r\n\r\n"
           b"Please register the following participants.\r\n\r\n"
           b"Name: Awa Diop\r\nCountry: Senegal\r\nEmail: awa@gouv.sn\r\n\r\n"
           b"Name: Gone Away\r\nCountry: Senegal\r\nEmail: gone@gouv.sn\r\n")
    result = handle(st, catalog, raw, now=NOW, policy=POLICY)
    assert result.outcome == "handled"
    assert count(st, store.Registration) == 2
    with st.transaction() as session:
        recipients = session.scalars(select(store.OutboxRow.recipient)).all()
    assert recipients == ["awa@gouv.sn"]


# --- groups: several messages in one transaction ---------------------------------------------


def arrivals(*raws: bytes, now: datetime = NOW) -> list[Arrival]:
    return [Arrival(raw, now, message_key(raw, None)) for raw in raws]


def stored(st: store.Store) -> tuple[list[tuple[object, ...]], ...]:
    """What the store holds, without ids or generated Message-IDs."""
    with st.transaction() as session:
        registrations = [(r.event_id, r.email, r.country, r.status, r.name)
                         for r in store.all_registrations(session)]
        outbox = sorted(tuple(r) for r in session.execute(select(
            store.OutboxRow.key, store.OutboxRow.kind, store.OutboxRow.recipient)))
        inbound = sorted(tuple(r) for r in session.execute(select(
            store.Inbound.message_id, store.Inbound.outcome, store.Inbound.reason)))
    return registrations, outbox, inbound


def test_a_wave_handled_in_groups_leaves_what_one_at_a_time_leaves(
        st: store.Store, tmp_path: Path) -> None:
    """The 200 replies of a wave, handled in groups of 16, store exactly what they store alone."""
    catalog, _ = read_catalog(ROOT / "schedules")
    policy = Policy(inbox_address=INBOX, staff_address="staff@secretariat.example",
                    domain="secretariat.example")
    wave_now = datetime(2020, 6, 20, 12, 0, tzinfo=timezone.utc)
    messages = arrivals(*wave(200).messages, now=wave_now)
    alone = store.Store(f"sqlite:///{tmp_path}/alone.db")
    alone.migrate()
    try:
        one_by_one = [handle_one(alone, catalog, a, policy) for a in messages]
        grouped = [h for first in range(0, len(messages), 16)
                   for h in handle_group(st, catalog, messages[first:first + 16], policy)]
        assert [h.outcome for h in grouped] == [h.outcome for h in one_by_one]
        assert {h.outcome for h in grouped} >= {"handled", "duplicate"}
        assert stored(st) == stored(alone)
    finally:
        alone.close()


def test_a_group_is_committed_once(st: store.Store, catalog: Catalog) -> None:
    """Sixteen replies handled as a group cost one COMMIT, not sixteen."""
    commits: list[object] = []
    event.listen(st.engine, "commit", commits.append)
    group = arrivals(*(reply(f"p{i}@gouv.sn", f"Person {i}", "SN", mid=f"g{i}")
                       for i in range(16)))
    outcomes = handle_group(st, catalog, group, POLICY)
    assert [h.outcome for h in outcomes] == ["handled"] * 16
    assert len(commits) == 1
    assert count(st, store.Registration, store.Registration.status == "confirmed") == 4
    assert count(st, store.Registration, store.Registration.status == "waiting") == 12


def test_a_failure_in_a_group_stays_with_its_message(
        st: store.Store, catalog: Catalog, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reply whose decision fails is recorded as failed; the rest of its group is handled."""
    real = handling.decide

    def fails_for_bea(intent: object, *args: object, **kwargs: object) -> object:
        if getattr(intent, "sender", "") == "bea@justice.sn":
            raise RuntimeError("database hiccup")
        return real(intent, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(handling, "decide", fails_for_bea)
    group = arrivals(reply("awa@justice.sn", "Awa Diop", "SN", mid="f1"),
                     reply("bea@justice.sn", "Bea Ndiaye", "SN", mid="f2"),
                     reply("cheikh@justice.sn", "Cheikh Fall", "SN", mid="f3"))
    outcomes = handle_group(st, catalog, group, POLICY)
    assert [h.outcome for h in outcomes] == ["handled", "failed", "handled"]
    assert "database hiccup" in outcomes[1].reason
    with st.transaction() as session:
        emails = [r.email for r in store.registrations_of(session, "africa-fr")]
        tries = session.scalar(select(store.Inbound.attempts).where(
            store.Inbound.message_id == "<f2@client.example>"))
    assert emails == ["awa@justice.sn", "cheikh@justice.sn"] and tries == 1
    assert count(st, store.OutboxRow) == 2


def test_a_batch_is_split_in_groups_and_a_message_a_pass_died_on_goes_alone() -> None:
    """Runs of at most three, in order; "c", claimed by a pass that died, is a run of its own."""
    keys = ["a", "b", "c", "d", "e", "f", "g", "h"]
    assert list(groups(keys, {"c"}, 3)) == [(0, 2), (2, 3), (3, 6), (6, 8)]
    assert list(groups(keys, set(), 16)) == [(0, 8)]
    assert list(groups([], set(), 16)) == []


def test_an_encoded_line_break_in_the_from_name_answers_only_the_real_address(
        st: store.Store, catalog: Catalog) -> None:
    """An encoded CR/LF in the display name never yields an address from the name's text."""
    raw = reply("awa@justice.sn", "x", "Senegal", mid="crlf").replace(
        b"From: x <awa@justice.sn>",
        b"From: =?utf-8?q?Awa=0D=0ABcc:_victim@evil.example?= <awa@justice.sn>")
    result = handle(st, catalog, raw, now=NOW, policy=POLICY)
    assert result.outcome == "handled"
    with st.transaction() as session:
        recipients = {row.recipient for row in session.scalars(select(store.OutboxRow))}
    assert recipients == {"awa@justice.sn"}


def test_mail_whose_from_holds_no_valid_address_is_quarantined(
        st: store.Store, catalog: Catalog) -> None:
    """No single valid sender address: quarantined with the reason, nothing answered."""
    for n, sender in enumerate([b"Awa <awa@justice.sn>, Bob <bob@justice.sn>",
                                b"Awa <awa@justice.sn\x1b[31m>", b"=?utf-8?b?YUBiLmM=?=",
                                # Latin-1 written raw: not UTF-8, so no one's address (it
                                # was read as "j?rome@justice.sn", someone else's).
                                b"J\xe9r\xf4me <j\xe9rome@justice.sn>"]):
        raw = reply("awa@justice.sn", "x", "Senegal", mid=f"bad{n}").replace(
            b"x <awa@justice.sn>", sender)
        result = handle(st, catalog, raw, now=NOW, policy=POLICY)
        assert result.outcome == "quarantined" and "From" in result.reason, sender
    assert count(st, store.OutboxRow) == 0 and count(st, store.Registration) == 0


def test_an_address_written_in_raw_utf8_is_read_as_written(
        st: store.Store, catalog: Catalog) -> None:
    """RFC 6532 mail carries UTF-8 in its headers: "josé@" is that person, answered as such."""
    raw = reply("jos\u00e9@justice.sn", "Jos\u00e9 Diop", "Senegal", mid="utf8")
    assert "From: Jos\u00e9 Diop <jos\u00e9@justice.sn>".encode() in raw   # raw UTF-8 bytes
    assert handle(st, catalog, raw, now=NOW, policy=POLICY).outcome == "handled"
    with st.transaction() as session:
        recipients = {row.recipient for row in session.scalars(select(store.OutboxRow))}
    assert recipients == {"jos\u00e9@justice.sn"}


def test_names_are_stored_without_control_characters(st: store.Store,
                                                      catalog: Catalog) -> None:
    """Terminal escape codes and bidi overrides in a name never reach the store."""
    raw = reply("awa@justice.sn", "Awa\x1b[2J\x1b[31m Diop\u202e", "Senegal", mid="esc")
    assert handle(st, catalog, raw, now=NOW, policy=POLICY).outcome == "handled"
    with st.transaction() as session:
        (reg,) = store.registrations_of(session, "africa-fr")
    assert "\x1b" not in reg.name and "\u202e" not in reg.name
    assert reg.name.startswith("Awa") and reg.name.endswith("Diop")
