"""Durations as staff write them in schedules: "7d", "1h", "30m", "2w", "1d12h"."""

from __future__ import annotations

import re
from datetime import timedelta

# Written by hand: pydantic only reads ISO 8601 ("P7D"), which staff do not write, and the
# libraries that read "7d" (pytimeparse and friends) accept far more than we want to allow.
_PART = re.compile(r"(\d+)\s*([wdhm])")
_WHOLE = re.compile(r"^\s*(?:\d+\s*[wdhm]\s*)+$")
_UNITS = {"w": timedelta(weeks=1), "d": timedelta(days=1), "h": timedelta(hours=1),
          "m": timedelta(minutes=1)}


def parse_duration(text: str) -> timedelta:
    """Read ``"7d"`` or ``"1d12h"`` as a timedelta; raise ValueError on anything else."""
    if not isinstance(text, str) or not _WHOLE.match(text.lower()):
        raise ValueError(f"bad duration {text!r}: write a number and a unit, "
                         "w (weeks), d (days), h (hours) or m (minutes), like \"7d\" or \"1h\"")
    return sum((int(n) * _UNITS[u] for n, u in _PART.findall(text.lower())), timedelta())


def format_duration(delta: timedelta) -> str:
    """Write a timedelta back the way staff write it (``timedelta(days=7)`` → ``"7d"``)."""
    minutes = int(delta.total_seconds() // 60)
    out = []
    for unit, size in (("d", 1440), ("h", 60), ("m", 1)):
        n, minutes = divmod(minutes, size)
        if n:
            out.append(f"{n}{unit}")
    return "".join(out) or "0m"
