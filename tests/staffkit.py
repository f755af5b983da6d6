"""A secretariat's desk for the staff tests: a project folder with its config.toml (a real
store, SQLite or PostgreSQL, and a real SMTP sink), the `mailer` command line, and replies
handled as the daemon handles them."""

from __future__ import annotations

import email
import email.policy
import json
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result
from sqlalchemy import LargeBinary, select

from mailer import store
from mailer.cli import cli
from mailer.config import load_settings
from mailer.handling import Handled, Policy, handle
from mailer.schedule import Catalog, load_catalog
from mailer.staff.replies_check import policy_for
from tests.builders import write_schedule
from tests.servers.imap import ImapServer
from tests.servers.smtp import SmtpSink

ROOT = Path(__file__).resolve().parent.parent
INBOX = "webinars@example.org"
STAFF = "staff@example.org"
SECRET = "a-test-secret-never-used-for-real"
NOW = "2020-06-20T12:00Z"
MOMENT = datetime(2020, 6, 20, 12, 0, tzinfo=timezone.utc)


def config_text(url: str, sink: SmtpSink, folder: Path, *, digest: bool = False,
                extra: str = "", imap: ImapServer | None = None) -> str:
    """A config.toml for the project; ``extra`` lines go in its [staff] section."""
    q = json.dumps
    inbox = imap.toml(timeout_seconds=10) if imap else """\
[imap]
host = "127.0.0.1"
port = 1
security = "none"
timeout_seconds = 2
"""
    return f"""\
[organiser]
name = "Cybercrime Programme Office"
address = {q(INBOX)}
staff_address = {q(STAFF)}

{sink.toml(timeout_seconds=5, messages_per_minute=6000)}
{inbox}
[store]
url = {q(url)}

[paths]
schedules = {q(str(folder / "schedules"))}
templates = {q(str(ROOT / "templates"))}
packs = {q(str(ROOT))}

[staff]
digest = {"true" if digest else "false"}
secret = {q(SECRET)}
{extra}"""


@dataclass
class Office:
    """One project: its folder, config, store URL, SMTP sink and schedules."""

    folder: Path
    url: str
    sink: SmtpSink
    catalog: Catalog

    @property
    def config(self) -> Path:
        return self.folder / "config.toml"

    def mailer(self, *args: str) -> Result:
        """`mailer --config CONFIG ARGS...`, in this process."""
        return CliRunner().invoke(cli, ["--config", str(self.config), *args], obj={},
                                  catch_exceptions=False)

    def policy(self) -> Policy:
        return policy_for(load_settings(self.config))

    def reply(self, raw: bytes, now: datetime = MOMENT, **policy: Any) -> Handled:
        """Handle one inbound message exactly as the daemon does (``policy``: changes to the
        daemon's policy, e.g. ``max_bytes``)."""
        st = store.Store(self.url)
        try:
            return handle(st, self.catalog, raw, now=now,
                          policy=replace(self.policy(), **policy))
        finally:
            st.close()

    def drain(self, now: str = NOW) -> Result:
        """`mailer once --no-read`: plan and send what is due (the answers)."""
        result = self.mailer("once", "--no-read", "--now", now)
        assert result.exit_code == 0, result.output
        return result

    def sent(self) -> list[EmailMessage]:
        return [m.message() for m in self.sink.messages]

    def sent_to(self, address: str) -> list[tuple[str, EmailMessage]]:
        """(kind, message) of every message the sink got for ``address``, in the order they
        were queued (the outbox's; two connections deliver them in either order)."""
        queued = {r.message_id: r.id for r in self.rows(store.OutboxRow)}
        mine = [m for m in self.sent()
                if m["To"].addresses[0].addr_spec.lower() == address.lower()]
        mine.sort(key=lambda m: queued.get(str(m["Message-ID"]), 0))
        return [(str(m["X-Mailer-Kind"]), m) for m in mine]

    def rows(self, model: type) -> list[Any]:
        st = store.Store(self.url)
        try:
            with st.transaction() as session:
                return list(session.scalars(select(model)))
        finally:
            st.close()

    def registration(self, email_address: str, event_id: str = "africa-fr") -> Any:
        found = [r for r in self.rows(store.Registration)
                 if r.email == email_address and r.event_id == event_id]
        return found[0] if found else None

    def everything(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table, to prove a command changed nothing."""
        st = store.Store(self.url)
        try:
            with st.engine.connect() as conn:
                return {t.name: sorted(tuple(str(v) for v in row)
                                       for row in conn.execute(t.select()))
                        for t in store.Base.metadata.sorted_tables}
        finally:
            st.close()

    def tables_naming(self, *needles: str) -> dict[str, list[str]]:
        """Every table cell (text, JSON or bytes) that holds one of ``needles``, any case."""
        wanted = [n.lower() for n in needles]
        found: dict[str, list[str]] = {}
        st = store.Store(self.url)
        try:
            with st.engine.connect() as conn:
                for table in store.Base.metadata.sorted_tables:
                    for row in conn.execute(table.select()):
                        for column, value in zip(table.columns, row, strict=True):
                            if value is None:
                                continue
                            if isinstance(column.type, LargeBinary):
                                text = bytes(value).decode("utf-8", "replace")
                            elif isinstance(value, dict | list):
                                text = json.dumps(value, ensure_ascii=False)
                            else:
                                text = str(value)
                            if any(n in text.lower() for n in wanted):
                                found.setdefault(table.name, []).append(
                                    f"{column.name}={text[:120]}")
        finally:
            st.close()
        return found


def make_office(folder: Path, url: str, sink: SmtpSink, **config: Any) -> Office:
    write_schedule(folder)
    st = store.Store(url)
    try:
        st.migrate()
    finally:
        st.close()
    (folder / "config.toml").write_text(config_text(url, sink, folder, **config),
                                        encoding="utf-8")
    return Office(folder, url, sink, load_catalog(folder / "schedules"))


def registration_reply(sender: str, name: str, country: str, *, mid: str,
                       event_id: str = "africa-fr", extra: str = "") -> bytes:
    """A participant's reply registering themself for an event."""
    return (f"From: {name} <{sender}>\r\nTo: webinars+{event_id}@example.org\r\n"
            f"Subject: Re: Invitation [{event_id}]\r\nMessage-ID: <{mid}@client.example>\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n\r\n"
            f"Name: {name}\r\nCountry: {country}\r\nPosition: Prosecutor\r\n"
            f"Organisation: Ministry of Justice\r\n{extra}").encode()


def question(sender: str, *, mid: str, text: str = "Will the slides be shared afterwards?"
             ) -> bytes:
    return (f"From: {sender}\r\nTo: webinars+africa-fr@example.org\r\n"
            f"Subject: Question about the slides [africa-fr]\r\n"
            f"Message-ID: <{mid}@client.example>\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n\r\n"
            f"Hello,\r\n\r\n{text}\r\n\r\nRegards\r\n").encode()


def parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def body(msg: EmailMessage) -> str:
    part = msg.get_body(("plain",))
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n")
