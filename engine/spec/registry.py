"""Registries of named components, and the vocabulary their parameters are declared in.

A :class:`Registry` maps names to entries (a schedule, a network, a degradation, a sampler;
see :mod:`engine.spec.components` for the built-in ones). An entry's parameters are a frozen
dataclass whose fields are config keys made with :func:`key`: a default, a checker (what the
value must be) and a line for the README. :mod:`engine.spec.experiments` validates experiments
files from these declarations, so adding a component is one new entry and no ``if kind == ...``
elsewhere.

Nothing here imports torch: the UI validates experiments files without loading it. Entries whose
code needs torch reference it with :func:`lazy`.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import math
import re
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

E = TypeVar("E")

# A checker returns None when a value is fine, otherwise the text of "what was expected".
Check = Callable[[Any], "str | None"]


class UnknownName(ValueError):
    """A name that is not registered; ``str()`` is one line listing the known names."""


class Registry(Generic[E]):
    """Entries by name, in the order they were registered. Each entry has a ``name``."""

    def __init__(self, what: str):
        self.what = what  # e.g. "schedule kind", for messages
        self._entries: dict[str, E] = {}
        self.version = 0  # bumped on every change (sections built from the entries are cached)

    def register(self, entry: E) -> E:
        name = entry.name  # type: ignore[attr-defined]
        if name in self._entries:
            raise ValueError(f"{self.what} {name!r} is already registered")
        self._entries[name] = entry
        self.version += 1
        return entry

    def unregister(self, name: str) -> None:
        del self._entries[name]
        self.version += 1

    def get(self, name: str) -> E:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise UnknownName(
                f"unknown {self.what} {name!r}; expected one of {', '.join(self.names())}"
            ) from None

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._entries

    def __iter__(self) -> Iterator[E]:
        return iter(list(self._entries.values()))


def lazy(target: str) -> Callable:
    """The function ``"module:name"``, imported on its first call (keeps torch out of the
    modules that only validate)."""
    module, _, name = target.partition(":")
    resolved: list[Callable] = []

    def call(*args, **kwargs):
        if not resolved:
            resolved.append(getattr(importlib.import_module(module), name))
        return resolved[0](*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"{target}, imported on first use"
    return call


# --- config keys ---------------------------------------------------------------------------


def key(default: Any, check: Check, doc: str = "") -> Any:
    """A dataclass field that is a config key: its default, its checker and what it means."""
    meta = {"check": check, "doc": doc}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def keys_of(cls: type) -> dict[str, tuple[Any, Check]]:
    """``{key: (default, checker)}`` of a dataclass declared with :func:`key`, in field order."""
    out = {}
    for f in dataclasses.fields(cls):
        default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
        out[f.name] = (default, f.metadata["check"])
    return out


def params_of(cls: type, values: Any) -> Any:
    """An instance of the parameter dataclass ``cls`` from the attributes (or the keys of a
    dict) of ``values`` that it declares; the others are ignored."""
    get = values.get if isinstance(values, dict) else lambda k, d: getattr(values, k, d)
    given = {f.name: get(f.name, dataclasses.MISSING) for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in given.items() if v is not dataclasses.MISSING})


# --- checkers ------------------------------------------------------------------------------


def _range_text(what, lo, hi, lo_open=False, hi_open=False):
    if lo is not None and hi is not None:
        return f"{what} in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{what} {'>' if lo_open else '>='} {lo}"
    if hi is not None:
        return f"{what} {'<' if hi_open else '<='} {hi}"
    return what


def integer(lo=None, hi=None) -> Check:
    def check(v):
        if isinstance(v, bool) or not isinstance(v, int):
            return _range_text("an integer", lo, hi)
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            return _range_text("an integer", lo, hi)
        return None

    return check


def number(lo=None, hi=None, lo_open=False, hi_open=False) -> Check:
    def check(v):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return _range_text("a number", lo, hi, lo_open, hi_open)
        if lo is not None and (v < lo or (lo_open and v == lo)):
            return _range_text("a number", lo, hi, lo_open, hi_open)
        if hi is not None and (v > hi or (hi_open and v == hi)):
            return _range_text("a number", lo, hi, lo_open, hi_open)
        return None

    return check


def choice(options: tuple | Callable[[], tuple]) -> Check:
    """One of ``options`` (or of what ``options()`` returns when it is called, e.g. the names
    of a registry at that moment)."""

    def check(v):
        opts = options() if callable(options) else options
        if v not in opts:
            return "one of " + ", ".join(repr(o) for o in opts)
        return None

    return check


def string() -> Check:
    return lambda v: None if isinstance(v, str) else "a string"


def boolean() -> Check:
    return lambda v: None if isinstance(v, bool) else "true or false"


def int_list(lo=None, min_len=0) -> Check:
    item = integer(lo)

    def check(v):
        what = f"a list of integers{'' if lo is None else f' >= {lo}'}"
        if not isinstance(v, list) or len(v) < min_len or any(item(x) for x in v):
            return what + (f" (at least {min_len})" if min_len else "")
        return None

    return check


SBATCH_OPTION = re.compile(r"--([A-Za-z][\w-]*)(?:=(.*))?", re.S)  # --name or --name=value


def sbatch_options(v) -> str | None:
    if isinstance(v, list) and all(isinstance(x, str) and SBATCH_OPTION.fullmatch(x) for x in v):
        return None
    return 'a list of long sbatch options, "--name" or "--name=value" (e.g. "--constraint=a100")'


def slurm_time(v) -> str | None:
    """A Slurm time limit: ``MM``, ``HH:MM:SS``, ``D-HH`` or ``D-HH:MM[:SS]``."""
    if isinstance(v, str) and re.fullmatch(r"\d+|\d+:\d{2}(:\d{2})?|\d+-\d+(:\d{2}(:\d{2})?)?", v):
        return None
    return 'a Slurm time limit like "04:00:00", "90" (minutes) or "1-12:00:00"'


def three_widths(v) -> str | None:
    if int_list(1)(v) or len(v) != 3:
        return "three integers >= 1 (e.g. [32, 64, 128])"
    return None


def device(v) -> str | None:
    if isinstance(v, str) and (v in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", v)):
        return None
    return "'auto', 'cpu', 'cuda' or 'cuda:N'"
