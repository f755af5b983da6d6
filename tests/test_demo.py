"""`mailer demo`: the whole story on embedded pymap and aiosmtpd, in-process and as a command."""

from __future__ import annotations

import contextlib
import email
import email.policy
import io
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pytest
import structlog

from mailer.config import load_settings
from mailer.demo import file_name, find_root, run_demo
from mailer.errors import UsageError
from mailer.views import registrations_view

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class DemoRun:
    """What one in-process demo printed and left in its folder."""

    folder: Path
    output: str
    messages: dict[str, EmailMessage]   # file name -> parsed message


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoRun]:
    """Run the demo once for this module (it takes seconds), capturing what it prints."""
    folder = tmp_path_factory.mktemp("demo")
    saved = structlog.get_config()   # the demo sets logging to WARNING for the whole process
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            run_demo(folder)
    finally:
        structlog.reset_defaults()
        structlog.configure(**saved)
    messages = {p.name: email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
                for p in sorted((folder / "sent").glob("*.eml"))}
    yield DemoRun(folder, out.getvalue(), messages)  # type: ignore[arg-type]


def of_kind(run: DemoRun, kind: str) -> list[EmailMessage]:
    return [m for name, m in run.messages.items() if name.split("-", 2)[1] == kind]


def attachment_types(msg: EmailMessage) -> set[str]:
    return {part.get_content_type() for part in msg.iter_attachments()}


def test_the_output_tells_the_five_steps_and_where_to_look(demo_run: DemoRun) -> None:
    """The demo prints each step's headline, each reply's reading, and the follow-up command."""
    out = demo_run.output
    for headline in ("1. 03 June 2020, 08:05 UTC", "2. 23 June 2020, 12:00 UTC",
                     "3. 23 June 2020, 14:00 UTC", "4. 06 July 2020, 08:05 UTC",
                     "5. 09 July 2020, 10:00 UTC"):
        assert headline in out
    assert "invitations to 13 focal points for cyber-cj-2020" in out
    assert "09-cote-divoire-cancellation-fr" in out and "cancellation" in out
    assert "totals per country" in out
    assert "certificate of participation to awa.diop@justice.gouv.sn.example" in out
    follow_up = next(line for line in out.splitlines() if line.startswith("Look at the database"))
    command = follow_up.split(": ", 1)[1].split()
    assert command[1:] == ["registrations", "--config", str(demo_run.folder / "config.toml")]
    assert shutil.which(command[0]), f"{command[0]} cannot be run from here"
    assert "open them in any mail client" in out


def test_every_kind_of_answer_is_saved_as_a_parseable_eml(demo_run: DemoRun) -> None:
    """Acknowledgements carry a calendar, and the waiting-list, promotion and withdrawal exist."""
    acks = of_kind(demo_run, "acknowledgement")
    assert len(acks) >= 9
    for msg in acks:
        types = {part.get_content_type() for part in msg.walk()}
        assert "text/calendar" in types
    (waiting,) = of_kind(demo_run, "waiting_list")
    (promotion,) = of_kind(demo_run, "promotion")
    assert waiting["To"].addresses[0].addr_spec == "i.ouattara@justice.gouv.ci.example"
    assert promotion["To"].addresses[0].addr_spec == "i.ouattara@justice.gouv.ci.example"
    (withdrawal,) = of_kind(demo_run, "withdrawal")
    assert withdrawal["To"].addresses[0].addr_spec == "m.bamba@diplomatie.gouv.ci.example"
    # Her cancellation came in the same pass as her registration: the acknowledgement still
    # queued for her is held back (it would put the session in her calendar after the CANCEL).
    assert "m.bamba@diplomatie.gouv.ci.example" not in {
        m["To"].addresses[0].addr_spec for m in acks}


def test_staff_approve_the_registration_in_review_by_replying_to_the_digest(
        demo_run: DemoRun) -> None:
    """The digest in the staff's mailbox lists Pierre Martin's registration in review; staff
    reply "approve R12" to its signed address; Pierre gets his acknowledgement with the
    calendar invitation, and staff an answer saying what was done."""
    out = demo_run.output
    assert "staff decide by replying to the daily digest" in out
    assert "R12  Pierre Martin (FR)" in out and "France is not invited" in out
    assert "staff reply “approve R12” to the digest's signed address (webinars+digest-" in out
    assert "DONE: approve R12: done" in out
    pierre = "pierre.martin@diplomatie.gouv.fr.example"
    (digest, *_later) = of_kind(demo_run, "staff_digest")
    assert "digest-" in digest["Reply-To"].addresses[0].addr_spec
    (done,) = of_kind(demo_run, "staff_done")
    assert done["To"].addresses[0].addr_spec == "staff@secretariat.example"
    order = [(name.split("-", 2)[1], m["To"].addresses[0].addr_spec)
             for name, m in demo_run.messages.items()]
    assert order.index(("pending_review", pierre)) < order.index(
        ("staff_digest", "staff@secretariat.example")) < order.index(("acknowledgement", pierre))
    (ack,) = [m for m in of_kind(demo_run, "acknowledgement")
              if m["To"].addresses[0].addr_spec == pierre]
    assert "text/calendar" in {part.get_content_type() for part in ack.walk()}


def test_packs_and_the_certificate_carry_their_files(demo_run: DemoRun) -> None:
    """The information pack has PDFs and slides; Awa Diop's certificate is a PDF."""
    packs = of_kind(demo_run, "pack")
    assert packs
    pptx = "application/vnd.openxmlformats-officedocument.presentationml.presentation"
    assert all({"application/pdf", pptx} <= attachment_types(m) for m in packs)
    (certificate,) = of_kind(demo_run, "certificate")
    assert certificate["To"].addresses[0].addr_spec == "awa.diop@justice.gouv.sn.example"
    assert "application/pdf" in attachment_types(certificate)


def test_nothing_answers_automatic_mail_or_bounces(demo_run: DemoRun) -> None:
    """No message goes to the out-of-office sender, the bounced address or MAILER-DAEMON."""
    recipients = {m["To"].addresses[0].addr_spec.lower() for m in demo_run.messages.values()}
    assert len(demo_run.messages) > 50
    assert "j.smith@foreign.gov.jm.example" not in recipients
    assert "focal.point@mofa.gov.gh.example" not in recipients
    assert not any(r.startswith("mailer-daemon@") for r in recipients)


def test_the_database_can_be_read_with_the_written_config(demo_run: DemoRun) -> None:
    """The written config.toml opens the demo's database: Côte d'Ivoire has 4 confirmed."""
    settings = load_settings(demo_run.folder / "config.toml", required=True)
    data = json.loads(str(registrations_view(settings, "africa-fr", "json")))
    (ci,) = [t for t in data["totals"] if t["country"] == "CI"]
    assert ci["confirmed"] == 4 and ci["cancelled"] == 1 and ci["waiting"] == 0


def test_the_shipped_files_are_found_or_the_error_says_where_it_looked(tmp_path: Path) -> None:
    """find_root falls back to the next candidate and names every folder it tried."""
    assert find_root([tmp_path, ROOT]) == ROOT
    with pytest.raises(UsageError, match=str(tmp_path)):
        find_root([tmp_path])


def test_file_names_keep_only_safe_characters() -> None:
    """A recipient with a slash or spaces cannot escape the sent/ folder."""
    assert file_name(7, "acknowledgement", "../a b@x.example") == \
        "007-acknowledgement-.._a_b@x.example.eml"


def test_the_mailer_demo_command_exits_zero(tmp_path: Path) -> None:
    """`mailer demo --dir DIR` (the console script) runs from any folder and exits 0."""
    script = Path(sys.executable).parent / "mailer"
    result = subprocess.run([str(script), "demo", "--dir", str(tmp_path / "out")],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "5. 09 July 2020" in result.stdout
    assert result.stderr == ""
    assert any((tmp_path / "out" / "sent").glob("*-certificate-*.eml"))
