"""What participants read, in three languages: organisers with their articles, files named in
the reader's language, no "your place" to someone without one, the event's description, and
`mailer preview` showing the message as it reads."""

from __future__ import annotations

import email
import email.policy
import io
import shutil
from datetime import datetime, timezone
from email.message import EmailMessage
from pathlib import Path

import pytest
from click.testing import CliRunner
from pypdf import PdfReader

from mailer.cli import cli
from mailer.compose import Composer, attachments_for
from mailer.config import Organiser, Paths, Settings
from mailer.domain import PARTICIPANT_KINDS, Kind, Outgoing
from mailer.schedule import load_catalog

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2020, 7, 1, 9, 0, tzinfo=timezone.utc)
PLACE = {"en": "your place", "fr": "votre place", "es": "su plaza"}


@pytest.fixture(scope="module")
def composer() -> Composer:
    settings = Settings(organiser=Organiser(),
                        paths=Paths(schedules=ROOT / "schedules", templates=ROOT / "templates",
                                    packs=ROOT))
    return Composer(settings, load_catalog(ROOT / "schedules"))


def _message(composer: Composer, kind: Kind, lang: str, event_id: str = "africa-fr",
             **context: object) -> EmailMessage:
    out = Outgoing(key=f"{kind}-{lang}-{event_id}", kind=kind, recipient="awa@justice.gouv.sn",
                   language=lang, event_id=event_id, name="Awa Diop", country="SN",
                   context=dict(context))
    files, links = attachments_for(out, composer.catalog, composer.settings)
    data = composer.compose(out, now=NOW, attachments=files, links=links).data
    return email.message_from_bytes(data, policy=email.policy.default)  # type: ignore[return-value]


def _text(msg: EmailMessage) -> str:
    body = msg.get_body(("plain",))
    assert body is not None
    return body.get_content().replace("\r\n", "\n")


@pytest.mark.parametrize("lang", ["en", "fr", "es"])
def test_someone_on_the_waiting_list_is_never_told_of_their_place(
        composer: Composer, lang: str) -> None:
    for kind in (Kind.WAITING_LIST, Kind.PENDING_REVIEW):
        text = _text(_message(composer, kind, lang))
        assert PLACE[lang] not in text
    # Someone confirmed gives their place up by cancelling: they are told so.
    assert PLACE[lang] in _text(_message(composer, Kind.REMINDER, lang, offset="1d"))


@pytest.mark.parametrize(("lang", "organised", "file"), [
    ("en", "Organised by the European Union and the Council of Europe",
     "certificate-africa-fr.pdf"),
    ("fr", "Organisé par l’Union européenne et le Conseil de l’Europe",
     "certificat-africa-fr.pdf"),
    ("es", "Organizado por la Unión Europea y el Consejo de Europa",
     "certificado-africa-fr.pdf"),
])
def test_the_certificate_names_the_organisers_with_articles_and_its_file_in_the_language(
        composer: Composer, lang: str, organised: str, file: str) -> None:
    msg = _message(composer, Kind.CERTIFICATE, lang)
    (pdf,) = [p for p in msg.iter_attachments() if p.get_content_type() == "application/pdf"]
    assert pdf.get_filename() == file
    text = PdfReader(io.BytesIO(pdf.get_payload(decode=True))).pages[0].extract_text()
    assert organised in " ".join(text.split())
    # The date as the messages write it (English: British order, as the series publishes).
    held = {"en": "on 9 July 2020", "fr": "le 9 juillet 2020", "es": "el 9 de julio de 2020"}
    assert held[lang] in " ".join(text.split())
    footer = {"en": "On behalf of the organisers: the European Union and the Council of Europe",
              "fr": "Au nom des organisateurs : l’Union européenne et le Conseil de l’Europe",
              "es": "En nombre de los organizadores: la Unión Europea y el Consejo de Europa"}
    assert footer[lang] in _text(msg)


def test_the_events_description_is_shown_where_the_schedule_says(composer: Composer) -> None:
    text = _text(_message(composer, Kind.ACKNOWLEDGEMENT, "en", "asia-pacific-en"))
    assert "About 100 minutes: 10-minute presentations on each segment, then discussion." in text


@pytest.mark.parametrize("lang", ["en", "fr", "es"])
@pytest.mark.parametrize("status", ["confirmed", "review"])
def test_every_paragraph_of_every_message_stands_apart(
        composer: Composer, lang: str, status: str) -> None:
    """A sentence ending a paragraph is never glued to the next one (a template tag at the
    end of a line eats its line break: the refusal read "...your calendar.\nShould you")."""
    for kind in PARTICIPANT_KINDS:
        lines = _text(_message(composer, kind, lang, status=status,
                               candidates=["lac-es"])).split("\n")
        for line, after in zip(lines, lines[1:], strict=False):
            prose_ends = len(line) > 60 and line.endswith((".", "?"))
            assert not (prose_ends and after.strip() and after[0] not in "- "), (
                kind, line, after)


def test_an_update_lists_only_what_changed_in_the_readers_language(
        composer: Composer) -> None:
    """Only the English title was corrected: the English reader sees old and new titles;
    the French reader, whose title is the same, no "Titre : X → X" line."""
    before = {"fr": "Webinaire avec les pays d'Afrique", "en": "Webinar with Africa"}
    english = _text(_message(composer, Kind.UPDATE, "en", previous_title=before))
    assert ("Title: Webinar with Africa → Webinar with African countries (in French)"
            in english)
    french = _text(_message(composer, Kind.UPDATE, "fr", previous_title=before))
    assert "Titre :" not in french and "Ce qui change" not in french


def _project(tmp_path: Path) -> Path:
    for name in ("schedules", "templates", "packs", "contacts"):
        shutil.copytree(ROOT / name, tmp_path / name)
    (tmp_path / "config.toml").write_text('[store]\nurl = "sqlite:///var/m.db"\n',
                                          encoding="utf-8")
    return tmp_path / "config.toml"


def test_preview_reads_as_text_and_writes_the_exact_bytes(tmp_path: Path) -> None:
    config = _project(tmp_path)
    out = tmp_path / "w.eml"
    result = CliRunner().invoke(cli, ["--config", str(config), "preview", "waiting_list",
                                      "--event", "africa-fr", "--lang", "fr", "--country", "sn",
                                      "--out", str(out)], obj={})
    assert result.exit_code == 0, result.output
    shown = result.output
    assert "Subject: Liste d’attente : Webinaire avec les pays d'Afrique [africa-fr]" in shown
    assert "Nous vous remercions de l’intérêt" in shown and "=C3=" not in shown
    assert "Heure locale : 08:00–09:45 (heure de Dakar)" in shown
    sent = email.message_from_bytes(out.read_bytes(), policy=email.policy.default)
    assert str(sent["Subject"]).startswith("Liste d’attente")
    assert b"=C3=A9" in out.read_bytes() or b"base64" in out.read_bytes()


def test_preview_refuses_a_country_that_does_not_exist(tmp_path: Path) -> None:
    config = _project(tmp_path)
    for country, hint in (("Narnia", "unknown country 'Narnia'"),
                          ("Senegall", "did you mean SN (Senegal)?")):
        result = CliRunner().invoke(cli, ["--config", str(config), "preview", "reminder",
                                          "--event", "africa-fr", "--country", country], obj={})
        assert result.exit_code == 2, result.output
        assert hint in result.output


@pytest.mark.parametrize("inferred, lang, reads", [
    # French negates both with "ni ... ni", one with "pas".
    (["name", "country"], "fr", "Votre réponse ne précisant ni votre nom ni votre pays, nous "
                                "vous avons inscrit(e) sous le nom d’Awa Diop"),
    (["country"], "fr", "Votre réponse ne précisant pas votre pays, nous vous avons "
                        "inscrit(e) au titre du pays suivant : Sénégal."),
    # Spanish as written, not "hemos registrado su inscripción ... por el siguiente país".
    (["name", "country"], "es", "Su respuesta no indicaba su nombre ni su país, por lo que su "
                                "inscripción ha quedado registrada a nombre de Awa Diop (el que "
                                "figura como remitente de su mensaje) y con Senegal como país."),
    (["country"], "es", "Su respuesta no indicaba su país, por lo que su inscripción ha "
                        "quedado registrada con Senegal como país. Si estos datos no son "
                        "correctos"),
])
def test_what_was_guessed_reads_as_written_in_the_language(
        composer: Composer, inferred: list[str], lang: str, reads: str) -> None:
    for kind in (Kind.ACKNOWLEDGEMENT, Kind.WAITING_LIST):
        msg = _message(composer, kind, lang, inferred=inferred)
        assert reads in " ".join(_text(msg).split())
        html = msg.get_body(("html",))
        assert html is not None and reads in " ".join(html.get_content().split())


def test_spanish_reads_as_a_latin_american_official_writes() -> None:
    """No French calques or ambiguities left in the Spanish templates: "su administración"
    (a government is "su institución"), "dejado de lado", "escriba su nombre completo" about
    a country (whose name?), "lamentamos ... lamentablemente"."""
    folder = ROOT / "templates" / "es"
    text = "\n".join(p.read_text(encoding="utf-8") for p in sorted(folder.iterdir()))
    for calque in ("su administración", "dejado de lado", "escriba su nombre completo",
                   "lamentablemente no figura", "por el siguiente país",
                   "hemos registrado su inscripción"):
        assert calque not in text, calque


def test_preview_shows_what_was_guessed_only_when_asked(tmp_path: Path) -> None:
    """Most participants state their name and country: the preview shows no guess, and says
    how to see the paragraph the others read; `--inferred` shows it, with a country to name
    even without --country (it read "au titre du pays suivant : ." before)."""
    config = _project(tmp_path)

    def preview(*args: str) -> str:
        result = CliRunner().invoke(cli, ["--config", str(config), "preview", *args], obj={})
        assert result.exit_code == 0, result.output
        return result.output

    plain = preview("acknowledgement", "--event", "africa-fr", "--lang", "fr")
    assert "Votre réponse ne précisant" not in plain
    assert "--inferred name,country shows it" in plain
    guessed = preview("acknowledgement", "--event", "africa-fr", "--lang", "fr",
                      "--inferred", "country")
    assert "Votre réponse ne précisant" in guessed and "Sénégal." in guessed
    assert "--inferred name,country shows it" not in guessed
    both = preview("pending_review", "--event", "lac-es", "--lang", "es", "--inferred",
                   "name,country", "--country", "CO", "--name", "Ana Ruiz")
    assert "Su respuesta no indicaba su nombre ni su país" in both
    assert "Ana Ruiz" in both and "Colombia" in both
    # A reminder never says what was guessed: no hint there.
    assert "--inferred" not in preview("reminder", "--event", "africa-fr")
    wrong = CliRunner().invoke(cli, ["--config", str(config), "preview", "acknowledgement",
                                     "--event", "africa-fr", "--inferred", "position"], obj={})
    assert wrong.exit_code == 2 and "--inferred: 'position'" in wrong.output


def test_the_demo_tells_its_story_in_the_templates_words() -> None:
    from mailer.demo import Sent, kinds_line, subject_words

    words = subject_words(ROOT / "templates")
    sent = [Sent(1, "acknowledgement", "africa-fr", "a@x", Path("a")),
            Sent(2, "waiting_list", "africa-fr", "b@x", Path("b")),
            Sent(3, "pending_review", "africa-fr", "c@x", Path("c")),
            Sent(4, "promotion", "africa-fr", "d@x", Path("d")),
            Sent(5, "withdrawal", "africa-fr", "e@x", Path("e"))]
    assert kinds_line(sent, words) == (
        "1 “Registration confirmed”, 1 “Waiting list”, 1 “Registration request received”, "
        "1 “Registration confirmed: a place is available”, 1 “Cancellation confirmed”")


@pytest.mark.parametrize("lang", ["en", "fr", "es"])
def test_a_withdrawal_from_the_waiting_list_removes_no_calendar_entry(
        composer: Composer, lang: str) -> None:
    calendar = {"en": "calendar", "fr": "agenda", "es": "agenda"}[lang]
    waiting = _message(composer, Kind.WITHDRAWAL, lang, status="waiting")
    assert calendar not in _text(waiting)
    assert not [p for p in waiting.walk() if p.get_content_type() == "text/calendar"]
    confirmed = _message(composer, Kind.WITHDRAWAL, lang, status="confirmed")
    assert calendar in _text(confirmed)
    assert [p for p in confirmed.walk() if p.get_content_type() == "text/calendar"]


def test_the_certificate_note_says_attendance_counts_only_where_it_does(
        composer: Composer) -> None:
    on_request = _text(_message(composer, Kind.CERTIFICATE_NOTED, "en", policy="on_request"))
    attendees = _text(_message(composer, Kind.CERTIFICATE_NOTED, "en", policy="attendees"))
    assert "who attended" not in on_request and "who attended" in attendees
