"""The mkdocs hook that writes the docs' tables that describe code, from the code, at build time.

A page asks for a table with a marker on a line of its own, e.g. ``<!-- keys: experiments -->``;
:func:`on_page_markdown` replaces it with the table (see :data:`TABLES` for the names). So the
experiments file's keys come from the schema and the component registry, the UI's keys from the
Textual bindings, and the layout from the modules' docstrings: none of them can go stale.
``tests/test_docs.py`` builds the docs with ``mkdocs build --strict``; ``tests/test_registry.py``
and ``tests/test_docs.py`` check the generated tables against the code.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual.screen import Screen

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's engine and tui, not an installed diffui

# Every name of the project the tables are made from (the one place to fix when code moves).
from engine.spec.components import DEGRADATIONS, NETWORKS, SAMPLERS, SCHEDULES  # noqa: E402
from engine.spec.experiments import parse_experiments  # noqa: E402
from engine.spec.sections import SECTIONS, HostSpec, StudyKeys, section_class  # noqa: E402
from tui.app import APP_ACTIONS  # noqa: E402
from tui.runs_screen import RUNS_ACTIONS  # noqa: E402

MARKER = re.compile(r"^<!-- ((?:keys|layout): [\w-]+) -->$", re.M)
LAYOUT_PACKAGES = ("engine", "tui", "cli")  # the code folders the layout table lists
_KINDED: dict[str, Any] = {
    "schedule": SCHEDULES,
    "network": NETWORKS,
}  # sections whose keys come from a registry


def on_page_markdown(markdown: str, page: Any = None, **_: Any) -> str:
    """mkdocs' hook: every marker replaced by its table; an unknown marker fails the build."""

    def table(match: re.Match) -> str:
        name = match.group(1)
        if name not in TABLES:
            raise ValueError(
                f"{page.file.src_path if page else 'page'}: unknown table "
                f"<!-- {name} -->; known: {', '.join(TABLES)}"
            )
        return TABLES[name]()

    return MARKER.sub(table, markdown)


# --- cells -----------------------------------------------------------------------------------


def toml_value(v: Any) -> str:
    """``v`` as TOML writes it (the defaults are strings, numbers, booleans and lists)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return repr(v)


def cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")


def accepts(check: Callable[[Any], str | None]) -> str:
    """What a key's checker accepts: its "expected ..." text for a value no checker takes."""
    try:
        return check(object()) or ""
    except Exception:  # a checker that cannot say: the column stays empty
        return ""


def named(entries: Any, extra: Callable[[Any], str] = lambda e: "") -> str:
    """The entries of a registry as `` `name` (doc) ``, comma-separated."""
    out = []
    for e in entries:
        notes = "; ".join(n for n in (e.doc, extra(e)) if n)
        out.append(f"`{e.name}`" + (f" ({notes})" if notes else ""))
    return ", ".join(out)


def key_rows(section: str, cls: Any, first: bool = True) -> list[str]:
    """One row per key of the section ``cls``: section (first row only), key, default, the
    values it accepts, meaning. Keys of a registered kind say which kinds read them."""
    rows = []
    docs = cls.docs()
    for name, (default, check) in cls.keys().items():
        meaning = docs.get(name, "")
        if section in _KINDED and name == "kind":
            meaning += ": " + named(_KINDED[section])
        elif section in _KINDED and name != "T":
            kinds = [e.name for e in _KINDED[section] if name in param_names(e)]
            meaning += " (read by " + ", ".join(f"`{k}`" for k in kinds) + ")"
        elif name in ("sampler", "final_sampler"):
            meaning += ": " + "; ".join(
                ", ".join(f"`{s}`" for s in d.samplers) + f" ({d.name})" for d in DEGRADATIONS
            )
        label = f"`{section}`" if first else ""
        rows.append(
            f"| {label} | `{name}` | `{toml_value(default)}` | {cell(accepts(check))} "
            f"| {cell(meaning)} |"
        )
        first = False
    return rows


def param_names(entry: Any) -> list[str]:
    """The keys a registered schedule or network reads."""
    return [f.name for f in dataclasses.fields(entry.params)]


KEY_HEADER = ["| section | key | default | accepts | meaning |", "|---|---|---|---|---|"]


# --- the tables ------------------------------------------------------------------------------


def experiments_keys() -> str:
    """Every key of a run's settings: ``degradation`` at the top, then each section's keys."""
    # the default is what a run that does not set it gets
    default = parse_experiments('[[experiments]]\nname = "a"\n', Path("x")).runs[0].degradation
    rows = [
        *KEY_HEADER,
        f"| (top) | `degradation` | `{toml_value(default)}` | one of "
        + ", ".join(repr(n) for n in DEGRADATIONS.names())
        + " | "
        + cell(named(DEGRADATIONS, lambda d: "samplers " + ", ".join(d.samplers)))
        + " |",
    ]
    for section in SECTIONS:
        rows += key_rows(section, section_class(section))
    return "\n".join(rows)


def host_keys() -> str:
    """The keys of a ``[hosts.NAME]`` table."""
    return "\n".join([*KEY_HEADER, *key_rows("hosts.NAME", HostSpec)])


def study_keys() -> str:
    """The keys of a ``[[studies]]`` table besides ``name``, ``run``, ``kind`` and ``values``."""
    return "\n".join([*KEY_HEADER, *key_rows("studies", StudyKeys)])


def components() -> str:
    """Every registered component, with the keys it reads."""
    rows = ["| component | name | keys | about |", "|---|---|---|---|"]
    for what, reg in (("schedule", SCHEDULES), ("network", NETWORKS)):
        for e in reg:
            keys = ", ".join(f"`{f}`" for f in param_names(e))
            rows.append(f"| {what} | `{e.name}` | {keys} | {cell(e.doc)} |")
    for d in DEGRADATIONS:
        rows.append(
            f"| degradation | `{d.name}` | | {cell(d.doc)}; its samplers: "
            + ", ".join(f"`{s}`" for s in d.samplers)
            + " |"
        )
    for s in SAMPLERS:
        steps = "`evaluation.steps`" if s.uses_steps else ""
        rows.append(f"| sampler | `{s.name}` | {steps} | {cell(s.doc)} |")
    return "\n".join(rows)


KEY_NAMES = {"left_square_bracket": "[", "right_square_bracket": "]"}


def key_text(binding: Any) -> str:
    """A binding's keys as a user types them: `` `[`, `left` ``."""
    keys = [KEY_NAMES.get(k.strip(), k.strip()) for k in binding.key.split(",")]
    if binding.key_display and binding.key_display not in keys:
        keys.insert(0, binding.key_display)
    keys.sort(key=lambda k: k != binding.key_display)  # the shown key first
    return ", ".join(f"`{k}`" for k in keys)


def ui_keys() -> str:
    """The app's actions (every screen) and the runs view's, with their palette titles."""
    rows = [
        "| key | where | action (its title in the command palette) | what it does |",
        "|---|---|---|---|",
    ]
    for where, actions in (("every screen", APP_ACTIONS), ("runs view", RUNS_ACTIONS)):
        for key, _, _, title, help in actions:
            rows.append(f"| `{key}` | {where} | {cell(title)} | {cell(help)} |")
    return "\n".join(rows)


def screen_keys() -> str:
    """The keys of every other screen and dialog, from their bindings, a table each."""

    def subclasses(cls: Any) -> list[Any]:
        return [c for s in cls.__subclasses__() for c in (s, *subclasses(s))]

    screens = [
        c
        for c in dict.fromkeys(subclasses(Screen))
        if c.__module__.startswith("tui.") and "BINDINGS" in vars(c) and c.__name__ != "RunsScreen"
    ]
    screens.sort(key=lambda c: (c.__module__, inspect.getsourcelines(c)[1]))
    out = []
    for cls in screens:
        about = first_sentence(cls.__doc__ or "")
        out += [
            f"**{cls.__name__}**: {about}",
            "",
            "| key | action (as the key bar shows it) |",
            "|---|---|",
        ]
        for b in cls.BINDINGS:
            out.append(f"| {key_text(b)} | {cell(b.description)} |")
        out.append("")
    return "\n".join(out)


def first_sentence(doc: str) -> str:
    """The first sentence of a docstring's first paragraph, on one line (two when the first is
    a heading of a word or two)."""
    para = " ".join(doc.strip().split("\n\n")[0].split())
    para = re.sub(r":\w+:`", "`", para).replace("``", "`")  # reST roles and literals as Markdown
    sentences = re.findall(r".+?\.(?=\s+[A-Z(`]|$)", para) or [para]
    short = len(sentences[0].split()) < 4  # a heading-like "Samplers.": the next one says more
    return " ".join(s.strip() for s in sentences[: 2 if short else 1])


def layout() -> str:
    """Every module of engine/, tui/ and cli/ with the first sentence of its docstring (read with
    ast: nothing is imported)."""
    rows = ["| module | what it is for |", "|---|---|"]
    for package in LAYOUT_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
            if path.name == "__init__.py" and not doc:
                continue
            rel = path.relative_to(ROOT).as_posix()
            rows.append(f"| `{rel}` | {cell(first_sentence(doc or ''))} |")
    return "\n".join(rows)


README_BLOCK = re.compile(
    r"(<!-- begin keys: ui \(generated\):[^\n]*-->\n)(.*?)(<!-- end keys: ui -->)", re.S
)


def readme_with_keys(readme: str) -> str:
    """The README with its keys block (between its begin and end markers) made afresh from the
    bindings: ``python docs/hooks.py`` writes it; tests/test_docs.py checks it is current."""
    if not README_BLOCK.search(readme):
        raise ValueError("README.md: no <!-- begin keys: ui (generated): ... --> block")
    return README_BLOCK.sub(lambda m: m.group(1) + ui_keys() + "\n" + m.group(3), readme)


TABLES: dict[str, Callable[[], str]] = {
    "keys: experiments": experiments_keys,
    "keys: hosts": host_keys,
    "keys: studies": study_keys,
    "keys: components": components,
    "keys: ui": ui_keys,
    "keys: screens": screen_keys,
    "layout: modules": layout,
}


if __name__ == "__main__":  # python docs/hooks.py: the README's keys table made afresh
    readme = ROOT / "README.md"
    readme.write_text(readme_with_keys(readme.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"wrote the keys table of {readme}")
