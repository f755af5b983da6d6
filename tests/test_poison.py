"""No message can stop the inbox: on SQLite and PostgreSQL, over a real Dovecot.

What a database refuses (a Message-ID over 998 characters, a NUL byte, an address longer
than any server takes) is made storable or quarantined with the reason; a message whose
handling fails holds back neither its batch nor the batches after it; a bounce set aside
still suppresses the addresses it names. Failures are the database's own: a trigger refuses
to record chosen messages as handled.
"""

from __future__ import annotations

import asyncio
import email
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select, text

from mailer import handling, store
from mailer.config import Settings
from mailer.config import Store as StoreSettings
from mailer.daemon import run_once
from mailer.domain import Intent, IntentKind, Participant
from mailer.handling import Arrival, Policy, handle, handle_one
from mailer.schedule import Catalog
from tests.builders import make_catalog
from tests.servers.imap import ImapServer
from tests.servers.smtp import SmtpSink
from tests.test_end_to_end import after_three_deaths
from tests.test_series import append, reply, settings_for, utc, write_schedule

NOW = utc("2020-06-10T10:00:00")
POLICY = Policy(inbox_address="webinars@example.org", staff_address="staff@example.org",
                domain="example.org")


def refuse_inbound(st: store.Store, name: str, condition: str) -> None:
    """Make the database refuse every write of an inbound record for which ``condition``
    (SQL on ``NEW``) holds, with a trigger named ``name``."""
    with st.transaction() as session:
        if st.engine.dialect.name == "postgresql":
            session.execute(text(f"""
                CREATE FUNCTION {name}() RETURNS trigger AS $$ BEGIN
                  IF {condition} THEN RAISE EXCEPTION 'refused by the test'; END IF;
                  RETURN NEW;
                END $$ LANGUAGE plpgsql"""))
            session.execute(text(f"CREATE TRIGGER {name} BEFORE INSERT OR UPDATE ON "
                                 f"inbound FOR EACH ROW EXECUTE FUNCTION {name}()"))
        else:
            for when in ("INSERT", "UPDATE"):
                session.execute(text(
                    f"CREATE TRIGGER {name}_{when} BEFORE {when} ON inbound "
                    f"WHEN {condition} BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"))


def allow_inbound(st: store.Store, name: str) -> None:
    """Undo ``refuse_inbound`` of that ``name``."""
    with st.transaction() as session:
        if st.engine.dialect.name == "postgresql":
            session.execute(text(f"DROP TRIGGER {name} ON inbound"))
            session.execute(text(f"DROP FUNCTION {name}()"))
        else:
            for when in ("INSERT", "UPDATE"):
                session.execute(text(f"DROP TRIGGER {name}_{when}"))


def refuse_handled(st: store.Store, senders: str) -> None:
    """Make the database refuse to record as handled any message whose sender is LIKE
    ``senders`` (its failed tries and its quarantine are still recorded)."""
    refuse_inbound(st, "refuse_handled",
                   f"NEW.outcome = 'handled' AND NEW.sender LIKE '{senders}'")


def allow_handled(st: store.Store) -> None:
    """Undo ``refuse_handled``."""
    allow_inbound(st, "refuse_handled")


def on_store(tmp_path: Path, st: store.Store, imap: ImapServer, sink: SmtpSink,
             **imap_settings: object) -> Settings:
    """The simulated series' settings, with the test's store (SQLite or PostgreSQL)."""
    write_schedule(tmp_path)
    settings = settings_for(tmp_path, imap.settings(**imap_settings), sink)
    return settings.model_copy(update={"store": StoreSettings(url=st.url)})


def delegate(n: int, sender: str | None = None) -> bytes:
    country = ("Sénégal", "Ghana", "Côte d'Ivoire")[n % 3]
    return reply(sender or f"delegate{n}@justice.gouv.example", f"Delegate {n}", country, "fr",
                 "africa-fr", utc("2020-06-09T09:00:00"))


def registered(st: store.Store) -> dict[str, str]:
    """email -> name of every registration."""
    with st.transaction() as session:
        return {r.email: r.name for r in store.all_registrations(session)}


def test_a_failure_in_one_batch_never_holds_back_the_next(
        st: store.Store, tmp_path: Path, dovecot: ImapServer, smtp_sink: SmtpSink) -> None:
    """30 replies read in batches of 10, two refused by the database: one pass handles the
    other 28 (before: it stopped after the first batch with a failure), the next pass reads
    the two again and handles them."""
    settings = on_store(tmp_path, st, dovecot, smtp_sink, batch_size=10)
    append(dovecot, *(delegate(n, f"poison{n}@justice.gouv.example" if n in (3, 14) else None)
                      for n in range(30)))
    refuse_handled(st, "poison%")
    first = asyncio.run(run_once(settings, now=NOW))
    assert (first.read, first.handled, first.failed) == (30, 28, 2)
    allow_handled(st)
    second = asyncio.run(run_once(settings, now=NOW))
    assert (second.read, second.handled, second.failed) == (2, 2, 0)
    assert len(registered(st)) == 30
    acks = Counter(m.rcpt_tos[0] for m in smtp_sink.messages
                   if m.message()["X-Mailer-Kind"] in ("acknowledgement", "waiting_list"))
    assert len(acks) == 30 and set(acks.values()) == {1}


def raw_reply(sender: str, name: str, message_id: str, *, qp: bool = False) -> bytes:
    """A registration reply written by hand (for what no mail library would write)."""
    encoding = "Content-Transfer-Encoding: quoted-printable\r\n" if qp else ""
    return (f"From: {sender}\r\nTo: webinars+africa-fr@secretariat.example\r\n"
            f"Subject: Re: [africa-fr]\r\nMessage-ID: {message_id}\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n{encoding}\r\n"
            f"Name: {name}\r\nCountry: Senegal\r\nPosition: Prosecutor\r\n"
            ).encode("utf-8", "surrogateescape")    # "\udce9" is the raw byte 0xe9


def test_what_a_database_refuses_never_stops_a_pass(
        st: store.Store, tmp_path: Path, dovecot: ImapServer, smtp_sink: SmtpSink) -> None:
    """A 1,200-character Message-ID is stored as a digest of it, a NUL in a name
    (quoted-printable =00) is not stored as such, a 300-character sender and a sender whose
    address holds a raw Latin-1 byte (not UTF-8: no one's address) are quarantined: none
    fails, and the replies around them are handled in the same pass (before, on PostgreSQL,
    the long id failed every pass at the claim, and the inbox stopped for good)."""
    settings = on_store(tmp_path, st, dovecot, smtp_sink)
    long_id = "<" + "x" * 1200 + "@client.example>"
    long_sender = "a" * 290 + "@gouv.sn"
    append(dovecot, delegate(1),
           raw_reply("long.id@gouv.sn", "Long Id", long_id),
           raw_reply("nul@gouv.sn", "Awa=00 Diop", "<nul@client.example>", qp=True),
           raw_reply(long_sender, "Long Sender", "<long.sender@client.example>"),
           raw_reply("j\udce9rome@gouv.sn", "Jerome", "<latin1@client.example>"),
           delegate(2))
    report = asyncio.run(run_once(settings, now=NOW))
    assert (report.read, report.handled, report.quarantined, report.failed) == (6, 4, 2, 0)
    people = registered(st)
    assert people["nul@gouv.sn"] == "Awa Diop"
    assert "long.id@gouv.sn" in people and long_sender not in people
    assert not any(address.endswith("rome@gouv.sn") for address in people)
    assert all(store.storable(value) == value for pair in people.items() for value in pair)
    with st.transaction() as session:
        ids = set(session.scalars(select(store.Inbound.message_id)))
    assert handling.message_key(b"", long_id) in ids and all(len(i) <= 998 for i in ids)
    again = asyncio.run(run_once(settings, now=NOW))
    assert (again.read, again.handled, again.quarantined) == (0, 0, 0)


def test_a_message_id_the_store_cannot_keep_is_keyed_by_its_digest() -> None:
    """Too long, or with a NUL: the key is a digest of the whole id, the same every time and
    distinct for ids a cut would merge; an ordinary id is its own key."""
    first, second = "<" + "x" * 1200 + "1@x>", "<" + "x" * 1200 + "2@x>"
    keys = {handling.message_key(b"", mid) for mid in (first, second, "<a\x00b@x>")}
    assert len(keys) == 3 and all(len(k) <= 998 and store.storable(k) == k for k in keys)
    assert handling.message_key(b"", first) in keys
    assert handling.message_key(b"", "<plain@client.example>") == "<plain@client.example>"


def test_an_address_the_store_would_have_to_cut_is_quarantined_never_cut(
        st: store.Store, tmp_path: Path) -> None:
    """Whatever read the message (this process or a worker), a reply naming an address over
    254 characters is set aside with the reason: a cut address would get the answer."""
    catalog = make_catalog(tmp_path)
    long_address = "b" * 250 + "@gouv.sn"
    intent = Intent(kind=IntentKind.REGISTRATION, sender="jerome@gouv.sn",
                    message_id="<long@client.example>", event_id="africa-fr",
                    participants=(Participant(email=long_address, name="B", country="SN"),))
    done = handle_one(st, catalog, Arrival(b"(read by a worker)", NOW, intent.message_id,
                                           understood=intent), POLICY)
    assert (done.outcome, done.reason) == (
        "quarantined", "an address longer than 254 characters: " + "b" * 40 + "...")
    assert registered(st) == {}


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    return make_catalog(tmp_path)


def suppressed(st: store.Store) -> set[str]:
    with st.transaction() as session:
        return set(session.scalars(select(store.Suppression.email)))


def test_a_bounce_that_keeps_failing_still_suppresses_the_addresses_it_names(
        st: store.Store, catalog: Catalog, corpus: Path) -> None:
    """A real bounce the database refuses three times is quarantined, and the addresses it
    names are suppressed all the same (nothing more goes to them)."""
    raw = (corpus / "bounces" / "postfix_01.txt").read_bytes()
    refuse_handled(st, "mailer-daemon@%")
    results = [handle(st, catalog, raw, now=NOW, policy=POLICY) for _ in range(3)]
    assert [r.outcome for r in results] == ["failed", "failed", "quarantined"]
    bounced = results[-1].intent.bounced if results[-1].intent else ()
    assert bounced and suppressed(st) == set(bounced)


def test_a_bounce_that_kills_the_pass_still_suppresses_the_addresses_it_names(
        st: store.Store, tmp_path: Path, dovecot: ImapServer, smtp_sink: SmtpSink,
        corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three passes die on a real bounce; the fourth sets it aside and suppresses the
    addresses it names."""
    settings = on_store(tmp_path, st, dovecot, smtp_sink)
    raw = (corpus / "bounces" / "postfix_01.txt").read_bytes()
    poison = email.message_from_bytes(raw)["Message-ID"]
    append(dovecot, delegate(1), raw, delegate(2))
    report = after_three_deaths(settings, poison, monkeypatch, NOW)
    (set_aside,) = [o for o in report.outcomes if o.outcome == "quarantined"]
    assert set_aside.message_id == poison and set_aside.intent is not None
    assert set(set_aside.intent.bounced) == suppressed(st) != set()


def test_a_store_failing_mid_batch_is_no_crash_of_the_replies_in_hand(
        st: store.Store, tmp_path: Path, dovecot: ImapServer, smtp_sink: SmtpSink) -> None:
    """Three passes end with the store failing in the middle of a batch (it refuses to record
    the second reply at all): an error the pass lives through, not a death, so it counts
    against no reply. Once the store works, every reply is handled and answered (before,
    the claims left behind counted as three deaths and the second reply, whose only fault
    was to be in hand, was quarantined unanswered)."""
    settings = on_store(tmp_path, st, dovecot, smtp_sink)
    ids = [f"<m{n}@client.example>" for n in range(5)]
    append(dovecot, *(raw_reply(f"delegate{n}@gouv.sn", f"Delegate {n}", mid)
                      for n, mid in enumerate(ids)))
    # (A store failing in the middle of a batch, after the pass claimed it.)
    refuse_inbound(st, "refuse_records", "NEW.outcome IN ('handled', 'failed') AND "
                   f"NEW.message_id = '{ids[1]}'")
    for _ in range(3):
        with pytest.raises(Exception, match="refused by the test"):
            asyncio.run(run_once(settings, now=NOW))
    allow_inbound(st, "refuse_records")
    asyncio.run(run_once(settings, now=NOW))
    with st.transaction() as session:
        outcomes = dict(session.execute(select(store.Inbound.message_id,
                                                  store.Inbound.outcome)).all())
    assert outcomes == dict.fromkeys(ids, "handled")
    acks = Counter(m.rcpt_tos[0] for m in smtp_sink.messages
                   if m.message()["X-Mailer-Kind"] in ("acknowledgement", "waiting_list"))
    assert acks == Counter({f"delegate{n}@gouv.sn": 1 for n in range(5)})
