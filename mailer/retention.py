"""Retention: personal data of a finished series replaced by counts once its time is up.

A series is purged when its last event ended more than the configured number of days ago
(or on demand, once every event has ended): its registrations become RetainedCount rows
(per event, country and status), and its outbox and inbound rows lose every address, name
and text from mail while keeping kinds, statuses and dates. Running it again changes nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from mailer.domain import make_message_id, normalise_email
from mailer.errors import UsageError
from mailer.schedule import Catalog
from mailer.store import (
    AuditEntry,
    EventVersionRow,
    Inbound,
    OutboxRow,
    QuarantinedMail,
    Registration,
    RetainedCount,
)

log = structlog.get_logger(__name__)

PURGED_PREFIX = "purged:"


@dataclass(frozen=True)
class PurgeResult:
    """What one purge of one series removed or kept (counts only, never who)."""

    series_id: str
    registrations: int = 0   # registrations deleted
    counts: int = 0          # RetainedCount rows written or added to
    outbox: int = 0          # outbox rows stripped of personal data
    inbound: int = 0         # inbound rows stripped of their sender
    audit: int = 0           # audit entries stripped of whom they were about, and why

    @property
    def changed(self) -> bool:
        return bool(self.registrations or self.counts or self.outbox or self.inbound
                    or self.audit)


def expired(last_ends: Mapping[str, datetime | None], now: datetime, days: int) -> list[str]:
    """The series whose last event ended more than ``days`` days before ``now``, sorted.

    A series whose end is unknown is never expired: nothing is deleted that cannot be dated.
    """
    cutoff = now - timedelta(days=days)
    return sorted(s for s, end in last_ends.items() if end is not None and end < cutoff)


def purge_expired(session: Session, catalog: Catalog, now: datetime, days: int
                  ) -> list[PurgeResult]:
    """Purge every series (in the schedules or only left in the store) that expired at ``now``.

    Returns one result per series where something changed.
    """
    ends = {series_id: last_end(session, catalog, series_id)
            for series_id in _known_series(session, catalog)}
    results = [_purge(session, catalog, series_id, now) for series_id in expired(ends, now, days)]
    return [r for r in results if r.changed]


def purge_series(session: Session, catalog: Catalog, series_id: str, now: datetime
                 ) -> PurgeResult:
    """Purge one series now (``mailer purge --series``), provided every event has ended.

    Raises UsageError for an unknown series or one with an event still to come or running.
    """
    if series_id not in _known_series(session, catalog) and not session.scalar(
            select(RetainedCount.id).where(RetainedCount.series_id == series_id).limit(1)):
        raise UsageError(f"--series: no series {series_id!r} in the schedules or the store")
    end = last_end(session, catalog, series_id)
    if end is not None and end > now:
        raise UsageError(f"series {series_id!r} is not over: its last event ends "
                         f"{end:%Y-%m-%d %H:%M} UTC; nothing was purged")
    return _purge(session, catalog, series_id, now)


def last_end(session: Session, catalog: Catalog, series_id: str) -> datetime | None:
    """When the series' last event ends: the later of the schedules and the stored versions."""
    ends = [e.end for e in catalog.events_of(series_id)]
    stored = session.scalar(select(func.max(EventVersionRow.last_end))
                            .where(EventVersionRow.series_id == series_id))
    if stored is not None:
        ends.append(stored)
    return max(ends, default=None)


def _known_series(session: Session, catalog: Catalog) -> set[str]:
    return (set(catalog.series)
            | set(session.scalars(select(EventVersionRow.series_id).distinct()))
            | set(session.scalars(select(Registration.series_id).distinct())))


def _event_ids(session: Session, catalog: Catalog, series_id: str) -> set[str]:
    """Every event id the series ever had, except ids the schedules now give another series."""
    ids = {e.id for e in catalog.events_of(series_id)}
    ids |= set(session.scalars(select(EventVersionRow.event_id)
                               .where(EventVersionRow.series_id == series_id)))
    ids |= set(session.scalars(select(Registration.event_id).distinct()
                               .where(Registration.series_id == series_id)))
    return {i for i in ids if i not in catalog.events or catalog.events[i].series.id == series_id}


def _purge(session: Session, catalog: Catalog, series_id: str, now: datetime) -> PurgeResult:
    event_ids = _event_ids(session, catalog, series_id)
    registrations = list(session.scalars(select(Registration)
                                         .where(Registration.series_id == series_id)))
    people = {normalise_email(a) for r in registrations for a in (r.email, r.registered_by) if a}
    counts = _keep_counts(session, series_id, registrations, now)
    ids = [r.id for r in registrations]
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        # The foreign key sets this to NULL too, but not on every backend's configuration.
        session.execute(update(OutboxRow).where(OutboxRow.registration_id.in_(chunk))
                        .values(registration_id=None))
        session.execute(delete(Registration).where(Registration.id.in_(chunk)))
    # People still registered for another series keep their event-less rows until that ends.
    gone = people - {normalise_email(e) for e in session.scalars(select(Registration.email))}
    result = PurgeResult(series_id, registrations=len(registrations), counts=counts,
                         outbox=_scrub_outbox(session, event_ids, gone),
                         inbound=_scrub_inbound(session, event_ids, gone),
                         audit=_scrub_audit(session, event_ids))
    if result.changed:
        log.info("personal data purged", series_id=series_id,
                 registrations=result.registrations, counts=result.counts,
                 outbox=result.outbox, inbound=result.inbound)
    return result


def _keep_counts(session: Session, series_id: str, registrations: Iterable[Registration],
                 now: datetime) -> int:
    """Add the registrations to the series' kept counts; return how many rows changed."""
    total: Counter[tuple[str, str, str]] = Counter()
    attended: Counter[tuple[str, str, str]] = Counter()
    for r in registrations:
        key = (r.event_id, r.country or "", r.status)
        total[key] += 1
        attended[key] += bool(r.attended)
    for (event_id, country, status), count in total.items():
        row = session.scalar(select(RetainedCount).where(
            RetainedCount.series_id == series_id, RetainedCount.event_id == event_id,
            RetainedCount.country == country, RetainedCount.status == status))
        if row is None:
            session.add(RetainedCount(series_id=series_id, event_id=event_id, country=country,
                                      status=status, count=count,
                                      attended=attended[(event_id, country, status)],
                                      purged_at=now))
        else:  # registrations that arrived after an earlier purge
            row.count += count
            row.attended += attended[(event_id, country, status)]
            row.purged_at = now
    return len(total)


def _scrub_outbox(session: Session, event_ids: set[str], gone: set[str]) -> int:
    """Strip personal data from the series' outbox rows and event-less rows about ``gone``."""
    about = OutboxRow.event_id.in_(event_ids)
    if gone:
        about = or_(about, OutboxRow.event_id.is_(None))
    rows = list(session.scalars(select(OutboxRow).where(
        ~OutboxRow.key.startswith(PURGED_PREFIX), about)))
    scrubbed = 0
    for row in rows:
        if row.event_id is None and not _mentions(row, gone):
            continue
        # The key held the address; a hash of it would still confirm a guessed address, so
        # the row's own id keeps the key unique and says nothing. The Message-ID follows.
        row.key = f"{PURGED_PREFIX}{row.id}"
        domain = row.message_id.rpartition("@")[2].rstrip(">") or "invalid"
        row.message_id = make_message_id(row.key, row.event_id, domain)
        row.recipient = ""
        row.name = ""
        row.context = {}
        row.in_reply_to = None
        row.last_error = ""   # SMTP errors quote the address
        row.registration_id = None
        scrubbed += 1
    return scrubbed


def _mentions(row: OutboxRow, gone: set[str]) -> bool:
    if normalise_email(row.recipient) in gone:
        return True
    text = f"{row.key} {row.context}".lower()
    return any(email in text for email in gone)


def _scrub_inbound(session: Session, event_ids: set[str], gone: set[str]) -> int:
    """Blank the sender (and reason, which may quote it) of the series' inbound rows."""
    about = Inbound.event_id.in_(event_ids)
    if gone:
        about = or_(about, Inbound.event_id.is_(None))
    rows = list(session.scalars(select(Inbound).where(Inbound.sender != "", about)))
    scrubbed = 0
    for row in rows:
        if row.event_id is None and normalise_email(row.sender) not in gone:
            continue
        row.sender = ""
        row.reason = ""
        # A quarantined message kept for staff is all about its sender.
        session.execute(delete(QuarantinedMail).where(
            QuarantinedMail.message_id == row.message_id))
        scrubbed += 1
    return scrubbed


def _scrub_audit(session: Session, event_ids: set[str]) -> int:
    """Keep what staff did to the series' registrations, not whom it was about or why (the
    reason staff wrote may name them)."""
    if not event_ids:
        return 0
    return session.execute(update(AuditEntry).where(
        AuditEntry.event_id.in_(event_ids), AuditEntry.email != "").values(
        email="", reason="")).rowcount or 0


def purge_quarantined(session: Session, now: datetime, days: int) -> int:
    """Delete the kept bytes of mail quarantined more than ``days`` days ago; return how many."""
    cutoff = now - timedelta(days=days)
    return session.execute(delete(QuarantinedMail).where(
        QuarantinedMail.kept_at < cutoff)).rowcount or 0
