"""Dates and times as participants read them: an event's span in UTC and in their local time.

Babel (CLDR) does the localisation; only the short "(heure de Dakar)" phrase is ours, because
CLDR's own location format reads "heure : Sénégal", which is not what a secretariat writes.
"""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel.dates import format_date, format_time, get_timezone_location

# Zone names that mean "the same as UTC": no local line is shown for them.
_UTC_NAMES = frozenset({"UTC", "Etc/UTC", "Etc/UCT", "UCT", "Etc/GMT", "GMT", "Etc/Universal",
                        "Universal", "Etc/Zulu", "Zulu", "Etc/GMT0", "Etc/GMT+0", "Etc/GMT-0"})
# The day as each language writes it in formal letters; CLDR's English "full" puts a comma
# after the weekday, British style (the series' publications) does not.
_DATE_PATTERNS = {"en": "EEEE d MMMM y", "fr": "full", "es": "full"}
_LOCALES = {"en": "en_GB", "fr": "fr_FR", "es": "es_ES"}
_VOWELS = tuple("AEIOUYÂÉÈÊÎÔÛH")


def _locale(lang: str) -> str:
    return _LOCALES.get(lang, "en_GB")


def format_day(moment: datetime, lang: str, tz: ZoneInfo | timezone = timezone.utc) -> str:
    """The day of ``moment`` in ``tz``, e.g. "jeudi 9 juillet 2020"."""
    local = moment.astimezone(tz)
    return format_date(local.date(), _DATE_PATTERNS.get(lang, "full"), locale=_locale(lang))


def _hours(start: datetime, end: datetime, tz: ZoneInfo | timezone, lang: str) -> str:
    first = format_time(start, "HH:mm", tzinfo=tz, locale=_locale(lang))
    last = format_time(end, "HH:mm", tzinfo=tz, locale=_locale(lang))
    return f"{first}–{last}"


def format_span_utc(start: datetime, end: datetime, lang: str) -> str:
    """The event's span as the series publishes it: "jeudi 9 juillet 2020, 08:00–09:45 UTC"."""
    utc = timezone.utc
    return f"{format_day(start, lang, utc)}, {_hours(start, end, utc, lang)} UTC"


def zone_for(name: str | None) -> ZoneInfo | None:
    """The zone called ``name``, or None when it is unknown or just UTC."""
    if not name or name in _UTC_NAMES:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def zone_label(zone: ZoneInfo, lang: str) -> str:
    """How the zone is named in a sentence: "Dakar time", "heure de Dakar", "hora de Dakar"."""
    city = get_timezone_location(zone, locale=_locale(lang), return_city=True)
    # For zones CLDR lacks a city for, Babel returns the zone's path ("Argentina/Buenos Aires").
    city = city.rpartition("/")[2]
    if lang == "fr":
        # French elides "de" before a vowel and contracts "de Le" (Le Caire -> du Caire).
        if city.startswith("Le "):
            return f"heure du {city[3:]}"
        if city.startswith(_VOWELS):
            return f"heure d’{city}"
        return f"heure de {city}"
    if lang == "es":
        return f"hora de {city}"
    return f"{city} time"


def format_span_local(start: datetime, end: datetime, lang: str, zone_name: str | None) -> str:
    """The span in the participant's zone, "10:00–11:45 (heure de Paris)", or "" for UTC/unknown.

    The day is repeated only when it differs from the UTC day (Asia-Pacific mornings are the
    previous evening in the Americas), so the usual case stays short.
    """
    zone = zone_for(zone_name)
    if zone is None:
        return ""
    text = f"{_hours(start, end, zone, lang)} ({zone_label(zone, lang)})"
    if start.astimezone(zone).date() != start.astimezone(timezone.utc).date():
        text = f"{format_day(start, lang, zone)}, {text}"
    return text
