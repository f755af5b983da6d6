"""Benchmark plumbing: a private Dovecot, a counting SMTP sink, measured child runs, verdicts.

Every measured run (the mailer's pass, the bare baseline) happens in a fresh ``spawn``
child process, so ``ru_maxrss`` (the kernel's high-water mark of resident memory) belongs to
that run alone, and the set-up (generated mail, inserted rows) is never counted. The SMTP
sink is another process: as on a real deployment, the server does not share the measured
process's interpreter lock. Times come from ``time.monotonic``, which on Linux is one
system-wide clock, so the child's start and the sink's last acceptance can be compared.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import resource
import sys
import tempfile
import threading
import time
import traceback
import tracemalloc
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any

import aiosmtplib
import trustme

from mailer.config import Imap, Organiser, Paths, Settings, Smtp, Store
from tests.mailgen import INBOX
from tests.servers import imap as imap_servers
from tests.servers.imap import Dovecot, ImapServer

ROOT = Path(__file__).resolve().parent.parent
MB = 1024 * 1024
SPAWN = multiprocessing.get_context("spawn")
# High enough that the rate limiter never waits: the benchmarks measure the mailer, not it.
UNTHROTTLED_PER_MINUTE = 100_000_000


# --- servers ----------------------------------------------------------------------------------


@contextlib.contextmanager
def dovecot() -> Iterator[Dovecot]:
    """A private Dovecot (own config, free ports, TLS), started exactly as the tests start it.

    The tests expose the start-up only as the session fixture ``dovecot_process``; its
    undecorated generator (``__wrapped__``) is called here rather than copied, so the
    benchmarks and the tests always run the same server set-up.
    """
    ca = trustme.CA()
    with tempfile.TemporaryDirectory(prefix="mailer-bench-ca-") as folder:
        ca_file = Path(folder) / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        start = contextlib.contextmanager(imap_servers.dovecot_process.__wrapped__)
        with start(ca, ca_file) as server:
            yield server


def append(server: ImapServer, messages: Sequence[bytes], chunk: int = 500) -> float:
    """Put ``messages`` in the mailbox's INBOX in order (MULTIAPPEND); return the seconds taken.

    One connection, so UIDs follow the list order (the wave's outcome depends on it).
    """
    started = time.monotonic()
    client = server.client()
    try:
        for first in range(0, len(messages), chunk):
            client.multiappend("INBOX", list(messages[first:first + chunk]))
    finally:
        client.logout()
    return time.monotonic() - started


def _sink_main(ready: Connection, count: Synchronized[int], first: Synchronized[float],
               last: Synchronized[float]) -> None:
    """The sink process: a plain aiosmtpd server that counts accepted messages."""
    from aiosmtpd.smtp import SMTP

    class Counting:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            now = time.monotonic()
            if count.value == 0:
                first.value = now
            count.value += 1            # this process is the only writer
            last.value = now
            return "250 2.0.0 OK"

    async def serve() -> None:
        handler = Counting()
        loop = asyncio.get_running_loop()
        # A fixed hostname: aiosmtpd would otherwise call getfqdn() (DNS) per connection.
        server = await loop.create_server(
            lambda: SMTP(handler, hostname="sink.bench", enable_SMTPUTF8=True),
            "127.0.0.1", 0)
        ready.send(server.sockets[0].getsockname()[1])
        ready.close()
        await server.serve_forever()

    asyncio.run(serve())


class CountingSink:
    """An SMTP server in its own process that accepts everything (no TLS, no login) and counts.

    ``count`` is the number of messages accepted since the last ``reset``; ``first_accept``
    and ``last_accept`` the ``time.monotonic()`` of the first and the latest acceptance.
    """

    host = "127.0.0.1"

    def __init__(self) -> None:
        self._count = SPAWN.Value("q", 0, lock=False)
        self._first = SPAWN.Value("d", 0.0, lock=False)
        self._last = SPAWN.Value("d", 0.0, lock=False)
        self._process: Any = None
        self._cpu_at_reset = 0.0
        self.port = 0

    def __enter__(self) -> CountingSink:
        ours, theirs = SPAWN.Pipe(duplex=False)
        self._process = SPAWN.Process(target=_sink_main, args=(theirs, self._count, self._first,
                                                                self._last),
                                      daemon=True, name="bench-smtp-sink")
        self._process.start()
        theirs.close()
        if not ours.poll(30):
            self.__exit__()
            raise RuntimeError("the SMTP sink did not start within 30 s")
        self.port = int(ours.recv())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.join(10)
            self._process = None

    @property
    def count(self) -> int:
        return int(self._count.value)

    @property
    def first_accept(self) -> float:
        return float(self._first.value)

    @property
    def last_accept(self) -> float:
        return float(self._last.value)

    @property
    def cpu_seconds(self) -> float:
        """CPU time the sink's process used since the last ``reset`` (it shares the machine)."""
        return self._cpu() - self._cpu_at_reset

    def _cpu(self) -> float:
        try:
            with open(f"/proc/{self._process.pid}/stat", encoding="ascii") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except (OSError, AttributeError):
            return 0.0
        # utime and stime, the 14th and 15th fields (the 12th and 13th after the name).
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def reset(self) -> None:
        self._count.value = 0
        self._first.value = 0.0
        self._last.value = 0.0
        self._cpu_at_reset = self._cpu()

    def settle(self, expected: int, timeout: float = 30.0) -> None:
        """Wait until ``expected`` messages arrived (they all have when the sender returned)."""
        deadline = time.monotonic() + timeout
        while self.count < expected and time.monotonic() < deadline:
            time.sleep(0.01)


# --- settings ---------------------------------------------------------------------------------


def smtp_settings(sink: CountingSink, connections: int) -> Smtp:
    """Mailer SMTP settings for the sink: plain SMTP, ``connections`` connections, no throttle."""
    return Smtp(host=sink.host, port=sink.port, security="none", connections=connections,
                messages_per_minute=UNTHROTTLED_PER_MINUTE, timeout_seconds=60.0)


def settings_for(workdir: Path, smtp: Smtp, imap: Imap | None = None) -> Settings:
    """The settings of a benchmark run: the shipped schedules, templates and packs, a new store."""
    return Settings(
        organiser=Organiser(name="Cybercrime Programme Office", address=INBOX,
                            staff_address="staff@secretariat.example"),
        imap=imap or Imap(), smtp=smtp, store=Store(url=f"sqlite:///{workdir}/mailer.db"),
        paths=Paths(schedules=ROOT / "schedules", templates=ROOT / "templates", packs=ROOT))


# --- measured child runs ----------------------------------------------------------------------


@dataclass(frozen=True)
class Measured:
    """What a child run reports: when it started, its result, and its memory."""

    started: float                 # time.monotonic() just before the measured work
    returned: float                # time.monotonic() when the measured work returned
    result: dict[str, Any]
    rss_before: int                # peak RSS, ru_maxrss (bytes), before the measured work
    rss_after: int                 # the same after it
    traced_peak: int | None        # tracemalloc's peak (bytes), when traced
    cpu_seconds: float = 0.0       # CPU time of the measured process (all its threads)
    worker_cpu_seconds: float = 0.0  # CPU time of its worker processes (mailer.workers)
    worker_peak: int = 0           # the largest worker's peak RSS (VmHWM, sampled)

    @property
    def rss_delta(self) -> int:
        return self.rss_after - self.rss_before


def maxrss() -> int:
    """This process image's peak resident memory so far (ru_maxrss), in bytes.

    Why not ``getrusage`` alone: Linux carries a process's high-water mark over fork and
    exec, so a child spawned from a big parent starts with the parent's peak, and a delta
    taken in it reads zero. /proc/self/status's VmHWM is the same high-water mark for this
    process image only; getrusage is the fallback elsewhere.
    """
    return _hwm("self") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def preload_daemon_modules() -> None:
    """Import what a running daemon has loaded before its passes: the composer, and Alembic,
    which opening the store uses (0.1 s of imports, paid once by a daemon, not per pass)."""
    import alembic.command  # noqa: F401
    import alembic.config  # noqa: F401

    import mailer.compose  # noqa: F401


def quiet_logs(path: Path) -> None:
    """Log as ``mailer once`` does (JSON lines, INFO) but into ``path``, off the terminal."""
    from mailer.logs import configure

    sys.stderr = path.open("a", encoding="utf-8")  # noqa: SIM115 - lives as long as the child
    configure("json", "INFO")


def measure(work: Callable[[], dict[str, Any]], *, trace: bool,
            profile: Path | None = None) -> Measured:
    """Run ``work`` once, timing it and recording peak memory (tracemalloc only if ``trace``).

    With ``profile`` (a folder), the run is sampled by pyinstrument and its call tree and
    flat self-time table are written there.
    """
    before = maxrss()
    if trace:
        tracemalloc.start()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    sampler = _WorkerPeak()
    sampler.start()
    started, cpu = time.monotonic(), time.process_time()
    try:
        result = _profiled(work, profile) if profile is not None else work()
    finally:
        sampler.stop()
    returned, cpu = time.monotonic(), time.process_time() - cpu
    # The mailer's worker processes are its children, reaped when the pass closes them.
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    worker_cpu = (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)
    peak = None
    if trace:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return Measured(started, returned, result, before, maxrss(), peak, cpu, worker_cpu,
                    sampler.peak)


class _WorkerPeak(threading.Thread):
    """Samples the peak RSS (VmHWM) of this process's worker processes while a run lasts.

    Why not ``RUSAGE_CHILDREN``'s ru_maxrss: a spawned child inherits the parent's high-water
    mark across fork and exec, so it would report the parent's size.
    """

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(0.2):
            for child in multiprocessing.active_children():
                self.peak = max(self.peak, _hwm(child.pid))

    def stop(self) -> None:
        self._done.set()
        self.join()


def _hwm(pid: int | str | None) -> int:
    """The VmHWM of a process (``"self"`` for this one), in bytes; 0 if it cannot be read."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _profiled(work: Callable[[], dict[str, Any]], folder: Path) -> dict[str, Any]:
    """Run ``work`` under pyinstrument (``pip install pyinstrument``; not a project dependency).

    pyinstrument samples one thread, and the daemon hands inbox reads and message handling
    to ``asyncio.to_thread``; so while profiling they run inline on the event loop's thread
    (the pass awaits them one at a time anyway, so the work done is the same).
    """
    from pyinstrument import Profiler
    from pyinstrument.renderers import ConsoleRenderer

    async def inline(function: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        return function(*args, **kwargs)

    saved, asyncio.to_thread = asyncio.to_thread, inline  # type: ignore[assignment]
    # 5 ms: a pass of minutes at pyinstrument's default 1 ms keeps gigabytes of samples.
    profiler = Profiler(interval=0.005, async_mode="disabled")
    try:
        profiler.start()
        result = work()
        profiler.stop()
    finally:
        asyncio.to_thread = saved
    folder.mkdir(parents=True, exist_ok=True)
    session = profiler.last_session
    assert session is not None
    (folder / "tree.txt").write_text(ConsoleRenderer(unicode=True, time="percent_of_total")
                                     .render(session))
    (folder / "flat.txt").write_text(ConsoleRenderer(flat=True, time="percent_of_total")
                                     .render(session))
    profiler.write_html(str(folder / "profile.html"))
    session.save(str(folder / "session.pyisession"))  # re-render: pyinstrument --load FILE
    return result


def _child_main(out: Connection, target: Callable[..., Measured], args: tuple[Any, ...]) -> None:
    try:
        out.send(("ok", target(*args)))
    except BaseException:  # noqa: BLE001 - carried to the parent, which raises it
        out.send(("error", traceback.format_exc()))
    finally:
        out.close()


def in_child(target: Callable[..., Measured], *args: Any) -> Measured:
    """Run ``target(*args)`` in a fresh interpreter and return its Measured."""
    ours, theirs = SPAWN.Pipe(duplex=False)
    process = SPAWN.Process(target=_child_main, args=(theirs, target, args), name="bench-run")
    process.start()
    theirs.close()
    try:
        status, value = ours.recv()
    except EOFError:
        process.join()
        raise RuntimeError(f"the measured run died (exit code {process.exitcode})") from None
    process.join()
    if status != "ok":
        raise RuntimeError(f"the measured run failed:\n{value}")
    return value


# --- the bare baseline's sender ---------------------------------------------------------------


async def send_prebuilt(host: str, port: int, sender: str, recipients: Sequence[str],
                        raw: bytes, connections: int) -> int:
    """Send the same message bytes to each recipient over ``connections`` plain connections."""
    pending = deque(recipients)
    sent = 0

    async def worker() -> None:
        nonlocal sent
        client = aiosmtplib.SMTP(hostname=host, port=port, use_tls=False, start_tls=False,
                                 timeout=60)
        await client.connect()
        while pending:
            await client.sendmail(sender, [pending.popleft()], raw)
            sent += 1
        await client.quit()

    await asyncio.gather(*(worker() for _ in range(min(connections, len(recipients)))))
    return sent


# --- figures ----------------------------------------------------------------------------------


# tracemalloc slows a pass about 2.5 times: the traced rerun is skipped ("auto") when the
# timed pass took longer than this, to keep a benchmark within about ten minutes.
TRACE_AUTO_LIMIT_SECONDS = 120.0


def should_trace(mode: str, timed_seconds: float) -> bool:
    """Whether to make the tracemalloc rerun: ``always``, ``never``, or ``auto``."""
    if mode == "auto":
        return timed_seconds <= TRACE_AUTO_LIMIT_SECONDS
    return mode == "always"


def mb(value: float | None) -> str:
    return "n/a" if value is None else f"{value / MB:.1f} MB"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def row(label: str, value: str) -> None:
    print(f"  {label:<52} {value}")
