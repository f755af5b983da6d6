"""Tests of mailer.understand: one inbound email in, one Intent out, for the cases users send."""

from __future__ import annotations

import email
import email.policy
import json
import time
from dataclasses import replace
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest
from icalendar import Calendar, Event, vCalAddress

from mailer.domain import Intent, IntentKind, make_message_id
from mailer.schedule import Catalog, load_catalog
from mailer.understand import fold, parse_message, read_participants, understand

NOW = datetime(2020, 7, 1, 12, 0, tzinfo=UTC)
INBOX = "webinars@example.org"
AWA = "Awa Diop <awa.diop@justice.gouv.sn>"

SCHEDULE = """
[series]
id = "cyber-2020"
title = { en = "Cybercrime and criminal justice in cyberspace", fr = "Cybercrime et justice \
pénale dans le cyberespace" }
max_per_country = 4

[[event]]
id = "asia-en"
title = { en = "Webinar with Asia-Pacific countries" }
start = 2020-06-24T07:00:00Z
end = 2020-06-24T08:45:00Z
language = "en"
invited = ["PH", "LK", "TO"]

[[event]]
id = "africa-en"
title = { en = "Webinar with African countries" }
start = 2020-07-07T08:00:00Z
end = 2020-07-07T09:45:00Z
language = "en"
invited = ["GH", "NG", "KE"]

[[event]]
id = "africa-fr"
title = { fr = "Webinaire avec les pays de l'Afrique" }
start = 2020-07-09T08:00:00Z
end = 2020-07-09T09:45:00Z
language = "fr"
invited = ["SN", "CI", "MA"]

[[event]]
id = "lac-en"
title = { en = "Webinar with Latin America and the Caribbean" }
start = 2020-07-20T15:00:00Z
end = 2020-07-20T16:45:00Z
language = "en"
invited = ["JM", "TT", "DO"]

[[event]]
id = "lac-es"
title = { es = "Webinario con América Latina y el Caribe" }
start = 2020-07-22T15:00:00Z
end = 2020-07-22T16:45:00Z
language = "es"
invited = ["CL", "CR", "DO"]
"""

# The invitation as it comes back quoted under replies: its form labels must not be read.
FORM_EN = """Dear colleague,

You are invited to the webinar with African countries on 7 July 2020.
To register, reply to this message with:

Name:
Position:
Organisation:
Country:
Email:
"""
FORM_FR = """Madame, Monsieur,

Vous êtes invité(e) au webinaire du 9 juillet 2020.
Pour vous inscrire, répondez avec :

Nom et prénom :
Fonction :
Organisme :
Pays :
Courriel :
"""
FORM_ES = """Estimado/a colega:

Queda invitado/a al webinario del 22 de julio de 2020.
Para inscribirse, responda con:

Nombre y apellidos:
Cargo:
Institución:
País:
Correo electrónico:
"""


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    folder: Path = tmp_path_factory.mktemp("schedules")
    (folder / "cyber.toml").write_text(SCHEDULE, encoding="utf-8")
    return load_catalog(folder)


def mail(body: str, *, sender: str = AWA, subject: str = "Re: Invitation", to: str = INBOX,
         headers: dict[str, str] | None = None, html: str | None = None) -> bytes:
    """A reply as bytes, like the inbox hands it over."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = "<reply-1@mail.example.net>"
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    return msg.as_bytes()


def outlook(reply: str, form: str = FORM_EN) -> str:
    return (f"{reply}\n\n________________________________\n"
            "From: Webinars <webinars@example.org>\nSent: Monday, 29 June 2020 10:00\n"
            "To: Awa Diop <awa.diop@justice.gouv.sn>\nSubject: Invitation\n\n" + form)


def outlook_fr(reply: str, form: str = FORM_FR) -> str:
    return (f"{reply}\n\n________________________________\n"
            "De : Webinaires <webinars@example.org>\nEnvoyé : lundi 29 juin 2020 10:00\n"
            "À : Awa Diop <awa.diop@justice.gouv.sn>\nObjet : Invitation\n\n" + form)


def gmail(reply: str, form: str = FORM_EN, attribution: str = "") -> str:
    quoted = "\n".join("> " + line for line in form.splitlines())
    attribution = attribution or ("On Mon, 29 Jun 2020 at 10:00, Webinars "
                                  "<webinars@example.org> wrote:")
    return f"{reply}\n\n{attribution}\n\n{quoted}\n"


def iphone(reply: str, form: str = FORM_EN) -> str:
    quoted = "\n".join("> " + line for line in form.splitlines())
    return (f"{reply}\n\nSent from my iPhone\n\nOn 29 Jun 2020, at 10:00, Webinars "
            f"<webinars@example.org> wrote:\n\n{quoted}\n")


def read(raw: bytes, catalog: Catalog, now: datetime = NOW) -> Intent:
    return understand(raw, catalog, now=now, inbox_address=INBOX)


# --------------------------------------------------------------------------- registrations


def test_english_outlook_registration(catalog: Catalog) -> None:
    """An Outlook reply with the form filled reads one participant, not the quoted labels."""
    body = outlook("Dear organisers,\n\nName: Kwame Mensah\nPosition: State Attorney\n"
                   "Organisation: Ministry of Justice\nCountry: Ghana\n"
                   "Email: kwame.mensah@mojag.gov.gh\n\nBest regards")
    intent = read(mail(body, sender="Kwame <kwame.mensah@mojag.gov.gh>",
                       subject="RE: Invitation [africa-en]"), catalog)
    assert intent.kind is IntentKind.REGISTRATION
    assert intent.event_id == "africa-en"
    assert intent.language == "en"
    [p] = intent.participants
    assert (p.name, p.position, p.organisation, p.country, p.email) == (
        "Kwame Mensah", "State Attorney", "Ministry of Justice", "GH",
        "kwame.mensah@mojag.gov.gh")


def test_french_gmail_registration_with_french_spacing(catalog: Catalog) -> None:
    """French labels with a (no-break) space before the colon are read; accents kept in values."""
    body = gmail("Bonjour,\n\nNom et prénom\u00a0: Awa Diop\nFonction : Magistrate\n"
                 "Organisme\u202f: Ministère de la Justice\nPays : Sénégal\n"
                 "Courriel : awa.diop@justice.gouv.sn\n\nCordialement",
                 FORM_FR, "Le lun. 29 juin 2020 à 10:00, Webinaires <webinars@example.org> "
                          "a écrit :")
    intent = read(mail(body, to="webinars+africa-fr@example.org"), catalog)
    assert intent.kind is IntentKind.REGISTRATION
    assert intent.event_id == "africa-fr"
    assert intent.language == "fr"
    [p] = intent.participants
    assert (p.name, p.organisation, p.position, p.country, p.country_text) == (
        "Awa Diop", "Ministère de la Justice", "Magistrate", "SN", "Sénégal")


def test_spanish_iphone_registration(catalog: Catalog) -> None:
    """A Spanish iPhone reply with "Nombre y apellido(s)" and "País" registers the sender."""
    body = iphone("Buenos días:\n\nNombre y apellido(s): María José Pérez\nCargo: Fiscal\n"
                  "Institución: Fiscalía Nacional\nPais: Chile\n\nSaludos cordiales", FORM_ES)
    intent = read(mail(body, sender="María <mjperez@fiscalia.cl>",
                       to="webinars+lac-es@example.org"), catalog)
    assert intent.kind is IntentKind.REGISTRATION
    assert intent.language == "es"
    [p] = intent.participants
    assert (p.name, p.position, p.organisation, p.country, p.email) == (
        "María José Pérez", "Fiscal", "Fiscalía Nacional", "CL", "mjperez@fiscalia.cl")


def test_outlook_bold_labels_and_other_separators(catalog: Catalog) -> None:
    """Markdown/Outlook bold labels and "-", tab and "=" separators are all read."""
    body = ("*Full name:* Kofi Boateng\n**Title** - Senior Prosecutor\n"
            "Institution\tOffice of the Attorney General\nCountry = Ghana\n"
            "E-mail: kofi.boateng@ag.gov.gh<mailto:kofi.boateng@ag.gov.gh>\n")
    intent = read(mail(body, sender="kofi.boateng@ag.gov.gh"), catalog)
    [p] = intent.participants
    assert (p.name, p.position, p.organisation, p.country, p.email) == (
        "Kofi Boateng", "Senior Prosecutor", "Office of the Attorney General", "GH",
        "kofi.boateng@ag.gov.gh")


def test_quoted_form_alone_is_not_a_registration(catalog: Catalog) -> None:
    """A reply that only says thanks above the quoted form gives no participant (and is
    thanks, not answered)."""
    intent = read(mail(outlook("Thank you, noted."), to="webinars+africa-en@example.org"),
                  catalog)
    assert intent.kind is IntentKind.THANKS
    assert intent.participants == ()


def test_prenom_and_nom_make_one_name(catalog: Catalog) -> None:
    """Separate "Prénom" and "Nom" fields are joined, first name first."""
    body = "Prénom : Awa\nNom : DIOP\nPays : Sénégal\n"
    [p] = read(mail(body), catalog).participants
    assert p.name == "Awa DIOP"
    assert p.country == "SN"


def test_registration_of_sender_without_email_field(catalog: Catalog) -> None:
    """A one-person form without an email field registers the From address."""
    intent = read(mail("Name: Awa  Diop\nCountry: Senegal\n",
                       headers={"Reply-To": "someone.else@example.com"}), catalog)
    [p] = intent.participants
    assert p.email == "awa.diop@justice.gouv.sn"
    assert p.name == "Awa Diop"
    assert intent.sender == "awa.diop@justice.gouv.sn"


def test_focal_point_registers_someone_else(catalog: Catalog) -> None:
    """When the form names another address, that address is the participant, not the sender."""
    body = "Name: Ibrahima Fall\nCountry: Senegal\nEmail: i.fall@interieur.gouv.sn\n"
    intent = read(mail(body, sender="focal.point@diplomatie.gouv.sn"), catalog)
    [p] = intent.participants
    assert p.email == "i.fall@interieur.gouv.sn"
    assert intent.sender == "focal.point@diplomatie.gouv.sn"


def test_delegation_of_four_as_blocks(catalog: Catalog) -> None:
    """Four labelled blocks give four participants with the one country given for the reply."""
    body = ("Dear colleagues,\n\nPlease find below our delegation.\n\nCountry: Kenya\n\n"
            "1. Name: Jane Wanjiku\nPosition: State Counsel\nEmail: jane.w@ag.go.ke\n\n"
            "2. Name: Peter Otieno\nPosition: Police Inspector\nEmail: p.otieno@police.go.ke\n\n"
            "Participant 3\nName: Mary Achieng\nEmail: m.achieng@mfa.go.ke\n\n"
            "Participant 4\nName: John Kamau\nPosition: Magistrate\n\nRegards")
    intent = read(mail(gmail(body), sender="focal@mfa.go.ke"), catalog)
    assert intent.kind is IntentKind.REGISTRATION
    names = [p.name for p in intent.participants]
    assert names == ["Jane Wanjiku", "Peter Otieno", "Mary Achieng", "John Kamau"]
    assert {p.country for p in intent.participants} == {"KE"}
    assert [p.email for p in intent.participants] == [
        "jane.w@ag.go.ke", "p.otieno@police.go.ke", "m.achieng@mfa.go.ke", ""]
    assert "missing email for participant 4" in intent.reason


def test_delegation_of_four_as_list(catalog: Catalog) -> None:
    """Four "name, position, organisation, email" lines give four participants."""
    body = ("Bonjour,\n\nVeuillez inscrire les personnes suivantes :\n\nPays : Sénégal\n\n"
            "Awa Diop, Magistrate, Ministère de la Justice, awa.diop@justice.gouv.sn\n"
            "Moussa Ndiaye, Commissaire, Police nationale, m.ndiaye@police.sn\n"
            "- Fatou Sarr, Procureure, Parquet de Dakar, fatou.sarr@justice.gouv.sn\n"
            "- Cheikh Ba, Conseiller, Ministère des Affaires étrangères, cheikh.ba@diplomatie.sn\n")
    intent = read(mail(body, sender="focal@diplomatie.sn"), catalog)
    assert intent.kind is IntentKind.REGISTRATION
    assert len(intent.participants) == 4
    first = intent.participants[0]
    assert (first.name, first.position, first.organisation, first.email) == (
        "Awa Diop", "Magistrate", "Ministère de la Justice", "awa.diop@justice.gouv.sn")
    assert intent.participants[3].organisation == "Ministère des Affaires étrangères"
    assert {p.country for p in intent.participants} == {"SN"}
    assert intent.language == "fr"


def test_spanish_delegation_blocks(catalog: Catalog) -> None:
    """Spanish blocks with "Nombre", "Puesto", "Ministerio" and "Correo electrónico" are read."""
    body = ("Estimados:\n\nNombre: Ana Soto\nPuesto: Fiscal adjunta\nMinisterio: Ministerio "
            "Público\nPaís: Costa Rica\nCorreo electrónico: ana.soto@mp.go.cr\n\n"
            "Nombre: Luis Mora\nPuesto: Juez\nOrganización: Poder Judicial\nPaís: Costa Rica\n"
            "Correo: luis.mora@poder-judicial.go.cr\n\nSaludos")
    intent = read(mail(body, sender="focal@rree.go.cr"), catalog)
    assert intent.language == "es"
    assert [(p.name, p.position, p.organisation, p.country, p.email)
            for p in intent.participants] == [
        ("Ana Soto", "Fiscal adjunta", "Ministerio Público", "CR", "ana.soto@mp.go.cr"),
        ("Luis Mora", "Juez", "Poder Judicial", "CR", "luis.mora@poder-judicial.go.cr")]


def test_delegation_as_table_with_header(catalog: Catalog) -> None:
    """A table with a header row maps each column to its field, countries per row."""
    body = ("| Name | Position | Country | Email |\n|---|---|---|---|\n"
            "| Ana Soto | Fiscal | Costa Rica | ana.soto@mp.go.cr |\n"
            "| Luis Mora | Juez | Costa Rica | luis.mora@poder-judicial.go.cr |\n")
    intent = read(mail(body, sender="focal@rree.go.cr"), catalog)
    assert [(p.name, p.position, p.country, p.email) for p in intent.participants] == [
        ("Ana Soto", "Fiscal", "CR", "ana.soto@mp.go.cr"),
        ("Luis Mora", "Juez", "CR", "luis.mora@poder-judicial.go.cr")]


def test_missing_country_is_none_and_said(catalog: Catalog) -> None:
    """A registration without a country, from an address that says none, has country None
    and the reason names it."""
    intent = read(mail("Name: Awa Diop\nPosition: Magistrate\n",
                       sender="Awa Diop <awa.diop@example.com>"), catalog)
    [p] = intent.participants
    assert p.country is None
    assert "missing country" in intent.reason


def test_missing_country_is_guessed_from_a_government_address(catalog: Catalog) -> None:
    """Without a country in the reply, a government address (gouv.sn) gives it, marked as
    inferred so the acknowledgement can show it."""
    intent = read(mail("Name: Awa Diop\nPosition: Magistrate\n"), catalog)
    [p] = intent.participants
    assert (p.country, p.inferred) == ("SN", ("country",))
    assert "country inferred" in intent.reason


def test_country_typo_is_resolved(catalog: Catalog) -> None:
    """A misspelt country still resolves, and what was written is kept."""
    [p] = read(mail("Nom : Awa Diop\nPays : Senegall\n"), catalog).participants
    assert p.country == "SN"
    assert p.country_text == "Senegall"


def test_unknown_country_keeps_text(catalog: Catalog) -> None:
    """A country that cannot be resolved stays None with the written text kept."""
    intent = read(mail("Name: Awa Diop\nCountry: Atlantis\n"), catalog)
    [p] = intent.participants
    assert p.country is None and p.country_text == "Atlantis"
    assert "not recognised" in intent.reason


def test_register_sense_without_fields(catalog: Catalog) -> None:
    """ "I would like to register" alone registers the sender with the fields it lacks."""
    for text in ("I would like to register for the webinar.", "Je souhaite m'inscrire.",
                 "Quisiera inscribirme, gracias."):
        intent = read(mail(text, sender="awa.diop@example.com"), catalog)
        assert intent.kind is IntentKind.REGISTRATION, text
        [p] = intent.participants
        assert p.email == "awa.diop@example.com" and p.name == ""
        assert "missing name, country" in intent.reason
        guessed = read(mail(text), catalog)    # "Awa Diop <awa.diop@justice.gouv.sn>"
        [p] = guessed.participants
        assert (p.name, p.country, p.inferred) == ("Awa Diop", "SN", ("name", "country"))


def test_registration_with_certificate(catalog: Catalog) -> None:
    """A registration that also asks for a certificate sets the certificate flag."""
    intent = read(mail("Name: Awa Diop\nCountry: Senegal\n\nI would like a certificate."),
                  catalog)
    assert intent.kind is IntentKind.REGISTRATION
    assert intent.certificate is True


def test_name_with_address_is_rejected_and_whitespace_collapsed(catalog: Catalog) -> None:
    """A "name" holding an address is not a name; runs of spaces collapse."""
    [rec] = read_participants("Name: awa.diop@justice.gouv.sn\nCountry:   Senegal  \n")
    assert rec.name == ""
    assert rec.country == "Senegal"


def test_signature_line_is_not_a_participant(catalog: Catalog) -> None:
    """One "Name, Ministry, Country" line under a question is a signature, not a form."""
    intent = read(mail("Will the webinar be recorded?\n\nAwa Diop, Ministry of Justice, Senegal"),
                  catalog)
    assert intent.kind is IntentKind.QUESTION


def test_html_only_outlook_reply(catalog: Catalog) -> None:
    """An HTML-only Outlook reply with bold labels is read; its quoted form is not."""
    html = ("<html><body><p><b>Name:</b> Awa Diop<br><b>Country:</b> Senegal<br>"
            "<b>Position:</b> Judge</p><div id=\"divRplyFwdMsg\"><hr><b>From:</b> Webinars "
            "&lt;webinars@example.org&gt;<br><b>Sent:</b> Monday, 29 June 2020<br>"
            "<b>Subject:</b> Invitation</div><div>Name:<br>Country:<br>Email:</div>"
            "</body></html>")
    msg = EmailMessage()
    msg["From"] = AWA
    msg["To"] = INBOX
    msg["Subject"] = "RE: Invitation"
    msg.set_content(html, subtype="html")
    intent = read(msg.as_bytes(), catalog)
    assert [(p.name, p.country, p.position) for p in intent.participants] == [
        ("Awa Diop", "SN", "Judge")]


def test_numbered_participant_lines(catalog: Catalog) -> None:
    """ "Participant 1: <name>" lines are one participant each, sharing the reply's country."""
    intent = read(mail("Participant 1: Awa Diop\nParticipant 2: Moussa Ndiaye\n"
                       "Country: Senegal"), catalog)
    assert [(p.name, p.email, p.country) for p in intent.participants] == [
        ("Awa Diop", "", "SN"), ("Moussa Ndiaye", "", "SN")]


def test_name_and_address_lines(catalog: Catalog) -> None:
    """ "Name <address>" lines after a request to register are participants."""
    intent = read(mail("Please register:\nAwa Diop <awa@justice.gouv.sn>\n"
                       "Moussa Ndiaye <m.ndiaye@police.sn>\nCountry: Senegal"), catalog)
    assert [(p.name, p.email) for p in intent.participants] == [
        ("Awa Diop", "awa@justice.gouv.sn"), ("Moussa Ndiaye", "m.ndiaye@police.sn")]


# --------------------------------------------------------------------------- other intents


@pytest.mark.parametrize(("text", "language"), [
    ("Please cancel my registration, I am travelling.", "en"),
    ("Unfortunately I can no longer attend the webinar.", "en"),
    ("Please unsubscribe me from the webinar.", "en"),
    ("Je ne pourrai pas participer au webinaire, désolée.", "fr"),
    ("Veuillez annuler mon inscription. Merci.", "fr"),
    ("Je me désinscris du webinaire.", "fr"),
    ("Cancelo mi inscripción, gracias.", "es"),
    ("Lamentablemente no podré asistir.", "es"),
    ("Por favor anule mi registro.", "es"),
    # The ways people decline that were read as nothing (a registration form came back):
    ("Suite à un empêchement, je ne pourrai malheureusement pas participer.", "fr"),
    ("Je ne pourrai finalement pas y assister.", "fr"),
    ("Je ne serai pas en mesure de participer au webinaire.", "fr"),
    ("Il ne me sera malheureusement pas possible d'y assister.", "fr"),
    ("Je suis au regret de ne pouvoir participer.", "fr"),
    ("Je me désiste, merci.", "fr"),
    ("I am no longer available on that date.", "en"),
    ("I must withdraw, with apologies.", "en"),
    ("No me será posible participar en el webinario.", "es"),
])
def test_cancellation(catalog: Catalog, text: str, language: str) -> None:
    """Cancellations in the three languages are read as such, in their language."""
    intent = read(mail(iphone(text), to="webinars+africa-fr@example.org"), catalog)
    assert intent.kind is IntentKind.CANCELLATION
    assert intent.language == language
    assert [p.email for p in intent.participants] == ["awa.diop@justice.gouv.sn"]


@pytest.mark.parametrize("text", [
    "I will not cancel my registration, but will the session be recorded?",
    "Je ne veux pas annuler mon inscription : le lien sera-t-il envoyé ?",
    "No quiero cancelar mi inscripción, ¿habrá grabación?",
    # Not being free at some hour is not declining the session.
    "Will the slides be shared? I am not available before 10:00 anyway.",
    "Je ne serai pas disponible avant 10h : le lien sera-t-il envoyé ?",
    "Il ne me sera pas possible d'envoyer les documents avant lundi, est-ce grave ?",
])
def test_negated_cancellation_is_not_a_cancellation(catalog: Catalog, text: str) -> None:
    """ "I will not cancel" keeps its meaning in each language: not a cancellation."""
    assert read(mail(text), catalog).kind is IntentKind.QUESTION


def test_no_then_cancel_in_next_clause_cancels(catalog: Catalog) -> None:
    """A negation in an earlier clause does not cancel the cancellation."""
    intent = read(mail("No, please cancel my registration."), catalog)
    assert intent.kind is IntentKind.CANCELLATION


@pytest.mark.parametrize(("text", "language"), [
    ("Could I get a certificate of participation?", "en"),
    ("Pourriez-vous m'envoyer un certificat de participation ?", "fr"),
    ("¿Podrían enviarme el certificado?", "es"),
])
def test_certificate_request(catalog: Catalog, text: str, language: str) -> None:
    """Certificate requests in the three languages are certificate requests of the sender."""
    intent = read(mail(gmail(text), to="webinars+africa-en@example.org"), catalog)
    assert intent.kind is IntentKind.CERTIFICATE_REQUEST
    assert intent.certificate is True
    assert intent.language == language


@pytest.mark.parametrize(("text", "language"), [
    ("Will the webinar be recorded?", "en"),
    ("Quel est le lien ?", "fr"),
    ("¿Habrá interpretación?", "es"),
])
def test_question(catalog: Catalog, text: str, language: str) -> None:
    """Anything else asked is a question for staff, in the sender's language."""
    intent = read(mail(outlook(text), to="webinars+lac-en@example.org"), catalog)
    assert intent.kind is IntentKind.QUESTION
    assert intent.language == language
    assert intent.text == text


def test_list_footer_is_not_a_cancellation(catalog: Catalog) -> None:
    """A mailing-list "To unsubscribe from this list" footer does not cancel a registration."""
    intent = read(mail("Name: Kofi Boateng\nCountry: Ghana\n\nTo unsubscribe from this list, "
                       "click here."), catalog)
    assert intent.kind is IntentKind.REGISTRATION


def test_client_replies_keep_only_what_was_written(catalog: Catalog, corpus: Path) -> None:
    """For real client replies (Gmail, Outlook, iPhone...), only the text above the quote counts."""
    for path in sorted((corpus / "client-replies").glob("*.eml")):
        intent = read(path.read_bytes(), catalog)
        assert (intent.kind, intent.text) == (IntentKind.UNKNOWN, "Hello"), path.name


def test_empty_reply_is_unknown(catalog: Catalog) -> None:
    """A reply with nothing above the quote is unknown, with the event's language."""
    intent = read(mail(gmail("", FORM_FR), to="webinars+africa-fr@example.org"), catalog)
    assert intent.kind is IntentKind.UNKNOWN
    assert intent.language == "fr"
    assert intent.reason == "empty reply"


# --------------------------------------------------------------------------- calendar


def calendar_reply(partstat: str, uid: str, attendee: str = "awa.diop@justice.gouv.sn",
                   subject: str = "Accepted: Webinar") -> bytes:
    cal = Calendar()
    cal.add("prodid", "-//Microsoft Corporation//Outlook 16.0 MIMEDIR//EN")
    cal.add("version", "2.0")
    cal.add("method", "REPLY")
    event = Event()
    event.add("uid", uid)
    event.add("dtstamp", datetime(2020, 7, 1, 9, 0, tzinfo=UTC))
    event.add("dtstart", datetime(2020, 7, 9, 8, 0, tzinfo=UTC))
    who = vCalAddress(f"mailto:{attendee}")
    who.params["PARTSTAT"] = partstat
    event.add("attendee", who)
    cal.add_component(event)
    msg = EmailMessage()
    msg["From"] = AWA
    msg["To"] = INBOX
    msg["Subject"] = subject
    msg["Message-ID"] = "<cal-1@mail.example.net>"
    msg.set_content("")
    msg.add_alternative(cal.to_ical().decode(), subtype="calendar", params={"method": "REPLY"})
    return msg.as_bytes()


def test_calendar_reply_accepted(catalog: Catalog) -> None:
    """An iCalendar REPLY with PARTSTAT=ACCEPTED names its event through our UID."""
    raw = calendar_reply("ACCEPTED", "africa-fr.0123456789abcdef@example.org")
    intent = read(raw, catalog)
    assert intent.kind is IntentKind.CALENDAR_REPLY
    assert intent.partstat == "ACCEPTED"
    assert intent.event_id == "africa-fr"
    assert intent.language == "fr"      # nothing written: the event's language
    assert intent.to_json()["partstat"] == "ACCEPTED"


def test_calendar_reply_declined(catalog: Catalog) -> None:
    """A DECLINED reply carries the attendee as participant, for the cancellation rules."""
    raw = calendar_reply("DECLINED", "lac-es.fedcba9876543210@example.org",
                         subject="Rechazado: Webinario")
    intent = read(raw, catalog)
    assert (intent.kind, intent.partstat, intent.event_id) == (
        IntentKind.CALENDAR_REPLY, "DECLINED", "lac-es")
    assert [p.email for p in intent.participants] == ["awa.diop@justice.gouv.sn"]


@pytest.mark.parametrize(("subject", "partstat"), [
    ("Accepted: Webinar with African countries [africa-en]", "ACCEPTED"),
    ("Accepté : Webinaire avec les pays de l'Afrique [africa-fr]", "ACCEPTED"),
    ("Aceptado: Webinario con América Latina y el Caribe [lac-es]", "ACCEPTED"),
    ("Tentative: Webinar [africa-en]", "TENTATIVE"),
    ("Refusé : Webinaire [africa-fr]", "DECLINED"),
])
def test_calendar_reply_from_subject(catalog: Catalog, subject: str, partstat: str) -> None:
    """Outlook/Gmail answer subjects are calendar replies even without an .ics part."""
    intent = read(mail("", subject=subject), catalog)
    assert intent.kind is IntentKind.CALENDAR_REPLY
    assert intent.partstat == partstat
    assert intent.event_id == subject.rsplit("[", 1)[1].rstrip("]")


# --------------------------------------------------------------------------- automatic mail


def test_auto_reply_passes_through(catalog: Catalog) -> None:
    """An out-of-office answer is an auto_reply, never a registration."""
    raw = mail("I am out of the office until 15 July.\nName: Awa Diop\nCountry: Senegal",
               subject="Automatic reply: Invitation",
               headers={"Auto-Submitted": "auto-replied"})
    intent = read(raw, catalog)
    assert intent.kind is IntentKind.AUTO_REPLY
    assert intent.participants == ()
    assert not intent.answerable


def test_bounce_passes_through(catalog: Catalog) -> None:
    """A delivery status notification is a bounce with the failed address."""
    raw = (b"From: Mail Delivery System <MAILER-DAEMON@mail.example.org>\r\n"
           b"To: webinars@example.org\r\nSubject: Undelivered Mail Returned to Sender\r\n"
           b"Message-ID: <dsn-1@mail.example.org>\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n"
           b"\r\n--B\r\nContent-Type: text/plain\r\n\r\n"
           b"Your message could not be delivered.\r\n"
           b"--B\r\nContent-Type: message/delivery-status\r\n\r\n"
           b"Reporting-MTA: dns; mail.example.org\r\n\r\n"
           b"Final-Recipient: rfc822; gone@example.net\r\nAction: failed\r\n"
           b"Status: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 User unknown\r\n"
           b"\r\n--B--\r\n")
    intent = read(raw, catalog)
    assert intent.kind is IntentKind.BOUNCE
    assert intent.bounced == ("gone@example.net",)
    assert intent.bounce_temporary is False
    assert not intent.answerable


def test_corpus_bounces_are_bounces(catalog: Catalog, corpus: Path) -> None:
    """Real non-delivery reports from the shared corpus are never read as a request."""
    requests = {IntentKind.REGISTRATION, IntentKind.CANCELLATION, IntentKind.QUESTION,
                IntentKind.CERTIFICATE_REQUEST, IntentKind.CALENDAR_REPLY}
    kinds = {f.name: read(f.read_bytes(), catalog).kind
             for f in sorted((corpus / "bounces").glob("*.txt"))}
    assert len(kinds) > 100
    assert not {name: k for name, k in kinds.items() if k in requests}
    assert sum(k is IntentKind.BOUNCE for k in kinds.values()) > 100


# --------------------------------------------------------------------------- the event


def test_event_from_plus_tag_needs_existing_event(catalog: Catalog) -> None:
    """A plus-tag names the event only when that event exists."""
    assert read(mail("Name: A B\nCountry: Ghana", to="webinars+africa-en@example.org"),
                catalog).event_id == "africa-en"
    unknown = read(mail("Name: A B\nCountry: Ghana", to="webinars+nope@example.org"), catalog)
    assert unknown.event_id is None


def test_event_from_cc_and_delivered_to(catalog: Catalog) -> None:
    """The plus-tag is also found in Cc and Delivered-To, in any case."""
    raw = mail("Name: A B\nCountry: Chile", to="someone@example.net",
               headers={"Delivered-To": "Webinars+LAC-ES@Example.org"})
    assert read(raw, catalog).event_id == "lac-es"


def test_event_from_subject_tag(catalog: Catalog) -> None:
    """A "[event-id]" tag in the subject names the event."""
    raw = mail("Name: A B\nCountry: Chile", subject="Re: Invitación [lac-es]")
    assert read(raw, catalog).event_id == "lac-es"


def test_event_from_in_reply_to(catalog: Catalog) -> None:
    """A reply to one of our messages names that message's event; references are kept."""
    ours = make_message_id("ack|africa-fr|0|x", "africa-fr", "example.org")
    raw = mail("Name: A B\nPays : Sénégal", headers={"In-Reply-To": ours,
                                                    "References": f"<other@x> {ours}"})
    intent = read(raw, catalog)
    assert intent.event_id == "africa-fr"
    assert intent.references == (ours, "<other@x>")


@pytest.mark.parametrize(("text", "event_id"), [
    ("I would like to register for the French session. Name: A B", "africa-fr"),
    ("Je souhaite m'inscrire au webinaire du 9 juillet.", "africa-fr"),
    ("Quisiera inscribirme al webinario del 22 de julio.", "lac-es"),
    ("Please register me for the 20 July webinar on Latin America.", "lac-en"),
])
def test_event_named_in_text(catalog: Catalog, text: str, event_id: str) -> None:
    """A date, region or session language in the text picks the one matching open event."""
    assert read(mail(text), catalog).event_id == event_id


def test_ambiguous_event_gives_candidates(catalog: Catalog) -> None:
    """A region shared by two open events gives no event and both as candidates, in order."""
    intent = read(mail("I would like to register for the Africa webinar."), catalog)
    assert intent.event_id is None
    assert intent.candidates == ("africa-en", "africa-fr")
    assert "ambiguous event" in intent.reason


def test_region_in_any_language_names_both_sessions(catalog: Catalog) -> None:
    """ "Caribbean" names the English and the Spanish session alike: ambiguous."""
    intent = read(mail("I would like to register for the Caribbean webinar."), catalog)
    assert intent.candidates == ("lac-en", "lac-es")


def test_event_not_named_lists_open_events(catalog: Catalog) -> None:
    """With several open events and no hint, every open event is a candidate."""
    intent = read(mail("Name: Awa Diop\nCountry: Senegal"), catalog)
    assert intent.event_id is None
    assert intent.candidates == ("africa-en", "africa-fr", "lac-en", "lac-es")


def test_ended_events_are_not_candidates(catalog: Catalog) -> None:
    """Only events not ended at ``now`` are considered; one open event is the event."""
    late = datetime(2020, 7, 21, 12, 0, tzinfo=UTC)
    assert read(mail("Name: A B\nCountry: Chile"), catalog, now=late).event_id == "lac-es"
    intent = read(mail("Please register me for the Asia-Pacific webinar."), catalog)
    assert intent.event_id is None and "asia-en" not in intent.candidates


# --------------------------------------------------------------------------- hostile mail


def test_malformed_bytes_are_unknown(catalog: Catalog) -> None:
    """Garbage bytes give an unknown intent with a digest Message-ID, never an exception."""
    raw = b"\xff\xfe\x00garbage\r\n\r\n\x80\x81 Content-Type: multipart/mixed; boundary="
    intent = read(raw, catalog)
    assert intent.kind is IntentKind.UNKNOWN
    assert intent.message_id.endswith("@no-message-id>")
    assert read(raw, catalog).message_id == intent.message_id


def test_hostile_headers(catalog: Catalog) -> None:
    """Encoded words, CR/LF in names and a broken charset never crash or leak into values."""
    raw = (b"From: =?utf-8?b?QXdhIERpb3AKQmNjOiBldmlsQHguY29t?= <awa@x.sn>\r\n"
           b"To: webinars@example.org\r\n"
           b"Subject: =?x-unknown?q?=FF=FE?= [africa-fr]\r\n"
           b"Content-Type: text/plain; charset=x-bogus\r\n\r\n"
           b"Nom : Awa\r\nDiop\r\nPays : S\xe9n\xe9gal\r\n")
    intent = read(raw, catalog)
    assert intent.sender == "awa@x.sn"
    assert intent.message_id.endswith("@no-message-id>")
    assert all("\n" not in p.name and "\r" not in p.name for p in intent.participants)


def test_huge_body_stays_fast(catalog: Catalog) -> None:
    """A 20 MB body is read in bounded time and the kept text is capped."""
    body = "Name: Awa Diop\nCountry: Senegal\n" + ("lorem ipsum dolor, sit amet " * 750_000)
    raw = mail(body)
    started = time.monotonic()
    intent = read(raw, catalog)
    assert time.monotonic() - started < 10
    assert len(intent.text) <= 5_000
    assert intent.participants[0].country == "SN"


# 64 KB of one character, as lines or as one run, where a regular expression that backtracks
# would read the rest of the text (or of the line) again at every position: "^\W*cancel" at
# every line start of "!" lines (26 s of CPU), "[.!?]+(?=\s)" at every full stop of a run
# (28 s), a quoted header's label over lines of 300 stars (13 ms a line, 3 s).
ONE_CHARACTER = {"lines of one mark": "!\n" * 32_768, "a run of full stops": "." * 65_536,
                 "lines of stars": ("*" * 300 + "\n") * 217}


@pytest.mark.parametrize("body", ONE_CHARACTER.values(), ids=ONE_CHARACTER)
def test_64_kb_of_one_character_costs_what_64_kb_of_words_cost(catalog: Catalog,
                                                                body: str) -> None:
    """Reading such a body takes time of the order of reading as many bytes of ordinary
    words (measured against them, so a slow machine slows both): linear in its size."""
    words = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit.\n" * 1_200)[:len(body)]

    def cpu(text: str) -> float:
        started = time.process_time()
        read(mail(text), catalog)
        return time.process_time() - started

    baseline = cpu(words)
    assert cpu(body) < 10 * baseline + 0.5


def test_fold_removes_accents_and_case() -> None:
    """Folding makes "Ministère", "MINISTERE" and "ministere" the same word."""
    assert fold("MINISTÈRE d’État\u00a0:") == "ministere d'etat :"


# --------------------------------------------------------------------------- the output


def test_to_json_round_trip(catalog: Catalog) -> None:
    """``to_json`` gives DESIGN.md's shape and survives a JSON round trip."""
    body = ("Nom : Awa Diop\nFonction : Magistrate\nOrganisme : Ministère de la Justice\n"
            "Pays : Sénégal\nCourriel : awa.diop@justice.gouv.sn\n")
    intent = read(mail(body, to="webinars+africa-fr@example.org"), catalog)
    data = json.loads(json.dumps(intent.to_json(), ensure_ascii=False))
    assert data == {
        "intent": "registration", "event": "africa-fr", "language": "fr",
        "participants": [{"name": "Awa Diop", "email": "awa.diop@justice.gouv.sn",
                          "country": "SN", "organisation": "Ministère de la Justice",
                          "position": "Magistrate"}],
        "certificate": False, "bounced": [], "reason": "registration",
        "sender": "awa.diop@justice.gouv.sn", "message_id": "<reply-1@mail.example.net>"}


@pytest.mark.parametrize("word", ["CANCEL", "Annuler.", "cancelar"])
def test_the_cancel_keyword_our_messages_ask_for_cancels(catalog: Catalog, word: str) -> None:
    """The single word our templates tell people to reply with is read as a cancellation."""
    raw = mail(outlook(f"{word}\n\nRegards,\nAwa"), subject="Re: Confirmation [africa-fr]")
    assert read(raw, catalog).kind is IntentKind.CANCELLATION


# --- parsing: each header read once, exactly as policy.default reads it ---------------------

# Headers that policy.default decodes, unfolds or repairs: RFC 2047 words in several charsets,
# folded address lists, 8-bit bytes, a broken encoded word, a header without value.
AWKWARD_HEADERS = (
    b"From: =?iso-8859-1?q?Aminata_Tour=E9?= <Aminata.Toure@Justice.gouv.SN>\r\n"
    b"To: \"Secr\xc3\xa9tariat\" <webinars+africa-fr@example.org>,\r\n"
    b"\t=?utf-8?b?w4lxdWlwZQ==?= <team@example.org>\r\n"
    b"Cc: undisclosed-recipients:;\r\n"
    b"Subject: =?windows-1252?q?R=E9ponse_=96_inscription?=\r\n =?utf-8?q?_=C3=A9t=C3=A9?=\r\n"
    b"Message-ID:\r\n <folded.id@mail.example.sn>\r\n"
    b"In-Reply-To: <a@b> (comment)\r\n"
    b"References: <x@y>\r\n\t<z@w>\r\n"
    b"X-Broken: =?utf-8?q?unterminated\r\n"
    b"X-Empty:\r\n"
    b"Content-Type: multipart/alternative;\r\n boundary=\"=_b\"\r\n"
    b"\r\n--=_b\r\nContent-Type: text/plain; charset=\"ISO-8859-1\"\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\nNom : Aminata Tour=E9\r\n"
    b"Pays : S=E9n=E9gal\r\n--=_b--\r\n"
)


def test_parse_message_reads_every_header_as_policy_default_does() -> None:
    """Each header (decoded words, folding, 8-bit bytes, defects) equals policy.default's."""
    ours = parse_message(AWKWARD_HEADERS)
    theirs = email.message_from_bytes(AWKWARD_HEADERS, policy=email.policy.default)
    names = [name for name, _ in theirs.raw_items()]
    assert names == [name for name, _ in ours.raw_items()] and len(names) == 10
    for name in names:
        mine, reference = ours[name], theirs[name]
        # The registry makes a new class at each parse: compare what it is made of.
        assert type(mine).__bases__ == type(reference).__bases__, name
        assert str(mine) == str(reference), name
        assert [type(d) for d in mine.defects] == [type(d) for d in reference.defects], name
        assert getattr(mine, "addresses", None) == getattr(reference, "addresses", None), name
    assert str(ours["Subject"]) == "Réponse – inscription été"
    body = ours.get_body(("plain",))
    assert body is not None and body.get_content() == "Nom : Aminata Touré\r\nPays : Sénégal"


def test_a_header_read_twice_is_parsed_once() -> None:
    """Reading a header again returns the header already parsed, not a new parse."""
    msg = parse_message(AWKWARD_HEADERS)
    assert msg["From"] is msg["From"]
    assert msg.get_content_type() == "multipart/alternative"


def test_encoded_names_folded_headers_and_latin1_bodies_are_understood(catalog: Catalog) -> None:
    """An encoded From name, a folded To with the event's plus address and a Latin-1 body."""
    intent = understand(AWKWARD_HEADERS, catalog, now=NOW, inbox_address=INBOX)
    assert intent.kind is IntentKind.REGISTRATION
    assert intent.sender == "aminata.toure@justice.gouv.sn"
    assert intent.subject == "Réponse – inscription été"
    assert intent.message_id == "<folded.id@mail.example.sn>"
    assert intent.references == ("<a@b>", "<z@w>", "<x@y>")
    assert intent.event_id == "africa-fr"
    (person,) = intent.participants
    assert (person.name, person.country) == ("Aminata Touré", "SN")


def test_a_message_id_the_caller_knows_names_the_intent(catalog: Catalog) -> None:
    """The id the inbox already read names the intent; without it, the header does."""
    raw = mail("Name: Awa Diop\nCountry: Senegal\n")
    known = understand(raw, catalog, now=NOW, inbox_address=INBOX, message_id="<known@x>")
    read = understand(raw, catalog, now=NOW, inbox_address=INBOX)
    assert known.message_id == "<known@x>" and read.message_id == "<reply-1@mail.example.net>"
    assert known == replace(read, message_id="<known@x>")


def _boom(*_args: object, **_kwargs: object) -> None:
    raise ValueError("broken on purpose")


def test_a_message_that_cannot_be_read_is_quarantined_not_answered(
        catalog: Catalog, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading that fails gives the reason to quarantine, never an "unknown" to answer."""
    from mailer.understand import reading
    monkeypatch.setattr(reading, "body_text", _boom)
    raw = mail("Please register me.\nName: Awa Diop\nCountry: Senegal\n")
    result = reading.read(raw, catalog, now=NOW, inbox_address=INBOX, max_bytes=10**6,
                          size=None, message_id="<m1@example.org>")
    assert isinstance(result, str) and "ValueError: broken on purpose" in result


def test_a_machines_mail_stays_unanswered_when_reading_it_fails_later(
        catalog: Catalog, monkeypatch: pytest.MonkeyPatch) -> None:
    """The automatic check comes first: an error after it cannot turn a bounce into mail
    to answer."""
    from mailer.understand import reading
    monkeypatch.setattr(reading, "event_from_headers", _boom)
    raw = mail("Your message could not be delivered.", sender="MAILER-DAEMON@mx.example.org",
               subject="Undelivered Mail Returned to Sender")
    result = reading.read(raw, catalog, now=NOW, inbox_address=INBOX, max_bytes=10**6,
                          size=None, message_id="<m2@example.org>")
    assert isinstance(result, Intent) and result.kind is IntentKind.BOUNCE
    assert not result.answerable
