"""The daemon: one place that wires schedules, inbox, store, planner, composer and SMTP together.

``Mailer`` holds the long-lived parts (store, last good catalog, composer, contacts);
``run_once`` is one full pass (``mailer once``); ``Service`` is ``mailer run``: APScheduler
decides *when* to read, plan and send, the store decides *what*.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import signal
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.orm import Session

from mailer import claims, store
from mailer.cluster import Cluster
from mailer.config import Settings
from mailer.contacts import catalog_contacts
from mailer.domain import Intent, Kind, Outgoing, outbox_key
from mailer.errors import (
    InboxError,
    LeaseLost,
    Problem,
    ScheduleError,
    TransportError,
)
from mailer.handling import (
    GROUP,
    Arrival,
    Handled,
    after_crash,
    groups,
    handle,
    handle_group,
    handle_one,
    message_key,
    understood_of,
)
from mailer.inbox import AsyncInbox, Cursor, Fetched
from mailer.outbox import DrainReport, drain
from mailer.planner import Contact, Plan
from mailer.schedule import Catalog, read_catalog
from mailer.smtp import Sender
from mailer.staff.digest import Digests
from mailer.staff.replies_check import policy_for
from mailer.sync import EventChange, plan_into_outbox, sync_events
from mailer.workers import Workers

log = structlog.get_logger(__name__)


# After a failed pass (a store refusing writes, a server down) the daemon waits this long,
# then twice as long after each failure in a row, up to the maximum.
FIRST_RETRY_SECONDS = 1.0
MAX_RETRY_SECONDS = 300.0


def one_line(exc: BaseException) -> str:
    """An error as one log line: a database's in its own words, without SQL or data."""
    error = store.store_error(exc)
    return str(error if error is not None else exc)


def utcnow() -> datetime:
    """The real clock; everything below it takes ``now`` as a parameter."""
    return datetime.now(timezone.utc)


@dataclass
class PassReport:
    """What one pass did."""

    read: int = 0
    handled: int = 0
    duplicates: int = 0
    quarantined: int = 0
    failed: int = 0
    planned: int = 0
    missed: int = 0
    drain: DrainReport = field(default_factory=DrainReport)
    changes: list[EventChange] = field(default_factory=list)
    outcomes: list[Handled] = field(default_factory=list)
    inbox_error: str = ""          # why the inbox could not be read (the rest still ran)
    # Whether this pass led (read the inbox and planned); if not, who did.
    leading: bool = True
    leader: str | None = None


class Mailer:
    """The long-lived parts of a running mailer, and the steps of a pass."""

    def __init__(self, settings: Settings, catalog: Catalog, command: str = "run") -> None:
        from mailer.compose import Composer

        self.settings = settings
        self.catalog = catalog
        self.store = store.Store(settings.store.url)
        self.store.migrate()
        self.cluster = Cluster(self.store, settings, command)
        self.composer = Composer(settings, catalog)
        self.workers = Workers(settings, catalog)
        self.contacts: list[Contact] = []
        self.contacts, problems = catalog_contacts(catalog, settings.paths.packs,
                                                   settings.paths.contacts)
        for problem in problems:
            log.warning("contacts problem", problem=str(problem))
        self.policy = policy_for(settings)
        self.digests = Digests(settings, self.policy.domain)

    @classmethod
    def open(cls, settings: Settings, command: str = "run") -> Mailer:
        """Load the schedules (raising ScheduleError if they are invalid) and open the store."""
        catalog, problems = read_catalog(settings.paths.schedules)
        if problems:
            raise ScheduleError(problems)
        return cls(settings, catalog, command)

    def beat(self, lead: bool) -> bool:
        """Say this instance is alive and, with ``lead``, take or renew the leader's lease;
        return whether it leads. From the first try on, every decision is made under the
        lease (``Policy.leader``): a process that lost it decides nothing more."""
        self.cluster.check_in()
        if not lead:
            return self.cluster.leading()
        self.policy = replace(self.policy, leader=self.cluster.holder)
        return self.cluster.try_lead()

    def as_leader(self, session: Session) -> None:
        """Plan only as the leader: raise LeaseLost unless this instance holds the lease,
        and keep it until ``session``'s transaction ends (see ``claims.hold``)."""
        if self.policy.leader is not None:
            claims.hold(session, claims.LEADER, self.policy.leader)

    def sender(self) -> Sender:
        """An SMTP sender that keeps, with every other instance, to the server's rate."""
        smtp = self.settings.smtp
        return Sender(smtp, envelope_from=self.settings.organiser.address,
                      limiter=self.cluster.rate(smtp.messages_per_minute, smtp.connections))

    def reload(self) -> list[Problem]:
        """Re-read schedules; keep the last good catalog when the new one has problems."""
        from mailer.compose import Composer

        catalog, problems = read_catalog(self.settings.paths.schedules)
        if problems:
            log.error("schedule reload refused: keeping the last good schedules",
                      problems=[str(p) for p in problems])
            return problems
        composer = Composer(self.settings, catalog)
        template_problems = composer.check_templates(catalog)
        if template_problems:
            log.error("template reload refused: keeping the last good templates",
                      problems=[str(p) for p in template_problems])
            return template_problems
        self.catalog, self.composer = catalog, composer
        self.workers.restart(catalog)
        self.contacts, _ = catalog_contacts(catalog, self.settings.paths.packs,
                                            self.settings.paths.contacts)
        log.info("schedules reloaded", events=len(catalog.events))
        return []

    def sync_and_plan(self, now: datetime) -> tuple[list[EventChange], Plan]:
        """Record event changes and enqueue what is due, in one transaction."""
        with self.store.transaction() as session:
            self.as_leader(session)
            changes = self.sync(session, now)
            current = plan_into_outbox(session, self.catalog, self.contacts, now,
                                       self.policy.domain)
        self.digests.tick(self.store, self.catalog, self.contacts, now)
        return changes, current

    def sync(self, session: Session, now: datetime) -> list[EventChange]:
        """Record event changes in the caller's transaction. An edit that stopped inviting a
        country with registrations keeps them and tells staff, once (the change is recorded
        in the same transaction): nothing goes to the participants, as a country is removed
        by mistake more often than on purpose."""
        changes = sync_events(session, self.catalog, now, self.settings.paths.packs)
        kept = [str(found) for change in changes for found in change.uninvited]
        if kept:
            staff = self.settings.organiser.staff_address
            store.enqueue(session, [staff_alert(
                staff, now, kept, loaded=True,
                reason="registrations from countries no longer invited")],
                now=now, domain=self.policy.domain)
            log.warning("staff alerted: registrations from countries no longer invited",
                        to=staff, events=len(kept))
        return changes

    def handle(self, raw: bytes, now: datetime, **where: int | str | None) -> Handled:
        return handle(self.store, self.catalog, raw, now=now, policy=self.policy, **where)

    async def read_inbox(self, inbox: AsyncInbox, clock: Callable[[], datetime],
                         report: PassReport,
                         on_batch: Callable[[], None] | None = None) -> None:
        """Handle every new message; flag each only after its effects are committed.

        ``clock`` is read once per message, so a long batch stamps each at its own moment.
        ``on_batch`` is called after each fetched batch is committed and flagged: its answers
        are in the outbox, so a wave of replies can be acknowledged while it is still read.

        A message whose handling failed holds the stored cursor below it, so the next pass
        reads it again; this pass reads on past it, so a failure never holds back the mail
        behind it (those already handled are skipped next time: flagged, or known by their
        Message-ID).
        """
        folder = self.settings.imap.folder
        with self.store.transaction() as session:
            row = store.get_cursor(session, folder)
            cursor = Cursor(folder, row.uidvalidity, row.last_uid) if row else None
        held: Cursor | None = None      # just below the pass's first failed message
        while True:
            cursor, batch = await inbox.fetch_new(cursor)
            handled_uids: list[int] = []
            failed_uids: list[int] = []
            keys = [message_key(f.raw, f.message_id, f.folder, f.uidvalidity, f.uid)
                    for f in batch]
            with self.store.transaction() as session:
                survivors = store.claim(session, keys, clock())
            left = list(keys)
            # A big batch is read (understood) by the worker process, at the batch's moment,
            # while the daemon decides and stores, in arrival order.
            now = clock()
            understood = self.workers.read(
                [(f.raw, f.size, k) for f, k in zip(batch, keys, strict=True)], now,
                self.policy.inbox_address, self.policy.max_bytes,
                functools.partial(self._read, now=now))
            try:
                # Small groups, each one transaction (``handle_group``), in arrival order; a
                # message a pass died on is a group of its own.
                for first, end in groups(keys, survivors, GROUP):
                    intents = [await understood[n]() if understood is not None else None
                               for n in range(first, end)]
                    arrivals = [Arrival(f.raw, clock(), key, f.folder, f.uidvalidity, f.uid,
                                        f.size, intent)
                                for f, key, intent in zip(batch[first:end], keys[first:end],
                                                          intents, strict=True)]
                    outcomes = await self._handle_arrivals(arrivals, keys[first] in survivors)
                    for fetched, key, outcome in zip(batch[first:end], keys[first:end],
                                                     outcomes, strict=True):
                        left.remove(key)
                        if self._account(outcome, fetched, report, handled_uids, failed_uids):
                            await inbox.quarantine([fetched.uid], outcome.reason)
            except (Exception, asyncio.CancelledError):
                # A stop on purpose, another instance leading now, or a server failing (the
                # store, IMAP: ``read`` never raises, ``handle_one`` records a message's own
                # errors) is no crash: the claims not used are withdrawn, so they count
                # against no message (three such failures set innocent replies aside).
                # (If the store still fails, they count.)
                with contextlib.suppress(Exception), self.store.transaction() as session:
                    store.release(session, left)
                raise
            if handled_uids:
                await inbox.mark_handled(handled_uids)
            if held is not None and held.uidvalidity != cursor.uidvalidity:
                held = None             # the folder was renumbered: old UIDs mean nothing
            if failed_uids and held is None:
                held = Cursor(folder, cursor.uidvalidity, min(failed_uids) - 1)
            with self.store.transaction() as session:
                store.set_cursor(session, folder, cursor.uidvalidity,
                                 (held or cursor).last_uid)
            if handled_uids and on_batch is not None:
                on_batch()
            if not batch:
                return

    def _read(self, item: tuple[bytes, int | None, str], now: datetime) -> Intent | str:
        raw, size, key = item
        return understood_of(self.catalog, Arrival(raw, now, key, size=size), self.policy)

    async def _handle_arrivals(self, arrivals: list[Arrival], crashed_before: bool
                               ) -> list[Handled]:
        """Handle fetched messages in one group; one a pass died on is first counted, alone."""
        if crashed_before:
            (arrival,) = arrivals
            set_aside = await asyncio.to_thread(after_crash, self.store, self.catalog,
                                                arrival, self.policy)
            if set_aside is not None:
                return [set_aside]
            return [await asyncio.to_thread(handle_one, self.store, self.catalog, arrival,
                                            self.policy)]
        return await asyncio.to_thread(handle_group, self.store, self.catalog, arrivals,
                                       self.policy)

    @staticmethod
    def _account(outcome: Handled, fetched: Fetched, report: PassReport,
                 handled_uids: list[int], failed_uids: list[int]) -> bool:
        """Add one outcome to the pass's report; True when the message must be quarantined."""
        report.read += 1
        report.outcomes.append(outcome)
        if outcome.outcome == "quarantined":
            report.quarantined += 1
            return True
        if outcome.outcome == "failed":       # left unflagged: tried again next pass
            report.failed += 1
            failed_uids.append(fetched.uid)
            return False
        report.handled += outcome.outcome == "handled"
        report.duplicates += outcome.outcome == "duplicate"
        handled_uids.append(fetched.uid)
        return False

    async def read_and_answer(self, inbox: AsyncInbox, clock: Callable[[], datetime],
                              report: PassReport, sender: Sender | None) -> None:
        """``read_inbox``, sending the answers of each batch while the next one is read."""
        if sender is None:
            await self.read_inbox(inbox, clock, report)
            return
        batches = asyncio.Event()
        reading = True

        async def answer() -> None:
            while reading or batches.is_set():
                await batches.wait()
                batches.clear()
                report.drain.add(await self.drain(clock(), sender))

        answering = asyncio.create_task(answer())
        try:
            await self.read_inbox(inbox, clock, report, on_batch=batches.set)
        finally:
            reading = False
            batches.set()       # one last look, and the loop ends
            await answering

    async def drain(self, now: datetime, sender: Sender,
                    stop: Callable[[], bool] | None = None) -> DrainReport:
        """Send what is due; with ``stop``, in batches of one message per connection, so a
        shutdown waits for at most the messages in hand."""
        batch = self.settings.smtp.connections if stop is not None else None
        return await drain(self.store, self.composer.compose, sender, catalog=self.catalog,
                           settings=self.settings, now=now, batch=batch, stop=stop,
                           workers=self.workers, cluster=self.cluster)

    def close(self) -> None:
        if self.store.unrecorded:
            log.error("sent messages could not be recorded before the mailer stopped: they "
                      "may be sent again", messages=len(self.store.unrecorded))
        self.workers.close()
        self.store.close()


async def run_once(settings: Settings, *, now: datetime | None = None, read: bool = True,
                   send: bool = True) -> PassReport:
    """One full pass: read the inbox, decide, plan, and send what is due; then return.

    Answers go out while the inbox is still being read (after each fetched batch), so the
    first people of a wave of replies are not kept waiting for the last. Reading and
    planning need the leader's lease: when another instance holds it (a daemon, an
    overlapping cron pass), this pass only sends what is due, beside it.
    """
    mailer = Mailer.open(settings, command="once")
    report = PassReport()
    clock = (lambda: now) if now else utcnow
    alive: asyncio.Task[None] | None = None
    try:
        report.leading = await asyncio.to_thread(mailer.beat, True)
        alive = asyncio.create_task(_keep_alive(mailer, report.leading))
        async with contextlib.AsyncExitStack() as stack:
            sender = None
            if send:
                sender = await stack.enter_async_context(mailer.sender())
            if read and report.leading:
                try:
                    # Event versions first, so answers carry the current SEQUENCE; planning
                    # waits until the replies are in.
                    with mailer.store.transaction() as session:
                        mailer.as_leader(session)
                        report.changes = mailer.sync(session, clock())
                    try:
                        async with AsyncInbox(settings.imap) as inbox:
                            await mailer.read_and_answer(inbox, clock, report, sender)
                    except InboxError as exc:
                        # What is due still goes (reminders must not wait for the IMAP
                        # server); the command says the inbox failed and exits 1.
                        report.inbox_error = str(exc)
                        log.error("inbox failed; planning and sending anyway", error=str(exc))
                except LeaseLost as exc:
                    log.warning("another instance leads now: this pass only sends",
                                reason=str(exc))
                    report.leading = False
            if report.leading:
                try:
                    changes, current = mailer.sync_and_plan(clock())
                    report.changes += changes
                    report.planned = len(current.due)
                    report.missed = len(current.missed)
                except LeaseLost as exc:
                    # Another instance leads now (this one could not renew in time): it
                    # plans; what is due still goes, as beside any leader.
                    log.warning("another instance leads now: this pass only sends",
                                reason=str(exc))
                    report.leading = False
            if not report.leading:
                report.leader = await asyncio.to_thread(mailer.cluster.leader)
            if sender is not None:
                try:
                    report.drain.add(await mailer.drain(clock(), sender))
                except (TransportError, OSError) as exc:
                    if not report.inbox_error:
                        raise
                    # Both servers failed: the one line the command ends with says both,
                    # not the last one alone (cron mails only that line).
                    raise TransportError(f"the inbox was not read ({report.inbox_error}), "
                                         f"and sending failed: {one_line(exc)}") from exc
    finally:
        if alive is not None:
            alive.cancel()
            await asyncio.gather(alive, return_exceptions=True)
        try:
            mailer.cluster.leave()
        except Exception as exc:  # noqa: BLE001 - its lease and claims then expire
            log.warning("could not give back this instance's lease and claims",
                        error=one_line(exc))
        finally:
            mailer.close()
    return report


async def _keep_alive(mailer: Mailer, lead: bool) -> None:
    """Renew what a pass holds (its instance row, its lease if it leads) while it runs."""
    while True:
        await asyncio.sleep(mailer.cluster.renew_every)
        try:
            await asyncio.to_thread(mailer.beat, lead)
        except Exception as exc:  # noqa: BLE001 - the lease then runs out; the pass goes on
            log.warning("could not renew this instance's lease", error=one_line(exc))


class Service:
    """``mailer run``: the inbox watcher, the planner/sender worker, the schedule watcher and
    the heartbeat.

    APScheduler wakes the worker at the next due moment and on a safety tick, and runs the
    daily retention job; the store stays the source of truth, so a restart recomputes
    everything from it. ``clock`` is the service's idea of now (tests pass a fixed one);
    APScheduler's own timers run on the real clock, so wake-ups are scheduled as delays.
    With several instances on one store, the heartbeat takes the leader's lease when it is
    free: the leader reads the inbox and plans, every instance sends.
    """

    def __init__(self, settings: Settings, *, clock: Callable[[], datetime] = utcnow,
                 tick_seconds: float = 60.0, watch: bool = True) -> None:
        self.settings = settings
        self.clock = clock
        self.tick_seconds = tick_seconds
        self.watch = watch
        self.mailer = Mailer.open(settings)
        try:
            # Made here, not in the worker task: a configuration it refuses (an smtp.ca_file
            # it cannot load) stops the daemon at once (exit 2), where it ended the worker
            # task alone and the daemon ran on, sending nothing and saying nothing.
            self.sender = self.mailer.sender()
        except BaseException:
            self.mailer.close()
            raise
        self.stopping = asyncio.Event()
        self.wake = asyncio.Event()         # plan and send
        self.answers = asyncio.Event()      # send the answers of replies just handled
        self.leading = asyncio.Event()      # this instance holds the leader's lease
        self.scheduler: AsyncIOScheduler | None = None
        self.broken = False             # the last reload failed: staff were alerted once
        self.passes = 0
        self._reloading = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- the worker: plan what is due and send it -------------------------------------------
    async def worker(self) -> None:
        delay = FIRST_RETRY_SECONDS
        async with self.sender as sender:
            while not self.stopping.is_set():
                await self._wait(self.wake, self.answers)
                if self.stopping.is_set():
                    return
                try:
                    if self.wake.is_set():
                        self.wake.clear()
                        self.answers.clear()
                        await self.step(sender)
                    else:
                        # A batch of replies was handled mid-read: send their answers now;
                        # planning waits for the end of the read (the wake that follows).
                        self.answers.clear()
                        await self.mailer.drain(self.clock(), sender, stop=self.stopping.is_set)
                except Exception as exc:  # noqa: BLE001 - log, back off, keep running
                    # A store refusing writes or a server down: each try waits twice as long
                    # as the one before (the wake-ups meanwhile are kept, not lost).
                    log.error("pass failed; retrying", error=one_line(exc), retry_in=delay)
                    await self._sleep(delay)
                    delay = min(delay * 2, MAX_RETRY_SECONDS)
                    self.wake.set()
                else:
                    delay = FIRST_RETRY_SECONDS

    async def step(self, sender: Sender) -> Plan:
        """One pass: record event changes, enqueue what is due (as the leader), send it, book
        the next wake-up."""
        now = self.clock()
        current = Plan(())
        if self.mailer.cluster.leading() or await asyncio.to_thread(self.mailer.beat, True):
            try:
                _, current = await asyncio.to_thread(self.mailer.sync_and_plan, now)
            except LeaseLost:
                log.info("another instance leads now: it plans")
        await self.mailer.drain(now, sender, stop=self.stopping.is_set)
        pending = await asyncio.to_thread(self._next_pending)
        # A pending row already due was left by a failed connection: the tick retries it,
        # rather than a tight loop against a server that is down.
        self._wake_at(current.next_at, pending if pending and pending > now else None)
        self.passes += 1
        return current

    def _next_pending(self) -> datetime | None:
        with self.mailer.store.transaction() as session:
            return store.next_pending_at(session)

    def _wake_at(self, *moments: datetime | None) -> None:
        """Book one wake-up at the earliest of ``moments`` (replacing the previous one).

        The moments are on the service's clock; the job runs after the same delay on the
        real clock, so an injected clock still gets its wake-up.
        """
        future = [m for m in moments if m is not None]
        if not future or self.scheduler is None:
            return
        delay = max(min(future) - self.clock(), timedelta(0))
        self.scheduler.add_job(self.wake.set, "date", run_date=utcnow() + delay,
                               id="next-due", replace_existing=True, misfire_grace_time=None)

    # -- the inbox: IDLE (or poll), handle, wake the worker ---------------------------------
    async def inbox(self) -> None:
        imap = self.settings.imap
        delay = FIRST_RETRY_SECONDS
        while not self.stopping.is_set():
            # Only the leader reads: one process decides, in arrival order.
            await self._wait(self.leading)
            if self.stopping.is_set():
                return
            if not self.mailer.cluster.leading():
                # The lease ran out by this process's clock and the heartbeat has not said
                # so yet (it may hang on the store): wait for it, rather than log in to
                # IMAP and out again in a tight loop.
                await self._sleep(self.mailer.cluster.renew_every)
                continue
            try:
                async with AsyncInbox(imap) as box:
                    log.info("inbox ready", folder=imap.folder,
                             idle=imap.idle and "IDLE" in box.inbox.capabilities)
                    while not self.stopping.is_set() and self.mailer.cluster.leading():
                        report = PassReport()
                        await self.mailer.read_inbox(box, self.clock, report,
                                                     on_batch=self.answers.set)
                        # Only a pass read to its end proves the fault over: a connect alone
                        # does not (a store refusing writes fails after it).
                        delay = FIRST_RETRY_SECONDS
                        if report.read:
                            self.wake.set()
                        wait = imap.idle_seconds if imap.idle else imap.poll_seconds
                        waiter = asyncio.ensure_future(box.wait_for_new(wait))
                        stopper = asyncio.ensure_future(self.stopping.wait())
                        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                        stopper.cancel()
                        if self.stopping.is_set():
                            # Cancelling interrupts the IDLE in its thread, so the close that
                            # follows (and the process exit) need not wait for the window.
                            waiter.cancel()
                            with contextlib.suppress(asyncio.CancelledError):
                                await waiter
                            return
                        waiter.result()
            except LeaseLost:
                continue        # the heartbeat saw it too: wait to lead again
            except Exception as exc:  # noqa: BLE001 - a server fault must not stop the daemon
                log.error("inbox failed; reconnecting", error=one_line(exc), retry_in=delay)
                await self._sleep(delay)
                delay = min(delay * 2, MAX_RETRY_SECONDS)

    # -- the heartbeat: this instance alive, the leader's lease, work left by others ---------
    async def heartbeat(self) -> None:
        """Every ``cluster.renew_seconds``: check in, take or renew the leader's lease, and
        wake the worker when due messages wait for anyone (a burst the leader planned, or
        the claims of an instance that died, once they expired)."""
        while not self.stopping.is_set():
            try:
                await asyncio.to_thread(self._beat)
            except Exception as exc:  # noqa: BLE001 - the store may come back
                log.warning("heartbeat failed", error=one_line(exc))
                self.leading.clear()
            await self._sleep(self.mailer.cluster.renew_every)

    def _beat(self) -> None:
        leading = self.mailer.beat(lead=True)
        assert self._loop is not None, "the heartbeat runs inside Service.run"
        loop_call = self._loop.call_soon_threadsafe
        if leading and not self.leading.is_set():
            loop_call(self.leading.set)
            loop_call(self.wake.set)          # plan at once as the new leader
        elif not leading and self.leading.is_set():
            loop_call(self.leading.clear)
        with self.mailer.store.transaction() as session:
            waiting = claims.unattended(session, now=self.clock(),
                                        clock=self.mailer.cluster.clock())
        if waiting:
            loop_call(self.answers.set)     # send, beside the others (planning waits)

    # -- schedules and templates: reload on change or SIGHUP --------------------------------
    async def watcher(self) -> None:
        from watchfiles import awatch

        paths = [p for p in (self.settings.paths.schedules, self.settings.paths.templates)
                 if Path(p).exists()]
        async for _changes in awatch(*paths, stop_event=self.stopping, debounce=500,
                                     step=100):
            await self.reload("file change")

    async def reload(self, trigger: str) -> list[Problem]:
        """Re-read schedules and templates; on problems keep the last good ones and alert staff.

        Staff get one email when the schedules break, not one per broken save: the next alert
        waits until a good version has loaded again. The worker is woken either way, so an
        edit (a moved event) is acted on at once.
        """
        async with self._reloading:
            log.info("reloading schedules and templates", trigger=trigger)
            problems = await asyncio.to_thread(self.mailer.reload)
            unsaid = False
            if problems and not self.broken and self.mailer.cluster.leading():
                try:
                    await asyncio.to_thread(self._alert_staff, problems)
                except Exception as exc:  # noqa: BLE001 - a reload must never end the watcher
                    # (a store refusing writes): the next broken reload tries again.
                    log.error("staff not alerted", error=one_line(exc))
                    unsaid = True
            self.broken = bool(problems) and not unsaid
        self.wake.set()
        return problems

    def _alert_staff(self, problems: list[Problem]) -> None:
        """Enqueue one email to staff listing the problems (the log has them too)."""
        now = self.clock()
        staff = self.settings.organiser.staff_address
        out = staff_alert(staff, now, [str(p) for p in problems])
        with self.mailer.store.transaction() as session:
            store.enqueue(session, [out], now=now, domain=self.mailer.policy.domain)
        log.warning("staff alerted: schedules or templates are invalid", to=staff,
                    problems=len(problems))

    def retention(self) -> None:
        from mailer.retention import purge_expired, purge_quarantined

        if not self.mailer.cluster.leading():
            return          # the leader purges, once

        try:
            with self.mailer.store.transaction() as session:
                purge_expired(session, self.mailer.catalog, self.clock(),
                              self.settings.retention.days)
                purge_quarantined(session, self.clock(),
                                  self.settings.retention.quarantine_days)
        except Exception as exc:  # noqa: BLE001 - the scheduler would log a traceback
            # Nothing was purged (one transaction); tomorrow's run purges it all.
            log.error("retention failed; tried again tomorrow", error=one_line(exc))

    # -- plumbing -----------------------------------------------------------------------------
    async def _wait(self, *events: asyncio.Event) -> None:
        """Until one of ``events`` is set, or the service is stopping."""
        waiters = {asyncio.ensure_future(e.wait()) for e in (*events, self.stopping)}
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), timeout=seconds)

    def stop(self) -> None:
        log.info("stopping: finishing the message in hand")
        self.stopping.set()
        self.wake.set()

    def _on_sighup(self) -> None:
        # Keep a reference: the loop holds tasks only weakly.
        task = asyncio.ensure_future(self.reload("SIGHUP"))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def run(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        self.scheduler = AsyncIOScheduler(timezone=timezone.utc)
        self.scheduler.add_job(self.wake.set, "interval", seconds=self.tick_seconds, id="tick")
        self.scheduler.add_job(self.retention, "cron", hour=3, minute=17, id="retention")
        self.scheduler.start()
        await asyncio.to_thread(self._beat)
        self.wake.set()
        tasks = [asyncio.create_task(self.worker(), name="worker"),
                 asyncio.create_task(self.inbox(), name="inbox"),
                 asyncio.create_task(self.heartbeat(), name="heartbeat")]
        if self.watch:
            tasks.append(asyncio.create_task(self.watcher(), name="watcher"))
        log.info("mailer running", events=len(self.mailer.catalog.events),
                 instance=self.mailer.cluster.holder, leading=self.leading.is_set(),
                 inbox=f"{self.settings.imap.host}:{self.settings.imap.port}",
                 smtp=f"{self.settings.smtp.host}:{self.settings.smtp.port}")
        try:
            await self.stopping.wait()
            await asyncio.wait(tasks, timeout=30)
        finally:
            for task in [*tasks, *self._background]:
                task.cancel()
            await asyncio.gather(*tasks, *self._background, return_exceptions=True)
            self.scheduler.shutdown(wait=False)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            try:
                await asyncio.to_thread(self.mailer.cluster.leave)
            except Exception as exc:  # noqa: BLE001 - its leases then expire on their own
                log.warning("could not give back this instance's leases", error=one_line(exc))
            self.mailer.close()
            log.info("mailer stopped")


def staff_alert(staff: str, now: datetime, problems: list[str], *, reason: str = "",
                loaded: bool = False) -> Outgoing:
    """One email to staff listing ``problems``: a refused edit, or (``loaded``) an edit
    that was loaded but needs their decision."""
    text = "\n".join(problems)
    # The moment is in the key: the same mistake made again next week alerts again.
    digest = hashlib.sha256(f"{now.isoformat()}\n{text}".encode()).hexdigest()[:16]
    context: dict[str, object] = {"problems": problems}
    if loaded:
        context.update(reason=reason, loaded=True)
    return Outgoing(key=outbox_key(Kind.STAFF_ALERT, staff, None, 0, digest),
                    kind=Kind.STAFF_ALERT, recipient=staff, language="en", context=context)


async def serve(settings: Settings) -> None:
    """Run the daemon until SIGTERM or SIGINT."""
    await Service(settings).run()
