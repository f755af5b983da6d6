"""SMTP sending: a pool of reused aiosmtplib connections, a rate limit, and failure classification.

``Sender.send_batch`` never raises for one message's failure: every message gets a
``SendResult`` saying whether it went, and if not whether the failure is permanent (a 5xx
answer: fail for good, mark the recipient) or temporary (4xx, dropped connection, timeout:
retry after ``retry_delay``). It raises only when no connection can be made at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Protocol

import aiosmtplib
import structlog

from mailer.config import Smtp
from mailer.errors import ConfigError, Problem, SendError, TemporarySendError, WorkerError
from mailer.wire import WireMessage

log = structlog.get_logger(__name__)

MAX_RETRY_DELAY = timedelta(hours=6)

# Exceptions that mean "this message did not go", as opposed to bugs, which propagate:
# aiosmtplib's own errors, socket errors and timeouts (OSError covers both), and the
# ValueError aiosmtplib raises for an address or header it cannot send.
_MESSAGE_ERRORS = (aiosmtplib.SMTPException, OSError, ValueError)


@dataclass(frozen=True)
class SendResult:
    """What happened to one message: sent, or failed permanently or temporarily, and why."""

    key: str
    ok: bool
    permanent: bool = False
    code: int | None = None
    error: str = ""


def retry_delay(attempt: int, base_seconds: float, cap: timedelta = MAX_RETRY_DELAY) -> timedelta:
    """The wait after ``attempt`` failed tries: base, 2 x base, 4 x base... never above ``cap``.

    No jitter, so the outbox's next-try times are reproducible; the rate limiter already
    spreads the retries out.
    """
    exponent = min(max(attempt, 1) - 1, 40)  # 2**40 x any sane base is far past the cap
    return min(timedelta(seconds=base_seconds * 2**exponent), cap)


def failure(key: str, exc: BaseException) -> SendResult:
    """Classify why a message did not go: a 5xx answer is permanent, anything else temporary."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        exc = exc.recipients[0]
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return SendResult(key, ok=False, permanent=500 <= exc.code < 600, code=exc.code,
                          error=f"{exc.code} {exc.message}")
    if isinstance(exc, aiosmtplib.SMTPNotSupported | ValueError):
        # The message needs something the server lacks (SMTPUTF8) or is malformed (no From,
        # an unsendable address): sending it again will not help.
        return SendResult(key, ok=False, permanent=True, error=_describe(exc))
    return SendResult(key, ok=False, permanent=False, error=_describe(exc))


def connection_lost(exc: BaseException) -> bool:
    """True when the connection cannot be used after ``exc``: dropped, timed out, or a 421."""
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return exc.code == 421
    return isinstance(exc, aiosmtplib.SMTPServerDisconnected | aiosmtplib.SMTPTimeoutError
                      | ConnectionError | TimeoutError)


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if text.startswith(type(exc).__name__) else f"{type(exc).__name__}: {text}"


class RateLimiter:
    """Paces sends to ``per_minute``, letting at most ``burst`` go back to back.

    A GCRA token bucket: each ``reserve`` claims the next free slot in order, so concurrent
    workers queue fairly and the pace holds over any window longer than one burst.
    """

    def __init__(self, per_minute: float, burst: int = 1, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[object]] = asyncio.sleep) -> None:
        self._interval = 60.0 / per_minute
        self._slack = (max(burst, 1) - 1) * self._interval
        self._clock = clock
        self._sleep = sleep
        self._next: float | None = None  # the theoretical time of the next send

    def reserve(self) -> float:
        """Claim the next send slot and return how many seconds to wait before using it."""
        now = self._clock()
        due = now if self._next is None else max(self._next, now)
        self._next = due + self._interval
        return max(0.0, due - self._slack - now)

    async def acquire(self) -> None:
        """Wait until one more message may be sent."""
        delay = self.reserve()
        if delay > 0:
            await self._sleep(delay)


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """A verifying client context: the system's CAs, plus ``ca_file`` (a private CA) when set."""
    context = ssl.create_default_context()
    if ca_file is not None:
        try:
            context.load_verify_locations(cafile=str(ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError([Problem("configuration", "smtp.ca_file",
                                       f"cannot load CA certificates from {ca_file}: "
                                       f"{getattr(exc, 'strerror', None) or exc}")]) from None
    return context


# A message, or a function that builds one when its turn comes (or that waits for a worker
# process to have built it).
Composable = WireMessage | Callable[[], WireMessage] | Callable[[], Awaitable[WireMessage]]


class Limiter(Protocol):
    """What paces the sends: a ``RateLimiter`` here, or a rate shared with other processes."""

    async def acquire(self) -> None: ...


# The result of a message that was not sent because its sender no longer holds it.
NOT_HELD = "not sent: the claim on it ran out (another instance may send it)"


@dataclass
class _Batch:
    """The shared state of one ``send_batch`` call, which the workers drain together."""

    items: Sequence[tuple[str, Composable]]
    pending: deque[int]
    results: list[SendResult | None]
    on_result: Callable[[SendResult], Awaitable[None]] | None = None
    held: Callable[[str], bool] | None = None
    attempted: bool = False
    errors: list[SendError] = field(default_factory=list)
    halted: bool = False        # an ``on_result`` failed: no connection sends another


class Sender:
    """Sends messages over at most ``settings.connections`` reused SMTP connections.

    Use as ``async with Sender(settings) as sender:``; connections stay open across batches
    and are closed on exit. ``envelope_from`` (e.g. a bounce address) overrides the From
    header as the SMTP envelope sender.
    """

    def __init__(self, settings: Smtp, *, envelope_from: str | None = None,
                 limiter: Limiter | None = None, local_hostname: str | None = None) -> None:
        self._settings = settings
        self._envelope_from = envelope_from
        self._local_hostname = local_hostname
        self._limiter: Limiter = limiter or RateLimiter(settings.messages_per_minute,
                                               burst=settings.connections)
        self._tls = tls_context(settings.ca_file) if settings.security != "none" else None
        self._slots: list[aiosmtplib.SMTP | None] = [None] * settings.connections
        self._batch_lock = asyncio.Lock()

    async def __aenter__(self) -> Sender:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        """Say QUIT on every open connection (or just drop it if the server does not answer)."""
        for slot, client in enumerate(self._slots):
            self._slots[slot] = None
            if client is None or not client.is_connected:
                continue
            try:
                await client.quit(timeout=min(self._settings.timeout_seconds, 5.0))
            except _MESSAGE_ERRORS:
                client.close()

    async def send_one(self, key: str, msg: WireMessage) -> SendResult:
        """Send one message; see ``send_batch``."""
        return (await self.send_batch([(key, msg)]))[0]

    async def send_batch(self, items: Sequence[tuple[str, Composable]], *,
                         on_result: Callable[[SendResult], Awaitable[None]] | None = None,
                         held: Callable[[str], bool] | None = None) -> list[SendResult]:
        """Send every ``(key, message)`` to its recipient; one result per item, in order.

        A message may be given as a function that builds it: it is called just before
        sending, and if it raises, that message fails for good (``code`` None) and the
        others go on.

        ``on_result`` is called with each message's result as soon as the server answered,
        and the connection sends its next message only once that call has returned, so the
        caller can record each message before the next goes (crash safety); the next
        message is composed meanwhile.

        ``held`` is asked just before each message goes: when it says False for the key,
        the message is not sent, and its result (``NOT_HELD``) is not given to
        ``on_result`` (the caller no longer owns it).

        Raises SendError (``permanent`` for a refused login or a server that lacks what the
        configuration asks for, TemporarySendError otherwise) only when not one message could
        be attempted, so no result of a message that went is ever lost. When ``on_result``
        raises (the caller cannot record what went), no connection starts another message,
        and once each has finished the one in hand, that exception is raised.
        """
        if not items:
            return []
        async with self._batch_lock:
            batch = _Batch(items, deque(range(len(items))), [None] * len(items), on_result,
                           held)
            workers = min(len(self._slots), len(items))
            # Every connection's task ends before this returns or raises: none is left
            # sending on a connection the next batch uses.
            ended = await asyncio.gather(*(self._work(slot, batch) for slot in range(workers)),
                                         return_exceptions=True)
            for outcome in ended:
                if isinstance(outcome, BaseException):
                    raise outcome
            if not batch.attempted:
                raise batch.errors[0]
            reason = str(batch.errors[0]) if batch.errors else "not attempted"
            return [result or SendResult(key, ok=False, error=reason)
                    for result, (key, _msg) in zip(batch.results, items, strict=True)]

    async def _work(self, slot: int, batch: _Batch) -> None:
        """One worker: take messages from the batch and send them over connection ``slot``."""
        recording: asyncio.Future[None] | None = None   # on_result of the previous message
        try:
            while batch.pending and not batch.halted:
                index = batch.pending.popleft()
                try:
                    await self._connection(slot)
                except SendError as exc:
                    # Leave the message to the other workers; if none can connect, the batch
                    # raises.
                    batch.pending.appendleft(index)
                    batch.errors.append(exc)
                    return
                batch.attempted = True
                await self._limiter.acquire()
                key, item = batch.items[index]
                if batch.held is not None and not batch.held(key):
                    batch.results[index] = SendResult(key, ok=False, error=NOT_HELD)
                    continue
                try:
                    # A callable is composed here, by the connection's task that sends it, so
                    # composing overlaps the server's work on the others and the previous
                    # one's record (or it awaits a message a worker process wrote ahead).
                    msg = item() if callable(item) else item
                    if inspect.isawaitable(msg):
                        msg = await msg
                except Exception as exc:  # noqa: BLE001 - one broken message must not stop the rest
                    # A worker's error already reads "Type: message".
                    what = str(exc) if isinstance(exc, WorkerError) else (
                        f"{type(exc).__name__}: {exc}")
                    result = SendResult(key, ok=False, permanent=True,
                                        error=f"not composed: {what}"[:500])
                    self._log_failure(result, None)
                else:
                    result = await self._deliver(slot, key, msg, recording, batch.held)
                    recording = None        # _deliver waited for it
                batch.results[index] = result
                if result.error == NOT_HELD:
                    continue                # not ours any more: nothing to report
                if batch.on_result is not None:
                    if recording is not None:
                        await recording
                    recording = asyncio.ensure_future(self._report(batch, result))
        except BaseException:
            # Maybe mid-transaction (an envelope sent, its DATA not): a new connection
            # starts clean.
            self._discard(slot)
            raise
        finally:
            if recording is not None:
                await recording

    @staticmethod
    async def _report(batch: _Batch, result: SendResult) -> None:
        """Hand ``result`` to the batch's ``on_result``; if that fails, halt the batch."""
        assert batch.on_result is not None
        try:
            await batch.on_result(result)
        except BaseException:
            batch.halted = True
            raise

    async def _deliver(self, slot: int, key: str, msg: WireMessage,
                       previous: Awaitable[None] | None = None,
                       held: Callable[[str], bool] | None = None) -> SendResult:
        """Send one message on connection ``slot``, reconnecting and retrying once if it drops.

        ``previous`` (the record of the connection's previous message) is awaited before the
        server can accept this one (crash safety), but after the envelope: MAIL FROM and
        RCPT TO go while it is committed. Until the DATA's final dot, a crash leaves the
        server nothing to deliver. ``held`` is asked again just before the DATA: the
        envelope and that record may take long enough for the message to pass to another
        instance (then it is reset, not sent: ``NOT_HELD``).
        """
        recipient = msg.recipient
        sender = self._envelope_from or msg.sender
        if not recipient:
            if previous is not None:
                await previous
            result = SendResult(key, ok=False, permanent=True,
                                error="the message has no To address")
            self._log_failure(result, None)
            return result
        # An internationalised address needs the server's SMTPUTF8 (refused for good if absent).
        options = [] if (sender + recipient).isascii() else ["SMTPUTF8"]
        result = SendResult(key, ok=False, error="not attempted")
        try:
            for attempt in (1, 2):
                client = None
                try:
                    client = await self._connection(slot)
                    await self._envelope(client, sender, recipient, msg, options)
                    if previous is not None:
                        await previous
                        previous = None
                    if held is not None and not held(key):
                        await _reset(client)
                        return SendResult(key, ok=False, error=NOT_HELD)
                    await client.data(msg.data)
                    return SendResult(key, ok=True)
                except SendError as exc:  # the reconnect for the retry failed
                    result = SendResult(key, ok=False, code=exc.code, error=str(exc))
                    break
                except _MESSAGE_ERRORS as exc:
                    result = failure(key, exc)
                    if not connection_lost(exc):
                        await _reset(client)
                        break
                    self._discard(slot)
                    # A 421 is the server asking us to go away: do not insist right now.
                    if attempt == 2 or result.code == 421:
                        break
                    log.info("smtp.reconnecting", key=key, recipient=recipient,
                             error=result.error)
        finally:
            if previous is not None:    # failed before the DATA: still recorded in order
                await previous
        self._log_failure(result, recipient)
        return result

    async def _envelope(self, client: aiosmtplib.SMTP, sender: str, recipient: str,
                        msg: WireMessage, options: list[str]) -> None:
        """MAIL FROM and RCPT TO: what aiosmtplib's ``sendmail`` does before its DATA.

        Written out (with aiosmtplib's own ``mail`` and ``rcpt``) because ``sendmail`` runs
        the whole transaction in one call, and the envelope must go before the previous
        message's record is committed, the DATA after it.
        """
        utf8 = bool(options)
        if utf8 and not client.supports_extension("smtputf8"):
            raise aiosmtplib.SMTPNotSupported("SMTPUTF8 is not supported by this server")
        mail_options = list(options)
        if client.supports_extension("size"):
            # RFC 1870; the message is already CRLF-terminated, as it goes on the wire.
            mail_options.insert(0, f"SIZE={len(msg.data)}")
        encoding = "utf-8" if utf8 else "ascii"
        await client.mail(sender, options=mail_options, encoding=encoding)
        await client.rcpt(recipient, encoding=encoding)

    def _log_failure(self, result: SendResult, recipient: str | None) -> None:
        log.warning("smtp.send_failed", key=result.key, recipient=recipient, code=result.code,
                    permanent=result.permanent, error=self._scrub(result.error))

    def _discard(self, slot: int) -> None:
        client, self._slots[slot] = self._slots[slot], None
        if client is not None:
            client.close()

    async def _connection(self, slot: int) -> aiosmtplib.SMTP:
        """The open connection of ``slot``, made (and logged in) if it has none."""
        client = self._slots[slot]
        if client is not None and client.is_connected:
            return client
        self._slots[slot] = None
        client = await self._connect()
        self._slots[slot] = client
        return client

    async def _connect(self) -> aiosmtplib.SMTP:
        """Open, secure and log in one connection, or raise SendError saying what went wrong."""
        s = self._settings
        where = f"SMTP server {s.host}:{s.port} ({s.security})"
        client = aiosmtplib.SMTP(
            hostname=s.host, port=s.port, timeout=s.timeout_seconds,
            use_tls=s.security == "tls", start_tls=s.security == "starttls",
            tls_context=self._tls, local_hostname=self._local_hostname,
        )
        try:
            await client.connect()
        except aiosmtplib.SMTPNotSupported as exc:  # e.g. no STARTTLS on the server
            raise self._error(f"{where}: {_describe(exc)}; check smtp.security",
                              permanent=True) from None
        except _MESSAGE_ERRORS as exc:
            raise self._error(f"cannot connect to {where}: {_describe(exc)}") from None
        if s.username:
            await self._login(client, where)
        return client

    async def _login(self, client: aiosmtplib.SMTP, where: str) -> None:
        s = self._settings
        if s.password is None:
            client.close()
            raise self._error(f"{where}: smtp.username is set but smtp.password is not",
                              permanent=True)
        try:
            await client.login(s.username or "", s.password.get_secret_value())
        except aiosmtplib.SMTPResponseException as exc:
            client.close()
            raise self._error(
                f"{where} refused the login of {s.username!r}: {exc.code} {exc.message}; "
                "check smtp.username and smtp.password",
                code=exc.code, permanent=exc.code >= 500) from None
        except aiosmtplib.SMTPNotSupported as exc:  # no AUTH offered (e.g. before TLS)
            client.close()
            raise self._error(f"{where} does not accept a login: {_describe(exc)}; "
                              "check smtp.security and smtp.username", permanent=True) from None
        except _MESSAGE_ERRORS as exc:
            client.close()
            raise self._error(f"{where}: login failed: {_describe(exc)}") from None

    def _error(self, message: str, *, code: int | None = None,
               permanent: bool = False) -> SendError:
        message = self._scrub(message)
        log.warning("smtp.connect_failed", host=self._settings.host, port=self._settings.port,
                    code=code, permanent=permanent, error=message)
        if permanent:
            return SendError(message, code=code, permanent=True)
        return TemporarySendError(message, code=code)

    def _scrub(self, text: str) -> str:
        """Remove the password from text bound for a log or an error, should a server echo it."""
        password = self._settings.password
        secret = password.get_secret_value() if password is not None else ""
        return text.replace(secret, "***") if secret else text


async def _reset(client: aiosmtplib.SMTP | None) -> None:
    """RSET after a refused command, as ``sendmail`` does, so the next message starts clean."""
    if client is None or not client.is_connected:
        return
    with contextlib.suppress(*_MESSAGE_ERRORS):
        await client.rset()
