"""Test fixtures: real aiosmtpd SMTP servers that record what they receive and fail on request.

Fixtures (registered through ``pytest_plugins`` in tests/conftest.py):

- ``smtp_certs`` (session): a trustme CA and a server certificate for 127.0.0.1 and
  localhost. ``.ca_file`` is the CA's PEM file (give it to ``mailer.config.Smtp.ca_file``),
  ``.server_context`` the server's ``ssl.SSLContext``.
- ``smtp_sink``: a submission server on 127.0.0.1 (a free port) offering STARTTLS and
  AUTH LOGIN/PLAIN (after TLS only), and requiring a login before MAIL.
- ``smtp_sink_tls``: the same behind implicit TLS (SMTPS, like port 465).

Both sinks are an ``SmtpSink`` with ``.host``, ``.port``, ``.ca_file``, ``.username``,
``.password``, ``.implicit_tls`` and:

- ``.messages``: a list of ``Received`` (mail_from, rcpt_tos, content bytes, peer, tls,
  authenticated, arrived) in arrival order; ``Received.message()`` parses the content;
- ``.connections``: how many client connections said EHLO (STARTTLS's second EHLO is not
  counted again);
- ``.rcpts``: every address a RCPT TO named (accepted or not), in arrival order;
- ``.mail_options``: the options of every MAIL FROM (SIZE=..., SMTPUTF8), in arrival order;
- ``.fail_rcpt[address] = (550, "5.1.1 No such user")``: answer every RCPT TO for that
  address so; ``.fail_next(address, 451, "4.3.0 Try later")``: answer only the next one so.
  A scripted 421 also closes the connection, as real servers do;
- ``.drop_after(n)``: accept ``n`` more messages, then abort the connection that sends the
  next one before answering its DATA (that message is not recorded);
- ``.on_accept``: a function called with each message (``Received``) the server takes, in the
  server's thread, just before it answers 250 (e.g. to make a fault happen right then).

``smtp_settings(sink, security=None, **overrides)`` returns a ``mailer.config.Smtp`` pointing
at a sink, with its login and CA, 2 connections, a fast rate and short timeouts.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from pydantic import SecretStr

from mailer.config import Smtp
from tests.servers.sections import toml_section

USERNAME = "mailer-test"
PASSWORD = "Tr0ub4dor&3-not-a-real-secret"


@dataclass(frozen=True)
class SmtpCerts:
    """A test CA and the server certificate it signed for 127.0.0.1 and localhost."""

    ca: trustme.CA
    ca_file: Path
    server_context: ssl.SSLContext


@dataclass(frozen=True)
class Received:
    """One message as the server received it."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    content: bytes
    peer: tuple[str, int]
    tls: bool
    authenticated: bool
    arrived: float

    def message(self) -> EmailMessage:
        """The content parsed back into an email message."""
        parsed = email.message_from_bytes(self.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


async def _until_cancelled() -> None:
    """Park a handler after closing its connection; aiosmtpd cancels it on connection loss."""
    await asyncio.sleep(3600)


class RecordingHandler:
    """An aiosmtpd handler that records envelopes and plays scripted failures.

    It runs in the server's thread while tests read it from theirs, hence the lock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._messages: list[Received] = []
        self._peers: set[tuple[str, int]] = set()
        self._once: dict[str, deque[tuple[int, str]]] = {}
        self._drop_after: int | None = None
        self._rcpts: list[str] = []
        self._mail_options: list[list[str]] = []
        self.fail_rcpt: dict[str, tuple[int, str]] = {}
        self.on_accept: Callable[[Received], None] | None = None

    @property
    def rcpts(self) -> list[str]:
        with self._lock:
            return list(self._rcpts)

    @property
    def mail_options(self) -> list[list[str]]:
        with self._lock:
            return list(self._mail_options)

    @property
    def messages(self) -> list[Received]:
        with self._lock:
            return list(self._messages)

    @property
    def connections(self) -> int:
        with self._lock:
            return len(self._peers)

    def fail_next(self, address: str, code: int, text: str) -> None:
        """Answer the next RCPT TO for ``address`` with ``code text``."""
        with self._lock:
            self._once.setdefault(address.lower(), deque()).append((code, text))

    def drop_after(self, n: int) -> None:
        """Accept ``n`` more messages, then abort the connection carrying the next one."""
        with self._lock:
            self._drop_after = n

    def _scripted(self, address: str) -> tuple[int, str] | None:
        with self._lock:
            queue = self._once.get(address.lower())
            if queue:
                return queue.popleft()
            return self.fail_rcpt.get(address) or self.fail_rcpt.get(address.lower())

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope,
                          hostname: str, responses: list[str]) -> list[str]:
        with self._lock:
            self._peers.add(session.peer)
        session.host_name = hostname  # a handle_EHLO hook must do what aiosmtpd's default does
        return responses

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, mail_options: list[str]) -> str:
        with self._lock:
            self._mail_options.append(list(mail_options))
        envelope.mail_from = address        # what aiosmtpd's default does
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        with self._lock:
            self._rcpts.append(address)
        reply = self._scripted(address)
        if reply is None:
            envelope.rcpt_tos.append(address)
            return "250 OK"
        code, text = reply
        if code == 421:
            await server.push(f"421 {text}")
            assert server.transport is not None
            server.transport.close()
            await _until_cancelled()
        return f"{code} {text}"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self._lock:
            drop = self._drop_after == 0
            if drop:
                self._drop_after = None
            elif self._drop_after is not None:
                self._drop_after -= 1
        if drop:
            assert server.transport is not None
            server.transport.abort()
            await _until_cancelled()
        content = envelope.original_content or b""
        # session.ssl is only set by STARTTLS; the transport knows about implicit TLS too.
        tls = server.transport is not None and (
            server.transport.get_extra_info("ssl_object") is not None)
        received = Received(
            mail_from=envelope.mail_from or "", rcpt_tos=tuple(envelope.rcpt_tos),
            content=content, peer=session.peer, tls=tls,
            authenticated=bool(session.authenticated), arrived=time.time())
        with self._lock:
            self._messages.append(received)
            number = len(self._messages)
        if self.on_accept is not None:
            self.on_accept(received)
        return f"250 2.0.0 OK queued as {number}"


def _authenticator(server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                   auth_data: Any) -> AuthResult:
    """Accept exactly the test user and password, whichever mechanism carried them."""
    ok = (isinstance(auth_data, LoginPassword)
          and auth_data.login == USERNAME.encode() and auth_data.password == PASSWORD.encode())
    return AuthResult(success=ok, handled=False)


class _Controller(Controller):
    """A Controller that binds port 0 and reads back the port, optionally behind SMTPS."""

    def __init__(self, *args: Any, implicit_tls: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.implicit_tls = implicit_tls

    def _trigger_server(self) -> None:
        # Binding port 0 avoids racing other tests for a "free" port; start() calls this
        # right after binding, before anyone needs .port.
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()

    def factory(self) -> SMTP:
        smtp = super().factory()
        if self.implicit_tls:
            # aiosmtpd only counts STARTTLS as TLS when deciding to offer AUTH; under SMTPS
            # the whole connection is TLS, so AUTH may be offered at once. (Passing
            # auth_require_tls=False instead makes aiosmtpd warn on every connection.)
            smtp._auth_require_tls = False
        return smtp


class SmtpSink:
    """A running aiosmtpd server with a RecordingHandler; see the module docstring."""

    host = "127.0.0.1"
    username = USERNAME
    password = PASSWORD

    def __init__(self, certs: SmtpCerts, *, implicit_tls: bool, smtputf8: bool = False) -> None:
        self.ca_file = certs.ca_file
        self.implicit_tls = implicit_tls
        self.handler = RecordingHandler()
        self.fail_rcpt = self.handler.fail_rcpt
        tls = ({"ssl_context": certs.server_context} if implicit_tls
               else {"tls_context": certs.server_context})
        self._controller = _Controller(
            self.handler, hostname=self.host, port=0, loop=asyncio.new_event_loop(),
            implicit_tls=implicit_tls, server_hostname="sink.test", ready_timeout=10,
            authenticator=_authenticator, auth_required=True, auth_require_tls=True,
            enable_SMTPUTF8=smtputf8, **tls,
        )

    @property
    def port(self) -> int:
        return int(self._controller.port)

    @property
    def messages(self) -> list[Received]:
        return self.handler.messages

    @property
    def connections(self) -> int:
        return self.handler.connections

    @property
    def rcpts(self) -> list[str]:
        return self.handler.rcpts

    @property
    def mail_options(self) -> list[list[str]]:
        return self.handler.mail_options

    def fail_next(self, address: str, code: int, text: str) -> None:
        """Answer the next RCPT TO for ``address`` with ``code text``."""
        self.handler.fail_next(address, code, text)

    def drop_after(self, n: int) -> None:
        """Accept ``n`` more messages, then abort the connection carrying the next one."""
        self.handler.drop_after(n)

    @property
    def on_accept(self) -> Callable[[Received], None] | None:
        return self.handler.on_accept

    @on_accept.setter
    def on_accept(self, call: Callable[[Received], None] | None) -> None:
        self.handler.on_accept = call

    def toml(self, **keys: int) -> str:
        """The ``[smtp]`` section of a config.toml for this sink (STARTTLS, its login and CA),
        with ``keys`` (``messages_per_minute=6000``...) added."""
        return toml_section("smtp", {
            "host": self.host, "port": self.port, "security": "starttls",
            "username": self.username, "password": self.password,
            "ca_file": str(self.ca_file), **keys})

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()


@pytest.fixture(scope="session")
def smtp_certs(tmp_path_factory: pytest.TempPathFactory) -> SmtpCerts:
    """A trustme CA and a server certificate for 127.0.0.1/localhost; ``ca_file`` on disk."""
    ca = trustme.CA()
    ca_file = tmp_path_factory.mktemp("smtp-ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_context)
    return SmtpCerts(ca=ca, ca_file=ca_file, server_context=server_context)


def _running(certs: SmtpCerts, *, implicit_tls: bool, smtputf8: bool = False
             ) -> Iterator[SmtpSink]:
    sink = SmtpSink(certs, implicit_tls=implicit_tls, smtputf8=smtputf8)
    sink.start()
    try:
        yield sink
    finally:
        sink.stop()


@pytest.fixture
def smtp_sink(smtp_certs: SmtpCerts) -> Iterator[SmtpSink]:
    """A recording SMTP server with STARTTLS and AUTH (test user), on a free port."""
    yield from _running(smtp_certs, implicit_tls=False)


@pytest.fixture
def smtp_sink_utf8(smtp_certs: SmtpCerts) -> Iterator[SmtpSink]:
    """As ``smtp_sink``, also offering SMTPUTF8 (internationalised addresses)."""
    yield from _running(smtp_certs, implicit_tls=False, smtputf8=True)


@pytest.fixture
def smtp_sink_tls(smtp_certs: SmtpCerts) -> Iterator[SmtpSink]:
    """A recording SMTP server behind implicit TLS (SMTPS) with AUTH, on a free port."""
    yield from _running(smtp_certs, implicit_tls=True)


def smtp_settings(sink: SmtpSink, security: Literal["tls", "starttls", "none"] | None = None,
                  **overrides: Any) -> Smtp:
    """Settings that reach ``sink`` with its login and CA (``tls`` for an SMTPS sink)."""
    values: dict[str, Any] = {
        "host": sink.host, "port": sink.port,
        "security": security or ("tls" if sink.implicit_tls else "starttls"),
        "username": sink.username, "password": SecretStr(sink.password),
        "ca_file": sink.ca_file, "timeout_seconds": 5.0, "connections": 2,
        "messages_per_minute": 60_000,
    }
    values.update(overrides)
    return Smtp(**values)

