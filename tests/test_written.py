"""Tests for separating what a sender wrote from the quoted original, signature and disclaimer."""

from __future__ import annotations

import email
import email.policy
import time
from email.message import EmailMessage
from pathlib import Path

import pytest

from mailer.understand.written import body_text, extract_reply, html_to_text, reply_text
from tests.conftest import CORPUS

REPLIES = CORPUS / "client-replies"

# What the sender wrote in each corpus reply, read by hand (Thunderbird's is below the quote).
EXPECTED = {
    "android.eml": "Hello",
    "aol.eml": "Hello",
    "apple_mail.eml": "Hello",
    "apple_mail_2.eml": "Hello",
    "comcast.eml": "Hello",
    "gmail.eml": "Hello",
    "hotmail.eml": "Hello",
    "iphone.eml": "Hello",
    "outlook.eml": "Hello",
    "sparrow.eml": "Hello",
    "thunderbird.eml": "Hello",
    "yahoo.eml": "Hello",
}
# The same replies read from their HTML part alone (Outlook's HTML says something else).
EXPECTED_FROM_HTML = {
    "android.eml": "Hello",
    "aol.eml": "Hello",
    "comcast.eml": "Hello",
    "gmail.eml": "Hello",
    "hotmail.eml": "Hello",
    "outlook.eml": "Allo! Follow up MIME!",
    "sparrow.eml": "Hello",
}


def _load(path: Path) -> EmailMessage:
    """A corpus file as an EmailMessage."""
    return email.message_from_bytes(path.read_bytes(), policy=email.policy.default)


def _parse(text: str) -> EmailMessage:
    """A literal message as an EmailMessage."""
    return email.message_from_string(text, policy=email.policy.default)


def _plain(body: str) -> EmailMessage:
    """A plain-text reply with this body."""
    msg = EmailMessage()
    msg["From"] = "someone@example.org"
    msg["Subject"] = "Re: Webinar"
    msg.set_content(body)
    return msg


def _html_parts() -> list[Path]:
    """The corpus replies that have an HTML part."""
    return [p for p in sorted(REPLIES.glob("*.eml"))
            if any(part.get_content_type() == "text/html" for part in _load(p).walk())]


@pytest.mark.parametrize("path", sorted(REPLIES.glob("*.eml")), ids=lambda p: p.name)
def test_corpus_reply_text(path: Path) -> None:
    """For every real client's reply, only the text the sender wrote is kept."""
    assert path.name in EXPECTED, f"write down the expected reply text of {path.name}"
    assert reply_text(_load(path)) == EXPECTED[path.name]


@pytest.mark.parametrize("path", _html_parts(), ids=lambda p: p.name)
def test_corpus_reply_text_from_html(path: Path) -> None:
    """Read from the HTML part alone, every real client's reply also loses its quote."""
    assert path.name in EXPECTED_FROM_HTML, f"write down the HTML reply text of {path.name}"
    html = next(p for p in _load(path).walk() if p.get_content_type() == "text/html")
    assert extract_reply(html_to_text(html.get_content())) == EXPECTED_FROM_HTML[path.name]


def test_outlook_french_header() -> None:
    """An Outlook reply in French ("De : ... Envoyé : ...", no-break spaces) is cut there."""
    body = ("Bonjour,\nJe confirme ma participation.\n\n"
            "De\xa0: Secrétariat <webinaires@example.org>\n"
            "Envoyé\xa0: lundi 6 juillet 2020 10:00\nÀ\xa0: Awa Diop <awa@justice.gouv.sn>\n"
            "Objet\xa0: Inscription\n\nNom :\nPays :\n")
    assert reply_text(_plain(body)) == "Bonjour,\nJe confirme ma participation."


def test_outlook_spanish_header() -> None:
    """An Outlook reply in Spanish ("De: ... Enviado el: ...") is cut there."""
    body = ("Estimados:\nConfirmo mi participación.\n\n"
            "________________________________\n"
            "De: Secretaría <seminarios@example.org>\n"
            "Enviado el: lunes, 20 de julio de 2020 10:00\nPara: Juan Pérez <jp@sre.gob.mx>\n"
            "Asunto: Inscripción\n\nNombre:\nPaís:\n")
    assert reply_text(_plain(body)) == "Estimados:\nConfirmo mi participación."


@pytest.mark.parametrize("separator", [
    "-----Original Message-----", "-----Message d'origine-----", "-----Mensaje original-----",
    "----- Original Message -----",
])
def test_original_message_separators(separator: str) -> None:
    """The "Original Message" separators of the three languages start the quote."""
    body = f"Yes, please.\n\n{separator}\nFrom: x@example.org\nName: Jane\nCountry: Chile\n"
    assert reply_text(_plain(body)) == "Yes, please."


def test_gmail_french_header_wrapped_over_two_lines() -> None:
    """Gmail's French attribution wrapped over two lines is recognised and removed."""
    body = ("Bonjour,\nJe m'inscris.\n\n"
            "Le lun. 6 juil. 2020 à 10:00, Secrétariat <webinaires@example.org>\n"
            "a écrit :\n\n> Nom : ...\n> Pays : ...\n")
    assert reply_text(_plain(body)) == "Bonjour,\nJe m'inscris."


def test_gmail_spanish_header() -> None:
    """Gmail's Spanish attribution ("El ... escribió:") starts the quote."""
    body = ("Hola,\nConfirmo.\n\n"
            "El lun., 20 jul. 2020 a las 10:00, Secretaría (<seminarios@example.org>) escribió:\n"
            "\n> Nombre:\n")
    assert reply_text(_plain(body)) == "Hola,\nConfirmo."


def test_iphone_reply_in_spanish() -> None:
    """An iPhone reply in Spanish loses its "Enviado desde mi iPhone" line and the quote."""
    msg = _parse("""\
From: Juan <juan@sre.gob.mx>
Subject: Re: Seminario
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable
X-Mailer: iPhone Mail (17F80)

S=C3=AD, confirmo mi participaci=C3=B3n.

Enviado desde mi iPhone

> El 20 jul 2020, a las 10:00, Secretar=C3=ADa <seminarios@example.org> escribi=
=C3=B3:
>=20
> Nombre:
> Pa=C3=ADs:
""")
    assert reply_text(msg) == "Sí, confirmo mi participación."


@pytest.mark.parametrize(("footer", "language"), [
    ("Sent from my iPhone", "en"), ("Envoyé de mon iPhone", "fr"),
    ("Enviado desde mi iPhone", "es"), ("Get Outlook for Android", "en"),
    ("Obtenir Outlook pour Android", "fr"),
])
def test_phone_footers_are_removed(footer: str, language: str) -> None:
    """The footer a phone or app appends is not part of what the sender wrote."""
    text = reply_text(_plain(f"Confirmed ({language}).\n\n{footer}\n"))
    assert text == f"Confirmed ({language})."


def test_signature_delimiter_cuts_the_signature() -> None:
    """Everything below the "-- " signature delimiter is dropped."""
    assert reply_text(_plain("Yes.\n\n-- \nJohn Smith\nMinistry of Justice\n")) == "Yes."


@pytest.mark.parametrize("notice", [
    "CONFIDENTIALITY NOTICE: This e-mail and any attachments are confidential.",
    "Ce message et toutes les pièces jointes sont confidentiels et établis à l'intention "
    "exclusive de ses destinataires.",
    "Este mensaje y sus anexos son confidenciales y están dirigidos exclusivamente a sus "
    "destinatarios.",
])
def test_confidentiality_disclaimers_are_removed(notice: str) -> None:
    """Confidentiality disclaimers appended by mail servers are dropped."""
    assert reply_text(_plain(f"I confirm.\nAna\n\n{notice}\nMore legal text.\n")) == \
        "I confirm.\nAna"


HTML_OUTLOOK = """\
From: Awa Diop <awa.diop@justice.gouv.sn>
Subject: RE: Inscription au webinaire
MIME-Version: 1.0
Content-Type: text/html; charset=utf-8

<html><body>
<div>Je confirme ma participation.</div><div>Awa Diop</div>
<div id="appendonsend"></div>
<hr style="display:inline-block;width:98%">
<div id="divRplyFwdMsg" dir="ltr"><font><b>De :</b> Secrétariat
&lt;webinaires@example.org&gt;<br><b>Envoyé :</b> lundi 6 juillet 2020 10:00<br>
<b>Objet :</b> Inscription</font><div>&nbsp;</div></div>
<div><p>Name: Jane Doe</p><p>Country: Senegal</p><p>Organisation: Ministry</p></div>
</body></html>
"""


def test_html_only_outlook_reply_drops_the_quoted_form() -> None:
    """In an HTML-only Outlook reply, the form quoted after divRplyFwdMsg is dropped."""
    text = reply_text(_parse(HTML_OUTLOOK))
    assert text == "Je confirme ma participation.\nAwa Diop"


def test_quoted_form_lines_never_survive() -> None:
    """Form lines ("Name: ... Country: ...") in the quoted original never reach the reply."""
    body = ("Thank you, I will attend.\n\n"
            "On Mon, 6 Jul 2020 at 10:00, Secretariat <webinars@example.org> wrote:\n"
            "> Please fill in:\n> Name: Jane Doe\n> Country: Senegal\n> Position: Judge\n")
    text = reply_text(_plain(body))
    assert text == "Thank you, I will attend."
    assert "Name:" not in text and "Country:" not in text


def test_form_the_sender_filled_in_is_kept() -> None:
    """Form lines the sender wrote above the quote, with a hyphen list, are all kept."""
    body = ("Please register:\nName: Awa Diop\nCountry: Senegal\n- Position: Magistrate\n"
            "Thanks, see you\n\n"
            "On Mon, 6 Jul 2020 at 10:00, Secretariat <webinars@example.org> wrote:\n"
            "> Name:\n> Country:\n")
    assert reply_text(_plain(body)) == ("Please register:\nName: Awa Diop\nCountry: Senegal\n"
                                        "- Position: Magistrate\nThanks, see you")


def test_bottom_posted_reply_is_kept() -> None:
    """A reply written below a ">" quote is what the sender wrote."""
    body = "On 6 Jul 2020, Secretariat <w@example.org> wrote:\n> Country:\nI will attend.\n"
    assert reply_text(_plain(body)) == "I will attend."


def test_forwarded_form_alone_gives_nothing() -> None:
    """A message that only forwards the form has no text from the sender."""
    body = ("-----Original Message-----\nFrom: Secretariat <w@example.org>\n"
            "Sent: Monday\nSubject: Registration\n\nName:\nCountry:\n")
    assert reply_text(_plain(body)) == ""


def test_body_text_prefers_plain_and_ignores_attachments() -> None:
    """The plain part is the body; a text attachment or an attached message is not."""
    msg = EmailMessage()
    msg["Subject"] = "Re: Webinar"
    msg.set_content("<p>From HTML</p>", subtype="html")
    msg.add_attachment("Name: Attached\n", filename="form.txt")
    forwarded = _plain("Quoted message")
    msg.add_attachment(forwarded)
    assert body_text(msg).strip() == "From HTML"


def test_body_text_survives_unknown_and_wrong_charsets() -> None:
    """A part in an unknown or mislabelled charset is decoded without raising."""
    unknown = _parse("Content-Type: text/plain; charset=x-no-such-charset\n\nCaf\xc3\xa9\n")
    assert "Caf" in body_text(unknown)
    mislabelled = email.message_from_bytes(
        b"Content-Type: text/plain; charset=us-ascii\n\nPa\xc3\xads: Per\xc3\xba\n",
        policy=email.policy.default)
    assert body_text(mislabelled) == "País: Perú\n"


def test_blank_plain_part_falls_back_to_html() -> None:
    """A blank plain alternative does not hide the HTML part that holds the reply."""
    msg = EmailMessage()
    msg.set_content("\n")
    msg.add_alternative("<p>Je confirme.</p>", subtype="html")
    assert reply_text(msg) == "Je confirme."


def test_empty_html_gives_empty_text() -> None:
    """An empty HTML part gives an empty reply instead of an error."""
    assert reply_text(_parse("Content-Type: text/html\n\n")) == ""


def test_hostile_long_text_is_read_quickly() -> None:
    """A megabyte of lines that look like reply headers is read in well under three seconds."""
    body = ("On " + "a " * 100 + "\n") * 5000
    started = time.perf_counter()
    reply_text(_plain(body))
    assert time.perf_counter() - started < 3.0


# Replies as the clients of each language write them: the reply, then the client's marker and
# the quoted form. Each must come out as the reply alone.
QUOTE_MARKERS = {
    "en-gmail": "On Mon, 6 Jul 2020 at 10:00, Secretariat <webinars@example.org> wrote:",
    "en-zoho": "---- On Mon, 06 Jul 2020 10:00:12 +0000 webinars@example.org wrote ----",
    "en-outlook": "From: Secretariat <webinars@example.org>\nSent: Monday, July 6, 2020 10:00 AM\n"
                  "To: Grace Wanjiru <g.wanjiru@odpp.go.ke>\nSubject: Registration",
    "fr-outlook": "De : Secrétariat <webinars@example.org>\nEnvoyé : lundi 6 juillet 2020 10:00\n"
                  "À : Awa Diop\nObjet : Inscription",
    "fr-gmail": "Le lun. 6 juil. 2020 à 10:00, Secrétariat <webinars@example.org> a écrit :",
    "es-gmail": "El lun., 6 jul. 2020 a las 10:00, Secretaría (<webinars@example.org>) escribió:",
    "es-outlook": "De: Secretaría <webinars@example.org>\nEnviado el: lunes, 6 de julio de 2020 "
                  "10:00\nPara: Juan Pérez\nAsunto: Inscripción",
    "pt-gmail": "Em seg., 6 de jul. de 2020 às 10:00, Secretariado <webinars@example.org>\n"
                "escreveu:",
    "pt-outlook": "De: Secretariado <webinars@example.org>\nEnviada em: segunda-feira, 6 de "
                  "julho de 2020 10:00\nPara: Ana Souza\nAssunto: Inscrição",
    "de-outlook": "Von: Sekretariat <webinars@example.org>\nGesendet: Montag, 6. Juli 2020 "
                  "10:00\nAn: Max Muster\nBetreff: Anmeldung",
    "de-gmail": "Am Mo., 6. Juli 2020 um 10:00 Uhr schrieb Sekretariat <webinars@example.org>:",
    "it-outlook": "Da: Segreteria <webinars@example.org>\nInviato: lunedì 6 luglio 2020 10:00\n"
                  "A: Mario Rossi\nOggetto: Iscrizione",
    "it-gmail": "Il giorno lun 6 lug 2020 alle ore 10:00 Segreteria <webinars@example.org> ha "
                "scritto:",
    "nl-outlook": "Van: Secretariaat <webinars@example.org>\nVerzonden: maandag 6 juli 2020 "
                  "10:00\nAan: Jan Jansen\nOnderwerp: Registratie",
    "nl-apple": "Op 6 jul. 2020 om 10:00 heeft Secretariaat <webinars@example.org> het "
                "volgende geschreven:",
    "pl-gmail": "W dniu pon., 6.07.2020 o 10:00 Sekretariat <webinars@example.org> napisał(a):",
    "pl-outlook": "Od: Sekretariat <webinars@example.org>\nWysłano: poniedziałek, 6 lipca 2020 "
                  "10:00\nDo: Jan Kowalski\nTemat: Rejestracja",
    "sv-outlook": "Från: Sekretariat <webinars@example.org>\nSkickat: den 6 juli 2020 10:00\n"
                  "Till: Anna Svensson\nÄmne: Registrering",
    "da-gmail": "Den man. 6. jul. 2020 kl. 10.00 skrev Sekretariat <webinars@example.org>:",
    "no-apple": "6. jul. 2020 kl. 10:00 skrev Sekretariat <webinars@example.org>:",
    "fi-gmail": "ma 6. heinäk. 2020 klo 10.00 Sihteeristö <webinars@example.org> kirjoitti:",
    "ru-gmail": "пн, 6 июл. 2020 г. в 10:00, Секретариат <webinars@example.org>:",
    "ru-outlook": "От: Секретариат <webinars@example.org>\nОтправлено: 6 июля 2020 г. 10:00\n"
                  "Кому: Иван Петров\nТема: Регистрация",
    "ru-yandex": "06.07.2020, 10:00, \"Секретариат\" <webinars@example.org>:",
    "tr-outlook": "Kimden: Sekreterlik <webinars@example.org>\nGönderildi: 6 Temmuz 2020 "
                  "Pazartesi 10:00\nKime: Ayşe Yılmaz\nKonu: Kayıt",
    "tr-gmail": "Sekreterlik <webinars@example.org>, 6 Tem 2020 Pzt, 10:00 tarihinde şunu "
                "yazdı:",
    "id-gmail": "Pada tanggal Sen, 6 Jul 2020 10.00, Sekretariat <webinars@example.org> "
                "menulis:",
    "zh-gmail": "Secretariat <webinars@example.org> 于2020年7月6日周一 上午10:00写道：",
    "zh-outlook": "发件人: Secretariat <webinars@example.org>\n发送时间: 2020年7月6日 10:00\n"
                  "收件人: 王伟\n主题: 注册",
    "ja-gmail": "2020年7月6日(月) 10:00 Secretariat <webinars@example.org>:",
    "ja-outlook": "差出人: Secretariat <webinars@example.org>\n送信日時: 2020年7月6日 10:00\n"
                  "宛先: 山田太郎\n件名: 登録",
    "ar-outlook": "من: Secretariat <webinars@example.org>\nأرسلت: الاثنين، 6 يوليو 2020 10:00\n"
                  "إلى: أحمد علي\nالموضوع: تسجيل",
    "ar-gmail": "في الاثنين، 6 يوليو 2020 10:00 ص، كتب Secretariat <webinars@example.org>:",
    "separator-es": "-----Mensaje original-----\nDe: webinars@example.org",
    "separator-de": "-----Ursprüngliche Nachricht-----\nVon: webinars@example.org",
    "separator-it": "-------- Messaggio originale --------",
    "separator-ru": "-------- Исходное сообщение --------",
    "separator-zh": "------------------ 原始邮件 ------------------",
    "separator-apple": "Begin forwarded message:",
    "separator-apple-fr": "Début du message réexpédié :",
}


@pytest.mark.parametrize("name", sorted(QUOTE_MARKERS))
def test_quote_markers_of_every_language_end_the_reply(name: str) -> None:
    """Attributions, header blocks and separators in each language start the quote."""
    body = (f"I confirm my participation.\nName: Grace Wanjiru\nCountry: Kenya\n\n"
            f"{QUOTE_MARKERS[name]}\n\nPlease reply with:\nName:\nCountry:\n"
            "To unsubscribe, reply UNSUBSCRIBE.\n")
    assert reply_text(_plain(body)) == ("I confirm my participation.\nName: Grace Wanjiru\n"
                                        "Country: Kenya")


@pytest.mark.parametrize("footer", [
    "Sent from my iPhone", "Envoyé de mon iPad", "Enviado desde mi teléfono Huawei",
    "Enviado do meu iPhone", "Von meinem iPhone gesendet", "Inviato da iPhone",
    "Verzonden vanaf mijn iPhone", "Wysłano z iPhone'a", "Skickat från min iPhone",
    "Sendt fra min iPhone", "Lähetetty iPhonesta", "Отправлено с iPhone",
    "iPhone'umdan gönderildi", "Dikirim dari iPhone saya", "发自我的iPhone", "iPhoneから送信",
    "أرسلت من الـ iPhone", "Get Outlook for Android<https://aka.ms/ghei36>",
    "Obtenir Outlook pour iOS<https://aka.ms/o0ukef>",
])
def test_phone_footers_in_every_language_end_the_reply(footer: str) -> None:
    """The line a phone appends ends what the sender wrote, even with a quote under it."""
    body = f"Yes, I will attend.\n\n{footer}\n\nPlease reply with your name.\n"
    assert reply_text(_plain(body)) == "Yes, I will attend."


def test_a_sentence_starting_like_a_footer_is_kept() -> None:
    """"Sent from my desk, ..." is a sentence, not a phone's footer."""
    body = "Here is my form.\n\nSent from my desk, which is easier than my phone.\n"
    assert reply_text(_plain(body)) == body.strip()


def test_text_above_an_attribution_is_never_taken_for_part_of_it() -> None:
    """A line with an address just above "On ... wrote:" stays in the reply."""
    body = ("Name: Awa Diop\nEmail: awa.diop@justice.gouv.sn\n"
            "On Mon, 6 Jul 2020 at 10:00, Secretariat <webinars@example.org> wrote:\n"
            "> Name:\n")
    assert reply_text(_plain(body)) == "Name: Awa Diop\nEmail: awa.diop@justice.gouv.sn"


def test_attribution_wrapped_by_the_client_is_removed_whole() -> None:
    """Gmail and Outlook for Mac wrap long attributions; no half of one stays."""
    for attribution in (
            "On Mon, Jul 6, 2020 at 10:00 AM Secretariat of the Webinars <\n"
            "webinars@example.org> wrote:",
            "Em 6 de julho de 2020 às 10:00:35, Secretariado (\nwebinars@example.org) escreveu:",
            "On Mon, 6 Jul 2020 at 10:00 Secretariat\n\n<\nmailto:webinars@example.org\n> wrote:"):
        body = f"Count me in.\n\n{attribution}\n\n> Name:\n"
        assert reply_text(_plain(body)) == "Count me in.", attribution


def test_answers_written_inside_the_quoted_form_are_kept() -> None:
    """A sender who answers between the quoted lines: every answer is what they wrote."""
    body = ("Please see below.\n\n"
            "On Mon, 6 Jul 2020 at 10:00, Secretariat <webinars@example.org> wrote:\n"
            "> Your name:\n\nAwa Diop\n\n> Your country:\n\nSenegal\n")
    assert reply_text(_plain(body)) == "Please see below.\n\nAwa Diop\n\nSenegal"


def test_quoted_lines_a_client_wrapped_without_their_marks_stay_quoted() -> None:
    """A line without ">" squeezed between quoted lines is the quote, not an answer."""
    body = ("Yes.\n\nOn Mon, 6 Jul 2020 at 10:00, Secretariat <webinars@example.org> wrote:\n"
            "> To cancel your registration, please reply to this message with the word\n"
            "CANCEL\n> and your place will be offered to another participant.\n")
    assert reply_text(_plain(body)) == "Yes."


def test_a_mailing_list_footer_is_not_what_they_wrote() -> None:
    """A list's footer below a rule (with its unsubscribe link) is dropped."""
    body = ("I will attend.\nAwa Diop\n\n__\nministries mailing list\n"
            "To unsubscribe: https://lists.example.org/listinfo/ministries\n")
    assert reply_text(_plain(body)) == "I will attend.\nAwa Diop"

