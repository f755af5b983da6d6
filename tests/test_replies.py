"""Realistic replies, as diplomats, prosecutors and focal points write them, through understand.

Each ``tests/replies/*.eml`` is one reply as its mail client sends it (Outlook desktop, web and
mobile, Gmail, Apple Mail, iPhone, Samsung; in English, French, Spanish and Portuguese, with
each client's attribution lines and quoting); ``expected.json`` says, for each, the moment it
is read and what a careful secretary makes of it: the intent, the event, the language of the
answer, the participants (and which of their fields are guesses), the calendar answer.
The series are the shipped ones, copied in ``tests/replies/schedules`` so that edits to the
shipped schedules do not move these expectations.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from mailer.schedule import Catalog, load_catalog
from mailer.understand import understand

REPLIES = Path(__file__).parent / "replies"
EXPECTED: dict[str, dict[str, Any]] = json.loads(
    (REPLIES / "expected.json").read_text(encoding="utf-8"))
INBOX = "webinars@coe-cybercrime.org"


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog(REPLIES / "schedules")


def differences(got: dict[str, Any], want: dict[str, Any]) -> list[str]:
    """What ``got`` (``Intent.to_json()``) says differently from ``want``, key by key."""
    out: list[str] = []
    for key, value in want.items():
        if key == "now":
            continue
        if key == "participants":
            people = got["participants"]
            if len(people) != len(value):
                out.append(f"{len(people)} participants, not {len(value)}: {people}")
                continue
            for number, (person, wanted) in enumerate(zip(people, value, strict=True), 1):
                for field, expected in wanted.items():
                    have = person.get(field, [] if field == "inferred" else None)
                    if field == "inferred":
                        have, expected = sorted(have), sorted(expected)
                    if have != expected:
                        out.append(f"participant {number} {field}: {have!r}, not {expected!r}")
        elif got.get(key, [] if key == "candidates" else None) != value:
            out.append(f"{key}: {got.get(key)!r}, not {value!r}")
    return out


def test_there_are_enough_replies_in_each_language() -> None:
    """At least 60 replies, with each of the four languages and each kind of case present."""
    names = list(EXPECTED)
    assert len(names) >= 60
    assert sorted(p.name for p in REPLIES.glob("*.eml")) == sorted(names)
    intents = {want["intent"] for want in EXPECTED.values()}
    assert {"registration", "certificate_request", "calendar_reply"} <= intents
    for lang in ("en", "fr", "es", "pt"):
        assert sum(f"-{lang}-" in name for name in names) >= 8, lang


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_realistic_reply_is_understood(catalog: Catalog, name: str) -> None:
    """The reply's intent, event, language and participants are what its writer meant."""
    want = EXPECTED[name]
    intent = understand((REPLIES / name).read_bytes(), catalog,
                        now=datetime.fromisoformat(want["now"]), inbox_address=INBOX)
    assert differences(intent.to_json(), want) == []
