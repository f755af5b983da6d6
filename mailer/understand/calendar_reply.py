"""Is it an answer to a calendar invitation? A METHOD:REPLY part, or an "Accepted: ..." subject.

Outlook, Gmail and Apple answer an invitation with an iCalendar REPLY whose ATTENDEE carries
the PARTSTAT; some clients (and Exchange's winmail.dat) lose that part and leave only a
subject such as "Accepted: <title>" in the user's language.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage

from icalendar import Calendar

from mailer.domain import normalise_email
from mailer.schedule import Catalog
from mailer.understand.folding import fold

MAX_ICS = 1_000_000         # calendar parts larger than this are not parsed

@dataclass(frozen=True)
class CalendarReply:
    partstat: str
    event_id: str | None
    attendee: str
    source: str
    language: str | None = None


_UID = re.compile(r"([a-z0-9][a-z0-9-]*)\.[0-9a-f]+@.+")
_PARTSTATS = ("ACCEPTED", "DECLINED", "TENTATIVE")
# Subjects Outlook and Gmail give their calendar answers, folded; tentative forms first because
# "Accepté provisoirement" starts like "Accepté".
_CALENDAR_SUBJECTS: tuple[tuple[str, str, str], ...] = (
    ("TENTATIVE", "en", r"tentatively accepted|tentative|maybe"),
    ("TENTATIVE", "fr", r"accepte provisoirement|provisoire|peut-etre|invitation acceptee "
                        r"provisoirement"),
    ("TENTATIVE", "es", r"aceptad[oa] provisionalmente|provisional|tentativo|quizas"),
    ("ACCEPTED", "en", r"accepted|invitation accepted"),
    ("ACCEPTED", "fr", r"accepte|invitation acceptee"),
    ("ACCEPTED", "es", r"aceptad[oa]|invitacion aceptada"),
    ("DECLINED", "en", r"declined|invitation declined"),
    ("DECLINED", "fr", r"refuse|decline|invitation refusee"),
    ("DECLINED", "es", r"rechazad[oa]|invitacion rechazada"),
)


def calendar_reply(msg: EmailMessage, sender: str, subject: str,
                    catalog: Catalog) -> CalendarReply | None:
    """A METHOD:REPLY calendar part, or an Outlook/Gmail "Accepted: ..." subject."""
    for part in _calendar_parts(msg):
        found = _ics_reply(part, sender, catalog)
        if found is not None:
            return found
    head = fold(subject)
    for partstat, lang, words in _CALENDAR_SUBJECTS:
        if re.match(rf"(?:{words})\s*:", head):
            return CalendarReply(partstat, None, sender, "subject", lang)
    return None


def _calendar_parts(msg: EmailMessage) -> Iterator[str]:
    for count, part in enumerate(msg.walk()):
        if count > 200:
            return
        if part.get_content_type() in ("text/calendar", "application/ics"):
            try:
                content = part.get_content()
            except Exception:  # a broken part is skipped, the rest is still read
                continue
            if isinstance(content, bytes):
                content = content.decode("utf-8", "replace")
            if isinstance(content, str) and len(content) <= MAX_ICS:
                yield content


def _ics_reply(text: str, sender: str, catalog: Catalog) -> CalendarReply | None:
    try:
        cal = Calendar.from_ical(text)
    except Exception:  # icalendar raises ValueError and others on malformed input
        return None
    if str(cal.get("METHOD", "")).strip().upper() != "REPLY":
        return None
    for vevent in cal.walk("VEVENT"):
        attendees = vevent.get("ATTENDEE", [])
        if not isinstance(attendees, list):
            attendees = [attendees]
        chosen: tuple[str, str] | None = None
        for attendee in attendees:
            partstat = str(getattr(attendee, "params", {}).get("PARTSTAT", "")).upper()
            address = normalise_email(re.sub(r"(?i)^mailto:", "", str(attendee)))
            if partstat in _PARTSTATS and (chosen is None or address == sender):
                chosen = (partstat, address)
        if chosen is None:
            continue
        uid = str(vevent.get("UID", "")).strip().lower()
        match = _UID.fullmatch(uid)
        event_id = match.group(1) if match and match.group(1) in catalog.events else None
        return CalendarReply(chosen[0], event_id, chosen[1] or sender, "calendar")
    return None

