"""Tests of mailer.compose: every kind in every language parses back with the right headers,
MIME layout, calendar part, dates, and no way for text from mail to add a header or markup."""

from __future__ import annotations

import email
import shutil
from datetime import datetime, timezone
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

import pytest
from icalendar import Calendar

from mailer.calendar import event_uid
from mailer.compose import Composer, pack_files, safe_display_name
from mailer.config import Organiser, Paths, Settings
from mailer.domain import (
    ANSWER_KINDS,
    CALENDAR_KINDS,
    CANCEL_KINDS,
    PARTICIPANT_KINDS,
    STAFF_KINDS,
    Kind,
    Outgoing,
    outbox_key,
)
from mailer.errors import PermanentSendError, ScheduleError, UsageError
from mailer.localtime import format_span_utc, local_span
from mailer.schedule import Catalog, load_catalog
from mailer.wire import WireMessage

NOW = datetime(2020, 7, 1, 9, 30, tzinfo=timezone.utc)
SCHEDULE = """
[groups]
africa = ["SN", "CI", "MA", "FR"]

[series]
id = "cyber-cj-2020"
title.en = "Cybercrime and criminal justice"
title.fr = "Cybercrime et justice pénale"
title.es = "Ciberdelincuencia y justicia penal"
organisers = ["European Union", "Council of Europe"]
max_per_country = 3
recorded = true

[series.pack]
factsheet = "packs/factsheet.{lang}.pdf"
slides = "packs/slides.{lang}.pptx"

[[event]]
id = "africa-fr"
title = { fr = "Webinaire Afrique", en = "Africa webinar", es = "Seminario web África" }
start = 2020-07-09T08:00:00Z
end = 2020-07-09T09:45:00Z
language = "fr"
invited = ["@africa"]
join_url = "https://zoom.us/j/111"

[[event]]
id = "lac-es"
title = { es = "Seminario web América Latina" }
start = 2020-07-22T15:00:00Z
end = 2020-07-22T16:45:00Z
language = "es"
invited = ["MX", "AR"]
join_url = "https://zoom.us/j/222"
"""
DAY = {"en": "Thursday 9 July 2020", "fr": "jeudi 9 juillet 2020",
       "es": "jueves, 9 de julio de 2020"}
SPAN = {"en": "Thursday 9 July 2020, 08:00–09:45 UTC",
        "fr": "jeudi 9 juillet 2020, 08:00–09:45 UTC",
        "es": "jueves, 9 de julio de 2020, 08:00–09:45 UTC"}
# Kinds whose text shows the full UTC span (the others name the day only).
SPAN_KINDS = CALENDAR_KINDS | CANCEL_KINDS | {Kind.INVITATION, Kind.WAITING_LIST,
                                              Kind.PENDING_REVIEW, Kind.ALREADY_REGISTERED,
                                              Kind.PACK, Kind.CLARIFICATION}
TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def write_catalog(folder: Path, text: str = SCHEDULE) -> Catalog:
    """Write one literal schedule file into ``folder`` and load it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cyber.toml").write_text(text, encoding="utf-8")
    return load_catalog(folder)


def make_composer(tmp_path: Path, templates: Path = TEMPLATES) -> Composer:
    settings = Settings(organiser=Organiser(name="Cybercrime Programme Office",
                                            address="webinars@example.org"),
                        paths=Paths(templates=templates, schedules=tmp_path / "schedules"))
    return Composer(settings, write_catalog(tmp_path / "schedules"))


def outgoing(kind: Kind, lang: str = "fr", *, recipient: str = "awa.diop@justice.gouv.sn",
             name: str = "Awa Diop", country: str | None = "SN", event_id: str | None = "africa-fr",
             sequence: int = 2, in_reply_to: str | None = None, **context: object) -> Outgoing:
    return Outgoing(key=outbox_key(kind, recipient, event_id, sequence), kind=kind,
                    recipient=recipient, language=lang, event_id=event_id, name=name,
                    country=country, sequence=sequence, in_reply_to=in_reply_to,
                    context=dict(context))


def parse(msg: WireMessage) -> EmailMessage:
    parsed = email.message_from_bytes(msg.as_bytes(), policy=default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def body(msg: EmailMessage, subtype: str) -> str:
    part = msg.get_body(preferencelist=(subtype,))
    assert part is not None and part.get_content_type() == f"text/{subtype}"
    return part.get_content()


@pytest.fixture
def composer(tmp_path: Path) -> Composer:
    """A composer over the shipped templates and a literal two-event catalog."""
    return make_composer(tmp_path)


@pytest.mark.parametrize("lang", ["en", "fr", "es"])
@pytest.mark.parametrize("kind", PARTICIPANT_KINDS)
def test_every_kind_and_language(composer: Composer, kind: Kind, lang: str) -> None:
    """Each participant kind in each language parses back with headers, layout and dates."""
    out = outgoing(kind, lang, in_reply_to="<orig.1@justice.gouv.sn>")
    msg = parse(composer.compose(out, now=NOW))

    assert msg["Message-ID"] == out.message_id("example.org")
    assert msg["Subject"].endswith(" [africa-fr]")
    assert msg["From"].addresses[0].addr_spec == "webinars@example.org"
    [to] = msg["To"].addresses
    assert (to.display_name, to.addr_spec) == ("Awa Diop", "awa.diop@justice.gouv.sn")
    assert msg["Reply-To"].addresses[0].addr_spec == "webinars+africa-fr@example.org"
    assert msg["In-Reply-To"] == msg["References"] == "<orig.1@justice.gouv.sn>"
    assert msg["Date"].datetime == NOW
    assert msg["Content-Language"] == lang
    expected = "auto-replied" if kind in ANSWER_KINDS else "auto-generated"
    assert msg["Auto-Submitted"] == expected

    text, html = body(msg, "plain"), body(msg, "html")
    assert DAY[lang] in text and DAY[lang] in html
    if kind in SPAN_KINDS:
        assert SPAN[lang] in text
    assert "{{" not in text and "{%" not in html

    calendars = [p for p in msg.walk() if p.get_content_type() == "text/calendar"]
    if kind in CALENDAR_KINDS | CANCEL_KINDS:
        method = "REQUEST" if kind in CALENDAR_KINDS else "CANCEL"
        assert msg.get_content_type() == "multipart/mixed"
        alternative, ics_file = msg.get_payload()
        assert alternative.get_content_type() == "multipart/alternative"
        assert [p.get_content_type() for p in alternative.get_payload()] == [
            "text/plain", "text/html", "text/calendar"]
        [part] = calendars
        assert part.get_param("method") == method
        assert part.get_content_charset() == "utf-8"
        assert ics_file.get_content_type() == "application/ics"
        assert ics_file.get_filename() == "invite.ics"
        cal = Calendar.from_ical(part.get_content())
        assert Calendar.from_ical(ics_file.get_content()).to_ical() == cal.to_ical()
        assert cal["METHOD"] == method
        [vevent] = cal.walk("VEVENT")
        assert vevent["UID"] == event_uid("africa-fr", "awa.diop@justice.gouv.sn",
                                          "example.org")
        assert vevent["SEQUENCE"] == 2
        assert vevent["ORGANIZER"].lower() == "mailto:webinars@example.org"
        assert vevent["ATTENDEE"].params["RSVP"] == "TRUE"
        assert vevent.decoded("DTSTART") == datetime(2020, 7, 9, 8, 0, tzinfo=timezone.utc)
        assert vevent.decoded("DTEND") == datetime(2020, 7, 9, 9, 45, tzinfo=timezone.utc)
        assert vevent.decoded("DTSTAMP") == NOW
    else:
        assert calendars == []
        assert msg.get_content_type() == "multipart/alternative"


def test_french_and_spanish_forms_and_local_time(composer: Composer) -> None:
    """The form's labels follow the language, and local time is shown with the zone's city."""
    fr = body(parse(composer.compose(outgoing(Kind.INVITATION, "fr", country="FR"), now=NOW)),
              "plain")
    for label in ("Nom :", "Fonction :", "Organisation :", "Pays : France", "Courriel :"):
        assert fr.count(label) == 3          # max_per_country blocks
    assert "Madame, Monsieur," in fr
    assert "Heure locale : 10:00–11:45 (heure de Paris)" in fr
    assert "Participant 3" in fr and "Participant 4" not in fr

    es_out = outgoing(Kind.CLARIFICATION, "es", event_id="lac-es", country="MX",
                      missing=["country", "email"])
    es = body(parse(composer.compose(es_out, now=NOW)), "plain")
    for label in ("Nombre:", "Cargo:", "Organización:", "País: México", "Correo electrónico:"):
        assert label in es
    assert "miércoles, 22 de julio de 2020, 15:00–16:45 UTC" in es
    assert "Hora local: 10:00–11:45 (hora de Ciudad de México)" in es
    assert "País, Correo electrónico" in es
    assert "Estimado/a Awa Diop:" in es


def test_no_local_time_when_country_unknown(composer: Composer) -> None:
    """Without a country (or with a UTC zone) only the UTC line is shown."""
    text = body(parse(composer.compose(outgoing(Kind.REMINDER, "en", country=None), now=NOW)),
                "plain")
    assert "Thursday 9 July 2020, 08:00–09:45 UTC" in text
    assert "local time" not in text


def test_uid_stable_across_composes_and_distinct_per_participant(composer: Composer) -> None:
    """Two composes for one person share a UID; another participant gets another UID."""
    def uid(recipient: str, kind: Kind) -> str:
        msg = parse(composer.compose(outgoing(kind, recipient=recipient), now=NOW))
        [part] = [p for p in msg.walk() if p.get_content_type() == "text/calendar"]
        return str(Calendar.from_ical(part.get_content()).walk("VEVENT")[0]["UID"])

    first = uid("awa.diop@justice.gouv.sn", Kind.ACKNOWLEDGEMENT)
    assert first == uid("awa.diop@justice.gouv.sn", Kind.UPDATE)
    assert first == uid("awa.diop@justice.gouv.sn", Kind.CANCELLATION)
    assert first != uid("moussa.ba@justice.gouv.sn", Kind.ACKNOWLEDGEMENT)


@pytest.mark.parametrize("hostile", [
    "Awa\r\nBcc: evil@x.org",
    "Awa\nBcc: evil@x.org",
    "=?utf-8?q?Awa=0D=0ABcc:_evil@x.org?=",
    "Awa\u2028Bcc: evil@x.org",
    "Awa <evil@x.org>, Bob <bob@x.org>",
])
def test_hostile_name_injects_no_header_or_recipient(composer: Composer, hostile: str) -> None:
    """A name with CR/LF, encoded words or addresses adds no header and no recipient."""
    out = outgoing(Kind.ACKNOWLEDGEMENT, "en", name=hostile)
    raw = composer.compose(out, now=NOW).as_bytes()
    msg = email.message_from_bytes(raw, policy=default)
    assert msg["Bcc"] is None and msg["Cc"] is None
    assert b"\nBcc:" not in raw
    [to] = msg["To"].addresses
    assert to.addr_spec == "awa.diop@justice.gouv.sn"
    assert "\n" not in to.display_name and "\r" not in to.display_name


def test_hostile_question_subject_and_sender(composer: Composer) -> None:
    """A forwarded question's subject and sender from mail cannot add headers to staff mail."""
    out = outgoing(Kind.STAFF_QUESTION, "fr", recipient="staff@example.org", name="Staff",
                   sender="awa@x.org\r\nBcc: evil@x.org", subject="Hi\r\nBcc: evil@x.org",
                   text="Will the slides be shared?")
    raw = composer.compose(out, now=NOW).as_bytes()
    msg = email.message_from_bytes(raw, policy=default)
    assert msg["Bcc"] is None and b"\nBcc:" not in raw
    assert [a.addr_spec for a in msg["To"].addresses] == ["staff@example.org"]
    assert msg["Content-Language"] == "en"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert "Will the slides be shared?" in body(msg, "plain")


def test_staff_question_reply_goes_to_participant(composer: Composer) -> None:
    """Staff answering a forwarded question reply straight to the participant."""
    out = outgoing(Kind.STAFF_QUESTION, "en", recipient="staff@example.org", name="",
                   sender="awa.diop@justice.gouv.sn", subject="Slides?", text="Slides?")
    msg = parse(composer.compose(out, now=NOW))
    assert msg["Reply-To"].addresses[0].addr_spec == "awa.diop@justice.gouv.sn"
    assert msg["Subject"].startswith("Question from awa.diop@justice.gouv.sn")


def test_staff_alert_lists_problems(composer: Composer) -> None:
    """A staff alert without an event lists each problem and has no event tag."""
    out = outgoing(Kind.STAFF_ALERT, "en", recipient="staff@example.org", name="", event_id=None,
                   reason="schedules/cyber.toml is invalid",
                   problems=["schedules/cyber.toml:12: event[0].end: end must be after start"])
    msg = parse(composer.compose(out, now=NOW))
    assert msg["Subject"] == "Action needed: schedules/cyber.toml is invalid"
    assert msg["Reply-To"].addresses[0].addr_spec == "webinars@example.org"
    assert "- schedules/cyber.toml:12: event[0].end" in body(msg, "plain")


def test_html_escapes_markup_from_names(composer: Composer) -> None:
    """A name like "<b>Awa</b>" shows as text in HTML, never as markup."""
    out = outgoing(Kind.ACKNOWLEDGEMENT, "fr", name="<b>Awa</b> <script>x</script>")
    msg = parse(composer.compose(out, now=NOW))
    html = body(msg, "html")
    assert "&lt;b&gt;Awa&lt;/b&gt;" in html
    assert "<b>Awa" not in html and "<script>" not in html
    assert "<b>Awa</b>" in body(msg, "plain")


def test_hostile_in_reply_to_is_dropped(composer: Composer) -> None:
    """An In-Reply-To that is not a plain Message-ID is left out rather than copied."""
    out = outgoing(Kind.CLARIFICATION, "en", in_reply_to="<a@b.org>\r\nBcc: evil@x.org")
    msg = parse(composer.compose(out, now=NOW))
    assert msg["In-Reply-To"] is None and msg["Bcc"] is None


def test_no_event_means_plain_reply_to_and_no_tag(composer: Composer) -> None:
    """A clarification about no particular event lists the candidate events' references."""
    out = outgoing(Kind.CLARIFICATION, "en", event_id=None, candidates=["africa-fr", "lac-es"])
    msg = parse(composer.compose(out, now=NOW))
    assert "[" not in msg["Subject"]
    assert msg["Reply-To"].addresses[0].addr_spec == "webinars@example.org"
    text = body(msg, "plain")
    assert "(reference: africa-fr)" in text and "(reference: lac-es)" in text


def test_attachments_and_links(composer: Composer) -> None:
    """Pack files are attached with their bytes, and links for large files are listed."""
    pdf = b"%PDF-1.4 factsheet\n"
    out = outgoing(Kind.PACK, "fr")
    msg = parse(composer.compose(
        out, now=NOW, attachments=[("fiche.fr.pdf", "application/pdf", pdf)],
        links=[("Présentation", "https://example.org/slides.fr.pptx")]))
    assert msg.get_content_type() == "multipart/mixed"
    [attached] = list(msg.iter_attachments())
    assert attached.get_filename() == "fiche.fr.pdf"
    assert attached.get_content_type() == "application/pdf"
    assert attached.get_content() == pdf
    text = body(msg, "plain")
    assert "- fiche.fr.pdf" in text
    assert "- Présentation : https://example.org/slides.fr.pptx" in text
    assert 'href="https://example.org/slides.fr.pptx"' in body(msg, "html")


def test_calendar_kind_with_attachment_keeps_layout(composer: Composer) -> None:
    """A reminder with a file is mixed[alternative, invite.ics, the file]."""
    msg = parse(composer.compose(outgoing(Kind.REMINDER, "en"), now=NOW,
                                 attachments=[("notes.pdf", "application/pdf", b"%PDF")]))
    types = [p.get_content_type() for p in msg.get_payload()]
    assert types == ["multipart/alternative", "application/ics", "application/pdf"]


def test_pack_files_fall_back_to_event_language_then_english(tmp_path: Path,
                                                             composer: Composer) -> None:
    """Each pack item is taken in the participant's language, else the event's, else English."""
    packs = tmp_path / "packs-root"
    (packs / "packs").mkdir(parents=True)
    for name in ("factsheet.fr.pdf", "factsheet.es.pdf", "slides.en.pptx"):
        (packs / "packs" / name).write_bytes(b"x")
    event = composer.catalog.event("africa-fr")
    assert [(i, p.name) for i, p in pack_files(event, "es", packs)] == [
        ("factsheet", "factsheet.es.pdf"), ("slides", "slides.en.pptx")]
    assert [(i, p.name) for i, p in pack_files(event, "en", packs)] == [
        ("factsheet", "factsheet.fr.pdf"), ("slides", "slides.en.pptx")]


def test_safe_display_name_with_hostile_literals() -> None:
    """Control characters, line breaks, encoded words and bidi overrides are neutralised."""
    assert safe_display_name("Awa\r\nBcc: evil@x.org") == "Awa Bcc: evil@x.org"
    assert safe_display_name("Awa\x00Diop") == "Awa Diop"
    assert safe_display_name("=?utf-8?q?Ren=C3=A9e?=") == "Renée"
    assert safe_display_name("=?utf-8?q?A=0D=0ABcc:_e@x?=") == "A Bcc: e@x"
    assert "=?" not in safe_display_name("=?bogus?x?abc?=")
    assert safe_display_name("Awa\u202eDiop\u2029x") == "Awa Diop x"
    assert len(safe_display_name("x" * 500)) <= 120


def test_unknown_event_raises_schedule_error(composer: Composer) -> None:
    """An outbox row for an event no longer in the schedules says so."""
    with pytest.raises(ScheduleError, match="gone-event"):
        composer.compose(outgoing(Kind.REMINDER, event_id="gone-event"), now=NOW)


def test_shipped_templates_pass_the_check(composer: Composer) -> None:
    """Every shipped template exists for each language and renders with a sample context."""
    assert composer.check_templates() == []


def test_check_finds_missing_and_broken_templates(tmp_path: Path) -> None:
    """A deleted template, a syntax error and an undefined name are each reported with place."""
    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES, templates)
    (templates / "fr" / "reminder.html").unlink()
    (templates / "es" / "pack.txt").write_text("Hola\n{% if %}\n", encoding="utf-8")
    (templates / "en" / "promotion.txt").write_text("A\nB\n{{ no_such_value }}\n",
                                                    encoding="utf-8")
    composer = make_composer(tmp_path, templates)
    problems = composer.check_templates()
    by_file = {Path(p.file).relative_to(templates).as_posix(): p for p in problems}
    missing = by_file["fr/reminder.html"]
    assert (missing.field, missing.message) == ("reminder", "template missing")
    broken = by_file["es/pack.txt"]
    assert broken.field == "pack" and broken.line == 2 and "syntax" in broken.message
    undefined = by_file["en/promotion.txt"]
    assert undefined.line == 3 and "no_such_value" in undefined.message
    assert len(problems) == 3


def test_check_only_requires_languages_in_use(tmp_path: Path) -> None:
    """With only English events, a missing Spanish template is not a problem."""
    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES, templates)
    shutil.rmtree(templates / "es")
    composer = make_composer(tmp_path, templates)
    english = SCHEDULE.split("[[event]]")[0] + """
[[event]]
id = "asia-en"
title = "Asia webinar"
start = 2020-06-24T07:00:00Z
end = 2020-06-24T08:45:00Z
language = "en"
invited = ["PH"]
"""
    assert composer.check_templates(write_catalog(tmp_path / "en-only", english)) == []
    assert any(p.file.endswith("es/invitation.txt") for p in composer.check_templates())


def test_preview_renders_eml(composer: Composer) -> None:
    """``mailer preview`` bytes parse as the requested kind; unknown kinds are a usage error."""
    raw = composer.preview("acknowledgement", "lac-es", "es", "ana@gob.mx", "Ana", NOW, "MX")
    msg = email.message_from_bytes(raw, policy=default)
    assert msg["To"].addresses[0].addr_spec == "ana@gob.mx"
    assert "Inscripción confirmada" in msg["Subject"]
    with pytest.raises(UsageError):
        composer.preview("nonsense", "lac-es", "es", "ana@gob.mx", "Ana", NOW)
    with pytest.raises(UsageError):
        composer.preview("reminder", "no-such", "es", "ana@gob.mx", "Ana", NOW)


@pytest.mark.parametrize("kind", STAFF_KINDS)
def test_staff_kinds_are_english(composer: Composer, kind: Kind) -> None:
    """Staff messages render from templates/staff in English whatever the language given."""
    out = outgoing(kind, "es", recipient="staff@example.org", name="Staff", text="x")
    msg = parse(composer.compose(out, now=NOW))
    assert msg["Content-Language"] == "en"
    assert msg["Auto-Submitted"] == "auto-generated"


def test_local_time_phrases() -> None:
    """Local times name the zone's city idiomatically and repeat the day when it differs."""
    start = datetime(2020, 7, 20, 15, 0, tzinfo=timezone.utc)
    end = datetime(2020, 7, 20, 16, 45, tzinfo=timezone.utc)
    assert local_span(start, end, "fr", "NZ").text == (
        "mardi 21 juillet 2020, 03:00–04:45 (heure de Wellington)")
    assert local_span(start, end, "fr", "EG").text == "17:00–18:45 (heure du Caire)"
    assert local_span(start, end, "en", "AR").text == "12:00–13:45 (Buenos Aires time)"
    assert local_span(start, end, "es", "GB").text == "16:00–17:45 (hora de Londres)"
    assert local_span(start, end, "es", None).text == ""
    assert local_span(start, end, "es", "XX").text == ""
    assert format_span_utc(start, end, "en") == "Monday 20 July 2020, 15:00–16:45 UTC"


@pytest.mark.parametrize("kind", PARTICIPANT_KINDS + STAFF_KINDS)
def test_every_kind_goes_as_short_seven_bit_crlf_lines(composer: Composer, kind: Kind) -> None:
    """On the wire each kind is 7-bit, CRLF lines of at most 78, and the same bytes each time."""
    out = outgoing(kind, "fr", name="Awa Ndèye Diop-Ba, née N’Diaye « Présidente »",
                   in_reply_to="<orig.1@justice.gouv.sn>")
    msg = composer.compose(out, now=NOW, attachments=[("Fiche d’information.pdf",
                                                       "application/pdf", b"%PDF-1.4")])
    assert msg.data == composer.compose(out, now=NOW, attachments=[(
        "Fiche d’information.pdf", "application/pdf", b"%PDF-1.4")]).data
    assert msg.data.isascii()
    lines = msg.data.split(b"\r\n")
    assert not any(b"\n" in line or b"\r" in line for line in lines)
    assert max(len(line) for line in lines) <= 78
    assert (msg.sender, msg.recipient) == ("webinars@example.org", "awa.diop@justice.gouv.sn")
    assert parse(msg)["To"].addresses[0].display_name.startswith("Awa Ndèye Diop-Ba")


def test_unusual_but_valid_addresses_pass_and_invalid_ones_fail_for_good(
        composer: Composer) -> None:
    """An address off the fast path goes through the full parser; an unsendable one is refused.

    An internationalised address is composed (SMTP then needs the server's SMTPUTF8)."""
    msg = composer.compose(outgoing(Kind.REMINDER, recipient="o'brien@justice.gov.ie"), now=NOW)
    assert parse(msg)["To"].addresses[0].addr_spec == "o'brien@justice.gov.ie"
    msg = composer.compose(outgoing(Kind.REMINDER, recipient="josé@justicia.gob.es"), now=NOW)
    assert msg.recipient == "josé@justicia.gob.es"
    for bad in ("awa@@gouv.sn", '"awa diop@gouv.sn', "josé@@justicia.gob.es",
                "josé@justicia.gob.es\x1b[31m"):
        with pytest.raises(PermanentSendError, match="invalid address"):
            composer.compose(outgoing(Kind.REMINDER, recipient=bad), now=NOW)
