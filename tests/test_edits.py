"""What participants receive when staff edit a schedule or a participant corrects their
country: no second reminder for a small move, no calendar CANCEL to someone who never had
the entry, a CANCEL for a seat given up. On SQLite and PostgreSQL, over a real SMTP server,
the schedule edited in its file and `mailer once` run as cron would."""

from __future__ import annotations

from pathlib import Path

import pytest
from icalendar import Calendar

from mailer import store
from mailer.schedule import load_catalog
from mailer.staff import digest
from tests.builders import SERIES, write_schedule
from tests.servers.smtp import SmtpSink
from tests.staffkit import MOMENT, NOW, Office, body, make_office, registration_reply

AWA = "awa.diop@justice.gouv.sn"
START, END = "2020-07-09T08:00:00Z", "2020-07-09T09:45:00Z"


@pytest.fixture
def office(st: store.Store, tmp_path: Path, smtp_sink: SmtpSink) -> Office:
    """A project on the test's store (SQLite or PostgreSQL) and the SMTP sink."""
    return make_office(tmp_path, st.url, smtp_sink)


def edit(office: Office, *, start: str = START, end: str = END, limit: int = 4,
         invited: str = '["@west_africa"]', cancelled: bool = False,
         not_invited: str = "review") -> None:
    """Save the test series with africa-fr's start, end, invited countries or cancellation
    changed, as staff would in their editor."""
    text = (SERIES.replace("{limit}", str(limit)).replace("{not_invited}", not_invited)
            .replace("{{", "{").replace("}}", "}"))
    africa = text.index('id = "africa-fr"')
    head, tail = text[:africa], text[africa:]
    tail = (tail.replace(f"start = {START}", f"start = {start}", 1)
            .replace(f"end = {END}", f"end = {end}", 1)
            .replace('invited = ["@west_africa"]', f"invited = {invited}"
                     + ("\ncancelled = true" if cancelled else ""), 1))
    office.catalog = load_catalog(write_schedule(office.folder, text=head + tail))


def once(office: Office, now: str, who: str = AWA) -> list[str]:
    """`mailer once` at ``now``; the kinds it sent to ``who``."""
    before = len(office.sent_to(who))
    office.drain(now)
    return [kind for kind, _ in office.sent_to(who)[before:]]


def register(office: Office, email: str, name: str, country: str = "SN", *,
             lang: str = "en") -> None:
    made = office.mailer("register", "--event", "africa-fr", "--email", email, "--name", name,
                         "--country", country, "--lang", lang, "--now", NOW)
    assert made.exit_code == 0, made.output


def register_awa(office: Office) -> None:
    register(office, AWA, "Awa Diop")
    assert once(office, NOW) == ["acknowledgement"]


def calendar(msg) -> tuple[str, int] | None:
    """(METHOD, SEQUENCE) of a message's calendar part, or None without one."""
    parts = [p for p in msg.walk() if p.get_content_type() == "text/calendar"]
    if not parts:
        return None
    cal = Calendar.from_ical(parts[0].get_content())
    (event,) = cal.walk("VEVENT")
    return str(cal["METHOD"]), int(event.get("SEQUENCE", 0))


# --- 1. reminders and a moved event ---------------------------------------------------------

def test_an_event_moved_by_an_hour_after_a_reminder_gets_no_second_one(office: Office) -> None:
    """The 1-day reminder went out; staff then move the webinar one hour later. Awa gets the
    update, and no second 1-day reminder at the new moment (she got two before); the 1-hour
    reminder still goes, once, at the new start less an hour."""
    register_awa(office)
    assert once(office, "2020-07-08T08:05Z") == ["reminder"]
    edit(office, start="2020-07-09T09:00:00Z", end="2020-07-09T10:45:00Z")
    assert once(office, "2020-07-08T08:30Z") == ["update"]
    assert once(office, "2020-07-08T09:05Z") == []
    assert once(office, "2020-07-09T07:05Z") == []
    assert once(office, "2020-07-09T08:05Z") == ["reminder"]


def test_an_event_moved_by_a_week_gets_its_reminders_again(office: Office) -> None:
    """Moved a week later after the 1-day reminder: that reminder spoke of a day long past,
    so the reminders of the new date go at their moments, each once."""
    register_awa(office)
    assert once(office, "2020-07-08T08:05Z") == ["reminder"]
    edit(office, start="2020-07-16T08:00:00Z", end="2020-07-16T09:45:00Z")
    assert once(office, "2020-07-08T10:00Z") == ["update"]
    assert once(office, "2020-07-09T08:05Z") == ["reminder"]        # 7 days before
    assert once(office, "2020-07-09T09:05Z") == []
    assert once(office, "2020-07-15T08:05Z") == ["reminder"]        # 1 day before
    assert once(office, "2020-07-15T09:05Z") == []


# --- 2. the organisers cancel: the waiting list has no calendar entry -----------------------

MOUSSA = "moussa.ba@justice.gouv.sn"


@pytest.mark.parametrize("lang", ["en", "fr", "es"])
def test_a_cancelled_event_cancels_calendars_only_of_those_who_had_the_entry(
        office: Office, lang: str) -> None:
    """One seat for Senegal: Awa holds it (acknowledgement with a REQUEST), Moussa waits
    (no calendar part). The event cancelled: Awa's calendar gets a CANCEL above her REQUEST;
    Moussa is told the session is cancelled and his waiting-list request lapses, with no
    CANCEL for an entry he never had, and no word of removing it from his calendar."""
    edit(office, limit=1)
    register(office, AWA, "Awa Diop", lang=lang)
    register(office, MOUSSA, "Moussa Ba", lang=lang)
    office.drain(NOW)
    (_, ack), = office.sent_to(AWA)
    (kind, waiting), = office.sent_to(MOUSSA)
    assert kind == "waiting_list" and calendar(waiting) is None
    assert calendar(ack) == ("REQUEST", 0)

    edit(office, limit=1, cancelled=True)
    office.drain("2020-06-25T10:00Z")
    (_, _), (kind, awa) = office.sent_to(AWA)
    assert kind == "cancellation" and calendar(awa) == ("CANCEL", 1)
    (_, _), (kind, moussa) = office.sent_to(MOUSSA)
    assert kind == "cancellation" and calendar(moussa) is None
    assert not [p for p in moussa.walk() if p.get_filename() == "invite.ics"]
    removed, lapses = {
        "en": ("removed from your calendar", "waiting list lapses"),
        "fr": ("retirée de votre agenda", "liste d’attente devient donc sans objet"),
        "es": ("eliminará de su agenda", "lista de espera queda, por tanto, sin efecto"),
    }[lang]
    assert removed in body(awa) and lapses not in body(awa)
    assert removed not in body(moussa) and lapses in body(moussa)


# --- 4. a corrected country that loses the seat ---------------------------------------------

KOFI = "kofi.mensah@mofa.gov.gh"


def corrected_by_reply(office: Office, country: str, lang: str = "en",
                       not_invited: str = "review") -> None:
    """One seat per country: Awa (SN) and Kofi (GH) hold theirs, Moussa waits for Senegal's;
    then Awa writes again: her country is ``country``, not Senegal."""
    edit(office, limit=1, not_invited=not_invited)
    register(office, AWA, "Awa Diop", lang=lang)        # she phoned; reads ``lang``
    for who, name, home, mid in ((KOFI, "Kofi Mensah", "Ghana", "k1"),
                                 (MOUSSA, "Moussa Ba", "Senegal", "m1")):
        office.reply(registration_reply(who, name, home, mid=mid))
    office.drain(NOW)
    assert [k for k, _ in office.sent_to(AWA)] == ["acknowledgement"]
    assert [k for k, _ in office.sent_to(MOUSSA)] == ["waiting_list"]
    office.reply(registration_reply(AWA, "Awa Diop", country, mid="a2"))
    office.drain(NOW)


def test_a_country_corrected_to_a_full_one_cancels_the_entry_and_frees_the_seat(
        office: Office) -> None:
    """Awa is from Ghana, whose seat Kofi holds: she goes to Ghana's waiting list, her
    calendar gets a CANCEL above the REQUEST it had, with the message saying why; Senegal's
    seat goes to Moussa, once. Promoted later in Ghana, her REQUEST rises above the CANCEL."""
    corrected_by_reply(office, "Ghana")
    (_, ack), (kind, moved) = office.sent_to(AWA)
    assert kind == "waiting_list"
    assert calendar(ack) == ("REQUEST", 0)
    assert calendar(moved) == ("CANCEL", 1)
    text = " ".join(body(moved).split())
    assert "Ghana instead of Senegal" in text and "removed from your calendar" in text
    assert office.registration(AWA).status == "waiting"
    assert [k for k, _ in office.sent_to(MOUSSA)] == ["waiting_list", "promotion"]
    assert office.registration(MOUSSA).status == "confirmed"
    office.drain("2020-06-21T12:00Z")
    assert [k for k, _ in office.sent_to(MOUSSA)] == ["waiting_list", "promotion"]
    assert len(office.sent_to(AWA)) == 2

    cancelled = office.mailer("cancel", f"R{office.registration(KOFI).id}", "--now", NOW)
    assert cancelled.exit_code == 0, cancelled.output
    office.drain("2020-06-21T12:00Z")
    (kind, promoted), = office.sent_to(AWA)[2:]
    assert kind == "promotion" and calendar(promoted) == ("REQUEST", 2)


@pytest.mark.parametrize("lang", ["en", "fr", "es"])
def test_a_country_corrected_to_one_not_invited_cancels_the_entry(office: Office,
                                                                  lang: str) -> None:
    """Awa is from France, not invited (review): her calendar entry is cancelled with the
    message putting her request in review, saying so in her language; Moussa gets the seat."""
    corrected_by_reply(office, "France", lang)
    (_, _), (kind, moved) = office.sent_to(AWA)
    assert kind == "pending_review" and calendar(moved) == ("CANCEL", 1)
    text = " ".join(body(moved).split())
    assert {"en": "France instead of Senegal", "fr": "France au lieu de Sénégal",
            "es": "Francia en lugar de Senegal"}[lang] in text
    assert [k for k, _ in office.sent_to(MOUSSA)] == ["waiting_list", "promotion"]


def test_a_country_corrected_to_one_refused_cancels_the_entry(office: Office) -> None:
    """A series that refuses countries not invited: the refusal cancels her entry."""
    corrected_by_reply(office, "France", not_invited="reject")
    (_, _), (kind, moved) = office.sent_to(AWA)
    assert kind == "not_invited" and calendar(moved) == ("CANCEL", 1)
    assert "France instead of Senegal" in " ".join(body(moved).split())
    assert office.registration(AWA).status == "rejected"
    assert [k for k, _ in office.sent_to(MOUSSA)] == ["waiting_list", "promotion"]


def test_a_country_corrected_to_one_with_a_free_seat_keeps_the_entry(office: Office) -> None:
    """Awa is from Mali, which has a seat: the same calendar entry, confirmed again (a
    REQUEST, no CANCEL), and Senegal's seat goes to Moussa."""
    corrected_by_reply(office, "Mali")
    (_, _), (kind, moved) = office.sent_to(AWA)
    assert kind == "acknowledgement" and calendar(moved) == ("REQUEST", 0)
    assert "instead of" not in body(moved)
    assert [k for k, _ in office.sent_to(MOUSSA)] == ["waiting_list", "promotion"]


# --- 3. a country removed from the invited ones ---------------------------------------------

def test_removing_an_invited_country_keeps_its_registrations_and_tells_staff_once(
        office: Office) -> None:
    """Senegal taken off africa-fr with Awa and Moussa confirmed (Kofi, Ghana, stays
    invited): nothing changes for them and nothing is sent to them; staff get one alert
    naming the event, the country, how many and the command that would cancel them;
    `mailer check` and the digest's facts say the same for as long as they last."""
    for who, name, home, mid in ((AWA, "Awa Diop", "Senegal", "a1"),
                                 (MOUSSA, "Moussa Ba", "Senegal", "m1"),
                                 (KOFI, "Kofi Mensah", "Ghana", "k1")):
        office.reply(registration_reply(who, name, home, mid=mid))
    office.drain(NOW)
    refs = " ".join(f"R{office.registration(who).id}" for who in (AWA, MOUSSA))
    before = len(office.sent())

    edit(office, invited='["GH", "CI"]')
    office.drain("2020-06-21T12:00Z")
    alerts = office.sent()[before:]
    assert [str(m["X-Mailer-Kind"]) for m in alerts] == ["staff_alert"]
    assert alerts[0]["To"].addresses[0].addr_spec == "staff@example.org"
    text = " ".join(body(alerts[0]).split())
    assert (f"event africa-fr: 2 registration(s) from SN (Senegal; 2 confirmed), which is no "
            f"longer invited; they keep their places unless you cancel them: mailer cancel "
            f"{refs}") in text
    assert "Nothing has been sent to participants" in text
    assert {office.registration(who).status for who in (AWA, MOUSSA, KOFI)} == {"confirmed"}

    # Said once; they keep their reminders.
    office.drain("2020-06-22T12:00Z")
    assert len(office.sent()) == before + 1
    assert once(office, "2020-07-02T08:05Z") == ["reminder"]

    checked = office.mailer("check", "--now", NOW)
    assert checked.exit_code == 0, checked.output
    (line,) = [ln for ln in checked.output.splitlines() if "no longer invited" in ln]
    assert line.endswith(f"event africa-fr.invited: warning: 2 registration(s) from SN "
                         f"(Senegal; 2 confirmed), which is no longer invited; they keep "
                         f"their places unless you cancel them: mailer cancel {refs}")

    st = store.Store(office.url)
    try:
        with st.transaction() as session:
            facts = digest.gather(session, office.catalog, MOMENT, MOMENT)
    finally:
        st.close()
    assert facts.uninvited == [{"event": "africa-fr", "country": "SN", "confirmed": 2,
                                "waiting": 0, "refs": refs}]

    # Cancelled by staff: no longer listed.
    cancelled = office.mailer("cancel", *refs.split(), "--now", "2020-06-22T12:00Z")
    assert cancelled.exit_code == 0, cancelled.output
    checked = office.mailer("check", "--now", NOW)
    assert "no longer invited" not in checked.output


def test_an_uninvited_country_alerts_staff_once_when_passes_overlap(office: Office) -> None:
    """Senegal taken off africa-fr, then three `mailer once` passes started at the same
    moment (cron beside cron beside cron) on the same store: the edit is recorded by one of
    them, in the transaction of its alert, so staff get one alert, not one per process."""
    from tests.instances import Instances

    for who, name, mid in ((AWA, "Awa Diop", "a1"), (MOUSSA, "Moussa Ba", "m1")):
        office.reply(registration_reply(who, name, "Senegal", mid=mid))
    office.drain(NOW)
    edit(office, invited='["GH", "CI"]')
    instances = Instances(office.folder, office.config)
    try:
        passes = [instances.start("once", "--no-read", "--now", "2020-06-21T12:00Z",
                                  name=f"cron-{i}") for i in range(3)]
        assert [p.wait(120) for p in passes] == [0, 0, 0], [p.output() for p in passes]
    finally:
        instances.close()
    alerts = [r for r in office.rows(store.OutboxRow) if r.kind == "staff_alert"]
    assert len(alerts) == 1
    assert {office.registration(who).status for who in (AWA, MOUSSA)} == {"confirmed"}
