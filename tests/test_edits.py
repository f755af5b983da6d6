"""What participants receive when staff edit a schedule or a participant corrects their
country: no second reminder for a small move, no calendar CANCEL to someone who never had
the entry, a CANCEL for a seat given up. On SQLite and PostgreSQL, over a real SMTP server,
the schedule edited in its file and `mailer once` run as cron would."""

from __future__ import annotations

from pathlib import Path

import pytest
from icalendar import Calendar

from mailer import store
from tests.builders import SERIES, write_schedule
from tests.servers.smtp import SmtpSink
from tests.staffkit import NOW, Office, make_office

AWA = "awa.diop@justice.gouv.sn"
START, END = "2020-07-09T08:00:00Z", "2020-07-09T09:45:00Z"


@pytest.fixture
def office(st: store.Store, tmp_path: Path, smtp_sink: SmtpSink) -> Office:
    """A project on the test's store (SQLite or PostgreSQL) and the SMTP sink."""
    return make_office(tmp_path, st.url, smtp_sink)


def edit(office: Office, *, start: str = START, end: str = END, limit: int = 4,
         invited: str = '["@west_africa"]', cancelled: bool = False) -> None:
    """Save the test series with africa-fr's start, end, invited countries or cancellation
    changed, as staff would in their editor."""
    text = (SERIES.replace("{limit}", str(limit)).replace("{not_invited}", "review")
            .replace("{{", "{").replace("}}", "}"))
    africa = text.index('id = "africa-fr"')
    head, tail = text[:africa], text[africa:]
    tail = (tail.replace(f"start = {START}", f"start = {start}", 1)
            .replace(f"end = {END}", f"end = {end}", 1)
            .replace('invited = ["@west_africa"]', f"invited = {invited}"
                     + ("\ncancelled = true" if cancelled else ""), 1))
    write_schedule(office.folder, text=head + tail)


def once(office: Office, now: str) -> list[str]:
    """`mailer once` at ``now``; the kinds it sent to Awa (with the reminder's offset)."""
    before = len(office.sent_to(AWA))
    office.drain(now)
    return [kind for kind, _ in office.sent_to(AWA)[before:]]


def register_awa(office: Office) -> None:
    made = office.mailer("register", "--event", "africa-fr", "--email", AWA, "--name",
                         "Awa Diop", "--country", "SN", "--now", NOW)
    assert made.exit_code == 0, made.output
    assert once(office, NOW) == ["acknowledgement"]


def calendar(msg) -> tuple[str, int] | None:
    """(METHOD, SEQUENCE) of a message's calendar part, or None without one."""
    parts = [p for p in msg.walk() if p.get_content_type() == "text/calendar"]
    if not parts:
        return None
    cal = Calendar.from_ical(parts[0].get_content())
    (event,) = cal.walk("VEVENT")
    return str(cal["METHOD"]), int(event.get("SEQUENCE", 0))


# --- 1. reminders and a moved event ---------------------------------------------------------

def test_an_event_moved_by_an_hour_after_a_reminder_gets_no_second_one(office: Office) -> None:
    """The 1-day reminder went out; staff then move the webinar one hour later. Awa gets the
    update, and no second 1-day reminder at the new moment (she got two before); the 1-hour
    reminder still goes, once, at the new start less an hour."""
    register_awa(office)
    assert once(office, "2020-07-08T08:05Z") == ["reminder"]
    edit(office, start="2020-07-09T09:00:00Z", end="2020-07-09T10:45:00Z")
    assert once(office, "2020-07-08T08:30Z") == ["update"]
    assert once(office, "2020-07-08T09:05Z") == []
    assert once(office, "2020-07-09T07:05Z") == []
    assert once(office, "2020-07-09T08:05Z") == ["reminder"]


def test_an_event_moved_by_a_week_gets_its_reminders_again(office: Office) -> None:
    """Moved a week later after the 1-day reminder: that reminder spoke of a day long past,
    so the reminders of the new date go at their moments, each once."""
    register_awa(office)
    assert once(office, "2020-07-08T08:05Z") == ["reminder"]
    edit(office, start="2020-07-16T08:00:00Z", end="2020-07-16T09:45:00Z")
    assert once(office, "2020-07-08T10:00Z") == ["update"]
    assert once(office, "2020-07-09T08:05Z") == ["reminder"]        # 7 days before
    assert once(office, "2020-07-09T09:05Z") == []
    assert once(office, "2020-07-15T08:05Z") == ["reminder"]        # 1 day before
    assert once(office, "2020-07-15T09:05Z") == []
