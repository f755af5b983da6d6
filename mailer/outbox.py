"""Draining the outbox: compose each due message, send it over SMTP, record what happened.

Rows are claimed before they are sent (``mailer.claims``), so any number of processes can
drain one outbox: none sends a row another holds. A row is marked sent right after the
server accepted it, and its connection sends nothing more until that is committed, so a
crash re-sends at most the messages that were in flight (one per SMTP connection), once
the dead process's claims have expired. Temporary failures are retried with back-off;
permanent ones fail for good and the recipient is suppressed.

When that record fails (a full disk, a database refusing writes), sending stops: the drain
raises StoreError, the accepted messages are kept in ``Store.unrecorded``, and every later
drain of the process records them before it sends anything else, so a store fault never
makes the same message go again (unless the fault outlasts the claims on them: then, as
after a crash, another instance may send those few again).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import structlog
from sqlalchemy import update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from mailer import claims, store
from mailer.cluster import Claim, Cluster
from mailer.compose import carries_pack, compose_message
from mailer.config import Settings
from mailer.domain import PLACE_KINDS, Outgoing, Status
from mailer.errors import StoreError
from mailer.schedule import Catalog
from mailer.smtp import Composable, Sender, SendResult, retry_delay
from mailer.wire import WireMessage

if TYPE_CHECKING:
    from mailer.workers import Workers

log = structlog.get_logger(__name__)


@dataclass
class DrainReport:
    """What one drain did, for logs, the CLI and tests."""

    sent: int = 0
    retried: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    def add(self, other: DrainReport) -> None:
        """Add another drain's counts to these (a pass may drain several times)."""
        self.sent += other.sent
        self.retried += other.retried
        self.failed += other.failed
        self.errors += other.errors

    def count(self, outcome: str, result: SendResult) -> None:
        """Add one failed message's outcome (from ``_record_failure``)."""
        setattr(self, outcome, getattr(self, outcome) + 1)
        if outcome == "failed":
            self.errors.append(f"{result.code or ''} {result.error}".strip())


async def drain(st: store.Store, compose: Callable[..., WireMessage], sender: Sender, *,
                catalog: Catalog, settings: Settings, now: datetime,
                batch: int | None = None, stop: Callable[[], bool] | None = None,
                workers: Workers | None = None, cluster: Cluster | None = None
                ) -> DrainReport:
    """Send every pending message due at ``now``; return counts. Never raises for one message.

    ``stop`` is asked before each batch: once it says True the rest stays pending (a daemon
    shutting down finishes the batch in hand, so keep batches small there). ``workers``
    writes the messages of big batches in another process. Rows are claimed for
    ``cluster``'s instance (without one, for an identity of this drain's own).
    """
    report = DrainReport()
    cluster = cluster or _own_identity(st, settings)
    smtp = settings.smtp
    size = cluster.claim_limit(batch or smtp.connections * 50, smtp.messages_per_minute,
                               smtp.connections)
    sent = SentLog(st, now, senders=smtp.connections)
    in_hand: list[Claim] = []
    began = time.monotonic()

    def clock() -> datetime:
        """``now`` run on by the time the drain has taken: when a failure happened."""
        return now + timedelta(seconds=time.monotonic() - began)

    try:
        await sent.recover()        # what went before the store failed, first
        if cluster.owes_release:    # claims a failed drain could not give back
            await asyncio.to_thread(cluster.release_claims)
        return await _drain(st, compose, sender, sent, report, catalog=catalog,
                            settings=settings, now=now, size=size, stop=stop,
                            workers=workers, clock=clock, cluster=cluster,
                            in_hand=in_hand)
    except BaseException:
        # No connection at all, the store refusing, or cancelled: the batch in hand stays
        # pending, given back at once rather than when its claim would expire (but for
        # what went and is not recorded: that waits for this process, in Store.unrecorded).
        for claim in in_hand:
            await _give_back(claim, st, cluster)
        raise
    finally:
        sent.close()


async def _give_back(claim: Claim, st: store.Store, cluster: Cluster) -> None:
    try:
        await asyncio.shield(claim.end([i for i in claim.ids if i not in st.unrecorded]))
    except Exception as exc:  # noqa: BLE001 - the next drain gives them back
        cluster.owes_release = True
        log.warning("claims not given back", error=str(store.store_error(exc) or exc),
                    rows=len(claim.ids))


# The identity a drain claims under when it is given none (a drain run on its own: tests,
# tools): one per store, so that the next drain on it gives back what a failed one could not.
_OWN: weakref.WeakKeyDictionary[store.Store, Cluster] = weakref.WeakKeyDictionary()


def _own_identity(st: store.Store, settings: Settings) -> Cluster:
    if st not in _OWN:
        _OWN[st] = Cluster(st, settings, command="drain")
    return _OWN[st]


async def _drain(st: store.Store, compose: Callable[..., WireMessage], sender: Sender,
                 sent: SentLog, report: DrainReport, *, catalog: Catalog, settings: Settings,
                 now: datetime, size: int, stop: Callable[[], bool] | None,
                 workers: Workers | None, clock: Callable[[], datetime], cluster: Cluster,
                 in_hand: list[Claim]) -> DrainReport:
    backlog: int | None = None      # messages due when the drain began, not yet taken
    while stop is None or not stop():
        asked = time.monotonic()
        with st.transaction() as session:
            if backlog is None and workers is not None and workers.start_for_messages:
                backlog = store.count_due(session, now)
            held_from = cluster.clock()       # the store's time, for the claims
            until = held_from + timedelta(seconds=cluster.lease)
            rows = [(r.id, store.row_to_outgoing(r), r.attempts, r.recipient)
                    for r in claims.claim_due(
                        session, now=now, clock=held_from, limit=size, holder=cluster.holder,
                        until=until)]
            suppressed = store.suppressed_among(session, (r[3] for r in rows))
            stale = _no_longer_true(session, rows, catalog)
            if stale:
                _drop(session, stale)
                rows = [r for r in rows if r[0] not in stale]
        if not rows:
            if stale:
                continue            # all dropped: the rows due behind them are next
            return report
        claim = cluster.claim([r[0] for r in rows], asked, until)
        in_hand[:] = [claim]
        left = max(backlog or 0, len(rows))
        backlog = left - len(rows)
        attempts: dict[str, int] = {}
        wanted: list[tuple[str, Outgoing]] = []
        for row_id, out, tried, recipient in rows:
            key = str(row_id)
            attempts[key] = tried
            if recipient.lower() in suppressed:
                _finish(st, row_id, "failed", now, "recipient suppressed (bounced before)")
                report.failed += 1
                continue
            wanted.append((key, out))
        inline = functools.partial(compose_message, compose=compose, catalog=catalog,
                                   settings=settings, now=now)
        # Messages with the pack's files are made here, when their turn comes: written
        # ahead by the worker, megabytes of attachments would wait in memory.
        light = [(key, out) for key, out in wanted if not carries_pack(out)]
        made = (workers.compose([out for _, out in light], now, inline, backlog=left)
                if workers else None)
        early = dict(zip((key for key, _ in light), made, strict=True)) if made else {}
        items: list[tuple[str, Composable]] = [
            (key, early.get(key) or functools.partial(inline, out)) for key, out in wanted]

        recorded: set[str] = set()

        async def record(result: SendResult, tried: dict[str, int] = attempts,
                         done: set[str] = recorded, claim: Claim = claim) -> None:
            done.add(result.key)
            claim.done(int(result.key))
            if result.ok:
                await sent.record(int(result.key))
                report.sent += 1
                return
            # In a worker thread: the other connections keep sending during the commit. The
            # back-off counts from this failure, not from the drain's start.
            outcome = await asyncio.to_thread(_record_failure, st, result, tried[result.key],
                                              clock(), settings)
            report.count(outcome, result)

        # A SendError here (no connection at all) leaves every row pending for the next pass.
        # A message whose claim ran out before its turn (this process stalled, or could not
        # renew) is not sent: it is another instance's now.
        unsent: list[int] = []
        for result in await sender.send_batch(items, on_result=record, held=claim.held_key):
            unsent += [] if result.ok else [int(result.key)]
            if result.key not in recorded and claim.held_key(result.key):
                # never attempted: the connections failed
                report.count(_record_failure(st, result, attempts[result.key], clock(),
                                             settings), result)
        await claim.end(unsent)     # the rows left pending can go to any instance at once
        in_hand.clear()
    return report


class SentLog:
    """Marks accepted messages sent in shared commits (group commit).

    Each connection waits until its message is committed before it sends another, as with
    one commit per message; but a commit waits up to ``gather_seconds`` for every one of the
    ``senders`` connections to have a row in it (none can add a second), and the messages
    accepted while a commit runs in a thread share the next one. In a 5,000-reminder burst
    over four connections that made one commit per four messages instead of about three per
    five. The commit runs on the event loop's thread when SQLite's write lock is free this
    instant (``Store.mark_sent_now``), in a worker thread otherwise.

    A commit that fails leaves its rows in ``Store.unrecorded`` and raises StoreError in
    each waiting sender (so the drain stops); ``recover`` records them later.
    """

    def __init__(self, st: store.Store, now: datetime, senders: int = 1,
                 gather_seconds: float = 0.002) -> None:
        self._st = st
        self._now = now
        self._senders = senders
        self._gather = gather_seconds
        self._waiting: list[tuple[int, asyncio.Future[None]]] = []
        self._all_in = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._conn: Connection | None = None    # kept for the drain: one checkout, not many

    async def record(self, row_id: int) -> None:
        """Mark ``row_id`` sent; return once that is committed (raise if the commit failed)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((row_id, done))
        if len(self._waiting) >= self._senders:
            self._all_in.set()
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        await done

    async def recover(self) -> None:
        """Record the messages earlier drains could not (``Store.unrecorded``), each at the
        moment it went; raise StoreError, having sent nothing, while the store refuses."""
        waiting = self._st.unrecorded
        if not waiting:
            return
        by_moment: dict[datetime, list[int]] = {}
        for row, moment in waiting.items():
            by_moment.setdefault(moment, []).append(row)
        for moment, rows in by_moment.items():
            try:
                await asyncio.to_thread(self._commit, rows, moment)
            except Exception as exc:  # noqa: BLE001 - any failure: the store still refuses
                raise _unrecorded_error(exc, len(waiting)) from exc
            for row in rows:
                del waiting[row]
        log.info("messages sent before the store failed are now recorded", messages=sum(
            len(rows) for rows in by_moment.values()))

    def close(self) -> None:
        """Give the store connection back, once a commit still running (a drain that was
        cancelled) has finished with it in its thread."""
        if self._writer is not None and not self._writer.done():
            self._writer.add_done_callback(lambda _task: self._release())
        else:
            self._release()

    def _release(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def _write(self) -> None:
        while self._waiting:
            if len(self._waiting) < self._senders:
                # Each sender waits for its own commit, so at most ``senders`` rows can join
                # one; wait a moment for the others rather than commit (and fsync) for each.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._all_in.wait(), self._gather)
            self._all_in.clear()
            group, self._waiting = self._waiting, []
            rows = [row for row, _ in group]
            try:
                # Inline when SQLite's write lock is free this instant (the common case, and
                # much cheaper: see inline_marks). Otherwise in a worker thread: the commit
                # may wait for the lock (a reply being decided, a purge) or the network
                # (PostgreSQL), and the event loop must not wait with it.
                if not self._st.mark_sent_now(rows, self._now):
                    await asyncio.to_thread(self._commit, rows, self._now)
            except Exception as exc:  # noqa: BLE001 - handed to every waiting sender
                # The server has these: they must never go again, so they wait here until
                # the store takes them (``recover``), and the senders stop.
                self._st.unrecorded.update(dict.fromkeys(rows, self._now))
                error = _unrecorded_error(exc, len(self._st.unrecorded))
                error.__cause__ = exc
                for _, done in group:
                    if not done.done():  # its sender may have been cancelled meanwhile
                        done.set_exception(error)
            else:
                for _, done in group:
                    if not done.done():
                        done.set_result(None)

    def _commit(self, rows: list[int], now: datetime) -> None:
        if self._conn is None:
            self._conn = self._st.engine.connect()
        try:
            self._st.mark_sent(rows, now, self._conn)
        except Exception:
            self._release()     # a connection that failed mid-commit is not reused
            raise


def _unrecorded_error(exc: BaseException, waiting: int) -> StoreError:
    """Why sending stopped: the store refused to record what the mail server accepted."""
    cause = store.store_error(exc) or StoreError(f"{type(exc).__name__}: {exc}")
    return StoreError(f"sending stopped: {waiting} sent message(s) cannot be recorded ({cause})")


def _no_longer_true(session: Session, rows: list[tuple[int, Outgoing, int, str]],
                    catalog: Catalog) -> dict[int, str]:
    """The claimed rows written to someone holding a place who no longer does (they
    withdrew, were rejected or moved, or the event was cancelled since it was queued), each
    with why it is not sent.

    Checked here, when the message is about to go, not when the registration changes:
    every path that changes one (replies, staff commands, a schedule edit) is covered, and
    a reminder or update queued behind a retry or a burst never reaches someone who
    cancelled, with a REQUEST that would put the event back in their calendar after the
    CANCEL they got.
    """
    placed = [(row_id, out) for row_id, out, _, _ in rows
              if out.kind in PLACE_KINDS and out.event_id is not None]
    if not placed:
        return {}
    statuses = store.registration_statuses(
        session, {(str(out.event_id), out.recipient.lower()) for _, out in placed})
    why: dict[int, str] = {}
    for row_id, out in placed:
        event = catalog.events.get(str(out.event_id))
        status = statuses.get((str(out.event_id), out.recipient.lower()))
        if event is not None and event.cancelled:
            why[row_id] = "not sent: the event was cancelled after it was queued"
        elif status is not None and status != Status.CONFIRMED:
            # (No registration at all: erased, and ``mailer forget`` removes what waited.)
            why[row_id] = f"not sent: the registration is {status}"
    return why


def _drop(session: Session, stale: dict[int, str]) -> None:
    """Record the rows ``_no_longer_true`` found as missed, with why, in the claim's
    transaction (staff see them with ``mailer messages``; ``mailer resend`` can send one)."""
    for reason in sorted(set(stale.values())):
        ids = [row_id for row_id, why in stale.items() if why == reason]
        session.execute(update(store.OutboxRow).where(store.OutboxRow.id.in_(ids))
                        .values(status="missed", last_error=reason))
    log.info("queued messages not sent: what they say is no longer true", rows=len(stale),
             reasons=sorted(set(stale.values())))


def _record_failure(st: store.Store, result: SendResult, tried: int, now: datetime,
                    settings: Settings) -> str:
    """Write one message's failure to the outbox; return "retried" or "failed".

    (Messages that went are recorded by ``SentLog``.)
    """
    row_id = int(result.key)
    attempt = tried + 1
    reason = f"{result.code or ''} {result.error}".strip()
    if result.permanent or attempt >= settings.smtp.max_attempts:
        with st.transaction() as session:
            row = session.get(store.OutboxRow, row_id)
            # Only the server's 5xx says the address is bad; a message we could not build
            # (code None) says nothing about its recipient.
            if row is not None and result.permanent and result.code is not None:
                store.suppress(session, row.recipient, reason, now)
        _finish(st, row_id, "failed", now, reason, attempt)
        return "failed"
    delay = retry_delay(attempt, settings.smtp.retry_base_seconds)
    with st.transaction() as session:
        session.execute(update(store.OutboxRow).where(store.OutboxRow.id == row_id).values(
            attempts=attempt, next_attempt_at=now + delay, last_error=reason))
    return "retried"


def _finish(st: store.Store, row_id: int, status: str, now: datetime, reason: str,
            attempts: int | None = None) -> None:
    values: dict[str, object] = {"status": status, "last_error": reason}
    if attempts is not None:
        values["attempts"] = attempts
    with st.transaction() as session:
        session.execute(update(store.OutboxRow).where(store.OutboxRow.id == row_id)
                        .values(**values))
