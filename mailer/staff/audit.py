"""The audit trail: every staff action, who did it, when, what it changed and why.

Written in the action's own transaction (an action that rolls back leaves no record);
read by ``mailer registrations``, ``mailer person`` and the answer to a digest reply.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from mailer.store import AuditEntry


@dataclass(frozen=True)
class Actor:
    """Who acts: a login name at the command line, a staff address by reply."""

    name: str
    via: str = "command"            # command | digest reply


def record(session: Session, actor: Actor, now: datetime, action: str, *, ref: str = "",
           event_id: str | None = None, email: str = "", detail: str = "",
           reason: str = "") -> None:
    """Add one entry to the trail, in the caller's transaction."""
    session.add(AuditEntry(at=now, actor=actor.name[:320], via=actor.via, action=action,
                           ref=ref, event_id=event_id, email=email.lower(),
                           detail=detail[:2000], reason=reason[:2000]))


def entries_for(session: Session, *, emails: Iterable[str] = (),
                event_ids: Iterable[str] | None = None) -> list[AuditEntry]:
    """The entries about these people (of these events), oldest first."""
    wanted = sorted({e.lower() for e in emails})
    query = select(AuditEntry).order_by(AuditEntry.at, AuditEntry.id)
    if wanted:
        query = query.where(AuditEntry.email.in_(wanted))
    if event_ids is not None:
        query = query.where(or_(AuditEntry.event_id.in_(list(event_ids)),
                                AuditEntry.event_id.is_(None)))
    return list(session.scalars(query))


def describe(entry: AuditEntry) -> str:
    """One line: "2020-06-20 12:00 approved by alice (command): R12 review -> confirmed: why"."""
    line = f"{entry.at:%Y-%m-%d %H:%M} {entry.action} by {entry.actor} ({entry.via})"
    if entry.detail:
        line += f": {entry.detail}"
    if entry.reason:
        line += f"; why: {entry.reason}"
    return line


def as_json(entry: AuditEntry) -> dict[str, object]:
    return {"at": entry.at.isoformat(), "actor": entry.actor, "via": entry.via,
            "action": entry.action, "ref": entry.ref, "event": entry.event_id,
            "detail": entry.detail, "reason": entry.reason}
