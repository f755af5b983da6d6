"""Staff commands while the daemon runs, in separate processes on one store (SQLite and
PostgreSQL): the commands go through the same transactions and locks as the daemon's
replies, so the per-country limit holds and every person is answered exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from mailer import store
from tests.servers.imap import ImapServer
from tests.servers.smtp import SmtpSink
from tests.test_daemon import (
    EVENT,
    now_utc,
    running,
    stop,
    wait_for_mail,
    write_config,
    write_live_schedule,
)
from tests.test_series import append, reply


def mailer(config: Path, *args: str) -> subprocess.Popen[bytes]:
    """`mailer ARGS --config CONFIG` as its own process."""
    return subprocess.Popen(
        [sys.executable, "-c", "from mailer.cli import main; main()", *args,
         "--config", str(config)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env={**os.environ, "MAILER_STAFF_NAME": "desk"})


def finished(process: subprocess.Popen[bytes]) -> str:
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 0, out.decode()
    return out.decode()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_staff_commands_beside_the_running_daemon_keep_the_limit_and_answer_once(
        backend: str, request: pytest.FixtureRequest, tmp_path: Path, dovecot: ImapServer,
        smtp_sink: SmtpSink) -> None:
    """Six replies for Senegal reach the daemon while staff register three more Senegalese
    by command: four seats, five waiting, nine answers, one each; then a cancellation by
    command promotes the first waiting, once."""
    write_live_schedule(tmp_path, now_utc().replace(minute=0, second=0, microsecond=0)
                        + timedelta(days=10))
    config = write_config(tmp_path, dovecot, smtp_sink)
    url = f"sqlite:///{tmp_path}/mailer.db"
    if backend == "postgresql":
        url = request.getfixturevalue("postgres_url")
        text = config.read_text()
        config.write_text(text.replace(f'url = "sqlite:///{tmp_path}/mailer.db"',
                                       f'url = "{url}"'))
    by_reply = [f"r{n}@justice.gouv.sn" for n in range(6)]
    by_staff = [f"s{n}@justice.gouv.sn" for n in range(3)]
    with running(config, tmp_path) as daemon:
        append(dovecot, *[reply(a, f"Reply {n}", "Sénégal", "fr", EVENT, now_utc())
                          for n, a in enumerate(by_reply)])
        commands = [mailer(config, "register", "--event", EVENT, "--email", a, "--name",
                           f"Phoned {n}", "--country", "SN") for n, a in enumerate(by_staff)]
        for process in commands:
            finished(process)
        # The daemon sends what commands queued at its next tick (a minute); a reload
        # (SIGHUP, `systemctl reload`) wakes it at once, which spares the test that minute.
        daemon.signal(signal.SIGHUP)
        answers = wait_for_mail(smtp_sink, 9, timeout=30)
        to = Counter(a.to for a in answers)
        assert set(to) == set(by_reply) | set(by_staff) and max(to.values()) == 1
        st = store.Store(url)
        try:
            with st.transaction() as session:
                status = {r.email: r.status for r in store.all_registrations(session)}
                audit = [(a.action, a.actor) for a in session.scalars(
                    select(store.AuditEntry))]
        finally:
            st.close()
        assert Counter(status.values()) == {"confirmed": 4, "waiting": 5}
        assert {a.kind for a in answers if status[a.to] == "confirmed"} == {"acknowledgement"}
        assert {a.kind for a in answers if status[a.to] == "waiting"} == {"waiting_list"}
        assert audit == [("register", "desk")] * 3

        seated = sorted(a for a, s in status.items() if s == "confirmed")[0]
        finished(mailer(config, "cancel", seated, "--event", EVENT))
        daemon.signal(signal.SIGHUP)
        more = wait_for_mail(smtp_sink, 11, timeout=30)
        assert stop(daemon) == 0
    kinds = Counter(m.kind for m in more[9:])
    assert kinds == {"withdrawal": 1, "promotion": 1}
    assert len(smtp_sink.messages) == 11
