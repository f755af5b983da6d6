"""Attendance: Zoom participant reports read from CSV, and who attended marked on registrations.

Zoom exports one row per connection (people who drop and rejoin have several), sometimes
after a meeting-summary block; reading finds the participant table, adds up each address's
minutes and reports every unreadable row with its line. Marking is one store transaction.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from mailer.domain import Status, normalise_email
from mailer.errors import Problem
from mailer.store import Registration

log = structlog.get_logger(__name__)


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


@dataclass(frozen=True)
class _Columns:
    name: int
    email: int
    minutes: int


def read_attendance(path: Path) -> tuple[list[Attendee], list[Problem]]:
    """The attendees of a Zoom participant report file, and every row that could not be read."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return [], [Problem(str(path), None, f"cannot read: {exc.strerror or exc}")]
    try:
        text = raw.decode("utf-8-sig")   # Zoom writes UTF-8, often with a byte-order mark
    except UnicodeDecodeError:
        text = raw.decode("cp1252", errors="replace")  # the same file after a save in Excel
    return parse_attendance(text, str(path))


def parse_attendance(text: str, source: str = "<attendance>"
                     ) -> tuple[list[Attendee], list[Problem]]:
    """The attendees in the text of a Zoom participant report (see ``read_attendance``)."""
    # Excel in some locales saves with semicolons; Zoom itself always uses commas.
    for delimiter in (",", ";"):
        rows = list(_rows(text, delimiter))
        found = _find_header(rows)
        if found is not None:
            break
    else:
        return [], [Problem(source, None, "no participant table: expected a header row with "
                            "\"Name (Original Name)\", \"User Email\" and "
                            "\"Duration (Minutes)\"")]
    index, columns = found
    problems: list[Problem] = []
    totals: dict[str, Attendee] = {}
    for line, cells in rows[index + 1:]:
        if not any(cell.strip() for cell in cells):
            continue
        read = _read_row(cells, columns, source, line)
        if isinstance(read, Problem):
            problems.append(read)
            continue
        email, name, minutes = read
        seen = totals.get(email)
        totals[email] = Attendee(email, name, minutes) if seen is None else Attendee(
            email, seen.name or name, seen.minutes + minutes, seen.sessions + 1)
    return list(totals.values()), problems


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


def _rows(text: str, delimiter: str) -> Iterable[tuple[int, list[str]]]:
    """Each CSV row with the line it ends on (a quoted field may span lines)."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    for cells in reader:
        yield reader.line_num, cells


def _find_header(rows: Sequence[tuple[int, list[str]]]) -> tuple[int, _Columns] | None:
    """The participant table's header row: the first with name, email and duration columns.

    The meeting-summary block above it has an email, a duration and a participant count
    too, but a meeting id and no name.
    """
    for index, (_line, cells) in enumerate(rows):
        labels = [cell.strip().lstrip("\ufeff").lower() for cell in cells]
        if "meeting id" in labels:
            continue
        name = _first(labels, lambda c: c == "participant" or c.startswith(
            ("name", "user name", "display name")))
        email = _first(labels, lambda c: "email" in c or "e-mail" in c)
        duration = _first(labels, lambda c: c.startswith(("duration", "total duration",
                                                          "time in session")))
        if name is not None and email is not None and duration is not None:
            return index, _Columns(name, email, duration)
    return None


def _first(labels: list[str], test: Callable[[str], bool]) -> int | None:
    return next((position for position, label in enumerate(labels) if test(label)), None)


def _read_row(cells: list[str], columns: _Columns, source: str, line: int
              ) -> tuple[str, str, int] | Problem:
    """(email, name, minutes) of one participant row, or the Problem that stops reading it."""
    needed = max(columns.name, columns.email, columns.minutes) + 1
    if len(cells) < needed:
        return Problem(source, None, f"{len(cells)} columns where the header has {needed} "
                       "or more", line)
    name = cells[columns.name].strip()
    email = normalise_email(cells[columns.email])
    if "@" not in email:
        shown = f" ({email!r})" if email else ""
        return Problem(source, "User Email", f"no email address{shown}: this participant "
                       "cannot be matched to a registration", line)
    text = cells[columns.minutes].strip()
    try:
        minutes = round(float(text.replace(",", ".")))
    except ValueError:
        return Problem(source, "Duration (Minutes)", f"not a number of minutes: {text!r}", line)
    if minutes < 0:
        return Problem(source, "Duration (Minutes)", f"negative duration: {text!r}", line)
    return email, name, minutes
