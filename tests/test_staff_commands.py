"""Staff commands through the command line, on SQLite and PostgreSQL, answered over a real
SMTP server: each changes what the rules say, answers the participant as a reply would, and
leaves an audit record; wrong input exits 2 with one line and changes nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from icalendar import Calendar

from mailer import store
from tests.servers.smtp import SmtpSink
from tests.staffkit import (
    NOW,
    Office,
    body,
    make_office,
    parse,
    registration_reply,
)

PIERRE = "pierre.martin@diplomatie.gouv.fr"
AWA = "awa.diop@justice.gouv.sn"


@pytest.fixture
def office(st: store.Store, tmp_path: Path, smtp_sink: SmtpSink) -> Office:
    """A project on the test's store (SQLite or PostgreSQL) and the SMTP sink."""
    return make_office(tmp_path, st.url, smtp_sink)


def senegal(office: Office, count: int, first: int = 0) -> list[str]:
    """``count`` Senegalese registrations by reply, in order; their addresses."""
    people = [f"p{n}@justice.gouv.sn" for n in range(first, first + count)]
    for n, address in enumerate(people, start=first):
        office.reply(registration_reply(address, f"Person {n}", "Senegal", mid=f"sn{n}"))
    return people


def trail(office: Office, email: str) -> list[tuple[str, str, str, str]]:
    return [(a.action, a.actor, a.detail, a.reason) for a in office.rows(store.AuditEntry)
            if a.email == email]


def test_approve_gives_a_seat_answers_the_participant_and_is_audited(office: Office) -> None:
    """A registration in review, approved by REF: confirmed, acknowledged with the calendar
    invitation over SMTP, and the audit trail says who, what and why."""
    office.reply(registration_reply(PIERRE, "Pierre Martin", "France", mid="fr1"))
    ref = f"R{office.registration(PIERRE).id}"
    review = office.mailer("review", "--now", NOW)
    assert review.exit_code == 0
    assert ref in review.output and "France is not invited to this event" in review.output

    result = office.mailer("approve", ref, "--by", "alice", "--reason",
                           "invited by the director", "--now", NOW)
    assert result.exit_code == 0, result.output
    assert f"{ref} Pierre Martin (FR), africa-fr: review -> confirmed" in result.output
    assert office.registration(PIERRE).status == "confirmed"
    assert trail(office, PIERRE) == [("approve", "alice", f"{ref} review -> confirmed",
                                      "invited by the director")]

    office.drain()
    kinds = [kind for kind, _ in office.sent_to(PIERRE)]
    assert kinds == ["pending_review", "acknowledgement"]
    ack = office.sent_to(PIERRE)[1][1]
    calendar = [p for p in ack.walk() if p.get_content_type() == "text/calendar"]
    assert calendar and "METHOD:REQUEST" in calendar[0].get_content()
    # Threaded under the participant's own registration message.
    assert ack["In-Reply-To"] == "<fr1@client.example>"

    listing = office.mailer("registrations", "--event", "africa-fr")
    assert "approve by alice (command)" in listing.output
    assert "why: invited by the director" in listing.output


def test_approving_a_full_country_puts_it_on_the_waiting_list(office: Office) -> None:
    """Approval takes a seat only if the country has one, as the rules say."""
    senegal(office, 4)
    office.reply(registration_reply("late@justice.gouv.sn", "Late One", "Senegal", mid="l1"))
    late = office.registration("late@justice.gouv.sn")
    assert late.status == "waiting"
    rejected = office.mailer("reject", f"R{late.id}", "--reason", "duplicate", "--now", NOW)
    assert rejected.exit_code == 0, rejected.output
    again = office.mailer("approve", f"R{late.id}", "--now", NOW)
    assert again.exit_code == 0, again.output
    assert "rejected -> waiting" in again.output
    assert office.registration("late@justice.gouv.sn").status == "waiting"


def test_reject_frees_the_seat_for_the_first_waiting(office: Office) -> None:
    """Rejecting a confirmed participant: they are told, the first of their country's waiting
    list is promoted and told, and both are in the audit trail."""
    people = senegal(office, 6)
    office.drain()          # the acknowledgements went at once, as the daemon sends them
    first = office.registration(people[0])
    result = office.mailer("reject", f"R{first.id}", "--reason", "not a government official",
                           "--by", "bob", "--now", NOW)
    assert result.exit_code == 0, result.output
    assert office.registration(people[0]).status == "rejected"
    assert office.registration(people[4]).status == "confirmed"      # first waiting
    assert office.registration(people[5]).status == "waiting"
    assert trail(office, people[0]) == [("reject", "bob", f"R{first.id} confirmed -> rejected",
                                         "not a government official")]
    promoted = trail(office, people[4])
    assert promoted[0][0] == "promoted" and f"seat freed by R{first.id}" in promoted[0][2]

    office.drain()
    told = office.sent_to(people[0])
    assert [k for k, _ in told] == ["acknowledgement", "rejected"]
    # The reason is for the audit trail, not for the participant.
    assert "government official" not in body(told[1][1])
    assert "unable to accept" in body(told[1][1]) or "accepter" in body(told[1][1])
    # Their calendar entry is cancelled, one SEQUENCE above the invitation they got.
    (ack_ics,) = [p.get_content() for p in told[0][1].walk()
                  if p.get_content_type() == "text/calendar"]
    (refusal_ics,) = [p.get_content() for p in told[1][1].walk()
                      if p.get_content_type() == "text/calendar"]
    assert "METHOD:CANCEL" in refusal_ics and "SEQUENCE:1" in refusal_ics
    assert "SEQUENCE:0" in ack_ics
    assert [k for k, _ in office.sent_to(people[4])] == ["waiting_list", "promotion"]


def test_approving_a_rejected_seat_holder_invites_above_the_refusals_cancel(
        office: Office) -> None:
    """Rejected by mistake, then approved: the new invitation's SEQUENCE rises above the
    CANCEL the refusal carried (an equal one may be ignored by the calendar that took the
    CANCEL), and a second round rises again."""
    people = senegal(office, 4)
    office.drain()
    ref = f"R{office.registration(people[0]).id}"
    for verb, extra in (("reject", ("--reason", "wrong person")), ("approve", ()),
                        ("reject", ("--reason", "wrong again")), ("approve", ())):
        result = office.mailer(verb, ref, *extra, "--now", NOW)
        assert result.exit_code == 0, result.output
    office.drain()
    calendars = []
    for kind, msg in office.sent_to(people[0]):     # in the order they were queued
        (ics,) = [Calendar.from_ical(p.get_content()) for p in msg.walk()
                  if p.get_content_type() == "text/calendar"]
        (vevent,) = ics.walk("VEVENT")
        calendars.append((kind, str(ics["METHOD"]), int(vevent["SEQUENCE"])))
    assert calendars == [("acknowledgement", "REQUEST", 0), ("rejected", "CANCEL", 1),
                         ("acknowledgement", "REQUEST", 2), ("rejected", "CANCEL", 3),
                         ("acknowledgement", "REQUEST", 4)]


def test_register_cancel_and_move_are_answered_as_replies_are(office: Office) -> None:
    """Someone who phoned is registered, moved to the other session, then cancelled: each
    step is answered (acknowledgement, withdrawal + acknowledgement, withdrawal)."""
    done = office.mailer("register", "--event", "africa-fr", "--email", "Maria@SRE.gob.mx",
                         "--name", "María Reyes", "--country", "Mexico", "--lang", "es",
                         "--reason", "phoned", "--now", NOW)
    assert done.exit_code == 0, done.output
    maria = "maria@sre.gob.mx"
    # Mexico is not invited to the African session: review, as for a reply.
    assert office.registration(maria).status == "review"
    ref = f"R{office.registration(maria).id}"
    moved = office.mailer("move", ref, "--to", "lac-es", "--reason", "wrong session",
                          "--now", NOW)
    assert moved.exit_code == 0, moved.output
    assert office.registration(maria).status == "cancelled"
    new = office.registration(maria, "lac-es")
    assert new.status == "confirmed" and new.language == "es" and new.name == "María Reyes"
    # The daemon sends each answer at once; one still queued when its registration is
    # cancelled would no longer be sent (tests/test_updates.py).
    office.drain()
    cancelled = office.mailer("cancel", f"R{new.id}", "--now", NOW)
    assert cancelled.exit_code == 0, cancelled.output
    assert office.registration(maria, "lac-es").status == "cancelled"

    office.drain()
    got = [(kind, m["Subject"].rsplit("[", 1)[1].rstrip("]")) for kind, m in
           office.sent_to(maria)]
    assert got == [("pending_review", "africa-fr"), ("withdrawal", "africa-fr"),
                   ("acknowledgement", "lac-es"), ("withdrawal", "lac-es")]
    assert all(m["Content-Language"] == "es" for _, m in office.sent_to(maria))
    actions = [(a.action, a.event_id) for a in office.rows(store.AuditEntry)
               if a.email == maria]
    assert actions == [("register", "africa-fr"), ("move", "africa-fr"), ("move", "lac-es"),
                       ("cancel", "lac-es")]


def test_a_registration_can_be_named_by_its_address_and_event(office: Office) -> None:
    """`approve EMAIL --event ID` works like a REF."""
    office.reply(registration_reply(PIERRE, "Pierre Martin", "France", mid="fr1"))
    result = office.mailer("approve", PIERRE, "--event", "africa-fr", "--now", NOW)
    assert result.exit_code == 0, result.output
    assert office.registration(PIERRE).status == "confirmed"


@pytest.mark.parametrize("args, says", [
    (("approve", "R999"), "R999: no such registration"),
    (("approve", "Q12"), "neither a REF"),
    (("approve", PIERRE, "--event", "no-such-event"), "--event: no event 'no-such-event'"),
    (("approve", "@R1"), "is already confirmed for africa-fr: nothing to approve"),
    (("approve", "@R2", "@R1"), "is already confirmed for africa-fr: nothing to approve"),
    (("reject", "@R3", "--reason", "x"), "is already rejected"),
    (("cancel", "@R3"), "is rejected for africa-fr: nothing to cancel"),
    (("move", "@R1", "--to", "no-such-event"), "--to: no event 'no-such-event'"),
    (("register", "--event", "no-such-event", "--email", "a@b.org", "--name", "A",
      "--country", "SN"), "--event: no event 'no-such-event'"),
    (("register", "--event", "africa-fr", "--email", "a@b.org", "--name", "A",
      "--country", "Atlantis"), "--country: 'Atlantis' is not a country"),
    (("register", "--event", "africa-fr", "--email", AWA, "--name", "Awa",
      "--country", "SN"), f"{AWA} is already registered for africa-fr"),
    (("resend", "#999"), "#999: no such message"),
    (("quarantine", "--show", "M999"), "M999: no such quarantined message"),
    (("messages", "--event", "no-such-event"), "--event: no event 'no-such-event'"),
])
def test_wrong_input_exits_2_with_one_line_and_changes_nothing(
        office: Office, args: tuple[str, ...], says: str) -> None:
    """An unknown REF or event, approving twice (even with another REF that could be
    approved), an impossible action: exit 2, one clear line, not one row changed."""
    office.reply(registration_reply(AWA, "Awa Diop", "Senegal", mid="sn1"))       # R1
    office.reply(registration_reply(PIERRE, "Pierre Martin", "France", mid="fr1"))  # R2
    office.reply(registration_reply("x@gouv.fr", "Xavier", "France", mid="fr2"))   # R3
    refs = {f"@R{n}": f"R{r.id}" for n, r in enumerate(
        sorted(office.rows(store.Registration), key=lambda r: r.id), start=1)}
    assert office.mailer("reject", refs["@R3"], "--reason", "spam", "--now",
                         NOW).exit_code == 0
    before = office.everything()
    when = () if args[0] == "messages" else ("--now", NOW)
    result = office.mailer(*[refs.get(a, a) for a in args], *when)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], result.output
    assert office.everything() == before


def test_reject_needs_a_reason(office: Office) -> None:
    """`reject` without --reason is bad usage (exit 2), and nothing is rejected."""
    office.reply(registration_reply(PIERRE, "Pierre Martin", "France", mid="fr1"))
    result = office.mailer("reject", f"R{office.registration(PIERRE).id}", "--now", NOW)
    assert result.exit_code == 2 and "--reason" in result.output
    assert office.registration(PIERRE).status == "review"


def test_messages_show_each_failure_in_the_servers_words_and_resend_sends_again(
        office: Office) -> None:
    """A refused acknowledgement: `messages` shows the 550 and its text, `plan` counts it
    failed (not sent), `registrations` marks the participant; `resend` delivers it once the
    address works, and is audited."""
    office.sink.fail_rcpt[AWA] = (550, "5.1.1 <awa.diop@justice.gouv.sn>: mailbox unknown")
    office.reply(registration_reply(AWA, "Awa Diop", "Senegal", mid="sn1"))
    office.drain()
    failed = office.mailer("messages", "--status", "failed")
    assert failed.exit_code == 0
    assert "acknowledgement" in failed.output and AWA in failed.output
    assert "550 5.1.1 <awa.diop@justice.gouv.sn>: mailbox unknown" in failed.output
    as_json = json.loads(office.mailer("messages", "--to", AWA, "--json").output)
    (row,) = as_json
    assert row["status"] == "failed" and row["error"].startswith("550")
    assert row["kind"] == "acknowledgement"

    # The week-before reminder goes the same way: `plan` says failed, not sent.
    week_before = "2020-07-02T09:00Z"
    office.drain(week_before)
    plan = json.loads(office.mailer("plan", "--json", "--now", week_before,
                                    "--event", "africa-fr").output)
    (reminder,) = [s for s in plan["sends"] if s["kind"] == "reminder" and s["label"] == "7d"]
    assert (reminder["failed"], reminder["sent"]) == (1, 0)
    text_plan = office.mailer("plan", "--now", week_before, "--event", "africa-fr").output
    assert "reminder     7d             1 recipient(s): 1 failed" in text_plan

    listing = office.mailer("registrations", "--format", "json")
    (reg,) = json.loads(listing.output)["registrations"]
    assert reg["status"] == "confirmed" and "550" in reg["delivery"]
    assert "not delivered" in office.mailer("registrations").output

    del office.sink.fail_rcpt[AWA]
    resent = office.mailer("resend", f"#{row['id']}", "--by", "carol", "--reason",
                           "mailbox fixed", "--now", NOW)
    assert resent.exit_code == 0, resent.output
    office.drain(week_before)
    assert [k for k, _ in office.sent_to(AWA)] == ["acknowledgement"]
    assert trail(office, AWA)[0][:2] == ("resend", "carol")
    assert "queued again" in trail(office, AWA)[0][2]
    # Delivered now: no longer marked.
    (reg,) = json.loads(office.mailer("registrations", "--format", "json").output)[
        "registrations"]
    assert reg["delivery"] == ""


def test_resend_twice_queues_one_copy_until_it_went_then_another(office: Office) -> None:
    """Staff double-tap `resend`: the second says the copy still waits (exit 0) and queues
    nothing, so Awa gets one copy; once it went, a resend is a deliberate new copy."""
    office.reply(registration_reply(AWA, "Awa Diop", "Senegal", mid="sn1"))
    office.drain()
    (ack,) = json.loads(office.mailer("messages", "--to", AWA, "--json").output)
    first = office.mailer("resend", f"#{ack['id']}", "--now", NOW)
    assert first.exit_code == 0 and "queued again as" in first.output
    again = office.mailer("resend", f"#{ack['id']}", "--now", NOW)
    assert again.exit_code == 0, again.output
    assert "already queued again" in again.output and "nothing more queued" in again.output
    office.drain()
    assert [k for k, _ in office.sent_to(AWA)] == ["acknowledgement"] * 2
    assert [a[0] for a in trail(office, AWA)] == ["resend"]

    # The copy went: a third copy is what staff ask for now (of the original or the copy).
    copy = max(r["id"] for r in json.loads(
        office.mailer("messages", "--to", AWA, "--json").output))
    third = office.mailer("resend", f"#{copy}", "--now", NOW)
    assert third.exit_code == 0 and "queued again as" in third.output
    assert "already" in office.mailer("resend", f"#{ack['id']}", "--now", NOW).output
    office.drain()
    assert [k for k, _ in office.sent_to(AWA)] == ["acknowledgement"] * 3


def test_resends_racing_in_separate_processes_queue_one_copy(office: Office) -> None:
    """Four `mailer resend` of one message at once, each its own process on the store
    (SQLite or PostgreSQL): one copy queued, the three others told it waits."""
    office.reply(registration_reply(AWA, "Awa Diop", "Senegal", mid="sn1"))
    office.drain()
    (ack,) = json.loads(office.mailer("messages", "--to", AWA, "--json").output)
    processes = [subprocess.Popen(
        [sys.executable, "-c", "from mailer.cli import main; main()", "resend",
         f"#{ack['id']}", "--now", NOW, "--config", str(office.config)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(4)]
    outputs = [p.communicate(timeout=120)[0].decode() for p in processes]
    assert [p.returncode for p in processes] == [0] * 4, outputs
    assert sum("already queued again" in o for o in outputs) == 3, outputs
    assert len(office.rows(store.OutboxRow)) == 2
    office.drain()
    assert [k for k, _ in office.sent_to(AWA)] == ["acknowledgement"] * 2


def test_messages_due_shows_what_goes_out_soon_queued_or_only_planned(office: Office) -> None:
    """A reminder is queued only when due, so `--status pending` never shows it coming;
    `--due 48` does, counted as the digest counts it, beside what waits in the outbox."""
    office.reply(registration_reply(AWA, "Awa Diop", "Senegal", mid="sn1"))
    office.drain()
    day_before = "2020-07-01T09:00Z"        # the week-before reminder goes 2020-07-02 08:00
    assert office.mailer("messages", "--status", "pending").output.strip() == "no messages"
    (ack,) = json.loads(office.mailer("messages", "--to", AWA, "--json").output)
    assert office.mailer("resend", f"#{ack['id']}", "--now", day_before).exit_code == 0

    due = office.mailer("messages", "--due", "48", "--now", day_before)
    assert due.exit_code == 0, due.output
    assert "queued in the outbox: 1" in due.output and "acknowledgement" in due.output
    assert "2020-07-02 08:00  africa-fr          1 reminder" in due.output
    as_json = json.loads(office.mailer("messages", "--due", "48", "--now", day_before,
                                       "--json").output)
    assert [r["kind"] for r in as_json["queued"]] == ["acknowledgement"]
    assert as_json["planned"] == [{"at": "2020-07-02T08:00+00:00", "event": "africa-fr",
                                   "what": "reminder", "count": 1}]
    # Nothing of lac-es, nor beyond the hours asked.
    assert "planned by the schedules: none" in office.mailer(
        "messages", "--due", "12", "--now", day_before, "--event", "lac-es").output
    wrong = office.mailer("messages", "--due", "48", "--to", AWA)
    assert wrong.exit_code == 2 and "--due" in wrong.output


def cancellation(sender: str, *, mid: str) -> bytes:
    return (f"From: {sender}\r\nTo: webinars+africa-fr@example.org\r\n"
            f"Subject: Re: [africa-fr]\r\nMessage-ID: <{mid}@client.example>\r\n\r\n"
            "Please cancel my registration.\r\n").encode()


def test_a_resent_invitation_keeps_the_persons_sequence(office: Office) -> None:
    """Awa withdrew and registered again (CANCEL 1, then REQUEST 2); her acknowledgement,
    sent again by staff, carries SEQUENCE 2, not the event's 0 (below the CANCEL)."""
    office.reply(registration_reply(AWA, "Awa Diop", "Senegal", mid="sn1"))
    office.drain()
    office.reply(cancellation(AWA, mid="sn2"))
    office.drain()
    office.reply(registration_reply(AWA, "Awa Diop", "Senegal", mid="sn3"))
    office.drain()
    rows = json.loads(office.mailer("messages", "--to", AWA, "--kind", "acknowledgement",
                                    "--json").output)
    newest = max(rows, key=lambda r: r["id"])
    assert office.mailer("resend", f"#{newest['id']}", "--now", NOW).exit_code == 0
    office.drain()
    sequences = []
    for kind, msg in office.sent_to(AWA):
        (ics,) = [Calendar.from_ical(p.get_content()) for p in msg.walk()
                  if p.get_content_type() == "text/calendar"]
        (vevent,) = ics.walk("VEVENT")
        sequences.append((kind, int(vevent["SEQUENCE"])))
    assert sequences == [("acknowledgement", 0), ("withdrawal", 1), ("acknowledgement", 2),
                         ("acknowledgement", 2)]


def test_quarantine_lists_shows_and_releases_set_aside_mail(office: Office) -> None:
    """Mail quarantined as too large is listed with its reason, written back byte for byte
    as .eml, and released: handled as a reply (a registration, answered) and audited."""
    raw = registration_reply(AWA, "Awa Diop", "Senegal", mid="big1",
                             extra="\r\n" + "x" * 120 + "\r\n")
    outcome = office.reply(raw, max_bytes=200)
    assert outcome.outcome == "quarantined"
    listing = office.mailer("quarantine")
    assert listing.exit_code == 0
    (inbound,) = office.rows(store.Inbound)
    ref = f"M{inbound.id}"
    assert ref in listing.output and "too large" in listing.output
    out = office.folder / "set-aside.eml"
    shown = office.mailer("quarantine", "--show", ref, "--out", str(out))
    assert shown.exit_code == 0, shown.output
    assert out.read_bytes() == raw
    assert parse(out.read_bytes())["Message-ID"] == "<big1@client.example>"

    released = office.mailer("quarantine", "--release", ref, "--by", "dan", "--now", NOW)
    assert released.exit_code == 0, released.output
    assert "handed back: handled" in released.output
    assert office.registration(AWA).status == "confirmed"
    assert office.rows(store.QuarantinedMail) == []
    assert [(a.action, a.actor) for a in office.rows(store.AuditEntry)] == [("release", "dan")]
    office.drain()
    assert [k for k, _ in office.sent_to(AWA)] == ["acknowledgement"]
    again = office.mailer("quarantine", "--release", ref, "--now", NOW)
    assert again.exit_code == 2 and "no such quarantined message" in again.output


def test_the_actor_defaults_to_the_staff_name_in_the_environment(
        office: Office, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --by, the audit trail names $MAILER_STAFF_NAME."""
    monkeypatch.setenv("MAILER_STAFF_NAME", "Programme assistant")
    office.reply(registration_reply(PIERRE, "Pierre Martin", "France", mid="fr1"))
    assert office.mailer("approve", f"R{office.registration(PIERRE).id}",
                         "--now", NOW).exit_code == 0
    assert trail(office, PIERRE)[0][1] == "Programme assistant"


def test_purge_deletes_the_kept_bytes_of_old_quarantined_mail_only_with_yes(
        office: Office) -> None:
    """Quarantined bytes are kept retention.quarantine_days (30): `purge` says it would
    delete older ones, `purge --yes` deletes them, and the quarantine list says so."""
    office.reply(registration_reply(AWA, "Awa Diop", "Senegal", mid="big1", extra="x" * 300),
                 max_bytes=200)
    later = "2020-07-21T12:00Z"                     # 31 days after
    shown = office.mailer("purge", "--now", later)
    assert "1 quarantined message(s) older than 30 days would be deleted" in shown.output
    assert len(office.rows(store.QuarantinedMail)) == 1
    done = office.mailer("purge", "--now", later, "--yes")
    assert "1 quarantined message(s) older than 30 days deleted" in done.output
    assert office.rows(store.QuarantinedMail) == []
    assert "bytes not kept" in office.mailer("quarantine").output
    # Where the message itself is, not "look in the IMAP quarantine folder", which only
    # exists when imap.quarantine_folder is set.
    (inbound,) = office.rows(store.Inbound)
    for option in ("--show", "--release"):
        gone = office.mailer("quarantine", option, f"M{inbound.id}", "--now", later)
        assert gone.exit_code == 2
        assert "the message is still in the IMAP folder 'INBOX' (flagged $MailerQuarantined " \
               "if the server keeps keywords" in gone.output, gone.output


def test_a_wrong_staff_time_zone_is_one_clear_line(office: Office) -> None:
    """A time zone that does not exist: `mailer check` names the key, exit 2."""
    text = office.config.read_text().replace("[staff]\n", '[staff]\ntime_zone = "Mars/Base"\n')
    office.config.write_text(text)
    result = office.mailer("check")
    assert result.exit_code == 2
    assert "staff.time_zone: unknown time zone 'Mars/Base'" in result.output


def test_an_action_the_store_refuses_halfway_changes_nothing_and_exits_1(
        tmp_path: Path, smtp_sink: SmtpSink) -> None:
    """The audit record cannot be written (the database refuses it): the approval is rolled
    back with it, and the command says so in one line, exit 1."""
    office = make_office(tmp_path, f"sqlite:///{tmp_path}/m.db", smtp_sink)
    office.reply(registration_reply(PIERRE, "Pierre Martin", "France", mid="fr1"))
    st = store.Store(office.url)
    try:
        with st.engine.begin() as conn:
            conn.exec_driver_sql("CREATE TRIGGER refuse BEFORE INSERT ON audit "
                                 "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END")
    finally:
        st.close()
    before = office.everything()
    result = office.mailer("approve", f"R{office.registration(PIERRE).id}", "--now", NOW)
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert "database or disk is full; nothing was changed" in line
    assert office.everything() == before
