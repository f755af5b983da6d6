"""The rules: seats per country, the waiting list, review, cancellations and what is answered."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import pytest

from mailer.domain import Intent, IntentKind, Kind, Participant, Status
from mailer.rules import Registered, decide
from mailer.schedule import Catalog
from tests.builders import make_catalog

BEFORE = datetime(2020, 7, 1, 12, 0, tzinfo=timezone.utc)
DURING = datetime(2020, 7, 9, 8, 30, tzinfo=timezone.utc)
STAFF = "staff@example.org"


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    return make_catalog(tmp_path)


def registration(sender: str, *people: Participant, certificate: bool = False) -> Intent:
    return Intent(kind=IntentKind.REGISTRATION, sender=sender, message_id="<m1@x>",
                  event_id="africa-fr", language="fr", participants=people,
                  certificate=certificate)


def seat(i: int, email: str, country: str, status: Status, minute: int = 0) -> Registered:
    return Registered(id=i, email=email, country=country, status=status,
                      created_at=datetime(2020, 6, 20, 10, minute, tzinfo=timezone.utc),
                      name=f"Person {i}", language="fr")


def kinds(decision) -> list[tuple[Kind, str]]:
    return [(a.kind, a.recipient) for a in decision.answers]


def test_free_seat_confirms_and_acknowledges(catalog: Catalog) -> None:
    """A participant from an invited country with a free seat is confirmed and acknowledged."""
    intent = registration("awa@justice.sn", Participant("awa@justice.sn", "Awa Diop", "SN"))
    d = decide(intent, catalog.event("africa-fr"), [], sequence=2, now=BEFORE,
               staff_address=STAFF)
    assert [(c.participant.email, c.status) for c in d.created] == [
        ("awa@justice.sn", Status.CONFIRMED)]
    assert kinds(d) == [(Kind.ACKNOWLEDGEMENT, "awa@justice.sn")]
    assert d.answers[0].sequence == 2 and d.answers[0].in_reply_to == "<m1@x>"


def test_full_country_goes_to_the_waiting_list(catalog: Catalog) -> None:
    """The fifth participant of a country is waitlisted and told so."""
    full = [seat(i, f"p{i}@gouv.sn", "SN", Status.CONFIRMED) for i in range(4)]
    intent = registration("five@gouv.sn", Participant("five@gouv.sn", "Cinq", "SN"))
    d = decide(intent, catalog.event("africa-fr"), full, sequence=0, now=BEFORE,
               staff_address=STAFF)
    assert d.created[0].status is Status.WAITING
    assert kinds(d) == [(Kind.WAITING_LIST, "five@gouv.sn")]


def test_other_countries_seats_do_not_count(catalog: Catalog) -> None:
    """A full Senegal does not stop a participant from Ghana."""
    full = [seat(i, f"p{i}@gouv.sn", "SN", Status.CONFIRMED) for i in range(4)]
    intent = registration("kofi@gov.gh", Participant("kofi@gov.gh", "Kofi", "GH"))
    d = decide(intent, catalog.event("africa-fr"), full, sequence=0, now=BEFORE,
               staff_address=STAFF)
    assert d.created[0].status is Status.CONFIRMED


def test_a_delegation_fills_the_country_seats(catalog: Catalog) -> None:
    """A focal point registering four people of one country gets four seats."""
    people = [Participant(f"d{i}@mfa.ci", f"Delegate {i}", "CI") for i in range(4)]
    d = decide(registration("focal@mfa.ci", *people), catalog.event("africa-fr"), [],
               sequence=0, now=BEFORE, staff_address=STAFF)
    assert [c.status for c in d.created] == [Status.CONFIRMED] * 4
    assert all(a.context["registered_by"] == "focal@mfa.ci" for a in d.answers)


def test_one_reply_cannot_register_more_than_a_countrys_worth(catalog: Catalog) -> None:
    """Six people in one reply: the first four are taken, the sender is told why."""
    people = [Participant(f"d{i}@mfa.ci", f"Delegate {i}", "CI") for i in range(6)]
    d = decide(registration("focal@mfa.ci", *people), catalog.event("africa-fr"), [],
               sequence=0, now=BEFORE, staff_address=STAFF)
    assert [c.participant.email for c in d.created] == [f"d{i}@mfa.ci" for i in range(4)]
    assert (Kind.CLARIFICATION, "focal@mfa.ci") in kinds(d)
    assert d.answers[0].context["reason"] == "too_many"


def test_a_delegation_joining_registered_compatriots_waits(catalog: Catalog) -> None:
    """Two seats taken, four more people: two are confirmed and two wait."""
    taken = [seat(i, f"p{i}@gouv.ci", "CI", Status.CONFIRMED) for i in range(2)]
    people = [Participant(f"d{i}@mfa.ci", f"Delegate {i}", "CI") for i in range(4)]
    d = decide(registration("focal@mfa.ci", *people), catalog.event("africa-fr"), taken,
               sequence=0, now=BEFORE, staff_address=STAFF)
    assert [c.status for c in d.created] == [Status.CONFIRMED] * 2 + [Status.WAITING] * 2


@pytest.mark.parametrize(("policy", "status", "kind"), [
    ("review", Status.REVIEW, Kind.PENDING_REVIEW),
    ("reject", Status.REJECTED, Kind.NOT_INVITED),
    ("accept", Status.CONFIRMED, Kind.ACKNOWLEDGEMENT),
])
def test_not_invited_country_follows_the_series_policy(tmp_path: Path, policy: str,
                                                       status: Status, kind: Kind) -> None:
    """A country outside the invited list is reviewed, refused or accepted as the series says."""
    catalog = make_catalog(tmp_path, not_invited=policy)
    intent = registration("x@gov.fr", Participant("x@gov.fr", "Xavier", "FR"))
    d = decide(intent, catalog.event("africa-fr"), [], sequence=0, now=BEFORE,
               staff_address=STAFF)
    assert d.created[0].status is status
    assert kinds(d) == [(kind, "x@gov.fr")]


def test_registering_twice_gives_no_second_seat(catalog: Catalog) -> None:
    """The same person registering again gets one 'already registered' answer and no seat."""
    existing = [replace(seat(1, "awa@justice.sn", "SN", Status.CONFIRMED), name="Awa Diop")]
    intent = registration("awa@justice.sn", Participant("awa@justice.sn", "Awa Diop", "SN"))
    first = decide(intent, catalog.event("africa-fr"), existing, sequence=0, now=BEFORE,
                   staff_address=STAFF)
    again = decide(Intent(**{**intent.__dict__, "message_id": "<m2@x>"}),
                   catalog.event("africa-fr"), existing, sequence=0, now=BEFORE,
                   staff_address=STAFF)
    assert first.created == () and kinds(first) == [(Kind.ALREADY_REGISTERED, "awa@justice.sn")]
    assert first.answers[0].key == again.answers[0].key  # the outbox keeps only one


def test_the_acknowledgement_says_what_was_guessed(catalog: Catalog) -> None:
    """Fields inferred rather than written go with the answer, for the template to show."""
    guessed = Participant("awa@justice.sn", "Awa Diop", "SN", inferred=("country",))
    d = decide(registration("awa@justice.sn", guessed), catalog.event("africa-fr"), [],
               sequence=0, now=BEFORE, staff_address=STAFF)
    assert d.answers[0].context["inferred"] == ["country"]


def test_a_corrected_country_moves_the_registration_and_frees_its_seat(
        catalog: Catalog) -> None:
    """ "I am from Ghana, not Senegal": the registration takes a Ghana seat (a new one, so it
    queues like one), and its Senegal seat goes to the first Senegalese waiting."""
    regs = [replace(seat(1, "kofi@x.org", "SN", Status.CONFIRMED), name="Kofi Annan"),
            seat(2, "wait@gouv.sn", "SN", Status.WAITING, minute=4)]
    intent = registration("kofi@x.org", Participant("kofi@x.org", "Kofi Annan", "GH",
                                                    inferred=("name",)))
    d = decide(intent, catalog.event("africa-fr"), regs, sequence=0, now=BEFORE,
               staff_address=STAFF)
    [moved] = d.created
    assert (moved.participant.country, moved.status, moved.revive_id) == (
        "GH", Status.CONFIRMED, 1)
    assert [(c.registration_id, c.status) for c in d.changed] == [(2, Status.CONFIRMED)]
    assert kinds(d) == [(Kind.ACKNOWLEDGEMENT, "kofi@x.org"), (Kind.PROMOTION, "wait@gouv.sn")]
    first = decide(registration("kofi@x.org", Participant("kofi@x.org", "Kofi Annan", "SN")),
                   catalog.event("africa-fr"), [], sequence=0, now=BEFORE, staff_address=STAFF)
    assert d.answers[0].key != first.answers[0].key   # not taken for the first answer again


def test_seats_freed_by_corrections_go_to_the_waiting_in_order_and_the_limit_holds(
        catalog: Catalog) -> None:
    """A focal point moves two delegates out of a full Senegal and registers a newcomer
    there, in one reply: the two freed seats go to the first two waiting (each promoted
    once), the newcomer waits, and Senegal keeps four seats."""
    focal = "focal@gouv.sn"
    regs = [replace(seat(i, f"d{i}@gouv.sn", "SN", Status.CONFIRMED), registered_by=focal)
            for i in (1, 2)]
    regs += [seat(i, f"p{i}@gouv.sn", "SN", Status.CONFIRMED) for i in (3, 4)]
    regs += [seat(5, "w5@gouv.sn", "SN", Status.WAITING, minute=5),
             seat(6, "w6@gouv.sn", "SN", Status.WAITING, minute=6)]
    intent = registration(focal, Participant("d1@gouv.sn", "Person 1", "GH"),
                          Participant("d2@gouv.sn", "Person 2", "GH"),
                          Participant("new@gouv.sn", "New Person", "SN"))
    d = decide(intent, catalog.event("africa-fr"), regs, sequence=0, now=BEFORE,
               staff_address=STAFF)
    assert [(c.registration_id, c.status) for c in d.changed] == [
        (5, Status.CONFIRMED), (6, Status.CONFIRMED)]
    assert [(n.participant.email, n.status) for n in d.created] == [
        ("d1@gouv.sn", Status.CONFIRMED), ("d2@gouv.sn", Status.CONFIRMED),
        ("new@gouv.sn", Status.WAITING)]


def test_a_corrected_name_updates_the_registration_in_place(catalog: Catalog) -> None:
    """A name written in full is stored and confirmed again; the seat is kept."""
    regs = [replace(seat(1, "maria@x.org", "SN", Status.WAITING), name="María López")]
    fuller = Participant("maria@x.org", "María Fernanda López Aguilar")
    d = decide(registration("maria@x.org", fuller), catalog.event("africa-fr"), regs,
               sequence=0, now=BEFORE, staff_address=STAFF)
    assert d.created == () and d.changed == ()
    assert [(u.registration_id, u.name) for u in d.updated] == [
        (1, "María Fernanda López Aguilar")]
    assert kinds(d) == [(Kind.WAITING_LIST, "maria@x.org")]


def test_a_new_position_is_kept_without_a_second_confirmation(catalog: Catalog) -> None:
    """The same form sent again with another position or institution: stored, and the
    person told they are registered already (no second calendar invitation)."""
    regs = [replace(seat(1, "awa@justice.sn", "SN", Status.CONFIRMED), name="Awa Diop",
                    position="Judge")]
    again = Participant("awa@justice.sn", "Awa Diop", "SN", organisation="Cour d'appel",
                        position="Presiding judge")
    d = decide(registration("awa@justice.sn", again), catalog.event("africa-fr"), regs,
               sequence=0, now=BEFORE, staff_address=STAFF)
    assert [(u.name, u.organisation, u.position) for u in d.updated] == [
        ("Awa Diop", "Cour d'appel", "Presiding judge")]
    assert kinds(d) == [(Kind.ALREADY_REGISTERED, "awa@justice.sn")]


def test_a_guess_never_overrides_what_was_written(catalog: Catalog) -> None:
    """A country guessed from the address, or a From name, is not a correction."""
    regs = [replace(seat(1, "awa@justice.gouv.sn", "CI", Status.CONFIRMED), name="Awa Diop")]
    again = Participant("awa@justice.gouv.sn", "A. Diop", "SN", inferred=("name", "country"))
    d = decide(registration("awa@justice.gouv.sn", again), catalog.event("africa-fr"), regs,
               sequence=0, now=BEFORE, staff_address=STAFF)
    assert d.created == () and d.updated == ()
    assert kinds(d) == [(Kind.ALREADY_REGISTERED, "awa@justice.gouv.sn")]


def test_cancellation_promotes_the_first_waiting_of_that_country(catalog: Catalog) -> None:
    """A confirmed cancellation frees the seat for the earliest waiting person of that country."""
    regs = [seat(1, "a@gouv.sn", "SN", Status.CONFIRMED),
            seat(2, "gh@gov.gh", "GH", Status.WAITING, minute=1),
            seat(3, "late@gouv.sn", "SN", Status.WAITING, minute=9),
            seat(4, "early@gouv.sn", "SN", Status.WAITING, minute=5)]
    intent = Intent(kind=IntentKind.CANCELLATION, sender="a@gouv.sn", message_id="<c@x>",
                    event_id="africa-fr")
    d = decide(intent, catalog.event("africa-fr"), regs, sequence=1, now=BEFORE,
               staff_address=STAFF)
    assert [(c.registration_id, c.status) for c in d.changed] == [
        (1, Status.CANCELLED), (4, Status.CONFIRMED)]
    assert kinds(d) == [(Kind.WITHDRAWAL, "a@gouv.sn"), (Kind.PROMOTION, "early@gouv.sn")]


def test_cancelling_a_waiting_place_promotes_nobody(catalog: Catalog) -> None:
    """Leaving the waiting list frees no seat."""
    regs = [seat(1, "w1@gouv.sn", "SN", Status.WAITING), seat(2, "w2@gouv.sn", "SN",
                                                                Status.WAITING, minute=3)]
    intent = Intent(kind=IntentKind.CANCELLATION, sender="w1@gouv.sn", message_id="<c@x>",
                    event_id="africa-fr")
    d = decide(intent, catalog.event("africa-fr"), regs, sequence=0, now=BEFORE,
               staff_address=STAFF)
    assert [c.status for c in d.changed] == [Status.CANCELLED]


def test_promotions_stop_at_the_event_start(catalog: Catalog) -> None:
    """A cancellation during the event promotes nobody."""
    regs = [seat(1, "a@gouv.sn", "SN", Status.CONFIRMED),
            seat(2, "w@gouv.sn", "SN", Status.WAITING, minute=1)]
    intent = Intent(kind=IntentKind.CANCELLATION, sender="a@gouv.sn", message_id="<c@x>",
                    event_id="africa-fr")
    d = decide(intent, catalog.event("africa-fr"), regs, sequence=0, now=DURING,
               staff_address=STAFF)
    assert [c.registration_id for c in d.changed] == [1]


def test_declining_the_calendar_invitation_cancels(catalog: Catalog) -> None:
    """A DECLINED calendar reply frees the seat like a cancellation."""
    regs = [seat(1, "a@gouv.sn", "SN", Status.CONFIRMED)]
    intent = Intent(kind=IntentKind.CALENDAR_REPLY, sender="a@gouv.sn", message_id="<c@x>",
                    event_id="africa-fr", partstat="DECLINED")
    d = decide(intent, catalog.event("africa-fr"), regs, sequence=0, now=BEFORE,
               staff_address=STAFF)
    assert [c.status for c in d.changed] == [Status.CANCELLED]


def test_accepting_the_calendar_invitation_changes_nothing(catalog: Catalog) -> None:
    """An ACCEPTED calendar reply is noted and not answered."""
    intent = Intent(kind=IntentKind.CALENDAR_REPLY, sender="a@gouv.sn", message_id="<c@x>",
                    event_id="africa-fr", partstat="ACCEPTED")
    d = decide(intent, catalog.event("africa-fr"), [], sequence=0, now=BEFORE,
               staff_address=STAFF)
    assert d.answers == () and d.changed == () and d.created == ()


@pytest.mark.parametrize("kind", [IntentKind.AUTO_REPLY, IntentKind.BOUNCE])
def test_automatic_mail_is_never_answered(catalog: Catalog, kind: IntentKind) -> None:
    """Auto-replies and bounces change no seat and get no answer."""
    intent = Intent(kind=kind, sender="mailer-daemon@x.org", message_id="<b@x>",
                    event_id="africa-fr", bounced=("gone@x.org",))
    d = decide(intent, catalog.event("africa-fr"), [], sequence=0, now=BEFORE,
               staff_address=STAFF)
    assert d.answers == () and d.created == ()


def test_permanent_bounces_suppress_the_address(catalog: Catalog) -> None:
    """A permanent bounce suppresses the address; a temporary one does not."""
    permanent = Intent(kind=IntentKind.BOUNCE, sender="", message_id="<b@x>",
                       bounced=("gone@x.org",))
    temporary = Intent(kind=IntentKind.BOUNCE, sender="", message_id="<b2@x>",
                       bounced=("full@x.org",), bounce_temporary=True)
    assert decide(permanent, None, [], sequence=0, now=BEFORE,
                  staff_address=STAFF).suppress == ("gone@x.org",)
    assert decide(temporary, None, [], sequence=0, now=BEFORE,
                  staff_address=STAFF).suppress == ()


def test_missing_country_asks_the_sender(catalog: Catalog) -> None:
    """A participant whose country could not be read is not registered; the sender is asked."""
    intent = registration("x@y.org",
                          Participant("x@y.org", "Xavier", None, country_text="Atlantis"))
    d = decide(intent, catalog.event("africa-fr"), [], sequence=0, now=BEFORE,
               staff_address=STAFF)
    assert d.created == ()
    assert kinds(d) == [(Kind.CLARIFICATION, "x@y.org")]
    assert d.answers[0].context["unread_countries"] == ["Atlantis"]
    assert d.answers[0].context["missing"] == []


def test_unknown_event_asks_which_one(catalog: Catalog) -> None:
    """A registration that names no event gets a clarification listing the candidates."""
    intent = Intent(kind=IntentKind.REGISTRATION, sender="x@y.org", message_id="<m@x>",
                    participants=(Participant("x@y.org", "X", "SN"),),
                    candidates=("africa-fr", "lac-es"))
    d = decide(intent, None, [], sequence=0, now=BEFORE, staff_address=STAFF)
    assert kinds(d) == [(Kind.CLARIFICATION, "x@y.org")]
    assert d.answers[0].context["candidates"] == ["africa-fr", "lac-es"]


def test_questions_go_to_staff(catalog: Catalog) -> None:
    """A question is forwarded to the staff address, with the sender's words."""
    intent = Intent(kind=IntentKind.QUESTION, sender="q@gov.sn", message_id="<q@x>",
                    event_id="africa-fr", text="Will there be interpretation?")
    d = decide(intent, catalog.event("africa-fr"), [], sequence=0, now=BEFORE,
               staff_address=STAFF)
    assert kinds(d) == [(Kind.STAFF_QUESTION, STAFF)]
    assert d.answers[0].context["text"] == "Will there be interpretation?"


def test_certificate_request_is_recorded_and_acknowledged(catalog: Catalog) -> None:
    """A registered participant asking for a certificate is flagged and told it is noted."""
    regs = [seat(7, "a@gouv.sn", "SN", Status.CONFIRMED)]
    intent = Intent(kind=IntentKind.CERTIFICATE_REQUEST, sender="a@gouv.sn", message_id="<c@x>",
                    event_id="africa-fr")
    d = decide(intent, catalog.event("africa-fr"), regs, sequence=0, now=BEFORE,
               staff_address=STAFF)
    assert d.certificate_for == (7,)
    assert kinds(d) == [(Kind.CERTIFICATE_NOTED, "a@gouv.sn")]


def test_registration_after_the_start_is_not_taken(catalog: Catalog) -> None:
    """Registering once the event has started takes no seat and explains why."""
    intent = registration("late@gouv.sn", Participant("late@gouv.sn", "Late", "SN"))
    d = decide(intent, catalog.event("africa-fr"), [], sequence=0, now=DURING,
               staff_address=STAFF)
    assert d.created == ()
    assert d.answers[0].context["reason"] == "closed"


# --- substitutions: "I can no longer attend; please register my colleague in my place" ----

AMINA = Participant("amina@justice.gouv.sn", "Amina Diallo", "SN", "Ministry of Justice",
                    "Legal Adviser")


def substitution(sender: str, *people: Participant) -> Intent:
    return Intent(kind=IntentKind.SUBSTITUTION, sender=sender, message_id="<s@x>",
                  event_id="africa-fr", language="fr", participants=people)


def test_a_substitute_of_the_same_country_takes_the_seat_before_the_waiting_list(
        catalog: Catalog) -> None:
    """Senegal is full with one waiting: Amadou hands his seat to Amina. He is cancelled,
    she is confirmed in the same decision, nobody is promoted, and both are answered (she
    with the name of the person she replaces and who asked)."""
    regs = [seat(1, "amadou@justice.gouv.sn", "SN", Status.CONFIRMED),
            *(seat(i, f"p{i}@gouv.sn", "SN", Status.CONFIRMED) for i in (2, 3, 4)),
            seat(5, "waiting@gouv.sn", "SN", Status.WAITING, minute=5)]
    d = decide(substitution("amadou@justice.gouv.sn", AMINA), catalog.event("africa-fr"),
               regs, sequence=3, now=BEFORE, staff_address=STAFF)
    assert [(c.registration_id, c.status) for c in d.changed] == [(1, Status.CANCELLED)]
    assert [(n.participant.email, n.status) for n in d.created] == [
        ("amina@justice.gouv.sn", Status.CONFIRMED)]
    assert kinds(d) == [(Kind.ACKNOWLEDGEMENT, "amina@justice.gouv.sn"),
                        (Kind.WITHDRAWAL, "amadou@justice.gouv.sn")]
    ack, withdrawal = d.answers
    assert ack.context["replaces"] == "Person 1"
    assert ack.context["registered_by"] == "amadou@justice.gouv.sn"
    assert withdrawal.context["substitutes"] == ["Amina Diallo"]
    # The CANCEL of his calendar entry rises above his last REQUEST (RFC 5546).
    assert d.changed[0].sequence_offset == 1 and withdrawal.sequence == 4


def test_a_substitute_for_a_waiting_place_keeps_that_rank(catalog: Catalog) -> None:
    """Someone waiting hands on their place: the colleague waits at that rank, not last."""
    regs = [*(seat(i, f"p{i}@gouv.sn", "SN", Status.CONFIRMED) for i in range(4)),
            seat(7, "amadou@justice.gouv.sn", "SN", Status.WAITING, minute=2),
            seat(8, "later@gouv.sn", "SN", Status.WAITING, minute=6)]
    d = decide(substitution("amadou@justice.gouv.sn", AMINA), catalog.event("africa-fr"),
               regs, sequence=0, now=BEFORE, staff_address=STAFF)
    (new,) = d.created
    assert new.status is Status.WAITING and new.queued_at == regs[4].created_at
    assert kinds(d) == [(Kind.WAITING_LIST, "amina@justice.gouv.sn"),
                        (Kind.WITHDRAWAL, "amadou@justice.gouv.sn")]


def test_a_substitute_from_another_country_frees_the_seat_for_its_waiting_list(
        catalog: Catalog) -> None:
    """Amadou (Senegal) names a Ghanaian colleague: she is placed as any Ghanaian would
    be, and his Senegal seat goes to the first Senegalese waiting."""
    regs = [seat(1, "amadou@justice.gouv.sn", "SN", Status.CONFIRMED),
            seat(2, "waiting@gouv.sn", "SN", Status.WAITING, minute=5)]
    kofi = Participant("efua@mint.gov.gh", "Efua Mensah", "GH")
    d = decide(substitution("amadou@justice.gouv.sn", kofi), catalog.event("africa-fr"),
               regs, sequence=0, now=BEFORE, staff_address=STAFF)
    assert [(c.registration_id, c.status) for c in d.changed] == [
        (1, Status.CANCELLED), (2, Status.CONFIRMED)]
    assert [(n.participant.country, n.status) for n in d.created] == [
        ("GH", Status.CONFIRMED)]
    assert kinds(d) == [(Kind.ACKNOWLEDGEMENT, "efua@mint.gov.gh"),
                        (Kind.WITHDRAWAL, "amadou@justice.gouv.sn"),
                        (Kind.PROMOTION, "waiting@gouv.sn")]


@pytest.mark.parametrize("colleague", [
    Participant("", "Amina Diallo", "SN"),                     # no address
    Participant("amina@justice.gouv.sn", "", "SN"),           # no name
    Participant("amina@justice.gouv.sn", "Amina Diallo", None, country_text="Atlantis"),
])
def test_an_unreadable_substitute_cancels_nothing_and_the_sender_is_asked(
        catalog: Catalog, colleague: Participant) -> None:
    """Without a colleague we can register, the sender keeps the seat (cancelling alone
    would give it to the waiting list) and is asked for the missing details."""
    regs = [seat(1, "amadou@justice.gouv.sn", "SN", Status.CONFIRMED),
            seat(2, "waiting@gouv.sn", "SN", Status.WAITING, minute=5)]
    for people in ((colleague,), ()):
        d = decide(substitution("amadou@justice.gouv.sn", *people),
                   catalog.event("africa-fr"), regs, sequence=0, now=BEFORE,
                   staff_address=STAFF)
        assert d.changed == () and d.created == ()
        assert kinds(d) == [(Kind.CLARIFICATION, "amadou@justice.gouv.sn")]
        assert d.answers[0].context["reason"] == "substitute_missing"


def test_a_substitution_from_someone_not_registered_registers_the_colleague(
        catalog: Catalog) -> None:
    """Nothing to hand over: the colleague is registered as a delegate would be."""
    d = decide(substitution("amadou@justice.gouv.sn", AMINA), catalog.event("africa-fr"),
               [], sequence=0, now=BEFORE, staff_address=STAFF)
    assert d.changed == ()
    assert [(n.participant.email, n.status) for n in d.created] == [
        ("amina@justice.gouv.sn", Status.CONFIRMED)]
    assert kinds(d) == [(Kind.ACKNOWLEDGEMENT, "amina@justice.gouv.sn")]
