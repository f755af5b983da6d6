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
from email.errors import InvalidHeaderDefect
from email.message import EmailMessage
from email.policy import EmailPolicy, linesep_splitter  # the splitter policy.default uses
from email.utils import getaddresses
from functools import lru_cache
from typing import Any

from mailer.domain import normalise_email

MAX_PART = 300_000          # encoded characters read of each body part (whole lines kept)
MAX_HEADER = 2_000          # characters of a header kept as one line of text
MAX_REPEATED = 20           # instances of one header read (To, Cc, Delivered-To...)

_DEFAULT_HEADERS = email.policy.default.header_factory
_SHARED_HEADERS = 256        # parsed headers kept across messages (about 3 MB at most)
_SHARED_LONGEST = 998        # longer header values are kept in a smaller cache of their own
_LONG_HEADERS = 16           # long parsed headers kept: those of the message being read
# The header registry's parser is superlinear in a value's length (a Content-Type of 20,000
# parameters, 278 kB, takes 4.5 s to parse once): a value is cut to this many characters, at
# its last separator, before it is parsed. Real headers are far shorter; a To of 200
# recipients is about 8 kB. The email package also re-reads a Content-* header's parameters
# at each get_param (each charset, boundary, filename): those are cut shorter still.
MAX_PARSED_HEADER = 16_000
MAX_PARSED_PARAMETERS = 2_000


@lru_cache(maxsize=_SHARED_HEADERS)
def _parsed_header(name: str, value: str) -> Any:
    return _DEFAULT_HEADERS(name, value)


@lru_cache(maxsize=_LONG_HEADERS)
def _parsed_long_header(name: str, value: str) -> Any:
    limit = MAX_PARSED_PARAMETERS if name.lower().startswith("content-") else MAX_PARSED_HEADER
    # Cut first (with room for the folding taken out next), so no step reads it all.
    value = "".join(linesep_splitter.split(value[:2 * limit]))
    return _DEFAULT_HEADERS(name, _cut(value, limit))


def _cut(value: str, limit: int) -> str:
    """``value`` cut to ``limit`` characters, after its last "," or ";" there."""
    if len(value) <= limit:
        return value
    head = value[:limit]
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
        try:
            if len(value) > _SHARED_LONGEST:
                # Keyed on the stored value itself (its hash is computed once): a long
                # header is cut, unfolded and parsed once per message, not at every read.
                return _parsed_long_header(name, value)
            # As EmailPolicy.header_fetch_parse: line separators out, then the registry.
            return _parsed_header(name, "".join(linesep_splitter.split(value)))
        except Exception:  # noqa: BLE001 - the registry's parser fails on some hostile values
            # The raw text, as policy.compat32 gives every header: whoever wanted addresses
            # from it finds none, and nothing stops reading the message.
            return value


_POLICY = _ReadOncePolicy(header_factory=_DEFAULT_HEADERS)


def parse_message(raw: bytes) -> EmailMessage:
    """``raw`` parsed exactly as with policy.default, each header parsed at most once."""
    # policy.default (and this policy) makes every message an EmailMessage.
    return email.message_from_bytes(raw, policy=_POLICY)  # type: ignore[return-value]


def bounded(msg: EmailMessage, limit: int = MAX_PART) -> EmailMessage:
    """``msg``, or a copy with every body part cut to its first ``limit`` characters.

    Bounce detection and quote removal scan whole parts; on a 20 MB body they take half a
    minute, while everything that matters (a reply, a DSN, an .ics) sits in the first lines.
    """
    large = [i for i, part in enumerate(msg.walk()) if not part.is_multipart()
             and isinstance(part.get_payload(), str) and len(part.get_payload()) > limit]
    if not large:
        return msg
    trimmed = copy.deepcopy(msg)
    for index, part in enumerate(trimmed.walk()):
        if index in large:
            payload = part.get_payload()[:limit]
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
    """The From address, decoded then validated: one valid address, else "".

    Reply-To is not trusted to name the participant. The address is what the header
    parser reads when it reads one address without error; otherwise, from the raw header,
    the single address it holds or the single one in angle brackets: never one pieced
    together from a display name (an encoded CR/LF there makes the parser fail, and a
    lenient reading then finds "addresses" in the name's text).
    """
    raw = [str(value) for name, value in msg.raw_items() if name.lower() == "from"]
    if len(raw) != 1:
        return ""
    try:
        header = msg.get("From")
    except Exception:  # noqa: BLE001 - read from the raw text below
        header = None
    addresses = getattr(header, "addresses", ())
    defects = getattr(header, "defects", ())
    if len(addresses) == 1 and not any(isinstance(d, InvalidHeaderDefect) for d in defects):
        return valid_address(_unescaped(addresses[0].addr_spec)) or ""
    value = _unescaped(linesep_splitter.sub("", raw[0]))[:MAX_HEADER]
    found = [addr for _name, addr in getaddresses([value]) if addr]
    if len(found) == 1:
        return valid_address(found[0]) or ""
    angled = _ANGLED.findall(value)
    return (valid_address(angled[0]) or "") if len(angled) == 1 else ""


_ANGLED = re.compile(r"<([^<>]{1,320})>")


def _unescaped(text: str) -> str:
    """Raw 8-bit header bytes (kept by the parser as surrogates) as UTF-8 text.

    Bytes that are not UTF-8 (a Latin-1 "é" written raw) become U+FFFD, which no valid
    address contains: "j\\xe9rome@..." must not be answered as "j?rome@...", someone else.
    """
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.\-\u0080-\U0010ffff]{1,64}")
_LABEL = re.compile(r"(?!-)[a-z0-9\-\u0080-\U0010ffff]{1,63}(?<!-)", re.IGNORECASE)
_TLD = re.compile(r"(?:[a-z\u0080-\U0010ffff]{2,63}|xn--[a-z0-9\-]{1,59})", re.IGNORECASE)


def valid_address(text: str) -> str | None:
    """``text`` as one lower-case address when it is exactly one plausible address, else None.

    No whitespace or control characters, one "@", a local part of atom characters (letters
    of any script allowed: SMTPUTF8) not starting with "|" or "/", and a domain of
    dot-separated labels ending in a top-level name. Quoted local parts and address
    literals ("[192.0.2.1]") are refused: no participant needs one, and mail from them is
    more likely to be hostile than not.
    """
    address = text.strip().strip("<>").strip()
    if not address or len(address) > 254 or address.count("@") != 1:
        return None
    if any(ch.isspace() or ord(ch) < 32 or 127 <= ord(ch) < 160 or ch == "\ufffd"
           for ch in address):
        return None
    local, domain = address.split("@")
    domain = domain.rstrip(".")
    if local.startswith(("|", "/")) or not _LOCAL.fullmatch(local):
        return None
    labels = domain.split(".")
    if len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels):
        return None
    if not _TLD.fullmatch(labels[-1]):
        return None
    return f"{local}@{domain}".lower()


_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069"
                       "\u2028\u2029]+")


def clean_text(value: str) -> str:
    """One line of text without control characters (terminal escapes, bidi overrides),
    whitespace runs as one space: how a name or an organisation is stored."""
    return " ".join(_CONTROLS.sub(" ", value).split())


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
        # A few of each, each cut short: a message with 3,000 To headers is hostile, and
        # getaddresses over all of them took a quarter of a second.
        values += [clean_header(v)[:8_000] for v in (msg.get_all(name) or [])[:MAX_REPEATED]]
    return [normalise_email(addr) for _n, addr in getaddresses(values)[:200] if "@" in addr]

