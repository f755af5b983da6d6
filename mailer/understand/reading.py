"""One inbound email in, one ``Intent`` out: the order in which the questions are asked.

First: is it automatic (bounces, auto-replies: never answered)? That question comes before
any other, so no error later can skip it. Then: is it a calendar reply? Then what the sender
wrote (quote and signature removed) says what they want (cancellation, registration,
certificate request, question, unknown) and who; the event comes from the headers, else from
the words. Nothing here reads the clock, the network or the database. Mail that cannot be
read is never answered: ``read`` gives the reason (the caller quarantines it), ``understand``
an ``unknown`` intent whose reason starts with ``UNREADABLE``; neither raises.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime, timedelta
from email.message import EmailMessage

from mailer.domain import Intent, IntentKind, Participant, normalise_email
from mailer.schedule import Catalog
from mailer.understand.automatic import Automatic, classify_automatic
from mailer.understand.calendar_reply import calendar_reply
from mailer.understand.event import (
    NOT_ENDED,
    RECENT,
    EventChoice,
    event_from_headers,
    event_from_text,
    event_of_calendar,
)
from mailer.understand.folding import fold
from mailer.understand.language import language_of
from mailer.understand.message import (
    bounded,
    clean_header,
    clean_text,
    digest_id,
    header_text,
    message_id_of,
    parse_message,
    references_of,
    safe_bytes,
    sender_of,
    valid_address,
)
from mailer.understand.prose import display_name
from mailer.understand.wants import classify
from mailer.understand.who import Sender
from mailer.understand.written import body_text, extract_reply

MAX_ANALYSED = 100_000      # characters of reply text analysed: keeps hostile mail linear
MAX_TEXT = 5_000            # characters of reply text kept in the intent
UNREADABLE = "unreadable: "  # the reason of an intent read from mail that could not be read


def read(raw: bytes, catalog: Catalog, *, now: datetime, inbox_address: str, max_bytes: int,
         size: int | None, message_id: str, recent: timedelta = RECENT) -> Intent | str:
    """What one raw message asks for, or why it cannot be read (then it is quarantined).

    ``size`` is the size the server gave (the body of a message over the limit was not
    downloaded); ``recent``: how long after their end events still count for certificate
    requests and calendar answers (``replies.recent_event_days``). Never raises, and needs
    no store, so a worker process can do it (``mailer.workers``).
    """
    if not raw:
        return f"too large ({size} bytes) or empty: not downloaded"
    if len(raw) > max_bytes:
        return f"too large ({len(raw)} bytes, limit {max_bytes})"
    try:
        # The intent carries ``message_id``: understand never reads the header again.
        intent = understand(raw, catalog, now=now, inbox_address=inbox_address,
                            message_id=message_id, recent=recent)
    except Exception as exc:  # noqa: BLE001 - one bad message must never stop the loop
        return f"could not be read: {type(exc).__name__}: {exc}"[:500]
    if intent.kind is IntentKind.UNKNOWN and intent.reason.startswith(UNREADABLE):
        # Quarantined with its reason, never answered with a clarification: a machine's
        # mail that breaks the parser must not get an answer either.
        return f"could not be read: {intent.reason.removeprefix(UNREADABLE)}"[:500]
    return intent


def understand(raw: bytes, catalog: Catalog, *, now: datetime, inbox_address: str,
               message_id: str | None = None, recent: timedelta = RECENT) -> Intent:
    """What one raw inbound message asks for; malformed mail gives an ``unknown`` intent.

    ``message_id``: the id the caller already knows the message by (its Message-ID, or the
    stand-in for mail without one); the intent carries it, and the header is not read again.
    """
    if not isinstance(raw, bytes | bytearray | memoryview):
        raw = str(raw).encode("utf-8", "replace")
    fallback_id = message_id or digest_id(bytes(raw))
    try:
        msg = parse_message(raw)
    except Exception as exc:  # the parser is lenient, but a crash here must not stop the daemon
        return _unreadable("", fallback_id, exc)
    return understand_message(msg, catalog, now=now, inbox_address=inbox_address,
                              fallback_id=fallback_id, message_id=message_id, recent=recent)


def understand_message(msg: EmailMessage, catalog: Catalog, *, now: datetime,
                       inbox_address: str, fallback_id: str | None = None,
                       message_id: str | None = None, recent: timedelta = RECENT) -> Intent:
    """What one parsed message asks for; ``fallback_id`` names it when it has no Message-ID,
    and a known ``message_id`` (see ``understand``) is used instead of its header."""
    sender = ""
    known = message_id
    message_id = known or fallback_id or ""
    try:
        sender = sender_of(msg)
        message_id = known or message_id_of(msg) or fallback_id or digest_id(safe_bytes(msg))
        return _understand(bounded(msg), catalog, now, inbox_address, sender, message_id,
                           recent)
    except Exception as exc:  # hostile mail: a machine's stays a machine's, else unreadable
        message_id = message_id or digest_id(b"")
        try:
            automatic = classify_automatic(msg, inbox_address)
        except Exception:  # noqa: BLE001 - then it is unreadable, and quarantined
            automatic = None
        if automatic is not None:
            base = Intent(kind=IntentKind.UNKNOWN, sender=sender, message_id=message_id)
            return _automatic_intent(base, automatic, None)
        return _unreadable(sender, message_id, exc)


# --------------------------------------------------------------------------- the steps


def _understand(msg: EmailMessage, catalog: Catalog, now: datetime, inbox: str, sender: str,
                message_id: str, recent: timedelta) -> Intent:
    automatic = classify_automatic(msg, inbox)   # first: nothing later may skip it
    subject = clean_header(header_text(msg, "Subject"))
    references = references_of(msg)
    base = Intent(kind=IntentKind.UNKNOWN, sender=sender, message_id=message_id,
                  subject=subject, references=references)
    header_event = event_from_headers(msg, catalog, inbox, subject, references)
    if automatic is not None:
        return _automatic_intent(base, automatic, header_event)
    if not sender:
        # Nothing to answer: quarantined with the reason (read), never answered.
        return _with(base, reason=f"{UNREADABLE}the From header holds no single valid address")

    body = body_text(msg)        # read once: the reply is cut from it, the quote read from it
    text = extract_reply(body)[:MAX_ANALYSED]
    folded = fold(text)
    language = language_of(folded)

    def quoted() -> str:  # read only when the reply and the subject leave a doubt
        # Nothing quoted (the body is the reply): the same words would be matched again.
        return body[:MAX_ANALYSED] if len(body) > len(text) + 80 else ""

    calendar = calendar_reply(msg, sender, subject, catalog)
    if calendar is not None:
        event_id = calendar.event_id or header_event
        found = (EventChoice(event_id) if event_id else
                 event_of_calendar(None, calendar.start, calendar.summary, calendar.topic,
                                   catalog, now, recent)
                 or event_from_text(folded, catalog, now, subject=subject, quoted=quoted,
                                    recent=recent))
        if calendar.partstat == "DECLINED":
            # "Declined: ... my colleague will attend instead": the decline hands the place
            # on, it does not give it back (``rules._substitute``).
            kind, people, _, why = classify(text, folded, Sender(sender, display_name(msg)))
            if kind is IntentKind.SUBSTITUTION:
                # The one leaving is the calendar's ATTENDEE (who got our invitation), as for
                # a plain decline: clients answer from an alias of the invited address.
                leaving = valid_address(calendar.attendee) if calendar.attendee else None
                return _finish(base, catalog, found, language or calendar.language,
                               kind=kind, participants=people, text=text[:MAX_TEXT],
                               sender=leaving or sender,
                               reason=f"{why} (calendar reply DECLINED, {calendar.source})")
        return _finish(base, catalog, found, language or calendar.language,
                       kind=IntentKind.CALENDAR_REPLY, partstat=calendar.partstat,
                       participants=(Participant(email=calendar.attendee or sender),),
                       reason=f"calendar reply {calendar.partstat} ({calendar.source})",
                       text=text[:MAX_TEXT])

    kind, participants, certificate, reason = classify(text, folded,
                                                       Sender(sender, display_name(msg)))
    # A certificate is asked for after the event: events that ended recently count too.
    found = EventChoice(header_event) if header_event else event_from_text(
        folded, catalog, now, subject=subject, quoted=quoted,
        recent=recent if kind is IntentKind.CERTIFICATE_REQUEST else NOT_ENDED)
    return _finish(base, catalog, found, language, kind=kind, participants=participants,
                   certificate=certificate, reason=reason, text=text[:MAX_TEXT])


def _automatic_intent(base: Intent, automatic: Automatic, event_id: str | None) -> Intent:
    kind = IntentKind.BOUNCE if automatic.kind == "bounce" else IntentKind.AUTO_REPLY
    return _with(base, kind=kind, event_id=event_id,
                 bounced=tuple(normalise_email(a) for a in automatic.bounced),
                 bounce_temporary=bool(automatic.temporary), reason=automatic.reason)


def _finish(base: Intent, catalog: Catalog, found: EventChoice, language: str | None,
            *, reason: str, **changes: object) -> Intent:
    """Add the event, the language (falling back to the event's, then English) and the reason."""
    if found.event_id is None and found.why:
        reason = f"{reason}; {found.why}"
    event = catalog.events.get(found.event_id) if found.event_id else None
    lang = language or (event.language if event else None) or "en"
    if "participants" in changes:  # stored and printed: no control characters in them
        changes["participants"] = tuple(_clean(p) for p in changes["participants"])
    return _with(base, event_id=found.event_id, candidates=found.candidates, language=lang,
                 reason=reason, **changes)


def _clean(participant: Participant) -> Participant:
    """A participant with control characters (terminal escapes, bidi overrides) removed from
    the names and texts that are stored and printed by ``mailer registrations``."""
    email = (valid_address(participant.email) or "") if participant.email else ""
    return replace(participant, email=email, name=clean_text(participant.name),
                   organisation=clean_text(participant.organisation),
                   position=clean_text(participant.position),
                   country_text=clean_text(participant.country_text))


def _with(intent: Intent, **changes: object) -> Intent:
    return replace(intent, **changes)  # type: ignore[arg-type]


def _unreadable(sender: str, message_id: str, exc: BaseException) -> Intent:
    why = f"{type(exc).__name__}: {exc}"
    why = re.sub(r"\s+", " ", why)[:200]
    return Intent(kind=IntentKind.UNKNOWN, sender=sender, message_id=message_id,
                  reason=f"{UNREADABLE}{why}")


