"""iCalendar invitations: the VCALENDAR (METHOD:REQUEST or CANCEL) sent for one event and person.

The UID is stable per event and participant, so every update (SEQUENCE raised) or cancellation
replaces the entry already in the participant's calendar instead of adding a second one.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta, timezone
from typing import Literal

from icalendar import Alarm, Calendar, vCalAddress
from icalendar import Event as VEvent

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
    cal = Calendar.new(prodid=PRODID, method=method)
    # Calendar.new adds a random RFC 7986 UID; it would make every render differ.
    del cal["UID"]
    organiser = vCalAddress.new(organiser_address, cn=_one_line(organiser_name) or None)
    attendee = vCalAddress.new(attendee_email, cn=_one_line(attendee_name) or None,
                               role="REQ-PARTICIPANT", partstat="NEEDS-ACTION", rsvp=True)
    url = event.spec.join_url
    vevent = VEvent.new(
        uid=event_uid(event.id, attendee_email, domain),
        sequence=sequence,
        stamp=stamp.astimezone(timezone.utc),
        start=event.start.astimezone(timezone.utc),
        end=event.end.astimezone(timezone.utc),
        summary=event.title(lang),
        description=event_description(event, lang),
        location=url,
        url=url,
        organizer=organiser,
        attendees=[attendee],
        status="CANCELLED" if method == "CANCEL" else "CONFIRMED",
    )
    if method == "REQUEST":
        alarm = Alarm()
        alarm.add("action", "DISPLAY")
        alarm.add("description", _WORDS.get(lang, _WORDS["en"])["alarm"])
        alarm.add("trigger", timedelta(minutes=-15))
        vevent.add_component(alarm)
    cal.add_component(vevent)
    return cal.to_ical()
