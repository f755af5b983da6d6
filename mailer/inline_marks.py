"""Marking accepted messages sent on SQLite from the event loop's own thread, lock permitting.

The sender records every accepted message before its connection sends the next one, so in
a burst that record is on every message's path. Through a worker thread it costs two thread
hops and a fight for the interpreter lock per commit; done inline, the 10,000-reminder
burst ran at 1.26 ms per message instead of 1.50 (medians of seven alternating runs). Inline
is safe only when nothing makes the event loop wait, so this connection never waits for
SQLite's write lock (``busy_timeout`` 0): when another writer holds it (a reply being
decided, a purge), ``mark`` says False at once and the caller commits in a thread instead.

Plain ``sqlite3`` on purpose: SQLAlchemy's begin, event and commit machinery cost more
than the commit itself (0.25 ms against 0.09 ms of CPU per commit of four rows).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Table
from sqlalchemy.engine import Engine


class InlineMarks:
    """One SQLite connection that marks outbox rows sent, or declines when the lock is taken.

    Opened on first use and kept for the store's life; ``close`` ends it.
    """

    def __init__(self, engine: Engine, outbox: Table) -> None:
        self._engine = engine
        # The dialect's own conversion, so the text stored is the one SQLAlchemy stores.
        self._stamp = outbox.c.sent_at.type.dialect_impl(engine.dialect).bind_processor(
            engine.dialect)
        self._update = (f"UPDATE {outbox.name} SET status = 'sent', sent_at = ?, "
                        "attempts = attempts + 1 WHERE id IN ({})")
        self._db: Any = None        # detached from the pool: its busy_timeout is ours
        # The store is shared by threads; this connection is for one caller at a time, and
        # a second one simply takes the ordinary path.
        self._busy = threading.Lock()

    def mark(self, row_ids: Sequence[int], now: datetime) -> bool:
        """Mark ``row_ids`` sent at ``now`` and commit; False, having done nothing, if SQLite's
        write lock is not free this instant. Other database errors raise."""
        if not row_ids or not self._busy.acquire(blocking=False):
            return False
        try:
            db = self._connection()
            try:
                db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY:
                    return False
                raise
            try:
                stamp = self._stamp(now) if self._stamp else now
                db.execute(self._update.format(", ".join("?" * len(row_ids))),
                           (stamp, *row_ids))
                db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                raise
            return True
        finally:
            self._busy.release()

    def close(self) -> None:
        """Close the connection (a later ``mark`` opens a new one)."""
        with self._busy:
            if self._db is not None:
                self._db.close()
                self._db = None

    def _connection(self) -> Any:
        if self._db is None:
            # From the engine, so the store's connect-time settings (WAL, foreign keys,
            # secure_delete) apply; detached, so the pool never hands out a connection that
            # gives up on a lock at once.
            proxy = self._engine.raw_connection()
            proxy.detach()
            self._db = proxy.dbapi_connection       # pysqlite's: the sqlite3 connection
            self._db.execute("PRAGMA busy_timeout=0")
        return self._db
