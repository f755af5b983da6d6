"""`mailer person` holds everything stored about one person; `mailer forget` leaves nothing of
them in any table, keeps the counts per country, and gives their seat to the waiting list.
On SQLite and PostgreSQL, with the person's data in every table that can hold it."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from mailer import store
from mailer.staff import tokens
from tests.servers.smtp import SmtpSink
from tests.staffkit import (
    MOMENT,
    NOW,
    SECRET,
    STAFF,
    Office,
    make_office,
    question,
    registration_reply,
)

AWA, AWA_NAME = "awa.diop@justice.gouv.sn", "Awa Diop"
MOUSSA = "moussa.sow@justice.gouv.sn"

DELEGATION = (
    f"From: {AWA_NAME} <{AWA}>\r\nTo: webinars+africa-fr@example.org\r\n"
    "Subject: Re: Invitation [africa-fr]\r\nMessage-ID: <delegation@client.example>\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n\r\n"
    "Please register our delegation:\r\n\r\n"
    f"Name: {AWA_NAME}\r\nPosition: Magistrate\r\nOrganisation: Cour supreme\r\n"
    f"Country: Senegal\r\nEmail: {AWA}\r\n\r\n"
    "Name: Moussa Sow\r\nPosition: Prosecutor\r\nOrganisation: Parquet general\r\n"
    f"Country: Senegal\r\nEmail: {MOUSSA}\r\n").encode()


@pytest.fixture
def office(st: store.Store, tmp_path: Path, smtp_sink: SmtpSink) -> Office:
    return make_office(tmp_path, st.url, smtp_sink, digest=True)


def awa_everywhere(office: Office) -> bytes:
    """Awa's data in every table that can hold a person; returns her quarantined message."""
    office.sink.fail_rcpt[AWA] = (550, "5.1.1 mailbox of awa.diop unknown")
    office.reply(DELEGATION)                                 # Awa and Moussa: confirmed
    for n in range(3):                                       # two more seats, then waiting
        office.reply(registration_reply(f"p{n}@justice.gouv.sn", f"Person {n}", "Senegal",
                                        mid=f"p{n}"))
    office.reply(registration_reply(AWA, AWA_NAME, "Senegal", mid="lac1", event_id="lac-es"))
    office.reply(question(AWA, mid="q1", text="Awa Diop here: will there be slides?"))
    big = registration_reply(AWA, AWA_NAME, "Senegal", mid="big1", extra="x" * 500)
    office.reply(big, max_bytes=300)
    office.drain()     # her acknowledgement fails (550: suppressed); the digest lists her
    lac = office.registration(AWA, "lac-es")
    assert office.mailer("approve", f"R{lac.id}", "--by", "alice", "--reason",
                         "observer status", "--now", NOW).exit_code == 0
    return big


def test_person_json_holds_everything_stored_about_them(office: Office) -> None:
    """Every row naming the person, in every table, is in the export."""
    big = awa_everywhere(office)
    naming = office.tables_naming(AWA)
    assert set(naming) >= {"registrations", "outbox", "inbound", "suppressions", "audit",
                           "quarantined_mail"}
    result = office.mailer("person", AWA, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)

    mine = [r for r in office.rows(store.Registration) if r.email == AWA]
    assert {(r["ref"], r["event_id"], r["status"], r["name"], r["organisation"], r["position"])
            for r in data["registrations"]} == {
        (f"R{r.id}", r.event_id, r.status, r.name, r.organisation, r.position) for r in mine}
    lac = next(r for r in data["registrations"] if r["event_id"] == "lac-es")
    assert [(a["action"], a["actor"], a["reason"]) for a in lac["audit"]] == [
        ("approve", "alice", "observer status")]
    moussa = office.registration(MOUSSA)
    assert data["registered_for_others"] == [{"ref": f"R{moussa.id}", "event_id": "africa-fr"}]

    to_her = {r.id for r in office.rows(store.OutboxRow) if r.recipient == AWA}
    assert {m["id"] for m in data["messages_to_them"]} == to_her
    failed = [m for m in data["messages_to_them"] if m["status"] == "failed"]
    assert failed and "mailbox of awa.diop unknown" in failed[0]["last_error"]
    about = {(m["kind"], m["recipient"]) for m in data["messages_about_them"]}
    # Her question, the digest listing her, and Moussa's acknowledgement ("registered by").
    assert about == {("staff_question", "staff@example.org"),
                     ("staff_digest", "staff@example.org"), ("acknowledgement", MOUSSA)}
    from_her = {r.message_id for r in office.rows(store.Inbound) if r.sender == AWA}
    assert {m["message_id"] for m in data["messages_from_them"]} == from_her
    (kept,) = data["quarantined_mail"]
    assert base64.b64decode(kept["eml_base64"]) == big
    assert "550" in data["suppressed"]["reason"]
    # Generic: every text of every row about her is somewhere in the export.
    exported = json.dumps(data, ensure_ascii=False)
    for table, cells in naming.items():
        if table == "quarantined_mail":
            continue                          # its bytes are checked above, base64-encoded
        for cell in cells:
            value = cell.split("=", 1)[1]
            assert value[:60] in exported or json.dumps(value)[1:61] in exported, (table, cell)

    text = office.mailer("person", AWA)
    assert text.exit_code == 0 and "approve by alice" in text.output


def test_forget_leaves_nothing_of_the_person_and_keeps_counts(office: Office) -> None:
    """After `forget`: no table holds her address or name, the counts per country are kept,
    her seat went to the first waiting (who is told), and she is sent nothing more."""
    awa_everywhere(office)
    waiting = office.registration("p2@justice.gouv.sn")
    assert waiting.status == "waiting"
    before_sent = len(office.sink.messages)

    dry = office.mailer("forget", AWA, "--dry-run", "--now", NOW)
    assert dry.exit_code == 0 and "would erase: 2 registration(s)" in dry.output
    assert office.registration(AWA) is not None

    result = office.mailer("forget", AWA, "--by", "dpo", "--now", NOW)
    assert result.exit_code == 0, result.output
    assert "erased: 2 registration(s)" in result.output
    assert office.tables_naming(AWA, AWA_NAME) == {}
    assert office.registration("p2@justice.gouv.sn").status == "confirmed"
    assert office.registration(MOUSSA).registered_by == ""
    counts = {(c.event_id, c.country, c.status): c.count
              for c in office.rows(store.RetainedCount)}
    assert counts == {("africa-fr", "SN", "cancelled"): 1, ("lac-es", "SN", "cancelled"): 1}
    forgot = [a for a in office.rows(store.AuditEntry) if a.action == "forget"]
    assert [(a.actor, a.email, a.ref) for a in forgot] == [("dpo", "", "")]

    office.drain()
    new = [m for m in office.sink.messages[before_sent:]]
    got = [(str(m.message()["X-Mailer-Kind"]), m.rcpt_tos[0]) for m in new]
    assert got == [("promotion", "p2@justice.gouv.sn")]
    assert office.mailer("person", AWA).output.strip() == f"nothing stored about {AWA}"
    again = office.mailer("forget", AWA, "--now", NOW)
    assert again.exit_code == 0 and "nothing stored" in again.output


def test_forget_erases_her_name_from_what_staff_were_told(office: Office) -> None:
    """Staff's answer to a digest reply names her by REF and name ("R1 Awa Diop (SN)"), not
    by address: `person --json` shows it, and `forget` leaves her name nowhere."""
    office.reply(registration_reply(AWA, AWA_NAME, "Senegal", mid="lac1", event_id="lac-es"))
    awa = office.registration(AWA, "lac-es")
    assert awa.status == "review"
    office.drain()                                           # 12:00 UTC: the day's digest
    (digest,) = [d for d in office.rows(store.DigestRow) if d.sent]
    to = tokens.reply_address("webinars@example.org", SECRET, digest.id)
    reply = (f"From: {STAFF}\r\nTo: {to}\r\nSubject: Re: digest\r\n"
             "Message-ID: <staff-1@example.org>\r\n\r\n"
             f"approve R{awa.id}\r\n").encode()
    office.reply(reply, MOMENT.replace(hour=13))
    assert office.registration(AWA, "lac-es").status == "confirmed"
    (done,) = [r for r in office.rows(store.OutboxRow) if r.kind == "staff_done"]
    assert AWA_NAME in json.dumps(done.context)

    data = json.loads(office.mailer("person", AWA, "--json").output)
    assert done.id in {m["id"] for m in data["messages_about_them"]}
    assert office.mailer("forget", AWA, "--now", NOW).exit_code == 0
    assert office.tables_naming(AWA, AWA_NAME) == {}


def test_an_internationalised_address_is_found_and_forgotten_everywhere(
        office: Office) -> None:
    """josé.pérez@justice.gob.es asked a question: the forwarded question (its context kept
    as JSON) is in his export, and `forget` leaves his address nowhere."""
    jose = "josé.pérez@justice.gob.es"
    office.reply(registration_reply(jose, "José Pérez", "Senegal", mid="j1"))
    office.reply(question(jose, mid="jq", text="¿Habrá diapositivas?"))
    asked = [r for r in office.rows(store.OutboxRow) if r.kind == "staff_question"]
    assert [r.context["sender"] for r in asked] == [jose]

    data = json.loads(office.mailer("person", jose, "--json").output)
    assert asked[0].id in {m["id"] for m in data["messages_about_them"]}
    assert office.mailer("forget", jose, "--now", NOW).exit_code == 0
    assert office.tables_naming(jose, "José Pérez") == {}
