"""This mailer process among others over one store: its identity, its leases and claims, the rate.

Any number of ``mailer run`` and ``mailer once`` may work on one store, on one machine or
several. Each is an *instance* (host, pid, start). One at a time is the *leader*: it reads
the inbox, decides the replies (in arrival order: seats go first come, first served) and
plans; every instance sends, claiming the outbox rows it sends (``Claim``), and all of
them together keep to the mail server's rate (``SharedRate``). The SQL is in
``mailer.claims``; this module keeps time, renews, and says what it holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import structlog

from mailer import claims
from mailer.config import Settings
from mailer.store import Store

log = structlog.get_logger(__name__)

# Instances not seen for this long are forgotten by the others (they died long ago).
FORGET_AFTER = timedelta(days=1)


@dataclass(frozen=True)
class Identity:
    """Who this instance is: ``id`` is what its claims and leases carry."""

    id: str
    host: str
    pid: int
    command: str

    @classmethod
    def here(cls, command: str, name: str | None = None) -> Identity:
        host = (name or socket.gethostname() or "localhost")[:60]
        pid = os.getpid()
        # The random part keeps ids apart when a pid is reused on the same host.
        return cls(f"{host}:{pid}:{uuid.uuid4().hex[:8]}", host, pid, command)


class Cluster:
    """This instance's view of the others: the store's clock, the leader's lease, claims.

    ``register`` records the instance for ``mailer status`` (``check_in``); a bare drain
    (tests, tools) claims under an identity of its own without registering. The blocking
    methods run SQL: call them in a worker thread from the event loop.
    """

    def __init__(self, st: Store, settings: Settings, command: str = "run") -> None:
        self.store = st
        self.lease = settings.cluster.lease_seconds
        self.renew_every = settings.cluster.renew_seconds
        self.identity = Identity.here(command, settings.cluster.name)
        # PostgreSQL's clock when this instance last read it, and the monotonic moment
        # then: its time is that one run on by the monotonic clock (see ``clock``).
        self._measured: tuple[datetime, float] | None = None
        # A drain failed and could not give its claims back (the store refused writes):
        # the next one does, before it claims (this process drains one batch at a time).
        self.owes_release = False
        self._leading_until: float | None = None    # monotonic: when our lease runs out
        # Once this instance has left, nothing checks in or takes the lease again: a beat
        # still running in its thread when the pass or daemon stopped (a cancelled
        # ``to_thread`` does not stop the thread) took the lease back after ``leave``, so
        # the process that had gone held it for a whole lease, and its instance row came
        # back as a ghost.
        self._leaving = threading.Lock()
        self._left = False

    @property
    def holder(self) -> str:
        return self.identity.id

    @property
    def margin(self) -> float:
        """Seconds kept in hand before a lease's end: act only while surely still holding."""
        return self.lease / 10

    def clock(self) -> datetime:
        """The database server's time, as this instance estimates it (leases are on it).

        On PostgreSQL, the server's clock read at the last check-in run on by this
        machine's monotonic clock, never its wall clock: a step of the wall clock (chrony
        setting a clock that was far off, just after boot) moved the estimate with it
        until the next check-in, and an instance whose clock jumped ahead took the live
        claims of the others (they sent the same rows). A SQLite store is a local file:
        every process on it reads the same wall clock.
        """
        if self._measured is None:
            return datetime.now(timezone.utc)
        server, at = self._measured
        return server + timedelta(seconds=time.monotonic() - at)

    # -- this instance ------------------------------------------------------------------------
    def check_in(self) -> None:
        """Say this instance is alive; measure the store's clock; forget long-dead instances."""
        with self._leaving:
            if self._left:
                return
            with self.store.transaction() as session:
                before = time.monotonic()
                server = claims.server_time(session)
                if server is not None:
                    self._measured = (server, (before + time.monotonic()) / 2)
                clock = self.clock()
                ident = self.identity
                claims.check_in(session, instance_id=ident.id, host=ident.host,
                                pid=ident.pid, command=ident.command, clock=clock)
                claims.forget_gone(session, clock - FORGET_AFTER)

    def leave(self) -> None:
        """Stop on purpose: give the lease and every claim back, and forget this instance."""
        with self._leaving:
            self._left = True
            self._leading_until = None
            with self.store.transaction() as session:
                claims.give_up(session, claims.LEADER, self.holder)
                claims.release_all_claims(session, self.holder)
                claims.check_out(session, self.holder)

    def release_claims(self) -> None:
        """Give back every claim this instance still holds (see ``owes_release``)."""
        with self.store.transaction() as session:
            claims.release_all_claims(session, self.holder)
        self.owes_release = False

    # -- the leader's lease -------------------------------------------------------------------
    def try_lead(self) -> bool:
        """Take or renew the leader's lease; True while this instance holds it."""
        asked = time.monotonic()
        with self._leaving:
            held = False
            if not self._left:
                with self.store.transaction() as session:
                    clock = self.clock()
                    held = claims.take_lease(session, claims.LEADER, self.holder, clock=clock,
                                             until=clock + timedelta(seconds=self.lease))
        was = self.leading()
        self._leading_until = asked + self.lease - self.margin if held else None
        if held != was:
            log.info("leader lease taken" if held else "leader lease lost",
                     instance=self.holder)
        return held

    def leading(self) -> bool:
        """True while this instance's lease surely still holds (by its own clock)."""
        return self._leading_until is not None and time.monotonic() < self._leading_until

    def step_down(self) -> None:
        """Let another instance lead at once (this one keeps sending)."""
        with self.store.transaction() as session:
            claims.give_up(session, claims.LEADER, self.holder)
        self._leading_until = None

    def leader(self) -> str | None:
        """The id of the instance that holds the leader's lease now, if any."""
        with self.store.transaction() as session:
            found = claims.lease_of(session, claims.LEADER)
        if found is None or found.holder is None or found.until < self.clock():
            return None
        return str(found.holder)

    # -- sending ------------------------------------------------------------------------------
    def claim_limit(self, size: int, per_minute: float, connections: int) -> int:
        """How many rows one claim takes: at most half a lease's worth of sending at the
        configured rate, so claims seldom need renewing and a dead instance holds few."""
        return max(connections, min(size, int(per_minute * self.lease / 120)))

    def claim(self, ids: Sequence[int], asked: float, until: datetime | None = None) -> Claim:
        """Follow (and renew, from now on) the claim just made on ``ids``; ``asked`` is the
        monotonic time before it was made, ``until`` the end it was given in the store."""
        claim = Claim(self, ids, asked, until)
        claim.start()
        return claim

    def rate(self, per_minute: float, burst: int) -> SharedRate:
        return SharedRate(self, per_minute, burst)


class Claim:
    """Outbox rows this instance claimed and is sending: renewed while it works, and sent
    only while surely still held (``held``), so a row whose claim expired (this process
    stalled, or lost the store) is left to the instance that took it."""

    def __init__(self, cluster: Cluster, ids: Sequence[int], asked: float,
                 until: datetime | None = None) -> None:
        self._cluster = cluster
        self._ids = list(ids)
        self._until = asked + cluster.lease - cluster.margin
        # The claim's end in the store, on the store's clock: others take the rows once
        # their clock passes it. A forward step of the wall clock SQLite's processes share
        # makes them do so at once, while this process's monotonic clock says it still
        # holds them: both checks must pass.
        self._ends = None if until is None else until - timedelta(seconds=cluster.margin)
        self._lost: set[int] = set()
        self._done: set[int] = set()
        self._renewing: asyncio.Task[None] | None = None

    @property
    def ids(self) -> list[int]:
        return list(self._ids)

    def held(self, row_id: int) -> bool:
        """True while the claim on ``row_id`` surely still holds (by this process's clock)."""
        return (row_id not in self._lost and time.monotonic() < self._until
                and (self._ends is None or self._cluster.clock() < self._ends))

    def held_key(self, key: str) -> bool:
        """``held`` for a row id written as the sender's key."""
        return self.held(int(key))

    def done(self, row_id: int) -> None:
        """The row's outcome is being recorded: no need to renew it any more."""
        self._done.add(row_id)

    def start(self) -> None:
        """Renew the claim every ``renew_seconds`` while the rows are being sent."""
        self._renewing = asyncio.create_task(self._renew_loop())

    async def end(self, unsent: Sequence[int]) -> None:
        """Stop renewing; give back the rows left pending (retried later, or never tried)."""
        if self._renewing is not None:
            self._renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewing
        if unsent:
            await asyncio.to_thread(self.release, unsent)

    def release(self, ids: Sequence[int]) -> None:
        with self._cluster.store.transaction() as session:
            claims.release_claims(session, ids, self._cluster.holder)

    async def _renew_loop(self) -> None:
        while True:
            await asyncio.sleep(self._cluster.renew_every)
            wanted = [i for i in self._ids if i not in self._done and i not in self._lost]
            if not wanted:
                return
            asked = time.monotonic()
            try:
                kept, until = await asyncio.to_thread(self._renew, wanted)
            except Exception as exc:  # noqa: BLE001 - the claim simply runs out
                log.warning("claims not renewed", error=str(exc), rows=len(wanted))
                continue
            self._lost |= set(wanted) - kept - self._done
            self._until = asked + self._cluster.lease - self._cluster.margin
            if self._ends is not None:
                self._ends = until - timedelta(seconds=self._cluster.margin)

    def _renew(self, ids: list[int]) -> tuple[set[int], datetime]:
        cluster = self._cluster
        with cluster.store.transaction() as session:
            until = cluster.clock() + timedelta(seconds=cluster.lease)
            return claims.renew_claims(session, ids, cluster.holder, until), until


class SharedRate:
    """The mail server's rate, shared by every instance: sending slots taken from the store.

    Like ``smtp.RateLimiter`` (same ``acquire``), but the slots come from one row in the
    store (``claims.reserve_sends``), a few at a time (half a second's worth, at most 256),
    so all instances together keep to ``per_minute`` for one UPDATE per few messages.
    Slots left unused when a pass ends are lost, which only ever slows the total; so are
    slots this process comes to too late (``LATE_SECONDS`` after their moment, beyond the
    burst): a process that stalled (a busy machine, a store that kept it waiting) would
    otherwise send its late slots back to back, on top of the slots the others send on
    time. Any window then holds at most ``LATE_SECONDS`` worth of messages beyond the rate
    and the burst, whatever the number of processes.
    """

    MAX_BLOCK = 256
    LATE_SECONDS = 0.25

    def __init__(self, cluster: Cluster, per_minute: float, burst: int = 1) -> None:
        self._cluster = cluster
        self._interval = 60.0 / per_minute
        self._slack = (max(burst, 1) - 1) * self._interval
        self._block = max(1, min(self.MAX_BLOCK, math.ceil(0.5 / self._interval)))
        self._late = timedelta(seconds=self._slack + max(self.LATE_SECONDS, self._interval))
        self._slots: deque[datetime] = deque()
        self._lock = asyncio.Lock()
        self._ahead: asyncio.Future[None] | None = None

    async def acquire(self) -> None:
        """Wait until one more message may be sent."""
        stale = self._cluster.clock() - self._late
        while self._slots and self._slots[0] < stale:
            self._slots.popleft()
        if not self._slots:
            await self._refill()
        elif len(self._slots) <= self._block // 2 and self._ahead is None:
            # Half the block used: take the next one meanwhile, so no connection waits for
            # the store (only at high rates: a block of one is taken when needed).
            self._ahead = asyncio.ensure_future(self._refill())
            self._ahead.add_done_callback(self._refilled)
        delay = (self._slots.popleft() - self._cluster.clock()).total_seconds()
        if delay > 0:
            await asyncio.sleep(delay)

    async def _refill(self) -> None:
        async with self._lock:
            if len(self._slots) > self._block // 2:
                return                      # the block taken ahead arrived meanwhile
            first = await asyncio.to_thread(self._reserve)
            step = timedelta(seconds=self._interval)
            self._slots.extend(first + n * step for n in range(self._block))

    def _refilled(self, task: asyncio.Future[None]) -> None:
        self._ahead = None
        if not task.cancelled() and task.exception() is not None:
            # The connections take a block themselves when this one is used up.
            log.warning("sending slots not taken ahead", error=str(task.exception()))

    def _reserve(self) -> datetime:
        with self._cluster.store.transaction() as session:
            return claims.reserve_sends(session, self._block, self._interval, self._slack,
                                        self._cluster.clock())
