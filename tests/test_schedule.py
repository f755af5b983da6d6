"""The shipped schedules (schedules/*.toml) load into the real series, with the real groups."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mailer.durations import parse_duration
from mailer.schedule import Catalog, Event, load_catalog


@pytest.fixture
def catalog(root: Path) -> Catalog:
    """The catalog loaded from the shipped schedules folder."""
    return load_catalog(root / "schedules")


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_cyber_series_has_the_five_webinars_at_their_utc_times(catalog: Catalog) -> None:
    """The 2020 series holds the five webinars of the brief, with exact UTC times and languages."""
    got = [(e.id, e.start, e.end, e.language) for e in catalog.events_of("cyber-cj-2020")]
    assert got == [
        ("asia-pacific-en", _utc("2020-06-24T07:00"), _utc("2020-06-24T08:45"), "en"),
        ("africa-en", _utc("2020-07-07T08:00"), _utc("2020-07-07T09:45"), "en"),
        ("africa-fr", _utc("2020-07-09T08:00"), _utc("2020-07-09T09:45"), "fr"),
        ("lac-en", _utc("2020-07-20T15:00"), _utc("2020-07-20T16:45"), "en"),
        ("lac-es", _utc("2020-07-22T15:00"), _utc("2020-07-22T16:45"), "es"),
    ]


def test_organisers_may_be_one_list_for_every_language(tmp_path: Path) -> None:
    """A plain list of organisers is used in every language."""
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "x.toml").write_text(
        '[series]\nid = "x"\ntitle = "X"\norganisers = ["UNODC"]\n[[event]]\nid = "e"\n'
        'start = 2020-07-09T08:00:00Z\nend = 2020-07-09T09:00:00Z\nlanguage = "es"\n'
        'invited = ["SN"]\n', encoding="utf-8")
    assert load_catalog(folder).events["e"].organisers("es") == ["UNODC"]


def test_cyber_series_rules_match_the_brief(catalog: Catalog) -> None:
    """Four per country, reminders 7d/1d/1h, pack 3 days before, certificates on request."""
    spec = catalog.series["cyber-cj-2020"].spec
    assert spec.max_per_country == 4
    assert spec.reminders == [timedelta(days=7), timedelta(days=1), timedelta(hours=1)]
    assert spec.pack_at == timedelta(days=3)
    assert (spec.certificate, spec.recorded, spec.not_invited) == ("on_request", True, "review")
    event = catalog.events["africa-fr"]
    # As they read after "by" in each language, articles included.
    assert event.organisers("en") == ["the European Union", "the Council of Europe"]
    assert event.organisers("fr") == ["l’Union européenne", "le Conseil de l’Europe"]
    assert spec.pack is not None and spec.pack.slides == "packs/slides.{lang}.pptx"
    assert spec.invitation_at is not None and spec.invitation_at < _utc("2020-06-24T07:00")


def test_group_sizes_are_the_real_memberships(catalog: Catalog) -> None:
    """Africa has 54 states, CELAC 33, CARICOM 15 (Montserrat included)."""
    assert len(catalog.groups["africa"]) == 54
    assert len(catalog.groups["latin_america_caribbean"]) == 33
    assert catalog.groups["caricom"] == {"AG", "BS", "BB", "BZ", "DM", "GD", "GY", "HT", "JM",
                                         "MS", "KN", "LC", "VC", "SR", "TT"}
    assert catalog.groups["caricom"] <= catalog.groups["latin_america_caribbean"] | {"MS"}
    assert {"CN", "IN", "FJ", "KI"} <= catalog.groups["asia_pacific"]
    assert not catalog.groups["asia_pacific"] & {"AU", "NZ", "TR"}


def test_webinars_invite_their_region(catalog: Catalog) -> None:
    """Each webinar's invited countries are its region's group, expanded to ISO codes."""
    assert catalog.event("africa-fr").countries == catalog.groups["africa"]
    assert catalog.event("lac-es").countries == catalog.groups["latin_america_caribbean"]
    assert "SN" in catalog.event("africa-en").countries
    assert "PH" in catalog.event("asia-pacific-en").countries


def test_caribbean_series_shape(catalog: Catalog) -> None:
    """Kick-off on 16-17 July 2020, one workshop per country until March 2021, then a closing."""
    events = catalog.events_of("caribbean-2020")
    caricom = catalog.groups["caricom"]
    kickoff, countries, closing = events[:2], events[2:-1], events[-1]
    assert [e.start.date().isoformat() for e in kickoff] == ["2020-07-16", "2020-07-17"]
    assert all(e.countries == caricom for e in (*kickoff, closing))
    assert len(countries) >= 5
    assert all(len(e.countries) == 1 and e.countries <= caricom for e in countries)
    assert len({next(iter(e.countries)) for e in countries}) == len(countries)
    assert _utc("2020-09-01T00:00") <= countries[0].start
    assert countries[-1].end <= _utc("2021-04-01T00:00") < closing.start
    assert {e.spec.kind for e in events} == {"workshop"}
    assert {e.language for e in events} == {"en"}


def test_durations_read_as_staff_write_them() -> None:
    """'7d', '1h', '2w' and '1d12h' are durations; '1 day' is refused with advice."""
    assert parse_duration("7d") == timedelta(days=7)
    assert parse_duration("1h") == timedelta(hours=1)
    assert parse_duration("2w") == timedelta(weeks=2)
    assert parse_duration("1d12h") == timedelta(days=1, hours=12)
    with pytest.raises(ValueError, match="write a number and a unit"):
        parse_duration("1 day")


def test_titles_fall_back_to_the_event_language_then_the_series(catalog: Catalog) -> None:
    """A missing translation falls back to the event's own language, then to the series title."""
    africa_fr = catalog.event("africa-fr")
    assert africa_fr.title("fr") == "Webinaire avec les pays d'Afrique"
    assert africa_fr.title("es") == "Webinaire avec les pays d'Afrique"
    assert catalog.event("asia-pacific-en").title("fr") == (
        "Webinar with countries of Asia and the Pacific")
    assert africa_fr.series_title("es") == "Ciberdelincuencia y justicia penal en el ciberespacio"
    assert catalog.event("caribbean-jm").series_title("fr") == (
        "Cybercrime legislation and electronic evidence in the Caribbean")


def _edited(event: Event, **changes: object) -> Event:
    return Event(event.spec.model_copy(update=changes), event.series, event.countries, event.file)


def test_fingerprint_changes_with_start_and_link_not_description(catalog: Catalog) -> None:
    """What calendars show (start, link) changes the fingerprint; the description does not."""
    event = catalog.event("lac-es")
    before = event.fingerprint()
    assert _edited(event, start=event.start + timedelta(hours=1)).fingerprint() != before
    assert _edited(event, join_url="https://zoom.us/j/90000000001").fingerprint() != before
    assert _edited(event, description={"es": "Nueva descripción"}).fingerprint() == before
    assert event.fingerprint() == before


def test_every_shipped_event_has_a_zoom_link(catalog: Catalog) -> None:
    """All 15 shipped events have a https://zoom.us/j/ link and at least one invited country."""
    assert len(catalog.events) == 15
    for event in catalog.events.values():
        assert (event.spec.join_url or "").startswith("https://zoom.us/j/"), event.id
        assert event.countries, event.id
