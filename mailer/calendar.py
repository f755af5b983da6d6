"""iCalendar invitations: the VCALENDAR (METHOD:REQUEST or CANCEL) sent for one event and person.

The UID is stable per event and participant, so every update (SEQUENCE raised) or cancellation
replaces the entry already in the participant's calendar instead of adding a second one.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta, timezone
from typing import Literal

from icalendar import Alarm, Calendar, vCalAddress, vText
from icalendar import Event as VEvent
from icalendar.parser import param_value

from mailer.schedule import Event

PRODID = "-//Webinar Mailer//Registration//EN"

# The few words the calendar entry itself carries, per language ("session" fits webinars and
# workshops alike, so no grammatical gender games).
_WORDS: dict[str, dict[str, str]] = {
    "en": {"join": "Join the session: {url}", "recorded": "This session is recorded.",
           "alarm": "Starts in 15 minutes"},
    "fr": {"join": "Rejoindre la séance : {url}", "recorded": "Cette séance est enregistrée.",
           "alarm": "Début dans 15 minutes"},
    "es": {"join": "Unirse a la sesión: {url}", "recorded": "Esta sesión será grabada.",
           "alarm": "Comienza en 15 minutos"},
}
_QUOTED = " '"   # icalendar quotes a CN holding these (Parameters.quote_also)
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]+")


def event_uid(event_id: str, email: str, domain: str) -> str:
    """The calendar UID of ``event_id`` for one participant: the same on every message."""
    digest = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:16]
    return f"{event_id}.{digest}@{domain}"


def event_description(event: Event, lang: str) -> str:
    """The DESCRIPTION text: the join link and, when the series is recorded, a notice."""
    words = _WORDS.get(lang, _WORDS["en"])
    lines = [event.title(lang)]
    if event.spec.join_url:
        lines.append(words["join"].format(url=event.spec.join_url))
    if event.series.spec.recorded:
        lines.append(words["recorded"])
    return "\n".join(lines)


def _one_line(text: str) -> str:
    # A CN parameter comes from mail; a line break there would corrupt the ics file.
    return _CONTROL.sub(" ", text).strip()


def build_calendar(event: Event, *, method: Literal["REQUEST", "CANCEL"], attendee_email: str,
                   attendee_name: str, sequence: int, organiser_name: str,
                   organiser_address: str, lang: str, stamp: datetime) -> bytes:
    """The ``.ics`` bytes inviting (REQUEST) or un-inviting (CANCEL) one participant."""
    domain = organiser_address.rpartition("@")[2] or "localhost"
    shared = _shared(event, method, sequence, organiser_name, organiser_address, lang)
    # Only UID, DTSTAMP and ATTENDEE differ between participants: they are written on their
    # own and put at the top of the VEVENT (property order carries no meaning), so a burst
    # of reminders does not rebuild the whole calendar for each person.
    personal = b"".join(fold(line) + b"\r\n" for line in personal_lines(
        stamp, event_uid(event.id, attendee_email, domain), attendee_email, attendee_name))
    return shared.replace(_BEGIN, _BEGIN + personal, 1)


def personal_lines(stamp: datetime, uid: str, email: str, name: str) -> tuple[str, str, str]:
    """The DTSTAMP, UID and ATTENDEE content lines of one participant, unfolded.

    Written out rather than built with icalendar's Contentline and vCalAddress (which give
    the same text, as a test checks): those were a tenth of a reminder's cost in a burst.
    The escaping is still icalendar's: ``param_value`` for the CN (RFC 6868 and quoting,
    always quoted when it holds a space or an apostrophe, like icalendar) and vText for the
    UID.
    """
    cn = _one_line(name)
    params = f"CN={param_value(cn, always_quote=any(c in cn for c in _QUOTED))};" if cn else ""
    return (f"DTSTAMP:{stamp.astimezone(timezone.utc):%Y%m%dT%H%M%SZ}",
            f"UID:{vText(uid).to_ical().decode()}",
            f"ATTENDEE;{params}PARTSTAT=NEEDS-ACTION;ROLE=REQ-PARTICIPANT;RSVP=TRUE:"
            f"mailto:{email}")


def fold(line: str) -> bytes:
    """One content line folded at 75 octets (RFC 5545 3.1), never inside a UTF-8 sequence.

    Why not icalendar's own folding: it walks the line one character at a time in Python, a
    third of a reminder's calendar in a burst; this slices bytes. Like icalendar's, it never
    separates a backslash or caret escape from the character it escapes (icalendar #1501).
    """
    data = line.encode("utf-8")
    chunks: list[bytes] = []
    start, room = 0, 75
    while len(data) - start > room:
        end = start + room
        while data[end] & 0xC0 == 0x80:     # a UTF-8 continuation byte: cut before its lead
            end -= 1
        if data[end - 1] in b"\\^" and end - 1 > start:
            end -= 1
        chunks.append(data[start:end])
        start, room = end, 74               # a continuation line starts with one space
    chunks.append(data[start:])
    return b"\r\n ".join(chunks)


_BEGIN = b"BEGIN:VEVENT\r\n"
# The shared part of recent calendars, keyed by the event object's id and the other inputs;
# the event is kept with its text, so an id reused after a schedule reload is never mistaken.
_SHARED: dict[tuple[object, ...], tuple[Event, bytes]] = {}
_SHARED_MAX = 512


def _shared(event: Event, method: Literal["REQUEST", "CANCEL"], sequence: int,
            organiser_name: str, organiser_address: str, lang: str) -> bytes:
    """The calendar without the participant's UID, DTSTAMP and ATTENDEE, built once."""
    key = (id(event), method, sequence, organiser_name, organiser_address, lang)
    cached = _SHARED.get(key)
    if cached is not None and cached[0] is event:
        return cached[1]
    if len(_SHARED) >= _SHARED_MAX:
        _SHARED.clear()
    cal = Calendar.new(prodid=PRODID, method=method)
    # Calendar.new adds a random RFC 7986 UID; it would make every render differ.
    del cal["UID"]
    organiser = vCalAddress.new(organiser_address, cn=_one_line(organiser_name) or None)
    url = event.spec.join_url
    vevent = VEvent()
    vevent.add("sequence", sequence)
    vevent.add("dtstart", event.start.astimezone(timezone.utc))
    vevent.add("dtend", event.end.astimezone(timezone.utc))
    vevent.add("summary", event.title(lang))
    vevent.add("description", event_description(event, lang))
    if url:
        vevent.add("location", url)
        vevent.add("url", url)
    vevent.add("organizer", organiser)
    vevent.add("status", "CANCELLED" if method == "CANCEL" else "CONFIRMED")
    if method == "REQUEST":
        alarm = Alarm()
        alarm.add("action", "DISPLAY")
        alarm.add("description", _WORDS.get(lang, _WORDS["en"])["alarm"])
        alarm.add("trigger", timedelta(minutes=-15))
        vevent.add_component(alarm)
    cal.add_component(vevent)
    text = cal.to_ical()
    _SHARED[key] = (event, text)
    return text
