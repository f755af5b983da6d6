"""Shared test fixtures: real mail servers (Dovecot, pymap, aiosmtpd) and sample inputs."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["tests.servers.imap", "tests.servers.smtp", "tests.servers.postgres"]

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
