"""The reply address of a digest: ``webinars+digest-<id>-<token>@domain``.

Pure. The token is an HMAC-SHA256 of the digest's id under a secret only the mailer knows
(``staff.secret``), so a reply proves it answers that digest: a forged From alone, a token
made up or copied from another digest, cannot act. The plus-tag rides on the inbox address,
so the reply arrives in the same inbox with no server setup; the token is lower-case hex,
since mail systems may change the case of an address's local part.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

from mailer.domain import normalise_email

TAG = "digest"
_TOKEN_CHARS = 24       # 96 bits of HMAC: unguessable, and the address stays short
_TAGGED = re.compile(rb"\+" + TAG.encode() + rb"-(\d{1,12})-([0-9a-z]{1,64})@", re.I)


@dataclass(frozen=True)
class DigestAddress:
    """A digest id and token read from an address."""

    digest_id: int
    token: str


def token(secret: str, digest_id: int) -> str:
    """The token of one digest under ``secret``."""
    mac = hmac.new(secret.encode("utf-8"), f"mailer-digest:{digest_id}".encode(),
                   hashlib.sha256)
    return mac.hexdigest()[:_TOKEN_CHARS]


def reply_address(inbox: str, secret: str, digest_id: int) -> str:
    """The address replies to one digest must be sent to."""
    local, _, domain = inbox.rpartition("@")
    return f"{local}+{TAG}-{digest_id}-{token(secret, digest_id)}@{domain}"


def valid(secret: str, found: DigestAddress) -> bool:
    """True when ``found`` carries the token of its own digest (compared in constant time)."""
    if not secret:
        return False
    return hmac.compare_digest(token(secret, found.digest_id), found.token.lower())


def mentions_tag(header_block: bytes) -> bool:
    """A cheap look at raw headers: could a recipient be a digest reply address?"""
    return _TAGGED.search(header_block) is not None


def digest_address(recipients: list[str], inbox: str) -> DigestAddress | None:
    """The first recipient that is a digest reply address of this inbox, read."""
    local, _, domain = normalise_email(inbox).partition("@")
    for address in recipients:
        rlocal, _, rdomain = normalise_email(address).partition("@")
        base, plus, tag = rlocal.partition("+")
        if not plus or base != local or rdomain != domain:
            continue
        name, _, rest = tag.partition("-")
        number, _, mac = rest.partition("-")
        if name == TAG and number.isdigit() and mac:
            return DigestAddress(int(number), mac)
    return None
