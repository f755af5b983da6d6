"""Tests for reading country names as people write them, and for participants' time zones."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from mailer.countries import all_codes, country_timezone, resolve_country, suggest_country

SPELLINGS = {
    # English, French and Spanish names, any case, with or without accents.
    "Senegal": "SN", "Sénégal": "SN", "SENEGAL": "SN", "senegal": "SN", "Senegal ": "SN",
    "Jamaica": "JM", "Jamaïque": "JM", "Barbados": "BB", "Barbade": "BB",
    "Mexico": "MX", "México": "MX", "Mexique": "MX", "Brazil": "BR", "Brésil": "BR",
    "Brasil": "BR", "Pérou": "PE", "Perú": "PE", "Peru": "PE", "Haïti": "HT", "Haiti": "HT",
    "Allemagne": "DE", "Alemania": "DE", "España": "ES", "Espagne": "ES",
    "Afrique du Sud": "ZA", "Sudáfrica": "ZA", "Fidji": "FJ", "Fiyi": "FJ", "Fiji": "FJ",
    "Îles Salomon": "SB", "Islas Salomón": "SB", "Nouvelle-Zélande": "NZ",
    "Équateur": "EC", "Ecuador": "EC", "Tchad": "TD", "Côte d'Ivoire": "CI",
    "Cote d'Ivoire": "CI", "Côte d’Ivoire": "CI",
    # Official names, leading articles and "Republic of".
    "Republic of Senegal": "SN", "République du Sénégal": "SN", "The Gambia": "GM",
    "Gambie": "GM", "El Salvador": "SV", "The Bahamas": "BS", "Le Niger": "NE",
    "United States of America": "US", "Russian Federation": "RU", "Brunei Darussalam": "BN",
    "Bolivia (Plurinational State of)": "BO", "Iran (Islamic Republic of)": "IR",
    "Lao People's Democratic Republic": "LA", "Republic of Moldova": "MD",
    "République de Moldavie": "MD", "United Republic of Tanzania": "TZ",
    "République centrafricaine": "CF", "Centrafrique": "CF",
    # Short forms and variants the libraries lack.
    "RDC": "CD", "DRC": "CD", "Congo-Kinshasa": "CD", "Democratic Republic of Congo": "CD",
    "République démocratique du Congo": "CD", "República Democrática del Congo": "CD",
    "Congo-Brazzaville": "CG", "Republic of the Congo": "CG", "République du Congo": "CG",
    "Ivory Coast": "CI", "Trinidad & Tobago": "TT", "Trinidad and Tobago": "TT",
    "Trinité-et-Tobago": "TT", "Trinidad y Tobago": "TT",
    "St Kitts and Nevis": "KN", "St. Kitts": "KN", "Saint Kitts & Nevis": "KN",
    "Saint-Christophe-et-Niévès": "KN", "San Cristóbal y Nieves": "KN",
    "St Lucia": "LC", "Sainte-Lucie": "LC", "Santa Lucía": "LC",
    "St Vincent": "VC", "St. Vincent & the Grenadines": "VC",
    "Saint-Vincent-et-les-Grenadines": "VC", "San Vicente y las Granadinas": "VC",
    "Antigua y Barbuda": "AG",
    "UK": "GB", "U.K.": "GB", "Great Britain": "GB", "Royaume-Uni": "GB", "Reino Unido": "GB",
    "USA": "US", "U.S.A.": "US", "EEUU": "US", "EE.UU.": "US", "États-Unis": "US",
    "Estados Unidos": "US", "Holland": "NL", "Pays-Bas": "NL", "Países Bajos": "NL",
    "Türkiye": "TR", "Turkey": "TR", "Turquie": "TR", "Cabo Verde": "CV", "Cape Verde": "CV",
    "Cap-Vert": "CV", "Eswatini": "SZ", "Swaziland": "SZ", "Burma": "MM", "Myanmar": "MM",
    "Viet Nam": "VN", "Vietnam": "VN", "República Dominicana": "DO",
    "République dominicaine": "DO", "Dominican Republic": "DO", "Dominicana": "DO",
    "South Korea": "KR", "Republic of Korea": "KR", "République de Corée": "KR",
    "Corea del Sur": "KR", "North Korea": "KP", "DPRK": "KP", "Czech Republic": "CZ",
    "Tchéquie": "CZ", "Macedonia": "MK", "Kosovo": "XK", "Palestine": "PS", "Vatican": "VA",
    # Typos.
    "Senagal": "SN", "Jamiaca": "JM", "Colmbia": "CO", "Philipines": "PH", "Gautemala": "GT",
    "Venezuala": "VE", "Kazakstan": "KZ", "Trinidad and Tobaggo": "TT",
    # ISO codes, alpha-2 and alpha-3, in capitals.
    "SN": "SN", "SEN": "SN", "JAM": "JM", "TTO": "TT", "XK": "XK", " GB ": "GB",
}


@pytest.mark.parametrize(("text", "code"), SPELLINGS.items())
def test_resolves_usual_spellings(text: str, code: str) -> None:
    """Every usual way of writing a country, in any of the three languages, gives its code."""
    assert resolve_country(text) == code


NEAR_MISSES = {
    "Dominica": "DM", "Dominique": "DM", "Dominican Republic": "DO", "República Dominicana": "DO",
    "Niger": "NE", "Níger": "NE", "Nigeria": "NG", "Nigéria": "NG",
    "Guinea": "GN", "Guinée": "GN", "Guinea-Bissau": "GW", "Guinée-Bissau": "GW",
    "Equatorial Guinea": "GQ", "Guinée équatoriale": "GQ", "Guinea Ecuatorial": "GQ",
    "Papua New Guinea": "PG", "Papouasie-Nouvelle-Guinée": "PG",
    "Sudan": "SD", "Soudan": "SD", "South Sudan": "SS", "Soudan du Sud": "SS",
    "Sudán del Sur": "SS", "Congo": "CG", "Congo-Brazzaville": "CG", "Congo-Kinshasa": "CD",
    "Democratic Republic of the Congo": "CD", "Austria": "AT", "Australia": "AU",
    "Guyana": "GY", "Suriname": "SR", "Mali": "ML", "Malawi": "MW", "Iran": "IR", "Iraq": "IQ",
}


@pytest.mark.parametrize(("text", "code"), NEAR_MISSES.items())
def test_near_misses_stay_distinct(text: str, code: str) -> None:
    """Countries whose names contain each other are never confused."""
    assert resolve_country(text) == code


@pytest.mark.parametrize("text", [
    "Korea", "Corée", "Corea",         # North or South?
    "Nigerie", "Austrlia",              # a typo equally close to two countries
])
def test_ambiguous_names_are_refused(text: str) -> None:
    """A name that could be two countries gives None rather than a guess."""
    assert resolve_country(text) is None


@pytest.mark.parametrize("text", [
    "", "   ", "N/A", "-", "12345", "hello", "Ministry of Justice", "Ministère de la Justice",
    "Africa", "Europe", "Dakar", "Geneva", "Vienna", "ZZ", "QQQ", "Magistrate",
    "Mr", "Ms", "No", "St", "sn",       # titles and words that are codes only in capitals
])
def test_garbage_is_not_a_country(text: str) -> None:
    """Text that is clearly not a country gives None."""
    assert resolve_country(text) is None


def test_non_string_is_not_a_country() -> None:
    """A missing field (None) gives None instead of raising."""
    assert resolve_country(None) is None  # type: ignore[arg-type]


@pytest.mark.parametrize(("code", "zone"), [
    ("SN", "Africa/Dakar"), ("US", "America/New_York"), ("TT", "America/Port_of_Spain"),
    ("FJ", "Pacific/Fiji"), ("BR", "America/Sao_Paulo"), ("AU", "Australia/Sydney"),
    ("RU", "Europe/Moscow"), ("CA", "America/Toronto"), ("UA", "Europe/Kyiv"),
    ("MX", "America/Mexico_City"), ("sn", "Africa/Dakar"),
])
def test_country_timezone(code: str, zone: str) -> None:
    """A country's local zone is its only zone, or where its capital or most people are."""
    assert country_timezone(code) == zone


@pytest.mark.parametrize("code", ["ZZ", "", "Senegal"])
def test_unknown_country_timezone_is_utc(code: str) -> None:
    """An unknown code gets UTC rather than an error."""
    assert country_timezone(code) == "UTC"


def test_every_country_has_a_loadable_zone() -> None:
    """Every accepted country code maps to a zone the zoneinfo database can load."""
    for code in sorted(all_codes()):
        assert ZoneInfo(country_timezone(code)).key == country_timezone(code)


@pytest.mark.parametrize(("text", "code"), [
    ("Frnace", "FR"), ("Kneya", "KE"), ("Brazli", "BR"), ("Egpyt", "EG")])
def test_staff_get_a_suggestion_for_swapped_letters_that_a_reply_is_never_read_as(
        text: str, code: str) -> None:
    """Two swapped letters score under the reply cutoff: a reply's country is not guessed
    from them (it would register someone for it), but a schedule's hint to staff names it."""
    assert resolve_country(text) is None
    assert suggest_country(text) == code
