"""Which event a message is about: the subject, titles, dates said every way, events that ended
recently, and calendar answers by UID, start time and summary, or the title in the subject."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from email.message import EmailMessage
from pathlib import Path

import pytest

from mailer.schedule import Catalog, load_catalog
from mailer.understand.calendar_reply import calendar_reply
from mailer.understand.event import (
    NOT_ENDED,
    RECENT,
    EventChoice,
    choice_pool,
    event_from_text,
    event_of_calendar,
    subject_topic,
)
from mailer.understand.folding import fold

SCHEDULE = """
[series]
id = "cyber-2020"
title = { en = "Cybercrime and criminal justice in cyberspace" }
max_per_country = 4

[[event]]
id = "asia-en"
title = { en = "Webinar with countries of Asia and the Pacific" }
start = 2020-06-24T07:00:00Z
end = 2020-06-24T08:45:00Z
language = "en"
invited = ["PH"]

[[event]]
id = "africa-en"
title.en = "Webinar with African countries"
title.fr = "Webinaire avec les pays d'Afrique (en anglais)"
start = 2020-07-07T08:00:00Z
end = 2020-07-07T09:45:00Z
language = "en"
invited = ["GH"]

[[event]]
id = "africa-fr"
title.fr = "Webinaire avec les pays d'Afrique"
title.en = "Webinar with African countries (in French)"
start = 2020-07-09T08:00:00Z
end = 2020-07-09T09:45:00Z
language = "fr"
invited = ["SN"]

[[event]]
id = "lac-en"
title = { en = "Webinar with countries of Latin America and the Caribbean" }
start = 2020-07-20T15:00:00Z
end = 2020-07-20T16:45:00Z
language = "en"
invited = ["JM"]

[[event]]
id = "lac-es"
title = { es = "Webinario con los países de América Latina y el Caribe" }
start = 2020-07-22T15:00:00Z
end = 2020-07-22T16:45:00Z
language = "es"
invited = ["CL"]

[[event]]
id = "kickoff-1"
title = "Regional kick-off workshop, day 1"
kind = "workshop"
start = 2020-07-16T13:00:00Z
end = 2020-07-16T16:00:00Z
language = "en"
invited = ["JM"]

[[event]]
id = "kickoff-2"
title = "Regional kick-off workshop, day 2"
kind = "workshop"
start = 2020-07-17T13:00:00Z
end = 2020-07-17T16:00:00Z
language = "en"
invited = ["JM"]

[[event]]
id = "twin"
title = "Regional kick-off workshop, day 2 (repeat)"
kind = "workshop"
start = 2020-07-17T13:00:00Z
end = 2020-07-17T16:00:00Z
language = "en"
invited = ["JM"]
"""

BEFORE = datetime(2020, 6, 15, 12, 0, tzinfo=UTC)
AFTER_ASIA = datetime(2020, 7, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    folder: Path = tmp_path_factory.mktemp("schedules")
    (folder / "s.toml").write_text(SCHEDULE, encoding="utf-8")
    return load_catalog(folder)


@pytest.mark.parametrize(("subject", "topic"), [
    ("RE: TR: Invitation", "Invitation"), ("Re[2]: AW: WG: Webinar", "Webinar"),
    ("RV: RE: Webinario", "Webinario"), ("ENC: RES: Webinar", "Webinar"),
    ("Antw: SV: Odp: Ynt: Webinar", "Webinar"), ("[EXTERNAL] RE: Webinar", "Webinar"),
    ("Ответ: Вебинар", "Вебинар"), ("回复：网络研讨会", "网络研讨会"),
    ("Registration - webinar", "Registration - webinar"),
    ("Rescheduled webinar", "Rescheduled webinar"),
])
def test_reply_and_forward_prefixes_in_any_language(subject: str, topic: str) -> None:
    assert subject_topic(subject) == topic


def choose(catalog: Catalog, text: str, *, subject: str = "", now: datetime = BEFORE,
           recent: timedelta = NOT_ENDED) -> EventChoice:
    return event_from_text(fold(text), catalog, now, subject=subject, recent=recent)


@pytest.mark.parametrize(("subject", "event_id"), [
    ("Registration - webinar for African countries, 7 July 2020", "africa-en"),
    ("Re: Webinar with Asia-Pacific countries (24 June)", "asia-en"),
    ("RE: FW: Invitation to register: Webinar with African countries (in French)", "africa-fr"),
    ("TR: Invitation à s’inscrire : Webinaire avec les pays d'Afrique", "africa-fr"),
    ("Inscripción Webinario 22/07 - América Latina y el Caribe", "lac-es"),
    ("Inscrição - Webinar América Latina e Caribe (20 de julho)", "lac-en"),
    ("Accepted: Webinar with African countries @ Tue Jul 7, 2020 9am (BST)", "africa-en"),
    ("Invitation acceptée: Webinaire @ jeu. 9 juil. 2020 08:00 (UTC)", "africa-fr"),
])
def test_the_subject_names_the_event(catalog: Catalog, subject: str, event_id: str) -> None:
    """Words in the subject are read by the same matchers as the body."""
    assert choose(catalog, "Please register me.", subject=subject).event_id == event_id


def test_the_senders_words_come_before_the_subject(catalog: Catalog) -> None:
    """A body naming the French session wins over a subject quoting the English title."""
    found = choose(catalog, "I would like to join the French session instead.",
                   subject="Re: Webinar with African countries")
    assert found.event_id == "africa-fr"


def test_the_quoted_original_decides_only_what_is_left_open(catalog: Catalog) -> None:
    """ "The Africa webinar" leaves two; the invitation quoted below names the date."""
    quoted = "> Date and time: Thursday 9 July 2020, 08:00–09:45 UTC"
    found = event_from_text(fold("Please register me for the Africa webinar."), catalog,
                            BEFORE, quoted=lambda: quoted)
    assert found.event_id == "africa-fr"
    alone = event_from_text(fold("Please register me for the Africa webinar."), catalog,
                            BEFORE)
    assert alone.candidates == ("africa-en", "africa-fr")


@pytest.mark.parametrize(("text", "events"), [
    ("the workshop on 16 and 17 July", {"kickoff-1", "kickoff-2", "twin"}),
    ("les ateliers des 16 et 17 juillet", {"kickoff-1", "kickoff-2", "twin"}),
    ("el taller del 16 y 17 de julio", {"kickoff-1", "kickoff-2", "twin"}),
    ("July 16-17", {"kickoff-1", "kickoff-2", "twin"}),
    ("on 7th July", {"africa-en"}), ("le 9 juil.", {"africa-fr"}),
    ("22 jul. 2020", {"lac-es"}), ("2020-07-20", {"lac-en"}), ("07/22/2020", {"lac-es"}),
    ("no dia 20 de julho", {"lac-en"}),
])
def test_dates_as_people_write_them(catalog: Catalog, text: str, events: set[str]) -> None:
    found = choose(catalog, text)
    assert ({found.event_id} if found.event_id else set(found.candidates)) == events


def test_days_said_relative_to_the_message(catalog: Catalog) -> None:
    """ "last Tuesday's webinar", "yesterday", "on the 20th" against the moment of reading."""
    thursday = datetime(2020, 7, 9, 12, 0, tzinfo=UTC)
    assert choose(catalog, "the certificate for last Tuesday's webinar", now=thursday,
                  recent=RECENT).event_id == "africa-en"
    assert choose(catalog, "a declaração do webinário de ontem",
                  now=datetime(2020, 7, 21, 12, tzinfo=UTC), recent=RECENT).event_id == "lac-en"
    assert choose(catalog, "the Latin America webinar on the 20th").event_id == "lac-en"


def test_ended_events_count_for_certificates_and_calendar_answers_only(
        catalog: Catalog) -> None:
    """After 24 June the Asia webinar is over: a registration cannot name it, a certificate
    request can, for 60 days."""
    text = "the Asia-Pacific webinar"
    assert "asia-en" not in {choose(catalog, text, now=AFTER_ASIA).event_id,
                             *choose(catalog, text, now=AFTER_ASIA).candidates}
    assert choose(catalog, text, now=AFTER_ASIA, recent=RECENT).event_id == "asia-en"
    late = datetime(2020, 8, 24, 12, 0, tzinfo=UTC)
    assert "asia-en" not in [e.id for e in choice_pool(catalog, late, recent=RECENT)]


def test_a_webinar_is_not_a_workshop(catalog: Catalog) -> None:
    """ "the Caribbean webinar, English session": the LAC webinar, not the workshops."""
    found = choose(catalog, "I would like to attend the English session.",
                   subject="Re: Cybercrime webinar - Caribbean")
    assert found.event_id == "lac-en"
    assert choose(catalog, "the regional workshop").candidates == ("kickoff-1", "kickoff-2",
                                                                   "twin")
    assert choose(catalog, "the regional webinar").candidates == (
        "asia-en", "africa-en", "africa-fr", "lac-en", "lac-es")


def test_a_series_title_names_every_event_of_the_series(catalog: Catalog) -> None:
    found = choose(catalog, "", subject="Accepted: Cybercrime and criminal justice in cyberspace",
                   now=AFTER_ASIA, recent=RECENT)
    assert found.event_id is None and found.why == "ambiguous event"
    assert found.candidates[:5] == ("asia-en", "africa-en", "africa-fr", "kickoff-1",
                                    "kickoff-2")


# --------------------------------------------------------------------------- calendar answers


def test_a_calendar_answer_by_our_uid_then_its_start_then_its_summary(catalog: Catalog) -> None:
    paris = timezone(timedelta(hours=2))
    assert event_of_calendar("lac-es", None, "", "", catalog, BEFORE) == EventChoice("lac-es")
    by_start = event_of_calendar(None, datetime(2020, 7, 9, 10, 0, tzinfo=paris),
                                 "Webinaire UE/CdE", "", catalog, BEFORE)
    assert by_start == EventChoice("africa-fr")
    floating = event_of_calendar(None, datetime(2020, 7, 7, 10, 0), "", "", catalog, BEFORE)
    assert floating == EventChoice("africa-en")
    tie = event_of_calendar(None, datetime(2020, 7, 17, 13, 0, tzinfo=UTC), "", "", catalog,
                            BEFORE)
    assert tie is not None and tie.candidates == ("kickoff-2", "twin")
    told_apart = event_of_calendar(None, datetime(2020, 7, 17, 13, 0, tzinfo=UTC),
                                   "Regional kick-off workshop, day 2 (repeat)", "", catalog,
                                   BEFORE)
    assert told_apart == EventChoice("twin")
    by_title = event_of_calendar(None, None, "", fold("Webinar with African countries"),
                                 catalog, BEFORE)
    assert by_title == EventChoice("africa-en")
    assert event_of_calendar(None, None, "", fold("Team meeting"), catalog, BEFORE) is None


def answer(subject: str, body: str = "") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "a@b.org"
    msg["Subject"] = subject
    msg.set_content(body)
    return msg


@pytest.mark.parametrize(("subject", "partstat", "language", "topic"), [
    ("Accepted: Webinar with African countries", "ACCEPTED", "en",
     "webinar with african countries"),
    ("RE: Accepté : Webinaire", "ACCEPTED", "fr", "webinaire"),
    ("Provisoire : Webinaire", "TENTATIVE", "fr", "webinaire"),
    ("Aceptado: Webinario", "ACCEPTED", "es", "webinario"),
    ("Rechazado: Webinario", "DECLINED", "es", "webinario"),
    ("Convite aceito: Webinar @ seg., 20 de jul.", "ACCEPTED", None, "webinar @ seg., 20 de jul."),
    ("Aceite: Webinar", "ACCEPTED", None, "webinar"),
    ("Provisório: Webinar", "TENTATIVE", None, "webinar"),
    ("Recusado: Webinar", "DECLINED", None, "webinar"),
    ("Zugesagt: Webinar", "ACCEPTED", None, "webinar"),
    ("Mit Vorbehalt angenommen: Webinar", "TENTATIVE", None, "webinar"),
    ("Rifiutato: Webinar", "DECLINED", None, "webinar"),
])
def test_calendar_answers_told_by_their_subject_in_any_language(
        catalog: Catalog, subject: str, partstat: str, language: str | None, topic: str) -> None:
    found = calendar_reply(answer(subject), "a@b.org", subject, catalog)
    assert found is not None
    assert (found.partstat, found.language, found.topic) == (partstat, language, topic)


def test_a_subject_that_only_mentions_acceptance_is_not_a_calendar_answer(
        catalog: Catalog) -> None:
    subject = "Re: Accepted participants list"
    assert calendar_reply(answer(subject), "a@b.org", subject, catalog) is None
