"""The daily digest to staff, and what waits for them (``mailer review``).

Once a day, at ``staff.digest_hour`` in ``staff.time_zone``, staff get one message: the new
registrations per event and country since the last digest, what waits for a decision (each
with its REF), questions forwarded, replies the mailer could not place, failed deliveries
with the server's words, quarantined mail, and what will be sent in the next 48 hours. A day
with nothing new and nothing waiting gets no digest. Its reply address carries a token
(``tokens``) so staff can act by replying (``replies``).

``gather`` reads the store; ``due_day`` and ``worth_sending`` are pure; ``Digests.tick`` is
called at every pass of the daemon and of ``mailer once`` (one indexed query once the day's
digest is made; none after that in the same process).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy import func, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from mailer import store
from mailer.config import Settings
from mailer.countries import country_name
from mailer.domain import UNREAD_FORWARDED, Kind, Outgoing, Status, outbox_key
from mailer.planner import Contact
from mailer.schedule import Catalog
from mailer.staff import tokens
from mailer.staff.refs import message_ref, registration_ref
from mailer.sync import uninvited

log = structlog.get_logger(__name__)

COMING_HOURS = 48
_CHUNK = 1000           # registrations planned at once for "the next 48 hours"
SUPPRESSED = "recipient suppressed"     # outbox.drain's words for an address that bounced
# Intents that need an event: such a reply that found none could not be placed.
_PLACED_ONLY = ("registration", "cancellation", "substitution", "certificate_request",
                "calendar_reply")


@dataclass
class Facts:
    """What a digest (or ``mailer review``) reports, as plain JSON-ready values."""

    since: str
    until: str
    new: list[dict[str, Any]] = field(default_factory=list)
    waiting: list[dict[str, Any]] = field(default_factory=list)
    too_late: list[dict[str, Any]] = field(default_factory=list)
    questions: list[dict[str, Any]] = field(default_factory=list)
    unplaced: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    quarantined: list[dict[str, Any]] = field(default_factory=list)
    coming: list[dict[str, Any]] = field(default_factory=list)
    # Registrations kept from countries their event no longer invites (listed while they
    # last; not by themselves a reason to send a digest).
    uninvited: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def due_day(now: datetime, hour: int, zone: ZoneInfo) -> str | None:
    """The staff's local date if the digest hour has come on it at ``now``, else None."""
    local = now.astimezone(zone)
    return local.date().isoformat() if local.hour >= hour else None


def worth_sending(facts: Facts) -> bool:
    """Something new happened, or something waits for staff: a day with neither gets none."""
    return bool(facts.new or facts.waiting or facts.too_late or facts.questions
                or facts.unplaced or facts.failed or facts.quarantined)


# --- reading the store -------------------------------------------------------------------

def gather(session: Session, catalog: Catalog, since: datetime, now: datetime,
           contacts: Sequence[Contact] | None = None, *, after: bool = False,
           reported: Collection[int] = ()) -> Facts:
    """Everything a digest covering ``since`` to ``now`` reports (``contacts`` given: also
    what will be sent in the next 48 hours).

    ``after``: what was recorded at ``since`` itself is left out. A digest is made once the
    replies of its pass are handled, so all that the pass which made the previous digest
    recorded at that moment (the whole pass, when ``--now`` fixes the clock) was in it.
    ``reported``: failed messages the previous digest listed (a failure has no moment of its
    own: it is found by when the message was due, which may be that same moment).
    """
    facts = Facts(since=since.isoformat(timespec="minutes"),
                  until=now.isoformat(timespec="minutes"))
    facts.new = new_registrations(session, since, after)
    facts.waiting, facts.too_late = in_review(session, catalog, since, now, after)
    facts.questions = questions(session, since, after)
    facts.unplaced = unplaced(session, since, after)
    facts.failed = [f for f in failed(session, since) if f["id"] not in reported]
    facts.quarantined = quarantined(session, since, after)
    facts.uninvited = [{"event": u.event_id, "country": u.country,
                        "confirmed": len(u.confirmed), "waiting": len(u.waiting),
                        "refs": " ".join(u.confirmed + u.waiting)}
                       for u in uninvited(session, catalog)]
    if contacts is not None:
        facts.coming = coming(session, catalog, contacts, now)
    return facts


def _from(column: Any, since: datetime, after: bool) -> Any:
    """The SQL condition "``column`` is ``since`` or later" (``after``: later only)."""
    return column > since if after else column >= since


def new_registrations(session: Session, since: datetime, after: bool = False
                      ) -> list[dict[str, Any]]:
    """Registrations made since ``since``, counted per event, country and status."""
    Reg = store.Registration
    counts: Counter[tuple[str, str, str]] = Counter()
    for event_id, country, status, count in session.execute(
            select(Reg.event_id, Reg.country, Reg.status, func.count(Reg.id))
            .where(_from(Reg.created_at, since, after))
            .group_by(Reg.event_id, Reg.country, Reg.status)):
        counts[(event_id, country or "", status)] += count
    return [{"event": e, "country": c, "country_name": country_name(c, "en") if c else "",
             "status": s, "count": n} for (e, c, s), n in sorted(counts.items())]


def in_review(session: Session, catalog: Catalog, since: datetime, now: datetime,
              after: bool = False) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Registrations in review, oldest first, with why they wait: those staff can still
    decide, and those whose event started since ``since`` (too late: ``approve`` refuses
    them), each said once. Those of a cancelled event are in neither: nothing can be
    decided, and the participant was told the event is cancelled."""
    Reg = store.Registration
    waiting, too_late = [], []
    for r in session.scalars(select(Reg).where(Reg.status == str(Status.REVIEW))
                             .order_by(Reg.created_at, Reg.id)):
        event = catalog.events.get(r.event_id)
        late = event is not None and now >= event.start
        if event is None:
            why = "its event is no longer in the schedules"
        elif event.cancelled or (late and (event.start <= since if after
                                           else event.start < since)):
            continue
        elif late:
            why = f"the event started at {event.start:%Y-%m-%d %H:%M} UTC: too late to decide"
        elif r.country not in event.countries:
            name = country_name(r.country, "en") if r.country else "an unknown country"
            why = f"{name} is not invited to this event"
        else:
            why = "waits for a decision"
        (too_late if late else waiting).append({
            "ref": registration_ref(r.id), "event": r.event_id, "country": r.country or "",
            "name": r.name, "email": r.email, "organisation": r.organisation,
            "position": r.position, "since": r.updated_at.isoformat(timespec="minutes"),
            "why": why})
    return waiting, too_late


def questions(session: Session, since: datetime, after: bool = False
              ) -> list[dict[str, Any]]:
    """Questions forwarded to staff since ``since``, and those held back because their
    sender's daily ration was used up (staff see them here, not in their inbox)."""
    Out, In = store.OutboxRow, store.Inbound
    rows = session.scalars(select(Out).where(Out.kind == str(Kind.STAFF_QUESTION),
                                             _from(Out.created_at, since, after)).order_by(Out.id))
    out = [{"at": r.created_at.isoformat(timespec="minutes"), "event": r.event_id or "",
            "sender": str((r.context or {}).get("sender", "")),
            "subject": str((r.context or {}).get("subject", ""))[:200], "status": r.status}
           for r in rows]
    held = session.scalars(select(In).where(
        In.intent == "question", _from(In.handled_at, since, after),
        In.reason.contains("not forwarded")).order_by(In.id))
    out += [{"at": r.handled_at.isoformat(timespec="minutes"), "event": r.event_id or "",
             "sender": r.sender, "subject": f"(not forwarded: {message_ref(r.id)}, the "
                                           "sender's daily ration was used up)",
             "status": "held"} for r in held]
    return out


def unplaced(session: Session, since: datetime, after: bool = False) -> list[dict[str, Any]]:
    """Replies handled since ``since`` that the mailer could not read or tie to an event."""
    In = store.Inbound
    # An unreadable reply from a registered participant went to staff as a question is:
    # listed with the questions, not here (unless their daily ration held it back).
    forwarded = In.reason.contains(UNREAD_FORWARDED) & ~In.reason.contains("not forwarded")
    rows = session.scalars(select(In).where(
        In.outcome == "handled", _from(In.handled_at, since, after), ~forwarded,
        or_(In.intent == "unknown", (In.event_id.is_(None) & In.intent.in_(_PLACED_ONLY))))
        .order_by(In.id))
    return [{"ref": message_ref(r.id), "at": r.handled_at.isoformat(timespec="minutes"),
             "sender": r.sender, "intent": r.intent, "why": r.reason[:300]} for r in rows]


def failed(session: Session, since: datetime) -> list[dict[str, Any]]:
    """Messages that failed for good since ``since``, with the server's words.

    A row has no time of failure; a message is tried when due (``next_attempt_at``), so its
    last try, the one that failed, came at or just after that moment. Messages not even
    tried because their address bounced before are left out: that bounce was the news.
    """
    Out = store.OutboxRow
    rows = session.scalars(select(Out).where(
        Out.status == "failed", Out.next_attempt_at >= since,
        ~Out.last_error.startswith(SUPPRESSED)).order_by(Out.id))
    return [{"id": r.id, "to": r.recipient, "kind": r.kind, "event": r.event_id or "",
             "error": r.last_error[:300], "attempts": r.attempts} for r in rows]


def quarantined(session: Session, since: datetime, after: bool = False
                ) -> list[dict[str, Any]]:
    """Mail set aside since ``since``, with the reason."""
    In = store.Inbound
    rows = session.scalars(select(In).where(In.outcome == "quarantined",
                                            _from(In.handled_at, since, after)).order_by(In.id))
    return [{"ref": message_ref(r.id), "at": r.handled_at.isoformat(timespec="minutes"),
             "sender": r.sender, "why": r.reason[:300]} for r in rows]


def coming(session: Session, catalog: Catalog, contacts: Sequence[Contact], now: datetime,
           hours: int = COMING_HOURS) -> list[dict[str, Any]]:
    """What will be sent in the next ``hours`` hours, per event, kind and moment, and the
    events that start meanwhile.

    Planned one event and ``_CHUNK`` registrations at a time, keeping only counts: each
    person's messages depend on that person alone (the focal points' invitations are
    planned with the first chunk), so the digest never holds a whole event's plan. In the
    10,000-reminder burst the digest added 30 MB to the pass's traced peak planned all at
    once, 13 MB by event, 5 MB by chunk (the event's registrations and outbox keys).
    """
    from mailer.planner import plan
    from mailer.sync import registrants, versions

    until = now + timedelta(hours=hours)
    known = versions(session)
    counts: Counter[tuple[str, str, str]] = Counter()
    for event in catalog.events.values():
        one = Catalog(series=catalog.series, events={event.id: event}, groups=catalog.groups)
        people = registrants(session, one)
        done = store.outbox_keys(session, [event.id])
        for first in range(0, max(len(people), 1), _CHUNK):
            found = plan(one, people[first:first + _CHUNK], known, done,
                         contacts if first == 0 else (), now, keep={"due", "scheduled"})
            counts.update((p.due_at.isoformat(timespec="minutes"), event.id,
                           str(p.out.kind)) for p in found.items
                          if p.state in ("due", "scheduled") and p.due_at < until)
    out = [{"at": at, "event": event, "what": kind, "count": n}
           for (at, event, kind), n in counts.items()]
    out += [{"at": e.start.isoformat(timespec="minutes"), "event": e.id, "what": "starts",
             "count": 0}
            for e in catalog.events.values() if now <= e.start < until and not e.cancelled]
    return sorted(out, key=lambda c: (c["at"], c["event"], c["what"]))


# --- making the digest -------------------------------------------------------------------

def _first_activity(session: Session, now: datetime) -> datetime:
    """Where the first digest starts: the first thing the store recorded (or ``now``)."""
    firsts = [session.scalar(select(func.min(column))) for column in (
        store.Registration.created_at, store.Inbound.handled_at, store.OutboxRow.created_at)]
    return min((f for f in firsts if f is not None), default=now)


def _reported_failures(session: Session) -> set[int]:
    """The failed messages the last digest sent listed (its outbox row keeps what it said)."""
    Out = store.OutboxRow
    context = session.scalar(select(Out.context).where(Out.kind == str(Kind.STAFF_DIGEST))
                             .order_by(Out.id.desc()).limit(1))
    listed = ((context or {}).get("digest") or {}).get("failed") or []
    return {int(f["id"]) for f in listed if isinstance(f, dict) and "id" in f}


class Digests:
    """Makes the day's digest at the first pass after the digest hour, once for all processes
    (one row per day, inserted or skipped atomically)."""

    def __init__(self, settings: Settings, domain: str) -> None:
        self.settings = settings
        self.domain = domain
        self.zone = ZoneInfo(settings.staff.time_zone)
        self._done_day: str | None = None       # this process saw that day's digest made

    def tick(self, st: store.Store, catalog: Catalog, contacts: Sequence[Contact],
             now: datetime) -> int | None:
        """Make the digest if it is due; return its id when one was sent. Never raises: a
        digest that cannot be made is logged and tried again at the next pass."""
        if not self.settings.staff.digest:
            return None
        day = due_day(now, self.settings.staff.digest_hour, self.zone)
        if day is None or day == self._done_day:
            return None
        try:
            with st.transaction() as session:
                made = make(session, catalog, contacts, self.settings, self.domain, now, day)
        except Exception as exc:  # noqa: BLE001 - the digest must never stop a pass
            log.error("digest failed; tried again at the next pass", error=str(exc))
            return None
        self._done_day = day
        return made


def make(session: Session, catalog: Catalog, contacts: Sequence[Contact], settings: Settings,
         domain: str, now: datetime, day: str) -> int | None:
    """Make the digest of ``day`` unless one exists; return its id if it is to be sent."""
    Digest = store.DigestRow
    if session.scalar(select(Digest.id).where(Digest.day == day)) is not None:
        return None
    previous = session.scalar(select(func.max(Digest.made_at)))
    since = previous or _first_activity(session, now)
    facts = gather(session, catalog, since, now, contacts, after=previous is not None,
                   reported=_reported_failures(session))
    send = worth_sending(facts)
    items = sum(len(v) for k, v in facts.as_dict().items() if isinstance(v, list)
                and k != "coming")
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    digest_id = session.execute(
        insert(Digest).values(day=day, made_at=now, since=since, sent=send, items=items)
        .on_conflict_do_nothing(index_elements=["day"]).returning(Digest.id)).scalar()
    if digest_id is None or not send:       # another process made it, or nothing to say
        if digest_id is not None:
            log.info("no digest today: nothing happened and nothing waits", day=day)
        return None
    staff = settings.organiser.staff_address
    secret = settings.staff.secret.get_secret_value() if settings.staff.secret else ""
    reply_to = tokens.reply_address(settings.organiser.address, secret, digest_id) \
        if secret else ""
    out = Outgoing(key=outbox_key(Kind.STAFF_DIGEST, staff, None, 0, f"digest-{day}"),
                   kind=Kind.STAFF_DIGEST, recipient=staff, language="en",
                   context={"digest": {**facts.as_dict(), "day": day, "id": digest_id},
                            "reply_to": reply_to})
    store.enqueue(session, [out], now=now, domain=domain)
    log.info("digest queued", day=day, items=items, to=staff)
    return digest_id
