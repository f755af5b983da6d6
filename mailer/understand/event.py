"""Which event a message is about: from its address, subject tag or thread, else from its words.

The headers name an event exactly (a plus-tag, a ``[tag]``, a Message-ID of ours in the
thread); otherwise the text is matched against the open events by date, region, session
language and distinctive title words, and a real tie is reported as candidates.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
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
}
_SESSION_LANGUAGE: dict[str, str] = {
    "fr": r"french|francais|francophone|frances|francesa",
    "en": r"english|anglais|anglophone|ingles",
    "es": r"spanish|espagnol|espanol|hispanophone|castellano|hispanohablante",
}
_GENERIC_TITLE_WORDS = wordset("""webinar webinars webinaire webinaires webinario
    webinarios workshop workshops atelier ateliers taller talleres session sessions sesion
    seminar seminaire seminario countries country pays paises with avec entre among meeting
    reunion regional""")


def event_from_text(folded: str, catalog: Catalog, now: datetime) -> EventChoice:
    """The open event the words name (date, region, language, title), or the only open one."""
    open_events = catalog.upcoming(now)
    if not open_events:
        return EventChoice(None, (), "no open event")
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
        return EventChoice(candidates[0].id)
    if applied:
        return EventChoice(None, tuple(e.id for e in candidates), "ambiguous event")
    if len(open_events) == 1:
        return EventChoice(open_events[0].id)
    return EventChoice(None, tuple(e.id for e in open_events), "event not named")


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
