"""The command line: ``mailer run|once|check|plan|parse|preview|registrations|demo|...``.

Exit codes: 0 success, 1 an operational failure (a server down), 2 bad usage or invalid
input (the message names the file, line and field).
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import click

from mailer.config import Settings, config_source, load_settings
from mailer.errors import InboxError, InvalidInput, MailerError, UsageError

F = TypeVar("F", bound=Callable[..., Any])


def parse_now(value: str | None) -> datetime | None:
    """Read ``--now`` (ISO 8601; no offset means UTC), or raise UsageError."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise UsageError(f"--now: not a date and time: {value!r} "
                         "(write it like 2020-07-01T12:00Z)") from None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


def _fail(message: str, code: int) -> None:
    click.echo(message, err=True)
    sys.exit(code)


def _reader_gone() -> None:
    """The output's reader went away (``mailer messages | head``): nothing is wrong with the
    mailer and nobody is left to tell, so no "error: [Errno 32] Broken pipe". Exit 1, as
    Python's documentation advises, with stdout pointed at /dev/null so that the
    interpreter's last flush cannot complain either."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(1)


def guarded(func: F) -> F:
    """Turn the mailer's errors into the documented exit codes and one clear message."""
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except InvalidInput as exc:
            _fail(str(exc), 2)
        except UsageError as exc:
            _fail(f"error: {exc}", 2)
        except MailerError as exc:
            _fail(f"error: {exc}", 1)
        except BrokenPipeError:
            _reader_gone()
        except OSError as exc:
            _fail(f"error: {exc}", 1)
        except Exception as exc:
            from mailer.store import store_error

            error = store_error(exc)    # the database's failure, in its own words
            if error is None:
                raise
            _fail(f"error: {error}", 1)
    return wrapper  # type: ignore[return-value]


def config_option(func: F) -> F:
    """``--config PATH`` on every command (else $MAILER_CONFIG, else config.toml)."""
    return click.option("--config", "config", type=click.Path(dir_okay=False), default=None,
                        help="configuration file (else $MAILER_CONFIG, else config.toml)")(func)


def settings_from(ctx: click.Context, given: str | None) -> Settings:
    """The configuration, with logging set up as it says."""
    from mailer.logs import configure

    path, required = config_source(given or ctx.obj.get("config"))
    settings = load_settings(path, required=required)
    configure(settings.log.format, settings.log.level)
    return settings


def new_store_option(func: F) -> F:
    """``--new-store`` on ``once`` and ``run``: the only way a store file is created."""
    return click.option("--new-store", is_flag=True,
                        help="create the SQLite store if store.url names no file (a first "
                             "start); without it a missing file is refused")(func)


def _store_ready(settings: Settings, new_store: bool) -> None:
    """Refuse a SQLite store file that does not exist (StoreMissing, exit 2), unless
    ``new_store``: then create it (migrated) and say so in one line on stderr.

    A typo in store.url silently made a new, empty store, and the next pass sent every due
    invitation again (13 in the case reported); now nothing starts on a store nobody asked
    for.
    """
    from mailer import store

    path = store.missing_file(settings.store.url)
    if path is None:
        return
    if not new_store:
        raise store.no_store(path)
    st = store.Store(settings.store.url)
    try:
        st.migrate()
    finally:
        st.close()
    click.echo(f"created a new, empty store at {path}: if you expected an existing one, "
               "check store.url", err=True)


class _OneLineErrors(click.Group):
    """Click's usage errors in one line, like every other bad input: "error: Missing option
    '--reason'. (mailer reject --help)", exit 2, instead of the usage, a hint and the error
    on three lines."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            # Outside standalone mode click returns a ctx.exit() code instead of exiting.
            code = super().main(*args, standalone_mode=False, **kwargs)
        except click.exceptions.NoArgsIsHelpError as exc:
            exc.show()                   # `mailer` alone: the help, as click shows it
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            where = f" ({exc.ctx.command_path} --help)" if exc.ctx is not None else ""
            _fail(f"error: {exc.format_message()}{where}", exc.exit_code)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort:
            _fail("Aborted!", 1)
        sys.exit(code if isinstance(code, int) else 0)


@click.group(cls=_OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@config_option
@click.version_option(package_name="webinar-mailer")
@click.pass_context
def cli(ctx: click.Context, config: str | None) -> None:
    """The webinar mailer: registrations by email reply, reminders, packs and certificates."""
    ctx.ensure_object(dict)
    ctx.obj["config"] = config


@cli.command()
@config_option
@click.option("--now", help="check as at this moment (ISO 8601): which events are close")
@click.pass_context
@guarded
def check(ctx: click.Context, config: str | None, now: str | None) -> None:
    """Validate the configuration, schedules, pack files, contacts and templates.

    Every problem of every file is listed in one run; warnings alone exit 0.
    """
    from mailer.check import check as run_check
    from mailer.check import format_problems

    path, required = config_source(config or ctx.obj.get("config"))
    # Without --config or MAILER_CONFIG, a missing config.toml means the embedded defaults,
    # as for the daemon.
    chosen = path if required or path.exists() else None
    problems = run_check(chosen, parse_now(now))
    if any(not p.warning for p in problems):
        _fail(format_problems(problems), 2)
    for problem in problems:
        click.echo(str(problem), err=True)
    what = chosen if chosen is not None else "the default configuration"
    click.echo(f"ok: {what} and everything it names are valid"
               + (f" ({len(problems)} warning(s) above)" if problems else ""))


@cli.command()
@config_option
@click.option("--now", help="pretend it is this moment (ISO 8601, e.g. 2020-07-01T12:00Z)")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.option("--event", "event_id", help="only this event")
@click.pass_context
@guarded
def plan(ctx: click.Context, config: str | None, now: str | None, as_json: bool,
         event_id: str | None) -> None:
    """Show what will be sent, when and to how many (nothing is sent or stored)."""
    from mailer.store import missing_file
    from mailer.views import plan_view

    settings = settings_from(ctx, config)
    click.echo(plan_view(settings, parse_now(now), as_json=as_json, event_id=event_id))
    missing = None if as_json else missing_file(settings.store.url)
    if missing is not None:
        click.echo(f"note: no store at {missing} yet: planned as for a new, empty one",
                   err=True)


@cli.command()
@config_option
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.option("--now", help="pretend it is this moment (ISO 8601)")
@click.option("--no-store", is_flag=True,
              help="decide as against an empty store (nobody registered), without reading it")
@click.pass_context
@guarded
def parse(ctx: click.Context, config: str | None, file: str, as_json: bool,
          now: str | None, no_store: bool) -> None:
    """Show what the daemon understands from one message (a .eml file) and what it would
    do with it: quarantine it, answer it (with what), forward it to staff, or leave it.
    What it decides against the configured store is rolled back: nothing is recorded or
    sent (a store of an older version is upgraded first, as by every command)."""
    from mailer.views import parse_view

    settings = settings_from(ctx, config)
    click.echo(parse_view(settings, Path(file), parse_now(now), as_json=as_json,
                          use_store=not no_store))


@cli.command()
@config_option
@click.argument("kind")
@click.option("--event", "event_id", required=True, help="event id")
@click.option("--lang", default="en", show_default=True, help="en, fr or es")
@click.option("--to", "to", default="participant@example.org", show_default=True)
@click.option("--name", default="Awa Diop", show_default=True)
@click.option("--country", default=None, help="participant's country (ISO code), for local time")
@click.option("--inferred", default="", metavar="name,country",
              help="as sent to someone whose reply did not state these: the message says "
                   "what the mailer guessed (a guessed country without --country: SN)")
@click.option("--out", type=click.Path(dir_okay=False),
              help="write the exact bytes (.eml) here")
@click.option("--now", help="the message's date (ISO 8601)")
@click.pass_context
@guarded
def preview(ctx: click.Context, config: str | None, kind: str, event_id: str, lang: str, to: str,
            name: str, country: str | None, inferred: str, out: str | None,
            now: str | None) -> None:
    """Render one message as it would be sent: readable here, the exact .eml with --out."""
    from mailer.views import preview_message, readable_message

    settings = settings_from(ctx, config)
    shown = preview_message(settings, kind, event_id, lang, to, name, country, parse_now(now),
                            inferred)
    click.echo(readable_message(shown.data), nl=False)
    if shown.tells_guesses and not inferred:
        click.echo("\n(to someone whose reply did not give their name or country, this message "
                   "also says what the mailer guessed: --inferred name,country shows it)")
    if out:
        Path(out).write_bytes(shown.data)
        click.echo(f"\nwrote {out} ({len(shown.data):,} bytes, exactly as sent)")


@cli.command()
@config_option
@click.option("--now", help="pretend it is this moment (ISO 8601)")
@click.option("--no-read", is_flag=True, help="do not read the inbox")
@click.option("--no-send", is_flag=True, help="plan but do not send")
@new_store_option
@click.pass_context
@guarded
def once(ctx: click.Context, config: str | None, now: str | None, no_read: bool,
         no_send: bool, new_store: bool) -> None:
    """One full pass (read, decide, plan, send what is due), then exit: for cron."""
    from mailer.daemon import run_once

    settings = settings_from(ctx, config)
    _store_ready(settings, new_store)
    report = asyncio.run(run_once(settings, now=parse_now(now), read=not no_read,
                                  send=not no_send))
    click.echo(f"read {report.read}, handled {report.handled}, duplicates {report.duplicates}, "
               f"quarantined {report.quarantined}, failed {report.failed}; planned "
               f"{report.planned}, missed "
               f"{report.missed}; sent {report.drain.sent}, retrying {report.drain.retried}, "
               f"failed {report.drain.failed}")
    if not report.leading:
        click.echo(f"another instance ({report.leader or 'a pass that just ended'}) leads: "
                   "this pass did not read the inbox or plan, it only sent what was due")
    if report.inbox_error:
        raise InboxError(f"the inbox was not read: {report.inbox_error}")


@cli.command()
@config_option
@new_store_option
@click.pass_context
@guarded
def run(ctx: click.Context, config: str | None, new_store: bool) -> None:
    """Run the daemon until SIGTERM or SIGINT (SIGHUP reloads schedules and templates)."""
    from mailer.daemon import serve

    settings = settings_from(ctx, config)
    _store_ready(settings, new_store)
    asyncio.run(serve(settings))


@cli.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.pass_context
@guarded
def status(ctx: click.Context, config: str | None, as_json: bool) -> None:
    """Which instances (run, once) use the store, which one leads, what each has claimed."""
    from mailer.views import status_view

    settings = settings_from(ctx, config)
    click.echo(status_view(settings, as_json=as_json))


@cli.command()
@config_option
@click.option("--event", "event_id", help="only this event")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json", "xlsx"]),
              default="table", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), help="write to this file")
@click.pass_context
@guarded
def registrations(ctx: click.Context, config: str | None, event_id: str | None, fmt: str,
                  out: str | None) -> None:
    """Who registered, per event and country, with status and totals against the limit."""
    from mailer.views import registrations_view

    settings = settings_from(ctx, config)
    data = registrations_view(settings, event_id, fmt)
    if isinstance(data, bytes):
        if not out:
            raise UsageError("--format xlsx needs --out FILE.xlsx")
        Path(out).write_bytes(data)
        click.echo(f"wrote {out}")
    elif out:
        Path(out).write_text(data, encoding="utf-8")
        click.echo(f"wrote {out}")
    else:
        click.echo(data, nl=not data.endswith("\n"))


@cli.group()
def attendance() -> None:
    """Attendance reports (who took part), for certificates with the 'attendees' policy."""


@attendance.command("import")
@config_option
@click.argument("report", type=click.Path(exists=True, dir_okay=False))
@click.option("--event", "event_id", required=True, help="event id")
@click.option("--min-minutes", default=0, show_default=True,
              help="count as present only after this many minutes")
@click.pass_context
@guarded
def attendance_import(ctx: click.Context, config: str | None, report: str, event_id: str,
                      min_minutes: int) -> None:
    """Import a Zoom participant report (CSV export) for one event.

    A report that cannot be read (empty, binary, no participant table, a duration that is
    not a number) is refused whole with exit code 2, naming the line and column; nothing
    is marked.
    """
    from mailer import store
    from mailer.attendance import import_report
    from mailer.views import load

    settings = settings_from(ctx, config)
    catalog = load(settings)
    if event_id not in catalog.events:
        raise UsageError(f"--event: no event {event_id!r} (known: {', '.join(catalog.events)})")
    with store.command_transaction(settings.store.url) as session:
        result = import_report(session, event_id, Path(report), min_minutes=min_minutes)
    for problem in result.warnings[:_SHOWN]:
        click.echo(f"warning: {problem}", err=True)
    if len(result.warnings) > _SHOWN:
        click.echo(f"warning: {len(result.warnings) - _SHOWN} more rows without an email "
                   "address", err=True)
    unknown = len(result.unknown) + result.unknown_more
    click.echo(f"{event_id}: {result.matched} present, {result.absent} absent, "
               f"{result.too_short} too short, {unknown} not registered")
    for email in result.unknown[:_SHOWN]:
        click.echo(f"  not registered: {email}")
    if unknown > _SHOWN:
        click.echo(f"  and {unknown - _SHOWN} more")


# How many warnings and unknown addresses an import lists before it only counts them.
_SHOWN = 20


@cli.command()
@config_option
@click.option("--series", "series_id", help="purge this series now (all its events must be over)")
@click.option("--now", help="pretend it is this moment (ISO 8601)")
@click.option("--yes", is_flag=True, help="delete (without it: only show what would go)")
@click.pass_context
@guarded
def purge(ctx: click.Context, config: str | None, series_id: str | None,
          now: str | None, yes: bool) -> None:
    """Show (and with --yes delete) personal data of finished series, kept as counts."""
    from mailer import store
    from mailer.daemon import utcnow
    from mailer.retention import purge_expired, purge_quarantined, purge_series
    from mailer.views import load

    settings = settings_from(ctx, config)
    catalog = load(settings)
    moment = parse_now(now) or utcnow()
    with store.command_transaction(settings.store.url) as session:
        if series_id:
            results = [purge_series(session, catalog, series_id, moment)]
        else:
            results = purge_expired(session, catalog, moment, settings.retention.days)
        kept_mail = purge_quarantined(session, moment, settings.retention.quarantine_days)
        if not yes:
            session.rollback()      # the same purge, undone: exactly what --yes would delete
    if not any(r.changed for r in results) and not kept_mail:
        click.echo("nothing to purge")
        return
    done = "" if yes else "would be "
    for r in results:
        click.echo(f"{r.series_id}: {r.registrations} registration(s) {done}deleted, kept as "
                   f"{r.counts} count row(s); {r.outbox} outbox, {r.inbound} inbound and "
                   f"{r.audit} audit row(s) {done}cleared")
    if kept_mail:
        click.echo(f"{kept_mail} quarantined message(s) older than "
                   f"{settings.retention.quarantine_days} days {done}deleted")
    if not yes:
        click.echo("nothing was deleted: run again with --yes to delete")


@cli.command()
@click.option("--dir", "folder", type=click.Path(file_okay=False), default="demo-output",
              show_default=True, help="where to keep the demo's database and .eml files")
@click.pass_context
@guarded
def demo(ctx: click.Context, folder: str) -> None:
    """The whole flow on this machine, with embedded IMAP and SMTP servers."""
    from mailer.demo import run_demo

    run_demo(Path(folder))


# The staff's commands (review, approve, ..., forget) add themselves to the group.
from mailer.staff import cli as _staff_commands  # noqa: E402, F401


def main() -> None:
    """Entry point of the ``mailer`` command."""
    cli(obj={})


def dumps(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, default=str)


if __name__ == "__main__":
    main()
