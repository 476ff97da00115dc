"""The import rules of docs/architecture.md, checked on the code itself: which package may import
which, no import cycles, and the packages that must load without torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# every package may import these
BASE = {"engine.text", "engine.errors", "engine.files", "engine.style"}
# package -> the packages it may import (besides itself and BASE)
ALLOWED = {
    "engine": set(),  # engine/__init__.py
    "engine.text": set(),
    "engine.errors": set(),
    "engine.files": set(),
    "engine.style": set(),
    "engine.spec": set(),
    "engine.rundir": {"engine.spec"},
    "engine.data": {"engine.spec", "engine.rundir"},
    "engine.diffusion": {"engine.spec", "engine.data"},
    "engine.evaluation": {"engine.spec", "engine.rundir", "engine.data", "engine.diffusion"},
    "engine.jobs": {
        "engine.spec",
        "engine.rundir",
        "engine.data",
        "engine.diffusion",
        "engine.evaluation",
        "engine.report",
    },
    "engine.queue": {"engine.spec", "engine.rundir", "engine.data"},
    "engine.report": {"engine.spec", "engine.rundir"},
    "engine.usecases": {
        "engine.spec",
        "engine.rundir",
        "engine.data",
        "engine.diffusion",
        "engine.evaluation",
        "engine.queue",
        "engine.report",
    },
    "tui": {"engine"},
    "cli": {"engine", "tui"},
}
# what a front end or the queue service loads without torch (a fast start, no GPU libraries)
TORCH_FREE = (
    "engine.text",
    "engine.errors",
    "engine.files",
    "engine.style",
    "engine.spec",
    "engine.rundir",
    "engine.queue",
    "engine.report",
    "engine.usecases",
    "tui",  # the UI's first frame does not wait for torch
    "cli",
)


def modules() -> dict[str, Path]:
    out = {}
    for top in ("engine", "tui", "cli"):
        for p in sorted((ROOT / top).rglob("*.py")):
            rel = p.relative_to(ROOT).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            out[".".join(parts)] = p
    return out


def package(module: str) -> str:
    """The package a module belongs to in ALLOWED (engine.queue.executors.ssh -> engine.queue)."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "engine" and len(parts) > 1 else parts[0]


def imports(path: Path, mods: dict[str, Path], top_level_only: bool) -> set[str]:
    """The project modules ``path`` imports (at module level only, or anywhere)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.If) and top_level_only:  # if TYPE_CHECKING: counts as well
            nodes.extend(node.body)
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found.update(n for n in names if n in mods)
        found.update(
            n
            for n in names
            if n.split(".")[0] in ("engine", "tui", "cli")
            and n not in mods
            and n.rsplit(".", 1)[0] in mods
        )
    return {m if m in mods else m.rsplit(".", 1)[0] for m in found}


def test_every_package_imports_only_what_its_layer_allows():
    mods = modules()
    wrong = []
    for name, path in mods.items():
        own = package(name)
        assert own in ALLOWED, f"{name}: package {own} is not in the architecture's table"
        for dep in imports(path, mods, top_level_only=False):
            theirs = package(dep)
            ok = ALLOWED[own] | BASE | {own}
            if theirs != own and theirs not in ok and theirs.split(".")[0] not in ok:
                wrong.append(f"{name} imports {dep}")
    assert wrong == []


def test_the_engine_never_imports_a_front_end():
    mods = modules()
    wrong = [
        f"{name} imports {dep}"
        for name, path in mods.items()
        if name.startswith("engine")
        for dep in imports(path, mods, top_level_only=False)
        if dep.split(".")[0] in ("tui", "cli")
    ]
    assert wrong == []


def test_there_is_no_import_cycle():
    mods = modules()
    graph = {name: imports(path, mods, top_level_only=True) - {name} for name, path in mods.items()}
    cycles, index, low, stack, on_stack = [], {}, {}, [], set()

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert cycles == []


def test_the_queue_the_run_folder_and_the_report_load_without_torch():
    mods = [m for m in modules() if m.startswith(TORCH_FREE) and not m.endswith("__main__")]
    code = (
        "import importlib, sys\n"
        f"for m in {mods!r}:\n"
        "    importlib.import_module(m)\n"
        "    assert 'torch' not in sys.modules, m\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]


def test_no_function_is_longer_than_60_lines():
    long = []
    for top in ("engine", "tui", "cli"):
        for p in sorted((ROOT / top).rglob("*.py")):
            for node in ast.walk(ast.parse(p.read_text())):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    n = node.end_lineno - node.lineno + 1
                    if n > 60:
                        long.append(f"{p.relative_to(ROOT)}:{node.lineno} {node.name} ({n} lines)")
    assert long == []


def test_the_uis_first_frame_imports_only_what_the_runs_view_needs():
    """``diffui`` with no command word imports the UI without the other commands' modules, the
    queue service, the report, the charts' plotext, the edit dialog's tomlkit, PIL or numpy:
    they come when a screen or an action needs them (the start-up time of issue 21)."""
    later = [
        "cli.commands",
        "cli.tools",
        "engine.usecases",
        "engine.queue.service",
        "engine.report",
        "tui.claims_screen",
        "tui.chart",
        "plotext",
        "tomlkit",
        "textual_image",
        "PIL",
        "numpy",
        "torch",
    ]
    code = (
        "import sys\n"
        "import cli.main, cli.ui, tui.app, tui.widgets\n"
        "tui.widgets.image_widget_class('halfcell')\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {later!r} or m in {later!r}"
        " or m.startswith('engine.report')))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "[]"
