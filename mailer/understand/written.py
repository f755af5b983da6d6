"""What the sender of a reply wrote: its text without the quoted original, signature, disclaimer.

``body_text`` picks the message's text (plain part first, else HTML with its quoted sections
removed); ``reply_text`` keeps only what the sender wrote above the quote, below it when they
bottom-posted, and between its ">" lines when they answered inside it. Where the quote starts
is read line by line from the markers clients write (``markers``: attributions, quoted header
blocks, separators, phone and list footers, in many languages), in time linear in the text.
Sign-offs ("Regards, Awa Diop, Ministry of Justice") are kept: ``who`` reads names there.
Both are pure functions of the message and never raise on bad charsets or broken HTML.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from email.message import Message

import lxml.html
from inscriptis import get_text
from lxml import etree

from mailer.understand import markers

# --- Picking the text of a message ----------------------------------------------------------


def _leaves(part: Message) -> Iterator[Message]:
    """The body parts of a message in order, not descending into attached messages."""
    if part.is_multipart():
        if part.get_content_maintype() == "message":
            return  # a forwarded or attached message is not what the sender wrote
        for sub in part.get_payload():
            if isinstance(sub, Message):
                yield from _leaves(sub)
    elif part.get_content_disposition() != "attachment":
        yield part


def _decode(part: Message) -> str:
    """The part's text, decoded with its declared charset when Python knows it, else UTF-8."""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        codecs.lookup(charset)
    except LookupError:
        charset = "utf-8"
    try:
        return payload.decode(charset)
    except UnicodeDecodeError:
        # Mislabelled mail is common (UTF-8 declared as us-ascii and the reverse); never raise.
        try:
            return payload.decode("utf-8")
        except UnicodeDecodeError:
            return payload.decode(charset, errors="replace")


def body_text(msg: Message) -> str:
    """The message's first text/plain part, else its HTML part as text without quoted sections.

    A blank plain part (some webmails send one beside the real HTML) does not count.
    """
    html: str | None = None
    for part in _leaves(msg):
        if part.get_content_type() == "text/plain":
            text = _decode(part)
            if text.strip():
                return text
        elif part.get_content_type() == "text/html" and html is None:
            html = _decode(part)
    return html_to_text(html) if html is not None else ""


# Containers that mail clients put the quoted original in (Gmail, Apple, Thunderbird, Yahoo).
_QUOTE_XPATH = (
    "//blockquote"
    " | //*[contains(concat(' ', normalize-space(@class), ' '), ' gmail_quote ')]"
    " | //*[contains(concat(' ', normalize-space(@class), ' '), ' gmail_attr ')]"
    " | //*[contains(concat(' ', normalize-space(@class), ' '), ' yahoo_quoted ')]"
    " | //*[contains(concat(' ', normalize-space(@class), ' '), ' moz-cite-prefix ')]"
    # Gmail's signature block: what "-- " introduces in plain text.
    " | //*[contains(concat(' ', normalize-space(@class), ' '), ' gmail_signature ')]"
    " | //*[@id='AppleOriginalContents']"
)
# Outlook marks where the quote starts, and the quote is everything after the marker.
_QUOTE_START_XPATH = "//*[@id='divRplyFwdMsg' or @id='appendonsend']"


def _remove_with_everything_after(element: etree._Element) -> None:
    """Drop ``element`` and all that follows it in document order."""
    node = element
    while node is not None and node.getparent() is not None:
        parent = node.getparent()
        for sibling in list(node.itersiblings()):
            parent.remove(sibling)
        node = parent
    element.getparent().remove(element)


def html_to_text(html: str) -> str:
    """HTML mail as plain text, with the quoted sections clients mark removed first."""
    if not html.strip():
        return ""
    try:
        root = lxml.html.document_fromstring(html)
    except (etree.ParserError, ValueError):
        return "\n".join(line.strip() for line in get_text(html).split("\n"))
    starts = root.xpath(_QUOTE_START_XPATH)
    if starts:
        _remove_with_everything_after(starts[0])
    for element in root.xpath(_QUOTE_XPATH):
        if element.getparent() is not None:
            element.drop_tree()  # keeps the text that follows the element
    text = get_text(lxml.html.tostring(root, encoding="unicode"))
    # Indentation in text made from HTML is layout, not something the sender typed.
    return "\n".join(line.strip() for line in text.split("\n"))


# --- Where the quote starts ---------------------------------------------------------------------

# What a person writes above a quote is far shorter; reading no further bounds the work.
_LONGEST_TEXT = 64_000
# Lines joined to read an attribution a client wrapped (Gmail wraps at 78 characters, and
# Outlook for Mac splits "<\nmailto:x@y\n> wrote:" over four).
_WRAPPED_LINES = 4
# How far below a "From:" line the other labels of a quoted header block may be.
_HEADER_BLOCK_SPAN = 6
# Characters that mail clients and trackers leave on a line of their own: zero-width spaces,
# byte-order marks, the "ᐧ" Gmail extensions append.
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u1427"))


def _is_quoted(line: str) -> bool:
    return line.lstrip().startswith(">")


def _may_wrap(first: str, second: str) -> bool:
    """Whether ``first`` may be the start of an attribution that goes on in ``second``.

    Only when ``first`` has the date or the verb of one, and either starts like one ("On",
    "Le", a date) or visibly goes on: ends with "<", "(" or ",", or the next line starts with
    the address or in lower case ("a écrit :", "volgende geschreven:"). A line of text above
    an attribution ("Email: awa@justice.sn", "Best regards,") is not joined to it.
    """
    stripped = first.strip()
    folded = stripped.casefold()
    digit = any(ch.isdigit() for ch in stripped)
    if not digit and not markers.has_verb(folded):
        return False
    nxt = second.strip()
    return (markers.starts_attribution(stripped) or markers.has_verb(folded)
            or stripped.endswith(("<", ",", "("))
            or nxt[:1] in "<([>" or nxt.startswith("mailto:") or nxt[:1].islower())


def _attribution_at(lines: list[str], i: int) -> int | None:
    """The last line of an attribution starting at line ``i``, or None.

    A wrapped one is read joined, over up to ``_WRAPPED_LINES`` lines with text (and one blank
    line, which Outlook for Mac leaves after its first part).
    """
    if markers.is_attribution(lines[i]):
        return i
    joined = lines[i].strip()
    parts = blanks = 0
    k = i + 1
    while k < len(lines) and parts < _WRAPPED_LINES - 1:
        nxt = lines[k].strip()
        if not nxt:
            blanks += 1
            if blanks > 1 or not markers.starts_attribution(joined):
                return None
            k += 1
            continue
        if parts == 0 and not _may_wrap(joined, nxt):
            return None
        joined = f"{joined} {nxt}"
        parts += 1
        if markers.is_attribution(joined):
            return k
        k += 1
    return None


def _header_block_at(lines: list[str], i: int) -> tuple[int, int] | None:
    """(first, last) line of a quoted header block whose "From:" line is ``i``, or None."""
    label = markers.header_label(lines[i])
    if label not in markers.FROM_LABELS:
        return None
    others = {found for line in lines[i + 1:i + 1 + _HEADER_BLOCK_SPAN]
              if (found := markers.header_label(line)) in markers.OTHER_LABELS}
    if not others:
        return None
    first = i
    while first and lines[first - 1].strip() and markers.header_label(lines[first - 1]):
        first -= 1  # "Objet: / Date: / De: / À:" starts with what comes first
    last = i
    while last + 1 < len(lines) and lines[last + 1].strip():
        last += 1
    return first, last


def _quote_start(lines: list[str]) -> tuple[int, int] | None:
    """(first, last) line of the earliest attribution, header block or separator."""
    for i, line in enumerate(lines):
        if not line.strip() or _is_quoted(line):
            continue
        if markers.is_separator(line):
            return i, i
        block = _header_block_at(lines, i)
        if block:
            return block
        last = _attribution_at(lines, i)
        if last is not None:
            return i, last
    return None


def _after_quote_block(lines: list[str], k: int) -> int:
    """The first line after the ">" block starting at or after line ``k`` (blank lines first).

    A line without ">" between two quoted lines, right under a quoted line with text, is a
    quoted line some client wrapped without its ">", not an answer written inside the quote.
    """
    while k < len(lines) and not lines[k].strip():
        k += 1
    while k < len(lines):
        line = lines[k]
        if _is_quoted(line) or not line.strip():
            k += 1
            continue
        previous = lines[k - 1] if k else ""
        following = lines[k + 1] if k + 1 < len(lines) else ""
        if (_is_quoted(previous) and previous.lstrip(" >").strip() and _is_quoted(following)):
            k += 1
            continue
        break
    # Blank lines at the end of the block belong to it, not to what follows.
    return k


# --- Cleaning what is left --------------------------------------------------------------------

_SIGNATURE = re.compile(r"^--\s*$")
# The first line of the confidentiality or environment notices that mail servers append.
_DISCLAIMER = re.compile(
    r"^(?:confidentiality notice|confidential(?:ity)?\s*:|disclaimer\s*:|avis de confidentialit"
    r"|aviso de confidencialidad|aviso legal|avertissement\s*:|please consider the environment"
    r"|pensez à l'environnement|antes de imprimir"
    r"|(?:this|the information in this) (?:e-?mail|message|communication)\b.{0,80}"
    r"\b(?:confidential|privileged|intended (?:solely |only )?for)"
    r"|ce (?:message|courriel|mail|e-mail)\b.{0,80}\b(?:confidenti|destinés? exclusivement)"
    r"|este (?:mensaje|correo)\b.{0,80}\b(?:confidencial|dirigido exclusivamente))",
    re.IGNORECASE,
)


def _normalise(text: str) -> str:
    """One newline style, no-break spaces as spaces, no trailing blanks, no invisible marks."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\xa0", " ")
    return "\n".join(line.rstrip() for line in text.translate(_INVISIBLE).split("\n"))


def _cut_list_footer(lines: list[str]) -> list[str]:
    """Drop a mailing list's or forum's footer: a rule, then how to unsubscribe, to the end."""
    words = link = False
    cut = len(lines)
    for i in range(len(lines) - 1, -1, -1):  # one pass from the end: linear in the text
        if markers.is_rule(lines[i]) and words and link:
            cut = i
        words = words or markers.has_list_footer_words(lines[i])
        link = link or markers.has_link(lines[i])
    return lines[:cut]


def _tidy(lines: list[str]) -> str:
    """What is left of the sender's text: no quoted lines, signature, footers, disclaimers."""
    kept: list[str] = []
    for line in lines:
        stripped = line.strip()
        if _SIGNATURE.match(stripped) or markers.is_footer(stripped):
            break  # "-- " and "Sent from my iPhone" end the text; what follows is not theirs
        if _DISCLAIMER.match(stripped) and any(k.strip() for k in kept):
            break
        if not _is_quoted(line):
            kept.append(line)
    kept = _cut_list_footer(kept)
    while kept and (not kept[-1].strip() or markers.is_rule(kept[-1])):
        kept.pop()  # Outlook's "____" rule or a dashed line left above the quote
    while kept and not kept[0].strip():
        kept.pop(0)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(kept))


def _extract(lines: list[str], depth: int = 0) -> str:
    found = _quote_start(lines)
    if found is None:
        return _tidy(lines)
    first, last = found
    above = _tidy(lines[:first])
    attribution = not markers.header_label(lines[first]) and not markers.is_separator(
        lines[first])
    after = _after_quote_block(lines, last + 1)
    quoted = any(_is_quoted(line) for line in lines[last + 1:after])
    if depth >= 3 or not attribution:
        # Below an Outlook header block or a separator, the quote has no ">" to end it.
        return above
    if not quoted:
        # "On ... wrote:" over unquoted text: with nothing above, that text is the reply
        # (it was bottom-posted without ">", or forwarded); otherwise it is the original.
        return above or _extract(lines[last + 1:], depth + 1)
    # Text below a ">" quote: the sender answered below it (Thunderbird) or inside it.
    below = _extract(lines[after:], depth + 1)
    return "\n\n".join(part for part in (above, below) if part)


def extract_reply(text: str) -> str:
    """What the sender wrote in ``text``: above the quote, below it when they bottom-posted,
    and the answers they wrote between ">" quotes."""
    return _extract(_normalise(text[:_LONGEST_TEXT]).split("\n"))


def reply_text(msg: Message) -> str:
    """Only what the sender of ``msg`` wrote: no quoted original, signature or disclaimer."""
    return extract_reply(body_text(msg))
