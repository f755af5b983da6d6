"""The lines mail clients write around a quoted original, in the languages governments write.

Each function looks at ONE line (or an attribution wrapped over two or three lines joined by a
space) and says what it is: an attribution ("On ... wrote:", "Le ... a écrit :", "2017-11-24
16:32 GMT+01:00 X <x@y>:"), a header of a quoted message ("De :", "Von:", "Da:", "От:"...), an
original-message separator, a phone or app footer ("Sent from my iPhone", "Envoyé de mon
iPhone", "iPhoneから送信"), a list or notification footer. ``written`` decides from these where
what the sender wrote ends.

Hand-written, and why: the four Python libraries for this (talon, quotequail,
mail-parser-reply, email-reply-parser) were measured on the 150 reply cases of the peer corpora
(README, "What they wrote") and each gets fewer right and leaks more than this; their patterns
know a few languages each and several backtrack on long lines. Here nothing backtracks: a
line is cut to ``MAX_LINE`` characters and read with string tests and regular expressions that
have at most one unbounded repetition, anchored, so each line costs time linear in its length.
The vocabularies are the words the clients write (Outlook, Gmail, Apple Mail, Thunderbird,
Android, Yahoo, Zoho, Yandex, QQ/Foxmail...) as collected by the reply parsers above and
Discourse's email_reply_trimmer.
"""

from __future__ import annotations

import re

MAX_LINE = 300          # characters of a line read as a possible marker; markers are short

# --- Attributions ("On <date>, <name> <address> wrote:") -----------------------------------------

# The verb that ends (or sits inside) an attribution, casefolded, in each language.
_WROTE = (
    "wrote", "writes", "has written", "a écrit", "a ecrit", "écrit", "escribió", "escribio",
    "escreveu", "escrevia", "ha scritto", "scritto", "schrieb", "geschrieben", "schreef",
    "het volgende geschreven", "skrev", "kirjoitti", "napisał(a)", "napisał", "napisała",
    "napisal", "pisze", "napsal(a)", "napsal", "napísal", "написал(а)", "написал", "написала",
    "пишет", "пише", "написав", "yazdı", "menulis", "写道", "寫道", "のメッセージ",
    "작성", "كتب", "έγραψε", "írta", "a scris",
)
_WROTE_CJK = ("写道", "寫道", "のメッセージ", "작성", "كتب")
# The word an attribution starts with ("On", "Le", "El", "Em", "Am", "Op", "Den", "W dniu"...).
_ON = ("on ", "at ", "le ", "el ", "em ", "il ", "in data ", "am ", "op ", "den ", "w dniu ",
       "dnia ", "dňa ", "dne ", "в ", "在 ", "el día ")
_DIGIT = re.compile(r"\d")
_ANGLE_ADDRESS = re.compile(
    r"[<(\[] ?(?:mailto:)?[^<>()\[\]\s@]{1,64}@[^<>()\[\]\s@]{1,255} ?[>)\]]")
# Gmail's date-first attribution without an address: "2016-03-03 17:21 GMT+01:00 Some One".
_GMAIL_DATE = re.compile(r"\d{4}-\d\d-\d\d \d\d?:\d\d GMT[+-]\d\d?:\d\d ")
_STARTS_WITH_DATE = re.compile(r"\d{1,4}[-./]\d{1,2}[-./]\d{1,4}\b|\d{1,2}:\d{2}\b")
_EDGES = " \t*-—_"


def _bare(line: str) -> str:
    """A line without the dashes, stars and spaces Zoho and bold HTML put around markers (and
    the ">" of a quoted attribution, or of its last wrapped part: "> wrote:")."""
    return line[:MAX_LINE].lstrip(_EDGES + ">").rstrip(_EDGES)


def _ends_with_verb(folded: str) -> bool:
    text = folded.rstrip(" :：.-—")
    for verb in _WROTE:
        if text.endswith(verb):
            before = text[:-len(verb)]
            if verb in _WROTE_CJK or not before or before.endswith((" ", '"', ">", ")")):
                return True
    return False


_WROTE_PADDED = tuple(f" {verb} " for verb in _WROTE)


def has_verb(folded: str) -> bool:
    """Whether a casefolded line has an attribution's verb as a word."""
    return any(verb in folded for verb in _WROTE_PADDED) or any(
        verb in folded for verb in _WROTE_CJK)


def is_attribution(line: str) -> bool:
    """True for the line that introduces a quoted message, in any of the known forms.

    - ends with the verb ("On 3 July 2020, Awa <a@x.sn> wrote:", "Le ... a écrit :", Zoho's
      "---- On ... wrote ----", "El ..., X escribió:", Russian "... написал:"), with a date, an
      address or "via" in it, so "I wrote:" alone is text;
    - has the verb inside and ends with ":" with an address ("X <x@y> schrieb am ...:", "Den
      ... skrev X <x@y>:", "tir. 18. apr. 2017 kl. 13:09 skrev X <x@y>:");
    - names a date and an address in brackets and ends with ":" or with that address
      ("2017-11-24 16:32 GMT+01:00 X <x@y>:", "30.09.2017, 18.30, \"X\" <x@y>:",
      "2013/7/20 X <x@y>"), as Gmail, Yandex and Android write them in many languages.
    """
    bare = _bare(line)
    if len(bare) < 6:
        return False
    folded = bare.casefold()
    has_digit = _DIGIT.search(folded) is not None
    has_address = "@" in folded
    if _ends_with_verb(folded) and (has_digit or has_address or " via " in folded):
        return True
    ends_colon = folded.endswith((":", "："))
    if ends_colon and has_address and has_verb(folded):
        return True
    if _GMAIL_DATE.match(bare):
        return True
    if has_digit and _ANGLE_ADDRESS.search(bare):
        if ends_colon:
            return True
        return bare.endswith((">", "]", ")")) and _STARTS_WITH_DATE.match(bare) is not None
    return False


def starts_attribution(line: str) -> bool:
    """True when a line may be the first half of a wrapped attribution."""
    folded = _bare(line).casefold()
    return folded.startswith(_ON) or _STARTS_WITH_DATE.match(folded) is not None \
        or "@" in folded or folded[:1].isdigit()


# --- Separators ("-----Original Message-----") -------------------------------------------------

_SEPARATORS = frozenset({
    # en, fr, es, pt, de, it, nl, pl, da/no, sv, fi, ru, uk, tr, id, zh, ja, ko, cs, ar
    "original message", "forwarded message", "reply message", "original email",
    "forwarded email", "message d'origine", "message transféré", "message original",
    "mensaje original", "mensaje reenviado", "mensagem original", "mensagem encaminhada",
    "mensagem reencaminhada", "ursprüngliche nachricht", "originalnachricht",
    "weitergeleitete nachricht", "messaggio originale", "messaggio inoltrato",
    "oorspronkelijk bericht", "origineel bericht", "doorgestuurd bericht",
    "oryginalna wiadomość", "wiadomość oryginalna", "wiadomość przekazana dalej",
    "oprindelig besked", "oprindelig meddelelse", "videresendt besked",
    "opprinnelig melding", "videresendt melding", "ursprungligt meddelande",
    "vidarebefordrat meddelande", "alkuperäinen viesti", "välitetty viesti",
    "исходное сообщение", "пересылаемое сообщение", "перенаправленное сообщение",
    "оригінальне повідомлення", "пересланий лист", "orijinal mesaj", "iletilen ileti",
    "pesan asli", "pesan terusan", "原始邮件", "原始郵件", "转发邮件", "转发的邮件",
    "元のメッセージ", "転送メッセージ", "원본 메시지", "전달된 메시지", "původní zpráva",
    "přeposlaná zpráva", "الرسالة الأصلية", "رسالة محولة",
})
_INTRODUCTIONS = (
    "begin forwarded message", "début du message transféré", "début du message réexpédié",
    "inicio del mensaje reenviado", "início da mensagem reencaminhada",
    "início da mensagem encaminhada", "anfang der weitergeleiteten nachricht",
    "inizio messaggio inoltrato", "begin doorgestuurd bericht", "początek przekazywanej wiadomości",
    "videresendt meddelelse", "vidarebefordrat brev", "начало переадресованного сообщения",
    "iletilen mesajın başlangıcı", "転送されたメッセージ", "转发的邮件",
)
# Help desks and forums ask for the reply above a line they mark ("## Please type your reply
# above this line ##").
_ABOVE_THIS_LINE = ("above this line", "au-dessus de cette ligne", "por encima de esta línea",
                    "acima desta linha", "oberhalb dieser zeile", "über dieser zeile",
                    "sopra questa riga", "boven deze regel", "powyżej tej linii",
                    "над этой строкой", "ovanför denna rad", "over denne linje",
                    "over denne linjen", "tämän rivin yläpuolelle", "bu satırın üstüne",
                    "di atas baris ini", "在此行上方", "この行より上")


def is_separator(line: str) -> bool:
    """True for "-----Original Message-----" and its translations, "Begin forwarded message:",
    "----- Forwarded message -----", and "reply above this line" markers."""
    raw = line[:MAX_LINE].strip()
    bare = _bare(raw).rstrip(" :：").strip().casefold()
    if not bare:
        return False
    if bare in _SEPARATORS and (raw[:1] in "-_*=" or raw.endswith(("-", "*", ":"))):
        return True
    if raw.endswith((":", "：")) and bare.startswith(_INTRODUCTIONS):
        return True
    return any(marker in bare for marker in _ABOVE_THIS_LINE)


# --- Header blocks of a quoted message (Outlook, Apple Mail, webmails) ----------------------------

# The label that starts a quoted header block: who sent the quoted message.
FROM_LABELS = frozenset({
    "from", "de", "von", "da", "van", "od", "fra", "från", "lähettäjä", "от", "від", "kimden",
    "gönderen", "dari", "pengirim", "发件人", "寄件者", "差出人", "보낸 사람", "보낸사람", "من",
    "remitente", "expéditeur", "feladó", "odesílatel", "message du",
})
# The other labels of such a block (sent, date, to, cc, subject, reply-to), in many languages.
OTHER_LABELS = frozenset({
    "sent", "date", "to", "cc", "bcc", "subject", "reply-to", "importance", "organization",
    "envoyé", "envoyé le", "envoye", "à", "a", "objet", "copie à", "cc ", "répondre à",
    "destinataire", "enviado", "enviado el", "enviada", "enviada em", "enviado em", "fecha",
    "para", "asunto", "assunto", "data", "gesendet", "datum", "an", "betreff", "kopie",
    "inviato", "risposta", "oggetto", "verzonden", "verstuurd", "aan", "onderwerp",
    "beantwoorden - aan", "wysłano", "wysłane", "do", "temat", "dw", "sendt", "til", "emne",
    "dato", "kopi", "skickat", "till", "ämne", "kopia", "lähetetty", "vastaanottaja", "aihe",
    "päivämäärä", "kopio", "отправлено", "дата", "кому", "копия", "тема", "надіслано",
    "gönderildi", "gönderilme", "tarih", "kime", "konu", "bilgi", "dikirim", "tanggal",
    "kepada", "perihal", "subjek", "发送时间", "日期", "收件人", "抄送", "主题", "寄件日期",
    "主旨", "副本", "送信日時", "日時", "宛先", "件名", "보낸 날짜", "받는 사람", "제목",
    "أرسل", "أرسلت", "التاريخ", "إلى", "الموضوع", "odesláno", "komu", "předmět", "elküldve",
    "címzett", "tárgy",
})
_LONGEST_LABEL = 30


def header_label(line: str) -> str | None:
    """The casefolded label of a "Label: value" line of a quoted header block, if it is one.

    The label is what stands before the line's first colon, without the spaces and stars
    around it. Read with string operations: the regular expression this replaces
    ("[ \\t*]*(...{1,30}?)[ \\t*]*:") backtracked over a line of stars, 13 ms a line.
    """
    head = line[:MAX_LINE]
    colon = min((i for i in (head.find(":"), head.find("：")) if i >= 0), default=-1)
    if colon < 0:
        return None
    label = head[:colon].strip(" \t*")
    if not label or len(label) > _LONGEST_LABEL or "\n" in label:
        return None
    label = label.casefold()
    return label if label in FROM_LABELS or label in OTHER_LABELS else None


# --- Footers: phones and apps, mailing lists and notifications ------------------------------------

# What phones and mail apps append to a message, at the start of a line, casefolded.
_FOOTER_STARTS = (
    "sent from ", "sent via ", "sent with ", "sent by ", "sent using ", "sent on ",
    "get outlook for ", "from my iphone", "from my ipad", "from my android", "from my mobile",
    "from my samsung", "from my phone", "envoyé de mon ", "envoyé depuis ", "envoyé à partir de ",
    "envoyé avec ", "envoyé via ", "envoyé par mon ", "obtenir outlook pour ",
    "télécharger outlook pour ", "enviado desde ", "enviado con ", "enviado de mi ",
    "obtener outlook para ", "descargar outlook para ", "enviado do meu ", "enviado de meu ",
    "enviado do ", "enviado a partir do ", "enviado pelo ", "obter o outlook para ",
    "obtenha o outlook para ", "von meinem ", "gesendet von ", "gesendet mit ",
    "gesendet vom ", "diese nachricht wurde von ", "outlook für ", "inviato da ",
    "inviato dal mio ", "inviato dall'app ", "scarica outlook per ", "verzonden vanaf ",
    "verstuurd vanaf ", "verzonden met ", "verzonden vanuit ", "verstuurd met ",
    "outlook voor ", "wysłano z ", "wysłane z ", "pobierz outlook dla ", "skickat från ",
    "skickades från ", "från min ", "hämta outlook för ", "sendt fra ", "hent outlook til ",
    "hent outlook for ", "få outlook til ", "få outlook for ", "lähetetty ",
    "hanki outlook for ", "отправлено с ", "отправлено из ", "отправлено со ",
    "получить outlook для ", "надіслано з ", "dikirim dari ", "dapatkan outlook untuk ",
    "odesláno z ", "发自我的", "从我的", "從我的", "来自我的", "發自我的",
)
# Footers that end with the verb instead (German, Turkish, Japanese, Korean, Arabic).
_FOOTER_ENDS = (" gesendet", " gesendet.", "gönderildi", "gönderildi.", "から送信",
                "から送信しました", "에서 보냄", "에서 보냄.", " 傳送", "发送")
_FOOTER_ARABIC = ("أرسلت من", "مرسل من", "تم الإرسال من")
_LINKS = re.compile(r"<[^<>\s]{1,500}>|\[([^\[\]]{0,200})\]\([^()\s]{0,500}\)|\(\s*https?://[^()\s]{0,500}\)")


def is_footer(line: str) -> bool:
    """True for the line a phone or mail app appends ("Sent from my iPhone", "Von meinem
    iPhone gesendet", "iPhoneから送信", "Get Outlook for Android<https://aka.ms/...>").

    Only a short line with no sentence in it: "Sent from my desk, which is easier than my
    phone." is something the sender wrote.
    """
    text = _LINKS.sub(lambda m: m.group(1) or "", line[:MAX_LINE]).strip().strip("()<>").strip()
    folded = text.casefold()
    if not folded or len(folded) > 90 or len(folded.split()) > 12:
        return False
    if any(mark in folded.rstrip(".") for mark in (",", ". ", ";", "!", "?")):
        return False
    if folded.startswith(_FOOTER_STARTS) or folded.endswith(_FOOTER_ENDS):
        return True
    if folded.startswith(_FOOTER_ARABIC):
        return True
    words = folded.split()
    # "Someone from mobile", "Nik from mobile" (Discourse's collection of footers).
    return len(words) <= 4 and folded.endswith(" from mobile")


# A list's or a notification's footer below a rule: how to unsubscribe or where to answer.
_LIST_FOOTER = re.compile(
    r"unsubscribe|mailing list|listinfo|list-manage|you are receiving this|you received this"
    r"|to respond, reply|reply to this email|visit the topic|notification|preferences"
    r"|se désinscrire|désabonner|désinscri|darse de baja|cancelar la suscripción"
    r"|abmelden|abbestellen|cancellati|uitschrijven|afmelden",
    re.IGNORECASE,
)
_URL_OR_ADDRESS = re.compile(r"https?://|www\.|@")


def has_list_footer_words(line: str) -> bool:
    """Whether a line says how to leave a list or where to answer a notification."""
    return _LIST_FOOTER.search(line[:MAX_LINE]) is not None


def has_link(line: str) -> bool:
    return _URL_OR_ADDRESS.search(line[:MAX_LINE]) is not None


def is_rule(line: str) -> bool:
    """A line drawn with dashes, underscores, equals signs or stars only (at least two)."""
    stripped = line.strip()
    return len(stripped) >= 2 and not stripped.strip("-_=*~#+—–ᐧ ")
