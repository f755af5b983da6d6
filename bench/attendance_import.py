"""Memory of `mailer attendance import` on a big generated Zoom report.

A report of ``--rows`` rows (default 1,500,000: ~120 MB of CSV, 600 registered people, each
connecting several times, and unknown guests) is written to a temporary folder with a store
holding the event's registrations; `mailer attendance import` runs in a child process and
its peak resident memory (ru_maxrss) and time are printed. ``--code DIR`` runs another
checkout's mailer package instead (e.g. the code before streaming), for a before/after.

    .venv/bin/python -m bench.attendance_import            # --rows 1500000
    .venv/bin/python -m bench.attendance_import --code ../main

Target: peak memory < 200 MB whatever the report's size.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REGISTERED = 600
HEADER = ("Name (Original Name),User Email,Join Time,Leave Time,Duration (Minutes),Guest,"
          "Recording Consent\n")


def write_report(path: Path, rows: int) -> None:
    """A Zoom participant report: a summary block, then ``rows`` connection rows."""
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("Meeting ID,Topic,Start Time,End Time,User Email,Duration (Minutes),"
                  "Participants\n96620374155,Webinar,07/09/2020 07:52:10 AM,07/09/2020 "
                  "09:51:33 AM,secretariat@coe.int,120,9999\n\n")
        out.write(HEADER)
        for n in range(rows):
            # Registered people rejoin many times; one row in four is a guest nobody knows.
            who = (f"person{n % REGISTERED}@justice.example.org" if n % 4
                   else f"guest{n}@example.net")
            out.write(f"Participant {n},{who},07/09/2020 08:00:00 AM,07/09/2020 08:05:00 AM,"
                      f"{n % 7 + 1},Yes,Y\n")


def prepare(folder: Path, rows: int) -> None:
    from mailer import store

    shutil.copytree(ROOT / "schedules", folder / "schedules")
    url = f"sqlite:///{folder}/m.db"
    (folder / "config.toml").write_text(
        f'[store]\nurl = "{url}"\n[paths]\ntemplates = "{ROOT / "templates"}"\n'
        f'[log]\nlevel = "WARNING"\n', encoding="utf-8")
    st = store.Store(url)
    st.migrate()
    now = datetime(2020, 7, 1, tzinfo=timezone.utc)
    with st.transaction() as session:
        for n in range(REGISTERED):
            session.add(store.Registration(
                event_id="africa-fr", series_id="cyber-cj-2020",
                email=f"person{n}@justice.example.org", name=f"Person {n}", country="SN",
                status="confirmed", created_at=now, updated_at=now))
    st.close()
    write_report(folder / "report.csv", rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_500_000)
    parser.add_argument("--code", type=Path, default=None,
                        help="a checkout whose mailer package runs the import")
    parser.add_argument("--prepare", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.prepare is not None:
        prepare(args.prepare, args.rows)
        return
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        env = dict(os.environ)
        # The code under test's mailer package (run from the temporary folder, so the
        # current folder shadows nothing); it also makes the store (its own migrations).
        code = args.code.resolve() if args.code is not None else ROOT
        env["PYTHONPATH"] = str(code)
        subprocess.run([sys.executable, str(Path(__file__).resolve()), "--rows",
                        str(args.rows), "--prepare", str(folder)], cwd=folder, env=env,
                       check=True)
        size = (folder / "report.csv").stat().st_size
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "mailer", "attendance", "import", "report.csv", "--event",
             "africa-fr", "--config", "config.toml"],
            cwd=folder, env=env, capture_output=True, text=True, check=False)
        took = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"code: {args.code or ROOT}")
    print(f"report: {args.rows:,} rows, {size / 1e6:.0f} MB; {REGISTERED} registered")
    print(f"exit {done.returncode}: {done.stdout.strip().splitlines()[0] if done.stdout else ''}"
          f"{done.stderr.strip()[-300:] if done.returncode else ''}")
    print(f"time: {took:.1f} s; peak memory (ru_maxrss of the import): {peak:.0f} MB")
    print(f"{'PASS' if peak < 200 else 'MISS'}: peak memory < 200 MB")


if __name__ == "__main__":
    main()
