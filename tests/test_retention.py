"""Retention: finished series lose their personal data, keep exact counts, and only once."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select
from structlog.testing import capture_logs

from mailer.domain import Kind, Outgoing, outbox_key
from mailer.errors import UsageError
from mailer.retention import expired, purge_expired, purge_series
from mailer.schedule import Catalog, Event, EventSpec, Series, SeriesSpec
from mailer.store import (
    Base,
    EventVersionRow,
    OutboxRow,
    Registration,
    RetainedCount,
    Store,
    enqueue,
    record_inbound,
)

UTC = timezone.utc
NOW = datetime(2021, 8, 1, tzinfo=UTC)
ZOE, ZOE_NAME = "zoe.nunez@justice.gouv.sn", "Zoë Ñúñez-Øre"
KEISHA = "keisha.brown@mns.gov.jm"


def _event(series: Series, event_id: str, start: datetime) -> Event:
    spec = EventSpec(id=event_id, title={"en": event_id}, start=start,
                     end=start + timedelta(minutes=105), language="en", invited=["SN"])
    return Event(spec, series, frozenset({"SN"}), series.file)


def _catalog() -> Catalog:
    old = Series(SeriesSpec(id="cyber-cj-2020", title={"en": "Cybercrime"}), Path("c.toml"))
    new = Series(SeriesSpec(id="caribbean-2021", title={"en": "Caribbean"}), Path("k.toml"))
    events = [_event(old, "africa-fr", datetime(2020, 7, 9, 8, tzinfo=UTC)),
              _event(old, "latam-es", datetime(2020, 7, 22, 15, tzinfo=UTC)),
              _event(new, "kickoff", datetime(2021, 9, 1, 13, tzinfo=UTC))]
    return Catalog(series={"cyber-cj-2020": old, "caribbean-2021": new},
                   events={e.id: e for e in events})


def _registration(series_id: str, event_id: str, email: str, name: str, country: str | None,
                  status: str, attended: bool | None = None, by: str = "") -> Registration:
    at = datetime(2020, 7, 1, tzinfo=UTC)
    return Registration(series_id=series_id, event_id=event_id, email=email, name=name,
                        country=country, status=status, attended=attended,
                        organisation="Ministère de la Justice", registered_by=by,
                        created_at=at, updated_at=at)


def _outgoing(kind: Kind, to: str, name: str, event_id: str | None) -> Outgoing:
    return Outgoing(key=outbox_key(kind, to, event_id), kind=kind, recipient=to, language="fr",
                    event_id=event_id, name=name, in_reply_to=f"<CA123.{to}>",
                    context={"name": name, "email": to})


@pytest.fixture
def store(tmp_path: Path) -> Store:
    """A migrated store with an old series' data and a running series' data."""
    st = Store(f"sqlite:///{tmp_path}/t.db")
    st.migrate()
    at = datetime(2020, 7, 1, tzinfo=UTC)
    with st.transaction() as session:
        session.add_all([
            _registration("cyber-cj-2020", "africa-fr", ZOE, ZOE_NAME, "SN", "confirmed", True,
                          by="focal.point@diplomatie.gouv.sn"),
            _registration("cyber-cj-2020", "africa-fr", "awa.diop@justice.gouv.sn", "Awa Diop",
                          "SN", "confirmed", False),
            _registration("cyber-cj-2020", "africa-fr", "moussa.ba@justice.gouv.sn",
                          "Moussa Ba", "SN", "waiting"),
            _registration("cyber-cj-2020", "africa-fr", "x@unknown.org", "Sans Pays", None,
                          "review"),
            _registration("cyber-cj-2020", "latam-es", ZOE, ZOE_NAME, "CO", "cancelled"),
            _registration("caribbean-2021", "kickoff", KEISHA, "Keisha Brown", "JM",
                          "confirmed"),
        ])
        enqueue(session, [_outgoing(Kind.ACKNOWLEDGEMENT, ZOE, ZOE_NAME, "africa-fr"),
                          _outgoing(Kind.CLARIFICATION, ZOE, ZOE_NAME, None),
                          _outgoing(Kind.STAFF_ALERT, "staff@coe.int", "", None),
                          _outgoing(Kind.ACKNOWLEDGEMENT, KEISHA, "Keisha Brown", "kickoff")],
                now=at, domain="mailer.coe.int")
        record_inbound(session, message_id="<m1@mail.gmail.com>", outcome="handled", now=at,
                       sender=ZOE, intent="registration", event_id="africa-fr")
        record_inbound(session, message_id="<m2@mail.gmail.com>", outcome="quarantined",
                       now=at, sender=ZOE, reason=f"unreadable mail from {ZOE}")
        record_inbound(session, message_id="<m3@mail.gmail.com>", outcome="handled", now=at,
                       sender=KEISHA, intent="registration", event_id="kickoff")
    yield st
    st.close()


def _everything(st: Store) -> str:
    """Every value in every table, as one lower-case text."""
    with st.transaction() as session:
        return "\n".join(str(row) for table in Base.metadata.sorted_tables
                         for row in session.execute(select(table))).lower()


def _counts(st: Store) -> dict[tuple[str, str, str], tuple[int, int]]:
    with st.transaction() as session:
        return {(r.event_id, r.country, r.status): (r.count, r.attended)
                for r in session.scalars(select(RetainedCount))}


def test_expired_series_keep_exact_counts_per_event_country_and_status(store: Store) -> None:
    """Purged registrations become counts (and attended counts) per event, country, status."""
    with store.transaction() as session:
        results = purge_expired(session, _catalog(), NOW, 365)
    assert [(r.series_id, r.registrations, r.counts) for r in results] == [
        ("cyber-cj-2020", 5, 4)]
    assert _counts(store) == {("africa-fr", "SN", "confirmed"): (2, 1),
                              ("africa-fr", "SN", "waiting"): (1, 0),
                              ("africa-fr", "", "review"): (1, 0),
                              ("latam-es", "CO", "cancelled"): (1, 0)}


def test_no_table_holds_a_purged_participants_address_or_name(store: Store) -> None:
    """After the purge no table holds the participants' or focal point's addresses or names."""
    assert ZOE in _everything(store)
    with store.transaction() as session:
        purge_expired(session, _catalog(), NOW, 365)
    everything = _everything(store)
    for gone in (ZOE, ZOE_NAME.lower(), "awa.diop@justice.gouv.sn", "awa diop", "moussa",
                 "focal.point@diplomatie.gouv.sn", "sans pays"):
        assert gone not in everything
    assert KEISHA in everything and "staff@coe.int" in everything


def test_outbox_rows_keep_kind_status_and_dates_with_unique_keys(store: Store) -> None:
    """Scrubbed outbox rows keep kind, status and dates, and get distinct address-free keys."""
    with store.transaction() as session:
        purge_expired(session, _catalog(), NOW, 365)
        rows = {r.kind: r for r in session.scalars(select(OutboxRow)
                                                   .where(OutboxRow.recipient == ""))}
        assert set(rows) == {"acknowledgement", "clarification"}
        ack = rows["acknowledgement"]
        assert (ack.event_id, ack.status, ack.created_at) == (
            "africa-fr", "pending", datetime(2020, 7, 1, tzinfo=UTC))
        assert ack.context == {} and ack.name == "" and ack.in_reply_to is None
        assert ack.message_id.startswith("<wm.africa-fr.") and ack.message_id.endswith(
            "@mailer.coe.int>")
        assert len({r.key for r in rows.values()}) == 2


def test_second_run_changes_nothing(store: Store) -> None:
    """Purging again returns no result and leaves every table exactly as it was."""
    with store.transaction() as session:
        first = purge_expired(session, _catalog(), NOW, 365)
    before = _everything(store)
    with store.transaction() as session:
        again = purge_expired(session, _catalog(), NOW + timedelta(days=1), 365)
        on_demand = purge_series(session, _catalog(), "cyber-cj-2020", NOW)
    assert first and again == [] and not on_demand.changed
    assert _everything(store) == before


def test_series_with_an_event_still_to_come_is_never_purged(store: Store) -> None:
    """A running series is kept by the daily purge and refused by the on-demand purge."""
    with store.transaction() as session:
        purge_expired(session, _catalog(), NOW, 1)
        with pytest.raises(UsageError, match="not over"):
            purge_series(session, _catalog(), "caribbean-2021", NOW)
        kept = session.scalars(select(Registration.email)).all()
    assert kept == [KEISHA]


def test_recent_series_waits_for_the_retention_period(store: Store) -> None:
    """A series that ended fewer than ``days`` days ago is not purged yet."""
    with store.transaction() as session:
        assert purge_expired(session, _catalog(), datetime(2021, 7, 1, tzinfo=UTC), 365) == []
        assert len(session.scalars(select(Registration)).all()) == 6


def test_on_demand_purge_works_before_the_retention_period(store: Store) -> None:
    """``purge_series`` purges a finished series at once, whatever the retention period."""
    with store.transaction() as session:
        result = purge_series(session, _catalog(), "cyber-cj-2020",
                              datetime(2020, 8, 1, tzinfo=UTC))
    assert (result.registrations, result.outbox, result.inbound) == (5, 2, 2)


def test_series_gone_from_the_schedules_is_dated_by_stored_versions(store: Store) -> None:
    """A series removed from the schedules is purged by the end its stored versions recorded."""
    at = datetime(2020, 7, 1, tzinfo=UTC)
    with store.transaction() as session:
        for event_id, end in (("africa-fr", datetime(2020, 7, 9, 9, 45, tzinfo=UTC)),
                              ("latam-es", datetime(2020, 7, 22, 16, 45, tzinfo=UTC))):
            session.add(EventVersionRow(event_id=event_id, series_id="cyber-cj-2020",
                                        sequence=0, fingerprint="f", countries=["SN"],
                                        last_end=end, changed_at=at))
    catalog = _catalog()
    del catalog.series["cyber-cj-2020"]
    catalog.events = {"kickoff": catalog.events["kickoff"]}
    with store.transaction() as session:
        results = purge_expired(session, catalog, NOW, 365)
    assert [(r.series_id, r.registrations, r.outbox) for r in results] == [
        ("cyber-cj-2020", 5, 2)]


def test_unknown_series_is_a_usage_error(store: Store) -> None:
    """Purging a series nobody knows says so instead of doing nothing silently."""
    with store.transaction() as session, pytest.raises(UsageError, match="no series"):
        purge_series(session, _catalog(), "no-such-series", NOW)


def test_log_gives_counts_and_never_addresses_or_names(store: Store) -> None:
    """The purge logs how much it removed, with no address or name in the record."""
    with capture_logs() as logs, store.transaction() as session:
        purge_expired(session, _catalog(), NOW, 365)
    assert logs == [{"event": "personal data purged", "log_level": "info",
                     "series_id": "cyber-cj-2020", "registrations": 5, "counts": 4,
                     "outbox": 2, "inbound": 2}]


def test_expired_is_strictly_more_than_the_period() -> None:
    """A series is expired only once more than ``days`` days passed since its last end."""
    end = datetime(2020, 7, 22, 16, 45, tzinfo=UTC)
    ends = {"a": end, "b": None}
    assert expired(ends, end + timedelta(days=30), 30) == []
    assert expired(ends, end + timedelta(days=30, seconds=1), 30) == ["a"]
