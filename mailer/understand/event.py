"""Which event a message is about: from its address, subject tag or thread, else from its words.

The headers name an event exactly (a plus-tag, a ``[tag]``, a Message-ID of ours in the
thread); otherwise the words are matched against the open events (and, for certificate
requests and calendar answers, those that ended in the last ``replies.recent_event_days``)
by title, date, region, session language and distinctive title words: first what the sender
wrote, then the subject (reply and forward prefixes removed), then the original they quote. A
calendar answer is matched by our UID, then by its start time and summary, then by the title
in its subject. Only a real tie is reported, as candidates.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage

from mailer.domain import event_of_message_id, normalise_email
from mailer.schedule import Catalog, Event
from mailer.understand.folding import fold, wordset
from mailer.understand.message import recipients

_SUBJECT_TAG = re.compile(r"\[([a-z0-9][a-z0-9-]{0,80})\]")


def event_from_headers(msg: EmailMessage, catalog: Catalog, inbox: str, subject: str,
                        references: Iterable[str]) -> str | None:
    """The event named by a plus-tag address, a ``[tag]`` in the subject, or the thread."""
    local, _, domain = normalise_email(inbox).partition("@")
    for address in recipients(msg):
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


@dataclass(frozen=True)
class EventChoice:
    event_id: str | None
    candidates: tuple[str, ...] = ()
    why: str = ""


# How long after its end an event still counts for a certificate request or a calendar
# answer, unless the configuration says otherwise (``replies.recent_event_days``):
# certificates are asked for in the weeks after a webinar, rarely later.
RECENT = timedelta(days=60)
NOT_ENDED = timedelta(0)

# Reply and forward prefixes in the languages of mail clients ("RE:", "TR:", "RV:", "AW:",
# "WG:", "SV:", "Antw:", "ENC:", "RES:", "Odp:", "PD:", "Ynt:", "İlt:", "Ответ:", "回复:"...),
# possibly numbered ("Re[2]:") and repeated, and the tags mail gateways put in front.
_PREFIX = re.compile(
    r"^\s*(?:(?:re|fw|fwd|tr|rv|aw|wg|sv|vs|vl|antw|doorst|enc|res|odp|pd|ynt|ilt|fs|vb|r|rif"
    r"|i|ref|rep|reenv|wtr|ha|отв|ответ|fwd|пересл|رد|回复|转发|答复|回覆|轉寄|件名|返信|転送)"
    r"\s*(?:\[\d{1,3}\]|\(\d{1,3}\))?\s*[:：]\s*|\[(?:external|ext|externe|externo|spam|"
    r"suspicious|caution)\]\s*|(?:external|externe|externo)\s*:\s*)+", re.IGNORECASE)


def subject_topic(subject: str) -> str:
    """The subject without reply and forward prefixes: "RE: TR: Webinar..." → "Webinar..."."""
    return _PREFIX.sub("", subject[:1_000], count=1).strip()


def choice_pool(catalog: Catalog, now: datetime, *, recent: timedelta) -> list[Event]:
    """The events a message may be about: those not ended, and those ended less than
    ``recent`` ago, in start order."""
    since = now - recent
    return sorted((e for e in catalog.events.values() if e.end > since),
                  key=lambda e: e.start)


Text = str | Callable[[], str]


def event_from_text(folded: str, catalog: Catalog, now: datetime, *, subject: str = "",
                    quoted: Callable[[], str] | None = None,
                    recent: timedelta = NOT_ENDED) -> EventChoice:
    """The event the words name: the sender's text first, then the subject, then the quoted
    original; else the only event there is."""
    texts: list[Text] = [folded]
    if subject:
        texts.append(fold(subject_topic(subject)))
    if quoted is not None:
        texts.append(lambda: fold(quoted()))
    return choose_event(texts, choice_pool(catalog, now, recent=recent), now)


def choose_event(texts: Sequence[Text], pool: list[Event], now: datetime | None = None
                 ) -> EventChoice:
    """The event of ``pool`` the texts name, each text narrowing what the ones before left.

    A text that names nothing, or only events outside what is left, changes nothing; a
    lazy text (a function) is read only when the ones before did not decide.
    """
    if not pool:
        return EventChoice(None, (), "no open event")
    candidates, applied = list(pool), False
    for text in texts:
        if applied and len(candidates) == 1:
            break
        words = (text() if callable(text) else text)[:20_000]
        narrowed, named = _narrow(words, candidates, pool, now)
        if named:
            candidates, applied = narrowed, True
    if applied and len(candidates) == 1:
        return EventChoice(candidates[0].id)
    if applied:
        return EventChoice(None, tuple(e.id for e in candidates), "ambiguous event")
    if len(pool) == 1:
        return EventChoice(pool[0].id)
    return EventChoice(None, tuple(e.id for e in pool), "event not named")


def _narrow(text: str, candidates: list[Event], pool: list[Event], now: datetime | None
            ) -> tuple[list[Event], bool]:
    """The candidates the text names, by each matcher in turn; (candidates, named any)."""
    applied = False
    for matcher in (_title_contained, _date_matches, _region_matches, _language_matches,
                    _title_matches, _day_matches, _kind_matches):
        named = matcher(text, candidates, pool, now)
        if named is None:
            continue
        kept = [e for e in candidates if e.id in named]
        if kept:
            candidates, applied = kept, True
    return candidates, applied


def event_of_calendar(event_id: str | None, start: datetime | None, summary: str,
                      topic: str, catalog: Catalog, now: datetime,
                      recent: timedelta = RECENT) -> EventChoice | None:
    """The event a calendar answer is about: our UID; else the event starting at its DTSTART
    (a client that wrote its own UID), the summary telling apart events that start together;
    else the title in its summary or subject ("Accepted: <title>"). None: nothing says."""
    if event_id in catalog.events:
        return EventChoice(event_id)
    if start is not None:
        at = _starting_at(start, catalog)
        if len(at) == 1:
            return EventChoice(at[0].id)
        if at:
            return choose_event([fold(summary), fold(topic)], at, now)
    texts = [fold(t) for t in (summary, topic) if t]
    if not texts:
        return None
    found = choose_event(texts, choice_pool(catalog, now, recent=recent), now)
    return found if found.event_id or found.why == "ambiguous event" else None


def _starting_at(start: datetime, catalog: Catalog) -> list[Event]:
    """Events starting at ``start``; a time without zone (a client's floating time) is
    compared with every zone's, on the same day."""
    if start.tzinfo is not None:
        moment = start.astimezone(timezone.utc)
        return sorted((e for e in catalog.events.values() if e.start == moment),
                      key=lambda e: e.start)
    return sorted((e for e in catalog.events.values()
                   if abs(e.start.replace(tzinfo=None) - start) <= timedelta(hours=14)
                   and e.start.date() == start.date()), key=lambda e: e.start)


_REGIONS: dict[str, str] = {
    "africa": r"afri(?:ca|que|can|cans|cain|caine|cains|caines|cano|cana|canos|canas)",
    "asia-pacific": r"asia[ -]?pacific|asia and the pacific|asie[ -]?pacifique|asie et (?:le )?"
                    r"pacifique|asia[ -]?pacifico|asia y el pacifico|asia e (?:o )?pacifico|"
                    r"asian?|asie|pacific|pacifique|pacifico",
    "latin-america": r"latin america|latin american|amerique latine|america latina|"
                     r"latinoameric\w*|latino-americ\w*|latam",
    "caribbean": r"caribbean|caraibes?|caribe|caribenos?|antilles|caraibas",
}
_ANY_REGION = re.compile("|".join(f"(?:{rx})" for rx in _REGIONS.values()))
_REGION_WORDS = wordset("""latin latina latine america americas amerique american americain
    americaine americano americana asia asie asian pacific pacifique pacifico caribbean caribe
    caraibes africa afrique african africain africaine africano africana""")
_MONTHS: dict[str, tuple[str, ...]] = {
    "en": ("january", "february", "march", "april", "may", "june", "july", "august",
           "september", "october", "november", "december"),
    "fr": ("janvier", "fevrier", "mars", "avril", "mai", "juin", "juillet", "aout",
           "septembre", "octobre", "novembre", "decembre"),
    "es": ("enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto",
           "septiembre", "octubre", "noviembre", "diciembre"),
    "pt": ("janeiro", "fevereiro", "marco", "abril", "maio", "junho", "julho", "agosto",
           "setembro", "outubro", "novembro", "dezembro"),
}
# Abbreviations mail clients write in dates ("Tue Jul 7", "jeu. 9 juil.", "22 jul. 2020").
_SHORT_MONTHS: tuple[tuple[str, ...], ...] = (
    ("jan", "janv", "ene"), ("feb", "fev", "fevr"), ("mar",), ("apr", "avr", "abr"),
    ("may", "mai"), ("jun",), ("jul", "juil"), ("aug", "ago"), ("sep", "sept", "set"),
    ("oct", "out"), ("nov",), ("dec", "dic", "dez"))
_ORDINAL = r"(?:st|nd|rd|th|er|eme|o|º|°)?"
_AND = r"\s*(?:-|/|&|and|et|y|e|to|au|al|a)\s*"
_SESSION_LANGUAGE: dict[str, str] = {
    "fr": r"french|francais|francophone|frances|francesa|franceses",
    "en": r"english|anglais|anglophone|ingles|inglesa",
    "es": r"spanish|espagnol|espanol|hispanophone|castellano|hispanohablante|espanhol",
}
_GENERIC_TITLE_WORDS = wordset("""webinar webinars webinaire webinaires webinario
    webinarios workshop workshops atelier ateliers taller talleres session sessions sesion
    seminar seminaire seminario countries country pays paises with avec entre among meeting
    reunion regional""")


def _folded_titles(event: Event) -> list[str]:
    return [re.sub(r"\s+", " ", fold(t)).strip() for t in event.spec.title.values()]


def _title_contained(text: str, events: list[Event], everyone: list[Event],
                     _now: datetime | None = None) -> set[str] | None:
    """Events whose whole title (in any of its languages) the text contains; the longest
    title wins over one it contains ("Webinar with African countries (in French)"). A series
    title names every event of the series."""
    text = re.sub(r"\s+", " ", text)
    found: dict[str, str] = {}
    for event in events:
        for title in _folded_titles(event):
            if len(title) >= 12 and title in text and len(title) > len(found.get(event.id, "")):
                found[event.id] = title
    if found:
        longest = [t for t in found.values()
                   if not any(t != other and t in other for other in found.values())]
        return {e for e, t in found.items() if t in longest}
    series = {e.id for e in events
              for title in e.series.spec.title.values()
              if len(title) >= 12 and re.sub(r"\s+", " ", fold(title)) in text}
    return series or None


_MONTH_NUMBER: dict[str, int] = {
    **{name: number for months in _MONTHS.values() for number, name in enumerate(months, 1)},
    **{name: number for number, names in enumerate(_SHORT_MONTHS, 1) for name in names}}
_MONTH_NAME = "|".join(sorted(_MONTH_NUMBER, key=len, reverse=True))
_DAY = rf"(\d{{1,2}}){_ORDINAL}"
# Every way a date is written, scanned once: "7 July", "7th of July", "16 and 17 July",
# "16 y 17 de julio", "July 16-17", "jeu. 9 juil.", "22/07", "07/22/2020", "2020-07-22".
_DATE = re.compile(
    rf"\b(?:{_DAY}{_AND})?{_DAY}(?:{_AND}{_DAY})?\s+(?:of\s+|de\s+)?({_MONTH_NAME})\b"
    rf"|\b({_MONTH_NAME})\.?\s+(?:(\d{{1,2}})\s*[-–]\s*)?(\d{{1,2}})\b"
    r"|\b(\d{1,2})[/.](\d{1,2})\b(?![/.]\d{1,2}\b(?![/.]))"
    r"|\b(\d{4})-(\d{2})-(\d{2})\b")


def dates_said(text: str) -> set[tuple[int, int]]:
    """The (month, day) of every date the text writes (a day-first numeric date is also
    read month-first when it can only be that: "07/22")."""
    said: set[tuple[int, int]] = set()
    for m in _DATE.finditer(text):
        g = m.groups()
        if g[3]:                                   # days, then the month's name
            said |= {(_MONTH_NUMBER[g[3]], int(d)) for d in g[0:3] if d}
        elif g[4]:                                 # the month's name, then days
            said |= {(_MONTH_NUMBER[g[4]], int(d)) for d in g[5:7] if d}
        elif g[7]:                                 # 22/07, 9.7
            first, second = int(g[7]), int(g[8])
            said.add((second, first))
            if first <= 12 < second:
                said.add((first, second))
        else:                                      # 2020-07-22
            said.add((int(g[10]), int(g[11])))
    return {(month, day) for month, day in said if 1 <= month <= 12 and 1 <= day <= 31}


def _date_matches(text: str, events: list[Event], _all: list[Event],
                  _now: datetime | None = None) -> set[str] | None:
    said = dates_said(text)
    if not said:
        return None
    return {e.id for e in events if (e.start.month, e.start.day) in said}


def _regions_of(event: Event) -> set[str]:
    words = fold(" ".join([event.id, *event.spec.title.values()]).replace("-", " "))
    return {region for region, rx in _REGIONS.items() if re.search(rf"\b(?:{rx})\b", words)}


def _region_matches(text: str, events: list[Event], _all: list[Event],
                    _now: datetime | None = None) -> set[str] | None:
    """Events of the regions the text names; of all of them first ("Latin America and the
    Caribbean" is the LAC webinar, not a workshop for the Caribbean alone)."""
    said = {region for region, rx in _REGIONS.items() if re.search(rf"\b(?:{rx})\b", text)}
    if not said:
        return None
    every = {e.id for e in events if said <= _regions_of(e)}
    return every or {e.id for e in events if _regions_of(e) & said}


def _language_matches(text: str, events: list[Event], _all: list[Event],
                      _now: datetime | None = None) -> set[str] | None:
    said = {lang for lang, rx in _SESSION_LANGUAGE.items()
            if re.search(rf"\b(?:session|sesion|sessao|version|webinar|webinaire|webinario|"
                         rf"in|en|em) (?:in |en |em )?(?:{rx})\b|\b(?:{rx})(?:-language| "
                         rf"language)? (?:session|version|webinar)\b", text)}
    if not said:
        return None
    return {e.id for e in events if e.language in said}


def _title_words(event: Event) -> set[str]:
    """Title words other than generic ones and regions (regions are matched in any language,
    so an English title word must not make "Caribbean" mean only the English session)."""
    words = set(re.findall(r"[a-z][a-z-]{4,}", fold(" ".join(event.spec.title.values()))))
    return {w for w in words - _GENERIC_TITLE_WORDS - _REGION_WORDS
            if not _ANY_REGION.fullmatch(w)}


def _title_matches(text: str, events: list[Event], everyone: list[Event],
                   _now: datetime | None = None) -> set[str] | None:
    """Events whose distinctive title words (not shared by every open event) the text uses."""
    per_event = {e.id: _title_words(e) for e in everyone}
    common = set.intersection(*per_event.values()) if per_event else set()
    used = set(re.findall(r"[a-z][a-z-]{4,}", text))
    named = {e.id for e in events if (per_event[e.id] - common) & used}
    return named or None


_WEEKDAYS: tuple[str, ...] = (
    r"monday|lundi|lunes|segunda(?:-feira)?", r"tuesday|mardi|martes|terca(?:-feira)?",
    r"wednesday|mercredi|miercoles|quarta(?:-feira)?", r"thursday|jeudi|jueves|quinta(?:-feira)?",
    r"friday|vendredi|viernes|sexta(?:-feira)?", r"saturday|samedi|sabado",
    r"sunday|dimanche|domingo")
_WEEKDAY_SAID = tuple(re.compile(
    rf"\b(?:last|this|past|previous|next|coming|on|dernier|prochain|ce|pasado|proximo|este|el|"
    rf"passad[oa]|proxim[oa]|na|no|de|du|del|do|da)\s+(?:{days})\b|\b(?:{days})(?:'s|\s+"
    rf"(?:dernier|prochain|pasado|proximo|passad[oa]|proxim[oa]|webinar|session))\b")
    for days in _WEEKDAYS)
# Days said relative to the message: yesterday, today, tomorrow.
_RELATIVE_DAYS = ((-1, re.compile(r"\b(?:yesterday|hier|ayer|ontem)\b")),
                  (0, re.compile(r"\b(?:today|this morning|aujourd'hui|ce matin|hoy|hoje)\b")),
                  (1, re.compile(r"\b(?:tomorrow|demain|manana|amanha)\b")))
# A day of the month without its month ("on the 20th", "le 9", "el 22", "no dia 20").
_MONTH_WORDS = "|".join(sorted({m for months in _MONTHS.values() for m in months}
                               | {m for short in _SHORT_MONTHS for m in short},
                               key=len, reverse=True))
_DAY_ONLY = re.compile(r"\b(?:the (\d{1,2})(?:st|nd|rd|th)|(?:le|el|dia|du|del) (\d{1,2}))\b"
                       rf"(?![/.:]\d)(?!{_AND}\d|\s+(?:of\s+|de\s+)?(?:{_MONTH_WORDS})\b)")


def _day_matches(text: str, events: list[Event], _all: list[Event], now: datetime | None
                 ) -> set[str] | None:
    """Events on a day said without a full date: "last Tuesday's webinar", "yesterday",
    "on the 20th"; relative days need ``now`` (the moment the message is read)."""
    named: set[str] = set()
    if now is not None:
        for shift, pattern in _RELATIVE_DAYS:
            if pattern.search(text):
                day = (now + timedelta(days=shift)).date()
                named |= {e.id for e in events if e.start.date() == day}
    for weekday, pattern in enumerate(_WEEKDAY_SAID):
        if pattern.search(text):
            on = [e for e in events if e.start.weekday() == weekday]
            near = [e for e in on if now is None or abs(e.start - now) <= timedelta(days=8)]
            named |= {e.id for e in near or on}
    for match in _DAY_ONLY.finditer(text):
        day = int(match.group(1) or match.group(2))
        named |= {e.id for e in events if e.start.day == day}
    return named or None


# What people call an event: a webinar is not a workshop.
_KINDS = {"webinar": re.compile(r"\bwebin(?:ar|aire|ario)s?\b"),
          "workshop": re.compile(r"\b(?:workshops?|ateliers?|talleres|taller|oficinas?)\b")}


def _kind_matches(text: str, events: list[Event], _all: list[Event],
                  _now: datetime | None = None) -> set[str] | None:
    """Events of the kind the text names, when it names only one kind."""
    said = {kind for kind, pattern in _KINDS.items() if pattern.search(text)}
    if len(said) != 1:
        return None
    return {e.id for e in events if e.spec.kind in said}
