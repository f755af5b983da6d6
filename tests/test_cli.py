"""The command line: exit codes, plan and parse as JSON, preview, registrations, purge."""

from __future__ import annotations

import csv
import email
import email.policy
import io
import json
import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner
from icalendar import Calendar
from openpyxl import load_workbook

from mailer import store
from mailer.cli import cli
from mailer.config import load_settings
from mailer.handling import Policy, handle
from mailer.schedule import load_catalog
from tests.servers.smtp import SmtpSink

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "mailer" / "demo_data"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the shipped project with a config.toml of its own."""
    for name in ("schedules", "templates", "packs", "contacts"):
        shutil.copytree(ROOT / name, tmp_path / name)
    (tmp_path / "config.toml").write_text(
        '[organiser]\naddress = "webinars@secretariat.example"\n'
        '[store]\nurl = "sqlite:///var/m.db"\n'
        '[imap]\nhost = "127.0.0.1"\nport = 1\nsecurity = "none"\ntimeout_seconds = 2\n',
        encoding="utf-8")
    return tmp_path


def run(project: Path, *args: str):
    return CliRunner().invoke(cli, ["--config", str(project / "config.toml"), *args],
                              obj={}, catch_exceptions=False)


def test_check_passes_on_the_shipped_project(project: Path) -> None:
    """`mailer check` exits 0 on the shipped schedules, packs, contacts and templates."""
    result = run(project, "check")
    assert result.exit_code == 0, result.output


def test_check_names_file_line_and_field_and_exits_2(project: Path) -> None:
    """A broken schedule makes `mailer check` exit 2 with the file, line and field."""
    path = project / "schedules" / "cyber-cj-2020.toml"
    path.write_text(path.read_text().replace('language = "fr"', 'language = "pt"'))
    result = run(project, "check")
    assert result.exit_code == 2
    assert "cyber-cj-2020.toml:" in result.output and "event[2].language" in result.output


def test_a_bad_config_value_exits_2_and_names_the_key(project: Path) -> None:
    """A wrong type in config.toml is reported as `config.toml: smtp.port: ...`, exit 2."""
    (project / "config.toml").write_text('[smtp]\nport = "x"\npassword = "s3cret-value"\n')
    result = run(project, "plan")
    assert result.exit_code == 2
    assert "config.toml: smtp.port:" in result.output and "s3cret-value" not in result.output


def test_a_bad_now_exits_2(project: Path) -> None:
    """An unreadable --now is bad usage."""
    result = run(project, "plan", "--now", "next tuesday")
    assert result.exit_code == 2 and "--now" in result.output


@pytest.mark.parametrize(("args", "says"), [
    (["messages", "--due", "abc"], "error: Invalid value for '--due'"),
    (["reject", "R1"], "error: Missing option '--reason'."),
    (["registrations", "--format", "pdf"], "error: Invalid value for '--format'"),
    (["plan", "--bogus"], "error: No such option '--bogus'"),
    (["remindr"], "error: No such command 'remindr'"),
])
def test_click_usage_errors_are_one_line_and_exit_2(project: Path, args: list[str],
                                                   says: str) -> None:
    """A mistyped option or value is told in one line naming it and where help is, like
    every other bad input (click printed the usage, a hint and the error on three)."""
    result = run(project, *args)
    assert result.exit_code == 2
    assert result.output.splitlines() == [result.output.strip()], result.output
    assert result.output.startswith(says), result.output
    assert result.output.rstrip().endswith(" --help)"), result.output


def test_help_and_version_still_exit_0(project: Path) -> None:
    """--help and --version are not errors."""
    assert run(project, "review", "--help").exit_code == 0
    assert run(project, "--version").exit_code == 0


def test_plan_lists_reminders_and_packs_of_the_five_webinars(project: Path) -> None:
    """`plan --now 2020-06-01T00:00Z --json` has each webinar's 7d/1d/1h reminders and 3d pack."""
    result = run(project, "plan", "--now", "2020-06-01T00:00Z", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    catalog = load_catalog(project / "schedules")
    webinars = [e for e in catalog.events.values() if e.series.id == "cyber-cj-2020"]
    assert len(webinars) == 5
    for event in webinars:
        sends = {(r["kind"], r["due_at"]) for r in data["sends"] if r["event_id"] == event.id}
        for offset in (timedelta(days=7), timedelta(days=1), timedelta(hours=1)):
            assert ("reminder", (event.start - offset).isoformat()) in sends
        assert ("pack", (event.start - timedelta(days=3)).isoformat()) in sends
        assert ("invitation", "2020-06-03T08:00:00+00:00") in sends
        labels = sorted(r["label"] for r in data["sends"]
                        if r["event_id"] == event.id and r["kind"] == "reminder")
        assert labels == ["1d", "1h", "7d"]


def test_output_to_a_reader_that_went_away_is_no_error(project: Path) -> None:
    """`mailer plan | head -1`: the reader leaves early; that is no error of the mailer, so
    nothing on stderr (it said "error: [Errno 32] Broken pipe"), and no traceback."""
    read_end, write_end = os.pipe()
    os.close(read_end)              # the reader is gone before the first line is written
    try:
        done = subprocess.run([sys.executable, "-m", "mailer", "--config",
                               str(project / "config.toml"), "plan",
                               "--now", "2020-06-01T00:00Z"],
                              stdout=write_end, stderr=subprocess.PIPE, cwd=project,
                              timeout=120, check=False)
    finally:
        os.close(write_end)
    assert done.stderr.decode() == ""
    assert done.returncode == 1


def test_plan_text_names_each_reminder_by_its_offset(project: Path) -> None:
    """The text plan says which reminder a line is ("7d", "1h"), not just "reminder"."""
    result = run(project, "plan", "--now", "2020-06-01T00:00Z", "--event", "africa-fr")
    assert result.exit_code == 0, result.output
    reminders = [line.split() for line in result.output.splitlines() if " reminder " in line]
    assert [words[3] for words in reminders] == ["7d", "1d", "1h"]


def test_parse_json_has_the_designed_shape(project: Path) -> None:
    """`parse --json` prints the intent, event, language and participants with ISO countries."""
    result = run(project, "parse", str(DEMO / "02-senegal-gmail-fr.eml"), "--json",
                 "--now", "2020-06-20T00:00Z")
    data = json.loads(result.output)
    assert data["intent"] == "registration" and data["event"] == "africa-fr"
    assert data["language"] == "fr" and data["certificate"] is True
    assert data["participants"] == [{
        "email": "awa.diop@justice.gouv.sn.example", "name": "Awa Diop", "country": "SN",
        "organisation": "Ministère de la Justice", "position": "Magistrate"}]
    assert {"bounced", "reason"} <= set(data)


def test_parse_says_what_was_guessed(project: Path) -> None:
    """A reply giving neither name nor country: `parse` shows both as guessed, `--json` in
    the participant's "inferred"."""
    reply = Path(__file__).parent / "replies" / "from-name-en-ghana-outlook-mobile.eml"
    text = run(project, "parse", str(reply), "--now", "2020-06-22T12:00Z")
    assert "Kwame Asante <kwame.asante@mint.gov.gh> GH (guessed: name, country)" in text.output
    data = json.loads(run(project, "parse", str(reply), "--json", "--now",
                          "2020-06-22T12:00Z").output)
    assert data["participants"][0]["inferred"] == ["name", "country"]


def test_preview_writes_the_message_that_would_be_sent(project: Path, tmp_path: Path) -> None:
    """`preview acknowledgement` writes a .eml whose invitation is a METHOD:REQUEST."""
    out = tmp_path / "ack.eml"
    result = run(project, "preview", "acknowledgement", "--event", "lac-es", "--lang", "es",
                 "--to", "jperez@pgr.gob.do", "--name", "José Pérez", "--out", str(out))
    assert result.exit_code == 0, result.output
    msg = email.message_from_bytes(out.read_bytes(), policy=email.policy.default)
    assert msg["To"].addresses[0].display_name == "José Pérez"
    (part,) = [p for p in msg.walk() if p.get_content_type() == "text/calendar"]
    assert Calendar.from_ical(part.get_content())["METHOD"] == "REQUEST"


@pytest.mark.parametrize(("kind", "lang", "words"), [
    ("not_invited", "en", "following sessions"), ("cancellation", "fr", "séances suivantes"),
    ("cancellation", "es", "siguientes sesiones")])
def test_preview_lists_no_other_sessions_where_no_message_does(
        project: Path, kind: str, lang: str, words: str) -> None:
    """The rules give other sessions to a clarification only: the preview of a refusal or a
    cancellation listed two (from another series, long over) that no participant gets."""
    result = run(project, "preview", kind, "--event", "africa-fr", "--lang", lang,
                 "--country", "FR", "--now", "2020-06-20T00:00Z")
    assert result.exit_code == 0, result.output
    assert words not in result.output
    assert "caribbean-kickoff" not in result.output and "lac-es" not in result.output


def test_preview_of_an_unknown_kind_exits_2(project: Path) -> None:
    """An unknown message kind is bad usage."""
    assert run(project, "preview", "welcome", "--event", "lac-es").exit_code == 2


def _register_demo(project: Path) -> None:
    settings = load_settings(project / "config.toml")
    st = store.Store(settings.store.url)
    st.migrate()
    catalog = load_catalog(project / "schedules")
    policy = Policy(inbox_address="webinars@secretariat.example",
                    staff_address="staff@example.org", domain="secretariat.example")
    now = datetime(2020, 6, 20, tzinfo=timezone.utc)
    for path in sorted(DEMO.glob("0[1-9]*.eml")):
        handle(st, catalog, path.read_bytes(), now=now, policy=policy)
    st.close()


def test_registrations_in_every_format(project: Path, tmp_path: Path) -> None:
    """Registrations come out as a table, CSV, JSON and an Excel workbook, with totals."""
    _register_demo(project)
    table = run(project, "registrations", "--event", "africa-fr")
    assert "CI  confirmed" in table.output and "4/4" in table.output
    rows = list(csv.DictReader(io.StringIO(run(project, "registrations", "--format",
                                               "csv").output)))
    assert {(r["event"], r["country"], r["status"]) for r in rows} >= {
        ("africa-fr", "CI", "cancelled"), ("africa-en", "FR", "review")}
    data = json.loads(run(project, "registrations", "--format", "json").output)
    ci = [t for t in data["totals"] if t["event"] == "africa-fr" and t["country"] == "CI"]
    assert ci == [{"event": "africa-fr", "country": "CI", "limit": 4, "confirmed": 4,
                   "waiting": 0, "review": 0, "rejected": 0, "cancelled": 1}]
    xlsx = tmp_path / "r.xlsx"
    assert run(project, "registrations", "--format", "xlsx", "--out", str(xlsx)).exit_code == 0
    assert load_workbook(xlsx).sheetnames == ["Registrations", "Totals"]


def test_purge_shows_what_it_would_delete_and_deletes_only_with_yes(project: Path) -> None:
    """`purge --series` first says what would go and deletes nothing; with --yes it keeps
    counts per country and removes names and addresses."""
    _register_demo(project)
    before = run(project, "registrations", "--format", "csv").output
    shown = run(project, "purge", "--series", "cyber-cj-2020", "--now", "2021-01-01T00:00Z")
    assert shown.exit_code == 0, shown.output
    assert "registration(s) would be deleted" in shown.output and "--yes" in shown.output
    assert run(project, "registrations", "--format", "csv").output == before
    result = run(project, "purge", "--series", "cyber-cj-2020", "--now", "2021-01-01T00:00Z",
                 "--yes")
    assert result.exit_code == 0, result.output
    assert "registration(s) deleted" in result.output
    assert run(project, "registrations", "--format", "csv").output.count("\n") == 1


def test_once_without_its_inbox_still_sends_what_is_due_and_exits_1(
        project: Path, smtp_sink: SmtpSink) -> None:
    """The IMAP server cannot be reached: the pass still plans and sends the invitations due,
    then exits 1 with one line saying the inbox was not read (cron mails that line)."""
    with (project / "config.toml").open("a", encoding="utf-8") as config:
        config.write(smtp_sink.toml(messages_per_minute=6000))
    result = run(project, "once", "--new-store", "--now", "2020-06-03T09:00Z")
    assert result.exit_code == 1
    sent = [m.message()["X-Mailer-Kind"] for m in smtp_sink.messages]
    assert sent and set(sent) == {"invitation"}
    summary, error = result.output.splitlines()[-2:]
    assert summary.endswith(f"sent {len(sent)}, retrying 0, failed 0")
    assert error.startswith("error: the inbox was not read: IMAP ")
    assert "Traceback" not in result.output


def test_once_with_both_servers_down_says_both_in_its_last_line(project: Path) -> None:
    """IMAP and SMTP both unreachable: cron mails the last line, which names both failures
    (it named the SMTP server's alone, the inbox's only in a log line above)."""
    with (project / "config.toml").open("a", encoding="utf-8") as config:
        config.write('[smtp]\nhost = "127.0.0.1"\nport = 1\nsecurity = "none"\n'
                     "timeout_seconds = 2\n")
    result = run(project, "once", "--new-store", "--now", "2020-06-03T09:00Z")
    assert result.exit_code == 1
    last = result.output.splitlines()[-1]
    assert last.startswith("error: the inbox was not read (IMAP "), last
    assert "and sending failed: " in last
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", [["registrations"], ["once", "--no-read"], ["run"]])
def test_a_store_error_is_one_line_and_exit_1(project: Path, command: list[str]) -> None:
    """A store the database cannot use (here a file that is no database) ends any command
    with one line in the database's words and exit code 1, never a traceback; an SQLite
    file is named (its words, "unable to open database file", name none)."""
    (project / "var").mkdir()
    database = project / "var" / "m.db"
    database.write_bytes(b"not a database, but a stray file " * 100)
    result = run(project, *command)
    assert result.exit_code == 1
    assert result.output == (f"error: the store failed: file is not a database "
                             f"({database.resolve()})\n")
    database.unlink()
    database.mkdir()            # a folder where the file should be: it cannot be opened
    result = run(project, *command)
    assert result.exit_code == 1
    assert result.output == (f"error: the store failed: unable to open database file "
                             f"({database.resolve()})\n")


CERTIFICATE_REQUEST = (
    "From: Kofi Mensah <kofi.mensah@mint.gov.gh>\n"
    "To: webinars@secretariat.example\n"
    "Subject: Certificate of participation\n"
    "Message-ID: <certificate-late@mint.gov.gh>\n"
    "Content-Type: text/plain; charset=utf-8\n\n"
    "Dear Secretariat,\n\nCould I have my certificate of participation for the webinar "
    "with African countries of 7 July?\n\nKofi Mensah\n")


def test_how_long_ended_events_count_is_the_configuration_s(project: Path,
                                                              tmp_path: Path) -> None:
    """A certificate request 75 days after the African webinar: past the 60 days of the
    default it cannot name that webinar; with `replies.recent_event_days = 90` it does."""
    mail = tmp_path / "late.eml"
    mail.write_text(CERTIFICATE_REQUEST, encoding="utf-8")

    def event() -> str | None:
        result = run(project, "parse", str(mail), "--json", "--now", "2020-09-20T12:00Z")
        assert result.exit_code == 0, result.output
        data = json.loads(result.output)
        assert data["intent"] == "certificate_request"
        return data["event"]

    assert event() != "africa-en"
    config = project / "config.toml"
    config.write_text(config.read_text() + "[replies]\nrecent_event_days = 90\n")
    assert event() == "africa-en"


@pytest.mark.parametrize("value", ["-1", '"sixty"', "100000"])
def test_a_bad_recent_event_days_exits_2_naming_the_key(project: Path, value: str) -> None:
    """`mailer check` (and every command reading the configuration) refuses it in one line."""
    config = project / "config.toml"
    config.write_text(config.read_text() + f"[replies]\nrecent_event_days = {value}\n")
    result = run(project, "check")
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if "recent_event_days" in line]
    assert len(lines) == 1 and "config.toml: replies.recent_event_days:" in lines[0]


# --- mailer parse: what the daemon would do ---------------------------------------------------

REPLIES = Path(__file__).parent / "replies"


def outcome(project: Path, path: Path, *extra: str, now: str = "2020-06-22T12:00Z") -> dict:
    result = run(project, "parse", str(path), "--json", "--now", now, *extra)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)["outcome"]


def test_parse_says_what_the_daemon_would_do_with_corpus_mail(project: Path,
                                                             corpus: Path) -> None:
    """An auto-reply is left unanswered, a bounce suppresses its address, a registration is
    confirmed and acknowledged, mail without a usable From is quarantined with its reason;
    with no store yet, each says it decided as against an empty one."""
    vacation = outcome(project, corpus / "peers/sisimai/bsd/rfc3834-01.eml")
    assert vacation["action"] == "decided" and vacation["answers"] == []
    assert vacation["summary"] == "automatic reply: not answered"
    bounce = outcome(project, corpus / "bounces/dsn_01.txt")
    assert bounce["suppressed"] == ["userx@example.com"] and bounce["answers"] == []
    registration = outcome(project, REPLIES / "free-en-kenya-outlook.eml")
    assert registration["registrations"] == [
        {"email": "gwanjiru@odpp.go.ke", "country": "KE", "status": "confirmed"}]
    assert registration["answers"] == [{"kind": "acknowledgement", "to": "gwanjiru@odpp.go.ke"}]
    assert "nobody had registered" in registration["assumed"]
    quarantined = outcome(project, corpus / "peers/discourse/emails/no_from.eml")
    assert quarantined["action"] == "quarantined"
    assert "From header" in quarantined["summary"] and "answers" not in quarantined

    text = run(project, "parse", str(corpus / "peers/sisimai/bsd/rfc3834-01.eml"), "--now",
               "2020-06-22T12:00Z").output
    assert "outcome:  not answered: automatic reply\n" in text
    text = run(project, "parse", str(REPLIES / "free-en-kenya-outlook.eml"), "--now",
               "2020-06-22T12:00Z").output
    assert "outcome:  answered:" in text and "answer acknowledgement to gwanjiru" in text
    assert "assumed:  no store read" in text


def test_parse_reads_the_store_and_changes_nothing(project: Path) -> None:
    """With Amadou registered, his substitution shows him cancelled and Amina registered in
    his seat, both answered; the store is the same afterwards. --no-store decides as for a
    new store (nobody to cancel)."""
    settings = load_settings(project / "config.toml")
    st = store.Store(settings.store.url)
    st.migrate()
    policy = Policy(inbox_address="webinars@secretariat.example",
                    staff_address="staff@example.org", domain="secretariat.example")
    form = (b"From: Amadou Sow <amadou.sow@justice.gouv.sn>\r\n"
            b"To: webinars+africa-en@secretariat.example\r\nSubject: Registration\r\n"
            b"Message-ID: <form@justice.gouv.sn>\r\n\r\n"
            b"Name: Amadou Sow\r\nCountry: Senegal\r\nPosition: Director\r\n")
    handle(st, load_catalog(project / "schedules"), form,
           now=datetime(2020, 6, 20, tzinfo=timezone.utc), policy=policy)

    def stored() -> list[tuple[str, str]]:
        with st.transaction() as session:
            return [(r.email, r.status) for r in store.registrations_of(session, "africa-en")]

    before = stored()
    substitution = REPLIES / "substitution-en-senegal-outlook-in-my-place.eml"
    seen = outcome(project, substitution, now="2020-07-01T10:15Z")
    assert seen["changes"] == [{"email": "amadou.sow@justice.gouv.sn", "from": "confirmed",
                                "to": "cancelled"}]
    assert seen["registrations"] == [{"email": "amina.diallo@justice.gouv.sn", "country": "SN",
                                      "status": "confirmed"}]
    assert {(a["kind"], a["to"]) for a in seen["answers"]} == {
        ("acknowledgement", "amina.diallo@justice.gouv.sn"),
        ("withdrawal", "amadou.sow@justice.gouv.sn")}
    assert "assumed" not in seen
    assert stored() == before == [("amadou.sow@justice.gouv.sn", "confirmed")]
    empty = outcome(project, substitution, "--no-store", now="2020-07-01T10:15Z")
    assert empty["changes"] == [] and "nobody had registered" in empty["assumed"]
    st.close()
