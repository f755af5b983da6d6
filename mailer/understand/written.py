"""What the sender of a reply wrote: its text without the quoted original, signature, disclaimer.

``body_text`` picks the message's text (plain part first, else HTML with its quoted sections
removed); ``reply_text`` keeps only what the sender wrote above (or, bottom-posting, below) the
quote. Both are pure functions of the message and never raise on bad charsets or broken HTML.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from email.message import Message
from functools import cache

import lxml.html
from inscriptis import get_text
from lxml import etree
from mailparser_reply.parser import EmailMessage as _LibraryParser

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
        return get_text(html)
    markers = root.xpath(_QUOTE_START_XPATH)
    if markers:
        _remove_with_everything_after(markers[0])
    for element in root.xpath(_QUOTE_XPATH):
        if element.getparent() is not None:
            element.drop_tree()  # keeps the text that follows the element
    return get_text(lxml.html.tostring(root, encoding="unicode"))


# --- Finding the start of the quote -----------------------------------------------------------

# What mail-parser-reply misses, found on real replies (each pattern says which client):
_MISSED_HEADERS = [
    # Gmail/Apple in Spanish ("El lun., 6 jul. 2020 a las 10:00, X (<x@y>) escribió:"); the
    # library's Spanish pattern wants two spaces before "escribió". Possibly wrapped on 2 lines.
    r"^El\s[^\n]*(?:\n[^\n]*)?\bescribi[oó]\s?:$",
    # Gmail in French wrapped over two lines ("Le lun. 6 juil. 2020 à 10:00, X <x@y>\na écrit :");
    # the library only finds it on one line.
    r"^Le\s[^\n]*(?:\n[^\n]*)?\ba\s+[ée]crit\s?:$",
    # English attribution wrapped after "wrote" or with a date only ("On 3 Apr 2012, X wrote:").
    r"^On\s[^\n]*(?:\n[^\n]*)?\bwrote\s?:$",
    # "-----Message d'origine-----", "-----Mensaje original-----", "--- Forwarded message ---":
    # the library knows only the English "Original Message" separator.
    r"^-{2,}\s*(?:original message|message d'origine|mensaje original|ursprüngliche nachricht"
    r"|forwarded message|message transféré|mensaje reenviado)\s*-{2,}$",
    # Outlook header blocks in the three languages ("De : X / Envoyé : ...", "De: X / Enviado
    # el: ...", "From: X / Sent: ..."), bold when converted from HTML; the library misses
    # "Enviado el" and "De:" without the French space before the colon.
    r"^\**(?:From|De|Von)\**\s?:[^\n]*\n(?:[^\n]*\n){0,3}?"
    r"\**(?:Sent|Date|Envoyé|Enviado(?: el)?|Fecha|Gesendet|Datum)\**\s?:",
]
_MISSED = re.compile("|".join(f"(?:{p})" for p in _MISSED_HEADERS), re.MULTILINE | re.IGNORECASE)

# An attribution in any language (Android in Russian, say) is told by where it stands: the
# line right before ">"-quoted lines, ending with ":" and carrying a date or an address. When
# a client wrapped it, its first half ends with "<" or "," or the second half starts lower-case.
_WRAPPED = re.compile(r"[<,(]$")

# The library's patterns backtrack quadratically on long lines (a 16 kB line starting with
# "On" takes seconds), so they search a copy whose lines are cut short (no header line is
# long), and only the start of the text: what a person writes above a quote is far shorter.
# Together the caps keep hostile mail well under a second.
_LONGEST_HEADER_LINE = 300
_LONGEST_TEXT = 64_000


def _attributions(lines: list[str]) -> list[tuple[int, int]]:
    """(first, last) line numbers of each attribution line that introduces a ">" block."""
    found = []
    for i, line in enumerate(lines):
        if not line.startswith(">") or (i and lines[i - 1].startswith(">")):
            continue
        j = i - 1
        while j >= 0 and not lines[j]:
            j -= 1
        if (j < 0 or lines[j].startswith(">") or not lines[j].endswith(":")
                or not re.search(r"[@\d]", lines[j])):
            continue
        first = j
        if j and lines[j - 1] and (_WRAPPED.search(lines[j - 1]) or lines[j][:1].islower()):
            first = j - 1
        found.append((first, j))
    return found


@cache
def _library_headers() -> re.Pattern[str]:
    """mail-parser-reply's pattern for reply headers in en/fr/es/de ("On ... wrote:", Outlook)."""
    return _LibraryParser(text="", languages=["en", "fr", "es", "de"]).HEADER_REGEX


def _quote_start(text: str) -> tuple[int, int] | None:
    """Where the earliest header introducing a quoted or forwarded message starts and ends."""
    lines = text.split("\n")
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line) + 1)
    short = "\n".join(line[:_LONGEST_HEADER_LINE] for line in lines)
    found: list[tuple[int, int]] = []
    for match in (_library_headers().search(short), _MISSED.search(short)):
        if match:
            # A match may begin on the newline before its first line.
            begin = match.start() + (1 if short.startswith("\n", match.start()) else 0)
            first = short.count("\n", 0, begin)
            last = short.count("\n", 0, match.end())
            found.append((first, last))
    found += _attributions(lines)
    if not found:
        return None
    first, last = min(found)
    return offsets[first], offsets[last + 1] - 1


# --- Cleaning what is left --------------------------------------------------------------------

_QUOTED_LINE = re.compile(r"^>.*$\n?", re.MULTILINE)
_SIGNATURE = re.compile(r"^--$", re.MULTILINE)
# Lines that phones and webmail append (iPhone, Android, Outlook apps, Yahoo, Sparrow...).
_SENT_FROM = re.compile(
    r"^(?:sent from|sent with|sent via|get outlook for|envoyé de|envoyé depuis|envoyé avec"
    r"|obtenir outlook pour|télécharger outlook pour|enviado desde|enviado con|obtener outlook para"
    r"|descargar outlook para)\b.{0,80}$\n?",
    re.MULTILINE | re.IGNORECASE,
)
# The first line of the confidentiality or environment notices that mail servers append.
_DISCLAIMER = re.compile(
    r"^(?:confidentiality notice|confidential(?:ity)?\s*:|disclaimer\s*:|avis de confidentialit"
    r"|aviso de confidencialidad|aviso legal|avertissement\s*:|please consider the environment"
    r"|pensez à l'environnement|antes de imprimir"
    r"|(?:this|the information in this) (?:e-?mail|message|communication)\b.{0,80}"
    r"\b(?:confidential|privileged|intended (?:solely |only )?for)"
    r"|ce (?:message|courriel|mail|e-mail)\b.{0,80}\b(?:confidenti|destinés? exclusivement)"
    r"|este (?:mensaje|correo)\b.{0,80}\b(?:confidencial|dirigido exclusivamente))",
    re.MULTILINE | re.IGNORECASE,
)
_RULE = re.compile(r"^[-_=*~\s]+$")


def _normalise(text: str) -> str:
    """One newline style, no-break spaces as spaces, no blanks around lines (HTML indents)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\xa0", " ")
    return "\n".join(line.strip() for line in text.split("\n"))


def _tidy(text: str) -> str:
    """Drop stray quoted lines, the signature, phone footers and disclaimers; trim blank lines."""
    lines = text.split("\n")
    for first, last in reversed(_attributions(lines)):
        del lines[first:last + 1]
    text = _QUOTED_LINE.sub("", "\n".join(lines))
    signature = _SIGNATURE.search(text)
    if signature:
        text = text[:signature.start()]
    text = _SENT_FROM.sub("", text)
    disclaimer = _DISCLAIMER.search(text)
    if disclaimer and text[:disclaimer.start()].strip():
        text = text[:disclaimer.start()]
    lines = text.strip().split("\n")
    while lines and _RULE.match(lines[-1]):
        lines.pop()  # Outlook's "____" rule or a dashed line left above the quote
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def extract_reply(text: str) -> str:
    """What the sender wrote in ``text``: above the quote, or below it when they bottom-posted."""
    text = _normalise(text[:_LONGEST_TEXT])
    header = _quote_start(text)
    if header is None:
        return _tidy(text)
    start, end = header
    above = _tidy(text[:start])
    if above:
        return above
    # Nothing above: the sender may have written below a ">" quote (Thunderbird's default).
    # Only a ">" quote can be told apart from the text below it; an Outlook-style quote cannot.
    rest = text[end:]
    if rest.lstrip().startswith(">"):
        return extract_reply(_QUOTED_LINE.sub("", rest))
    return ""


def reply_text(msg: Message) -> str:
    """Only what the sender of ``msg`` wrote: no quoted original, signature or disclaimer."""
    return extract_reply(body_text(msg))
