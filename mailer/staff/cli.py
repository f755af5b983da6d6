"""The staff's commands: review, approve, reject, register, cancel, move, messages, resend,
quarantine, person, forget (added to the ``mailer`` group when ``mailer.cli`` loads).

Each acting command is one transaction through the same rules, locks and writes as a reply
(``actions``), recorded in the audit trail under ``--by`` (default: ``$MAILER_STAFF_NAME``,
else the login name); its answers go to the outbox, and the running daemon (or the next
``mailer once``) sends them. Wrong input (an unknown REF or event, approving twice) exits 2
with one line and changes nothing.
"""

from __future__ import annotations

import getpass
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import click
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from mailer import store
from mailer.cli import cli, config_option, guarded, parse_now, settings_from
from mailer.config import Settings
from mailer.errors import StoreError, UsageError
from mailer.schedule import Catalog
from mailer.staff import actions, digest, mail, person
from mailer.staff.audit import Actor

ANSWERS_HINT = "answers go out with the daemon's next pass (or the next `mailer once`)"


def _now(value: str | None) -> datetime:
    from mailer.daemon import utcnow

    return parse_now(value) or utcnow()


def _actor(by: str | None) -> Actor:
    if by:
        return Actor(by)
    try:
        name = os.environ.get("MAILER_STAFF_NAME") or getpass.getuser()
    except (KeyError, OSError):
        name = "staff"
    return Actor(name)


def _domain(settings: Settings) -> str:
    return settings.organiser.address.rpartition("@")[2] or "localhost"


def _desk(settings: Settings, catalog: Catalog, by: str | None, now: str | None) -> actions.Desk:
    return actions.Desk(catalog, _actor(by), _now(now), _domain(settings),
                        settings.organiser.staff_address)


def _loaded(ctx: click.Context, config: str | None) -> tuple[Settings, Catalog]:
    from mailer.views import load

    settings = settings_from(ctx, config)
    return settings, load(settings)


@contextmanager
def _session(settings: Settings) -> Iterator[Session]:
    """One transaction on the store; a database failure is one line and exit 1."""
    try:
        with store.command_transaction(settings.store.url) as session:
            yield session
    except SQLAlchemyError as exc:
        # The database's own words (store_error), and what staff need to know: the action's
        # one transaction was rolled back (a deadlock with the daemon, a full disk).
        raise StoreError(f"{store.store_error(exc)}; nothing was changed, run the command "
                         "again") from None


def _act(ctx: click.Context, config: str | None, by: str | None, now: str | None,
         action: Callable[..., list[actions.Done]], *args: Any) -> None:
    """Run one staff action in one transaction and print what it did."""
    settings, catalog = _loaded(ctx, config)
    with _session(settings) as session:
        done = action(session, _desk(settings, catalog, by, now), *args)
    for item in done:
        click.echo(item.line)
    click.echo(ANSWERS_HINT)


def acting(func: Any) -> Any:
    """The options every acting command takes: --by, --now, --config."""
    func = click.option("--now", help="pretend it is this moment (ISO 8601)")(func)
    func = click.option("--by", help="who acts, for the audit trail (default: "
                                     "$MAILER_STAFF_NAME, else your login name)")(func)
    return config_option(func)


# --- review and decide -------------------------------------------------------------------

@cli.command()
@config_option
@click.option("--days", default=7, show_default=True, help="questions and replies of this "
                                                            "many days")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.option("--now", help="pretend it is this moment (ISO 8601)")
@click.pass_context
@guarded
def review(ctx: click.Context, config: str | None, days: int, as_json: bool,
           now: str | None) -> None:
    """What waits for staff: registrations in review, questions, replies not placed."""
    settings, catalog = _loaded(ctx, config)
    moment = _now(now)
    with _session(settings) as session:
        facts = digest.gather(session, catalog, moment - timedelta(days=days), moment)
    if as_json:
        click.echo(json.dumps(facts.as_dict(), indent=2, ensure_ascii=False))
        return
    click.echo(review_text(facts, days))


def review_text(facts: digest.Facts, days: int) -> str:
    lines = [f"waiting for a decision: {len(facts.waiting)}"]
    for w in facts.waiting:
        lines.append(f"  {w['ref']:<6} {w['event']:<18} {w['country'] or '??'}  {w['name']} "
                     f"<{w['email']}>{', ' + w['organisation'] if w['organisation'] else ''}")
        lines.append(f"         {w['why']} (since {w['since'][:16].replace('T', ' ')})")
    if facts.waiting:
        lines.append('  decide with: mailer approve REF...   mailer reject REF... --reason "..."')
    if facts.too_late:
        lines.append(f"too late to decide (their event started in the last {days} day(s)): "
                     f"{len(facts.too_late)}")
        for w in facts.too_late:
            lines.append(f"  {w['ref']:<6} {w['event']:<18} {w['country'] or '??'}  "
                         f"{w['name']} <{w['email']}>")
    lines.append(f"questions forwarded in the last {days} day(s): {len(facts.questions)}")
    for q in facts.questions:
        lines.append(f"  {q['at'][:16].replace('T', ' ')}  {q['sender']}  \"{q['subject']}\""
                     f"{'  (' + q['event'] + ')' if q['event'] else ''}")
    lines.append(f"replies the mailer could not place in the last {days} day(s): "
                 f"{len(facts.unplaced)}")
    for u in facts.unplaced:
        lines.append(f"  {u['ref']:<6} {u['at'][:16].replace('T', ' ')}  {u['sender']}: "
                     f"{u['why']}")
    if facts.failed:
        lines.append(f"failed deliveries: {len(facts.failed)} (mailer messages --status failed)")
    if facts.quarantined:
        lines.append(f"quarantined mail: {len(facts.quarantined)} (mailer quarantine)")
    return "\n".join(lines)


@cli.command()
@acting
@click.argument("refs", nargs=-1, required=True)
@click.option("--event", "event_id", help="the event, when a REF is an email address")
@click.option("--reason", default="", help="why, for the audit trail")
@click.pass_context
@guarded
def approve(ctx: click.Context, config: str | None, by: str | None, now: str | None,
            refs: tuple[str, ...], event_id: str | None, reason: str) -> None:
    """Approve registrations (REF like R12, or an email with --event): a seat or the
    waiting list, as the rules say."""
    _act(ctx, config, by, now, actions.approve, refs, reason, event_id)


@cli.command()
@acting
@click.argument("refs", nargs=-1, required=True)
@click.option("--reason", required=True, help="why (kept in the audit trail, not sent)")
@click.option("--event", "event_id", help="the event, when a REF is an email address")
@click.pass_context
@guarded
def reject(ctx: click.Context, config: str | None, by: str | None, now: str | None,
           refs: tuple[str, ...], reason: str, event_id: str | None) -> None:
    """Reject registrations; a seat one held goes to its country's waiting list."""
    _act(ctx, config, by, now, actions.reject, refs, reason, event_id)


@cli.command()
@acting
@click.option("--event", "event_id", required=True, help="event id")
@click.option("--email", required=True)
@click.option("--name", required=True)
@click.option("--country", required=True, help="ISO code or name (SN, Senegal, Sénégal)")
@click.option("--lang", default=None, help="en, fr or es (default: the event's language)")
@click.option("--position", default="")
@click.option("--organisation", default="")
@click.option("--certificate", is_flag=True, help="they ask for a certificate")
@click.option("--reason", default="", help="why, for the audit trail (e.g. 'phoned')")
@click.pass_context
@guarded
def register(ctx: click.Context, config: str | None, by: str | None, now: str | None,
             event_id: str, email: str, name: str, country: str, lang: str | None,
             position: str, organisation: str, certificate: bool, reason: str) -> None:
    """Register someone (who phoned, or wrote to a colleague), through the rules."""
    who = actions.NewPerson(email=email, name=name, country=country, language=lang or "",
                            organisation=organisation, position=position,
                            certificate=certificate)
    _act(ctx, config, by, now, actions.register, event_id, who, reason)


@cli.command()
@acting
@click.argument("refs", nargs=-1, required=True)
@click.option("--event", "event_id", help="the event, when a REF is an email address")
@click.option("--reason", default="", help="why, for the audit trail")
@click.pass_context
@guarded
def cancel(ctx: click.Context, config: str | None, by: str | None, now: str | None,
           refs: tuple[str, ...], event_id: str | None, reason: str) -> None:
    """Cancel registrations for their participants (the waiting list moves up)."""
    _act(ctx, config, by, now, actions.cancel, refs, reason, event_id)


@cli.command()
@acting
@click.argument("ref")
@click.option("--to", "to_event", required=True, help="the event to move to")
@click.option("--event", "event_id", help="the event, when REF is an email address")
@click.option("--reason", default="", help="why, for the audit trail")
@click.option("--even-if-not-invited", is_flag=True,
              help="move even when the other event does not invite their country (they "
                   "give up their place there for review or a refusal)")
@click.pass_context
@guarded
def move(ctx: click.Context, config: str | None, by: str | None, now: str | None, ref: str,
         to_event: str, event_id: str | None, reason: str, even_if_not_invited: bool) -> None:
    """Move a registration to another event (cancelled in one, registered in the other)."""
    _act(ctx, config, by, now, actions.move, ref, to_event, reason, event_id,
         even_if_not_invited)


# --- messages and quarantine -------------------------------------------------------------

@cli.command()
@config_option
@click.option("--to", "to", help="only messages to this address")
@click.option("--event", "event_id", help="only this event")
@click.option("--status", type=click.Choice(mail.STATUSES), help="only this status")
@click.option("--kind", help="only this kind (acknowledgement, reminder...)")
@click.option("--limit", default=50, show_default=True, help="at most this many, newest first")
@click.option("--due", "due_hours", type=click.IntRange(1, 24 * 366), metavar="HOURS",
              help="what goes out in the next HOURS hours: messages queued, and those the "
                   "schedules plan (counted as in the daily digest)")
@click.option("--now", help="with --due: pretend it is this moment (ISO 8601)")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.pass_context
@guarded
def messages(ctx: click.Context, config: str | None, to: str | None, event_id: str | None,
             status: str | None, kind: str | None, limit: int, due_hours: int | None,
             now: str | None, as_json: bool) -> None:
    """What went to whom and when, and every failure with the server's words."""
    settings, catalog = _loaded(ctx, config)
    if due_hours is not None and (to or status):
        raise UsageError("--due: what is planned is counted per event, not per address or "
                         "status; without --to and --status")
    moment = _now(now)
    until = moment + timedelta(hours=due_hours) if due_hours else None
    planned: list[dict[str, Any]] = []
    with _session(settings) as session:
        if event_id and event_id not in catalog.events and not mail.messages(
                session, event_id=event_id, limit=1):
            raise UsageError(f"--event: no event {event_id!r} "
                             f"(known: {', '.join(catalog.events)})")
        rows = mail.messages(session, to=to, event_id=event_id, status=status, kind=kind,
                             limit=limit, due_before=until)
        if due_hours:
            from mailer.contacts import catalog_contacts

            contacts, _ = catalog_contacts(catalog, settings.paths.packs,
                                           settings.paths.contacts)
            planned = [c for c in digest.coming(session, catalog, contacts, moment, due_hours)
                       if (not event_id or c["event"] == event_id)
                       and (not kind or c["what"] in (kind, "starts"))]
    if until is not None:
        _print_due(rows, planned, moment, until, as_json)
        return
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        click.echo("no messages")
    _print_rows(rows)


def _print_due(rows: list[dict[str, Any]], planned: list[dict[str, Any]], now: datetime,
               until: datetime, as_json: bool) -> None:
    """``messages --due``: the queued rows, then what the schedules plan (the digest's
    "next 48 hours", ``digest.coming``)."""
    if as_json:
        click.echo(json.dumps({"now": now.isoformat(), "until": until.isoformat(),
                               "queued": rows, "planned": planned},
                              indent=2, ensure_ascii=False))
        return
    click.echo(f"from {now:%Y-%m-%d %H:%M} to {until:%Y-%m-%d %H:%M} UTC")
    click.echo(f"queued in the outbox: {len(rows) or 'none'}")
    _print_rows(rows)
    click.echo(f"planned by the schedules: {'' if planned else 'none'}".rstrip())
    for c in planned:
        what = "starts" if c["what"] == "starts" else \
            f"{c['count']} {c['what']}{'s' if c['count'] != 1 else ''}"
        click.echo(f"  {c['at'][:16].replace('T', ' ')}  {c['event']:<18} {what}")


def _print_rows(rows: list[dict[str, Any]]) -> None:
    for r in rows:
        when = (r["sent"] or r["due"]).replace("T", " ")[:16]
        click.echo(f"#{r['id']:<6} {when}  {r['status']:<8} {r['kind']:<18} "
                   f"{r['event'] or '-':<18} {r['to']}")
        if r["error"]:
            tries = f" (after {r['attempts']} attempt(s))" if r["attempts"] else ""
            click.echo(f"         {r['error']}{tries}")


@cli.command()
@acting
@click.argument("message")
@click.option("--reason", default="", help="why, for the audit trail")
@click.pass_context
@guarded
def resend(ctx: click.Context, config: str | None, by: str | None, now: str | None,
           message: str, reason: str) -> None:
    """Send a message again (its number from `mailer messages`)."""
    settings, catalog = _loaded(ctx, config)
    number = mail.parse_message_number(message)
    with _session(settings) as session:
        done = mail.resend(session, _desk(settings, catalog, by, now), number, reason)
    if not done.queued:
        click.echo(f"#{number} was already queued again as #{done.number}, not sent yet: "
                   "nothing more queued")
        return
    click.echo(f"#{number} queued again as #{done.number}")
    click.echo(ANSWERS_HINT.replace("answers go", "it goes"))


@cli.command()
@acting
@click.option("--show", "show", metavar="REF", help="write this message (M7) as a .eml")
@click.option("--out", type=click.Path(dir_okay=False), help="with --show: the file to write")
@click.option("--release", "release", metavar="REF", help="hand this message back for handling")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.pass_context
@guarded
def quarantine(ctx: click.Context, config: str | None, by: str | None, now: str | None,
               show: str | None, out: str | None, release: str | None,
               as_json: bool) -> None:
    """Mail set aside, with its reason; --show writes one as .eml, --release handles it."""
    settings, catalog = _loaded(ctx, config)
    if show and release:
        raise UsageError("--show and --release: one at a time")
    if show:
        number = mail.parse_message_ref(show)
        with _session(settings) as session:
            row, raw, size = mail.kept_bytes(session, number, settings.imap)
        path = Path(out or f"quarantined-M{number}.eml")
        path.write_bytes(raw)
        cut = f" (the first {len(raw)} of its {size} bytes)" if len(raw) < size else ""
        click.echo(f"wrote {path}{cut}: {row.reason}")
        return
    if release:
        from mailer.staff.replies_check import policy_for

        number = mail.parse_message_ref(release)
        with _session(settings) as session:
            done = mail.release(session, catalog, policy_for(settings),
                                _desk(settings, catalog, by, now), number, settings.imap)
        click.echo(f"{done.ref} handed back: {done.outcome}: {done.summary}")
        if done.answers:
            click.echo(ANSWERS_HINT)
        return
    with _session(settings) as session:
        rows = mail.quarantined(session)
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        click.echo("no quarantined mail")
    for r in rows:
        kept = "bytes kept" if r["kept_bytes"] else "bytes not kept"
        click.echo(f"{r['ref']:<6} {r['at'].replace('T', ' ')}  {r['sender'] or '?'}  ({kept})")
        click.echo(f"       {r['reason']}")


# --- one person --------------------------------------------------------------------------

@cli.command("person")
@config_option
@click.argument("email")
@click.option("--json", "as_json", is_flag=True, help="everything, as JSON (for the person)")
@click.pass_context
@guarded
def person_command(ctx: click.Context, config: str | None, email: str, as_json: bool) -> None:
    """Everything stored about one person: registrations, messages, audit trail."""
    settings = settings_from(ctx, config)
    if "@" not in email:
        raise UsageError(f"{email!r} is not an email address")
    with _session(settings) as session:
        data = person.export(session, email)
    if as_json:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))
        return
    click.echo(person_text(data))


def person_text(data: dict[str, Any]) -> str:
    lines = [data["email"]]
    if not any(data[k] for k in data if k != "email"):
        return f"nothing stored about {data['email']}"
    for r in data["registrations"]:
        lines.append(f"  {r['ref']:<6} {r['event_id']:<18} {r['status']:<10} {r['name']}, "
                     f"{r['country'] or '??'}, {r['position']}, {r['organisation']}".rstrip(", "))
        for entry in r["audit"]:
            detail = f": {entry['detail']}" if entry["detail"] else ""
            why = f"; why: {entry['reason']}" if entry["reason"] else ""
            lines.append(f"         {entry['at'][:16].replace('T', ' ')} {entry['action']} by "
                         f"{entry['actor']} ({entry['via']}){detail}{why}")
    if data["registered_for_others"]:
        refs = ", ".join(f"{o['ref']} ({o['event_id']})" for o in data["registered_for_others"])
        lines.append(f"  registered others: {refs}")
    lines.append(f"  messages to them: {len(data['messages_to_them'])}")
    for m in data["messages_to_them"]:
        error = f": {m['last_error']}" if m["last_error"] else ""
        lines.append(f"    #{m['id']} {m['kind']} {m['event_id'] or '-'} {m['status']}{error}")
    lines.append(f"  messages from them: {len(data['messages_from_them'])}")
    for m in data["messages_from_them"]:
        lines.append(f"    {m['handled_at'][:16].replace('T', ' ')} {m['intent'] or '?'} "
                     f"{m['outcome']}: {m['reason']}")
    if data["messages_about_them"]:
        lines.append(f"  messages to others that name them: {len(data['messages_about_them'])}")
    if data["quarantined_mail"]:
        lines.append(f"  quarantined mail kept: {len(data['quarantined_mail'])}")
    if data["suppressed"]:
        lines.append(f"  address suppressed: {data['suppressed']['reason']}")
    return "\n".join(lines)


@cli.command()
@acting
@click.argument("email")
@click.option("--dry-run", is_flag=True, help="say what would be erased, erase nothing")
@click.pass_context
@guarded
def forget(ctx: click.Context, config: str | None, by: str | None, now: str | None,
           email: str, dry_run: bool) -> None:
    """Erase everything stored about one person (counts per country are kept)."""
    settings, catalog = _loaded(ctx, config)
    if "@" not in email:
        raise UsageError(f"{email!r} is not an email address")
    with _session(settings) as session:
        gone = person.forget(session, _desk(settings, catalog, by, now), email)
        if dry_run:
            session.rollback()
    if not gone.anything:
        click.echo(f"nothing stored about {email}")
        return
    verb = "would erase" if dry_run else "erased"
    click.echo(f"{verb}: {gone.registrations} registration(s) ({gone.cancelled} place(s) "
               f"given up, the waiting list moved up), {gone.messages} message(s) to them, "
               f"{gone.mentions} message(s) naming them, {gone.inbound} message(s) from them, "
               f"{gone.quarantined} quarantined, {gone.audit} audit entries"
               f"{', a suppression' if gone.suppressed else ''}; counts per country kept")
