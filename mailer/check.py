"""What ``mailer check`` validates: configuration, schedules, pack files, contacts and templates.

Every mistake becomes one ``Problem`` naming the file, the field and, where it can be found,
the line; ``str(problem)`` is the line staff read. Nothing here sends mail or opens a socket.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from mailer.config import Settings, load_settings
from mailer.errors import ConfigError, InvalidInput, Problem
from mailer.schedule import LANGUAGES, Catalog, read_catalog


def check(settings_path: Path | None) -> list[Problem]:
    """Validate everything staff edit and return every problem found (empty when all is well).

    ``settings_path`` is the configuration file, which must then exist; ``None`` means the
    built-in defaults and the environment only. Schedules are read from ``paths.schedules``,
    pack files from ``paths.packs``, templates from ``paths.templates``.
    """
    try:
        settings = load_settings(settings_path, required=settings_path is not None)
    except ConfigError as exc:
        # Without valid settings we do not know where the schedules are: stop here.
        return list(exc.problems)
    catalog, problems = read_catalog(settings.paths.schedules)
    problems += check_packs(catalog, settings)
    problems += check_contacts(catalog, settings,
                               str(settings_path) if settings_path else "environment")
    problems += check_templates(settings, catalog)
    return problems


def format_problems(problems: Iterable[Problem]) -> str:
    """One line per problem, then a count; what ``mailer check`` prints."""
    lines = [str(p) for p in problems]
    if not lines:
        return "no problems found"
    count = f"{len(lines)} problem" + ("" if len(lines) == 1 else "s")
    return "\n".join([*lines, count])


def pack_file(packs: Path, pattern: str, lang: str) -> Path:
    """The file a pack pattern names for one language (``{lang}`` replaced)."""
    # str.replace, not str.format: a stray brace in a path must not raise.
    return packs / pattern.replace("{lang}", lang)


def check_packs(catalog: Catalog, settings: Settings) -> list[Problem]:
    """Every pack item of every series must exist in each language its events are held in.

    Participants in other languages fall back to the event's language, so that one file is
    the minimum. A file too big to attach is a problem unless packs are sent as links.
    """
    problems: list[Problem] = []
    for series in catalog.series.values():
        if series.spec.pack is None:
            continue
        events_by_lang: dict[str, list[str]] = defaultdict(list)
        for event in catalog.events_of(series.id):
            events_by_lang[event.language].append(event.id)
        text = _text(series.file)
        for item, pattern in series.spec.pack.items():
            field = f"series.pack.{item}"
            line = _key_line(text, item)
            rest = pattern.replace("{lang}", "")
            if "{" in rest or "}" in rest:  # compose fills patterns with str.format
                problems.append(Problem(str(series.file), field, "only {lang} may appear in "
                                        "braces, like \"packs/slides.{lang}.pptx\"", line))
                continue
            for lang in LANGUAGES:
                if lang not in events_by_lang:
                    continue
                path = pack_file(settings.paths.packs, pattern, lang)
                users = ", ".join(events_by_lang[lang])
                if not path.is_file():
                    problems.append(Problem(str(series.file), field,
                                            f"file not found: {path} (needed in {lang!r} by "
                                            f"{users})", line))
                elif (settings.limits.pack_base_url is None
                      and path.stat().st_size > settings.limits.attach_max_bytes):
                    problems.append(Problem(str(series.file), field,
                                            f"{path} is larger than limits.attach_max_bytes; "
                                            "shrink it or set limits.pack_base_url", line))
    return problems


def check_contacts(catalog: Catalog, settings: Settings, config_name: str) -> list[Problem]:
    """The contacts CSVs (``paths.contacts`` and each series' ``contacts``) must read cleanly.

    Rows are read by ``mailer.contacts.read_contacts``, the daemon's own reader, so a file
    that passes here is a file the daemon sends invitations from. A series' ``contacts`` path
    is relative to ``paths.packs``, as the daemon resolves it.
    """
    problems: list[Problem] = []
    if settings.paths.contacts is not None:
        problems += _contacts_file(settings.paths.contacts,
                                   Problem(config_name, "paths.contacts", ""))
    for series in catalog.series.values():
        if series.spec.contacts is None:
            continue
        where = Problem(str(series.file), "series.contacts", "",
                        _key_line(_text(series.file), "contacts"))
        problems += _contacts_file(settings.paths.packs / series.spec.contacts, where)
    return problems


def _contacts_file(path: Path, where: Problem) -> list[Problem]:
    """Problems of one contacts CSV; ``where`` is the setting that names it (if it is missing)."""
    from mailer.contacts import read_contacts  # here: it pulls in the planner, check need not

    if not path.is_file():
        return [Problem(where.file, where.field, f"file not found: {path}", where.line)]
    return read_contacts(path)[1]


def check_templates(settings: Settings, catalog: Catalog) -> list[Problem]:
    """Ask the composer whether every template each event needs exists and renders."""
    try:
        # Imported here: templates are compose's business, and check must import without it.
        from mailer.compose import Composer
    except ImportError as exc:
        return [Problem(str(settings.paths.templates), None,
                        f"cannot check templates: {exc}")]
    try:
        return list(Composer(settings, catalog).check_templates(catalog))
    except InvalidInput as exc:
        return list(exc.problems)
    except Exception as exc:  # noqa: BLE001 - check must report a broken template, not crash
        return [Problem(str(settings.paths.templates), None,
                        f"template check failed: {type(exc).__name__}: {exc}")]


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""


def _key_line(text: str, key: str) -> int | None:
    """The 1-based line where ``key = ...`` is written, for pointing at a schedule setting."""
    pattern = re.compile(rf"^\s*{re.escape(key)}\s*=")
    for number, line in enumerate(text.splitlines(), start=1):
        if pattern.match(line):
            return number
    return None
