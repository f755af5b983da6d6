"""The store: registrations, handled inbound mail, the outbox and event versions, in SQL.

SQLAlchemy 2 models, created and upgraded by Alembic (``mailer/migrations``). SQLite by
default, PostgreSQL for larger deployments: nothing here needs SQLite (its one shortcut,
``mark_sent_now``, says False elsewhere and the ordinary path runs). Every state change
and the messages it causes are written in one transaction (``Store.transaction``); the
per-country limit is kept by serialising transactions that touch one event
(``lock_event``: a row lock on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    bindparam,
    create_engine,
    event,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine, Row, make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from mailer.domain import UNREAD_FORWARDED, Kind, Outgoing
from mailer.errors import StoreError, StoreMissing
from mailer.inline_marks import InlineMarks


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the offset otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        return value.astimezone(timezone.utc)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


class Base(DeclarativeBase):
    pass


class Registration(Base):
    """One person's registration for one event."""

    __tablename__ = "registrations"
    __table_args__ = (UniqueConstraint("event_id", "email", name="uq_registration_event_email"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(100), index=True)
    series_id: Mapped[str] = mapped_column(String(100), index=True)
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(300), default="")
    country: Mapped[str | None] = mapped_column(String(2), nullable=True)
    organisation: Mapped[str] = mapped_column(String(300), default="")
    position: Mapped[str] = mapped_column(String(300), default="")
    language: Mapped[str] = mapped_column(String(5), default="en")
    status: Mapped[str] = mapped_column(String(20), index=True)
    certificate_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    attended: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    sequence_seen: Mapped[int] = mapped_column(Integer, default=0)
    # How far their own withdrawals and re-registrations raised their calendar entry's
    # SEQUENCE above the event's (migration 0003); their messages carry event + offset.
    sequence_offset: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The UTC offset in minutes of the Date header of the reply that registered them: it
    # picks their zone in a country with several (None: not known).
    utc_offset: Mapped[int | None] = mapped_column(Integer, nullable=True)
    registered_by: Mapped[str] = mapped_column(String(320), default="")
    source_message_id: Mapped[str] = mapped_column(String(998), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    confirmed_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Inbound(Base):
    """An inbound message that was handled or quarantined: never handled twice."""

    __tablename__ = "inbound"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[str] = mapped_column(String(998), unique=True)
    folder: Mapped[str] = mapped_column(String(200), default="")
    uidvalidity: Mapped[int] = mapped_column(Integer, default=0)
    uid: Mapped[int] = mapped_column(Integer, default=0)
    sender: Mapped[str] = mapped_column(String(320), default="")
    intent: Mapped[str] = mapped_column(String(40), default="")
    event_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    outcome: Mapped[str] = mapped_column(String(20))          # handled | quarantined | failed
    reason: Mapped[str] = mapped_column(Text, default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # failed tries so far
    handled_at: Mapped[datetime] = mapped_column(UtcDateTime())


class OutboxRow(Base):
    """One message to send, keyed so the same message is never enqueued twice."""

    __tablename__ = "outbox"
    # What the drain reads (pending, due, oldest first) in index order, never sorted: see
    # migration 0002.
    __table_args__ = (Index("ix_outbox_due", "status", "next_attempt_at", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(1000), unique=True)
    kind: Mapped[str] = mapped_column(String(40), index=True)
    event_id: Mapped[str | None] = mapped_column(String(100), nullable=True, index=True)
    recipient: Mapped[str] = mapped_column(String(320), index=True)
    name: Mapped[str] = mapped_column(String(300), default="")
    language: Mapped[str] = mapped_column(String(5), default="en")
    country: Mapped[str | None] = mapped_column(String(2), nullable=True)
    sequence: Mapped[int] = mapped_column(Integer, default=0)
    registration_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("registrations.id", ondelete="SET NULL"), nullable=True)
    in_reply_to: Mapped[str | None] = mapped_column(String(998), nullable=True)
    context: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    message_id: Mapped[str] = mapped_column(String(998))
    status: Mapped[str] = mapped_column(String(20))  # pending|sent|failed|missed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime())
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    # The instance that claimed the row to send it (kept once sent: who sent it), and until
    # when its claim holds; another instance may take the row once that moment has passed
    # (see mailer.claims).
    claimed_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class EventVersionRow(Base):
    """The last version of each event seen in the schedules, to raise SEQUENCE on change."""

    __tablename__ = "event_versions"

    event_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    series_id: Mapped[str] = mapped_column(String(100))
    sequence: Mapped[int] = mapped_column(Integer, default=0)
    fingerprint: Mapped[str] = mapped_column(String(64))
    countries: Mapped[list[str]] = mapped_column(JSON, default=list)
    cancelled: Mapped[bool] = mapped_column(Boolean, default=False)
    last_end: Mapped[datetime] = mapped_column(UtcDateTime())
    changed_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # What participants saw of each version ({"1": {"start": ..., "join_url": ...}}), so an
    # update says what changed; and per language the pack files' [digest, version].
    shown: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    packs: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class Cursor(Base):
    """How far the inbox has been read: (folder, UIDVALIDITY, last UID)."""

    __tablename__ = "cursors"

    folder: Mapped[str] = mapped_column(String(200), primary_key=True)
    uidvalidity: Mapped[int] = mapped_column(Integer)
    last_uid: Mapped[int] = mapped_column(Integer)


class Suppression(Base):
    """An address that bounced for good: nothing more is sent to it."""

    __tablename__ = "suppressions"

    email: Mapped[str] = mapped_column(String(320), primary_key=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Instance(Base):
    """A mailer process that uses the store (``mailer run`` or ``mailer once``), for
    ``mailer status``: it says when it started and was last seen, and deletes its row when
    it stops on purpose."""

    __tablename__ = "instances"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    host: Mapped[str] = mapped_column(String(100))
    pid: Mapped[int] = mapped_column(Integer)
    command: Mapped[str] = mapped_column(String(20))        # run | once
    started_at: Mapped[datetime] = mapped_column(UtcDateTime())
    last_seen: Mapped[datetime] = mapped_column(UtcDateTime())


class Lease(Base):
    """A named lease one instance holds at a time (the "leader": reading the inbox, deciding
    replies and planning), until ``until`` unless renewed. The rows exist from the
    migration on, so taking a lease is one UPDATE, never a race between INSERTs."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(100), nullable=True)
    until: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    since: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class SendSlot(Base):
    """The mail server's shared sending rate: the moment of the next free sending slot (a
    token bucket every instance takes its sending slots from, a few at a time)."""

    __tablename__ = "send_slots"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    next_at: Mapped[datetime] = mapped_column(UtcDateTime())


class RetainedCount(Base):
    """A kept count of registrations per event, country and status after personal data is purged."""

    __tablename__ = "retained_counts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    series_id: Mapped[str] = mapped_column(String(100), index=True)
    event_id: Mapped[str] = mapped_column(String(100))
    country: Mapped[str] = mapped_column(String(2), default="")
    status: Mapped[str] = mapped_column(String(20))
    count: Mapped[int] = mapped_column(Integer)
    attended: Mapped[int] = mapped_column(Integer, default=0)
    purged_at: Mapped[datetime] = mapped_column(UtcDateTime())


class AuditEntry(Base):
    """One thing staff did to a registration (or a message): who, when, what and why.

    ``email`` and ``event_id`` say whose registration it was (a REF's number changes when a
    person registers again); ``detail`` names people by REF only, so erasing a person
    (``mailer forget``) or a series (retention) finds everything by ``email``/``event_id``.
    """

    __tablename__ = "audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    actor: Mapped[str] = mapped_column(String(320))
    via: Mapped[str] = mapped_column(String(20))           # command | digest reply
    action: Mapped[str] = mapped_column(String(20))
    ref: Mapped[str] = mapped_column(String(20), default="")
    event_id: Mapped[str | None] = mapped_column(String(100), nullable=True, index=True)
    email: Mapped[str] = mapped_column(String(320), default="", index=True)
    detail: Mapped[str] = mapped_column(Text, default="")
    reason: Mapped[str] = mapped_column(Text, default="")


class DigestRow(Base):
    """One day's digest to staff (``sent`` False: the day had nothing to report)."""

    __tablename__ = "digests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    day: Mapped[str] = mapped_column(String(10), unique=True)   # the staff's local date
    made_at: Mapped[datetime] = mapped_column(UtcDateTime())
    since: Mapped[datetime] = mapped_column(UtcDateTime())
    sent: Mapped[bool] = mapped_column(Boolean, default=False)
    items: Mapped[int] = mapped_column(Integer, default=0)


class QuarantinedMail(Base):
    """The bytes of a quarantined message (its first ``retention.quarantine_keep_bytes``), so
    staff can read it (``mailer quarantine --show``) and hand it back (``--release``)."""

    __tablename__ = "quarantined_mail"

    message_id: Mapped[str] = mapped_column(String(998), primary_key=True)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(Integer)          # the whole message's size
    kept_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)


def storable(value: str, length: int | None = None) -> str:
    """``value`` as every database stores it: without NUL characters (PostgreSQL refuses them
    in text), with "?" for what UTF-8 cannot encode (lone surrogates from undecodable mail),
    and cut to ``length`` characters (PostgreSQL refuses longer values; SQLite would keep
    them, so both stores keep the same)."""
    if "\x00" in value:
        value = value.replace("\x00", "")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            value = value.encode("utf-8", "replace").decode("utf-8")
    return value[:length] if length is not None and len(value) > length else value


class Storable(TypeDecorator[str]):
    """A text column whose values are made ``storable`` on the way in, for every statement
    (ORM or Core, written or compared), so no text from mail can make a write fail."""

    impl = String
    cache_ok = True

    def __init__(self, length: int | None = None, long: bool = False) -> None:
        super().__init__(length)
        self.long = long
        if long:
            self.impl = Text()      # the column's own type: migrations see no change

    def process_bind_param(self, value: str | None, dialect: Any) -> str | None:
        return storable(value, self.impl.length) if isinstance(value, str) else value


# Every text column of the store, this module's and any added later, takes only what the
# databases accept (``storable``): a message that PostgreSQL refused a value of (a NUL byte,
# a name too long) failed every pass, and the inbox stopped behind it. Values that identify
# something are kept within bounds before they get here (``handling.message_key``, and the
# addresses an answer goes to), so the cut never merges two of them.
for _table in Base.metadata.tables.values():
    for _column in _table.columns:
        if isinstance(_column.type, String) and not isinstance(_column.type, Storable):
            _column.type = Storable(_column.type.length, long=isinstance(_column.type, Text))

_outbox = OutboxRow.__table__
# Built once: SQLAlchemy then finds the compiled form in its cache at every send.
_MARK_SENT = (update(_outbox).where(_outbox.c.id.in_(bindparam("ids", expanding=True)))
              .values(status="sent", sent_at=bindparam("now"), attempts=_outbox.c.attempts + 1))


def make_engine(url: str) -> Engine:
    """An engine for ``url``; on SQLite, WAL, a busy timeout and writer-serialising BEGINs."""
    if url.startswith("sqlite:///") and ":memory:" not in url:
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    is_sqlite = url.startswith("sqlite")
    # Handling runs in worker threads (asyncio.to_thread); each uses its own pooled connection.
    engine = create_engine(url, connect_args={"check_same_thread": False} if is_sqlite else {})
    if is_sqlite:
        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            # Purged personal data must not linger in free pages of the file.
            cursor.execute("PRAGMA secure_delete=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            # IMMEDIATE takes the write lock at BEGIN, so two deciders never both see the
            # last free seat: SQLite's answer to PostgreSQL's SELECT ... FOR UPDATE.
            conn.exec_driver_sql("BEGIN IMMEDIATE")
    return engine


class Store:
    """The database: opened from a SQLAlchemy URL, migrated by Alembic."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # A file, not an in-memory database: a second connection to that would open another,
        # empty one (and detaching it from the pool would take the store's own).
        database = self.engine.url.database or ":memory:"
        on_file = database != ":memory:" and "mode=memory" not in str(self.engine.url)
        self._inline = (InlineMarks(self.engine, _outbox)
                        if self.engine.dialect.name == "sqlite" and on_file else None)
        # Messages the mail server accepted whose record as sent failed (a full disk, a
        # database refusing writes), with the moment each went: ``outbox.drain`` records
        # them before this process sends anything else.
        self.unrecorded: dict[int, datetime] = {}

    def migrate(self) -> None:
        """Create or upgrade the schema to the newest Alembic revision."""
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        try:
            with self.engine.begin() as connection:
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
        except DBAPIError as exc:
            # The first connection of every command and of the daemon: SQLite's "unable to
            # open database file" names no file, and the operator needs to know which one.
            error = store_error(exc)
            database = self.engine.url.database
            if error is None or self.engine.dialect.name != "sqlite" or not database \
                    or database == ":memory:":
                raise
            raise StoreError(f"{error} ({Path(database).resolve()})") from exc

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back on any error."""
        with self._sessions() as session, session.begin():
            yield session

    def mark_sent(self, row_ids: Sequence[int], now: datetime, conn: Connection) -> None:
        """Record accepted messages in one short transaction on ``conn`` (kept by the caller:
        no pool checkout and no ORM session for what runs every few messages sent)."""
        with conn.begin():
            conn.execute(_MARK_SENT, {"ids": list(row_ids), "now": now})

    def mark_sent_now(self, row_ids: Sequence[int], now: datetime) -> bool:
        """Record accepted messages on the caller's thread if that cannot wait: on SQLite, when
        the write lock is free this instant. False, having done nothing, otherwise (the lock
        is taken; PostgreSQL, where every commit is a network round trip): use ``mark_sent``
        in a worker thread."""
        return self._inline is not None and self._inline.mark(row_ids, now)

    def close(self) -> None:
        if self._inline is not None:
            self._inline.close()
        self.engine.dispose()


def store_error(exc: BaseException) -> StoreError | None:
    """The one-line StoreError a database failure stands for; None for any other error.

    SQLAlchemy's own text runs over several lines (the statement, its parameters, a link),
    which may hold personal data; the driver's message is the part people act on
    ("database or disk is full").
    """
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        text = str(exc.orig)
    elif isinstance(exc, SQLAlchemyError | sqlite3.Error):
        text = str(exc)
    else:
        return None
    lines = text.strip().splitlines()
    error = StoreError(f"the store failed: {lines[0] if lines else type(exc).__name__}")
    error.__cause__ = exc
    return error


def missing_file(url: str) -> Path | None:
    """The SQLite file ``url`` names, when it does not exist yet (else None; None too for
    PostgreSQL, which never creates a database on connecting, and in-memory SQLite).

    Opening such a URL would create a new, empty store there: a typo in ``store.url``, a
    folder not mounted or a ``MAILER_STORE__URL`` missing from cron's environment would then
    look like a first start, and every invitation would go out again. So only ``mailer once``
    and ``mailer run`` create a store, and only when asked (``--new-store``).
    """
    parsed = make_url(url)
    database = parsed.database
    if not parsed.drivername.startswith("sqlite") or not database or database == ":memory:" \
            or database.startswith("file:") or parsed.query.get("mode") == "memory":
        return None
    path = Path(database)
    return None if path.exists() else path.resolve()


def no_store(path: Path) -> StoreMissing:
    """The one line that says a store file is missing, and what to do about it."""
    return StoreMissing(f"store.url names {path}, which does not exist: check store.url (and "
                        "MAILER_STORE__URL); to start a new, empty store there, run `mailer "
                        "once --new-store` (or `mailer run --new-store`)")


@contextmanager
def command_transaction(url: str) -> Iterator[Session]:
    """For a command that runs once: open (and migrate) the store, one transaction, close.

    A SQLite file that does not exist is not created (``missing_file``): StoreMissing."""
    path = missing_file(url)
    if path is not None:
        raise no_store(path)
    st = Store(url)
    try:
        st.migrate()
        with st.transaction() as session:
            yield session
    finally:
        st.close()


def lock_event(session: Session, event_id: str) -> None:
    """Serialise deciders for one event until the transaction ends.

    PostgreSQL: a transaction-scoped advisory lock on the event id (no row needs to exist).
    SQLite needs nothing: ``BEGIN IMMEDIATE`` already serialises every writer.
    """
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:id))"), {"id": event_id})


# --- inbound -----------------------------------------------------------------------------

class _Unknown(Enum):
    """Says "not looked up yet" where None means "looked up: there is none"."""

    LOOK_UP = "look up"


LOOK_UP = _Unknown.LOOK_UP


# The queries run for every inbound message are built once: building a statement costs
# more than SQLite takes to run it.
_INBOUND_OF = select(Inbound.id, Inbound.outcome, Inbound.attempts).where(
    Inbound.message_id == bindparam("message_id"))
_EVENT_SEQUENCE = select(EventVersionRow.sequence).where(
    EventVersionRow.event_id == bindparam("event_id"))
_ANSWER_LIMITS = union_all(
    select(Suppression.email, literal("suppressed"), literal(0))
    .where(Suppression.email.in_(bindparam("answered", expanding=True))),
    select(OutboxRow.recipient, literal("answered"), func.count(OutboxRow.id))
    .where(OutboxRow.recipient.in_(bindparam("rationed", expanding=True)),
           OutboxRow.kind.in_(bindparam("kinds", expanding=True)),
           OutboxRow.created_at >= bindparam("since"))
    .group_by(OutboxRow.recipient))
_INSERT_INBOUND = insert(Inbound.__table__)
_UPDATE_INBOUND = update(Inbound.__table__).where(Inbound.__table__.c.id == bindparam("row_id"))


def inbound_of(session: Session, message_id: str) -> Row[Any] | None:
    """The record (id, outcome, attempts) of the message with this Message-ID, or None.

    Deciding a message reads it once and hands it to ``record_inbound`` (``row=``): the
    duplicate check and the record then cost one query instead of two. Columns, not an ORM
    object: the record is written back with one UPDATE, without the unit of work.
    """
    return session.execute(_INBOUND_OF, {"message_id": message_id}).first()


# Outcomes of a message that is still to be handled: a failed try (tried again), or a claim
# that no outcome replaced (the pass handling it died: counted as a try on the next pass).
_NOT_DONE = ("failed", "claimed")


def handled_before(record: Row[Any] | None) -> bool:
    """True when ``inbound_of`` found the message handled or quarantined before."""
    return record is not None and record.outcome not in _NOT_DONE


def claim(session: Session, message_ids: Iterable[str], now: datetime) -> set[str]:
    """Mark messages about to be handled, in one transaction; return those already claimed.

    A claim still there when a pass fetches the message again means the pass that made it
    died while handling it or before reaching it (a crash, not an error: errors are
    recorded as "failed"). Like the claim of Mailman's switchboard, it lets a message that
    kills the process be counted and set aside instead of killing every restart.
    """
    wanted = list(dict.fromkeys(message_ids))
    if not wanted:
        return set()
    known = {message_id: outcome for message_id, outcome in session.execute(
        select(Inbound.message_id, Inbound.outcome).where(Inbound.message_id.in_(wanted)))}
    new = [{"message_id": m, "folder": "", "uidvalidity": 0, "uid": 0, "sender": "",
            "intent": "", "event_id": None, "outcome": "claimed", "reason": "", "attempts": 0,
            "handled_at": now} for m in wanted if m not in known]
    if new:
        session.connection().execute(_INSERT_INBOUND, new)
    failed = [m for m in wanted if known.get(m) == "failed"]
    if failed:
        session.execute(update(Inbound).where(Inbound.message_id.in_(failed))
                        .values(outcome="claimed"))
    return {m for m in wanted if known.get(m) == "claimed"}


def count_crash(session: Session, message_id: str) -> int:
    """Count one more try of a claimed message that a pass did not live through; return tries."""
    row = inbound_of(session, message_id)
    if row is None or row.outcome != "claimed":
        return 0
    tries = (row.attempts or 0) + 1
    session.execute(update(Inbound).where(Inbound.id == row.id).values(attempts=tries))
    return tries


def release(session: Session, message_ids: Iterable[str]) -> None:
    """Withdraw the claims a pass stopped on purpose left unused (not a crash: not a try)."""
    wanted = list(message_ids)
    if not wanted:
        return
    for row in session.scalars(select(Inbound).where(Inbound.message_id.in_(wanted),
                                                     Inbound.outcome == "claimed")):
        if row.attempts:
            row.outcome = "failed"
        else:
            session.delete(row)


def record_inbound(session: Session, *, message_id: str, outcome: str, now: datetime,
                   folder: str = "", uidvalidity: int = 0, uid: int = 0, sender: str = "",
                   intent: str = "", event_id: str | None = None, reason: str = "",
                   row: Row[Any] | None | _Unknown = LOOK_UP) -> int:
    """Remember what became of a message, in the caller's transaction; return its tries.

    ``outcome`` "failed" counts one more failed try of a message that will be tried again.
    ``row`` is what ``inbound_of`` gave in this transaction (None: no record yet).
    """
    if isinstance(row, _Unknown):
        row = inbound_of(session, message_id)
    if row is None:
        # The usual case, a message seen for the first time: one plain INSERT, without the
        # ORM's unit of work (nothing reads the row back in this transaction but through SQL).
        attempts = 1 if outcome == "failed" else 0
        session.connection().execute(_INSERT_INBOUND, {
            "message_id": message_id, "folder": folder, "uidvalidity": uidvalidity, "uid": uid,
            "sender": sender, "intent": intent, "event_id": event_id, "outcome": outcome,
            "reason": reason[:2000], "attempts": attempts, "handled_at": now})
        return attempts
    attempts = (row.attempts or 0) + (outcome == "failed")
    session.connection().execute(_UPDATE_INBOUND, {
        "row_id": row.id, "folder": folder, "uidvalidity": uidvalidity, "uid": uid,
        "sender": sender, "intent": intent, "event_id": event_id, "outcome": outcome,
        "reason": reason[:2000], "attempts": attempts, "handled_at": now})
    return attempts


def event_sequence(session: Session, event_id: str) -> int:
    """The SEQUENCE recorded for an event (0 before its first sync)."""
    return session.scalar(_EVENT_SEQUENCE, {"event_id": event_id}) or 0


def answer_limits(session: Session, answered: Iterable[str], rationed: Iterable[str],
                  kinds: Iterable[str], since: datetime) -> tuple[set[str], dict[str, int]]:
    """What limits the answers of one decision, in one query: which of the ``answered``
    addresses are suppressed (lower-cased), and how many answers of ``kinds`` each of the
    ``rationed`` addresses got since ``since`` (0 when none)."""
    answered, rationed = sorted(set(answered)), sorted(set(rationed))
    suppressed: set[str] = set()
    counts = dict.fromkeys(rationed, 0)
    if not answered and not rationed:
        return suppressed, counts
    for address, what, sent in session.execute(_ANSWER_LIMITS, {
            "answered": [a.lower() for a in answered], "rationed": rationed,
            "kinds": sorted(str(k) for k in kinds), "since": since}):
        if what == "suppressed":
            suppressed.add(address)
        else:
            counts[address] = sent
    return suppressed, counts


def questions_from(session: Session, sender: str, since: datetime) -> int:
    """How many questions ``sender`` sent since ``since`` (each counts against their ration)."""
    return session.scalar(_QUESTIONS_FROM, {"sender": sender, "since": since}) or 0


# Questions, and the unreadable replies handed to staff as questions are.
_QUESTIONS_FROM = select(func.count(Inbound.id)).where(
    Inbound.sender == bindparam("sender"),
    or_(Inbound.intent == "question", Inbound.reason.contains(UNREAD_FORWARDED)),
    Inbound.outcome == "handled", Inbound.handled_at >= bindparam("since"))


def get_cursor(session: Session, folder: str) -> Cursor | None:
    return session.get(Cursor, folder)


def set_cursor(session: Session, folder: str, uidvalidity: int, last_uid: int) -> None:
    row = session.get(Cursor, folder)
    if row is None:
        session.add(Cursor(folder=folder, uidvalidity=uidvalidity, last_uid=last_uid))
    else:
        row.uidvalidity, row.last_uid = uidvalidity, last_uid


# --- registrations -----------------------------------------------------------------------

def registrations_of(session: Session, event_id: str) -> list[Registration]:
    """Every registration of one event, oldest first (the waiting-list order)."""
    return list(session.scalars(select(Registration).where(Registration.event_id == event_id)
                                .order_by(Registration.created_at, Registration.id)))


def all_registrations(session: Session, event_ids: Iterable[str] | None = None
                      ) -> list[Registration]:
    query = select(Registration).order_by(Registration.event_id, Registration.created_at,
                                          Registration.id)
    if event_ids is not None:
        query = query.where(Registration.event_id.in_(list(event_ids)))
    return list(session.scalars(query))


# --- outbox ------------------------------------------------------------------------------

def enqueue(session: Session, items: Iterable[Outgoing], *, now: datetime, domain: str,
            status: str = "pending", reason: str = "") -> int:
    """Add messages to the outbox, skipping any whose key is already there; return how many.

    ``INSERT ... ON CONFLICT (key) DO NOTHING`` (SQLite and PostgreSQL both have it), so a key
    inserted concurrently by another process is skipped instead of failing the transaction.
    """
    # Executemany with RETURNING, built once and run as Core on the session's connection:
    # the ORM's bulk path cost a third of a decision's transaction for the same INSERT. In
    # slices of a thousand rows, so planning a burst of 50,000 never holds them all twice.
    connection = session.connection()
    statement = _ENQUEUE["postgresql" if connection.dialect.name == "postgresql" else "sqlite"]
    seen: set[str] = set()
    added = 0
    part: list[dict[str, Any]] = []
    for out in items:
        if out.key in seen:
            continue                # the first of a repeated key wins
        seen.add(out.key)
        part.append(dict(
            key=out.key, kind=str(out.kind), event_id=out.event_id, recipient=out.recipient,
            name=out.name, language=out.language, country=out.country, sequence=out.sequence,
            registration_id=out.registration_id, in_reply_to=out.in_reply_to,
            context=dict(out.context), message_id=out.message_id(domain), status=status,
            attempts=0, next_attempt_at=out.due_at or now, last_error=reason, created_at=now,
            sent_at=None))
        if len(part) == _ENQUEUE_SLICE:
            added += len(connection.execute(statement, part).all())
            part = []
    if part:
        added += len(connection.execute(statement, part).all())
    return added


_ENQUEUE_SLICE = 1000
_ENQUEUE = {
    name: insert(OutboxRow.__table__).on_conflict_do_nothing(index_elements=["key"])
    .returning(OutboxRow.__table__.c.id)
    for name, insert in (("sqlite", sqlite_insert), ("postgresql", pg_insert))}


def outbox_keys(session: Session, event_ids: Iterable[str] | None = None) -> set[str]:
    """Every key in the outbox (of these events), whatever its status: planned once means
    planned."""
    query = select(OutboxRow.key)
    if event_ids is not None:
        query = query.where(OutboxRow.event_id.in_(list(event_ids)))
    return set(session.scalars(query))


# Pending and due at ``now`` (whether or not some instance has claimed it: see mailer.claims,
# which takes the rows; the index on (status, next_attempt_at, id) gives them in order).
IS_DUE = (OutboxRow.status == "pending", OutboxRow.next_attempt_at <= bindparam("now"))
_COUNT_DUE = select(func.count()).select_from(OutboxRow).where(*IS_DUE)


def count_due(session: Session, now: datetime) -> int:
    """How many pending messages are due at ``now``."""
    return session.scalar(_COUNT_DUE, {"now": now}) or 0


def next_pending_at(session: Session) -> datetime | None:
    return session.scalar(select(func.min(OutboxRow.next_attempt_at))
                          .where(OutboxRow.status == "pending"))


def row_to_outgoing(row: Row[Any]) -> Outgoing:
    """The Outgoing an outbox row stands for (what compose needs; ``claims.claim_due``
    gives the rows)."""
    return Outgoing(key=row.key, kind=Kind(row.kind), recipient=row.recipient,
                    language=row.language, event_id=row.event_id, name=row.name,
                    country=row.country, sequence=row.sequence, in_reply_to=row.in_reply_to,
                    due_at=row.next_attempt_at, registration_id=row.registration_id,
                    context=dict(row.context or {}))


def suppressed_among(session: Session, emails: Iterable[str]) -> set[str]:
    """Which of ``emails`` (lower-cased) bounced for good, in one query."""
    wanted = sorted({e.lower() for e in emails})
    if not wanted:
        return set()
    return set(session.scalars(_SUPPRESSED_AMONG, {"emails": wanted}))


_SUPPRESSED_AMONG = select(Suppression.email).where(
    Suppression.email.in_(bindparam("emails", expanding=True)))


def registration_statuses(session: Session, pairs: Iterable[tuple[str, str]]
                          ) -> dict[tuple[str, str], str]:
    """The status of the registration of each (event id, lower-cased email) pair, in one
    query; a pair nobody is registered as is left out."""
    wanted = set(pairs)
    if not wanted:
        return {}
    rows = session.execute(select(Registration.event_id, Registration.email,
                                  Registration.status).where(
        Registration.event_id.in_(sorted({event for event, _ in wanted})),
        Registration.email.in_(sorted({email for _, email in wanted}))))
    return {(event, email): status for event, email, status in rows
            if (event, email) in wanted}


def suppress(session: Session, email: str, reason: str, now: datetime) -> None:
    """Stop sending to ``email``; the first reason stays. ``ON CONFLICT DO NOTHING``: two
    messages to one address refused at once (two connections) both suppress it, and the
    second must not fail its transaction (it did, on PostgreSQL, with a read-then-insert)."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    session.execute(insert(Suppression).values(email=email.lower(), reason=reason[:2000],
                                               created_at=now)
                    .on_conflict_do_nothing(index_elements=["email"]))
