"""``mailer check``: each kind of staff mistake is reported once, with its file, field and line."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import pytest

from mailer.check import check, format_problems
from mailer.errors import Problem

SECRET = "Tr0ub4dor&3-not-for-logs"
ROOT = Path(__file__).resolve().parent.parent
Added = Callable[[Callable[[], object]], list[Problem]]


@pytest.fixture(autouse=True)
def _no_mailer_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own MAILER_* variables must not leak into these checks."""
    import os

    for name in list(os.environ):
        if name.startswith("MAILER_"):
            monkeypatch.delenv(name)


def _copy_shipped(root: Path, target: Path) -> Path:
    for folder in ("schedules", "packs", "contacts", "templates"):
        shutil.copytree(root / folder, target / folder)
    shutil.copy(root / "config.example.toml", target / "config.toml")
    return target


def _relative(problems: list[Problem], base: Path) -> set[Problem]:
    """Problems with the copy's folder taken out, so two copies' problems compare equal."""
    cut = str(base)
    return {Problem(p.file.replace(cut, ""), p.field, p.message.replace(cut, ""), p.line)
            for p in problems}


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> set[Problem]:
    """The problems of an intact copy (none once the shipped setup is complete)."""
    intact = _copy_shipped(ROOT, tmp_path_factory.mktemp("intact"))
    return _relative(check(intact / "config.toml"), intact)


@pytest.fixture
def setup(root: Path, tmp_path: Path) -> Path:
    """A copy of the shipped setup (config, schedules, packs, contacts, templates) to break."""
    return _copy_shipped(root, tmp_path)


def _edit(path: Path, old: str, new: str) -> int:
    """Replace the one occurrence of ``old`` in ``path``; return the 1-based line it was on."""
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} must occur once in {path.name}"
    path.write_text(text.replace(old, new), encoding="utf-8")
    return text[: text.index(old)].count("\n") + 1


@pytest.fixture
def added(setup: Path, baseline: set[Problem]) -> Added:
    """Break the copy with a function, then return the problems the intact copy did not have."""

    def run(break_it: Callable[[], object]) -> list[Problem]:
        break_it()
        problems = check(setup / "config.toml")
        return [p for p in problems if next(iter(_relative([p], setup))) not in baseline]

    return run


def _only(problems: list[Problem]) -> Problem:
    assert len(problems) == 1, "\n".join(str(p) for p in problems)
    return problems[0]


# -- schedules ------------------------------------------------------------------------------


def test_toml_syntax_error_names_file_and_line(setup: Path, added: Added) -> None:
    """A broken TOML line is reported with the schedule file and its line number."""
    path = setup / "schedules" / "cyber-cj-2020.toml"
    line = 0

    def break_it() -> None:
        nonlocal line
        line = _edit(path, "max_per_country = 4 ", "max_per_country = = 4 ")

    problem = _only(added(break_it))
    assert problem.file == str(path)
    assert problem.line == line
    assert "TOML syntax" in str(problem)


@pytest.mark.parametrize("written", ["2020-07-32T08:00:00Z", "2020-07-09 08:00",
                                     "2020-07-09T25:00:00Z", "2020-02-30T08:00:00Z",
                                     "09/07/2020 08:00"])
def test_a_date_toml_cannot_read_says_how_to_write_one(setup: Path, added: Added,
                                                       written: str) -> None:
    """tomllib says "Expected newline or end of document after a statement" for a day 32 or
    a time without seconds: the line is named with what a date must look like."""
    path = setup / "schedules" / "cyber-cj-2020.toml"
    line = 0

    def break_it() -> None:
        nonlocal line
        line = _edit(path, "start = 2020-07-09T08:00:00Z", f"start = {written}")

    problem = _only(added(break_it))
    assert (problem.file, problem.line) == (str(path), line)
    assert problem.message == (
        f"TOML syntax: {written!r} is not a date and time TOML reads: write it like "
        "2020-07-09T08:00:00Z (a real day, hours 00-23, seconds included, then Z for UTC or "
        "an offset like +02:00)")


def test_unknown_key_names_the_event_field_and_line(setup: Path, added: Added) -> None:
    """A misspelt key inside an event is reported as that event's unknown key, on its line."""
    path = setup / "schedules" / "cyber-cj-2020.toml"
    problem = _only(added(lambda: _edit(path, 'language = "fr"\n',
                                                  'language = "fr"\ncolour = "blue"\n')))
    text = path.read_text(encoding="utf-8").splitlines()
    assert problem.file == str(path)
    assert problem.field == "event[2].colour"
    assert problem.message == "unknown key"
    assert problem.line is not None and text[problem.line - 1] == 'colour = "blue"'


def test_unknown_country_code(setup: Path, added: Added) -> None:
    """An invited code that is not ISO 3166 alpha-2 is reported on the event and its line."""
    path = setup / "schedules" / "caribbean-2020.toml"
    line = 0

    def break_it() -> None:
        nonlocal line
        line = _edit(path, 'invited = ["JM"]', 'invited = ["JM", "XX"]')

    problem = _only(added(break_it))
    assert (problem.file, problem.field, problem.line) == (str(path), "event[2].invited", line)
    assert "unknown country code 'XX'" in problem.message


def test_a_country_name_with_swapped_letters_gets_a_suggestion(setup: Path, added: Added) -> None:
    """"Frnace" is 83 against "France", under the cutoff a reply's country must reach; staff
    still get the hint (they got only 'use ISO 3166 alpha-2')."""
    path = setup / "schedules" / "caribbean-2020.toml"
    problem = _only(added(lambda: _edit(path, 'invited = ["JM"]', 'invited = ["JM", "Frnace"]')))
    assert "unknown country code 'Frnace': did you mean FR (France)?" in problem.message


def test_misspelt_code_is_reported_on_its_events_line_not_the_first_mention(
        setup: Path, added: Added) -> None:
    """A code such as "fr" also written in a comment above ('languages are "en", "fr" or
    "es"') is reported on the line of the event that invites it: the line used to be the
    comment's, the first place the text appeared in the file."""
    path = setup / "schedules" / "cyber-cj-2020.toml"
    line = 0

    def break_it() -> None:
        nonlocal line
        line = _edit(path, 'invited = ["@asia_pacific"]', 'invited = ["@asia_pacific", "fr"]')

    problem = _only(added(break_it))
    assert (problem.file, problem.field, problem.line) == (str(path), "event[0].invited", line)
    assert "unknown country code 'fr': did you mean FR (France)?" in problem.message


def test_unknown_country_group(setup: Path, added: Added) -> None:
    """A misspelt group name is reported with the groups that do exist."""
    path = setup / "schedules" / "caribbean-2020.toml"
    old = 'invited = ["@caricom"]\njoin_url = "https://zoom.us/j/91490375562"'
    line = 0

    def break_it() -> None:
        nonlocal line
        line = _edit(path, old, old.replace("@caricom", "@carricom"))

    problem = _only(added(break_it))
    assert (problem.file, problem.field, problem.line) == (str(path), "event[9].invited", line)
    assert "unknown country group '@carricom'" in problem.message
    assert "@caricom" in problem.message


def test_end_not_after_start(setup: Path, added: Added) -> None:
    """An event ending before it starts is reported on that event."""
    path = setup / "schedules" / "cyber-cj-2020.toml"
    problem = _only(added(lambda: _edit(path, "end = 2020-07-07T09:45:00Z",
                                                  "end = 2020-07-07T07:45:00Z")))
    assert problem.file == str(path)
    assert (problem.field or "").startswith("event[1]")
    assert "end must be after start" in problem.message


def test_duplicate_event_id_across_files(setup: Path, added: Added) -> None:
    """An event id already used in another file is reported in the new file, naming the other."""
    extra = setup / "schedules" / "extra-2021.toml"
    problem = _only(added(lambda: extra.write_text(
        '[series]\nid = "extra-2021"\ntitle = "Extra"\n\n[[event]]\nid = "africa-fr"\n'
        'start = 2021-01-12T10:00:00Z\nend = 2021-01-12T11:00:00Z\nlanguage = "en"\n'
        'invited = ["SN"]\n', encoding="utf-8")))
    assert (problem.file, problem.field, problem.line) == (str(extra), "event[0].id", 6)
    assert "duplicate event id 'africa-fr'" in problem.message
    assert "cyber-cj-2020.toml" in problem.message


def test_unknown_language(setup: Path, added: Added) -> None:
    """A language other than en, fr or es is reported on the event's language line."""
    path = setup / "schedules" / "cyber-cj-2020.toml"
    line = 0

    def break_it() -> None:
        nonlocal line
        line = _edit(path, 'language = "fr"', 'language = "de"')

    problem = _only(added(break_it))
    assert (problem.file, problem.field, problem.line) == (str(path), "event[2].language", line)
    assert "'en', 'fr' or 'es'" in problem.message


def test_bad_duration(setup: Path, added: Added) -> None:
    """A reminder written '1 day' is reported with the way to write it."""
    path = setup / "schedules" / "cyber-cj-2020.toml"
    line = 0

    def break_it() -> None:
        nonlocal line
        line = _edit(path, 'reminders = ["7d", "1d", "1h"]', 'reminders = ["7d", "1 day", "1h"]')

    problem = _only(added(break_it))
    assert (problem.file, problem.field, problem.line) == (str(path), "series.reminders[1]",
                                                           line)
    assert "bad duration '1 day'" in problem.message


# -- pack files and contacts ----------------------------------------------------------------


def test_missing_pack_file(setup: Path, added: Added) -> None:
    """A pack file missing in a language an event uses names the schedule and series.pack.slides."""
    path = setup / "schedules" / "cyber-cj-2020.toml"
    problem = _only(added(lambda: (setup / "packs" / "slides.es.pptx").unlink()))
    assert problem.file == str(path)
    assert problem.field == "series.pack.slides"
    assert "slides.es.pptx" in problem.message and "lac-es" in problem.message
    lines = path.read_text(encoding="utf-8").splitlines()
    assert problem.line is not None and lines[problem.line - 1].startswith("slides = ")


def test_pack_in_a_language_no_event_uses_is_optional(setup: Path) -> None:
    """Only the events' languages are required: Caribbean events are English, so no fr needed."""
    (setup / "schedules" / "cyber-cj-2020.toml").unlink()
    for name in ("factsheet.fr.pdf", "factsheet.es.pdf"):
        (setup / "packs" / name).unlink()
    assert not [p for p in check(setup / "config.toml") if "pack" in (p.field or "")]


def test_contacts_bad_country_code_names_the_csv_line(setup: Path, added: Added) -> None:
    """A contact with an unknown country code is reported with the CSV file and its line."""
    path = setup / "contacts" / "cyber-cj-2020.csv"
    line = 0

    def break_it() -> None:
        nonlocal line
        line = _edit(path, "SN,Awa Diop", "Senegal,Awa Diop")

    problem = _only(added(break_it))
    assert (problem.file, problem.field, problem.line) == (str(path), "country", line)
    assert "senegal" in problem.message.lower()


def test_contacts_missing_file(setup: Path, added: Added) -> None:
    """A series whose contacts file is missing is reported on its contacts key."""
    path = setup / "schedules" / "cyber-cj-2020.toml"
    problem = _only(added(lambda: (setup / "contacts" / "cyber-cj-2020.csv").unlink()))
    assert (problem.file, problem.field) == (str(path), "series.contacts")
    assert "file not found" in problem.message


# -- templates ------------------------------------------------------------------------------


def test_template_missing_for_a_language_an_event_uses(setup: Path, added: Added) -> None:
    """Deleting the French reminder text is reported on that template file."""
    template = setup / "templates" / "fr" / "reminder.txt"
    problem = _only(added(template.unlink))
    assert problem.file == str(template)
    assert problem.field == "reminder"
    assert "missing" in problem.message


def test_template_that_fails_to_render(setup: Path, added: Added) -> None:
    """A template using a variable that does not exist is reported on that template."""
    template = setup / "templates" / "es" / "reminder.txt"

    def break_it() -> None:
        assert template.is_file(), "the shipped Spanish reminder template is missing"
        with template.open("a", encoding="utf-8") as handle:
            handle.write("\n{{ no_such_variable.attribute }}\n")

    problem = _only(added(break_it))
    assert problem.file == str(template)
    assert problem.field == "reminder"


# -- the shipped setup ----------------------------------------------------------------------


def test_shipped_setup_has_no_problems(root: Path) -> None:
    """The shipped schedules, packs, contacts, templates and config.example.toml pass the check."""
    problems = check(root / "config.example.toml")
    assert problems == [], format_problems(problems)


def test_format_problems_one_line_each_then_a_count() -> None:
    """Each problem is one output line, followed by the number of problems."""
    problems = [Problem("schedules/a.toml", "event[0].end", "end must be after start", 12),
                Problem("config.toml", "smtp.port", "unknown key")]
    assert format_problems(problems) == (
        "schedules/a.toml:12: event[0].end: end must be after start\n"
        "config.toml: smtp.port: unknown key\n"
        "2 problems")
    assert format_problems([]) == "no problems found"


# -- configuration --------------------------------------------------------------------------


def _of_config(problems: list[Problem]) -> list[Problem]:
    """The problems of the configuration file itself (its folders are checked too)."""
    return [p for p in problems if p.file in ("config.toml", "MAILER_CONFIG")
            or p.file.endswith("(environment)")]


def test_config_bad_port(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An SMTP port out of range reads 'config.toml: smtp.port: ...'."""
    monkeypatch.chdir(tmp_path)
    Path("config.toml").write_text("[smtp]\nport = 70000\n", encoding="utf-8")
    problem = _only(_of_config(check(Path("config.toml"))))
    assert str(problem).startswith("config.toml: smtp.port: ")
    assert "65535" in problem.message


def test_config_unknown_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A misspelt configuration key reads 'config.toml: smtp.hots: unknown key'."""
    monkeypatch.chdir(tmp_path)
    Path("config.toml").write_text('[smtp]\nhots = "mail.example.org"\n', encoding="utf-8")
    assert str(_only(_of_config(check(Path("config.toml"))))) == (
        "config.toml: smtp.hots: unknown key")


def test_a_wrong_value_from_the_environment_names_its_variable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment wins over the file: its mistake is named by the variable, not blamed
    on config.toml, where the operator would look for it in vain."""
    monkeypatch.chdir(tmp_path)
    Path("config.toml").write_text("[smtp]\nport = 587\n", encoding="utf-8")
    monkeypatch.setenv("MAILER_SMTP__PORT", "abc")
    monkeypatch.setenv("MAILER_IMAP__HOTS", "imap.example.org")
    said = {str(p) for p in _of_config(check(Path("config.toml")))}
    assert said == {
        "MAILER_SMTP__PORT (environment): smtp.port: Input should be a valid integer, unable "
        "to parse string as an integer",
        "MAILER_IMAP__HOTS (environment): imap.hots: unknown key"}


@pytest.mark.parametrize(("old", "new", "field"), [
    ('address = "webinars@example.org"', 'address = "webinars"', "organiser.address"),
    ('staff_address = "staff@example.org"', 'staff_address = "staff at example.org"',
     "organiser.staff_address"),
    ("# addresses = [", 'addresses = ["boss@example.org", "director"]\n# x = [',
     "staff.addresses"),
])
def test_an_address_that_is_no_address_is_named_in_the_configuration(
        setup: Path, old: str, new: str, field: str) -> None:
    """Not 'templates: template check failed: PermanentSendError: invalid address...'."""
    _edit(setup / "config.toml", old, new)
    problem = _only(check(setup / "config.toml"))
    assert (Path(problem.file).name, problem.field) == ("config.toml", field)
    assert "is not an email address" in problem.message


def test_config_syntax_error_has_a_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A TOML syntax error in the configuration names the file and the line."""
    monkeypatch.chdir(tmp_path)
    Path("config.toml").write_text('[smtp]\nhost = "localhost"\nport = = 25\n', encoding="utf-8")
    problem = _only(_of_config(check(Path("config.toml"))))
    assert (problem.file, problem.line) == ("config.toml", 3)


def test_config_missing_file(tmp_path: Path) -> None:
    """A configuration file that was named but does not exist is a problem, not defaults."""
    problem = _only(check(tmp_path / "nowhere.toml"))
    assert problem.message == "file not found"


def test_password_never_appears_in_problems(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Wrongly typed, misspelt or environment passwords never show in any problem text."""
    monkeypatch.chdir(tmp_path)
    Path("config.toml").write_text(
        f'[smtp]\npassword = ["{SECRET}"]\nport = 0\n\n[imap]\npasword = "{SECRET}"\n'
        f'password = 987654321\n', encoding="utf-8")
    monkeypatch.setenv("MAILER_SMTP__USERNAME", "webinars")
    monkeypatch.setenv("MAILER_SMTP__CONNECTIONS", SECRET)
    problems = _of_config(check(Path("config.toml")))
    text = format_problems(problems)
    assert len(problems) == 5, text
    assert SECRET not in text and "987654321" not in text
    assert "config.toml: imap.pasword: unknown key" in text


def test_ten_mistakes_of_ten_kinds_are_all_listed_in_one_run(setup: Path) -> None:
    """Schedules, packs, links, contacts and templates broken at once: one line each."""
    cyber = setup / "schedules" / "cyber-cj-2020.toml"
    lines = {
        "unknown key": _edit(cyber, 'kind = "webinar"', 'knd = "webinar"'),
        "duration": _edit(cyber, 'reminders = ["7d", "1d", "1h"]',
                          'reminders = ["7d", "1 day", "1h"]'),
        "end": _edit(cyber, "end = 2020-07-07T09:45:00Z", "end = 2020-07-07T07:45:00Z"),
        "country": _edit(cyber, 'invited = ["@africa"]\njoin_url = "https://zoom.us/j/966',
                         'invited = ["@africa", "Senegall"]\njoin_url = "https://zoom.us/j/966'),
        "group": _edit(cyber, 'invited = ["@latin_america_caribbean"]\njoin_url = "https://'
                       'zoom.us/j/918', 'invited = ["@latin_america_carribean"]\njoin_url = '
                       '"https://zoom.us/j/918'),
        "link": _edit(cyber, 'join_url = "https://zoom.us/j/98473625190"',
                      'join_url = "zoom.us/j/98473625190"'),
        "pack": _edit(cyber, 'slides = "packs/slides.{lang}.pptx"',
                      'slides = "packs/slide.{lang}.pptx"'),
    }
    _edit(setup / "schedules" / "caribbean-2020.toml", 'id = "caribbean-kickoff-2"',
          'id = "africa-fr"')
    _edit(setup / "contacts" / "cyber-cj-2020.csv", "TO,Sione", "TG0,Sione")
    template = setup / "templates" / "fr" / "reminder.txt"
    template.write_text(template.read_text(encoding="utf-8") + "{{ event.nowhere.x }}\n",
                        encoding="utf-8")

    problems = check(setup / "config.toml", datetime(2020, 7, 10, tzinfo=timezone.utc))
    text = format_problems(problems)
    assert len(problems) == 10, text
    said = "\n".join(str(p) for p in problems)
    cyber_name = str(cyber)
    dup_line = cyber.read_text(encoding="utf-8").splitlines().index('id = "africa-fr"') + 1
    for expected in (
            f"{cyber_name}:{lines['unknown key']}: event[0].knd: unknown key",
            f"{cyber_name}:{lines['duration']}: series.reminders[1]: ",
            f"{cyber_name}:{lines['end']}: event[1].end: end must be after start",
            f"{cyber_name}:{lines['country']}: event[2].invited: unknown country code "
            "'Senegall': did you mean SN (Senegal)?",
            f"{cyber_name}:{lines['group']}: event[3].invited: unknown country group "
            "'@latin_america_carribean': did you mean @latin_america_caribbean?",
            f"{cyber_name}:{lines['link']}: event lac-es.join_url: join_url "
            "'zoom.us/j/98473625190' does not start with https:// (the event starts within "
            "14 days)",
            f"{cyber_name}:{lines['pack']}: series.pack.slides: file not found: ",
            # Files are read in name order: the second africa-fr is cyber-cj-2020's.
            f"{cyber_name}:{dup_line}: event[2].id: duplicate event id 'africa-fr' (also in "
            "caribbean-2020.toml)",
            "cyber-cj-2020.csv:4: ",
            "fr/reminder.txt",
    ):
        assert expected in said, f"{expected!r} not in:\n{text}"
    assert text.endswith("10 problems")


def test_a_link_missing_far_ahead_is_a_warning_and_an_error_when_close(setup: Path) -> None:
    cyber = setup / "schedules" / "cyber-cj-2020.toml"
    line = _edit(cyber, 'join_url = "https://zoom.us/j/98473625190"\n', "")
    far = _only(check(setup / "config.toml", datetime(2020, 6, 1, tzinfo=timezone.utc)))
    assert far.warning and far.line == line - 6
    assert str(far).endswith("event lac-es.join_url: warning: no join_url: the "
                             "acknowledgements and reminders promise the link")
    close = _only(check(setup / "config.toml", datetime(2020, 7, 20, tzinfo=timezone.utc)))
    assert not close.warning and "within 14 days" in close.message
    # Once the event is over, nothing is promised any more.
    assert check(setup / "config.toml", datetime(2020, 8, 1, tzinfo=timezone.utc)) == []


def test_outside_the_install_folder_one_cause_is_said_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    problem = _only(check(None))
    assert "run mailer check in the mailer's folder, or give --config PATH" in problem.message


def test_a_configuration_error_does_not_hide_the_schedules_problems(setup: Path) -> None:
    _edit(setup / "config.toml", "[smtp]", "[smtp]\nhots = 1")
    _edit(setup / "schedules" / "cyber-cj-2020.toml", 'kind = "webinar"', 'knd = "webinar"')
    said = format_problems(check(setup / "config.toml"))
    assert "smtp.hots: unknown key" in said and "event[0].knd: unknown key" in said


def test_mailer_config_naming_no_file_is_refused(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from mailer.cli import cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MAILER_CONFIG", str(tmp_path / "typo.toml"))
    for command in (["check"], ["plan"]):
        result = CliRunner().invoke(cli, command, obj={})
        assert result.exit_code == 2, result.output
        assert "typo.toml: file not found (named by MAILER_CONFIG)" in result.output
