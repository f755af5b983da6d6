"""Local times as participants read them: across midnight, in countries with several zones,
and French zone names with their articles."""

from __future__ import annotations

from datetime import datetime, timezone
from email import message_from_bytes, policy
from pathlib import Path

from mailer.compose import Composer
from mailer.config import Organiser, Paths, Settings
from mailer.domain import Kind, Outgoing
from mailer.handling import date_offset
from mailer.localtime import OTHER_ZONES, format_span_utc, local_span
from tests.builders import make_catalog

ROOT = Path(__file__).resolve().parent.parent
# A session for Asia and the Pacific in the evening of Europe: 23:00 to 00:45 in Sydney.
START = datetime(2020, 7, 9, 13, 0, tzinfo=timezone.utc)
END = datetime(2020, 7, 9, 14, 45, tzinfo=timezone.utc)


def test_a_session_crossing_midnight_in_sydney_says_plus_one_day_in_each_language() -> None:
    assert local_span(START, END, "en", "AU", 600).text == (
        "23:00–00:45 +1 day (Australian Eastern Time)")
    assert local_span(START, END, "fr", "AU", 600).text == (
        "23:00–00:45 +1 jour (heure de l’Est de l’Australie)")
    assert local_span(START, END, "es", "AU", 600).text == (
        "23:00–00:45 +1 día (hora de Australia oriental)")
    # The same session in Dakar stays within one day: nothing added.
    assert local_span(START, END, "fr", "SN").text == "13:00–14:45 (heure de Dakar)"


def test_the_utc_span_says_plus_one_day_too() -> None:
    late = datetime(2020, 7, 9, 23, 0, tzinfo=timezone.utc)
    assert format_span_utc(late, late.replace(day=10, hour=1), "en") == (
        "Thursday 9 July 2020, 23:00–01:00 UTC +1 day")


def test_the_united_states_with_a_date_header_of_minus_seven_hours() -> None:
    """-0700 in July: Los Angeles or Phoenix (same clock that day), not New York."""
    offset = date_offset(b"From: a@state.gov\r\nDate: Tue, 9 Jun 2020 10:00:00 -0700\r\n\r\nHi")
    assert offset == -420
    span = local_span(START, END, "en", "US", offset)
    assert span.text == "06:00–07:45 (UTC−07:00)"
    assert span.note == ""
    # Without the header, New York's clock, named as the capital's, and a note.
    capital = local_span(START, END, "en", "US", None)
    assert capital.text == "09:00–10:45 (Washington time)"
    assert capital.note == OTHER_ZONES["en"]


def test_brazil_without_a_date_header_gets_the_capitals_time_and_a_note() -> None:
    for lang, label in (("en", "Brasília time"), ("fr", "heure de Brasília"),
                        ("es", "hora de Brasilia")):
        span = local_span(START, END, lang, "BR", None)
        assert span.text == f"10:00–11:45 ({label})"
        assert span.note == OTHER_ZONES[lang]
    # With one (-0300), the zone of their own mail, named by CLDR, without the note.
    assert local_span(START, END, "fr", "BR", -180).text == "10:00–11:45 (heure de Brasilia)"
    assert local_span(START, END, "fr", "BR", -180).note == ""


def test_a_date_header_matching_none_of_the_countrys_zones_is_ignored() -> None:
    assert local_span(START, END, "en", "BR", 540).text == "10:00–11:45 (Brasília time)"


def test_french_zone_names_take_their_article() -> None:
    assert local_span(START, END, "fr", "JM").text == "08:00–09:45 (heure de la Jamaïque)"
    assert local_span(START, END, "fr", "KM").text == "16:00–17:45 (heure des Comores)"
    assert local_span(START, END, "fr", "CV").text == "12:00–13:45 (heure du Cap-Vert)"
    assert local_span(START, END, "fr", "EG").text == "15:00–16:45 (heure du Caire)"
    assert local_span(START, END, "fr", "CI").text == "13:00–14:45 (heure d’Abidjan)"


def test_a_date_header_minus_zero_or_missing_tells_nothing() -> None:
    assert date_offset(b"Date: Tue, 9 Jun 2020 10:00:00 -0000\r\n\r\n") is None
    assert date_offset(b"Subject: hi\r\n\r\nDate: Tue, 9 Jun 2020 10:00:00 +0200") is None
    assert date_offset(b"Date: yesterday\r\n\r\n") is None
    assert date_offset(b"Date: Tue, 9 Jun 2020 10:00:00\r\n +0530\r\n\r\n") == 330


def test_the_acknowledgement_shows_the_zone_of_the_reply_and_the_note_otherwise(
        tmp_path: Path) -> None:
    catalog = make_catalog(tmp_path)
    settings = Settings(organiser=Organiser(), paths=Paths(templates=ROOT / "templates"))
    composer = Composer(settings, catalog)

    def text(context: dict[str, object]) -> str:
        out = Outgoing(key=f"k{len(context)}", kind=Kind.ACKNOWLEDGEMENT,
                       recipient="p@state.gov", language="en", event_id="lac-es",
                       name="Pat Doe", country="US", context=context)
        msg = composer.compose(out, now=START)
        parsed = message_from_bytes(msg.data, policy=policy.default)
        body = parsed.get_body(("plain",))
        assert body is not None
        return body.get_content()

    with_offset = text({"utc_offset": -420})
    assert "Your local time: 08:00–09:45 (UTC−07:00)" in with_offset
    assert OTHER_ZONES["en"] not in with_offset
    without = text({})
    assert "Your local time: 11:00–12:45 (Washington time)" in without
    assert OTHER_ZONES["en"] in without
