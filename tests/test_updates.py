"""Updates over a simulated series: what changed is said, the pack goes once, SEQUENCE rises.

Real Dovecot and an SMTP sink, driven through time with run_once(now=) as in test_series.
Each message's calendar is read by vobject, a parser independent of the icalendar library
the mailer writes with; texts are read from the decoded plain-text part, as a mail client
shows them.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

import vobject
from sqlalchemy import select

from mailer import store
from mailer.config import Settings
from mailer.schedule import Catalog, load_catalog
from mailer.sync import plan_into_outbox, sync_events
from tests.builders import store_at
from tests.servers.imap import ImapServer
from tests.servers.smtp import SmtpSink
from tests.test_series import AWA, KOFI, append, reply, run, settings_for, utc, write_schedule


def cancellation(email: str, name: str, event_id: str, sent_at: str) -> bytes:
    """A participant's own cancellation, in French, as a reply to their acknowledgement."""
    msg = EmailMessage()
    msg["From"] = f"{name} <{email}>"
    msg["To"] = f"webinars+{event_id}@secretariat.example"
    msg["Subject"] = f"RE: Inscription confirmée [{event_id}]"
    msg["Date"] = format_datetime(utc(sent_at))
    msg["Message-ID"] = make_msgid(domain=email.rpartition("@")[2])
    msg.set_content("Bonjour,\n\nJe ne pourrai malheureusement pas participer au webinaire. "
                    f"Veuillez annuler mon inscription.\n\nCordialement,\n{name}\n")
    return msg.as_bytes()


class Received:
    """One message at the sink as its recipient sees it: kind, text, calendar (by vobject)."""

    def __init__(self, msg: EmailMessage) -> None:
        self.kind = str(msg["X-Mailer-Kind"])
        self.to = msg["To"].addresses[0].addr_spec.lower()
        body = msg.get_body(("plain",))
        assert body is not None
        self.text = body.get_content().replace("\r\n", "\n")
        self.method: str | None = None
        self.sequence: int | None = None
        self.summary = self.url = ""
        self.files = [p.get_filename() for p in msg.walk()
                      if p.get_filename() and p.get_filename() != "invite.ics"]
        for part in msg.walk():
            if part.get_content_type() == "text/calendar":
                cal = vobject.readOne(part.get_content())
                self.method = cal.method.value
                event = cal.vevent
                self.sequence = int(event.sequence.value)
                self.summary = event.summary.value
                self.url = event.url.value if hasattr(event, "url") else ""


def arrived(sink: SmtpSink, since: int) -> list[Received]:
    return [Received(r.message()) for r in sink.messages[since:]]


def _awa_and_kofi_at_the_packs_moment(tmp_path: Path, dovecot: ImapServer,
                                      smtp_sink: SmtpSink) -> Settings:
    """Awa (fr) and Kofi (en) registered for africa-fr by reply, then the pass at the pack's
    moment (three days before): the pack, and the 7-day reminder."""
    write_schedule(tmp_path)
    settings = settings_for(tmp_path, dovecot.settings(), smtp_sink)
    append(dovecot,
           reply(AWA, "Awa Diop", "Sénégal", "fr", "africa-fr", utc("2020-06-09T09:00:00")),
           reply(KOFI, "Kofi Mensah", "Ghana", "en", "africa-fr", utc("2020-06-09T10:00:00")))
    run(settings, utc("2020-06-10T10:00:00"))
    run(settings, utc("2020-07-06T08:30:00"))
    return settings


def test_edits_say_what_changed_send_the_pack_once_and_raise_each_persons_sequence(
        tmp_path: Path, dovecot: ImapServer, smtp_sink: SmtpSink) -> None:
    """Moved, new link and title, a withdrawal and a re-registration, then moved again."""
    settings = _awa_and_kofi_at_the_packs_moment(tmp_path, dovecot, smtp_sink)
    before_edits = len(smtp_sink.messages)

    # Moved by one hour: one update each, saying the old and the new time; no pack.
    write_schedule(tmp_path, africa_start="2020-07-09T09:00:00Z",
                   africa_end="2020-07-09T10:45:00Z")
    run(settings, utc("2020-07-06T10:00:00"))
    moved = arrived(smtp_sink, before_edits)
    assert sorted((m.kind, m.to) for m in moved) == [("update", AWA), ("update", KOFI)]
    by_person = {m.to: m for m in moved}
    assert ("Date et heure : jeudi 9 juillet 2020, 08:00–09:45 UTC → "
            "jeudi 9 juillet 2020, 09:00–10:45 UTC") in by_person[AWA].text
    assert ("Date and time: Thursday 9 July 2020, 08:00–09:45 UTC → "
            "Thursday 9 July 2020, 09:00–10:45 UTC") in by_person[KOFI].text
    assert "Lien de connexion : https://zoom.us/j/111 →" not in by_person[AWA].text

    # A new link and a new title: the update shows both, old and new; not the time.
    mark = len(smtp_sink.messages)
    write_schedule(tmp_path, africa_start="2020-07-09T09:00:00Z",
                   africa_end="2020-07-09T10:45:00Z", africa_url="https://zoom.us/j/999",
                   africa_title="Webinaire avec les pays d'Afrique")
    run(settings, utc("2020-07-06T11:00:00"))
    relinked = {m.to: m for m in arrived(smtp_sink, mark)}
    assert set(relinked) == {AWA, KOFI}
    awa = relinked[AWA]
    assert "Lien de connexion : https://zoom.us/j/111 → https://zoom.us/j/999" in awa.text
    assert ("Titre : Webinaire Afrique → Webinaire avec les pays d'Afrique") in awa.text
    assert "Date et heure : jeudi" not in awa.text.split("Ce qui change")[1].split("\n\n")[0]
    assert (awa.url, awa.summary) == ("https://zoom.us/j/999",
                                      "Webinaire avec les pays d'Afrique")
    assert "Connection link: https://zoom.us/j/111 → https://zoom.us/j/999" in \
        relinked[KOFI].text

    # Awa withdraws, then registers again: a CANCEL, then a new invitation, each above the
    # last SEQUENCE she got; Kofi gets nothing.
    mark = len(smtp_sink.messages)
    append(dovecot, cancellation(AWA, "Awa Diop", "africa-fr", "2020-07-06T11:30:00"))
    run(settings, utc("2020-07-06T12:00:00"))
    append(dovecot, reply(AWA, "Awa Diop", "Sénégal", "fr", "africa-fr",
                          utc("2020-07-06T12:30:00")))
    run(settings, utc("2020-07-06T13:00:00"))
    again = arrived(smtp_sink, mark)
    assert [(m.kind, m.to, m.method) for m in again] == [
        ("withdrawal", AWA, "CANCEL"), ("acknowledgement", AWA, "REQUEST")]

    # Moved again: the update tells Awa what changed since the version she last received.
    mark = len(smtp_sink.messages)
    write_schedule(tmp_path, africa_start="2020-07-09T10:00:00Z",
                   africa_end="2020-07-09T11:45:00Z", africa_url="https://zoom.us/j/999",
                   africa_title="Webinaire avec les pays d'Afrique")
    run(settings, utc("2020-07-07T09:00:00"))
    last = {m.to: m for m in arrived(smtp_sink, mark)}
    assert set(last) == {AWA, KOFI}
    assert "09:00–10:45 UTC → jeudi 9 juillet 2020, 10:00–11:45 UTC" in last[AWA].text

    everything = arrived(smtp_sink, 0)
    # One pack per person, whatever moved.
    packs = defaultdict(int)
    for m in everything:
        if m.kind == "pack":
            packs[m.to] += 1
    assert packs == {AWA: 1, KOFI: 1}
    # SEQUENCE per person, in the order sent: a reminder repeats the version it reminds of;
    # every other calendar message rises strictly above everything before it.
    sequences: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for m in everything:
        if m.sequence is not None:
            sequences[m.to].append((m.kind, m.sequence))
    assert sequences[AWA] == [("acknowledgement", 0), ("reminder", 0), ("update", 1),
                              ("update", 2), ("withdrawal", 3), ("acknowledgement", 4),
                              ("update", 5)]
    assert sequences[KOFI] == [("acknowledgement", 0), ("reminder", 0), ("update", 1),
                               ("update", 2), ("update", 3)]
    for person, seen in sequences.items():
        changes = [sequence for kind, sequence in seen if kind != "reminder"]
        assert changes == sorted(set(changes)), person


# --- the pack's files, not the event's time, decide whether the pack goes again -----------

PACK_SCHEDULE = """
[series]
id = "s"
title = "Series"
pack_at = "3d"
[series.pack]
factsheet = "factsheet.{lang}.pdf"

[[event]]
id = "ev"
start = 2020-07-09T08:00:00Z
end = 2020-07-09T09:45:00Z
language = "fr"
invited = ["SN"]
join_url = "https://zoom.us/j/1"
"""


def _pack_keys(st: store.Store, catalog: Catalog, packs: Path, now: datetime) -> list[str]:
    """Sync (reading the pack files) and plan at ``now``; the pack keys in the outbox."""
    with st.transaction() as session:
        sync_events(session, catalog, now, packs)
        plan_into_outbox(session, catalog, [], now, "example.org")
        return sorted(session.scalars(select(store.OutboxRow.key)
                                      .where(store.OutboxRow.kind == "pack")))


def _two_confirmed_with_a_pack(st: store.Store, tmp_path: Path) -> tuple[Catalog, datetime]:
    """The pack schedule with French and English factsheets, Awa (fr) and Kofi (en)
    confirmed; the catalog and the pack's moment."""
    (tmp_path / "schedules").mkdir()
    (tmp_path / "schedules" / "s.toml").write_text(PACK_SCHEDULE, encoding="utf-8")
    for lang in ("fr", "en"):
        (tmp_path / f"factsheet.{lang}.pdf").write_bytes(f"%PDF {lang} v1".encode())
    now = datetime(2020, 7, 6, 9, 0, tzinfo=timezone.utc)
    with st.transaction() as session:
        for email, lang in (("awa@gov.sn", "fr"), ("kofi@gov.sn", "en")):
            session.add(store.Registration(
                event_id="ev", series_id="s", email=email, name="x", country="SN",
                language=lang, status="confirmed", created_at=now, updated_at=now,
                confirmed_at=datetime(2020, 6, 1, tzinfo=timezone.utc)))
    return load_catalog(tmp_path / "schedules"), now


def test_new_pack_files_send_the_pack_once_more_to_their_language_only(
        st: store.Store, tmp_path: Path) -> None:
    catalog, now = _two_confirmed_with_a_pack(st, tmp_path)
    first = _pack_keys(st, catalog, tmp_path, now)
    assert first == ["pack|ev|0|awa@gov.sn", "pack|ev|0|kofi@gov.sn"]
    # The same files again, and the event moved: nothing more.
    moved = load_catalog_text(tmp_path, PACK_SCHEDULE.replace("08:00", "09:00"))
    assert _pack_keys(st, moved, tmp_path, now) == first
    # New French slides: the French participant gets the pack once more, then never again.
    (tmp_path / "factsheet.fr.pdf").write_bytes(b"%PDF fr v2, corrected")
    second = _pack_keys(st, moved, tmp_path, now)
    assert second == sorted([*first, "pack|ev|1|awa@gov.sn"])
    assert _pack_keys(st, moved, tmp_path, now) == second


def test_pack_files_missing_for_a_while_send_nothing_anew(st: store.Store,
                                                         tmp_path: Path) -> None:
    """The files gone for a pass (a folder not mounted, a file removed to be copied in
    again), then back unchanged: no pack goes again (it went twice more, the first time
    without its files). Changed when they come back: once more."""
    catalog, now = _two_confirmed_with_a_pack(st, tmp_path)
    files = {lang: tmp_path / f"factsheet.{lang}.pdf" for lang in ("fr", "en")}
    first = _pack_keys(st, catalog, tmp_path, now)
    assert first == ["pack|ev|0|awa@gov.sn", "pack|ev|0|kofi@gov.sn"]
    kept = {lang: path.read_bytes() for lang, path in files.items()}
    for path in files.values():
        path.unlink()
    assert _pack_keys(st, catalog, tmp_path, now) == first
    for lang, path in files.items():
        path.write_bytes(kept[lang])
    assert _pack_keys(st, catalog, tmp_path, now) == first
    files["en"].write_bytes(b"%PDF en v2, corrected")
    assert _pack_keys(st, catalog, tmp_path, now) == [*first, "pack|ev|1|kofi@gov.sn"]


def load_catalog_text(folder: Path, text: str) -> Catalog:
    (folder / "schedules" / "s.toml").write_text(text, encoding="utf-8")
    return load_catalog(folder / "schedules")


def test_upgrading_keeps_the_packs_already_sent_as_sent(tmp_path: Path) -> None:
    """A store from before 0003 keyed packs by the event's start; after the upgrade the
    planner's key is the renamed row's, so nobody gets the pack again."""
    st = store_at(f"sqlite:///{tmp_path}/m.db", "0002")
    now = datetime(2020, 7, 6, 9, 0, tzinfo=timezone.utc)
    with st.engine.begin() as conn:
        for key in ("pack|ev|0|awa@gov.sn|2020-07-08T08:00:00+00:00",
                    "pack|ev|0|awa@gov.sn|2020-07-09T08:00:00+00:00",
                    "reminder|ev|0|awa@gov.sn|7d@2020-07-09T08:00:00+00:00"):
            conn.execute(store.OutboxRow.__table__.insert().values(
                key=key, kind=key.split("|")[0], event_id="ev", recipient="awa@gov.sn",
                name="", language="fr", sequence=0, context={}, message_id="<m>",
                status="sent", attempts=1, next_attempt_at=now, last_error="",
                created_at=now))
    st.migrate()
    with st.transaction() as session:
        keys = set(session.scalars(select(store.OutboxRow.key)))
    st.close()
    assert keys == {"pack|ev|0|awa@gov.sn", "pack|ev|0|awa@gov.sn|2020-07-08T08:00:00+00:00",
                    "reminder|ev|0|awa@gov.sn|7d@2020-07-09T08:00:00+00:00"}


# --- what waits in the outbox is sent only while it is still true --------------------------

def _outbox_rows(settings: object, email: str) -> dict[str, tuple[str, str]]:
    """kind -> (status, last_error) of each outbox row to ``email``."""
    st = store.Store(settings.store.url)  # type: ignore[attr-defined]
    try:
        with st.transaction() as session:
            return {r.kind: (r.status, r.last_error) for r in session.scalars(
                select(store.OutboxRow).where(store.OutboxRow.recipient == email))}
    finally:
        st.close()


def test_a_reminder_waiting_for_a_retry_never_reaches_someone_who_withdrew(
        tmp_path: Path, dovecot: ImapServer, smtp_sink: SmtpSink) -> None:
    """Awa's 1-day reminder meets a 451 and waits for its retry; she cancels meanwhile. The
    next pass sends her withdrawal (CANCEL), never the reminder (a REQUEST that would put
    the webinar back in her calendar); Kofi, still registered, gets his."""
    settings = _awa_and_kofi_at_the_packs_moment(tmp_path, dovecot, smtp_sink)
    mark = len(smtp_sink.messages)
    smtp_sink.fail_next(AWA, 451, "4.3.0 Try later")
    run(settings, utc("2020-07-08T08:05:00"))        # the 1-day reminders
    assert [(m.kind, m.to) for m in arrived(smtp_sink, mark)] == [("reminder", KOFI)]
    assert _outbox_rows(settings, AWA)["reminder"][0] == "pending"

    append(dovecot, cancellation(AWA, "Awa Diop", "africa-fr", "2020-07-08T08:10:00"))
    run(settings, utc("2020-07-08T08:30:00"))        # her retry is due too
    after = arrived(smtp_sink, mark + 1)
    assert [(m.kind, m.to, m.method) for m in after] == [("withdrawal", AWA, "CANCEL")]
    status, why = _outbox_rows(settings, AWA)["reminder"]
    assert (status, why) == ("missed", "not sent: the registration is cancelled")


def test_nothing_queued_for_a_cancelled_event_goes_after_its_cancellation(
        tmp_path: Path, dovecot: ImapServer, smtp_sink: SmtpSink) -> None:
    """The organisers cancel the event while Kofi's update waits for a retry: he gets the
    cancellation, and the update (a REQUEST for the moved time) is not sent after it."""
    write_schedule(tmp_path)
    settings = settings_for(tmp_path, dovecot.settings(), smtp_sink)
    append(dovecot,
           reply(KOFI, "Kofi Mensah", "Ghana", "en", "africa-fr", utc("2020-06-09T10:00:00")))
    run(settings, utc("2020-06-10T10:00:00"))
    write_schedule(tmp_path, africa_start="2020-07-09T09:00:00Z",
                   africa_end="2020-07-09T10:45:00Z")
    smtp_sink.fail_next(KOFI, 451, "4.3.0 Try later")
    mark = len(smtp_sink.messages)
    run(settings, utc("2020-06-20T10:00:00"))
    assert arrived(smtp_sink, mark) == []
    write_schedule(tmp_path, africa_start="2020-07-09T09:00:00Z",
                   africa_end="2020-07-09T10:45:00Z", africa_cancelled=True)
    run(settings, utc("2020-06-20T11:00:00"))
    assert [(m.kind, m.method) for m in arrived(smtp_sink, mark)] == [
        ("cancellation", "CANCEL")]
    assert _outbox_rows(settings, KOFI)["update"] == (
        "missed", "not sent: the event was cancelled after it was queued")
