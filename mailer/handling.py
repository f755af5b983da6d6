"""Handling inbound messages: understand each, decide, and store the outcome in one transaction.

The effects of a message (registrations, the answers it causes, and the record that it was
handled) commit together, so a crash at any point leaves either nothing (the message is read
again after the restart) or everything (the message is known as handled and skipped). The
messages of a fetched batch share a transaction in small groups (``handle_group``), each
decided as if it came alone.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from email.utils import parsedate_tz
from typing import Any

import structlog
from sqlalchemy import Row, Select, and_, bindparam, insert, or_, select
from sqlalchemy.orm import Session

from mailer import claims, store
from mailer.domain import (
    ANSWER_KINDS,
    Intent,
    IntentKind,
    Kind,
    Outgoing,
    Status,
    normalise_email,
)
from mailer.errors import LeaseLost
from mailer.inbox import message_id_of
from mailer.rules import Decision, Registered, decide
from mailer.schedule import Catalog, Event
from mailer.staff import replies_check as staff_replies
from mailer.staff.refs import with_refs
from mailer.understand import read
from mailer.understand.message import digest_id

log = structlog.get_logger(__name__)

# Acknowledgements are not rationed: they are bounded by the number of events, and a
# participant must get every one of them. Everything else answered automatically is.
_RATIONED = frozenset(ANSWER_KINDS - {Kind.ACKNOWLEDGEMENT})
# Forwarded questions are counted too, against their sender (``_ration``).
_COUNTED = _RATIONED | {Kind.STAFF_QUESTION}
MAX_TRIES = 3


@dataclass(frozen=True)
class Handled:
    """What became of one inbound message."""

    message_id: str
    outcome: str                   # handled | duplicate | quarantined | failed (tried again)
    intent: Intent | None = None
    decision: Decision | None = None
    reason: str = ""
    answers: int = 0               # automatic answers queued (after rationing)
    summary: str = ""              # what was done, people named by REF (logged and kept)


@dataclass(frozen=True)
class Policy:
    """The settings handling needs (kept small so tests can write it as a literal)."""

    inbox_address: str
    staff_address: str
    domain: str
    answers_per_day: int = 5
    max_bytes: int = 25_000_000
    staff_addresses: frozenset[str] = frozenset()   # who may act by replying to the digest
    digest_secret: str = ""                          # signs the digests' reply addresses
    reply_days: int = 14                             # how long a digest can be acted on
    keep_raw_bytes: int = 2_000_000                  # of a quarantined message, for staff
    recent_event_days: int = 60                      # ended events certificate requests and
                                                     # calendar answers may name
    # The instance whose leader lease every decision is made under (``claims.hold``), when
    # several processes share the store; None decides without one (tests, tools).
    leader: str | None = None


def fallback_message_id(raw: bytes) -> str:
    """An id for mail without a Message-ID: the same bytes always give the same id (the
    one understanding gives the intent, ``message.digest_id``)."""
    return digest_id(raw)


MAX_ID = 998            # the store's Message-ID columns (RFC 5322's longest line)
MAX_ADDRESS = 254       # RFC 5321's longest path (256), without its angle brackets


def message_key(raw: bytes, message_id: str | None, folder: str = "", uidvalidity: int = 0,
                uid: int = 0) -> str:
    """The id a message is handled under: its Message-ID, else one made from its bytes.

    A Message-ID the store could not keep as it is (longer than its 998 characters, with a
    control character, or with what UTF-8 cannot encode) is replaced by a digest of it: the
    same id always gives the same key, and two ids never share one (a cut could). On
    PostgreSQL such an id failed the claim of its whole batch, at every pass.
    """
    if message_id is None and raw:
        message_id = message_id_of(raw)
    key = message_id or fallback_message_id(raw or f"{folder}/{uidvalidity}/{uid}".encode())
    if len(key) <= MAX_ID and key.isprintable() and store.storable(key) == key:
        return key
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
    return f"<{digest}@unstorable-message-id>"


def after_crash(st: store.Store, catalog: Catalog, arrival: Arrival,
                policy: Policy) -> Handled | None:
    """Count a try of a message a pass died handling; quarantine it after ``MAX_TRIES``.

    Committed before the message is handled again, so a message that kills the process
    every time is still counted; None means "handle it again". A bounce set aside still
    suppresses the addresses it names (read once the quarantine is committed, so even a
    message that kills its reader is set aside for good).
    """
    message_id, now = arrival.message_id, arrival.now
    with st.transaction() as session:
        tries = store.count_crash(session, message_id)
        if tries < MAX_TRIES:
            return None
        reason = f"the mailer stopped {tries} times while handling it"
        store.record_inbound(session, message_id=message_id, outcome="quarantined", now=now,
                             reason=reason, **arrival.where)
        keep_raw(session, message_id, arrival.raw, policy.keep_raw_bytes, now)
    log.error("message quarantined", message_id=message_id, reason=reason)
    understood = understood_of(catalog, arrival, policy)
    intent = understood if isinstance(understood, Intent) else None
    _suppress_bounced(st, intent, now)
    return Handled(message_id, "quarantined", intent, reason=reason)


@dataclass(frozen=True)
class Arrival:
    """One fetched message to handle: its bytes, the moment it is handled, where it is kept."""

    raw: bytes
    now: datetime
    message_id: str                # the id it is handled under (``message_key``)
    folder: str = ""
    uidvalidity: int = 0
    uid: int = 0
    size: int | None = None        # the size the server gave (None: len(raw))
    understood: Intent | str | None = None  # what ``read`` made of it already (a worker)

    @property
    def where(self) -> dict[str, Any]:
        return {"folder": self.folder, "uidvalidity": self.uidvalidity, "uid": self.uid}


def handle(st: store.Store, catalog: Catalog, raw: bytes, *, now: datetime, policy: Policy,
           folder: str = "", uidvalidity: int = 0, uid: int = 0, size: int | None = None,
           message_id: str | None = None, understood: Intent | str | None = None) -> Handled:
    """Handle one raw message end to end; never raises for bad mail (it is quarantined).

    ``message_id`` is the Message-ID the inbox read from the message's header (``Fetched.
    message_id``, also for an oversize body it did not download); without it, it is read here.
    ``understood`` is what ``read`` made of the message already (in a worker process).
    """
    return handle_one(st, catalog, Arrival(
        raw, now, message_key(raw, message_id, folder, uidvalidity, uid), folder, uidvalidity,
        uid, size, understood), policy)


def handle_one(st: store.Store, catalog: Catalog, arrival: Arrival, policy: Policy) -> Handled:
    """Handle one message in its own transaction; an error is recorded as a failed try."""
    understood = understood_of(catalog, arrival, policy)
    try:
        with st.transaction() as session:
            _fence(session, policy)
            handled = _settle(session, catalog, arrival, understood, policy)
    except LeaseLost:
        raise                   # not the message's fault: the new leader handles it
    except Exception as exc:  # noqa: BLE001 - one bad message must never stop the loop
        return _failed(st, arrival, understood, exc, policy)
    _report(handled)
    return handled


def handle_group(st: store.Store, catalog: Catalog, arrivals: Sequence[Arrival],
                 policy: Policy) -> list[Handled]:
    """Handle messages in order in ONE transaction; on any error, one transaction each.

    Each message is decided exactly as alone (the session sees what the ones before it
    wrote), but a group of them pays for one BEGIN IMMEDIATE and one COMMIT (an fsync)
    instead of one each: in a wave of 5,000 replies the daemon's process used 14.4 s of CPU
    instead of 25.9 s. The group holds the write lock while it runs, so callers keep groups
    small (``GROUP``). When a message raises, the whole group is rolled back and each is
    handled again in its own transaction, so the failure is recorded against that message
    alone and nothing of the others is lost or doubled. A crash rolls the group back too;
    the claims the pass made (``store.claim``) count that try against each message of it,
    and ``after_crash`` hands such messages to ``handle_one``, alone, so a message that
    kills the process is set aside without taking its group with it.
    """
    understood = [understood_of(catalog, arrival, policy) for arrival in arrivals]
    try:
        with st.transaction() as session:
            _fence(session, policy)
            done = [_settle(session, catalog, arrival, read_as, policy)
                    for arrival, read_as in zip(arrivals, understood, strict=True)]
    except LeaseLost:
        raise
    except Exception:  # noqa: BLE001 - handled again one by one, where it is recorded
        log.warning("group of messages rolled back: handling them one at a time",
                    messages=len(arrivals))
        return [handle_one(st, catalog, replace(arrival, understood=read_as), policy)
                for arrival, read_as in zip(arrivals, understood, strict=True)]
    for handled in done:
        _report(handled)
    return done


# How many messages of a fetched batch ``handle_group`` takes at once: enough to share the
# COMMIT's cost (four already save most of it), few enough that the write lock is held for
# tens of milliseconds, not longer (the sender records what it sent meanwhile).
GROUP = 16


def groups(keys: Sequence[str], alone: Collection[str], size: int
           ) -> Iterator[tuple[int, int]]:
    """Split a batch into runs ``(first, end)`` of at most ``size`` messages, in order; a
    message whose key is in ``alone`` (a pass died handling it) is a run of its own."""
    first = 0
    while first < len(keys):
        end = first + 1
        if keys[first] not in alone:
            while end < min(first + size, len(keys)) and keys[end] not in alone:
                end += 1
        yield first, end
        first = end


def _fence(session: Session, policy: Policy) -> None:
    """Decide only as the leader (raise LeaseLost otherwise), and keep the lease from
    passing to another instance before this transaction ends: replies are decided in their
    arrival order by one process at a time, whatever the number of processes."""
    if policy.leader is not None:
        claims.hold(session, claims.LEADER, policy.leader)


def understood_of(catalog: Catalog, arrival: Arrival, policy: Policy) -> Intent | str:
    """What the message asks for (``understand.read`` with the policy's limits), unless a
    worker read it already."""
    if arrival.understood is not None:
        return arrival.understood
    return read(arrival.raw, catalog, now=arrival.now, inbox_address=policy.inbox_address,
                max_bytes=policy.max_bytes, size=arrival.size, message_id=arrival.message_id,
                recent=timedelta(days=policy.recent_event_days))


def _failed(st: store.Store, arrival: Arrival, understood: Intent | str,
            exc: Exception, policy: Policy) -> Handled:
    """Record a failed try of a message; quarantine it after ``MAX_TRIES``."""
    # Like Mailman's switchboard: a message that keeps failing is set aside after a few
    # tries instead of being retried forever.
    message_id, now, where = arrival.message_id, arrival.now, arrival.where
    intent = understood if isinstance(understood, Intent) else None
    reason = f"{type(exc).__name__}: {exc}"[:500]
    with st.transaction() as session:
        tries = store.record_inbound(session, message_id=message_id, outcome="failed",
                                     now=now, reason=reason, **where)
        if tries >= MAX_TRIES:
            store.record_inbound(session, message_id=message_id, outcome="quarantined",
                                 now=now, reason=f"failed {tries} times: {reason}", **where)
            keep_raw(session, message_id, arrival.raw, policy.keep_raw_bytes, now)
    log.error("message failed", message_id=message_id, tries=tries, exc_info=exc)
    if tries >= MAX_TRIES:
        _suppress_bounced(st, intent, now)
        return Handled(message_id, "quarantined", intent, reason=reason)
    return Handled(message_id, "failed", intent, reason=reason)


def _suppress_bounced(st: store.Store, intent: Intent | None, now: datetime) -> None:
    """Suppress the addresses a quarantined bounce names (a permanent one), as handling it
    would have: nothing more goes to an address the mail system says is dead.

    In a transaction of its own, after the quarantine's: a failure here (logged) must not
    undo the quarantine.
    """
    if intent is None or intent.kind is not IntentKind.BOUNCE or intent.bounce_temporary:
        return
    try:
        with st.transaction() as session:
            for email in intent.bounced:
                store.suppress(session, email, f"bounce {intent.message_id} (quarantined)", now)
    except Exception as exc:  # noqa: BLE001 - the quarantine stands; say what was not done
        log.error("a quarantined bounce could not suppress its addresses",
                  message_id=intent.message_id, addresses=list(intent.bounced), error=str(exc))
        return
    if intent.bounced:
        log.info("a quarantined bounce suppressed its addresses",
                 message_id=intent.message_id, addresses=list(intent.bounced))


def _report(handled: Handled) -> None:
    """Log what became of a message, once its transaction is committed."""
    if handled.outcome == "quarantined":
        log.warning("message quarantined", message_id=handled.message_id,
                    reason=handled.reason)
    elif handled.outcome == "handled" and handled.intent and handled.decision:
        # Participants by REF, never by address (the summary was written with REFs).
        log.info("message handled", message_id=handled.message_id,
                 intent=str(handled.intent.kind), event_id=handled.intent.event_id,
                 outcome=handled.summary or handled.decision.summary, answers=handled.answers)


@dataclass(frozen=True)
class Foreseen:
    """What handling one message decides, before anything of it is written (``foresee``).

    ``outcome``: ``duplicate`` (handled before), ``quarantined`` (``reason`` says why),
    ``staff`` (a reply to the staff's digest: their commands), or ``decided`` (the rules'
    ``decision``, and the ``answers`` that survive the daily ration and suppressions).
    """

    outcome: str
    previous: Any = None                        # the message's inbound row, if any
    reason: str = ""
    intent: Intent | None = None
    event: Event | None = None
    snapshot: tuple[Registered, ...] = ()
    sequence: int = 0
    decision: Decision | None = None
    answers: tuple[Outgoing, ...] = ()


def foresee(session: Session, catalog: Catalog, arrival: Arrival, understood: Intent | str,
            policy: Policy, *, lock: bool = True) -> Foreseen:
    """Decide one message from what the store holds, writing nothing.

    The one path from an understood message to a decision: the daemon writes what it
    returns (``_settle``); ``mailer parse`` prints it, in a transaction it rolls back
    (``lock=False``: it changes nothing, so it holds no event's lock).
    """
    message_id, now = arrival.message_id, arrival.now
    # Duplicates are recognised inside the deciding transaction (the only place where the
    # answer cannot change under us); reading one again first costs less than asking twice.
    previous = store.inbound_of(session, message_id)
    if store.handled_before(previous):
        return Foreseen("duplicate", previous)
    if isinstance(understood, Intent):
        understood = unfit_address(understood) or understood
    if isinstance(understood, str):
        return Foreseen("quarantined", previous, reason=understood)
    if staff_replies.concerns(arrival.raw, understood, policy):
        # A reply to the digest (or what claims to be one): staff commands, not a participant.
        return Foreseen("staff", previous, intent=understood)
    intent = _infer_event(session, catalog, understood, now)
    event = catalog.events.get(intent.event_id) if intent.event_id else None
    if event is not None and lock:
        store.lock_event(session, event.id)
    snapshot = _snapshot(session, event.id, intent) if event else []
    sequence = store.event_sequence(session, event.id) if event else 0
    decision = decide(intent, event, snapshot, sequence=sequence, now=now,
                      staff_address=policy.staff_address)
    answers = _ration(session, decision.answers, intent, now, policy)
    return Foreseen("decided", previous, intent=intent, event=event, snapshot=tuple(snapshot),
                    sequence=sequence, decision=decision, answers=tuple(answers))


def _settle(session: Session, catalog: Catalog, arrival: Arrival, understood: Intent | str,
            policy: Policy) -> Handled:
    """Decide one message and store the outcome in the caller's transaction."""
    message_id, now, where = arrival.message_id, arrival.now, arrival.where
    seen = foresee(session, catalog, arrival, understood, policy)
    previous = seen.previous
    if seen.outcome == "duplicate":
        return Handled(message_id, "duplicate")
    if seen.outcome == "quarantined":
        store.record_inbound(session, message_id=message_id, outcome="quarantined", now=now,
                             reason=seen.reason, row=previous, **where)
        keep_raw(session, message_id, arrival.raw, policy.keep_raw_bytes, now)
        return Handled(message_id, "quarantined", reason=seen.reason)
    assert seen.intent is not None
    if seen.outcome == "staff":
        from mailer.staff.replies import settle_staff_reply

        return settle_staff_reply(session, catalog, arrival, seen.intent, policy, previous)
    assert seen.decision is not None
    intent, event, decision, sequence = seen.intent, seen.event, seen.decision, seen.sequence
    snapshot, answers = seen.snapshot, list(seen.answers)
    utc_offset = date_offset(arrival.raw)
    refs = {r.email: r.id for r in snapshot}
    refs.update(_apply(session, decision, intent, event.series.id if event else "", sequence,
                       now, utc_offset))
    answers = _with_zones(session, answers, intent, event.id if event else None, utc_offset,
                          now)
    store.enqueue(session, answers, now=now, domain=policy.domain)
    # What is kept and logged names people by REF (R12), not by address.
    summary = with_refs(decision.summary, refs)
    if len(answers) < len(decision.answers) and any(
            out.kind is Kind.STAFF_QUESTION for out in decision.answers) and not any(
            out.kind is Kind.STAFF_QUESTION for out in answers):
        summary += "; not forwarded: the sender's daily ration is used up"
    store.record_inbound(session, message_id=message_id, outcome="handled", now=now,
                         sender=intent.sender, intent=str(intent.kind),
                         event_id=intent.event_id, reason=summary, row=previous,
                         **where)
    return Handled(message_id, "handled", intent, decision, answers=len(answers),
                   summary=summary)


def _with_zones(session: Session, answers: list[Outgoing], intent: Intent,
                event_id: str | None, utc_offset: int | None, now: datetime
                ) -> list[Outgoing]:
    """Each answer with the zone its recipient writes from, where it is known: the sender's
    own from this reply's Date header; someone else's (a colleague registered by a focal
    point, a participant promoted by another's cancellation) from the reply that registered
    them (the sender's too when this reply has no usable Date), never the sender's (a
    mission in New York registering officials in Brasília)."""
    sender = normalise_email(intent.sender)
    known: dict[str, tuple[int, datetime]] = {}
    if utc_offset is not None:
        known[sender] = (utc_offset, now)
    others = {normalise_email(out.recipient) for out in answers} - set(known)
    if event_id is not None and others:
        Reg = store.Registration
        known.update((email, (offset, at)) for email, offset, at in session.execute(
            select(Reg.email, Reg.utc_offset, Reg.created_at).where(
                Reg.event_id == event_id, Reg.email.in_(sorted(others)),
                Reg.utc_offset.is_not(None))))
    if not known:
        return answers
    zoned = []
    for out in answers:
        found = known.get(normalise_email(out.recipient))
        if found is not None:
            out = replace(out, context={**out.context, "utc_offset": found[0],
                                        "utc_offset_seen": found[1].isoformat()})
        zoned.append(out)
    return zoned


def unfit_address(intent: Intent) -> str | None:
    """Why a message to be answered cannot be acted on: it names an address no mail server
    takes (over 254 characters, or with bytes no encoding reads), which the store would have
    to alter (and an answer would then go to another address). None when all are fine."""
    if not intent.answerable:
        return None
    for address in (intent.sender, *(p.email for p in intent.participants)):
        if len(address) > MAX_ADDRESS:
            return f"an address longer than {MAX_ADDRESS} characters: {address[:40]}..."
        if store.storable(address) != address:
            return f"an address with bytes no encoding reads: {store.storable(address)[:80]}"
    return None


# Intents whose event the sender's registrations tell when the mail names none; of those,
# the ones that only concern sessions still to come.
_INFERRED = frozenset({IntentKind.CANCELLATION, IntentKind.SUBSTITUTION,
                       IntentKind.CERTIFICATE_REQUEST, IntentKind.CALENDAR_REPLY,
                       IntentKind.UNKNOWN})
_NOT_ENDED = frozenset({IntentKind.CANCELLATION, IntentKind.SUBSTITUTION, IntentKind.UNKNOWN})


def _infer_event(session: Session, catalog: Catalog, intent: Intent, now: datetime) -> Intent:
    """A cancellation, substitution, certificate request or calendar answer naming no event
    (or several): the sender's only registration among them. A reply the mailer cannot
    read, from someone registered: their next session (the rules hand it to staff, not the
    form)."""
    if intent.event_id or intent.kind not in _INFERRED:
        return intent
    wanted = ({Status.CONFIRMED} if intent.kind is IntentKind.CERTIFICATE_REQUEST
              else {Status.CONFIRMED, Status.WAITING, Status.REVIEW})
    mine = [r.event_id for r in session.scalars(
        select(store.Registration).where(store.Registration.email == intent.sender))
        if Status(r.status) in wanted and r.event_id in catalog.events
        and (intent.kind not in _NOT_ENDED or catalog.events[r.event_id].end > now)]
    if intent.candidates:
        narrowed = [e for e in mine if e in intent.candidates]
        mine = narrowed or mine
    if intent.kind is IntentKind.UNKNOWN and mine:
        # Which of their sessions matters little: staff read the reply and answer it.
        first = min(mine, key=lambda e: (catalog.events[e].start, e))
        return replace(intent, event_id=first, candidates=())
    if len(set(mine)) == 1:
        return replace(intent, event_id=mine[0], candidates=())
    if mine:
        return replace(intent, candidates=tuple(sorted(set(mine))))
    return intent


_DATE = re.compile(rb"^date:[ \t]*(.*(?:\r?\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE)


def date_offset(raw: bytes) -> int | None:
    """The UTC offset in minutes of a message's Date header ("-0700" -> -420), or None.

    Read from the header block alone; "-0000" (RFC 5322: the zone is not known) and a
    missing or unreadable Date give None.
    """
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        end = raw.find(b"\n\n")
    found = _DATE.search(raw[:end if end >= 0 else 65536])
    if found is None:
        return None
    parsed = parsedate_tz(found.group(1).decode("ascii", "replace"))
    if parsed is None or parsed[9] is None or b"-0000" in found.group(1):
        return None
    minutes = parsed[9] // 60
    return minutes if -14 * 60 <= minutes <= 14 * 60 else None


# Only these can free a seat, so only their decisions read a country's waiting list.
_FREEING = frozenset({IntentKind.CANCELLATION, IntentKind.SUBSTITUTION,
                      IntentKind.CALENDAR_REPLY})


def _snapshot_queries() -> dict[tuple[str, bool], Select[Any]]:
    """The snapshot's statements, built once (building one costs more than running it).

    Keyed by (what is read, whether the waiting list is needed): "named" the people a message
    names, "named+countries" those and the registrations of the countries it writes,
    "countries" the registrations of other countries only.
    """
    Reg = store.Registration
    # What the rules read of a registration: columns, not ORM objects, which cost more.
    columns = (Reg.id, Reg.email, Reg.country, Reg.status, Reg.created_at, Reg.name,
               Reg.language, Reg.certificate_requested, Reg.sequence_offset,
               Reg.organisation, Reg.position, Reg.registered_by)
    event = Reg.event_id == bindparam("event_id")
    named = Reg.email.in_(bindparam("emails", expanding=True))
    queries: dict[tuple[str, bool], Select[Any]] = {}
    for freeing in (False, True):
        of_countries = Reg.country.in_(bindparam("countries", expanding=True))
        if not freeing:
            of_countries = and_(of_countries, Reg.status == str(Status.CONFIRMED))
        queries["named", freeing] = select(*columns).where(event, named)
        queries["named+countries", freeing] = select(*columns).where(
            event, or_(named, of_countries))
        queries["countries", freeing] = select(*columns).where(event, of_countries)
    return queries


_SNAPSHOT = _snapshot_queries()


def _snapshot(session: Session, event_id: str, intent: Intent) -> list[Registered]:
    """The registrations the rules need for this message, not the whole event.

    The people it names (to spot repeats and find what to cancel) and, of their countries,
    the confirmed ones (seats taken) and, for a message that may free a seat, everyone (the
    waiting list). The rules read nothing else (``rules._register`` counts confirmed seats;
    only ``rules._cancel`` promotes), so the decision is the same as on the whole event, and
    what is read no longer grows with the event's size or its waiting lists.
    """
    emails = {intent.sender} | {p.email.lower() for p in intent.participants if p.email}
    written = {p.country for p in intent.participants if p.country}
    freeing = intent.kind in _FREEING
    # One query for the people named and the countries they wrote; a second one only when a
    # stored registration of theirs is in another country (a repeat correcting their country).
    rows: dict[int, Row[Any]] = {}
    their_countries: set[str] = set()
    params: dict[str, Any] = {"event_id": event_id, "emails": sorted(emails)}
    if written:
        params["countries"] = sorted(written)
    query = _SNAPSHOT["named+countries" if written else "named", freeing]
    for r in session.execute(query, params):
        rows[r.id] = r
        if r.email in emails and r.country:
            their_countries.add(r.country)
    # A person registered writing again may correct their country, freeing their seat:
    # that country's waiting list is read too (the first query read only the confirmed
    # of the countries written, unless the message itself may free a seat).
    others = their_countries - written if freeing else their_countries
    if others:
        rows.update((r.id, r) for r in session.execute(_SNAPSHOT["countries", True], {
            "event_id": event_id, "countries": sorted(others)}))
    ordered = sorted(rows.values(), key=lambda r: (r.created_at, r.id))
    return [Registered(id=r.id, email=r.email, country=r.country, status=Status(r.status),
                       created_at=r.created_at, name=r.name, language=r.language,
                       certificate_requested=r.certificate_requested,
                       sequence_offset=r.sequence_offset or 0,
                       organisation=r.organisation or "", position=r.position or "",
                       registered_by=r.registered_by or "")
            for r in ordered]


def _ration(session: Session, answers: tuple[Outgoing, ...], intent: Intent, now: datetime,
            policy: Policy) -> list[Outgoing]:
    """Drop answers to suppressed addresses, to ourselves, and past a sender's daily ration."""
    own = {normalise_email(policy.inbox_address)}
    since = now - timedelta(days=1)
    sender = normalise_email(intent.sender)
    # A question forwarded to staff counts against its sender's ration (staff are protected
    # from a flood as participants are from a loop): ``rationed`` is who it is counted for.
    def rationed(out: Outgoing) -> str:
        return sender if out.kind is Kind.STAFF_QUESTION else normalise_email(out.recipient)

    # Both facts for every recipient in one query up front (nothing here writes, so reading
    # them first changes no answer), instead of one or two queries per answer.
    suppressed, sent = store.answer_limits(
        session, {normalise_email(out.recipient) for out in answers
                  if out.kind in ANSWER_KINDS} - own,
        {rationed(out) for out in answers if out.kind in _COUNTED},
        _RATIONED, since)
    if any(out.kind is Kind.STAFF_QUESTION for out in answers):
        sent[sender] += store.questions_from(session, sender, since)
    kept: list[Outgoing] = []
    counted: dict[str, int] = {}
    for out in answers:
        to = normalise_email(out.recipient)
        if out.kind in ANSWER_KINDS and (to in own or to in suppressed):
            log.info("answer not sent", kind=str(out.kind), message_id=intent.message_id,
                     why="own or suppressed")
            continue
        if out.kind in _COUNTED:
            to = rationed(out)
            if to not in counted:
                counted[to] = sent[to]
            if counted[to] >= policy.answers_per_day:
                log.warning("daily ration of automatic answers reached",
                            kind=str(out.kind), message_id=intent.message_id)
                continue
            counted[to] += 1
        kept.append(out)
    return kept


_INSERT_REGISTRATION = insert(store.Registration.__table__).returning(
    store.Registration.__table__.c.id)


def _apply(session: Session, decision: Decision, intent: Intent, series_id: str,
           sequence: int, now: datetime, utc_offset: int | None = None) -> dict[str, int]:
    """Write a decision; return the registration id of every address it created or changed
    (what logs and stored summaries name people by)."""
    refs: dict[str, int] = {}
    for email in decision.suppress:
        store.suppress(session, email, f"bounce {intent.message_id}", now)
    if decision.event_id is None:
        return refs
    wanted = ({c.registration_id for c in decision.changed} | set(decision.certificate_for)
              | {n.revive_id for n in decision.created if n.revive_id is not None}
              | {u.registration_id for u in decision.updated})
    by_id = {r.id: r for r in session.scalars(select(store.Registration).where(
        store.Registration.id.in_(wanted)))} if wanted else {}
    for new in decision.created:
        p = new.participant
        confirmed = new.status is Status.CONFIRMED
        values = dict(name=p.name, country=p.country, organisation=p.organisation,
                      position=p.position, language=new.language, status=str(new.status),
                      certificate_requested=new.certificate, registered_by=intent.sender,
                      source_message_id=intent.message_id, updated_at=now,
                      confirmed_at=now if confirmed else None,
                      sequence_seen=sequence if confirmed else 0,
                      sequence_offset=new.sequence_offset,
                      # The Date header tells where the sender writes from, not where the
                      # colleagues they register are.
                      utc_offset=utc_offset if p.email == normalise_email(intent.sender)
                      else None)
        if new.revive_id is not None and new.revive_id in by_id:
            # Someone who cancelled and registers again queues anew: a fresh row (and id)
            # puts them behind everyone already waiting, even at the same instant.
            session.delete(by_id.pop(new.revive_id))
            session.flush()
        # A plain INSERT, not the ORM's unit of work: nothing reads the row back here.
        refs[p.email] = session.connection().execute(_INSERT_REGISTRATION, {
            "event_id": decision.event_id, "series_id": series_id, "email": p.email,
            "created_at": new.queued_at or now, **values}).scalar_one()
    for change in decision.changed:
        row = by_id[change.registration_id]
        refs[row.email] = row.id
        row.status = str(change.status)
        row.updated_at = now
        if change.sequence_offset is not None:
            row.sequence_offset = change.sequence_offset
        if change.status is Status.CONFIRMED:
            row.confirmed_at = now
            row.sequence_seen = sequence
    for reg_id in decision.certificate_for:
        by_id[reg_id].certificate_requested = True
        refs.setdefault(by_id[reg_id].email, reg_id)
    for update in decision.updated:
        row = by_id[update.registration_id]
        refs.setdefault(row.email, row.id)
        row.name, row.organisation, row.position = (update.name, update.organisation,
                                                    update.position)
        row.updated_at = now
    return refs


def keep_raw(session: Session, message_id: str, raw: bytes, limit: int,
             now: datetime) -> None:
    """Keep the first ``limit`` bytes of a quarantined message for staff (``mailer
    quarantine --show``); retention deletes them after ``retention.quarantine_days``."""
    if not raw or limit <= 0:
        return
    session.merge(store.QuarantinedMail(message_id=message_id, raw=bytes(raw[:limit]),
                                        size=len(raw), kept_at=now))


# Staff actions decide through the same rules and write their decisions exactly as replies do.
apply_decision = _apply
settle = _settle
