"""Every file of the peer corpora (``../shared/corpus/peers``) read as the daemon reads it.

What ``expected.json`` says of each file is asserted: bounces and automatic mail are never
answered, at least 99 % of the bounces are recognised as bounces and every machine-readable
bounced address is found, no person's message is silenced, and on the 150 reply cases the
text the sender wrote comes out exactly right at least 140 times with at most 3 leaking
lines of the quoted original. Each test prints its figures (``pytest -s``).
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from functools import cache
from typing import Any

import pytest

from mailer.domain import Intent, IntentKind
from mailer.schedule import Catalog, load_catalog
from mailer.understand import read
from mailer.understand.bounced import valid_address
from mailer.understand.message import parse_message
from mailer.understand.written import reply_text
from tests import peers
from tests.conftest import ROOT

NOW = datetime(2020, 7, 1, 12, 0, tzinfo=UTC)
INBOX = "webinars@example.org"


@cache
def _catalog() -> Catalog:
    return load_catalog(ROOT / "schedules")


@cache
def _read_all() -> dict[str, Intent | str]:
    """Each file case read once, as ``understand.read`` gives it to the daemon."""
    return {case["id"]: read(peers.raw_of(case), _catalog(), now=NOW, inbox_address=INBOX,
                             max_bytes=10_000_000, size=None,
                             message_id=f"<peer-{n}@test>")
            for n, case in enumerate(peers.file_cases())}


def _answered(result: Intent | str) -> bool:
    return isinstance(result, Intent) and result.answerable


def _forwarded_by_a_person(case: dict[str, Any]) -> bool:
    """expected.json's note on a bounce a person forwarded ("Fwd: Returned mail")."""
    return "person forwarding" in case.get("note", "")


@pytest.fixture
def results(corpus: object) -> dict[str, Intent | str]:
    """Every file case as read (once per run: the corpus fixture fails clearly without it)."""
    return _read_all()


def test_every_file_of_expected_json_exists(corpus: object) -> None:
    """expected.json names only files present, so none is silently unchecked."""
    missing = [c["path"] for c in [*peers.file_cases(), *peers.reply_cases()]
               if not peers.case_path(c).is_file()]
    assert not missing


def test_no_automatic_message_is_answered(results: dict[str, Intent | str]) -> None:
    """Bounces, vacation notices, complaint reports, lists, noreply senders: no answer."""
    machines = [c for c in peers.file_cases() if c["category"] in ("bounce", "auto")]
    answered = [c["id"] for c in machines
                if _answered(results[c["id"]]) and not _forwarded_by_a_person(c)]
    forwarded = [c["id"] for c in machines if _forwarded_by_a_person(c)]
    print(f"\nautomatic messages: {len(machines)}, answered: {len(answered)} "
          f"(forwarded by a person, read as a person's: {forwarded})")
    assert not answered


def test_bounces_are_recognised_and_name_their_failed_addresses(
        results: dict[str, Intent | str]) -> None:
    """At least 99 % of bounces are bounces; every machine-readable failed address is found,
    and every address taken is one valid address."""
    bounces = [c for c in peers.file_cases() if c["category"] == "bounce"]
    kinds = Counter(r.kind.value if isinstance(r, Intent) else "quarantined"
                    for r in (results[c["id"]] for c in bounces))
    recognised = kinds["bounce"]
    missing: list[str] = []
    readable = 0
    for case in bounces:
        if not case.get("expected_groups"):
            continue
        readable += 1
        result = results[case["id"]]
        found = set(result.bounced) if isinstance(result, Intent) else set()
        for group in case["expected_groups"]:
            if not {a.lower() for a in group} & found:
                missing.append(f"{case['id']}: {group}")
    taken = [a for r in results.values() if isinstance(r, Intent) for a in r.bounced]
    invalid = [a for a in taken if valid_address(a) != a]
    without = sum(1 for c in bounces if isinstance(results[c["id"]], Intent)
                  and results[c["id"]].kind is IntentKind.BOUNCE
                  and not results[c["id"]].bounced)
    print(f"\nbounces: {len(bounces)}, recognised {recognised} "
          f"({recognised / len(bounces):.1%}), read as {dict(kinds)}; machine-readable "
          f"{readable}, addresses missing {len(missing)}; recognised without an address "
          f"{without}; invalid addresses taken {len(invalid)}")
    assert recognised >= 0.99 * len(bounces)
    assert not missing
    assert not invalid


def test_no_persons_message_is_silenced(results: dict[str, Intent | str]) -> None:
    """No human message is taken for a machine's; each is answerable, except those with no
    From address at all (fixtures whose headers Python cannot see), which are quarantined
    with that reason: there is nobody to answer."""
    humans = [c for c in peers.file_cases() if c["category"] == "human"]
    automatic = [c["id"] for c in humans if isinstance(r := results[c["id"]], Intent)
                 and not r.answerable]
    unanswerable = [c for c in humans if isinstance(results[c["id"]], str)]
    without_sender = [c["id"] for c in unanswerable
                      if parse_message(peers.raw_of(c)).get("From") is None
                      and "From" in str(results[c["id"]])]
    print(f"\nhuman messages: {len(humans)}, taken for a machine's: {len(automatic)}, "
          f"quarantined for want of a From address: {len(without_sender)}")
    assert not automatic
    assert sorted(without_sender) == sorted(c["id"] for c in unanswerable)


def test_reply_text_is_what_the_sender_wrote(corpus: object) -> None:
    """On the 150 reply cases: >= 140 exactly right, <= 3 leaking quoted lines."""
    right = 0
    leaking: list[str] = []
    wrong: list[str] = []
    for case in peers.reply_cases():
        verdict = peers.score(reply_text(parse_message(peers.raw_of(case))), case)
        right += verdict.right
        if verdict.leaked:
            leaking.append(case["id"])
        elif not verdict.right:
            wrong.append(case["id"])
    total = len(peers.reply_cases())
    print(f"\nreply text: {right} of {total} exactly right, {len(leaking)} leaking "
          f"{leaking}, other differences {wrong}")
    assert right >= 140
    assert len(leaking) <= 3


def test_no_quoted_footer_becomes_a_cancellation(corpus: object) -> None:
    """No reply case cancels: an "unsubscribe" footer in the quote is not the sender's."""
    cancelled = []
    for n, case in enumerate(peers.reply_cases()):
        result = read(peers.raw_of(case), _catalog(), now=NOW, inbox_address=INBOX,
                      max_bytes=10_000_000, size=None, message_id=f"<reply-{n}@test>")
        if isinstance(result, Intent) and result.kind is IntentKind.CANCELLATION:
            cancelled.append(case["id"])
    assert not cancelled
