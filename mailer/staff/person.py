"""One person's data: everything stored about them (``mailer person``), and erasing it
(``mailer forget``), keeping only counts per country.

The store holds a person in: their registrations (and registrations they made for others),
the messages sent to them (outbox) or about them (a question they asked, a digest listing
them), the messages they sent (inbound) and the bytes of those quarantined, a suppression
of their address, and the audit trail. ``export`` reads all of it; ``forget`` cancels their
places through the rules (the waiting list moves up, and they get no more mail), adds their
registrations to the kept counts, and deletes or blanks every row that names them.
"""

from __future__ import annotations

import base64
import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Text, cast, delete, func, or_, select, update
from sqlalchemy.orm import Session

from mailer import handling, rules, store
from mailer.domain import Intent, IntentKind, Participant, Status, make_message_id
from mailer.domain import normalise_email as _norm
from mailer.retention import PURGED_PREFIX, _keep_counts
from mailer.staff import audit
from mailer.staff.actions import Desk, action_id, registered
from mailer.staff.refs import registration_ref

ERASED = "(erased)"


def _columns(row: Any) -> dict[str, Any]:
    """Every column of an ORM row, JSON-ready (dates as ISO text, bytes as text)."""
    out: dict[str, Any] = {}
    for column in row.__table__.columns:
        value = getattr(row, column.key)
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        out[column.key] = value
    return out


def _escaped(text: str) -> str:
    """``text`` as it is stored inside a JSON column ("josé" is "jos\\u00e9" there)."""
    return json.dumps(text)[1:-1]


def _mentioning(session: Session, email: str, names: Iterable[str]
                ) -> list[store.OutboxRow]:
    """Outbox rows to someone else whose content names the person: their address (a question
    they asked, a digest listing them) or one of their names (staff's answer to a digest
    reply says "R12 Awa Diop (SN)"); exactly the rows ``_redact`` changes.

    The store sees the JSON text, where a non-ASCII address or name is escaped: both forms
    are looked for there, then each row found is checked on its decoded content.
    """
    Out = store.OutboxRow
    text = cast(Out.context, Text)
    wanted = [func.lower(text).contains(form, autoescape=True)
              for form in {email, _escaped(email)}]
    wanted += [text.contains(form, autoescape=True)
               for name in names for form in {name, _escaped(name)}]
    rows = session.scalars(select(Out).where(
        func.lower(Out.recipient) != email,
        or_(func.lower(Out.key).contains(email, autoescape=True), *wanted)).order_by(Out.id))
    return [row for row in rows if email in row.key.lower()
            or _redact(row.context or {}, email, set(names)) != (row.context or {})]


def export(session: Session, email: str) -> dict[str, Any]:
    """Everything stored about the person with this address, as one JSON-ready object."""
    email = _norm(email)
    Reg, Out, In = store.Registration, store.OutboxRow, store.Inbound
    registrations = list(session.scalars(select(Reg).where(Reg.email == email)
                                         .order_by(Reg.id)))
    trail = audit.entries_for(session, emails=[email])
    by_event: dict[str | None, list[dict[str, object]]] = defaultdict(list)
    for entry in trail:
        by_event[entry.event_id].append(audit.as_json(entry))
    inbound = list(session.scalars(select(In).where(func.lower(In.sender) == email)
                                   .order_by(In.id)))
    kept = _quarantined_of(session, email, [r.message_id for r in inbound])
    suppression = session.get(store.Suppression, email)
    return {
        "email": email,
        "registrations": [{"ref": registration_ref(r.id), **_columns(r),
                           "audit": by_event.get(r.event_id, [])} for r in registrations],
        "registered_for_others": [
            {"ref": registration_ref(r.id), "event_id": r.event_id}
            for r in session.scalars(select(Reg).where(Reg.registered_by == email,
                                                       Reg.email != email).order_by(Reg.id))],
        "messages_to_them": [_columns(r) for r in session.scalars(
            select(Out).where(func.lower(Out.recipient) == email).order_by(Out.id))],
        "messages_about_them": [_columns(r) for r in _mentioning(
            session, email, {r.name for r in registrations if r.name})],
        "messages_from_them": [_columns(r) for r in inbound],
        "quarantined_mail": [{"message_id": q.message_id, "size": q.size,
                              "kept_at": q.kept_at.isoformat(),
                              "eml_base64": base64.b64encode(q.raw).decode("ascii")}
                             for q in kept],
        "suppressed": _columns(suppression) if suppression else None,
        "audit": [audit.as_json(e) for e in trail],
    }


def _quarantined_of(session: Session, email: str, message_ids: Iterable[str]
                    ) -> list[store.QuarantinedMail]:
    """The kept quarantined mail they sent, or that names them anywhere in its bytes."""
    wanted = set(message_ids)
    needle = email.encode("utf-8")
    # Kept for ``retention.quarantine_days`` only, so looking through all of it stays cheap.
    return [q for q in session.scalars(select(store.QuarantinedMail))
            if q.message_id in wanted or needle in bytes(q.raw).lower()]


@dataclass(frozen=True)
class Forgotten:
    """What ``forget`` erased (counts only)."""

    registrations: int = 0
    cancelled: int = 0            # places given up (the waiting list moved up)
    messages: int = 0             # outbox rows deleted or blanked
    mentions: int = 0             # outbox rows to others with the person's data removed
    inbound: int = 0
    quarantined: int = 0
    audit: int = 0
    suppressed: bool = False

    @property
    def anything(self) -> bool:
        return bool(self.registrations or self.messages or self.mentions or self.inbound
                    or self.quarantined or self.audit or self.suppressed)


def forget(session: Session, desk: Desk, email: str) -> Forgotten:
    """Erase everything stored about one person, in the caller's transaction.

    Places they hold in events still to come are cancelled first, through the rules, so the
    first of their country's waiting list is promoted; they are sent nothing (no withdrawal:
    their address is being erased). Their registrations are then added to the kept counts
    per event, country and status, as retention does.
    """
    email = _norm(email)
    Reg, Out, In = store.Registration, store.OutboxRow, store.Inbound
    mine = list(session.scalars(select(Reg).where(Reg.email == email)))
    cancelled = _give_up_places(session, desk, mine)
    mine = list(session.scalars(select(Reg).where(Reg.email == email)))
    names = {r.name for r in mine if r.name}
    per_series: dict[str, list[store.Registration]] = defaultdict(list)
    for r in mine:
        per_series[r.series_id].append(r)
    for series_id, regs in per_series.items():
        _keep_counts(session, series_id, regs, desk.now)
    ids = [r.id for r in mine]
    if ids:
        session.execute(update(Out).where(Out.registration_id.in_(ids))
                        .values(registration_id=None))
        session.execute(delete(Reg).where(Reg.id.in_(ids)))
    session.execute(update(Reg).where(Reg.registered_by == email).values(registered_by=""))
    messages = _erase_outbox(session, email)
    mentions = _redact_mentions(session, email, names)
    inbound = list(session.scalars(select(In).where(or_(
        func.lower(In.sender) == email, func.lower(In.reason).contains(email)))))
    kept = _quarantined_of(session, email, [r.message_id for r in inbound])
    for q in kept:
        session.delete(q)
    for row in inbound:
        row.sender, row.reason = "", ""
    trail = session.execute(delete(store.AuditEntry).where(
        store.AuditEntry.email == email)).rowcount or 0
    suppressed = session.execute(delete(store.Suppression).where(
        store.Suppression.email == email)).rowcount or 0
    result = Forgotten(registrations=len(ids), cancelled=cancelled, messages=messages,
                       mentions=mentions, inbound=len(inbound), quarantined=len(kept),
                       audit=trail, suppressed=bool(suppressed))
    if result.anything:
        # The trail keeps that someone was erased, and by whom, never who.
        audit.record(session, desk.actor, desk.now, "forget",
                     detail=f"one person erased: {len(ids)} registration(s), {messages} "
                            f"message(s), {len(inbound)} inbound message(s)")
    return result


def _give_up_places(session: Session, desk: Desk, mine: list[store.Registration]) -> int:
    """Cancel their active places in events not started, through the rules (promotions go
    out; nothing goes to them)."""
    given = 0
    for row in sorted(mine, key=lambda r: r.event_id):     # events locked in one order
        event = desk.catalog.events.get(row.event_id)
        if event is None or Status(row.status) not in rules.ACTIVE or desk.now >= event.start:
            continue
        store.lock_event(session, event.id)
        snapshot = registered(session, event.id)
        sequence = store.event_sequence(session, event.id)
        intent = Intent(kind=IntentKind.CANCELLATION, sender=row.email,
                        message_id=action_id(desk), event_id=event.id,
                        participants=(Participant(email=row.email),))
        decision = rules.decide(intent, event, snapshot, sequence=sequence, now=desk.now,
                                staff_address=desk.staff_address)
        handling.apply_decision(session, decision, intent, event.series.id, sequence, desk.now)
        others = [out for out in decision.answers if _norm(out.recipient) != row.email]
        store.enqueue(session, others, now=desk.now, domain=desk.domain)
        given += 1
    return given


def _erase_outbox(session: Session, email: str) -> int:
    """Messages to them: unsent ones deleted, the others kept as kind, status and dates only."""
    Out = store.OutboxRow
    rows = list(session.scalars(select(Out).where(func.lower(Out.recipient) == email)))
    for row in rows:
        if row.status == "pending":
            session.delete(row)
            continue
        # As retention does: the key held the address, the row's id keeps it unique.
        row.key = f"{PURGED_PREFIX}{row.id}"
        domain = row.message_id.rpartition("@")[2].rstrip(">") or "invalid"
        row.message_id = make_message_id(row.key, row.event_id, domain)
        row.recipient, row.name, row.context = "", "", {}
        row.in_reply_to, row.last_error, row.registration_id = None, "", None
    return len(rows)


def _redact_mentions(session: Session, email: str, names: set[str]) -> int:
    """Remove the person from messages to others (a question they asked, a digest)."""
    rows = _mentioning(session, email, names)
    for row in rows:
        row.context = _redact(row.context or {}, email, names)
        if email in row.key.lower():
            row.key = f"{PURGED_PREFIX}{row.id}"
    return len(rows)


def _redact(value: Any, email: str, names: set[str]) -> Any:
    """``value`` with the person taken out: a record naming their address loses every text it
    holds; any other text loses their address."""
    if isinstance(value, dict):
        if any(isinstance(v, str) and email in v.lower() for v in value.values()):
            return {k: ERASED if isinstance(v, str) and v else _redact(v, email, names)
                    for k, v in value.items()}
        return {k: _redact(v, email, names) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v, email, names) for v in value]
    if isinstance(value, str):
        lowered = value.lower()
        if email in lowered or any(n and n in value for n in names):
            return ERASED
    return value
