"""Staff actions on registrations: approve, reject, register, cancel, move.

Each runs in the caller's transaction exactly as a reply is decided: the events it touches
are locked (``store.lock_event``), the rules decide (``rules.approve``, ``rules.reject``,
or ``rules.decide`` with the intent a reply would have had), the decision is written by the
same code as a reply's (``handling.apply_decision``), the participant's answer goes to the
outbox, and the audit trail gets who, when, what and why. A REF that does not exist, an
event that does not exist or an action the rules refuse raises ``UsageError`` (exit 2 at
the command line), and the caller's transaction is rolled back: nothing changes.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailer import handling, rules, store
from mailer.countries import country_name, resolve_country
from mailer.domain import Intent, IntentKind, Outgoing, Participant, Status, normalise_email
from mailer.errors import UsageError
from mailer.rules import Decision, Registered
from mailer.schedule import LANGUAGES, Catalog, Event
from mailer.staff import audit
from mailer.staff.audit import Actor
from mailer.staff.refs import parse_ref, registration_ref

_PLAIN_ADDRESS = re.compile(r"[^@\s<>\"]+@[^@\s<>\"]+\.[^@\s<>\"]+")


@dataclass(frozen=True)
class Desk:
    """What a staff action needs besides the store: the schedules, who acts and when, and
    what answers are made with."""

    catalog: Catalog
    actor: Actor
    now: datetime
    domain: str
    staff_address: str = ""


@dataclass(frozen=True)
class Done:
    """One registration an action changed, as one line for staff."""

    ref: str
    line: str


def action_id(desk: Desk) -> str:
    """A name for one action, unique: it keys the action's answers (each action is answered,
    and only once) as a reply's Message-ID keys a reply's."""
    return f"staff-{uuid.uuid4().hex[:16]}@{desk.domain}"


# --- finding registrations ---------------------------------------------------------------

def resolve(session: Session, desk: Desk, ref: str, event_id: str | None = None
            ) -> store.Registration:
    """The registration ``ref`` names: ``R12``, or an email address (with ``event_id`` when the
    person registered for several events)."""
    if event_id is not None and event_id not in desk.catalog.events:
        raise UsageError(f"--event: no event {event_id!r} "
                         f"(known: {', '.join(desk.catalog.events)})")
    number = parse_ref(ref)
    if number is not None:
        row = session.get(store.Registration, number)
        if row is None or (event_id is not None and row.event_id != event_id):
            raise UsageError(f"{ref}: no such registration (mailer review and mailer "
                             "registrations show the REFs)")
        return row
    if "@" not in ref:
        raise UsageError(f"{ref!r} is neither a REF (like R12) nor an email address")
    email = normalise_email(ref)
    query = select(store.Registration).where(store.Registration.email == email)
    if event_id is not None:
        query = query.where(store.Registration.event_id == event_id)
    rows = list(session.scalars(query.order_by(store.Registration.id)))
    if not rows:
        where = f" for {event_id}" if event_id else ""
        raise UsageError(f"{email}: no registration{where}")
    if len(rows) > 1:
        listed = ", ".join(f"{registration_ref(r.id)} ({r.event_id})" for r in rows)
        raise UsageError(f"{email} is registered for several events: {listed}; "
                         "give a REF or --event")
    return rows[0]


def _event(desk: Desk, event_id: str, ref: str = "") -> Event:
    event = desk.catalog.events.get(event_id)
    if event is None:
        who = f"{ref}: " if ref else ""
        raise UsageError(f"{who}event {event_id!r} is no longer in the schedules")
    return event


def _lock(session: Session, event_ids: Sequence[str]) -> None:
    """Lock the events in one order (sorted), so two actions never wait for each other."""
    for event_id in sorted(set(event_ids)):
        store.lock_event(session, event_id)
    # Rows read before the lock may have changed meanwhile: read them again.
    session.expire_all()


def registered(session: Session, event_id: str) -> list[Registered]:
    """Every registration of an event as the rules read it (the waiting-list order)."""
    return [Registered(id=r.id, email=r.email, country=r.country, status=Status(r.status),
                       created_at=r.created_at, name=r.name, language=r.language,
                       certificate_requested=r.certificate_requested,
                       sequence_offset=r.sequence_offset)
            for r in store.registrations_of(session, event_id)]


def _who(row: store.Registration | Registered) -> str:
    country = f" ({row.country})" if row.country else ""
    return f"{registration_ref(row.id)} {row.name or row.email}{country}"


# --- writing a decision ------------------------------------------------------------------

def _write(session: Session, desk: Desk, decision: Decision, event: Event, sequence: int,
           action: str, target: str, in_reply_to: str = "") -> tuple[dict[str, int], list[str]]:
    """Write a staff decision and queue its answers; return the REF numbers by address and
    the kinds of message queued for ``target``."""
    intent = Intent(kind=IntentKind.REGISTRATION, sender=target, message_id=action,
                    event_id=event.id)
    refs = handling.apply_decision(session, decision, intent, event.series.id, sequence,
                                   desk.now)
    answers = [_as_staff_answer(out, target, action, in_reply_to) for out in decision.answers]
    store.enqueue(session, answers, now=desk.now, domain=desk.domain)
    return refs, [str(out.kind) for out in answers if out.recipient == target]


def _as_staff_answer(out: Outgoing, target: str, action: str, in_reply_to: str) -> Outgoing:
    """The rules' answer, keyed by this action when it goes to the person acted on (each
    action is answered), threaded under their own registration message."""
    key = out.key if out.recipient != target or out.key.endswith(action) \
        else f"{out.key}|{action}"
    parent = in_reply_to if out.recipient == target and in_reply_to.startswith("<") else None
    return replace(out, key=key, in_reply_to=parent)


def _promotions(session: Session, desk: Desk, decision: Decision, target_id: int,
                before: dict[int, Status], event: Event, cause: str) -> list[Done]:
    """Audit and describe the seats a decision gave to people on the waiting list."""
    done = []
    for change in decision.changed:
        if change.registration_id == target_id:
            continue
        row = session.get(store.Registration, change.registration_id)
        if row is None:
            continue
        ref = registration_ref(row.id)
        detail = f"{ref} {before.get(row.id, '?')} -> {change.status} (seat freed by {cause})"
        audit.record(session, desk.actor, desk.now, "promoted", ref=ref, event_id=event.id,
                     email=row.email, detail=detail)
        done.append(Done(ref, f"{_who(row)}, {event.id}: promoted from the waiting list; "
                              "promotion queued"))
    return done


# --- the actions -------------------------------------------------------------------------

StaffRule = Callable[..., Decision]


def approve(session: Session, desk: Desk, refs: Sequence[str], reason: str = "",
            event_id: str | None = None) -> list[Done]:
    """Accept registrations (in review, or rejected before): a seat or the waiting list."""
    return _decide_each(session, desk, refs, event_id, "approve", rules.approve, reason)


def reject(session: Session, desk: Desk, refs: Sequence[str], reason: str,
           event_id: str | None = None) -> list[Done]:
    """Turn registrations down (a seat they held goes to the waiting list); ``reason`` is
    required and kept in the audit trail (the participant's message does not quote it)."""
    if not reason.strip():
        raise UsageError("reject: give the reason (--reason), it is kept in the audit trail")
    return _decide_each(session, desk, refs, event_id, "reject", rules.reject, reason)


def cancel(session: Session, desk: Desk, refs: Sequence[str], reason: str = "",
           event_id: str | None = None) -> list[Done]:
    """Cancel registrations for their participants (as their own reply would)."""
    return _decide_each(session, desk, refs, event_id, "cancel", _cancel_rule, reason)


def _cancel_rule(target: Registered, event: Event, registered: Sequence[Registered], *,
                 sequence: int, now: datetime, action: str, staff_address: str) -> Decision:
    """The decision of the participant's own cancellation reply."""
    if target.status not in rules.ACTIVE:
        raise rules.Refused(f"is {target.status} for {event.id}: nothing to cancel")
    intent = Intent(kind=IntentKind.CANCELLATION, sender=target.email, message_id=action,
                    event_id=event.id, language=target.language,
                    participants=(Participant(email=target.email),))
    return rules.decide(intent, event, registered, sequence=sequence, now=now,
                        staff_address=staff_address)


def _decide_each(session: Session, desk: Desk, refs: Sequence[str], event_id: str | None,
                 verb: str, rule: StaffRule, reason: str) -> list[Done]:
    if not refs:
        raise UsageError(f"{verb}: which registration? Give a REF, e.g. R12")
    rows = {row.id: row for row in (resolve(session, desk, ref, event_id) for ref in refs)}
    _lock(session, [row.event_id for row in rows.values()])
    done: list[Done] = []
    for reg_id in rows:
        row = session.get(store.Registration, reg_id)
        if row is None:     # erased meanwhile by another process
            raise UsageError(f"{registration_ref(reg_id)}: no such registration")
        event = _event(desk, row.event_id, registration_ref(reg_id))
        snapshot = registered(session, event.id)
        before = {r.id: r.status for r in snapshot}
        target = next(r for r in snapshot if r.id == reg_id)
        sequence = store.event_sequence(session, event.id)
        action = action_id(desk)
        try:
            decision = rule(target, event, snapshot, sequence=sequence, now=desk.now,
                            action=action, staff_address=desk.staff_address)
        except rules.Refused as exc:
            raise UsageError(f"{_who(target)} {exc}") from None
        _, kinds = _write(session, desk, decision, event, sequence, action, target.email,
                          row.source_message_id)
        ref = registration_ref(reg_id)
        after = next((c.status for c in decision.changed if c.registration_id == reg_id),
                     target.status)
        audit.record(session, desk.actor, desk.now, verb, ref=ref, event_id=event.id,
                     email=target.email, detail=f"{ref} {target.status} -> {after}",
                     reason=reason)
        queued = f"; {', '.join(kinds)} queued" if kinds else ""
        done.append(Done(ref, f"{_who(target)}, {event.id}: {target.status} -> {after}{queued}"))
        done += _promotions(session, desk, decision, reg_id, before, event, ref)
    return done


@dataclass(frozen=True)
class NewPerson:
    """Someone staff register by hand (they phoned, or wrote to a colleague)."""

    email: str
    name: str
    country: str
    language: str = ""              # "": the event's language
    organisation: str = ""
    position: str = ""
    certificate: bool = False


def register(session: Session, desk: Desk, event_id: str, person: NewPerson,
             reason: str = "") -> list[Done]:
    """Register someone for an event through the rules a reply goes through (seat, waiting
    list, or review for a country not invited), answered as such a reply is."""
    event = desk.catalog.events.get(event_id)
    if event is None:
        raise UsageError(f"--event: no event {event_id!r} "
                         f"(known: {', '.join(desk.catalog.events)})")
    participant = _participant(person)
    language = person.language or event.language      # "": the event's language
    if language not in LANGUAGES:
        raise UsageError(f"--lang: {language!r} is not one of {', '.join(LANGUAGES)}")
    _lock(session, [event.id])
    return _register(session, desk, event, participant, language, person.certificate,
                     "register", reason)


def _participant(person: NewPerson) -> Participant:
    email = normalise_email(person.email)
    if not _PLAIN_ADDRESS.fullmatch(email):
        raise UsageError(f"--email: {person.email!r} is not an email address")
    if not person.name.strip():
        raise UsageError("--name: the participant's name is required")
    country = resolve_country(person.country)
    if country is None:
        raise UsageError(f"--country: {person.country!r} is not a country (write its name "
                         "or ISO code, e.g. SN or Senegal)")
    return Participant(email=email, name=person.name.strip(), country=country,
                       organisation=person.organisation.strip(),
                       position=person.position.strip())


def _registration(session: Session, desk: Desk, event: Event, participant: Participant,
                  language: str, certificate: bool) -> tuple[Decision, int, str]:
    """What the rules decide for ``participant`` registering for ``event`` (nothing written):
    the decision, the event's SEQUENCE and the action's id."""
    snapshot = registered(session, event.id)
    earlier = next((r for r in snapshot if r.email == participant.email
                    and r.status in rules.ACTIVE), None)
    if earlier is not None:
        raise UsageError(f"{participant.email} is already registered for {event.id}: "
                         f"{registration_ref(earlier.id)} ({earlier.status})")
    if event.cancelled or desk.now >= event.start:
        raise UsageError(f"event {event.id} is cancelled or has started: registration closed")
    sequence = store.event_sequence(session, event.id)
    action = action_id(desk)
    intent = Intent(kind=IntentKind.REGISTRATION, sender=participant.email, message_id=action,
                    event_id=event.id, language=language, participants=(participant,),
                    certificate=certificate)
    decision = rules.decide(intent, event, snapshot, sequence=sequence, now=desk.now,
                            staff_address=desk.staff_address)
    if not decision.created:
        raise UsageError(f"{participant.email} cannot be registered for {event.id}: "
                         f"{decision.summary or 'the rules found their details incomplete'}")
    return decision, sequence, action


def _telling(decision: Decision, to: str, context: dict[str, str]) -> Decision:
    """The decision with ``context`` added to the answers that go to ``to``."""
    if not context:
        return decision
    return replace(decision, answers=tuple(
        replace(out, context={**out.context, **context}) if out.recipient == to else out
        for out in decision.answers))


def _register(session: Session, desk: Desk, event: Event, participant: Participant,
              language: str, certificate: bool, verb: str, reason: str,
              detail: str = "", context: dict[str, str] | None = None) -> list[Done]:
    decision, sequence, action = _registration(session, desk, event, participant, language,
                                               certificate)
    decision = _telling(decision, participant.email, context or {})
    refs, kinds = _write(session, desk, decision, event, sequence, action, participant.email)
    reg_id = refs[participant.email]
    ref = registration_ref(reg_id)
    status = decision.created[0].status
    audit.record(session, desk.actor, desk.now, verb, ref=ref, event_id=event.id,
                 email=participant.email, detail=detail or f"{ref} registered: {status}",
                 reason=reason)
    queued = f"; {', '.join(kinds)} queued" if kinds else ""
    hint = f" (approve with: mailer approve {ref})" if status is Status.REVIEW else ""
    return [Done(ref, f"{ref} {participant.name} ({participant.country}), {event.id}: "
                      f"{status}{queued}{hint}")]


def move(session: Session, desk: Desk, ref: str, to_event: str, reason: str = "",
         event_id: str | None = None, even_if_not_invited: bool = False) -> list[Done]:
    """Move a registration to another event: cancelled where it was (its seat to the waiting
    list), registered in the other through the rules. The two answers say it is a move (the
    withdrawal names the new session, the new session's message the old one).

    Refused when the other event does not invite the person's country (they would give up
    their place for review or a refusal) unless ``even_if_not_invited``."""
    if to_event not in desk.catalog.events:
        raise UsageError(f"--to: no event {to_event!r} (known: {', '.join(desk.catalog.events)})")
    row = resolve(session, desk, ref, event_id)
    if row.event_id == to_event:
        raise UsageError(f"{registration_ref(row.id)} is already for {to_event}")
    reg_id = row.id
    _lock(session, [row.event_id, to_event])
    row = session.get(store.Registration, reg_id)
    if row is None:
        raise UsageError(f"{registration_ref(reg_id)}: no such registration")
    source = _event(desk, row.event_id, registration_ref(reg_id))
    target_event = desk.catalog.events[to_event]
    if Status(row.status) not in rules.ACTIVE:
        raise UsageError(f"{_who(row)} is {row.status} for {source.id}: nothing to move")
    person = Participant(email=row.email, name=row.name, country=row.country,
                         organisation=row.organisation, position=row.position)
    language, certificate, old_ref = row.language, row.certificate_requested, \
        registration_ref(row.id)
    # Decided before anything is written: what the other event's rules make of the person.
    predicted, _, _ = _registration(session, desk, target_event, person, language, certificate)
    status = predicted.created[0].status
    if status in (Status.REVIEW, Status.REJECTED) and not even_if_not_invited:
        country = country_name(row.country, "en") if row.country else "their country"
        fate = "put in review" if status is Status.REVIEW else "refused"
        raise UsageError(
            f"{_who(row)}: {country} is not invited to {to_event}: moving would cancel their "
            f"{row.status} registration for {source.id} and they would be {fate} for "
            f"{to_event}; nothing was changed (--even-if-not-invited moves them all the same)")
    leaving = _moving_out({"moved_to": to_event, "moved_status": str(status)})
    done = _decide_each(session, desk, [old_ref], None, "move", leaving, reason)
    done += _register(session, desk, target_event, person, language, certificate, "move",
                      reason, detail=f"moved from {source.id} ({old_ref})",
                      context={"moved_from": source.id})
    return done


def _moving_out(context: dict[str, str]) -> StaffRule:
    """The rule of a cancellation whose withdrawal says where the registration went."""
    def rule(target: Registered, event: Event, registered: Sequence[Registered], *,
             sequence: int, now: datetime, action: str, staff_address: str) -> Decision:
        decision = _cancel_rule(target, event, registered, sequence=sequence, now=now,
                                action=action, staff_address=staff_address)
        return _telling(decision, target.email, context)
    return rule
