"""Go-style duration strings (``300ms``, ``24s``, ``1m30s``), as Meridio's resources and env use them.

Mirrors Go's ``time.ParseDuration``: a sequence of decimal numbers, each with a unit
(``ns``, ``us``, ``µs``, ``ms``, ``s``, ``m``, ``h``), optionally signed. ``"0"`` alone is valid.
"""
from __future__ import annotations

import re

from meridio.common.bounds import quote

__all__ = ["DurationError", "parse_duration", "format_duration"]

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


class DurationError(ValueError):
    """The string is not a valid duration."""


def parse_duration(text: str) -> float:
    """Return the duration in seconds; raise :class:`DurationError` if ``text`` is not a Go duration."""
    if not isinstance(text, str):
        raise DurationError(f"time: invalid duration {quote(text)}")
    s = text.strip()
    sign = 1.0
    if s[:1] in "+-" and s:
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if s == "0":
        return 0.0
    if not s:
        raise DurationError(f"time: invalid duration {quote(text)}")
    total, pos = 0.0, 0
    while pos < len(s):
        m = _PART.match(s, pos)
        if not m:
            raise DurationError(f"time: invalid duration {quote(text)}")
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    return sign * total


def format_duration(seconds: float) -> str:
    """A compact Go-style rendering: ``1.5s``, ``300ms``, ``2m0s`` style is not needed here."""
    if seconds and seconds < 1:
        return f"{round(seconds * 1000)}ms"
    return f"{seconds:g}s"
