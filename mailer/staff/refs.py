"""Short references staff read aloud: ``R12`` for registration 12, ``M7`` for inbound message 7.

Pure. Logs and stored summaries name participants by their REF, never by address
(``with_refs``), except where an operator needs the address to act (a delivery failure).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_REF = re.compile(r"([RrMm])\s*-?\s*(\d{1,12})")
# An address as it appears in the rules' notes ("a@b.org (SN) confirmed").
_ADDRESS = re.compile(r"[^\s<>()\[\],;:\"']+@[^\s<>()\[\],;:\"']+")


def registration_ref(registration_id: int) -> str:
    """``R12``: what staff see, say and type for registration 12."""
    return f"R{registration_id}"


def message_ref(inbound_id: int) -> str:
    """``M7``: an inbound message staff may look at (a question, quarantined mail)."""
    return f"M{inbound_id}"


def parse_ref(text: str, letter: str = "R") -> int | None:
    """The number in a REF (``R12``, ``r12``, ``R-12``), or None when ``text`` is not one."""
    match = _REF.fullmatch(text.strip())
    if match is None or match.group(1).upper() != letter:
        return None
    return int(match.group(2))


def looks_like_ref(text: str) -> bool:
    """True for ``R12``-like words (of either letter)."""
    return _REF.fullmatch(text.strip()) is not None


def with_refs(text: str, refs: Mapping[str, int]) -> str:
    """``text`` with every address replaced by its registration's REF, or by "someone" when
    it has none (the sender of a question, a bounced address)."""
    def swap(match: re.Match[str]) -> str:
        found = refs.get(match.group(0).lower())
        return registration_ref(found) if found is not None else "someone"
    return _ADDRESS.sub(swap, text)
