"""A store that stops taking writes (a full disk, PostgreSQL refusing them) never multiplies mail.

The faults are real: SQLite on a small tmpfs that fills up ("database or disk is full"), and
PostgreSQL refusing the store's role its writes ("permission denied"); the mail goes to a real
aiosmtpd server, which makes the fault happen just as it accepts the first message.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from structlog.testing import capture_logs

from mailer import store
from mailer.compose import Composer
from mailer.config import Store as StoreSettings
from mailer.daemon import Service
from mailer.domain import Kind, Outgoing, outbox_key
from mailer.errors import StoreError
from mailer.outbox import DrainReport, drain
from mailer.schedule import Catalog, load_catalog
from mailer.smtp import Sender
from tests.servers.disk import SmallDisk
from tests.servers.imap import ImapServer
from tests.servers.postgres import Postgres
from tests.servers.smtp import SmtpSink, smtp_settings
from tests.test_daemon import EVENT, Daemon, now_utc, write_config, write_live_schedule
from tests.test_outbox import NOW, settings_for
from tests.test_series import settings_for as series_settings
from tests.test_series import utc, write_schedule

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Refusing:
    """A PostgreSQL store whose role the test can take write privileges from, and give back."""

    url: str
    refuse: Callable[[], None]
    allow: Callable[[], None]


@pytest.fixture
def refusing(postgres_server: Postgres) -> Refusing:
    """A database owned by a role of its own (``REVOKE`` answers "permission denied")."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    role = f"mailer_{name}"

    def admin(database: str, *statements: str) -> None:
        with psycopg.connect(host=postgres_server.host, port=postgres_server.port,
                             user="postgres", dbname=database, autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)

    admin("postgres", f'CREATE ROLE "{role}" LOGIN', f'CREATE DATABASE "{name}" OWNER "{role}"')
    tables = "ALL TABLES IN SCHEMA public"
    return Refusing(
        f"postgresql+psycopg://{role}@{postgres_server.host}:{postgres_server.port}/{name}",
        lambda: admin(name, f'REVOKE INSERT, UPDATE, DELETE ON {tables} FROM "{role}"'),
        lambda: admin(name, f'GRANT INSERT, UPDATE, DELETE ON {tables} TO "{role}"'))


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog(ROOT / "schedules")


def reminders(count: int) -> list[Outgoing]:
    return [Outgoing(key=outbox_key(Kind.REMINDER, f"p{i}@gouv.sn", "africa-fr", 0, "1d"),
                     kind=Kind.REMINDER, recipient=f"p{i}@gouv.sn", language="fr",
                     event_id="africa-fr", name=f"P {i}", country="SN") for i in range(count)]


def once(call: Callable[[], None]) -> Callable[[object], None]:
    """``call`` at the first message the server accepts, never again."""
    done: list[bool] = []

    def hook(_received: object) -> None:
        if not done:
            done.append(True)
            call()
    return hook


async def test_a_store_refusing_writes_stops_sending_until_what_went_is_recorded(
        refusing: Refusing, tmp_path: Path, catalog: Catalog, smtp_sink: SmtpSink) -> None:
    """PostgreSQL stops taking writes as the server accepts the first of eight reminders:
    the drain stops (at most one message per connection went unrecorded), drains meanwhile
    send nothing, and once writes work again those are recorded first and the rest go: each
    reminder reaches the server exactly once."""
    settings = settings_for(tmp_path, smtp_sink).model_copy(
        update={"store": StoreSettings(url=refusing.url)})
    st = store.Store(refusing.url)
    st.migrate()
    with st.transaction() as session:
        store.enqueue(session, reminders(8), now=NOW, domain="secretariat.example")
    composer = Composer(settings, catalog)

    async def drain_once() -> DrainReport:
        async with Sender(settings.smtp) as sender:
            return await drain(st, composer.compose, sender, catalog=catalog,
                               settings=settings, now=NOW)

    smtp_sink.on_accept = once(refusing.refuse)
    try:
        with pytest.raises(StoreError, match="cannot be recorded"):
            await drain_once()
        went = len(smtp_sink.messages)
        assert 1 <= went <= settings.smtp.connections
        for _ in range(2):                  # the daemon's retries while the fault lasts
            with pytest.raises(StoreError, match="cannot be recorded"):
                await drain_once()
        assert len(smtp_sink.messages) == went
        refusing.allow()
        report = await drain_once()
        assert report.sent == 8 - went
        received = Counter(m.rcpt_tos[0] for m in smtp_sink.messages)
        assert received == Counter({out.recipient: 1 for out in reminders(8)})
        with st.transaction() as session:
            rows = session.execute(select(store.OutboxRow.status, store.OutboxRow.attempts))
            assert Counter(tuple(r) for r in rows) == Counter({("sent", 1): 8})
        assert st.unrecorded == {}
    finally:
        st.close()


def leading(tmp_path: Path, imap: ImapServer, sink: SmtpSink, **settings: object) -> Service:
    """The simulated series' daemon, in process, leading as its heartbeat said (only the
    leader reads the inbox); ``settings`` replace sections of its settings."""
    write_schedule(tmp_path)
    service = Service(series_settings(tmp_path, imap.settings(), sink).model_copy(
        update=settings), clock=lambda: utc("2020-06-10T10:00:00"), watch=False)
    assert service.mailer.beat(lead=True)
    service.leading.set()
    return service


async def inbox_logs(service: Service, seconds: float) -> list[dict[str, Any]]:
    """The log of ``service``'s inbox task run for ``seconds``, then stopped."""
    try:
        with capture_logs() as logs:
            inbox = asyncio.create_task(service.inbox())
            await asyncio.sleep(seconds)
            service.stop()
            await asyncio.wait_for(inbox, 15)
    finally:
        service.mailer.close()
    return logs


async def test_the_inbox_backs_off_while_the_store_refuses_writes(
        tmp_path: Path, refusing: Refusing, dovecot: ImapServer, smtp_sink: SmtpSink) -> None:
    """Connecting to IMAP works but every pass fails at its first write: the inbox waits 1,
    2, 4... seconds between tries (not one IMAP login a second), and says why in one line."""
    service = leading(tmp_path, dovecot, smtp_sink, store=StoreSettings(url=refusing.url))
    refusing.refuse()
    logs = await inbox_logs(service, 5.5)
    failures = [e for e in logs if e["event"] == "inbox failed; reconnecting"]
    connects = [e for e in logs if e["event"] == "inbox ready"]
    print(f"{len(connects)} IMAP logins, {len(failures)} failures in 5.5 s")
    # At 0, 1 and 3 s (the next at 7 s); a slow machine may not reach the third in time.
    waits = [f["retry_in"] for f in failures]
    assert waits in ([1.0, 2.0], [1.0, 2.0, 4.0]) and len(connects) == len(failures)
    assert {f["error"] for f in failures} == {
        "the store failed: permission denied for table cursors"}


async def test_a_failed_message_is_retried_a_full_back_off_after_its_failure(
        tmp_path: Path, catalog: Catalog, smtp_sink: SmtpSink) -> None:
    """At two messages a second the third is refused (451) a second into the drain: its next
    try is ``retry_base_seconds`` after that failure, not after the drain's start."""
    settings = settings_for(tmp_path, smtp_sink)
    settings = settings.model_copy(update={"smtp": smtp_settings(
        smtp_sink, connections=1, messages_per_minute=120, retry_base_seconds=10)})
    st = store.Store(settings.store.url)
    st.migrate()
    with st.transaction() as session:
        store.enqueue(session, reminders(3), now=NOW, domain="secretariat.example")
    smtp_sink.fail_next("p2@gouv.sn", 451, "4.3.0 Try later")
    began = time.monotonic()
    try:
        async with Sender(settings.smtp) as sender:
            report = await drain(st, Composer(settings, catalog).compose, sender,
                                 catalog=catalog, settings=settings, now=NOW)
        took = timedelta(seconds=time.monotonic() - began)
        assert (report.sent, report.retried) == (2, 1)
        with st.transaction() as session:
            retry_at = session.scalars(select(store.OutboxRow.next_attempt_at).where(
                store.OutboxRow.recipient == "p2@gouv.sn")).one()
    finally:
        st.close()
    waited = retry_at - NOW
    print(f"retry {waited.total_seconds():.2f} s after the drain's start ({took} drain)")
    # The third message waits two rate slots (about 1 s) before it is refused.
    assert timedelta(seconds=10.9) <= waited <= timedelta(seconds=10) + took


# --- the daemon, as a real process ---------------------------------------------------------


@dataclass
class Fault:
    """Where the daemon's store is, and how the test breaks and mends it."""

    url: str                                            # as the daemon sees it
    prepared: str                                       # where the test fills it first
    refuse: Callable[[], None]
    allow: Callable[[], None]
    command: Callable[[list[str]], list[str]]
    started: Callable[[subprocess.Popen[bytes]], None]  # before the daemon runs


@pytest.fixture(params=["sqlite", "postgresql"])
def fault(request: pytest.FixtureRequest, tmp_path: Path) -> Fault:
    """SQLite on a disk that fills up, or PostgreSQL taking the store's writes away."""
    if request.param == "postgresql":
        pg: Refusing = request.getfixturevalue("refusing")
        return Fault(pg.url, pg.url, pg.refuse, pg.allow, lambda argv: argv, lambda _p: None)
    disk: SmallDisk = request.getfixturevalue("small_disk")
    prepared = tmp_path / "prepared.db"

    def started(process: subprocess.Popen[bytes]) -> None:
        disk.attach(process)
        shutil.copy(prepared, disk.path / "mailer.db")
        disk.start()

    return Fault(f"sqlite:///{disk.folder}/mailer.db", f"sqlite:///{prepared}", disk.fill,
                 disk.free, disk.command, started)


def test_the_daemon_sends_each_message_once_through_a_store_fault(
        fault: Fault, tmp_path: Path, dovecot: ImapServer, smtp_sink: SmtpSink) -> None:
    """`mailer run` with eight reminders due; the store stops taking writes as the server
    accepts the first: the daemon retries after 1, 2... seconds, sends nothing meanwhile, and
    once writes work again every reminder has reached the server exactly once (before the
    fix: the same two people got one copy per retry)."""
    write_live_schedule(tmp_path, now_utc() + timedelta(days=10))
    config = write_config(tmp_path, dovecot, smtp_sink)
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace(f'"sqlite:///{tmp_path}/mailer.db"', f'"{fault.url}"'),
                      encoding="utf-8")
    st = store.Store(fault.prepared)
    st.migrate()
    due = [replace(out, event_id=EVENT, due_at=now_utc() - timedelta(minutes=1))
           for out in reminders(8)]
    with st.transaction() as session:
        store.enqueue(session, due, now=now_utc(), domain="secretariat.example")
    st.close()
    smtp_sink.on_accept = once(fault.refuse)
    log = tmp_path / "daemon.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            fault.command([sys.executable, "-c", "from mailer.cli import main; main()", "run",
                           "--config", str(config)]),
            stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    daemon = Daemon(process, log)
    try:
        fault.started(process)
        daemon.wait_for_log("pass failed; retrying", retry_in=2.0)    # the second failure
        assert 1 <= len(smtp_sink.messages) <= 2                      # one per connection
        fault.allow()
        daemon.wait_for_log("messages sent before the store failed are now recorded")
        deadline = time.monotonic() + 15
        while len(smtp_sink.messages) < 8 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)                                     # room for a wrong second copy
        received = Counter(m.rcpt_tos[0] for m in smtp_sink.messages)
        assert received == Counter({out.recipient: 1 for out in due})
        failures = daemon.logged("pass failed; retrying")
        print(f"{len(failures)} failed passes: {failures[0]['error']}")
        assert [f["retry_in"] for f in failures] == [2.0 ** n for n in range(len(failures))]
        # Each says in one line that the store failed: the record of what went, or (before
        # the drain) planning, which holds the leader's lease.
        assert "cannot be recorded" in failures[0]["error"]
        assert all("the store failed" in f["error"] and "\n" not in f["error"]
                   for f in failures)
        daemon.signal(signal.SIGTERM)
        assert process.wait(15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)


async def test_an_inbox_whose_lease_ran_out_waits_for_the_heartbeat_instead_of_spinning(
        tmp_path: Path, dovecot: ImapServer, smtp_sink: SmtpSink) -> None:
    """The leader's lease ran out by its own clock while its heartbeat hangs on the store (a
    lock, a network that stopped answering): the inbox stops reading and waits, rather than
    log in to IMAP and out again in a tight loop until the heartbeat returns."""
    from mailer.config import Cluster as ClusterSettings

    service = leading(tmp_path, dovecot, smtp_sink,
                      cluster=ClusterSettings(lease_seconds=1, renew_seconds=0.5))
    await asyncio.sleep(1.0)            # the lease runs out: no heartbeat renews it
    logs = await inbox_logs(service, 2.0)
    logins = [e for e in logs if e["event"] == "inbox ready"]
    print(f"{len(logins)} IMAP logins in 2 s without the lease")
    assert logins == []
