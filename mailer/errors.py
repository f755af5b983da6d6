"""The one error hierarchy of the mailer: every error it raises on purpose is a MailerError.

Like aiosmtplib's errors, each class also inherits the standard exception it stands for
(``ValueError``, ``OSError``...), so callers that only know the standard library still catch
them, and each carries the context (file, field, line, recipient) needed to act on it.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass


class MailerError(Exception):
    """Base class of every error the mailer raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input staff wrote: where it is and what to do about it."""

    file: str
    field: str | None
    message: str
    line: int | None = None
    warning: bool = False       # worth saying, but nothing refuses the input for it

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
        if self.field:
            where += f": {self.field}"
        return f"{where}: {'warning: ' if self.warning else ''}{self.message}"


def toml_error(exc: tomllib.TOMLDecodeError, text: str | None = None) -> tuple[str, int | None]:
    """The message and line of a TOML syntax error (before 3.14 only its text has them).

    Given the file's ``text``, a line whose value looks like a date says what a date must be:
    tomllib's own words for "2020-07-32T08:00:00Z" or "2020-07-09 08:00" are "Expected newline
    or end of document after a statement", which sends staff looking for a missing newline.
    """
    match = re.fullmatch(r"(.*?)(?: \(at line (\d+), column \d+\)| \(at end of document\))?",
                         str(exc), re.S)
    message = getattr(exc, "msg", None) or (match[1] if match else str(exc))
    line = getattr(exc, "lineno", None) or (int(match[2]) if match and match[2] else None)
    if text is not None and line is not None:
        source = text.splitlines()[line - 1] if line <= len(text.splitlines()) else ""
        date = _DATE_VALUE.search(source)
        if date:
            message = (f"{date['value'].strip()!r} is not a date and time TOML reads: write "
                       "it like 2020-07-09T08:00:00Z (a real day, hours 00-23, seconds "
                       "included, then Z for UTC or an offset like +02:00)")
    return message, line


# "start = 2020-07-32T08:00:00Z", "end = 2020-07-09 25:00", "start = 09/07/2020 08:00".
_DATE_VALUE = re.compile(r"=\s*(?P<value>\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}[^#,}\]]*)")


class InvalidInput(MailerError, ValueError):
    """Staff input (configuration, schedules, templates) is invalid; exit code 2."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class ConfigError(InvalidInput):
    """The configuration file or environment is invalid."""


class ScheduleError(InvalidInput):
    """One or more schedule files are invalid."""


class TemplateError(InvalidInput):
    """A message template is missing or fails to render."""


class UsageError(MailerError, ValueError):
    """The command line was used wrongly (unknown event, bad option value); exit code 2."""


class StoreMissing(UsageError):
    """The SQLite file ``store.url`` names does not exist, and nothing asked to create it."""


class BadMail(MailerError, ValueError):
    """An inbound message cannot be handled; it is quarantined with this reason."""


class StoreError(MailerError, RuntimeError):
    """The database refused an operation (not a constraint the rules expect)."""


class TransportError(MailerError, OSError):
    """A mail server (IMAP or SMTP) failed; may be retried."""


class InboxError(TransportError):
    """The IMAP server failed or refused us."""


class SendError(TransportError):
    """An SMTP transaction failed. ``permanent`` is True for 5xx answers."""

    def __init__(self, message: str, *, code: int | None = None, permanent: bool = False,
                 recipient: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.permanent = permanent
        self.recipient = recipient


class TemporarySendError(SendError):
    """A 4xx answer or a dropped connection: the message is retried with back-off."""


class PermanentSendError(SendError):
    """A 5xx answer: the message fails for good and the recipient is marked."""

    def __init__(self, message: str, *, code: int | None = None,
                 recipient: str | None = None) -> None:
        super().__init__(message, code=code, permanent=True, recipient=recipient)


class WorkerError(MailerError, RuntimeError):
    """A job failed in a worker process; the text is the original "Type: message"."""


class LeaseLost(MailerError, RuntimeError):
    """This instance no longer holds a lease it acted under (another instance took it over
    after it failed to renew in time): what it was about to decide is left to the holder."""
