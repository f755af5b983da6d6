"""Attendance: reading Zoom participant reports and marking registrations attended or absent."""

from __future__ import annotations

import codecs
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from mailer.attendance import Attendee, import_attendance, read_attendance
from mailer.cli import cli
from mailer.store import Registration, Store

ROOT = Path(__file__).resolve().parent.parent

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


def _report(tmp_path: Path, text: str, name: str = "report.csv",
            encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def test_summary_block_is_skipped_and_rejoins_are_added_up(tmp_path: Path) -> None:
    """The table after a meeting summary is found, and one person's connections are summed."""
    attendees, problems = read_attendance(_report(tmp_path, WITH_SUMMARY))
    assert problems == []
    by_email = {a.email: a for a in attendees}
    assert set(by_email) == {"secretariat@coe.int", "awa.diop@justice.gouv.sn",
                             "jean.koffi@justice.gouv.ci"}
    awa = by_email["awa.diop@justice.gouv.sn"]
    assert (awa.name, awa.minutes, awa.sessions) == ("Awa Diop", 106, 2)
    assert by_email["jean.koffi@justice.gouv.ci"].name == "Koffi, Jean"


def test_older_export_with_byte_order_mark_is_read_from_a_file(tmp_path: Path) -> None:
    """A header-first report saved as UTF-8 with a BOM reads with accents intact."""
    attendees, problems = read_attendance(_report(tmp_path, OLDER, encoding="utf-8-sig"))
    assert problems == []
    assert [(a.name, a.email, a.minutes) for a in attendees] == [
        ("Zoë Ñúñez-Øre", "zoe@mjusticia.gob.es", 107),
        ("Tomás Ruiz", "tomas@mjusticia.gob.es", 10)]


def test_utf16_reports_as_excel_saves_them_are_read(tmp_path: Path) -> None:
    """Excel's "Unicode text" (UTF-16 with a BOM, tabs) and UTF-16 without a BOM."""
    tabbed = OLDER.replace(",", "\t")
    for path in (_report(tmp_path, tabbed, "a.txt", "utf-16"),
                 _report(tmp_path, OLDER, "b.csv", "utf-16-le")):
        attendees, problems = read_attendance(path)
        assert problems == []
        assert [(a.name, a.minutes) for a in attendees] == [("Zoë Ñúñez-Øre", 107),
                                                            ("Tomás Ruiz", 10)]


def test_a_row_without_an_address_is_a_warning_and_the_rest_is_kept(tmp_path: Path) -> None:
    """A phone participant (no email) cannot be matched: a warning with its line."""
    text = ("Name (Original Name),User Email,Join Time,Leave Time,Duration (Minutes)\n"
            "Awa Diop,awa@justice.gouv.sn,08:00,09:00,60\n"
            "+221 33 000 00 00,,08:05,09:00,55\n"
            "Ana Lima,ana@mj.gov.br,08:00,08:30,30\n")
    attendees, problems = read_attendance(_report(tmp_path, text))
    assert [a.email for a in attendees] == ["awa@justice.gouv.sn", "ana@mj.gov.br"]
    assert [(p.field, p.line) for p in problems] == [("User Email", 3)]
    assert "no email address" in problems[0].message


def test_semicolon_separated_report_is_read(tmp_path: Path) -> None:
    """A report re-saved by Excel with semicolons is read like Zoom's commas."""
    text = ("Name (Original Name);User Email;Join Time;Leave Time;Duration (Minutes)\n"
            "Awa Diop;awa@justice.gouv.sn;08:00;09:00;60\n")
    attendees, problems = read_attendance(_report(tmp_path, text))
    assert problems == [] and attendees == [Attendee("awa@justice.gouv.sn", "Awa Diop", 60)]


HEADER = "Name (Original Name),User Email,Join Time,Leave Time,Duration (Minutes)\n"
GOOD_ROW = "Awa Diop,awa.diop@justice.gouv.sn,08:00,09:45,105\n"
# Each file a staff member might pick by mistake, and what the refusal must say.
BAD_REPORTS: dict[str, tuple[bytes, str]] = {
    "empty": (b"", "empty file"),
    "blank lines": (b"\r\n\r\n  \r\n", "empty file"),
    "missing columns": (b"Meeting ID,Topic\n123,Webinar\n",
                        "no participant table: expected a header row with"),
    "binary": (bytes(range(256)) * 8, "binary content (a NUL byte at offset 0)"),
    "pdf": (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\x00\x01", "binary content"),
    "workbook": (b"PK\x03\x04\x14\x00\x06\x00" + bytes(64), "an Excel workbook"),
    "inf duration": ((HEADER + GOOD_ROW + "Jean Koffi,jean@justice.gouv.ci,08:00,09:00,inf\n"
                      ).encode(), "report.csv:3: Duration (Minutes) (column 5): not a number "
                     "of minutes: 'inf'"),
    "nan duration": ((HEADER + "Jean,jean@justice.gouv.ci,08:00,09:00,NaN\n").encode(),
                     "report.csv:2: Duration (Minutes) (column 5): not a number"),
    "words for a duration": ((HEADER + "Jean,jean@j.ci,08:00,09:00,about an hour\n").encode(),
                             "'about an hour'"),
    "negative duration": ((HEADER + "Jean,jean@j.ci,08:00,09:00,-5\n").encode(),
                          "negative duration: '-5'"),
    "short row": ((HEADER + GOOD_ROW + "Broken row\n").encode(),
                  "report.csv:3: 1 column(s) where the header has 5 or more"),
    "broken UTF-16": (codecs.BOM_UTF16_LE + (HEADER + GOOD_ROW).encode("utf-16-le")
                      + b"\x00\xd8\x41\x00", "unreadable text"),
}


@pytest.mark.parametrize("case", sorted(BAD_REPORTS))
def test_a_report_that_cannot_be_read_is_refused_and_nothing_is_marked(
        case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`mailer attendance import` with each wrong file: exit 2, one line, store unchanged."""
    data, expected = BAD_REPORTS[case]
    settings = _setup(tmp_path, monkeypatch)
    store = Store(settings)
    store.migrate()
    _register(store, "awa.diop@justice.gouv.sn", "confirmed")
    _register(store, "ben@justice.gouv.sn", "confirmed")
    store.close()
    before = _dump(settings)
    (tmp_path / "report.csv").write_bytes(data)
    result = CliRunner().invoke(cli, ["attendance", "import", "report.csv", "--event",
                                      "africa-fr"], obj={})
    assert result.exit_code == 2, result.output
    assert expected in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert "Traceback" not in result.output
    assert _dump(settings) == before


def test_a_readable_utf16_report_is_imported(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _setup(tmp_path, monkeypatch)
    store = Store(settings)
    store.migrate()
    _register(store, "awa.diop@justice.gouv.sn", "confirmed")
    _register(store, "ben@justice.gouv.sn", "confirmed")
    (tmp_path / "report.csv").write_bytes((HEADER + GOOD_ROW).encode("utf-16"))
    result = CliRunner().invoke(cli, ["attendance", "import", "report.csv", "--event",
                                      "africa-fr"], obj={})
    assert result.exit_code == 0, result.output
    assert "africa-fr: 1 present, 1 absent, 0 too short, 0 not registered" in result.output
    assert _marks(store) == {"awa.diop@justice.gouv.sn": True, "ben@justice.gouv.sn": False}
    store.close()


def _setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A folder with a config, the shipped schedules and templates; the store's URL."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("MAILER_"):
            monkeypatch.delenv(name)
    shutil.copytree(ROOT / "schedules", tmp_path / "schedules")
    url = f"sqlite:///{tmp_path}/m.db"
    (tmp_path / "config.toml").write_text(f'[store]\nurl = "{url}"\n[paths]\n'
                                          f'templates = "{ROOT / "templates"}"\n',
                                          encoding="utf-8")
    return url


def _dump(url: str) -> list[tuple[object, ...]]:
    """Every registration row, every column: what "unchanged" compares."""
    store = Store(url)
    try:
        with store.transaction() as session:
            return [tuple(row) for row in session.execute(
                select(Registration.__table__).order_by(Registration.id))]
    finally:
        store.close()


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
