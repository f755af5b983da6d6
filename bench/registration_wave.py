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
import tempfile
import time
from datetime import datetime, timezone
from email.headerregistry import Address
from pathlib import Path
from typing import Any

from imapclient import IMAPClient

from bench.common import (
    CountingSink,
    Measured,
    append,
    dovecot,
    in_child,
    mb,
    measure,
    quiet_logs,
    row,
    send_prebuilt,
    settings_for,
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
    import mailer.compose  # noqa: F401 - a running daemon has its modules loaded already
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
    parser.add_argument("--no-trace", action="store_true",
                        help="skip the tracemalloc run (saves one pass)")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="also profile one more pass with pyinstrument, reports into DIR")
    args = parser.parse_args(argv)
    from tests.mailgen import INBOX, wave

    began = time.monotonic()
    generated = wave(args.n, seed=args.seed)
    messages = generated.messages
    print(f"registration wave: {len(messages)} replies (seed {args.seed}), "
          f"{sum(map(len, messages)) / 1024 / 1024:.1f} MB, generated in "
          f"{time.monotonic() - began:.1f} s; {args.connections} SMTP connection(s)")

    with dovecot() as server, CountingSink() as sink, \
            tempfile.TemporaryDirectory(prefix="mailer-bench-") as tmp:
        work = Path(tmp)
        boxes = [server.new_mailbox() for _ in range(3 if not args.no_trace else 2)]
        for box in boxes:
            took = append(box, messages)
            print(f"  appended to {box.username} in {took:.1f} s")
        smtp = smtp_settings(sink, args.connections)

        # 1. the mailer's pass, timed
        (work / "timed").mkdir()
        timed_settings = settings_for(work / "timed", smtp, boxes[0].settings())
        sink.reset()
        timed = in_child(daemon_pass, timed_settings, work / "timed" / "mailer.log", False)
        sink.settle(timed.result["sent"])
        daemon_sent, daemon_end = sink.count, sink.last_accept

        # 2. the bare baseline, timed the same way
        raw = prebuilt_answer(timed_settings)
        sink.reset()
        base = in_child(bare_baseline, boxes[1].settings(), sink.host, sink.port,
                        args.connections, raw, INBOX)
        sink.settle(base.result["sent"])
        base_end = sink.last_accept

        # 3. the mailer's pass again, under tracemalloc (it slows the pass, so it is not timed)
        traced = None
        if not args.no_trace:
            (work / "traced").mkdir()
            sink.reset()
            traced = in_child(daemon_pass, settings_for(work / "traced", smtp,
                                                        boxes[2].settings()),
                              work / "traced" / "mailer.log", True)
        if args.profile is not None:
            box = server.new_mailbox()
            append(box, messages)
            (work / "profiled").mkdir()
            sink.reset()
            in_child(daemon_pass, settings_for(work / "profiled", smtp, box.settings()),
                     work / "profiled" / "mailer.log", False, args.profile.resolve())
            print(f"  pyinstrument reports written to {args.profile}/")
        report(len(messages), timed, daemon_sent, daemon_end, base, base_end, traced, len(raw))


def report(n: int, timed: Measured, daemon_sent: int, daemon_end: float, base: Measured,
           base_end: float, traced: Measured | None, raw_size: int) -> None:
    """Print the figures and the verdicts."""
    daemon_seconds = daemon_end - timed.started
    base_seconds = base_end - base.started
    daemon_rate, base_rate = n / daemon_seconds, n / base_seconds
    ratio = daemon_rate / base_rate
    r = timed.result
    print("\nmailer: one run_once (read, decide, plan, send)")
    row("replies read / handled / duplicates / quarantined",
        f"{r['read']} / {r['handled']} / {r['duplicates']} / {r['quarantined']}")
    row("answers sent (sink count) / failed / retried",
        f"{r['sent']} ({daemon_sent}) / {r['failed']} / {r['retried']}")
    row("time: pass start -> last SMTP acceptance", f"{daemon_seconds:.2f} s")
    row("time: pass start -> run_once returned", f"{timed.returned - timed.started:.2f} s")
    row("throughput", f"{daemon_rate:.1f} replies/s")
    row("ru_maxrss delta (RSS high-water, this pass)", mb(timed.rss_delta))
    row("ru_maxrss of the pass's process", mb(timed.rss_after))
    if traced is not None:
        row("tracemalloc peak (Python heap, traced rerun)", mb(traced.traced_peak))
        row("  (traced rerun took, slowed by tracemalloc)",
            f"{traced.returned - traced.started:.2f} s")
    print(f"\nbare baseline: imapclient fetch + email parse + 1 pre-built answer "
          f"({raw_size} bytes) each over aiosmtplib")
    row("messages fetched / answers sent", f"{base.result['read']} / {base.result['sent']}")
    row("time: start -> last SMTP acceptance", f"{base_seconds:.2f} s")
    row("throughput", f"{base_rate:.1f} replies/s")
    row("ru_maxrss delta", mb(base.rss_delta))
    print("\nverdict")
    row(f"throughput ratio mailer/baseline (target >= {TARGET_RATIO:.0%})",
        f"{ratio:.1%}  {verdict(ratio >= TARGET_RATIO)}")
    peaks = [timed.rss_delta] + ([traced.traced_peak or 0] if traced else [])
    row("peak memory (target < 200 MB, both measures)",
        f"{mb(max(peaks))}  {verdict(max(peaks) < TARGET_PEAK)}")


if __name__ == "__main__":
    main()
