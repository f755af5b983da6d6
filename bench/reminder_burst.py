"""Benchmark: thousands of reminders falling due at once, one pass, against a bare baseline.

``python -m bench.reminder_burst [--sizes 1000,10000,50000] [--connections 4]``: for each
size, that many confirmed registrations are inserted straight into a new store, spread over
the shipped events that have a reminder due at NOW (30 s after africa-en's "1d" reminder
moment) and their invited countries; everything else the planner finds due or missed by NOW
(packs, invitations, superseded reminders) is recorded as already sent, so the burst is
reminders only. Then ONE ``run_once(settings, now=NOW, read=False)`` (sync, plan, drain) is
timed to the sink's last acceptance, and the bare baseline sends as many copies of one
pre-rendered reminder over as many aiosmtplib connections.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from itertools import cycle
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from bench.common import (
    TRACE_AUTO_LIMIT_SECONDS,
    CountingSink,
    Measured,
    in_child,
    mb,
    measure,
    preload_daemon_modules,
    quiet_logs,
    row,
    send_prebuilt,
    settings_for,
    should_trace,
    smtp_settings,
    verdict,
)
from mailer.config import Settings
from mailer.domain import Kind, Status

ANCHOR = "africa-en"                 # the event whose "1d" reminder moment NOW follows
CONFIRMED_AT = datetime(2020, 6, 10, 9, 0, tzinfo=timezone.utc)   # well before any reminder
TARGET_RATIO = 0.60
TARGET_PEAK = 200 * 1024 * 1024
LANGUAGES = ("en", "fr", "es")


def burst_moment(settings: Settings) -> datetime:
    """30 s after the anchor event's "1d" reminder moment."""
    from mailer.schedule import read_catalog

    catalog, _ = read_catalog(settings.paths.schedules)
    return catalog.event(ANCHOR).start - timedelta(days=1) + timedelta(seconds=30)


# --- set-up: registrations and what was already sent -------------------------------------------


def set_up(settings: Settings, size: int, now: datetime) -> dict[str, Any]:
    """Insert ``size`` confirmed registrations and mark all but their due reminders as sent."""
    from mailer import store
    from mailer.contacts import catalog_contacts
    from mailer.planner import Registrant, plan
    from mailer.schedule import read_catalog
    from mailer.sync import registrants

    catalog, _ = read_catalog(settings.paths.schedules)
    contacts, _ = catalog_contacts(catalog, settings.paths.packs)
    events = reminder_events(catalog, now, contacts)
    st = store.Store(settings.store.url)
    st.migrate()
    slots = cycle([(event, country) for event in events
                   for country in sorted(catalog.events[event].countries)])
    rows = []
    for n in range(size):
        event_id, country = next(slots)
        event = catalog.events[event_id]
        language = event.language if n % 5 else LANGUAGES[n % 3]
        rows.append(dict(
            event_id=event_id, series_id=event.series.id, status=str(Status.CONFIRMED),
            email=f"participant.{n}@gov-{country.lower()}.example", name=f"Participant {n}",
            country=country, organisation="Ministry of Justice", position="Prosecutor",
            language=language, certificate_requested=False, attended=None, sequence_seen=0,
            registered_by="", source_message_id=f"<setup-{n}@bench.example>",
            created_at=CONFIRMED_AT, confirmed_at=CONFIRMED_AT, updated_at=CONFIRMED_AT))
    with st.transaction() as session:
        for first in range(0, len(rows), 5000):
            session.execute(insert(store.Registration), rows[first:first + 5000])
    with st.transaction() as session:
        people: list[Registrant] = registrants(session, catalog)
        current = plan(catalog, people, {}, set(), contacts, now)
        done = [p.out for p in current.items
                if p.state == "missed" or (p.state == "due" and p.out.kind is not Kind.REMINDER)]
        store.enqueue(session, done, now=now - timedelta(minutes=1), domain="secretariat.example",
                      status="sent")
        burst = [p.out for p in current.items
                 if p.state == "due" and p.out.kind is Kind.REMINDER]
    st.close()
    return {"events": events, "already_sent": len(done), "reminders_due": len(burst),
            "offsets": dict(Counter(f"{o.event_id} {o.context['offset']}" for o in burst))}


def reminder_events(catalog: Any, now: datetime, contacts: Any) -> list[str]:
    """The events for which someone confirmed long ago has a reminder due at ``now``."""
    from mailer.planner import Registrant, plan

    probes = [Registrant(id=i, event_id=e.id, email=f"probe{i}@bench.example", name="Probe",
                         language=e.language, country=None, status=Status.CONFIRMED,
                         confirmed_at=CONFIRMED_AT, sequence_seen=0,
                         certificate_requested=False, attended=None)
              for i, e in enumerate(catalog.events.values())]
    current = plan(catalog, probes, {}, set(), contacts, now)
    return sorted({p.out.event_id for p in current.items
                   if p.state == "due" and p.out.kind is Kind.REMINDER})


# --- the measured runs (each in a fresh child process) -----------------------------------------


def daemon_pass(settings: Settings, now: datetime, log_path: Path, trace: bool,
                profile: Path | None = None) -> Measured:
    """One ``run_once(read=False)``: sync, plan, drain."""
    preload_daemon_modules()
    from mailer.daemon import run_once

    quiet_logs(log_path)

    def work() -> dict[str, Any]:
        report = asyncio.run(run_once(settings, now=now, read=False))
        return {"planned": report.planned, "missed": report.missed, "sent": report.drain.sent,
                "failed": report.drain.failed, "retried": report.drain.retried}

    return measure(work, trace=trace, profile=profile)


def bare_baseline(host: str, port: int, sender: str, recipients: list[str], raw: bytes,
                  connections: int) -> Measured:
    """The same number of one pre-rendered reminder, sent over as many plain connections."""
    def work() -> dict[str, Any]:
        sent = asyncio.run(send_prebuilt(host, port, sender, recipients, raw, connections))
        return {"sent": sent}

    return measure(work, trace=False)


def prerendered_reminder(settings: Settings, now: datetime) -> bytes:
    """One reminder rendered by the mailer's own templates, before any timing."""
    from mailer.compose import Composer
    from mailer.schedule import read_catalog

    catalog, _ = read_catalog(settings.paths.schedules)
    return Composer(settings, catalog).preview("reminder", ANCHOR, "en",
                                               "participant.0@gov-sn.example", "Participant 0",
                                               now, country="SN")


# --- the benchmark ----------------------------------------------------------------------------


def run_size(size: int, sink: CountingSink, work: Path, connections: int, trace: str,
             profile: Path | None, repeat: int = 1) -> dict[str, Any]:
    """Set up, then time the pass and the baseline ``repeat`` times, alternately (and trace /
    profile copies), for one size."""
    smtp = smtp_settings(sink, connections)
    base_dir = work / f"n{size}"
    base_dir.mkdir()
    settings = settings_for(base_dir, smtp)
    now = burst_moment(settings)
    began = time.monotonic()
    setup = set_up(settings, size, now)
    setup_seconds = time.monotonic() - began
    db = base_dir / "mailer.db"
    copies: dict[str, Settings] = {}
    names = ([f"repeat{n}" for n in range(2, repeat + 1)] + ["traced"] * (trace != "never")
             + ["profiled"] * (profile is not None))
    for name in names:     # each pass sends the burst from the same untouched store
        (work / f"n{size}-{name}").mkdir()
        shutil.copy(db, work / f"n{size}-{name}" / "mailer.db")
        copies[name] = settings_for(work / f"n{size}-{name}", smtp)

    from mailer import store

    st = store.Store(settings.store.url)
    with st.transaction() as session:
        recipients = [r.email for r in store.all_registrations(session)]
    st.close()
    raw = prerendered_reminder(settings, now)
    passes = [(settings, base_dir)] + [(copies[f"repeat{n}"], work / f"n{size}-repeat{n}")
                                       for n in range(2, repeat + 1)]
    pairs = [timed_pair(s, folder / "mailer.log", now, sink, recipients, raw, connections)
             for s, folder in passes]

    traced = None
    if "traced" in copies and should_trace(trace, pairs[0]["last"] - pairs[0]["timed"].started):
        sink.reset()
        traced = in_child(daemon_pass, copies["traced"], now,
                          work / f"n{size}-traced" / "mailer.log", True)
    if "profiled" in copies and profile is not None:
        sink.reset()
        in_child(daemon_pass, copies["profiled"], now, work / f"n{size}-profiled" / "mailer.log",
                 False, (profile / f"n{size}").resolve())
    return {"size": size, "now": now, "setup": setup, "setup_seconds": setup_seconds,
            "pairs": pairs, "traced": traced, "raw_size": len(raw)}


def timed_pair(settings: Settings, log_path: Path, now: datetime, sink: CountingSink,
               recipients: list[str], raw: bytes, connections: int) -> dict[str, Any]:
    """One timed pass of the mailer, then the bare baseline right after it."""
    sink.reset()
    timed = in_child(daemon_pass, settings, now, log_path, False)
    sink.settle(timed.result["sent"])
    daemon_sent, first, last = sink.count, sink.first_accept, sink.last_accept
    sink_cpu = sink.cpu_seconds
    sink.reset()
    base = in_child(bare_baseline, sink.host, sink.port, settings.organiser.address,
                    recipients, raw, connections)
    sink.settle(base.result["sent"])
    seconds, base_seconds = last - timed.started, sink.last_accept - base.started
    return {"timed": timed, "daemon_sent": daemon_sent, "first": first, "last": last,
            "sink_cpu": sink_cpu, "base": base, "base_sink_cpu": sink.cpu_seconds,
            "seconds": seconds,
            "base_seconds": base_seconds,
            "ratio": (daemon_sent / seconds) / (base.result["sent"] / base_seconds)}


def report(r: dict[str, Any], connections: int) -> None:
    size, traced, pairs = r["size"], r["traced"], r["pairs"]
    first_pair = pairs[0]
    timed, base = first_pair["timed"], first_pair["base"]
    seconds, base_seconds = first_pair["seconds"], first_pair["base_seconds"]
    rate, base_rate = first_pair["daemon_sent"] / seconds, base.result["sent"] / base_seconds
    s = r["setup"]
    print(f"\n== {size} confirmed registrations; now {r['now']:%Y-%m-%dT%H:%M:%SZ}; "
          f"{connections} SMTP connections ==")
    row("set-up (insert, mark earlier mail sent)",
        f"{r['setup_seconds']:.1f} s; {s['already_sent']} rows marked sent")
    row("reminders due, by event and offset",
        ", ".join(f"{k}: {v}" for k, v in sorted(s["offsets"].items())))
    print("  mailer: one run_once(read=False): sync, plan, drain"
          + (f" (the first of {len(pairs)} passes)" if len(pairs) > 1 else ""))
    row("planned / missed / sent (sink count) / failed",
        f"{timed.result['planned']} / {timed.result['missed']} / {timed.result['sent']} "
        f"({first_pair['daemon_sent']}) / {timed.result['failed']}")
    row("time: pass start -> first SMTP acceptance",
        f"{first_pair['first'] - timed.started:.2f} s")
    row("time: pass start -> last SMTP acceptance", f"{seconds:.2f} s")
    row("throughput", f"{rate:.1f} messages/s ({1000 * seconds / size:.2f} ms/message)")
    row("CPU time of the pass's process", f"{timed.cpu_seconds:.2f} s "
        f"({1000 * timed.cpu_seconds / size:.2f} ms/message)")
    row("CPU time of its worker process", f"{timed.worker_cpu_seconds:.2f} s "
        f"({1000 * timed.worker_cpu_seconds / size:.2f} ms/message)")
    row("CPU time of the SMTP sink meanwhile", f"{first_pair['sink_cpu']:.2f} s "
        f"({1000 * first_pair['sink_cpu'] / size:.2f} ms/message)")
    row("ru_maxrss delta (RSS high-water, this pass)", mb(timed.rss_delta))
    row("ru_maxrss of the pass's process", mb(timed.rss_after))
    row("ru_maxrss of its worker process", mb(timed.worker_peak))
    if traced is not None:
        row("tracemalloc peak (Python heap, traced rerun)", mb(traced.traced_peak))
    print(f"  bare baseline: {base.result['sent']} copies of one pre-rendered reminder "
          f"({r['raw_size']} bytes), aiosmtplib")
    row("time: start -> last SMTP acceptance", f"{base_seconds:.2f} s")
    row("throughput", f"{base_rate:.1f} messages/s "
        f"({1000 * base_seconds / base.result['sent']:.2f} ms/message)")
    row("CPU time of the baseline's process", f"{base.cpu_seconds:.2f} s "
        f"({1000 * base.cpu_seconds / base.result['sent']:.2f} ms/message)")
    row("CPU time of the SMTP sink meanwhile", f"{first_pair['base_sink_cpu']:.2f} s "
        f"({1000 * first_pair['base_sink_cpu'] / base.result['sent']:.2f} ms/message)")
    ratios = [p["ratio"] for p in pairs]
    if len(pairs) > 1:
        print(f"  {len(pairs)} alternating passes (mailer, then its baseline)")
        for n, p in enumerate(pairs, 1):
            row(f"pass {n}", f"mailer {1000 * p['seconds'] / size:.2f} ms/message, baseline "
                f"{1000 * p['base_seconds'] / size:.2f} ms/message, ratio {p['ratio']:.1%}")
    # The worker process's memory counts too: the mailer is both processes.
    peaks = ([p["timed"].rss_delta + p["timed"].worker_peak for p in pairs]
             + ([traced.traced_peak or 0] if traced else []))
    ratio = statistics.median(ratios)
    row(f"ratio mailer/baseline (target >= {TARGET_RATIO:.0%})"
        + (", median" if len(pairs) > 1 else ""), f"{ratio:.1%}  {verdict(ratio >= TARGET_RATIO)}")
    row("peak memory, delta + worker (target < 200 MB, every measure)",
        f"{mb(max(peaks))}  {verdict(max(peaks) < TARGET_PEAK)}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.reminder_burst",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,50000",
                        help="registrations per run, comma-separated (1000,10000,50000)")
    parser.add_argument("--connections", type=int, default=4,
                        help="SMTP connections, for the mailer and the baseline (4)")
    parser.add_argument("--trace-sizes", default="10000",
                        help="sizes that may get a tracemalloc rerun (10000; 'none' for none)")
    parser.add_argument("--trace", choices=("auto", "always", "never"), default="auto",
                        help="for those sizes, rerun the pass under tracemalloc; auto: only if "
                             f"the timed pass took <= {TRACE_AUTO_LIMIT_SECONDS:.0f} s")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="time N passes per size, each followed by its baseline, and judge "
                             "the median ratio (1); the host's speed drifts between runs")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="also profile one more pass per size with pyinstrument, into DIR")
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr] - figures as they come
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    traced = {int(s) for s in args.trace_sizes.split(",") if s.strip().isdigit()}
    results = []
    began = time.monotonic()
    with CountingSink() as sink, tempfile.TemporaryDirectory(prefix="mailer-bench-") as tmp:
        for size in sizes:
            result = run_size(size, sink, Path(tmp), args.connections,
                              args.trace if size in traced else "never", args.profile,
                              max(args.repeat, 1))
            report(result, args.connections)
            results.append(result)
    print("\ntime per message (should stay flat as the burst grows)")
    for r in results:
        seconds = statistics.median(p["seconds"] for p in r["pairs"])
        base_seconds = statistics.median(p["base_seconds"] for p in r["pairs"])
        row(f"{r['size']:>6} registrations",
            f"mailer {1000 * seconds / r['size']:.2f} ms/message, "
            f"baseline {1000 * base_seconds / r['size']:.2f} ms/message"
            + (" (medians)" if len(r["pairs"]) > 1 else ""))
    print(f"\ntotal run time {time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    main()
