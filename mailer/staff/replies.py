"""Acting by replying to the digest: check who sent it and where, carry out its commands,
answer with what was done; a refused attempt is reported to staff and never answered.

A reply is accepted only when it comes from a staff address AND is sent to the reply address
of an existing digest (not older than ``staff.reply_days``) with that digest's token: a
forged From alone, a token made up or taken from another digest, or the right address used
by someone else, does nothing. Each command runs in a savepoint of the message's own
transaction through the same actions as the command line (``actions``), so one command the
rules refuse leaves the others done. Automatic replies to a digest are recorded, not read.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import structlog
from sqlalchemy import func, select
from sqlalchemy.engine import Row
from sqlalchemy.orm import Session

from mailer import store
from mailer.domain import Intent, Kind, Outgoing, normalise_email, outbox_key
from mailer.errors import UsageError
from mailer.rules import Decision
from mailer.schedule import Catalog
from mailer.staff import actions, grammar, tokens
from mailer.staff.audit import Actor
from mailer.staff.replies_check import header_block
from mailer.understand.message import parse_message
from mailer.understand.message import recipients as message_recipients

if TYPE_CHECKING:
    from typing import Any

    from mailer.handling import Arrival, Handled, Policy

log = structlog.get_logger(__name__)

# At most this many refused attempts are reported a day: a flood of forgeries must not
# become a flood of mail to staff (each one is still recorded and logged).
REPORTS_PER_DAY = 20


def recipients(raw: bytes) -> list[str]:
    """The addresses a message was sent to (To, Cc and what the server says it delivered),
    read as understanding reads them: the first few headers of each name, each cut short
    (all of them, unbounded, took 1.4 s for 2.9 MB of Cc, and each reply reads them thrice)."""
    return message_recipients(parse_message(header_block(raw)))


def refusal(session: Session, raw: bytes, intent: Intent, policy: Policy,
            now: datetime) -> str:
    """Why this reply may not act ("" when it may)."""
    found = tokens.digest_address(recipients(raw), policy.inbox_address)
    if found is None:
        return ("it was not sent to a digest's reply address (staff act by replying to the "
                "digest itself)")
    if not policy.digest_secret:
        return "acting by reply is off: no staff.secret is configured"
    if not tokens.valid(policy.digest_secret, found):
        return f"its reply address does not carry the token of digest {found.digest_id}"
    digest = session.get(store.DigestRow, found.digest_id)
    if digest is None or not digest.sent:
        return f"there is no digest {found.digest_id}"
    if normalise_email(intent.sender) not in policy.staff_addresses:
        return "it does not come from a staff address"
    if digest.made_at < now - timedelta(days=policy.reply_days):
        return (f"digest {digest.id} ({digest.day}) is older than {policy.reply_days} days: "
                "reply to a recent one")
    return ""


def settle_staff_reply(session: Session, catalog: Catalog, arrival: Arrival, intent: Intent,
                       policy: Policy, previous: Row[Any] | None) -> Handled:
    """Handle a reply to the digest (or what claims to be one) in the caller's transaction."""
    from mailer.handling import Handled

    now = arrival.now
    if not intent.answerable:
        summary = "automatic reply to a digest: not read"
        _record(session, arrival, intent, summary, previous)
        return Handled(arrival.message_id, "handled", intent, Decision(summary=summary))
    why = refusal(session, arrival.raw, intent, policy, now)
    if why:
        reported = _report_refusal(session, arrival, intent, policy, why)
        summary = f"staff reply refused: {why}"
        _record(session, arrival, intent, summary, previous)
        log.warning("staff reply refused", message_id=arrival.message_id, why=why,
                    reported=reported)
        return Handled(arrival.message_id, "handled", intent, Decision(summary=summary),
                       answers=int(reported))
    reading = grammar.read_commands(intent.text)
    desk = actions.Desk(catalog, Actor(normalise_email(intent.sender), "digest reply"), now,
                        policy.domain, policy.staff_address)
    results = [_carry_out(session, desk, command) for command in reading.commands]
    done = sum(ok for ok, _ in results)
    summary = (f"staff reply: {done} command(s) done, {len(results) - done} not done, "
               f"{len(reading.unread)} line(s) not understood")
    if not done and _answered_today(session, intent.sender, now) >= policy.answers_per_day:
        # A reply that did nothing, again: an auto-acknowledgement without RFC 3834 headers
        # would answer each answer. Past the sender's daily ration, no more (a reply that
        # carries out a command is always answered: that cannot repeat by itself).
        summary += "; not answered: the sender's daily ration is used up"
        _record(session, arrival, intent, summary, previous)
        return Handled(arrival.message_id, "handled", intent, Decision(summary=summary))
    answer = Outgoing(
        key=outbox_key(Kind.STAFF_DONE, intent.sender, None, 0, arrival.message_id),
        kind=Kind.STAFF_DONE, recipient=intent.sender, language="en",
        in_reply_to=arrival.message_id,
        context={"results": [{"ok": ok, "lines": lines} for ok, lines in results],
                 "unread": list(reading.unread), "subject": intent.subject,
                 "reply_to": _reply_to(arrival.raw, policy)})
    store.enqueue(session, [answer], now=now, domain=policy.domain)
    _record(session, arrival, intent, summary, previous)
    return Handled(arrival.message_id, "handled", intent, Decision(summary=summary), answers=1)


def _answered_today(session: Session, sender: str, now: datetime) -> int:
    """How many replies of this sender to a digest were answered in the last day."""
    Out = store.OutboxRow
    return session.scalar(select(func.count(Out.id)).where(
        Out.kind == str(Kind.STAFF_DONE), func.lower(Out.recipient) == sender,
        Out.created_at >= now - timedelta(days=1))) or 0


def _carry_out(session: Session, desk: actions.Desk,
               command: grammar.Command) -> tuple[bool, list[str]]:
    """One command in a savepoint: done (with what changed), or not (with why)."""
    act = {"approve": actions.approve, "reject": actions.reject, "cancel": actions.cancel}
    try:
        with session.begin_nested():
            done = act[command.verb](session, desk, list(command.refs), command.reason)
    except UsageError as exc:
        return False, [f"{command.text}: not done: {exc}"]
    return True, [f"{command.text}: done"] + [d.line for d in done]


def _reply_to(raw: bytes, policy: Policy) -> str:
    """The digest address the reply came to: the answer keeps it, so staff can go on."""
    found = tokens.digest_address(recipients(raw), policy.inbox_address)
    if found is None:
        return ""
    return tokens.reply_address(policy.inbox_address, policy.digest_secret, found.digest_id)


def _report_refusal(session: Session, arrival: Arrival, intent: Intent, policy: Policy,
                    why: str) -> bool:
    """Tell staff (never the sender, who may be forged) that a reply was refused."""
    since = arrival.now - timedelta(days=1)
    reported = session.scalar(select(func.count(store.OutboxRow.id)).where(
        store.OutboxRow.kind == str(Kind.STAFF_REFUSED),
        store.OutboxRow.created_at >= since)) or 0
    if reported >= REPORTS_PER_DAY:
        return False
    out = Outgoing(
        key=outbox_key(Kind.STAFF_REFUSED, policy.staff_address, None, 0, arrival.message_id),
        kind=Kind.STAFF_REFUSED, recipient=policy.staff_address, language="en",
        context={"reason": why, "sender": intent.sender, "subject": intent.subject,
                 "text": intent.text[:2000],
                 "sent_to": ", ".join(recipients(arrival.raw))[:300]})
    store.enqueue(session, [out], now=arrival.now, domain=policy.domain)
    return True


def _record(session: Session, arrival: Arrival, intent: Intent, summary: str,
            previous: Row[Any] | None) -> None:
    store.record_inbound(session, message_id=arrival.message_id, outcome="handled",
                         now=arrival.now, sender=intent.sender, intent="staff_reply",
                         reason=summary, row=previous, **arrival.where)
