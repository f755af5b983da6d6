"""The daemon: one place that wires schedules, inbox, store, planner, composer and SMTP together.

``Mailer`` holds the long-lived parts (store, last good catalog, composer, contacts);
``run_once`` is one full pass (``mailer once``); ``Service`` is ``mailer run``: APScheduler
decides *when* to read, plan and send, the store decides *what*.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from mailer import store
from mailer.config import Settings
from mailer.contacts import catalog_contacts
from mailer.errors import Problem, ScheduleError
from mailer.handling import Handled, Policy, handle
from mailer.inbox import AsyncInbox, Cursor
from mailer.outbox import DrainReport, drain
from mailer.planner import Contact, Plan
from mailer.schedule import Catalog, read_catalog
from mailer.smtp import Sender
from mailer.sync import EventChange, plan_into_outbox, sync_events

log = structlog.get_logger(__name__)


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
    planned: int = 0
    missed: int = 0
    drain: DrainReport = field(default_factory=DrainReport)
    changes: list[EventChange] = field(default_factory=list)
    outcomes: list[Handled] = field(default_factory=list)


class Mailer:
    """The long-lived parts of a running mailer, and the steps of a pass."""

    def __init__(self, settings: Settings, catalog: Catalog) -> None:
        from mailer.compose import Composer

        self.settings = settings
        self.catalog = catalog
        self.store = store.Store(settings.store.url)
        self.store.migrate()
        self.composer = Composer(settings, catalog)
        self.contacts: list[Contact] = []
        self.contacts, problems = catalog_contacts(catalog, settings.paths.packs,
                                                   settings.paths.contacts)
        for problem in problems:
            log.warning("contacts problem", problem=str(problem))
        address = settings.organiser.address
        self.policy = Policy(inbox_address=address, staff_address=settings.organiser.staff_address,
                             domain=address.rpartition("@")[2] or "localhost",
                             answers_per_day=settings.limits.auto_answers_per_day,
                             max_bytes=settings.imap.max_message_bytes)

    @classmethod
    def open(cls, settings: Settings) -> Mailer:
        """Load the schedules (raising ScheduleError if they are invalid) and open the store."""
        catalog, problems = read_catalog(settings.paths.schedules)
        if problems:
            raise ScheduleError(problems)
        return cls(settings, catalog)

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
        self.contacts, _ = catalog_contacts(catalog, self.settings.paths.packs,
                                            self.settings.paths.contacts)
        log.info("schedules reloaded", events=len(catalog.events))
        return []

    def sync_and_plan(self, now: datetime) -> tuple[list[EventChange], Plan]:
        """Record event changes and enqueue what is due, in one transaction."""
        with self.store.transaction() as session:
            changes = sync_events(session, self.catalog, now)
            current = plan_into_outbox(session, self.catalog, self.contacts, now,
                                       self.policy.domain)
        return changes, current

    def handle(self, raw: bytes, now: datetime, **where: int | str | None) -> Handled:
        return handle(self.store, self.catalog, raw, now=now, policy=self.policy, **where)

    async def read_inbox(self, inbox: AsyncInbox, now: datetime | None,
                         report: PassReport) -> None:
        """Handle every new message; flag each only after its effects are committed."""
        folder = self.settings.imap.folder
        while True:
            with self.store.transaction() as session:
                row = store.get_cursor(session, folder)
                cursor = Cursor(folder, row.uidvalidity, row.last_uid) if row else None
            cursor, batch = await inbox.fetch_new(cursor)
            handled_uids: list[int] = []
            for fetched in batch:
                report.read += 1
                moment = now or utcnow()
                outcome = await asyncio.to_thread(
                    self.handle, fetched.raw, moment, folder=fetched.folder,
                    uidvalidity=fetched.uidvalidity, uid=fetched.uid, size=fetched.size,
                    message_id=fetched.message_id)
                report.outcomes.append(outcome)
                if outcome.outcome == "quarantined":
                    report.quarantined += 1
                    await inbox.quarantine([fetched.uid], outcome.reason)
                    continue
                report.handled += outcome.outcome == "handled"
                report.duplicates += outcome.outcome == "duplicate"
                handled_uids.append(fetched.uid)
            if handled_uids:
                await inbox.mark_handled(handled_uids)
            with self.store.transaction() as session:
                store.set_cursor(session, folder, cursor.uidvalidity, cursor.last_uid)
            if not batch:
                return

    async def drain(self, now: datetime, sender: Sender) -> DrainReport:
        return await drain(self.store, self.composer.compose, sender, catalog=self.catalog,
                           settings=self.settings, now=now)

    def close(self) -> None:
        self.store.close()


async def run_once(settings: Settings, *, now: datetime | None = None, read: bool = True,
                   send: bool = True) -> PassReport:
    """One full pass: read the inbox, decide, plan, and send what is due; then return."""
    mailer = Mailer.open(settings)
    report = PassReport()
    try:
        moment = now or utcnow()
        report.changes, before = mailer.sync_and_plan(moment)
        if read:
            async with AsyncInbox(settings.imap) as inbox:
                await mailer.read_inbox(inbox, now, report)
        moment = now or utcnow()
        changes, after = mailer.sync_and_plan(moment)
        report.changes += changes
        # Each plan lists only what it newly enqueued, so the pass did the sum of both.
        report.planned = len(before.due) + len(after.due)
        report.missed = len(before.missed) + len(after.missed)
        if send:
            async with Sender(settings.smtp, envelope_from=settings.organiser.address) as sender:
                report.drain = await mailer.drain(moment, sender)
    finally:
        mailer.close()
    return report


class Service:
    """``mailer run``: the inbox watcher, the planner/sender worker and the schedule watcher.

    APScheduler wakes the worker at the next due moment and on a safety tick, and runs the
    daily retention job; the store stays the source of truth, so a restart recomputes
    everything from it.
    """

    def __init__(self, settings: Settings, *, clock: Callable[[], datetime] = utcnow,
                 tick_seconds: float = 60.0, watch: bool = True) -> None:
        self.settings = settings
        self.clock = clock
        self.tick_seconds = tick_seconds
        self.watch = watch
        self.mailer = Mailer.open(settings)
        self.stopping = asyncio.Event()
        self.wake = asyncio.Event()
        self.scheduler: AsyncIOScheduler | None = None
        self.alerted: set[str] = set()
        self.passes = 0

    # -- the worker: plan what is due and send it -------------------------------------------
    async def worker(self) -> None:
        async with Sender(self.settings.smtp,
                          envelope_from=self.settings.organiser.address) as sender:
            while not self.stopping.is_set():
                await self._wait(self.wake)
                if self.stopping.is_set():
                    return
                self.wake.clear()
                try:
                    now = self.clock()
                    _, current = await asyncio.to_thread(self.mailer.sync_and_plan, now)
                    await self.mailer.drain(now, sender)
                    self._wake_at(current.next_at, await asyncio.to_thread(self._next_pending))
                    self.passes += 1
                except Exception as exc:  # noqa: BLE001 - log, back off, keep running
                    log.error("pass failed; retrying on the next tick", error=str(exc))

    def _next_pending(self) -> datetime | None:
        with self.mailer.store.transaction() as session:
            return store.next_pending_at(session)

    def _wake_at(self, *moments: datetime | None) -> None:
        """Schedule one wake-up at the earliest of ``moments`` (replacing the previous one)."""
        future = [m for m in moments if m is not None]
        if not future or self.scheduler is None:
            return
        when = max(min(future), self.clock())
        self.scheduler.add_job(self.wake.set, "date", run_date=when, id="next-due",
                               replace_existing=True)

    # -- the inbox: IDLE (or poll), handle, wake the worker ---------------------------------
    async def inbox(self) -> None:
        imap = self.settings.imap
        delay = 1.0
        while not self.stopping.is_set():
            try:
                async with AsyncInbox(imap) as box:
                    delay = 1.0
                    while not self.stopping.is_set():
                        report = PassReport()
                        await self.mailer.read_inbox(box, None, report)
                        if report.read:
                            self.wake.set()
                        wait = imap.idle_seconds if imap.idle else imap.poll_seconds
                        waiter = asyncio.ensure_future(box.wait_for_new(wait))
                        stopper = asyncio.ensure_future(self.stopping.wait())
                        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                        stopper.cancel()
                        if self.stopping.is_set():
                            waiter.cancel()
                            return
                        waiter.result()
            except Exception as exc:  # noqa: BLE001 - a server fault must not stop the daemon
                log.error("inbox failed; reconnecting", error=str(exc), retry_in=delay)
                await self._sleep(delay)
                delay = min(delay * 2, 300.0)

    # -- schedules and templates: reload on change or SIGHUP --------------------------------
    async def watcher(self) -> None:
        from watchfiles import awatch

        paths = [p for p in (self.settings.paths.schedules, self.settings.paths.templates)
                 if Path(p).exists()]
        async for _changes in awatch(*paths, stop_event=self.stopping, debounce=500,
                                     step=100):
            await self.reload()

    async def reload(self) -> None:
        problems = await asyncio.to_thread(self.mailer.reload)
        if problems:
            await asyncio.to_thread(self._alert_staff, problems)
        self.wake.set()

    def _alert_staff(self, problems: list[Problem]) -> None:
        """One email to staff per distinct set of problems (the log has them all)."""
        from mailer.domain import Kind, Outgoing, outbox_key

        text = "\n".join(str(p) for p in problems)
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        if digest in self.alerted:
            return
        self.alerted.add(digest)
        staff = self.settings.organiser.staff_address
        out = Outgoing(key=outbox_key(Kind.STAFF_ALERT, staff, None, 0, digest),
                       kind=Kind.STAFF_ALERT, recipient=staff, language="en",
                       context={"problems": [str(p) for p in problems]})
        with self.mailer.store.transaction() as session:
            store.enqueue(session, [out], now=self.clock(), domain=self.mailer.policy.domain)

    def retention(self) -> None:
        from mailer.retention import purge_expired

        with self.mailer.store.transaction() as session:
            purge_expired(session, self.mailer.catalog, self.clock(),
                          self.settings.retention.days)

    # -- plumbing -----------------------------------------------------------------------------
    async def _wait(self, event: asyncio.Event) -> None:
        waiter = asyncio.ensure_future(event.wait())
        stopper = asyncio.ensure_future(self.stopping.wait())
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        stopper.cancel()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), timeout=seconds)

    def stop(self) -> None:
        log.info("stopping: finishing the message in hand")
        self.stopping.set()
        self.wake.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self.reload()))
        self.scheduler = AsyncIOScheduler(timezone=timezone.utc)
        self.scheduler.add_job(self.wake.set, "interval", seconds=self.tick_seconds, id="tick")
        self.scheduler.add_job(self.retention, "cron", hour=3, minute=17, id="retention")
        self.scheduler.start()
        self.wake.set()
        tasks = [asyncio.create_task(self.worker(), name="worker"),
                 asyncio.create_task(self.inbox(), name="inbox")]
        if self.watch:
            tasks.append(asyncio.create_task(self.watcher(), name="watcher"))
        log.info("mailer running", events=len(self.mailer.catalog.events),
                 inbox=f"{self.settings.imap.host}:{self.settings.imap.port}",
                 smtp=f"{self.settings.smtp.host}:{self.settings.smtp.port}")
        try:
            await self.stopping.wait()
            await asyncio.wait(tasks, timeout=30)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.scheduler.shutdown(wait=False)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            self.mailer.close()
            log.info("mailer stopped")


async def serve(settings: Settings) -> None:
    """Run the daemon until SIGTERM or SIGINT."""
    await Service(settings).run()
