"""Tests of mailer.calendar: the .ics invitations and cancellations, parsed back by icalendar."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from icalendar import Calendar, Parameters, vCalAddress, vDatetime
from icalendar.parser import Contentline

from mailer.calendar import build_calendar, event_uid, personal_lines
from mailer.schedule import Event, EventSpec, Series, SeriesSpec

STAMP = datetime(2020, 7, 1, 12, 0, tzinfo=timezone.utc)


def _event(recorded: bool = True) -> Event:
    series = Series(SeriesSpec(id="cyber", title={"en": "Cybercrime", "fr": "Cybercriminalité"},
                               recorded=recorded), Path("cyber.toml"))
    spec = EventSpec(id="africa-fr", title={"fr": "Webinaire Afrique", "en": "Africa webinar"},
                     start=datetime(2020, 7, 9, 8, 0, tzinfo=timezone.utc),
                     end=datetime(2020, 7, 9, 9, 45, tzinfo=timezone.utc), language="fr",
                     invited=["SN"], join_url="https://zoom.us/j/123")
    return Event(spec, series, frozenset({"SN"}), Path("cyber.toml"))


def _build(method: str = "REQUEST", **overrides: object) -> bytes:
    args: dict[str, object] = dict(
        method=method, attendee_email="Awa.Diop@justice.gouv.sn", attendee_name="Awa Diop",
        sequence=3, organiser_name="Programme Office", organiser_address="webinars@example.org",
        lang="fr", stamp=STAMP)
    args.update(overrides)
    return build_calendar(_event(), **args)  # type: ignore[arg-type]


def test_uid_is_stable_per_event_and_participant() -> None:
    """The UID depends only on event, lower-cased address and domain."""
    uid = event_uid("africa-fr", "Awa.Diop@Justice.gouv.sn", "example.org")
    assert uid == event_uid("africa-fr", "awa.diop@justice.gouv.sn", "example.org")
    assert uid.startswith("africa-fr.") and uid.endswith("@example.org")
    assert len(uid.split(".")[1].split("@")[0]) == 16
    assert uid != event_uid("africa-fr", "other@justice.gouv.sn", "example.org")
    assert uid != event_uid("asia-en", "awa.diop@justice.gouv.sn", "example.org")


def test_request_has_every_property_outlook_needs() -> None:
    """A REQUEST carries method, UID, sequence, UTC times, organiser, RSVP attendee and alarm."""
    raw = _build()
    cal = Calendar.from_ical(raw)
    assert cal["METHOD"] == "REQUEST" and cal["VERSION"] == "2.0" and cal["PRODID"]
    [vevent] = cal.walk("VEVENT")
    assert vevent["UID"] == event_uid("africa-fr", "awa.diop@justice.gouv.sn", "example.org")
    assert vevent["SEQUENCE"] == 3
    assert vevent.decoded("DTSTAMP") == STAMP
    assert vevent.decoded("DTSTART") == datetime(2020, 7, 9, 8, 0, tzinfo=timezone.utc)
    assert vevent.decoded("DTEND") == datetime(2020, 7, 9, 9, 45, tzinfo=timezone.utc)
    assert b"DTSTART:20200709T080000Z" in raw and b"DTEND:20200709T094500Z" in raw
    assert vevent["SUMMARY"] == "Webinaire Afrique"
    assert "https://zoom.us/j/123" in vevent["DESCRIPTION"]
    assert "enregistrée" in vevent["DESCRIPTION"]
    assert vevent["LOCATION"] == "https://zoom.us/j/123" and vevent["URL"] == "https://zoom.us/j/123"
    assert vevent["STATUS"] == "CONFIRMED"
    organiser = vevent["ORGANIZER"]
    assert organiser.lower() == "mailto:webinars@example.org"
    assert organiser.params["CN"] == "Programme Office"
    attendee = vevent["ATTENDEE"]
    assert attendee.lower() == "mailto:awa.diop@justice.gouv.sn"
    assert attendee.params["RSVP"] == "TRUE"
    assert attendee.params["ROLE"] == "REQ-PARTICIPANT"
    assert attendee.params["PARTSTAT"] == "NEEDS-ACTION"
    assert attendee.params["CN"] == "Awa Diop"
    [alarm] = vevent.walk("VALARM")
    assert alarm["ACTION"] == "DISPLAY"
    assert alarm.decoded("TRIGGER") == timedelta(minutes=-15)


def test_cancel_is_cancelled_without_alarm() -> None:
    """A CANCEL has METHOD:CANCEL, STATUS:CANCELLED, the same UID and no alarm."""
    cal = Calendar.from_ical(_build("CANCEL", sequence=4))
    assert cal["METHOD"] == "CANCEL"
    [vevent] = cal.walk("VEVENT")
    assert vevent["STATUS"] == "CANCELLED"
    assert vevent["SEQUENCE"] == 4
    assert vevent["UID"] == Calendar.from_ical(_build()).walk("VEVENT")[0]["UID"]
    assert vevent.walk("VALARM") == []


def test_same_inputs_give_the_same_bytes() -> None:
    """No clock or random value leaks in: two builds are byte-identical."""
    assert _build() == _build()


def test_hostile_name_cannot_add_a_property() -> None:
    """A CR/LF in a participant's name stays inside the CN parameter."""
    raw = _build(attendee_name="Evil\r\nATTENDEE:mailto:evil@x.org")
    cal = Calendar.from_ical(raw)
    [vevent] = cal.walk("VEVENT")
    attendees = vevent["ATTENDEE"]
    assert not isinstance(attendees, list)
    assert b"\r\nATTENDEE:mailto:evil" not in raw
    assert attendees.lower() == "mailto:awa.diop@justice.gouv.sn"


def test_english_summary_and_unrecorded_description() -> None:
    """The summary follows the language, and no recording notice appears when not recorded."""
    event = _event(recorded=False)
    raw = build_calendar(event, method="REQUEST", attendee_email="a@b.org", attendee_name="",
                         sequence=0, organiser_name="Office", organiser_address="w@example.org",
                         lang="en", stamp=STAMP)
    [vevent] = Calendar.from_ical(raw).walk("VEVENT")
    assert vevent["SUMMARY"] == "Africa webinar"
    assert "recorded" not in vevent["DESCRIPTION"]
    assert "CN" not in vevent["ATTENDEE"].params


def test_long_accented_names_fold_at_75_octets_and_read_back_whole() -> None:
    """A long name with accents, quotes and emoji folds within 75 octets and parses back intact."""
    name = 'Ndèye Fatou Ndiaye-Diallo, "Présidente" de la Cour d’appel de Thiès 🇸🇳 ' * 2
    raw = _build(attendee_name=name)
    lines = raw.split(b"\r\n")
    assert max(len(line) for line in lines) <= 75
    assert all(line.decode("utf-8") is not None for line in lines)  # no cut UTF-8 sequence
    [vevent] = Calendar.from_ical(raw).walk("VEVENT")
    assert vevent["ATTENDEE"].params["CN"] == name.strip()
    assert vevent["SEQUENCE"] == 3 and vevent["UID"] == event_uid(
        "africa-fr", "Awa.Diop@justice.gouv.sn", "example.org")


def test_the_shared_part_follows_the_sequence_and_the_language() -> None:
    """For one event, a new SEQUENCE or language gives a new calendar, not the cached one."""
    event = _event()

    def vevent(sequence: int, lang: str) -> object:
        raw = build_calendar(event, method="REQUEST", attendee_email="awa@justice.gouv.sn",
                             attendee_name="Awa Diop", sequence=sequence,
                             organiser_name="Programme Office",
                             organiser_address="webinars@example.org", lang=lang, stamp=STAMP)
        return Calendar.from_ical(raw).walk("VEVENT")[0]

    first, raised, english = vevent(3, "fr"), vevent(4, "fr"), vevent(3, "en")
    assert (first["SEQUENCE"], raised["SEQUENCE"], english["SEQUENCE"]) == (3, 4, 3)
    assert (str(first["SUMMARY"]), str(english["SUMMARY"])) == ("Webinaire Afrique",
                                                                 "Africa webinar")


@pytest.mark.parametrize(("name", "cn"), [
    ("Awa Diop", "Awa Diop"), ("Diop", "Diop"), ("", None), ("O'Brien", "O'Brien"),
    ("Ngozi, Okonjo", "Ngozi, Okonjo"), ("Dr: Who; or not", "Dr: Who; or not"),
    ('Le "Président"', 'Le "Président"'), ("Caret ^ here", "Caret ^ here"),
    ("Cour d’appel", "Cour d’appel"), ("  padded  ", "padded"), ("Tab\tName", "Tab Name"),
])
def test_personal_lines_are_what_icalendar_writes(name: str, cn: str | None) -> None:
    """The hand-written DTSTAMP, UID and ATTENDEE lines equal icalendar's own for any name."""
    email, uid = "awa.diop@justice.gouv.sn", "africa-fr.0123456789abcdef@example.org"
    attendee = vCalAddress.new(email, cn=cn, role="REQ-PARTICIPANT", partstat="NEEDS-ACTION",
                               rsvp=True)
    expected = (
        Contentline.from_parts("DTSTAMP", Parameters(), vDatetime(STAMP)),
        Contentline.from_parts("UID", Parameters(), uid),
        Contentline.from_parts("ATTENDEE", attendee.params, attendee),
    )
    assert personal_lines(STAMP, uid, email, name) == tuple(str(line) for line in expected)
