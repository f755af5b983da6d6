"""Is it an answer to a calendar invitation? A METHOD:REPLY part, or an "Accepted: ..." subject.

Outlook, Gmail and Apple answer an invitation with an iCalendar REPLY whose ATTENDEE carries
the PARTSTAT; some clients (and Exchange's winmail.dat) lose that part and leave only a
subject such as "Accepted: <title>" in the user's language. What the answer says of its event
(our UID, else its start and summary, else the title after "Accepted:") is kept for
``event.event_of_calendar``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date, datetime
from email.message import EmailMessage

from icalendar import Calendar

from mailer.domain import normalise_email
from mailer.schedule import Catalog
from mailer.understand.event import subject_topic
from mailer.understand.folding import fold

MAX_ICS = 1_000_000         # calendar parts larger than this are not parsed

@dataclass(frozen=True)
class CalendarReply:
    partstat: str
    event_id: str | None
    attendee: str
    source: str
    language: str | None = None
    start: datetime | None = None   # the DTSTART of a calendar part
    summary: str = ""               # its SUMMARY
    topic: str = ""                 # the subject after "Accepted:" and the like


_UID = re.compile(r"([a-z0-9][a-z0-9-]*)\.[0-9a-f]+@.+")
_PARTSTATS = ("ACCEPTED", "DECLINED", "TENTATIVE")
# Subjects Outlook and Gmail give their calendar answers, folded; tentative forms first because
# "Accepté provisoirement" starts like "Accepté".
_CALENDAR_SUBJECTS: tuple[tuple[str, str | None, str], ...] = (
    ("TENTATIVE", "en", r"tentatively accepted|tentative|maybe"),
    ("TENTATIVE", "fr", r"(?:invitation )?acceptee? provisoirement|provisoire|peut-etre"),
    ("TENTATIVE", "es", r"(?:invitacion )?aceptad[oa] provisionalmente|provisional|tentativo|"
                        r"quizas"),
    # Portuguese, German, Italian, Dutch: answered in the event's language.
    ("TENTATIVE", None, r"(?:convite )?aceit[oea] provisoriamente|provisorio|talvez|"
                        r"mit vorbehalt(?: angenommen)?|vorlaufig|provvisori[oa]|forse|"
                        r"voorlopig|misschien"),
    ("ACCEPTED", "en", r"accepted|invitation accepted"),
    ("ACCEPTED", "fr", r"acceptee?|invitation acceptee"),
    ("ACCEPTED", "es", r"aceptad[oa]|invitacion aceptada"),
    ("ACCEPTED", None, r"(?:convite )?aceit[oea]|zugesagt|angenommen|accettat[oa]|"
                       r"geaccepteerd"),
    ("DECLINED", "en", r"declined|invitation declined"),
    ("DECLINED", "fr", r"refusee?|declinee?|invitation refusee"),
    ("DECLINED", "es", r"rechazad[oa]|invitacion rechazada"),
    ("DECLINED", None, r"(?:convite )?recusad[oa]|abgesagt|abgelehnt|rifiutat[oa]|"
                       r"geweigerd|afgewezen"),
)


def calendar_reply(msg: EmailMessage, sender: str, subject: str,
                    catalog: Catalog) -> CalendarReply | None:
    """A METHOD:REPLY calendar part, or an Outlook/Gmail "Accepted: ..." subject."""
    for part in _calendar_parts(msg):
        found = _ics_reply(part, sender, catalog)
        if found is not None:
            head = fold(subject_topic(subject))
            for _partstat, _lang, words in _CALENDAR_SUBJECTS:
                match = re.match(rf"(?:{words})\s*:\s*", head)
                if match:
                    return replace(found, topic=head[match.end():].strip())
            return found
    head = fold(subject_topic(subject))
    for partstat, lang, words in _CALENDAR_SUBJECTS:
        match = re.match(rf"(?:{words})\s*:\s*", head)
        if match:
            return CalendarReply(partstat, None, sender, "subject", lang,
                                 topic=head[match.end():].strip())
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
        return CalendarReply(chosen[0], event_id, chosen[1] or sender, "calendar",
                             start=_start(vevent),
                             summary=str(vevent.get("SUMMARY", "") or "")[:500])
    return None



def _start(vevent: object) -> datetime | None:
    """The DTSTART of a VEVENT as a datetime (with its zone when the part gives one)."""
    try:
        value = vevent.decoded("DTSTART")  # type: ignore[attr-defined]
    except Exception:  # absent or malformed: matched by summary and subject instead
        return None
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    return None
