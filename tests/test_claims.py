"""Claims, leases and the shared rate on SQLite and PostgreSQL (``mailer.claims``,
``mailer.cluster``), and the drain and passes built on them, in one process.

The tests with several real processes are in tests/test_cluster.py and tests/test_chaos.py.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from itertools import pairwise
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select, update

from mailer import claims, store
from mailer.cli import cli
from mailer.cluster import Cluster, SharedRate
from mailer.compose import Composer
from mailer.config import Cluster as ClusterSettings
from mailer.config import Organiser, Paths, Settings, Store, load_settings
from mailer.daemon import Mailer, run_once
from mailer.errors import ConfigError, LeaseLost
from mailer.handling import Policy, handle
from mailer.outbox import drain
from mailer.schedule import load_catalog
from mailer.smtp import Sender
from tests.instances import (
    INBOX,
    NOW,
    ROOT,
    STAFF,
    enqueue_reminders,
    registration,
    worst_excess,
)
from tests.servers.imap import ImapServer
from tests.servers.smtp import SmtpSink, smtp_settings
from tests.test_daemon import EVENT, write_live_schedule
from tests.test_series import append, reply, write_schedule

CLOCK = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)    # the store's real time


def later(seconds: float) -> datetime:
    return CLOCK + timedelta(seconds=seconds)


def claim(st: store.Store, holder: str, limit: int, clock: datetime = CLOCK,
          lease: float = 30) -> list[int]:
    with st.transaction() as session:
        return [r.id for r in claims.claim_due(session, now=NOW, clock=clock, limit=limit,
                                               holder=holder, until=clock + timedelta(
                                                   seconds=lease))]


def test_claimers_at_the_same_time_never_share_a_row(st: store.Store) -> None:
    """Four threads claiming 7 rows at a time until none is left: 200 rows, each claimed by
    exactly one of them (PostgreSQL's SKIP LOCKED lets them claim side by side)."""
    enqueue_reminders(st.url, 200)
    taken: dict[str, list[int]] = {}

    def claimer(name: str) -> None:
        mine = taken.setdefault(name, [])
        while batch := claim(st, name, 7):
            mine += batch

    threads = [threading.Thread(target=claimer, args=(f"i{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    every = [row for rows in taken.values() for row in rows]
    assert len(every) == len(set(every)) == 200
    with st.transaction() as session:
        holders = {row.id: row.claimed_by for row in session.execute(
            select(store.OutboxRow.id, store.OutboxRow.claimed_by))}
    assert all(holders[row] == name for name, rows in taken.items() for row in rows)


def test_on_postgresql_a_claim_walks_the_due_index_and_finds_rows_by_key(
        postgres_url: str) -> None:
    """A burst of 20,000 enqueued into an outbox never analysed yet (a new installation;
    autovacuum analyses a minute later), the first 200 claimed: the next claim neither
    sorts the pending rows nor scans the whole outbox (it did both: 42 ms a claim)."""
    enqueue_reminders(postgres_url, 20000)
    st = store.Store(postgres_url)
    claim(st, "first", 200)
    statement = claims._CLAIM["postgresql"].compile(dialect=st.engine.dialect)
    with st.transaction() as session:
        claims.walk_the_index(session)
        plan = "\n".join(row[0] for row in session.connection().exec_driver_sql(
            f"EXPLAIN {statement}", statement.construct_params({
                "now": NOW, "clock": CLOCK, "limit": 200, "holder": "me",
                "until": later(30)})))
    st.close()
    assert "ix_outbox_due" in plan and "outbox_pkey" in plan, plan
    assert "Sort" not in plan and "Seq Scan" not in plan, plan


def test_a_claim_passes_to_another_instance_only_once_it_expired(st: store.Store) -> None:
    """Rows claimed for 30 s are nobody else's until then; after it, another instance takes
    them, and the first one's renewal finds it no longer holds them."""
    enqueue_reminders(st.url, 5)
    first = claim(st, "a", 10)
    assert len(first) == 5
    assert claim(st, "b", 10, clock=later(29)) == []
    with st.transaction() as session:
        assert claims.renew_claims(session, first[:2], "a", later(60)) == set(first[:2])
    assert sorted(claim(st, "b", 10, clock=later(31))) == first[2:]   # renewed ones stay a's
    with st.transaction() as session:
        assert claims.renew_claims(session, first, "a", later(90)) == set(first[:2])


def test_rows_given_back_are_free_at_once_and_sent_rows_never_return(
        st: store.Store) -> None:
    enqueue_reminders(st.url, 4)
    rows = claim(st, "a", 10)
    with st.engine.connect() as conn:
        st.mark_sent(rows[:1], NOW, conn)
    with st.transaction() as session:
        claims.release_claims(session, rows, "a")
    assert sorted(claim(st, "b", 10)) == rows[1:]


def test_one_leader_at_a_time_until_its_lease_runs_out(st: store.Store) -> None:
    """The leader's lease: one holder; renewals keep its start; free once expired or given up."""
    def take(holder: str, at: datetime) -> bool:
        with st.transaction() as session:
            return claims.take_lease(session, claims.LEADER, holder, clock=at,
                                     until=at + timedelta(seconds=30))

    assert take("a", CLOCK) and not take("b", later(10))
    assert take("a", later(20))                          # renewed: until later(50)
    assert not take("b", later(45)) and take("b", later(51))
    assert not take("a", later(52))                     # a's renewal comes too late
    with st.transaction() as session:
        lease = claims.lease_of(session, claims.LEADER)
        assert (lease.holder, lease.since, lease.until) == ("b", later(51), later(81))
        claims.give_up(session, claims.LEADER, "a")      # not a's to give up
        assert claims.lease_of(session, claims.LEADER).holder == "b"
        claims.give_up(session, claims.LEADER, "b")
    assert take("a", later(53))


def test_a_takeover_waits_for_the_decision_in_hand_and_the_old_leader_decides_no_more(
        st: store.Store) -> None:
    """A decision holds the lease (``claims.hold``) until it commits: a takeover of the
    expired lease waits for it; after the takeover, the old leader's next decision is
    refused."""
    with st.transaction() as session:
        assert claims.take_lease(session, claims.LEADER, "old", clock=CLOCK, until=later(30))
    deciding, taken = threading.Event(), threading.Event()
    order: list[str] = []

    def decide() -> None:
        with st.transaction() as session:
            claims.hold(session, claims.LEADER, "old")
            deciding.set()
            time.sleep(0.5)
            order.append("decided")

    def take_over() -> None:
        deciding.wait(5)
        with st.transaction() as session:
            assert claims.take_lease(session, claims.LEADER, "new", clock=later(60),
                                     until=later(90))
        order.append("taken over")
        taken.set()

    threads = [threading.Thread(target=decide), threading.Thread(target=take_over)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert order == ["decided", "taken over"]
    with pytest.raises(LeaseLost, match="new"), st.transaction() as session:
        claims.hold(session, claims.LEADER, "old")


def test_a_reply_is_not_decided_under_a_lease_held_by_another(st: store.Store,
                                                               tmp_path: Path) -> None:
    """Handling under ``Policy.leader`` raises LeaseLost and stores nothing when another
    instance leads; the leader's own decision goes through."""
    write_live_schedule(tmp_path, CLOCK + timedelta(days=10))
    catalog = load_catalog(tmp_path / "schedules")
    with st.transaction() as session:
        claims.take_lease(session, claims.LEADER, "other", clock=datetime.now(timezone.utc),
                          until=datetime.now(timezone.utc) + timedelta(minutes=5))
    policy = Policy(inbox_address=INBOX, staff_address=STAFF, domain="secretariat.example",
                    leader="me")
    _, raw = registration(1, "SN", EVENT)
    with pytest.raises(LeaseLost):
        handle(st, catalog, raw, now=CLOCK, policy=policy)
    with st.transaction() as session:
        assert store.all_registrations(session) == []
        assert session.scalars(select(store.Inbound)).all() == []
    outcome = handle(st, catalog, raw, now=CLOCK, policy=Policy(
        inbox_address=INBOX, staff_address=STAFF, domain="secretariat.example",
        leader="other"))
    assert outcome.outcome == "handled"


def test_sending_slots_are_shared_in_order_and_an_idle_bucket_allows_a_burst(
        st: store.Store) -> None:
    """Two instances taking 3 slots at a time, 0.5 s apart: every slot is its own; the first
    two (the burst) are free at once."""
    firsts = []
    for n in range(4):
        with st.transaction() as session:
            firsts.append(claims.reserve_sends(session, 3, 0.5, 0.5, later(n * 0.1)))
    assert firsts[0] == later(-0.5)                      # one slot of slack: a burst of two
    assert [(b - a).total_seconds() for a, b in pairwise(firsts)] == [1.5, 1.5, 1.5]
    with st.transaction() as session:                   # idle for a minute: the bucket refills
        assert claims.reserve_sends(session, 3, 0.5, 0.5, later(60)) == later(59.5)


async def test_slots_a_stalled_process_comes_to_late_are_dropped_not_sent_back_to_back(
        st: store.Store) -> None:
    """At 100 messages a second a process takes slots half a second at a time; stalled for a
    second after the first, its late slots are dropped and the next ones taken: the sends
    after the stall keep to the rate (beyond the burst, at most ``LATE_SECONDS`` worth).
    Before, the 49 late slots all went at once."""
    per_minute, connections = 6000, 2
    rate = Cluster(st, Settings(store=Store(url=st.url))).rate(per_minute, connections)
    await rate.acquire()
    time.sleep(1.0)                 # the process stalls: its slots' moments pass
    times = []
    for _ in range(50):
        await rate.acquire()
        times.append(time.monotonic())
    excess = worst_excess(times, per_minute)
    allowed = connections + SharedRate.LATE_SECONDS * per_minute / 60
    print(f"worst window after the stall: {excess:.1f} messages beyond the rate "
          f"(allowed {allowed:.0f})")
    assert excess <= allowed


def settings_for(tmp_path: Path, sink: SmtpSink, url: str, **smtp: object) -> Settings:
    return Settings(organiser=Organiser(address=INBOX, staff_address=STAFF),
                    smtp=smtp_settings(sink, **smtp), store=Store(url=url),
                    paths=Paths(schedules=ROOT / "schedules", templates=ROOT / "templates",
                                packs=ROOT),
                    cluster=ClusterSettings(lease_seconds=10, renew_seconds=0.3))


def test_a_drain_stops_sending_rows_whose_claim_passed_to_another_instance(
        st: store.Store, tmp_path: Path, smtp_sink: SmtpSink) -> None:
    """Rows taken over while this process sends them (as if its claim had expired while
    it stalled) are not sent by it: the next renewal finds them gone, and they stay for the
    instance that has them."""
    settings = settings_for(tmp_path, smtp_sink, st.url, connections=1,
                            messages_per_minute=120)          # 2 a second: 10 rows take 5 s
    enqueue_reminders(st.url, 10)
    catalog = load_catalog(ROOT / "schedules")
    composer = Composer(settings, catalog)

    def take_over() -> None:
        while not smtp_sink.messages:
            time.sleep(0.01)
        with st.transaction() as session:
            session.execute(update(store.OutboxRow).where(store.OutboxRow.status == "pending")
                            .values(claimed_by="thief", lease_until=datetime.now(timezone.utc)
                                    + timedelta(hours=1)))

    thief = threading.Thread(target=take_over)
    thief.start()

    async def go() -> int:
        async with Sender(settings.smtp) as sender:
            report = await drain(st, composer.compose, sender, catalog=catalog,
                                 settings=settings, now=NOW)
        return report.sent

    sent = asyncio.run(go())
    thief.join(10)
    with st.transaction() as session:
        rows = session.execute(select(store.OutboxRow.status, store.OutboxRow.claimed_by)).all()
    # (The message in flight at the takeover may have been taken too: it is recorded sent.)
    left = [r for r in rows if r.claimed_by == "thief" and r.status == "pending"]
    print(f"sent {sent} before the renewal saw the takeover; {len(left)} left to the thief")
    assert len(smtp_sink.messages) == sent <= 3
    assert len(left) == 10 - sent


def test_a_pass_beside_a_leader_only_sends(tmp_path: Path, st: store.Store,
                                           dovecot: ImapServer, smtp_sink: SmtpSink) -> None:
    """`mailer once` while another instance leads (a daemon): the reply waiting in the inbox
    is left to the leader and nothing is planned, but what is due is sent."""
    write_schedule(tmp_path)
    settings = settings_for(tmp_path, smtp_sink, st.url).model_copy(update={
        "imap": dovecot.settings(),
        "paths": Paths(schedules=tmp_path / "schedules", templates=ROOT / "templates",
                       packs=ROOT)})
    append(dovecot, reply("awa@justice.gouv.sn.example", "Awa Diop", "Sénégal", "fr",
                          "africa-fr", NOW))
    enqueue_reminders(st.url, 3)
    with st.transaction() as session:
        claims.take_lease(session, claims.LEADER, "daemon-elsewhere",
                          clock=datetime.now(timezone.utc),
                          until=datetime.now(timezone.utc) + timedelta(minutes=5))
    report = asyncio.run(run_once(settings, now=NOW))
    assert (report.leading, report.leader) == (False, "daemon-elsewhere")
    assert (report.read, report.planned, report.drain.sent) == (0, 0, 3)
    with st.transaction() as session:
        assert session.scalars(select(store.Inbound)).all() == []
        assert claims.lease_of(session, claims.LEADER).holder == "daemon-elsewhere"
    # Once the leader is gone, the next pass leads: reads, plans, and gives the lease back.
    with st.transaction() as session:
        claims.give_up(session, claims.LEADER, "daemon-elsewhere")
    again = asyncio.run(run_once(settings, now=NOW))
    assert again.leading and again.read == 1 and again.planned > 0
    with st.transaction() as session:
        assert claims.lease_of(session, claims.LEADER).holder is None
        assert session.scalars(select(store.Instance)).all() == []    # checked out


def test_a_pass_whose_lease_is_taken_before_it_plans_still_sends(
        tmp_path: Path, st: store.Store, smtp_sink: SmtpSink,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`mailer once` leads, but another instance takes the lease before it plans (it could
    not renew in time): it plans nothing and sends what is due, as beside any leader (it
    raised LeaseLost and sent nothing)."""
    settings = settings_for(tmp_path, smtp_sink, st.url)
    enqueue_reminders(st.url, 3)
    plan = Mailer.sync_and_plan

    def taken_over(mailer: Mailer, now: datetime) -> object:
        with st.transaction() as session:
            session.execute(update(store.Lease).values(
                holder="daemon-elsewhere",
                until=datetime.now(timezone.utc) + timedelta(minutes=5)))
        return plan(mailer, now)

    monkeypatch.setattr(Mailer, "sync_and_plan", taken_over)
    report = asyncio.run(run_once(settings, now=NOW, read=False))
    assert (report.leading, report.leader) == (False, "daemon-elsewhere")
    assert (report.planned, report.drain.sent) == (0, 3)
    with st.transaction() as session:
        assert claims.lease_of(session, claims.LEADER).holder == "daemon-elsewhere"


def test_a_beat_that_ends_after_its_instance_left_takes_nothing_back(st: store.Store) -> None:
    """A pass or daemon stops (``leave``) while its last beat still runs in its thread (the
    task awaiting it was cancelled; the thread goes on): that beat neither takes the lease
    back nor brings the instance back (the instance that had gone held the lease for a whole
    lease, the next leader waiting; seen as a test failure under load)."""
    cluster = Cluster(st, Settings(store=Store(url=st.url)), "once")
    cluster.check_in()
    assert cluster.try_lead()
    cluster.leave()
    cluster.check_in()                          # the late beat, after the leave
    assert not cluster.try_lead() and not cluster.leading()
    with st.transaction() as session:
        assert claims.lease_of(session, claims.LEADER).holder is None
        assert session.scalars(select(store.Instance)).all() == []


def stepped(monkeypatch: pytest.MonkeyPatch, by: timedelta) -> None:
    """This machine's wall clock, as the cluster module reads it, jumps by ``by``."""
    import mailer.cluster

    class Stepped(datetime):
        @classmethod
        def now(cls, tz: object = None) -> datetime:  # type: ignore[override]
            return datetime.now(tz) + by    # type: ignore[arg-type]

    monkeypatch.setattr(mailer.cluster, "datetime", Stepped)


def test_a_wall_clock_step_takes_no_live_claim_on_postgresql(
        postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two instances on one PostgreSQL; one host's wall clock jumps an hour ahead (chrony
    correcting it just after boot) between two check-ins: that instance still reads the
    store's clock right, and takes none of the rows the other holds (it took them all, and
    both sent them)."""
    enqueue_reminders(postgres_url, 5)
    st = store.Store(postgres_url)
    settings = Settings(store=Store(url=postgres_url))
    try:
        holder, stepping = Cluster(st, settings), Cluster(st, settings)
        for one in (holder, stepping):
            one.check_in()
        now = holder.clock()
        assert len(claim(st, holder.holder, 10, clock=now)) == 5
        stepped(monkeypatch, timedelta(hours=1))
        with st.transaction() as session:
            server = claims.server_time(session)
        assert abs((stepping.clock() - server).total_seconds()) < 1
        assert claim(st, stepping.holder, 10, clock=stepping.clock()) == []
    finally:
        st.close()


async def test_a_forward_wall_clock_step_stops_the_sends_of_claims_others_may_take(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On SQLite every process reads the machine's wall clock; when it jumps five minutes
    ahead, the others may take this one's claims at once, so this one sends none of those
    rows any more (its monotonic clock alone said it still held them: both sent them)."""
    url = f"sqlite:///{tmp_path}/m.db"
    enqueue_reminders(url, 5)
    st = store.Store(url)
    settings = Settings(store=Store(url=url))
    try:
        sending, other = Cluster(st, settings), Cluster(st, settings)
        asked, now = time.monotonic(), sending.clock()
        until = now + timedelta(seconds=sending.lease)
        ids = claim(st, sending.holder, 10, clock=now, lease=sending.lease)
        held = sending.claim(ids, asked, until)
        assert len(ids) == 5 and all(held.held(i) for i in ids)
        stepped(monkeypatch, timedelta(minutes=5))
        assert sorted(claim(st, other.holder, 10, clock=other.clock())) == sorted(ids)
        assert not any(held.held(i) for i in ids)
        await held.end([])
    finally:
        st.close()


def test_status_says_who_leads_and_holds_what(tmp_path: Path) -> None:
    """`mailer status` names each instance (host, pid, command, start, last seen) and what it
    holds; one that stopped checking in is shown as gone; it exits 0 (JSON too)."""
    url = f"sqlite:///{tmp_path}/m.db"
    (tmp_path / "config.toml").write_text(f'[store]\nurl = "{url}"\n', encoding="utf-8")
    enqueue_reminders(url, 5)
    st = store.Store(url)
    st.migrate()
    settings = Settings(store=Store(url=url))
    leader, follower = Cluster(st, settings, "run"), Cluster(st, settings, "once")
    for one in (leader, follower):
        one.check_in()
    assert leader.try_lead() and not follower.try_lead()
    now = datetime.now(timezone.utc)
    claim(st, follower.holder, 2, clock=now)
    with st.transaction() as session:                   # a third one died a minute ago
        claims.check_in(session, instance_id="gone:1:x", host="gone", pid=1, command="run",
                        clock=now - timedelta(minutes=1))
    st.close()

    def status(*args: str) -> str:
        result = CliRunner().invoke(cli, ["status", "--config", str(tmp_path / "config.toml"),
                                          *args], obj={}, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    data = json.loads(status("--json"))
    assert data["leader"]["instance"] == leader.holder and data["pending"] == 5
    shown = {i["instance"]: i for i in data["instances"]}
    assert (shown[leader.holder]["leader"], shown[leader.holder]["claimed"]) == (True, 0)
    assert (shown[follower.holder]["command"], shown[follower.holder]["claimed"]) == ("once", 2)
    assert shown[follower.holder]["pid"] == leader.identity.pid
    assert [i["alive"] for i in data["instances"]].count(False) == 1
    assert not shown["gone:1:x"]["alive"]
    text = status()
    assert f"leader: {leader.holder}" in text and "2 message(s) claimed" in text
    assert re.search(r"gone:1:x .* NOT SEEN for 6\d s", text), text


def test_a_renewal_slower_than_half_the_lease_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[cluster]\nlease_seconds = 10\nrenew_seconds = 6\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="cluster: .*renew_seconds must be at most half"):
        load_settings(path)


def test_a_message_whose_claim_passed_while_its_connection_waited_is_not_sent(
        tmp_path: Path, smtp_sink: SmtpSink) -> None:
    """The store keeps the record of the first message waiting (another writer holds it)
    longer than the claim's lease, and another instance takes the rows meanwhile: the
    second message, whose envelope went while the connection waited for that record, is
    not sent after all (it was, by both: its claim was checked only before the envelope)."""
    import sqlite3

    url = f"sqlite:///{tmp_path}/m.db"
    settings = settings_for(tmp_path, smtp_sink, url, connections=1,
                            messages_per_minute=6000).model_copy(update={
        "cluster": ClusterSettings(lease_seconds=2, renew_seconds=0.5)})
    enqueue_reminders(url, 3)
    st = store.Store(url)
    catalog = load_catalog(ROOT / "schedules")

    def take_over(db: sqlite3.Connection) -> None:
        time.sleep(settings.cluster.lease_seconds + 0.5)     # the claim runs out
        db.execute("UPDATE outbox SET claimed_by = 'thief', "
                   "lease_until = '2099-01-01 00:00:00.000000' WHERE status = 'pending'")
        db.execute("COMMIT")
        db.close()

    def hold_the_store(_received: object) -> None:
        # As the server accepts the first message, before the mailer can record it.
        if len(smtp_sink.messages) == 1:
            db = sqlite3.connect(tmp_path / "m.db", isolation_level=None,
                                 check_same_thread=False)
            db.execute("BEGIN IMMEDIATE")
            threading.Thread(target=take_over, args=(db,)).start()

    smtp_sink.on_accept = hold_the_store

    async def go() -> int:
        async with Sender(settings.smtp) as sender:
            report = await drain(st, Composer(settings, catalog).compose, sender,
                                 catalog=catalog, settings=settings, now=NOW)
        return report.sent

    try:
        assert asyncio.run(go()) == 1
        with st.transaction() as session:
            rows = Counter(session.execute(select(store.OutboxRow.status,
                                                  store.OutboxRow.claimed_by)).all())
    finally:
        st.close()
    assert len(smtp_sink.messages) == 1
    assert rows[("pending", "thief")] == 2
