"""Small builders for tests: a literal schedule written to a folder, and its catalog."""

from __future__ import annotations

from pathlib import Path

from mailer import store as store_module
from mailer.schedule import Catalog, load_catalog
from mailer.store import Store

SERIES = """
[groups]
west_africa = ["SN", "CI", "ML", "GH", "NG"]

[series]
id = "test-series"
title = { en = "Cybercrime webinars", fr = "Webinaires cybercriminalité", es = "Webinarios" }
organisers = ["European Union", "Council of Europe"]
max_per_country = {limit}
reminders = ["7d", "1d", "1h"]
pack_at = "3d"
certificate = "on_request"
recorded = true
not_invited = "{not_invited}"

[[event]]
id = "africa-fr"
title = {{ fr = "Webinaire Afrique", en = "Africa webinar" }}
start = 2020-07-09T08:00:00Z
end = 2020-07-09T09:45:00Z
language = "fr"
invited = ["@west_africa"]
join_url = "https://zoom.us/j/111"

[[event]]
id = "lac-es"
title = {{ es = "Webinario América Latina" }}
start = 2020-07-22T15:00:00Z
end = 2020-07-22T16:45:00Z
language = "es"
invited = ["MX", "CO", "DO"]
join_url = "https://zoom.us/j/222"
"""


def write_schedule(folder: Path, *, limit: int = 4, not_invited: str = "review",
                   text: str | None = None) -> Path:
    """Write the test series (or ``text``) as ``folder/schedules/test.toml``; return the folder."""
    schedules = folder / "schedules"
    schedules.mkdir(parents=True, exist_ok=True)
    body = text if text is not None else SERIES.replace("{limit}", str(limit)).replace(
        "{not_invited}", not_invited).replace("{{", "{").replace("}}", "}")
    (schedules / "test.toml").write_text(body, encoding="utf-8")
    return schedules


def store_at(url: str, revision: str) -> Store:
    """A store at an older Alembic revision, to test what an upgrade does to its rows."""
    from alembic import command
    from alembic.config import Config

    st = Store(url)
    config = Config()
    config.set_main_option("script_location", str(Path(store_module.__file__).parent
                                                  / "migrations"))
    with st.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    return st


def make_catalog(folder: Path, **kwargs: object) -> Catalog:
    """The catalog of the test series."""
    return load_catalog(write_schedule(folder, **kwargs))  # type: ignore[arg-type]
