"""Changing one setting of experiments.toml in place, keeping the user's comments and layout.

tomlkit edits the parsed document and writes back everything else byte for byte (tomli-w would
drop comments). The changed text is validated like any experiments file before it replaces the
old one, atomically: a bad value raises :class:`ConfigError` and leaves the file as it was.

A setting is addressed by a target (``defaults``, ``experiments.NAME`` or ``profiles.NAME``) and
a key (``section.key`` such as ``training.epochs``, or ``degradation``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.exceptions import TOMLKitError

from engine.files import atomic_write_text
from engine.spec.checks import ConfigError
from engine.spec.experiments import parse_experiments
from engine.spec.sections import SECTIONS, section_class


def targets(text: str) -> list[str]:
    """Where a setting can go in this file: defaults, each experiment, each profile."""
    doc = tomlkit.parse(text)
    names = [e["name"] for e in doc.get("experiments", []) if isinstance(e.get("name"), str)]
    return [
        "defaults",
        *(f"experiments.{n}" for n in names),
        *(f"profiles.{p}" for p in doc.get("profiles", {})),
    ]


def _split_key(path: Path, key: str) -> list[str]:
    parts = key.split(".")
    if parts == ["degradation"] or (len(parts) == 2 and parts[0] in SECTIONS and parts[1]):
        return parts
    raise ConfigError(
        f"{path.name}: {key or '(empty key)'}: expected degradation or SECTION.KEY "
        f"with SECTION one of {', '.join(SECTIONS)} (e.g. training.epochs)"
    )


def _table(doc, path: Path, target: str, create: bool):
    kind, _, name = target.partition(".")
    if target == "defaults":
        if "defaults" not in doc and create:
            doc["defaults"] = tomlkit.table(is_super_table=True)
        return doc.get("defaults")
    if kind == "experiments" and name:
        for exp in doc.get("experiments", []):
            if exp.get("name") == name:
                return exp
    elif kind == "profiles" and name and name in doc.get("profiles", {}):
        return doc["profiles"][name]
    raise ConfigError(
        f"{path.name}: {target}: expected defaults, experiments.NAME or profiles.NAME of this file"
    )


def get_setting(text: str, path: Path, target: str, key: str) -> Any:
    """The value written at ``target`` for ``key``, or None when the file does not set it there."""
    table = _table(tomlkit.parse(text), path, target, create=False)
    for part in _split_key(path, key):
        if table is None or part not in table:
            return None
        table = table[part]
    return table.unwrap() if hasattr(table, "unwrap") else table


def key_help(key: str) -> str:
    """What the schema (the component registry) says of ``section.key``: its default and
    meaning; for a section alone, or a key it lacks, the keys it has ("" for anything else)."""
    section, _, leaf = key.partition(".")
    if section not in SECTIONS:
        return ""
    cls = section_class(section)
    keys = cls.keys()
    if leaf not in keys:
        return f"keys of [{section}]: " + ", ".join(keys)
    doc = cls.docs().get(leaf, "")
    return f"default {keys[leaf][0]!r}" + (f" ({doc})" if doc else "")


def parse_value(path: Path, key: str, text: str) -> Any:
    """A TOML value typed by the user: 5, 2e-4, "cosine", [4, 8], true."""
    try:
        return tomlkit.parse(f"v = {text}")["v"].unwrap()  # plain, without its trivia
    except (TOMLKitError, ValueError):
        raise ConfigError(
            f'{path.name}: {key}: expected a TOML value (a number, "text", '
            f"[a, list] or true/false), got {text!r}"
        ) from None


def set_setting(
    path: Path, target: str, key: str, value_text: str, profile: str | None = None
) -> str:
    """Write ``key = value_text`` at ``target`` of the file at ``path`` and return the new text.
    The whole file must still be a valid experiments file (checked with ``profile`` selected
    too)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        doc = tomlkit.parse(text)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file (expected an experiments file)") from None
    except TOMLKitError as e:
        raise ConfigError(f"{path.name}: not valid TOML: {e}") from None
    parts = _split_key(path, key)
    value = parse_value(path, key, value_text)
    table = _table(doc, path, target, create=True)
    if len(parts) == 2:
        if parts[0] not in table:
            table[parts[0]] = tomlkit.table()
        table = table[parts[0]]
    table[parts[-1]] = value
    new_text = tomlkit.dumps(doc)
    parse_experiments(new_text, path)  # every experiment and profile stays valid...
    if profile:
        parse_experiments(new_text, path, profile)  # ...and so does the profile in use
    atomic_write_text(path, new_text)
    return new_text
