"""Draining the outbox over a real SMTP server: every answer composes, failures are recorded."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError

from mailer import store
from mailer.compose import Composer
from mailer.config import Limits, Organiser, Paths, Settings, Store
from mailer.domain import Kind, Outgoing, outbox_key
from mailer.errors import StoreError
from mailer.handling import Policy, handle
from mailer.outbox import DrainReport, SentLog, drain
from mailer.schedule import Catalog, load_catalog
from mailer.smtp import Sender
from tests.servers.smtp import SmtpSink, smtp_settings

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2020, 6, 20, 12, 0, tzinfo=timezone.utc)
INBOX = "webinars@secretariat.example"


@pytest.fixture
def catalog() -> Catalog:
    return load_catalog(ROOT / "schedules")


def settings_for(tmp_path: Path, sink: SmtpSink, **limits: object) -> Settings:
    return Settings(organiser=Organiser(address=INBOX, staff_address="staff@secretariat.example"),
                    smtp=smtp_settings(sink, retry_base_seconds=60),
                    store=Store(url=f"sqlite:///{tmp_path}/m.db"),
                    paths=Paths(schedules=ROOT / "schedules", templates=ROOT / "templates",
                                packs=ROOT),
                    limits=Limits(**limits))


def run_drain(settings: Settings, catalog: Catalog, now: datetime = NOW):
    st = store.Store(settings.store.url)
    st.migrate()
    composer = Composer(settings, catalog)

    async def go():
        async with Sender(settings.smtp) as sender:
            return await drain(st, composer.compose, sender, catalog=catalog,
                               settings=settings, now=now)
    try:
        return asyncio.run(go())
    finally:
        st.close()


def reply(n: int, sender: str, body: str, to: str = "webinars+africa-fr@secretariat.example",
          subject: str = "Re: Invitation [africa-fr]") -> bytes:
    return (f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <r{n}@x>\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n\r\n" + body).encode()


def test_every_answer_the_rules_give_composes_and_says_why(tmp_path: Path, catalog: Catalog,
                                                          smtp_sink: SmtpSink) -> None:
    """Clarifications, refusals, waiting lists and staff forwards all reach the server readably."""
    settings = settings_for(tmp_path, smtp_sink)
    st = store.Store(settings.store.url)
    st.migrate()
    policy = Policy(inbox_address=INBOX, staff_address="staff@secretariat.example",
                    domain="secretariat.example")
    late = datetime(2020, 7, 9, 9, 0, tzinfo=timezone.utc)
    inputs = [
        (reply(1, "a@gouv.sn", "Name: Awa Diop\nCountry: Atlantis\n"), NOW),
        (reply(2, "b@gouv.sn", "Please cancel my registration."), NOW),
        (reply(3, "c@gouv.sn", "Name: Late Comer\nCountry: Senegal\n"), late),
        (reply(4, "d@gouv.sn", "Will the slides be shared?"), NOW),
        (reply(5, "e@gouv.fr", "Please register me.\nName: Eve\nCountry: France\n",
               to="webinars+africa-en@secretariat.example", subject="Re: [africa-en]"), NOW),
        (reply(6, "f@gouv.sn", "Please register me.\nName: F\nCountry: Senegal\n",
               to=INBOX, subject="Webinar"), NOW),
    ]
    for raw, moment in inputs:
        assert handle(st, catalog, raw, now=moment, policy=policy).outcome == "handled"
    st.close()
    report = run_drain(settings, catalog, late)
    assert report.failed == 0 and report.sent == 6
    bodies = {m.rcpt_tos[0]: m.message().get_body(("plain",)).get_content()
              for m in smtp_sink.messages}
    assert "Atlantis" in bodies["a@gouv.sn"]
    assert "could not find a registration" in bodies["b@gouv.sn"]  # in the reply's language
    assert "Registration for this session is closed" in bodies["c@gouv.sn"]
    assert "Will the slides be shared?" in bodies["staff@secretariat.example"]
    assert "e@gouv.fr" in bodies                                # pending review notice
    assert "asia-pacific-en" in bodies["f@gouv.sn"]             # which event? the candidates


def test_a_guessed_country_is_shown_in_the_acknowledgement(tmp_path: Path, catalog: Catalog,
                                                           smtp_sink: SmtpSink) -> None:
    """A reply that gives neither name nor country is registered with the From name and the
    country of its government address, and the acknowledgement says so, asking for a reply
    if that is wrong; a reply that wrote both gets no such paragraph."""
    settings = settings_for(tmp_path, smtp_sink)
    st = store.Store(settings.store.url)
    st.migrate()
    policy = Policy(inbox_address=INBOX, staff_address="staff@secretariat.example",
                    domain="secretariat.example")
    guessed = reply(1, "Kwame Asante <kwame.asante@mint.gov.gh>",
                    "Kindly register me. Thanks\n\nGet Outlook for Android",
                    to="webinars+africa-en@secretariat.example", subject="RE: [africa-en]")
    written = reply(2, "ama@mint.gov.gh", "Name: Ama Owusu\nCountry: Ghana\n",
                    to="webinars+africa-en@secretariat.example", subject="RE: [africa-en]")
    for raw in (guessed, written):
        assert handle(st, catalog, raw, now=NOW, policy=policy).outcome == "handled"
    with st.transaction() as session:
        stored = {r.email: (r.name, r.country, r.status)
                  for r in store.registrations_of(session, "africa-en")}
    st.close()
    assert stored["kwame.asante@mint.gov.gh"] == ("Kwame Asante", "GH", "confirmed")
    assert run_drain(settings, catalog).sent == 2
    bodies = {m.rcpt_tos[0]: m.message() for m in smtp_sink.messages}
    text = bodies["kwame.asante@mint.gov.gh"].get_body(("plain",)).get_content()
    html = bodies["kwame.asante@mint.gov.gh"].get_body(("html",)).get_content()
    guess = ("Your reply did not state your name or your country, so we registered you under "
             "the name Kwame Asante (the name your email was sent under) and for Ghana. If "
             "that is not right, simply reply to this message with the correct details.")
    assert guess in text and guess in html
    assert "did not state" not in bodies["ama@mint.gov.gh"].get_body(("plain",)).get_content()


def pack_row(st: store.Store, lang: str = "fr") -> None:
    out = Outgoing(key=outbox_key(Kind.PACK, "awa@gouv.sn", "africa-fr", 0, "x"),
                   kind=Kind.PACK, recipient="awa@gouv.sn", language=lang,
                   event_id="africa-fr", name="Awa Diop", country="SN")
    with st.transaction() as session:
        store.enqueue(session, [out], now=NOW, domain="secretariat.example")


def test_the_pack_is_attached_in_the_participants_language(tmp_path: Path, catalog: Catalog,
                                                          smtp_sink: SmtpSink) -> None:
    """The information pack carries the factsheet, bibliography and slides in French."""
    settings = settings_for(tmp_path, smtp_sink)
    st = store.Store(settings.store.url)
    st.migrate()
    pack_row(st)
    st.close()
    assert run_drain(settings, catalog).sent == 1
    names = [p.get_filename() for p in smtp_sink.messages[0].message().iter_attachments()]
    assert names == ["factsheet.fr.pdf", "bibliography.fr.pdf", "slides.fr.pptx"]


def test_files_over_the_limit_are_linked_instead(tmp_path: Path, catalog: Catalog,
                                                 smtp_sink: SmtpSink) -> None:
    """With a 1 kB attachment limit and a base URL, the pack's files are links in the text."""
    settings = settings_for(tmp_path, smtp_sink, attach_max_bytes=1000,
                            pack_base_url="https://files.example.org/packs/")
    st = store.Store(settings.store.url)
    st.migrate()
    pack_row(st)
    st.close()
    assert run_drain(settings, catalog).sent == 1
    msg = smtp_sink.messages[0].message()
    assert list(msg.iter_attachments()) == []
    assert "https://files.example.org/packs/slides.fr.pptx" in msg.get_body(
        ("plain",)).get_content()


def test_a_permanent_refusal_fails_the_row_and_suppresses_the_address(
        tmp_path: Path, catalog: Catalog, smtp_sink: SmtpSink) -> None:
    """A 550 marks the message failed with the server's words and stops mail to that address."""
    settings = settings_for(tmp_path, smtp_sink)
    st = store.Store(settings.store.url)
    st.migrate()
    pack_row(st)
    smtp_sink.fail_rcpt["awa@gouv.sn"] = (550, "5.1.1 No such user")
    report = run_drain(settings, catalog)
    assert (report.sent, report.failed) == (0, 1)
    with st.transaction() as session:
        (row,) = session.scalars(select(store.OutboxRow)).all()
        assert row.status == "failed" and "No such user" in row.last_error
        assert store.suppressed_among(session, ["Awa@gouv.sn"]) == {"awa@gouv.sn"}
    st.close()


def test_a_temporary_refusal_is_retried_later(tmp_path: Path, catalog: Catalog,
                                              smtp_sink: SmtpSink) -> None:
    """A 451 leaves the message pending with a later attempt; the next drain delivers it."""
    settings = settings_for(tmp_path, smtp_sink)
    st = store.Store(settings.store.url)
    st.migrate()
    pack_row(st)
    smtp_sink.fail_next("awa@gouv.sn", 451, "4.3.0 Try later")
    assert run_drain(settings, catalog).retried == 1
    with st.transaction() as session:
        (row,) = session.scalars(select(store.OutboxRow)).all()
        # A minute after the failure, which came a moment after the drain's start.
        wait = row.next_attempt_at - NOW
        assert row.status == "pending" and timedelta(seconds=60) < wait < timedelta(seconds=61)
    assert run_drain(settings, catalog).sent == 0                  # not yet time
    assert run_drain(settings, catalog, NOW + timedelta(minutes=2)).sent == 1
    assert len(smtp_sink.messages) == 1
    st.close()


class WatchedStore(store.Store):
    """A real store that notes, at each commit of sent rows, how many messages the server had."""

    def __init__(self, url: str, sink: SmtpSink) -> None:
        super().__init__(url)
        self.sink = sink
        self.committed = 0
        self.uncommitted_at_commit: list[int] = []

    def mark_sent(self, row_ids: Sequence[int], now: datetime,
                  conn: Connection) -> None:
        self.uncommitted_at_commit.append(len(self.sink.messages) - self.committed)
        super().mark_sent(row_ids, now, conn)
        self.committed += len(row_ids)

    def mark_sent_now(self, row_ids: Sequence[int], now: datetime) -> bool:
        uncommitted = len(self.sink.messages) - self.committed
        if not super().mark_sent_now(row_ids, now):
            return False
        self.uncommitted_at_commit.append(uncommitted)
        self.committed += len(row_ids)
        return True


def drain_reminders(st: store.Store, count: int, settings: Settings,
                    catalog: Catalog) -> tuple[list[Outgoing], DrainReport]:
    """Enqueue ``count`` reminders for africa-fr and drain them once over real SMTP."""
    rows = [Outgoing(key=outbox_key(Kind.REMINDER, f"p{i}@gouv.sn", "africa-fr", 0, "1d"),
                     kind=Kind.REMINDER, recipient=f"p{i}@gouv.sn", language="fr",
                     event_id="africa-fr", name=f"P {i}", country="SN") for i in range(count)]
    with st.transaction() as session:
        store.enqueue(session, rows, now=NOW, domain="secretariat.example")
    composer = Composer(settings, catalog)

    async def go() -> DrainReport:
        async with Sender(settings.smtp) as sender:
            return await drain(st, composer.compose, sender, catalog=catalog,
                               settings=settings, now=NOW)
    return rows, asyncio.run(go())


def test_a_connection_sends_nothing_more_until_its_message_is_recorded(
        tmp_path: Path, catalog: Catalog, smtp_sink: SmtpSink) -> None:
    """However commits are grouped, accepted but unrecorded messages never outnumber connections."""
    settings = settings_for(tmp_path, smtp_sink)
    st = WatchedStore(settings.store.url, smtp_sink)
    st.migrate()
    _, report = drain_reminders(st, 40, settings, catalog)
    st.close()
    assert report.sent == 40 and st.committed == 40 and len(smtp_sink.messages) == 40
    assert max(st.uncommitted_at_commit) <= settings.smtp.connections


class GatedStore(store.Store):
    """A real store whose commits of sent rows wait for the test to open a gate (so they all
    take the worker thread's path, as when SQLite's write lock is taken)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.gate = threading.Event()
        self.groups: list[list[int]] = []
        self.broken = False

    def mark_sent(self, row_ids: Sequence[int], now: datetime,
                  conn: Connection) -> None:
        assert self.gate.wait(10)
        self.groups.append(list(row_ids))
        if self.broken:
            raise OperationalError("UPDATE outbox", {}, Exception("disk I/O error"))
        super().mark_sent(row_ids, now, conn)

    def mark_sent_now(self, row_ids: Sequence[int], now: datetime) -> bool:
        return False


@pytest.fixture
def gated(tmp_path: Path) -> Iterator[GatedStore]:
    """A migrated GatedStore, its gate closed."""
    st = GatedStore(f"sqlite:///{tmp_path}/m.db")
    st.migrate()
    yield st
    st.close()


async def test_rows_accepted_during_a_commit_share_the_next_one(gated: GatedStore) -> None:
    """While one commit runs, later rows wait together and go in one commit after it."""
    log = SentLog(gated, NOW)
    first = asyncio.create_task(log.record(1))
    await asyncio.sleep(0.1)                        # the first commit waits at the gate
    later = [asyncio.create_task(log.record(n)) for n in (2, 3, 4)]
    await asyncio.sleep(0.1)
    assert not first.done() and not any(t.done() for t in later)   # nobody goes on early
    gated.gate.set()
    await asyncio.gather(first, *later)
    assert gated.groups == [[1], [2, 3, 4]]
    log.close()


async def test_a_failed_commit_raises_in_every_waiting_sender(gated: GatedStore) -> None:
    """If the commit fails, each sender it held learns so (the drain stops) and the rows wait
    in the store's memory, to be recorded before anything else is sent."""
    gated.broken = True
    log = SentLog(gated, NOW)
    waiting = [asyncio.create_task(log.record(n)) for n in (1, 2)]
    await asyncio.sleep(0.1)
    gated.gate.set()
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(r, StoreError) and isinstance(r.__cause__, OperationalError)
               for r in results)
    assert gated.unrecorded == {1: NOW, 2: NOW}
    log.close()


async def test_one_commit_waits_briefly_for_every_sender(gated: GatedStore) -> None:
    """With three senders, three rows accepted a moment apart go in one commit."""
    gated.gate.set()
    log = SentLog(gated, NOW, senders=3, gather_seconds=1.0)

    async def accepted_after(delay: float, row: int) -> None:
        await asyncio.sleep(delay)
        await log.record(row)

    await asyncio.gather(accepted_after(0, 1), accepted_after(0.05, 2), accepted_after(0.1, 3))
    assert gated.groups == [[1, 2, 3]]
    log.close()


async def test_a_lone_row_is_committed_after_the_gathering_moment(gated: GatedStore) -> None:
    """With fewer rows than senders, the commit still comes, once the short wait is over."""
    gated.gate.set()
    log = SentLog(gated, NOW, senders=4, gather_seconds=0.05)
    await asyncio.wait_for(log.record(7), timeout=5)
    assert gated.groups == [[7]]
    log.close()


class NoThreadStore(store.Store):
    """A real SQLite store on which the worker thread's commit must not be used."""

    def mark_sent(self, row_ids: Sequence[int], now: datetime,
                  conn: Connection) -> None:
        raise AssertionError("committed through the worker thread")


def _pending_row(st: store.Store) -> int:
    out = Outgoing(key=outbox_key(Kind.REMINDER, "awa@gouv.sn", "africa-fr", 0, "1d"),
                   kind=Kind.REMINDER, recipient="awa@gouv.sn", language="fr",
                   event_id="africa-fr")
    with st.transaction() as session:
        store.enqueue(session, [out], now=NOW, domain="secretariat.example")
        return session.scalars(select(store.OutboxRow.id)).one()


def _status(st: store.Store, row_id: int) -> str:
    with st.transaction() as session:
        return session.get_one(store.OutboxRow, row_id).status


async def test_with_the_write_lock_free_a_sent_row_is_committed_on_the_loop(
        tmp_path: Path) -> None:
    """On SQLite, with no other writer, recording a sent row needs no worker thread."""
    st = NoThreadStore(f"sqlite:///{tmp_path}/m.db")
    st.migrate()
    row = _pending_row(st)
    log = SentLog(st, NOW, gather_seconds=0)
    await asyncio.wait_for(log.record(row), timeout=5)
    log.close()
    assert _status(st, row) == "sent"
    st.close()


async def test_a_held_write_lock_never_stops_the_event_loop(tmp_path: Path) -> None:
    """While another writer holds SQLite's lock, the record waits in a worker thread, the loop
    keeps running, and the row is committed once the lock is free."""
    st = store.Store(f"sqlite:///{tmp_path}/m.db")
    st.migrate()
    row = _pending_row(st)
    locked, ticked = threading.Event(), threading.Event()
    ticked_while_locked: list[bool] = []

    def other_writer() -> None:
        holder = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        locked.set()
        ticked_while_locked.append(ticked.wait(3))     # a blocked loop cannot tick
        holder.execute("COMMIT")
        holder.close()

    writer = threading.Thread(target=other_writer)
    writer.start()
    assert locked.wait(5)
    log = SentLog(st, NOW, gather_seconds=0)
    recording = asyncio.create_task(log.record(row))
    await asyncio.sleep(0.05)
    ticked.set()
    await asyncio.wait_for(recording, timeout=10)
    writer.join()
    log.close()
    assert ticked_while_locked == [True]
    assert _status(st, row) == "sent"
    st.close()


def test_a_drain_records_every_accepted_message_on_either_database(
        st: store.Store, tmp_path: Path, catalog: Catalog, smtp_sink: SmtpSink) -> None:
    """On SQLite (inline commits) and PostgreSQL (commits in a thread) alike, twelve reminders
    reach the server once each and are all marked sent."""
    rows, report = drain_reminders(st, 12, settings_for(tmp_path, smtp_sink), catalog)
    assert report.sent == 12
    assert sorted(m.rcpt_tos[0] for m in smtp_sink.messages) == sorted(
        r.recipient for r in rows)
    with st.transaction() as session:
        marked = session.execute(select(store.OutboxRow.status, store.OutboxRow.sent_at,
                                        store.OutboxRow.attempts)).all()
    assert {tuple(m) for m in marked} == {("sent", NOW, 1)}


def _answer_reply_from(address: str, tmp_path: Path, sink: SmtpSink,
                       catalog: Catalog) -> tuple[DrainReport, list[store.OutboxRow]]:
    """A registration by reply from ``address``, handled, then its answer drained over SMTP."""
    settings = settings_for(tmp_path, sink)
    st = store.Store(settings.store.url)
    st.migrate()
    raw = (f"From: José Pérez <{address}>\r\nTo: webinars+africa-fr@secretariat.example\r\n"
           "Subject: Re: [africa-fr]\r\nMessage-ID: <jose-1@client.example>\r\n"
           "Content-Type: text/plain; charset=utf-8\r\n\r\n"
           "Nom : José Pérez\r\nPays : Sénégal\r\nFonction : Procureur\r\n").encode()
    policy = Policy(inbox_address=INBOX, staff_address="staff@secretariat.example",
                    domain="secretariat.example", answers_per_day=3)
    assert handle(st, catalog, raw, now=NOW, policy=policy).outcome == "handled"

    async def go() -> DrainReport:
        async with Sender(settings.smtp) as sender:
            return await drain(st, Composer(settings, catalog).compose, sender,
                               catalog=catalog, settings=settings, now=NOW)
    report = asyncio.run(go())
    with st.transaction() as session:
        rows = list(session.scalars(select(store.OutboxRow)))
    st.close()
    return report, rows


def test_an_internationalised_address_is_stored_and_answered_over_smtputf8(
        tmp_path: Path, catalog: Catalog, smtp_sink_utf8: SmtpSink) -> None:
    """A reply from josé@... is registered under that address and answered with SMTPUTF8."""
    report, rows = _answer_reply_from("josé@correo.example.sn", tmp_path, smtp_sink_utf8,
                                      catalog)
    assert report.sent == 1 and [r.recipient for r in rows] == ["josé@correo.example.sn"]
    [received] = smtp_sink_utf8.messages
    assert received.rcpt_tos == ("josé@correo.example.sn",)


def test_an_internationalised_address_fails_clearly_without_smtputf8(
        tmp_path: Path, catalog: Catalog, smtp_sink: SmtpSink) -> None:
    """A server without SMTPUTF8 cannot take it: the answer fails for good, saying why."""
    _report, rows = _answer_reply_from("josé@correo.example.sn", tmp_path, smtp_sink, catalog)
    [row] = rows
    assert row.status == "failed" and "SMTPUTF8" in (row.last_error or "")
    assert not smtp_sink.messages
