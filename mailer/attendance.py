"""Attendance: Zoom participant reports read from CSV, and who attended marked on registrations.

Zoom exports one row per connection (people who drop and rejoin have several), sometimes
after a meeting-summary block; reading finds the participant table and adds up each
address's minutes. A report is read as a stream (a 1.5-million-row report is never held in
memory) and refused whole when it cannot be read: empty, binary, undecodable, without the
participant table, or with a row whose duration is not a number of minutes. The refusal
names the line and the column, and the store is left as it was. Marking is one transaction.
"""

from __future__ import annotations

import codecs
import csv
import math
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from mailer.domain import Status, normalise_email
from mailer.errors import InvalidInput, Problem
from mailer.store import Registration

log = structlog.get_logger(__name__)

DURATION = "Duration (Minutes)"
# How far down the header row may be (a meeting-summary block comes first).
_HEADER_WITHIN = 100
# Unknown addresses kept to show; beyond it they are only counted.
_UNKNOWN_SHOWN = 10_000


@dataclass(frozen=True)
class Attendee:
    """One address seen in the meeting, with its connections' minutes added up."""

    email: str
    name: str
    minutes: int
    sessions: int = 1


@dataclass(frozen=True)
class AttendanceResult:
    """What an import changed: registrants marked present, absent, too briefly there."""

    matched: int
    absent: int
    too_short: int
    unknown: tuple[str, ...]   # addresses in the report that registered for nothing here
    unknown_more: int = 0      # further unknown addresses, counted but not listed
    warnings: tuple[Problem, ...] = ()


@dataclass(frozen=True)
class _Columns:
    name: int
    email: int
    minutes: int
    labels: tuple[str, ...]

    @property
    def needed(self) -> int:
        return max(self.name, self.email, self.minutes) + 1


@dataclass
class Totals:
    """What a report says: minutes per address (only the wanted ones, when given)."""

    attendees: dict[str, Attendee] = field(default_factory=dict)
    unknown: dict[str, None] = field(default_factory=dict)   # ordered set, capped
    unknown_more: int = 0
    warnings: list[Problem] = field(default_factory=list)
    rows: int = 0


def read_report(path: Path, wanted: Collection[str] | None = None) -> Totals:
    """Read a participant report as a stream; raise InvalidInput when it cannot be read.

    With ``wanted`` (normalised addresses), minutes are kept for those addresses only and
    the others are listed as unknown: memory follows the registrations, not the report.
    """
    source = str(path)
    encoding = _encoding(path)
    delimiter, header_at, columns = _find_table(path, encoding)
    totals = Totals()
    with _rows(path, encoding, delimiter) as rows:
        for number, (line, cells) in enumerate(rows):
            if number <= header_at or not any(cell.strip() for cell in cells):
                continue
            read = _read_row(cells, columns, source, line)
            if isinstance(read, Problem):
                totals.warnings.append(read)
                continue
            email, name, minutes = read
            totals.rows += 1
            if wanted is not None and email not in wanted:
                if email in totals.unknown:
                    continue
                if len(totals.unknown) < _UNKNOWN_SHOWN:
                    totals.unknown[email] = None
                else:
                    totals.unknown_more += 1
                continue
            seen = totals.attendees.get(email)
            totals.attendees[email] = Attendee(email, name, minutes) if seen is None else \
                Attendee(email, seen.name or name, seen.minutes + minutes, seen.sessions + 1)
    return totals


def read_attendance(path: Path) -> tuple[list[Attendee], list[Problem]]:
    """Every attendee of a report file and the rows skipped (raises InvalidInput when the
    report cannot be read)."""
    totals = read_report(path)
    return list(totals.attendees.values()), totals.warnings


def import_report(session: Session, event_id: str, path: Path, *,
                  min_minutes: int = 0) -> AttendanceResult:
    """Read ``path`` and mark who attended ``event_id``, in the caller's transaction.

    The whole report is read before anything is marked, so a report refused half-way
    (InvalidInput) changes nothing.
    """
    registered = {normalise_email(email) for email in session.scalars(
        select(Registration.email).where(Registration.event_id == event_id))}
    totals = read_report(path, registered)
    result = import_attendance(session, event_id, totals.attendees.values(),
                               min_minutes=min_minutes)
    return AttendanceResult(result.matched, result.absent, result.too_short,
                            tuple(totals.unknown), totals.unknown_more,
                            tuple(totals.warnings))


def import_attendance(session: Session, event_id: str, attendees: Iterable[Attendee], *,
                      min_minutes: int = 0) -> AttendanceResult:
    """Mark who attended ``event_id``: found and long enough True, confirmed but missing False.

    Addresses are compared case-insensitively. Registrants who were not confirmed and are
    not in the report are left as they were; importing again overwrites the marks.
    """
    minutes: dict[str, int] = {}
    for attendee in attendees:
        email = normalise_email(attendee.email)
        minutes[email] = minutes.get(email, 0) + attendee.minutes
    registrations = session.scalars(select(Registration)
                                    .where(Registration.event_id == event_id))
    matched = absent = too_short = 0
    registered: set[str] = set()
    for reg in registrations:
        email = normalise_email(reg.email)
        registered.add(email)
        if email in minutes:
            reg.attended = minutes[email] >= min_minutes
            if reg.attended:
                matched += 1
            else:
                too_short += 1
        elif reg.status == Status.CONFIRMED:
            reg.attended = False
            absent += 1
    unknown = tuple(sorted(set(minutes) - registered))
    log.info("attendance imported", event_id=event_id, matched=matched, absent=absent,
             too_short=too_short, unknown=len(unknown))
    return AttendanceResult(matched, absent, too_short, unknown)


# --- reading the file -------------------------------------------------------------------

def _refuse(path: Path, message: str, line: int | None = None,
            column: str | None = None) -> InvalidInput:
    return InvalidInput([Problem(str(path), column, message, line)])


def _encoding(path: Path) -> str:
    """The text encoding of a report, or InvalidInput for a file that is no text at all.

    Zoom writes UTF-8 (often with a BOM); Excel re-saves as UTF-16 ("Unicode text") or in
    the Windows code page. Anything with NUL bytes that is not UTF-16 is binary.
    """
    try:
        with path.open("rb") as handle:
            head = handle.read(65536)
    except OSError as exc:
        raise _refuse(path, f"cannot read: {exc.strerror or exc}") from None
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    elif head.startswith(codecs.BOM_UTF8):
        encoding = "utf-8-sig"
    elif b"\x00" in head:
        if head.startswith(b"PK\x03\x04"):
            raise _refuse(path, "an Excel workbook, not a CSV file: export the Zoom report "
                          "as CSV")
        if len(head) > 8 and head[1::2].count(0) > len(head) // 4 and 0 not in head[0:8:2]:
            encoding = "utf-16-le"          # UTF-16 without its byte-order mark
        elif len(head) > 8 and head[0::2].count(0) > len(head) // 4 and 0 not in head[1:8:2]:
            encoding = "utf-16-be"
        else:
            raise _refuse(path, f"binary content (a NUL byte at offset {head.index(0)}), "
                          "not a CSV participant report")
    else:
        decoder = codecs.getincrementaldecoder("utf-8")()
        try:
            decoder.decode(head, final=len(head) < 65536)
            encoding = "utf-8"
        except UnicodeDecodeError:
            encoding = "cp1252"             # the same file after a save in Excel
    text = head.decode(encoding, errors="replace").lstrip("\ufeff")
    if not text.strip():
        raise _refuse(path, "empty file: expected a Zoom participant report (CSV)")
    controls = [ch for ch in text[:4096] if ord(ch) < 32 and ch not in "\t\r\n"]
    if controls:
        raise _refuse(path, f"binary content (control character {ord(controls[0]):#04x}), "
                      "not a CSV participant report")
    return encoding


@contextmanager
def _rows(path: Path, encoding: str, delimiter: str
          ) -> Iterator[Iterator[tuple[int, list[str]]]]:
    """Each CSV row with the line it ends on, read as a stream."""
    with path.open("r", encoding=encoding, errors="strict", newline="") as handle:
        yield _numbered(csv.reader(_checked(handle, path), delimiter=delimiter), path)


def _checked(handle: TextIO, path: Path) -> Iterator[str]:
    """The lines of ``handle``; a byte the encoding cannot read refuses the file there."""
    number = 0
    while True:
        try:
            line = handle.readline()
        except UnicodeDecodeError as exc:
            raise _refuse(path, f"unreadable text ({exc.reason}): save the report as CSV "
                          "UTF-8", number + 1) from None
        if not line:
            return
        number += 1
        yield line


def _numbered(reader: Iterator[list[str]], path: Path) -> Iterator[tuple[int, list[str]]]:
    try:
        for cells in reader:
            yield reader.line_num, cells  # type: ignore[attr-defined]
    except csv.Error as exc:
        raise _refuse(path, f"not a readable CSV row: {exc}",
                      reader.line_num) from None  # type: ignore[attr-defined]


def _find_table(path: Path, encoding: str) -> tuple[str, int, _Columns]:
    """(delimiter, index of the header row, its columns) of the participant table."""
    # Zoom writes commas; Excel re-saves with semicolons in some locales, tabs as UTF-16.
    for delimiter in (",", ";", "\t"):
        with _rows(path, encoding, delimiter) as rows:
            head = [cells for _, (_line, cells) in zip(range(_HEADER_WITHIN), rows,
                                                       strict=False)]
        found = _find_header(head)
        if found is not None:
            return delimiter, found[0], found[1]
    raise _refuse(path, "no participant table: expected a header row with "
                  f"\"Name (Original Name)\", \"User Email\" and \"{DURATION}\"")


def _find_header(rows: Sequence[list[str]]) -> tuple[int, _Columns] | None:
    """The participant table's header row: the first with name, email and duration columns.

    The meeting-summary block above it has an email, a duration and a participant count
    too, but a meeting id and no name.
    """
    for index, cells in enumerate(rows):
        labels = [cell.strip().lstrip("\ufeff").lower() for cell in cells]
        if "meeting id" in labels:
            continue
        name = _first(labels, lambda c: c == "participant" or c.startswith(
            ("name", "user name", "display name")))
        email = _first(labels, lambda c: "email" in c or "e-mail" in c)
        duration = _first(labels, lambda c: c.startswith(("duration", "total duration",
                                                          "time in session")))
        if name is not None and email is not None and duration is not None:
            return index, _Columns(name, email, duration,
                                   tuple(cell.strip().lstrip("\ufeff") for cell in cells))
    return None


def _first(labels: list[str], test: Callable[[str], bool]) -> int | None:
    return next((position for position, label in enumerate(labels) if test(label)), None)


def _read_row(cells: list[str], columns: _Columns, source: str, line: int
              ) -> tuple[str, str, int] | Problem:
    """(email, name, minutes) of one row; a row without an address is a warning (it cannot
    be matched: a phone participant); anything else unreadable refuses the report."""
    if len(cells) < columns.needed:
        raise InvalidInput([Problem(source, None, f"{len(cells)} column(s) where the header "
                                    f"has {columns.needed} or more", line)])
    name = cells[columns.name].strip()
    email = normalise_email(cells[columns.email])
    if "@" not in email:
        shown = f" ({email!r})" if email else ""
        return Problem(source, columns.labels[columns.email], f"no email address{shown}: "
                       "this participant cannot be matched to a registration", line)
    text = cells[columns.minutes].strip()
    label = f"{columns.labels[columns.minutes]} (column {columns.minutes + 1})"
    try:
        value = float(text.replace(",", "."))
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        what = "negative duration" if value < 0 else "not a number of minutes"
        raise InvalidInput([Problem(source, label, f"{what}: {text!r}", line)])
    return email, name, round(value)
