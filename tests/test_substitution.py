"""Substitutions on real SQLite and PostgreSQL: "I can no longer attend; please register my
colleague ... in my place" cancels the sender and registers the colleague in one transaction,
the seat handed over within a country, both people answered."""

from __future__ import annotations

import email
import email.policy
import multiprocessing
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import select

from mailer import store
from mailer.compose import Composer
from mailer.config import Organiser, Paths, Settings
from mailer.domain import Kind, Status
from mailer.handling import Policy, handle
from mailer.schedule import Catalog, load_catalog
from tests.builders import make_catalog
from tests.conftest import ROOT

NOW = datetime(2020, 7, 1, 12, 0, tzinfo=timezone.utc)
POLICY = Policy(inbox_address="webinars@example.org", staff_address="staff@example.org",
                domain="example.org")
AMADOU = "amadou.sow@justice.gouv.sn"
AMINA = "amina.diallo@justice.gouv.sn"


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    return make_catalog(tmp_path)


def mail(sender: str, name: str, body: str, *, mid: str) -> bytes:
    return (f"From: {name} <{sender}>\r\nTo: webinars+africa-fr@example.org\r\n"
            f"Subject: Re: [africa-fr]\r\nMessage-ID: <{mid}@client.example>\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n\r\n" + body).encode()


def register(st: store.Store, catalog: Catalog, sender: str, name: str, minute: int) -> None:
    body = f"Name: {name}\r\nCountry: Senegal\r\nPosition: Prosecutor\r\n"
    result = handle(st, catalog, mail(sender, name, body, mid=f"reg-{minute}"),
                    now=NOW.replace(minute=minute), policy=POLICY)
    assert result.outcome == "handled"


SUBSTITUTIONS = {
    "en": "Dear Secretariat,\r\n\r\nI can no longer attend; please register my colleague Ms "
          f"Amina Diallo, Legal Adviser, Ministry of Justice, {AMINA}, in my place.\r\n\r\n"
          "Best regards,\r\nAmadou Sow\r\n",
    "fr": "Madame, Monsieur,\r\n\r\nJe ne pourrai pas participer, je vous prie d'inscrire à ma "
          "place ma collègue Mme Amina Diallo, Conseillère juridique, Ministère de la Justice, "
          f"{AMINA}.\r\n\r\nCordialement,\r\nAmadou Sow\r\n",
    "es": "Estimados señores:\r\n\r\nNo podré asistir; le ruego inscribir en mi lugar a mi "
          "colega la Sra. Amina Diallo, Asesora Jurídica, Ministerio de Justicia, "
          f"{AMINA}.\r\n\r\nAtentamente,\r\nAmadou Sow\r\n",
}


def statuses(st: store.Store) -> dict[str, str]:
    with st.transaction() as session:
        return {r.email: r.status for r in store.registrations_of(session, "africa-fr")}


def outbox(st: store.Store) -> list[store.OutboxRow]:
    with st.transaction() as session:
        rows = list(session.execute(select(store.OutboxRow.__table__).order_by(
            store.OutboxRow.id)))
    return rows


@pytest.mark.parametrize("lang", ["en", "fr", "es"])
def test_a_substitute_takes_the_seat_and_both_are_answered(
        st: store.Store, catalog: Catalog, tmp_path: Path, lang: str) -> None:
    """Senegal is full and one waits; Amadou hands his seat to Amina. He is cancelled and
    she confirmed by the one message, the waiting stays waiting, and each is answered: he
    that she was registered in his place, she with the calendar invitation and whom she
    replaces."""
    register(st, catalog, AMADOU, "Amadou Sow", 0)
    for i in range(1, 4):
        register(st, catalog, f"p{i}@gouv.sn", f"Person {i}", i)
    register(st, catalog, "waiting@gouv.sn", "Waiting Person", 9)
    before = len(outbox(st))

    result = handle(st, catalog, mail(AMADOU, "Amadou Sow", SUBSTITUTIONS[lang], mid="s1"),
                    now=NOW.replace(hour=13), policy=POLICY)
    assert result.outcome == "handled" and result.intent.kind == "substitution"
    now = statuses(st)
    assert now[AMADOU] == Status.CANCELLED and now[AMINA] == Status.CONFIRMED
    assert now["waiting@gouv.sn"] == Status.WAITING
    answers = {(row.kind, row.recipient): row for row in outbox(st)[before:]}
    assert set(answers) == {("acknowledgement", AMINA), ("withdrawal", AMADOU)}

    settings = Settings(organiser=Organiser(address="webinars@example.org"),
                        paths=Paths(templates=ROOT / "templates",
                                    schedules=tmp_path / "schedules"))
    composer = Composer(settings, catalog)

    def text_of(row: store.OutboxRow) -> tuple[str, list[str]]:
        wire = composer.compose(store.row_to_outgoing(row), now=NOW.replace(hour=14))
        msg = email.message_from_bytes(wire.data, policy=email.policy.default)
        parts = [p.get_content_type() for p in msg.walk()]
        return msg.get_body(("plain",)).get_content(), parts

    ack, parts = text_of(answers["acknowledgement", AMINA])
    assert "Amadou Sow" in ack and AMADOU in ack and "text/calendar" in parts
    withdrawal, _ = text_of(answers["withdrawal", AMADOU])
    assert "Amina Diallo" in withdrawal

    again = handle(st, catalog, mail(AMADOU, "Amadou Sow", SUBSTITUTIONS[lang], mid="s1"),
                   now=NOW.replace(hour=15), policy=POLICY)
    assert again.outcome == "duplicate" and len(outbox(st)) == before + 2


@pytest.mark.parametrize(("lang", "words"), [
    ("en", "Portugal is not among the countries invited"),
    ("fr", "Portugal ne figure pas parmi les pays invités"),
    ("es", "Portugal no figura entre los países invitados"),
])
def test_a_substitute_from_a_country_the_series_refuses_leaves_the_sender_registered(
        st: store.Store, tmp_path: Path, lang: str, words: str) -> None:
    """The series refuses uninvited countries and Amadou names a Portuguese colleague: the
    hand-over cannot happen, so he keeps his seat (before, he was cancelled, his seat went
    to the waiting list and she was refused) and is told why, in his language."""
    catalog = make_catalog(tmp_path, not_invited="reject")
    register(st, catalog, AMADOU, "Amadou Sow", 0)
    register(st, catalog, "waiting@gouv.sn", "Waiting Person", 9)   # Senegal is not full
    before = len(outbox(st))
    body = {"en": "I can no longer attend; please register my colleague Ms Efua Mensah, "
                  "Ministry of Justice, Portugal, efua.mensah@mj.gov.pt, in my place.\r\n",
            "fr": "Je ne pourrai pas participer, je vous prie d'inscrire à ma place ma "
                  "collègue Mme Efua Mensah, Ministère de la Justice, Portugal, "
                  "efua.mensah@mj.gov.pt.\r\n",
            "es": "No podré asistir; le ruego inscribir en mi lugar a mi colega la Sra. Efua "
                  "Mensah, Ministerio de Justicia, Portugal, efua.mensah@mj.gov.pt.\r\n"}[lang]
    result = handle(st, catalog, mail(AMADOU, "Amadou Sow", body + "\r\nAmadou Sow\r\n",
                                      mid="s3"), now=NOW.replace(hour=13), policy=POLICY)
    assert result.intent.kind == "substitution"
    assert statuses(st)[AMADOU] == Status.CONFIRMED
    assert "efua.mensah@mj.gov.pt" not in statuses(st)
    (row,) = outbox(st)[before:]
    assert (row.kind, row.recipient) == (str(Kind.CLARIFICATION), AMADOU)
    settings = Settings(organiser=Organiser(address="webinars@example.org"),
                        paths=Paths(templates=ROOT / "templates",
                                    schedules=tmp_path / "schedules"))
    wire = Composer(settings, catalog).compose(
        store.row_to_outgoing(row), now=NOW.replace(hour=14))
    msg = email.message_from_bytes(wire.data, policy=email.policy.default)
    assert words in msg.get_body(("plain",)).get_content()
    assert words in msg.get_body(("html",)).get_content()


def test_a_substitute_keeps_the_waiting_rank_of_the_one_they_replace(
        st: store.Store, catalog: Catalog) -> None:
    """Amadou waits first of two; Amina takes his place and the next seat freed is hers."""
    for i in range(4):
        register(st, catalog, f"p{i}@gouv.sn", f"Person {i}", i)
    register(st, catalog, AMADOU, "Amadou Sow", 10)
    register(st, catalog, "later@gouv.sn", "Later Person", 20)
    handle(st, catalog, mail(AMADOU, "Amadou Sow", SUBSTITUTIONS["en"], mid="s1"),
           now=NOW.replace(hour=13), policy=POLICY)
    assert statuses(st)[AMINA] == Status.WAITING
    cancel = "Please cancel my registration.\r\n"
    handle(st, catalog, mail("p0@gouv.sn", "Person 0", cancel, mid="c1"),
           now=NOW.replace(hour=14), policy=POLICY)
    now = statuses(st)
    assert now[AMINA] == Status.CONFIRMED and now["later@gouv.sn"] == Status.WAITING


def test_a_substitute_we_cannot_register_leaves_the_sender_registered(
        st: store.Store, catalog: Catalog) -> None:
    """The colleague's address is missing: Amadou keeps his seat (the waiting list does not
    take it) and is asked for her details."""
    register(st, catalog, AMADOU, "Amadou Sow", 0)
    before = len(outbox(st))
    body = ("I will not be able to attend; my colleague Amina Diallo will attend in my "
            "place.\r\n\r\nAmadou Sow\r\n")
    result = handle(st, catalog, mail(AMADOU, "Amadou Sow", body, mid="s2"),
                    now=NOW.replace(hour=13), policy=POLICY)
    assert result.intent.kind == "substitution"
    assert statuses(st) == {AMADOU: Status.CONFIRMED}
    (row,) = outbox(st)[before:]
    assert (row.kind, row.recipient) == (str(Kind.CLARIFICATION), AMADOU)
    # Her name was read: only her address is asked for.
    assert row.context["reason"] == "substitute_missing" and row.context["missing"] == ["email"]


def _handle_in_a_process(url: str, folder: str, raw: bytes, start: object) -> str:
    """One process handling one message on the shared store, once all are ready."""
    st = store.Store(url)
    try:
        start.wait()    # type: ignore[attr-defined]
        # Read, not written: the fixture wrote the schedule once (five writers would race).
        catalog = load_catalog(Path(folder) / "schedules")
        return handle(st, catalog, raw, now=NOW.replace(hour=13), policy=POLICY).outcome
    finally:
        st.close()


def test_a_substitution_racing_registrations_in_other_processes_keeps_the_seat(
        st: store.Store, catalog: Catalog, tmp_path: Path) -> None:
    """Senegal is full; Amadou's substitution and four Senegalese registrations are handled
    at once by five processes. Whatever their order, Amina holds the seat Amadou had and
    the four newcomers wait: the seat is never free between his cancellation and her
    registration, so no newcomer takes it."""
    register(st, catalog, AMADOU, "Amadou Sow", 0)
    for i in range(1, 4):
        register(st, catalog, f"p{i}@gouv.sn", f"Person {i}", i)
    body = "Name: Newcomer {i}\r\nCountry: Senegal\r\nPosition: Prosecutor\r\n"
    raws = [mail(AMADOU, "Amadou Sow", SUBSTITUTIONS["en"], mid="race-s"),
            *(mail(f"new{i}@gouv.sn", f"Newcomer {i}", body.format(i=i), mid=f"race-{i}")
              for i in range(4))]
    spawn = multiprocessing.get_context("spawn")
    with spawn.Manager() as manager, spawn.Pool(len(raws)) as pool:
        start = manager.Barrier(len(raws))     # each process waits for the others
        pending = [pool.apply_async(_handle_in_a_process, (st.url, str(tmp_path), raw, start))
                   for raw in raws]
        outcomes = [p.get(timeout=120) for p in pending]
    assert outcomes == ["handled"] * 5
    now = statuses(st)
    assert now[AMADOU] == Status.CANCELLED and now[AMINA] == Status.CONFIRMED
    assert sorted(e for e, s in now.items() if s == Status.CONFIRMED) == [
        AMINA, "p1@gouv.sn", "p2@gouv.sn", "p3@gouv.sn"]
    assert sorted(e for e, s in now.items() if s == Status.WAITING) == [
        f"new{i}@gouv.sn" for i in range(4)]
    assert not [r for r in outbox(st) if r.kind == str(Kind.PROMOTION)]


def test_a_colleague_written_twice_is_registered_once(st: store.Store,
                                                      catalog: Catalog) -> None:
    """Amadou names Amina in his sentence and again in the form below it (her address once
    in capitals): one person. Before, two registrations of her address broke the store's
    unique key and the message failed at every try, the hand-over lost."""
    register(st, catalog, AMADOU, "Amadou Sow", 0)
    before = len(outbox(st))
    body = ("I can no longer attend; please register my colleague Ms Amina Diallo in my "
            "place.\r\n\r\nName: Amina Diallo\r\nEmail: AMINA.DIALLO@justice.gouv.sn\r\n"
            "Country: Senegal\r\n\r\nName: Amina Diallo\r\nEmail: amina.diallo@justice.gouv.sn"
            "\r\nCountry: Senegal\r\n")
    result = handle(st, catalog, mail(AMADOU, "Amadou Sow", body, mid="twice"),
                    now=NOW.replace(hour=13), policy=POLICY)
    assert result.outcome == "handled" and result.intent.kind == "substitution"
    assert statuses(st) == {AMADOU: Status.CANCELLED, AMINA: Status.CONFIRMED}
    assert sorted((row.kind, row.recipient) for row in outbox(st)[before:]) == [
        ("acknowledgement", AMINA), ("withdrawal", AMADOU)]


def test_a_colleague_already_waiting_takes_the_seat_handed_to_her(st: store.Store,
                                                                   catalog: Catalog) -> None:
    """Senegal is full; Moussa waits first, Amina second. Amadou hands his seat to Amina:
    she takes it (promoted, with her invitation) and Moussa keeps waiting, as for any
    colleague of his country. Before, the seat went to Moussa, and Amina was told she was
    still waiting."""
    register(st, catalog, AMADOU, "Amadou Sow", 0)
    for i in range(1, 4):
        register(st, catalog, f"p{i}@gouv.sn", f"Person {i}", i)
    register(st, catalog, "moussa@gouv.sn", "Moussa Ba", 10)
    register(st, catalog, AMINA, "Amina Diallo", 20)
    before = len(outbox(st))
    result = handle(st, catalog, mail(AMADOU, "Amadou Sow", SUBSTITUTIONS["en"], mid="s1"),
                    now=NOW.replace(hour=13), policy=POLICY)
    assert result.outcome == "handled" and result.intent.kind == "substitution"
    now = statuses(st)
    assert (now[AMADOU], now[AMINA], now["moussa@gouv.sn"]) == (
        Status.CANCELLED, Status.CONFIRMED, Status.WAITING)
    answers = {(row.kind, row.recipient): row for row in outbox(st)[before:]}
    assert set(answers) == {("promotion", AMINA), ("withdrawal", AMADOU)}
    assert answers["withdrawal", AMADOU].context["substitutes"] == ["Amina Diallo"]


def declined_from_an_alias(colleague: str) -> bytes:
    """Outlook's "Declined" to Amadou's invitation, sent from another address of his (the
    calendar's ATTENDEE is the invited one), naming a colleague who will attend instead."""
    event_start = "20200709T080000Z"
    ics = ("BEGIN:VCALENDAR\r\nMETHOD:REPLY\r\nPRODID:-//Microsoft Corporation//Outlook 16.0"
           "//EN\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:africa-fr\r\n"
           f"DTSTART:{event_start}\r\nSUMMARY:Webinar\r\n"
           f"ATTENDEE;PARTSTAT=DECLINED:mailto:{AMADOU}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
    return ("From: Amadou Sow <a.sow@justice.gouv.sn>\r\nTo: webinars+africa-fr@example.org\r\n"
            "Subject: Declined: Webinar [africa-fr]\r\nMessage-ID: <declined@client.example>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=BB\r\n\r\n"
            "--BB\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nI will not be able to "
            f"attend; my colleague {colleague} will attend instead.\r\n\r\n--BB\r\n"
            "Content-Type: text/calendar; method=REPLY; charset=utf-8\r\n\r\n"
            f"{ics}\r\n--BB--\r\n").encode()


def test_a_declined_invitation_from_another_address_hands_the_seat_of_the_invited(
        st: store.Store, catalog: Catalog) -> None:
    """Senegal is full and one waits. Amadou declines from another address of his, naming
    Amina: the seat of the invited address (the calendar's ATTENDEE, as for a plain
    decline) goes to her, and the waiting person keeps waiting. Before, the sender's
    address held nothing: Amadou kept his seat and Amina was queued as a newcomer."""
    register(st, catalog, AMADOU, "Amadou Sow", 0)
    for i in range(1, 4):
        register(st, catalog, f"p{i}@gouv.sn", f"Person {i}", i)
    register(st, catalog, "waiting@gouv.sn", "Waiting Person", 9)
    before = len(outbox(st))
    result = handle(st, catalog, declined_from_an_alias(f"Amina Diallo ({AMINA}, Senegal)"),
                    now=NOW.replace(hour=13), policy=POLICY)
    assert result.outcome == "handled" and result.intent.kind == "substitution"
    now = statuses(st)
    assert (now[AMADOU], now[AMINA], now["waiting@gouv.sn"]) == (
        Status.CANCELLED, Status.CONFIRMED, Status.WAITING)
    assert {(row.kind, row.recipient) for row in outbox(st)[before:]} == {
        ("acknowledgement", AMINA), ("withdrawal", AMADOU)}
