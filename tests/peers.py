"""The peer corpora (``../shared/corpus/peers``) as the tests and benchmarks read them.

``expected.json`` says what each file is (``cases``) and, for 150 reply bodies, what the sender
wrote (``replies``). This module loads a case as the bytes the inbox would hand over (a bare
body under ``text/`` wrapped in a neutral message, as the corpus README says) and scores an
extracted reply text: exactly right, and whether it leaks lines of the quoted original.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from tests.conftest import CORPUS

PEERS = CORPUS / "peers"

# The neutral message the README describes, around a bare reply body.
_WRAPPER = ("From: Sam Reader <sam.reader@example.org>\nTo: webinars@example.org\n"
            "Subject: Re: Invitation\nMIME-Version: 1.0\n"
            "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n")


@cache
def expected() -> dict[str, Any]:
    return json.loads((PEERS / "expected.json").read_text(encoding="utf-8"))


def raw_of(case: dict[str, Any]) -> bytes:
    """The case as the bytes of a message."""
    data = (PEERS / case["path"]).read_bytes()
    if case["kind"] == "text":
        return _WRAPPER.encode() + data
    return data


def _normal(text: str, markdown: bool) -> str:
    """Text compared line by line, trailing blanks and runs of blank lines aside.

    Discourse's expectations are Markdown (its posts): for those, emphasis and heading
    marks are dropped and whitespace runs compared as one space, since a reader of the plain
    text or the HTML part sees the same words.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\xa0", " ")
    if markdown:
        text = re.sub(r"\*\*|(?<!\w)\*(?=\S)|(?<=\S)\*(?!\w)", "", text)
        text = re.sub(r"(?m)^#+\s+", "", text)
        return " ".join(text.split())
    lines = [line.rstrip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


@dataclass(frozen=True)
class Verdict:
    right: bool
    leaked: tuple[str, ...]     # lines of the quoted original found in the text


def score(text: str, case: dict[str, Any]) -> Verdict:
    """Whether ``text`` is one of the accepted texts, and which quoted lines it leaks.

    A quoted line leaks when it is one of the text's lines, or (25 characters and more)
    appears in it, whitespace aside.
    """
    markdown = bool(case.get("markdown"))
    right = _normal(text, markdown) in {_normal(e, markdown) for e in case["expected"]}
    lines = {line.strip() for line in text.split("\n") if line.strip()}
    flat = " ".join(text.split())
    leaked = tuple(q for q in case["quote_lines"] if q.strip() and (
        q.strip() in lines or (len(q.strip()) >= 25 and " ".join(q.split()) in flat)))
    return Verdict(right, leaked)


def reply_cases() -> list[dict[str, Any]]:
    return list(expected()["replies"])


def file_cases() -> list[dict[str, Any]]:
    return list(expected()["cases"])


def case_path(case: dict[str, Any]) -> Path:
    return PEERS / case["path"]
