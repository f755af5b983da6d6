"""Tests of mailer.wire: the hand-written MIME parses back with the email package unchanged."""

from __future__ import annotations

import email
from email.message import EmailMessage
from email.policy import default

from mailer import wire


def parse(data: bytes) -> EmailMessage:
    parsed = email.message_from_bytes(data, policy=default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def lines(data: bytes) -> list[bytes]:
    assert b"\n" not in data.replace(b"\r\n", b""), "a bare LF or CR"
    assert b"\r" not in data.replace(b"\r\n", b""), "a bare LF or CR"
    return data.split(b"\r\n")


def simple(root: wire.Part, *fields: tuple[str, str]) -> bytes:
    return wire.message([("From", "a@example.org"), ("To", "b@example.org"), *fields], root)


def test_text_round_trips_long_lines_trailing_spaces_and_accents() -> None:
    """Quoted-printable keeps long lines, trailing spaces, "=" and accents, in lines of 76."""
    content = ("Séance du 9 juillet = ouverte   \n" + "x" * 200 + "\r\nfin\rend.\n")
    data = simple(wire.text(content, "plain"))
    assert max(len(line) for line in lines(data)) <= 78
    part = parse(data)
    assert part.get_content_type() == "text/plain"
    # Line ends on the wire are CRLF, whatever the template had.
    assert part.get_content() == ("Séance du 9 juillet = ouverte   \r\n" + "x" * 200
                                  + "\r\nfin\r\nend.\r\n")


def test_text_parameters_are_quoted() -> None:
    """Extra parameters (the calendar's method) are written as quoted parameters."""
    part = parse(simple(wire.text("BEGIN:VCALENDAR\n", "calendar", method="REQUEST")))
    assert part.get_content_type() == "text/calendar"
    assert part.get_param("method") == "REQUEST"
    assert part.get_content_charset() == "utf-8"


def test_attachment_keeps_bytes_and_a_non_ascii_filename() -> None:
    """A file goes in base64 lines of 76 and its accented name survives (RFC 2231)."""
    data = bytes(range(256)) * 20
    root = wire.multipart("mixed", [wire.text("see attached", "plain"),
                                    wire.attachment(data, "application/pdf", "présentation.pdf"),
                                    wire.attachment(b"%PDF", "application/pdf", 'a "b".pdf')],
                          wire.boundary("<m1@example.org>", 0))
    raw = simple(root)
    assert max(len(line) for line in lines(raw)) <= 78
    msg = parse(raw)
    files = list(msg.iter_attachments())
    assert [f.get_filename() for f in files] == ["présentation.pdf", 'a "b".pdf']
    assert files[0].get_content() == data


def test_long_ascii_field_is_folded_at_spaces() -> None:
    """A long header value is folded into lines of at most 78 and unfolds to the same text."""
    subject = "Reminder: Cybercrime and criminal justice in the time of COVID-19 " * 3
    raw = simple(wire.text("x", "plain"), ("Subject", subject.strip()))
    head = raw.split(b"\r\n\r\n")[0]
    assert max(len(line) for line in lines(head)) <= 78
    assert parse(raw)["Subject"] == subject.strip()


def test_folded_value_from_email_header_gets_crlf() -> None:
    """A value already folded with LF (as email.header writes it) is written with CRLF."""
    raw = simple(wire.text("x", "plain"), ("Subject", "=?utf-8?b?w6k=?=\n =?utf-8?b?w6k=?="))
    lines(raw)
    assert parse(raw)["Subject"] == "éé"


def test_boundary_is_reproducible_and_outside_every_encoding() -> None:
    """The boundary starts with "=_" (impossible in QP and base64) and depends on the seed only."""
    first = wire.boundary("<m1@example.org>", 1)
    assert first == wire.boundary("<m1@example.org>", 1)
    assert first.startswith("=_") and first != wire.boundary("<m1@example.org>", 0)
    assert first != wire.boundary("<m2@example.org>", 1)


def test_nested_multiparts_parse_back_in_order() -> None:
    """mixed(alternative(plain, html, calendar), file) parses back with that exact layout."""
    alternative = wire.multipart("alternative", [
        wire.text("plain text", "plain"), wire.text("<p>html</p>", "html"),
        wire.text("BEGIN:VCALENDAR\nEND:VCALENDAR\n", "calendar", method="CANCEL")],
        wire.boundary("<m3@example.org>", 1))
    root = wire.multipart("mixed", [alternative, wire.attachment(b"ics", "application/ics",
                                                                 "invite.ics")],
                          wire.boundary("<m3@example.org>", 0))
    msg = parse(simple(root))
    assert [p.get_content_type() for p in msg.walk()] == [
        "multipart/mixed", "multipart/alternative", "text/plain", "text/html", "text/calendar",
        "application/ics"]
    assert msg["MIME-Version"] == "1.0"
    assert msg.get_body(("html",)).get_content() == "<p>html</p>"
