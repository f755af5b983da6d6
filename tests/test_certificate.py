"""Certificates of participation: the PDF's text, language, layout limits and determinism."""

from __future__ import annotations

import io
from datetime import datetime, timezone
from pathlib import Path

import pytest
from pypdf import PdfReader

from mailer.certificate import certificate_pdf, font_problems
from mailer.errors import ConfigError
from mailer.schedule import Event, EventSpec, Series, SeriesSpec

SERIES = Series(SeriesSpec(
    id="cyber-cj-2020",
    title={"en": "Cybercrime and criminal justice in cyberspace",
           "fr": "Cybercrime et justice pénale dans le cyberespace",
           "es": "Ciberdelincuencia y justicia penal en el ciberespacio"},
    organisers=["European Union", "Council of Europe"]), Path("cyber.toml"))


def _event(event_id: str, lang: str, title: dict[str, str], day: int, month: int) -> Event:
    spec = EventSpec(id=event_id, title=title, language=lang, invited=["SN"],
                     start=datetime(2020, month, day, 8, tzinfo=timezone.utc),
                     end=datetime(2020, month, day, 9, 45, tzinfo=timezone.utc))
    return Event(spec, SERIES, frozenset({"SN"}), Path("cyber.toml"))


AFRICA_FR = _event("africa-fr", "fr", {"fr": "Webinaire avec les pays d'Afrique"}, 9, 7)
LATAM_ES = _event("latam-es", "es", {"es": "Webinario con América Latina y el Caribe"}, 22, 7)


def _text(pdf: bytes) -> str:
    reader = PdfReader(io.BytesIO(pdf))
    assert len(reader.pages) == 1
    return reader.pages[0].extract_text()


def test_french_certificate_names_person_event_date_series_and_organisers() -> None:
    """A French certificate carries the accented name, the title, the French date and more."""
    pdf = certificate_pdf("Zoë Ñúñez-Øre", AFRICA_FR, "fr")
    assert pdf.startswith(b"%PDF")
    text = _text(pdf)
    for expected in ("Certificat de participation", "Zoë Ñúñez-Øre",
                     "Webinaire avec les pays d'Afrique", "9 juillet 2020",
                     "Cybercrime et justice pénale dans le cyberespace",
                     "European Union et Council of Europe"):
        assert expected in text


def test_spanish_certificate_uses_spanish_words_and_date() -> None:
    """A Spanish certificate has the Spanish heading and a Babel-localised Spanish date."""
    text = _text(certificate_pdf("Awa Diop", LATAM_ES, "es"))
    assert "Certificado de participación" in text
    assert "22 de julio de 2020" in text
    assert "Webinario con América Latina y el Caribe" in text


def test_page_is_landscape_a4() -> None:
    """The certificate is one A4 page in landscape orientation."""
    box = PdfReader(io.BytesIO(certificate_pdf("Awa Diop", AFRICA_FR, "en"))).pages[0].mediabox
    assert (round(float(box.width)), round(float(box.height))) == (842, 595)


def test_same_inputs_give_identical_bytes() -> None:
    """Two calls with the same inputs give byte-identical PDFs (no clock in the file)."""
    assert certificate_pdf("Awa Diop", AFRICA_FR, "fr") == certificate_pdf("Awa Diop",
                                                                           AFRICA_FR, "fr")


def test_long_name_is_cut_to_two_lines_and_keeps_the_page() -> None:
    """A very long name is shrunk and cut with an ellipsis; every other line still shows."""
    text = _text(certificate_pdf("Maria " * 60, AFRICA_FR, "en"))
    lines = text.splitlines()
    name_lines = [line for line in lines if line.startswith("Maria")]
    assert len(name_lines) == 2
    assert name_lines[-1].endswith("…")
    assert lines[0] == "Certificate of participation"
    assert lines[-1] == "Organised by European Union and Council of Europe"


def test_markup_and_control_characters_are_printed_as_plain_text() -> None:
    """Markdown, HTML and line breaks in a name are drawn literally, on one line."""
    text = _text(certificate_pdf("**Awa** <b>Diop</b>\r\nBcc: x@example.org", AFRICA_FR, "en"))
    assert "**Awa** <b>Diop</b> Bcc: x@example.org" in text


def test_names_outside_latin1_render_with_the_unicode_font() -> None:
    """Polish and Greek letters are printed with the installed DejaVu font."""
    text = _text(certificate_pdf("Łukasz Żółć Γιώργος", AFRICA_FR, "en"))
    assert "Łukasz Żółć Γιώργος" in text
    assert font_problems() == []


def test_without_unicode_font_latin1_names_fall_back_to_helvetica(tmp_path: Path) -> None:
    """With no DejaVu font, a Latin-1 name is still printed, in the PDF core Helvetica."""
    pdf = certificate_pdf("Zoë Ñúñez-Øre", AFRICA_FR, "es", font_dirs=[tmp_path])
    assert b"/Helvetica" in pdf
    assert "Zoë Ñúñez-Øre" in _text(pdf)


def test_without_unicode_font_other_names_raise_a_clear_error(tmp_path: Path) -> None:
    """With no DejaVu font, a name outside Latin-1 raises ConfigError naming the package."""
    with pytest.raises(ConfigError, match="fonts-dejavu-core"):
        certificate_pdf("Łukasz Żółć", AFRICA_FR, "en", font_dirs=[tmp_path])
