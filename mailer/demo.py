"""The demo: ``mailer demo`` runs the whole flow on this machine with embedded mail servers.

An in-process pymap (IMAP, in-memory) holds the replies, an aiosmtpd server writes every
message the mailer sends to ``<folder>/sent/``, and four passes of ``run_once`` travel
through the shipped 2020 series: invitations, replies understood, the staff's digest and
their decision by replying to it, packs and reminders, certificates. Nothing leaves
127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import json
import re
import shutil
import sys
import threading
from argparse import Namespace
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from pydantic import SecretStr
from sqlalchemy import create_engine, select

import mailer
from mailer.config import Imap, Log, Organiser, Paths, Settings, Smtp, Staff, Store
from mailer.daemon import PassReport, run_once
from mailer.errors import UsageError
from mailer.handling import Handled
from mailer.inbox import Inbox, message_id_of
from mailer.store import OutboxRow

ORGANISER = Organiser(name="Cybercrime Programme Office", address="webinars@secretariat.example",
                      staff_address="staff@secretariat.example")
# The demo mailbox lives in memory on 127.0.0.1 for the demo's few seconds: not a secret.
DEMO_USER = "webinars"
DEMO_PASSWORD = "demo-only-password"
# Signs the digest's reply address, so staff can act by replying to it (staff.secret).
DEMO_STAFF_SECRET = "demo-only-digest-secret"
HOST = "127.0.0.1"
DEMO_DATA = Path(__file__).parent / "demo_data"
CONTACTS = "contacts/cyber-cj-2020.csv"

# The story's moments, on the shipped cyber-cj-2020 series.
INVITATIONS_AT = datetime(2020, 6, 3, 8, 5, tzinfo=timezone.utc)
REPLIES_AT = datetime(2020, 6, 23, 12, 0, tzinfo=timezone.utc)
STAFF_REPLY_AT = datetime(2020, 6, 23, 14, 0, tzinfo=timezone.utc)
PACKS_AT = datetime(2020, 7, 6, 8, 5, tzinfo=timezone.utc)
CERTIFICATES_AT = datetime(2020, 7, 9, 10, 0, tzinfo=timezone.utc)

Say = Callable[[str], None]
KindOf = Callable[[str | None], tuple[str, str | None]]


# --- where the shipped files are -------------------------------------------------------------


def find_root(candidates: Iterable[Path] | None = None) -> Path:
    """The folder holding the shipped schedules/, templates/ and packs/, or UsageError."""
    if candidates is None:
        candidates = (Path(mailer.__file__).resolve().parent.parent, Path.cwd())
    tried = []
    for base in candidates:
        if (base / "schedules").is_dir() and (base / "templates").is_dir():
            return base
        tried.append(str(base))
    raise UsageError("the demo needs the repository's schedules/ and templates/ folders; "
                     f"none found in {' or '.join(tried)}: run it from the repository")


# --- the embedded IMAP server ----------------------------------------------------------------


class EmbeddedImap:
    """pymap's in-memory ``dict`` backend, served from a thread of its own (no TLS)."""

    def __init__(self, user: str, password: str) -> None:
        self.user, self.password = user, password
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="demo-imap",
                                        daemon=True)
        self._server: asyncio.AbstractServer | None = None

    def start(self) -> int:
        """Start listening on a free port of 127.0.0.1 and return it."""
        self._thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(15)
        return self.port

    async def _serve(self) -> int:
        from proxyprotocol.reader import ProxyProtocolReader
        from pymap.backend.dict import DictBackend
        from pymap.imap import IMAPServer

        # The arguments pymap's own command line would give (`pymap --no-tls dict ...`).
        args = Namespace(host=HOST, port=0, debug=False, cert=None, key=None, tls=False,
                         passlib_cfg=None, proxy_protocol=None, inherited_sockets=None,
                         demo_data=False, demo_user=self.user, demo_password=self.password)
        backend, config = await DictBackend.init(args)
        config.apply_context()
        # pymap's IMAPService binds a fixed port; serving its IMAPServer ourselves lets the
        # system pick a free one, with no race against other programs.
        handler = ProxyProtocolReader(config.proxy_protocol).get_callback(
            IMAPServer(backend.login, config))
        self._server = await asyncio.start_server(handler, host=HOST, port=0)
        return int(self._server.sockets[0].getsockname()[1])

    def stop(self) -> None:
        """Close the listener and every connection, then end the thread."""
        if not self._thread.is_alive():
            self._loop.close()
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            current = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not current]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


# --- the embedded SMTP server ----------------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    """One message the SMTP server received, and the file it wrote."""

    number: int
    kind: str
    event_id: str | None
    recipient: str
    path: Path


def file_name(number: int, kind: str, recipient: str) -> str:
    """``NNN-<kind>-<recipient>.eml``, with anything unsafe in a file name replaced."""
    safe = re.sub(r"[^A-Za-z0-9@._+-]", "_", recipient)[:120]
    return f"{number:03d}-{kind}-{safe}.eml"


class SentFolder:
    """An aiosmtpd handler that writes each received message to ``folder`` as a .eml file."""

    def __init__(self, folder: Path, kind_of: KindOf) -> None:
        self.folder = folder
        self.kind_of = kind_of
        self._lock = threading.Lock()
        self._sent: list[Sent] = []

    @property
    def sent(self) -> list[Sent]:
        with self._lock:
            return list(self._sent)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        kind, event_id = self.kind_of(message_id_of(content))
        recipients = envelope.rcpt_tos or ["unknown"]
        with self._lock:
            number = len(self._sent) + 1
            path = self.folder / file_name(number, kind, recipients[0])
            path.write_bytes(content)
            self._sent.append(Sent(number, kind, event_id, recipients[0].lower(), path))
        return f"250 2.0.0 OK saved as {path.name}"


class OutboxKinds:
    """Looks up a sent message's kind and event in the outbox by its Message-ID (read-only)."""

    def __init__(self, url: str) -> None:
        # A plain engine of our own: a read in WAL mode never waits for the sender's writes,
        # so the SMTP server cannot stall the drain it is answering.
        self.engine = create_engine(url)

    def __call__(self, message_id: str | None) -> tuple[str, str | None]:
        if message_id:
            with contextlib.suppress(Exception), self.engine.connect() as conn:
                row = conn.execute(select(OutboxRow.kind, OutboxRow.event_id).where(
                    OutboxRow.message_id == message_id)).first()
                if row is not None:
                    return str(row.kind), row.event_id
        return "message", None

    def close(self) -> None:
        self.engine.dispose()


class _FreePortController(Controller):
    """A Controller on port 0 that reads back the port the system chose."""

    def _trigger_server(self) -> None:
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class EmbeddedSmtp:
    """aiosmtpd on a free port of 127.0.0.1: no TLS, no login, every message to a file."""

    def __init__(self, folder: Path, kind_of: KindOf) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.handler = SentFolder(folder, kind_of)
        self._controller = _FreePortController(self.handler, hostname=HOST, port=0,
                                               ready_timeout=10)

    @property
    def port(self) -> int:
        return int(self._controller.port)

    def start(self) -> int:
        self._controller.start()
        return self.port

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._controller.stop()


# --- settings ----------------------------------------------------------------------------------


def demo_settings(folder: Path, root: Path, imap_port: int, smtp_port: int) -> Settings:
    """The demo's configuration, built in code: the embedded servers and the shipped files."""
    return Settings(
        organiser=ORGANISER,
        imap=Imap(host=HOST, port=imap_port, security="none", username=DEMO_USER,
                  password=SecretStr(DEMO_PASSWORD), handled_folder="Handled",
                  timeout_seconds=10.0),
        # No rate limit worth the name: the embedded server takes mail as fast as we send it.
        smtp=Smtp(host=HOST, port=smtp_port, security="none", timeout_seconds=10.0,
                  messages_per_minute=60_000, max_attempts=2),
        store=Store(url=f"sqlite:///{folder / 'mailer.db'}"),
        staff=Staff(secret=SecretStr(DEMO_STAFF_SECRET)),
        paths=Paths(schedules=root / "schedules", templates=root / "templates", packs=root),
        log=Log(format="console", level="WARNING"),
    )


def config_toml(settings: Settings) -> str:
    """A config.toml for looking at the demo's database afterwards (`mailer registrations`)."""
    def q(value: object) -> str:
        # A JSON string is a valid TOML basic string (same escapes).
        return json.dumps(str(value), ensure_ascii=False)

    org, paths = settings.organiser, settings.paths
    return "\n".join([
        "# Written by `mailer demo`: the demo's database and the shipped schedules.",
        "# The demo's mail servers are gone; `mailer registrations` and `mailer plan` work.",
        "[organiser]",
        f"name = {q(org.name)}",
        f"address = {q(org.address)}",
        f"staff_address = {q(org.staff_address)}",
        "",
        "[store]",
        f"url = {q(settings.store.url)}",
        "",
        "[paths]",
        f"schedules = {q(paths.schedules)}",
        f"templates = {q(paths.templates)}",
        f"packs = {q(paths.packs)}",
        "",
        "[log]",
        'level = "WARNING"',
        "",
    ])


# --- what the demo prints ----------------------------------------------------------------------


Words = Callable[[str], str]


def subject_words(templates: Path) -> Words:
    """A message kind as participants read it: the words its English subject line starts
    with ("acknowledgement" -> "Registration confirmed"), from the templates themselves."""
    cache: dict[str, str] = {}

    def words(kind: str) -> str:
        if kind not in cache:
            folder = "staff" if kind.startswith("staff_") else "en"
            try:
                text = (templates / folder / f"{kind}.subject.txt").read_text(encoding="utf-8")
            except OSError:
                text = kind
            if text.startswith("{%") and "{% else %}" in text:
                # "{% if moved_to_event %}Registration moved...{% else %}Cancellation
                # confirmed...": the usual case is the last branch.
                text = text.rpartition("{% else %}")[2]
            fixed = re.split(r"{[{%]", text, maxsplit=1)[0].strip()
            fixed = re.sub(r"(?:\s+(?:for|from)|[:,])$", "", fixed).strip()
            cache[kind] = fixed or kind
        return cache[kind]

    return words


def kinds_line(sent: Sequence[Sent], words: Words = str) -> str:
    """``3 “Registration confirmed”, 1 “Waiting list”`` (in order of first appearance), or
    ``nothing``."""
    counts = Counter(s.kind for s in sent)
    return ", ".join(f"{n} “{words(kind)}”" for kind, n in counts.items()) or "nothing"


def kinds_per_event_line(sent: Sequence[Sent], words: Words = str) -> str:
    """``5 “Reminder” for africa-fr, 5 “Information pack” for africa-fr``, or ``nothing``."""
    counts = Counter((s.kind, s.event_id) for s in sent)
    return ", ".join(f"{n} “{words(kind)}”" + (f" for {event}" if event else "")
                     for (kind, event), n in counts.items()) or "nothing"


def invitations_line(sent: Sequence[Sent], series_of: Callable[[str | None], str]) -> str:
    """``23 invitations to 13 focal points for cyber-cj-2020`` (per series), or ``""``."""
    invitations = [s for s in sent if s.kind == "invitation"]
    parts = []
    for series in sorted({series_of(s.event_id) for s in invitations}):
        mine = [s for s in invitations if series_of(s.event_id) == series]
        people = len({s.recipient for s in mine})
        parts.append(f"{len(mine)} invitations to {people} focal points for {series}")
    return "; ".join(parts)


def outcome_line(name: str, outcome: Handled | None) -> str:
    """One reply and what the mailer made of it: file, intent, event, outcome."""
    if outcome is None:
        return f"  {name:<32} not read"
    intent = outcome.intent.kind.value if outcome.intent else "-"
    event = (outcome.decision.event_id if outcome.decision and outcome.decision.event_id
             else outcome.intent.event_id if outcome.intent else None) or "-"
    if outcome.outcome == "handled":
        what = outcome.decision.summary if outcome.decision else outcome.reason
    else:
        what = f"{outcome.outcome}: {outcome.reason}"
    return f"  {name:<32} {intent:<20} {event:<16} {what}"


def heading(number: int, when: datetime, title: str) -> str:
    return f"\n{number}. {when:%d %B %Y, %H:%M} UTC: {title}"


def indent(text: str, prefix: str = "  ") -> str:
    return "\n".join(prefix + line if line else line for line in text.splitlines())


# --- the story ---------------------------------------------------------------------------------


class Demo:
    """The running demo: servers, settings, and the sent messages seen so far."""

    def __init__(self, settings: Settings, smtp: EmbeddedSmtp, say: Say) -> None:
        from mailer.views import load

        self.settings = settings
        self.smtp = smtp
        self.say = say
        self.seen = 0
        self.catalog = load(settings)
        self.words = subject_words(Path(settings.paths.templates))

    def series_of(self, event_id: str | None) -> str:
        event = self.catalog.events.get(event_id or "")
        return event.series.id if event else "no series"

    def run_pass(self, now: datetime) -> tuple[PassReport, list[Sent]]:
        """One ``mailer once --now`` pass; returns its report and the messages it sent."""
        report = asyncio.run(run_once(self.settings, now=now))
        sent = self.smtp.handler.sent
        new, self.seen = sent[self.seen:], len(sent)
        if report.drain.failed or report.drain.retried:
            self.say(f"  ! {report.drain.failed} failed, {report.drain.retried} to retry: "
                     + "; ".join(report.drain.errors[:3]))
        return report, new

    def invitations(self) -> None:
        self.say(heading(1, INVITATIONS_AT, "registration opens"))
        _, sent = self.run_pass(INVITATIONS_AT)
        self.say(f"  {invitations_line(sent, self.series_of) or 'no invitations'} "
                 f"(one per event their country is invited to; from {CONTACTS})")
        others = [s for s in sent if s.kind != "invitation"]
        if others:
            self.say(f"  also sent: {kinds_line(others, self.words)}")

    def replies(self) -> None:
        self.say(heading(2, REPLIES_AT, "the replies are read and answered"))
        files = sorted(DEMO_DATA.glob("*.eml"))
        with Inbox(self.settings.imap) as inbox:
            for path in files:
                inbox.append(path.read_bytes())
        self.say(f"  {len(files)} replies arrive in the inbox (mailer/demo_data/*.eml): "
                 "Outlook, Gmail, iPhone; English, French, Spanish; an out-of-office, a bounce")
        report, sent = self.run_pass(REPLIES_AT)
        by_id = {o.message_id: o for o in report.outcomes}
        self.say("\n  what each reply was understood as (file, intent, event, outcome):")
        for path in files:
            self.say(outcome_line(path.stem, by_id.get(message_id_of(path.read_bytes()) or "")))
        from mailer.views import registrations_view

        table = registrations_view(self.settings, None, "table")
        self.say("\n  registrations per event and country:")
        self.say(indent(str(table), "  "))
        self.say(f"\n  sent in this pass: {kinds_line(sent, self.words)}")
        invited = invitations_line(sent, self.series_of)
        if invited:
            self.say(f"  (the invitations: {invited}, whose registration opened meanwhile)")

    def staff_decide(self) -> None:
        """The digest made at the replies' pass waits in the staff's mailbox; staff approve
        the registration in review by replying to it, and the participant is answered."""
        self.say(heading(3, STAFF_REPLY_AT, "staff decide by replying to the daily digest"))
        digests = [s for s in self.smtp.handler.sent if s.kind == "staff_digest"]
        if not digests:
            self.say("  no digest came")
            return
        path = digests[-1].path
        digest = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        self.say(f"  in the staff's mailbox ({digests[-1].recipient}), {path.name}:")
        self.say(f"    “{digest['Subject']}”")
        text = _plain(digest)
        refs = re.findall(r"^(R\d+)  ", text, flags=re.MULTILINE)
        waiting = text.partition("WAITING FOR A DECISION")[2].split("\n\n")[1:2]
        self.say(indent("\n".join(waiting), "    "))
        if not refs or not digest["Reply-To"]:
            self.say("  nothing waits for a decision")
            return
        command = f"approve {refs[0]}"
        reply_to = digest["Reply-To"].addresses[0].addr_spec
        quoted = "\n".join(f"> {line}" for line in text.splitlines())
        raw = (f"From: Programme Assistant <{digests[-1].recipient}>\r\n"
               f"To: {reply_to}\r\nSubject: Re: {digest['Subject']}\r\n"
               f"Date: {STAFF_REPLY_AT:%a, %d %b %Y %H:%M:%S +0000}\r\n"
               "Message-ID: <demo-staff-reply@secretariat.example>\r\n"
               f"In-Reply-To: {digest['Message-ID']}\r\nReferences: {digest['Message-ID']}\r\n"
               "Content-Type: text/plain; charset=utf-8\r\n\r\n"
               f"{command}\r\n\r\nOn 23 June 2020, the webinar mailer wrote:\r\n{quoted}\r\n")
        with Inbox(self.settings.imap) as inbox:
            inbox.append(raw.replace("\r\n", "\n").replace("\n", "\r\n").encode())
        self.say(f"  staff reply “{command}” to the digest's signed address ({reply_to}); "
                 "from any other address, or to another, it would be refused and reported")
        _, sent = self.run_pass(STAFF_REPLY_AT)
        for s in sent:
            self.say(f"  sent: “{self.words(s.kind)}” to {s.recipient} ({s.path.name})")
            if s.kind == "staff_done":
                done = _plain(email.message_from_bytes(s.path.read_bytes(),
                                                       policy=email.policy.default))
                self.say(indent(done.partition("\n\n")[2].split("\n\n")[0], "    "))

    def packs(self) -> None:
        self.say(heading(4, PACKS_AT, "information packs and reminders before the Africa "
                                      "webinars"))
        _, sent = self.run_pass(PACKS_AT)
        self.say(f"  sent: {kinds_per_event_line(sent, self.words)}")
        for s in sent:
            if s.kind == "pack":
                self.say(f"  for example {s.path.name}: {attachment_names(s.path)}")
                break

    def certificates(self) -> None:
        self.say(heading(5, CERTIFICATES_AT, "after the French webinar for Africa"))
        _, sent = self.run_pass(CERTIFICATES_AT)
        self.say(f"  sent: {kinds_per_event_line(sent, self.words)}")
        for s in sent:
            if s.kind == "certificate":
                # Awa Diop asked for hers in her registration (02-senegal-gmail-fr).
                self.say(f"  certificate of participation to {s.recipient}, who asked for "
                         f"one: {attachment_names(s.path)}")


def _plain(msg: email.message.EmailMessage) -> str:
    body = msg.get_body(("plain",))
    return body.get_content().replace("\r\n", "\n") if body is not None else ""


def attachment_names(path: Path) -> str:
    """The file names attached to a saved message, comma-separated."""
    msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    names = [part.get_filename() for part in msg.walk() if part.get_filename()]
    return ", ".join(str(n) for n in names) or "no attachments"


def fresh_folder(folder: Path) -> None:
    """Remove what an earlier demo left in ``folder`` (only the demo's own files)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("mailer.db", "mailer.db-wal", "mailer.db-shm", "config.toml"):
        (folder / name).unlink(missing_ok=True)
    sent = folder / "sent"
    if sent.is_dir():
        for old in sent.glob("*.eml"):
            old.unlink()


def run_demo(folder: Path, *, say: Say = print) -> None:
    """Run the whole flow with embedded IMAP and SMTP servers; files go to ``folder``."""
    from mailer.logs import configure

    configure("console", "WARNING")
    root = find_root()
    folder = folder.resolve()
    fresh_folder(folder)
    say(f"The webinar mailer on the shipped schedules ({root / 'schedules'}),\n"
        f"with an embedded IMAP server (pymap) and SMTP server (aiosmtpd) on {HOST}.")
    imap = EmbeddedImap(DEMO_USER, DEMO_PASSWORD)
    kinds = OutboxKinds(f"sqlite:///{folder / 'mailer.db'}")
    smtp = EmbeddedSmtp(folder / "sent", kinds)
    try:
        settings = demo_settings(folder, root, imap.start(), smtp.start())
        (folder / "config.toml").write_text(config_toml(settings), encoding="utf-8")
        demo = Demo(settings, smtp, say)
        demo.invitations()
        demo.replies()
        demo.staff_decide()
        demo.packs()
        demo.certificates()
    finally:
        smtp.stop()
        imap.stop()
        kinds.close()
    say(f"\n{len(smtp.handler.sent)} messages are in {folder / 'sent'}: open them in any "
        "mail client.")
    say(f"Look at the database: {mailer_command()} registrations --config "
        f"{folder / 'config.toml'}")


def mailer_command() -> str:
    """The ``mailer`` command as it can be typed here: after ``./dev demo`` it is
    ``.venv/bin/mailer``, which no PATH names, so a bare "mailer" was "command not found"."""
    installed = Path(sys.executable).parent / "mailer"
    if not installed.exists() or shutil.which("mailer") == str(installed):
        return "mailer"
    try:
        return str(installed.relative_to(Path.cwd()))
    except ValueError:
        return str(installed)

