"""Test fixtures: real IMAP servers (Dovecot and pymap) for the tests, with TLS and a fresh mailbox.

Fixtures (this module is a pytest plugin listed in ``tests/conftest.py``):

``dovecot``
    A mailbox of its own on a real Dovecot (``/usr/sbin/dovecot``, Debian ``dovecot-imapd``)
    started once per session in the foreground with its own config in a temporary folder:
    127.0.0.1, implicit TLS (``security="tls"``) and STARTTLS ports with a trustme
    certificate, a passwd-file user of its own per test (so every test starts with an empty
    INBOX),
    maildir storage, IDLE notifications every second. A missing Dovecot FAILS the test
    with the install hint; it is never skipped.
``pymap``
    The same on pymap's in-memory ``dict`` backend (``pymap ... dict``, a subprocess started
    once per session, STARTTLS only). One user: every folder but INBOX is deleted and INBOX
    emptied before each test. pymap offers IDLE and MOVE but stores no custom keywords
    (its PERMANENTFLAGS has no ``\\*``), so ``server.keywords`` is False.
``imap_server``
    Parametrized over ``["dovecot", "pymap"]``: a test using it runs against both.
``imap_ca``
    The session's trustme CA; ``imap_ca_file`` its PEM file.

Each server fixture yields an :class:`ImapServer`: ``name``, ``host``, ``port``,
``username``, ``password``, ``ca_file``, ``security``, ``ports`` (security -> port),
``keywords``, ``settings(**overrides) -> mailer.config.Imap`` (pass ``security="starttls"``
alone and the matching port is picked), and ``client()``, a second logged-in
``imapclient.IMAPClient`` for acting as "another mail client" (close it after use, or use it
as a context manager).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any, Literal

import pytest
import trustme
from imapclient import IMAPClient
from pydantic import SecretStr

from mailer.config import Imap
from tests.servers.sections import toml_section

DOVECOT = "/usr/sbin/dovecot"
INSTALL_HINT = "install it with: apt-get install dovecot-imapd (Debian/Ubuntu)"
PASSWORD = "s3cret-Test-pw"
START_SECONDS = 15.0
DOVECOT_USERS = 2000

Security = Literal["tls", "starttls", "none"]


@dataclass
class ImapServer:
    """Where a test's mailbox lives and how to log in to it."""

    name: str
    host: str
    port: int
    username: str
    password: str
    ca_file: Path
    security: Security
    ports: dict[str, int] = field(default_factory=dict)
    keywords: bool = True

    def settings(self, **overrides: Any) -> Imap:
        """Mailer IMAP settings for this mailbox; keyword arguments override any field."""
        values: dict[str, Any] = {
            "host": self.host, "port": self.port, "security": self.security,
            "username": self.username, "password": SecretStr(self.password),
            "ca_file": self.ca_file, "timeout_seconds": 10.0,
        }
        if "security" in overrides and "port" not in overrides:
            values["port"] = self.ports[overrides["security"]]
        values.update(overrides)
        return Imap(**values)

    def toml(self, **keys: int | bool) -> str:
        """The ``[imap]`` section of a config.toml for this mailbox over TLS, with ``keys``
        (``idle=True``, ``timeout_seconds=10``...) added."""
        return toml_section("imap", {
            "host": self.host, "port": self.ports["tls"], "security": "tls",
            "username": self.username, "password": self.password,
            "ca_file": str(self.ca_file), **keys})

    def client(self) -> IMAPClient:
        """A second, logged-in raw connection to the same mailbox (nothing selected)."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        tls = "tls" in self.ports
        client = IMAPClient(self.host, self.ports.get("tls", self.port), ssl=tls,
                            ssl_context=context, timeout=10)
        if not tls:
            client.starttls(context)
        client.login(self.username, self.password)
        return client


# --- helpers ---------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port nobody listens on right now (the server binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], *logs: Path) -> None:
    """Wait until ``port`` accepts connections; fail with the server's log if it never does."""
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the IMAP server exited with {process.returncode}:\n{_tail(*logs)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"the IMAP server did not listen on port {port}:\n{_tail(*logs)}")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if the server takes more than 10 s to go."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def _tail(*paths: Path) -> str:
    lines = []
    for path in paths:
        if path.exists():
            lines += path.read_text(errors="replace").splitlines()[-30:]
    return "\n".join(lines) or "(no log)"


# --- TLS -------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def imap_ca() -> trustme.CA:
    """The certificate authority the test IMAP servers' certificates come from."""
    return trustme.CA()


@pytest.fixture(scope="session")
def imap_ca_file(imap_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CA as a PEM file, for ``imap.ca_file``."""
    path = tmp_path_factory.mktemp("imap-ca") / "ca.pem"
    imap_ca.cert_pem.write_to_path(str(path))
    return path


def _write_cert(ca: trustme.CA, folder: Path) -> tuple[Path, Path]:
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    for extra in cert.cert_chain_pems[1:]:
        extra.write_to_path(str(cert_file), append=True)
    cert.private_key_pem.write_to_path(str(key_file))
    return cert_file, key_file


# --- Dovecot ---------------------------------------------------------------------------------


def _dovecot_users() -> tuple[str, str, tuple[int, int]]:
    """(internal user, login user, mail uid/gid): Dovecot refuses root for logins and mail."""
    if os.geteuid() != 0:
        me = pwd.getpwuid(os.geteuid()).pw_name
        return me, me, (os.geteuid(), os.getegid())
    try:
        pwd.getpwnam("dovecot")
        pwd.getpwnam("dovenull")
        nobody = pwd.getpwnam("nobody")
    except KeyError as exc:
        pytest.fail(f"Dovecot's system users are missing ({exc}); {INSTALL_HINT}")
    return "dovecot", "dovenull", (nobody.pw_uid, nobody.pw_gid)


DOVECOT_CONF = """\
# Written by tests/servers/imap.py: a private Dovecot for one test session.
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
default_internal_user = {internal}
default_login_user = {login}
mail_uid = {uid}
mail_gid = {gid}
first_valid_uid = 0
first_valid_gid = 0
auth_mechanisms = plain login
auth_failure_delay = 0
disable_plaintext_auth = yes
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
ssl_min_protocol = TLSv1.2
mail_location = maildir:~/Maildir
# Frequent IDLE wake-ups so tests see new mail within a second.
imap_idle_notify_interval = 1 secs
mail_max_userip_connections = 50
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {root}/passwd
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {starttls_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
  # No auth penalty (a growing delay per IP after a failed login, which would slow every
  # test after a wrong-password test): the documented way is to close this socket.
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"""


@dataclass
class Dovecot:
    """A running Dovecot; ``new_mailbox()`` adds a user with an empty maildir."""

    root: Path
    tls_port: int
    starttls_port: int
    ca_file: Path
    users: Iterator[int] = field(default_factory=lambda: count(1))

    def new_mailbox(self) -> ImapServer:
        """The next unused user (its maildir is created at its first login)."""
        number = next(self.users)
        if number > DOVECOT_USERS:
            pytest.fail(f"more than {DOVECOT_USERS} Dovecot mailboxes in one session")
        name = f"user{number}"
        return ImapServer("dovecot", "127.0.0.1", self.tls_port, name, PASSWORD, self.ca_file,
                          "tls", {"tls": self.tls_port, "starttls": self.starttls_port})


@pytest.fixture(scope="session")
def dovecot_process(imap_ca: trustme.CA, imap_ca_file: Path) -> Iterator[Dovecot]:
    """One Dovecot for the whole session (see the module docstring)."""
    if not os.access(DOVECOT, os.X_OK):
        pytest.fail(f"Dovecot is not installed at {DOVECOT}; {INSTALL_HINT}")
    internal, login, (uid, gid) = _dovecot_users()
    # Not pytest's tmp_path: its parent is private to root, and Dovecot's unprivileged
    # login and mail processes must reach their sockets and mail folders.
    root = Path(tempfile.mkdtemp(prefix="mailer-dovecot-"))
    root.chmod(0o755)
    process = None
    try:
        for sub in ("run", "state", "home"):
            (root / sub).mkdir()
        os.chown(root / "home", uid, gid)
        # All users up front: Dovecot notices a changed passwd-file by its mtime, which has
        # a one-second grain, so users added during the run could stay unknown.
        (root / "passwd").write_text("".join(
            f"user{n}:{{PLAIN}}{PASSWORD}::::{root}/home/user{n}::\n"
            for n in range(1, DOVECOT_USERS + 1)))
        cert, key = _write_cert(imap_ca, root)
        tls_port, starttls_port = free_port(), free_port()
        conf = root / "dovecot.conf"
        conf.write_text(DOVECOT_CONF.format(
            root=root, internal=internal, login=login, uid=uid, gid=gid, cert=cert, key=key,
            tls_port=tls_port, starttls_port=starttls_port))
        log = root / "dovecot.log"
        with (root / "stderr.log").open("wb") as stderr:
            process = subprocess.Popen([DOVECOT, "-F", "-c", str(conf)],
                                       stdout=subprocess.DEVNULL, stderr=stderr)
        for port in (tls_port, starttls_port):
            wait_for_port(port, process, root / "stderr.log", log)
        yield Dovecot(root, tls_port, starttls_port, imap_ca_file)
    finally:
        if process is not None:
            stop(process)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def dovecot(dovecot_process: Dovecot) -> ImapServer:
    """An empty mailbox of its own on the session's Dovecot."""
    return dovecot_process.new_mailbox()


# --- pymap -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pymap_process(imap_ca: trustme.CA, imap_ca_file: Path,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[ImapServer]:
    """One pymap (in-memory dict backend, STARTTLS) for the whole session."""
    pymap = Path(sys.executable).parent / "pymap"
    if not pymap.exists():
        pytest.fail(f"pymap is not installed next to {sys.executable}; pip install pymap")
    root = tmp_path_factory.mktemp("pymap")
    cert, key = _write_cert(imap_ca, root)
    port = free_port()
    log = root / "pymap.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(pymap), "--host", "127.0.0.1", "--port", str(port), "--cert", str(cert),
             "--key", str(key), "dict", "--demo-user", "mailer", "--demo-password", PASSWORD],
            stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, process, log)
        yield ImapServer("pymap", "127.0.0.1", port, "mailer", PASSWORD, imap_ca_file,
                         "starttls", {"starttls": port}, keywords=False)
    finally:
        stop(process)


@pytest.fixture
def pymap(pymap_process: ImapServer) -> ImapServer:
    """pymap's one mailbox, emptied: only an empty INBOX is left."""
    with pymap_process.client() as client:
        # Deepest first: a parent cannot go before its children.
        for name in sorted((n for _f, _d, n in client.list_folders()), reverse=True):
            if name.upper() != "INBOX":
                client.delete_folder(name)
        client.select_folder("INBOX")
        uids = client.search("ALL")
        if uids:
            client.delete_messages(uids)
            client.expunge()
    return pymap_process


# --- both ------------------------------------------------------------------------------------


@pytest.fixture(params=["dovecot", "pymap"])
def imap_server(request: pytest.FixtureRequest) -> ImapServer:
    """An empty mailbox on each real IMAP server in turn."""
    server: ImapServer = request.getfixturevalue(request.param)
    return server
