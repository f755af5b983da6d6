"""The message as the email package parses it, and the headers the other questions need.

``parse_message`` is ``email.policy.default`` with each header parsed once; the helpers read
one header each and never raise on malformed mail (a header that cannot be decoded gives its
raw text).
"""

from __future__ import annotations

import copy
import email
import email.policy
import hashlib
import re
from email.message import EmailMessage
from email.policy import EmailPolicy, linesep_splitter  # the splitter policy.default uses
from email.utils import getaddresses, parseaddr
from functools import lru_cache
from typing import Any

from mailer.domain import normalise_email

MAX_PART = 300_000          # encoded characters read of each body part (whole lines kept)
MAX_HEADER = 2_000          # characters of a header kept as one line of text

_DEFAULT_HEADERS = email.policy.default.header_factory
_SHARED_HEADERS = 256        # parsed headers kept across messages (about 3 MB at most)
_SHARED_LONGEST = 998        # longer header values are kept in a smaller cache of their own
_LONG_HEADERS = 16           # long parsed headers kept: those of the message being read
# The header registry's parser is superlinear in a value's length (a Content-Type of 20,000
# parameters, 278 kB, takes 4.5 s to parse once): a value is cut to this many characters, at
# its last separator, before it is parsed. Real headers are far shorter; a To of 200
# recipients is about 8 kB.
MAX_PARSED_HEADER = 16_000


@lru_cache(maxsize=_SHARED_HEADERS)
def _parsed_header(name: str, value: str) -> Any:
    return _DEFAULT_HEADERS(name, value)


@lru_cache(maxsize=_LONG_HEADERS)
def _parsed_long_header(name: str, value: str) -> Any:
    return _DEFAULT_HEADERS(name, _cut(value))


def _cut(value: str) -> str:
    """``value`` cut to ``MAX_PARSED_HEADER`` characters, after its last "," or ";" there."""
    if len(value) <= MAX_PARSED_HEADER:
        return value
    head = value[:MAX_PARSED_HEADER]
    cut = max(head.rfind(","), head.rfind(";"))
    return head[:cut] if cut > 0 else head


class _ReadOncePolicy(EmailPolicy):
    """``email.policy.default``, except that a header is parsed once, not at every read,
    and a hostile one (longer than ``MAX_PARSED_HEADER``) only in part.

    Under policy.default every ``msg.get(...)`` builds a new header object with the full RFC
    5322 parser, and reading one reply asks for the same few headers (Content-Type above all:
    every ``get_content_type``) a dozen times, while To and Content-Type repeat from message
    to message; that parsing was a fifth of handling a reply. Header objects are immutable,
    so the one already built for the same name and value is exactly what policy.default
    would build again. Its settings and header registry are the default's.
    """

    def header_fetch_parse(self, name: str, value: str) -> Any:
        """What EmailPolicy.header_fetch_parse gives, from a bounded cache."""
        if hasattr(value, "name"):
            return value
        # As EmailPolicy.header_fetch_parse: line separators out, then the header registry.
        value = "".join(linesep_splitter.split(value))
        try:
            if len(value) > _SHARED_LONGEST:
                return _parsed_long_header(name, value)
            return _parsed_header(name, value)
        except Exception:  # noqa: BLE001 - the registry's parser fails on some hostile values
            # The raw text, as policy.compat32 gives every header: whoever wanted addresses
            # from it finds none, and nothing stops reading the message.
            return value


_POLICY = _ReadOncePolicy(header_factory=_DEFAULT_HEADERS)


def parse_message(raw: bytes) -> EmailMessage:
    """``raw`` parsed exactly as with policy.default, each header parsed at most once."""
    # policy.default (and this policy) makes every message an EmailMessage.
    return email.message_from_bytes(raw, policy=_POLICY)  # type: ignore[return-value]


def bounded(msg: EmailMessage) -> EmailMessage:
    """``msg``, or a copy with every body part cut to its first ``MAX_PART`` characters.

    Bounce detection and quote removal scan whole parts; on a 20 MB body they take half a
    minute, while everything that matters (a reply, a DSN, an .ics) sits in the first lines.
    """
    large = [i for i, part in enumerate(msg.walk()) if not part.is_multipart()
             and isinstance(part.get_payload(), str) and len(part.get_payload()) > MAX_PART]
    if not large:
        return msg
    trimmed = copy.deepcopy(msg)
    for index, part in enumerate(trimmed.walk()):
        if index in large:
            payload = part.get_payload()[:MAX_PART]
            # Whole lines, so base64 and quoted-printable still decode.
            part.set_payload(payload[:payload.rfind("\n") + 1] or payload)
    return trimmed


def digest_id(raw: bytes) -> str:
    return f"<{hashlib.sha256(raw).hexdigest()}@no-message-id>"


def safe_bytes(msg: EmailMessage) -> bytes:
    try:
        return msg.as_bytes()
    except Exception:  # a message that cannot be serialised still needs a stable-ish name
        return repr(msg.items()).encode("utf-8", "replace")


def header_text(msg: EmailMessage, name: str) -> str:
    """One header's decoded text; its raw text when it cannot be decoded."""
    try:
        return str(msg.get(name, "") or "")
    except Exception:  # a malformed encoded word must not make the whole message unreadable
        for key, value in msg.raw_items():
            if key.lower() == name.lower():
                return str(value)
        return ""


def clean_header(value: object) -> str:
    """A header as one line of text: folded lines joined, control characters removed."""
    text = str(value or "")[:MAX_HEADER]
    return re.sub(r"[\x00-\x1f\x7f\u2028\u2029\s]+", " ", text).strip()


def sender_of(msg: EmailMessage) -> str:
    """The From address (Reply-To is not trusted to name the participant)."""
    try:
        header = msg.get("From")
        addresses = getattr(header, "addresses", ())
    except Exception:  # undecodable header: read the address from its raw text below
        header, addresses = header_text(msg, "From"), ()
    if not header:
        return ""
    for address in addresses:
        if address.addr_spec and "@" in address.addr_spec:
            return normalise_email(address.addr_spec)
    _name, addr = parseaddr(clean_header(header))
    return normalise_email(addr) if "@" in addr else ""


def message_id_of(msg: EmailMessage) -> str:
    return clean_header(header_text(msg, "Message-ID"))[:998]


_ID = re.compile(r"<[^<>\s]{1,500}>")


def references_of(msg: EmailMessage) -> tuple[str, ...]:
    """Message-IDs the message answers: In-Reply-To first, then References, newest first."""
    out: list[str] = []
    in_reply_to = _ID.findall(clean_header(header_text(msg, "In-Reply-To")))
    refs = _ID.findall(clean_header(header_text(msg, "References")))
    for mid in [*in_reply_to, *reversed(refs)][:100]:
        if mid not in out:
            out.append(mid)
    return tuple(out)


def recipients(msg: EmailMessage) -> list[str]:
    values: list[str] = []
    for name in ("To", "Cc", "Delivered-To", "X-Original-To"):
        values += [clean_header(v) for v in (msg.get_all(name) or [])]
    return [normalise_email(addr) for _n, addr in getaddresses(values)[:200] if "@" in addr]

