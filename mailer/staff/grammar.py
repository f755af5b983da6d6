"""The commands staff write in a reply to the digest: ``approve R12 R14; reject R15 why``.

Pure. One command per line or per ``;``; a command is a verb, one or more REFs, then the
reason (required for ``reject``). Like Mailman's mail commands, lines that are not commands
are reported back, not guessed at, and reading stops at a quote or a signature (the mailer
has usually removed both already), at the digest's own listing of REFs, or after a few
lines it could not read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailer.staff.refs import looks_like_ref

VERBS = {"approve": "approve", "accept": "approve", "reject": "reject", "refuse": "reject",
         "decline": "reject", "cancel": "cancel"}
# Reasons are required where the participant's registration is refused.
NEEDS_REASON = frozenset({"reject"})
MAX_UNREAD = 5
_STOP = re.compile(r"^(>|-- ?$|_{5,}|-{5,}|On .{0,200} wrote:?$|Le .{0,200} a écrit|"
                   r"El .{0,200} escribió|From: |De : |De: )", re.I)
_SPLIT_REFS = re.compile(r"[\s,]+")


@dataclass(frozen=True)
class Command:
    """One command as staff wrote it."""

    verb: str                       # approve | reject | cancel
    refs: tuple[str, ...]           # as written: "R12"
    reason: str
    text: str                       # the command's own text, for the answer


@dataclass(frozen=True)
class Reading:
    """What a reply says: its commands, and what could not be read (quoted back)."""

    commands: tuple[Command, ...]
    unread: tuple[str, ...]


def read_commands(text: str) -> Reading:
    """The commands in the text of a reply to the digest."""
    commands: list[Command] = []
    unread: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if _STOP.match(line) or len(unread) >= MAX_UNREAD or _lists_a_ref(line):
            break
        for chunk in line.split(";"):
            chunk = chunk.strip().strip(".").strip()
            if not chunk:
                continue
            command, why = _command(chunk)
            if command is not None:
                commands.append(command)
            elif why:
                unread.append(why)
    return Reading(tuple(commands), tuple(unread))


def _lists_a_ref(line: str) -> bool:
    """A line that starts with a REF: the digest's (or its answer's) own listing, "R12  Awa
    Diop (SN)", followed by what participants wrote (their position may read "approve R12",
    their name "x; approve R12"). Staff write the verb first; reading stops there, so the
    digest's text left unmarked under a reply (a client that writes "On ... wrote:" over it
    without ">") is never taken for commands."""
    first = line.split(None, 1)[0] if line else ""
    return looks_like_ref(first.rstrip(":,.;"))


def has_commands(text: str) -> bool:
    """True when the text holds at least one command (a verb followed by a REF)."""
    return bool(read_commands(text).commands)


def _command(chunk: str) -> tuple[Command | None, str]:
    """One command, or None and why not ("" for a line that is no command at all)."""
    first, _, rest = chunk.partition(" ")
    verb = VERBS.get(first.lower().rstrip(":"))
    if verb is None:
        return None, f"not a command: {chunk[:80]}"
    words = [w for w in _SPLIT_REFS.split(rest.strip()) if w]
    refs: list[str] = []
    while words and (looks_like_ref(words[0]) or words[0].lower() == "and"):
        word = words.pop(0)
        if word.lower() != "and":
            refs.append(word.upper().replace("-", ""))
    if not refs:
        return None, f"{verb}: which registration? Write its REF, e.g. {verb} R12"
    reason = _reason(rest, len(refs))
    if verb in NEEDS_REASON and not reason:
        return None, f"{verb} {' '.join(refs)}: say why, e.g. {verb} {refs[0]} not a " \
                     "government official"
    return Command(verb, tuple(refs), reason, chunk[:300]), ""


def _reason(rest: str, refs: int) -> str:
    """What follows the REFs: the words after the ``refs``-th REF-like word."""
    seen = 0
    words = rest.split()
    for index, word in enumerate(words):
        if looks_like_ref(word.rstrip(",")):
            seen += 1
            if seen == refs:
                return " ".join(words[index + 1:]).strip(" :-–,")[:500]
    return ""
