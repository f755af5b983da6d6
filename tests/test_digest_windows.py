"""What `mailer review` and the daily digest list, and over which moments: registrations whose
event has started are no longer waiting for a decision (`approve` refuses them) but are said
once as too late; each digest reports what happened since the previous one, nothing twice,
even when `--now` gives a whole pass one moment."""

from __future__ import annotations

import json
from email.message import EmailMessage
from pathlib import Path

import pytest

from mailer import store
from tests.servers.smtp import SmtpSink
from tests.staffkit import (
    STAFF,
    Office,
    body,
    config_text,
    make_office,
    registration_reply,
)
from tests.test_series import utc

PIERRE = "pierre.martin@diplomatie.gouv.fr"
AWA = "awa.diop@justice.gouv.sn"
PARIS = 'time_zone = "Europe/Paris"\ndigest_hour = 8\n'


@pytest.fixture
def office(st: store.Store, tmp_path: Path, smtp_sink: SmtpSink) -> Office:
    return make_office(tmp_path, st.url, smtp_sink, digest=True, extra=PARIS)


def digests(office: Office) -> list[EmailMessage]:
    return [m for k, m in office.sent_to(STAFF) if k == "staff_digest"]


def review(office: Office, now: str) -> dict[str, list[dict[str, str]]]:
    result = office.mailer("review", "--json", "--now", now)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_a_registration_whose_event_started_is_too_late_not_waiting(office: Office) -> None:
    """Pierre waits for a decision until the African session starts (9 July, 08:00 UTC); from
    then on review and the digest show him apart, once, as too late to decide, and no longer
    among what waits (approve would refuse him)."""
    office.reply(registration_reply(PIERRE, "Pierre Martin", "France", mid="p1"),
                 utc("2020-07-07T05:00:00"))
    ref = f"R{office.registration(PIERRE).id}"
    before = review(office, "2020-07-09T07:59Z")
    assert [w["ref"] for w in before["waiting"]] == [ref] and before["too_late"] == []

    after = review(office, "2020-07-09T09:00Z")
    assert after["waiting"] == [] and [w["ref"] for w in after["too_late"]] == [ref]
    text = office.mailer("review", "--now", "2020-07-09T09:00Z").output
    assert "waiting for a decision: 0" in text
    assert f"too late to decide (their event started in the last 7 day(s)): 1\n  {ref}" in text
    assert office.mailer("approve", ref, "--now", "2020-07-09T09:00Z").exit_code == 2
    # A fortnight on, outside review's week: said no more.
    later = review(office, "2020-07-23T09:00Z")
    assert later["waiting"] == [] and later["too_late"] == []

    office.drain("2020-07-09T06:01Z")        # 08:01 in Paris, before the start: waiting
    office.drain("2020-07-10T06:01Z")        # the next day: too late, once
    office.drain("2020-07-11T06:01Z")        # nothing new, nothing waiting: no digest
    first, second = digests(office)
    assert f"WAITING FOR A DECISION: 1\n\n{ref}  Pierre Martin (FR)" in body(first)
    text = body(second)
    assert "WAITING FOR A DECISION: 0" in text
    assert f"TOO LATE TO DECIDE (the event started): 1\n  {ref}  Pierre Martin (FR), " \
           "africa-fr" in text
    html = second.get_body(("html",)).get_content()
    assert "Too late to decide (the event started): 1" in html


KOFI = "kofi.mensah@mfa.gov.gh"
LENA = "lena.berg@regeringen.se"


def test_each_digest_reports_what_happened_since_the_last_one_exactly(
        office: Office, tmp_path: Path) -> None:
    """With --now, a pass records everything at one moment, the one its digest is made at.
    The next digest counts none of it again (the registrations handled in that pass, the
    failure it listed), yet reports the failure of that pass that came after the digest was
    made (its drain), which the one before could not know."""
    moment, next_day = "2020-07-08T06:01Z", "2020-07-09T06:01Z"
    at = utc("2020-07-08T06:01:00")
    office.sink.fail_rcpt[KOFI] = (550, "5.1.1 kofi.mensah: no such user")
    office.sink.fail_rcpt[LENA] = (550, "5.1.1 lena.berg: no such user")
    office.config.write_text(config_text(office.url, office.sink, tmp_path, extra=PARIS),
                             encoding="utf-8")             # no digest yet
    office.reply(registration_reply(AWA, "Awa Diop", "Senegal", mid="a1"), at)
    office.reply(registration_reply(KOFI, "Kofi Mensah", "Ghana", mid="k1"), at)
    office.drain(moment)                     # Kofi's acknowledgement fails, at that moment
    office.reply(registration_reply(LENA, "Lena Berg", "Sweden", mid="l1"), at)
    office.config.write_text(config_text(office.url, office.sink, tmp_path, digest=True,
                                         extra=PARIS), encoding="utf-8")
    office.drain(moment)        # the digest, then Lena's answer fails: after the digest
    office.reply(registration_reply(PIERRE, "Pierre Martin", "France", mid="p1"),
                 utc("2020-07-09T05:00:00"))
    office.drain(next_day)

    first, second = digests(office)
    text = body(first)
    assert "NEW REGISTRATIONS: 3" in text and "FAILED DELIVERIES: 1" in text
    assert KOFI in text and f"to {LENA}" not in text
    text = body(second)
    assert "NEW REGISTRATIONS: 1\n  africa-fr  FR  1 review" in text
    assert "FAILED DELIVERIES: 1" in text and f"pending_review to {LENA}" in text
    assert KOFI not in text
    assert second["Subject"] == "Mailer digest 2020-07-09: 2 to decide, 1 new, 1 failed"
