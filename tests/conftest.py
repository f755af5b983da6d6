"""Shared test fixtures: real mail servers (Dovecot, pymap, aiosmtpd) and sample inputs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mailer import store

pytest_plugins = ["tests.servers.imap", "tests.servers.smtp", "tests.servers.postgres",
                  "tests.servers.disk"]

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"


@pytest.fixture
def root() -> Path:
    """The repository's root folder (shipped schedules, templates, packs)."""
    return ROOT


@pytest.fixture
def corpus() -> Path:
    """The shared corpus of real mail (bounces, client replies)."""
    if not CORPUS.is_dir():
        pytest.fail(f"the shared corpus is missing at {CORPUS}")
    return CORPUS


@pytest.fixture(params=["sqlite", "postgresql"])
def st(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[store.Store]:
    """A migrated store on SQLite and on a real PostgreSQL server: the test runs on both."""
    url = (f"sqlite:///{tmp_path}/mailer.db" if request.param == "sqlite"
           else request.getfixturevalue("postgres_url"))
    s = store.Store(url)
    s.migrate()
    yield s
    s.close()
