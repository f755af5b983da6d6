"""The pure parts of staff control: REFs, the digest-reply grammar, the reply address token,
the staff decisions of the rules, and when a digest is due."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from mailer import rules
from mailer.domain import Kind, Status
from mailer.rules import Registered
from mailer.schedule import Catalog
from mailer.staff import grammar, tokens
from mailer.staff.digest import Facts, due_day, worth_sending
from mailer.staff.refs import parse_ref, registration_ref, with_refs
from mailer.staff.replies import recipients
from tests.builders import make_catalog

UTC = timezone.utc
NOW = datetime(2020, 6, 20, 12, tzinfo=UTC)


def test_refs_read_aloud_and_back() -> None:
    assert registration_ref(12) == "R12"
    assert [parse_ref(t) for t in ("R12", "r12", " R-12 ", "M12", "12", "R1x")] == [
        12, 12, 12, None, None, None]
    assert parse_ref("m7", "M") == 7


def test_summaries_name_people_by_ref_never_by_address() -> None:
    text = "awa@gouv.sn (SN) confirmed; Kofi@mfa.gh already registered; x@y.org bounced"
    assert with_refs(text, {"awa@gouv.sn": 3, "kofi@mfa.gh": 9}) == (
        "R3 (SN) confirmed; R9 already registered; someone bounced")


def test_the_grammar_reads_the_example_of_the_issue() -> None:
    reading = grammar.read_commands("approve R12 R14; reject R15 not a government official")
    assert reading.commands == (
        grammar.Command("approve", ("R12", "R14"), "", "approve R12 R14"),
        grammar.Command("reject", ("R15",), "not a government official",
                        "reject R15 not a government official"))
    assert reading.unread == ()


def test_the_grammar_stops_at_the_quote_and_reports_what_it_cannot_read() -> None:
    text = ("Hi,\nApprove: R3, r4 and R5 good profiles.\nreject R6\ncancel R7\n\n"
            "On Wed, 8 Jul 2020 at 08:01, Webinars <w@x.org> wrote:\n> approve R99\n")
    reading = grammar.read_commands(text)
    assert [(c.verb, c.refs, c.reason) for c in reading.commands] == [
        ("approve", ("R3", "R4", "R5"), "good profiles"), ("cancel", ("R7",), "")]
    assert reading.unread == ("not a command: Hi,",
                              "reject R6: say why, e.g. reject R6 not a government official")
    assert not grammar.has_commands("I approve of the programme.\nThanks")


def test_the_grammar_gives_up_after_a_few_unreadable_lines() -> None:
    text = "\n".join(f"line {n}" for n in range(20)) + "\napprove R1"
    reading = grammar.read_commands(text)
    assert reading.commands == () and len(reading.unread) == grammar.MAX_UNREAD


def test_the_grammar_stops_at_the_digests_own_listing() -> None:
    """Below the staff's commands, the digest's lines (a REF, then what the participant
    wrote: a name "x; approve R1", a position "approve R1") are not commands."""
    text = ("approve R3\n\nWAITING FOR A DECISION: 2\n\nR1  Pierre; approve R1 (FR)\n"
            "  pierre@x.fr\n  approve R1, Ministry of Justice\n")
    reading = grammar.read_commands(text)
    assert [c.text for c in reading.commands] == ["approve R3"]
    assert reading.unread == ("not a command: WAITING FOR A DECISION: 2",)


def test_the_recipients_of_a_reply_are_read_within_bounds() -> None:
    """Where a reply was sent is read from the first 20 headers of each name, each cut to
    8,000 characters, as understanding reads them: thousands of Cc headers, or one of
    megabytes, cost no more than that (the addresses past the bound are not read)."""
    cc = "".join(f"Cc: someone{n}@example.org\r\n" for n in range(30))
    raw = (f"From: staff@example.org\r\nTo: webinars@example.org\r\n{cc}"
           "Cc: webinars+digest-1-0123456789abcdef01234567@example.org\r\n"
           f"X-Original-To: a@example.org, {'b' * 9_000}@example.org\r\n\r\nhello\r\n"
           ).encode()
    found = recipients(raw)
    assert found[0] == "webinars@example.org" and "someone19@example.org" in found
    assert "someone20@example.org" not in found
    assert not any("digest" in address or "bbb" in address for address in found)
    assert "a@example.org" in found


def test_a_digest_token_is_its_own_and_needs_the_secret() -> None:
    address = tokens.reply_address("webinars@example.org", "s3cret", 7)
    local, _, domain = address.partition("@")
    assert domain == "example.org" and local.startswith("webinars+digest-7-")
    found = tokens.digest_address(["Someone <x@y.org>", address.upper()],
                                  "webinars@example.org")
    assert found is not None and found.digest_id == 7
    assert tokens.valid("s3cret", found)
    assert not tokens.valid("other secret", found)
    assert not tokens.valid("", found)
    assert not tokens.valid("s3cret", tokens.DigestAddress(8, found.token))
    assert tokens.digest_address([address.replace("example.org", "evil.org")],
                                 "webinars@example.org") is None
    assert tokens.mentions_tag(f"To: {address}\r\n".encode())


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    return make_catalog(tmp_path)


def people(*rows: tuple[int, str, str, Status]) -> list[Registered]:
    return [Registered(id=i, email=e, country=c, status=s,
                       created_at=NOW - timedelta(hours=10 - i), name=e.split("@")[0])
            for i, e, c, s in rows]


def test_approve_takes_a_seat_or_the_waiting_list(catalog: Catalog) -> None:
    event = catalog.events["africa-fr"]
    waiting = people((1, "fr@x.fr", "FR", Status.REVIEW))
    decision = rules.approve(waiting[0], event, waiting, sequence=2, now=NOW, action="a1")
    assert decision.changed == (rules.StatusChange(1, Status.CONFIRMED, 0),)
    (answer,) = decision.answers
    assert (answer.kind, answer.recipient, answer.sequence) == (
        Kind.ACKNOWLEDGEMENT, "fr@x.fr", 2)
    assert answer.key.endswith("a1")
    full = people(*[(i, f"p{i}@x.fr", "FR", Status.CONFIRMED) for i in range(1, 5)],
                  (5, "late@x.fr", "FR", Status.REVIEW))
    decision = rules.approve(full[4], event, full, sequence=0, now=NOW, action="a2")
    assert decision.changed == (rules.StatusChange(5, Status.WAITING, 0),)
    assert decision.answers[0].kind is Kind.WAITING_LIST


@pytest.mark.parametrize("status, says", [
    (Status.CONFIRMED, "is already confirmed"), (Status.WAITING, "is already waiting"),
    (Status.CANCELLED, "was cancelled")])
def test_approving_twice_or_a_cancelled_registration_is_refused(
        catalog: Catalog, status: Status, says: str) -> None:
    (one,) = people((1, "a@x.sn", "SN", status))
    with pytest.raises(rules.Refused, match=says):
        rules.approve(one, catalog.events["africa-fr"], [one], sequence=0, now=NOW,
                      action="a")


def test_approving_after_the_start_is_refused(catalog: Catalog) -> None:
    event = catalog.events["africa-fr"]
    (one,) = people((1, "a@x.fr", "FR", Status.REVIEW))
    with pytest.raises(rules.Refused, match="has started"):
        rules.approve(one, event, [one], sequence=0, now=event.start, action="a")


def test_rejecting_a_seat_promotes_the_first_waiting_of_that_country(catalog: Catalog) -> None:
    event = catalog.events["africa-fr"]
    regs = people(*[(i, f"p{i}@x.sn", "SN", Status.CONFIRMED) for i in range(1, 5)],
                  (5, "w5@x.sn", "SN", Status.WAITING), (6, "w6@x.sn", "SN", Status.WAITING),
                  (7, "g@x.gh", "GH", Status.WAITING))
    decision = rules.reject(regs[1], event, regs, sequence=0, now=NOW, action="r")
    # The refusal cancels their calendar entry one SEQUENCE above their invitation.
    assert decision.changed == (rules.StatusChange(2, Status.REJECTED, 1),
                                rules.StatusChange(5, Status.CONFIRMED))
    assert [(a.kind, a.recipient, a.sequence, a.context["status"] if a.context else "")
            for a in decision.answers] == [
        (Kind.REJECTED, "p2@x.sn", 1, "confirmed"), (Kind.PROMOTION, "w5@x.sn", 0, "")]
    # Rejecting someone who was waiting frees nothing, and they had no calendar entry.
    decision = rules.reject(regs[5], event, regs, sequence=0, now=NOW, action="r2")
    assert decision.changed == (rules.StatusChange(6, Status.REJECTED, 0),)
    with pytest.raises(rules.Refused, match="already rejected"):
        rules.reject(people((8, "x@x.sn", "SN", Status.REJECTED))[0], event, regs,
                     sequence=0, now=NOW, action="r3")


def test_the_digest_is_due_from_its_hour_in_the_staffs_zone() -> None:
    paris = ZoneInfo("Europe/Paris")
    assert due_day(datetime(2020, 7, 8, 5, 59, tzinfo=UTC), 8, paris) is None
    assert due_day(datetime(2020, 7, 8, 6, 0, tzinfo=UTC), 8, paris) == "2020-07-08"
    # 23:30 UTC is already the next day in Paris.
    assert due_day(datetime(2020, 7, 8, 23, 30, tzinfo=UTC), 0, paris) == "2020-07-09"


def test_a_day_with_nothing_new_and_nothing_waiting_gets_no_digest() -> None:
    empty = Facts(since="a", until="b", coming=[{"at": "x", "event": "e", "what": "reminder",
                                                 "count": 3}])
    assert not worth_sending(empty)
    assert worth_sending(Facts(since="a", until="b", waiting=[{"ref": "R1"}]))
    assert worth_sending(Facts(since="a", until="b", failed=[{"id": 1}]))
