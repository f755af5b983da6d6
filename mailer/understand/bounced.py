"""Which addresses a non-delivery report says failed, and whether only for now.

In order of trust: the machine-readable report (RFC 3464's ``Final-Recipient`` or
``Original-Recipient`` of a ``message/delivery-status`` part, Exim's and others'
``X-Failed-Recipients`` header); then what flufl.bounce's detectors read from the dozens of
formats servers write; then the common text forms flufl.bounce misses (Postfix's and qmail's
"<address>: ...", Exim's "The following address(es) failed:", Sendmail's "address... User
unknown", Amazon SES's JSON notifications). Every address is validated before it is kept:
one address, a real domain shape, no spaces, pipes or paths (Exim reports a failed pipe
as "|/usr/bin/prog user@x" and a failed file delivery as a path).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from email.message import Message
from email.utils import getaddresses

from flufl.bounce import all_failures

from mailer.understand.message import bounded, valid_address

MAX_TEXT = 20_000           # characters of a text part read for addresses
MAX_ADDRESSES = 50          # addresses taken from one report
FLUFL_PART = 16_000         # characters of each part flufl.bounce's detectors read

# flufl.bounce logs a traceback for each detector that fails on odd mail, and carries on; a
# hostile bounce would fill the daemon's log with them. What matters is recorded with the
# message (its reason), so only its critical messages are let through.
logging.getLogger("flufl.bounce").setLevel(logging.CRITICAL)

@dataclass(frozen=True)
class Failures:
    """The failed addresses of a report: permanent ones, and those only delayed.

    ``delivered_only``: a delivery report whose recipients were all delivered (a receipt).
    """

    permanent: frozenset[str] = frozenset()
    temporary: frozenset[str] = frozenset()
    delivered_only: bool = False

    def __bool__(self) -> bool:
        return bool(self.permanent or self.temporary)


def _valid_set(values: object) -> set[str]:
    found = set()
    for value in values:  # type: ignore[attr-defined]
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        address = valid_address(text)
        if address:
            found.add(address)
    return found


def _recipient_field(value: str | None) -> str | None:
    """The address of a ``Final-Recipient: rfc822; user@host`` field, if it is one."""
    if not value:
        return None
    _kind, _sep, address = str(value).partition(";")
    return valid_address(address if _sep else value)


_DELIVERED = frozenset({"delivered", "relayed", "expanded", "deliverable"})


def _delivery_status(msg: Message) -> Failures:
    """The recipients RFC 3464 reports in ``message/delivery-status`` parts."""
    permanent: set[str] = set()
    temporary: set[str] = set()
    successes = 0
    for part in msg.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        blocks = part.get_payload()
        if not isinstance(blocks, list):
            continue
        for block in blocks[:MAX_ADDRESSES + 1]:
            if isinstance(block, Message):
                for address, action, status in _recipients_of(block):
                    if action in _DELIVERED or (not action and status.startswith("2")):
                        successes += 1
                    # "failed" is final whatever the status says (RFC 3464, 2.3.3); servers
                    # also write "failure" or "error".
                    elif action == "delayed" or (not action and status.startswith("4")):
                        temporary.add(address)
                    else:
                        permanent.add(address)
    return Failures(frozenset(permanent), frozenset(temporary - permanent),
                    delivered_only=successes > 0 and not permanent and not temporary)


def _recipients_of(block: Message) -> list[tuple[str, str, str]]:
    """(address, action, status) of each recipient of one block of a DSN.

    Read from the raw fields in order, a new recipient at each repeated field (a server
    that omits the blank line between recipients makes them one block): raw, because an
    encoded word in an address is part of the address, not text to decode.
    """
    out: list[tuple[str, str, str]] = []
    current: dict[str, str] = {}

    def close() -> None:
        # Original-Recipient is the address the mailer sent to; Final-Recipient may be where
        # a forward led (a mailbox the participant never gave).
        address = (_recipient_field(current.get("original-recipient"))
                   or _recipient_field(current.get("final-recipient")))
        if address:
            out.append((address, current.get("action", "").strip().lower(),
                        current.get("status", "").strip()))

    for name, value in block.raw_items():
        key = name.lower()
        if key in current and key in ("final-recipient", "original-recipient", "action"):
            close()
            current = {}
        current[key] = str(value)
    close()
    return out


def _failed_header(msg: Message) -> set[str]:
    """Exim's (and others') ``X-Failed-Recipients: a@x, b@y``."""
    found: set[str] = set()
    for name, value in msg.raw_items():
        if name.lower() == "x-failed-recipients":
            found |= _valid_set(str(value).replace(";", ",").split(","))
    return found


def _flufl(msg: Message) -> Failures:
    try:
        # Its detectors run a dozen regular expressions over every line of every part: on
        # the first FLUFL_PART characters of each (where reports say what failed) that work
        # stays bounded; on 64 kB of short lines it took 0.3 s.
        temporary, permanent = all_failures(bounded(msg, FLUFL_PART))
    except Exception:  # a heuristic detector choking on odd mail is no reason to stop
        return Failures()
    permanent_found = _valid_set(permanent)
    return Failures(frozenset(permanent_found), frozenset(_valid_set(temporary)
                                                          - permanent_found))


# Text forms flufl.bounce misses: "<user@host>: ..." at a line's start (Postfix, qmail),
# "user@host... User unknown" (Sendmail), an address starting a line under a sentence saying
# the addresses below failed (Exim, Exchange, OpenSMTPD, Amazon WorkMail, Notes, m-FILTER),
# "error delivering your mail to <user@host>" (DragonFly), an SMTP reply quoting the address
# ("550 unknown user <user@host>"), "RCPT TO:<user@host>" in the server's transcript. Every
# pattern is anchored or bounded: linear in the line.
_ANGLED_AT_START = re.compile(r"[ \t]{0,8}<([^<>\s]{3,254})>[ \t]?:")
_SENDMAIL = re.compile(r"[ \t]{0,8}<?([^<>\s]{3,254}?)>?\.\.\. ")
_RCPT = re.compile(r"RCPT TO: ?<([^<>\s]{3,254})>", re.IGNORECASE)
_SMTP_REPLY = re.compile(r"[ \t]{0,8}[45]\d\d[ -](?:[45]\.\d{1,3}\.\d{1,3} )?[^<>]{0,80}"
                         r"<([^<>\s]{3,254})>")
_DELIVERING_TO = re.compile(
    r"(?:delivering|deliver|delivery|delivered|sending|send|sent) (?:your |the )?"
    r"(?:mail |message |e-?mail )?to:? <([^<>\s]{3,254})>", re.IGNORECASE)
_FIRST_WORD = re.compile(r"[ \t]{0,8}<?([^<>\s:,;]{3,254})>?(?:[ \t:,;]|$)")
_FAILED_BELOW = re.compile(
    r"(?:following|these) (?:list of )?(?:address|recipient)e?s?(?:\(es\))?"
    r"(?: (?:failed|had permanent|could not|was not|were not)|:)"
    r"|(?:could not|couldn't|cannot) be delivered to|delivery to the following"
    r"|failure reasons|failed to (?:send|deliver)|送信に失敗|no se pudo entregar"
    r"|n'a pas pu être remis|konnte nicht zugestellt",
    re.IGNORECASE)
# Where a report starts quoting the message it returns: its To is then the address that
# failed (the mailer sends each message to one recipient).
_RETURNED = re.compile(
    r"original message|returned message|unsent message|undelivered message"
    r"|message headers follow|copy of the (?:original )?message|headers of the original",
    re.IGNORECASE)
_TO_LINE = re.compile(r"To:[ \t]*(.{3,300})", re.IGNORECASE)
# A returned message that went through a list: its To is the list, not who failed.
_LIST_MAIL = re.compile(r"(?:List-[\w-]{1,20}|X-BeenThere|Precedence|Mailing-List):",
                        re.IGNORECASE)


def _text_parts(msg: Message) -> list[str]:
    texts: list[str] = []
    for part in msg.walk():
        if part.get_content_maintype() == "message" and part is not msg:
            continue
        if part.get_content_type() not in ("text/plain", "text/html") or part.is_multipart():
            continue
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            texts.append(payload[:MAX_TEXT].decode(part.get_content_charset() or "utf-8",
                                                   "replace")
                         if _known_charset(part.get_content_charset()) else
                         payload[:MAX_TEXT].decode("utf-8", "replace"))
    return texts


def _known_charset(name: str | None) -> bool:
    import codecs
    if not name:
        return True
    try:
        codecs.lookup(name)
    except LookupError:
        return False
    return True


def _from_text(msg: Message, ignore: set[str]) -> set[str]:
    """Failed addresses in the text forms above; else the To of the returned message."""
    found: list[str] = []
    returned: list[str] = []
    listed = False
    for text in _text_parts(msg):
        below = quoting = False
        for line in text.replace("\r\n", "\n").split("\n")[:2_000]:
            line = line[:400]
            candidates = [m.group(1) for p in (_ANGLED_AT_START, _SENDMAIL, _SMTP_REPLY)
                          if (m := p.match(line))]
            candidates += _RCPT.findall(line) + _DELIVERING_TO.findall(line)
            if below and not quoting:
                match = _FIRST_WORD.match(line)
                if match and "@" in match.group(1):
                    candidates.append(match.group(1))
            if _FAILED_BELOW.search(line):
                below = True
            if _RETURNED.search(line):
                quoting = True
            elif quoting and (to := _TO_LINE.match(line)):
                returned.append(to.group(1))
            elif quoting and _LIST_MAIL.match(line):
                listed = True
            for candidate in candidates:
                address = valid_address(candidate.rstrip(".,;:"))
                if address and address not in ignore and address not in found:
                    found.append(address)
    for part in msg.walk():
        if part.get_content_type() == "message/rfc822" and part.is_multipart():
            inner = part.get_payload(0)
            if isinstance(inner, Message):
                names = [n.lower() for n, _v in inner.raw_items()]
                listed = listed or any(_LIST_MAIL.match(f"{n}:") for n in names)
                returned += [str(v) for n, v in inner.raw_items() if n.lower() == "to"]
    if not found and returned and not listed:
        # Only one address: a message to several people says nothing about which failed.
        addresses = [a for _n, a in getaddresses(returned[:1]) if "@" in a]
        if len(addresses) == 1:
            address = valid_address(addresses[0])
            if address and address not in ignore:
                found.append(address)
    return set(found[:MAX_ADDRESSES])


def _ses_notification(msg: Message) -> Failures:
    """Amazon SES bounce notifications sent through SNS: a JSON document in the body."""
    for text in _text_parts(msg):
        start = text.find("{")
        if start < 0 or "notificationType" not in text and "eventType" not in text:
            continue
        try:
            document = json.loads(text[start:text.rfind("}") + 1])
        except ValueError:
            continue
        if isinstance(document, dict) and isinstance(document.get("Message"), str):
            try:  # SNS wraps SES's notification as a string
                document = json.loads(document["Message"])
            except ValueError:
                continue
        if not isinstance(document, dict):
            continue
        bounce = document.get("bounce")
        if not isinstance(bounce, dict):
            continue
        recipients = bounce.get("bouncedRecipients") or []
        found = _valid_set(r.get("emailAddress", "") for r in recipients
                           if isinstance(r, dict))
        if str(bounce.get("bounceType", "")).lower() == "transient":
            return Failures(temporary=frozenset(found))
        return Failures(permanent=frozenset(found))
    return Failures()


def failed_addresses(msg: Message, *, ignore: set[str] | frozenset[str] = frozenset()
                     ) -> Failures:
    """The addresses ``msg`` (a non-delivery report) says failed. ``ignore`` (the report's
    own sender and recipient) are never taken from its text, where they are quoted too."""
    report = _delivery_status(msg)
    if report.delivered_only:
        return report
    header = _failed_header(msg)
    if report or header:
        return Failures(frozenset(report.permanent | (header - report.temporary)),
                        report.temporary)
    for failures in (_flufl(msg), _ses_notification(msg)):
        if failures:
            return Failures(failures.permanent - ignore, failures.temporary - ignore)
    return Failures(permanent=frozenset(_from_text(msg, set(ignore))))
