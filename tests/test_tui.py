"""The terminal UI, driven with Textual's Pilot against real tiny runs (worker processes)."""
from __future__ import annotations

import json
import time
import tomllib
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input, Static
from textual_image.widget import HalfcellImage

from engine.config import ConfigError, load_study
from engine.queue import Queue, prepare_runs
from engine.runs import Run, latest_by_epoch, pid_running
from tui.app import DiffuiApp
from tui.screens import CompareScreen, EditScreen, JobsScreen, PickScreen, RunScreen
from tui.widgets import GridView, RunsTable

from conftest import tiny_study
from tui_runs import make_runs


def two_run_study(path: Path, epochs: int = 2, subset: int = 256) -> Path:
    tiny_study(path, name="alpha", epochs=epochs, subset=subset)
    path.write_text(path.read_text() + '\n[[experiments]]\nname = "beta"\n'
                    'schedule = { kind = "cosine" }\n')
    return path


def make_app(file: Path, runs_dir: Path, **kw) -> DiffuiApp:
    return DiffuiApp(file, runs_dir, image_class=HalfcellImage, poll_every=0.1, **kw)


async def until(pilot, predicate, timeout: float = 90.0):
    """Let the app run until ``predicate()`` holds; fail after ``timeout`` seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        await pilot.pause(0.1)
    raise AssertionError(f"condition not met within {timeout} s")


def states(app: DiffuiApp) -> dict[str, str]:
    return {n: p.state for n, p in app.snapshot.items()}


def cell(app: DiffuiApp, run: str, column: str) -> str:
    table = app.query_one(RunsTable)
    return str(table.get_cell(run, column))


@pytest.fixture
def fixed_app(tmp_path):
    """The app over two finished runs with fixed numbers (tests/tui_runs.py); no experiments file."""
    make_runs(tmp_path / "runs")
    return make_app(tmp_path / "missing.toml", tmp_path / "runs")


async def select_row(pilot, app: DiffuiApp, name: str) -> None:
    table = app.query_one(RunsTable)
    table.move_cursor(row=table.get_row_index(name))
    await pilot.pause()


async def test_queue_reorder_jobs_start_and_finish(tmp_path):
    """Pick experiments, reorder the queue, set two at once, start: both runs train in worker
    processes and finish, and key presses are handled while they run."""
    file = two_run_study(tmp_path / "exp.toml", epochs=3)
    runs_dir = tmp_path / "runs"
    app = make_app(file, runs_dir)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("a")
        assert isinstance(app.screen, PickScreen)
        await pilot.press("enter")  # every run is selected at first
        assert not isinstance(app.screen, PickScreen)
        await until(pilot, (runs_dir / "queue.json").exists, timeout=30)  # queued off the UI thread
        saved = json.loads((runs_dir / "queue.json").read_text())
        assert saved == {"queued": ["alpha", "beta"], "jobs": 1, "paused": True}
        await until(pilot, lambda: app.query_one(RunsTable).row_count == 2)
        assert cell(app, "alpha", "status") == "queued #1"

        await select_row(pilot, app, "alpha")
        await pilot.press("J")  # alpha goes behind beta
        assert json.loads((runs_dir / "queue.json").read_text())["queued"] == ["beta", "alpha"]
        await until(pilot, lambda: cell(app, "beta", "status") == "queued #1")

        await pilot.press("j")
        assert isinstance(app.screen, JobsScreen)
        await pilot.press("2", "enter")
        assert app.queue.jobs == 2

        await pilot.press("s")
        assert not app.queue.paused
        await until(pilot, lambda: sum(s == "running" for s in states(app).values()) == 2)
        # the UI answers keys while both trainings run: open a run view and come back
        t0 = time.time()
        await pilot.press("o")
        await until(pilot, lambda: isinstance(app.screen, RunScreen), timeout=5)
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, RunScreen), timeout=5)
        assert time.time() - t0 < 5
        await until(pilot, lambda: states(app) == {"alpha": "finished", "beta": "finished"})
        assert cell(app, "alpha", "epoch") == "3/3"
        assert cell(app, "alpha", "val") == f"{app.snapshot['alpha'].val_loss:.4f}"
    for name in ("alpha", "beta"):
        assert [e for e in latest_by_epoch(Run(runs_dir / name).events(), "epoch")] == [1, 2, 3]
    assert json.loads((runs_dir / "queue.json").read_text())["queued"] == []


async def test_cancel_quit_reattach_and_resume(tmp_path):
    """A run keeps going when the UI quits; a new UI reattaches to it, cancels it (it stays
    resumable) and resumes it to the end from its checkpoint."""
    file = tiny_study(tmp_path / "exp.toml", name="long", epochs=20, subset=256)
    runs_dir = tmp_path / "runs"
    run = Run(runs_dir / "long")
    app = make_app(file, runs_dir)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("a", "enter", "s")
        await until(pilot, lambda: run.checkpoint_path.exists() and run.status().state == "running")
        await pilot.press("q")
    pid = run.status().pid
    assert run.status().state == "running" and pid_running(pid, run.path)  # it outlived the UI

    app = make_app(file, runs_dir)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: states(app).get("long") == "running")
        assert cell(app, "long", "where") == "local"
        await select_row(pilot, app, "long")
        await pilot.press("x")
        await until(pilot, lambda: states(app)["long"] == "resumable")
        stopped_at = app.snapshot["long"].epoch
        assert 0 < stopped_at < 20
        await pilot.press("t")  # retry is for failed runs only: nothing changes
        assert app.queue.queued() == []
        await pilot.press("r")  # the queue is still started (saved in queue.json): it runs again
        await until(pilot, lambda: states(app)["long"] == "running")
        await until(pilot, lambda: states(app)["long"] == "finished", timeout=240)
    starts = [e for e in run.events() if e["type"] == "start"]
    assert starts[-1]["resumed"] and starts[-1]["epoch"] >= stopped_at
    assert max(latest_by_epoch(run.events(), "epoch")) == 20


async def test_failed_run_shows_why_and_retries(tmp_path):
    """A worker that fails (here: an unreadable checkpoint) shows as failed with its error; once
    the cause is gone, retry runs it to the end."""
    file = tiny_study(tmp_path / "exp.toml", name="flaky", epochs=1)
    runs_dir = tmp_path / "runs"
    run = prepare_runs(load_study(file).runs, runs_dir)[0]
    run.checkpoint_path.write_bytes(b"not a checkpoint")
    app = make_app(file, runs_dir)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.table.row_count == 1)
        await pilot.press("a", "enter", "s")
        await until(pilot, lambda: states(app)["flaky"] == "failed")
        assert app.snapshot["flaky"].detail.startswith("UnpicklingError")
        await pilot.press("r")  # resume is for stopped runs only
        assert app.queue.queued() == [] and states(app)["flaky"] == "failed"
        run.checkpoint_path.unlink()
        await pilot.press("t")
        await until(pilot, lambda: states(app)["flaky"] == "finished")
    assert [e["status"] for e in run.events() if e["type"] == "end"] == ["failed", "finished"]


async def test_bad_file_shows_the_batch_error_and_changes_nothing(tmp_path):
    file = tiny_study(tmp_path / "exp.toml")
    file.write_text(file.read_text().replace("epochs = 2", "epochs = 0"))
    runs_dir = tmp_path / "runs"
    make_runs(runs_dir)
    Queue.open(runs_dir).set_jobs(3)
    queue_before = (runs_dir / "queue.json").read_bytes()
    with pytest.raises(ConfigError) as err:
        load_study(file)
    app = make_app(file, runs_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        shown = str(app.query_one("#error", Static).render())
        assert shown == f"error: {err.value}"
        assert "\n" not in shown and "defaults.training.epochs" in shown
        await pilot.press("a")  # nothing to pick from a broken file
        assert not isinstance(app.screen, PickScreen)
        await until(pilot, lambda: app.query_one(RunsTable).row_count == 2)  # runs still shown
        file.write_text(file.read_text().replace("epochs = 0", "epochs = 2"))
        await pilot.press("l")
        assert not app.query_one("#error").has_class("shown")
    assert (runs_dir / "queue.json").read_bytes() == queue_before


async def test_damaged_queue_file_is_shown_and_kept(tmp_path):
    runs_dir = tmp_path / "runs"
    make_runs(runs_dir)
    (runs_dir / "queue.json").write_text("[oops")
    app = make_app(tmp_path / "missing.toml", runs_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.query_one(RunsTable).row_count == 2)
        lines = str(app.query_one("#error", Static).render()).splitlines()
        assert lines == [f"error: {runs_dir / 'queue.json'}: not valid JSON (the saved queue); "
                         "remove it to start afresh",
                         f"error: {tmp_path / 'missing.toml'}: no such file (expected an "
                         "experiments file, e.g. experiments.toml)"]
        await pilot.press("j", "3", "enter")  # the queue works for this session...
        assert app.queue.jobs == 3
    assert (runs_dir / "queue.json").read_text() == "[oops"  # ...and the file is left for the user


async def test_run_view_steps_through_grids(fixed_app):
    app = fixed_app
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.query_one(RunsTable).row_count == 2)
        await select_row(pilot, app, "ddpm-linear")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, RunScreen))
        grid = app.screen.query_one(GridView)
        label = lambda: str(app.screen.query_one("#grid-label").render())  # noqa: E731
        assert label() == "epoch 4 · DDPM-40 · grid 3 of 3"  # the newest first
        await pilot.press("left_square_bracket")
        assert label() == "epoch 2 · DDIM-4 · grid 2 of 3"
        assert grid.current[1].name == "epoch-0002.png"
        assert app.screen.query_one("#grid-image").image.size == (62, 62)
        await pilot.press("home")
        assert label().startswith("epoch 1 ·")
        await pilot.press("right", "right", "right")  # stops at the newest
        assert label() == "epoch 4 · DDPM-40 · grid 3 of 3"
        loss = app.screen.query_one("#loss-chart")
        assert [s[0] for s in loss.series] == ["train", "val"]
        assert loss.series[1][1:] == ([1, 2, 3, 4], [0.45, 0.225, 0.15, 0.1125])
        assert app.screen.query_one("#fid-chart").series[0][1:] == ([2, 4], [150.0, 75.0])
        await pilot.press("escape")
        assert not isinstance(app.screen, RunScreen)


async def test_compare_marked_runs(fixed_app):
    app = fixed_app
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.query_one(RunsTable).row_count == 2)
        await select_row(pilot, app, "ddpm-cosine")
        await pilot.press("space")
        await select_row(pilot, app, "ddpm-linear")
        await pilot.press("space", "c")
        await until(pilot, lambda: isinstance(app.screen, CompareScreen))
        table = app.screen.query_one("#compare-table", DataTable)
        await until(pilot, lambda: table.row_count == 2)
        rows = {table.get_row_at(i)[0]: table.get_row_at(i) for i in range(2)}
        assert rows["ddpm-linear"][3:7] == ["0.1125", "75.00", "12.50", "3.32"]
        assert rows["ddpm-cosine"][3:7] == ["0.1325", "85.00", "12.50", "3.22"]
        labels = [s[0] for s in app.screen.query_one("#fid-chart").series]
        assert labels == ["ddpm-linear FID", "ddpm-cosine FID"] or \
            labels == ["ddpm-cosine FID", "ddpm-linear FID"]


async def test_edit_saves_the_setting_and_keeps_comments(tmp_path):
    file = tiny_study(tmp_path / "exp.toml")
    file.write_text("# my study, do not lose this comment\n" + file.read_text())
    app = make_app(file, tmp_path / "runs")
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("e")
        assert isinstance(app.screen, EditScreen)
        await pilot.click("#key")
        await pilot.press(*"training.epochs", "enter")
        await pilot.press(*"nine", "enter")  # not a TOML value: the file is left alone
        assert "expected a TOML value" in str(app.screen.query_one("#edit-error").render())
        assert "epochs = 2" in file.read_text()
        app.screen.query_one("#value", Input).value = "9"
        await pilot.press("enter")
        assert not isinstance(app.screen, EditScreen)
    text = file.read_text()
    assert text.startswith("# my study, do not lose this comment\n")
    assert tomllib.loads(text)["defaults"]["training"]["epochs"] == 9
    assert load_study(file).runs[0].training.epochs == 9


async def test_palette_and_report(fixed_app):
    app = fixed_app
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.query_one(RunsTable).row_count == 2)
        assert app.queue.paused
        await pilot.press("ctrl+p")
        await pilot.press(*"Start or pause")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await until(pilot, lambda: not app.queue.paused, timeout=5)
        await pilot.press("w")
        report = app.runs_dir / "report" / "report.md"
        await until(pilot, report.exists, timeout=120)
    assert "ddpm-cosine" in report.read_text()
