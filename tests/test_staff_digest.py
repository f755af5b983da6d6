"""The daily digest for a simulated day, and acting by replying to it end to end over Dovecot
and aiosmtpd: approve and reject by reply; a forged From without the token, a token of
another digest and a non-staff sender with the right token are refused and reported."""

from __future__ import annotations

import re
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

import pytest

from mailer import store
from mailer.staff import tokens
from tests.servers.imap import ImapServer
from tests.servers.smtp import SmtpSink
from tests.staffkit import (
    INBOX,
    SECRET,
    STAFF,
    Office,
    body,
    make_office,
    question,
    registration_reply,
)
from tests.test_series import append, utc

PIERRE = "pierre.martin@diplomatie.gouv.fr"
HANS = "hans.weber@bmj.bund.de"
LENA = "lena.berg@regeringen.se"
AWA = "awa.diop@justice.gouv.sn"
KOFI = "kofi.mensah@mfa.gov.gh"
PARIS = 'time_zone = "Europe/Paris"\ndigest_hour = 8\n'


def staff_messages(office: Office, kind: str) -> list[EmailMessage]:
    return [m for k, m in office.sent_to(STAFF) if k == kind]


def the_day_before(office: Office) -> None:
    """7 July 2020, early (before 08:00 in Paris): registrations, one in review, a question, an
    unreadable reply, a refused acknowledgement and a message quarantined."""
    day = utc("2020-07-07T05:00:00")
    office.sink.fail_rcpt[KOFI] = (550, "5.1.1 kofi.mensah: no such user")
    office.reply(registration_reply(AWA, "Awa Diop", "Senegal", mid="a1"), day)
    office.reply(registration_reply(KOFI, "Kofi Mensah", "Ghana", mid="k1"), day)
    office.reply(registration_reply(PIERRE, "Pierre Martin", "France", mid="p1"), day)
    office.reply(question(AWA, mid="q1"), day)
    office.reply(b"From: someone@example.net\r\nTo: webinars@example.org\r\nSubject: hello\r\n"
                 b"Message-ID: <u1@example.net>\r\n\r\nxyzzy plugh\r\n", day)
    office.reply(registration_reply("big@example.net", "Big", "Mali", mid="big1",
                                    extra="x" * 500), day, max_bytes=300)
    office.drain("2020-07-07T05:05Z")


def test_the_digest_of_a_simulated_day(st: store.Store, tmp_path: Path,
                                       smtp_sink: SmtpSink) -> None:
    """At 08:00 Paris time, not before, staff get one digest: new registrations per event and
    country, what waits (with REFs), the question, the reply not placed, the failed delivery
    in the server's words, the quarantined mail, the next 48 hours; a reply address with the
    digest's token; short lines and one column for a phone. None the next day: nothing new,
    nothing waiting."""
    office = make_office(tmp_path, st.url, smtp_sink, digest=True, extra=PARIS)
    the_day_before(office)
    assert staff_messages(office, "staff_digest") == []
    office.drain("2020-07-08T05:59Z")             # 07:59 in Paris
    assert staff_messages(office, "staff_digest") == []
    office.drain("2020-07-08T06:01Z")             # 08:01 in Paris
    (digest,) = staff_messages(office, "staff_digest")
    pierre = office.registration(PIERRE)
    (row,) = [d for d in office.rows(store.DigestRow) if d.sent]
    assert row.day == "2020-07-08"

    assert digest["Subject"] == ("Mailer digest 2020-07-08: 1 to decide, 3 new, 1 failed, "
                                 "1 quarantined")
    assert digest["Reply-To"].addresses[0].addr_spec == tokens.reply_address(
        INBOX, SECRET, row.id)
    text = body(digest)
    waiting = text.split("WAITING FOR A DECISION: 1")[1].split("NEW REGISTRATIONS")[0]
    assert f"R{pierre.id}  Pierre Martin (FR)" in waiting
    assert PIERRE in waiting and "africa-fr: France is not invited to this event" in waiting
    assert f"approve R{pierre.id}" in waiting
    assert "africa-fr  SN  1 confirmed" in text and "africa-fr  GH  1 confirmed" in text
    assert "africa-fr  FR  1 review" in text
    assert "QUESTIONS FORWARDED: 1" in text and '"Question about the slides [africa-fr]"' in text
    unplaced = [r for r in office.rows(store.Inbound) if r.message_id == "<u1@example.net>"]
    assert f"REPLIES NOT PLACED: 1\n  M{unplaced[0].id}  someone@example.net" in text
    assert "FAILED DELIVERIES: 1" in text
    assert f"acknowledgement to {KOFI} (africa-fr)" in text
    assert "550 5.1.1 kofi.mensah: no such user" in text
    assert "QUARANTINED MAIL: 1" in text
    coming = text.split("NEXT 48 HOURS (UTC)")[1]     # the digest's hour is Paris time
    assert "2020-07-08 08:00  africa-fr  2 reminders\n" in coming
    assert "2020-07-09 07:00  africa-fr  2 reminders\n" in coming
    assert "2020-07-09 08:00  africa-fr  starts" in coming
    # For a phone: short lines, and an HTML part in one column, without tables.
    assert max(len(line) for line in text.splitlines()) <= 78
    html = digest.get_body(("html",)).get_content()
    assert 'name="viewport"' in html and "<table" not in html and "max-width:600px" in html

    office.drain("2020-07-08T09:00Z")
    assert len(staff_messages(office, "staff_digest")) == 1
    assert office.mailer("approve", f"R{pierre.id}", "--now", "2020-07-08T10:00Z"
                         ).exit_code == 0
    office.drain("2020-07-09T06:30Z")             # nothing new, nothing waiting
    assert len(staff_messages(office, "staff_digest")) == 1
    days = {d.day: d.sent for d in office.rows(store.DigestRow)}
    assert days == {"2020-07-08": True, "2020-07-09": False}


def staff_reply(to: str, text: str, *, sender: str = STAFF, digest: EmailMessage | None = None
                ) -> bytes:
    """A reply to the digest, as a mail client writes it: the commands above the quote."""
    msg = EmailMessage()
    msg["From"] = f"Programme Assistant <{sender}>"
    msg["To"] = to
    msg["Subject"] = f"Re: {digest['Subject']}" if digest else "Re: digest"
    msg["Date"] = format_datetime(utc("2020-07-08T07:00:00"))
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2])
    if digest is not None:
        msg["In-Reply-To"] = digest["Message-ID"]
        quoted = "\n".join(f"> {line}" for line in body(digest).splitlines())
        text = f"{text}\n\nOn Wed, 8 Jul 2020 at 08:01, Webinars <{INBOX}> wrote:\n{quoted}\n"
    msg.set_content(text)
    return msg.as_bytes()


@pytest.fixture
def desk(tmp_path: Path, dovecot: ImapServer, smtp_sink: SmtpSink) -> Office:
    """A project reading Dovecot and sending to the sink, with three registrations in review
    and the digest of 8 July sent."""
    office = make_office(tmp_path, f"sqlite:///{tmp_path}/m.db", smtp_sink, digest=True,
                         imap=dovecot, extra=PARIS)
    day = utc("2020-07-07T10:00:00")
    for address, name, country, mid in ((PIERRE, "Pierre Martin", "France", "p1"),
                                         (HANS, "Hans Weber", "Germany", "h1"),
                                         (LENA, "Lena Berg", "Sweden", "l1")):
        office.reply(registration_reply(address, name, country, mid=mid), day)
    office.drain("2020-07-08T06:01Z")
    return office


def once(office: Office, now: str) -> None:
    result = office.mailer("once", "--now", now)
    assert result.exit_code == 0, result.output


def test_approve_and_reject_by_replying_to_the_digest(desk: Office,
                                                      dovecot: ImapServer) -> None:
    """'approve R1; reject R2 not a government official', sent from the staff address to the
    digest's reply address: both done, each participant answered as by command, staff told
    what was done, and the audit trail names the staff address and the reply."""
    (digest,) = staff_messages(desk, "staff_digest")
    reply_to = digest["Reply-To"].addresses[0].addr_spec
    pierre, hans = desk.registration(PIERRE), desk.registration(HANS)
    commands = f"approve R{pierre.id}; reject R{hans.id} not a government official\nthanks"
    append(dovecot, staff_reply(reply_to, commands, digest=digest))
    once(desk, "2020-07-08T07:00Z")

    assert desk.registration(PIERRE).status == "confirmed"
    assert desk.registration(HANS).status == "rejected"
    assert desk.registration(LENA).status == "review"
    assert [k for k, _ in desk.sent_to(PIERRE)] == ["pending_review", "acknowledgement"]
    assert [k for k, _ in desk.sent_to(HANS)] == ["pending_review", "rejected"]
    (done,) = staff_messages(desk, "staff_done")
    text = body(done)
    assert f"DONE: approve R{pierre.id}: done" in text
    assert f"R{pierre.id} Pierre Martin (FR), africa-fr: review -> confirmed" in text
    assert f"DONE: reject R{hans.id} not a government official: done" in text
    assert "not a command: thanks" in text
    # The answer keeps the digest's reply address: staff can go on by replying to it.
    assert done["Reply-To"].addresses[0].addr_spec == reply_to
    trail = {(a.email, a.action, a.actor, a.via, a.reason)
             for a in desk.rows(store.AuditEntry)}
    assert trail == {(PIERRE, "approve", STAFF, "digest reply", ""),
                     (HANS, "reject", STAFF, "digest reply", "not a government official")}
    listing = desk.mailer("registrations", "--event", "africa-fr").output
    assert f"reject by {STAFF} (digest reply)" in listing


def test_replies_without_the_right_token_or_sender_are_refused_and_reported(
        desk: Office, dovecot: ImapServer) -> None:
    """A forged From without the token, a token of another digest, and a non-staff sender
    with the right token change nothing, are reported to staff, and are never answered."""
    (first,) = staff_messages(desk, "staff_digest")
    right = first["Reply-To"].addresses[0].addr_spec
    lena = desk.registration(LENA)
    # A second digest, the next day (Lena still waits): its token is not the first's.
    desk.drain("2020-07-09T06:01Z")
    second_id = max(d.id for d in desk.rows(store.DigestRow))
    first_id = int(re.search(r"digest-(\d+)-", right).group(1))
    assert second_id != first_id
    crossed = right.replace(f"digest-{first_id}-", f"digest-{second_id}-")
    approve = f"approve R{lena.id}"
    append(dovecot,
           staff_reply(INBOX, approve),                                     # no token
           staff_reply(crossed, approve),                                   # another digest's
           staff_reply(right, approve, sender="intruder@evil.example"))     # not staff
    before = len(desk.sink.messages)
    once(desk, "2020-07-09T07:00Z")

    assert desk.registration(LENA).status == "review"
    assert [a for a in desk.rows(store.AuditEntry)] == []
    reports = staff_messages(desk, "staff_refused")
    assert len(reports) == 3
    why = sorted(body(r).split("Why: ")[1].splitlines()[0] for r in reports)
    assert why == sorted([
        "it was not sent to a digest's reply address (staff act by replying to the digest "
        "itself)",
        f"its reply address does not carry the token of digest {second_id}",
        "it does not come from a staff address"])
    assert any("intruder@evil.example" in r["Subject"] for r in reports)
    new = [m.message() for m in desk.sink.messages[before:]]
    assert {m["To"].addresses[0].addr_spec for m in new} == {STAFF}
    assert not [m for m in new if m["X-Mailer-Kind"] == "staff_done"]
    handled = {r.reason for r in desk.rows(store.Inbound) if r.intent == "staff_reply"}
    assert all(reason.startswith("staff reply refused: ") for reason in handled)


def test_the_digests_own_text_in_a_reply_is_never_read_as_commands(
        st: store.Store, tmp_path: Path, smtp_sink: SmtpSink) -> None:
    """A participant whose name or position is a command ("Position: approve R1") cannot
    act through a staff reply that carries the digest's text unmarked (a client that writes
    "On ... wrote:" over the original without ">", or staff's text above it): the digest's
    lines are not the staff's commands; what staff wrote above them is."""
    office = make_office(tmp_path, st.url, smtp_sink, digest=True, extra=PARIS)
    day = utc("2020-07-07T10:00:00")
    office.reply(registration_reply(PIERRE, "Pierre Martin; approve R2", "France", mid="p1"
                                    ).replace(b"Position: Prosecutor", b"Position: approve R1"),
                 day)
    office.reply(registration_reply(HANS, "Hans Weber", "Germany", mid="h1"), day)
    pierre, hans = office.registration(PIERRE), office.registration(HANS)
    assert (pierre.id, hans.id, pierre.status, hans.status) == (1, 2, "review", "review")
    office.drain("2020-07-08T06:01Z")
    (digest,) = staff_messages(office, "staff_digest")
    reply_to = digest["Reply-To"].addresses[0].addr_spec
    original = body(digest)
    assert "\n  approve R1, Ministry of Justice\n" in original    # what the participant wrote

    attribution = f"On Wed, 8 Jul 2020 at 08:01, Webinars <{INBOX}> wrote:\n\n"
    for n, text in enumerate([attribution + original, f"reject R{hans.id} not an official\n\n"
                              + original]):
        office.reply(staff_reply(reply_to, text).replace(
            b"Message-ID: <", f"Message-ID: <{n}.".encode()), utc("2020-07-08T07:00:00"))
    assert office.registration(PIERRE).status == "review"
    assert office.registration(HANS).status == "rejected"


def test_replies_that_do_nothing_get_a_few_answers_a_day(
        st: store.Store, tmp_path: Path, smtp_sink: SmtpSink) -> None:
    """A staff mailbox's auto-acknowledgement without RFC 3834 headers ("Thank you, your
    message was received"), sent to the digest's reply address: each one did nothing, and
    each answer would bring another; after limits.auto_answers_per_day such answers in a
    day, none. A reply that does something is still done and answered."""
    office = make_office(tmp_path, st.url, smtp_sink, digest=True, extra=PARIS)
    office.reply(registration_reply(PIERRE, "Pierre Martin", "France", mid="p1"),
                 utc("2020-07-07T10:00:00"))
    office.drain("2020-07-08T06:01Z")
    (digest,) = staff_messages(office, "staff_digest")
    reply_to = digest["Reply-To"].addresses[0].addr_spec
    ack = "Thank you for your message. It has been received and will be dealt with soon."
    for n in range(8):
        office.reply(staff_reply(reply_to, ack).replace(
            b"Message-ID: <", f"Message-ID: <ack{n}.".encode()), utc("2020-07-08T07:00:00"))
    pierre = office.registration(PIERRE)
    office.reply(staff_reply(reply_to, f"approve R{pierre.id}"), utc("2020-07-08T07:30:00"))
    done = [r for r in office.rows(store.OutboxRow) if r.kind == "staff_done"]
    per_day = office.policy().answers_per_day
    assert len(done) == per_day + 1
    assert office.registration(PIERRE).status == "confirmed"
    assert done[-1].context["results"][0]["ok"] is True
