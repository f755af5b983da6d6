"""Tests for telling bounces and auto-replies (never to be answered) from people's mail."""

from __future__ import annotations

import email
import email.policy
import json
from email.message import EmailMessage
from pathlib import Path

import pytest

from mailer.understand.automatic import Automatic, classify_automatic
from tests.conftest import CORPUS

BOUNCES = CORPUS / "bounces"
REPLIES = CORPUS / "client-replies"
EXPECTED = json.loads((BOUNCES / "expected.json").read_text(encoding="utf-8"))

# Files of the bounce corpus that are not bounces (flufl.bounce keeps them to prove that its
# detectors do not crash or misfire): a hotel's human reply, and a qmail auto-reply.
NOT_BOUNCES: dict[str, str | None] = {
    "groupwise_03.txt": None,
    "qmail_08.txt": "auto_reply",
}
# Addresses flufl.bounce finds beyond those of expected.json: the Return-Path of the bounced
# list message, quoted in the DSN's headers, which the corpus says carries no address to find.
EXTRA_FOUND = {"simple_42.txt": {"david...@gmail.com"}}


def _load(path: Path) -> EmailMessage:
    """A corpus file as an EmailMessage."""
    return email.message_from_bytes(path.read_bytes(), policy=email.policy.default)


def _parse(text: str) -> EmailMessage:
    """A literal message as an EmailMessage."""
    return email.message_from_string(text, policy=email.policy.default)


@pytest.mark.parametrize("path", sorted(BOUNCES.glob("*.txt")), ids=lambda p: p.name)
def test_every_corpus_bounce_is_never_answered(path: Path) -> None:
    """Every non-delivery report of the corpus is classified as a bounce."""
    result = classify_automatic(_load(path))
    expected_kind = NOT_BOUNCES.get(path.name, "bounce")
    assert (result.kind if result else None) == expected_kind, result


@pytest.mark.parametrize("name", sorted(n for n in EXPECTED if n not in NOT_BOUNCES))
def test_corpus_bounces_name_the_failed_addresses(name: str) -> None:
    """The addresses marked as bouncing, and whether only for now, are the corpus's."""
    result = classify_automatic(_load(BOUNCES / name))
    assert result is not None and result.kind == "bounce"
    wanted = {a.lower() for a in EXPECTED[name]["addresses"]} | EXTRA_FOUND.get(name, set())
    assert set(result.bounced) == wanted
    assert result.temporary == EXPECTED[name]["temporary"]


def test_expected_json_lists_only_existing_files() -> None:
    """expected.json names only files present in the corpus (so none is silently unchecked)."""
    assert set(EXPECTED) <= {p.name for p in BOUNCES.glob("*.txt")}


@pytest.mark.parametrize("path", sorted(REPLIES.glob("*.eml")), ids=lambda p: p.name)
def test_client_replies_are_not_automatic(path: Path) -> None:
    """Replies people wrote in real mail clients are neither bounces nor auto-replies."""
    assert classify_automatic(_load(path)) is None


OUTLOOK_OOF_FR = """\
Return-Path: <>
From: Awa Diop <awa.diop@justice.gouv.sn>
To: Webinaires <webinaires@example.org>
Subject: =?utf-8?q?R=C3=A9ponse_automatique=C2=A0=3A_Inscription_au_webinaire?=
Auto-Submitted: auto-generated
X-Auto-Response-Suppress: All
X-MS-Exchange-Inbox-Rules-Loop: awa.diop@justice.gouv.sn
Content-Type: text/plain; charset=utf-8

Je suis absente du bureau jusqu'au 10 juillet.
"""

GMAIL_VACATION = """\
From: Juan Pérez <juan.perez@gmail.com>
To: seminarios@example.org
Subject: Vacaciones
Auto-Submitted: auto-replied
Content-Type: text/plain; charset=utf-8

Estoy de vacaciones hasta el 20 de julio.
"""

LIST_POST = """\
From: Someone <someone@example.net>
To: cyber-list@lists.example.net
Subject: [cyber-list] Upcoming events
List-Id: Cyber discussion <cyber-list.lists.example.net>
List-Unsubscribe: <mailto:cyber-list-leave@lists.example.net>
List-Post: <mailto:cyber-list@lists.example.net>
Content-Type: text/plain

Anyone going to the webinar?
"""

BULK = """\
From: Newsletter <news@example.com>
To: webinars@example.org
Subject: Our monthly news
Precedence: bulk
Content-Type: text/plain

News.
"""


@pytest.mark.parametrize(("text", "reason"), [
    (OUTLOOK_OOF_FR, "Auto-Submitted: auto-generated"),
    (GMAIL_VACATION, "Auto-Submitted: auto-replied"),
    (LIST_POST, "mailing list (List-Id)"),
    (BULK, "Precedence: bulk"),
], ids=["outlook-oof-fr", "gmail-vacation", "list-post", "precedence-bulk"])
def test_literal_auto_replies(text: str, reason: str) -> None:
    """Out-of-office notices, vacation responders, list posts and bulk mail are auto-replies."""
    assert classify_automatic(_parse(text)) == Automatic("auto_reply", reason)


def _simple(subject: str, **headers: str) -> EmailMessage:
    """A plain message from a person with this subject and extra headers."""
    msg = EmailMessage()
    msg["From"] = "Ana Gómez <ana.gomez@cancilleria.gov.co>"
    msg["To"] = "seminarios@example.org"
    msg["Subject"] = subject
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content("Hola.")
    return msg


@pytest.mark.parametrize("subject", [
    "Out of Office: Webinar registration", "Automatic reply: Webinar registration",
    "Réponse automatique : Inscription", "Absence : Inscription au webinaire",
    "Respuesta automática: Inscripción", "Fuera de la oficina", "Autoreply: registration",
])
def test_out_of_office_subjects(subject: str) -> None:
    """Out-of-office subjects in English, French and Spanish mark an auto-reply."""
    result = classify_automatic(_simple(subject))
    assert result == Automatic("auto_reply", "out-of-office subject")


@pytest.mark.parametrize("subject", [
    "Resposta automática: Convite [africa-fr]", "Automatische Antwort: Einladung",
    "Abwesenheitsnotiz: Einladung", "Risposta automatica: Invito",
    "Automatisch antwoord: Uitnodiging", "Read: Invitation [africa-fr]",
    "Lu : Invitation [africa-fr]", "Leído: Invitación", "Lido: Convite", "Gelesen: Einladung",
    "Not read: Invitation", "Read receipt: Invitation", "Return Receipt (Confirm)",
])
def test_auto_replies_and_read_receipts_in_other_languages_by_their_subject(
        subject: str) -> None:
    """A vacation notice in Portuguese, German, Italian or Dutch, or a read receipt sent as
    plain text, from a server that writes no RFC 3834 header: automatic all the same."""
    result = classify_automatic(_simple(subject))
    assert result is not None and result.kind == "auto_reply"


@pytest.mark.parametrize("subject", [
    "Leitura recomendada para o webinar", "Afwezig op het webinar van 9 juli",
    "Read the attached form", "Re: Lu et approuvé",
])
def test_subjects_people_write_that_look_like_receipts_are_not_automatic(
        subject: str) -> None:
    """"Read" and its translations only as a receipt writes them: first, with a colon."""
    assert classify_automatic(_simple(subject)) is None


@pytest.mark.parametrize(("name", "value"), [
    ("X_Autoreply", "yes"), ("X_Autorespond", "yes"), ("Precedence", "junk"),
    ("Precedence", "list"), ("Precedence", "auto_reply"),
    ("List_Unsubscribe", "<mailto:leave@example.net>"), ("List_Subscribe", "<mailto:j@x.net>"),
    ("X_MLServer", "fml [fml 4.0.3 release]"), ("x_amz_sns_message_id", "ad6bdf42"),
])
def test_auto_reply_headers(name: str, value: str) -> None:
    """Each RFC 3834 or vendor auto-reply header alone marks an auto-reply."""
    result = classify_automatic(_simple("Hola", **{name: value}))
    assert result is not None and result.kind == "auto_reply"


def test_human_reply_with_auto_submitted_no_is_not_automatic() -> None:
    """A person's reply that says "Auto-Submitted: no" is read, not ignored."""
    assert classify_automatic(_simple("Re: Webinar", Auto_Submitted="no")) is None


@pytest.mark.parametrize("subject", [
    "Absence au webinaire du 9 juillet", "Re: mail delivery of the information pack",
    "Re: Inscripción", "Registration",
])
def test_people_writing_about_absence_or_delivery_are_not_automatic(subject: str) -> None:
    """Subjects that only mention absence or delivery, written by people, are not automatic."""
    assert classify_automatic(_simple(subject)) is None


@pytest.mark.parametrize("value", ["OOF", "All", "DR, RN, NRN, OOF, AutoReply"])
def test_x_auto_response_suppress_alone_is_a_person(value: str) -> None:
    """Outlook asks for no automatic answers on mail people write: that alone is no sign."""
    assert classify_automatic(_simple("Re: Webinar", X_Auto_Response_Suppress=value)) is None


def test_outlook_calendar_reply_asking_no_oof_is_read() -> None:
    """An Outlook calendar reply that asks for no out-of-office answers is still a person's."""
    msg = _simple("Accepted: Webinar", X_Auto_Response_Suppress="RN, NRN, OOF")
    msg.add_attachment("BEGIN:VCALENDAR\r\nMETHOD:REPLY\r\nEND:VCALENDAR\r\n",
                       subtype="calendar", disposition="inline")
    assert classify_automatic(msg) is None


@pytest.mark.parametrize(("sender", "subject", "reason"), [
    ('"Microsoft Outlook" <MicrosoftExchange329e71ec@gouv.sn>', "Non remis : Inscription",
     "bounce subject"),
    ("Postmaster <postmaster@cancilleria.gov.co>", "No se puede entregar: Inscripción",
     "From is postmaster"),
    ("MAILER-DAEMON@mx.example.net", "Undeliverable: Registration", "From is mailer-daemon"),
    ("Mail Delivery System <admin@mx.example.net>", "Returned mail",
     "From is Mail Delivery System"),
])
def test_literal_bounces(sender: str, subject: str, reason: str) -> None:
    """Non-delivery reports in the three languages are bounces, with the rule that fired."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["Subject"] = subject
    msg.set_content("Delivery has failed to these recipients.")
    result = classify_automatic(msg)
    assert result is not None and (result.kind, result.reason) == ("bounce", reason)


def test_null_return_path_alone_is_a_bounce() -> None:
    """Mail from the null envelope sender with no auto-reply sign is a bounce."""
    msg = _simple("Problem", Return_Path="<>")
    assert classify_automatic(msg) == Automatic("bounce", "null Return-Path <>")


def test_dsn_delay_is_temporary() -> None:
    """A delivery-status report saying "delayed" marks the address as failing for now only."""
    msg = _parse("""\
From: MAILER-DAEMON@mx.example.net
To: webinars@example.org
Subject: Delivery Status Notification (Delay)
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b"

--b
Content-Type: text/plain

Delivery to the following recipient has been delayed: slow@example.com
--b
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; slow@example.com
Action: delayed
Status: 4.4.1
--b--
""")
    result = classify_automatic(msg)
    assert result is not None
    assert result.kind == "bounce"
    assert (result.bounced, result.temporary) == (("slow@example.com",), True)


def test_read_receipt_is_automatic() -> None:
    """A read receipt (disposition-notification report) is never answered."""
    msg = _parse("""\
From: Awa Diop <awa.diop@justice.gouv.sn>
Subject: Lu : Inscription
MIME-Version: 1.0
Content-Type: multipart/report; report-type=disposition-notification; boundary="b"

--b
Content-Type: text/plain

Votre message a été lu.
--b--
""")
    result = classify_automatic(msg)
    assert result is not None and result.kind == "auto_reply"


@pytest.mark.parametrize("sender", [
    "noreply@example.org", "no-reply@accounts.example.com", "do-not-reply@portal.gov.xx",
    "donotreply@example.org", "news-request@lists.example.org", "news-owner@lists.example.org",
    "owner-news@lists.example.org", "listserv@lists.example.org", "majordomo@example.org",
    "post_master@vtext.example.com", "news-bounces@lists.example.org",
    "Notifications <no_reply+abc@example.com>",
])
def test_machine_senders_are_never_answered(sender: str) -> None:
    """noreply and list servers' admin addresses are machines, whatever they write."""
    msg = _simple("Your request")
    msg.replace_header("From", sender)
    result = classify_automatic(msg)
    assert result is not None, sender


@pytest.mark.parametrize("sender", [
    "noreen@example.org", "requests.office@justice.gov.xx", "owner@smallfirm.example",
    "mail.admin@ministry.gov.xx", "replyto.jane@example.org",
])
def test_people_whose_address_looks_close_are_read(sender: str) -> None:
    """Addresses that only resemble a machine's are people's."""
    msg = _simple("Re: Webinar")
    msg.replace_header("From", sender)
    assert classify_automatic(msg) is None, sender


@pytest.mark.parametrize("sender", [
    "webinars@example.org", "webinars+africa-fr@example.org", "WEBINARS+x@Example.org",
])
def test_mail_from_the_mailers_own_address_is_never_answered(sender: str) -> None:
    """The mailer's own inbox, with any plus-tag, never gets an answer (no loop with itself)."""
    msg = _simple("Re: Webinar")
    msg.replace_header("From", sender)
    result = classify_automatic(msg, "webinars@example.org")
    assert result is not None and "own address" in result.reason


def test_a_plus_tag_of_another_mailbox_is_a_person() -> None:
    """Only the inbox itself counts: webinarsx@ or another domain is someone else."""
    for sender in ("webinarsx@example.org", "webinars@example.net"):
        msg = _simple("Re: Webinar")
        msg.replace_header("From", sender)
        assert classify_automatic(msg, "webinars@example.org") is None


COMPLAINT_AS_ATTACHMENT = """\
From: staff@hotmail.example
To: abuse@example.org
Subject: complaint about message from 192.0.2.1
Content-Type: multipart/mixed; boundary="b"

--b
Content-Type: message/rfc822

X-HmXmrOriginalRecipient: someone@hotmail.example
From: Secretariat <webinars@example.org>
To: someone@hotmail.example
Subject: Invitation

Hello
--b--
"""

COMPLAINT_AS_TEXT = """\
From: Feedback Loop <fbl@isp.example>
To: abuse@example.org
Subject: Abuse report
Content-Type: text/plain

Feedback-Type: abuse
User-Agent: SomeGenerator/1.0
Version: 1
"""


@pytest.mark.parametrize("text", [COMPLAINT_AS_ATTACHMENT, COMPLAINT_AS_TEXT])
def test_complaint_reports_in_any_shape_are_automatic(text: str) -> None:
    """A complaint (ARF, or Microsoft's JMRP) that is not multipart/report is automatic."""
    result = classify_automatic(_parse(text))
    assert result is not None and "complaint" in result.reason


SES_BOUNCE = """\
From: SES <no-reply@sns.amazonaws.com>
To: ops@example.org
Subject: AWS Notification Message
Content-Type: text/plain

{"Type" : "Notification", "Message" : "{\\"notificationType\\":\\"Bounce\\",\\"bounce\\":\
{\\"bounceType\\":\\"Permanent\\",\\"bouncedRecipients\\":[{\\"emailAddress\\":\
\\"awa.diop@justice.example.sn\\"}]}}"}
"""


def test_amazon_ses_bounce_notification_names_the_failed_address() -> None:
    """SES's bounce notification (JSON through SNS) is a bounce naming its recipient."""
    result = classify_automatic(_parse(SES_BOUNCE))
    assert result is not None and result.kind == "bounce"
    assert result.bounced == ("awa.diop@justice.example.sn",)


DSN_WITH_JUNK = """\
From: Mail Delivery System <mailer-daemon@mx.example.org>
To: webinars@example.org
Subject: Mail delivery failed
X-Failed-Recipients: |/usr/local/bin/prog awa@example.sn
Content-Type: multipart/report; report-type=delivery-status; boundary="b"

--b
Content-Type: text/plain

The following address(es) failed:

  pipe to |/usr/local/bin/prog awa@example.sn

--b
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.org

Final-Recipient: rfc822;/var/spool/mail/awa
Action: failed
Status: 5.0.0

Original-Recipient: rfc822;jose.perez@example.gob.xx
Final-Recipient: rfc822;jperez@mailhost.example.gob.xx
Action: failed
Status: 5.1.1
--b--
"""


def test_bounced_addresses_are_validated_and_the_original_recipient_preferred() -> None:
    """Pipes and paths are not addresses; Original-Recipient is the address we sent to."""
    result = classify_automatic(_parse(DSN_WITH_JUNK))
    assert result is not None and result.kind == "bounce"
    assert result.bounced == ("jose.perez@example.gob.xx",)


TEXT_ONLY_BOUNCE = """\
From: MAILER-DAEMON <>
To: webinars@example.org
Subject: Mail delivery failed
Content-Type: text/plain

This is the DragonFly Mail Agent v0.13 at df.example.jp.

There was an error delivering your mail to <grace.wanjiru@odpp.example.ke>.

550 5.1.1 User unknown
"""


def test_bounce_in_a_text_form_flufl_misses_names_the_address() -> None:
    """A report only in prose still yields the address it failed for, never our own."""
    result = classify_automatic(_parse(TEXT_ONLY_BOUNCE))
    assert result is not None and result.kind == "bounce"
    assert result.bounced == ("grace.wanjiru@odpp.example.ke",)
