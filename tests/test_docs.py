"""The docs: ``mkdocs build --strict`` passes (no broken link or anchor, every page in the nav,
every generated table made), the README stays short and its links lead somewhere, every path
and module the docs name exists, and the generated tables cover what they describe."""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from engine.spec.sections import HostSpec, StudyKeys

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
PAGES = sorted(DOCS.glob("*.md"))


def load_hooks():
    """docs/hooks.py, the mkdocs hook that writes the generated tables."""
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


HOOKS = load_hooks()


def rendered(page: str) -> str:
    """A docs page as mkdocs sees it after the hook: its markers replaced by their tables."""
    return HOOKS.on_page_markdown((DOCS / page).read_text(encoding="utf-8"))


def table_rows(markdown: str, header: str) -> list[list[str]]:
    """The cells of each row of the table whose header line is ``header``."""
    lines = markdown.splitlines()
    start = lines.index(header) + 2
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))])
    return rows


# --- the site --------------------------------------------------------------------------------


def test_mkdocs_build_strict_passes_without_a_warning(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # mkdocs-material's notice about its future
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert not re.search(r"^(WARNING|ERROR)\b", output, re.M), output
    experiments = (tmp_path / "site" / "experiments" / "index.html").read_text()
    assert "<!-- keys:" not in experiments and "<code>time_embedding</code>" in experiments
    ui = (tmp_path / "site" / "ui" / "index.html").read_text()
    assert "Queue experiments" in ui and "zoom grid" in ui


def test_every_page_is_in_the_nav():
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    assert [p.name for p in PAGES if f" {p.name}" not in nav] == []


def test_an_unknown_marker_fails_the_build():
    with pytest.raises(ValueError, match="unknown table"):
        HOOKS.on_page_markdown("<!-- keys: nonsense -->\n")


# --- the README ------------------------------------------------------------------------------


def test_the_readme_is_at_most_200_lines():
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 200


def headings_slugs(page: Path) -> set[str]:
    """The anchors of a Markdown page's headings, as mkdocs' toc makes them."""
    from markdown.extensions.toc import slugify

    text = page.read_text(encoding="utf-8")
    return {slugify(re.sub(r"[`*]", "", h), "-") for h in re.findall(r"^#+ (.+)$", text, re.M)}


def test_every_relative_link_of_the_readme_leads_to_a_file():
    text = README.read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)\s]+)\)", text) + re.findall(r'src="([^"]+)"', text)
    relative = [link for link in links if not re.match(r"[a-z]+:", link)]
    assert relative, "the README links to the docs"
    for link in relative:
        path, _, anchor = link.partition("#")
        target = ROOT / path
        assert path and target.is_file(), f"README.md: {link} leads nowhere"
        if anchor:
            assert anchor in headings_slugs(target), f"README.md: {link}: no such heading"


def test_the_readmes_keys_table_is_the_one_generated_from_the_bindings():
    readme = README.read_text(encoding="utf-8")
    assert HOOKS.readme_with_keys(readme) == readme, "run: python docs/hooks.py"
    assert "| `?,f1` | every screen | Keys of this screen |" in readme


def test_the_readme_links_every_docs_page():
    text = README.read_text(encoding="utf-8")
    assert [p.name for p in PAGES if f"(docs/{p.name}" not in text] == []


def test_the_quick_start_is_what_ci_runs():
    """The README's test command is the one .ci/run runs after .ci/install."""
    readme = README.read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert "bash .ci/install" in ci and ci[-1] == "python3 -m pytest -q"
    assert "bash .ci/install && diffui --batch --profile quick" in readme
    assert "\npython3 -m pytest -q " in readme
    assert "quick" in tomllib.loads((ROOT / "experiments.toml").read_text())["profiles"]


# --- what the docs name exists ---------------------------------------------------------------

CODE_ROOTS = ("engine", "tui", "cli", "tests", "benchmarks", "docs", ".ci")
# a path of the tree: a code root first, not inside another path (RUNS/docs/...)
PATH = re.compile(r"(?<![\w./~-])((?:" + "|".join(map(re.escape, CODE_ROOTS)) + r")/[\w./-]*)")


def top_level_names(path: Path) -> set[str]:
    """Functions, classes and assignments at the top of a module (read with ast, no import)."""
    names = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names


def module_problem(dotted: str) -> str | None:
    """None when ``dotted`` is a module of this tree, or a top-level name of one."""
    parts = dotted.split(".")
    for n in range(len(parts), 0, -1):
        base = ROOT.joinpath(*parts[:n])
        rest = parts[n:]
        if base.with_suffix(".py").is_file():
            if not rest or (len(rest) == 1 and rest[0] in top_level_names(base.with_suffix(".py"))):
                return None
            return f"{'.'.join(parts[:n])} has no {'.'.join(rest)}"
        if (base / "__init__.py").is_file() and not rest:
            return None
    return "no such module"


@pytest.mark.parametrize("page", [README, *PAGES], ids=lambda p: p.name)
def test_every_path_and_module_named_exists(page):
    text = page.read_text(encoding="utf-8")
    spans = re.findall(r"`([^`\n]+)`", text) + re.findall(r"^    (.+)$", text, re.M)
    spans += re.findall(r"```[a-z]*\n(.*?)```", text, re.S)
    problems = []
    for span in spans:
        for path in PATH.findall(span):
            if not (ROOT / path.rstrip(".")).exists():
                problems.append(f"{path}: no such file or folder")
        for dotted in re.findall(r"(?<![\w./])((?:engine|tui|cli)(?:\.\w+)+)", span):
            problem = module_problem(dotted)
            if problem:
                problems.append(f"{dotted}: {problem}")
    assert problems == [], page.name


# --- the generated tables --------------------------------------------------------------------

KEY_HEADER = "| section | key | default | accepts | meaning |"


def documented_keys(page: str) -> dict[str, dict[str, object]]:
    """``{section: {key: default}}`` of the generated key tables of a page."""
    out: dict[str, dict[str, object]] = {}
    section = ""
    for cells in table_rows(rendered(page), KEY_HEADER):
        section = cells[0].strip("`") or section
        (key,) = re.findall(r"`([^`]*)`", cells[1])
        (default,) = re.findall(r"`([^`]*)`", cells[2])
        out.setdefault(section, {})[key] = tomllib.loads(f"v = {default}")["v"]
    return out


@pytest.mark.parametrize(
    "page, section, cls",
    [
        ("ssh-hosts.md", "hosts.NAME", HostSpec),
        ("studies.md", "studies", StudyKeys),
    ],
)
def test_the_host_and_study_tables_have_every_key_with_its_default(page, section, cls):
    documented = documented_keys(page)
    assert documented == {section: {k: v[0] for k, v in cls.keys().items()}}


def test_the_ui_tables_have_every_binding():
    from textual.screen import Screen

    from tui.app import APP_ACTIONS, DiffuiApp
    from tui.runs_screen import RUNS_ACTIONS, RunsScreen

    page = rendered("ui.md")
    rows = table_rows(
        page, "| key | where | action (its title in the command palette) | what it does |"
    )
    assert [(r[0], r[2]) for r in rows] == [
        (f"`{k}`", t) for k, _, _, t, _ in APP_ACTIONS + RUNS_ACTIONS
    ]
    assert {b.key for b in DiffuiApp.BINDINGS} | {b.key for b in RunsScreen.BINDINGS} == {
        k for k, *_ in APP_ACTIONS + RUNS_ACTIONS
    }

    def subclasses(cls):
        return [c for s in cls.__subclasses__() for c in (s, *subclasses(s))]

    for screen in subclasses(Screen):
        if (
            screen.__module__.startswith("tui.")
            and "BINDINGS" in vars(screen)
            and screen is not RunsScreen
        ):
            assert f"**{screen.__name__}**" in page, screen
            for b in screen.BINDINGS:
                assert f"| {b.description} |" in page, (screen, b)


def test_the_layout_lists_every_module():
    page = rendered("architecture.md")
    for package in ("engine", "tui", "cli"):
        for path in (ROOT / package).rglob("*.py"):
            if path.name != "__init__.py":
                assert f"`{path.relative_to(ROOT).as_posix()}`" in page, path


def test_generated_cells_stay_in_one_table_cell():
    assert HOOKS.cell("a | b\n c") == "a \\| b c"
    assert HOOKS.toml_value(["a", 1, True, 2e-4]) == '["a", 1, true, 0.0002]'
    assert (
        HOOKS.first_sentence("The ``x``: a thing. More (e.g. this).\n\nOther.")
        == "The `x`: a thing."
    )
