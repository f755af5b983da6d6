"""Mail that must never be answered (RFC 3834): bounces and auto-replies, and how to tell them.

``classify_automatic`` is a pure function of the message. Bounces are checked first (a bounce
is automatic too, but it also says which addresses failed); then the signs of auto-replies,
vacation notices, read receipts and list traffic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.message import Message
from email.utils import parseaddr
from typing import Literal

from flufl.bounce import all_failures


@dataclass(frozen=True)
class Automatic:
    """Why a message is automatic; for a bounce, which addresses failed and whether for now only."""

    kind: Literal["auto_reply", "bounce"]
    reason: str
    bounced: tuple[str, ...] = ()
    temporary: bool = False


# Subjects of non-delivery reports from the common servers, in English, French and Spanish.
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|not (?:been |be )?delivered|delivery (?:status )?notification"
    r"|delivery (?:failure|failed|report|problem|has failed)|failure (?:notice|delivery)"
    r"|mail delivery|returned mail|mail system error|failed mail|non-?delivery|message delayed"
    r"|delayed mail|delivery delayed|mail error|user unknown"
    r"|non remis|non distribu|échec de (?:la )?remise"
    r"|no se (?:puede|pudo) entregar|no entregado|error de entrega"
    r"|notificación de estado de entrega",
    re.IGNORECASE,
)
# Out-of-office subjects. "Absence" only as the prefix clients write ("Absence : ...") or as
# "absent(e) du bureau": a participant's "Absence au webinaire" is a cancellation to read.
_AUTO_REPLY_SUBJECT = re.compile(
    r"out of (?:the )?office|automatic reply|auto[- ]?reply|autoreply|auto[- ]?response"
    r"|réponse automatique|absente? du bureau|^\s*absence\s*:|respuesta automática"
    r"|fuera de la oficina|fuera de oficina|ausente de la oficina|respuesta de ausencia",
    re.IGNORECASE,
)
_REPLY_PREFIX = re.compile(r"\s*(?:re|aw|rv|r|ref|réf|fw|fwd|tr)\s*:", re.IGNORECASE)
_DAEMONS = frozenset({"mailer-daemon", "postmaster", "mail-daemon", "mailerdaemon", "mdaemon"})
# Display names of the bounce senders that use an ordinary-looking address.
_DAEMON_NAMES = re.compile(r"mail delivery (?:system|subsystem)|mail administrator"
                           r"|system administrator|postmaster|mailer-daemon", re.IGNORECASE)
_BULK_PRECEDENCE = frozenset({"bulk", "junk", "list", "auto_reply"})


def _header(msg: Message, name: str) -> str | None:
    """A header's value as text, or None; never raises on a malformed header."""
    try:
        value = msg.get(name)
    except (ValueError, TypeError, IndexError, AttributeError):
        return None  # the email package may fail on badly encoded headers
    return None if value is None else str(value)


def _address(msg: Message, name: str) -> tuple[str, str] | None:
    """(display name, lower-case address) of an address header; address "" for "<>"."""
    value = _header(msg, name)
    if value is None:
        return None
    if re.search(r"<\s*>", value):
        return parseaddr(value)[0], ""
    display, address = parseaddr(value)
    return display, address.lower()


def _failed_addresses(msg: Message) -> tuple[set[str], set[str]]:
    """(permanent, temporary) failing addresses that flufl.bounce finds, lower-case."""
    try:
        temporary, permanent = all_failures(msg)
    except Exception:  # a heuristic detector choking on odd mail is no reason to stop
        return set(), set()

    def text(found: set[bytes]) -> set[str]:
        return {a.decode("utf-8", "replace").lower() for a in found if a}

    return text(permanent), text(temporary)


def _bounce_reason(msg: Message, failures_found: bool) -> str | None:
    """Which rule says the message is a non-delivery report, if one does."""
    if (msg.get_content_type() == "multipart/report"
            and (msg.get_param("report-type") or "").lower() == "delivery-status"):
        return "delivery status notification (RFC 3464)"
    for header in ("From", "Return-Path", "Sender"):
        found = _address(msg, header)
        if found is None:
            continue
        display, address = found
        local = address.partition("@")[0]
        if local in _DAEMONS:
            return f"{header} is {local}"
        if header == "From" and address == "":
            return "null sender <>"
        if header == "From" and _DAEMON_NAMES.search(display):
            return f"From is {display}"
    subject = _header(msg, "Subject") or ""
    # A person's "Re: mail delivery of the pack" is not a bounce, but a few servers prefix
    # "RE:" too: then the failed addresses flufl.bounce finds in the body must confirm it.
    if _BOUNCE_SUBJECT.search(subject) and (failures_found or not _REPLY_PREFIX.match(subject)):
        return "bounce subject"
    return None


def _has_calendar(msg: Message) -> bool:
    """True when the message carries an iCalendar part (an invitation reply)."""
    return any(part.get_content_type() == "text/calendar" for part in msg.walk())


def _auto_reply_reason(msg: Message) -> str | None:
    """Which RFC 3834 header or out-of-office sign the message carries, if any."""
    auto_submitted = (_header(msg, "Auto-Submitted") or "").split(";")[0].strip().lower()
    if auto_submitted and auto_submitted != "no":
        return f"Auto-Submitted: {auto_submitted}"
    for name in ("X-Autoreply", "X-Autorespond", "X-Autoresponder"):
        if _header(msg, name) is not None:
            return f"{name} header"
    for name in ("Precedence", "X-Precedence"):
        precedence = (_header(msg, name) or "").strip().lower()
        if precedence in _BULK_PRECEDENCE:
            return f"Precedence: {precedence}"
    for name in ("List-Id", "List-Unsubscribe", "List-Post"):
        if _header(msg, name) is not None:
            return f"mailing list ({name})"
    if msg.get_content_type() == "multipart/report":
        return "report (read receipt or other notification)"
    suppress = (_header(msg, "X-Auto-Response-Suppress") or "").lower()
    # Exchange marks its own out-of-office notices "All"; a calendar reply ("Accepted: ...")
    # from Outlook may ask for no OOF too, and it is a person's answer we must read.
    if re.search(r"\b(?:oof|all)\b", suppress) and not _has_calendar(msg):
        return "X-Auto-Response-Suppress: " + suppress
    if _AUTO_REPLY_SUBJECT.search(_header(msg, "Subject") or ""):
        return "out-of-office subject"
    return None


def _null_return_path(msg: Message) -> bool:
    """True when the envelope sender was "<>" (bounces, but also some auto-replies)."""
    found = _address(msg, "Return-Path")
    return found is not None and found[1] == ""


def classify_automatic(msg: Message) -> Automatic | None:
    """Whether ``msg`` is a bounce or an auto-reply that must not be answered, and why."""
    # flufl.bounce reads the whole body with a dozen detectors: run it only when a cheap sign
    # (report type, daemon sender, bounce subject, null Return-Path) could make this a bounce.
    # Same verdicts, a sixth of the time per ordinary reply.
    if _bounce_reason(msg, True) is None and not _null_return_path(msg):
        # No sign at all (most mail): no bounce, since _bounce_reason with no failures found
        # is stricter still and the Return-Path is not null; only an auto-reply is left.
        reason = _auto_reply_reason(msg)
        return Automatic("auto_reply", reason) if reason else None
    permanent, temporary = _failed_addresses(msg)
    bounced = tuple(sorted(permanent | temporary))
    # flufl.bounce alone does not decide: its looser detectors (LLNL's) find "failed" addresses
    # in ordinary replies that list recipients. It says which addresses failed.
    reason = _bounce_reason(msg, bool(bounced))
    if reason is None and _auto_reply_reason(msg) is None and _null_return_path(msg):
        # Exchange sends out-of-office notices with a null envelope sender too, so "<>" counts
        # as a bounce only when nothing says auto-reply.
        reason = "null Return-Path <>"
    if reason:
        return Automatic("bounce", reason, bounced, temporary=bool(temporary) and not permanent)
    reason = _auto_reply_reason(msg)
    return Automatic("auto_reply", reason) if reason else None
