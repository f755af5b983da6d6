"""Attendance: reading Zoom participant reports and marking registrations attended or absent."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import select

from mailer.attendance import Attendee, import_attendance, parse_attendance, read_attendance
from mailer.store import Registration, Store

WITH_SUMMARY = """\
Meeting ID,Topic,Start Time,End Time,User Email,Duration (Minutes),Participants
93145720618,Webinar,07/09/2020 07:52:10 AM,07/09/2020 09:51:33 AM,secretariat@coe.int,120,4

Name (Original Name),User Email,Join Time,Leave Time,Duration (Minutes),Guest,Recording Consent
Secretariat (Host),secretariat@coe.int,07/09/2020 07:52:10 AM,07/09/2020 09:51:33 AM,120,No,
Awa Diop,awa.diop@justice.gouv.sn,07/09/2020 07:58:02 AM,07/09/2020 08:40:11 AM,43,Yes,Y
Awa Diop (Awa),Awa.Diop@Justice.Gouv.SN,07/09/2020 08:42:30 AM,07/09/2020 09:45:00 AM,63,Yes,Y
"Koffi, Jean",jean.koffi@justice.gouv.ci,07/09/2020 08:01:00 AM,07/09/2020 09:44:00 AM,103,Yes,Y
"""

OLDER = """\
Name (Original Name),User Email,Join Time,Leave Time,Duration (Minutes)
Zoë Ñúñez-Øre,zoe@mjusticia.gob.es,07/22/2020 02:59:40 PM,07/22/2020 04:46:01 PM,107
Tomás Ruiz,tomas@mjusticia.gob.es,07/22/2020 03:10:00 PM,07/22/2020 03:20:00 PM,10
"""


def test_summary_block_is_skipped_and_rejoins_are_added_up() -> None:
    """The table after a meeting summary is found, and one person's connections are summed."""
    attendees, problems = parse_attendance(WITH_SUMMARY)
    assert problems == []
    by_email = {a.email: a for a in attendees}
    assert set(by_email) == {"secretariat@coe.int", "awa.diop@justice.gouv.sn",
                             "jean.koffi@justice.gouv.ci"}
    awa = by_email["awa.diop@justice.gouv.sn"]
    assert (awa.name, awa.minutes, awa.sessions) == ("Awa Diop", 106, 2)
    assert by_email["jean.koffi@justice.gouv.ci"].name == "Koffi, Jean"


def test_older_export_with_byte_order_mark_is_read_from_a_file(tmp_path: Path) -> None:
    """A header-first report saved as UTF-8 with a BOM reads with accents intact."""
    path = tmp_path / "participants_93145720618.csv"
    path.write_bytes(OLDER.encode("utf-8-sig"))
    attendees, problems = read_attendance(path)
    assert problems == []
    assert [(a.name, a.email, a.minutes) for a in attendees] == [
        ("Zoë Ñúñez-Øre", "zoe@mjusticia.gob.es", 107),
        ("Tomás Ruiz", "tomas@mjusticia.gob.es", 10)]


def test_unreadable_rows_are_reported_with_their_line_and_the_rest_is_kept() -> None:
    """A bad duration, a missing address and a short row each give a Problem with its line."""
    text = ("Name (Original Name),User Email,Join Time,Leave Time,Duration (Minutes)\n"
            "Awa Diop,awa@justice.gouv.sn,08:00,09:00,60\n"
            "Jean Koffi,jean@justice.gouv.ci,08:00,09:00,about an hour\n"
            "+221 33 000 00 00,,08:05,09:00,55\n"
            "Broken row\n"
            "Ana Lima,ana@mj.gov.br,08:00,08:30,30\n")
    attendees, problems = parse_attendance(text, "report.csv")
    assert [a.email for a in attendees] == ["awa@justice.gouv.sn", "ana@mj.gov.br"]
    assert [(p.file, p.line) for p in problems] == [("report.csv", 3), ("report.csv", 4),
                                                    ("report.csv", 5)]
    assert "about an hour" in problems[0].message
    assert "no email address" in problems[1].message


def test_semicolon_separated_report_is_read() -> None:
    """A report re-saved by Excel with semicolons is read like Zoom's commas."""
    text = ("Name (Original Name);User Email;Join Time;Leave Time;Duration (Minutes)\n"
            "Awa Diop;awa@justice.gouv.sn;08:00;09:00;60\n")
    attendees, problems = parse_attendance(text)
    assert problems == [] and attendees == [Attendee("awa@justice.gouv.sn", "Awa Diop", 60)]


def test_text_without_participant_table_is_one_problem() -> None:
    """A file that is not a participant report says what header was expected."""
    attendees, problems = parse_attendance("Meeting ID,Topic\n123,Webinar\n", "x.csv")
    assert attendees == []
    assert len(problems) == 1 and "User Email" in problems[0].message


def _register(store: Store, email: str, status: str, event_id: str = "africa-fr") -> None:
    now = datetime(2020, 7, 1, tzinfo=timezone.utc)
    with store.transaction() as session:
        session.add(Registration(event_id=event_id, series_id="cyber-cj-2020", email=email,
                                 name=email.split("@")[0], country="SN", status=status,
                                 created_at=now, updated_at=now))


def _marks(store: Store) -> dict[str, bool | None]:
    with store.transaction() as session:
        return {r.email: r.attended for r in session.scalars(select(Registration))}


def test_import_marks_present_absent_short_and_lists_unknown(tmp_path: Path) -> None:
    """Registrants found (any case) are present, confirmed ones missing absent, others untouched."""
    store = Store(f"sqlite:///{tmp_path}/t.db")
    store.migrate()
    _register(store, "awa.diop@justice.gouv.sn", "confirmed")
    _register(store, "ben@justice.gouv.sn", "confirmed")
    _register(store, "carla@justice.gouv.sn", "waiting")
    _register(store, "dan@justice.gouv.sn", "confirmed")
    _register(store, "dan@justice.gouv.sn", "confirmed", event_id="africa-en")
    attendees = [Attendee("Awa.Diop@JUSTICE.gouv.sn", "Awa Diop", 106, 2),
                 Attendee("dan@justice.gouv.sn", "Dan", 5),
                 Attendee("stranger@example.org", "Stranger", 90)]
    with store.transaction() as session:
        result = import_attendance(session, "africa-fr", attendees, min_minutes=30)
    assert (result.matched, result.absent, result.too_short) == (1, 1, 1)
    assert result.unknown == ("stranger@example.org",)
    with store.transaction() as session:
        marks = {(r.event_id, r.email): r.attended
                 for r in session.scalars(select(Registration))}
    assert marks == {("africa-fr", "awa.diop@justice.gouv.sn"): True,
                     ("africa-fr", "ben@justice.gouv.sn"): False,
                     ("africa-fr", "carla@justice.gouv.sn"): None,
                     ("africa-fr", "dan@justice.gouv.sn"): False,
                     ("africa-en", "dan@justice.gouv.sn"): None}
    store.close()


def test_importing_a_corrected_report_overwrites_the_marks(tmp_path: Path) -> None:
    """A second import with a fuller report turns an absence into attendance."""
    store = Store(f"sqlite:///{tmp_path}/t.db")
    store.migrate()
    _register(store, "ben@justice.gouv.sn", "confirmed")
    with store.transaction() as session:
        first = import_attendance(session, "africa-fr", [])
    with store.transaction() as session:
        second = import_attendance(session, "africa-fr", [Attendee("BEN@justice.gouv.sn", "Ben",
                                                                   80)])
    assert (first.absent, second.matched, second.absent) == (1, 1, 0)
    assert _marks(store) == {"ben@justice.gouv.sn": True}
    store.close()
