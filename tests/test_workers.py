"""The worker process: it writes and reads exactly what the daemon would, and only ever helps.

Every test spawns a real worker process (``mailer.workers``), as the daemon does.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import shutil
import signal
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from mailer import store
from mailer.compose import Composer, compose_message
from mailer.config import Organiser, Paths, Settings, Store
from mailer.config import Workers as WorkerSettings
from mailer.daemon import Mailer, PassReport
from mailer.domain import Kind, Outgoing, outbox_key
from mailer.errors import WorkerError
from mailer.inbox import AsyncInbox
from mailer.outbox import drain
from mailer.schedule import Catalog, load_catalog
from mailer.smtp import Sender
from mailer.understand import read
from mailer.workers import Workers
from tests.servers.imap import ImapServer
from tests.servers.smtp import SmtpSink, smtp_settings
from tests.test_series import append, reply, utc, write_schedule
from tests.test_series import settings_for as series_settings

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2020, 7, 2, 9, 0, tzinfo=timezone.utc)
INBOX = "webinars@secretariat.example"
MAX_BYTES = 25_000_000


def settings_for(tmp_path: Path, templates: Path = ROOT / "templates", min_batch: int = 1,
                 start_for_messages: int = 1) -> Settings:
    """Settings with the shipped schedules and packs, a store in tmp_path, big batches of 1."""
    return Settings(organiser=Organiser(address=INBOX, staff_address="staff@secretariat.example"),
                    store=Store(url=f"sqlite:///{tmp_path}/m.db"),
                    paths=Paths(schedules=ROOT / "schedules", templates=templates, packs=ROOT),
                    workers=WorkerSettings(processes=1, min_batch=min_batch,
                                           start_for_messages=start_for_messages))


def outgoing(kind: Kind, n: int, lang: str = "fr", **context: Any) -> Outgoing:
    """One message of ``kind`` for participant ``n`` of africa-fr."""
    email = f"participant{n}@justice.gouv.sn"
    return Outgoing(key=outbox_key(kind, email, "africa-fr", 0, str(n)), kind=kind,
                    recipient=email, language=lang, event_id="africa-fr",
                    name=f"Awa Diop {n}", country="SN", context=context)


MESSAGES = [
    outgoing(Kind.REMINDER, 1, offset="1d"),
    outgoing(Kind.REMINDER, 2, "es", offset="7d"),
    outgoing(Kind.ACKNOWLEDGEMENT, 3, with_pack=True),
    outgoing(Kind.PACK, 4, "en"),
    outgoing(Kind.CERTIFICATE, 5),
    outgoing(Kind.CANCELLATION, 6),
    *(outgoing(Kind.REMINDER, n, offset="1d") for n in range(7, 20)),
]


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog(ROOT / "schedules")


@pytest.fixture
async def workers(tmp_path: Path, catalog: Catalog) -> AsyncIterator[Workers]:
    """A started worker, ready."""
    running = Workers(settings_for(tmp_path), catalog)
    assert await running.wait_ready()
    yield running
    running.close()


async def gather(getters: list[Callable[[], Any]] | None) -> list[Any]:
    """Every result of a batch handed to the worker (exceptions as values)."""
    assert getters is not None, "the batch was not handed to the worker"
    return await asyncio.gather(*(get() for get in getters), return_exceptions=True)


def inline(settings: Settings, catalog: Catalog) -> Callable[[Outgoing], Any]:
    """How the daemon writes a message in its own process."""
    composer = Composer(settings, catalog)
    return partial(compose_message, compose=composer.compose, catalog=catalog,
                   settings=settings, now=NOW)


async def test_the_worker_writes_the_same_bytes_as_the_daemon(
        tmp_path: Path, catalog: Catalog, workers: Workers) -> None:
    """Reminders, a pack, a certificate and a cancellation come back byte for byte as written
    in the daemon's own process, in order."""
    here = inline(workers.settings, catalog)
    made = await gather(workers.compose(MESSAGES, NOW, here))
    assert [m.data for m in made] == [here(out).data for out in MESSAGES]
    assert [m.recipient for m in made] == [out.recipient for out in MESSAGES]
    assert workers.jobs == 3            # 19 messages in chunks of 8


async def test_the_worker_reads_every_corpus_message_as_the_daemon_does(
        catalog: Catalog, workers: Workers, corpus: Path) -> None:
    """Each reply and bounce of the corpus gives the same intent (or reason) in the worker."""
    files = sorted(p for p in corpus.glob("*/*") if p.suffix in (".eml", ".txt")
                   and p.name not in ("LICENSE", "README.md"))
    assert len(files) > 40
    items = [(p.read_bytes(), None, f"<corpus-{n}@test>") for n, p in enumerate(files)]
    here = partial(_read_inline, catalog=catalog)
    got = await gather(workers.read(items, NOW, INBOX, MAX_BYTES, here))
    assert got == [here(item) for item in items]


def _read_inline(item: tuple[bytes, int | None, str], catalog: Catalog) -> Any:
    raw, size, key = item
    return read(raw, catalog, now=NOW, inbox_address=INBOX, max_bytes=MAX_BYTES, size=size,
                message_id=key)


async def test_a_message_the_worker_cannot_write_fails_alone_and_says_why(
        catalog: Catalog, workers: Workers) -> None:
    """A message for an event no longer in the schedules raises its reason; the rest are made."""
    gone = Outgoing(key="gone", kind=Kind.REMINDER, recipient="a@b.org", language="en",
                    event_id="no-such-event")
    made = await gather(workers.compose([MESSAGES[0], gone, MESSAGES[1]], NOW,
                                        inline(workers.settings, catalog)))
    assert isinstance(made[1], WorkerError)
    assert str(made[1]).startswith("ScheduleError: ") and "no-such-event" in str(made[1])
    assert made[0].recipient == MESSAGES[0].recipient
    assert made[2].recipient == MESSAGES[1].recipient


async def test_the_worker_runs_at_a_lower_priority_than_the_daemon(workers: Workers) -> None:
    """The worker's niceness is the daemon's plus ``workers.nice`` (10 by default)."""
    assert workers.settings.workers.nice == 10 and workers.pid is not None
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    assert os.getpriority(os.PRIO_PROCESS, workers.pid) == min(19, ours + 10)


async def test_small_batches_stay_in_the_daemons_process(tmp_path: Path,
                                                         catalog: Catalog) -> None:
    """Below min_batch nothing is handed over and no process is started."""
    few = Workers(settings_for(tmp_path, min_batch=32), catalog)
    try:
        assert few.compose(MESSAGES[:5], NOW, inline(few.settings, catalog)) is None
        assert few.pid is None and not few.ready
    finally:
        few.close()


async def test_a_batch_is_written_in_the_daemon_while_the_worker_starts(
        tmp_path: Path, catalog: Catalog) -> None:
    """The first big batch is not kept waiting for a spawn: it is written in the daemon's
    process, and the worker is ready for the next one."""
    cold = Workers(settings_for(tmp_path), catalog)
    try:
        assert cold.compose(MESSAGES, NOW, inline(cold.settings, catalog)) is None
        assert await cold.wait_ready() and cold.pid not in (None, os.getpid())
    finally:
        cold.close()


async def test_a_killed_worker_is_replaced_and_its_batch_written_in_the_daemon(
        catalog: Catalog, workers: Workers) -> None:
    """A worker killed with its batch in hand: every message is still made (in the daemon's
    process), and the next big batch starts a new worker."""
    first = workers.pid
    assert first is not None
    here = inline(workers.settings, catalog)
    os.kill(first, signal.SIGKILL)
    await asyncio.sleep(0.5)
    made = await gather(workers.compose(MESSAGES, NOW, here))
    assert [m.data for m in made] == [here(out).data for out in MESSAGES]
    assert not workers.ready
    assert workers.compose(MESSAGES, NOW, here) is None       # starts another
    assert await workers.wait_ready() and workers.pid not in (None, first)


async def test_a_reload_gives_the_worker_the_templates_as_they_are_now(tmp_path: Path) -> None:
    """After a template is edited and the mailer reloads, the worker writes with the new one."""
    templates = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", templates)
    mailer = Mailer.open(settings_for(tmp_path, templates))
    try:
        assert await mailer.workers.wait_ready()
        here = inline(mailer.settings, mailer.catalog)
        before = await gather(mailer.workers.compose(MESSAGES[:1], NOW, here))
        assert b"Edited by staff" not in before[0].data
        page = templates / "fr" / "reminder.txt"
        page.write_text("Edited by staff.\n" + page.read_text(encoding="utf-8"), encoding="utf-8")
        assert mailer.reload() == []
        assert await mailer.workers.wait_ready()
        after = await gather(mailer.workers.compose(MESSAGES[:1], NOW, here))
        assert b"Edited by staff" in after[0].data
    finally:
        mailer.close()


async def test_a_big_batch_of_replies_is_read_by_the_worker_and_decided_in_order(
        tmp_path: Path, dovecot: ImapServer, smtp_sink: SmtpSink) -> None:
    """40 replies fetched in one batch are read by the worker; seats go in arrival order."""
    write_schedule(tmp_path)
    settings = series_settings(tmp_path, dovecot.settings(), smtp_sink)
    assert settings.workers.processes == 1 and settings.workers.min_batch <= 40
    people = [(f"delegate{n}@justice.gouv.sn.example", f"Delegate {n}", "Sénégal")
              for n in range(20)]
    people += [(f"delegate{n}@mofa.gov.gh.example", f"Delegate {n}", "Ghana")
               for n in range(20)]
    append(dovecot, *(reply(email, name, country, "fr", "africa-fr", utc("2020-06-09T09:00:00"))
                      for email, name, country in people))
    mailer = Mailer.open(settings)
    try:
        assert await mailer.workers.wait_ready()
        report = PassReport()
        async with AsyncInbox(settings.imap) as inbox:
            await mailer.read_inbox(inbox, lambda: utc("2020-06-10T10:00:00"), report)
        assert report.handled == 40 and mailer.workers.jobs == 5
        with mailer.store.transaction() as session:
            rows = session.execute(select(store.Registration.email, store.Registration.status)
                                   .order_by(store.Registration.id)).all()
    finally:
        mailer.close()
    assert [email for email, _ in rows] == [email for email, _, _ in people]
    confirmed = [email for email, status in rows if status == "confirmed"]
    assert confirmed == [e for e, _, _ in people[:4]] + [e for e, _, _ in people[20:24]]
    assert Counter(status for _, status in rows) == {"confirmed": 8, "waiting": 32}


async def test_only_a_few_chunks_are_written_ahead_of_their_use(
        catalog: Catalog, workers: Workers) -> None:
    """Of a batch of 64 messages, three chunks of 8 are handed over at first, then one more
    each time a chunk comes into use: a big batch never waits whole in memory."""
    many = [outgoing(Kind.REMINDER, n, offset="1d") for n in range(64)]
    getters = workers.compose(many, NOW, inline(workers.settings, catalog))
    assert getters is not None and workers.submitted == 3
    first = await getters[0]()
    assert workers.submitted == 4 and first.recipient == many[0].recipient
    await getters[8]()
    assert workers.submitted == 5
    made = await gather(getters)
    assert workers.submitted == 8 and [m.recipient for m in made] == [o.recipient for o in many]


async def test_a_drain_sends_what_the_worker_wrote_and_writes_packs_itself(
        tmp_path: Path, catalog: Catalog, smtp_sink: SmtpSink) -> None:
    """40 reminders written by the worker and 2 packs written in the daemon's process all
    reach the server once, and only the reminders went to the worker (5 jobs of 8)."""
    settings = settings_for(tmp_path).model_copy(update={"smtp": smtp_settings(smtp_sink)})
    rows = [outgoing(Kind.REMINDER, n, offset="1d") for n in range(40)]
    rows += [outgoing(Kind.PACK, n, "en") for n in (40, 41)]
    st = store.Store(settings.store.url)
    st.migrate()
    with st.transaction() as session:
        store.enqueue(session, rows, now=NOW, domain="secretariat.example")
    running = Workers(settings, catalog)
    try:
        assert await running.wait_ready()
        async with Sender(settings.smtp) as sender:
            report = await drain(st, Composer(settings, catalog).compose, sender,
                                 catalog=catalog, settings=settings, now=NOW, workers=running)
    finally:
        running.close()
        st.close()
    assert report.sent == 42 and report.failed == 0
    assert running.submitted == running.jobs == 5
    assert sorted(r.rcpt_tos[0] for r in smtp_sink.messages) == sorted(o.recipient for o in rows)
    packs = [r.message() for r in smtp_sink.messages if r.rcpt_tos[0].startswith(
        ("participant40@", "participant41@"))]
    assert all(any(p.get_filename() for p in m.iter_attachments()) for m in packs)


@pytest.mark.parametrize(("start_for_messages", "started"), [(0, False), (43, False),
                                                             (42, True)])
async def test_a_drain_starts_a_worker_only_for_enough_messages(
        tmp_path: Path, catalog: Catalog, smtp_sink: SmtpSink, start_for_messages: int,
        started: bool) -> None:
    """42 messages due start a worker only when ``start_for_messages`` is 42 or fewer, and
    never when it is 0 (the default); either way, all of them are sent."""
    settings = settings_for(tmp_path, start_for_messages=start_for_messages).model_copy(
        update={"smtp": smtp_settings(smtp_sink)})
    st = store.Store(settings.store.url)
    st.migrate()
    with st.transaction() as session:
        store.enqueue(session, [outgoing(Kind.REMINDER, n, offset="1d") for n in range(42)],
                      now=NOW, domain="secretariat.example")
    running = Workers(settings, catalog)
    try:
        async with Sender(settings.smtp) as sender:
            report = await drain(st, Composer(settings, catalog).compose, sender,
                                 catalog=catalog, settings=settings, now=NOW, workers=running)
        assert report.sent == 42 and len(smtp_sink.messages) == 42
        assert bool(multiprocessing.active_children()) is started
    finally:
        running.close()
        st.close()


async def test_a_worker_that_keeps_dying_is_not_started_again(
        tmp_path: Path, catalog: Catalog) -> None:
    """After three lost workers the mailer stops spawning and writes every batch itself."""
    fragile = Workers(settings_for(tmp_path), catalog)
    here = inline(fragile.settings, catalog)
    try:
        for _ in range(3):
            assert await fragile.wait_ready()
            assert fragile.pid is not None
            os.kill(fragile.pid, signal.SIGKILL)
            await asyncio.sleep(0.5)
            made = await gather(fragile.compose(MESSAGES, NOW, here))
            assert [m.recipient for m in made] == [out.recipient for out in MESSAGES]
        assert fragile.compose(MESSAGES, NOW, here) is None
        await asyncio.sleep(0.5)
        assert fragile.pid is None and multiprocessing.active_children() == []
    finally:
        fragile.close()
