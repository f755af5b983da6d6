"""Countries: ISO 3166 alpha-2 codes, their names in the three languages, and their time zones."""

from __future__ import annotations

import re
import unicodedata
from functools import cache
from importlib import resources

import pycountry
from babel import Locale
from rapidfuzz import fuzz, process

# Codes CLDR knows as territories but ISO 3166 does not list (yet) as countries.
_EXTRA_CODES = frozenset({"XK"})


@cache
def all_codes() -> frozenset[str]:
    """Every country code the mailer accepts."""
    return frozenset(c.alpha_2 for c in pycountry.countries) | _EXTRA_CODES


def is_country_code(code: str) -> bool:
    """True when ``code`` is an upper-case ISO 3166 alpha-2 country code."""
    return isinstance(code, str) and code in all_codes()


@cache     # a burst of reminders names the same few countries thousands of times
def country_name(code: str, lang: str = "en") -> str:
    """The country's usual name in ``lang`` (CLDR), or the code itself when unknown."""
    return Locale.parse(lang).territories.get(code, code)


# --- Reading a country as people write it -------------------------------------------------

# Aliases the libraries lack (CLDR and pycountry give each country one or two names per
# language; diplomats also write abbreviations, older names and short forms). Keys are
# normalised by ``_normalise``; a value of None marks a name that is genuinely ambiguous.
_ALIASES: dict[str, str | None] = {
    # The two Congos: French and English abbreviations, and the capital-suffixed names.
    "rdc": "CD", "drc": "CD", "dr congo": "CD", "rd congo": "CD", "congo kinshasa": "CD",
    "congo brazzaville": "CG",
    # Côte d'Ivoire in English and French usage.
    "ivory coast": "CI", "cote divoire": "CI",
    # The United Kingdom and the United States, by abbreviation and in the three languages.
    "uk": "GB", "u k": "GB", "great britain": "GB", "britain": "GB", "grande bretagne": "GB",
    "gran bretana": "GB",
    "usa": "US", "u s": "US", "u s a": "US", "eeuu": "US", "ee uu": "US",
    "etats unis amerique": "US", "estados unidos america": "US", "united states america": "US",
    # Older or informal names that CLDR has dropped.
    "holland": "NL", "hollande": "NL", "holanda": "NL",
    "turkey": "TR", "turkiye": "TR",
    "cape verde": "CV", "cabo verde": "CV", "cap vert": "CV",
    "swaziland": "SZ", "swazilandia": "SZ",
    "burma": "MM", "birmanie": "MM", "birmania": "MM",
    "viet nam": "VN",
    "macedonia": "MK", "macedoine": "MK", "fyrom": "MK",
    "east timor": "TL", "timor oriental": "TL",
    "czech republic": "CZ", "republique tcheque": "CZ", "republica checa": "CZ",
    "russia": "RU", "federation russie": "RU", "federacion rusia": "RU",
    "uae": "AE", "eau": "AE",
    "vatican": "VA", "holy see": "VA", "saint siege": "VA", "santa sede": "VA",
    "palestine": "PS", "palestina": "PS", "state palestine": "PS",
    "lao pdr": "LA",
    "bosnia": "BA", "centrafrique": "CF",
    "sao tome": "ST",
    "guinea conakry": "GN", "guinee conakry": "GN",
    # Caribbean short forms ("St Kitts", "St Vincent"), as staff of the region write them.
    "saint kitts": "KN", "saint vincent": "VC", "trinidad": "TT", "antigua": "AG",
    # Spanish short form of the Dominican Republic; without it "Dominicana" fuzzes to Dominica.
    "dominicana": "DO", "rep dominicana": "DO",
    # The Koreas: "Korea" alone names neither; the Republic of Korea is the South.
    "korea": None, "coree": None, "corea": None,
    "republique coree": "KR", "republica corea": "KR", "rok": "KR", "corea sur": "KR",
    "dprk": "KP", "rpdc": "KP",
}

# Words that carry no meaning for matching (articles, "of"), in the three languages.
_STOPWORDS = frozenset({"the", "of", "de", "du", "des", "del", "la", "le", "el", "los", "las",
                        "les", "d", "l"})
# Spellings of one word that must compare equal: "St." and "San" are "Saint", "&" is "and".
_SYNONYMS = {"st": "saint", "ste": "sainte", "san": "saint", "et": "and", "y": "and"}
# Leading words of an official name that the short name drops ("Republic of Senegal").
_STATE_WORDS = frozenset({"republic", "republique", "republica"})

_FUZZY_CUTOFF = 85.0     # token_sort_ratio: one typo in a 7-letter name scores 85.7
_FUZZY_MARGIN = 4.0      # a second country this close to the best makes the match ambiguous
_FUZZY_MIN_LENGTH = 4    # shorter text is too easily close to some country
_SUGGEST_CUTOFF = 75.0   # a hint to staff: two letters swapped in a 6-letter name score 83


def _normalise(text: str) -> str:
    """Fold case, accents, punctuation, articles and "St."/"&" so spellings compare equal."""
    decomposed = unicodedata.normalize("NFKD", text.replace("&", " and "))
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()
    words = re.sub(r"[^\w]+", " ", plain).split()
    words = [_SYNONYMS.get(w, w) for w in words]
    return " ".join(w for w in words if w not in _STOPWORDS)


def _variants(name: str) -> list[str]:
    """Other ways of writing a library name: ISO's "Korea, Republic of" and "Myanmar (Burma)"."""
    out: list[str] = []
    if "," in name:
        head, _, tail = name.partition(",")
        out += [f"{tail.strip()} {head.strip()}", head]
    if "(" in name:
        out += [re.sub(r"\(.*?\)", " ", name), *re.findall(r"\((.*?)\)", name)]
    return out


@cache
def _name_index() -> dict[str, str | None]:
    """Normalised name → code (None where two countries share the name)."""
    names: dict[str, set[str]] = {}
    derived: dict[str, set[str]] = {}
    codes = all_codes()
    for lang in ("en", "fr", "es"):
        for code, name in Locale(lang).territories.items():
            if code in codes:
                names.setdefault(_normalise(name), set()).add(code)
                for variant in _variants(name):
                    derived.setdefault(_normalise(variant), set()).add(code)
    for country in pycountry.countries:
        for attr in ("name", "official_name", "common_name"):
            name = getattr(country, attr, None)
            if name:
                names.setdefault(_normalise(name), set()).add(country.alpha_2)
                for variant in _variants(name):
                    derived.setdefault(_normalise(variant), set()).add(country.alpha_2)
    index: dict[str, str | None] = {}
    # Derived forms count only where no library name says otherwise; full names win.
    for table in (derived, names):
        for key, found in table.items():
            if key:
                index[key] = next(iter(found)) if len(found) == 1 else None
    index.update({_normalise(alias): code for alias, code in _ALIASES.items()})
    return index


@cache
def _alpha3() -> dict[str, str]:
    """ISO alpha-3 code → alpha-2 code."""
    return {c.alpha_3: c.alpha_2 for c in pycountry.countries}


def _exact(key: str) -> tuple[bool, str | None]:
    """Look ``key`` up, then again without a leading "Republic of": (found, code)."""
    index = _name_index()
    if key in index:
        return True, index[key]
    words = key.split()
    if len(words) > 1 and words[0] in _STATE_WORDS:
        rest = " ".join(words[1:])
        if rest in index:
            return True, index[rest]
    return False, None


def _fuzzy(key: str, cutoff: float = _FUZZY_CUTOFF) -> str | None:
    """The one country whose name is within a typo of ``key``, or None if none or several."""
    if len(key) < _FUZZY_MIN_LENGTH:
        return None
    index = _name_index()
    hits = process.extract(key, list(index), scorer=fuzz.token_sort_ratio, limit=8)
    if not hits or hits[0][1] < cutoff:
        return None
    best_key, best_score, _ = hits[0]
    code = index[best_key]
    for other_key, score, _ in hits[1:]:
        if score >= best_score - _FUZZY_MARGIN and index[other_key] != code:
            return None  # "Nigerie": Niger or Nigeria? Ask rather than guess.
    return code


def resolve_country(text: str) -> str | None:
    """The ISO alpha-2 code of a country as a person wrote it, or None if unknown or ambiguous.

    ``text`` is the value of a country field: a name in English, French or Spanish (any case,
    with or without accents, short or official, with small typos) or an ISO alpha-2/alpha-3 code
    in capitals.
    """
    if not isinstance(text, str):
        return None
    raw = text.strip().strip(".").strip()
    # Codes only in capitals: "Mr", "Ms", "No" and "St" in a form are titles and words, not
    # Mauritania, Montserrat, Norway and São Tomé.
    if re.fullmatch(r"[A-Z]{2,3}", raw):
        if raw in all_codes():
            return raw
        if raw in _alpha3():
            return _alpha3()[raw]
    for candidate in (raw, re.sub(r"\(.*?\)", " ", raw)):
        found, code = _exact(_normalise(candidate))
        if found:
            return code
    return _fuzzy(_normalise(raw))


def suggest_country(text: str) -> str | None:
    """The country staff most likely meant by a name or code a schedule does not know, for a
    "did you mean" hint: as ``resolve_country`` but within two swapped letters ("Frnace",
    83 against "France"), which a reply's country must not be taken from (a guess there
    registers someone; here staff only read it)."""
    return resolve_country(text) or _fuzzy(_normalise(text.strip()), _SUGGEST_CUTOFF)


# Countries spanning several zones whose first zone.tab row is not where the capital or most
# people are (zone.tab lists zones roughly east to west or north to south, not by importance).
_MAIN_ZONE = {
    "AU": "Australia/Sydney", "BR": "America/Sao_Paulo", "CA": "America/Toronto",
    "FM": "Pacific/Pohnpei", "PS": "Asia/Hebron", "RU": "Europe/Moscow", "UA": "Europe/Kyiv",
    "UZ": "Asia/Tashkent", "XK": "Europe/Belgrade",
}


@cache
def _zone_rows() -> dict[str, tuple[str, ...]]:
    """Country code → its zones, in tzdata's zone.tab order."""
    text = (resources.files("tzdata.zoneinfo") / "zone.tab").read_text(encoding="utf-8")
    zones: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            fields = line.split("\t")
            zones.setdefault(fields[0], []).append(fields[2])
    return {code: tuple(found) for code, found in zones.items()}


@cache
def _zone_tab() -> dict[str, str]:
    """Country code → its first zone in tzdata's zone.tab."""
    return {code: found[0] for code, found in _zone_rows().items()}


def country_zones(code: str) -> tuple[str, ...]:
    """Every IANA zone of a country (zone.tab), or its one zone; () when unknown."""
    code = code.upper() if isinstance(code, str) else ""
    found = _zone_rows().get(code)
    if found:
        return found
    main = _MAIN_ZONE.get(code)
    return (main,) if main else ()


def country_timezone(code: str) -> str:
    """The IANA zone of a participant's local time in this country; "UTC" when unknown."""
    code = code.upper() if isinstance(code, str) else ""
    return _MAIN_ZONE.get(code) or _zone_tab().get(code, "UTC")
