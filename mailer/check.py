"""What ``mailer check`` validates: configuration, schedules, pack files, contacts and templates.

Every mistake becomes one ``Problem`` naming the file, the field and, where it can be found,
the line; ``str(problem)`` is the line staff read. Nothing here sends mail; the store is
only read, to warn about registrations the schedules no longer invite.
"""

from __future__ import annotations

import re
import tomllib
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from pathlib import Path

from pydantic import ValidationError

from mailer.config import Paths, Settings, load_settings
from mailer.errors import ConfigError, InvalidInput, Problem
from mailer.schedule import LANGUAGES, Catalog, read_catalog


def check(settings_path: Path | None, now: datetime | None = None) -> list[Problem]:
    """Validate everything staff edit and return every problem found (empty when all is well).

    ``settings_path`` is the configuration file, which must then exist; ``None`` means the
    built-in defaults and the environment only. Schedules are read from ``paths.schedules``,
    pack files from ``paths.packs``, templates from ``paths.templates``. Every problem of
    every file is reported in one run (warnings have ``warning`` set); ``now`` decides which
    events are close enough for a missing link to be an error.
    """
    problems: list[Problem] = []
    try:
        settings = load_settings(settings_path, required=settings_path is not None)
    except ConfigError as exc:
        problems += exc.problems
        if settings_path is not None and not settings_path.is_file():
            return problems         # one cause: the folders it would name are unknown
        # Go on with the folders the file names (or the defaults), so the schedules and
        # templates are checked in the same run.
        settings = _fallback_settings(settings_path)
    missing = _missing_folders(settings, settings_path)
    if missing:
        # One cause, said once: not a line for each of fifty templates.
        return problems + missing
    catalog, found = read_catalog(settings.paths.schedules)
    problems += found
    problems += check_links(catalog, settings, now or datetime.now(timezone.utc))
    problems += check_organisers(catalog)
    problems += check_packs(catalog, settings)
    problems += check_contacts(catalog, settings,
                               str(settings_path) if settings_path else "environment")
    problems += check_templates(settings, catalog)
    problems += check_registrations(catalog, settings)
    return problems


def _fallback_settings(path: Path | None) -> Settings:
    """The defaults, with the ``[paths]`` of a configuration that failed elsewhere."""
    paths = Paths()
    try:
        if path is not None and path.is_file():
            raw = tomllib.loads(path.read_text(encoding="utf-8")).get("paths", {})
            paths = Paths.model_validate(raw)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, ValidationError,
            AttributeError):
        pass
    base = path.parent if path is not None else Path(".")
    return Settings.model_construct(paths=paths).resolve(base.resolve())


def _missing_folders(settings: Settings, path: Path | None) -> list[Problem]:
    """The schedules or templates folder is not there: one line each, or one for both when
    the command runs outside the install folder without a configuration."""
    schedules, templates = settings.paths.schedules, settings.paths.templates
    gone = [folder for folder in (schedules, templates) if not folder.is_dir()]
    if not gone:
        return []
    if path is None and len(gone) == 2:
        here = Path.cwd()
        return [Problem(str(here), None, "no config.toml, schedules/ or templates/ here: run "
                        "mailer check in the mailer's folder, or give --config PATH")]
    where = str(path) if path is not None else "defaults"
    return [Problem(str(folder), f"paths.{name}", f"folder not found (from {where})")
            for name, folder in (("schedules", schedules), ("templates", templates))
            if folder in gone]


def check_links(catalog: Catalog, settings: Settings, now: datetime) -> list[Problem]:
    """Every event not over needs an https ``join_url``: every acknowledgement and reminder
    promises it. A warning while the event is far off, an error within
    ``check.link_required_days`` of its start."""
    problems: list[Problem] = []
    soon = timedelta(days=settings.check.link_required_days)
    for event in sorted(catalog.events.values(), key=lambda e: (str(e.file), e.start)):
        if event.cancelled or event.end <= now:
            continue
        url = (event.spec.join_url or "").strip()
        if not url:
            what = "no join_url: the acknowledgements and reminders promise the link"
        elif not url.lower().startswith("https://"):
            what = f"join_url {url!r} does not start with https://"
        else:
            continue
        close = event.start - now < soon
        if close:
            what += f" (the event starts within {settings.check.link_required_days} days)"
        text = _text(event.file)
        line = _event_key_line(text, event.id, "join_url" if url else "id")
        problems.append(Problem(str(event.file), f"event {event.id}.join_url", what, line,
                                warning=not close))
    return problems


def check_registrations(catalog: Catalog, settings: Settings) -> list[Problem]:
    """A warning per event and country whose registrations the schedules no longer invite
    (they keep their places until staff cancel them). Read from the store when it exists:
    never created, migrated or written; a store that cannot be read is one warning."""
    from sqlalchemy.exc import SQLAlchemyError

    from mailer import store
    from mailer.sync import uninvited

    url = settings.store.url
    if store.missing_file(url):
        return []
    try:
        st = store.Store(url)
        try:
            with st.transaction() as session:
                found = uninvited(session, catalog)
        finally:
            st.close()
    except SQLAlchemyError as exc:
        first = str(exc.orig if getattr(exc, "orig", None) else exc).strip().splitlines()
        return [Problem("store.url", None, "registrations not checked against the schedules: "
                        f"{first[0] if first else type(exc).__name__}", warning=True)]
    problems = []
    for found_here in found:
        event = catalog.events[found_here.event_id]
        line = _event_key_line(_text(event.file), event.id, "invited")
        problems.append(Problem(str(event.file), f"event {event.id}.invited",
                                found_here.describe(), line, warning=True))
    return problems


_LANGUAGE_NAMES = {"en": "English", "fr": "French", "es": "Spanish"}


def check_organisers(catalog: Catalog) -> list[Problem]:
    """Organisers are named in sentences ("Organisé par l’Union européenne"): a warning for
    a series whose participants' languages lack their own list. Participants get their own
    language whatever the event's, so every language counts."""
    problems: list[Problem] = []
    for series in catalog.series.values():
        named = series.spec.organisers
        if not named:
            continue
        line = _key_line(_text(series.file), "organisers")
        if isinstance(named, list):
            problems.append(Problem(
                str(series.file), "series.organisers", "one list for every language: it "
                "reads \"Organisé par " + " et ".join(named) + "\" in French; give one list "
                "per language, each as it reads after \"by\" (fr = [\"l’Union européenne\", "
                "...])", line, warning=True))
            continue
        missing = [_LANGUAGE_NAMES[lang] for lang in LANGUAGES if lang not in named]
        if missing:
            problems.append(Problem(str(series.file), "series.organisers", "no list in "
                                    f"{' or '.join(missing)}: those messages and certificates "
                                    "name the organisers in another language", line,
                                    warning=True))
    return problems


def _event_key_line(text: str, event_id: str, key: str) -> int | None:
    """The line of ``key = ...`` in the ``[[event]]`` table whose id is ``event_id``."""
    lines = text.splitlines()
    own = re.compile(rf"^\s*id\s*=\s*[\"']{re.escape(event_id)}[\"']")
    wanted = re.compile(rf"^\s*{re.escape(key)}\s*=")
    for start, line in enumerate(lines):
        if own.match(line):
            first = start
            while first > 0 and not lines[first].strip().startswith("[[event]]"):
                first -= 1
            for number in range(first, len(lines)):
                if number > start and lines[number].strip().startswith("["):
                    break
                if wanted.match(lines[number]):
                    return number + 1
            return start + 1
    return None


def format_problems(problems: Iterable[Problem]) -> str:
    """One line per problem, then a count; what ``mailer check`` prints."""
    problems = list(problems)
    lines = [str(p) for p in problems]
    if not lines:
        return "no problems found"
    errors = sum(not p.warning for p in problems)
    warnings = len(problems) - errors
    count = f"{errors} problem" + ("" if errors == 1 else "s")
    if warnings:
        count += f", {warnings} warning" + ("" if warnings == 1 else "s")
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
    with_packs = [s for s in catalog.series.values() if s.spec.pack is not None]
    if with_packs and not settings.paths.packs.is_dir():
        return [Problem(str(settings.paths.packs), "paths.packs", "folder not found (pack "
                        f"files of {', '.join(s.id for s in with_packs)} are read from it)")]
    for series in with_packs:
        assert series.spec.pack is not None
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
            # One line per item, whatever the number of languages it is missing in.
            missing = [lang for lang in LANGUAGES if lang in events_by_lang
                       and not pack_file(settings.paths.packs, pattern, lang).is_file()]
            if missing:
                shown = pack_file(settings.paths.packs, pattern, missing[0]) if len(
                    missing) == 1 else settings.paths.packs / pattern
                users = ", ".join(e for lang in missing for e in events_by_lang[lang])
                problems.append(Problem(str(series.file), field, f"file not found: {shown} "
                                        f"(needed in {', '.join(map(repr, missing))} by "
                                        f"{users})", line))
            for lang in LANGUAGES:
                if lang not in events_by_lang or lang in missing:
                    continue
                path = pack_file(settings.paths.packs, pattern, lang)
                if (settings.limits.pack_base_url is None
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
