"""Tests of the planner: which messages are due, scheduled, sent or missed at a given moment."""

from __future__ import annotations

import gc
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mailer.domain import Kind, Outgoing, Status, outbox_key
from mailer.planner import Contact, EventVersion, Plan, Planned, Registrant, plan
from mailer.schedule import Catalog, load_catalog

SCHEDULE = """
[groups]
africa = ["SN", "CI", "CM"]

[series]
id = "cyber"
title = { en = "Cybercrime", fr = "Cybercriminalité" }
max_per_country = 4
reminders = ["7d", "1d", "1h"]
pack_at = "3d"
certificate = "@CERTIFICATE@"
invitation_at = 2020-06-01T09:00:00Z

[series.pack]
factsheet = "packs/factsheet.{lang}.pdf"

[[event]]
id = "africa-fr"
start = @START@
end = @END@
language = "fr"
invited = ["@africa"]
cancelled = @CANCELLED@

[[event]]
id = "asia-en"
start = 2020-06-24T07:00:00Z
end = 2020-06-24T08:45:00Z
language = "en"
invited = ["PH", "ID"]
"""

START = datetime(2020, 7, 9, 8, 0, tzinfo=UTC)
END = datetime(2020, 7, 9, 9, 45, tzinfo=UTC)
EARLY = datetime(2020, 6, 10, 12, 0, tzinfo=UTC)


def catalog(tmp_path: Path, *, certificate: str = "on_request", cancelled: bool = False,
            moved: timedelta = timedelta()) -> Catalog:
    """The test series, written as a schedule file and loaded like staff's."""
    text = (SCHEDULE.replace("@CERTIFICATE@", certificate)
            .replace("@CANCELLED@", "true" if cancelled else "false")
            .replace("@START@", (START + moved).isoformat())
            .replace("@END@", (END + moved).isoformat()))
    folder = tmp_path / f"schedules-{certificate}-{cancelled}-{moved.days}"
    folder.mkdir()
    (folder / "cyber.toml").write_text(text, encoding="utf-8")
    return load_catalog(folder)


def person(id: int, email: str, *, status: Status = Status.CONFIRMED,
           confirmed_at: datetime | None = EARLY, event_id: str = "africa-fr",
           language: str = "fr", sequence_seen: int = 0, certificate: bool = False,
           attended: bool | None = None) -> Registrant:
    """A registrant of the Africa webinar, confirmed early unless told otherwise."""
    return Registrant(id=id, event_id=event_id, email=email, name=f"Person {id}",
                      language=language, country="SN", status=status,
                      confirmed_at=confirmed_at if status is Status.CONFIRMED else None,
                      sequence_seen=sequence_seen, certificate_requested=certificate,
                      attended=attended)


def kinds(result: Plan, kind: Kind, state: str | None = None) -> list[Planned]:
    """The planned messages of one kind (and state), in due order."""
    return sorted((p for p in result.items
                   if p.out.kind is kind and (state is None or p.state == state)),
                  key=lambda p: (p.due_at, p.out.recipient))


def run(cat: Catalog, people: list[Registrant], now: datetime, *,
        sent: frozenset[str] = frozenset(), versions: dict[str, EventVersion] | None = None,
        contacts: list[Contact] | None = None) -> Plan:
    """Plan with the defaults most tests share."""
    return plan(cat, people, versions or {}, sent, contacts or [], now)


def test_reminders_fall_due_at_7d_1d_and_1h_before_the_start(tmp_path: Path) -> None:
    """Each reminder is scheduled for start minus its offset and turns due at that moment."""
    cat = catalog(tmp_path)
    people = [person(1, "awa@justice.sn")]
    before = run(cat, people, START - timedelta(days=8))
    reminders = kinds(before, Kind.REMINDER)
    assert [p.due_at for p in reminders] == [START - timedelta(days=7),
                                             START - timedelta(days=1),
                                             START - timedelta(hours=1)]
    assert {p.state for p in reminders} == {"scheduled"}
    assert [p.out.context["offset"] for p in reminders] == ["7d", "1d", "1h"]

    sent: set[str] = set()
    for offset in (timedelta(days=7), timedelta(days=1), timedelta(hours=1)):
        at = run(cat, people, START - offset, sent=frozenset(sent))
        due = [o for o in at.due if o.kind is Kind.REMINDER]
        assert [o.due_at for o in due] == [START - offset]
        sent |= {o.key for o in at.due}
    assert len([k for k in sent if k.startswith("reminder|")]) == 3


def test_reminder_keys_and_fields(tmp_path: Path) -> None:
    """A reminder carries the registrant's details and the key outbox_key gives for it."""
    cat = catalog(tmp_path)
    versions = {"africa-fr": EventVersion("africa-fr", 3, EARLY - timedelta(days=1))}
    out = kinds(run(cat, [person(7, "Awa@Justice.SN", sequence_seen=3)], EARLY,
                    versions=versions), Kind.REMINDER)[0].out
    assert out.key == outbox_key(Kind.REMINDER, "awa@justice.sn", "africa-fr", 0,
                                 "7d@2020-07-09T08:00:00+00:00")
    assert (out.recipient, out.name, out.language, out.country) == (
        "Awa@Justice.SN", "Person 7", "fr", "SN")
    assert (out.event_id, out.sequence, out.registration_id) == ("africa-fr", 3, 7)
    assert out.due_at == START - timedelta(days=7)
    assert out == Outgoing(key=out.key, kind=Kind.REMINDER, recipient="Awa@Justice.SN",
                           language="fr", event_id="africa-fr", name="Person 7", country="SN",
                           sequence=3, due_at=START - timedelta(days=7), registration_id=7,
                           context={"offset": "7d"})


def test_late_registrant_gets_later_reminders_and_the_pack_at_confirmation(
        tmp_path: Path) -> None:
    """Confirmed two days before: no 7d reminder, but 1d and 1h, and the pack at once."""
    cat = catalog(tmp_path)
    confirmed = START - timedelta(days=2)
    result = run(cat, [person(1, "late@gov.sn", confirmed_at=confirmed)], confirmed)
    assert [p.due_at for p in kinds(result, Kind.REMINDER)] == [START - timedelta(days=1),
                                                                START - timedelta(hours=1)]
    [pack] = kinds(result, Kind.PACK)
    assert (pack.due_at, pack.state) == (confirmed, "due")
    # Keyed by the version of the pack's files (0), not by the event's start or version.
    assert pack.out.key == outbox_key(Kind.PACK, "late@gov.sn", "africa-fr", 0)


def test_early_registrant_gets_the_pack_three_days_before(tmp_path: Path) -> None:
    """The pack is scheduled for start minus pack_at for people confirmed before then."""
    cat = catalog(tmp_path)
    result = run(cat, [person(1, "awa@justice.sn")], EARLY)
    [pack] = kinds(result, Kind.PACK)
    assert (pack.due_at, pack.state) == (START - timedelta(days=3), "scheduled")


def test_nothing_is_planned_twice_once_keys_are_enqueued(tmp_path: Path) -> None:
    """Feeding back the keys of due messages leaves nothing due in the next plan."""
    cat = catalog(tmp_path)
    people = [person(1, "a@gov.sn"), person(2, "b@gov.sn", confirmed_at=START - timedelta(days=2))]
    now = START - timedelta(days=2)
    first = run(cat, people, now)
    # Both packs (one on time, one at confirmation) and the early registrant's 7d reminder.
    assert sorted((o.kind, o.recipient) for o in first.due) == [
        (Kind.PACK, "a@gov.sn"), (Kind.PACK, "b@gov.sn"), (Kind.REMINDER, "a@gov.sn")]
    again = run(cat, people, now, sent=frozenset(o.key for o in first.due))
    assert again.due == []
    assert len([p for p in again.items if p.state == "sent"]) == 3


def test_reminders_are_missed_after_the_start(tmp_path: Path) -> None:
    """An unsent reminder is missed once the event has started; the pack is still due."""
    cat = catalog(tmp_path)
    result = run(cat, [person(1, "a@gov.sn")], START + timedelta(minutes=10))
    reminders = kinds(result, Kind.REMINDER)
    assert {p.state for p in reminders} == {"missed"}
    assert reminders[-1].reason == "event started"
    assert [p.state for p in kinds(result, Kind.PACK)] == ["due"]
    assert [p.out.kind for p in result.missed] == [Kind.REMINDER] * 3
    assert not any(o.kind is Kind.REMINDER for o in result.due)


def test_pack_is_missed_after_the_end(tmp_path: Path) -> None:
    """An unsent pack is missed once the event has ended."""
    cat = catalog(tmp_path)
    [pack] = kinds(run(cat, [person(1, "a@gov.sn")], END), Kind.PACK)
    assert (pack.state, pack.reason) == ("missed", "event ended")


def test_an_overdue_reminder_is_superseded_by_the_next_one(tmp_path: Path) -> None:
    """After an outage spanning two moments, only the closer reminder goes out."""
    cat = catalog(tmp_path)
    result = run(cat, [person(1, "a@gov.sn")], START - timedelta(hours=20))
    by_offset = {p.out.context["offset"]: p for p in kinds(result, Kind.REMINDER)}
    assert by_offset["7d"].state == "missed"
    assert by_offset["7d"].reason == "superseded by the 1d reminder"
    assert by_offset["1d"].state == "due"
    assert by_offset["1h"].state == "scheduled"


def test_sent_reminders_stay_sent_and_never_repeat(tmp_path: Path) -> None:
    """A reminder whose key is enqueued is reported sent even after it would be missed."""
    cat = catalog(tmp_path)
    people = [person(1, "a@gov.sn")]
    at_7d = run(cat, people, START - timedelta(days=7))
    keys = frozenset(o.key for o in at_7d.due)
    later = run(cat, people, START + timedelta(minutes=5), sent=keys)
    assert kinds(later, Kind.REMINDER)[0].state == "sent"


def test_moved_event_gets_new_reminders(tmp_path: Path) -> None:
    """Moving the start gives new reminder keys; an unchanged start gives the same ones."""
    people = [person(1, "a@gov.sn")]
    original = {p.out.key for p in kinds(run(catalog(tmp_path), people, EARLY), Kind.REMINDER)}
    same = {p.out.key for p in kinds(run(catalog(tmp_path, certificate="never"), people, EARLY),
                                     Kind.REMINDER)}
    moved = {p.out.key for p in kinds(run(catalog(tmp_path, moved=timedelta(days=1)),
                                          people, EARLY), Kind.REMINDER)}
    assert same == original
    assert moved.isdisjoint(original) and len(moved) == 3


def test_moment_passed_before_a_change_is_not_caught_up(tmp_path: Path) -> None:
    """A reminder moment that had passed when the event changed is missed, not sent late."""
    cat = catalog(tmp_path, moved=timedelta(days=1))
    moved = datetime(2020, 7, 5, 12, 0, tzinfo=UTC)
    versions = {"africa-fr": EventVersion("africa-fr", 1, moved)}
    result = run(cat, [person(1, "a@gov.sn")], moved, versions=versions)
    by_offset = {p.out.context["offset"]: p for p in kinds(result, Kind.REMINDER)}
    assert by_offset["7d"].state == "missed"
    assert by_offset["1d"].state == "scheduled"
    assert [p.state for p in kinds(result, Kind.UPDATE)] == ["due"]


def test_update_goes_once_to_each_confirmed_participant(tmp_path: Path) -> None:
    """A version bump gives one update per confirmed participant who has not seen it."""
    cat = catalog(tmp_path)
    changed = datetime(2020, 7, 1, 10, 0, tzinfo=UTC)
    versions = {"africa-fr": EventVersion("africa-fr", 1, changed)}
    people = [person(1, "a@gov.sn"), person(2, "b@gov.sn"),
              person(3, "seen@gov.sn", sequence_seen=1),
              person(4, "wait@gov.sn", status=Status.WAITING),
              person(5, "after@gov.sn", confirmed_at=changed + timedelta(hours=1))]
    result = run(cat, people, changed + timedelta(hours=2), versions=versions)
    updates = kinds(result, Kind.UPDATE)
    assert [p.out.recipient for p in updates] == ["a@gov.sn", "b@gov.sn"]
    assert {(p.state, p.due_at, p.out.sequence) for p in updates} == {("due", changed, 1)}
    assert updates[0].out.key == outbox_key(Kind.UPDATE, "a@gov.sn", "africa-fr", 1)
    again = run(cat, people, changed + timedelta(hours=3), versions=versions,
                sent=frozenset(p.out.key for p in updates))
    assert [o for o in again.due if o.kind is Kind.UPDATE] == []


def test_two_quick_changes_give_one_update_with_the_latest_sequence(tmp_path: Path) -> None:
    """Two edits before planning give a single update carrying sequence 2."""
    cat = catalog(tmp_path)
    changed = datetime(2020, 7, 1, 10, 5, tzinfo=UTC)
    versions = {"africa-fr": EventVersion("africa-fr", 2, changed)}
    result = run(cat, [person(1, "a@gov.sn")], changed, versions=versions)
    [update] = kinds(result, Kind.UPDATE)
    assert (update.out.sequence, update.state) == (2, "due")
    assert update.out.key == outbox_key(Kind.UPDATE, "a@gov.sn", "africa-fr", 2)
    assert {p.out.sequence for p in result.items} == {2}


def test_update_is_missed_after_the_end(tmp_path: Path) -> None:
    """A change noticed after the event ended sends no update."""
    cat = catalog(tmp_path)
    versions = {"africa-fr": EventVersion("africa-fr", 1, END + timedelta(hours=1))}
    [update] = kinds(run(cat, [person(1, "a@gov.sn")], END + timedelta(hours=1),
                         versions=versions), Kind.UPDATE)
    assert update.state == "missed"


def test_cancelled_event_sends_only_cancellations_to_confirmed_and_waiting(
        tmp_path: Path) -> None:
    """A cancelled event plans one cancellation per confirmed or waiting registrant, nothing
    else."""
    cat = catalog(tmp_path, cancelled=True)
    changed = datetime(2020, 7, 2, 9, 0, tzinfo=UTC)
    versions = {"africa-fr": EventVersion("africa-fr", 4, changed)}
    people = [person(1, "ok@gov.sn", certificate=True),
              person(2, "wait@gov.sn", status=Status.WAITING),
              person(3, "review@gov.sn", status=Status.REVIEW),
              person(4, "rejected@gov.sn", status=Status.REJECTED),
              person(5, "gone@gov.sn", status=Status.CANCELLED)]
    contacts = [Contact("SN", "Focal Point", "fp@gov.sn", "fr")]
    result = run(cat, people, changed + timedelta(minutes=1), versions=versions,
                 contacts=contacts)
    africa = [p for p in result.items if p.out.event_id == "africa-fr"]
    assert {p.out.kind for p in africa} == {Kind.CANCELLATION}
    assert sorted(p.out.recipient for p in africa) == ["ok@gov.sn", "wait@gov.sn"]
    assert {(p.state, p.due_at) for p in africa} == {("due", changed)}
    assert africa[0].out.key == outbox_key(Kind.CANCELLATION, africa[0].out.recipient,
                                           "africa-fr", 4)
    after_end = run(cat, people, END, versions=versions)
    assert {p.state for p in after_end.items} == {"missed"}


def test_cancellation_without_a_recorded_version_is_due_now(tmp_path: Path) -> None:
    """With no stored version, the cancellation falls due at the planning moment."""
    cat = catalog(tmp_path, cancelled=True)
    now = datetime(2020, 7, 3, tzinfo=UTC)
    [cancel] = run(cat, [person(1, "a@gov.sn")], now).items
    assert (cancel.out.kind, cancel.due_at, cancel.state) == (Kind.CANCELLATION, now, "due")


@pytest.mark.parametrize(("policy", "expected"), [
    ("never", []),
    ("on_request", ["absent@gov.sn", "present@gov.sn"]),
    ("attendees", ["present@gov.sn"]),
])
def test_certificate_policies(tmp_path: Path, policy: str, expected: list[str]) -> None:
    """Certificates follow the series' policy and go out after the end, never missed."""
    cat = catalog(tmp_path, certificate=policy)
    people = [person(1, "present@gov.sn", certificate=True, attended=True),
              person(2, "absent@gov.sn", certificate=True, attended=None),
              person(3, "noask@gov.sn", attended=True),
              person(4, "wait@gov.sn", status=Status.WAITING, certificate=True)]
    before = kinds(run(cat, people, END - timedelta(minutes=1)), Kind.CERTIFICATE)
    assert sorted(p.out.recipient for p in before) == expected
    assert {p.state for p in before} <= {"scheduled"}
    long_after = kinds(run(cat, people, END + timedelta(days=365)), Kind.CERTIFICATE)
    assert {p.state for p in long_after} <= {"due"}
    assert {p.due_at for p in long_after} <= {END}
    assert len(long_after) == len(expected)


def test_invitations_go_to_contacts_of_invited_countries_only(tmp_path: Path) -> None:
    """Each event invites the focal points of its own countries, in their language."""
    cat = catalog(tmp_path)
    contacts = [Contact("SN", "Awa", "awa@gouv.sn", "fr", "Ministère de la Justice"),
                Contact("ci", "Koffi", "koffi@gouv.ci", "de"),
                Contact("FR", "Jean", "jean@gouv.fr", "fr"),
                Contact("PH", "Maria", "maria@gov.ph", "en")]
    invitation_at = datetime(2020, 6, 1, 9, 0, tzinfo=UTC)
    before = run(cat, [], invitation_at - timedelta(minutes=1), contacts=contacts)
    assert before.next_at == invitation_at
    result = run(cat, [], invitation_at, contacts=contacts)
    invitations = {(p.out.event_id, p.out.recipient): p for p in kinds(result, Kind.INVITATION)}
    assert sorted(invitations) == [("africa-fr", "awa@gouv.sn"), ("africa-fr", "koffi@gouv.ci"),
                                   ("asia-en", "maria@gov.ph")]
    awa = invitations[("africa-fr", "awa@gouv.sn")]
    assert awa.state == "due" and awa.out.registration_id is None
    assert awa.out.context == {"form_rows": 4, "organisation": "Ministère de la Justice"}
    assert awa.out.key == outbox_key(Kind.INVITATION, "awa@gouv.sn", "africa-fr", 0)
    assert invitations[("africa-fr", "koffi@gouv.ci")].out.language == "fr"
    assert invitations[("africa-fr", "koffi@gouv.ci")].out.country == "CI"
    late = run(cat, [], datetime(2020, 6, 30, tzinfo=UTC), contacts=contacts)
    states = {p.out.event_id: p.state for p in kinds(late, Kind.INVITATION)}
    assert states == {"africa-fr": "due", "asia-en": "missed"}


@pytest.mark.parametrize("status", [Status.WAITING, Status.REVIEW, Status.CANCELLED,
                                    Status.REJECTED])
def test_unconfirmed_registrants_get_no_reminders_packs_or_updates(
        tmp_path: Path, status: Status) -> None:
    """Only confirmed participants are reminded, sent the pack or told of changes."""
    cat = catalog(tmp_path)
    versions = {"africa-fr": EventVersion("africa-fr", 1, EARLY)}
    result = run(cat, [person(1, "a@gov.sn", status=status)], EARLY, versions=versions)
    assert result.items == ()


def test_language_falls_back_to_the_event_language(tmp_path: Path) -> None:
    """A registrant writing in a language without templates is answered in the event's."""
    cat = catalog(tmp_path)
    result = run(cat, [person(1, "a@gov.sn", language="de"), person(2, "b@gov.sn", language="es")],
                 EARLY)
    languages = {p.out.recipient: p.out.language for p in result.items}
    assert languages == {"a@gov.sn": "fr", "b@gov.sn": "es"}


def test_registrants_of_unknown_events_are_ignored(tmp_path: Path) -> None:
    """A registration for an event no longer in the schedules plans nothing."""
    result = run(catalog(tmp_path), [person(1, "a@gov.sn", event_id="gone")], EARLY)
    assert result.items == ()


def test_events_of_a_series_are_planned_independently(tmp_path: Path) -> None:
    """The same person registered for two events gets each event's reminders."""
    cat = catalog(tmp_path)
    people = [person(1, "a@gov.sn"), person(2, "a@gov.sn", event_id="asia-en")]
    reminders = kinds(run(cat, people, EARLY), Kind.REMINDER)
    assert sorted({p.out.event_id for p in reminders}) == ["africa-fr", "asia-en"]
    assert len({p.out.key for p in reminders}) == 6


def test_next_at_is_the_earliest_scheduled_moment(tmp_path: Path) -> None:
    """next_at names when the next message falls due, ignoring due and sent ones."""
    cat = catalog(tmp_path)
    people = [person(1, "a@gov.sn")]
    assert run(cat, people, EARLY).next_at == START - timedelta(days=7)
    assert run(cat, people, START - timedelta(days=2)).next_at == START - timedelta(days=1)
    assert run(cat, people, END + timedelta(days=1), sent=frozenset()).next_at is None


def test_due_is_in_due_order(tmp_path: Path) -> None:
    """Plan.due lists what to enqueue oldest first."""
    cat = catalog(tmp_path)
    changed = START - timedelta(days=5)
    versions = {"africa-fr": EventVersion("africa-fr", 1, changed)}
    due = run(cat, [person(1, "a@gov.sn")], START - timedelta(days=2), versions=versions).due
    assert [(o.kind, o.due_at) for o in due] == [(Kind.UPDATE, changed),
                                                 (Kind.PACK, START - timedelta(days=3))]


def test_summary_counts_per_event_kind_and_moment(tmp_path: Path) -> None:
    """The summary has one row per (event, kind, due_at) with a count per state."""
    cat = catalog(tmp_path)
    people = [person(1, "a@gov.sn"), person(2, "b@gov.sn"),
              person(3, "c@gov.sn", confirmed_at=START - timedelta(days=2))]
    now = START - timedelta(days=2)
    first = run(cat, people, now)
    sent = frozenset(p.out.key for p in first.items
                     if p.out.kind is Kind.PACK and p.out.recipient == "a@gov.sn")
    rows = {(r["event_id"], r["kind"], r["due_at"]): r for r in run(cat, people, now,
                                                                    sent=sent).summary()}
    pack = rows[("africa-fr", "pack", "2020-07-06T08:00:00+00:00")]
    assert {k: pack[k] for k in ("scheduled", "due", "sent", "missed", "total")} == {
        "scheduled": 0, "due": 1, "sent": 1, "missed": 0, "total": 2}
    late_pack = rows[("africa-fr", "pack", "2020-07-07T08:00:00+00:00")]
    assert (late_pack["due"], late_pack["total"]) == (1, 1)
    one_day = rows[("africa-fr", "reminder", "2020-07-08T08:00:00+00:00")]
    assert (one_day["scheduled"], one_day["total"]) == (3, 3)
    week = rows[("africa-fr", "reminder", "2020-07-02T08:00:00+00:00")]
    assert (week["due"], week["total"]) == (2, 2)       # the late registrant has none
    moments = [due_at for (_, _, due_at) in rows]
    assert moments == sorted(moments)
    at_start = {(r["kind"], r["due_at"]): r for r in run(cat, people, START).summary()}
    assert at_start[("reminder", "2020-07-02T08:00:00+00:00")]["missed"] == 2


def test_planning_leaves_the_garbage_collector_as_it_was(tmp_path: Path) -> None:
    """Pausing the cyclic collector while planning never leaves it switched off."""
    cat = catalog(tmp_path)
    assert gc.isenabled()
    run(cat, [person(1, "a@gov.sn")], EARLY)
    assert gc.isenabled()
    gc.disable()
    try:
        run(cat, [person(1, "a@gov.sn")], EARLY)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_keeping_only_due_and_missed_gives_the_same_due_and_next_moment(tmp_path: Path) -> None:
    """A plan kept to due and missed rows has the full plan's due, missed and next moment."""
    cat = catalog(tmp_path)
    people = [person(n, f"p{n}@justice.sn") for n in range(1, 6)]
    now = START - timedelta(days=1)
    sent = frozenset(o.key for o in run(cat, people, START - timedelta(days=7)).due)
    full = plan(cat, people, {}, sent, [], now)
    kept = plan(cat, people, {}, sent, [], now, keep={"due", "missed"})
    assert kept.due == full.due and kept.missed == full.missed
    assert kept.next_at == full.next_at == START - timedelta(hours=1)
    assert {p.state for p in full.items} >= {"sent", "scheduled"}
    assert [p.state for p in kept.items if p.state not in ("due", "missed")] == ["scheduled"]
    assert len(kept.items) < len(full.items)


def test_every_message_to_a_person_carries_the_zone_of_their_reply_and_when_it_was_read(
        tmp_path: Path) -> None:
    """The offset of their reply's Date header goes with the moment it was read (the
    registration's), so the composer compares it at that moment, not at the event's."""
    cat = catalog(tmp_path)
    written = datetime(2020, 2, 10, 18, 0, tzinfo=UTC)
    people = [replace(person(1, "awa@justice.sn"), utc_offset=-480, registered_at=written),
              person(2, "kofi@justice.sn")]
    result = run(cat, people, START - timedelta(days=3))
    by_person = {p.out.recipient: p.out.context for p in result.items
                 if p.out.kind is Kind.PACK}
    assert by_person["awa@justice.sn"] == {"utc_offset": -480,
                                           "utc_offset_seen": "2020-02-10T18:00:00+00:00"}
    assert by_person["kofi@justice.sn"] == {}
