"""The configuration: a TOML file overridden by ``MAILER_*`` environment variables.

``config.example.toml`` documents every key. Passwords are ``SecretStr``: they are never
printed, logged or echoed in a validation error.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from mailer.errors import ConfigError, Problem, toml_error

DEFAULT_CONFIG = "config.toml"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


_ADDRESS = re.compile(r"[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\".]+")


def _address(value: str) -> str:
    """One plain address (``name@domain.tld``): caught here, not as a template failure when
    the first message is written."""
    value = value.strip()
    if not _ADDRESS.fullmatch(value):
        raise ValueError(f"{value!r} is not an email address (write it as name@example.org)")
    return value


class Organiser(_Section):
    """Who the messages come from, and where questions for staff go."""

    name: str = "Cybercrime Programme Office"
    address: str = "webinars@example.org"
    staff_address: str = "staff@example.org"

    _addresses = field_validator("address", "staff_address")(_address)


class Smtp(_Section):
    """The outgoing mail server and how hard the mailer may push it."""

    host: str = "localhost"
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["tls", "starttls", "none"] = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    ca_file: Path | None = None
    timeout_seconds: float = Field(default=30.0, gt=0)
    connections: int = Field(default=2, ge=1, le=32)
    messages_per_minute: int = Field(default=120, ge=1)
    max_attempts: int = Field(default=8, ge=1)
    retry_base_seconds: float = Field(default=60.0, gt=0)
    max_message_bytes: int = Field(default=10_000_000, ge=10_000)


class Imap(_Section):
    """The monitored inbox that replies arrive in."""

    host: str = "localhost"
    port: int = Field(default=993, ge=1, le=65535)
    security: Literal["tls", "starttls", "none"] = "tls"
    username: str = "webinars"
    password: SecretStr | None = None
    ca_file: Path | None = None
    folder: str = "INBOX"
    handled_folder: str | None = None
    quarantine_folder: str | None = None
    idle: bool = True
    idle_seconds: int = Field(default=600, ge=10, le=1500)
    poll_seconds: int = Field(default=60, ge=1)
    batch_size: int = Field(default=200, ge=1, le=5000)
    timeout_seconds: float = Field(default=60.0, gt=0)
    max_message_bytes: int = Field(default=25_000_000, ge=10_000)


class Store(_Section):
    """Where registrations, handled messages and the outbox live (a SQLAlchemy URL)."""

    url: str = "sqlite:///var/mailer.db"


class Paths(_Section):
    """Where staff keep schedules, templates, pack files and the contacts list.

    ``packs`` is the folder that file paths written in schedules (pack files, a series'
    ``contacts``) start from; ``contacts`` is an optional contacts list for every series.
    """

    schedules: Path = Path("schedules")
    templates: Path = Path("templates")
    packs: Path = Path(".")
    contacts: Path | None = None


class Log(_Section):
    """How the daemon logs."""

    format: Literal["console", "json"] = "console"
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class Limits(_Section):
    """Guards against mail loops and oversize messages."""

    auto_answers_per_day: int = Field(default=3, ge=1)
    attach_max_bytes: int = Field(default=5_000_000, ge=0)
    pack_base_url: str | None = None


class Check(_Section):
    """What ``mailer check`` requires of schedules."""

    # An event starting within this many days needs an https join_url (an error); further
    # off, a missing or non-https link is a warning: every acknowledgement promises it.
    link_required_days: int = Field(default=14, ge=0)


class Replies(_Section):
    """How replies are read."""

    # How long after its end an event still counts for a certificate request or a calendar
    # answer that names it (by its title, date or calendar entry): certificates are asked
    # for in the weeks after a webinar, rarely later.
    recent_event_days: int = Field(default=60, ge=0, le=3650)


class Workers(_Section):
    """The worker processes that read replies and write messages of big batches."""

    # 0: everything in the daemon's process. One is enough on two cores (the daemon's own
    # process keeps one busy with SQL, IMAP and SMTP).
    processes: int = Field(default=1, ge=0, le=16)
    # Smaller batches stay in the daemon's process: a worker's round trip would cost more.
    min_batch: int = Field(default=32, ge=1)
    # A drain with this many messages due or more starts a worker to write them; 0: never.
    # Never by default: with the SMTP server on the same two cores, a 10,000 burst went
    # faster written here (1.83-1.87 ms per message) than by a worker (2.01-2.41 ms), whose
    # round trips cost more CPU than they freed. A worker already running (a wave of replies
    # started it, where it pays) writes any batch of min_batch or more.
    start_for_messages: int = Field(default=0, ge=0)
    # Added to the worker's niceness: its work is done ahead of need, while the daemon's
    # process (and the servers it talks to) wait on each round trip. 0: the same priority.
    nice: int = Field(default=10, ge=0, le=19)


class Retention(_Section):
    """How long personal data is kept after a series' last event."""

    days: int = Field(default=365, ge=1)
    # Quarantined mail is kept (its first bytes) so staff can look at it and release it.
    quarantine_days: int = Field(default=30, ge=1)
    quarantine_keep_bytes: int = Field(default=2_000_000, ge=0)


class Staff(_Section):
    """The staff who decide: who may act by replying to the daily digest, and when it comes.

    ``secret`` signs each digest's reply address (an HMAC): give it in the environment
    (``MAILER_STAFF__SECRET``); without it the digest still comes, but acting by reply is off.
    """

    addresses: list[str] = Field(default_factory=list)   # empty: organiser.staff_address only
    secret: SecretStr | None = None
    digest: bool = True
    digest_hour: int = Field(default=8, ge=0, le=23)
    time_zone: str = "UTC"
    reply_days: int = Field(default=14, ge=1)

    @field_validator("addresses")
    @classmethod
    def _staff_addresses(cls, value: list[str]) -> list[str]:
        return [_address(v) for v in value]

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (an IANA name such as "
                             "\"Europe/Paris\")") from None
        return value


class Cluster(_Section):
    """Several mailer processes over one store: the leases that share the work among them.

    Every ``mailer run`` and ``mailer once`` claims the outbox rows it sends for
    ``lease_seconds`` and one of them holds the leader's lease (reading the inbox,
    deciding replies, planning); each renews what it holds every ``renew_seconds``. A
    process that dies stops renewing: its claims and its lease pass to another once they
    expire, so ``lease_seconds`` is how long a dead instance's work waits.
    """

    lease_seconds: float = Field(default=30.0, ge=1, le=3600)
    renew_seconds: float = Field(default=10.0, gt=0)
    # Shown by `mailer status`; default: the machine's host name.
    name: str | None = Field(default=None, max_length=60)

    @model_validator(mode="after")
    def _renewed_in_time(self) -> Cluster:
        # Two renewals per lease at least: one late renewal must not lose the lease.
        if self.renew_seconds * 2 > self.lease_seconds:
            raise ValueError("renew_seconds must be at most half of lease_seconds")
        return self


class Settings(BaseSettings):
    """The whole configuration of one mailer."""

    model_config = SettingsConfigDict(env_prefix="MAILER_", env_nested_delimiter="__",
                                      extra="forbid")

    organiser: Organiser = Organiser()
    smtp: Smtp = Smtp()
    imap: Imap = Imap()
    store: Store = Store()
    paths: Paths = Paths()
    log: Log = Log()
    limits: Limits = Limits()
    workers: Workers = Workers()
    retention: Retention = Retention()
    cluster: Cluster = Cluster()
    check: Check = Check()
    staff: Staff = Staff()
    replies: Replies = Replies()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file's values arrive as init arguments (see load_settings); the environment wins.
        return env_settings, init_settings

    def resolve(self, base: Path) -> Settings:
        """Return a copy whose relative paths are taken from ``base`` (the config's folder)."""
        paths = self.paths.model_copy(update={
            name: (base / value) if isinstance(value, Path) and not value.is_absolute() else value
            for name, value in self.paths
        })
        url = self.store.url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
            url = prefix + str(base / url[len(prefix):])
        return self.model_copy(update={"paths": paths, "store": Store(url=url)})


def config_path(given: str | os.PathLike[str] | None) -> Path:
    """The config file to read: ``--config``, then ``MAILER_CONFIG``, then ``config.toml``."""
    return config_source(given)[0]


def config_source(given: str | os.PathLike[str] | None) -> tuple[Path, bool]:
    """The config file to read and whether it must exist: ``--config`` and ``MAILER_CONFIG``
    name a file that must be there (a typo must not fall back to the defaults silently);
    ``config.toml`` may be missing (the embedded defaults apply)."""
    if given:
        return Path(given), True
    named = os.environ.get("MAILER_CONFIG")
    if named is not None:
        if not named.strip():
            raise ConfigError([Problem("MAILER_CONFIG", None, "set but empty: name the "
                                       "configuration file, or unset it")])
        return Path(named), True
    return Path(DEFAULT_CONFIG), False


def load_settings(path: Path | None, *, required: bool = False) -> Settings:
    """Read the configuration from ``path`` and the environment, or raise ConfigError.

    A missing file is fine (embedded defaults) unless ``required``; every problem is
    reported as ``file: section.key: message``.
    """
    name = str(path) if path else "environment"
    data: dict[str, Any] = {}
    if path is not None and path.exists():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            message, line = toml_error(exc)
            raise ConfigError([Problem(name, None, f"TOML syntax: {message}", line)]) from None
        except OSError as exc:
            raise ConfigError([Problem(name, None, f"cannot read: {exc.strerror}")]) from None
    elif required:
        via = " (named by MAILER_CONFIG)" if os.environ.get("MAILER_CONFIG") == str(path) else ""
        raise ConfigError([Problem(name, None, f"file not found{via}")])
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        raise ConfigError(_problems(name, exc)) from None
    base = path.parent if path is not None else Path(".")
    return settings.resolve(base.resolve())


def _problems(name: str, exc: ValidationError) -> list[Problem]:
    """Turn a pydantic error into problems that never echo the offending value."""
    problems = []
    for err in exc.errors(include_input=False, include_url=False):
        field = ".".join(str(p) for p in err["loc"])
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        message = message.removeprefix("Value error, ")    # a validator's own words
        problems.append(Problem(_origin(name, err["loc"]), field, message))
    return problems


def _origin(name: str, loc: tuple[int | str, ...]) -> str:
    """Where a wrong value came from: the environment variable that set it (it wins over the
    file, and an operator reading the file would not find the mistake there), else the file."""
    if len(loc) >= 2:
        variable = f"MAILER_{loc[0]}__{loc[1]}".upper()
        if any(key.upper() == variable for key in os.environ):
            return f"{variable} (environment)"
    return name
