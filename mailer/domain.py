"""The value types that cross module boundaries: intents, participants, statuses, message kinds.

Plain frozen dataclasses and string enums, so pure functions can take and return them and
tests can write them as literals.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class IntentKind(StrEnum):
    """What an inbound message asks for (the ``intent`` of ``mailer parse --json``)."""

    REGISTRATION = "registration"
    CANCELLATION = "cancellation"
    # "I can no longer attend; please register my colleague ... in my place": the sender
    # withdraws and the participants written take their place (``rules._substitute``).
    SUBSTITUTION = "substitution"
    CERTIFICATE_REQUEST = "certificate_request"
    CALENDAR_REPLY = "calendar_reply"
    QUESTION = "question"
    THANKS = "thanks"           # only thanks or an acknowledgement: never answered
    AUTO_REPLY = "auto_reply"
    BOUNCE = "bounce"
    UNKNOWN = "unknown"


class Status(StrEnum):
    """Where a registration stands."""

    CONFIRMED = "confirmed"
    WAITING = "waiting"
    REVIEW = "review"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


class Kind(StrEnum):
    """The kinds of outgoing message; each participant-facing kind has a template per language."""

    INVITATION = "invitation"                  # the call for registration, to focal points
    ACKNOWLEDGEMENT = "acknowledgement"        # confirmed, with the calendar invitation
    WAITING_LIST = "waiting_list"              # country full
    PENDING_REVIEW = "pending_review"          # country not invited, staff will decide
    NOT_INVITED = "not_invited"                # country not invited, polite refusal
    ALREADY_REGISTERED = "already_registered"  # the same person registered again
    PROMOTION = "promotion"                    # moved from the waiting list to confirmed
    REMINDER = "reminder"
    PACK = "pack"                              # information pack: factsheet, bibliography, slides
    UPDATE = "update"                          # the event changed (time, link, title)
    CANCELLATION = "cancellation"              # the organisers cancelled the event
    WITHDRAWAL = "withdrawal"                  # the participant's own cancellation, confirmed
    CERTIFICATE = "certificate"                # the certificate of participation (PDF)
    CERTIFICATE_NOTED = "certificate_noted"    # certificate request noted, sent after the event
    CLARIFICATION = "clarification"            # we could not read your reply: here is the form
    REJECTED = "rejected"                      # staff turned the registration down
    STAFF_QUESTION = "staff_question"          # a participant's question, forwarded to staff
    STAFF_ALERT = "staff_alert"                # something staff must fix (a broken schedule)
    STAFF_DIGEST = "staff_digest"              # the daily digest: what happened, what waits
    STAFF_DONE = "staff_done"                  # what a reply to the digest did
    STAFF_REFUSED = "staff_refused"            # a reply to the digest that was refused


PARTICIPANT_KINDS: tuple[Kind, ...] = tuple(k for k in Kind if not k.startswith("staff_"))
STAFF_KINDS: tuple[Kind, ...] = (Kind.STAFF_QUESTION, Kind.STAFF_ALERT, Kind.STAFF_DIGEST,
                                  Kind.STAFF_DONE, Kind.STAFF_REFUSED)
# Kinds sent because a message arrived: they count against a sender's daily automatic answers
# and carry ``Auto-Submitted: auto-replied``.
ANSWER_KINDS: frozenset[Kind] = frozenset({
    Kind.ACKNOWLEDGEMENT, Kind.WAITING_LIST, Kind.PENDING_REVIEW, Kind.NOT_INVITED,
    Kind.ALREADY_REGISTERED, Kind.WITHDRAWAL, Kind.CERTIFICATE_NOTED, Kind.CLARIFICATION,
})
# Kinds that carry a calendar invitation (METHOD:REQUEST); CANCELLATION and WITHDRAWAL carry
# METHOD:CANCEL.
CALENDAR_KINDS: frozenset[Kind] = frozenset({
    Kind.ACKNOWLEDGEMENT, Kind.PROMOTION, Kind.REMINDER, Kind.UPDATE,
})
CANCEL_KINDS: frozenset[Kind] = frozenset({Kind.CANCELLATION, Kind.WITHDRAWAL, Kind.REJECTED})
# Answers to a corrected country that leave the person without their seat (the new country
# full, or not invited): with ``left_seat`` in their context they carry METHOD:CANCEL.
LEFT_SEAT_KINDS: frozenset[Kind] = frozenset({Kind.WAITING_LIST, Kind.PENDING_REVIEW,
                                             Kind.NOT_INVITED})
# Kinds sent to someone who holds a place (a confirmed registration): what they say (the link,
# "your place") and the REQUEST they carry are true only while the place is held and the
# event is on, so the outbox drops one still waiting when that is no longer so.
PLACE_KINDS: frozenset[Kind] = frozenset({
    Kind.ACKNOWLEDGEMENT, Kind.PROMOTION, Kind.REMINDER, Kind.PACK, Kind.UPDATE,
})
# What is recorded of an unreadable reply from a registered participant, forwarded to staff as
# a question is (the rules write it; the digest and the sender's daily ration read it).
UNREAD_FORWARDED = "unreadable reply from a registered participant: forwarded to staff"


@dataclass(frozen=True)
class Participant:
    """One person being registered, as read from a reply (fields may be missing)."""

    email: str
    name: str = ""
    country: str | None = None          # ISO 3166 alpha-2, or None when unresolved
    organisation: str = ""
    position: str = ""
    country_text: str = ""              # what the sender wrote, for "we could not read" answers
    # Fields guessed rather than written ("name" from the From header, "country" from a
    # government address): the acknowledgement shows them, so a reply can correct them.
    inferred: tuple[str, ...] = ()


@dataclass(frozen=True)
class Intent:
    """What one inbound message means: the output of ``understand.understand``."""

    kind: IntentKind
    sender: str
    message_id: str
    event_id: str | None = None
    language: str = "en"
    participants: tuple[Participant, ...] = ()
    certificate: bool = False
    bounced: tuple[str, ...] = ()
    bounce_temporary: bool = False
    partstat: str | None = None         # ACCEPTED | DECLINED | TENTATIVE for calendar replies
    reason: str = ""
    candidates: tuple[str, ...] = ()    # events it may be about, when it is ambiguous
    text: str = ""                      # what the sender wrote (quote and signature removed)
    subject: str = ""
    references: tuple[str, ...] = ()    # Message-IDs it answers (In-Reply-To, References)

    @property
    def answerable(self) -> bool:
        """False for mail that must never get an automatic answer (RFC 3834)."""
        return self.kind not in (IntentKind.AUTO_REPLY, IntentKind.BOUNCE)

    def to_json(self) -> dict[str, Any]:
        """The object ``mailer parse --json`` prints (DESIGN.md's shape, plus a few keys)."""
        out: dict[str, Any] = {
            "intent": self.kind.value,
            "event": self.event_id,
            "language": self.language,
            "participants": [
                {k: (list(v) if k == "inferred" else v) for k, v in asdict(p).items()
                 if k != "country_text" and (k != "inferred" or v)}
                for p in self.participants
            ],
            "certificate": self.certificate,
            "bounced": list(self.bounced),
            "reason": self.reason,
        }
        if self.kind is IntentKind.CALENDAR_REPLY:
            out["partstat"] = self.partstat
        if self.kind is IntentKind.SUBSTITUTION:
            out["replaces"] = self.sender
        if self.candidates:
            out["candidates"] = list(self.candidates)
        out["sender"] = self.sender
        out["message_id"] = self.message_id
        return out


@dataclass(frozen=True)
class Outgoing:
    """One message to send: what the outbox stores and ``compose`` turns into an email.

    ``key`` is unique per recipient, kind, event and event version, so enqueuing the same
    message twice (after a restart, a retry or a reload) stores it once.
    """

    key: str
    kind: Kind
    recipient: str
    language: str
    event_id: str | None = None
    name: str = ""
    country: str | None = None
    sequence: int = 0
    in_reply_to: str | None = None
    due_at: datetime | None = None
    registration_id: int | None = None
    context: dict[str, Any] = field(default_factory=dict)

    def message_id(self, domain: str) -> str:
        """The stable Message-ID of this message: the same key always gives the same id."""
        return make_message_id(self.key, self.event_id, domain)


def outbox_key(kind: Kind | str, recipient: str, event_id: str | None = None,
               version: int | str = 0, extra: str = "") -> str:
    """The idempotency key of an outgoing message (recipient, kind, event, event version)."""
    parts = [str(kind), event_id or "-", str(version), recipient.lower()]
    if extra:
        parts.append(extra)
    return "|".join(parts)


_MID = re.compile(r"<?wm\.([a-z0-9][a-z0-9-]*|-)\.[0-9a-f]{20}@[^>]+>?")


def make_message_id(key: str, event_id: str | None, domain: str) -> str:
    """A Message-ID that names its event, so a reply's In-Reply-To leads back to it."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    return f"<wm.{event_id or '-'}.{digest}@{domain}>"


def event_of_message_id(message_id: str) -> str | None:
    """The event a Message-ID we made names, or None for anyone else's Message-ID."""
    match = _MID.fullmatch(message_id.strip())
    if match and match.group(1) != "-":
        return match.group(1)
    return None


def normalise_email(address: str) -> str:
    """The form addresses are compared and stored in: stripped, lower case."""
    return address.strip().strip("<>").lower()
