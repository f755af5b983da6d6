"""Three daemons on one PostgreSQL store and one mailbox, killed at random and restarted.

While 400 reminders drain at a shared rate and replies arrive in waves, one daemon after
another is killed with SIGKILL and a new one started in its place. Nothing is lost (every
message sent, every reply decided exactly as one process decides it), and no message goes
more than twice: at most the messages in flight at each kill, one per SMTP connection.
"""

from __future__ import annotations

import random
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import select

from mailer import store
from mailer.domain import PLACE_KINDS
from tests.instances import (
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
    write_config,
)
from tests.servers.imap import ImapServer
from tests.servers.smtp import SmtpSink
from tests.test_daemon import EVENT, write_live_schedule
from tests.test_series import append

CONNECTIONS = 2
CHAOS_SECONDS = 15.0


def test_three_daemons_killed_at_random_lose_nothing_and_repeat_only_what_was_in_flight(
        tmp_path: Path, postgres_url: str, dovecot: ImapServer, smtp_sink: SmtpSink) -> None:
    seed = random.randrange(1_000_000)
    print(f"chaos seed {seed}")
    chance = random.Random(seed)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    write_live_schedule(tmp_path, now + timedelta(days=10))
    enqueue_reminders(postgres_url, 400, event_id=EVENT, due=now - timedelta(minutes=1))
    config = write_config(tmp_path, url=postgres_url, sink=smtp_sink, imap=dovecot,
                          schedules=tmp_path / "schedules", per_minute=1200,
                          connections=CONNECTIONS, batch_size=5)
    people = [registration(n, "SN" if n % 2 else "GH", EVENT) for n in range(30)]
    waves = [[raw for _, raw in people[:10]],
             [raw for _, raw in people[10:20]] + [cancellation(people[1][0], 1, EVENT)],
             [raw for _, raw in people[20:]] + [cancellation(people[0][0], 2, EVENT),
                                                cancellation(people[3][0], 3, EVENT)]]
    arriving = list(waves)
    kills = 0
    with instances(tmp_path, config) as group:
        running = [group.daemon(f"run-{n}") for n in range(3)]
        began = time.monotonic()
        while time.monotonic() - began < CHAOS_SECONDS:
            if arriving and chance.random() < 0.5:
                append(dovecot, *arriving.pop(0))
            time.sleep(chance.uniform(1.0, 2.5))
            victim = chance.choice(running)
            victim.process.kill()
            victim.wait(10)
            kills += 1
            running[running.index(victim)] = group.daemon(f"run-{len(group.started) + 1}")
        for wave in arriving:
            append(dovecot, *wave)
        wait_until(lambda: inbound_handled(postgres_url) == 33, 60, "every reply handled")
        # Sent, or (an answer still queued when its person cancelled) not sent and missed.
        wait_until(lambda: {s for _, s, _ in outbox(postgres_url)} <= {"sent", "missed"}, 90,
                   "every message sent")
        status = group.status()
        assert sum(i["leader"] for i in status["instances"]) == 1
        assert {i["pid"] for i in status["instances"] if i["alive"]} == {
            d.pid for d in running}
    sent = received(smtp_sink)
    twice = sum(sent.values()) - len(sent)
    senders = {claimer for _, _, claimer in outbox(postgres_url)}
    print(f"{kills} kills, {len(group.started)} daemons, {len(sent)} messages, "
          f"{twice} sent twice (at most {kills * CONNECTIONS}), sent by {len(senders)} daemons")
    assert set(sent) == {mid for mid, status, _ in outbox(postgres_url) if status == "sent"}
    assert twice <= kills * CONNECTIONS
    # Only what told the three who cancelled of their place can have been held back.
    assert set(not_sent(postgres_url)) <= {(kind, people[n][0]) for n in (0, 1, 3)
                                           for kind in PLACE_KINDS}
    every = [raw for wave in waves for raw in wave]
    assert registrations(postgres_url) == decided_alone(tmp_path / "schedules", every,
                                                        tmp_path)


def not_sent(url: str) -> list[tuple[str, str]]:
    """(kind, recipient) of every outbox row dropped as missed."""
    st = store.Store(url)
    try:
        with st.transaction() as session:
            return [(r.kind, r.recipient) for r in session.scalars(
                select(store.OutboxRow).where(store.OutboxRow.status == "missed"))]
    finally:
        st.close()
