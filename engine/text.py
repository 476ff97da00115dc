"""Small text helpers every layer shares: one line for a message, numbers and durations as the
tables show them."""

from __future__ import annotations

import math
from typing import Any


def json_kind(v: Any) -> str:
    """How JSON calls the kind of ``v``: "an object", "a list", "a string"..."""
    if isinstance(v, bool):
        return "true or false"
    for types, name in (
        (dict, "an object"),
        (list, "a list"),
        (str, "a string"),
        ((int, float), "a number"),
        (type(None), "null"),
    ):
        if isinstance(v, types):
            return name
    return type(v).__name__


def one_line(e: BaseException | str) -> str:
    """An exception's message (or a text) on one line."""
    return " ".join(str(e).split())


def fmt(x: float | None, spec: str = ".4f") -> str:
    return "-" if x is None else format(x, spec)


def format_seconds(s: float) -> str:
    """1:02:03 or 2:03 ("-" for no number of seconds: NaN, infinite)."""
    if not math.isfinite(s):
        return "-"
    m, sec = divmod(int(round(s)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def escape_breaks(msg: str) -> str:
    """``msg`` on one line: keys and names come from the user (a quoted TOML key or a command
    line argument may hold a line break)."""
    return msg.replace("\r", "\\r").replace("\n", "\\n")
