"""`mailer move`: the two messages say it is a move (not a cancellation the participant asked
for), the calendars stay right, and a move to an event that does not invite the person's
country is refused unless staff insist. On SQLite and PostgreSQL, over a real SMTP server."""

from __future__ import annotations

from pathlib import Path

import pytest
from icalendar import Calendar

from mailer import store
from mailer.schedule import load_catalog
from tests.builders import SERIES
from tests.servers.smtp import SmtpSink
from tests.staffkit import NOW, Office, body, make_office

AFRICA_EN = """
[[event]]
id = "africa-en"
title.en = "Africa webinar (English)"
title.fr = "Webinaire Afrique (anglais)"
title.es = "Webinario África (inglés)"
start = 2020-07-07T08:00:00Z
end = 2020-07-07T09:45:00Z
language = "en"
invited = ["@west_africa"]
join_url = "https://zoom.us/j/333"
"""


@pytest.fixture
def office(st: store.Store, tmp_path: Path, smtp_sink: SmtpSink) -> Office:
    office = make_office(tmp_path, st.url, smtp_sink)
    schedule = (SERIES.replace("{limit}", "4").replace("{not_invited}", "review")
                .replace("{{", "{").replace("}}", "}")) + AFRICA_EN
    (tmp_path / "schedules" / "test.toml").write_text(schedule, encoding="utf-8")
    office.catalog = load_catalog(tmp_path / "schedules")
    return office


def calendar(msg) -> tuple[str, str, int]:
    """(METHOD, UID, SEQUENCE) of a message's calendar part."""
    (part,) = [p for p in msg.walk() if p.get_content_type() == "text/calendar"]
    cal = Calendar.from_ical(part.get_content())
    (event,) = cal.walk("VEVENT")
    return str(cal["METHOD"]), str(event["UID"]), int(event.get("SEQUENCE", 0))


WORDS = {
    "en": ("Registration moved: Africa webinar", "has been moved to the session “Africa "
           "webinar (English)”", "follows, with its calendar invitation", "This registration "
           "replaces the one for “Africa webinar”", "register again"),
    "fr": ("Inscription transférée : Webinaire Afrique", "a été transférée à la séance « "
           "Webinaire Afrique (anglais) »", "accompagné de son invitation de calendrier",
           "Cette inscription remplace celle à la séance « Webinaire Afrique »",
           "inscrire de nouveau"),
    "es": ("Inscripción trasladada: Webinaire Afrique", "se ha trasladado a la sesión "
           "«Webinario África (inglés)»", "con su invitación de calendario", "Esta inscripción "
           "sustituye a la de la sesión «Webinaire Afrique»",
           "volver a inscribirse"),
}


@pytest.mark.parametrize("lang", ["en", "fr", "es"])
def test_a_move_is_announced_as_a_move_in_the_participants_language(office: Office,
                                                                    lang: str) -> None:
    """The withdrawal from the old session names the new one and says its invitation
    follows; the new acknowledgement says it replaces the old session; the calendar gets a
    CANCEL of the old entry above its REQUEST, then a REQUEST of the new one."""
    awa = "awa.diop@justice.gouv.sn"
    made = office.mailer("register", "--event", "africa-fr", "--email", awa, "--name",
                         "Awa Diop", "--country", "SN", "--lang", lang, "--now", NOW)
    assert made.exit_code == 0, made.output
    office.drain()  # her first acknowledgement went out before the move (else it is missed)
    ref = f"R{office.registration(awa).id}"
    moved = office.mailer("move", ref, "--to", "africa-en", "--now", NOW)
    assert moved.exit_code == 0, moved.output
    office.drain()

    (k1, first), (k2, withdrawal), (k3, new) = office.sent_to(awa)
    assert (k1, k2, k3) == ("acknowledgement", "withdrawal", "acknowledgement")
    subject, moved_to, follows, replaces, again = WORDS[lang]
    assert withdrawal["Subject"].startswith(subject)
    text = " ".join(body(withdrawal).split())
    assert moved_to in text and follows in text
    assert again not in text            # not the words of a cancellation they asked for
    assert replaces in " ".join(body(new).split())
    assert replaces not in " ".join(body(first).split())

    method, uid, sequence = calendar(first)
    assert method == "REQUEST"
    cancel = calendar(withdrawal)
    assert cancel[0] == "CANCEL" and cancel[1] == uid and cancel[2] > sequence
    request = calendar(new)
    assert request[0] == "REQUEST" and request[1] != uid


def test_a_move_to_an_event_that_does_not_invite_the_country_is_refused(
        office: Office) -> None:
    """Moving a confirmed Mexican participant to the African session would give up her seat
    for review: refused, exit 2, one line saying why and what would happen, nothing
    changed. With --even-if-not-invited staff can do it all the same."""
    maria = "maria@sre.gob.mx"
    assert office.mailer("register", "--event", "lac-es", "--email", maria, "--name",
                         "María Reyes", "--country", "MX", "--now", NOW).exit_code == 0
    ref = f"R{office.registration(maria, 'lac-es').id}"
    before = office.everything()
    refused = office.mailer("move", ref, "--to", "africa-fr", "--now", NOW)
    assert refused.exit_code == 2
    (line,) = refused.output.strip().splitlines()
    assert "Mexico is not invited to africa-fr" in line
    assert "cancel their confirmed registration for lac-es" in line
    assert "put in review" in line and "--even-if-not-invited" in line
    assert office.everything() == before

    forced = office.mailer("move", ref, "--to", "africa-fr", "--even-if-not-invited",
                           "--now", NOW)
    assert forced.exit_code == 0, forced.output
    assert office.registration(maria, "lac-es").status == "cancelled"
    assert office.registration(maria, "africa-fr").status == "review"
