"""Outgoing mail as SMTP carries it: header fields and MIME parts written straight to bytes.

Written by hand rather than with ``email.mime`` and ``BytesGenerator``: in a burst of
reminders (``bench/reminder_burst.py``) building and flattening the ``email`` objects took
about half of each message's time (the generator alone compiles a regular expression for
every multipart boundary), while the layout the mailer sends is small and fixed: text parts
in quoted-printable UTF-8, files in base64, header values that callers have already encoded
(RFC 2047 words from ``email.header`` and ``email.utils``). The encoders are the C ones from
``binascii``; folding of long header values is ``email.header.Header``'s. Tests parse every
kind of message back with the ``email`` package.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from email.header import Header
from email.utils import encode_rfc2231, quote

CRLF = b"\r\n"
_MAX_FIELD = 78     # RFC 5322 2.1.1: lines SHOULD be at most 78 characters


@dataclass(frozen=True, slots=True)
class WireMessage:
    """One message ready for SMTP: its envelope (one recipient) and its bytes, CRLF line ends."""

    sender: str
    recipient: str
    data: bytes

    def as_bytes(self) -> bytes:
        """The message as bytes (the same name ``email.message.Message`` uses)."""
        return self.data


@dataclass(frozen=True, slots=True)
class Part:
    """A MIME entity: its header lines (each ending in CRLF) and its encoded body."""

    headers: bytes
    body: bytes


def field(name: str, value: str) -> bytes:
    """One header field, CRLF-terminated; a long value is folded at its spaces.

    ``value`` must already be encoded for a header (ASCII, or UTF-8 only in an address that
    needs SMTPUTF8); the line breaks ``email.header`` folds with become CRLF here.
    """
    if "\n" not in value and len(name) + 2 + len(value) > _MAX_FIELD and value.isascii():
        value = Header(value, header_name=name, maxlinelen=_MAX_FIELD).encode()
    line = f"{name}: {value}".replace("\r", "").replace("\n", "\r\n")
    return line.encode("utf-8") + CRLF


def text(content: str, subtype: str, **params: str) -> Part:
    """A text part in UTF-8, quoted-printable: readable in a raw ``.eml``, safe on any server."""
    normalised = content.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n")
    extra = "".join(f'; {key}="{quote(value)}"' for key, value in params.items())
    headers = (f'Content-Type: text/{subtype}; charset="utf-8"{extra}\r\n'
               "Content-Transfer-Encoding: quoted-printable\r\n").encode("ascii")
    return Part(headers, binascii.b2a_qp(normalised.encode("utf-8"), istext=True))


def attachment(data: bytes, mimetype: str, filename: str) -> Part:
    """A file in base64; a non-ASCII ``filename`` is written the RFC 2231 way."""
    if filename.isascii():
        disposition = f'attachment; filename="{quote(filename)}"'
    else:
        disposition = f"attachment; filename*={encode_rfc2231(filename, 'utf-8')}"
    headers = (f"Content-Type: {mimetype}\r\n"
               "Content-Transfer-Encoding: base64\r\n").encode("ascii")
    headers += field("Content-Disposition", disposition)
    return Part(headers, base64.encodebytes(data).replace(b"\n", CRLF))


def multipart(subtype: str, parts: Iterable[Part], boundary: str) -> Part:
    """A multipart entity holding ``parts``, separated by ``boundary``."""
    delimiter = b"--" + boundary.encode("ascii")
    body = b"".join(delimiter + CRLF + part.headers + CRLF + part.body + CRLF for part in parts)
    headers = f'Content-Type: multipart/{subtype}; boundary="{boundary}"\r\n'.encode("ascii")
    return Part(headers, body + delimiter + b"--" + CRLF)


def boundary(seed: str, depth: int) -> str:
    """A multipart boundary that no encoded body can contain, the same for the same seed.

    "=_" can appear in neither quoted-printable ("=" is followed by hex digits or a line
    break) nor base64, so there is no need to search the parts for it; deriving the rest
    from the Message-ID keeps a message's bytes reproducible.
    """
    digest = hashlib.sha256(seed.encode("utf-8")).hexdigest()[:24]
    return f"=_{digest}.{depth}"


def message(fields: Iterable[tuple[str, str]], root: Part) -> bytes:
    """The whole message: header ``fields``, MIME-Version, then the root entity."""
    head = b"".join(field(name, value) for name, value in fields)
    return head + b"MIME-Version: 1.0\r\n" + root.headers + CRLF + root.body
