"""Test fixtures: a real PostgreSQL server, started from Debian's binaries in a temporary folder.

- ``postgres_server`` (session): ``initdb`` and ``postgres`` on 127.0.0.1, a free port, its own
  data folder; run as the ``postgres`` user when the tests run as root (PostgreSQL refuses root).
- ``postgres_url``: a fresh, empty database on that server for one test, as a SQLAlchemy URL.

The fixture fails (never skips) when PostgreSQL is missing: ``./dev setup`` installs it.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class Postgres:
    host: str
    port: int

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@{self.host}:{self.port}/{database}"


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        pytest.fail(f"PostgreSQL's {name} is missing: run ./dev setup "
                    "(apt-get install postgresql)")
    return found[-1]


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Postgres]:
    """A PostgreSQL server of our own, stopped at the end of the session."""
    folder = Path(tempfile.mkdtemp(prefix="mailer-pg-"))
    data = folder / "data"
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    subprocess.run(_as_postgres([_bin("initdb"), "-D", str(data), "-A", "trust", "-U",
                                 "postgres", "--no-sync"]),
                   check=True, capture_output=True)
    port = _free_port()
    process = subprocess.Popen(
        _as_postgres([_bin("postgres"), "-D", str(data), "-p", str(port), "-h", "127.0.0.1",
                      "-k", str(folder), "-c", "fsync=off", "-c", "max_connections=50"]),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if process.poll() is not None:
                pytest.fail("PostgreSQL did not start")
            time.sleep(0.1)
    time.sleep(0.3)
    try:
        yield Postgres("127.0.0.1", port)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: Postgres) -> str:
    """A new empty database for this test."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    deadline = time.monotonic() + 20
    while True:
        try:
            with psycopg.connect(host=postgres_server.host, port=postgres_server.port,
                                 user="postgres", dbname="postgres", autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            break
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    return postgres_server.url(name)
