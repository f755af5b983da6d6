"""Spreadsheets for staff: registrations and totals as an .xlsx workbook, safe to open in Excel.

Names and organisations come from mail, so no cell may become a formula (CSV/formula
injection): in the workbook every text is stored as a string with Excel's quote prefix,
and ``safe_cell`` gives the same protection to CSV output.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet

TOTAL_COLUMNS: tuple[str, ...] = ("event", "country", "limit", "confirmed", "waiting", "review",
                                  "rejected", "cancelled")
# What makes Excel, LibreOffice or Google Sheets read a cell as a formula (OWASP's list).
FORMULA_STARTS: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")
_MIN_WIDTH, _MAX_WIDTH = 8, 60


def safe_cell(value: Any) -> Any:
    """``value`` made safe for a CSV cell: text a spreadsheet would run gets a leading ``'``."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def workbook(rows: list[dict[str, Any]], totals: list[dict[str, Any]],
             columns: Sequence[str]) -> bytes:
    """An .xlsx with a "Registrations" sheet (one row per registration) and a "Totals" sheet."""
    book = Workbook()
    registrations = book.active
    assert registrations is not None  # a new Workbook always has one sheet
    registrations.title = "Registrations"
    _fill(registrations, list(columns), rows)
    _fill(book.create_sheet("Totals"), list(TOTAL_COLUMNS), totals)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def _fill(sheet: Worksheet, columns: list[str], rows: list[dict[str, Any]]) -> None:
    """Header in bold, frozen and filterable; one row per dict; columns as wide as their text."""
    bold = Font(bold=True)
    widths = [len(name) for name in columns]
    for col, name in enumerate(columns, start=1):
        sheet.cell(row=1, column=col, value=name).font = bold
    for line, row in enumerate(rows, start=2):
        for col, name in enumerate(columns, start=1):
            shown = _put(sheet, line, col, row.get(name))
            widths[col - 1] = max(widths[col - 1], len(shown))
    sheet.freeze_panes = "A2"
    sheet.auto_filter.ref = f"A1:{get_column_letter(len(columns))}{max(len(rows) + 1, 1)}"
    for col, width in enumerate(widths, start=1):
        sheet.column_dimensions[get_column_letter(col)].width = min(
            max(width + 2, _MIN_WIDTH), _MAX_WIDTH)


def _put(sheet: Worksheet, line: int, col: int, value: Any) -> str:
    """Write one value; text is always a string, never a formula. Return it as shown."""
    cell = sheet.cell(row=line, column=col)
    if value is None:
        return ""
    if isinstance(value, bool | int | float):
        cell.value = value
        return str(value)
    text = ILLEGAL_CHARACTERS_RE.sub("", str(value))  # control characters corrupt the file
    cell.value = text
    # openpyxl would store "=..." as a formula; a string cell with Excel's quote prefix stays
    # text even when someone edits it in Excel.
    cell.data_type = "s"
    if text.startswith(FORMULA_STARTS):
        cell.quotePrefix = True
    return text
