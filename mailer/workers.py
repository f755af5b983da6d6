"""Worker processes: the pure CPU work of a big batch (reading replies, writing messages) done
beside the daemon's process instead of inside it.

Python runs one thread at a time, and in a wave of replies the daemon's process is busy all
the time: reading a reply and writing its answer take two thirds of it. Both are pure
functions of their inputs (DESIGN.md, "Shape of the code"), so they can run in another
process while the daemon's own keeps to SQL, IMAP and SMTP, like Mailman's runners. Only
batches of ``workers.min_batch`` or more go there: for a few messages the round trip costs
more than it saves, and a daemon that answers one reply at a time never starts a process.

The worker is started (spawned, never forked: the daemon has threads) at the first big batch
of replies and kept; a drain starts it only for ``workers.start_for_messages`` messages due
(never, by default: a burst of reminders alone went faster without one, README
"Benchmarks"), but uses it while it runs. Until it is ready, and whenever it is gone
(killed, crashed), the work is done in the daemon's process as before. A reload replaces it,
so it always works from the schedules and templates the daemon uses.

A worker ends the moment the daemon's process is gone, however it went (SIGKILL, an
out-of-memory kill, under cron as under systemd): it watches a pipe only the daemon writes
to (``_exit_with_parent``), and once no worker is left, multiprocessing's resource tracker
sees its own pipe close and exits too. No process outlives the daemon (DESIGN.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import threading
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime, timedelta
from multiprocessing.connection import Connection
from typing import Any, Generic, TypeVar

import structlog

from mailer.config import Settings
from mailer.domain import Intent, Outgoing
from mailer.errors import WorkerError
from mailer.schedule import Catalog
from mailer.wire import WireMessage

log = structlog.get_logger(__name__)

T = TypeVar("T")
R = TypeVar("R")
# A job's items travel in chunks: one message per job would spend more on the round trip
# (pickling, two queues, a thread hand-off) than composing it takes.
CHUNK = 8
AHEAD = 3       # chunks submitted beyond the one in use
# A worker that dies or cannot start this often is not started again: the mailer goes on
# in its own process (and says so in the log) rather than spawn one per batch.
MAX_FAILURES = 3


# --- inside a worker process ----------------------------------------------------------------

_STATE: dict[str, Any] = {}


def _start(settings: Settings, catalog: Catalog, lifeline: Connection) -> None:
    """The worker's initializer: the same settings, catalog and templates as the daemon."""
    from mailer.compose import Composer

    _exit_with_parent(lifeline)
    # Lower priority than the daemon's process: what the worker writes is needed a few
    # chunks later, while every SMTP and IMAP round trip of the daemon (and the server's
    # side of it, on the same machine) waits for a core at once (README, "Benchmarks").
    if settings.workers.nice and hasattr(os, "nice"):
        os.nice(settings.workers.nice)
    _STATE.update(settings=settings, catalog=catalog, composer=Composer(settings, catalog))


def _exit_with_parent(lifeline: Connection) -> None:
    """End this process as soon as the daemon's process is gone, whatever it is doing.

    The daemon holds the only writing end of ``lifeline`` and never writes: the read returns
    (EOF) only when the kernel closes that end, which it does when the daemon dies, even by
    SIGKILL. Otherwise a worker waits on its job queue forever, reparented to PID 1, and
    keeps the resource tracker alive with it (the tracker exits when the last process
    holding its pipe is gone). A pipe rather than ``PR_SET_PDEATHSIG``: that signal comes
    when the *thread* that spawned the worker ends, not the process, and only on Linux.
    """
    def watch() -> None:
        with contextlib.suppress(EOFError, OSError):
            lifeline.recv_bytes()
        os._exit(0)     # at once: no clean-up of a pool whose owner is gone

    threading.Thread(target=watch, name="lifeline", daemon=True).start()


def _compose_chunk(outs: list[Outgoing], now: datetime) -> list[WireMessage | WorkerError]:
    """Write each message; a message that cannot be written is an error, not a crash."""
    from mailer.compose import compose_message

    settings, catalog, composer = _STATE["settings"], _STATE["catalog"], _STATE["composer"]
    done: list[WireMessage | WorkerError] = []
    for out in outs:
        try:
            done.append(compose_message(out, composer.compose, catalog, settings, now))
        except Exception as exc:  # noqa: BLE001 - reported per message, like in the daemon
            # As text: an exception with its own constructor may not survive pickling.
            done.append(WorkerError(f"{type(exc).__name__}: {exc}"))
    return done


def _read_chunk(items: list[tuple[bytes, int | None, str]], now: datetime,
                inbox_address: str, max_bytes: int) -> list[Intent | str]:
    """What each reply asks for, or why it cannot be read (``understand.read``)."""
    from mailer.understand import read

    catalog, settings = _STATE["catalog"], _STATE["settings"]
    recent = timedelta(days=settings.replies.recent_event_days)
    return [read(raw, catalog, now=now, inbox_address=inbox_address, max_bytes=max_bytes,
                 size=size, message_id=message_id, recent=recent)
            for raw, size, message_id in items]


# --- in the daemon's process ----------------------------------------------------------------

class Workers:
    """The worker process of one mailer, started at the first big batch."""

    def __init__(self, settings: Settings, catalog: Catalog) -> None:
        self.settings = settings
        self.catalog = catalog
        self.processes = settings.workers.processes
        self.min_batch = settings.workers.min_batch
        self.start_for_messages = settings.workers.start_for_messages
        self.submitted = 0              # jobs handed to a worker (tests read these two)
        self.jobs = 0                   # jobs whose results came back
        self._pool: ProcessPoolExecutor | None = None
        self._ready: Future[int] | None = None
        self._lifeline: Connection | None = None   # the daemon's end: see _exit_with_parent
        # A reload replaces the worker from another thread while the event loop may start
        # one: starting and stopping never interleave.
        self._lock = threading.Lock()
        self._failures = 0

    @property
    def ready(self) -> bool:
        """True once a worker answered, until it is gone."""
        return (self._ready is not None and self._ready.done()
                and not self._ready.cancelled() and self._ready.exception() is None)

    @property
    def pid(self) -> int | None:
        """The worker's process id, once it answered (with several, the first to answer)."""
        return self._ready.result() if self._ready is not None and self.ready else None

    def start(self) -> None:
        """Spawn the worker(s) now, if not running; the call returns at once."""
        with self._lock:
            if self._pool is not None or self.processes == 0:
                return
            context = multiprocessing.get_context("spawn")
            # Spawned workers inherit no descriptor but those passed to them: the write end
            # stays the daemon's alone.
            watched, self._lifeline = context.Pipe(duplex=False)
            self._pool = ProcessPoolExecutor(
                self.processes, mp_context=context,
                initializer=_start, initargs=(self.settings, self.catalog, watched))
            self._ready = self._pool.submit(os.getpid)
        log.info("worker process starting", processes=self.processes)

    async def wait_ready(self) -> bool:
        """Start the worker and wait until it answers (or fails to); True when it did."""
        self.start()
        if self._ready is None:
            return False
        try:
            await asyncio.wrap_future(self._ready)
        except (BrokenProcessPool, OSError):
            return False
        return self.ready

    def restart(self, catalog: Catalog) -> None:
        """Work from a new catalog (and the templates as they are now): replace the worker."""
        self.catalog = catalog      # first: a worker started from now on gets the new one
        self.close()

    def close(self) -> None:
        """Stop the worker; jobs already queued are dropped (their callers fall back)."""
        with self._lock:
            pool, self._pool, self._ready = self._pool, None, None
            lifeline, self._lifeline = self._lifeline, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        if lifeline is not None:
            lifeline.close()        # after the shutdown: the workers ended on their own

    def compose(self, outs: Sequence[Outgoing], now: datetime,
                inline: Callable[[Outgoing], WireMessage], backlog: int | None = None
                ) -> list[Callable[[], Awaitable[WireMessage]]] | None:
        """Each message of a batch, written by the worker, or None: write them yourself.

        The batch is handed over in chunks, a few ahead of the one being sent, and written
        in order. A getter raises WorkerError when its message cannot be written.
        ``backlog`` is how many messages wait in all (this batch and those after it): below
        ``workers.start_for_messages`` (or when it is 0) no worker is started for them.
        """
        wanted = self.start_for_messages
        start = bool(wanted) and (backlog if backlog is not None else len(outs)) >= wanted
        return self._map(_compose_chunk, outs, (now,), inline, start=start)

    def read(self, items: Sequence[tuple[bytes, int | None, str]], now: datetime,
             inbox_address: str, max_bytes: int,
             inline: Callable[[tuple[bytes, int | None, str]], Intent | str]
             ) -> list[Callable[[], Awaitable[Intent | str]]] | None:
        """What each fetched reply ``(raw, size, message_id)`` asks for (``understand.read``),
        read by the worker, or None: read them yourself."""
        return self._map(_read_chunk, items, (now, inbox_address, max_bytes), inline)

    def _map(self, job: Callable[..., list[Any]], items: Sequence[T], args: tuple[Any, ...],
             inline: Callable[[T], R], start: bool = True
             ) -> list[Callable[[], Awaitable[R]]] | None:
        if self.processes == 0 or len(items) < self.min_batch:
            return None
        pool, ready = self._pool, self._ready
        if pool is not None and ready is not None and ready.done() and not self.ready:
            # It never answered: it could not start.
            self._lost(RuntimeError("cancelled") if ready.cancelled()
                       else ready.exception() or RuntimeError("no answer"), pool)
            return None
        if not self.ready or pool is None:
            if start and self._failures < MAX_FAILURES:
                self.start()  # for the next batch; this one is not kept waiting for a spawn
            return None
        return _Run(self, pool, job, args, items, inline).getters()

    def _lost(self, exc: BaseException, pool: ProcessPoolExecutor) -> None:
        """The worker of ``pool`` died or could not start: forget it (the next big batch
        starts another, up to ``MAX_FAILURES`` times in the mailer's life)."""
        with self._lock:
            if self._pool is not pool:
                return              # an old worker, already replaced (a reload)
        self._failures += 1
        log.error("worker process lost; working in the daemon's process meanwhile",
                  error=f"{type(exc).__name__}: {exc}", failures=self._failures,
                  gives_up=self._failures >= MAX_FAILURES)
        self.close()


class _Run(Generic[T, R]):
    """One batch handed to the worker, in chunks submitted a few ahead of their use.

    Only ``AHEAD`` chunks wait made and unused: a batch of 200 messages written all at once
    would all sit in memory until sent.
    """

    def __init__(self, workers: Workers, pool: ProcessPoolExecutor,
                 job: Callable[..., list[Any]], args: tuple[Any, ...], items: Sequence[T],
                 inline: Callable[[T], R]) -> None:
        self.workers = workers
        self.pool: ProcessPoolExecutor | None = pool
        self.job, self.args = job, args
        self.chunks = [_Chunk[T, R](workers, items[first:first + CHUNK], inline)
                       for first in range(0, len(items), CHUNK)]
        self.submitted = 0
        self.fill(AHEAD)

    def fill(self, upto: int) -> None:
        """Submit the chunks before ``upto`` not submitted yet."""
        while self.submitted < min(upto, len(self.chunks)):
            chunk = self.chunks[self.submitted]
            self.submitted += 1
            if self.pool is not None and not chunk.submit(self.pool, self.job, self.args):
                self.pool = None        # the worker is gone: the rest are made inline

    def getters(self) -> list[Callable[[], Awaitable[R]]]:
        return [self._getter(number, index) for number, chunk in enumerate(self.chunks)
                for index in range(len(chunk.items))]

    def _getter(self, number: int, index: int) -> Callable[[], Awaitable[R]]:
        async def get() -> R:
            self.fill(number + 1 + AHEAD)       # this chunk is in use: keep the worker busy
            return await self.chunks[number].result(index)
        return get


class _Chunk(Generic[T, R]):
    """A few items sent to the worker in one job, and their results."""

    def __init__(self, workers: Workers, items: Sequence[T], inline: Callable[[T], R]) -> None:
        self.workers = workers
        self.items = items
        self.inline = inline
        self.future: asyncio.Future[list[Any]] | None = None
        self.pool: ProcessPoolExecutor | None = None
        self.counted = False

    def submit(self, pool: ProcessPoolExecutor, job: Callable[..., list[Any]],
               args: tuple[Any, ...]) -> bool:
        """Hand the chunk to the worker; False when it is gone (the chunk is made inline)."""
        self.pool = pool
        try:
            self.future = asyncio.wrap_future(pool.submit(job, list(self.items), *args))
            self.workers.submitted += 1
        except (BrokenProcessPool, RuntimeError) as exc:   # broken, or shut down meanwhile
            self.workers._lost(exc, pool)
            return False
        return True

    async def result(self, index: int) -> R:
        """The result for item ``index``, made here if the worker could not make it."""
        results = await self._results()
        if results is None:
            return self.inline(self.items[index])
        result = results[index]
        if isinstance(result, WorkerError):
            raise result
        return result  # type: ignore[no-any-return]

    async def _results(self) -> list[Any] | None:
        if self.future is None:
            return None
        try:
            # Shielded: several getters wait on one job, and a cancelled getter (a drain that
            # stops) must not cancel the job under the others.
            results = await asyncio.shield(self.future)
        except (BrokenProcessPool, asyncio.CancelledError) as exc:
            if isinstance(exc, asyncio.CancelledError) and not self.future.cancelled():
                raise               # our caller is cancelled, not the job
            if self.pool is not None:
                self.workers._lost(exc, self.pool)
            self.future = None
            return None
        if not self.counted:
            self.counted = True
            self.workers.jobs += 1
        return results
