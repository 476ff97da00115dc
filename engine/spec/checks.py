"""How an experiments file is checked: :class:`ConfigError`, the one-line failure that names the
file, the key path and what was expected, and the checks that tables of any kind share.

Everything is validated before anything runs; the first problem raises :class:`ConfigError`.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any, NoReturn

from engine.errors import UserError
from engine.spec.components import DEGRADATIONS
from engine.spec.names import name_problem, safe_name
from engine.spec.sections import Section, section_class
from engine.text import escape_breaks


class ConfigError(UserError):
    """A problem in an experiments file; ``str()`` is the one-line message for the user."""


class Checker:
    """The checks of one experiments file: each failure names the file."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, key: str, expected: str, got: Any = None, show_got: bool = True) -> NoReturn:
        """Raise the :class:`ConfigError` "FILE: KEY: expected EXPECTED, got GOT"."""
        msg = f"{self.path.name}: {key}: expected {expected}"
        if show_got:
            msg += f", got {_show(got)}"
        raise ConfigError(escape_breaks(msg))


def _show(v: Any) -> str:
    """A value as the file writes it (``true``, not Python's ``True``), cut at 40 characters."""
    text = toml_text(v)
    return text if len(text) <= 40 else text[:37] + "..."


def toml_text(v: Any) -> str:
    """``v`` as a TOML file writes it (``true``, ``[1, 2]``, ``'a'``; a table in words)."""
    if isinstance(v, dict):
        return "a table"
    if v is None:  # a key a file does not have
        return "not set"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return "[" + ", ".join(toml_text(x) for x in v) + "]"
    if isinstance(v, float) and not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if hasattr(v, "isoformat"):  # TOML dates and times
        return str(v.isoformat())
    return repr(v)


def check_table(ck: Checker, where: str, value: Any) -> dict[str, Any]:
    """``value`` when it is a table."""
    if not isinstance(value, dict):
        ck.fail(where, "a table", value)
    return value


def check_keys(ck: Checker, where: str, cls: type[Section], table: dict[str, Any]) -> None:
    """Every key of ``table`` is one of ``cls``'s and passes its check."""
    keys = cls.keys()
    for name, value in table.items():
        if name not in keys:
            ck.fail(f"{where}.{name}", "one of the keys " + ", ".join(keys), show_got=False)
        problem = keys[name][1](value)
        if problem:
            ck.fail(f"{where}.{name}", problem, value)


def check_section(ck: Checker, where: str, section: str, table: Any) -> dict[str, Any]:
    """``table`` when it is a table of ``section`` whose every key passes its check."""
    table = check_table(ck, where, table)
    check_keys(ck, where, section_class(section), table)
    return table


def check_degradation(ck: Checker, where: str, value: Any) -> str:
    """``value`` when it names a registered degradation."""
    if value not in DEGRADATIONS:
        ck.fail(where, "one of " + ", ".join(map(repr, DEGRADATIONS.names())), value)
    return str(value)


def check_name(ck: Checker, where: str, table: dict[str, Any], expected: str = "") -> str:
    """``table["name"]`` when it can name a folder; ``expected`` is what a missing name says
    (by default what a bad one says)."""
    name = table.get("name")
    if "name" not in table and expected:
        ck.fail(where, expected, show_got=False)
    if not safe_name(name):
        ck.fail(where, name_problem(name), name, show_got="name" in table)
    return str(name)


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``base`` with the keys of ``over`` (copied) set."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = copy.deepcopy(v)
    return out
