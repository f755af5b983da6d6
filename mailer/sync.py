"""Bringing the store in line with the schedules and the clock: event versions and the plan.

``sync_events`` records each event's version (raising SEQUENCE when what participants see
changes, and moving registrations of countries no longer invited to review);
``plan_into_outbox`` runs the pure planner on the store's facts and enqueues what is due.
"""

from __future__ import annotations

from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, replace
from datetime import datetime

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from mailer import store
from mailer.domain import Status
from mailer.planner import Contact, EventVersion, Plan, Planned, Registrant, State, plan
from mailer.schedule import Catalog, Event

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class EventChange:
    """What changed in one event since the store last saw it."""

    event_id: str
    sequence: int
    what: str                      # new | changed | cancelled
    to_review: int = 0             # registrations moved to review (country no longer invited)


def sync_events(session: Session, catalog: Catalog, now: datetime) -> list[EventChange]:
    """Record every event's current version; return what is new or changed."""
    changes: list[EventChange] = []
    rows = {r.event_id: r for r in session.scalars(select(store.EventVersionRow))}
    for event in catalog.events.values():
        fingerprint = event.fingerprint()
        countries = sorted(event.countries)
        row = rows.get(event.id)
        if row is None:
            session.add(store.EventVersionRow(
                event_id=event.id, series_id=event.series.id, sequence=0,
                fingerprint=fingerprint, countries=countries, cancelled=event.cancelled,
                last_end=event.end, changed_at=now))
            changes.append(EventChange(event.id, 0, "new"))
            continue
        moved = 0
        removed = set(row.countries or []) - event.countries
        if removed:
            moved = _to_review(session, event.id, removed, now)
        row.countries = countries
        if row.fingerprint != fingerprint:
            row.sequence += 1
            row.fingerprint = fingerprint
            row.changed_at = now
            row.last_end = event.end
            what = "cancelled" if event.cancelled and not row.cancelled else "changed"
            row.cancelled = event.cancelled
            changes.append(EventChange(event.id, row.sequence, what, moved))
            log.info("event changed", event_id=event.id, sequence=row.sequence, what=what)
        elif moved:
            changes.append(EventChange(event.id, row.sequence, "changed", moved))
        if moved:
            log.warning("countries no longer invited: registrations moved to review",
                        event_id=event.id, countries=sorted(removed), moved=moved)
    return changes


def _to_review(session: Session, event_id: str, countries: set[str], now: datetime) -> int:
    moved = 0
    for reg in store.registrations_of(session, event_id):
        if reg.country in countries and reg.status in (Status.CONFIRMED, Status.WAITING):
            reg.status = str(Status.REVIEW)
            reg.updated_at = now
            moved += 1
    return moved


def versions(session: Session) -> dict[str, EventVersion]:
    """The stored version of every event, as the planner takes it."""
    return {r.event_id: EventVersion(r.event_id, r.sequence, r.changed_at)
            for r in session.scalars(select(store.EventVersionRow))}


def registrants(session: Session, catalog: Catalog) -> list[Registrant]:
    """Every registration of a known event, as the planner takes it (read as columns, not
    ORM objects: a burst plans for tens of thousands)."""
    Reg = store.Registration
    query = (select(Reg.id, Reg.event_id, Reg.email, Reg.name, Reg.language, Reg.country,
                    Reg.status, Reg.confirmed_at, Reg.sequence_seen,
                    Reg.certificate_requested, Reg.attended)
             .where(Reg.event_id.in_(list(catalog.events)))
             .order_by(Reg.event_id, Reg.created_at, Reg.id))
    return [Registrant(id=r.id, event_id=r.event_id, email=r.email, name=r.name,
                       language=r.language, country=r.country, status=Status(r.status),
                       confirmed_at=r.confirmed_at, sequence_seen=r.sequence_seen,
                       certificate_requested=r.certificate_requested, attended=r.attended)
            for r in session.execute(query)]


def _plan(session: Session, catalog: Catalog, contacts: Sequence[Contact], now: datetime,
          known: dict[str, EventVersion] | None = None,
          keep: AbstractSet[State] | None = None) -> Plan:
    """The planner on the store's facts: every outbox key (missed ones too) counts as done."""
    return plan(catalog, registrants(session, catalog),
                known if known is not None else versions(session),
                store.outbox_keys(session, catalog.events), contacts, now, keep)


def _one_event(catalog: Catalog, event: Event) -> Catalog:
    return Catalog(series=catalog.series, events={event.id: event}, groups=catalog.groups)


def current_plan(session: Session, catalog: Catalog, contacts: Sequence[Contact],
                 now: datetime) -> Plan:
    """The plan at ``now`` from what the store holds, as ``mailer plan`` shows it.

    Messages an earlier pass recorded as missed stay "missed" (with their reason) rather than
    counting as sent: staff must see what downtime cost.
    """
    found = _plan(session, catalog, contacts, now)
    recorded = {key: reason for key, reason in session.execute(
        select(store.OutboxRow.key, store.OutboxRow.last_error)
        .where(store.OutboxRow.status == "missed"))}
    if not recorded:
        return found
    return Plan(tuple(replace(p, state="missed", reason=recorded[p.out.key])
                      if p.state == "sent" and p.out.key in recorded else p
                      for p in found.items))


def plan_into_outbox(session: Session, catalog: Catalog, contacts: Sequence[Contact],
                     now: datetime, domain: str) -> Plan:
    """Enqueue every due message (and record the missed ones) in the caller's transaction.

    Planned one event at a time, so memory follows the largest event, not the whole store.
    Returns what was due or missed, and each event's next scheduled message (for
    ``Plan.next_at``).
    """
    kept: list[Planned] = []
    added = 0
    known = versions(session)
    for event in catalog.events.values():
        current = _plan(session, _one_event(catalog, event), contacts, now, known,
                        keep={"due", "missed"})
        due = current.due
        added += store.enqueue(session, due, now=now, domain=domain)
        missed = current.missed
        for reason in sorted({p.reason for p in missed}):
            store.enqueue(session, [p.out for p in missed if p.reason == reason], now=now,
                          domain=domain, status="missed", reason=reason)
        seen = {out.registration_id: out.sequence for out in due
                if out.registration_id is not None and out.kind in _CALENDAR_SEEN}
        if seen:
            for reg in session.scalars(select(store.Registration)
                                       .where(store.Registration.id.in_(list(seen)))):
                reg.sequence_seen = max(reg.sequence_seen, seen[reg.id])
        kept += [p for p in current.items if p.state in ("due", "missed")]
        upcoming = [p for p in current.items if p.state == "scheduled"]
        if upcoming:
            kept.append(min(upcoming, key=lambda p: p.due_at))
    if added:
        log.info("planned", due=added)
    return Plan(tuple(kept))


_CALENDAR_SEEN = frozenset({"update", "cancellation"})
