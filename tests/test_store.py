"""The store: migrations match the models, one outbox row per key, failing mail set aside."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, select

from mailer import handling, store
from mailer.domain import Kind, Outgoing, outbox_key
from mailer.handling import Policy, handle
from tests.builders import make_catalog, store_at

NOW = datetime(2020, 7, 1, 12, 0, tzinfo=timezone.utc)


def test_the_migrations_build_exactly_the_models_schema(st: store.Store) -> None:
    """After ``alembic upgrade head`` nothing differs between the database and the models."""
    with st.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), store.Base.metadata)
    assert diff == []


def test_migrating_twice_is_harmless(st: store.Store) -> None:
    """Starting the daemon again on an up-to-date database changes nothing."""
    st.migrate()
    with st.transaction() as session:
        assert session.scalar(select(func.count()).select_from(store.OutboxRow)) == 0


def test_the_outbox_keeps_one_row_per_key(st: store.Store) -> None:
    """Enqueuing the same message twice, in one call or two, stores it once."""
    out = Outgoing(key=outbox_key(Kind.REMINDER, "a@x.org", "ev", 0, "1d"), kind=Kind.REMINDER,
                   recipient="a@x.org", language="fr", event_id="ev")
    with st.transaction() as session:
        assert store.enqueue(session, [out, out], now=NOW, domain="example.org") == 1
    with st.transaction() as session:
        assert store.enqueue(session, [out], now=NOW, domain="example.org") == 0
        (row,) = session.scalars(select(store.OutboxRow)).all()
    assert row.message_id == out.message_id("example.org")
    assert row.next_attempt_at == NOW


def test_a_burst_bigger_than_one_insert_is_stored_whole_once_per_key(st: store.Store) -> None:
    """2,500 reminders (past the 1,000 rows of one INSERT) with one repeated across slices are
    stored once each, the first of the repeated key winning."""
    outs = [Outgoing(key=f"reminder-{n}", kind=Kind.REMINDER, recipient=f"p{n}@x.org",
                     language="fr", event_id="ev") for n in range(2500)]
    repeat = Outgoing(key="reminder-3", kind=Kind.REMINDER, recipient="late@x.org",
                      language="en", event_id="ev")
    with st.transaction() as session:
        assert store.enqueue(session, [*outs[:1500], repeat, *outs[1500:]], now=NOW,
                             domain="example.org") == 2500
    with st.transaction() as session:
        assert session.scalar(select(func.count()).select_from(store.OutboxRow)) == 2500
        assert session.scalar(select(store.OutboxRow.recipient)
                              .where(store.OutboxRow.key == "reminder-3")) == "p3@x.org"


def test_a_message_that_keeps_failing_is_quarantined_after_three_tries(
        st: store.Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reply that makes handling fail is tried again, then set aside with its reason."""
    catalog = make_catalog(tmp_path)
    policy = Policy(inbox_address="webinars@example.org", staff_address="staff@example.org",
                    domain="example.org")

    def broken(*args: object, **kwargs: object) -> None:
        raise ValueError("a bug in the rules")

    monkeypatch.setattr(handling, "decide", broken)
    raw = (b"From: a@gouv.sn\r\nTo: webinars+africa-fr@example.org\r\nSubject: x\r\n"
           b"Message-ID: <poison@x>\r\n\r\nName: A\r\nCountry: Senegal\r\n")
    outcomes = [handle(st, catalog, raw, now=NOW, policy=policy).outcome for _ in range(4)]
    assert outcomes == ["failed", "failed", "quarantined", "duplicate"]
    with st.transaction() as session:
        (row,) = session.scalars(select(store.Inbound)).all()
    assert row.outcome == "quarantined" and "a bug in the rules" in row.reason


def test_a_claim_left_by_a_pass_is_found_and_only_a_counted_crash_is_a_try(
        st: store.Store) -> None:
    """Claims mark messages in hand; one found again is a survivor; a release forgets the rest."""
    with st.transaction() as session:
        assert store.claim(session, ["<a@x>", "<b@x>"], NOW) == set()
    with st.transaction() as session:
        assert not store.handled_before(store.inbound_of(session, "<a@x>"))  # only claimed
        assert store.claim(session, ["<a@x>", "<b@x>"], NOW) == {"<a@x>", "<b@x>"}
    with st.transaction() as session:
        assert store.count_crash(session, "<a@x>") == 1
    with st.transaction() as session:
        store.release(session, ["<a@x>", "<b@x>"])
    with st.transaction() as session:
        rows = {r.message_id: (r.outcome, r.attempts)
                for r in session.scalars(select(store.Inbound))}
    # <a@x> keeps its counted try (as a failed one); <b@x> was never tried: no trace.
    assert rows == {"<a@x>": ("failed", 1)}


def _three_pending(st: store.Store) -> list[int]:
    outs = [Outgoing(key=outbox_key(Kind.REMINDER, f"p{n}@x.org", "ev", 0, "1d"),
                     kind=Kind.REMINDER, recipient=f"p{n}@x.org", language="fr", event_id="ev")
            for n in range(3)]
    with st.transaction() as session:
        store.enqueue(session, outs, now=NOW, domain="example.org")
        return list(session.scalars(select(store.OutboxRow.id).order_by(store.OutboxRow.id)))


def _marks(st: store.Store) -> list[tuple[object, ...]]:
    with st.engine.connect() as conn:
        return [tuple(r) for r in conn.exec_driver_sql(
            "SELECT status, sent_at, attempts FROM outbox ORDER BY id")]


def test_marking_sent_at_once_writes_what_the_ordinary_commit_writes(st: store.Store) -> None:
    """On SQLite the inline mark stores the same status, time and count as ``mark_sent``;
    on PostgreSQL it declines and leaves the rows alone."""
    first, second, third = _three_pending(st)
    with st.engine.connect() as conn:
        st.mark_sent([first], NOW, conn)
    inline = st.mark_sent_now([second, third], NOW)
    marks = _marks(st)
    if st.engine.dialect.name == "sqlite":
        assert inline is True
        assert marks[1] == marks[2] == marks[0]
        assert marks[0][0] == "sent" and marks[0][2] == 1
        with st.transaction() as session:
            stamps = set(session.scalars(select(store.OutboxRow.sent_at)))
        assert stamps == {NOW}
    else:
        assert inline is False
        assert marks[1] == marks[2] == ("pending", None, 0)


def test_marking_sent_at_once_declines_while_another_writer_holds_the_lock(
        tmp_path: Path) -> None:
    """With SQLite's write lock taken elsewhere the inline mark says False at once, changes
    nothing, and works again once the lock is free."""
    st = store.Store(f"sqlite:///{tmp_path}/m.db")
    st.migrate()
    (row, *_) = _three_pending(st)
    holder = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        assert st.mark_sent_now([row], NOW) is False
    finally:
        holder.execute("COMMIT")
        holder.close()
    assert _marks(st)[0] == ("pending", None, 0)
    assert st.mark_sent_now([row], NOW) is True
    assert _marks(st)[0][0] == "sent"
    st.close()


def test_claiming_what_is_due_walks_one_index_and_never_sorts(tmp_path: Path) -> None:
    """SQLite finds the rows a drain claims through ``ix_outbox_due``, in its order."""
    from mailer import claims

    st = store.Store(f"sqlite:///{tmp_path}/m.db")
    st.migrate()
    compiled = claims._CLAIM["sqlite"].compile(dialect=st.engine.dialect)
    values = compiled.construct_params({
        "now": "2020-07-01 12:00:00.000000", "clock": "2026-07-01 12:00:00.000000",
        "limit": 200, "holder": "me", "until": "2026-07-01 12:00:30.000000"})
    with st.engine.connect() as conn:
        plan = " / ".join(row[-1] for row in conn.exec_driver_sql(
            f"EXPLAIN QUERY PLAN {compiled}",
            tuple(values[name] for name in compiled.positiontup or ())))
    st.close()
    assert "ix_outbox_due" in plan and "TEMP B-TREE" not in plan, plan


def test_an_outbox_made_before_the_due_index_keeps_its_rows_when_upgraded(
        tmp_path: Path) -> None:
    """Upgrading a store from revision 0001 adds the index and loses no message."""
    st = store_at(f"sqlite:///{tmp_path}/m.db", "0001")
    (row, *_) = _three_pending(st)
    st.migrate()
    with st.engine.connect() as conn:
        indexes = {r[1] for r in conn.exec_driver_sql("PRAGMA index_list(outbox)")}
    assert "ix_outbox_due" in indexes and "ix_outbox_status" not in indexes
    from mailer import claims

    with st.transaction() as session:
        due = claims.claim_due(session, now=NOW, clock=NOW, limit=10, holder="me",
                               until=NOW + timedelta(seconds=30))
    assert [r.id for r in due][0] == row and len(due) == 3
    st.close()


def test_an_in_memory_store_records_sent_messages_the_ordinary_way() -> None:
    """With ``sqlite://`` (one in-memory database per connection) the inline mark declines,
    and the store's own connection still sees its rows."""
    st = store.Store("sqlite://")
    st.migrate()
    (row, *_) = _three_pending(st)
    assert st.mark_sent_now([row], NOW) is False
    with st.engine.connect() as conn:
        st.mark_sent([row], NOW, conn)
    assert _marks(st)[0][0] == "sent"
    st.close()
