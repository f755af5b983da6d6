"""Tests of mailer.smtp: delivery, pooling, failure classification, pacing and back-off."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import replace
from datetime import timedelta
from email.message import EmailMessage
from email.policy import SMTP, SMTPUTF8

import aiosmtplib
import pytest
from structlog.testing import capture_logs

from mailer.config import Smtp
from mailer.errors import SendError, TemporarySendError
from mailer.smtp import (
    RateLimiter,
    Sender,
    SendResult,
    failure,
    retry_delay,
)
from mailer.wire import WireMessage
from tests.servers.smtp import SmtpSink, smtp_settings


def make_message(number: int, to: str | None = None) -> WireMessage:
    """A small message with a recognisable Message-ID and a non-ASCII body, ready for SMTP."""
    recipient = to or f"p{number}@example.net"
    msg = EmailMessage()
    msg["From"] = "Webinars <webinars@example.org>"
    msg["To"] = f"Participant {number} <{recipient}>"
    msg["Subject"] = f"Webinaire n° {number}"
    msg["Message-ID"] = f"<m{number}@example.org>"
    msg.set_content(f"Bonjour {number}, à bientôt.\n")
    # An internationalised address is written as UTF-8, as SMTPUTF8 carries it.
    policy = SMTP if recipient.isascii() else SMTPUTF8
    return WireMessage(sender="webinars@example.org", recipient=recipient,
                       data=msg.as_bytes(policy=policy))


def batch(count: int) -> list[tuple[str, WireMessage]]:
    """``count`` keyed messages, keys k0, k1..."""
    return [(f"k{i}", make_message(i)) for i in range(count)]


def received_ids(sink: SmtpSink) -> list[str]:
    """The Message-IDs the sink received, in arrival order."""
    return [str(r.message()["Message-ID"]) for r in sink.messages]


async def test_starttls_login_delivers_20_messages_over_two_reused_connections(
        smtp_sink: SmtpSink) -> None:
    """Twenty messages go over STARTTLS with a login, intact, on exactly two connections."""
    async with Sender(smtp_settings(smtp_sink, connections=2)) as sender:
        results = await sender.send_batch(batch(20))
    assert results == [SendResult(f"k{i}", ok=True) for i in range(20)]
    assert sorted(received_ids(smtp_sink)) == sorted(f"<m{i}@example.org>" for i in range(20))
    assert smtp_sink.connections == 2
    assert len({r.peer for r in smtp_sink.messages}) == 2
    first = next(r for r in smtp_sink.messages if r.rcpt_tos == ("p7@example.net",))
    assert first.tls and first.authenticated
    assert first.mail_from == "webinars@example.org"
    parsed = first.message()
    assert parsed["Subject"] == "Webinaire n° 7"
    assert parsed.get_content().splitlines() == ["Bonjour 7, à bientôt."]  # CRLF on the wire


async def test_connections_are_reused_across_batches(smtp_sink: SmtpSink) -> None:
    """A second batch through the same Sender opens no new connection."""
    async with Sender(smtp_settings(smtp_sink, connections=1)) as sender:
        await sender.send_batch(batch(2))
        result = await sender.send_one("again", make_message(99))
    assert result == SendResult("again", ok=True)
    assert smtp_sink.connections == 1
    assert len(smtp_sink.messages) == 3


async def test_implicit_tls_delivers(smtp_sink_tls: SmtpSink) -> None:
    """Implicit TLS (SMTPS) with a login delivers a message."""
    async with Sender(smtp_settings(smtp_sink_tls, "tls")) as sender:
        result = await sender.send_one("k", make_message(1))
    assert result.ok
    [received] = smtp_sink_tls.messages
    assert received.tls and received.authenticated
    assert received.rcpt_tos == ("p1@example.net",)


async def test_wrong_password_is_a_permanent_error_that_hides_the_password(
        smtp_sink: SmtpSink) -> None:
    """A refused login raises a permanent SendError naming the user but never the password."""
    password = "Wrong-Pa55word!"
    settings = smtp_settings(smtp_sink, password=password)
    with capture_logs() as logs, pytest.raises(SendError) as info:
        async with Sender(settings) as sender:
            await sender.send_batch(batch(3))
    assert info.value.permanent
    assert info.value.code == 535
    assert "mailer-test" in str(info.value)
    assert password not in str(info.value)
    assert logs and all(password not in repr(entry) for entry in logs)
    assert smtp_sink.messages == []


async def test_unreachable_server_raises_temporary_error() -> None:
    """When no connection can be made at all, send_batch raises TemporarySendError."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on the port now that the probe socket is closed.
    settings = Smtp(host="127.0.0.1", port=port, security="none", timeout_seconds=2)
    with pytest.raises(TemporarySendError) as info:
        async with Sender(settings) as sender:
            await sender.send_one("k", make_message(1))
    assert not info.value.permanent
    assert f"127.0.0.1:{port}" in str(info.value)


async def test_unknown_mailbox_fails_that_message_only(smtp_sink: SmtpSink) -> None:
    """A 550 for one recipient fails that message permanently and the others go."""
    smtp_sink.fail_rcpt["p2@example.net"] = (550, "5.1.1 No such user here")
    with capture_logs() as logs:
        async with Sender(smtp_settings(smtp_sink)) as sender:
            results = await sender.send_batch(batch(4))
    assert results[2] == SendResult("k2", ok=False, permanent=True, code=550,
                                    error="550 5.1.1 No such user here")
    assert [r.ok for r in results] == [True, True, False, True]
    assert sorted(received_ids(smtp_sink)) == ["<m0@example.org>", "<m1@example.org>",
                                               "<m3@example.org>"]
    [line] = [e for e in logs if e["event"] == "smtp.send_failed"]
    assert (line["key"], line["recipient"], line["code"]) == ("k2", "p2@example.net", 550)


async def test_greylisting_451_is_temporary(smtp_sink: SmtpSink) -> None:
    """A 451 answer is a temporary failure of that message, with its code."""
    smtp_sink.fail_next("p0@example.net", 451, "4.7.1 Greylisted, try again later")
    async with Sender(smtp_settings(smtp_sink)) as sender:
        first = await sender.send_one("k0", make_message(0))
        second = await sender.send_one("k0", make_message(0))
    assert first == SendResult("k0", ok=False, permanent=False, code=451,
                               error="451 4.7.1 Greylisted, try again later")
    assert second.ok
    assert received_ids(smtp_sink) == ["<m0@example.org>"]


async def test_421_is_temporary_and_the_rest_go_on_a_new_connection(smtp_sink: SmtpSink) -> None:
    """A 421 (server closing) fails that message temporarily; later ones reconnect and go."""
    smtp_sink.fail_next("p1@example.net", 421, "4.3.2 Shutting down")
    async with Sender(smtp_settings(smtp_sink, connections=1)) as sender:
        results = await sender.send_batch(batch(4))
    assert results[1] == SendResult("k1", ok=False, permanent=False, code=421,
                                    error="421 4.3.2 Shutting down")
    assert [r.ok for r in results] == [True, False, True, True]
    assert smtp_sink.connections == 2


async def test_dropped_connection_mid_batch_reconnects_without_duplicates(
        smtp_sink: SmtpSink) -> None:
    """After the server drops a connection mid-batch, every message still arrives once."""
    smtp_sink.drop_after(3)
    async with Sender(smtp_settings(smtp_sink, connections=2)) as sender:
        results = await sender.send_batch(batch(10))
    assert all(r.ok for r in results)
    ids = received_ids(smtp_sink)
    expected = {f"<m{i}@example.org>" for i in range(10)}
    assert set(ids) == expected
    assert len(ids) <= len(expected) + 1  # at most the message in flight twice
    assert smtp_sink.connections == 3


async def test_message_without_to_fails_permanently(smtp_sink: SmtpSink) -> None:
    """A message with no To address is a permanent failure, and the batch goes on."""
    bad = replace(make_message(5), recipient="")
    async with Sender(smtp_settings(smtp_sink)) as sender:
        results = await sender.send_batch([("bad", bad), ("good", make_message(6))])
    assert results == [
        SendResult("bad", ok=False, permanent=True, error="the message has no To address"),
        SendResult("good", ok=True),
    ]


@pytest.mark.parametrize(("exc", "permanent", "code"), [
    (aiosmtplib.SMTPRecipientsRefused(
        [aiosmtplib.SMTPRecipientRefused(550, "5.1.1 unknown", "a@b.c")]), True, 550),
    (aiosmtplib.SMTPDataError(552, "5.3.4 Message too big"), True, 552),
    (aiosmtplib.SMTPDataError(554, "5.7.1 Rejected as spam"), True, 554),
    (aiosmtplib.SMTPSenderRefused(452, "4.3.1 Insufficient storage", "w@e.org"), False, 452),
    (aiosmtplib.SMTPResponseException(450, "4.2.0 Mailbox busy"), False, 450),
    (aiosmtplib.SMTPServerDisconnected("Unexpected EOF"), False, None),
    (aiosmtplib.SMTPReadTimeoutError("Timed out waiting for server response"), False, None),
])
def test_failure_classification(exc: Exception, permanent: bool, code: int | None) -> None:
    """5xx answers are permanent; 4xx answers, drops and timeouts are temporary."""
    result = failure("k", exc)
    assert (result.ok, result.permanent, result.code) == (False, permanent, code)
    assert result.error


def test_rate_limiter_bursts_one_per_connection_then_paces() -> None:
    """At 120/min with burst 2, two go at once, then one every half second, refilling when idle."""
    now = [100.0]
    limiter = RateLimiter(120, burst=2, clock=lambda: now[0])
    assert [limiter.reserve() for _ in range(5)] == [0.0, 0.0, 0.5, 1.0, 1.5]
    now[0] = 102.5  # the last reserved slot was 102.0: one burst is available again
    assert [limiter.reserve() for _ in range(3)] == [0.0, 0.0, 0.5]
    now[0] += 60.0  # a long idle spell still buys only one burst
    assert [limiter.reserve() for _ in range(3)] == [0.0, 0.0, 0.5]


async def test_rate_limiter_acquire_sleeps_for_the_reserved_delay() -> None:
    """acquire() sleeps exactly the pacing delay, through the injected sleep."""
    now = [0.0]
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(60, burst=1, clock=lambda: now[0], sleep=fake_sleep)
    for _ in range(4):
        await limiter.acquire()
    assert slept == [1.0, 1.0, 1.0]
    assert now[0] == 3.0


async def test_sender_paces_every_message_through_its_limiter(smtp_sink: SmtpSink) -> None:
    """Each message of a batch waits for the rate limiter: at 60/min, burst 2, 4 messages."""
    slept: list[float] = []

    async def record_sleep(seconds: float) -> None:
        slept.append(seconds)  # the clock stands still, so every wait is visible

    limiter = RateLimiter(60, burst=2, clock=lambda: 0.0, sleep=record_sleep)
    async with Sender(smtp_settings(smtp_sink), limiter=limiter) as sender:
        results = await sender.send_batch(batch(4))
    assert all(r.ok for r in results)
    assert sorted(slept) == [1.0, 2.0]


def test_retry_delay_doubles_up_to_the_cap() -> None:
    """Back-off is base, 2x, 4x... and never more than six hours."""
    assert [retry_delay(n, 60) for n in (1, 2, 3, 4)] == [
        timedelta(minutes=1), timedelta(minutes=2), timedelta(minutes=4), timedelta(minutes=8)]
    assert retry_delay(0, 60) == timedelta(minutes=1)
    assert retry_delay(9, 60) == timedelta(hours=4, minutes=16)
    assert retry_delay(10, 60) == timedelta(hours=6)
    assert retry_delay(1000, 60) == timedelta(hours=6)


async def test_ready_made_bytes_go_unchanged_with_their_envelope(smtp_sink: SmtpSink) -> None:
    """A composed message's bytes and envelope reach the server as they are."""
    msg = make_message(1)
    async with Sender(smtp_settings(smtp_sink)) as sender:
        assert (await sender.send_one("k", msg)).ok
    [received] = smtp_sink.messages
    assert received.mail_from == "webinars@example.org"
    assert received.rcpt_tos == ("p1@example.net",)
    assert received.content.replace(b"\r\n", b"\n") == msg.data.replace(b"\r\n", b"\n")


async def test_internationalised_address_goes_over_smtputf8(smtp_sink_utf8: SmtpSink) -> None:
    """A ready-made message to a non-ASCII address asks for SMTPUTF8 and is delivered."""
    async with Sender(smtp_settings(smtp_sink_utf8)) as sender:
        assert (await sender.send_one("k", make_message(1, to="josé@ejemplo.es"))).ok
    [received] = smtp_sink_utf8.messages
    assert received.rcpt_tos == ("josé@ejemplo.es",)


async def test_internationalised_address_without_smtputf8_fails_for_good(
        smtp_sink: SmtpSink) -> None:
    """A server lacking SMTPUTF8 cannot take a non-ASCII address: a permanent failure."""
    async with Sender(smtp_settings(smtp_sink)) as sender:
        result = await sender.send_one("k", make_message(1, to="josé@ejemplo.es"))
    assert not result.ok and result.permanent and "SMTPUTF8" in result.error
    assert smtp_sink.messages == []


async def test_the_next_envelope_goes_while_the_previous_message_is_recorded(
        smtp_sink: SmtpSink) -> None:
    """On one connection, message 2's RCPT TO reaches the server before message 1 is recorded,
    but message 2 is only accepted after."""
    release = asyncio.Event()
    recorded: list[str] = []

    async def slow_record(result: SendResult) -> None:
        if result.key == "k0":
            await release.wait()
        recorded.append(result.key)

    async with Sender(smtp_settings(smtp_sink, connections=1)) as sender:
        sending = asyncio.create_task(sender.send_batch(batch(2), on_result=slow_record))
        for _ in range(200):
            if "p1@example.net" in smtp_sink.rcpts:
                break
            await asyncio.sleep(0.01)
        assert smtp_sink.rcpts == ["p0@example.net", "p1@example.net"]
        await asyncio.sleep(0.1)
        assert received_ids(smtp_sink) == ["<m0@example.org>"] and recorded == []
        release.set()
        results = await sending
    assert [r.ok for r in results] == [True, True] and recorded == ["k0", "k1"]
    assert received_ids(smtp_sink) == ["<m0@example.org>", "<m1@example.org>"]


async def test_a_refused_recipient_is_reset_and_the_connection_goes_on(
        smtp_sink: SmtpSink) -> None:
    """After a 550 to RCPT TO, the open envelope is reset and the next message goes alone."""
    smtp_sink.fail_rcpt["p0@example.net"] = (550, "5.1.1 No such user")
    async with Sender(smtp_settings(smtp_sink, connections=1)) as sender:
        results = await sender.send_batch(batch(2))
    assert [r.ok for r in results] == [False, True] and results[0].code == 550
    [received] = smtp_sink.messages
    assert received.rcpt_tos == ("p1@example.net",) and smtp_sink.connections == 1


async def test_the_size_of_each_message_is_declared_in_its_mail_from(
        smtp_sink: SmtpSink) -> None:
    """MAIL FROM carries SIZE= the exact number of octets sent (RFC 1870), as sendmail would."""
    msg = make_message(1)
    async with Sender(smtp_settings(smtp_sink)) as sender:
        assert (await sender.send_one("k", msg)).ok
    assert smtp_sink.mail_options == [[f"SIZE={len(msg.data)}"]]
