"""What the read-only commands show: the plan, a parsed message, a preview, registrations.

Each function takes the settings and returns text (or bytes) for the command line to print,
so the commands stay thin and the output is testable without a terminal.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mailer import store
from mailer.config import Settings
from mailer.contacts import catalog_contacts
from mailer.countries import country_name
from mailer.domain import Kind, Status
from mailer.errors import ScheduleError, UsageError
from mailer.planner import STATES, timetable
from mailer.schedule import Catalog, read_catalog
from mailer.spreadsheet import safe_cell
from mailer.sync import current_plan, sync_events

if TYPE_CHECKING:
    from mailer.handling import Foreseen


def load(settings: Settings) -> Catalog:
    """The schedules, or ScheduleError naming every problem."""
    catalog, problems = read_catalog(settings.paths.schedules)
    if problems:
        raise ScheduleError(problems)
    return catalog


def _now(now: datetime | None) -> datetime:
    from mailer.daemon import utcnow

    return now or utcnow()


def plan_view(settings: Settings, now: datetime | None, *, as_json: bool,
              event_id: str | None = None) -> str:
    """Every scheduled send per event (kind, time, recipients, state) at ``now``.

    Event changes are synced inside a transaction that is rolled back: the plan shows what
    the daemon would do, and nothing is stored.
    """
    catalog = load(settings)
    if event_id and event_id not in catalog.events:
        raise UsageError(f"--event: no event {event_id!r} (known: {', '.join(catalog.events)})")
    moment = _now(now)
    contacts, _ = catalog_contacts(catalog, settings.paths.packs, settings.paths.contacts)
    # Before the first start there is no store yet: planned as for a new, empty one (in
    # memory: no file is created).
    url = "sqlite://" if store.missing_file(settings.store.url) else settings.store.url
    with store.command_transaction(url) as session:
        sync_events(session, catalog, moment, settings.paths.packs)
        current = current_plan(session, catalog, contacts, moment)
        session.rollback()
    rows = [r for r in current.summary() if not event_id or r["event_id"] == event_id]
    rows = _with_timetable(rows, catalog, event_id)
    if as_json:
        events = {e.id: {"title": e.title(e.language), "start": e.start.isoformat(),
                         "end": e.end.isoformat(), "language": e.language,
                         "cancelled": e.cancelled}
                  for e in sorted(catalog.events.values(), key=lambda e: e.start)
                  if not event_id or e.id == event_id}
        return json.dumps({"now": moment.isoformat(), "events": events, "sends": rows,
                           "next_at": current.next_at.isoformat() if current.next_at else None},
                          indent=2, ensure_ascii=False)
    lines = [f"plan at {moment:%Y-%m-%d %H:%M} UTC"]
    for event in sorted(catalog.events.values(), key=lambda e: e.start):
        if event_id and event.id != event_id:
            continue
        mine = [r for r in rows if r["event_id"] == event.id]
        state = " (cancelled)" if event.cancelled else ""
        lines.append(f"\n{event.id}{state}: {event.title(event.language)}, "
                     f"{event.start:%Y-%m-%d %H:%M}–{event.end:%H:%M} UTC")
        if not mine:
            lines.append("  nothing planned")
        for r in mine:
            states = ", ".join(f"{r[s]} {s}" for s in ("sent", "queued", "failed", "due",
                                                         "scheduled", "missed")
                               if r[s]) or "nobody yet"
            lines.append(f"  {r['due_at'][:16].replace('T', ' ')}  {r['kind']:<12} "
                         f"{r['label']:<10} {r['total']:>5} recipient(s): {states}")
    return "\n".join(lines)


def _with_timetable(rows: list[dict[str, Any]], catalog: Catalog,
                    event_id: str | None) -> list[dict[str, Any]]:
    """Add the series' own moments (reminders, pack...) that no registration fills yet."""
    seen = {(r["event_id"], r["kind"], r["due_at"]) for r in rows}
    out = list(rows)
    labels: dict[tuple[str, str, str], str] = {}
    for event in catalog.events.values():
        if event_id and event.id != event_id:
            continue
        for kind, when, label in timetable(event):
            labels[(event.id, str(kind), when.isoformat())] = label
            if (event.id, str(kind), when.isoformat()) not in seen:
                out.append({"event_id": event.id, "kind": str(kind),
                            "due_at": when.isoformat(), **dict.fromkeys(STATES, 0),
                            "total": 0})
    for row in out:
        # "7d" for a reminder, "on_request" for certificates: which of the series' moments.
        row.setdefault("label", labels.get((row["event_id"], row["kind"], row["due_at"]), ""))
    out.sort(key=lambda r: (r["due_at"], r["event_id"], r["kind"]))
    return out


def parse_view(settings: Settings, path: Path, now: datetime | None, *, as_json: bool,
               use_store: bool = True) -> str:
    """What the daemon understands from one message file, and what it would do with it.

    The outcome comes from the daemon's own path (``handling.understood_of`` then
    ``handling.foresee``: quarantine, the rules, the daily ration) in a transaction that is
    rolled back. It reads the configured store; without one (``use_store=False``, or a
    SQLite file not created yet) it decides against an empty store, as if nobody had
    registered and nothing had been answered, and says so.
    """
    from mailer.handling import Arrival, foresee, message_key, understood_of
    from mailer.staff.replies_check import policy_for
    from mailer.understand import understand

    catalog = load(settings)
    raw, moment = path.read_bytes(), _now(now)
    policy = policy_for(settings)
    intent = understand(raw, catalog, now=moment, inbox_address=settings.organiser.address,
                        recent=timedelta(days=policy.recent_event_days))
    data = intent.to_json()
    arrival = Arrival(raw, moment, message_key(raw, None))
    empty = not use_store or store.missing_file(settings.store.url) is not None
    with store.command_transaction("sqlite://" if empty else settings.store.url) as session:
        seen = foresee(session, catalog, arrival, understood_of(catalog, arrival, policy),
                       policy, lock=False)
        session.rollback()
    data["outcome"] = outcome_of(seen)
    if empty:
        data["outcome"]["assumed"] = ("no store read: as if nobody had registered and "
                                      "nothing had been answered")
    if as_json:
        return json.dumps(data, indent=2, ensure_ascii=False)
    lines = [f"intent:   {data['intent']}", f"event:    {data['event'] or '-'}",
             f"language: {data['language']}", f"reason:   {data['reason']}"]
    for p in data["participants"]:
        guessed = f" (guessed: {', '.join(p['inferred'])})" if p.get("inferred") else ""
        lines.append(f"  - {p['name'] or '?'} <{p['email'] or '?'}> {p['country'] or '?'}, "
                     f"{p['position']}, {p['organisation']}".rstrip(", ") + guessed)
    if data.get("partstat"):
        lines.append(f"partstat: {data['partstat']}")
    if data["bounced"]:
        lines.append(f"bounced:  {', '.join(data['bounced'])}")
    if data.get("candidates"):
        lines.append(f"candidates: {', '.join(data['candidates'])}")
    return "\n".join(lines + _outcome_lines(data["outcome"]))


def outcome_of(seen: Foreseen) -> dict[str, Any]:
    """What the daemon would do with a message (a ``handling.Foreseen``), as plain values."""
    out: dict[str, Any] = {"action": seen.outcome, "summary": seen.reason}
    if seen.outcome == "duplicate":
        out["summary"] = "handled before: nothing more is done"
    elif seen.outcome == "staff":
        out["summary"] = "a reply to the staff digest: read as staff commands"
    if seen.decision is None:
        return out
    decision = seen.decision
    known = {r.id: r for r in seen.snapshot}
    out["summary"] = decision.summary
    out["registrations"] = [{"email": n.participant.email, "country": n.participant.country,
                             "status": str(n.status)} for n in decision.created]
    out["changes"] = [{"email": known[c.registration_id].email if c.registration_id in known
                       else "", "from": str(known[c.registration_id].status)
                       if c.registration_id in known else "", "to": str(c.status)}
                      for c in decision.changed]
    out["suppressed"] = list(decision.suppress)
    kept = {a.key for a in seen.answers}
    out["answers"] = [{"kind": str(a.kind), "to": a.recipient,
                       **({"reason": a.context["reason"]} if a.context.get("reason")
                          and a.kind is Kind.CLARIFICATION else {}),
                       **({} if a.key in kept else {"sent": False})}
                      for a in decision.answers]
    return out


def _outcome_lines(outcome: dict[str, Any]) -> list[str]:
    """``mailer parse``'s outcome lines: what would be done, then each change and answer."""
    sent = [a for a in outcome.get("answers", []) if a.get("sent", True)]
    label = {"quarantined": "quarantined", "duplicate": "duplicate",
             "staff": "staff commands"}.get(outcome["action"]) or (
        "not answered" if not sent else "forwarded to staff"
        if all(a["kind"] == str(Kind.STAFF_QUESTION) for a in sent) else "answered")
    summary = outcome["summary"] or "-"
    # "automatic reply: not answered" already says the verdict: not twice on one line.
    summary = summary.removesuffix(f": {label}")
    lines = [f"outcome:  {label}: {summary}"]
    for r in outcome.get("registrations", []):
        lines.append(f"  register {r['email']} ({r['country']}) as {r['status']}")
    for c in outcome.get("changes", []):
        lines.append(f"  {c['email'] or '?'}: {c['from'] or '?'} -> {c['to']}")
    for email in outcome.get("suppressed", []):
        lines.append(f"  suppress {email} (nothing more is sent there)")
    for a in outcome.get("answers", []):
        what = "forward to staff" if a["kind"] == str(Kind.STAFF_QUESTION) else \
            f"answer {a['kind']}" + (f" ({a['reason']})" if a.get("reason") else "")
        held = "" if a.get("sent", True) else " - not sent: daily ration or suppressed"
        lines.append(f"  {what} to {a['to']}{held}")
    if outcome.get("assumed"):
        lines.append(f"assumed:  {outcome['assumed']}")
    return lines


@dataclass(frozen=True)
class Preview:
    data: bytes             # the exact bytes that would be sent
    tells_guesses: bool     # the kind says what was guessed, when something was (--inferred)


def preview_message(settings: Settings, kind: str, event_id: str, lang: str, to: str,
                    name: str, country: str | None, now: datetime | None,
                    inferred: str = "") -> Preview:
    """The exact bytes one message would be sent as, attachments included.

    ``inferred`` ("name,country"): what the mailer guessed of the participant, said in the
    message as it is to someone whose reply did not state it; a guessed country with no
    ``country`` is the sample participant's, Senegal.
    """
    from mailer.compose import INFERABLE, Composer, attachments_for
    from mailer.domain import Kind

    catalog = load(settings)
    if event_id not in catalog.events:
        raise UsageError(f"--event: no event {event_id!r} (known: {', '.join(catalog.events)})")
    if lang not in ("en", "fr", "es"):
        raise UsageError(f"--lang: {lang!r} is not one of en, fr, es")
    guessed = [f.strip().lower() for f in inferred.split(",") if f.strip()]
    wrong = [f for f in guessed if f not in INFERABLE]
    if wrong:
        raise UsageError(f"--inferred: {', '.join(map(repr, wrong))}: a message can say the "
                         f"mailer guessed {' or '.join(INFERABLE)}")
    country = _country_option(country)
    if "country" in guessed and country is None:
        country = "SN"
    composer = Composer(settings, catalog)
    data = composer.preview(kind, event_id, lang, to, name, _now(now), country=country,
                            attach=lambda out: attachments_for(out, catalog, settings),
                            inferred=guessed)
    return Preview(data, composer.tells_guesses(Kind(kind), lang))


def _country_option(value: str | None) -> str | None:
    """``--country`` as an ISO code, or UsageError (with the nearest country, if any)."""
    from mailer.countries import is_country_code, resolve_country

    if value is None:
        return None
    code = value.strip().upper()
    if is_country_code(code):
        return code
    found = resolve_country(value)
    hint = (f": did you mean {found} ({country_name(found)})?" if found
            else " (give an ISO 3166 alpha-2 code like SN)")
    raise UsageError(f"--country: unknown country {value!r}{hint}")


def readable_message(data: bytes) -> str:
    """A message as staff read it in a terminal: its headers and text parts decoded, the
    other parts named (``mailer preview``; the bytes themselves go to ``--out``)."""
    import email
    import email.policy

    msg = email.message_from_bytes(data, policy=email.policy.default)
    lines = [f"{name}: {msg[name]}" for name in ("From", "To", "Reply-To", "Subject", "Date",
                                                "Content-Language") if msg[name]]
    for part in msg.walk():
        if part.is_multipart():
            continue
        kind = part.get_content_type()
        name = part.get_filename()
        if name:
            size = len(part.get_payload(decode=True) or b"")
            lines += ["", f"--- attachment {name} ({kind}, {size:,} bytes) ---"]
        elif kind == "text/html":
            lines += ["", f"--- {kind}: {len(part.get_content()):,} characters, as mail "
                      "clients show it (--out FILE.eml keeps it) ---"]
        elif part.get_content_maintype() == "text":
            method = part.get_param("method")
            lines += ["", f"--- {kind}" + (f" (METHOD:{method})" if method else "") + " ---",
                      part.get_content().replace("\r\n", "\n").rstrip("\n")]
    return "\n".join(lines) + "\n"


COLUMNS = ("ref", "event", "country", "country_name", "status", "name", "email",
           "organisation", "position", "language", "registered", "certificate", "attended",
           "delivery", "last_action")


def registrations_rows(settings: Settings, event_id: str | None) -> tuple[Catalog,
                                                                             list[dict[str, Any]]]:
    """Every registration as a flat row, ordered by event, country and arrival."""
    catalog = load(settings)
    if event_id and event_id not in catalog.events:
        raise UsageError(f"--event: no event {event_id!r} (known: {', '.join(catalog.events)})")
    from mailer.staff import audit
    from mailer.staff.refs import registration_ref

    with store.command_transaction(settings.store.url) as session:
        regs = store.all_registrations(session, [event_id] if event_id else None)
        undelivered = _undelivered(session, [event_id] if event_id else None)
        trail: dict[tuple[str | None, str], list[str]] = {}
        for entry in audit.entries_for(session, event_ids=[event_id] if event_id else None):
            trail.setdefault((entry.event_id, entry.email), []).append(audit.describe(entry))
    rows = [{"ref": registration_ref(r.id), "event": r.event_id, "country": r.country or "",
             "country_name": country_name(r.country, "en") if r.country else "",
             "status": r.status, "name": r.name, "email": r.email,
             "organisation": r.organisation, "position": r.position, "language": r.language,
             "registered": r.created_at.isoformat(timespec="minutes"),
             "certificate": r.certificate_requested,
             "attended": "" if r.attended is None else r.attended,
             # A participant the server refused is not plainly "confirmed": say so.
             "delivery": undelivered.get((r.event_id, r.email.lower()), ""),
             "last_action": (trail.get((r.event_id, r.email.lower())) or [""])[-1],
             "audit": trail.get((r.event_id, r.email.lower()), [])} for r in regs]
    rows.sort(key=lambda r: (r["event"], r["country"], r["registered"]))
    return catalog, rows


def _undelivered(session: Any, event_ids: list[str] | None) -> dict[tuple[str, str], str]:
    """(event, address) -> what the server said, for participants whose last message of an
    event failed for good (or whose address is suppressed after a bounce)."""
    from sqlalchemy import select

    Out = store.OutboxRow
    query = select(Out.event_id, Out.recipient, Out.status, Out.kind, Out.last_error).where(
        Out.event_id.is_not(None), Out.status.in_(("sent", "failed"))).order_by(Out.id)
    if event_ids is not None:
        query = query.where(Out.event_id.in_(event_ids))
    suppressed = {s.email: s.reason for s in session.scalars(select(store.Suppression))}
    last: dict[tuple[str, str], str] = {}
    for event_id, recipient, status, kind, error in session.execute(query):
        key = (event_id, recipient.lower())
        last[key] = f"{kind} failed: {error}" if status == "failed" else ""
        if status == "failed" and not error[:1].isdigit() and key[1] in suppressed:
            # Not tried (the address bounced before): the server's words are in the bounce.
            last[key] += f"; the server said: {suppressed[key[1]]}"
    out = {key: why for key, why in last.items() if why}
    for key in last:
        if key not in out and key[1] in suppressed:
            out[key] = f"address suppressed: {suppressed[key[1]]}"
    return out


def registrations_view(settings: Settings, event_id: str | None, fmt: str) -> str | bytes:
    """Registrations as a table, CSV, JSON or an Excel workbook."""
    catalog, rows = registrations_rows(settings, event_id)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        # Names and organisations come from mail: never let a spreadsheet read them as formulas.
        writer.writerows([{k: safe_cell(v) for k, v in r.items()} for r in rows])
        return buffer.getvalue()
    totals = _totals(catalog, rows)
    if fmt == "json":
        return json.dumps({"registrations": rows, "totals": totals}, indent=2,
                          ensure_ascii=False)
    if fmt == "xlsx":
        from mailer.spreadsheet import workbook

        return workbook(rows, totals, COLUMNS)
    return _table(rows, totals)


def _totals(catalog: Catalog, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    counts: Counter[tuple[str, str, str]] = Counter(
        (r["event"], r["country"], r["status"]) for r in rows)
    out = []
    for event, country in sorted({(e, c) for e, c, _ in counts}):
        limit = catalog.events[event].series.spec.max_per_country \
            if event in catalog.events else None
        out.append({"event": event, "country": country, "limit": limit,
                    **{s.value: counts[(event, country, s.value)] for s in Status}})
    return out


def _table(rows: list[dict[str, Any]], totals: list[dict[str, Any]]) -> str:
    if not rows:
        return "no registrations yet"
    lines: list[str] = []
    current = None
    for r in rows:
        if r["event"] != current:
            current = r["event"]
            lines.append(f"\n{current}")
        status = f"{r['status']}!" if r["delivery"] else r["status"]
        lines.append(f"  {r['ref']:<6} {r['country'] or '??'}  {status:<10} "
                     f"{r['name'][:30]:<30} {r['email'][:40]:<40} {r['organisation'][:30]}")
        if r["delivery"]:
            lines.append(f"         ! not delivered: {r['delivery']}")
        for line in r["audit"]:
            lines.append(f"         {line}")
    lines.append("\ntotals per country (confirmed/limit, waiting, review, cancelled)")
    for t in totals:
        lines.append(f"  {t['event']:<20} {t['country'] or '??'}  {t['confirmed']}/{t['limit']}"
                     f"  waiting {t['waiting']}  review {t['review']}  "
                     f"cancelled {t['cancelled']}")
    return "\n".join(lines).lstrip("\n")


def status_view(settings: Settings, *, as_json: bool) -> str:
    """Which instances use the store, which one leads, what each has claimed (``mailer status``)."""
    from mailer import claims
    from mailer.daemon import utcnow

    with store.command_transaction(settings.store.url) as session:
        clock = claims.server_time(session) or utcnow()
        found = claims.who(session, clock)
    data = cluster_status(found, clock, settings.cluster.lease_seconds)
    if as_json:
        return json.dumps(data, indent=2, ensure_ascii=False, default=str)
    return _status_text(data)


def cluster_status(found: dict[str, Any], clock: datetime, lease_seconds: float
                   ) -> dict[str, Any]:
    """What ``claims.who`` found, as ``mailer status --json`` prints it: an instance is
    "alive" when it checked in within one lease, the leader's lease "held" until it ends."""
    leader = found["leader"]
    holder = leader.holder if leader is not None and leader.until and leader.until >= clock \
        else None
    claimed: dict[str, int] = dict(found["claims"])
    instances = []
    for row in found["instances"]:
        seen = (clock - row.last_seen).total_seconds()
        instances.append({
            "instance": row.id, "host": row.host, "pid": row.pid, "command": row.command,
            "started": row.started_at.isoformat(timespec="seconds"),
            "last_seen": row.last_seen.isoformat(timespec="seconds"),
            "seen_seconds_ago": round(max(seen, 0.0), 1), "alive": seen <= lease_seconds,
            "leader": row.id == holder, "claimed": claimed.pop(row.id, 0)})
    return {
        "clock": clock.isoformat(timespec="seconds"),
        "leader": None if holder is None else {
            "instance": holder, "since": leader.since.isoformat(timespec="seconds"),
            "until": leader.until.isoformat(timespec="seconds")},
        "instances": instances,
        # Claims of a process not registered as an instance (a bare drain, a tool).
        "other_claims": {k or "": v for k, v in claimed.items()},
        "pending": found["pending"]}


def _status_text(data: dict[str, Any]) -> str:
    lines = [f"store clock {data['clock']}; {data['pending']} message(s) pending"]
    leader = data["leader"]
    lines.append("leader: nobody (the next instance to check in takes the lease)"
                 if leader is None else
                 f"leader: {leader['instance']} since {leader['since']}, "
                 f"lease until {leader['until']}")
    if not data["instances"]:
        lines.append("no instance running")
    for i in data["instances"]:
        holds = [*(["leader"] if i["leader"] else []),
                 *([f"{i['claimed']} message(s) claimed"] if i["claimed"] else [])]
        state = (f"last seen {i['seen_seconds_ago']:.0f} s ago" if i["alive"] else
                 f"NOT SEEN for {i['seen_seconds_ago']:.0f} s (stopped without saying so; "
                 "what it held passes to the others)")
        lines.append(f"  {i['instance']}  mailer {i['command']} on {i['host']}, pid "
                     f"{i['pid']}, started {i['started']}; {state}; holds: "
                     f"{', '.join(holds) or 'nothing'}")
    for holder, count in data["other_claims"].items():
        lines.append(f"  {holder or '?'}  (not an instance: a drain run on its own) holds "
                     f"{count} message(s) claimed")
    return "\n".join(lines)
