"""Benchmark: one burst of reminders drained by 1, 2 and 3 mailer processes over one PostgreSQL.

``python -m bench.shared_burst [--size 10000] [--processes 1,2,3] [--connections 4]
[--store postgresql|sqlite] [--repeat N]``: the
reminder burst's set-up (``bench.reminder_burst.set_up``: that many confirmed registrations,
everything but their due reminders already sent) is made once in a PostgreSQL database
used as a template; then, for each process count, a fresh copy of it is drained by that many
``run_once(settings, now=NOW, read=False)`` passes started together in their own processes
(one of them leads and plans, all of them claim and send), against the unthrottled counting
sink. Printed per process count: the time from the start to the sink's last acceptance,
the throughput, how the messages were shared, every process's CPU, and what the claims cost
(the time spent claiming rows, renewing and giving them back, and taking sending slots, per
message sent).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import (
    SPAWN,
    CountingSink,
    preload_daemon_modules,
    quiet_logs,
    row,
    settings_for,
    smtp_settings,
)
from bench.reminder_burst import burst_moment, set_up
from mailer.config import Settings, Staff, Store


class Databases:
    """Where the runs' stores are: databases of a private PostgreSQL server (started as the
    tests start it, fsync off), or SQLite files; ``copy`` makes a fresh copy of the
    template store for one run."""

    def __init__(self, kind: str, folder: Path) -> None:
        self.kind = kind
        self.folder = folder
        self._server: Any = None
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> Databases:
        if self.kind == "postgresql":
            from tests.servers import postgres as servers

            start = contextlib.contextmanager(servers.postgres_server.__wrapped__)
            self._server = self._stack.enter_context(start())
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def template(self) -> str:
        if self._server is None:
            return f"sqlite:///{self.folder}/template.db"
        return self._create("burst_template")

    def copy(self, name: str) -> str:
        if self._server is None:
            shutil.copy(self.folder / "template.db", self.folder / f"{name}.db")
            return f"sqlite:///{self.folder}/{name}.db"
        return self._create(name, "burst_template")

    def _create(self, name: str, template: str | None = None) -> str:
        import psycopg

        server = self._server
        with psycopg.connect(host=server.host, port=server.port, user="postgres",
                             dbname="postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"'
                         + (f' TEMPLATE "{template}"' if template else ""))
        return str(server.url(name))


def plan_burst(settings: Settings, now: Any) -> None:
    """Put the burst in the outbox, as the leader's planning does, so that every process
    finds it due from its start (the passes' own planning then finds nothing new)."""
    from mailer import store
    from mailer.contacts import catalog_contacts
    from mailer.schedule import read_catalog
    from mailer.sync import plan_into_outbox, sync_events

    catalog, _ = read_catalog(settings.paths.schedules)
    contacts, _ = catalog_contacts(catalog, settings.paths.packs)
    st = store.Store(settings.store.url)
    with st.transaction() as session:
        sync_events(session, catalog, now)
        plan_into_outbox(session, catalog, contacts, now, "secretariat.example")
    st.close()


# --- one drain process --------------------------------------------------------------------------

def _timed(totals: dict[str, list[float]], name: str, function: Callable[..., Any]
           ) -> Callable[..., Any]:
    """``function``, adding each call's wall time to ``totals[name]``."""
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            totals.setdefault(name, []).append(time.perf_counter() - began)
    return wrapper


def _pass_main(settings: Settings, now: Any, log_path: Path, ready: Any, go: Any,
               out: Any) -> None:
    """A child: preload, say ready, wait for the start, drain, report."""
    preload_daemon_modules()
    from mailer import claims, cluster
    from mailer.daemon import run_once

    quiet_logs(log_path)
    totals: dict[str, list[float]] = {}
    # What the claims cost: the claiming statement (in the transaction that read the due
    # rows before claims), and the transactions of renewing, giving back and sending slots.
    claims.claim_due = _timed(totals, "claim rows", claims.claim_due)
    for owner, name, label in ((cluster.Claim, "_renew", "renew claims"),
                               (cluster.Claim, "release", "give claims back"),
                               (cluster.SharedRate, "_reserve", "take sending slots")):
        setattr(owner, name, _timed(totals, label, getattr(owner, name)))
    ready.set()
    go.wait()
    started, cpu = time.monotonic(), time.process_time()
    report = asyncio.run(run_once(settings, now=now, read=False))
    out.put({"started": started, "returned": time.monotonic(),
             "cpu": time.process_time() - cpu, "sent": report.drain.sent,
             "led": report.leading, "planned": report.planned,
             "costs": {name: (len(calls), sum(calls)) for name, calls in totals.items()}})


def drain_together(settings: Settings, now: Any, processes: int, folder: Path,
                   sink: CountingSink) -> list[dict[str, Any]]:
    """Start ``processes`` passes at the same moment; return what each reported."""
    ready = [SPAWN.Event() for _ in range(processes)]
    go = SPAWN.Event()
    out = SPAWN.Queue()
    children = [SPAWN.Process(target=_pass_main, args=(settings, now, folder / f"p{n}.log",
                                                        ready[n], go, out))
                for n in range(processes)]
    for child in children:
        child.start()
    for event in ready:
        if not event.wait(120):
            raise RuntimeError("a drain process did not start")
    sink.reset()
    go.set()
    results = [out.get(timeout=1800) for _ in children]
    for child in children:
        child.join(60)
    return results


# --- the benchmark ------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.shared_burst",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10_000, help="registrations (10000)")
    parser.add_argument("--processes", default="1,2,3", help="process counts (1,2,3)")
    parser.add_argument("--connections", type=int, default=4,
                        help="SMTP connections per process (4)")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="drain N fresh copies per process count; medians are printed")
    parser.add_argument("--store", choices=("postgresql", "sqlite"), default="postgresql",
                        help="where the store is (postgresql: a private server)")
    parser.add_argument("--logs", type=Path, metavar="DIR",
                        help="keep each process's log under DIR (default: thrown away)")
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    counts = [int(n) for n in args.processes.split(",") if n.strip()]
    with CountingSink() as sink, tempfile.TemporaryDirectory(prefix="mailer-bench-") as tmp, \
            Databases(args.store, Path(tmp)) as databases:
        folder = Path(tmp)
        smtp = smtp_settings(sink, args.connections)
        base = settings_for(folder, smtp)
        # The burst's moment (08:00:30) is also the daily digest's hour: without this the
        # leader sent it as a 10,001st message, and the count check said MISMATCH.
        base = base.model_copy(update={"store": Store(url=databases.template()),
                                       "staff": Staff(digest=False)})
        now = burst_moment(base)
        began = time.monotonic()
        setup = set_up(base, args.size, now)
        plan_burst(base, now)
        print(f"== {args.size} confirmed registrations on {args.store}; "
              f"{setup['reminders_due']} reminders due; {args.connections} SMTP connections "
              f"per process; unthrottled sink ==")
        row("set-up (insert, mark earlier mail sent)", f"{time.monotonic() - began:.1f} s")
        summary = []
        for processes in counts:
            runs = []
            for n in range(max(args.repeat, 1)):
                url = databases.copy(f"burst_{processes}_{n}")
                settings = base.model_copy(update={"store": Store(url=url)})
                work = (args.logs or folder) / f"p{processes}-{n}"
                work.mkdir(parents=True)
                results = drain_together(settings, now, processes, work, sink)
                sink.settle(setup["reminders_due"])
                runs.append((results, sink.last_accept - min(r["started"] for r in results),
                             sink.count, sink.cpu_seconds))
            summary.append((processes, report(processes, runs, setup["reminders_due"])))
        print("\nthroughput per process count (median)")
        single = summary[0][1]
        for processes, rate in summary:
            row(f"{processes} process(es)", f"{rate:.0f} messages/s "
                f"({rate / single:.2f} x one process)")


def report(processes: int, runs: list[Any], due: int) -> float:
    """Print one process count's figures; return its median throughput."""
    print(f"\n-- {processes} process(es) --")
    rates = []
    for results, seconds, count, sink_cpu in runs:
        sent = sum(r["sent"] for r in results)
        rate = count / seconds
        rates.append(rate)
        costs: dict[str, tuple[int, float]] = {}
        for r in results:
            for name, (calls, total) in r["costs"].items():
                before = costs.get(name, (0, 0.0))
                costs[name] = (before[0] + calls, before[1] + total)
        claim_seconds = sum(total for _, total in costs.values())
        row("time: start -> last SMTP acceptance", f"{seconds:.2f} s")
        row("throughput", f"{rate:.1f} messages/s ({1000 * seconds / max(count, 1):.2f} "
            "ms/message)")
        row("sent (sink count); due", f"{sent} ({count}); {due}"
            + ("" if count == due else "  MISMATCH"))
        row("sent by each process", ", ".join(
            f"{r['sent']}{' (led, planned ' + str(r['planned']) + ')' if r['led'] else ''}"
            for r in results))
        row("CPU of each process", ", ".join(f"{r['cpu']:.2f} s" for r in results)
            + f"; sink {sink_cpu:.2f} s")
        row("claims' cost (all processes, wall time)",
            f"{1000 * claim_seconds:.0f} ms, {1e6 * claim_seconds / max(sent, 1):.0f} "
            "us/message sent")
        for name, (calls, total) in sorted(costs.items()):
            row(f"  {name}", f"{calls} calls, {1000 * total:.0f} ms "
                f"({1000 * total / max(calls, 1):.2f} ms each)")
    return statistics.median(rates)


if __name__ == "__main__":
    main()
