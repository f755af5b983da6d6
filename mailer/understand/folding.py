"""Text as the matchers read it: casefolded, without accents, with typographic marks made plain.

Every matcher of the understanding package reads folded text, so "Prénom", "PRENOM" and
"prénom" are one word; ``fold_with_map`` also says where each folded character came from, so a
value can be cut from the original text (names keep their accents).
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache


def wordset(words: str) -> frozenset[str]:
    """The whitespace-separated words of ``words`` (for word lists written as prose)."""
    return frozenset(words.split())


def fold(text: str) -> str:
    """Casefolded text without accents, with typographic quotes and spaces made plain.

    The same text as ``fold_with_map(text)[0]``, made by whole-string operations (NFKD, then
    one regular expression removing combining marks) instead of a loop per character: on a
    100 kB non-ASCII reply, milliseconds instead of a tenth of a second.
    """
    if text.isascii():
        return text.lower().translate(_PLAIN)
    decomposed = unicodedata.normalize("NFKD", text.translate(_PLAIN).casefold())
    return _combining().sub("", decomposed).translate(_PLAIN)


@cache
def _combining() -> re.Pattern[str]:
    """Every combining character of the first two Unicode planes (where text from mail is)."""
    marks = "".join(chr(c) for c in range(0x300, 0x20000) if unicodedata.combining(chr(c)))
    return re.compile(f"[{re.escape(marks)}]+")


_PLAIN = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u00b4": "'",
                        "`": "'", "\u201c": '"', "\u201d": '"', "\u00ab": '"', "\u00bb": '"',
                        "\u2013": "-", "\u2014": "-", "\u2010": "-", "\u2011": "-",
                        "\uff1a": ":", "\u00a0": " ", "\u202f": " ", "\u2007": " "})


def fold_with_map(text: str) -> tuple[str, list[int]]:
    """``fold(text)`` and, for each folded character, the index of its source character."""
    if text.isascii():
        return text.lower().translate(_PLAIN), list(range(len(text) + 1))
    out: list[str] = []
    where: list[int] = []
    for index, char in enumerate(text):
        for part in unicodedata.normalize("NFKD", char.translate(_PLAIN).casefold()):
            if not unicodedata.combining(part):
                out.append(part.translate(_PLAIN))
                where.append(index)
    where.append(len(text))
    return "".join(out), where

