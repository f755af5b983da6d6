"""Understanding one inbound email: the pure function that turns it into one ``Intent``.

Order of the checks: automatic mail (bounces, auto-replies), calendar replies, then what the
sender wrote (quote and signature removed): cancellation, registration, certificate request,
question, unknown. The event is found from the address, the subject, the thread, the words of
the reply, or because only one event is open. Nothing here reads the clock, the network or
the database; malformed mail gives an ``unknown`` intent, never an exception.

Hand-written parts, and why: registration replies are short, semi-structured forms ("Nom :
Awa Diop") in three languages; no library reads labelled fields or delegation lists, so small
regular expressions over accent-folded, casefolded lines do it. Language detection is a scored
word list: statistical detectors (langdetect-type; none is installed here) are unreliable on
five-line replies made mostly of names and labels, while the labels themselves are a very
good signal.
"""

from __future__ import annotations

import copy
import email
import email.policy
import hashlib
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from email.message import EmailMessage
from email.policy import EmailPolicy, linesep_splitter  # the splitter policy.default uses
from email.utils import getaddresses, parseaddr
from functools import lru_cache
from typing import Any

from icalendar import Calendar

from mailer.automail import classify_automatic
from mailer.countries import resolve_country
from mailer.domain import (
    Intent,
    IntentKind,
    Participant,
    event_of_message_id,
    normalise_email,
)
from mailer.reply import reply_text
from mailer.schedule import Catalog, Event

MAX_ANALYSED = 100_000      # characters of reply text analysed: keeps hostile mail linear
MAX_TEXT = 5_000            # characters of reply text kept in the intent
MAX_LINE = 1_000            # longer lines are not forms: only their start is read for fields
MAX_VALUE = 200             # a field value longer than this is cut
MAX_ICS = 1_000_000         # calendar parts larger than this are not parsed
MAX_RECORDS = 100           # participants read from one reply (a delegation is a few people)
MAX_ROW_TRIES = 200         # lines tried as "name, position, ..." rows (each resolves countries)
MAX_PART = 300_000          # encoded characters read of each body part (whole lines kept)
LANGUAGES = ("en", "fr", "es")


def _wordset(words: str) -> frozenset[str]:
    return frozenset(words.split())


_DEFAULT_HEADERS = email.policy.default.header_factory
_SHARED_HEADERS = 256        # parsed headers kept across messages (about 3 MB at most)
_SHARED_LONGEST = 998        # longer header values are parsed anew at each read, as before


@lru_cache(maxsize=_SHARED_HEADERS)
def _parsed_header(name: str, value: str) -> Any:
    return _DEFAULT_HEADERS(name, value)


class _ReadOncePolicy(EmailPolicy):
    """``email.policy.default``, except that a header is parsed once, not at every read.

    Under policy.default every ``msg.get(...)`` builds a new header object with the full RFC
    5322 parser, and reading one reply asks for the same few headers (Content-Type above all:
    every ``get_content_type``) a dozen times, while To and Content-Type repeat from message
    to message; that parsing was a fifth of handling a reply. Header objects are immutable,
    so the one already built for the same name and value is exactly what policy.default
    would build again. Its settings and header registry are the default's.
    """

    def header_fetch_parse(self, name: str, value: str) -> Any:
        """What EmailPolicy.header_fetch_parse gives, from a bounded cache."""
        if hasattr(value, "name"):
            return value
        # As EmailPolicy.header_fetch_parse: line separators out, then the header registry.
        value = "".join(linesep_splitter.split(value))
        if len(value) > _SHARED_LONGEST:
            return self.header_factory(name, value)
        return _parsed_header(name, value)


_POLICY = _ReadOncePolicy(header_factory=_DEFAULT_HEADERS)


def parse_message(raw: bytes) -> EmailMessage:
    """``raw`` parsed exactly as with policy.default, each header parsed at most once."""
    # policy.default (and this policy) makes every message an EmailMessage.
    return email.message_from_bytes(raw, policy=_POLICY)  # type: ignore[return-value]


def read(raw: bytes, catalog: Catalog, *, now: datetime, inbox_address: str, max_bytes: int,
         size: int | None, message_id: str) -> Intent | str:
    """What one raw message asks for, or why it cannot be read (then it is quarantined).

    ``size`` is the size the server gave (the body of a message over the limit was not
    downloaded). Never raises, and needs no store, so a worker process can do it
    (``mailer.workers``).
    """
    if not raw:
        return f"too large ({size} bytes) or empty: not downloaded"
    if len(raw) > max_bytes:
        return f"too large ({len(raw)} bytes, limit {max_bytes})"
    try:
        # The intent carries ``message_id``: understand never reads the header again.
        return understand(raw, catalog, now=now, inbox_address=inbox_address,
                          message_id=message_id)
    except Exception as exc:  # noqa: BLE001 - one bad message must never stop the loop
        return f"could not be read: {type(exc).__name__}: {exc}"[:500]


def understand(raw: bytes, catalog: Catalog, *, now: datetime, inbox_address: str,
               message_id: str | None = None) -> Intent:
    """What one raw inbound message asks for; malformed mail gives an ``unknown`` intent.

    ``message_id``: the id the caller already knows the message by (its Message-ID, or the
    stand-in for mail without one); the intent carries it, and the header is not read again.
    """
    if not isinstance(raw, bytes | bytearray | memoryview):
        raw = str(raw).encode("utf-8", "replace")
    fallback_id = message_id or _digest_id(bytes(raw))
    try:
        msg = parse_message(raw)
    except Exception as exc:  # the parser is lenient, but a crash here must not stop the daemon
        return _unreadable("", fallback_id, exc)
    return understand_message(msg, catalog, now=now, inbox_address=inbox_address,
                              fallback_id=fallback_id, message_id=message_id)


def understand_message(msg: EmailMessage, catalog: Catalog, *, now: datetime,
                       inbox_address: str, fallback_id: str | None = None,
                       message_id: str | None = None) -> Intent:
    """What one parsed message asks for; ``fallback_id`` names it when it has no Message-ID,
    and a known ``message_id`` (see ``understand``) is used instead of its header."""
    sender = ""
    known = message_id
    message_id = known or fallback_id or ""
    try:
        sender = _sender(msg)
        message_id = known or _message_id(msg) or fallback_id or _digest_id(_safe_bytes(msg))
        return _understand(_bounded(msg), catalog, now, inbox_address, sender, message_id)
    except Exception as exc:  # hostile mail: any failure to read it is an answerable "unknown"
        return _unreadable(sender, message_id or _digest_id(b""), exc)


def fold(text: str) -> str:
    """Casefolded text without accents, with typographic quotes and spaces made plain."""
    return _fold_with_map(text)[0]


# --------------------------------------------------------------------------- the steps


def _understand(msg: EmailMessage, catalog: Catalog, now: datetime, inbox: str, sender: str,
                message_id: str) -> Intent:
    subject = _clean_header(_header(msg, "Subject"))
    references = _references(msg)
    base = Intent(kind=IntentKind.UNKNOWN, sender=sender, message_id=message_id,
                  subject=subject, references=references)
    header_event = _event_from_headers(msg, catalog, inbox, subject, references)

    automatic = classify_automatic(msg)
    if automatic is not None:
        kind = IntentKind.BOUNCE if automatic.kind == "bounce" else IntentKind.AUTO_REPLY
        return _with(base, kind=kind, event_id=header_event,
                     bounced=tuple(normalise_email(a) for a in automatic.bounced),
                     bounce_temporary=bool(automatic.temporary), reason=automatic.reason)

    text = reply_text(msg)[:MAX_ANALYSED]
    folded = fold(text)
    language = _language(folded)
    calendar = _calendar_reply(msg, sender, subject, catalog)
    if calendar is not None:
        event_id = calendar.event_id or header_event
        found = _EventChoice(event_id) if event_id else _event_from_text(folded, catalog, now)
        return _finish(base, catalog, found, language or calendar.language,
                       kind=IntentKind.CALENDAR_REPLY, partstat=calendar.partstat,
                       participants=(Participant(email=calendar.attendee or sender),),
                       reason=f"calendar reply {calendar.partstat} ({calendar.source})",
                       text=text[:MAX_TEXT])

    found = _EventChoice(header_event) if header_event else _event_from_text(folded, catalog, now)
    kind, participants, certificate, reason = _classify(text, folded, sender)
    return _finish(base, catalog, found, language, kind=kind, participants=participants,
                   certificate=certificate, reason=reason, text=text[:MAX_TEXT])


def _finish(base: Intent, catalog: Catalog, found: _EventChoice, language: str | None,
            *, reason: str, **changes: object) -> Intent:
    """Add the event, the language (falling back to the event's, then English) and the reason."""
    if found.event_id is None and found.why:
        reason = f"{reason}; {found.why}"
    event = catalog.events.get(found.event_id) if found.event_id else None
    lang = language or (event.language if event else None) or "en"
    return _with(base, event_id=found.event_id, candidates=found.candidates, language=lang,
                 reason=reason, **changes)


def _with(intent: Intent, **changes: object) -> Intent:
    return replace(intent, **changes)  # type: ignore[arg-type]


def _bounded(msg: EmailMessage) -> EmailMessage:
    """``msg``, or a copy with every body part cut to its first ``MAX_PART`` characters.

    Bounce detection and quote removal scan whole parts; on a 20 MB body they take half a
    minute, while everything that matters (a reply, a DSN, an .ics) sits in the first lines.
    """
    large = [i for i, part in enumerate(msg.walk()) if not part.is_multipart()
             and isinstance(part.get_payload(), str) and len(part.get_payload()) > MAX_PART]
    if not large:
        return msg
    trimmed = copy.deepcopy(msg)
    for index, part in enumerate(trimmed.walk()):
        if index in large:
            payload = part.get_payload()[:MAX_PART]
            # Whole lines, so base64 and quoted-printable still decode.
            part.set_payload(payload[:payload.rfind("\n") + 1] or payload)
    return trimmed


def _unreadable(sender: str, message_id: str, exc: BaseException) -> Intent:
    why = f"{type(exc).__name__}: {exc}"
    why = re.sub(r"\s+", " ", why)[:200]
    return Intent(kind=IntentKind.UNKNOWN, sender=sender, message_id=message_id,
                  reason=f"unreadable: {why}")


# --------------------------------------------------------------------------- headers


def _digest_id(raw: bytes) -> str:
    return f"<{hashlib.sha256(raw).hexdigest()}@no-message-id>"


def _safe_bytes(msg: EmailMessage) -> bytes:
    try:
        return msg.as_bytes()
    except Exception:  # a message that cannot be serialised still needs a stable-ish name
        return repr(msg.items()).encode("utf-8", "replace")


def _header(msg: EmailMessage, name: str) -> str:
    """One header's decoded text; its raw text when it cannot be decoded."""
    try:
        return str(msg.get(name, "") or "")
    except Exception:  # a malformed encoded word must not make the whole message unreadable
        for key, value in msg.raw_items():
            if key.lower() == name.lower():
                return str(value)
        return ""


def _clean_header(value: object) -> str:
    """A header as one line of text: folded lines joined, control characters removed."""
    text = str(value or "")[:MAX_LINE * 2]
    return re.sub(r"[\x00-\x1f\x7f\u2028\u2029\s]+", " ", text).strip()


def _sender(msg: EmailMessage) -> str:
    """The From address (Reply-To is not trusted to name the participant)."""
    try:
        header = msg.get("From")
        addresses = getattr(header, "addresses", ())
    except Exception:  # undecodable header: read the address from its raw text below
        header, addresses = _header(msg, "From"), ()
    if not header:
        return ""
    for address in addresses:
        if address.addr_spec and "@" in address.addr_spec:
            return normalise_email(address.addr_spec)
    _name, addr = parseaddr(_clean_header(header))
    return normalise_email(addr) if "@" in addr else ""


def _message_id(msg: EmailMessage) -> str:
    return _clean_header(_header(msg, "Message-ID"))[:998]


_ID = re.compile(r"<[^<>\s]{1,500}>")


def _references(msg: EmailMessage) -> tuple[str, ...]:
    """Message-IDs the message answers: In-Reply-To first, then References, newest first."""
    out: list[str] = []
    in_reply_to = _ID.findall(_clean_header(_header(msg, "In-Reply-To")))
    refs = _ID.findall(_clean_header(_header(msg, "References")))
    for mid in [*in_reply_to, *reversed(refs)][:100]:
        if mid not in out:
            out.append(mid)
    return tuple(out)


def _recipients(msg: EmailMessage) -> list[str]:
    values: list[str] = []
    for name in ("To", "Cc", "Delivered-To", "X-Original-To"):
        values += [_clean_header(v) for v in (msg.get_all(name) or [])]
    return [normalise_email(addr) for _n, addr in getaddresses(values)[:200] if "@" in addr]


_SUBJECT_TAG = re.compile(r"\[([a-z0-9][a-z0-9-]{0,80})\]")


def _event_from_headers(msg: EmailMessage, catalog: Catalog, inbox: str, subject: str,
                        references: Iterable[str]) -> str | None:
    """The event named by a plus-tag address, a ``[tag]`` in the subject, or the thread."""
    local, _, domain = normalise_email(inbox).partition("@")
    for address in _recipients(msg):
        rlocal, _, rdomain = address.partition("@")
        base, plus, tag = rlocal.partition("+")
        if plus and base == local and rdomain == domain and tag in catalog.events:
            return tag
    for tag in _SUBJECT_TAG.findall(subject.lower()):
        if tag in catalog.events:
            return tag
    for mid in references:
        event_id = event_of_message_id(mid)
        if event_id in catalog.events:
            return event_id
    return None


# --------------------------------------------------------------------------- folding


_PLAIN = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u00b4": "'",
                        "`": "'", "\u201c": '"', "\u201d": '"', "\u00ab": '"', "\u00bb": '"',
                        "\u2013": "-", "\u2014": "-", "\u2010": "-", "\u2011": "-",
                        "\uff1a": ":", "\u00a0": " ", "\u202f": " ", "\u2007": " "})


def _fold_with_map(text: str) -> tuple[str, list[int]]:
    """``fold(text)`` and, for each folded character, the index of its source character."""
    if text.isascii():
        return text.lower().translate(_PLAIN), list(range(len(text) + 1))
    out: list[str] = []
    where: list[int] = []
    for index, char in enumerate(text):
        for part in unicodedata.normalize("NFKD", char.translate(_PLAIN).casefold()):
            if not unicodedata.combining(part):
                out.append(part.translate(_PLAIN))
                where.append(index)
    where.append(len(text))
    return "".join(out), where


# --------------------------------------------------------------------------- language

# Words frequent in one language and rare in the other two (after accent folding); form labels
# are included because replies are often nothing but a filled form.
_WORDS: dict[str, frozenset[str]] = {
    "en": _wordset("""the and to of is are i my we our please would like will thank thanks
        you your name names full first last surname country position organization email
        register registration attend attending with for regards dear hello hi best can could
        webinar this that not be have need cancel certificate kind sincerely ministry title
        function yes recorded link when what how where which who there
        session participate join here below following"""),
    "fr": _wordset("""le les des du et je nous vous mon ma mes notre nos est sont pour avec
        merci bonjour cordialement madame monsieur nom noms prenom prenoms pays fonction poste
        courriel adresse electronique inscription inscrire participer pas ne une un au aux sur
        dans qui ce cette souhaite souhaiterais voudrais webinaire pourriez quel quelle bien
        veuillez annuler ministere organisme certificat lien sera salutations suis etre serai
        pourrai aussi ci-dessous suivants oui avez"""),
    "es": _wordset("""el los las y yo mi mis nosotros nuestro nuestra es son para con gracias
        hola saludos atentamente estimado estimados estimada senor senora nombre nombres
        apellido apellidos pais cargo puesto correo inscripcion inscribirme participar una
        uno por favor del al muy quisiera podrian habra webinario seminario cordiales
        ministerio organizacion institucion certificado enlace sera estoy podre asistir
        tambien siguientes anule cancelo"""),
}
_WORD = re.compile(r"[a-z][a-z'-]*")


def _language(folded: str) -> str | None:
    """en, fr or es from the words used; None when no language clearly leads."""
    scores = dict.fromkeys(LANGUAGES, 0)
    for word in _WORD.findall(folded[:20_000]):
        for part in {word, *word.split("'")}:
            for lang in LANGUAGES:
                if part in _WORDS[lang]:
                    scores[lang] += 1
    if "¿" in folded or "¡" in folded:
        scores["es"] += 2
    ranked = sorted(scores.items(), key=lambda item: item[1], reverse=True)
    if ranked[0][1] == 0 or ranked[0][1] == ranked[1][1]:
        return None
    return ranked[0][0]


# --------------------------------------------------------------------------- calendar


@dataclass(frozen=True)
class _CalendarReply:
    partstat: str
    event_id: str | None
    attendee: str
    source: str
    language: str | None = None


_UID = re.compile(r"([a-z0-9][a-z0-9-]*)\.[0-9a-f]+@.+")
_PARTSTATS = ("ACCEPTED", "DECLINED", "TENTATIVE")
# Subjects Outlook and Gmail give their calendar answers, folded; tentative forms first because
# "Accepté provisoirement" starts like "Accepté".
_CALENDAR_SUBJECTS: tuple[tuple[str, str, str], ...] = (
    ("TENTATIVE", "en", r"tentatively accepted|tentative|maybe"),
    ("TENTATIVE", "fr", r"accepte provisoirement|provisoire|peut-etre|invitation acceptee "
                        r"provisoirement"),
    ("TENTATIVE", "es", r"aceptad[oa] provisionalmente|provisional|tentativo|quizas"),
    ("ACCEPTED", "en", r"accepted|invitation accepted"),
    ("ACCEPTED", "fr", r"accepte|invitation acceptee"),
    ("ACCEPTED", "es", r"aceptad[oa]|invitacion aceptada"),
    ("DECLINED", "en", r"declined|invitation declined"),
    ("DECLINED", "fr", r"refuse|decline|invitation refusee"),
    ("DECLINED", "es", r"rechazad[oa]|invitacion rechazada"),
)


def _calendar_reply(msg: EmailMessage, sender: str, subject: str,
                    catalog: Catalog) -> _CalendarReply | None:
    """A METHOD:REPLY calendar part, or an Outlook/Gmail "Accepted: ..." subject."""
    for part in _calendar_parts(msg):
        found = _ics_reply(part, sender, catalog)
        if found is not None:
            return found
    head = fold(subject)
    for partstat, lang, words in _CALENDAR_SUBJECTS:
        if re.match(rf"(?:{words})\s*:", head):
            return _CalendarReply(partstat, None, sender, "subject", lang)
    return None


def _calendar_parts(msg: EmailMessage) -> Iterator[str]:
    for count, part in enumerate(msg.walk()):
        if count > 200:
            return
        if part.get_content_type() in ("text/calendar", "application/ics"):
            try:
                content = part.get_content()
            except Exception:  # a broken part is skipped, the rest is still read
                continue
            if isinstance(content, bytes):
                content = content.decode("utf-8", "replace")
            if isinstance(content, str) and len(content) <= MAX_ICS:
                yield content


def _ics_reply(text: str, sender: str, catalog: Catalog) -> _CalendarReply | None:
    try:
        cal = Calendar.from_ical(text)
    except Exception:  # icalendar raises ValueError and others on malformed input
        return None
    if str(cal.get("METHOD", "")).strip().upper() != "REPLY":
        return None
    for vevent in cal.walk("VEVENT"):
        attendees = vevent.get("ATTENDEE", [])
        if not isinstance(attendees, list):
            attendees = [attendees]
        chosen: tuple[str, str] | None = None
        for attendee in attendees:
            partstat = str(getattr(attendee, "params", {}).get("PARTSTAT", "")).upper()
            address = normalise_email(re.sub(r"(?i)^mailto:", "", str(attendee)))
            if partstat in _PARTSTATS and (chosen is None or address == sender):
                chosen = (partstat, address)
        if chosen is None:
            continue
        uid = str(vevent.get("UID", "")).strip().lower()
        match = _UID.fullmatch(uid)
        event_id = match.group(1) if match and match.group(1) in catalog.events else None
        return _CalendarReply(chosen[0], event_id, chosen[1] or sender, "calendar")
    return None


# --------------------------------------------------------------------------- the text

# A negation close before a verb flips it ("I will not cancel", "je ne veux pas annuler",
# "no quiero cancelar"). Kept simple on purpose: only the last few words of the same clause
# are looked at, so "No, please cancel my registration" still cancels.
_NEGATION = re.compile(r"\b(?:not|n't|never|no|ne|n'|pas|jamais|nunca)\b|n't|\bn'")
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


_REGISTRATIONS = r"(?:registration|participation|attendance|inscription|inscripcion|registro)"
# Verbs that withdraw; negatable ("I will not cancel").
_CANCEL_VERB = _rx(
    r"\bcancel+(?:ing|ed)?\b(?: (?:my|our|the|this))? (?:registration|participation|"
    r"attendance|place|seat|spot)",
    r"\b(?:please )?cancel+ (?:me|my|us)\b", r"\bwithdraw (?:my|our|from)\b",
    # Not "To unsubscribe from this list": a mailing-list footer left under the reply.
    r"\bunsubscribe (?:me|us|from)\b(?<!from)|\bunsubscribe from (?!th(?:is|e) (?:list|group|"
    r"mailing|newsletter))|^\s*unsubscribe\s*$",
    r"\bderegister\b|\bunregister\b|\bremove me from\b",
    r"\bannul+(?:er|ez|e|ons)\b(?: (?:mon|ma|notre|l'|la|cette))? ?" + _REGISTRATIONS,
    r"\b(?:me|nous) desinscri\w*", r"\bdesinscri(?:re|vez|ption)\b",
    r"\bretir(?:er|ez) (?:mon|ma|notre)\b",
    r"\b(?:cancel|anul)\w*(?: (?:mi|nuestra|nuestro|el|la|su))? ?" + _REGISTRATIONS,
    r"\bdar(?:me)? de baja\b|\bdesinscribir\w*\b",
    # The keyword our templates ask for ("reply with the word CANCEL"), alone on its line.
    r"^\W*(?:cancel|annuler|cancelar)\W*$",
)
# Phrases that already contain their negation ("je ne pourrai pas participer").
_CANNOT_ATTEND = _rx(
    r"\b(?:can ?not|can't|cannot|no longer able to|won't be able to|will not be able to|"
    r"unable to|not be able to|can no longer|will no longer) "
    r"(?:attend|participate|join|make it|take part)",
    r"\bne (?:pourrai|pourrons|peux|pourra|pourrais|serai|serons) (?:pas|plus) "
    r"(?:participer|assister|etre present|y assister|prendre part|me connecter)",
    r"\bje ne participerai (?:pas|plus)\b|\b(?:suis|serai|sommes|serons) empeche\w*\b",
    r"\bno (?:podre|podremos|puedo|podra|podria) (?:asistir|participar|conectarme|estar)",
    r"\bya no (?:podre|puedo) (?:asistir|participar)\b",
)
_CERTIFICATE = re.compile(r"\b(?:certific\w*|attestation\w*|constancia\w*)\b")
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
)


def _classify(text: str, folded: str, sender: str
              ) -> tuple[IntentKind, tuple[Participant, ...], bool, str]:
    """Kind, participants, certificate flag and reason from what the sender wrote.

    Cancellation comes first (a withdrawal quoting its own form is still a withdrawal);
    filled form fields make a registration even when the text also mentions a certificate,
    which then sets the certificate flag; a certificate alone is a certificate request.
    """
    if not folded.strip():
        return IntentKind.UNKNOWN, (), False, "empty reply"
    if _sense(_CANCEL_VERB, folded) or _sense(_CANNOT_ATTEND, folded, negatable=False):
        return (IntentKind.CANCELLATION, _named_or_sender(text, sender), False,
                "cancellation")
    certificate = _sense(_CERTIFICATE, folded)
    registering = _sense(_REGISTER_SENSE, folded)
    records = read_participants(text)
    if not registering and sum(r.loose for r in records) < 2:
        # One "Name, Ministry, Country" line alone is more likely a signature than a form.
        records = [r for r in records if not r.loose]
    if records or registering:
        participants = _participants(records, sender)
        return (IntentKind.REGISTRATION, participants, certificate,
                _registration_reason(participants, sender))
    if certificate:
        return (IntentKind.CERTIFICATE_REQUEST, _named_or_sender(text, sender), True,
                "certificate request")
    if "?" in folded or _QUESTION_START.search(folded):
        return IntentKind.QUESTION, (), False, "question"
    return IntentKind.UNKNOWN, (), False, "no request recognised"


_EMAIL = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]{1,64}@[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?"
                    r"(?:\.[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?)+", re.IGNORECASE)


def _named_or_sender(text: str, sender: str) -> tuple[Participant, ...]:
    """The addresses a cancellation or certificate request names, else the sender."""
    named: list[str] = []
    for match in _EMAIL.finditer(text[:20_000]):
        address = normalise_email(match.group(0))
        if address not in named:
            named.append(address)
    return tuple(Participant(email=a) for a in named[:20]) or (Participant(email=sender),)


def _participants(records: list[Record], sender: str) -> tuple[Participant, ...]:
    """Records as participants: a lone record without address is the sender."""
    if not records:
        return (Participant(email=sender),)
    single = len(records) == 1
    out: list[Participant] = []
    for record in records:
        email_addr = record.email or (sender if single else "")
        country_text = record.country
        out.append(Participant(
            email=email_addr, name=record.name, organisation=record.organisation,
            position=record.position, country_text=country_text,
            country=resolve_country(country_text) if country_text else None))
    return tuple(out)


def _registration_reason(participants: tuple[Participant, ...], sender: str) -> str:
    count = len(participants)
    head = "registration" if count == 1 else f"registration of {count} participants"
    gaps: list[str] = []
    for number, p in enumerate(participants, start=1):
        lacks = [label for label, value in (("name", p.name), ("email", p.email),
                                            ("country", p.country)) if not value]
        if p.country_text and not p.country:
            lacks[lacks.index("country"):lacks.index("country") + 1] = [
                f"country ({p.country_text!r} not recognised)"]
        if lacks:
            who = "" if count == 1 else f" for participant {number}"
            gaps.append(f"missing {', '.join(lacks)}{who}")
    if len(gaps) > 5:   # the reason is for people reading a log line
        gaps = [*gaps[:5], f"and {len(gaps) - 5} more incomplete"]
    return "; ".join([head, *gaps])


# --------------------------------------------------------------------------- form fields


@dataclass
class Record:
    """One participant as written in a reply, before the country is resolved."""

    name: str = ""
    first: str = ""
    last: str = ""
    country: str = ""
    organisation: str = ""
    position: str = ""
    email: str = ""
    fields: set[str] = field(default_factory=set)
    loose: bool = False     # read from a bare list line, not from labels or a table

    def set(self, name: str, value: str) -> None:
        setattr(self, name, value)
        self.fields.add(name)

    def finish(self) -> Record:
        """Join first and last names; "Prénom" then "Nom" make one name."""
        if not self.name and (self.first or self.last):
            self.name = " ".join(p for p in (self.first, self.last) if p)
        elif self.first and self.first.casefold() not in self.name.casefold():
            self.name = f"{self.first} {self.name}"
        return self

    @property
    def is_person(self) -> bool:
        return bool(self.name or self.email or (self.country and self.fields - {"country",
                                                                                 "organisation"}))

    @property
    def is_shared(self) -> bool:
        """Only a country and/or organisation: it applies to the whole reply."""
        return bool(self.fields) and self.fields <= {"country", "organisation"}


# Labels per field, as regular expressions over folded text; tried in this order, so "first
# name" is read before "name". Accents are folded ("prénom" is "prenom").
_LABELS: tuple[tuple[str, str], ...] = (
    ("first", r"first ?names?|given names?|forenames?|prenoms?|nombres? de pila"),
    ("last", r"last ?names?|surnames?|family names?|nom de famille|apellidos?"),
    ("name", r"(?:full |your |complete )?names?(?: and surnames?)?(?: of (?:the )?participants?)?"
             r"|participant'?s? names?|nom (?:et|&|/) ?prenoms?|prenoms? (?:et|&|/) ?noms?"
             r"|noms? complets?|noms?(?: du participant)?|nombres? (?:y|&|/) ?apellidos?"
             r"|apellidos? (?:y|&|/) ?nombres?|nombres? completos?|nombres?"
             r"|participante?(?: ?(?:n[o°º]\.? ?)?\d{1,2})?|name/surname"),
    ("country", r"(?:your |home )?country(?: represented| of origin)?|countries|pays"
                r"(?: represente)?|pais|nationality|nationalite|nacionalidad"),
    ("organisation", r"organi[sz]ations?|organismes?|institutions?|institucion|organizacion"
                     r"|ministry|ministere|ministerio|agency|department|departement"
                     r"|departamento|entity|entite|entidad|employer|administration"
                     r"|organi[sz]ation/institution|institution/organi[sz]ation|service"),
    ("position", r"(?:job )?(?:position|title|function)s?|fonctions?|postes?|cargos?|puestos?"
                 r"|titre|designation|rank|grade|role"),
    ("email", r"(?:your )?e-?mail(?: address)?|email address|courriel|adresse (?:electronique"
              r"|e-?mail|mail|courriel)|mail|correo(?: electronico| e| -e|-e)?"
              r"|direccion de correo(?: electronico)?"),
)
_FIELD_NAMES = {name for name, _ in _LABELS}
_BULLET = r"[ \t>*_•·◦▪-]*(?:(?:participant|participante)?\s*(?:n[o°º]\.? ?)?\d{1,2}[.)]\s+)?"
_SEP = r"[ \t]*[*_]*[ \t]*(?:[:=]|\t|-(?= ))[ \t]*[*_]*[ \t]*"
_LABEL_LINES = tuple(
    (name, re.compile(rf"{_BULLET}[*_]*[ \t]*(?:{labels})(?:[ \t]*\([^)]{{0,40}}\))?{_SEP}"))
    for name, labels in _LABELS)
_CELL_LABELS = tuple((name, re.compile(rf"(?:{labels})")) for name, labels in _LABELS)
_NUMBERING = re.compile(r"[ \t>*_#-]*(?:(?:participant|participante|delegate|delegue|delegado)"
                        r"[ \t]*(?:n[o°º]\.? ?)?\d{1,2}|\d{1,2}[.)])[ \t]*[:.)*_-]*[ \t]*")
_TABLE_RULE = re.compile(r"[\s|:+-]+")


def read_participants(text: str) -> list[Record]:
    """Every participant a reply writes: labelled blocks, lines of a list, or rows of a table.

    A field that appears again starts a new participant, as does a numbering line
    ("Participant 2", "2."); a record holding only a country or organisation applies to
    every participant that lacks one.
    """
    records: list[Record] = []
    current = Record()
    header: list[str | None] | None = None
    lines = text.splitlines()
    tries = 0

    def close() -> None:
        nonlocal current
        if current.fields:
            records.append(current.finish())
        current = Record()

    for index, line in enumerate(lines[:5_000]):
        line = line[:MAX_LINE]
        if not line.strip():
            header = None
            continue
        folded, where = _fold_with_map(line)
        cells = _cells(line)
        columns = _table_header(cells)
        if columns is not None:
            close()
            header = columns
            continue
        if header is not None and len(cells) >= 2 and not _TABLE_RULE.fullmatch(line):
            close()
            records.append(_from_columns(header, cells))
            continue
        labelled = _labelled(line, folded, where)
        if labelled is not None:
            name, value = labelled
            if not value and index + 1 < len(lines):
                value = _next_value(lines[index + 1][:MAX_LINE])
            value = _clean_value(name, value)
            if not value:
                continue
            if name in current.fields:
                close()
            current.set(name, value)
            continue
        if _NUMBERING.fullmatch(folded):
            close()
            continue
        if _TABLE_RULE.fullmatch(line) and "|" in line:
            continue
        row = None
        if (len(cells) >= 2 or "<" in line) and tries < MAX_ROW_TRIES:
            tries += 1
            row = _list_row(line, cells)
        if row is not None:
            close()
            records.append(row)
    close()
    return _share_fields([r for r in records if r.is_person or r.is_shared])[:MAX_RECORDS]


def _labelled(line: str, folded: str, where: list[int]) -> tuple[str, str] | None:
    for name, pattern in _LABEL_LINES:
        match = pattern.match(folded)
        if match:
            return name, line[where[match.end()]:] if match.end() < len(where) else ""
    return None


def _next_value(line: str) -> str:
    """The value written under an empty label, unless that line is itself a label."""
    folded, where = _fold_with_map(line)
    if _labelled(line, folded, where) is not None or _NUMBERING.fullmatch(folded):
        return ""
    return line


def _clean_value(name: str, value: str) -> str:
    value = re.sub(r"\s+", " ", value).strip().strip("*_").strip()[:MAX_VALUE]
    value = re.sub(r"^\[(.*?)\]\(mailto:.*\)$", r"\1", value)   # html2text links
    value = value.rstrip(",;").strip()
    if name == "email":
        match = _EMAIL.search(value)
        return normalise_email(match.group(0)) if match else ""
    if "@" in value and name in ("name", "first", "last"):
        return ""   # an address is not a name
    return value


def _share_fields(records: list[Record]) -> list[Record]:
    """Give the country/organisation written once for the whole reply to those lacking it."""
    shared = [r for r in records if r.is_shared and not r.is_person]
    people = [r for r in records if r.is_person]
    if not people and shared:
        people = [shared[0]]    # "Country: Senegal" alone: the sender, from that country
    countries = {r.country for r in records if r.country}
    organisations = {r.organisation for r in shared if r.organisation}
    for person in people:
        if not person.country and len(countries) == 1:
            person.country = next(iter(countries))
        if not person.organisation and len(organisations) == 1:
            person.organisation = next(iter(organisations))
    return people


def _cells(line: str) -> list[str]:
    """A list or table line cut into cells (by |, tab, ; or ,), numbering removed."""
    line = re.sub(r"^[ \t>*_•·◦▪-]*(?:\d{1,2}[.)][ \t]+)?", "", line)
    for sep in ("|", "\t", ";", ","):
        if sep in line:
            cells = [c.strip().strip("*_").strip() for c in line.split(sep)]
            if sep == "|":
                cells = cells[1:] if cells and not cells[0] else cells
                cells = cells[:-1] if cells and not cells[-1] else cells
            return cells[:12]
    return [line.strip()]


def _table_header(cells: list[str]) -> list[str | None] | None:
    """The fields of a table's header row, or None when the cells are not all labels."""
    if len(cells) < 2:
        return None
    columns: list[str | None] = []
    for cell in cells:
        folded = fold(cell).strip(" :")
        name = next((n for n, rx in _CELL_LABELS if rx.fullmatch(folded)), None)
        if name is None:
            return None
        columns.append(name)
    return columns


def _from_columns(columns: list[str | None], cells: list[str]) -> Record:
    record = Record()
    for name, cell in zip(columns, cells, strict=False):
        value = _clean_value(name, cell) if name else ""
        if name and value:
            record.set(name, value)
    return record.finish()


_PARTICLES = _wordset("de da do dos das del della di du van von der den bin ibn al el la le "
                       "y e")
_NAME_WORD = re.compile(r"[^\W\d_][\w'’.-]*")
_ORG_WORDS = re.compile(r"\b(?:ministr|minist[eè]re|ministerio|department|departement|"
                        r"departamento|office|agency|court|tribunal|cour|corte|police|policia|"
                        r"prosecut|parquet|fiscal[ií]a|embassy|ambassade|embajada|mission|"
                        r"misi[oó]n|universit|direction|direcci[oó]n|service|servicio|bureau|"
                        r"national|nacional|justice|justicia|interior|int[eé]rieur|affairs|"
                        r"affaires|asuntos|unit|unidad|unit[eé]|authority|autorit|autoridad|"
                        r"agence|agencia|institut|council|conseil|consejo|commission|comisi)",
                        re.IGNORECASE)
_ANGLE = re.compile(r"\s*(?P<name>[^<>@,;|\t]{2,80}?)\s*<(?P<email>[^<>\s]+@[^<>\s]+)>\s*")


def _name_like(cell: str) -> bool:
    words = cell.split()
    if not 1 <= len(words) <= 6 or len(cell) > 80:
        return False
    return all(_NAME_WORD.fullmatch(w) and (w[0].isupper() or w.lower() in _PARTICLES)
               for w in words)


def _list_row(line: str, cells: list[str]) -> Record | None:
    """One participant written on one line: "Awa Diop, Magistrate, Ministry, awa@x.sn"."""
    angle = _ANGLE.fullmatch(re.sub(r"^[ \t>*_•·◦▪-]*(?:\d{1,2}[.)][ \t]+)?", "", line))
    if angle and _name_like(angle.group("name")):
        record = Record(loose=True)
        record.set("name", _clean_value("name", angle.group("name")))
        record.set("email", _clean_value("email", angle.group("email")))
        return record
    if len(cells) < 2 or not _name_like(cells[0]):
        return None
    record = Record(loose=True)
    record.set("name", _clean_value("name", cells[0]))
    rest: list[str] = []
    for cell in cells[1:]:
        if not cell:
            continue
        if "@" in cell and "email" not in record.fields:
            record.set("email", _clean_value("email", cell))
        elif "country" not in record.fields and resolve_country(cell):
            record.set("country", cell)
        else:
            rest.append(cell)
    if "email" not in record.fields and "country" not in record.fields:
        return None   # a sentence with commas, not a participant
    # Position and organisation: the one cell with an institution word is the organisation;
    # otherwise the order of the brief's example, "name, position, organisation".
    flagged = [bool(_ORG_WORDS.search(cell)) for cell in rest]
    if flagged.count(True) == 1 and len(rest) >= 2:
        org = flagged.index(True)
        rest = [c for i, c in enumerate(rest) if i != org] + [rest[org]]
    elif len(rest) == 1 and flagged == [True]:
        rest = ["", rest[0]]
    for target, cell in zip(("position", "organisation"), rest, strict=False):
        if cell:
            record.set(target, _clean_value(target, cell))
    return record


# --------------------------------------------------------------------------- the event


@dataclass(frozen=True)
class _EventChoice:
    event_id: str | None
    candidates: tuple[str, ...] = ()
    why: str = ""


_REGIONS: dict[str, str] = {
    "africa": r"afri(?:ca|que|can|cans|cain|caine|cains|caines|cano|cana|canos|canas)",
    "asia-pacific": r"asia[ -]?pacific|asia and the pacific|asie[ -]?pacifique|asie et (?:le )?"
                    r"pacifique|asia[ -]?pacifico|asia y el pacifico|asian?|asie|pacific|"
                    r"pacifique|pacifico",
    "latin-america": r"latin america|latin american|amerique latine|america latina|"
                     r"latinoameric\w*|latino-americ\w*|latam",
    "caribbean": r"caribbean|caraibes?|caribe|caribenos?|antilles",
}
_ANY_REGION = re.compile("|".join(f"(?:{rx})" for rx in _REGIONS.values()))
_REGION_WORDS = _wordset("""latin latina latine america americas amerique american americain
    americaine americano americana asia asie asian pacific pacifique pacifico caribbean caribe
    caraibes africa afrique african africain africaine africano africana""")
_MONTHS: dict[str, tuple[str, ...]] = {
    "en": ("january", "february", "march", "april", "may", "june", "july", "august",
           "september", "october", "november", "december"),
    "fr": ("janvier", "fevrier", "mars", "avril", "mai", "juin", "juillet", "aout",
           "septembre", "octobre", "novembre", "decembre"),
    "es": ("enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto",
           "septiembre", "octubre", "noviembre", "diciembre"),
}
_SESSION_LANGUAGE: dict[str, str] = {
    "fr": r"french|francais|francophone|frances|francesa",
    "en": r"english|anglais|anglophone|ingles",
    "es": r"spanish|espagnol|espanol|hispanophone|castellano|hispanohablante",
}
_GENERIC_TITLE_WORDS = _wordset("""webinar webinars webinaire webinaires webinario
    webinarios workshop workshops atelier ateliers taller talleres session sessions sesion
    seminar seminaire seminario countries country pays paises with avec entre among meeting
    reunion regional""")


def _event_from_text(folded: str, catalog: Catalog, now: datetime) -> _EventChoice:
    """The open event the words name (date, region, language, title), or the only open one."""
    open_events = catalog.upcoming(now)
    if not open_events:
        return _EventChoice(None, (), "no open event")
    candidates = list(open_events)
    applied = False
    for matcher in (_date_matches, _region_matches, _language_matches, _title_matches):
        named = matcher(folded[:20_000], candidates, open_events)
        if named is None:
            continue
        kept = [e for e in candidates if e.id in named]
        if kept:
            candidates, applied = kept, True
    if applied and len(candidates) == 1:
        return _EventChoice(candidates[0].id)
    if applied:
        return _EventChoice(None, tuple(e.id for e in candidates), "ambiguous event")
    if len(open_events) == 1:
        return _EventChoice(open_events[0].id)
    return _EventChoice(None, tuple(e.id for e in open_events), "event not named")


def _date_matches(text: str, events: list[Event], _all: list[Event]) -> set[str] | None:
    named: set[str] = set()
    said = False
    for event in events:
        day, month = event.start.day, event.start.month
        names = "|".join(months[month - 1] for months in _MONTHS.values())
        pattern = (rf"\b0?{day}(?:st|nd|rd|th|er|eme)? (?:de )?(?:{names})\b"
                   rf"|\b(?:{names}) 0?{day}(?:st|nd|rd|th)?\b"
                   rf"|\b0?{day}[/.]0?{month}\b|{event.start:%Y-%m-%d}")
        if re.search(pattern, text):
            named.add(event.id)
    if not named:
        every = "|".join(m for months in _MONTHS.values() for m in months)
        said = bool(re.search(rf"\b\d{{1,2}}(?:st|nd|rd|th|er)? (?:de )?(?:{every})\b", text))
    return named if named or said else None


def _regions_of(event: Event) -> set[str]:
    words = fold(" ".join([event.id, *event.spec.title.values()]).replace("-", " "))
    return {region for region, rx in _REGIONS.items() if re.search(rf"\b(?:{rx})\b", words)}


def _region_matches(text: str, events: list[Event], _all: list[Event]) -> set[str] | None:
    said = {region for region, rx in _REGIONS.items() if re.search(rf"\b(?:{rx})\b", text)}
    if not said:
        return None
    return {e.id for e in events if _regions_of(e) & said}


def _language_matches(text: str, events: list[Event], _all: list[Event]) -> set[str] | None:
    said = {lang for lang, rx in _SESSION_LANGUAGE.items()
            if re.search(rf"\b(?:session|sesion|version|webinar|webinaire|webinario|in|en) "
                         rf"(?:in |en )?(?:{rx})\b|\b(?:{rx}) (?:session|version|webinar)\b",
                         text)}
    if not said:
        return None
    return {e.id for e in events if e.language in said}


def _title_words(event: Event) -> set[str]:
    """Title words other than generic ones and regions (regions are matched in any language,
    so an English title word must not make "Caribbean" mean only the English session)."""
    words = set(re.findall(r"[a-z][a-z-]{4,}", fold(" ".join(event.spec.title.values()))))
    return {w for w in words - _GENERIC_TITLE_WORDS - _REGION_WORDS
            if not _ANY_REGION.fullmatch(w)}


def _title_matches(text: str, events: list[Event], everyone: list[Event]) -> set[str] | None:
    """Events whose distinctive title words (not shared by every open event) the text uses."""
    per_event = {e.id: _title_words(e) for e in everyone}
    common = set.intersection(*per_event.values()) if per_event else set()
    used = set(re.findall(r"[a-z][a-z-]{4,}", text))
    named = {e.id for e in events if (per_event[e.id] - common) & used}
    return named or None
