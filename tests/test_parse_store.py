"""`mailer parse` against the configured store, SQLite and PostgreSQL: it decides as the
daemon would and leaves the store exactly as it was, and it never waits for the daemon's
lock on the event."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from sqlalchemy import text

from mailer import store
from tests.servers.smtp import SmtpSink
from tests.staffkit import Office, make_office, registration_reply

REPLIES = Path(__file__).parent / "replies"
AMADOU = "amadou.sow@justice.gouv.sn"


@pytest.fixture
def office(st: store.Store, tmp_path: Path, smtp_sink: SmtpSink) -> Office:
    return make_office(tmp_path, st.url, smtp_sink)


def test_parse_decides_from_the_store_and_leaves_every_table_as_it_was(
        office: Office, st: store.Store) -> None:
    """Amadou registered (and answered); his substitution parsed twice, once while another
    transaction holds the event's lock as the daemon would: each time it shows him
    cancelled and Amina in his seat, and afterwards every row of every table is the same
    (no SEQUENCE raised, no outbox, inbound or audit row) and no lock is left."""
    reply = registration_reply(AMADOU, "Amadou Sow", "Senegal", mid="amadou",
                               event_id="africa-en")
    assert office.reply(reply).outcome == "handled"
    office.drain()
    before = office.everything()
    mail = REPLIES / "substitution-en-senegal-outlook-in-my-place.eml"

    def parse() -> dict:
        result = office.mailer("parse", str(mail), "--json", "--now", "2020-07-01T10:15Z")
        assert result.exit_code == 0, result.output
        return json.loads(result.output)["outcome"]

    seen = parse()
    assert seen["changes"] == [{"email": AMADOU, "from": "confirmed", "to": "cancelled"}]
    assert [r["status"] for r in seen["registrations"]] == ["confirmed"]
    if st.engine.dialect.name == "postgresql":
        # The daemon deciding for africa-en holds its lock: parse does not wait for it.
        with st.engine.connect() as daemon, daemon.begin():
            daemon.execute(text("SELECT pg_advisory_xact_lock(hashtext('africa-en'))"))
            found: list[dict] = []
            worker = threading.Thread(target=lambda: found.append(parse()), daemon=True)
            worker.start()
            worker.join(60)
            assert found and found[0] == seen
        with st.engine.connect() as conn:
            held = conn.execute(text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")).scalar()
            idle = conn.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND state LIKE 'idle in transaction%'")).scalar()
        assert (held, idle) == (0, 0)
    assert office.everything() == before
