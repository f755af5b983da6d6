"""Updates over a simulated series: what changed is said, the pack goes once, SEQUENCE rises.

Real Dovecot and an SMTP sink, driven through time with run_once(now=) as in test_series.
Each message's calendar is read by vobject, a parser independent of the icalendar library
the mailer writes with; texts are read from the decoded plain-text part, as a mail client
shows them.
"""

from __future__ import annotations

from collections import defaultdict
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

import vobject

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


def test_edits_say_what_changed_send_the_pack_once_and_raise_each_persons_sequence(
        tmp_path: Path, dovecot: ImapServer, smtp_sink: SmtpSink) -> None:
    """Moved, new link and title, a withdrawal and a re-registration, then moved again."""
    write_schedule(tmp_path)
    settings = settings_for(tmp_path, dovecot.settings(), smtp_sink)
    append(dovecot,
           reply(AWA, "Awa Diop", "Sénégal", "fr", "africa-fr", utc("2020-06-09T09:00:00")),
           reply(KOFI, "Kofi Mensah", "Ghana", "en", "africa-fr", utc("2020-06-09T10:00:00")))
    run(settings, utc("2020-06-10T10:00:00"))
    # The pack's moment (three days before): the pack, and the 7-day reminder.
    run(settings, utc("2020-07-06T08:30:00"))
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
