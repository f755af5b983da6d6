"""Replies that only thank, and replies the mailer cannot read from people already registered:
the first get no answer at all, the second go to staff, and neither gets the registration form
(which read as if the registration had failed). Someone not registered still gets the form."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from email.message import EmailMessage
from pathlib import Path

import pytest

from mailer import store
from mailer.domain import Intent, IntentKind, Kind, Status
from mailer.rules import Registered, decide
from mailer.schedule import Catalog
from mailer.understand import understand
from tests.builders import make_catalog
from tests.servers.smtp import SmtpSink
from tests.staffkit import NOW, Office, make_office, registration_reply

INBOX = "webinars@example.org"
STAFF = "staff@example.org"
BEFORE = datetime(2020, 7, 1, 12, 0, tzinfo=timezone.utc)
FATOUMATA = "fatoumata.diallo@justice.gouv.sn"


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    return make_catalog(tmp_path_factory.mktemp("schedules"))


def reply(text: str, *, sender: str = FATOUMATA, mid: str = "t1") -> bytes:
    """A reply to the event's address, as an iPhone sends it (the quote below)."""
    msg = EmailMessage()
    msg["From"] = f"Fatoumata Diallo <{sender}>"
    msg["To"] = "webinars+africa-fr@example.org"
    msg["Subject"] = "Re: Confirmation d’inscription"
    msg["Message-ID"] = f"<{mid}@client.example>"
    msg.set_content(f"{text}\n\nEnvoyé de mon iPhone\n\nLe 1 juil. 2020 à 10:00, Webinaires "
                    f"<{INBOX}> a écrit :\n\n> Nous avons le plaisir de vous confirmer...\n")
    return msg.as_bytes()


def kind_of(text: str, catalog: Catalog) -> IntentKind:
    return understand(reply(text), catalog, now=BEFORE, inbox_address=INBOX).kind


# --------------------------------------------------------------------------- understanding

@pytest.mark.parametrize("text", [
    "Bien reçu, merci beaucoup.",
    "Thank you, well received",
    "Noted with thanks",
    "Muchas gracias, recibido",
    "Obrigado",
    "OK",
    "C'est noté, merci.",
    "Dear Anna,\n\nThank you very much, well received.\n\nBest regards,\nJohn Smith\n"
    "Tel: +254 20 222 333\njohn.smith@odpp.go.ke",
    # A signature naming the country is an address, not a correction.
    "Bien reçu, merci beaucoup.\n\nFatoumata Diallo\nMinistère de la Justice\nSénégal",
    "Recebido, obrigada!\nAtenciosamente,\nAna Silva",
])
def test_a_reply_that_only_thanks_is_thanks(catalog: Catalog, text: str) -> None:
    """Thanks and acknowledgements in four languages ask for nothing: intent ``thanks``."""
    assert kind_of(text, catalog) is IntentKind.THANKS


@pytest.mark.parametrize(("text", "kind"), [
    # A substitution naming nobody readable: the sender is asked for the colleague's details.
    ("Thanks, but my colleague will replace me", IntentKind.SUBSTITUTION),
    ("Thank you. Please send me the slides", IntentKind.UNKNOWN),
    ("Thanks, I have not received the link", IntentKind.UNKNOWN),
    ("No, thank you", IntentKind.UNKNOWN),
    ("Thanks. Yes", IntentKind.UNKNOWN),
    ("Ghana, thanks", IntentKind.UNKNOWN),            # maybe a correction: a person reads it
    ("Thanks\nGhana", IntentKind.UNKNOWN),
    ("Gracias. Mi colega Juan Pérez asistirá en mi lugar.", IntentKind.SUBSTITUTION),
    ("Thanks! When does it start?", IntentKind.QUESTION),
    ("Merci, veuillez annuler mon inscription.", IntentKind.CANCELLATION),
])
def test_thanks_beside_anything_else_is_not_thanks(catalog: Catalog, text: str,
                                                   kind: IntentKind) -> None:
    """A word of thanks beside anything else is read for the rest: never silenced."""
    assert kind_of(text, catalog) is kind


# --------------------------------------------------------------------------- the rules

def seat(email: str, status: Status) -> Registered:
    return Registered(id=7, email=email, country="SN", status=status,
                      created_at=datetime(2020, 6, 20, tzinfo=timezone.utc), name="F. Diallo")


def test_thanks_are_never_answered(catalog: Catalog) -> None:
    """"Bien reçu, merci" from a confirmed participant changes nothing and gets no answer."""
    intent = Intent(kind=IntentKind.THANKS, sender=FATOUMATA, message_id="<t@x>",
                    event_id="africa-fr", text="Bien reçu, merci.")
    d = decide(intent, catalog.event("africa-fr"), [seat(FATOUMATA, Status.CONFIRMED)],
               sequence=0, now=BEFORE, staff_address=STAFF)
    assert d.answers == () and d.created == () and d.changed == ()
    assert "not answered" in d.summary


@pytest.mark.parametrize("status", [Status.CONFIRMED, Status.WAITING, Status.REVIEW])
def test_an_unreadable_reply_from_a_registered_person_goes_to_staff(
        catalog: Catalog, status: Status) -> None:
    """Someone registered is never sent the registration form: what the mailer cannot read
    goes to staff, saying why, as a question does."""
    intent = Intent(kind=IntentKind.UNKNOWN, sender=FATOUMATA, message_id="<u@x>",
                    event_id="africa-fr", text="Voir pièce jointe.")
    d = decide(intent, catalog.event("africa-fr"), [seat(FATOUMATA, status)], sequence=0,
               now=BEFORE, staff_address=STAFF)
    assert [(a.kind, a.recipient) for a in d.answers] == [(Kind.STAFF_QUESTION, STAFF)]
    assert d.answers[0].context["text"] == "Voir pièce jointe."
    assert "registered" in str(d.answers[0].context["reason"])


@pytest.mark.parametrize("status", [Status.CANCELLED, Status.REJECTED, None])
def test_an_unreadable_reply_from_anyone_else_gets_the_form(catalog: Catalog,
                                                            status: Status | None) -> None:
    """Someone not (or no longer) registered still gets the clarification with the form."""
    intent = Intent(kind=IntentKind.UNKNOWN, sender="x@gouv.sn", message_id="<u@x>",
                    event_id="africa-fr", text="Voir pièce jointe.")
    d = decide(intent, catalog.event("africa-fr"), [seat("x@gouv.sn", status)] if status
               else [], sequence=0, now=BEFORE, staff_address=STAFF)
    assert [(a.kind, a.recipient) for a in d.answers] == [(Kind.CLARIFICATION, "x@gouv.sn")]


# --------------------------------------------------------------------------- end to end

@pytest.fixture
def office(st: store.Store, tmp_path: Path, smtp_sink: SmtpSink) -> Office:
    return make_office(tmp_path, st.url, smtp_sink)


def test_a_registered_participants_thanks_and_unreadable_reply_over_the_store(
        office: Office) -> None:
    """Fatoumata (confirmed) thanks: nothing is queued, `mailer person` shows it handled.
    She then writes what the mailer cannot read, from another address book entry with no
    event in it: staff get it (review and its JSON list it with the questions, not as a
    reply not placed), she gets no form. A stranger's unreadable reply gets the form."""
    office.reply(registration_reply(FATOUMATA, "Fatoumata Diallo", "Senegal", mid="r1"))
    queued = len(office.rows(store.OutboxRow))

    handled = office.reply(reply("Bien reçu, merci beaucoup.", mid="t1"))
    assert handled.outcome == "handled" and handled.intent.kind is IntentKind.THANKS
    assert len(office.rows(store.OutboxRow)) == queued
    person = office.mailer("person", FATOUMATA)
    assert "thanks handled: thanks or acknowledgement only: not answered" in person.output

    # No plus-tag, no [tag], no thread: the event is the one she is registered for.
    lost = (f"From: {FATOUMATA}\r\nTo: {INBOX}\r\nSubject: documents\r\n"
            "Message-ID: <u1@client.example>\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "\r\nVoir la pièce jointe.\r\n").encode()
    handled = office.reply(lost)
    assert handled.intent.kind is IntentKind.UNKNOWN
    new = office.rows(store.OutboxRow)[queued:]
    assert [(r.kind, r.recipient, r.event_id) for r in new] == [
        ("staff_question", STAFF, "africa-fr")]

    review = json.loads(office.mailer("review", "--json", "--now", NOW).output)
    assert [q["sender"] for q in review["questions"]] == [FATOUMATA]
    assert review["unplaced"] == []

    stranger = lost.replace(FATOUMATA.encode(), b"someone@example.net").replace(b"<u1@", b"<u2@")
    office.reply(stranger)
    (last,) = office.rows(store.OutboxRow)[queued + 1:]
    assert (last.kind, last.recipient) == ("clarification", "someone@example.net")
    review = json.loads(office.mailer("review", "--json", "--now", NOW).output)
    assert [u["sender"] for u in review["unplaced"]] == ["someone@example.net"]


def test_unreadable_replies_forwarded_count_against_the_senders_daily_ration(
        office: Office) -> None:
    """Staff are protected from a flood as participants are: a registered sender's unreadable
    replies go to staff up to the daily ration (limits.auto_answers_per_day), then are held."""
    office.reply(registration_reply(FATOUMATA, "Fatoumata Diallo", "Senegal", mid="r1"))
    for n in range(4):
        office.reply(reply(f"Voir la pièce jointe numéro {n}.", mid=f"u{n}"),
                     answers_per_day=2)
    forwarded = [r for r in office.rows(store.OutboxRow) if r.kind == "staff_question"]
    assert len(forwarded) == 2
    review = json.loads(office.mailer("review", "--json", "--now", NOW).output)
    assert len(review["unplaced"]) == 2 and all(
        "not forwarded" in u["why"] for u in review["unplaced"])
