"""What went to whom (``mailer messages``), sending one again (``mailer resend``), and the
mail set aside (``mailer quarantine``: list, show as .eml, hand back for handling).

The outbox keeps every message with its status and, for each failure, the server's own
words (``last_error``); a resend is a new outbox row (a new key and Message-ID), so the
daemon sends it as any other message, once. Releasing a quarantined message handles its kept
bytes through ``handling.settle`` in one transaction, exactly as the daemon would have.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from mailer import handling, store
from mailer.config import Imap
from mailer.domain import CALENDAR_KINDS, normalise_email
from mailer.errors import MailerError, UsageError
from mailer.inbox import QUARANTINED
from mailer.retention import PURGED_PREFIX
from mailer.schedule import Catalog
from mailer.staff import audit
from mailer.staff.actions import Desk
from mailer.staff.refs import message_ref, parse_ref

STATUSES = ("pending", "sent", "failed", "missed")


def messages(session: Session, *, to: str | None = None, event_id: str | None = None,
             status: str | None = None, kind: str | None = None,
             limit: int = 50, due_before: datetime | None = None) -> list[dict[str, Any]]:
    """Outbox rows, newest first, as plain values: what went (or goes, or failed) to whom
    (``due_before``: only those waiting to go before that moment)."""
    Out = store.OutboxRow
    query = select(Out).order_by(Out.id.desc()).limit(limit)
    if due_before is not None:
        query = query.where(Out.status == "pending", Out.next_attempt_at < due_before)
    if to:
        query = query.where(func.lower(Out.recipient) == normalise_email(to))
    if event_id:
        query = query.where(Out.event_id == event_id)
    if status:
        query = query.where(Out.status == status)
    if kind:
        query = query.where(Out.kind == kind)
    return [{"id": r.id, "created": r.created_at.isoformat(timespec="minutes"),
             "sent": r.sent_at.isoformat(timespec="minutes") if r.sent_at else None,
             "due": r.next_attempt_at.isoformat(timespec="minutes"),
             "status": r.status, "kind": r.kind, "event": r.event_id, "to": r.recipient,
             "attempts": r.attempts, "error": r.last_error,
             "registration": f"R{r.registration_id}" if r.registration_id else None}
            for r in session.scalars(query)]


def parse_message_number(text: str) -> int:
    """``41``, ``#41``: an outbox message as ``mailer messages`` lists it."""
    value = text.strip().lstrip("#")
    if not value.isdigit():
        raise UsageError(f"{text!r} is not a message number (mailer messages lists them)")
    return int(value)


@dataclass(frozen=True)
class Resent:
    """What ``resend`` did: the copy's number, and whether this call queued it (False: a
    copy of the same message was still waiting to go, and nothing new was queued)."""

    number: int
    queued: bool


RESEND_MARK = "|resend-"


def resend(session: Session, desk: Desk, number: int, reason: str = "") -> Resent:
    """Queue a sent, failed or missed message again, unless a copy of it still waits.

    Staff who type the command twice, or two of them at once, must not send two copies:
    while a resend of a message (or of any copy of it) is pending, another is answered with
    that copy's number and queues nothing. Once the copy went (or failed), a new resend
    queues one more: a deliberate third copy is staff's call (a participant who deleted it),
    and each one is in the audit trail. The copies' keys are numbered (``KEY|resend-2``), so
    two resends that race (two processes, PostgreSQL) pick the same key and the outbox's
    unique key keeps one.

    A calendar message goes with the person's current SEQUENCE (the event's, plus what their
    own withdrawals and re-registrations added). An address suppressed after a bounce is let
    through again (staff asked for this message; the audit trail says so).
    """
    row = session.get(store.OutboxRow, number)
    if row is None:
        raise UsageError(f"#{number}: no such message (mailer messages lists them)")
    if row.status == "pending":
        raise UsageError(f"#{number} is still pending: it is sent when due, nothing to resend")
    if row.key.startswith(PURGED_PREFIX) or not row.recipient:
        raise UsageError(f"#{number}: its recipient was erased; nothing to resend")
    if row.event_id and row.event_id not in desk.catalog.events:
        raise UsageError(f"#{number}: event {row.event_id!r} is no longer in the schedules")
    Out = store.OutboxRow
    stem = row.key.split(RESEND_MARK)[0] + RESEND_MARK
    copies = session.execute(select(Out.id, Out.key, Out.status).where(
        Out.key.startswith(stem, autoescape=True)).order_by(Out.id)).all()
    waiting = [c.id for c in copies if c.status == "pending"]
    if waiting:
        return Resent(waiting[0], queued=False)
    taken = {c.key for c in copies}
    copy = len(copies) + 1
    while f"{stem}{copy}" in taken:
        copy += 1
    out = store.row_to_outgoing(row)
    if out.kind in CALENDAR_KINDS and row.event_id:
        # Without their offset, a participant who withdrew and registered again got a
        # REQUEST below the CANCEL they had had: their calendar may ignore it.
        offset = session.scalar(select(store.Registration.sequence_offset).where(
            store.Registration.event_id == row.event_id,
            store.Registration.email == normalise_email(row.recipient))) or 0
        out = replace(out, sequence=store.event_sequence(session, row.event_id) + offset)
    again = replace(out, key=f"{stem}{copy}", due_at=desk.now)
    added = store.enqueue(session, [again], now=desk.now, domain=desk.domain)
    new_id = session.scalar(select(Out.id).where(Out.key == again.key))
    assert new_id is not None
    if not added:       # another command queued this very copy meanwhile
        return Resent(new_id, queued=False)
    lifted = session.execute(delete(store.Suppression).where(
        store.Suppression.email == normalise_email(row.recipient))).rowcount
    detail = f"message #{number} ({row.kind}, {row.status}) queued again as #{new_id}"
    if lifted:
        detail += "; the address's suppression after a bounce was lifted"
    reg = f"R{row.registration_id}" if row.registration_id else ""
    audit.record(session, desk.actor, desk.now, "resend", ref=reg, event_id=row.event_id,
                 email=row.recipient, detail=detail, reason=reason)
    return Resent(new_id, queued=True)


# --- quarantine --------------------------------------------------------------------------

def quarantined(session: Session, limit: int = 100) -> list[dict[str, Any]]:
    """Mail set aside, newest first, with the reason and whether its bytes are kept."""
    In, Q = store.Inbound, store.QuarantinedMail
    rows = session.execute(select(In, Q.size, func.length(Q.raw)).outerjoin(
        Q, Q.message_id == In.message_id).where(In.outcome == "quarantined")
        .order_by(In.id.desc()).limit(limit))
    return [{"ref": message_ref(r.id), "id": r.id,
             "at": r.handled_at.isoformat(timespec="minutes"), "sender": r.sender,
             "reason": r.reason, "message_id": r.message_id, "size": size,
             "kept_bytes": kept or 0} for r, size, kept in rows]


def parse_message_ref(text: str) -> int:
    """``M7`` or ``7``: a quarantined message as ``mailer quarantine`` lists it."""
    value = text.strip()
    number = int(value) if value.isdigit() else parse_ref(value, "M")
    if number is None:
        raise UsageError(f"{text!r} is not a message REF like M7 (mailer quarantine lists them)")
    return number


def _quarantined_row(session: Session, number: int) -> store.Inbound:
    row = session.get(store.Inbound, number)
    if row is None or row.outcome != "quarantined":
        raise UsageError(f"{message_ref(number)}: no such quarantined message "
                         "(mailer quarantine lists them)")
    return row


def kept_bytes(session: Session, number: int, imap: Imap | None = None
               ) -> tuple[store.Inbound, bytes, int]:
    """A quarantined message's kept bytes and its full size; UsageError when none were kept,
    saying where the message itself is (``imap.quarantine_folder``, else where it was read)."""
    row = _quarantined_row(session, number)
    kept = session.get(store.QuarantinedMail, row.message_id)
    if kept is None:
        raise UsageError(f"{message_ref(number)}: its bytes were not kept (too large to "
                         "download, or older than retention.quarantine_days); the message is "
                         f"{_kept_where(row, imap or Imap())}")
    return row, bytes(kept.raw), kept.size


def _kept_where(row: store.Inbound, imap: Imap) -> str:
    if imap.quarantine_folder:
        return f"in the IMAP folder {imap.quarantine_folder!r}"
    # Without imap.quarantine_folder nothing moves it: it stays where it was read, flagged
    # when the server keeps keywords.
    sender = f" from {row.sender}" if row.sender else ""
    return (f"still in the IMAP folder {row.folder or imap.folder!r}{sender} (flagged "
            f"{QUARANTINED} if the server keeps keywords; imap.quarantine_folder moves such "
            "mail aside)")


class StillQuarantined(MailerError):
    """A released message could not be handled again (exit 1)."""


@dataclass(frozen=True)
class Released:
    ref: str
    outcome: str
    summary: str
    answers: int


def release(session: Session, catalog: Catalog, policy: handling.Policy, desk: Desk,
            number: int, imap: Imap | None = None) -> Released:
    """Hand a quarantined message back for handling, in the caller's transaction.

    Its size limit no longer applies (staff looked at it); if it still cannot be read, or
    its handling fails, StillQuarantined is raised and the caller rolls everything back.
    """
    row, raw, size = kept_bytes(session, number, imap)
    if len(raw) < size:
        raise UsageError(f"{message_ref(number)}: only its first {len(raw)} of {size} bytes "
                         "were kept, too few to handle it; the message is "
                         f"{_kept_where(row, imap or Imap())}")
    # No longer set aside: handled as a message that failed before, so ``settle`` takes it.
    session.execute(update(store.Inbound).where(store.Inbound.id == row.id)
                    .values(outcome="failed", attempts=0))
    session.execute(delete(store.QuarantinedMail).where(
        store.QuarantinedMail.message_id == row.message_id))
    arrival = handling.Arrival(raw, desk.now, row.message_id, row.folder, row.uidvalidity,
                               row.uid, len(raw))
    lenient = replace(policy, max_bytes=max(policy.max_bytes, len(raw) + 1))
    understood = handling.understood_of(catalog, arrival, lenient)
    try:
        handled = handling.settle(session, catalog, arrival, understood, lenient)
    except Exception as exc:  # noqa: BLE001 - reported as one line, the message stays aside
        raise StillQuarantined(f"{message_ref(number)}: handling it failed again: "
                               f"{type(exc).__name__}: {exc}") from None
    if handled.outcome == "quarantined":
        raise StillQuarantined(f"{message_ref(number)} still cannot be handled: "
                               f"{handled.reason}")
    summary = handled.decision.summary if handled.decision else handled.outcome
    audit.record(session, desk.actor, desk.now, "release", ref=message_ref(number),
                 email=row.sender, detail=f"{message_ref(number)} handed back: {summary}"[:2000])
    return Released(message_ref(number), handled.outcome, summary, handled.answers)
