"""Which country a reply names in its sentences, and which one a government address implies.

A form says "Country: Kenya"; free text says "I am from the Office of the DPP, Kenya", "soy de
la Procuraduría de la República Dominicana" or "je suis du Togo et non du Bénin". Country names
come from CLDR (Babel) in the languages governments write in, and pycountry; the text is cut
into words and every run of up to six words is looked up, so the cost is linear in the text.
Hand-written, and why: no library finds country names inside prose (the gazetteer-style ones
match cities and people too), and the rules that matter here are about mail (a capital
letter, a negation before the name, a first name such as "Jordan" or "Maurice").

The address is a guess, never a fact: ``gov.ke``, ``gouv.sn``, ``gob.do`` or ``mp.br`` name a
government, but ``yahoo.fr`` or an embassy's ``.be`` say nothing about the sender's country.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import cache

import pycountry
from babel import Locale, localedata

from mailer.countries import all_codes

# Languages whose country names are looked for in prose: those of the replies, and the other
# languages the world's governments write in (names in non-Latin scripts need no capital).
_LOCALES = ("en", "fr", "es", "pt", "de", "it", "nl", "ru", "ar")
# Names that are also common words or first names in those languages; looked for only when
# written in a way no word or first name is ("Chad" next to a capitalised surname is a person).
_COMMON_WORDS = frozenset({"ira", "oma", "sark", "man", "reunion", "jersey"})
_GIVEN_NAMES = frozenset({"chad", "jordan", "georgia", "india", "israel", "maurice", "trinidad"})
# What people write for a few countries besides their names (all-caps abbreviations are
# looked up as written: "RDC", "UK", never "uk" or "us").
_ALIASES: dict[tuple[str, ...], str] = {
    ("ivory", "coast"): "CI", ("cote", "divoire"): "CI", ("dr", "congo"): "CD",
    ("rd", "congo"): "CD", ("congo", "kinshasa"): "CD", ("congo", "brazzaville"): "CG",
    ("great", "britain"): "GB", ("cape", "verde"): "CV", ("cabo", "verde"): "CV",
    ("swaziland",): "SZ", ("burma",): "MM", ("viet", "nam"): "VN", ("czech", "republic"): "CZ",
    ("holland",): "NL", ("turkey",): "TR", ("turkiye",): "TR", ("east", "timor"): "TL",
    ("timor", "leste"): "TL", ("macedonia",): "MK", ("palestine",): "PS",
    ("saint", "kitts"): "KN", ("saint", "vincent"): "VC", ("trinidad",): "TT",
    ("antigua",): "AG", ("republica", "dominicana"): "DO", ("guine", "bissau"): "GW",
    ("guinea", "bissau"): "GW", ("guinee", "bissau"): "GW", ("sao", "tome"): "ST",
    ("rd", "do", "congo"): "CD", ("russia",): "RU", ("bosnia",): "BA", ("centrafrique",): "CF",
    ("rep", "dominicana"): "DO", ("south", "korea"): "KR", ("north", "korea"): "KP",
}
_ABBREVIATIONS = {"RDC": "CD", "DRC": "CD", "UK": "GB", "USA": "US", "UAE": "AE", "EAU": "AE",
                  "EEUU": "US", "RCA": "CF", "RSA": "ZA", "PNG": "PG", "DPRK": "KP",
                  "RPDC": "KP"}
# Names that stand for two countries: never a guess.
_AMBIGUOUS = frozenset({("congo",), ("korea",), ("coree",), ("corea",), ("guinea",),
                        ("guinee",)})
_LONGEST = 6
# Words before a name that deny it ("not Kenya", "et non du Bénin", "no de Kenia", "não de",
# "instead of", "au lieu du", "en vez de").
_DENIALS = frozenset({"not", "non", "no", "nao", "ni", "pas", "instead", "rather", "lieu",
                      "lugar", "vez", "inves", "nicht", "niet"})
_SYNONYMS = {"st": "saint", "ste": "sainte", "&": "and"}


def _fold(word: str) -> str:
    decomposed = unicodedata.normalize("NFKD", word.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


_WORD = re.compile(r"[^\W\d_]+|&")


def _words(name: str) -> tuple[str, ...]:
    return tuple(_SYNONYMS.get(w, w) for w in (_fold(m) for m in _WORD.findall(name)))


# The languages the messages are written in: Babel's data for them stays loaded anyway.
_WRITTEN = frozenset({"en", "fr", "es"})


def _territories(lang: str) -> dict[str, str]:
    """CLDR's country names in ``lang``.

    Babel keeps every locale it loads, whole (all of CLDR for it), for the life of the
    process: the six languages read only here cost 6.3 MB of Python heap in the daemon and
    again in its worker, for names that fit in 0.1 MB. So their data is dropped from Babel's
    caches once the names are copied out (peak 1.9 MB for one at a time). Babel has no
    public way to forget one locale (``clear_caches`` forgets all, and the Locale objects
    still holding en/fr/es would then hold a second copy); if its private caches change,
    the data merely stays loaded.
    """
    names = dict(Locale(lang).territories)
    if lang not in _WRITTEN:
        for kept in (getattr(localedata, "_cache", None), getattr(localedata, "_dict_cache", None)):
            if isinstance(kept, dict):
                kept.pop(lang, None)
    return names


@cache
def _index() -> dict[tuple[str, ...], str | None]:
    """Words of a country name → its code (None where the words name two countries)."""
    found: dict[tuple[str, ...], set[str]] = {}
    codes = all_codes()

    def add(name: str, code: str) -> None:
        words = _words(name)
        if words and words not in _COMMON_WORDS_KEYS:
            found.setdefault(words, set()).add(code)

    for lang in _LOCALES:
        for code, name in _territories(lang).items():
            if code in codes:
                add(name, code)
                add(re.sub(r"\s*\(.*?\)", "", name), code)
    for country in pycountry.countries:
        for attr in ("name", "official_name", "common_name"):
            name = getattr(country, attr, None)
            if name:
                add(name, country.alpha_2)
                if "," in name:   # "Korea, Republic of" → "Republic of Korea"
                    head, _, tail = name.partition(",")
                    add(f"{tail} {head}", country.alpha_2)
                add(re.sub(r"\s*\(.*?\)", "", name), country.alpha_2)
    index = {words: next(iter(c)) if len(c) == 1 else None for words, c in found.items()}
    index.update(_ALIASES)
    for words in _AMBIGUOUS:
        index[words] = None
    return index


_COMMON_WORDS_KEYS = frozenset((w,) for w in _COMMON_WORDS)


@dataclass(frozen=True)
class Mention:
    """A country named in text: its code and where (character offsets) it was written."""

    code: str
    start: int
    end: int
    denied: bool = False


def countries_in_text(text: str, *, skip: tuple[int, int] | None = None) -> list[Mention]:
    """Every country ``text`` names, in order; ``skip`` is a span (a person's name) to ignore.

    A name in a Latin script counts only when one of its words is capitalised, as names are
    in every language the mailer reads ("la guinea" is not Guinea, "chad" not Chad); one that
    doubles as a first name ("Jordan", "Maurice") not when a capitalised surname follows it.
    """
    index = _index()
    tokens = [(m.start(), m.end(), m.group(0)) for m in _WORD.finditer(text[:20_000])]
    folded = [_SYNONYMS.get(w, w) for w in (_fold(t[2]) for t in tokens)]
    out: list[Mention] = []
    i = 0
    while i < len(tokens):
        start, _end, word = tokens[i]
        code = _ABBREVIATIONS.get(word) if word.isupper() else None
        span = 1 if code else 0
        if not code:
            for n in range(min(_LONGEST, len(tokens) - i), 0, -1):
                words = tuple(folded[i:i + n])
                if words in index:
                    code, span = index[words], n
                    break
        if not span:
            i += 1
            continue
        originals = [t[2] for t in tokens[i:i + span]]
        end = tokens[i + span - 1][1]
        if code and _counts(originals, tokens, folded, i, span, skip, start, end):
            before = folded[max(0, i - 3):i]
            out.append(Mention(code, start, end, bool(_DENIALS & set(before))))
        i += span
    return out


def _counts(originals: list[str], tokens: list[tuple[int, int, str]], folded: list[str],
            i: int, span: int, skip: tuple[int, int] | None, start: int, end: int) -> bool:
    if skip and start < skip[1] and end > skip[0]:
        return False
    latin = all(ch.isascii() or unicodedata.name(ch, "").startswith("LATIN")
                for word in originals for ch in word)
    if latin and not any(word[:1].isupper() for word in originals if len(word) > 2 or
                         span == 1):
        return False
    # "New Mexico", "New Jersey", "Papua New Guinea" is matched whole before this.
    if i and folded[i - 1] in ("new", "nouveau", "nuevo", "nova", "nuevo"):
        return False
    if span == 1 and folded[i] in _GIVEN_NAMES and i + 1 < len(tokens):
        nxt = tokens[i + 1]
        gap = nxt[0] - end
        if gap <= 1 and nxt[2][:1].isupper() and folded[i + 1] not in _index_heads():
            return False   # "Jordan Smith", "Maurice Kamto": a person
    return True


@cache
def _index_heads() -> frozenset[str]:
    return frozenset(words[0] for words in _index())


def country_in_text(text: str, *, skip: tuple[int, int] | None = None,
                    prefer: tuple[int, int] | None = None) -> tuple[str | None, bool]:
    """The country a text names and whether that is certain: (code, certain).

    Denied names ("not Kenya") are left out. One country named, however often, is certain;
    several make the one named in ``prefer`` (the writer's own sentence), else the first, a
    guess.
    """
    mentions = [m for m in countries_in_text(text, skip=skip) if not m.denied]
    codes = list(dict.fromkeys(m.code for m in mentions))
    if not codes:
        return None, False
    if len(codes) == 1:
        return codes[0], True
    if prefer:
        own = [m.code for m in mentions if prefer[0] <= m.start < prefer[1]]
        if len(set(own)) == 1:
            return own[0], True
    return codes[0], False


# --------------------------------------------------------------------------- the address

# Labels that mark a government's own domain under a country-code TLD (gov.ke, go.ke,
# gouv.sn, gob.do, gub.uy, govt.nz, gv.at, gc.ca, mil), and a few national second levels.
_GOVERNMENT = frozenset({"gov", "gouv", "gob", "go", "govt", "gv", "gub", "gc", "mil"})
_NATIONAL = {"br": frozenset({"jus", "mp", "leg", "def"}), "ch": frozenset({"admin"}),
             "de": frozenset({"bund"}), "in": frozenset({"nic"})}
_TLD_CODE = {"uk": "GB"}


def country_of_address(address: str) -> str | None:
    """The country whose government an address belongs to, from its domain, or None.

    Only a government label counts ("mfa.go.ke", "justice.gouv.sn", "pgr.gob.do", "mpf.mp.br",
    "legalaffairs.gov.tt"): a webmail (yahoo.fr), a company or an embassy's local domain says
    nothing about the person's country. US federal ".gov" and ".mil" are the United States.
    """
    domain = address.rpartition("@")[2].strip().strip(">").lower().rstrip(".")
    labels = domain.split(".")
    if len(labels) < 2 or not all(labels):
        return None
    tld = labels[-1]
    if tld in ("gov", "mil"):
        return "US"
    code = _TLD_CODE.get(tld, tld.upper())
    if len(tld) != 2 or code not in all_codes():
        return None
    inner = set(labels[:-1])
    if inner & _GOVERNMENT or inner & _NATIONAL.get(tld, frozenset()):
        return code
    return None
