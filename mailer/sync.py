"""Bringing the store in line with the schedules and the clock: event versions and the plan.

``sync_events`` records each event's version (raising SEQUENCE when what participants see
changes, keeping what each version showed so updates can say what changed, raising the
pack's version when its files change, and finding the registrations of countries no
longer invited, which are kept for staff to decide); ``plan_into_outbox`` runs the pure
planner on the store's facts and enqueues what is due.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from mailer import store
from mailer.countries import country_name
from mailer.domain import Status
from mailer.planner import Contact, EventVersion, Plan, Planned, Registrant, State, plan
from mailer.schedule import LANGUAGES, Catalog, Event
from mailer.staff.refs import registration_ref

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class EventChange:
    """What changed in one event since the store last saw it."""

    event_id: str
    sequence: int
    what: str                      # new | changed | cancelled
    # Registrations of countries this change stopped inviting (kept: staff decide).
    uninvited: tuple[Uninvited, ...] = ()


@dataclass(frozen=True)
class Uninvited:
    """Registrations holding a seat or waiting for one, from a country their event does not
    invite: kept as they are (a country is removed by mistake more often than on purpose),
    for staff to cancel if they mean it."""

    event_id: str
    country: str
    confirmed: tuple[str, ...]     # REFs
    waiting: tuple[str, ...]

    def describe(self) -> str:
        """What staff read: how many, from where, and the command that cancels them."""
        refs = self.confirmed + self.waiting
        counts = ", ".join(f"{len(some)} {what}" for some, what in (
            (self.confirmed, "confirmed"), (self.waiting, "waiting")) if some)
        name = country_name(self.country, "en") if self.country else "no country"
        return (f"{len(refs)} registration(s) from {self.country or '??'} ({name}; {counts}), "
                "which is no longer invited; they keep their places unless you cancel them: "
                f"mailer cancel {' '.join(refs)}")

    def __str__(self) -> str:
        return f"event {self.event_id}: {self.describe()}"


def sync_events(session: Session, catalog: Catalog, now: datetime,
                packs: Path | None = None) -> list[EventChange]:
    """Record every event's current version; return what is new or changed.

    ``packs`` is the folder pack files are read from (``paths.packs``): with it, a change
    of an event's pack files raises that language's pack version, which sends the pack
    once more. Without it, pack versions are left as they are.
    """
    changes: list[EventChange] = []
    rows = {r.event_id: r for r in session.scalars(select(store.EventVersionRow))}
    for event in catalog.events.values():
        fingerprint = event.fingerprint()
        countries = sorted(event.countries)
        digests = pack_digests(event, packs) if packs is not None else None
        row = rows.get(event.id)
        if row is None:
            session.add(store.EventVersionRow(
                event_id=event.id, series_id=event.series.id, sequence=0,
                fingerprint=fingerprint, countries=countries, cancelled=event.cancelled,
                last_end=event.end, changed_at=now, shown={"0": shown(event)},
                packs=_pack_versions(None, digests)))
            changes.append(EventChange(event.id, 0, "new"))
            continue
        removed = set(row.countries or []) - event.countries
        kept = tuple(uninvited(session, catalog, {event.id: removed})) if removed else ()
        row.countries = countries
        if digests is not None:
            versions = _pack_versions(row.packs, digests)
            if versions != row.packs:
                if row.packs:
                    log.info("pack files changed", event_id=event.id)
                row.packs = versions
        if row.shown is None and row.fingerprint == fingerprint:
            # A row from before migration 0003: what it shows now is its current version.
            row.shown = {str(row.sequence): shown(event)}
        if row.fingerprint != fingerprint:
            row.sequence += 1
            row.fingerprint = fingerprint
            row.changed_at = now
            row.last_end = event.end
            # A new dict, not an update in place: the JSON column is saved on assignment.
            row.shown = {**(row.shown or {}), str(row.sequence): shown(event)}
            what = "cancelled" if event.cancelled and not row.cancelled else "changed"
            row.cancelled = event.cancelled
            changes.append(EventChange(event.id, row.sequence, what, kept))
            log.info("event changed", event_id=event.id, sequence=row.sequence, what=what)
        elif kept:
            changes.append(EventChange(event.id, row.sequence, "changed", kept))
        for found in kept:
            log.warning("country no longer invited: its registrations keep their places",
                        event_id=event.id, country=found.country,
                        confirmed=len(found.confirmed), waiting=len(found.waiting),
                        cancel_with=" ".join(found.confirmed + found.waiting))
    return changes


def shown(event: Event) -> dict[str, Any]:
    """What participants see of an event's version: what an update compares (JSON-ready)."""
    return {"start": event.start.isoformat(), "end": event.end.isoformat(),
            "join_url": event.spec.join_url or "", "title": dict(event.spec.title)}


# (path, size, mtime) -> sha256 of the file: a pass hashes each pack file once while it is
# unchanged (a daemon syncs every few minutes).
_FILE_DIGESTS: dict[tuple[str, int, int], str] = {}


def pack_digests(event: Event, packs: Path) -> dict[str, str | None]:
    """Per language, a digest of the pack files a participant in it receives (names and
    bytes); empty when the series has no pack.

    None for a language whose pack lacks an item (no file in any language it may take):
    a file being replaced (removed, then copied in), a folder not mounted. Its version is
    then kept until the pack is whole again; otherwise every participant got the pack
    twice more, once without the file (its message promising files it did not carry) and
    once with it, for a file that never changed.
    """
    from mailer.compose import pack_files  # the composer's own choice of files per language

    items = event.series.spec.pack
    if items is None:
        return {}
    out: dict[str, str | None] = {}
    for lang in LANGUAGES:
        files = pack_files(event, lang, packs)
        digests = [(item, path, _file_digest(path)) for item, path in files]
        if len(files) < len(items.items()) or any(d == "missing" for _, _, d in digests):
            out[lang] = None
            continue
        total = hashlib.sha256()
        for item, path, digest in digests:
            total.update(f"{item}\0{path.name}\0{digest}\0".encode())
        out[lang] = total.hexdigest()[:16]
    return out


def _file_digest(path: Path) -> str:
    try:
        status = path.stat()
    except OSError:
        return "missing"
    key = (str(path), status.st_size, status.st_mtime_ns)
    found = _FILE_DIGESTS.get(key)
    if found is None:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        found = _FILE_DIGESTS[key] = digest.hexdigest()
    return found


def _pack_versions(stored: Mapping[str, Any] | None,
                   digests: Mapping[str, str | None] | None) -> dict[str, Any] | None:
    """``{lang: [digest, version]}``: a language's version is raised when its digest changes
    (a pack not whole, digest None, keeps what is stored: see ``pack_digests``)."""
    if digests is None:
        return dict(stored) if stored is not None else None
    stored = stored or {}
    out: dict[str, Any] = {}
    for lang, digest in digests.items():
        before = stored.get(lang)
        if digest is None:
            # Not whole: nothing to send anew; completing it later is a change ("" differs).
            out[lang] = list(before) if before is not None else ["", 0]
        elif before is None:
            out[lang] = [digest, 0]
        else:
            out[lang] = [digest, before[1] + (before[0] != digest)]
    return out


def uninvited(session: Session, catalog: Catalog,
              countries: Mapping[str, AbstractSet[str]] | None = None) -> list[Uninvited]:
    """Confirmed and waiting registrations from countries their event does not invite, per
    event and country; with ``countries``, only those events and countries.

    Not those staff let in on purpose (approved, or moved with ``--even-if-not-invited``),
    nor those of a series that accepts every country (``not_invited = "accept"``).
    """
    Reg = store.Registration
    events = [e for e in catalog.events.values()
              if e.series.spec.not_invited != "accept" and not e.cancelled
              and (countries is None or countries.get(e.id))]
    if not events:
        return []
    admitted = {(email, event_id) for email, event_id in session.execute(
        select(store.AuditEntry.email, store.AuditEntry.event_id)
        .where(store.AuditEntry.action.in_(("approve", "move")),
               store.AuditEntry.event_id.in_([e.id for e in events])))}
    found: dict[tuple[str, str], tuple[list[str], list[str]]] = {}
    for event in events:
        wanted = countries[event.id] if countries is not None else None
        for r in session.execute(
                select(Reg.id, Reg.email, Reg.country, Reg.status)
                .where(Reg.event_id == event.id,
                       Reg.status.in_((str(Status.CONFIRMED), str(Status.WAITING))))
                .order_by(Reg.created_at, Reg.id)):
            country = r.country or ""
            if (country in event.countries or (wanted is not None and country not in wanted)
                    or (r.email, event.id) in admitted):
                continue
            confirmed, waiting = found.setdefault((event.id, country), ([], []))
            (confirmed if r.status == str(Status.CONFIRMED) else waiting).append(
                registration_ref(r.id))
    return [Uninvited(event_id, country, tuple(c), tuple(w))
            for (event_id, country), (c, w) in sorted(found.items())]


def versions(session: Session) -> dict[str, EventVersion]:
    """The stored version of every event, as the planner takes it."""
    return {r.event_id: EventVersion(
                r.event_id, r.sequence, r.changed_at, r.shown or {},
                {lang: int(found[1]) for lang, found in (r.packs or {}).items()})
            for r in session.scalars(select(store.EventVersionRow))}


def registrants(session: Session, catalog: Catalog) -> list[Registrant]:
    """Every registration of a known event, as the planner takes it (read as columns, not
    ORM objects: a burst plans for tens of thousands)."""
    Reg = store.Registration
    query = (select(Reg.id, Reg.event_id, Reg.email, Reg.name, Reg.language, Reg.country,
                    Reg.status, Reg.confirmed_at, Reg.sequence_seen,
                    Reg.certificate_requested, Reg.attended, Reg.sequence_offset,
                    Reg.utc_offset, Reg.created_at)
             .where(Reg.event_id.in_(list(catalog.events)))
             .order_by(Reg.event_id, Reg.created_at, Reg.id))
    return [Registrant(id=r.id, event_id=r.event_id, email=r.email, name=r.name,
                       language=r.language, country=r.country, status=Status(r.status),
                       confirmed_at=r.confirmed_at, sequence_seen=r.sequence_seen,
                       certificate_requested=r.certificate_requested, attended=r.attended,
                       sequence_offset=r.sequence_offset or 0, utc_offset=r.utc_offset,
                       registered_at=r.created_at)
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

    The planner counts every message in the outbox as done; the outbox says more: messages
    recorded as missed stay "missed" (staff must see what downtime cost), those the server
    refused for good are "failed" (with its words) and those not yet sent are "queued".
    """
    found = _plan(session, catalog, contacts, now)
    recorded = {key: (_STATE_OF[status], reason) for key, status, reason in session.execute(
        select(store.OutboxRow.key, store.OutboxRow.status, store.OutboxRow.last_error)
        .where(store.OutboxRow.status.in_(list(_STATE_OF))))}
    if not recorded:
        return found
    return Plan(tuple(replace(p, state=recorded[p.out.key][0], reason=recorded[p.out.key][1])
                      if p.state == "sent" and p.out.key in recorded else p
                      for p in found.items))


_STATE_OF: dict[str, State] = {"missed": "missed", "failed": "failed", "pending": "queued"}


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
        # The event's version each of them now has (their SEQUENCE adds their own offset).
        version = known[event.id].sequence if event.id in known else 0
        seen = {out.registration_id: version for out in due
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
