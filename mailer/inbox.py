"""The IMAP inbox: reads new replies by UID, marks them handled or quarantined, waits for more.

Modelled on imapclient: :class:`Inbox` has one method per thing the daemon asks of the server
and returns Python values; what is read out of raw server answers goes through small pure
functions (``message_id_of``, ``new_uids``, ``arrived``...) tested with byte literals. Every
imapclient, TLS or socket failure becomes :class:`mailer.errors.InboxError`, whose message
never contains the password.
"""

from __future__ import annotations

import asyncio
import imaplib
import re
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import compat32
from types import TracebackType
from typing import Any, TypeVar

import structlog
from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from mailer.config import Imap
from mailer.errors import InboxError

HANDLED = "$MailerHandled"
QUARANTINED = "$MailerQuarantined"
# RFC 2177: servers may drop an IDLE after 30 minutes; 25 keeps a wide margin.
IDLE_MAX_SECONDS = 25 * 60
# Bodies are fetched in groups of at most this many bytes, so a batch of large messages
# never has to sit in memory (and in one server answer) all at once.
FETCH_BUDGET_BYTES = 32_000_000

_HEADER_END = re.compile(rb"\r?\n\r?\n")

log = structlog.get_logger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Cursor:
    """How far the inbox has been read: what the store remembers between passes."""

    folder: str
    uidvalidity: int
    last_uid: int


@dataclass(frozen=True)
class Fetched:
    """One message read from the inbox; ``raw`` is empty when it exceeded the size limit."""

    folder: str
    uidvalidity: int
    uid: int
    raw: bytes
    message_id: str | None
    size: int

    @property
    def oversize(self) -> bool:
        """True when the message was too large to download (the caller quarantines it)."""
        return not self.raw and self.size > 0


# --- pure parsers and decisions -------------------------------------------------------------


def message_id_of(raw: bytes) -> str | None:
    """The Message-ID of a message (``<...>``, unfolded), from its header bytes, or None."""
    # Only the header block is parsed (a body may be megabytes); compat32 never raises on a
    # malformed header: hostile mail must not stop the reader.
    head = _HEADER_END.split(raw, maxsplit=1)[0]
    headers = BytesHeaderParser(policy=compat32).parsebytes(head, headersonly=True)
    value = headers.get("Message-ID")
    if value is None:
        return None
    text = " ".join(str(value).split())
    start = text.find("<")
    end = text.find(">", start + 1)
    if start != -1 and end != -1:
        return text[start:end + 1]
    return text or None


def start_cursor(cursor: Cursor | None, folder: str, uidvalidity: int) -> Cursor:
    """The cursor to read from: the given one, or UID 0 when the folder or UIDVALIDITY changed.

    A new UIDVALIDITY means the server renumbered the folder, so old UIDs mean nothing; the
    caller recognises messages it already handled by their Message-ID.
    """
    if cursor is None or cursor.folder != folder or cursor.uidvalidity != uidvalidity:
        return Cursor(folder, uidvalidity, 0)
    return cursor


def search_criteria(last_uid: int, keywords: bool) -> list[str]:
    """The UID SEARCH for unread-by-us messages after ``last_uid``."""
    criteria = ["UID", f"{last_uid + 1}:*"]
    if keywords:
        criteria += ["NOT", "KEYWORD", HANDLED, "NOT", "KEYWORD", QUARANTINED]
    return criteria


def new_uids(found: Iterable[int], last_uid: int, batch_size: int) -> list[int]:
    """The first ``batch_size`` UIDs above ``last_uid``, in order.

    ``UID n:*`` always matches the folder's last message, even when its UID is below n
    (RFC 3501: ``*`` is the largest UID in use), so the range is checked again here.
    """
    return sorted({uid for uid in found if uid > last_uid})[:batch_size]


def keywords_allowed(permanent_flags: Iterable[bytes | str], keyword: str = HANDLED) -> bool:
    """Whether the folder stores our keyword, from the PERMANENTFLAGS of its SELECT answer."""
    flags = {_text(flag).lower() for flag in permanent_flags}
    return "\\*" in flags or keyword.lower() in flags


def arrived(responses: Iterable[Sequence[Any]]) -> bool:
    """Whether untagged responses (from IDLE or NOOP) announce a new message."""
    return any(len(r) >= 2 and isinstance(r[0], int) and r[1] in (b"EXISTS", b"RECENT")
               for r in responses)


def said_bye(responses: Iterable[Sequence[Any]]) -> bool:
    """Whether the server announced it is closing the connection (``* BYE``)."""
    return any(len(r) >= 1 and r[0] == b"BYE" for r in responses)


def appended_uid(response: bytes | str | None) -> int | None:
    """The UID from an APPEND answer's ``[APPENDUID validity uid]`` code (RFC 4315), if any."""
    words = _text(response or b"").replace("[", " ").replace("]", " ").split()
    for i, word in enumerate(words[:-2]):
        if word.upper() == "APPENDUID" and words[i + 2].isdigit():
            return int(words[i + 2])
    return None


def size_groups(sizes: Mapping[int, int], budget: int) -> list[list[int]]:
    """UIDs in order, grouped so each group's total size stays within ``budget`` (one at least)."""
    groups: list[list[int]] = []
    total = 0
    for uid in sorted(sizes):
        if groups and total + sizes[uid] <= budget:
            groups[-1].append(uid)
            total += sizes[uid]
        else:
            groups.append([uid])
            total = sizes[uid]
    return groups


def header_section(item: Mapping[bytes, Any]) -> bytes:
    """The bytes of a ``BODY[HEADER.FIELDS (...)]`` item in a FETCH answer (servers quote it
    differently, so the key is matched by prefix)."""
    for key, value in item.items():
        if isinstance(key, bytes) and key.upper().startswith(b"BODY[HEADER") and value:
            return bytes(value)
    return b""


def redact(text: str, secret: str | None) -> str:
    """``text`` with the secret replaced, for messages that might quote it back."""
    return text.replace(secret, "***") if secret else text


def _text(value: bytes | str) -> str:
    return value.decode("ascii", "replace") if isinstance(value, bytes) else value


# --- the connection -------------------------------------------------------------------------

# Errors after which the connection can no longer be trusted: it is dropped and reopened.
_DROPPED = (imaplib.IMAP4.abort, OSError, EOFError)


class Inbox:
    """A synchronous connection to the monitored folder (one thread at a time; see AsyncInbox)."""

    def __init__(self, settings: Imap) -> None:
        self.settings = settings
        self._client: IMAPClient | None = None
        self._capabilities: frozenset[str] = frozenset()
        self._keywords = True
        self._uidvalidity = 0
        self._folders: set[str] = set()
        # RLock: public methods call each other (append -> ensure folder) under the lock.
        self._lock = threading.RLock()
        # A socket pair, not an Event: a wait selects on it together with the server socket.
        self._wake: tuple[socket.socket, socket.socket] | None = None

    # - life cycle -

    def __enter__(self) -> Inbox:
        self.connect()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @property
    def connected(self) -> bool:
        """True while a logged-in connection is open (it may still have died unnoticed)."""
        return self._client is not None

    @property
    def capabilities(self) -> frozenset[str]:
        """The server's capabilities after login, upper case (``IDLE``, ``MOVE``...)."""
        return self._capabilities

    @property
    def keywords(self) -> bool:
        """Whether the server stores our keywords; without them only a handled_folder marks
        a message handled, and the caller's Message-ID check covers a lost cursor."""
        return self._keywords

    @property
    def uidvalidity(self) -> int:
        """The UIDVALIDITY of the folder at the last SELECT."""
        return self._uidvalidity

    def connect(self) -> None:
        """Open the connection, log in, read the capabilities and select the folder."""
        with self._lock:
            self._drop()
            s = self.settings
            secret = s.password.get_secret_value() if s.password else None
            if secret is None:
                raise InboxError(f"IMAP {s.username}@{s.host}: imap.password is not set")
            with self._errors("connect", drop=True):
                try:
                    self._open(secret)
                except BaseException:
                    self._drop()  # a half-open session (no TLS, no login, no folder) is useless
                    raise
            log.debug("inbox.connected", host=s.host, folder=s.folder,
                      uidvalidity=self._uidvalidity, keywords=self._keywords)

    def _open(self, secret: str) -> None:
        s = self.settings
        context = self._ssl_context()
        client = IMAPClient(s.host, s.port, ssl=s.security == "tls",
                            ssl_context=context, timeout=s.timeout_seconds)
        self._client = client
        # Keep-alive probes let the kernel notice a peer that vanished silently.
        client.socket().setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if s.security == "starttls":
            client.starttls(context)
        try:
            client.login(s.username, secret)
        except LoginError as exc:
            reason = redact(_text(exc.args[0] if exc.args else ""), secret)
            # imapclient gives str() of imaplib's bytes: "b'[AUTHENTICATIONFAILED] ...'".
            reason = re.sub(r"""^b(['"])(.*)\1$""", r"\2", reason)
            raise InboxError(
                f"IMAP login as {s.username} on {s.host}:{s.port} refused: {reason}") from None
        self._capabilities = frozenset(_text(c).upper() for c in client.capabilities())
        self._select(client)

    def close(self) -> None:
        """Log out and close; never raises (the connection may already be gone)."""
        with self._lock:
            wake, self._wake = self._wake, None
            for end in wake or ():
                end.close()
            client, self._client = self._client, None
            if client is None:
                return
            try:
                client.logout()
            except Exception:  # noqa: BLE001 - a dead connection has nothing left to say
                self._shutdown(client)

    def ensure_connected(self) -> None:
        """Check the connection with a NOOP and reopen it if it was dropped."""
        with self._lock:
            if self._client is not None:
                try:
                    self._client.noop()
                    return
                except _DROPPED + (imaplib.IMAP4.error,):
                    self._drop()
            self.connect()

    # - reading -

    def fetch_new(self, cursor: Cursor | None) -> tuple[Cursor, list[Fetched]]:
        """Messages after the cursor (at most batch_size, in UID order) and the cursor after them.

        Nothing is marked \\Seen (BODY.PEEK); messages flagged handled or quarantined are
        skipped; a message over max_message_bytes comes back with ``raw=b""``.
        """
        return self._run("fetch", lambda client: self._fetch_new(client, cursor))

    def _fetch_new(self, client: IMAPClient, cursor: Cursor | None) -> tuple[Cursor, list[Fetched]]:
        s = self.settings
        # Re-SELECT on every pass: it makes the server sync its view of the folder and
        # tells us a fresh UIDVALIDITY if someone re-created the folder meanwhile.
        self._select(client)
        start = start_cursor(cursor, s.folder, self._uidvalidity)
        found = client.search(search_criteria(start.last_uid, self._keywords))
        uids = new_uids(found, start.last_uid, s.batch_size)
        if not uids:
            return start, []
        sizes = {uid: int(item[b"RFC822.SIZE"])
                 for uid, item in client.fetch(uids, ["RFC822.SIZE"]).items()
                 if b"RFC822.SIZE" in item}
        small = {uid: size for uid, size in sizes.items() if size <= s.max_message_bytes}
        large = sorted(set(sizes) - set(small))
        raws: dict[int, bytes] = {}
        for group in size_groups(small, FETCH_BUDGET_BYTES):
            for uid, item in client.fetch(group, ["BODY.PEEK[]"]).items():
                if b"BODY[]" in item:
                    raws[uid] = bytes(item[b"BODY[]"])
        heads: dict[int, bytes] = {}
        if large:
            # Only the Message-ID of an oversize message is read, for the quarantine log.
            for uid, item in client.fetch(
                    large, ["BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"]).items():
                heads[uid] = header_section(item)
        fetched = []
        for uid in uids:
            if uid in raws:
                raw = raws[uid]
                fetched.append(Fetched(s.folder, start.uidvalidity, uid, raw,
                                       message_id_of(raw), sizes[uid]))
            elif uid in heads:
                fetched.append(Fetched(s.folder, start.uidvalidity, uid, b"",
                                       message_id_of(heads[uid]), sizes[uid]))
            # else: expunged between SEARCH and FETCH (staff deleted it): nothing to read.
        return Cursor(s.folder, start.uidvalidity, uids[-1]), fetched

    # - marking -

    def mark_handled(self, uids: Sequence[int]) -> None:
        """Flag the messages $MailerHandled and move them to handled_folder when it is set."""
        self._mark(uids, HANDLED, self.settings.handled_folder)

    def quarantine(self, uids: Sequence[int], reason: str) -> None:
        """Flag the messages $MailerQuarantined and move them to quarantine_folder when set."""
        log.warning("inbox.quarantine", uids=list(uids), reason=reason)
        self._mark(uids, QUARANTINED, self.settings.quarantine_folder)

    def _mark(self, uids: Sequence[int], keyword: str, folder: str | None) -> None:
        if not uids:
            return

        def mark(client: IMAPClient) -> None:
            if self._keywords:
                client.add_flags(list(uids), [keyword], silent=True)
            if folder:
                self._move(client, list(uids), folder)

        self._run("store", mark)

    def _move(self, client: IMAPClient, uids: list[int], folder: str) -> None:
        self._create_if_missing(client, folder)
        if "MOVE" in self._capabilities:
            client.move(uids, folder)
            return
        client.copy(uids, folder)
        client.add_flags(uids, [b"\\Deleted"], silent=True)
        if "UIDPLUS" in self._capabilities:
            client.uid_expunge(uids)
        else:
            # Without UIDPLUS, EXPUNGE also removes other messages someone flagged \Deleted:
            # that is what a mail client would do to them soon anyway.
            client.expunge()

    def append(self, raw: bytes, folder: str | None = None) -> int | None:
        """Store a message (tests, the demo); returns its UID when the server says it."""
        target = folder or self.settings.folder

        def put(client: IMAPClient) -> int | None:
            self._create_if_missing(client, target)
            return appended_uid(client.append(target, raw))

        return self._run("append", put)

    # - waiting -

    def wait_for_new(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a new message; True when one arrived.

        Uses IDLE when the server offers it (and imap.idle is on), re-issued every
        idle_seconds (25 minutes at most); otherwise polls with NOOP every poll_seconds.
        A dead connection raises InboxError.
        """
        with self._lock:
            if self._wake is None:
                receive, send = socket.socketpair()
                receive.setblocking(False)
                send.setblocking(False)
                self._wake = (receive, send)
            client = self._client_or_connect()
            idle = self.settings.idle and "IDLE" in self._capabilities
            with self._errors("idle" if idle else "poll", drop=True):
                if idle:
                    return self._idle(client, timeout)
                return self._poll(client, timeout)

    def interrupt(self) -> None:
        """End the current (or the next) ``wait_for_new`` early, from any thread.

        It then returns False; AsyncInbox calls this when its wait is cancelled, so a
        shutdown does not wait for the IDLE window to run out.
        """
        wake = self._wake  # not under the lock: the waiting thread holds it
        if wake is not None:
            with suppress(OSError):  # full (already woken) or closed by close(): nothing to do
                wake[1].send(b"!")

    def _idle(self, client: IMAPClient, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        window = min(float(self.settings.idle_seconds), IDLE_MAX_SECONDS)
        while True:
            restart = min(deadline, time.monotonic() + window)
            client.idle()
            news = woken = False
            while not (news or woken) and (left := restart - time.monotonic()) > 0:
                ready = self._sleep(left, client.socket())
                if ready == "wake":
                    woken = True
                elif ready == "server":
                    responses = client.idle_check(timeout=0)
                    if said_bye(responses):
                        raise imaplib.IMAP4.abort("server said BYE during IDLE")
                    news = arrived(responses)
                    if not responses:
                        # Readable but no line: end-of-file (or a partial TLS record). End
                        # this IDLE now, so DONE either succeeds or reveals a dead connection.
                        break
            # DONE needs the server's tagged answer within timeout_seconds: a connection
            # that died silently is noticed here at the latest every idle window.
            _, responses = client.idle_done()
            if news or arrived(responses):
                return True
            if woken or time.monotonic() >= deadline:
                return False

    def _poll(self, client: IMAPClient, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            _, responses = client.noop()
            if arrived(responses):
                return True
            left = deadline - time.monotonic()
            if left <= 0 or self._sleep(min(float(self.settings.poll_seconds), left)) == "wake":
                return False

    def _sleep(self, seconds: float, server: socket.socket | None = None) -> str | None:
        """Wait until the server socket is readable ("server"), interrupt() is called
        ("wake"), or the time is up (None)."""
        assert self._wake is not None  # made by wait_for_new()
        wake = self._wake[0]
        with selectors.DefaultSelector() as selector:
            selector.register(wake, selectors.EVENT_READ, "wake")
            if server is not None:
                selector.register(server, selectors.EVENT_READ, "server")
            events = selector.select(seconds)
        ready = {key.data for key, _ in events}
        if "wake" in ready:
            with suppress(BlockingIOError):
                while wake.recv(64):
                    pass
            return "wake"
        return "server" if ready else None

    # - internals -

    def _ssl_context(self) -> ssl.SSLContext | None:
        if self.settings.security == "none":
            return None
        ca_file = self.settings.ca_file
        return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)

    def _select(self, client: IMAPClient) -> None:
        answer = client.select_folder(self.settings.folder)
        self._uidvalidity = int(answer[b"UIDVALIDITY"])
        # A server that does not list PERMANENTFLAGS stores every flag (RFC 3501 7.1).
        self._keywords = keywords_allowed(answer.get(b"PERMANENTFLAGS", (b"\\*",)))

    def _create_if_missing(self, client: IMAPClient, folder: str) -> None:
        if folder in self._folders:
            return
        if not client.folder_exists(folder):
            client.create_folder(folder)
        self._folders.add(folder)

    def _client_or_connect(self) -> IMAPClient:
        if self._client is None:
            self.connect()
        assert self._client is not None
        return self._client

    def _run(self, action: str, operation: Callable[[IMAPClient], T]) -> T:
        """Run ``operation`` on the connection, reconnecting once if it had been dropped.

        Every operation here can be repeated safely (flags and moves are idempotent, a
        repeated fetch reads the same messages), so one retry after a reconnect is fine.
        """
        with self._lock:
            fresh = self._client is None
            client = self._client_or_connect()
            try:
                with self._errors(action, drop=True):
                    return operation(client)
            except InboxError as exc:
                if fresh or not isinstance(exc.__cause__, _DROPPED):
                    raise
                log.info("inbox.reconnect", reason=str(exc))
            client = self._client_or_connect()
            with self._errors(action, drop=True):
                return operation(client)

    @contextmanager
    def _errors(self, action: str, *, drop: bool) -> Iterator[None]:
        """Turn library and socket errors into InboxError; drop a connection that broke."""
        s = self.settings
        secret = s.password.get_secret_value() if s.password else None
        try:
            yield
        except InboxError:
            # Already worded (it is an OSError too, so it must not be wrapped again below).
            if drop:
                self._drop()
            raise
        except (imaplib.IMAP4.error, *_DROPPED) as exc:
            broken = isinstance(exc, _DROPPED)
            if drop and broken:
                self._drop()
            detail = redact(f"{type(exc).__name__}: {exc}", secret)
            raise InboxError(f"IMAP {action} on {s.host}:{s.port} failed: {detail}") from exc

    def _drop(self) -> None:
        client, self._client = self._client, None
        self._folders.clear()
        if client is not None:
            self._shutdown(client)

    @staticmethod
    def _shutdown(client: IMAPClient) -> None:
        # Closing a broken socket may fail too; either way it is gone.
        with suppress(Exception):
            client.shutdown()


class AsyncInbox:
    """The Inbox for asyncio code: each call runs in a worker thread, one call at a time."""

    def __init__(self, settings: Imap, *, inbox: Inbox | None = None) -> None:
        self.inbox = inbox or Inbox(settings)
        # The asyncio lock queues callers on the event loop instead of in worker threads;
        # the Inbox's own lock still guards the socket if a cancelled call's thread runs on.
        self._lock = asyncio.Lock()

    async def _call(self, function: Callable[..., T], *args: Any) -> T:
        async with self._lock:
            return await asyncio.to_thread(function, *args)

    async def __aenter__(self) -> AsyncInbox:
        await self.connect()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def connect(self) -> None:
        """See :meth:`Inbox.connect`."""
        await self._call(self.inbox.connect)

    async def close(self) -> None:
        """See :meth:`Inbox.close`."""
        await self._call(self.inbox.close)

    async def ensure_connected(self) -> None:
        """See :meth:`Inbox.ensure_connected`."""
        await self._call(self.inbox.ensure_connected)

    async def fetch_new(self, cursor: Cursor | None) -> tuple[Cursor, list[Fetched]]:
        """See :meth:`Inbox.fetch_new`."""
        return await self._call(self.inbox.fetch_new, cursor)

    async def mark_handled(self, uids: Sequence[int]) -> None:
        """See :meth:`Inbox.mark_handled`."""
        await self._call(self.inbox.mark_handled, uids)

    async def quarantine(self, uids: Sequence[int], reason: str) -> None:
        """See :meth:`Inbox.quarantine`."""
        await self._call(self.inbox.quarantine, uids, reason)

    async def wait_for_new(self, timeout: float) -> bool:
        """See :meth:`Inbox.wait_for_new`; cancelling it interrupts the waiting thread."""
        try:
            return await self._call(self.inbox.wait_for_new, timeout)
        except asyncio.CancelledError:
            # The worker thread cannot be cancelled: wake it, so close() need not wait.
            self.inbox.interrupt()
            raise

    async def append(self, raw: bytes, folder: str | None = None) -> int | None:
        """See :meth:`Inbox.append`."""
        return await self._call(self.inbox.append, raw, folder)
