"""Local times as participants read them: across midnight, in countries with several zones,
and French zone names with their articles."""

from __future__ import annotations

from datetime import datetime, timezone
from email import message_from_bytes
from email import policy as policy_module
from pathlib import Path

from sqlalchemy import select

from mailer import store
from mailer.compose import Composer
from mailer.config import Organiser, Paths, Settings
from mailer.domain import Kind, Outgoing
from mailer.handling import Policy, date_offset, handle
from mailer.localtime import OTHER_ZONES, format_span_utc, local_span
from mailer.schedule import load_catalog
from tests.builders import make_catalog, write_schedule

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


def test_the_offset_of_a_reply_is_read_at_the_moment_it_was_written() -> None:
    """Written from Los Angeles in February (-0800), for a session in July: Pacific time,
    not Alaska's (-0800 in July). Written from Denver or Phoenix in winter (both -0700, an
    hour apart in July): the mail does not tell which, so the capital's time and the note."""
    february = datetime(2020, 2, 10, 18, 0, tzinfo=timezone.utc)
    pacific = local_span(START, END, "en", "US", -480, february)
    assert (pacific.text, pacific.note) == ("06:00–07:45 (Pacific Time)", "")
    mountain = local_span(START, END, "en", "US", -420, february)
    assert mountain.text == "09:00–10:45 (Washington time)"
    assert mountain.note == OTHER_ZONES["en"]


def test_brazil_without_a_date_header_gets_the_capitals_time_and_a_note() -> None:
    """The capital's zone is named as CLDR names it, so it reads the same with a Date header
    of -0300 (it read "Brasília time" without one, "Brasilia Time" with one)."""
    for lang, label in (("en", "Brasilia Time"), ("fr", "heure de Brasilia"),
                        ("es", "hora de Brasilia")):
        span = local_span(START, END, lang, "BR", None)
        assert span.text == f"10:00–11:45 ({label})"
        assert span.note == OTHER_ZONES[lang]
        # With one (-0300), the zone of their own mail, the same name, without the note.
        from_mail = local_span(START, END, lang, "BR", -180)
        assert (from_mail.text, from_mail.note) == (f"10:00–11:45 ({label})", "")
    # A capital CLDR does not name its zone after keeps its own: "Washington time".
    assert local_span(START, END, "en", "US", None).text == "09:00–10:45 (Washington time)"


def test_zones_named_from_mail_read_as_names_in_each_language() -> None:
    """A zone CLDR names only by its standard name (no summer time) is named so; Babel's
    fallback, a country and a city, is never shown ("Indonesia (Jakarta) Time", "Congo -
    Kinshasa (Kinshasa) Time", "hora de República Democrática del Congo (Kinshasa)")."""
    names = {("ID", 420): ("Western Indonesia Time", "heure de l’Ouest indonésien",
                           "hora de Indonesia occidental"),
             ("CD", 60): ("West Africa Time", "heure d’Afrique de l’Ouest",
                          "hora de África occidental")}
    for (country, offset), labels in names.items():
        for lang, label in zip(("en", "fr", "es"), labels, strict=True):
            text = local_span(START, END, lang, country, offset).text
            assert text.endswith(f"({label})"), text


def test_a_date_header_matching_none_of_the_countrys_zones_is_ignored() -> None:
    assert local_span(START, END, "en", "BR", 540).text == "10:00–11:45 (Brasilia Time)"


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
        parsed = message_from_bytes(msg.data, policy=policy_module.default)
        body = parsed.get_body(("plain",))
        assert body is not None
        return body.get_content()

    with_offset = text({"utc_offset": -420})
    assert "Your local time: 08:00–09:45 (UTC−07:00)" in with_offset
    assert OTHER_ZONES["en"] not in with_offset
    without = text({})
    assert "Your local time: 11:00–12:45 (Washington time)" in without
    assert OTHER_ZONES["en"] in without


BRAZIL = """
[series]
id = "s"
title = "Webinars"
max_per_country = 1

[[event]]
id = "lac-es"
title = { es = "Webinario", en = "Webinar" }
start = 2020-07-22T15:00:00Z
end = 2020-07-22T16:45:00Z
language = "es"
invited = ["BR"]
join_url = "https://zoom.us/j/222"
"""


def _mail(n: int, sender: str, written: str, body: str) -> bytes:
    return (f"From: {sender}\r\nTo: webinars+lac-es@example.org\r\nSubject: Re: [lac-es]\r\n"
            f"Date: {written}\r\nMessage-ID: <z{n}@client.example>\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}").encode()


def _form(name: str, email: str) -> str:
    return f"Name: {name}\r\nCountry: Brazil\r\nEmail: {email}\r\n"


def test_each_answer_shows_its_own_recipients_zone_never_the_senders(
        st: store.Store, tmp_path: Path) -> None:
    """Ana writes from Rio Branco (-0500), Bruno from Brasília (-0300); a mission in New York
    (-0400) registers a colleague. Ana's cancellation promotes Bruno: his promotion shows
    his zone, not Ana's; the colleague's answer the capital's time with the note, not the
    New York offset (which is Manaus's in Brazil)."""
    catalog = load_catalog(write_schedule(tmp_path, text=BRAZIL))
    policy = Policy(inbox_address="webinars@example.org", staff_address="staff@example.org",
                    domain="example.org")
    now = datetime(2020, 6, 9, 15, 0, tzinfo=timezone.utc)
    mission = "Please register our colleague.\r\n\r\n" + _form("Carla Souza",
                                                                "carla@itamaraty.gov.br")
    for raw in (_mail(1, "Ana Costa <ana@pf.gov.br>", "Tue, 9 Jun 2020 09:00:00 -0500",
                      _form("Ana Costa", "ana@pf.gov.br")),
                _mail(2, "Bruno Alves <bruno@mj.gov.br>", "Tue, 9 Jun 2020 11:00:00 -0300",
                      _form("Bruno Alves", "bruno@mj.gov.br")),
                _mail(3, "Mission <delbrasonu@itamaraty.gov.br>",
                      "Tue, 9 Jun 2020 10:00:00 -0400", mission),
                _mail(4, "ana@pf.gov.br", "Tue, 9 Jun 2020 10:30:00 -0500",
                      "Please cancel my registration.\r\n")):
        assert handle(st, catalog, raw, now=now, policy=policy).outcome == "handled"
    with st.transaction() as session:
        stored = {r.email: r.utc_offset for r in session.scalars(select(store.Registration))}
        rows = [store.row_to_outgoing(r) for r in session.execute(
            select(*store.OutboxRow.__table__.c).order_by(store.OutboxRow.id))]
    assert stored == {"ana@pf.gov.br": -300, "bruno@mj.gov.br": -180,
                      "carla@itamaraty.gov.br": None}
    composer = Composer(Settings(organiser=Organiser(),
                                 paths=Paths(templates=ROOT / "templates")), catalog)
    local, bodies = {}, {}
    for out in rows:
        msg = message_from_bytes(composer.compose(out, now=now).data, policy=policy_module.default)
        body = msg.get_body(("plain",))
        assert body is not None
        bodies[(str(out.kind), out.recipient)] = body.get_content()
        local[(str(out.kind), out.recipient)] = next(
            (x for x in body.get_content().splitlines() if "local" in x), "")
    assert local[("promotion", "bruno@mj.gov.br")] == (
        "Your local time: 12:00–13:45 (Brasilia Time)")
    assert local[("waiting_list", "carla@itamaraty.gov.br")] == (
        "Your local time: 12:00–13:45 (Brasilia Time)")
    assert OTHER_ZONES["en"] in bodies[("waiting_list", "carla@itamaraty.gov.br")]
    assert OTHER_ZONES["en"] not in bodies[("promotion", "bruno@mj.gov.br")]
    assert local[("acknowledgement", "ana@pf.gov.br")] == (
        "Your local time: 10:00–11:45 (Acre Time)")
