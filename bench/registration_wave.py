"""Benchmark: a wave of N registration replies through one full pass, against a bare baseline.

``python -m bench.registration_wave [--n 5000] [--connections 2]``: N generated replies
(``tests.mailgen.wave``) in a Dovecot inbox, then ONE ``run_once(settings, now=2020-06-20T12:00Z)``
timed from its start to the sink's last acceptance; then the bare baseline on the same
messages (imapclient fetch, ``email`` parse, one pre-built answer each over as many aiosmtplib
connections); then the same pass again under tracemalloc for its peak Python heap.
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import ssl
import sys
import tempfile
import time
from datetime import datetime, timezone
from email.headerregistry import Address
from pathlib import Path
from typing import Any

from imapclient import IMAPClient

from bench.common import (
    TRACE_AUTO_LIMIT_SECONDS,
    CountingSink,
    Measured,
    append,
    dovecot,
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
from mailer.config import Imap, Settings

NOW = datetime(2020, 6, 20, 12, 0, tzinfo=timezone.utc)
TARGET_RATIO = 0.40
TARGET_PEAK = 200 * 1024 * 1024


# --- the two measured runs (each in a fresh child process) -------------------------------------


def daemon_pass(settings: Settings, log_path: Path, trace: bool,
                profile: Path | None = None) -> Measured:
    """One ``run_once`` at NOW over the whole inbox."""
    preload_daemon_modules()
    from mailer.daemon import run_once

    quiet_logs(log_path)

    def work() -> dict[str, Any]:
        report = asyncio.run(run_once(settings, now=NOW))
        return {"read": report.read, "handled": report.handled,
                "duplicates": report.duplicates, "quarantined": report.quarantined,
                "planned": report.planned, "sent": report.drain.sent,
                "failed": report.drain.failed, "retried": report.drain.retried}

    return measure(work, trace=trace, profile=profile)


def bare_baseline(imap: Imap, host: str, port: int, connections: int, raw: bytes,
                  sender: str) -> Measured:
    """Fetch every message with imapclient, parse it, send one pre-built answer to its sender."""
    context = ssl.create_default_context(cafile=str(imap.ca_file))

    def work() -> dict[str, Any]:
        recipients: list[str] = []
        client = IMAPClient(imap.host, imap.port, ssl=True, ssl_context=context, timeout=60)
        assert imap.password is not None
        client.login(imap.username, imap.password.get_secret_value())
        client.select_folder(imap.folder, readonly=True)
        uids = client.search("ALL")
        # The daemon's own batch size, so both read the inbox in the same-sized FETCHes.
        for first in range(0, len(uids), imap.batch_size):
            fetched = client.fetch(uids[first:first + imap.batch_size], ["BODY.PEEK[]"])
            for item in fetched.values():
                msg = email.message_from_bytes(item[b"BODY[]"], policy=email.policy.default)
                addresses: tuple[Address, ...] = getattr(msg["From"], "addresses", ())
                recipients.append(addresses[0].addr_spec if addresses else sender)
        client.logout()
        sent = asyncio.run(send_prebuilt(host, port, sender, recipients, raw, connections))
        return {"read": len(uids), "sent": sent}

    return measure(work, trace=False)



# --- the benchmark ----------------------------------------------------------------------------


def prebuilt_answer(settings: Settings) -> bytes:
    """One acknowledgement rendered by the mailer's own templates, before any timing."""
    from mailer.compose import Composer
    from mailer.schedule import read_catalog

    catalog, _ = read_catalog(settings.paths.schedules)
    return Composer(settings, catalog).preview("acknowledgement", "africa-fr", "fr",
                                               "awa.diop@justice.gouv.sn.example", "Awa Diop",
                                               NOW, country="SN")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.registration_wave",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="replies in the wave (5000)")
    parser.add_argument("--connections", type=int, default=2,
                        help="SMTP connections, for the mailer and the baseline (2, the default)")
    parser.add_argument("--seed", type=int, default=7, help="the wave's random seed (7)")
    parser.add_argument("--trace", choices=("auto", "always", "never"), default="auto",
                        help="rerun the pass under tracemalloc for its heap peak; auto: only "
                             f"if the timed pass took <= {TRACE_AUTO_LIMIT_SECONDS:.0f} s")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="also profile one more pass with pyinstrument, reports into DIR")
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr] - figures as they come
    from tests.mailgen import INBOX, wave

    began = time.monotonic()
    messages = wave(args.n, seed=args.seed).messages
    n = len(messages)
    print(f"registration wave: {n} replies (seed {args.seed}), "
          f"{sum(map(len, messages)) / 1024 / 1024:.1f} MB, generated in "
          f"{time.monotonic() - began:.1f} s; {args.connections} SMTP connection(s)", flush=True)

    with dovecot() as server, CountingSink() as sink, \
            tempfile.TemporaryDirectory(prefix="mailer-bench-") as tmp:
        work = Path(tmp)
        smtp = smtp_settings(sink, args.connections)

        def mailbox() -> Imap:
            box = server.new_mailbox()
            took = append(box, messages)
            print(f"  {n} replies appended to {box.username} in {took:.1f} s", flush=True)
            return box.settings()

        def fresh(name: str) -> Settings:
            (work / name).mkdir()
            return settings_for(work / name, smtp, mailbox())

        # 1. the mailer's pass, timed
        timed_settings = fresh("timed")
        sink.reset()
        timed = in_child(daemon_pass, timed_settings, work / "timed" / "mailer.log", False)
        sink.settle(timed.result["sent"])
        daemon_seconds = sink.last_accept - timed.started
        report_mailer(n, timed, sink.count, sink.first_accept, daemon_seconds)

        # 2. the bare baseline on its own copy of the inbox, timed the same way
        raw = prebuilt_answer(timed_settings)
        imap = mailbox()
        sink.reset()
        base = in_child(bare_baseline, imap, sink.host, sink.port, args.connections, raw, INBOX)
        sink.settle(base.result["sent"])
        base_seconds = sink.last_accept - base.started
        report_baseline(base, base_seconds, len(raw))

        # 3. the pass again under tracemalloc (it slows the pass, so that run is not timed)
        traced = None
        if should_trace(args.trace, daemon_seconds):
            traced_settings = fresh("traced")
            sink.reset()
            traced = in_child(daemon_pass, traced_settings, work / "traced" / "mailer.log", True)
            row("tracemalloc peak (Python heap, traced rerun)", mb(traced.traced_peak))
            row("  (the traced rerun took)", f"{traced.returned - traced.started:.1f} s")
        else:
            print(f"  tracemalloc rerun skipped (--trace {args.trace}; the timed pass took "
                  f"{daemon_seconds:.0f} s)")
        report_verdict(n / daemon_seconds, n / base_seconds, timed, traced)

        if args.profile is not None:
            profiled_settings = fresh("profiled")
            sink.reset()
            in_child(daemon_pass, profiled_settings, work / "profiled" / "mailer.log", False,
                     args.profile.resolve())
            print(f"\npyinstrument reports (tree.txt, flat.txt, profile.html) in {args.profile}/")
    print(f"\ntotal run time {time.monotonic() - began:.0f} s")


def report_mailer(n: int, timed: Measured, accepted: int, first: float, seconds: float) -> None:
    r = timed.result
    print("\nmailer: one run_once (read, decide, plan, send)")
    row("replies read / handled / duplicates / quarantined",
        f"{r['read']} / {r['handled']} / {r['duplicates']} / {r['quarantined']}")
    row("answers sent (sink count) / failed / retried",
        f"{r['sent']} ({accepted}) / {r['failed']} / {r['retried']}")
    row("time: pass start -> first SMTP acceptance", f"{first - timed.started:.2f} s")
    row("time: pass start -> last SMTP acceptance", f"{seconds:.2f} s")
    row("time: pass start -> run_once returned", f"{timed.returned - timed.started:.2f} s")
    row("throughput", f"{n / seconds:.1f} replies/s ({1000 * seconds / n:.2f} ms/reply)")
    row("CPU time of the pass's process", f"{timed.cpu_seconds:.2f} s")
    row("CPU time of its worker process", f"{timed.worker_cpu_seconds:.2f} s")
    row("ru_maxrss delta (RSS high-water, this pass)", mb(timed.rss_delta))
    row("ru_maxrss of the pass's process", mb(timed.rss_after))
    row("ru_maxrss of its worker process", mb(timed.worker_peak))


def report_baseline(base: Measured, seconds: float, raw_size: int) -> None:
    n = base.result["read"]
    print(f"\nbare baseline: imapclient fetch + email parse + 1 pre-built answer "
          f"({raw_size} bytes) each, aiosmtplib")
    row("messages fetched / answers sent", f"{n} / {base.result['sent']}")
    row("time: start -> last SMTP acceptance", f"{seconds:.2f} s")
    row("throughput", f"{n / seconds:.1f} replies/s ({1000 * seconds / n:.2f} ms/reply)")
    row("ru_maxrss delta", mb(base.rss_delta))


def report_verdict(rate: float, base_rate: float, timed: Measured,
                   traced: Measured | None) -> None:
    ratio = rate / base_rate
    print("\nverdict")
    row(f"throughput ratio mailer/baseline (target >= {TARGET_RATIO:.0%})",
        f"{ratio:.1%}  {verdict(ratio >= TARGET_RATIO)}")
    # The worker process's memory counts too: the mailer is both processes.
    peaks = [timed.rss_delta + timed.worker_peak] + ([traced.traced_peak or 0] if traced else [])
    label = ("ru_maxrss delta + worker, and tracemalloc peak" if traced
             else "ru_maxrss delta + worker")
    row(f"peak memory, {label} (target < 200 MB)",
        f"{mb(max(peaks))}  {verdict(max(peaks) < TARGET_PEAK)}")


if __name__ == "__main__":
    main()
