"""Whether a reply only thanks or acknowledges ("Bien reçu, merci beaucoup.", "Noted with thanks").

Such a reply asks for nothing, so it gets no answer at all. Hand-written on purpose: no
library tells a courtesy from a request, and the rule must be conservative, since a reply
wrongly taken for a courtesy is silenced. So a reply is one only when every word of it is a
word of thanks, acknowledgement, greeting or leave-taking (English, French, Spanish,
Portuguese), a name (a few capitalised words), or a short signature below it; anything else
("Thanks, but my colleague will replace me"), a question mark or a country named outside a
signature (it may be a correction: "Ghana, thanks") means it is not. Pure, and linear in
the text's length.
"""

from __future__ import annotations

import re

from mailer.understand.country import countries_in_text
from mailer.understand.folding import fold, wordset

MAX_CHARS = 600          # a courtesy is short; a long reply is read by a person
MAX_SIGNATURE_LINES = 6  # name, position, institution, country, telephone...

# At least one of these must be there: what makes the reply a thanks or an acknowledgement.
_MARKERS = wordset("""
    thank thanks thankyou thx noted received acknowledged acknowledge appreciated ok okay
    perfect got merci remercie remercions recu recue recus recues note notee entendu accord
    parfait gracias agradezco agradecemos recibido recibida recibidos recibidas anotado
    entendido vale perfecto obrigado obrigada agradeco recebido recebida recebidos ciente
    perfeito
""")
# Words a courtesy is made of besides the markers: thanks, greetings, leave-taking and the
# small words between them. No verb that asks, no negation, no pronoun "I": a line with any
# other word is read as saying something.
_COURTESY = _MARKERS | wordset("""
    you very much many so a lot lots kindly well receipt duly with for the your this that
    message email e mail mails information info invitation confirmation reply response note
    great fine good excellent wonderful it and all again greatly much dear hi hello morning
    afternoon evening day week regards best kind kindest warm warmest sincerely yours
    faithfully truly cheers see then looking forward to have nice
    beaucoup bien pris bonne c est ca d daccord tres infiniment mille pour votre vos le la les
    l de du des un une message mail courriel retour reponse bonjour bonsoir madame monsieur
    mesdames messieurs cher chere chers cheres cordialement a vous salutations sinceres
    meilleures respectueusement journee soiree et encore tout bon je nous remerciements
    muchas muchisimas mil bien de acuerdo tomo tomamos nota por su sus el los las mensaje
    correo confirmacion informacion invitacion respuesta hola buenos buenas dias tardes noches
    estimado estimada estimados estimadas saludos cordiales atentamente cordialmente un
    saludo muy amable le les lo y nuevamente
    muito muitissimo muita bem certo pela pelo sua seu o os as mensagem convite resposta ola
    bom boa tarde noite prezado prezada prezados caro cara atenciosamente abracos abraco
    saudacoes novo e
""")
# Capitalised words that are not names: they start what a person says ("Yes, thanks" answers
# something; "But ...", "Please ...", "Tomorrow ...").
_NOT_NAMES = wordset("""
    i yes no not but please however also we my our will can could would should may might
    must when where what why how who which if tomorrow today yesterday attached here there
    oui non mais nous mon ma notre pouvez pourriez demain aujourd hier ci joint si
    si sim nao mas mi nuestra nuestro manana hoy ayer adjunto aqui
    meu minha nossa amanha hoje ontem anexo
""")
# Small words between the capitalised ones of a signature ("Ministère de la Justice").
_CONNECTORS = wordset("of the and for de la le les du des d l et y e del los las da do dos das")
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)
_ADDRESS_OR_LINK = re.compile(r"\S+@\S+|\b(?:https?://|www\.)\S+")


def only_courtesy(text: str) -> bool:
    """True when ``text`` (the reply, without its quote) only thanks or acknowledges."""
    if len(text) > MAX_CHARS or "?" in text or "¿" in text:
        return False
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    polite = 0
    while polite < len(lines) and _polite(lines[polite]):
        polite += 1
    if polite == 0 or not any(_MARKERS.intersection(_words(line)) for line in lines[:polite]):
        return False
    signature = lines[polite:]
    if len(signature) > MAX_SIGNATURE_LINES or not all(_signature(s) for s in signature):
        return False
    # A country named may be a correction ("Ghana, thanks"): a person reads it. In a
    # signature of two lines or more (a name, then a ministry, a country) it is an address.
    read = lines[:polite] if len(signature) >= 2 else lines
    return not countries_in_text("\n".join(read))


def _words(line: str) -> list[str]:
    return [fold(w) for w in _WORD.findall(_ADDRESS_OR_LINK.sub(" ", line))]


def _polite(line: str) -> bool:
    """A line of courtesy words, with at most three capitalised words (a name: "Dear Anna");
    a line of names alone is a signature's."""
    names = courtesy = 0
    for word in _WORD.findall(line):
        folded = fold(word)
        if folded in _COURTESY:
            courtesy += 1
        elif _is_name(word, folded):
            names += 1
        else:
            return False
    return courtesy > 0 and names <= 3


def _signature(line: str) -> bool:
    """A line of a signature: capitalised words and their connectors, numbers, an address."""
    words = _WORD.findall(_ADDRESS_OR_LINK.sub(" ", line))
    if len(words) > 8:
        return False
    return all(fold(w) in _CONNECTORS or fold(w) in _COURTESY and w[0].isupper()
               or _is_name(w, fold(w)) for w in words)


def _is_name(word: str, folded: str) -> bool:
    return len(word) >= 2 and word[0].isupper() and folded not in _NOT_NAMES
