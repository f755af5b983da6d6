"""The daemon (`mailer run`) as a real process against Dovecot and an SMTP sink, and in-process.

A reply appended to the inbox is acknowledged within seconds (IDLE); SIGTERM ends it cleanly;
SIGHUP and file edits reload the schedules; a broken edit keeps the last good schedule and
alerts staff once. In-process tests drive ``Service`` with an injected clock.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import select, text
from structlog.testing import capture_logs

from mailer import store
from mailer.config import Settings
from mailer.daemon import Service
from mailer.smtp import Sender
from tests.servers.imap import ImapServer
from tests.servers.smtp import SmtpSink, smtp_settings
from tests.test_series import (
    AWA,
    INBOX,
    KOFI,
    ROOT,
    STAFF,
    Seen,
    append,
    reply,
    seen,
    settings_for,
    utc,
    write_schedule,
)

EVENT = "webinar-en"
ONE_EVENT = """\
[series]
id = "live-series"
title = {{ en = "Live series", fr = "Série en direct" }}
organisers = ["European Union"]
max_per_country = 4
reminders = ["7d", "1d", "1h"]
pack_at = "3d"
certificate = "on_request"
not_invited = "review"

[[event]]
id = "webinar-en"
title = {{ en = "Webinar with African countries" }}
start = {start}
end = {end}
language = "en"
invited = ["SN", "GH"]
join_url = "https://zoom.us/j/333"
"""
STOP_SECONDS = 10.0


def stamp(moment: datetime) -> str:
    """A TOML date-time in UTC."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def write_live_schedule(folder: Path, start: datetime) -> None:
    """The one-event schedule, starting at ``start`` (written then renamed, like an editor)."""
    schedules = folder / "schedules"
    schedules.mkdir(exist_ok=True)
    text = ONE_EVENT.format(start=stamp(start), end=stamp(start + timedelta(minutes=105)))
    tmp = schedules / ".live.toml.tmp"
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(schedules / "live.toml")


def write_config(folder: Path, imap: ImapServer, sink: SmtpSink) -> Path:
    """A config.toml for the real process: Dovecot over TLS, the sink over STARTTLS."""
    q = json.dumps   # a JSON string is a valid TOML basic string
    text = f"""\
[organiser]
name = "Cybercrime Programme Office"
address = {q(INBOX)}
staff_address = {q(STAFF)}

{imap.toml(idle=True, timeout_seconds=10)}
{sink.toml(timeout_seconds=5, messages_per_minute=6000)}
[store]
url = {q(f"sqlite:///{folder}/mailer.db")}

[paths]
schedules = {q(str(folder / "schedules"))}
templates = {q(str(ROOT / "templates"))}
packs = {q(str(ROOT))}

[log]
format = "json"
"""
    path = folder / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


class Daemon:
    """A running `mailer run` process and its JSON log."""

    def __init__(self, process: subprocess.Popen[bytes], log: Path) -> None:
        self.process = process
        self.log = log

    def events(self) -> list[dict[str, Any]]:
        """Every JSON log line so far (other lines, from the standard library, are skipped)."""
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def logged(self, event: str, **fields: Any) -> list[dict[str, Any]]:
        """Log lines whose message is ``event`` and whose fields match."""
        return [e for e in self.events() if e.get("event") == event
                and all(e.get(k) == v for k, v in fields.items())]

    def wait_for_log(self, event: str, timeout: float = 15.0, **fields: Any) -> dict[str, Any]:
        """The first matching log line, waiting up to ``timeout`` seconds for it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.logged(event, **fields)
            if found:
                return found[0]
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        pytest.fail(f"no {event!r} in the log (exit code {self.process.poll()}):\n"
                    + self.log.read_text(errors="replace")[-4000:])

    def signal(self, sig: int) -> None:
        self.process.send_signal(sig)


@contextmanager
def running(config: Path, folder: Path) -> Iterator[Daemon]:
    """Start `mailer run --config CONFIG`; it is killed on the way out if still running."""
    log = folder / "daemon.log"
    # The console script's own code, so the test needs no installed entry point.
    # --new-store: each test's first start (a restart on the same store takes it too).
    command = [sys.executable, "-c", "from mailer.cli import main; main()", "run",
               "--new-store", "--config", str(config)]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=folder,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"})
    daemon = Daemon(process, log)
    try:
        daemon.wait_for_log("mailer running")
        daemon.wait_for_log("inbox ready")
        yield daemon
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)


def wait_for_mail(sink: SmtpSink, count: int, timeout: float = 15.0) -> list[Seen]:
    """What the sink received once it holds ``count`` messages (fails after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while len(sink.messages) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    messages = [seen(m.message()) for m in sink.messages]
    assert len(messages) >= count, f"only {len(messages)} of {count} message(s): {messages}"
    return messages


def stop(daemon: Daemon) -> int:
    """SIGTERM, then the exit code (fails if it takes longer than STOP_SECONDS)."""
    asked = time.monotonic()
    daemon.signal(signal.SIGTERM)
    try:
        code = daemon.process.wait(STOP_SECONDS)
        print(f"stopped {time.monotonic() - asked:.2f} s after SIGTERM, exit code {code}")
        return code
    except subprocess.TimeoutExpired:
        pytest.fail(f"the daemon did not stop within {STOP_SECONDS} s after SIGTERM")


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


@pytest.fixture
def live(tmp_path: Path, dovecot: ImapServer, smtp_sink: SmtpSink) -> Path:
    """A config.toml and a schedule whose one event starts ten days from now (real clock)."""
    write_live_schedule(tmp_path, now_utc().replace(minute=0, second=0, microsecond=0)
                        + timedelta(days=10))
    return write_config(tmp_path, dovecot, smtp_sink)


def test_a_reply_is_acknowledged_within_seconds_and_sigterm_stops_cleanly(
        tmp_path: Path, live: Path, dovecot: ImapServer, smtp_sink: SmtpSink) -> None:
    """The real daemon acknowledges a reply over IDLE in seconds; SIGTERM exits 0, all done."""
    with running(live, tmp_path) as daemon:
        started = time.monotonic()
        append(dovecot, reply(AWA, "Awa Diop", "Sénégal", "fr", EVENT, now_utc()))
        (ack,) = wait_for_mail(smtp_sink, 1)
        latency = time.monotonic() - started
        print(f"acknowledgement latency over IDLE: {latency:.2f} s")
        assert (ack.kind, ack.to, ack.lang, ack.method) == ("acknowledgement", AWA, "fr",
                                                             "REQUEST")
        assert latency < 10
        assert stop(daemon) == 0
        assert daemon.logged("mailer stopped")
    st = store.Store(f"sqlite:///{tmp_path}/mailer.db")
    try:
        with st.transaction() as session:
            regs = [(r.event_id, r.email, r.status) for r in store.all_registrations(session)]
            rows = [(r.kind, r.recipient, r.status)
                    for r in session.scalars(select(store.OutboxRow))]
    finally:
        st.close()
    assert regs == [(EVENT, AWA, "confirmed")]
    assert rows == [("acknowledgement", AWA, "sent")]


def test_sighup_reloads_and_a_moved_event_sends_one_update(
        tmp_path: Path, live: Path, dovecot: ImapServer, smtp_sink: SmtpSink) -> None:
    """Moving the event then SIGHUP: one update (SEQUENCE 1, the new start) per participant."""
    with running(live, tmp_path) as daemon:
        append(dovecot, reply(AWA, "Awa Diop", "Sénégal", "fr", EVENT, now_utc()),
               reply(KOFI, "Kofi Mensah", "Ghana", "en", EVENT, now_utc()))
        wait_for_mail(smtp_sink, 2)
        moved = now_utc().replace(minute=0, second=0, microsecond=0) + timedelta(days=11)
        write_live_schedule(tmp_path, moved)
        daemon.signal(signal.SIGHUP)
        messages = wait_for_mail(smtp_sink, 4)
        daemon.wait_for_log("reloading schedules and templates", trigger="SIGHUP")
        time.sleep(1.0)   # room for a wrong second update (the file watcher reloads too)
        updates = [m for m in wait_for_mail(smtp_sink, 4) if m.kind == "update"]
        assert sorted(m.to for m in updates) == sorted([AWA, KOFI])
        assert {(m.method, m.sequence, m.dtstart) for m in updates} == {("REQUEST", 1, moved)}
        assert len(messages) == 4
        assert stop(daemon) == 0


def test_a_broken_edit_keeps_the_last_good_schedule_and_alerts_staff_once(
        tmp_path: Path, live: Path, dovecot: ImapServer, smtp_sink: SmtpSink) -> None:
    """A TOML syntax error while running: logged, one staff email, registrations still work."""
    refused = "schedule reload refused: keeping the last good schedules"

    def save(text: str) -> None:
        # Written then renamed, as an editor saves: a file caught half written (empty, so
        # valid: no events) is another test's matter, and made this one fail under load.
        tmp = schedule.with_name(".live.toml.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(schedule)

    with running(live, tmp_path) as daemon:
        schedule = tmp_path / "schedules" / "live.toml"
        good = schedule.read_text(encoding="utf-8")
        save(good.replace('language = "en"', 'language = "en'))
        (alert,) = wait_for_mail(smtp_sink, 1)
        assert (alert.kind, alert.to) == ("staff_alert", STAFF)
        daemon.wait_for_log(refused)
        # A second broken save (another mistake): logged again, no second email. (Its
        # "reloading" line comes before the refusal: wait for the refusal itself.)
        before = len(daemon.logged(refused))
        save(good.replace("[[event]]", "[[event]"))
        deadline = time.monotonic() + 15
        while len(daemon.logged(refused)) == before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(daemon.logged(refused)) > before
        # The last good schedule still serves: a registration is acknowledged.
        append(dovecot, reply(KOFI, "Kofi Mensah", "Ghana", "en", EVENT, now_utc()))
        messages = wait_for_mail(smtp_sink, 2)
        assert [(m.kind, m.to) for m in messages] == [("staff_alert", STAFF),
                                                      ("acknowledgement", KOFI)]
        assert daemon.process.poll() is None
        assert stop(daemon) == 0


def test_an_edit_that_stops_inviting_a_country_alerts_staff_and_keeps_the_places(
        tmp_path: Path, live: Path, dovecot: ImapServer, smtp_sink: SmtpSink) -> None:
    """Ghana taken off the invited countries while Kofi holds a seat: the reload logs it and
    staff get one email naming him by REF; Kofi gets nothing and stays confirmed."""
    with running(live, tmp_path) as daemon:
        append(dovecot, reply(AWA, "Awa Diop", "Sénégal", "fr", EVENT, now_utc()),
               reply(KOFI, "Kofi Mensah", "Ghana", "en", EVENT, now_utc()))
        wait_for_mail(smtp_sink, 2)
        schedule = tmp_path / "schedules" / "live.toml"
        tmp = schedule.with_name(".live.toml.tmp")
        tmp.write_text(schedule.read_text(encoding="utf-8").replace(
            'invited = ["SN", "GH"]', 'invited = ["SN"]'), encoding="utf-8")
        tmp.replace(schedule)
        warned = daemon.wait_for_log(
            "country no longer invited: its registrations keep their places",
            event_id=EVENT, country="GH")
        assert (warned["confirmed"], warned["waiting"]) == (1, 0)
        messages = wait_for_mail(smtp_sink, 3)
        time.sleep(1.0)   # room for a wrong second alert, or a message to Kofi
        assert [(m.kind, m.to) for m in wait_for_mail(smtp_sink, 3)][2:] == [
            ("staff_alert", STAFF)]
        assert stop(daemon) == 0
    alert = smtp_sink.messages[2].message()
    text = " ".join(alert.get_body(("plain",)).get_content().split())
    assert f"mailer cancel {warned['cancel_with']}" in text and "(Ghana; 1 confirmed)" in text
    assert len(messages) == 3
    st = store.Store(f"sqlite:///{tmp_path}/mailer.db")
    try:
        with st.transaction() as session:
            assert {r.email: r.status for r in store.all_registrations(session)} == {
                AWA: "confirmed", KOFI: "confirmed"}
    finally:
        st.close()


def family(root: int) -> dict[int, tuple[str, str]]:
    """Every living descendant of process ``root``: pid -> (start time, command line)."""
    parents: dict[int, int] = {}
    started: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # The command name (field 2) may hold spaces: the fields after it are counted
            # from its closing parenthesis.
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue                # gone meanwhile
        if fields[0] != "Z":        # a zombie has exited; only its parent's wait is missing
            parents[int(entry.name)] = int(fields[1])
            started[int(entry.name)] = fields[19]
    found: dict[int, tuple[str, str]] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in found:
                try:
                    cmdline = (Path("/proc") / str(pid) / "cmdline").read_bytes()
                except OSError:
                    continue
                found[pid] = (started[pid], cmdline.replace(b"\0", b" ").decode(errors="replace"))
                frontier.append(pid)
    return found


def alive(processes: dict[int, tuple[str, str]]) -> dict[int, str]:
    """Those of ``processes`` (from ``family``) still running: same pid, same start time."""
    left = {}
    for pid, (started, cmdline) in processes.items():
        try:
            fields = (Path("/proc") / str(pid) / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if fields[0] != "Z" and fields[19] == started:
            left[pid] = cmdline
    return left


def test_no_child_outlives_a_killed_daemon(tmp_path: Path, live: Path, dovecot: ImapServer,
                                            smtp_sink: SmtpSink) -> None:
    """SIGKILL the daemon once it runs its worker: the worker process and multiprocessing's
    resource tracker are gone within two seconds, not reparented to PID 1 for good."""
    with live.open("a", encoding="utf-8") as config:
        config.write("\n[workers]\nprocesses = 1\nmin_batch = 1\n")   # a reply starts it
    children: dict[int, tuple[str, str]] = {}
    try:
        with running(live, tmp_path) as daemon:
            append(dovecot, reply(AWA, "Awa Diop", "Sénégal", "fr", EVENT, now_utc()))
            daemon.wait_for_log("worker process starting")
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                children = family(daemon.process.pid)
                commands = " ".join(cmdline for _, cmdline in children.values())
                if "spawn_main" in commands and "resource_tracker" in commands:
                    break
                time.sleep(0.05)
            else:
                pytest.fail(f"no worker and resource tracker under the daemon: {children}")
            daemon.signal(signal.SIGKILL)
            daemon.process.wait(5)
            killed = time.monotonic()
            while alive(children) and time.monotonic() < killed + 2:
                time.sleep(0.02)
            print(f"{len(children)} children gone {time.monotonic() - killed:.2f} s "
                  "after SIGKILL")
            assert alive(children) == {}
    finally:
        for pid in alive(children):
            os.kill(pid, signal.SIGKILL)


# --- in process, with an injected clock ---------------------------------------------------


def fixed(moment: datetime) -> Callable[[], datetime]:
    """A clock stopped at ``moment``."""
    return lambda: moment


def moving(moment: datetime) -> Callable[[], datetime]:
    """A clock that starts at ``moment`` and runs at the real clock's pace."""
    origin = time.monotonic()
    return lambda: moment + timedelta(seconds=time.monotonic() - origin)


async def test_the_next_wakeup_is_booked_at_the_plans_next_moment(
        tmp_path: Path, dovecot: ImapServer, smtp_sink: SmtpSink) -> None:
    """With the clock two days before the invitations, the worker sleeps exactly until then."""
    write_schedule(tmp_path)
    settings = settings_for(tmp_path, dovecot.settings(), smtp_sink)
    service = Service(settings, clock=fixed(utc("2020-06-01T08:00:00")), watch=False)
    service.scheduler = AsyncIOScheduler(timezone=timezone.utc)
    service.scheduler.start()
    try:
        async with Sender(settings.smtp, envelope_from=INBOX) as sender:
            plan = await service.step(sender)
        job = service.scheduler.get_job("next-due")
        assert plan.next_at == utc("2020-06-03T08:00:00")     # the invitations
        assert plan.due == [] and smtp_sink.messages == []
        expected = now_utc() + timedelta(days=2)
        assert abs((job.next_run_time - expected).total_seconds()) < 5
    finally:
        service.scheduler.shutdown(wait=False)
        service.mailer.close()


async def test_sighup_alone_reloads_an_edited_schedule(
        tmp_path: Path, dovecot: ImapServer, smtp_sink: SmtpSink) -> None:
    """Without the file watcher, SIGHUP reloads: the moved event's update goes at once."""
    write_schedule(tmp_path)
    settings: Settings = settings_for(tmp_path, dovecot.settings(), smtp_sink)
    append(dovecot, reply(AWA, "Awa Diop", "Sénégal", "fr", "africa-fr",
                          utc("2020-06-09T09:00:00")))
    service = Service(settings, clock=moving(utc("2020-06-10T10:00:00")), watch=False)
    task = asyncio.create_task(service.run())
    try:
        await until(lambda: any(m.to == AWA for m in sink_seen(smtp_sink)))
        write_schedule(tmp_path, africa_start="2020-07-10T08:00:00Z",
                       africa_end="2020-07-10T09:45:00Z")
        os.kill(os.getpid(), signal.SIGHUP)
        await until(lambda: any(m.kind == "update" for m in sink_seen(smtp_sink)))
        kinds = sorted((m.kind, m.to) for m in sink_seen(smtp_sink))
        assert ("update", AWA) in kinds
        assert [m.sequence for m in sink_seen(smtp_sink) if m.kind == "update"] == [1]
    finally:
        service.stop()
        await asyncio.wait_for(task, 15)


async def test_stopping_finishes_the_messages_in_hand_and_leaves_the_rest_pending(
        tmp_path: Path, dovecot: ImapServer, smtp_sink: SmtpSink) -> None:
    """Stop during a 20-message drain: it ends within seconds, what went is recorded sent."""
    write_schedule(tmp_path)
    (tmp_path / "contacts.csv").write_text("country,name,email,language\n" + "".join(
        f"SN,Focal {n},focal{n}@mae.gouv.sn.example,fr\n" for n in range(20)))
    settings = settings_for(tmp_path, dovecot.settings(), smtp_sink)
    # Two messages a second: the whole backlog would take ten seconds.
    settings = settings.model_copy(update={"smtp": smtp_settings(smtp_sink,
                                                                 messages_per_minute=120)})
    service = Service(settings, clock=fixed(utc("2020-06-10T10:00:00")), watch=False)
    task = asyncio.create_task(service.run())
    try:
        await until(lambda: len(smtp_sink.messages) >= 1)
        asked = time.monotonic()
        service.stop()                       # what SIGTERM and SIGINT call
        await asyncio.wait_for(task, STOP_SECONDS)
        took = time.monotonic() - asked
    finally:
        if not task.done():
            task.cancel()
    st = store.Store(settings.store.url)
    try:
        with st.transaction() as session:
            statuses = Counter(session.scalars(select(store.OutboxRow.status)))
    finally:
        st.close()
    print(f"stopped {took:.2f} s after the request, {statuses}")
    assert took < 3
    assert statuses["sent"] == len(smtp_sink.messages) < 20
    assert statuses["pending"] == 20 - statuses["sent"] and statuses["failed"] == 0


def sink_seen(sink: SmtpSink) -> list[Seen]:
    return [seen(m.message()) for m in sink.messages]


async def until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    """Wait (without blocking the loop) until ``condition()`` holds; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("timed out waiting")
        await asyncio.sleep(0.05)


async def test_answers_of_a_handled_batch_go_out_without_waiting_for_a_plan(
        tmp_path: Path, dovecot: ImapServer, smtp_sink: SmtpSink) -> None:
    """The inbox's "answers ready" signal makes the worker send them at once, planning nothing."""
    write_schedule(tmp_path)
    settings = settings_for(tmp_path, dovecot.settings(), smtp_sink)
    service = Service(settings, clock=fixed(utc("2020-06-10T10:00:00")), watch=False)
    worker = asyncio.create_task(service.worker())
    try:
        raw = reply(AWA, "Awa Diop", "Sénégal", "fr", "africa-fr", utc("2020-06-09T09:00:00"))
        assert service.mailer.handle(raw, utc("2020-06-10T10:00:00")).outcome == "handled"
        service.answers.set()           # what the inbox does after each fetched batch
        await until(lambda: [m.kind for m in sink_seen(smtp_sink)] == ["acknowledgement"])
        assert service.passes == 0      # no planning pass ran: the invitations wait for it
    finally:
        service.stop()
        await asyncio.wait_for(worker, 15)
        service.mailer.close()


async def test_a_stop_mid_batch_withdraws_the_claims_it_did_not_use(
        tmp_path: Path, dovecot: ImapServer, smtp_sink: SmtpSink,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Cancelled while handling a batch, the pass leaves no claim behind: a stop is no crash."""
    from mailer import daemon
    from mailer.inbox import AsyncInbox

    write_schedule(tmp_path)
    settings = settings_for(tmp_path, dovecot.settings(), smtp_sink)
    append(dovecot, *(reply(f"delegate{n}@justice.gouv.sn.example", f"Delegate {n}", "Sénégal",
                            "fr", "africa-fr", utc("2020-06-09T09:00:00")) for n in range(5)))
    started = threading.Event()
    real_handle = daemon.handle_group

    def slow_handle(*args: object, **kwargs: object) -> object:
        started.set()
        time.sleep(0.3)
        return real_handle(*args, **kwargs)

    monkeypatch.setattr(daemon, "handle_group", slow_handle)
    monkeypatch.setattr(daemon, "GROUP", 2)      # groups of two: 2 + 2 + 1
    mailer = daemon.Mailer.open(settings)
    try:
        async with AsyncInbox(settings.imap) as inbox:
            reading = asyncio.create_task(mailer.read_inbox(
                inbox, fixed(utc("2020-06-10T10:00:00")), daemon.PassReport()))
            await until(started.is_set)
            reading.cancel()
            with pytest.raises(asyncio.CancelledError):
                await reading
        def outcomes() -> Counter[str]:
            with mailer.store.transaction() as session:
                return Counter(session.scalars(select(store.Inbound.outcome)))

        # The group in hand finishes in its thread; the three claims left were withdrawn.
        await until(lambda: outcomes()["handled"] == 2)
        assert outcomes() == Counter({"handled": 2})
    finally:
        mailer.close()


@contextmanager
def leading_service(tmp_path: Path, imap: ImapServer, sink: SmtpSink) -> Iterator[Service]:
    """The simulated series' daemon in process, holding the leader's lease (only the leader
    alerts staff and purges)."""
    write_schedule(tmp_path)
    service = Service(settings_for(tmp_path, imap.settings(), sink),
                      clock=fixed(utc("2020-06-10T10:00:00")), watch=False)
    try:
        assert service.mailer.beat(lead=True)
        yield service
    finally:
        service.mailer.close()


# A trigger's body that refuses the statement as a full disk does.
DISK_FULL = "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"


async def test_a_staff_alert_the_store_refuses_neither_ends_reloading_nor_is_forgotten(
        tmp_path: Path, dovecot: ImapServer, smtp_sink: SmtpSink) -> None:
    """A broken schedule while the store refuses the staff alert (a full disk): the reload
    says so in one line instead of raising (it ended the file watcher for good, and a
    SIGHUP's reload with a traceback); the next broken reload, the store mended, alerts."""
    with leading_service(tmp_path, dovecot, smtp_sink) as service:
        st = service.mailer.store
        with st.transaction() as session:
            session.execute(text(f"CREATE TRIGGER full BEFORE INSERT ON outbox {DISK_FULL}"))
        schedule = tmp_path / "schedules" / "sim.toml"
        schedule.write_text(schedule.read_text(encoding="utf-8") + "\n[[event]\n",
                            encoding="utf-8")
        with capture_logs() as logs:
            assert await service.reload("file change")
        (failed,) = [e for e in logs if e["event"] == "staff not alerted"]
        assert failed["error"] == "the store failed: database or disk is full"
        with st.transaction() as session:
            session.execute(text("DROP TRIGGER full"))
        assert await service.reload("file change")
        with st.transaction() as session:
            kinds = list(session.scalars(select(store.OutboxRow.kind)))
        assert kinds == ["staff_alert"]


def test_a_purge_the_store_refuses_is_one_line_not_a_traceback(
        tmp_path: Path, dovecot: ImapServer, smtp_sink: SmtpSink) -> None:
    """The daily retention job on a store that refuses its deletes: one line in the log and
    nothing purged (it raised into APScheduler, which logs a traceback)."""
    with leading_service(tmp_path, dovecot, smtp_sink) as service:
        st = service.mailer.store
        with st.transaction() as session:
            session.add(store.QuarantinedMail(message_id="<old@x>", raw=b"x", size=1,
                                              kept_at=utc("2019-01-01T00:00:00")))
            session.execute(text("CREATE TRIGGER full BEFORE DELETE ON quarantined_mail "
                                 f"{DISK_FULL}"))
        with capture_logs() as logs:
            service.retention()
        (failed,) = [e for e in logs if e["event"] == "retention failed; tried again tomorrow"]
        assert failed["error"] == "the store failed: database or disk is full"
        with st.transaction() as session:
            assert session.scalars(select(store.QuarantinedMail.message_id)).all() == ["<old@x>"]


def test_a_daemon_that_could_never_send_refuses_to_start(
        tmp_path: Path, live: Path, smtp_sink: SmtpSink) -> None:
    """`mailer run` with an smtp.ca_file it cannot load exits 2 at once, saying so in one
    line; it ran on without its worker task (dead with the error, unlogged), sending nothing."""
    text = live.read_text(encoding="utf-8")
    live.write_text(text.replace(json.dumps(str(smtp_sink.ca_file)),
                                 json.dumps(str(tmp_path / "gone.pem"))), encoding="utf-8")
    try:
        result = subprocess.run(
            [sys.executable, "-c", "from mailer.cli import main; main()", "run", "--new-store",
             "--config", str(live)], capture_output=True, cwd=tmp_path, timeout=30,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    except subprocess.TimeoutExpired:
        pytest.fail("the daemon ran on, unable to send anything")
    errors = result.stderr.decode(errors="replace").strip().splitlines()
    assert result.returncode == 2, errors
    assert errors[-1].startswith("configuration: smtp.ca_file: cannot load CA certificates")
    assert not any("Traceback" in line for line in errors)
