"""A simulated series over real Dovecot and an SMTP sink, driven through time with run_once(now=).

From the invitation to the certificate: each step asserts exactly which messages reached the
sink (kind from the ``X-Mailer-Kind`` header, language from ``Content-Language``, recipient,
calendar METHOD and SEQUENCE), that a restart changes nothing, that downtime records missed
reminders, and that schedule edits send one update or cancellation each.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

from icalendar import Calendar
from sqlalchemy import select

from mailer import store
from mailer.config import Imap, Organiser, Paths, Settings, Staff, Store
from mailer.daemon import PassReport, run_once
from mailer.views import plan_view
from tests.servers.imap import ImapServer
from tests.servers.smtp import SmtpSink, smtp_settings

ROOT = Path(__file__).resolve().parent.parent
INBOX = "webinars@secretariat.example"
STAFF = "staff@secretariat.example"

SCHEDULE = """\
[series]
id = "sim-2020"
title = { en = "Simulated series", fr = "Série simulée", es = "Serie simulada" }
organisers = ["European Union", "Council of Europe"]
max_per_country = 4
reminders = ["7d", "1d", "1h"]
pack_at = "3d"
certificate = "on_request"
recorded = true
not_invited = "review"
invitation_at = 2020-06-03T08:00:00Z
contacts = "@CONTACTS@"

[series.pack]
factsheet = "packs/factsheet.{lang}.pdf"
bibliography = "packs/bibliography.{lang}.pdf"
slides = "packs/slides.{lang}.pptx"

[[event]]
id = "africa-fr"
title = { fr = "@AFRICA_TITLE@", en = "Africa webinar" }
start = @AFRICA_START@
end = @AFRICA_END@
language = "fr"
invited = ["SN", "GH", "CI"]
join_url = "@AFRICA_URL@"
cancelled = @AFRICA_CANCELLED@

[[event]]
id = "lac-es"
title = { es = "Webinario América Latina", en = "Latin America webinar" }
start = 2020-07-22T15:00:00Z
end = 2020-07-22T16:45:00Z
language = "es"
invited = [@LAC_INVITED@]
join_url = "https://zoom.us/j/222"
"""

CONTACTS = """\
country,name,email,language,organisation
SN,Moussa Sow,m.sow@mae.gouv.sn.example,fr,Ministère des Affaires étrangères
GH,Kwame Asante,k.asante@mfa.gov.gh.example,en,Ministry of Foreign Affairs
MX,Lucía Fernández,l.fernandez@sre.gob.mx.example,es,Secretaría de Relaciones Exteriores
FR,Jean Martin,j.martin@diplomatie.gouv.fr.example,fr,Ministère de l'Europe
"""

AWA = "awa.diop@justice.gouv.sn.example"
KOFI = "kofi.mensah@mfa.gov.gh.example"
MARIA = "maria.reyes@sre.gob.mx.example"
FATOU = "fatou.ndiaye@justice.gouv.sn.example"
CARLOS = "carlos.rojas@cancilleria.gov.co.example"


def utc(text: str) -> datetime:
    """A literal moment in UTC."""
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def write_schedule(folder: Path, *, africa_start: str = "2020-07-09T08:00:00Z",
                   africa_end: str = "2020-07-09T09:45:00Z", africa_cancelled: bool = False,
                   lac_invited: tuple[str, ...] = ("MX", "CO"),
                   africa_url: str = "https://zoom.us/j/111",
                   africa_title: str = "Webinaire Afrique") -> None:
    """Write (or rewrite) the series TOML and its contacts CSV under ``folder``."""
    schedules = folder / "schedules"
    schedules.mkdir(exist_ok=True)
    (folder / "contacts.csv").write_text(CONTACTS, encoding="utf-8")
    text = (SCHEDULE.replace("@CONTACTS@", str(folder / "contacts.csv"))
            .replace("@AFRICA_START@", africa_start).replace("@AFRICA_END@", africa_end)
            .replace("@AFRICA_CANCELLED@", "true" if africa_cancelled else "false")
            .replace("@AFRICA_URL@", africa_url).replace("@AFRICA_TITLE@", africa_title)
            .replace("@LAC_INVITED@", ", ".join(f'"{c}"' for c in lac_invited)))
    # Write then rename, as an editor does: a reader never sees half a file.
    tmp = schedules / ".sim.toml.tmp"
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(schedules / "sim.toml")


def settings_for(folder: Path, imap: Imap, sink: SmtpSink) -> Settings:
    """Settings built in code: the repo's templates and packs, a store and schedules in folder."""
    return Settings(
        organiser=Organiser(name="Cybercrime Programme Office", address=INBOX,
                            staff_address=STAFF),
        imap=imap, smtp=smtp_settings(sink), store=Store(url=f"sqlite:///{folder}/m.db"),
        paths=Paths(schedules=folder / "schedules", templates=ROOT / "templates", packs=ROOT),
        staff=Staff(digest=False))   # the daily digest has tests of its own (test_staff_digest)


BODY = {
    "en": ("Dear colleagues,\n\nPlease register me for the webinar.\n\n{extra}"
           "Name: {name}\nPosition: Legal adviser\nOrganisation: Ministry of Foreign Affairs\n"
           "Country: {country}\nEmail: {email}\n\nBest regards,\n{name}\n"),
    "fr": ("Madame, Monsieur,\n\nJe souhaite m'inscrire au webinaire.\n\n{extra}"
           "Nom : {name}\nFonction : Magistrate\nOrganisation : Ministère de la Justice\n"
           "Pays : {country}\nCourriel : {email}\n\nCordialement,\n{name}\n"),
    "es": ("Estimados colegas:\n\nQuisiera inscribirme en el webinario.\n\n{extra}"
           "Nombre: {name}\nCargo: Asesora jurídica\nOrganización: Secretaría de Relaciones "
           "Exteriores\nPaís: {country}\nCorreo electrónico: {email}\n\nSaludos cordiales,\n"
           "{name}\n"),
}
CERTIFICATE_WISH = {"en": "I would also like a certificate of participation afterwards.\n\n"}


def reply(email: str, name: str, country: str, lang: str, event_id: str, sent: datetime,
          *, certificate: bool = False) -> bytes:
    """A participant's registration reply, as a mail client would send it to the event."""
    msg = EmailMessage()
    msg["From"] = f"{name} <{email}>"
    msg["To"] = f"Webinars <webinars+{event_id}@secretariat.example>"
    msg["Subject"] = f"Re: Invitation [{event_id}]"
    msg["Date"] = format_datetime(sent)
    msg["Message-ID"] = make_msgid(domain=email.rpartition("@")[2])
    extra = CERTIFICATE_WISH[lang] if certificate else ""
    msg.set_content(BODY[lang].format(name=name, country=country, email=email, extra=extra))
    return msg.as_bytes()


def append(server: ImapServer, *messages: bytes) -> None:
    """Deliver messages to the test mailbox with a second IMAP client."""
    with server.client() as client:
        for raw in messages:
            client.append("INBOX", raw)


@dataclass(frozen=True)
class Seen:
    """One message at the sink, reduced to what the assertions look at."""

    kind: str
    to: str
    lang: str
    event: str
    message_id: str
    method: str | None
    sequence: int | None
    dtstart: datetime | None
    files: tuple[str, ...]


def seen(msg: EmailMessage) -> Seen:
    """What one message at the sink is: kind, recipient, language, calendar, attachments."""
    method = sequence = dtstart = None
    files = []
    for part in msg.walk():
        if part.get_content_type() == "text/calendar":
            cal = Calendar.from_ical(part.get_content())
            (vevent,) = cal.walk("VEVENT")
            method = str(cal["METHOD"])
            sequence = int(vevent["SEQUENCE"])
            dtstart = vevent.decoded("DTSTART")
        elif part.get_filename() and part.get_filename() != "invite.ics":
            files.append(part.get_filename())
    subject = str(msg["Subject"])
    event = subject.rsplit("[", 1)[1].rstrip("]") if subject.endswith("]") else ""
    return Seen(str(msg["X-Mailer-Kind"]), msg["To"].addresses[0].addr_spec.lower(),
                str(msg["Content-Language"]), event, str(msg["Message-ID"]), method, sequence,
                dtstart, tuple(sorted(files)))


class Watch:
    """Reads the sink step by step: ``new()`` returns what arrived since the last call."""

    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink
        self.done = 0
        self.ids: list[str] = []

    def new(self) -> list[Seen]:
        received = self.sink.messages[self.done:]
        self.done += len(received)
        out = [seen(r.message()) for r in received]
        self.ids += [s.message_id for s in out]
        return out


def kinds(messages: list[Seen]) -> set[tuple[str, str, str, str]]:
    """(kind, event, recipient, language) of each message."""
    return {(m.kind, m.event, m.to, m.lang) for m in messages}


def run(settings: Settings, now: datetime) -> PassReport:
    """One pass of the mailer at ``now`` (a fresh process each time, as cron runs it)."""
    return asyncio.run(run_once(settings, now=now))


def reminder_rows(settings: Settings, event_id: str, email: str) -> dict[str, str]:
    """The offset ("7d") of each outbox reminder row for one person and event -> its status."""
    st = store.Store(settings.store.url)
    try:
        with st.transaction() as session:
            rows = session.scalars(select(store.OutboxRow).where(
                store.OutboxRow.kind == "reminder", store.OutboxRow.event_id == event_id,
                store.OutboxRow.recipient == email)).all()
            # The key ends with "offset@start" (see planner._reminders).
            return {r.key.rsplit("|", 1)[-1].split("@")[0]: r.status for r in rows}
    finally:
        st.close()


def registration_status(settings: Settings) -> dict[tuple[str, str], str]:
    """(event, email) -> status of every stored registration."""
    st = store.Store(settings.store.url)
    try:
        with st.transaction() as session:
            return {(r.event_id, r.email): r.status for r in store.all_registrations(session)}
    finally:
        st.close()


AFRICA_START = utc("2020-07-09T08:00:00")
LAC_START = utc("2020-07-22T15:00:00")
FR_PACK = ("bibliography.fr.pdf", "factsheet.fr.pdf", "slides.fr.pptx")
EN_PACK = ("bibliography.en.pdf", "factsheet.en.pdf", "slides.en.pptx")
ES_PACK = ("bibliography.es.pdf", "factsheet.es.pdf", "slides.es.pptx")


def test_a_series_from_invitation_to_certificate(tmp_path: Path, dovecot: ImapServer,
                                                 smtp_sink: SmtpSink) -> None:
    """Every message goes once, at its moment, in its language; restarts and downtime are safe."""
    write_schedule(tmp_path)
    settings = settings_for(tmp_path, dovecot.settings(), smtp_sink)
    watch = Watch(smtp_sink)

    # Invitation day: the focal points of invited countries only (not FR), in their language.
    run(settings, utc("2020-06-03T09:00:00"))
    assert kinds(watch.new()) == {
        ("invitation", "africa-fr", "m.sow@mae.gouv.sn.example", "fr"),
        ("invitation", "africa-fr", "k.asante@mfa.gov.gh.example", "en"),
        ("invitation", "lac-es", "l.fernandez@sre.gob.mx.example", "es"),
    }

    # Replies in three languages, one asking for a certificate: acknowledgements with the
    # calendar invitation (SEQUENCE 0) in the language each person wrote in.
    append(dovecot,
           reply(AWA, "Awa Diop", "Sénégal", "fr", "africa-fr", utc("2020-06-09T09:00:00")),
           reply(KOFI, "Kofi Mensah", "Ghana", "en", "africa-fr", utc("2020-06-09T10:00:00"),
                 certificate=True),
           reply(MARIA, "María Reyes", "México", "es", "lac-es", utc("2020-06-09T11:00:00")))
    report = run(settings, utc("2020-06-10T10:00:00"))
    assert report.handled == 3
    acks = watch.new()
    assert kinds(acks) == {("acknowledgement", "africa-fr", AWA, "fr"),
                           ("acknowledgement", "africa-fr", KOFI, "en"),
                           ("acknowledgement", "lac-es", MARIA, "es")}
    assert {(m.method, m.sequence) for m in acks} == {("REQUEST", 0)}

    # Eight days before: nothing is due yet.
    run(settings, utc("2020-07-01T08:00:00"))
    assert watch.new() == []

    # The 7-day mark: a reminder with the current calendar version to each confirmed person.
    run(settings, utc("2020-07-02T08:00:00"))
    reminders = watch.new()
    assert kinds(reminders) == {("reminder", "africa-fr", AWA, "fr"),
                                ("reminder", "africa-fr", KOFI, "en")}
    assert {(m.method, m.sequence, m.dtstart) for m in reminders} == {
        ("REQUEST", 0, AFRICA_START)}

    # The pack mark: the files in each participant's language.
    pack_moment = utc("2020-07-06T08:00:00")
    run(settings, pack_moment)
    packs = watch.new()
    assert kinds(packs) == {("pack", "africa-fr", AWA, "fr"), ("pack", "africa-fr", KOFI, "en")}
    assert {m.to: m.files for m in packs} == {AWA: FR_PACK, KOFI: EN_PACK}

    # A restart: a brand-new pass at the same moment sends nothing.
    again = run(settings, pack_moment)
    assert again.drain.sent == 0 and watch.new() == []

    # A late registrant (two days before): the acknowledgement and the pack, no 7d reminder.
    append(dovecot, reply(FATOU, "Fatou Ndiaye", "Sénégal", "fr", "africa-fr",
                          utc("2020-07-07T07:30:00")))
    run(settings, utc("2020-07-07T08:00:00"))
    late = watch.new()
    assert kinds(late) == {("acknowledgement", "africa-fr", FATOU, "fr"),
                           ("pack", "africa-fr", FATOU, "fr")}
    assert [m.files for m in late if m.kind == "pack"] == [FR_PACK]

    # One day, then one hour before: everyone confirmed, once each.
    for moment in ("2020-07-08T08:00:00", "2020-07-09T07:00:00"):
        run(settings, utc(moment))
        assert kinds(watch.new()) == {("reminder", "africa-fr", AWA, "fr"),
                                      ("reminder", "africa-fr", KOFI, "en"),
                                      ("reminder", "africa-fr", FATOU, "fr")}

    assert reminder_rows(settings, "africa-fr", FATOU) == {"1d": "sent", "1h": "sent"}

    # After the end: the certificate to the one who asked, in English, with the PDF.
    run(settings, utc("2020-07-09T10:00:00"))
    certificates = watch.new()
    assert kinds(certificates) == {("certificate", "africa-fr", KOFI, "en")}
    assert certificates[0].files == ("certificate-africa-fr.pdf",)

    # Downtime: no pass from then until two hours before lac-es. The 7d reminder was
    # superseded (recorded missed, shown by `mailer plan`); the 1d reminder and the pack go.
    downtime_end = utc("2020-07-22T13:00:00")
    report = run(settings, downtime_end)
    caught_up = watch.new()
    assert kinds(caught_up) == {("reminder", "lac-es", MARIA, "es"),
                                ("pack", "lac-es", MARIA, "es")}
    assert [m.files for m in caught_up if m.kind == "pack"] == [ES_PACK]
    assert report.missed >= 1
    assert reminder_rows(settings, "lac-es", MARIA) == {"7d": "missed", "1d": "sent"}
    plan = json.loads(plan_view(settings, downtime_end, as_json=True))
    missed = [r for r in plan["sends"] if r["event_id"] == "lac-es" and r["missed"]]
    assert [(r["kind"], r["due_at"], r["missed"]) for r in missed] == [
        ("reminder", "2020-07-15T15:00:00+00:00", 1)]

    run(settings, utc("2020-07-22T14:00:00"))
    assert kinds(watch.new()) == {("reminder", "lac-es", MARIA, "es")}

    # Nothing was ever sent twice.
    assert len(watch.ids) == len(set(watch.ids))


def test_schedule_edits_send_one_update_then_one_cancellation(
        tmp_path: Path, dovecot: ImapServer, smtp_sink: SmtpSink) -> None:
    """A moved event: one UPDATE (SEQUENCE 1, new DTSTART) each; cancelled: one CANCEL each."""
    write_schedule(tmp_path)
    settings = settings_for(tmp_path, dovecot.settings(), smtp_sink)
    watch = Watch(smtp_sink)
    append(dovecot,
           reply(AWA, "Awa Diop", "Sénégal", "fr", "africa-fr", utc("2020-06-09T09:00:00")),
           reply(KOFI, "Kofi Mensah", "Ghana", "en", "africa-fr", utc("2020-06-09T10:00:00")),
           reply(MARIA, "María Reyes", "México", "es", "lac-es", utc("2020-06-09T11:00:00")),
           reply(CARLOS, "Carlos Rojas", "Colombia", "es", "lac-es",
                 utc("2020-06-09T12:00:00")))
    run(settings, utc("2020-06-10T10:00:00"))
    assert {m.kind for m in watch.new()} == {"invitation", "acknowledgement"}

    # Moved by a day: one update per confirmed participant, and nothing on a second pass.
    write_schedule(tmp_path, africa_start="2020-07-10T08:00:00Z",
                   africa_end="2020-07-10T09:45:00Z")
    run(settings, utc("2020-06-12T10:00:00"))
    updates = watch.new()
    assert kinds(updates) == {("update", "africa-fr", AWA, "fr"),
                              ("update", "africa-fr", KOFI, "en")}
    assert {(m.method, m.sequence, m.dtstart) for m in updates} == {
        ("REQUEST", 1, utc("2020-07-10T08:00:00"))}
    assert run(settings, utc("2020-06-12T11:00:00")).drain.sent == 0
    assert watch.new() == []

    # Reminders of the moved event carry its current version and start.
    run(settings, utc("2020-07-03T08:00:00"))
    reminders = watch.new()
    assert kinds(reminders) == {("reminder", "africa-fr", AWA, "fr"),
                                ("reminder", "africa-fr", KOFI, "en")}
    assert {(m.method, m.sequence, m.dtstart) for m in reminders} == {
        ("REQUEST", 1, utc("2020-07-10T08:00:00"))}

    # Cancelled: one calendar cancellation each, with a higher SEQUENCE; then silence.
    write_schedule(tmp_path, africa_start="2020-07-10T08:00:00Z",
                   africa_end="2020-07-10T09:45:00Z", africa_cancelled=True)
    run(settings, utc("2020-07-04T10:00:00"))
    cancels = watch.new()
    assert kinds(cancels) == {("cancellation", "africa-fr", AWA, "fr"),
                              ("cancellation", "africa-fr", KOFI, "en")}
    assert {(m.method, m.sequence) for m in cancels} == {("CANCEL", 2)}
    # Past the old reminder and pack moments: nothing more for the cancelled event.
    run(settings, utc("2020-07-10T07:30:00"))
    assert [m for m in watch.new() if m.event == "africa-fr"] == []
    assert len(watch.ids) == len(set(watch.ids))


def test_removing_an_invited_country_keeps_its_registrations_and_alerts_staff(
        tmp_path: Path, dovecot: ImapServer, smtp_sink: SmtpSink) -> None:
    """Colombia taken off lac-es: Carlos keeps his place (staff decide; it is more often a
    mistake than not), staff are alerted once, and both still get their reminders."""
    write_schedule(tmp_path)
    settings = settings_for(tmp_path, dovecot.settings(), smtp_sink)
    append(dovecot,
           reply(MARIA, "María Reyes", "México", "es", "lac-es", utc("2020-06-09T11:00:00")),
           reply(CARLOS, "Carlos Rojas", "Colombia", "es", "lac-es",
                 utc("2020-06-09T12:00:00")))
    run(settings, utc("2020-06-10T10:00:00"))
    assert registration_status(settings) == {("lac-es", MARIA): "confirmed",
                                             ("lac-es", CARLOS): "confirmed"}

    watch = Watch(smtp_sink)
    watch.new()
    write_schedule(tmp_path, lac_invited=("MX",))
    report = run(settings, utc("2020-06-12T10:00:00"))
    assert registration_status(settings) == {("lac-es", MARIA): "confirmed",
                                             ("lac-es", CARLOS): "confirmed"}
    assert [(c.event_id, u.country, len(u.confirmed)) for c in report.changes
            for u in c.uninvited] == [("lac-es", "CO", 1)]
    assert [m.kind for m in watch.new()] == ["staff_alert"]
    run(settings, utc("2020-07-15T15:00:00"))
    assert kinds(watch.new()) == {("reminder", "lac-es", MARIA, "es"),
                                  ("reminder", "lac-es", CARLOS, "es")}
