"""Several mailer processes over one store, as operators run them: real `mailer once` and
`mailer run` processes, a real SMTP server, Dovecot, SQLite and PostgreSQL.

Overlapping cron passes and daemons deliver every message once, at the configured rate
for all of them together; one process at a time reads the inbox and decides, so replies
are decided as one process would; a dead leader's place is taken within its lease.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from mailer import store
from tests.instances import (
    NOW,
    Process,
    cancellation,
    decided_alone,
    enqueue_reminders,
    inbound_handled,
    instances,
    outbox,
    received,
    registration,
    registrations,
    wait_until,
    worst_excess,
    write_config,
)
from tests.servers.imap import ImapServer
from tests.servers.smtp import SmtpSink
from tests.test_daemon import EVENT, write_live_schedule
from tests.test_series import append

LEASE = 2.0         # the processes' cluster.lease_seconds (write_config's default)


def readers(daemons: list[Process]) -> list[Process]:
    """The daemons that opened the inbox (only a leader does)."""
    return [d for d in daemons if d.logged("inbox ready")]


def leader_of(status: dict[str, Any], daemons: list[Process]) -> Process:
    """The daemon `mailer status --json` names as the leader (it must name exactly one)."""
    (leading,) = [i for i in status["instances"] if i["leader"]]
    assert status["leader"]["instance"] == leading["instance"] and leading["alive"]
    (found,) = [d for d in daemons if d.pid == leading["pid"]]
    return found


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty store on SQLite or PostgreSQL."""
    url = (f"sqlite:///{tmp_path}/mailer.db" if request.param == "sqlite"
           else request.getfixturevalue("postgres_url"))
    st = store.Store(url)
    st.migrate()
    st.close()
    return url


def test_overlapping_cron_passes_send_each_message_once_at_the_shared_rate(
        tmp_path: Path, url: str, smtp_sink: SmtpSink) -> None:
    """Three `mailer once` started a moment apart over one store and 300 due reminders: each
    message reaches the server once, all three send, one of them plans, and together they
    keep to messages_per_minute (measured at the server)."""
    per_minute = 3000                     # 50 a second: the drain lasts about 6 s
    enqueue_reminders(url, 300)
    config = write_config(tmp_path, url=url, sink=smtp_sink, per_minute=per_minute)
    with instances(tmp_path, config) as group:
        passes = []
        for _ in range(3):
            passes.append(group.start("once", "--no-read", "--now", NOW.isoformat()))
            time.sleep(0.7)
        codes = [p.wait(120) for p in passes]
    outputs = [p.output() for p in passes]
    assert codes == [0, 0, 0], outputs
    rows = outbox(url)
    sent = received(smtp_sink)
    assert {status for _, status, _ in rows} == {"sent"}
    assert sorted(sent) == sorted(mid for mid, _, _ in rows)
    assert max(sent.values()) == 1, [m for m, n in sent.items() if n > 1][:5]
    senders = {claimer for _, _, claimer in rows}
    assert len(senders) == 3                          # every pass took its share
    followers = [o for o in outputs if "another instance" in o]
    assert len(followers) == 2                        # one pass led (read and planned)
    times = [m.arrived for m in smtp_sink.messages]
    excess = worst_excess(times, per_minute)
    print(f"{len(times)} messages in {max(times) - min(times):.2f} s; worst window exceeds "
          f"the rate by {excess:.1f} messages")
    # Over the whole drain, the three together keep the rate (three passes each keeping it
    # alone would send at three times it). At any moment, two connections may start
    # together (the burst), and a message may go a little after its slot
    # (SharedRate.LATE_SECONDS, 0.25 s: later slots are dropped) and reach the sink later
    # still (0.15 s more: the machine is shared); passes that each kept the rate alone
    # exceeded it by about 140, and late slots sent back to back by up to 50.
    overall = (len(times) - 1) / (max(times) - min(times)) * 60
    assert overall <= per_minute * 1.1, overall
    assert excess <= 2 + per_minute / 60 * 0.4


def test_three_daemons_decide_a_wave_of_replies_as_one_process_would(
        tmp_path: Path, url: str, dovecot: ImapServer, smtp_sink: SmtpSink) -> None:
    """Three `mailer run` on one store and one mailbox, replies arriving in three waves: one
    daemon leads; killed (SIGKILL), another takes over within the lease; stopped (SIGTERM),
    a third at once. The registrations, waiting lists and promotions are exactly those one
    process makes of the same replies in the same order."""
    write_live_schedule(tmp_path, datetime.now(timezone.utc).replace(microsecond=0)
                        + timedelta(days=10))
    config = write_config(tmp_path, url=url, sink=smtp_sink, imap=dovecot,
                          schedules=tmp_path / "schedules", batch_size=4)
    people = [registration(n, "SN" if n % 2 else "GH", EVENT) for n in range(30)]
    waves = [[raw for _, raw in people[:10]],
             [raw for _, raw in people[10:20]] + [cancellation(people[1][0], 1, EVENT)],
             [raw for _, raw in people[20:]] + [cancellation(people[0][0], 2, EVENT),
                                                cancellation(people[3][0], 3, EVENT)]]
    with instances(tmp_path, config) as group:
        daemons = [group.daemon(f"run-{n}") for n in range(3)]
        append(dovecot, *waves[0])
        wait_until(lambda: inbound_handled(url) == 10, 30, "the first wave handled")
        first = leader_of(group.status(), daemons)
        assert readers(daemons) == [first]          # the others never opened the inbox

        first.process.kill()                        # a crash: its lease simply runs out
        first.wait(10)
        killed = time.monotonic()
        append(dovecot, *waves[1])
        wait_until(lambda: inbound_handled(url) == 21, 30, "the second wave handled")
        took_over = time.monotonic() - killed
        second = leader_of(group.status(), daemons)
        assert second is not first and set(readers(daemons)) == {first, second}
        time.sleep(LEASE)
        gone = {i["pid"]: i for i in group.status()["instances"]}[first.pid]
        assert not gone["alive"] and not gone["leader"]

        second.process.terminate()                  # a stop on purpose gives the lease back
        assert second.wait(20) == 0
        stopped = time.monotonic()
        append(dovecot, *waves[2])
        wait_until(lambda: inbound_handled(url) == 33, 30, "the third wave handled")
        handed_over = time.monotonic() - stopped
        third = leader_of(group.status(), daemons)
        assert third not in (first, second) and third.alive()
        assert set(readers(daemons)) == set(daemons)
        wait_until(lambda: all(status == "sent" for _, status, _ in outbox(url)), 30,
                   "every answer sent")
    print(f"after a kill, the next leader had handled a wave {took_over:.1f} s later; "
          f"after a stop, {handed_over:.1f} s later")
    assert took_over < LEASE + 10 and handed_over < 10
    every = [raw for wave in waves for raw in wave]
    assert registrations(url) == decided_alone(tmp_path / "schedules", every, tmp_path)
    sent = received(smtp_sink)
    # Every answer went, at most the two in flight at the kill went twice.
    assert {mid for mid, _, _ in outbox(url)} == set(sent)
    assert sum(sent.values()) - len(sent) <= 2
