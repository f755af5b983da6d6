"""The planner: from events, registrations, what was already sent and ``now``, every message due.

A pure function of its inputs (no database, no clock, no I/O). Each planned message carries the
idempotent outbox key of ``mailer.domain.outbox_key``, so enqueuing a plan twice stores it once,
and a restart recomputes the same plan from the same facts.
"""

from __future__ import annotations

import gc
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from mailer.domain import Kind, Outgoing, Status, outbox_key
from mailer.durations import format_duration
from mailer.schedule import LANGUAGES, Catalog, Event

# "queued" and "failed" are what the outbox says of a planned message (``sync.current_plan``):
# in the outbox but not yet accepted by the server, or refused by it for good.
State = Literal["scheduled", "due", "sent", "missed", "queued", "failed"]
STATES: tuple[State, ...] = ("scheduled", "due", "sent", "missed", "queued", "failed")


@dataclass(frozen=True, slots=True)
class Registrant:
    """One registration as the store holds it: the planner's view of a participant."""

    id: int
    event_id: str
    email: str
    name: str
    language: str
    country: str | None
    status: Status
    confirmed_at: datetime | None       # when it became confirmed (registration or promotion)
    sequence_seen: int                  # SEQUENCE of the last calendar message they received
    certificate_requested: bool
    attended: bool | None
    sequence_offset: int = 0            # added to the event's SEQUENCE (own cancellations)
    utc_offset: int | None = None       # minutes, from the Date header of their reply
    registered_at: datetime | None = None  # when that reply was read (the offset's moment)


@dataclass(frozen=True)
class Contact:
    """A focal point of one country who receives the invitation that opens registration."""

    country: str
    name: str
    email: str
    language: str
    organisation: str = ""
    series_id: str | None = None        # the series whose contacts file lists them (None: all)


@dataclass(frozen=True)
class EventVersion:
    """The current version of an event: ``sequence`` is raised on every change of the event.

    ``shown`` holds what participants saw of each version (``"2"`` -> start, end, join_url,
    title), so an update can say what changed since the version a person last received;
    ``packs`` the version of the pack's files per language (raised when the files change).
    """

    event_id: str
    sequence: int
    changed_at: datetime
    shown: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    packs: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Planned:
    """One message of the plan, with when it is due and where it stands at ``now``."""

    out: Outgoing
    due_at: datetime
    state: State
    reason: str = ""


@dataclass(frozen=True)
class Plan:
    """Everything the planner worked out at one moment."""

    items: tuple[Planned, ...]

    @property
    def due(self) -> list[Outgoing]:
        """The messages to enqueue now, oldest first."""
        ready = sorted((p for p in self.items if p.state == "due"),
                       key=lambda p: (p.due_at, p.out.key))
        return [p.out for p in ready]

    @property
    def missed(self) -> list[Planned]:
        """Messages whose moment passed unsent and are no longer worth sending (with a reason)."""
        return sorted((p for p in self.items if p.state == "missed"),
                      key=lambda p: (p.due_at, p.out.key))

    @property
    def next_at(self) -> datetime | None:
        """The earliest moment a scheduled message falls due, or None when nothing is waiting."""
        return min((p.due_at for p in self.items if p.state == "scheduled"), default=None)

    def summary(self) -> list[dict[str, Any]]:
        """One JSON-ready row per (event, kind, due_at) with a count per state, in time order."""
        counts: dict[tuple[str, str, datetime], Counter[str]] = defaultdict(Counter)
        for p in self.items:
            counts[(p.out.event_id or "-", str(p.out.kind), p.due_at)][p.state] += 1
        rows = []
        for (event_id, kind, due_at), per_state in sorted(
                counts.items(), key=lambda kv: (kv[0][2], kv[0][0], kv[0][1])):
            row: dict[str, Any] = {"event_id": event_id, "kind": kind,
                                   "due_at": due_at.isoformat()}
            row.update({state: per_state[state] for state in STATES})
            row["total"] = sum(per_state.values())
            rows.append(row)
        return rows


# A recipient placeholder outbox_key leaves alone, to split a key around its recipient.
_MARK = "\x00"


class _Message:
    """One kind of message for one event at one moment; makes each recipient's copy cheaply.

    Why not ``Outgoing(...)`` per recipient: a frozen dataclass's ``__init__`` sets each of
    Outgoing's twelve fields through ``object.__setattr__`` (about 3 µs on the development
    VM), and a plan for 50,000 registrants makes ~300,000 messages. Copying a template built
    once by the real constructor keeps every field, defaults included, at a fifth of the cost.
    """

    def __init__(self, event: Event, sequence: int, kind: Kind, due_at: datetime,
                 deadline: datetime | None, why_missed: str = "", *, version: int = 0,
                 extra: str = "", context: Mapping[str, Any] | None = None,
                 standing: Sequence[str] = ()) -> None:
        self.due_at = due_at
        self.deadline = deadline            # None: never missed
        self.why_missed = why_missed
        self._context = dict(context or {})
        # The key is outbox_key's own, split once around the recipient so it stays in step.
        self._head, _, self._tail = outbox_key(kind, _MARK, event.id, version,
                                               extra).partition(_MARK)
        # Keys (by their ``extra``) of earlier copies that still stand for this one: sent
        # to a person, this message counts as sent to them (see ``_reminders``).
        self._standing = tuple(outbox_key(kind, _MARK, event.id, version, other)
                               .partition(_MARK)[::2] for other in standing)
        self._template = Outgoing(key="", kind=kind, recipient="", language=event.language,
                                  event_id=event.id, sequence=sequence, due_at=due_at)
        self._fallback = event.language

    def plan_for(self, board: _Board, email: str, name: str, language: str,
                 country: str | None, registration_id: int | None,
                 due_at: datetime | None = None, context: Mapping[str, Any] | None = None,
                 offset: int = 0) -> None:
        """Put this message for one recipient on ``board`` (``due_at`` overrides the moment).

        ``offset`` is added to the SEQUENCE: the person's own withdrawals and
        re-registrations raised their calendar entry above the event's version.

        The first message under a key wins, so duplicate offsets ("1d" and "24h") or duplicate
        registrations never give two rows for one outbox key.
        """
        key = self._head + email.lower() + self._tail
        if key in board.items:
            return
        due_at = due_at or self.due_at
        out = object.__new__(Outgoing)
        out.__dict__.update(
            self._template.__dict__, key=key, recipient=email, due_at=due_at,
            language=language if language in LANGUAGES else self._fallback, name=name,
            country=country, registration_id=registration_id,
            sequence=self._template.sequence + offset,
            context={**self._context, **context} if context else dict(self._context))
        board.put(key, self._judge(out, due_at, board))

    def _judge(self, out: Outgoing, due_at: datetime, board: _Board) -> Planned:
        """Where one copy of this message stands at the board's ``now``."""
        if out.key in board.sent:
            return Planned(out, due_at, "sent")
        if self._standing:
            email = out.recipient.lower()
            if any(head + email + tail in board.sent for head, tail in self._standing):
                return Planned(out, due_at, "sent", "sent before the event moved")
        deadline, now = self.deadline, board.now
        if deadline is not None and (now >= deadline or due_at >= deadline):
            return Planned(out, due_at, "missed", self.why_missed)
        if due_at > now:
            return Planned(out, due_at, "scheduled")
        return Planned(out, due_at, "due")


@dataclass
class _Board:
    """The plan being built: one judged row per outbox key.

    With ``keep``, rows in other states are only counted as taken (None), except the
    earliest scheduled one, kept for ``Plan.next_at``: enqueuing a burst for 50,000
    registrants then holds the messages due, not the ones sent or scheduled for later.
    """

    sent: AbstractSet[str]
    now: datetime
    keep: AbstractSet[State] | None = None
    items: dict[str, Planned | None] = field(default_factory=dict)
    earliest: Planned | None = None

    def put(self, key: str, planned: Planned) -> None:
        if self.keep is None or planned.state in self.keep:
            self.items[key] = planned
            return
        self.items[key] = None
        if planned.state == "scheduled" and (self.earliest is None
                                             or planned.due_at < self.earliest.due_at):
            self.earliest = planned

    def plan(self) -> Plan:
        kept = [p for p in self.items.values() if p is not None]
        return Plan(tuple(kept + [self.earliest] if self.earliest is not None else kept))


@dataclass(frozen=True)
class _Facts:
    """The messages one event may give rise to, built once per plan so each person is cheap."""

    event: Event
    sequence: int
    changed_at: datetime | None
    reminders: tuple[_Message, ...]
    packs: Mapping[str, _Message]       # per language, keyed by that language's pack version
    update: _Message | None
    certificate: _Message | None
    shown: Mapping[str, Mapping[str, Any]]

    @property
    def pack_due_at(self) -> datetime | None:
        return next(iter(self.packs.values())).due_at if self.packs else None


def plan(catalog: Catalog, registrants: Sequence[Registrant],
         versions: Mapping[str, EventVersion], sent: AbstractSet[str],
         contacts: Sequence[Contact], now: datetime,
         keep: AbstractSet[State] | None = None) -> Plan:
    """Work out every message due, scheduled, already enqueued or missed at ``now``.

    ``sent`` holds the outbox keys already enqueued (sent, pending or failed): they count as
    done. Registrants of events no longer in the catalog are ignored. With ``keep``, the
    plan holds only the messages in those states, plus the earliest scheduled one.
    """
    by_event: dict[str, list[Registrant]] = defaultdict(list)
    for registrant in registrants:
        by_event[registrant.event_id].append(registrant)

    board = _Board(sent, now, keep)
    with _collector_paused():
        for event in catalog.events.values():
            version = versions.get(event.id)
            people = by_event.get(event.id, ())
            if event.cancelled:
                _cancellations(board, event, version, people)
            else:
                facts = _facts(event, version)
                _invitations(board, facts, contacts)
                for person in people:
                    _for_registrant(board, facts, person)
        return board.plan()


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a plan is built.

    Why: a plan allocates hundreds of thousands of small objects that form no cycles, and each
    time the heap grows by a quarter CPython rescans all of it for cycles; for 50,000
    registrants that more than doubled the planning time. Reference counting still frees
    memory, and the collector is left as it was found.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _facts(event: Event, version: EventVersion | None) -> _Facts:
    """The messages of a running event, with their moments and how long they are worth sending."""
    spec = event.series.spec
    sequence = version.sequence if version else 0
    changed_at = version.changed_at if version else None
    update = None
    if version is not None and sequence > 0:
        update = _Message(event, sequence, Kind.UPDATE, version.changed_at, event.end,
                          "event ended", version=sequence)
    packs: dict[str, _Message] = {}
    if spec.pack is not None and spec.pack_at is not None:
        # Keyed by the version of the files a language gets, not by the event's time or
        # version: moving the event, a new link or title never sends the pack again; new
        # files send it once more (to the languages whose files changed).
        versions = dict(version.packs) if version else {}
        for lang in LANGUAGES:
            packs[lang] = _Message(event, sequence, Kind.PACK, event.start - spec.pack_at,
                                   event.end, "event ended", version=versions.get(lang, 0))
    certificate = None
    if spec.certificate != "never":
        certificate = _Message(event, sequence, Kind.CERTIFICATE, event.end, None)
    return _Facts(event, sequence, changed_at, _reminders(event, version), packs, update,
                  certificate, version.shown if version else {})


def _reminders(event: Event, version: EventVersion | None) -> tuple[_Message, ...]:
    """One reminder per offset of the series, latest-first, each worth sending until the next."""
    offsets = sorted(set(event.series.spec.reminders), reverse=True)
    earlier = _earlier_starts(event, version)
    out = []
    for index, offset in enumerate(offsets):
        text = format_duration(offset)
        due_at = event.start - offset
        # A reminder is pointless once the next, closer one is due: after a long outage the
        # participant gets the latest reminder, not all of them at once.
        if index + 1 < len(offsets):
            closer = offsets[index + 1]
            deadline = event.start - closer
            why = f"superseded by the {format_duration(closer)} reminder"
        else:
            deadline, why = event.start, "event started"
        # A moment that had passed when the event last changed (moved, new link) is not caught
        # up: the update notice tells the news, and a late "in 7 days" could be wrong.
        if version is not None and version.sequence > 0 and version.changed_at >= due_at:
            deadline, why = due_at, "the event changed after this reminder's moment"
        # The start is in the key, so a moved event gets new reminders and an unchanged one
        # never repeats; the key version stays 0 so a new link alone does not repeat them.
        # But a reminder sent for an earlier start still stands when the event moved by less
        # than its offset (a "1 day before" reminder, moved by an hour: it went out 25 hours
        # before, and the update gave the new time); moved by the offset or more (a week
        # later) it told of a day long past, and one goes at the new moment. An earlier key
        # recorded missed stands too: a small move does not revive a reminder given up.
        standing = [f"{text}@{iso}" for iso, start in earlier
                    if abs(event.start - start) < offset]
        out.append(_Message(event, version.sequence if version else 0, Kind.REMINDER, due_at,
                            deadline, why, extra=f"{text}@{event.start.isoformat()}",
                            context={"offset": text}, standing=standing))
    return tuple(out)


def _earlier_starts(event: Event, version: EventVersion | None) -> list[tuple[str, datetime]]:
    """The starts the event had in earlier versions (as their keys wrote them), not its own."""
    now = event.start.isoformat()
    found = {str(shown["start"]) for shown in (version.shown.values() if version else ())
             if shown.get("start")} - {now}
    return [(iso, datetime.fromisoformat(iso)) for iso in sorted(found)]


def _for_registrant(board: _Board, facts: _Facts, person: Registrant) -> None:
    """Reminders, pack, update and certificate for one registrant of a running event."""
    who = (person.email, person.name, person.language, person.country, person.id)
    offset = person.sequence_offset
    zone: dict[str, Any] | None = None
    if person.utc_offset is not None:
        zone = {"utc_offset": person.utc_offset}
        if person.registered_at is not None:
            zone["utc_offset_seen"] = person.registered_at.isoformat()
    if person.status is Status.CONFIRMED:
        confirmed = person.confirmed_at
        for reminder in facts.reminders:
            # Nobody is reminded of a moment that had passed when they were confirmed.
            if confirmed is None or confirmed < reminder.due_at:
                reminder.plan_for(board, *who, context=zone, offset=offset)
        if facts.packs:
            pack = facts.packs.get(person.language) or facts.packs[facts.event.language]
            # Confirmed after the pack's moment: it goes with their acknowledgement.
            late = confirmed is not None and confirmed > pack.due_at
            pack.plan_for(board, *who, confirmed if late else None, context=zone)
        if facts.update is not None and _needs_update(facts, person):
            facts.update.plan_for(board, *who, context={**(zone or {}),
                                                        **_changed(facts, person)},
                                  offset=offset)
    if facts.certificate is not None and _deserves_certificate(facts, person):
        facts.certificate.plan_for(board, *who, context=zone, offset=offset)


def _changed(facts: _Facts, person: Registrant) -> dict[str, Any]:
    """What an update tells one person: the values of the version they last received that
    differ from today's (``previous_start``, ``previous_join_url``...), JSON-ready."""
    before = facts.shown.get(str(person.sequence_seen))
    now = facts.shown.get(str(facts.sequence))
    if not before or not now:
        return {}
    out: dict[str, Any] = {}
    if (before.get("start"), before.get("end")) != (now.get("start"), now.get("end")):
        out["previous_start"], out["previous_end"] = before.get("start"), before.get("end")
    if before.get("join_url") != now.get("join_url"):
        out["previous_join_url"] = before.get("join_url") or ""
    if before.get("title") != now.get("title"):
        out["previous_title"] = before.get("title") or {}
    return out


def _needs_update(facts: _Facts, person: Registrant) -> bool:
    """True when the event changed after the last calendar message the person received."""
    if facts.sequence <= person.sequence_seen:
        return False
    # Confirmed after the change: their acknowledgement already carried this version.
    return not (person.confirmed_at is not None and facts.changed_at is not None
                and person.confirmed_at >= facts.changed_at)


def _deserves_certificate(facts: _Facts, person: Registrant) -> bool:
    """The series' certificate policy: on request (confirmed), or on request and attended."""
    if not person.certificate_requested:
        return False
    if facts.event.series.spec.certificate == "attendees":
        return person.attended is True
    return person.status is Status.CONFIRMED


def _cancellations(board: _Board, event: Event, version: EventVersion | None,
                   people: Sequence[Registrant]) -> None:
    """A cancellation notice to everyone confirmed or waiting (a CANCEL of the calendar entry
    for those who hold one); nothing else for the event."""
    sequence = version.sequence if version else 0
    message = _Message(event, sequence, Kind.CANCELLATION,
                       version.changed_at if version else board.now, event.end, "event ended",
                       version=sequence)
    for person in people:
        if person.status in (Status.CONFIRMED, Status.WAITING):
            # The status says whether they have a calendar entry to remove: the waiting list
            # never sent one, so they are told of the cancellation without a CANCEL.
            message.plan_for(board, person.email, person.name, person.language,
                             person.country, person.id, offset=person.sequence_offset,
                             context={"status": str(person.status)})


def _invitations(board: _Board, facts: _Facts, contacts: Sequence[Contact]) -> None:
    """The call for registration to the focal points of every invited country."""
    event = facts.event
    spec = event.series.spec
    if spec.invitation_at is None:
        return
    message = _Message(event, facts.sequence, Kind.INVITATION, spec.invitation_at, event.start,
                       "event started", context={"form_rows": spec.max_per_country})
    for contact in contacts:
        country = contact.country.upper()
        if country in event.countries and contact.series_id in (None, event.series.id):
            message.plan_for(board, contact.email, contact.name, contact.language, country,
                             None, context={"organisation": contact.organisation})


def timetable(event: Event) -> list[tuple[Kind, datetime, str]]:
    """The moments the series sets for one event, whoever is registered: (kind, when, label).

    ``mailer plan`` shows these even before anyone registers, so staff see when reminders
    and packs will go.
    """
    spec = event.series.spec
    if event.cancelled:
        return []
    rows: list[tuple[Kind, datetime, str]] = []
    if spec.invitation_at is not None:
        rows.append((Kind.INVITATION, spec.invitation_at, ""))
    if spec.pack is not None and spec.pack_at is not None:
        rows.append((Kind.PACK, event.start - spec.pack_at, format_duration(spec.pack_at)))
    for offset in spec.reminders:
        rows.append((Kind.REMINDER, event.start - offset, format_duration(offset)))
    if spec.certificate != "never":
        rows.append((Kind.CERTIFICATE, event.end, spec.certificate))
    return sorted(rows, key=lambda r: r[1])
