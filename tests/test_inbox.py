"""Tests of mailer.inbox: the pure parsers with byte literals, the Inbox against real servers."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest

from mailer.errors import InboxError
from mailer.inbox import (
    HANDLED,
    QUARANTINED,
    AsyncInbox,
    Cursor,
    Inbox,
    appended_uid,
    arrived,
    header_section,
    keywords_allowed,
    message_id_of,
    new_uids,
    redact,
    said_bye,
    search_criteria,
    size_groups,
    start_cursor,
)
from tests.servers.imap import ImapServer


def mail(n: int, body: bytes = b"I would like to register.\r\n") -> bytes:
    """A small reply with a recognisable Message-ID."""
    return (b"From: Awa Diop <awa@example.sn>\r\n"
            b"To: webinars@example.org\r\n"
            b"Subject: Registration %d\r\n"
            b"Message-ID: <reply-%d@example.sn>\r\n"
            b"\r\n" % (n, n)) + body


# --- pure functions --------------------------------------------------------------------------


def test_message_id_of_reads_and_unfolds_the_header() -> None:
    """The Message-ID is found whatever its case and folding, and only from the header."""
    raw = b"Subject: hi\r\nmessage-id:\r\n <abc.123@mail.example.org>\r\n\r\nMessage-ID: <no@x>\r\n"
    assert message_id_of(raw) == "<abc.123@mail.example.org>"


def test_message_id_of_handles_missing_and_odd_values() -> None:
    """No header gives None; a value without brackets is kept; bad bytes do not raise."""
    assert message_id_of(b"Subject: hi\r\n\r\nbody\r\n") is None
    assert message_id_of(b"Message-ID: bare-id@example.org\r\n\r\n") == "bare-id@example.org"
    assert message_id_of(b"Message-ID: <\xff\xfe@example.org> (comment)\r\n\r\n") is not None
    assert message_id_of(b"") is None


def test_new_uids_filters_the_uid_star_quirk_and_batches() -> None:
    """`UID n:*` answering the last UID below n is dropped; at most batch_size come back."""
    assert new_uids([7], last_uid=9, batch_size=10) == []
    assert new_uids([12, 10, 11, 10, 13], last_uid=9, batch_size=3) == [10, 11, 12]


def test_start_cursor_restarts_on_new_uidvalidity_or_folder() -> None:
    """Old UIDs are kept only for the same folder and UIDVALIDITY."""
    cursor = Cursor("INBOX", 100, 42)
    assert start_cursor(cursor, "INBOX", 100) == cursor
    assert start_cursor(cursor, "INBOX", 101) == Cursor("INBOX", 101, 0)
    assert start_cursor(cursor, "Replies", 100) == Cursor("Replies", 100, 0)
    assert start_cursor(None, "INBOX", 7) == Cursor("INBOX", 7, 0)


def test_search_criteria_skip_flagged_messages_when_keywords_work() -> None:
    """The search excludes handled and quarantined messages only where keywords are stored."""
    assert search_criteria(41, True) == ["UID", "42:*", "NOT", "KEYWORD", HANDLED,
                                         "NOT", "KEYWORD", QUARANTINED]
    assert search_criteria(0, False) == ["UID", "1:*"]


def test_keywords_allowed_reads_permanentflags() -> None:
    """Dovecot's wildcard allows keywords; pymap's system-only list does not."""
    assert keywords_allowed((b"\\Answered", b"\\Seen", b"\\*"))
    assert keywords_allowed((b"\\Seen", b"$MailerHandled"))
    assert not keywords_allowed((b"\\Answered", b"\\Deleted", b"\\Draft", b"\\Flagged", b"\\Seen"))


def test_arrived_and_said_bye_read_untagged_responses() -> None:
    """EXISTS or RECENT means new mail; keep-alives and flag changes do not; BYE is seen."""
    assert arrived([(b"OK", b"Still here"), (3, b"EXISTS")])
    assert arrived([(1, b"RECENT")])
    assert not arrived([(b"OK", b"Still here"), (2, b"FETCH", (b"FLAGS", (b"\\Seen",)))])
    assert not arrived([(4, b"EXPUNGE")])
    assert said_bye([(b"BYE", b"Server shutting down.")])
    assert not said_bye([(b"OK", b"Still here")])


def test_appended_uid_reads_the_appenduid_code() -> None:
    """The UID comes from `[APPENDUID validity uid]`, and is None without UIDPLUS."""
    assert appended_uid(b"[APPENDUID 83138182 101] APPEND completed.") == 101
    assert appended_uid(b"Append completed.") is None
    assert appended_uid(None) is None


def test_size_groups_keep_each_fetch_within_budget() -> None:
    """Bodies are fetched in groups under the byte budget; a big one gets a group alone."""
    assert size_groups({3: 40, 1: 50, 2: 60, 4: 500}, budget=100) == [[1], [2, 3], [4]]
    assert size_groups({}, budget=100) == []


def test_header_section_matches_any_quoting_of_the_key() -> None:
    """The header item is found however the server spells the FETCH key."""
    item = {b"SEQ": 1, b'BODY[HEADER.FIELDS ("MESSAGE-ID")]': b"Message-ID: <a@b>\r\n\r\n"}
    assert header_section(item) == b"Message-ID: <a@b>\r\n\r\n"
    assert header_section({b"RFC822.SIZE": 5}) == b""


def test_redact_hides_the_secret() -> None:
    """A password quoted back by a server never reaches an error message."""
    assert redact("LOGIN bob hunter2 refused", "hunter2") == "LOGIN bob *** refused"
    assert redact("refused", None) == "refused"


# --- against real servers ----------------------------------------------------------------------


def test_fetch_new_returns_new_messages_in_uid_order(imap_server: ImapServer) -> None:
    """Three appended messages come back in UID order, intact, unread; then nothing more."""
    with Inbox(imap_server.settings()) as inbox:
        sent = [mail(1), mail(2), mail(3)]
        for raw in sent:
            inbox.append(raw)
        cursor, fetched = inbox.fetch_new(None)
        assert [f.raw for f in fetched] == sent
        assert [f.message_id for f in fetched] == [f"<reply-{n}@example.sn>" for n in (1, 2, 3)]
        uids = [f.uid for f in fetched]
        assert uids == sorted(uids) and len(set(uids)) == 3
        assert [f.size for f in fetched] == [len(raw) for raw in sent]
        assert cursor == Cursor("INBOX", inbox.uidvalidity, uids[-1])
        assert inbox.fetch_new(cursor) == (cursor, [])
    with imap_server.client() as client:
        client.select_folder("INBOX", readonly=True)
        flags = client.get_flags(uids)
    assert all(b"\\Seen" not in f for f in flags.values())


def test_mark_handled_moves_to_the_handled_folder(imap_server: ImapServer) -> None:
    """Handled messages leave the inbox for handled_folder, which is created on demand."""
    with Inbox(imap_server.settings(handled_folder="Handled")) as inbox:
        for n in (1, 2, 3):
            inbox.append(mail(n))
        _, fetched = inbox.fetch_new(None)
        inbox.mark_handled([fetched[0].uid, fetched[1].uid])
        _, again = inbox.fetch_new(None)
        assert [f.message_id for f in again] == ["<reply-3@example.sn>"]
    with imap_server.client() as client:
        client.select_folder("Handled", readonly=True)
        assert len(client.search("ALL")) == 2


def test_mark_handled_keyword_skips_messages_on_a_fresh_cursor(dovecot: ImapServer) -> None:
    """Without a handled_folder the $MailerHandled keyword keeps handled mail out of a re-read."""
    with Inbox(dovecot.settings()) as inbox:
        assert inbox.keywords
        for n in (1, 2, 3):
            inbox.append(mail(n))
        _, fetched = inbox.fetch_new(None)
        inbox.mark_handled([fetched[0].uid, fetched[2].uid])
        _, again = inbox.fetch_new(None)
        assert [f.message_id for f in again] == ["<reply-2@example.sn>"]
    with dovecot.client() as client:
        client.select_folder("INBOX", readonly=True)
        assert HANDLED.encode() in client.get_flags([fetched[0].uid])[fetched[0].uid]


def test_server_without_keywords_is_detected(pymap: ImapServer) -> None:
    """pymap stores no custom keywords: the Inbox says so and re-reads unmoved mail."""
    with Inbox(pymap.settings()) as inbox:
        inbox.append(mail(1))
        _, fetched = inbox.fetch_new(None)
        inbox.mark_handled([fetched[0].uid])
        assert not inbox.keywords
        _, again = inbox.fetch_new(None)
        assert [f.uid for f in again] == [fetched[0].uid]


def test_quarantine_moves_to_the_quarantine_folder(imap_server: ImapServer) -> None:
    """Quarantined messages go to quarantine_folder and are not read again."""
    with Inbox(imap_server.settings(quarantine_folder="Quarantine")) as inbox:
        inbox.append(mail(1))
        inbox.append(mail(2))
        _, fetched = inbox.fetch_new(None)
        inbox.quarantine([fetched[0].uid], "unparseable")
        _, again = inbox.fetch_new(None)
        assert [f.message_id for f in again] == ["<reply-2@example.sn>"]
    with imap_server.client() as client:
        client.select_folder("Quarantine", readonly=True)
        uids = client.search("ALL")
        assert len(uids) == 1
        body = client.fetch(uids, ["BODY.PEEK[]"])[uids[0]][b"BODY[]"]
    assert body == mail(1)


def test_uidvalidity_change_starts_over(imap_server: ImapServer) -> None:
    """When the folder is re-created (new UIDVALIDITY) the old cursor reads from the start."""
    with imap_server.client() as client:
        client.create_folder("Replies")
    with Inbox(imap_server.settings(folder="Replies")) as inbox:
        inbox.append(mail(1))
        inbox.append(mail(2))
        cursor, _ = inbox.fetch_new(None)
        with imap_server.client() as client:
            client.delete_folder("Replies")
            client.create_folder("Replies")
            client.append("Replies", mail(3))
        new_cursor, fetched = inbox.fetch_new(cursor)
    assert new_cursor.uidvalidity != cursor.uidvalidity
    assert [f.message_id for f in fetched] == ["<reply-3@example.sn>"]
    assert new_cursor.last_uid == fetched[0].uid


def test_batch_size_is_respected(imap_server: ImapServer) -> None:
    """At most batch_size messages come back per call, and the cursor walks through them all."""
    with Inbox(imap_server.settings(batch_size=2)) as inbox:
        for n in range(1, 6):
            inbox.append(mail(n))
        cursor, seen = None, []
        for expected in (2, 2, 1, 0):
            cursor, fetched = inbox.fetch_new(cursor)
            assert len(fetched) == expected
            seen += [f.message_id for f in fetched]
    assert seen == [f"<reply-{n}@example.sn>" for n in range(1, 6)]


def test_oversize_message_is_not_downloaded(imap_server: ImapServer) -> None:
    """A message above max_message_bytes comes back empty, with its size and Message-ID."""
    big = mail(1, b"x" * 76 + b"\r\n") + b"y" * 78 * 160
    with Inbox(imap_server.settings(max_message_bytes=10_000)) as inbox:
        inbox.append(big)
        inbox.append(mail(2))
        _, fetched = inbox.fetch_new(None)
    assert fetched[0].raw == b"" and fetched[0].size == len(big) and fetched[0].oversize
    assert fetched[0].message_id == "<reply-1@example.sn>"
    assert fetched[1].raw == mail(2) and not fetched[1].oversize


def test_uid_star_quirk_returns_nothing_past_the_last_message(imap_server: ImapServer) -> None:
    """A cursor beyond the last UID reads nothing, though `UID n:*` matches the last message."""
    with Inbox(imap_server.settings()) as inbox:
        inbox.append(mail(1))
        cursor, fetched = inbox.fetch_new(None)
        ahead = Cursor(cursor.folder, cursor.uidvalidity, fetched[0].uid + 50)
        assert inbox.fetch_new(ahead) == (ahead, [])


def _append_later(server: ImapServer, raw: bytes, delay: float) -> threading.Thread:
    def run() -> None:
        time.sleep(delay)
        with server.client() as client:
            client.append("INBOX", raw)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_wait_for_new_wakes_on_arrival_with_idle(imap_server: ImapServer) -> None:
    """IDLE returns True within seconds when another client delivers a message."""
    with Inbox(imap_server.settings(idle=True)) as inbox:
        assert "IDLE" in inbox.capabilities
        inbox.fetch_new(None)
        thread = _append_later(imap_server, mail(1), 0.3)
        began = time.monotonic()
        assert inbox.wait_for_new(10.0) is True
        assert time.monotonic() - began < 5.0
        thread.join()
        _, fetched = inbox.fetch_new(None)
        assert [f.message_id for f in fetched] == ["<reply-1@example.sn>"]


def test_wait_for_new_times_out_without_mail(imap_server: ImapServer) -> None:
    """With nothing arriving, IDLE gives up after the timeout and returns False."""
    with Inbox(imap_server.settings(idle=True)) as inbox:
        began = time.monotonic()
        assert inbox.wait_for_new(1.0) is False
        assert 0.9 <= time.monotonic() - began < 4.0
        assert inbox.fetch_new(None)[1] == []  # the connection is still usable after DONE


def test_wait_for_new_polls_when_idle_is_off(dovecot: ImapServer) -> None:
    """Without IDLE, NOOP polling notices a new message; with nothing new it times out."""
    with Inbox(dovecot.settings(idle=False, poll_seconds=1)) as inbox:
        assert inbox.wait_for_new(1.0) is False
        thread = _append_later(dovecot, mail(1), 0.2)
        assert inbox.wait_for_new(5.0) is True
        thread.join()


def test_idle_on_a_dead_connection_raises_inbox_error(dovecot: ImapServer) -> None:
    """A connection that dies during IDLE raises InboxError, and the next call reconnects."""
    inbox = Inbox(dovecot.settings())
    inbox.connect()
    sock = inbox._client.socket()  # type: ignore[union-attr]  # simulate a network fault
    killer = threading.Timer(0.3, sock.shutdown, args=(socket.SHUT_RDWR,))
    killer.start()
    try:
        with pytest.raises(InboxError):
            inbox.wait_for_new(10.0)
        assert not inbox.connected
        assert inbox.fetch_new(None)[1] == []
    finally:
        killer.join()
        inbox.close()


def test_fetch_reconnects_after_a_dropped_connection(imap_server: ImapServer) -> None:
    """A connection cut between calls is reopened and the read succeeds."""
    with Inbox(imap_server.settings()) as inbox:
        inbox.append(mail(1))
        inbox._client.socket().shutdown(socket.SHUT_RDWR)  # type: ignore[union-attr]
        _, fetched = inbox.fetch_new(None)
        assert [f.message_id for f in fetched] == ["<reply-1@example.sn>"]
        inbox._client.socket().shutdown(socket.SHUT_RDWR)  # type: ignore[union-attr]
        inbox.ensure_connected()
        assert inbox.connected and inbox.fetch_new(None)[1][0].raw == mail(1)


def test_wrong_password_raises_without_the_password(imap_server: ImapServer) -> None:
    """A refused login is an InboxError whose text never contains the password."""
    wrong = "Wr0ng-pa55word-xyz"
    inbox = Inbox(imap_server.settings(password=wrong))
    with pytest.raises(InboxError) as caught:
        inbox.connect()
    assert wrong not in str(caught.value) and imap_server.password not in str(caught.value)
    assert "login" in str(caught.value).lower()
    assert "refused: b'" not in str(caught.value)     # the server's words, not a bytes repr
    assert not inbox.connected


def test_untrusted_certificate_is_refused(dovecot: ImapServer) -> None:
    """Without the test CA the server's certificate fails verification: InboxError."""
    with pytest.raises(InboxError, match="connect"):
        Inbox(dovecot.settings(ca_file=None)).connect()


def test_starttls_on_dovecot(dovecot: ImapServer) -> None:
    """STARTTLS upgrades a plain connection before login and the inbox works over it."""
    with Inbox(dovecot.settings(security="starttls")) as inbox:
        inbox.append(mail(1))
        assert [f.raw for f in inbox.fetch_new(None)[1]] == [mail(1)]


async def test_async_inbox_runs_calls_in_threads(imap_server: ImapServer) -> None:
    """AsyncInbox serves concurrent callers one at a time without corrupting the connection."""
    async with AsyncInbox(imap_server.settings()) as inbox:
        await asyncio.gather(*(inbox.append(mail(n)) for n in (1, 2, 3)))
        cursor, fetched = await inbox.fetch_new(None)
        assert sorted(f.message_id or "" for f in fetched) == [
            f"<reply-{n}@example.sn>" for n in (1, 2, 3)]
        await inbox.mark_handled([f.uid for f in fetched])
        assert await inbox.wait_for_new(0.2) is False
        assert (await inbox.fetch_new(cursor))[1] == []


def test_interrupt_ends_a_wait_early(imap_server: ImapServer) -> None:
    """interrupt() from another thread ends an IDLE wait at once, leaving the connection usable."""
    with Inbox(imap_server.settings(idle=True)) as inbox:
        inbox.fetch_new(None)
        waker = threading.Timer(0.3, inbox.interrupt)
        waker.start()
        began = time.monotonic()
        assert inbox.wait_for_new(10.0) is False
        assert time.monotonic() - began < 3.0
        waker.join()
        inbox.append(mail(1))
        assert len(inbox.fetch_new(None)[1]) == 1


async def test_cancelled_async_wait_does_not_hold_up_close(dovecot: ImapServer) -> None:
    """Cancelling AsyncInbox.wait_for_new wakes its thread, so close() returns promptly."""
    inbox = AsyncInbox(dovecot.settings(idle=True))
    await inbox.connect()
    waiter = asyncio.ensure_future(inbox.wait_for_new(30.0))
    await asyncio.sleep(0.3)
    waiter.cancel()
    began = time.monotonic()
    await inbox.close()
    assert time.monotonic() - began < 3.0
    assert waiter.cancelled()
