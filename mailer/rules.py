"""The rules: what an understood message changes (seats, waiting list, review) and who is answered.

Pure: ``decide`` takes the intent, the event, a snapshot of the event's registrations and the
clock, and returns a Decision (registrations to create or change, answers to send). The
caller applies it inside one transaction that has locked the event, so the snapshot is exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from mailer.domain import (
    UNREAD_FORWARDED,
    Intent,
    IntentKind,
    Kind,
    Outgoing,
    Participant,
    Status,
    outbox_key,
)
from mailer.errors import UsageError
from mailer.schedule import Event

ACTIVE = frozenset({Status.CONFIRMED, Status.WAITING, Status.REVIEW})


@dataclass(frozen=True)
class Registered:
    """What the rules need to know of one stored registration."""

    id: int
    email: str
    country: str | None
    status: Status
    created_at: datetime
    name: str = ""
    language: str = "en"
    certificate_requested: bool = False
    sequence_offset: int = 0        # their calendar's SEQUENCE is the event's plus this
    organisation: str = ""
    position: str = ""
    registered_by: str = ""         # the address whose reply (or staff action) made it


@dataclass(frozen=True)
class NewRegistration:
    """A registration to create (or to revive, when the person had cancelled)."""

    participant: Participant
    status: Status
    language: str
    certificate: bool = False
    revive_id: int | None = None
    sequence_offset: int = 0
    # A substitute waiting in the place of the person they replace keeps that person's
    # place in the queue (the waiting list is ordered by the time of registering).
    queued_at: datetime | None = None


@dataclass(frozen=True)
class DetailsChange:
    """A stored registration whose name, institution or position the person corrected."""

    registration_id: int
    name: str
    organisation: str
    position: str


@dataclass(frozen=True)
class StatusChange:
    """A stored registration whose status changes (and, for a withdrawal, its offset)."""

    registration_id: int
    status: Status
    sequence_offset: int | None = None


@dataclass(frozen=True)
class Decision:
    """Everything one message changes, written by the caller in one transaction."""

    created: tuple[NewRegistration, ...] = ()
    changed: tuple[StatusChange, ...] = ()
    certificate_for: tuple[int, ...] = ()
    answers: tuple[Outgoing, ...] = ()
    suppress: tuple[str, ...] = ()
    summary: str = ""
    event_id: str | None = None
    updated: tuple[DetailsChange, ...] = ()


@dataclass
class _Builder:
    intent: Intent
    event: Event | None
    sequence: int
    staff_address: str
    created: list[NewRegistration] = field(default_factory=list)
    changed: list[StatusChange] = field(default_factory=list)
    certificate_for: list[int] = field(default_factory=list)
    answers: list[Outgoing] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    updated: list[DetailsChange] = field(default_factory=list)

    def answer(self, kind: Kind, to: str, *, name: str = "", country: str | None = None,
               language: str | None = None, once: bool = False, offset: int = 0,
               **context: object) -> None:
        """Queue an answer; ``once`` makes its key independent of the message, so it goes once
        per calendar version of that person (the event's SEQUENCE plus their ``offset``)."""
        event_id = self.event.id if self.event else None
        extra = "" if once else self.intent.message_id
        sequence = self.sequence + offset
        self.answers.append(Outgoing(
            key=outbox_key(kind, to, event_id, sequence, extra), kind=kind, recipient=to,
            language=language or self.intent.language, event_id=event_id, name=name,
            country=country, sequence=sequence, in_reply_to=self.intent.message_id or None,
            context=dict(context)))

    def build(self) -> Decision:
        return Decision(tuple(self.created), tuple(self.changed), tuple(self.certificate_for),
                        tuple(self.answers), (), "; ".join(self.notes),
                        self.event.id if self.event else None, tuple(self.updated))


def decide(intent: Intent, event: Event | None, registered: Sequence[Registered], *,
           sequence: int, now: datetime, staff_address: str) -> Decision:
    """Apply the series' rules to one understood message."""
    b = _Builder(intent, event, sequence, staff_address)
    kind = intent.kind
    if kind is IntentKind.BOUNCE:
        bounced = () if intent.bounce_temporary else intent.bounced
        what = "temporary bounce, nothing suppressed" if intent.bounce_temporary else \
            f"bounce: {len(bounced)} address(es) suppressed"
        return Decision(suppress=tuple(bounced), summary=what,
                        event_id=event.id if event else None)
    if kind is IntentKind.AUTO_REPLY:
        return Decision(summary="automatic reply: not answered")
    if kind is IntentKind.THANKS:
        # "Bien reçu, merci": nothing asked, so nothing answered (a form would read as if
        # the registration had failed).
        return Decision(summary=THANKS_NOTE, event_id=event.id if event else None)
    if kind is IntentKind.QUESTION:
        _forward(b)
    elif kind is IntentKind.UNKNOWN and _registered_sender(intent, registered):
        # Someone registered wrote something the mailer cannot read: a person answers it,
        # not the registration form (they are registered already).
        _forward(b, reason="the mailer could not tell what this reply asks for, and the "
                           "sender is registered for this event")
    elif kind is IntentKind.UNKNOWN:
        b.answer(Kind.CLARIFICATION, intent.sender, reason="unreadable",
                 candidates=list(intent.candidates))
        b.notes.append("unreadable: clarification asked")
    elif event is None:
        b.answer(Kind.CLARIFICATION, intent.sender, reason="which_event",
                 candidates=list(intent.candidates))
        b.notes.append("event unknown: clarification asked")
    elif kind is IntentKind.REGISTRATION:
        _register(b, event, registered, now)
    elif kind is IntentKind.SUBSTITUTION:
        _substitute(b, event, registered, now)
    elif kind is IntentKind.CANCELLATION or (
            kind is IntentKind.CALENDAR_REPLY and intent.partstat == "DECLINED"):
        _cancel(b, event, registered, now)
    elif kind is IntentKind.CERTIFICATE_REQUEST:
        _certificate(b, event, registered)
    else:
        b.notes.append(f"calendar reply {intent.partstat}: noted")
    return b.build()


THANKS_NOTE = "thanks or acknowledgement only: not answered"


def _registered_sender(intent: Intent, registered: Sequence[Registered]) -> bool:
    """Whether the sender holds an active registration in the snapshot (the event's)."""
    sender = intent.sender.lower()
    return any(r.email == sender and r.status in ACTIVE for r in registered)


def _forward(b: _Builder, reason: str = "") -> None:
    intent = b.intent
    context: dict[str, object] = {"sender": intent.sender, "subject": intent.subject,
                                  "text": intent.text}
    if reason:
        context["reason"] = reason
    b.answers.append(Outgoing(
        key=outbox_key(Kind.STAFF_QUESTION, b.staff_address, b.event.id if b.event else None, 0,
                       intent.message_id),
        kind=Kind.STAFF_QUESTION, recipient=b.staff_address, language="en",
        event_id=b.event.id if b.event else None, in_reply_to=intent.message_id or None,
        context=context))
    b.notes.append(UNREAD_FORWARDED if reason else "question forwarded to staff")


def _register(b: _Builder, event: Event, registered: Sequence[Registered],
              now: datetime) -> None:
    intent = b.intent
    series = event.series.spec
    by_email = {r.email: r for r in registered}
    confirmed: dict[str | None, int] = {}
    for r in registered:
        if r.status is Status.CONFIRMED:
            confirmed[r.country] = confirmed.get(r.country, 0) + 1
    if event.cancelled or now >= event.start:
        b.answer(Kind.CLARIFICATION, intent.sender, reason="closed")
        b.notes.append("registration after start or for a cancelled event")
        return
    # One reply registers at most a country's worth of people: it cannot make the mailer
    # write to a hundred third parties.
    people = intent.participants[:series.max_per_country]
    if len(intent.participants) > len(people):
        b.answer(Kind.CLARIFICATION, intent.sender, reason="too_many")
        b.notes.append(f"{len(intent.participants) - len(people)} participant(s) beyond "
                       "the limit set aside")
    missing: set[str] = set()          # the form's field names nobody could read
    unread_countries: list[str] = []   # countries written that resolve to no ISO code
    incomplete = 0
    seen: set[str] = set()
    for p in people:
        email = p.email or (intent.sender if len(intent.participants) == 1 else "")
        p = replace(p, email=email.lower())
        earlier = by_email.get(p.email) if p.email else None
        if earlier is not None and earlier.status in ACTIVE and (p.country or not p.country_text):
            # Someone registered writing again: the same details, or a correction (what they
            # leave out is what is stored).
            if p.email in seen:
                continue
            seen.add(p.email)
            # Only the person, or whoever registered them, changes their registration: a
            # reply from another address naming theirs must not move, rename or flag them.
            theirs = intent.sender in (earlier.email, earlier.registered_by)
            corrected = _corrected(earlier, p) if theirs else None
            if theirs and intent.certificate and not earlier.certificate_requested and (
                    corrected is None or corrected.country == earlier.country):
                b.certificate_for.append(earlier.id)
            if corrected is None or (corrected.country == earlier.country
                                     and corrected.name == earlier.name):
                # Nothing new, or only a position or institution written differently: kept
                # (the latest wins), and the person told they are registered already.
                if corrected is not None:
                    b.updated.append(DetailsChange(earlier.id, earlier.name,
                                                   corrected.organisation, corrected.position))
                b.answer(Kind.ALREADY_REGISTERED, p.email, name=p.name or earlier.name,
                         country=earlier.country, once=True, status=str(earlier.status))
                b.notes.append(f"{p.email} already registered")
            elif corrected.country == earlier.country:
                _update_details(b, earlier, corrected)
            else:
                _move(b, event, registered, earlier, corrected, confirmed, now,
                      certificate=intent.certificate)
            continue
        lacks = [f for f, v in (("email", p.email), ("name", p.name), ("country", p.country))
                 if not v]
        if lacks:
            incomplete += 1
            missing.update(f for f in lacks if f != "country" or not p.country_text)
            if not p.country and p.country_text:
                unread_countries.append(p.country_text)
            continue
        if p.email in seen:
            continue
        seen.add(p.email)
        revive = earlier.id if earlier is not None else None
        # Registering again after a withdrawal: the new invitation must rise above the
        # CANCEL they got (RFC 5546 2.1.4), so their calendar moves one step further.
        offset = earlier.sequence_offset + 1 if earlier is not None else 0
        status, kind = _place(event, p.country, confirmed)
        b.created.append(NewRegistration(p, status, intent.language, intent.certificate,
                                         revive, offset))
        b.answer(kind, p.email, name=p.name, country=p.country, once=True, offset=offset,
                 registered_by=intent.sender if intent.sender != p.email else "",
                 inferred=list(p.inferred))
        b.notes.append(f"{p.email} ({p.country}) {status}")
    if incomplete:
        b.answer(Kind.CLARIFICATION, intent.sender, reason="missing_fields",
                 missing=sorted(missing), unread_countries=unread_countries)
        b.notes.append(f"{incomplete} participant(s) incomplete: clarification asked")
    if not intent.participants:
        b.answer(Kind.CLARIFICATION, intent.sender, reason="missing_fields",
                 missing=["name", "country"])


def _place(event: Event, country: str | None, confirmed: dict[str | None, int]
           ) -> tuple[Status, Kind]:
    """Where a new registration from ``country`` goes (counting its seat in ``confirmed``)."""
    series = event.series.spec
    if country not in event.countries and series.not_invited != "accept":
        status = Status.REVIEW if series.not_invited == "review" else Status.REJECTED
        return status, Kind.PENDING_REVIEW if status is Status.REVIEW else Kind.NOT_INVITED
    if confirmed.get(country, 0) < series.max_per_country:
        confirmed[country] = confirmed.get(country, 0) + 1
        return Status.CONFIRMED, Kind.ACKNOWLEDGEMENT
    return Status.WAITING, Kind.WAITING_LIST


_ANSWER_OF_STATUS = {Status.CONFIRMED: Kind.ACKNOWLEDGEMENT, Status.WAITING: Kind.WAITING_LIST,
                     Status.REVIEW: Kind.PENDING_REVIEW}


def _corrected(earlier: Registered, p: Participant) -> Participant | None:
    """The registration as a second reply from the same person corrects it, or None when
    the reply writes nothing new ("I am from Ghana, not Kenya", a name spelt in full).

    Only what was written counts: a guess (``Participant.inferred``, the From name, a
    country from the address) never overrides what is stored.
    """
    def written(field_name: str, value: str | None) -> str | None:
        return value if value and field_name not in p.inferred else None

    def same(one: str, other: str) -> bool:
        return " ".join(one.casefold().split()) == " ".join(other.casefold().split())

    name = written("name", p.name)
    country = written("country", p.country)
    organisation = written("organisation", p.organisation)
    position = written("position", p.position)
    changed = (bool(name and len(name.split()) >= 2 and not same(name, earlier.name))
               or bool(country and country != earlier.country)
               or bool(organisation and not same(organisation, earlier.organisation))
               or bool(position and not same(position, earlier.position)))
    if not changed:
        return None
    return replace(p, name=name if name and len(name.split()) >= 2 else earlier.name,
                   country=country or earlier.country,
                   organisation=organisation or earlier.organisation,
                   position=position or earlier.position, inferred=())


def _update_details(b: _Builder, earlier: Registered, p: Participant) -> None:
    """Same place, a corrected name (the one on the certificate): stored, confirmed anew."""
    b.updated.append(DetailsChange(earlier.id, p.name, p.organisation, p.position))
    # Not ``once``: the first answer's key is taken; this one answers the correction.
    b.answer(_ANSWER_OF_STATUS[earlier.status], p.email, name=p.name, country=earlier.country,
             language=earlier.language, offset=earlier.sequence_offset)
    b.notes.append(f"{p.email} corrected their details")


def _move(b: _Builder, event: Event, registered: Sequence[Registered], earlier: Registered,
          p: Participant, confirmed: dict[str | None, int], now: datetime, *,
          certificate: bool) -> None:
    """A corrected country: the registration goes to that country's seats (or its waiting
    list, or review) as a new one would, and a confirmed seat it leaves is offered to the
    first waiting participant of the old country."""
    if earlier.status is Status.CONFIRMED:
        confirmed[earlier.country] = max(0, confirmed.get(earlier.country, 0) - 1)
    status, kind = _place(event, p.country, confirmed)
    # The same calendar entry (same UID) in another country's seats: its SEQUENCE goes on.
    offset = stored = earlier.sequence_offset
    context: dict[str, object] = {}
    if earlier.status is Status.CONFIRMED and status is not Status.CONFIRMED:
        # The seat is lost (the new country full, or not invited): the answer cancels the
        # entry it gave, with a SEQUENCE above their last REQUEST (RFC 5546 2.1.4), and
        # whatever seats them again later (a promotion, staff's approval) invites one
        # step above that CANCEL.
        offset, stored = earlier.sequence_offset + 1, earlier.sequence_offset + 2
        context["left_seat"] = earlier.country or "-"     # truthy: it carries the CANCEL
    b.created.append(NewRegistration(p, status, earlier.language,
                                     earlier.certificate_requested or certificate, earlier.id,
                                     stored))
    b.answer(kind, p.email, name=p.name, country=p.country, language=earlier.language,
             offset=offset, **context)
    b.notes.append(f"{p.email} moved from {earlier.country} to {p.country} ({status})")
    if earlier.status is Status.CONFIRMED:
        # Before anyone this reply registers next: the first waiting takes the freed seat.
        _promote(b, registered, {earlier.country: 1}, {earlier.id}, now, event, confirmed)


def _promote(b: _Builder, registered: Sequence[Registered], freed: dict[str | None, int],
             leaving: set[int], now: datetime, event: Event,
             confirmed: dict[str | None, int] | None = None) -> None:
    """Give freed seats to the earliest waiting participants of their countries (each
    promoted once), counting the seats they take in ``confirmed`` when given."""
    if now >= event.start:
        return  # promotions stop at the event's start
    promoted = {c.registration_id for c in b.changed}
    for country, seats in freed.items():
        waiting = [r for r in registered if r.country == country and r.status is Status.WAITING
                   and r.id not in leaving and r.id not in promoted]
        waiting.sort(key=lambda r: (r.created_at, r.id))
        for r in waiting[:seats]:
            if confirmed is not None:
                confirmed[country] = confirmed.get(country, 0) + 1
            b.changed.append(StatusChange(r.id, Status.CONFIRMED))
            b.answer(Kind.PROMOTION, r.email, name=r.name, country=r.country,
                     language=r.language, once=True, offset=r.sequence_offset)
            b.notes.append(f"{r.email} promoted from the waiting list")


def _cancel(b: _Builder, event: Event, registered: Sequence[Registered], now: datetime) -> None:
    intent = b.intent
    targets = {p.email.lower() for p in intent.participants if p.email} or {intent.sender}
    # Writing an address is no proof: a reply cancels the sender's own registrations and
    # those they made (a focal point's delegates). A calendar answer cancels its ATTENDEE,
    # who received our invitation (clients answer from an alias of the invited address).
    calendar = intent.kind is IntentKind.CALENDAR_REPLY
    active = [r for r in registered if r.email in targets and r.status in ACTIVE
              and (calendar or intent.sender in (r.email, r.registered_by))]
    if not active:
        b.answer(Kind.CLARIFICATION, intent.sender, reason="no_registration")
        b.notes.append("cancellation: no registration found")
        return
    freed: dict[str | None, int] = {}
    for r in active:
        # The CANCEL carries a SEQUENCE above any REQUEST they got (RFC 5546 2.1.4).
        offset = r.sequence_offset + 1
        b.changed.append(StatusChange(r.id, Status.CANCELLED, offset))
        b.answer(Kind.WITHDRAWAL, r.email, name=r.name, country=r.country,
                 language=r.language, once=True, offset=offset, status=str(r.status))
        b.notes.append(f"{r.email} cancelled")
        if r.status is Status.CONFIRMED:
            freed[r.country] = freed.get(r.country, 0) + 1
    _promote(b, registered, freed, {r.id for r in active}, now, event)


def _substitute(b: _Builder, event: Event, registered: Sequence[Registered],
                now: datetime) -> None:
    """The sender withdraws and the colleague they name takes their place, in one decision.

    Within a country the seat is handed over, not given back: the colleague gets the
    sender's place (a seat, a place on the waiting list at the sender's rank, or review)
    and nobody is promoted, so the waiting list does not jump ahead of a substitution. This
    is how ticketing systems treat a transfer: pretix keeps the order position (and the
    quota it holds) and only changes the attendee's name and email ("reassign"). Here
    the sender's row is cancelled (their calendar gets its CANCEL, their history stays) and
    a new row carries the colleague. From another country, the colleague is placed as a new
    registration would be, and the seat the sender leaves goes to their own country's
    waiting list, as a cancellation's does. A colleague already waiting in the sender's
    country takes the seat handed to them, ahead of that list.

    A colleague the reply does not let us register (no address, name or readable country)
    cancels nothing: acting on the withdrawal alone would lose the seat they meant to hand
    on, and the country's next in line would take it meanwhile. The sender stays registered
    and is asked for the colleague's details. So does a colleague whose country the series
    refuses outright (``not_invited = "reject"``): the hand-over cannot happen, and the
    sender, told so, may name a colleague of their own country or cancel.
    """
    intent = b.intent
    sender = intent.sender.lower()
    if event.cancelled or now >= event.start:
        b.answer(Kind.CLARIFICATION, intent.sender, reason="closed")
        b.notes.append("substitution after start or for a cancelled event")
        return
    people = [replace(p, email=p.email.lower()) for p in intent.participants]
    # A colleague named in the sentence and again in a form below it is one person (two
    # rows of one address would break the store's unique key, and the message with it).
    firsts = {p.email: p for p in reversed(people) if p.email}
    people = [p for p in people if not p.email or firsts[p.email] is p]
    people = [p for p in people if p.email != sender][:event.series.spec.max_per_country]
    lacking = {f for p in people for f, v in (("email", p.email), ("name", p.name),
                                               ("country", p.country or p.country_text))
               if not v}
    unread = [p.country_text for p in people if p.country_text and not p.country]
    if not people or lacking or unread:
        b.answer(Kind.CLARIFICATION, intent.sender, reason="substitute_missing",
                 missing=sorted(lacking) if people else ["name", "email", "country"],
                 unread_countries=unread)
        b.notes.append("substitution: the colleague's details are incomplete; the sender "
                       "stays registered and is asked for them")
        return
    leaving = next((r for r in registered if r.email == sender and r.status in ACTIVE), None)
    refused = sorted({p.country for p in people if p.country not in event.countries
                      and event.series.spec.not_invited == "reject"})
    if leaving is not None and len(refused) == len({p.country for p in people}):
        b.answer(Kind.CLARIFICATION, intent.sender, reason="substitute_not_invited",
                 substitute_countries=refused)
        b.notes.append("substitution: the colleague's country is not invited; the sender "
                       "stays registered and is told so")
        return
    if leaving is None:
        # Nothing to hand over: the colleague is registered as anyone would be.
        b.intent = replace(intent, kind=IntentKind.REGISTRATION, participants=tuple(people))
        b.notes.append("substitution: the sender holds no registration")
        _register(b, event, registered, now)
        return
    by_email = {r.email: r for r in registered}
    confirmed: dict[str | None, int] = {}
    for r in registered:
        if r.status is Status.CONFIRMED and r.id != leaving.id:
            confirmed[r.country] = confirmed.get(r.country, 0) + 1
    offset = leaving.sequence_offset + 1   # the CANCEL rises above their REQUEST (RFC 5546)
    b.changed.append(StatusChange(leaving.id, Status.CANCELLED, offset))
    taken = False
    names: list[str] = []
    for p in people:
        earlier = by_email.get(p.email)
        if (earlier is not None and earlier.status is Status.WAITING and not taken
                and leaving.status is Status.CONFIRMED and earlier.country == leaving.country):
            # Already on this country's waiting list: the seat handed to them is theirs,
            # not the first waiting's (who would otherwise jump ahead of the hand-over).
            taken = True
            confirmed[earlier.country] = confirmed.get(earlier.country, 0) + 1
            b.changed.append(StatusChange(earlier.id, Status.CONFIRMED))
            b.answer(Kind.PROMOTION, p.email, name=earlier.name, country=earlier.country,
                     language=earlier.language, once=True, offset=earlier.sequence_offset)
            b.notes.append(f"{p.email} promoted from the waiting list in place of "
                           f"{leaving.email}")
            names.append(earlier.name or p.name)
            continue
        if earlier is not None and earlier.status in ACTIVE:
            b.answer(Kind.ALREADY_REGISTERED, p.email, name=earlier.name or p.name,
                     country=earlier.country, once=True, status=str(earlier.status))
            b.notes.append(f"{p.email} already registered")
            continue
        revive = earlier.id if earlier is not None else None
        their_offset = earlier.sequence_offset + 1 if earlier is not None else 0
        queued_at = None
        if not taken and p.country == leaving.country:
            taken = True
            status = leaving.status
            kind = _ANSWER_OF_STATUS[status]
            if status is Status.WAITING:
                queued_at = leaving.created_at
            if status is Status.CONFIRMED:
                confirmed[p.country] = confirmed.get(p.country, 0) + 1
        else:
            status, kind = _place(event, p.country, confirmed)
        b.created.append(NewRegistration(p, status, intent.language, False, revive,
                                         their_offset, queued_at))
        b.answer(kind, p.email, name=p.name, country=p.country, once=True,
                 offset=their_offset, registered_by=intent.sender,
                 replaces=leaving.name or leaving.email, inferred=list(p.inferred))
        b.notes.append(f"{p.email} ({p.country}) {status} in place of {leaving.email}")
        names.append(p.name)
    b.answer(Kind.WITHDRAWAL, leaving.email, name=leaving.name, country=leaving.country,
             language=leaving.language, once=True, offset=offset, status=str(leaving.status),
             substitutes=names)
    b.notes.append(f"{leaving.email} cancelled" + ("" if taken else ": seat freed"))
    if not taken and leaving.status is Status.CONFIRMED:
        # Nobody of the sender's country takes the seat: it goes to that country's first
        # waiting, as after a cancellation.
        _promote(b, registered, {leaving.country: 1}, {leaving.id}, now, event, confirmed)


def _certificate(b: _Builder, event: Event, registered: Sequence[Registered]) -> None:
    intent = b.intent
    mine = [r for r in registered if r.email == intent.sender and r.status is not Status.REJECTED]
    if not mine:
        b.answer(Kind.CLARIFICATION, intent.sender, reason="no_registration")
        b.notes.append("certificate request: no registration found")
        return
    r = mine[0]
    if not r.certificate_requested:
        b.certificate_for.append(r.id)
    b.answer(Kind.CERTIFICATE_NOTED, r.email, name=r.name, country=r.country,
             language=r.language, once=True, policy=event.series.spec.certificate)
    b.notes.append(f"{r.email} asked for a certificate")


# --- staff decisions -----------------------------------------------------------------------

class Refused(UsageError):
    """A staff action the rules cannot carry out (approving twice, an event that started)."""


def approve(target: Registered, event: Event, registered: Sequence[Registered], *,
            sequence: int, now: datetime, action: str, staff_address: str = "") -> Decision:
    """Staff accept a registration in review (or one they rejected): a seat if the country
    has one, else the waiting list, exactly as a reply from an invited country would get.

    ``action`` names this staff action; it keys the answer, so each action is answered once.
    """
    if target.status in (Status.CONFIRMED, Status.WAITING):
        raise Refused(f"is already {target.status} for {event.id}: nothing to approve")
    if target.status is Status.CANCELLED:
        raise Refused(f"was cancelled for {event.id}: register the person again instead")
    _still_open(event, now)
    b = _staff_builder(target, event, sequence, action, staff_address)
    confirmed = sum(1 for r in registered if r.status is Status.CONFIRMED
                    and r.country == target.country and r.id != target.id)
    if confirmed < event.series.spec.max_per_country:
        status, kind = Status.CONFIRMED, Kind.ACKNOWLEDGEMENT
    else:
        status, kind = Status.WAITING, Kind.WAITING_LIST
    # A refusal may have cancelled their calendar entry (they held a seat): the invitation
    # that puts it back must rise above that CANCEL (RFC 5546 2.1.4), as after a withdrawal.
    offset = target.sequence_offset + (target.status is Status.REJECTED)
    b.changed.append(StatusChange(target.id, status, offset))
    b.answer(kind, target.email, name=target.name, country=target.country,
             language=target.language, offset=offset)
    b.notes.append(f"{target.email} approved: {status}")
    return b.build()


def reject(target: Registered, event: Event, registered: Sequence[Registered], *,
           sequence: int, now: datetime, action: str, staff_address: str = "") -> Decision:
    """Staff turn a registration down; a seat it held goes to the first of its country's
    waiting list, as when someone cancels."""
    if target.status is Status.REJECTED:
        raise Refused(f"is already rejected for {event.id}: nothing to reject")
    if target.status is Status.CANCELLED:
        raise Refused(f"was cancelled for {event.id}: nothing to reject")
    b = _staff_builder(target, event, sequence, action, staff_address)
    # Someone who held a seat had the event in their calendar: the refusal cancels it, with
    # a SEQUENCE above their last invitation (RFC 5546 2.1.4), as a withdrawal does.
    offset = target.sequence_offset + (target.status is Status.CONFIRMED)
    b.changed.append(StatusChange(target.id, Status.REJECTED, offset))
    b.answer(Kind.REJECTED, target.email, name=target.name, country=target.country,
             language=target.language, offset=offset, status=str(target.status))
    b.notes.append(f"{target.email} rejected")
    if target.status is Status.CONFIRMED:
        _promote(b, registered, {target.country: 1}, {target.id}, now, event)
    return b.build()


def _still_open(event: Event, now: datetime) -> None:
    if event.cancelled:
        raise Refused(f"event {event.id} is cancelled")
    if now >= event.start:
        raise Refused(f"event {event.id} has started ({event.start:%Y-%m-%d %H:%M} UTC)")


def _staff_builder(target: Registered, event: Event, sequence: int, action: str,
                   staff_address: str) -> _Builder:
    # The action stands for the message a reply would have been: answers keyed by it.
    intent = Intent(kind=IntentKind.REGISTRATION, sender=target.email, message_id=action,
                    event_id=event.id, language=target.language)
    return _Builder(intent, event, sequence, staff_address)
