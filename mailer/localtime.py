"""Dates and times as participants read them: an event's span in UTC and in their local time.

Babel (CLDR) does the localisation: dates, times, zone names, and the names of the zones of
a country with several ("heure de l’Est de l’Australie"). Ours are the short "(heure de
Dakar)" phrase (CLDR's own location format reads "heure : Sénégal", which is not what a
secretariat writes), the articles of the few French place names that are zone names
("heure de la Jamaïque"), and the capitals of the countries that span several zones (CLDR
has no capitals).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import cache
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale
from babel.core import get_global
from babel.dates import format_date, format_time, get_timezone_location

from mailer.countries import country_timezone, country_zones

# Zone names that mean "the same as UTC": no local line is shown for them.
_UTC_NAMES = frozenset({"UTC", "Etc/UTC", "Etc/UCT", "UCT", "Etc/GMT", "GMT", "Etc/Universal",
                        "Universal", "Etc/Zulu", "Zulu", "Etc/GMT0", "Etc/GMT+0", "Etc/GMT-0"})
# The day as each language writes it in formal letters; CLDR's English "full" puts a comma
# after the weekday, British style (the series' publications) does not.
_DATE_PATTERNS = {"en": "EEEE d MMMM y", "fr": "full", "es": "full"}
_LOCALES = {"en": "en_GB", "fr": "fr_FR", "es": "es_ES"}
_VOWELS = tuple("AEIOUYÂÉÈÊÎÔÛH")

# "+1 day" after a span that ends on a later day than it starts, in each language.
_NEXT_DAY = {"en": ("+{n} day", "+{n} days"), "fr": ("+{n} jour", "+{n} jours"),
             "es": ("+{n} día", "+{n} días")}
# The line under a capital's time: it is the capital's, and other zones differ.
OTHER_ZONES = {
    "en": "This is the time in the capital; your country has several time zones, so it may "
          "differ where you are.",
    "fr": "C’est l’heure de la capitale ; votre pays compte plusieurs fuseaux horaires, elle "
          "peut donc être différente là où vous êtes.",
    "es": "Es la hora de la capital; su país tiene varios husos horarios, por lo que puede "
          "ser distinta donde usted se encuentre.",
}

# French zone names that are place names taking an article: CLDR gives the name
# ("Jamaïque") but not its article, and "heure de Jamaïque" reads as a mistake. CLDR's own
# zone names are used first where they name the place ("heure du Cap-Vert", see
# ``_french_label``); these are the exemplar cities of zone.tab left after that.
_FRENCH_DE = {
    "Jamaïque": "de la", "Comores": "des", "Bermudes": "des", "Barbade": "de la",
    "La Barbade": "de la", "Dominique": "de la", "Grenade": "de la", "Koweït": "du",
    "Caïmans": "des îles", "Îles Féroé": "des îles", "Île de Man": "de l’île",
    "Géorgie du Sud": "de la", "Palaos": "des", "Fidji": "des", "Cap-Vert": "du",
}
_STRIP = {"La Barbade": "Barbade", "Îles Féroé": "Féroé", "Île de Man": "Man"}

# Countries whose zones have different UTC offsets: the capital's zone and name (CLDR has
# no capitals; tzdata's zone.tab lists zones by region, not by importance).
CAPITALS: dict[str, tuple[str, dict[str, str]]] = {
    "AU": ("Australia/Sydney", {"en": "Canberra", "fr": "Canberra", "es": "Canberra"}),
    "BR": ("America/Sao_Paulo", {"en": "Brasília", "fr": "Brasília", "es": "Brasilia"}),
    "CA": ("America/Toronto", {"en": "Ottawa", "fr": "Ottawa", "es": "Ottawa"}),
    "CD": ("Africa/Kinshasa", {"en": "Kinshasa", "fr": "Kinshasa", "es": "Kinsasa"}),
    "CL": ("America/Santiago", {"en": "Santiago", "fr": "Santiago", "es": "Santiago"}),
    "CN": ("Asia/Shanghai", {"en": "Beijing", "fr": "Pékin", "es": "Pekín"}),
    "EC": ("America/Guayaquil", {"en": "Quito", "fr": "Quito", "es": "Quito"}),
    "ES": ("Europe/Madrid", {"en": "Madrid", "fr": "Madrid", "es": "Madrid"}),
    "FM": ("Pacific/Pohnpei", {"en": "Palikir", "fr": "Palikir", "es": "Palikir"}),
    "GL": ("America/Nuuk", {"en": "Nuuk", "fr": "Nuuk", "es": "Nuuk"}),
    "ID": ("Asia/Jakarta", {"en": "Jakarta", "fr": "Jakarta", "es": "Yakarta"}),
    "KI": ("Pacific/Tarawa", {"en": "Tarawa", "fr": "Tarawa", "es": "Tarawa"}),
    "MN": ("Asia/Ulaanbaatar", {"en": "Ulaanbaatar", "fr": "Oulan-Bator",
                                "es": "Ulán Bator"}),
    "MX": ("America/Mexico_City", {"en": "Mexico City", "fr": "Mexico",
                                   "es": "Ciudad de México"}),
    "NZ": ("Pacific/Auckland", {"en": "Wellington", "fr": "Wellington", "es": "Wellington"}),
    "PF": ("Pacific/Tahiti", {"en": "Papeete", "fr": "Papeete", "es": "Papeete"}),
    "PG": ("Pacific/Port_Moresby", {"en": "Port Moresby", "fr": "Port Moresby",
                                    "es": "Port Moresby"}),
    "PT": ("Europe/Lisbon", {"en": "Lisbon", "fr": "Lisbonne", "es": "Lisboa"}),
    "RU": ("Europe/Moscow", {"en": "Moscow", "fr": "Moscou", "es": "Moscú"}),
    "UA": ("Europe/Kyiv", {"en": "Kyiv", "fr": "Kyiv", "es": "Kiev"}),
    "US": ("America/New_York", {"en": "Washington", "fr": "Washington",
                                "es": "Washington"}),
}


def _locale(lang: str) -> str:
    return _LOCALES.get(lang, "en_GB")


def format_day(moment: datetime, lang: str, tz: ZoneInfo | timezone = timezone.utc) -> str:
    """The day of ``moment`` in ``tz``, e.g. "jeudi 9 juillet 2020"."""
    local = moment.astimezone(tz)
    return format_date(local.date(), _DATE_PATTERNS.get(lang, "full"), locale=_locale(lang))


def format_day_short(moment: datetime, lang: str) -> str:
    """The UTC day of ``moment`` without its weekday, as the messages write dates: "9 July
    2020" (British, not CLDR English's "July 9, 2020"), "9 juillet 2020"."""
    return format_date(moment.astimezone(timezone.utc).date(), "long", locale=_locale(lang))


def _hours(start: datetime, end: datetime, tz: ZoneInfo | timezone, lang: str) -> str:
    """"23:00–02:00 +1 day": the end's day is said when it is not the start's."""
    first = format_time(start, "HH:mm", tzinfo=tz, locale=_locale(lang))
    last = format_time(end, "HH:mm", tzinfo=tz, locale=_locale(lang))
    days = (end.astimezone(tz).date() - start.astimezone(tz).date()).days
    if days <= 0:
        return f"{first}–{last}"
    one, many = _NEXT_DAY.get(lang, _NEXT_DAY["en"])
    return f"{first}–{last} " + (one if days == 1 else many).format(n=days)


def format_span_utc(start: datetime, end: datetime, lang: str) -> str:
    """The event's span as the series publishes it: "jeudi 9 juillet 2020, 08:00–09:45 UTC"."""
    utc = timezone.utc
    hours = _hours(start, end, utc, lang)
    first, _, rest = hours.partition(" ")
    # "08:00–01:00 UTC +1 day": the zone stays next to the hours.
    return f"{format_day(start, lang, utc)}, {first} UTC" + (f" {rest}" if rest else "")


def zone_for(name: str | None) -> ZoneInfo | None:
    """The zone called ``name``, or None when it is unknown or just UTC."""
    if not name or name in _UTC_NAMES:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _city(zone: ZoneInfo, lang: str) -> str:
    city = get_timezone_location(zone, locale=_locale(lang), return_city=True)
    # For zones CLDR lacks a city for, Babel returns the zone's path ("Argentina/Buenos Aires").
    return city.rpartition("/")[2]


def zone_label(zone: ZoneInfo, lang: str) -> str:
    """How the zone is named in a sentence: "Dakar time", "heure de Dakar", "hora de Dakar"."""
    return city_label(_city(zone, lang), lang, zone)


def city_label(city: str, lang: str, zone: ZoneInfo | None = None) -> str:
    """"{city} time" in ``lang``, with French elision and articles."""
    if lang == "fr":
        return _french_label(city, zone)
    if lang == "es":
        return f"hora de {city}"
    return f"{city} time"


def _french_label(city: str, zone: ZoneInfo | None) -> str:
    # CLDR's name of the zone, where it names the place, has the right article already
    # ("heure du Cap-Vert", "heure des Palaos").
    if zone is not None:
        metazone = get_global("meta_zones").get(zone.key)
        names = Locale.parse("fr").meta_zones.get(metazone, {}).get("long", {}) if metazone \
            else {}
        for variant in ("generic", "standard"):
            name = names.get(variant)
            if name and city.casefold() in name.casefold() and "normale" not in name:
                return name
    article = _FRENCH_DE.get(city)
    if article is not None:
        return f"heure {article} {_STRIP.get(city, city)}"
    # French elides "de" before a vowel and contracts "de Le" (Le Caire -> du Caire).
    if city.startswith("Le "):
        return f"heure du {city[3:]}"
    if city.startswith(_VOWELS):
        return f"heure d’{city}"
    return f"heure de {city}"


@dataclass(frozen=True)
class LocalZone:
    """The zone a participant's local time is given in, and why it was chosen.

    ``how``: "only" (their country has one UTC offset), "mail" (the offset of their reply's
    Date header picked it among their country's zones) or "capital" (several zones and no
    Date header to choose by: the capital's, said as such, with a line that others differ).
    """

    zone: ZoneInfo
    how: Literal["only", "mail", "capital"]
    country: str
    matches: tuple[str, ...] = ()       # for "mail": every zone of the country that fits


def local_zone(country: str | None, utc_offset: int | None, at: datetime,
               seen_at: datetime | None = None) -> LocalZone | None:
    """The zone of a participant of ``country`` at the moment ``at`` (the event's start).

    ``utc_offset`` (minutes) is their reply's Date header, written at ``seen_at`` (default:
    ``at``): among the country's zones, those with that offset then are theirs. The offset
    is compared at the moment it was written, not at the event: a reply from Los Angeles in
    February (-0800) is Pacific time, where comparing at a July event (when -0800 is
    Alaska's) would give Alaska time. When the zones that fit disagree at the event
    (Denver and Phoenix, both -0700 in winter), the mail does not tell which: the capital's.
    """
    if not country:
        return None
    code = country.upper()
    zones = [z for z in (zone_for(name) for name in country_zones(code)) if z is not None]
    offsets = {at.astimezone(z).utcoffset() for z in zones}
    if len(offsets) <= 1:
        main = zone_for(country_timezone(code))
        return LocalZone(main, "only", code) if main is not None else None
    if utc_offset is not None:
        wanted = timedelta(minutes=utc_offset)
        when = seen_at or at
        fitting = [z for z in zones if when.astimezone(z).utcoffset() == wanted]
        if fitting and len({at.astimezone(z).utcoffset() for z in fitting}) == 1:
            capital = CAPITALS.get(code, ("",))[0]
            fitting.sort(key=lambda z: z.key != capital)
            return LocalZone(fitting[0], "mail", code, tuple(z.key for z in fitting))
    capital_zone = zone_for(CAPITALS[code][0] if code in CAPITALS else country_timezone(code))
    if capital_zone is None:
        return None
    return LocalZone(capital_zone, "capital", code)


def local_label(local: LocalZone, lang: str, at: datetime) -> str:
    """The zone as the participant reads it at ``at``: "heure de Dakar", "Pacific Time"."""
    if local.how == "only":
        return zone_label(local.zone, lang)
    if local.how == "capital":
        names = CAPITALS.get(local.country, (None, {}))[1]
        city = names.get(lang) or names.get("en")
        if not city:
            return zone_label(local.zone, lang)
        # Where CLDR names the capital's zone after the capital ("Brasilia Time", "heure de
        # Moscou"), that name, so the zone reads the same whether or not their mail told it
        # (it read "Brasília time" here and "Brasilia Time" from a -0300 reply).
        name = metazone_name(local.zone, lang)
        if name and _folded(city) in _folded(name):
            return name
        return city_label(city, lang)
    # From their mail's offset: CLDR's name of the region's zone ("Pacific Time", "heure de
    # l’Est de l’Australie") when every fitting zone shares it, else the offset itself.
    metazones = get_global("meta_zones")
    shared = {metazones.get(key) for key in local.matches}
    if len(shared) == 1 and None not in shared:
        name = metazone_name(local.zone, lang)
        if name:
            return name
    return _offset_text(at.astimezone(local.zone).utcoffset() or timedelta())


def metazone_name(zone: ZoneInfo, lang: str) -> str | None:
    """CLDR's long name of the zone's region as a sentence names it: the generic name
    ("Eastern Time", "heure de Brasilia"), or for a region without summer time its only
    one ("Western Indonesia Time", "heure d’Afrique de l’Ouest"); None when CLDR has
    neither. Babel's ``get_timezone_name`` would fall back to a country and a city ("Indonesia
    (Jakarta) Time", "Congo - Kinshasa (Kinshasa) Time", "heure : Brésil")."""
    metazone = get_global("meta_zones").get(zone.key)
    if metazone is None:
        return None
    names = _babel_locale(lang).meta_zones.get(metazone, {}).get("long", {})
    if names.get("generic"):
        return str(names["generic"])
    if names.get("standard") and not names.get("daylight"):
        return str(names["standard"])
    return None


@cache
def _babel_locale(lang: str) -> Locale:
    return Locale.parse(_locale(lang))


def _folded(text: str) -> str:
    """``text`` without accents or case: "Brasília" is found in "Brasilia Time"."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def _offset_text(offset: timedelta) -> str:
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "−"
    hours, rest = divmod(abs(minutes), 60)
    return f"UTC{sign}{hours:02d}:{rest:02d}"


@dataclass(frozen=True)
class LocalSpan:
    """The span in the participant's zone, and a note when their country has other zones."""

    text: str
    note: str = ""


def local_span(start: datetime, end: datetime, lang: str, country: str | None,
               utc_offset: int | None = None, seen_at: datetime | None = None) -> LocalSpan:
    """"10:00–11:45 (heure de Paris)" for a participant of ``country``, or "" for UTC/unknown.

    ``utc_offset`` is their reply's, written at ``seen_at`` (see ``local_zone``). The day is
    repeated only when it differs from the UTC day (Asia-Pacific mornings are the previous
    evening in the Americas), so the usual case stays short.
    """
    local = local_zone(country, utc_offset, start, seen_at)
    if local is None:
        return LocalSpan("")
    zone = local.zone
    label = local_label(local, lang, start)
    text = f"{_hours(start, end, zone, lang)} ({label})"
    if start.astimezone(zone).date() != start.astimezone(timezone.utc).date():
        text = f"{format_day(start, lang, zone)}, {text}"
    note = OTHER_ZONES.get(lang, OTHER_ZONES["en"]) if local.how == "capital" else ""
    return LocalSpan(text, note)
