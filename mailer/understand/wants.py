"""What the sender wants: cancel, register, a certificate, an answer to a question, or nothing.

Hand-written on purpose: the requests are short sentences in three languages whose sense turns
on a verb and a negation close before it ("I will not cancel", "je ne pourrai pas
participer"); small regular expressions over folded text read them, each bounded to a clause.
"""

from __future__ import annotations

import re

from mailer.domain import IntentKind, Participant
from mailer.understand.country import countries_in_text
from mailer.understand.courtesy import only_courtesy
from mailer.understand.prose import people_in_prose
from mailer.understand.who import (
    Sender,
    named_or_sender,
    read_participants,
    registrants,
    registration_reason,
    same_person,
)

# --------------------------------------------------------------------------- the text

# A negation close before a verb flips it ("I will not cancel", "je ne veux pas annuler",
# "no quiero cancelar"). Kept simple on purpose: only the last few words of the same clause
# are looked at, so "No, please cancel my registration" still cancels.
_NEGATION = re.compile(r"\b(?:not|n't|never|no|ne|n'|pas|jamais|nunca|nao)\b|n't|\bn'")
_CLAUSE_END = re.compile(r"[.,;:!?¿¡\n]")


def _negated(folded: str, start: int) -> bool:
    before = folded[max(0, start - 60):start]
    clause = _CLAUSE_END.split(before)[-1]
    window = " ".join(clause.split()[-4:])
    return bool(_NEGATION.search(window)) or clause.endswith("n'")


def _sense(pattern: re.Pattern[str], folded: str, *, negatable: bool = True) -> bool:
    """True when ``pattern`` occurs at least once without a negation just before it."""
    return any(not (negatable and _negated(folded, m.start()))
               for m in pattern.finditer(folded))


def _rx(*parts: str) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in parts), re.M)


_REGISTRATIONS = (r"(?:registration|participation|attendance|inscription|inscripcion|registro"
                  r"|inscricao|participacao)")
# Verbs that withdraw; negatable ("I will not cancel").
_CANCEL_VERB = _rx(
    r"\bcancel+(?:ing|ed)?\b(?: (?:my|our|the|this))? (?:registration|participation|"
    r"attendance|place|seat|spot)",
    r"\b(?:please )?cancel+ (?:me|my|us)\b", r"\bwithdraw (?:my|our|from)\b",
    # Not "To unsubscribe from this list": a mailing-list footer left under the reply.
    r"\bunsubscribe (?:me|us|from)\b(?<!from)|\bunsubscribe from (?!th(?:is|e) (?:list|group|"
    r"mailing|newsletter))|^[ \t]*unsubscribe[ \t]*$",
    r"\bderegister\b|\bunregister\b|\bremove me from\b",
    r"\bannul+(?:er|ez|e|ons)\b(?: (?:mon|ma|notre|l'|la|cette))? ?" + _REGISTRATIONS,
    r"\b(?:me|nous) desinscri\w*", r"\bdesinscri(?:re|vez|ption)\b",
    r"\bretir(?:er|ez) (?:mon|ma|notre)\b",
    r"\b(?:cancel|anul)\w*(?: (?:mi|nuestra|nuestro|el|la|su))? ?" + _REGISTRATIONS,
    r"\bdar(?:me)? de baja\b|\bdesinscribir\w*\b",
    r"\bcancelamento d[ae] (?:minha |nossa )?" + _REGISTRATIONS, r"\bdesistir\b|\bdesisto\b",
    # The keyword our templates ask for ("reply with the word CANCEL"), alone on its line.
    # Within the line: "\W" also matches line ends, and "^\W*" tried at every line start of
    # 64 KB of "!" lines read the rest of the text each time (26 s of CPU).
    r"^[^\w\n]*(?:cancel|annuler|cancelar)[^\w\n]*$",
)
# Adverbs French puts between a verb and its "pas": "je ne pourrai malheureusement pas".
_FR_ADVERBS = r"(?:malheureusement|finalement|helas|donc|probablement|vraisemblablement)"
# Phrases that already contain their negation ("je ne pourrai pas participer").
_CANNOT_ATTEND = _rx(
    r"\b(?:can ?not|can't|cannot|no longer able to|won't be able to|will not be able to|"
    r"unable to|not be able to|can no longer|will no longer) "
    r"(?:attend|participate|join|make it|take part)",
    # "I am no longer available", "I must withdraw". Not "I am not available": it is as often
    # "not available before 10:00", and a cancellation gives the seat away.
    r"\b(?:i am|i'm|we are|we're|i will|i'll|we will|we'll) (?:unfortunately )?(?:be )?"
    r"no longer available\b|\b(?:must|have to|need to) withdraw\b|\btake (?:me|us) off\b",
    # An adverb may sit inside the French negation: "je ne pourrai malheureusement pas".
    r"\bne (?:pourrai|pourrons|peux|pouvons|pourra|pourrais|pourrions|serai|serons)"
    r"(?: " + _FR_ADVERBS + r")? (?:pas|plus) (?:y )?(?:participer|assister|etre present\w*"
    r"|prendre part|me connecter|nous connecter)",
    r"\bne (?:serai|serons|suis|sommes)(?: " + _FR_ADVERBS + r")? (?:pas|plus) en mesure de "
    r"(?:y )?(?:participer|assister|prendre part|me connecter)|\bne (?:serai|serons|suis|"
    r"sommes)(?: " + _FR_ADVERBS + r")? plus disponibles?\b",
    r"\bne (?:me|nous) sera(?: " + _FR_ADVERBS + r")? (?:pas|plus) possible (?:de (?:y )?"
    r"(?:participer|assister|prendre part|me connecter)|d'y (?:participer|assister)"
    r"|d'(?:assister|etre present))",
    r"\b(?:au regret|regrette|regrettons) de ne (?:pas )?pouvoir (?:y )?(?:participer|assister"
    r"|prendre part)|\bje me desiste\b|\bnous nous desistons\b",
    r"\bje ne participerai (?:pas|plus)\b|\b(?:suis|serai|sommes|serons) empeche\w*\b",
    r"\bno (?:podre|podremos|puedo|podra|podria) (?:asistir|participar|conectarme|estar)",
    r"\bya no (?:podre|puedo) (?:asistir|participar)\b",
    r"\bno (?:me|nos) (?:sera|es) posible (?:asistir|participar|conectarme|estar)"
    r"|\bya no (?:estare|estaremos) disponibles?\b",
    r"\bnao (?:poderei|posso|podemos|poderemos|vou poder|conseguirei|irei) (?:mais )?"
    r"(?:participar|comparecer|assistir|estar presente)",
    r"\bnao (?:me |nos )?sera possivel (?:participar|comparecer|assistir|estar presente)",
)
# Someone else takes the sender's place: "please register my colleague ... in my place",
# "X will attend instead", "inscrire à ma place", "pour me remplacer", "en mi lugar", "que me
# sustituya", "no meu lugar", "para me substituir". Negatable ("who cannot replace me").
_IN_MY_PLACE = _rx(
    r"\bin my (?:place|stead)\b|\binstead of me\b|\b(?:to|will|would|can|could|shall) "
    r"replace me\b|\bas my (?:replacement|substitute|alternate)\b|\bmy (?:replacement|"
    r"substitute|alternate) (?:is|will)\b|\b(?:attend|participate|join|take part) "
    r"(?:instead|on my behalf)\b",
    r"\ba ma place\b|\ben (?:mon|ma) (?:remplacement|lieu et place)\b|\b(?:pour|qui|va|"
    r"pourra|pourrait|puisse) me remplac\w*|\bme remplacera\b",
    r"\ben mi (?:lugar|reemplazo|remplazo|sustitucion)\b|\b(?:que|para que|quien|va a|podra)"
    r" me (?:reemplac|remplac|sustitu)\w*|\ben (?:reemplazo|sustitucion) de mi persona\b",
    r"\b(?:em|no) meu lugar\b|\b(?:para|que|quem|vai|ira|podera) me substitu\w*"
    r"|\bsubstituir-me\b|\bem minha substituicao\b",
)
_CERTIFICATE = re.compile(r"\b(?:certific\w*|attestation\w*|constancia\w*|"
                          r"declaracao de (?:participacao|presenca))\b")
# "I have not yet received my certificate": a negation that asks all the same.
_NOT_RECEIVED = re.compile(r"\b(?:not|n'ai pas|pas|no|nao)\s+(?:yet\s+|encore\s+|todavia\s+|"
                           r"aun\s+|ainda\s+)?(?:received|got|recu|recibido|recibi|recebi|"
                           r"recebido)\b")
_QUESTION_START = re.compile(
    r"(?:^|[.!\n]\s*)(?:what|when|where|how|why|which|who|will|is there|are there|can i|"
    r"could you|do you|does|would it|est-ce que?|quel|quelle|quels|quelles|quand|comment|"
    r"pourquoi|combien|y aura-t-il|cuando|como|donde|cual|cuales|por que|habra|hay)\b")
_REGISTER_SENSE = _rx(
    r"\b(?:would like|wish|want|wants|like|wishes|request|intend|plan) to "
    r"(?:register|sign up|enrol+|participate|attend|join|take part)",
    r"\bplease (?:register|enrol+|sign (?:me|us) up|include|add)\b",
    r"\b(?:register|enrol+|sign up|include) (?:me|us|the following|our|my)\b",
    r"\bi (?:will|shall|would) (?:attend|participate|join)\b|\bi am interested\b",
    r"\b(?:confirm|confirming|confirms) (?:my|our|the) (?:participation|attendance|interest)",
    r"\b(?:registration|participant) (?:details|form)\b",
    r"\b(?:souhaite|souhaitons|souhaiterais|souhaiterions|voudrais|voudrions|aimerais|"
    r"desire|desirons|veux|voulons) (?:m'|nous |vous |)(?:inscri\w*|participer|assister)",
    r"\b(?:merci de|veuillez|pourriez-vous|prie de) (?:bien vouloir )?(?:m'|nous |)inscrire",
    r"\bje m'inscris\b|\bnous nous inscrivons\b|\binscri(?:re|ption) (?:de|des|du)\b",
    r"\bconfirm\w* (?:ma|notre) (?:participation|presence)|\bje participerai\b",
    r"\b(?:quisiera|quiero|deseo|deseamos|queremos|quisieramos|me gustaria|desearia|"
    r"solicito) (?:inscribirme|inscribir|registrarme|registrar|participar|asistir)",
    r"\b(?:inscribame|registreme|inscribirme|registrarme|inscribanme)\b",
    r"\bconfirm\w* (?:mi|nuestra) (?:participacion|asistencia)|\basistire\b|\bparticipare\b",
    r"\b(?:delegation|delegacion)\b",
    # Free text: "count me in", "I'll be there", "please accept this email as my registration",
    # "Kenya nominates the following officials", "je serai présente", "solicito se me
    # registre", "gostaria de participar", "seguem os dados dos participantes".
    r"\b(?:i|we) (?:hereby )?(?:register|confirm)\b|\bhereby register\b|\bregister(?:ing)? "
    r"(?:for|to) (?:the|this|your)\b|\b(?:find|see) (?:below|attached|hereunder) (?:the |my |our )?"
    r"(?:details|particulars)\b|\bdetails of (?:the |our )?(?:participants?|nominees?|"
    r"delegates?|officers?|officials?)\b|\binteres(?:t|se|ado|ada|sado|sada) (?:em|en|in|pour)"
    r" (?:participar|participating|attending|le webinaire|participer)\b|"
    r"\bconfirm\w* (?:la |a )?(?:participacion|asistencia|participacao|presenca) de(?:l| la| "
    r"los)?\b|\bcount (?:me|us) in\b",
    r"\b(?:i|we)(?: will|'ll| shall) be (?:there|attending|joining)\b",
    r"\b(?:would be|am|are) (?:glad|happy|pleased|delighted) to (?:attend|participate|join)",
    r"\baccept this (?:e-?mail|message|reply) as (?:my|our) registration\b",
    r"\bnominat\w* (?:the following|as follows)\b|\bthe following (?:officials|officers|"
    r"participants|persons|delegates|colleagues|people)\b|\bmy details for registration\b",
    r"\bje serai present\w*\b|\bnous serons presents?\b|\b(?:pour|en vue de) (?:mon |notre |"
    r"l')inscription\b|\bparticipants? (?:suivants?|ci-apres|\w+ais) (?:au|a la|pour)\b"
    r"|\bliste des participants\b|\b(?:inscrire|inscription de) (?:les|nos|mes)\b",
    r"\bsolicito (?:se me (?:registre|inscriba)|mi inscripcion|(?:el|mi) registro)\b"
    r"|\bcuenten conmigo\b|\bdatos para (?:la|mi) inscripcion\b|\bmis datos\b",
    r"\bgostaria de (?:me inscrever|participar|solicitar a (?:minha )?inscricao)"
    r"|\bconfirm\w* (?:a )?(?:minha |nossa )?(?:participacao|presenca)\b"
    r"|\bsolicito (?:a )?(?:minha )?inscricao\b|\btenho interesse em participar\b"
    r"|\bquero (?:me inscrever|participar)\b|\binscrevam-me\b|\bme inscrevam\b"
    r"|\bseguintes participantes\b|\bdados dos participantes\b|\bparticiparei\b"
    r"|\bestarei presente\b|\bseguem (?:os )?meus dados\b",
    # Others will attend: "participarán la licenciada ...", "participeront", "participarão".
    r"\b(?:participaran|participara|participeront|participarao|will (?:participate|attend))"
    r"\b",
)
# "I am from Ghana", "je suis du Togo", "soy de Honduras", "sou de Angola", "my country is".
_FROM_COUNTRY = re.compile(
    r"\b(?:i am|i'm|we are|i come|je suis|je viens|nous sommes|soy|vengo|somos|sou|venho)"
    r" (?:from|du|de la|de l'|des|d'|de|do|da|dos|das)\b|\b(?:my country is|mon pays est|"
    r"mi pais es|meu pais e)\b")


def classify(text: str, folded: str, sender: str | Sender
              ) -> tuple[IntentKind, tuple[Participant, ...], bool, str]:
    """Kind, participants, certificate flag and reason from what the sender wrote.

    A substitution comes first (the sender withdraws, the people written take their place),
    then cancellation (a withdrawal quoting its own form is still a withdrawal);
    filled form fields make a registration even when the text also mentions a certificate,
    which then sets the certificate flag; a certificate alone is a certificate request.
    A reply that only thanks or acknowledges ("Bien reçu, merci") is ``thanks``: nothing
    to answer.
    A reply that only says who the sender is ("I am from Ghana, not Kenya", "My name is
    ...") is a registration too: it completes or corrects one (see ``rules``).
    """
    if isinstance(sender, str):
        sender = Sender(sender)
    if not folded.strip():
        return IntentKind.UNKNOWN, (), False, "empty reply"
    if _sense(_IN_MY_PLACE, folded):
        participants = _substitutes(text, sender)
        reason = (registration_reason(participants, sender.address).replace(
            "registration", "substitution", 1) if participants
            else "substitution: nobody readable named to take the place")
        return IntentKind.SUBSTITUTION, participants, False, reason
    if _sense(_CANCEL_VERB, folded) or _sense(_CANNOT_ATTEND, folded, negatable=False):
        return (IntentKind.CANCELLATION, named_or_sender(text, sender.address), False,
                "cancellation")
    certificate = _sense(_CERTIFICATE, folded) or bool(
        _NOT_RECEIVED.search(folded) and _CERTIFICATE.search(folded))
    registering = _sense(_REGISTER_SENSE, folded)
    records = read_participants(text)
    if not registering and sum(r.loose for r in records) < 2:
        # One "Name, Ministry, Country" line alone is more likely a signature than a form.
        records = [r for r in records if not r.loose]
    if records or registering:
        participants = registrants(text, records, sender)
        return (IntentKind.REGISTRATION, participants, certificate,
                registration_reason(participants, sender.address))
    if certificate:
        return (IntentKind.CERTIFICATE_REQUEST, named_or_sender(text, sender.address), True,
                "certificate request")
    if "?" in folded or _QUESTION_START.search(folded):
        return IntentKind.QUESTION, (), False, "question"
    if _introduces(text, folded):
        participants = registrants(text, [], sender)
        return (IntentKind.REGISTRATION, participants, False,
                registration_reason(participants, sender.address))
    if only_courtesy(text):
        return IntentKind.THANKS, (), False, "thanks or acknowledgement only"
    return IntentKind.UNKNOWN, (), False, "no request recognised"


def _substitutes(text: str, sender: Sender) -> tuple[Participant, ...]:
    """The people a substitution names to take the sender's place, read as a registration's
    (forms, list lines, or a colleague described in a sentence); never the sender."""
    records = read_participants(text)
    if sum(r.loose for r in records) < 2:
        records = [r for r in records if not r.loose]   # a signature line, not a form
    people = registrants(text, records, sender)
    return tuple(p for p in people if p.email != sender.address
                 and (p.email or not sender.name or not same_person(p.name, sender.name)))


def _introduces(text: str, folded: str) -> bool:
    """Whether the sender says who they are or where they are from, and nothing else."""
    if _FROM_COUNTRY.search(folded) and countries_in_text(text):
        return True
    return any(p.source == "introduction" for p in people_in_prose(text))

