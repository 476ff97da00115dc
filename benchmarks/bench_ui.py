"""How fast the UI answers keys while trainings run: open a run view and go back, N times, with
0 and then 2 training workers busy on this machine, headless (Textual's run_test); and how fast
it starts.

    python benchmarks/bench_ui.py [--presses 20] [--subset 2000]
    python benchmarks/bench_ui.py --startup [--times 5]

``--startup`` times "start to first frame": ``diffui`` started in a pseudo-terminal (100x30)
over two finished runs, from the exec to the first frame of the runs view written to the
terminal (its key bar's ``quit``), and to the first frame that shows the runs' rows, the median
of ``--times`` starts; with ``--images halfcell`` and with the default ``--images auto`` (the
pseudo-terminal answers no query: ``auto`` waits its one timeout, which a real terminal's answer
ends at once). Python writes and reads its bytecode cache (in a temporary folder, after one
start not counted), as an installed diffui does; the last row compiles every module at each
start, as under ``PYTHONDONTWRITEBYTECODE=1``. Two floors come first: Python importing nothing,
and Textual's smallest app (a header, a table and a footer).

Each round trip is timed from the key press to the moment the run view has drawn the run's
history, and back to the runs view. The first opening of a run view composes it (the app keeps it
for the next ones): it is printed apart, and counted in max.

Two ways of timing: "frame" sends the key as the terminal driver does and stops the clock when
the app writes the first frame of the new screen (what a user sees); "pilot" uses Textual's
Pilot, whose press() also waits until the whole process has been idle for 20 ms after each key
(at least 40 ms a key, more while the poll thread or trainings use the CPU), as the README's
earlier numbers did.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from textual import events  # noqa: E402
from textual_image.widget import HalfcellImage  # noqa: E402

from tui.app import DiffuiApp  # noqa: E402
from tui.screens import RunScreen  # noqa: E402

STUDY = """
[defaults.data]
train_subset = {subset}
[defaults.training]
epochs = 50
batch_size = 64
[defaults.evaluation]
grid_epochs = [1]
n_grid = 16
steps = 10
every = 0
[[experiments]]
name = "one"
[[experiments]]
name = "two"
schedule = {{ kind = "cosine" }}
"""


async def until(pilot, predicate, timeout=120.0):
    deadline = time.time() + timeout
    while not predicate():
        if time.time() > deadline:
            raise TimeoutError("condition not met")
        await pilot.pause(0.01)


def watch_frames(app) -> list:
    """Record (time, screen, whether it was ready) of every frame the app writes."""
    frames = []
    display = app._display

    def recording(screen, renderable):
        if renderable is not None:
            frames.append((time.perf_counter(), screen, getattr(screen, "ready", True)))
        return display(screen, renderable)

    app._display = recording
    return frames


async def frame_after(frames, t0: float, predicate, timeout: float = 60.0) -> None:
    """Wait for the first frame written after ``t0`` of a screen that satisfies ``predicate``."""
    deadline = time.perf_counter() + timeout
    while not any(t > t0 and predicate(screen, ready) for t, screen, ready in frames):
        if time.perf_counter() > deadline:
            raise TimeoutError("no such frame")
        await asyncio.sleep(0.001)


async def frame_round_trips(app, frames, n: int) -> list[float]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        app._driver.send_message(events.Key("o", "o"))
        await frame_after(frames, t0, lambda s, ready: isinstance(s, RunScreen) and ready)
        t1 = time.perf_counter()
        app._driver.send_message(events.Key("escape", None))
        await frame_after(frames, t1, lambda s, ready: not isinstance(s, RunScreen))
        times.append((time.perf_counter() - t0) * 1000)
        frames.clear()
        await asyncio.sleep(0.05)  # as a user would: not the next key in the same millisecond
    return times


async def round_trips(app, pilot, n: int) -> list[float]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        await pilot.press("o")
        await until(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.ready)
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, RunScreen))
        times.append((time.perf_counter() - t0) * 1000)
    return times


async def bench(presses: int, subset: int) -> list[tuple[str, list[float]]]:
    folder = Path(tempfile.mkdtemp(prefix="diffui-bench-ui-"))
    (folder / "exp.toml").write_text(STUDY.format(subset=subset))
    app = DiffuiApp(folder / "exp.toml", folder / "runs", image_class=HalfcellImage)
    rows = []
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.experiments is not None)  # read by a worker
        await pilot.press("a", "a", "enter", "j", "2", "enter")
        await until(pilot, lambda: len(app.queue.queued()) == 2 and app.queue.jobs == 2)
        await until(pilot, lambda: app.table.row_count == 2 and app.snapshot)
        frames = watch_frames(app)
        rows.append(("idle (0 trainings), frame", await frame_round_trips(app, frames, presses)))
        rows.append(("idle (0 trainings), pilot", await round_trips(app, pilot, presses)))
        await pilot.press("s")
        await until(
            pilot,
            lambda: sum(p.state == "running" and p.step > 0 for p in app.snapshot.values()) == 2,
        )
        rows.append(("2 trainings running, frame", await frame_round_trips(app, frames, presses)))
        rows.append(("2 trainings running, pilot", await round_trips(app, pilot, presses)))
        running = sum(p.state == "running" for p in app.snapshot.values())
        app.queue.stop(["one", "two"])
    if running != 2:
        raise SystemExit(
            f"only {running} trainings were still running at the end: use a larger --subset"
        )
    return rows


MINIMAL_APP = """
from textual.app import App
from textual.widgets import DataTable, Footer, Header

class Minimal(App):
    BINDINGS = [("q", "quit", "quit")]

    def compose(self):
        yield Header()
        yield DataTable()
        yield Footer()

Minimal().run()
"""


def first_frame(
    folder: Path, cmd: list[str], env: dict, timeout: float = 60.0
) -> tuple[float, float | None]:
    """Seconds from starting ``cmd`` in a pseudo-terminal to its first frame (one with ``quit``)
    and to the first that shows a run's name (None if none does); then it is sent ``q``."""
    import fcntl
    import os
    import pty
    import select
    import struct
    import subprocess
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=folder, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True
    )
    os.close(slave)
    seen, first, rows = b"", None, None
    try:
        while rows is None and time.perf_counter() - t0 < timeout:
            if select.select([master], [], [], 0.01)[0]:
                seen += os.read(master, 65536)
                if first is None and b"quit" in seen:
                    first = time.perf_counter() - t0
                    if "cli.main" not in cmd:
                        break  # no runs to show
                if first is not None and b"ddpm-linear" in seen:
                    rows = time.perf_counter() - t0
        os.write(master, b"q")
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    if first is None:
        raise SystemExit(f"no frame in {timeout} s: {seen[-300:]!r}")
    return first, rows


def startup(times: int) -> None:
    """``--startup``: the median of ``times`` starts to the first frame."""
    import os

    sys.path.insert(0, str(ROOT / "tests"))
    from tui_runs import STUDY, make_runs

    folder = Path(tempfile.mkdtemp(prefix="diffui-bench-start-"))
    make_runs(folder / "runs")
    (folder / "experiments.toml").write_text(STUDY)
    (folder / "minimal.py").write_text(MINIMAL_APP)
    compiled = {**os.environ, "TERM": "xterm-256color", "PYTHONPATH": str(ROOT)}
    compiled["PYTHONDONTWRITEBYTECODE"] = "1"
    cached = {k: v for k, v in compiled.items() if k != "PYTHONDONTWRITEBYTECODE"}
    cached["PYTHONPYCACHEPREFIX"] = str(folder / "pycache")
    diffui = [sys.executable, "-m", "cli.main", "experiments.toml", "--images"]
    cases = [
        ("python -c pass", [sys.executable, "-c", "print('quit')"], cached),
        ("Textual's smallest app", [sys.executable, "minimal.py"], cached),
        ("diffui --images halfcell", [*diffui, "halfcell"], cached),
        ("diffui --images auto", [*diffui, "auto"], cached),
        ("diffui --images halfcell, no bytecode cache", [*diffui, "halfcell"], compiled),
    ]
    for _, cmd, env in cases[1:4]:  # fill the bytecode cache
        first_frame(folder, cmd, env)
    table = Table(title=f"start to first frame (a 100x30 pseudo-terminal), median of {times}")
    for col in ("what starts", "first frame s", "min s", "max s", "with the rows s"):
        table.add_column(col)
    for name, cmd, env in cases:
        ts = [first_frame(folder, cmd, env) for _ in range(times)]
        firsts = sorted(t for t, _ in ts)
        rows = [r for _, r in ts if r is not None]
        table.add_row(
            name,
            f"{statistics.median(firsts):.2f}",
            f"{firsts[0]:.2f}",
            f"{firsts[-1]:.2f}",
            f"{statistics.median(rows):.2f}" if rows else "",
        )
    Console().print(table)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presses", type=int, default=20)
    ap.add_argument("--subset", type=int, default=2000)
    ap.add_argument("--startup", action="store_true", help="time start to first frame instead")
    ap.add_argument("--times", type=int, default=5, help="starts timed with --startup")
    args = ap.parse_args()
    if args.startup:
        startup(args.times)
        return 0
    rows = asyncio.run(bench(args.presses, args.subset))
    table = Table(title=f"UI round trip (open a run view and back), {args.presses} times")
    for col in ("workers", "p50 ms", "p95 ms", "max ms", "first ms"):
        table.add_column(col)
    for name, times in rows:
        ms = sorted(times)
        table.add_row(
            name,
            f"{statistics.median(ms):.0f}",
            f"{ms[int(0.95 * (len(ms) - 1))]:.0f}",
            f"{ms[-1]:.0f}",
            f"{times[0]:.0f}",
        )
    Console().print(table)
    for how in ("frame", "pilot"):
        idle, busy = (statistics.median(ms) for name, ms in rows if name.endswith(how))
        print(f"ratio busy/idle (median, {how}): {busy / idle:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
