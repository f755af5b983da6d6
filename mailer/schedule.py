"""Event schedules: the ``schedules/*.toml`` files staff write, loaded into validated events.

One file per series; named country groups (``[groups]``) may sit in any file and are shared by
all. Loading never stops at the first mistake: every problem is collected with its file,
field and (where it can be found) line, so ``mailer check`` can show them all at once.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from rapidfuzz import fuzz, process

from mailer.countries import country_name, is_country_code, suggest_country
from mailer.durations import parse_duration
from mailer.errors import Problem, ScheduleError, toml_error

LANGUAGES: tuple[str, ...] = ("en", "fr", "es")
Language = Literal["en", "fr", "es"]
PACK_ITEMS: tuple[str, ...] = ("factsheet", "bibliography", "slides")


def _duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    return parse_duration(value)


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("give a time zone, like 2020-07-09T08:00:00Z (Z means UTC)")
    return value.astimezone(timezone.utc)


Duration = Annotated[timedelta, BeforeValidator(_duration)]
Instant = Annotated[datetime, AfterValidator(_aware)]


def _titles(value: Any) -> Any:
    return {"en": value} if isinstance(value, str) else value


Titles = Annotated[dict[Language, str], BeforeValidator(_titles)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PackSpec(_Spec):
    """The information pack's files; ``{lang}`` in a path picks the participant's language."""

    factsheet: str | None = None
    bibliography: str | None = None
    slides: str | None = None

    @field_validator("factsheet", "bibliography", "slides")
    @classmethod
    def _only_lang_placeholder(cls, value: str | None) -> str | None:
        if value is not None:
            for name in re.findall(r"{([^{}]*)}", value):
                if name != "lang":
                    raise ValueError(f"unknown placeholder {{{name}}}: only {{lang}} is "
                                     "replaced (by en, fr or es)")
        return value

    def items(self) -> list[tuple[str, str]]:
        """The (item, path pattern) pairs that are set, in the order they are attached."""
        return [(name, getattr(self, name)) for name in PACK_ITEMS if getattr(self, name)]


class SeriesSpec(_Spec):
    """The ``[series]`` table: what every event of the series shares."""

    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$")]
    title: Titles
    # One list for every language, or one per language: {en = [...], fr = [...]}.
    organisers: list[str] | dict[Language, list[str]] = []
    max_per_country: int = Field(default=4, ge=1, le=1000)
    reminders: list[Duration] = []
    pack_at: Duration | None = None
    certificate: Literal["never", "on_request", "attendees"] = "on_request"
    recorded: bool = False
    not_invited: Literal["accept", "review", "reject"] = "review"
    invitation_at: Instant | None = None
    contacts: str | None = None
    pack: PackSpec | None = None

    @field_validator("title")
    @classmethod
    def _has_title(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise ValueError("give a title in at least one language (en, fr or es)")
        return value


class EventSpec(_Spec):
    """One ``[[event]]`` table: a webinar or workshop session."""

    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$")]
    title: Titles = {}
    start: Instant
    end: Instant
    language: Language
    invited: list[str] = Field(min_length=1)
    join_url: str | None = None
    kind: Literal["webinar", "workshop", "meeting"] = "webinar"
    cancelled: bool = False
    description: Titles = {}

    @field_validator("end")
    @classmethod
    def _end_after_start(cls, end: datetime, info: ValidationInfo) -> datetime:
        start = info.data.get("start")
        if start is not None and end <= start:
            raise ValueError("end must be after start")
        return end


class ScheduleFile(_Spec):
    """The whole of one ``schedules/*.toml`` file."""

    series: SeriesSpec | None = None
    event: list[EventSpec] = []
    groups: dict[str, list[str]] = {}
    # Where each event stands in the file, when invalid ones were left out (``_salvaged``).
    _positions: list[int] | None = PrivateAttr(default=None)

    def positions(self) -> list[int]:
        """The index in the file's ``[[event]]`` list of each event kept."""
        return self._positions if self._positions is not None else list(range(len(self.event)))

    @model_validator(mode="after")
    def _events_need_series(self) -> ScheduleFile:
        if self.event and self.series is None:
            raise ValueError("a file with [[event]] tables needs a [series] table")
        return self


@dataclass(frozen=True)
class Series:
    """A loaded series, with the file it came from."""

    spec: SeriesSpec
    file: Path

    @property
    def id(self) -> str:
        return self.spec.id


@dataclass(frozen=True)
class Event:
    """A loaded event: its spec, its series, and its invited countries as ISO codes."""

    spec: EventSpec
    series: Series
    countries: frozenset[str]
    file: Path

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def start(self) -> datetime:
        return self.spec.start

    @property
    def end(self) -> datetime:
        return self.spec.end

    @property
    def language(self) -> str:
        return self.spec.language

    @property
    def cancelled(self) -> bool:
        return self.spec.cancelled

    def title(self, lang: str) -> str:
        """The event's title in ``lang``, falling back to its own language, then the series'."""
        for titles in (self.spec.title, self.series.spec.title):
            for candidate in (lang, self.spec.language, "en", *LANGUAGES):
                if candidate in titles:
                    return titles[candidate]
        return self.id

    def organisers(self, lang: str) -> list[str]:
        """The series' organisers named in ``lang`` (same fallbacks as titles)."""
        named = self.series.spec.organisers
        if isinstance(named, list):
            return named
        for candidate in (lang, self.spec.language, "en", *LANGUAGES):
            if candidate in named:
                return named[candidate]
        return []

    def series_title(self, lang: str) -> str:
        """The series' title in ``lang`` with the same fallbacks."""
        titles = self.series.spec.title
        for candidate in (lang, self.spec.language, "en", *LANGUAGES):
            if candidate in titles:
                return titles[candidate]
        return self.series.id

    def fingerprint(self) -> str:
        """A digest of what participants see in their calendar; a change means an update."""
        seen = {"start": self.start.isoformat(), "end": self.end.isoformat(),
                "join_url": self.spec.join_url, "title": self.spec.title,
                "cancelled": self.spec.cancelled}
        return hashlib.sha256(json.dumps(seen, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Catalog:
    """Every series, event and country group loaded from a schedules folder."""

    series: dict[str, Series] = field(default_factory=dict)
    events: dict[str, Event] = field(default_factory=dict)
    groups: dict[str, frozenset[str]] = field(default_factory=dict)

    def event(self, event_id: str) -> Event:
        """The event with this id, or KeyError."""
        return self.events[event_id]

    def events_of(self, series_id: str) -> list[Event]:
        """The events of one series, in start order."""
        return sorted((e for e in self.events.values() if e.series.id == series_id),
                      key=lambda e: e.start)

    def upcoming(self, now: datetime) -> list[Event]:
        """Events that have not ended at ``now``, in start order."""
        return sorted((e for e in self.events.values() if e.end > now), key=lambda e: e.start)


def load_catalog(folder: Path) -> Catalog:
    """Load every ``*.toml`` in ``folder``; raise ScheduleError listing every problem."""
    catalog, problems = read_catalog(folder)
    if problems:
        raise ScheduleError(problems)
    return catalog


def read_catalog(folder: Path) -> tuple[Catalog, list[Problem]]:
    """Load what can be loaded from ``folder`` and return it with every problem found."""
    problems: list[Problem] = []
    files: list[tuple[Path, str, ScheduleFile]] = []
    if not folder.is_dir():
        return Catalog(), [Problem(str(folder), None, "schedules folder not found")]
    paths = sorted(folder.glob("*.toml"))
    if not paths:
        problems.append(Problem(str(folder), None, "no *.toml schedule files"))
    for path in paths:
        parsed = _read_file(path, problems)
        if parsed is not None:
            files.append((path, path.read_text(encoding="utf-8"), parsed))

    catalog = Catalog()
    group_files: dict[str, Path] = {}
    for path, text, parsed in files:
        for name, members in parsed.groups.items():
            if name in catalog.groups:
                problems.append(Problem(str(path), f"groups.{name}",
                                        f"group already defined in {group_files[name].name}",
                                        _line_of(text, name)))
                continue
            bad = [m for m in members if not m.startswith("@") and not is_country_code(m)]
            for code in bad:
                problems.append(Problem(str(path), f"groups.{name}", _unknown_code(code),
                                        _line_of(text, f'"{code}"')))
            group_files[name] = path
            catalog.groups[name] = frozenset(members)
    _expand_groups(catalog, group_files, problems)

    for path, text, parsed in files:
        if parsed.series is None:
            continue
        if parsed.series.id in catalog.series:
            problems.append(Problem(str(path), "series.id", f"series {parsed.series.id!r} is "
                                    f"also defined in {catalog.series[parsed.series.id].file.name}",
                                    _line_of(text, "id")))
            continue
        series = Series(parsed.series, path)
        catalog.series[series.id] = series
        for index, spec in zip(parsed.positions(), parsed.event, strict=True):
            where = f"event[{index}]"
            # Members are looked for from this event's `invited` key on: "fr" is also in
            # the comments at the top of a copied schedule.
            found = _line_of(text, f'"{spec.id}"')
            found = _line_of(text, "invited", start_line=found - 1) if found else None
            countries = _invited(spec.invited, catalog.groups, str(path), f"{where}.invited",
                                 text, problems, start_line=found - 1 if found else 0)
            if spec.id in catalog.events:
                other = catalog.events[spec.id].file.name
                problems.append(Problem(str(path), f"{where}.id",
                                        f"duplicate event id {spec.id!r} (also in {other})",
                                        _line_of(text, f'"{spec.id}"')))
                continue
            catalog.events[spec.id] = Event(spec, series, countries, path)
    return catalog, problems


def _read_file(path: Path, problems: list[Problem]) -> ScheduleFile | None:
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message, line = toml_error(exc, text)
        problems.append(Problem(str(path), None, f"TOML syntax: {message}", line))
        return None
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(Problem(str(path), None, f"cannot read: {exc}"))
        return None
    try:
        return ScheduleFile.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            loc = [str(p) for p in err["loc"]]
            field_name = _field_name(loc)
            message = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            message = message.removeprefix("Value error, ")
            problems.append(Problem(str(path), field_name or None, message,
                                    _line_for(text, data, err["loc"])))
    # Keep what is valid, so the rest of the file (its countries, packs, templates) is
    # still checked and every mistake shows in one run, not one kind per fix. A file with
    # problems is never used to send anything: the caller refuses it.
    return _salvaged(data)


def _salvaged(data: dict[str, Any]) -> ScheduleFile:
    """The valid parts of a file that failed validation (problems already reported)."""
    raw_series = data.get("series")
    series = _salvage(SeriesSpec, raw_series) if isinstance(raw_series, dict) else None
    raw_events = data.get("event")
    kept = [(index, _salvage(EventSpec, raw)) for index, raw in
            enumerate(raw_events if isinstance(raw_events, list) else [])
            if isinstance(raw, dict)]
    kept = [(index, event) for index, event in kept if event is not None and series]
    groups = data.get("groups")
    if not (isinstance(groups, dict) and all(
            isinstance(v, list) and all(isinstance(m, str) for m in v) for v in groups.values())):
        groups = {}
    salvaged = ScheduleFile.model_construct(series=series, event=[e for _, e in kept],
                                            groups=groups)
    salvaged._positions = [index for index, _ in kept]
    return salvaged


def _salvage(model: type[_Spec], raw: dict[str, Any]) -> Any:
    """``raw`` validated as ``model`` without the keys it fails on (their defaults apply);
    None when a required key is wrong."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        bad = {err["loc"][0] for err in exc.errors() if err["loc"]}
    try:
        return model.model_validate({k: v for k, v in raw.items() if k not in bad})
    except ValidationError:
        return None


def _field_name(loc: list[str]) -> str:
    out = ""
    for part in loc:
        if part.isdigit():
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


def _line_for(text: str, data: dict[str, Any], loc: Iterable[Any]) -> int | None:
    """Best effort: the line of the key an error is about, found after its event's id."""
    loc = list(loc)
    start = 0
    if len(loc) >= 2 and loc[0] == "event" and isinstance(loc[1], int):
        try:
            event_id = data["event"][loc[1]].get("id")
        except (KeyError, IndexError, AttributeError):
            event_id = None
        if event_id:
            found = _line_of(text, f'"{event_id}"')
            start = found - 1 if found else 0
    keys = [p for p in loc if isinstance(p, str) and p not in ("event", "series", "groups")]
    if not keys:
        return _line_of(text, "[series]") if loc and loc[0] == "series" else None
    return _line_of(text, keys[-1], start_line=start)


def _line_of(text: str, needle: str, *, start_line: int = 0) -> int | None:
    """The 1-based line at or after ``start_line`` where ``needle`` starts a key or appears."""
    lines = text.splitlines()
    key = re.compile(rf"^\s*{re.escape(needle)}\s*=")
    for number in range(start_line, len(lines)):
        if key.match(lines[number]):
            return number + 1
    for number in range(start_line, len(lines)):
        if needle in lines[number]:
            return number + 1
    return None


def _expand_groups(catalog: Catalog, files: dict[str, Path], problems: list[Problem]) -> None:
    """Replace ``@group`` members of groups by their countries (groups may nest)."""
    resolved: dict[str, frozenset[str]] = {}

    def expand(name: str, trail: tuple[str, ...]) -> frozenset[str]:
        if name in resolved:
            return resolved[name]
        out: set[str] = set()
        for member in catalog.groups.get(name, frozenset()):
            if not member.startswith("@"):
                out.add(member)
                continue
            inner = member[1:]
            if inner in trail or inner not in catalog.groups:
                why = "refers to itself" if inner in trail else "is not defined"
                problems.append(Problem(str(files[name]), f"groups.{name}",
                                        f"group {member!r} {why}"))
                continue
            out |= expand(inner, (*trail, inner))
        resolved[name] = frozenset(out)
        return resolved[name]

    for name in list(catalog.groups):
        expand(name, (name,))
    catalog.groups.update(resolved)


def _invited(members: list[str], groups: dict[str, frozenset[str]], file: str, where: str,
             text: str, problems: list[Problem], *, start_line: int = 0) -> frozenset[str]:
    out: set[str] = set()
    for member in members:
        if member.startswith("@"):
            if member[1:] in groups:
                out |= groups[member[1:]]
            else:
                problems.append(Problem(file, where, _unknown_group(member, groups),
                                        _line_of(text, f'"{member}"', start_line=start_line)))
        elif is_country_code(member):
            out.add(member)
        else:
            problems.append(Problem(file, where, _unknown_code(member, groups=True),
                                    _line_of(text, f'"{member}"', start_line=start_line)))
    return frozenset(out)


def _unknown_code(code: str, *, groups: bool = False) -> str:
    """"unknown country code 'Senegall': did you mean SN (Senegal)?" (rapidfuzz on CLDR
    names, as replies are read), else how codes are written."""
    found = code.upper() if is_country_code(code.upper()) else suggest_country(code)
    if found is not None:
        return f"unknown country code {code!r}: did you mean {found} ({country_name(found)})?"
    also = ', or a group like "@africa"' if groups else ""
    return f'unknown country code {code!r} (use ISO 3166 alpha-2 like "SN"{also})'


def _unknown_group(member: str, groups: dict[str, frozenset[str]]) -> str:
    """"unknown country group '@afrika': did you mean @africa?", else the known groups."""
    best = process.extractOne(member[1:], list(groups), scorer=fuzz.ratio, score_cutoff=70)
    if best is not None:
        return f"unknown country group {member!r}: did you mean @{best[0]}?"
    known = ", ".join("@" + g for g in sorted(groups)) or "none defined"
    return f"unknown country group {member!r} (known: {known})"
