"""Focal points: the contacts CSV staff keep, one row per person who receives the invitation."""

from __future__ import annotations

import csv
from pathlib import Path

from mailer.countries import is_country_code
from mailer.errors import Problem
from mailer.planner import Contact
from mailer.schedule import LANGUAGES, Catalog

COLUMNS = ("country", "name", "email", "language", "organisation")


def read_contacts(path: Path, series_id: str | None = None
                  ) -> tuple[list[Contact], list[Problem]]:
    """Read one contacts CSV; return the good rows and a problem per bad one (with its line)."""
    contacts: list[Contact] = []
    problems: list[Problem] = []
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in COLUMNS[:3] if c not in (reader.fieldnames or [])]
            if missing:
                return [], [Problem(str(path), None, f"missing column(s): {', '.join(missing)}"
                                    f" (expected {', '.join(COLUMNS)})", 1)]
            for row in reader:
                line = reader.line_num
                country = (row.get("country") or "").strip().upper()
                email = (row.get("email") or "").strip()
                language = (row.get("language") or "en").strip().lower() or "en"
                if not is_country_code(country):
                    problems.append(Problem(str(path), "country",
                                            f"unknown country code {country!r}", line))
                    continue
                if "@" not in email:
                    problems.append(Problem(str(path), "email", f"not an address: {email!r}",
                                            line))
                    continue
                if language not in LANGUAGES:
                    problems.append(Problem(str(path), "language",
                                            f"unknown language {language!r} (en, fr or es)",
                                            line))
                    continue
                contacts.append(Contact(country=country, name=(row.get("name") or "").strip(),
                                        email=email.lower(), language=language,
                                        organisation=(row.get("organisation") or "").strip(),
                                        series_id=series_id))
    except OSError as exc:
        problems.append(Problem(str(path), None, f"cannot read: {exc.strerror}"))
    return contacts, problems


def catalog_contacts(catalog: Catalog, base: Path, shared: Path | None = None
                     ) -> tuple[list[Contact], list[Problem]]:
    """Every series' contacts (``series.contacts``, relative to ``base``), deduplicated.

    ``shared`` is a contacts file for every series (``paths.contacts`` in the configuration).
    """
    contacts: dict[tuple[str, str, str], Contact] = {}
    problems: list[Problem] = []
    if shared is not None:
        found, bad = read_contacts(shared)
        problems.extend(bad)
        for contact in found:
            contacts[(contact.email, contact.country, "")] = contact
    for series in catalog.series.values():
        if not series.spec.contacts:
            continue
        path = base / series.spec.contacts
        if not path.is_file():
            problems.append(Problem(str(series.file), "series.contacts",
                                    f"contacts file not found: {path}"))
            continue
        found, bad = read_contacts(path, series.id)
        problems.extend(bad)
        for contact in found:
            contacts[(contact.email, contact.country, series.id)] = contact
    return list(contacts.values()), problems
