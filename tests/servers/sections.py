"""Config sections the test servers write for the mailer processes they serve."""

from __future__ import annotations

import json


def toml_section(name: str, keys: dict[str, str | int | bool]) -> str:
    """A TOML section: strings written as JSON strings (valid TOML basic strings)."""
    lines = [f"[{name}]"]
    for key, value in keys.items():
        written = ("true" if value else "false") if isinstance(value, bool) else (
            str(value) if isinstance(value, int) else json.dumps(value))
        lines.append(f"{key} = {written}")
    return "\n".join(lines) + "\n"
