"""No command creates a SQLite store file by itself: a typo in store.url made a new, empty
store, and the next `mailer once` sent every due invitation again. `mailer once` and `mailer
run` refuse a file that does not exist (exit 2, one line naming it) unless started with
--new-store, which creates it and says so; the other commands never create one."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from mailer.cli import cli
from tests.servers.smtp import SmtpSink
from tests.test_cli import project  # noqa: F401 - the shipped project, as a fixture

NOW = "2020-06-03T09:00Z"           # the call for registration is due


def configure(folder: Path, sink: SmtpSink, store: str) -> Path:
    q = json.dumps
    config = folder / "config.toml"
    config.write_text(
        '[organiser]\naddress = "webinars@secretariat.example"\n'
        f'[store]\nurl = {q(store)}\n'
        + sink.toml(messages_per_minute=6000), encoding="utf-8")
    return config


def mailer(config: Path, *args: str):
    return CliRunner().invoke(cli, ["--config", str(config), *args], obj={},
                              catch_exceptions=False)


def test_a_typo_in_the_store_url_sends_nothing_again(project: Path,  # noqa: F811
                                                     smtp_sink: SmtpSink) -> None:
    """The first start is explicit and says where the store was made; a later typo in
    store.url is refused with one line naming the path, and no invitation goes twice."""
    config = configure(project, smtp_sink, "sqlite:///var/mailer.db")
    database = (project / "var" / "mailer.db").resolve()
    refused = mailer(config, "once", "--no-read", "--now", NOW)
    assert refused.exit_code == 2
    assert refused.output.strip().splitlines() == [
        f"error: store.url names {database}, which does not exist: check store.url (and "
        "MAILER_STORE__URL); to start a new, empty store there, run `mailer once "
        "--new-store` (or `mailer run --new-store`)"]
    assert not database.exists() and not database.parent.exists()
    assert smtp_sink.messages == []

    first = mailer(config, "once", "--no-read", "--new-store", "--now", NOW)
    assert first.exit_code == 0, first.output
    assert (f"created a new, empty store at {database}: if you expected an existing one, "
            "check store.url") in first.output
    assert first.output.count("created a new, empty store") == 1   # said once, not logged too
    invitations = len(smtp_sink.messages)
    assert database.exists() and invitations > 0

    again = mailer(config, "once", "--no-read", "--new-store", "--now", NOW)
    assert again.exit_code == 0 and "created" not in again.output
    typo = configure(project, smtp_sink, "sqlite:///var/mailr.db")
    for command in (["once", "--no-read", "--now", NOW], ["run"]):
        result = mailer(typo, *command)
        assert result.exit_code == 2
        assert f"store.url names {database.parent / 'mailr.db'}, which does not exist" \
            in result.output
    assert not (project / "var" / "mailr.db").exists()
    assert len(smtp_sink.messages) == invitations


def test_other_commands_never_create_a_store(project: Path,  # noqa: F811
                                             smtp_sink: SmtpSink) -> None:
    """Staff commands on a store that does not exist say so (exit 2) and create nothing, so
    a later `mailer once` cannot take their empty file for the real store; `mailer plan`
    plans as for a new store, in memory."""
    config = configure(project, smtp_sink, "sqlite:///var/mailer.db")
    for command in (["registrations"], ["review"], ["messages"], ["status"],
                    ["person", "a@b.org"], ["purge"]):
        result = mailer(config, *command)
        assert result.exit_code == 2, (command, result.output)
        assert "which does not exist" in result.output and "--new-store" in result.output
    planned = mailer(config, "plan", "--now", NOW)
    assert planned.exit_code == 0, planned.output
    assert "invitation" in planned.output
    assert "note: no store at" in planned.output and "planned as for a new, empty one" \
        in planned.output
    assert not (project / "var").exists()
