"""Certificates of participation: one landscape A4 PDF page per participant and event (fpdf2).

Names come from mail, so every text is cleaned of control characters, drawn as plain text
(never markup) and fitted into a fixed box: a long name shrinks, then wraps, then is cut with
an ellipsis, and never moves the rest of the page. The same inputs give the same bytes.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from pathlib import Path

from babel.lists import format_list
from fpdf import FPDF

from mailer.errors import ConfigError, Problem
from mailer.localtime import format_day_short
from mailer.schedule import Event

# Where a Unicode TTF font may be: Debian/Ubuntu (fonts-dejavu-core), Fedora, Arch.
FONT_DIRS: tuple[Path, ...] = (
    Path("/usr/share/fonts/truetype/dejavu"),
    Path("/usr/share/fonts/dejavu-sans-fonts"),
    Path("/usr/share/fonts/dejavu"),
    Path("/usr/share/fonts/TTF"),
)
_REGULAR, _BOLD = "DejaVuSans.ttf", "DejaVuSans-Bold.ttf"

_WORDS: dict[str, dict[str, str]] = {
    "en": {"heading": "Certificate of participation", "certify": "This is to certify that",
           "took_part": "took part in", "on": "on {date}",
           "series": "as part of the series {series}", "organised": "Organised by {organisers}"},
    "fr": {"heading": "Certificat de participation", "certify": "Nous certifions que",
           "took_part": "a participé à", "on": "le {date}",
           "series": "dans le cadre de la série {series}",
           "organised": "Organisé par {organisers}"},
    "es": {"heading": "Certificado de participación", "certify": "Se certifica que",
           "took_part": "participó en", "on": "el {date}",
           "series": "en el marco de la serie {series}",
           "organised": "Organizado por {organisers}"},
}

_PAGE_W, _PAGE_H, _SIDE = 297.0, 210.0, 25.0
_WIDTH = _PAGE_W - 2 * _SIDE
_MM_PER_PT = 25.4 / 72
# Unicode bidirectional overrides could make a name display as something else: dropped.
_BIDI = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))}


def certificate_pdf(name: str, event: Event, lang: str, *,
                    font_dirs: Sequence[Path] = FONT_DIRS) -> bytes:
    """The certificate of participation of ``name`` for ``event``, in ``lang``, as PDF bytes.

    Raises ConfigError when no Unicode font is installed and the text needs one.
    """
    lang = lang if lang in _WORDS else "en"
    words = _WORDS[lang]
    organisers = event.organisers(lang)
    texts = {
        "heading": words["heading"],
        "certify": words["certify"],
        # The store keeps 300 characters of a name; more would only slow the fitting down.
        "name": clean_text(name)[:300] or "-",
        "took_part": words["took_part"],
        "title": clean_text(event.title(lang)),
        "date": words["on"].format(date=format_day_short(event.start, lang)),
        "series": words["series"].format(series=clean_text(event.series_title(lang))),
        "organised": words["organised"].format(
            organisers=format_list([clean_text(o) for o in organisers], locale=lang))
        if organisers else "",
    }
    pdf = _document(event, lang, texts, font_dirs)
    return bytes(pdf.output())


# The file's name as the reader's language says "certificate".
_FILE_WORD = {"en": "certificate", "fr": "certificat", "es": "certificado"}


def certificate_file_name(event_id: str, lang: str) -> str:
    """"certificat-africa-fr.pdf" in French, "certificado-..." in Spanish."""
    return f"{_FILE_WORD.get(lang, _FILE_WORD['en'])}-{event_id}.pdf"


def font_problems(font_dirs: Sequence[Path] = FONT_DIRS) -> list[Problem]:
    """What ``mailer check`` should say when certificates cannot show every name."""
    if _font_files(font_dirs) is not None:
        return []
    return [Problem(str(FONT_DIRS[0] / _REGULAR), None,
                    "no Unicode font for certificates: install the Debian package "
                    "fonts-dejavu-core (names outside Latin-1 cannot be printed without it)")]


def clean_text(text: str) -> str:
    """``text`` on one line: control and bidi-override characters dropped, spaces collapsed."""
    kept = "".join(" " if unicodedata.category(ch) == "Cc" else ch
                   for ch in text if ch not in _BIDI)
    return " ".join(kept.split())


def _font_files(font_dirs: Sequence[Path]) -> tuple[Path, Path] | None:
    for folder in font_dirs:
        regular, bold = folder / _REGULAR, folder / _BOLD
        if regular.is_file() and bold.is_file():
            return regular, bold
    return None


def _document(event: Event, lang: str, texts: dict[str, str],
              font_dirs: Sequence[Path]) -> FPDF:
    pdf = FPDF(orientation="L", unit="mm", format="A4")
    # Fixed metadata dates make the bytes depend on the inputs only.
    pdf.set_creation_date(event.end)
    pdf.set_title(texts["heading"])
    pdf.set_lang(lang)
    pdf.set_creator("webinar mailer")
    pdf.set_auto_page_break(False)
    pdf.set_margins(_SIDE, 10, _SIDE)
    family, ellipsis = _set_up_font(pdf, texts, font_dirs)
    pdf.add_page()
    _frame(pdf)
    # Each text has its own box (top, height, largest and smallest size, lines): however long
    # a name or title is, it stays in its box and the others keep their place.
    pdf.set_text_color(20, 40, 90)
    _fit(pdf, family, "B", texts["heading"], 24, 20, 30, 20, 1, ellipsis)
    pdf.set_text_color(40, 40, 40)
    _fit(pdf, family, "", texts["certify"], 50, 10, 15, 11, 1, ellipsis)
    pdf.set_text_color(0, 0, 0)
    _fit(pdf, family, "B", texts["name"], 62, 30, 32, 14, 2, ellipsis)
    pdf.set_text_color(40, 40, 40)
    _fit(pdf, family, "", texts["took_part"], 94, 10, 15, 11, 1, ellipsis)
    pdf.set_text_color(20, 40, 90)
    _fit(pdf, family, "B", texts["title"], 105, 24, 22, 12, 2, ellipsis)
    pdf.set_text_color(40, 40, 40)
    _fit(pdf, family, "", texts["date"], 131, 10, 15, 11, 1, ellipsis)
    _fit(pdf, family, "", texts["series"], 143, 18, 14, 9, 2, ellipsis)
    _fit(pdf, family, "", texts["organised"], 172, 14, 12, 8, 2, ellipsis)
    return pdf


def _set_up_font(pdf: FPDF, texts: dict[str, str],
                 font_dirs: Sequence[Path]) -> tuple[str, str]:
    """Register DejaVu when installed; else Helvetica if Latin-1 is enough; else ConfigError."""
    files = _font_files(font_dirs)
    if files is not None:
        pdf.add_font("DejaVu", "", str(files[0]))
        pdf.add_font("DejaVu", "B", str(files[1]))
        return "DejaVu", "…"
    try:
        for text in texts.values():
            text.encode("latin-1")
    except UnicodeEncodeError:
        raise ConfigError(font_problems(font_dirs)) from None
    return "helvetica", "..."


def _frame(pdf: FPDF) -> None:
    pdf.set_draw_color(20, 40, 90)
    pdf.set_line_width(1.2)
    pdf.rect(10, 10, _PAGE_W - 20, _PAGE_H - 20)
    pdf.set_line_width(0.3)
    pdf.rect(14, 14, _PAGE_W - 28, _PAGE_H - 28)


def _fit(pdf: FPDF, family: str, style: str, text: str, top: float, height: float,
         largest: int, smallest: int, max_lines: int, ellipsis: str) -> None:
    """Draw ``text`` centred in a box: the largest size that fits, cut at the smallest.

    One line is preferred down to 70% of the largest size; only then does the text wrap.
    """
    if not text:
        return
    size, lines = _choose(pdf, family, style, text, height, largest, smallest, max_lines)
    pdf.set_font(family, style, size)
    if len(lines) > max_lines:
        lines = lines[:max_lines - 1] + [_cut(pdf, " ".join(lines[max_lines - 1:]), ellipsis)]
    line_h = size * _MM_PER_PT * 1.2
    pdf.set_y(top + max(0.0, (height - line_h * len(lines)) / 2))
    for line in lines:
        pdf.set_x(_SIDE)
        pdf.cell(_WIDTH, line_h, line, align="C", new_x="LMARGIN", new_y="NEXT")


def _choose(pdf: FPDF, family: str, style: str, text: str, height: float, largest: int,
            smallest: int, max_lines: int) -> tuple[int, list[str]]:
    one_line_floor = max(smallest, round(largest * 0.7))
    lines: list[str] = []
    for allowed in range(1, max_lines + 1):
        floor = one_line_floor if allowed < max_lines else smallest
        for size in range(largest, floor - 1, -1):
            pdf.set_font(family, style, size)
            lines = _lines(pdf, text)
            if len(lines) <= allowed and size * _MM_PER_PT * 1.2 * len(lines) <= height:
                return size, lines
    return smallest, lines


def _lines(pdf: FPDF, text: str) -> list[str]:
    """How fpdf2 would wrap ``text`` at the current font (words, or characters if one is long)."""
    return list(pdf.multi_cell(_WIDTH, 5, text, align="C", dry_run=True, output="LINES"))


def _cut(pdf: FPDF, text: str, ellipsis: str) -> str:
    """The longest start of ``text`` that fits one line with an ellipsis."""
    while text and pdf.get_string_width(text + ellipsis) > _WIDTH:
        text = text[:-1]
    return text.rstrip() + ellipsis
