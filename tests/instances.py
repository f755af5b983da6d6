"""Several real mailer processes over one store, for the tests of claims, leases and the rate.

``Instances`` writes one configuration (the store, a sink, a mailbox, short leases) and
starts ``mailer once`` and ``mailer run`` as real processes with it, each with its own log;
it kills what is still running on the way out. Helpers read what the sink received and
check the sending rate from its receive times.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from mailer import claims, store
from mailer.domain import Kind, Outgoing, outbox_key
from tests.servers.imap import ImapServer
from tests.servers.smtp import SmtpSink

ROOT = Path(__file__).resolve().parent.parent
INBOX = "webinars@secretariat.example"
STAFF = "staff@secretariat.example"
NOW = datetime(2020, 6, 20, 12, 0, tzinfo=timezone.utc)
COMMAND = [sys.executable, "-c", "from mailer.cli import main; main()"]


def write_config(folder: Path, *, url: str, sink: SmtpSink, imap: ImapServer | None = None,
                 schedules: Path | None = None, per_minute: int = 60_000,
                 connections: int = 2, lease: float = 2.0, renew: float = 0.5,
                 batch_size: int = 10) -> Path:
    """A config.toml for the processes: ``url``'s store, the sink, ``imap``'s mailbox (or a
    closed port: passes that do not read), short leases, no worker process."""
    q = json.dumps   # a JSON string is a valid TOML basic string
    mailbox = (imap.toml(idle=True, timeout_seconds=10, batch_size=batch_size)
               if imap is not None else
               '[imap]\nhost = "127.0.0.1"\nport = 1\nsecurity = "none"\nidle = true\n'
               f"timeout_seconds = 10\nbatch_size = {batch_size}\n")
    text = f"""\
[organiser]
address = {q(INBOX)}
staff_address = {q(STAFF)}

{mailbox}
{sink.toml(timeout_seconds=10, connections=connections, messages_per_minute=per_minute)}
[store]
url = {q(url)}

[paths]
schedules = {q(str(schedules or ROOT / "schedules"))}
templates = {q(str(ROOT / "templates"))}
packs = {q(str(ROOT))}

[log]
format = "json"

[workers]
processes = 0

[cluster]
lease_seconds = {lease}
renew_seconds = {renew}
"""
    path = folder / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


class Process:
    """One running mailer command and its log (stdout and stderr together)."""

    def __init__(self, name: str, process: subprocess.Popen[bytes], log: Path) -> None:
        self.name = name
        self.process = process
        self.log = log

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def events(self) -> list[dict[str, Any]]:
        """The JSON log lines so far."""
        out = []
        for line in self.output().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def logged(self, event: str) -> bool:
        return any(e.get("event") == event for e in self.events())

    def wait(self, timeout: float = 60.0) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.name} still running after {timeout} s:\n{self.output()[-3000:]}")

    def alive(self) -> bool:
        return self.process.poll() is None


class Instances:
    """Starts mailer processes with one configuration; kills the survivors at the end."""

    def __init__(self, folder: Path, config: Path) -> None:
        self.folder = folder
        self.config = config
        self.started: list[Process] = []

    def start(self, *args: str, name: str | None = None) -> Process:
        number = len(self.started) + 1
        name = name or f"{args[0]}-{number}"
        log = self.folder / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen([*COMMAND, *args, "--config", str(self.config)],
                                       stdout=out, stderr=subprocess.STDOUT, cwd=self.folder,
                                       env={**os.environ, "PYTHONUNBUFFERED": "1"})
        started = Process(name, process, log)
        self.started.append(started)
        return started

    def daemon(self, name: str | None = None, timeout: float = 30.0) -> Process:
        """``mailer run``, once it logged that it runs."""
        started = self.start("run", name=name)
        deadline = time.monotonic() + timeout
        while not started.logged("mailer running"):
            if not started.alive() or time.monotonic() > deadline:
                pytest.fail(f"{started.name} did not start:\n{started.output()[-3000:]}")
            time.sleep(0.05)
        return started

    def status(self) -> dict[str, Any]:
        """``mailer status --json``, which must exit 0."""
        result = subprocess.run([*COMMAND, "status", "--json", "--config", str(self.config)],
                                capture_output=True, cwd=self.folder, timeout=60)
        assert result.returncode == 0, result.stderr.decode(errors="replace")
        return json.loads(result.stdout)

    def close(self) -> None:
        for started in self.started:
            if started.alive():
                started.process.send_signal(signal.SIGKILL)
                started.process.wait(10)


@contextmanager
def instances(folder: Path, config: Path) -> Iterator[Instances]:
    group = Instances(folder, config)
    try:
        yield group
    finally:
        group.close()


# --- the store ----------------------------------------------------------------------------

def enqueue_reminders(url: str, count: int, event_id: str = "africa-fr",
                      due: datetime = NOW) -> None:
    """``count`` reminders for ``event_id`` due at ``due``, straight into the outbox."""
    rows = [Outgoing(key=outbox_key(Kind.REMINDER, f"p{i}@gouv.sn", event_id, 0, "1d"),
                     kind=Kind.REMINDER, recipient=f"p{i}@gouv.sn", language="fr",
                     event_id=event_id, name=f"P {i}", country="SN", due_at=due)
            for i in range(count)]
    st = store.Store(url)
    st.migrate()
    try:
        with st.transaction() as session:
            store.enqueue(session, rows, now=due, domain="secretariat.example")
    finally:
        st.close()


def outbox(url: str) -> list[tuple[str, str, str | None]]:
    """(message_id, status, claimed_by) of every outbox row."""
    st = store.Store(url)
    try:
        with st.transaction() as session:
            return [(r.message_id, r.status, r.claimed_by)
                    for r in session.scalars(select(store.OutboxRow))]
    finally:
        st.close()


def leader(url: str) -> str | None:
    """The instance id that holds the leader's lease (expired or not)."""
    st = store.Store(url)
    try:
        with st.transaction() as session:
            found = claims.lease_of(session, claims.LEADER)
            return None if found is None else found.holder
    finally:
        st.close()


def inbound_handled(url: str) -> int:
    """How many inbound messages the store records as handled."""
    st = store.Store(url)
    try:
        with st.transaction() as session:
            return len(session.scalars(select(store.Inbound.id)
                                       .where(store.Inbound.outcome == "handled")).all())
    finally:
        st.close()


def registrations(url: str) -> list[tuple[str, str, str, str | None]]:
    """(event, email, status, country) of every registration, in waiting-list order."""
    st = store.Store(url)
    try:
        with st.transaction() as session:
            return [(r.event_id, r.email, r.status, r.country)
                    for r in store.all_registrations(session)]
    finally:
        st.close()


# --- the sink -------------------------------------------------------------------------------

def received(sink: SmtpSink) -> Counter[str]:
    """How many times the sink received each Message-ID."""
    return Counter(str(m.message()["Message-ID"]) for m in sink.messages)


def wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def worst_excess(times: list[float], per_minute: float) -> float:
    """The most messages any window of the receive times held beyond what the rate allows
    in it (``rate x its length``)."""
    rate = per_minute / 60.0
    ordered = sorted(times)
    worst = 0.0
    for i, start in enumerate(ordered):
        for j in range(i, len(ordered)):
            worst = max(worst, (j - i + 1) - rate * (ordered[j] - start))
    return worst


# --- a wave of replies for the live event --------------------------------------------------

def registration(n: int, country: str, event_id: str) -> tuple[str, bytes]:
    """Participant ``n`` of ``country`` (SN or GH) registering: (address, message)."""
    from tests.test_series import reply

    domain = {"SN": "justice.gouv.sn.example", "GH": "mfa.gov.gh.example"}[country]
    address = f"delegate{n}@{domain}"
    name, lang = {"SN": ("Sénégal", "fr"), "GH": ("Ghana", "en")}[country]
    return address, reply(address, f"Delegate {n}", name, lang, event_id,
                          datetime.now(timezone.utc))


def cancellation(address: str, n: int, event_id: str) -> bytes:
    """``address`` cancelling its registration."""
    return (f"From: {address}\r\nTo: webinars+{event_id}@secretariat.example\r\n"
            f"Subject: Re: [{event_id}]\r\nMessage-ID: <cancel-{n}-{address}>\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n\r\n"
            "Please cancel my registration.\r\n").encode()


def decided_alone(schedules: Path, messages: list[bytes], folder: Path
                  ) -> list[tuple[str, str, str, str | None]]:
    """What one process decides from ``messages`` in this order (a fresh SQLite store): the
    registrations, as ``registrations`` gives them."""
    from mailer.handling import Policy, handle
    from mailer.schedule import load_catalog

    url = f"sqlite:///{folder}/alone.db"
    st = store.Store(url)
    st.migrate()
    catalog = load_catalog(schedules)
    policy = Policy(inbox_address=INBOX, staff_address=STAFF, domain="secretariat.example")
    try:
        for raw in messages:
            assert handle(st, catalog, raw, now=datetime.now(timezone.utc),
                          policy=policy).outcome == "handled"
    finally:
        st.close()
    return registrations(url)
