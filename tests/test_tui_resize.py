"""The UI at any terminal size and on any numbers: resizing while a run view or the compare view
is open (over runs whose curves hold zero, negative, NaN and infinite values or one point, with
events still coming) never ends the app, and the chart code draws any series at any size."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from conftest import until
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from test_tui import make_app, select_row
from textual.widgets import Static
from tui_runs import STUDY_NAME, T0, make_runs, make_study

from tui.runs_screen import RunsScreen
from tui.screens import CompareScreen, RunScreen, StudyScreen, TooSmallScreen
from tui.widgets import Chart, RunsTable

SIZES = [(120, 40), (100, 30), (60, 20), (140, 45), (20, 8), (300, 100), (80, 24), (21, 9)]
SIZES += [(41, 13), (200, 60), (64, 18), (120, 40)]
# run name -> its val losses at epochs 1, 2, ... (train losses the same), and its FIDs
ODD = {
    "zero": ([0.0, 0.0], [0.0]),
    "negative": ([-1.0, 0.5, -0.25], [-3.0, 2.0]),
    "nan": ([math.nan, 0.2, math.inf], [math.nan, math.inf]),
    "one-point": ([0.3], [120.0]),
    "huge": ([1e30, 1e-30], [1e12, 1e-12]),
}


def epoch_events(epochs: list[float], fids: list[float], start: int = 1) -> list[dict]:
    out = []
    for i, loss in enumerate(epochs, start):
        out.append(
            {
                "type": "epoch",
                "time": T0 + i,
                "epoch": i,
                "epochs": 4,
                "seconds": 1.0,
                "train_loss": loss,
                "val_loss": loss,
            }
        )
    for i, fid in enumerate(fids, start):
        out.append(
            {
                "type": "eval",
                "time": T0 + i,
                "epoch": i,
                "sampler": "DDIM-4",
                "n": 10,
                "backbone": "lenet",
                "fid": fid,
                "floor": fid,
                "histogram": [1] * 10,
                "entropy": 1.0,
            }
        )
    return out


def append(path: Path, events: list[dict]) -> None:
    with path.open("a") as f:
        f.writelines(json.dumps(e) + "\n" for e in events)


def make_odd_runs(runs_dir: Path) -> list[str]:
    """Run folders (copies of tests/tui_runs.py's) whose curves hold the values of ODD; they
    have started and not ended, so events can still be appended."""
    make_runs(runs_dir)
    for name, (losses, fids) in ODD.items():
        shutil.copytree(runs_dir / "ddpm-linear", runs_dir / name)
        (runs_dir / name / "exit.json").unlink(missing_ok=True)
        start = {"type": "start", "time": T0, "epoch": 0, "epochs": 4, "device": "cpu"}
        (runs_dir / name / "events.jsonl").write_text(json.dumps(start) + "\n")
        append(runs_dir / name / "events.jsonl", epoch_events(losses, fids))
    return list(ODD)


async def resize_through(pilot, app, screen_class, events: Path | None = None) -> None:
    """Resize through SIZES, appending an event at each when ``events`` is given: the app
    goes on, on the same screen, and draws at the size it is given."""
    for k, (w, h) in enumerate(SIZES):
        if events is not None:
            append(events, epoch_events([0.0 if k % 2 else -k], [math.nan], start=3 + k))
        await pilot.resize_terminal(w, h)
        await pilot.pause()
        assert app.is_running and app.return_code is None, (w, h)
        assert app.size == (w, h)
    assert isinstance(app.screen, screen_class)


@pytest.mark.parametrize("name", [*ODD, "ddpm-linear"])  # ddpm-linear: plain numbers
async def test_a_run_view_survives_every_size_on_odd_numbers(tmp_path, name):
    make_odd_runs(tmp_path / "runs")
    app = make_app(tmp_path / "missing.toml", tmp_path / "runs")
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.query_one(RunsTable).row_count == 2 + len(ODD))
        await select_row(pilot, app, name)
        await pilot.press("o")
        await until(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.ready)
        await resize_through(pilot, app, RunScreen, tmp_path / "runs" / name / "events.jsonl")
        await pilot.press("escape", "q")
        await until(pilot, lambda: not app.is_running)
    assert app.return_code == 0


async def test_the_compare_view_survives_every_size_on_odd_numbers(tmp_path):
    make_odd_runs(tmp_path / "runs")
    app = make_app(tmp_path / "missing.toml", tmp_path / "runs")
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.query_one(RunsTable).row_count == 2 + len(ODD))
        await pilot.press("c")  # nothing marked: every run that has started
        await until(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.ready)
        await resize_through(pilot, app, CompareScreen, tmp_path / "runs" / "nan" / "events.jsonl")
        await pilot.press("escape", "q")
        await until(pilot, lambda: not app.is_running)
    assert app.return_code == 0


values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, -1.0, 1e-300, 1e300])
)
series = st.lists(
    st.tuples(
        st.text(max_size=12), st.lists(st.tuples(st.integers(-5, 10**6), values), max_size=40)
    ),
    max_size=4,
)


# no shrinking: a failing example is shown as found (each draw takes milliseconds)
@settings(max_examples=100, deadline=None, phases=(Phase.explicit, Phase.generate), database=None)
@given(series, st.integers(0, 300), st.integers(0, 100), st.booleans(), st.booleans())
def test_a_chart_draws_any_series_at_any_size(data, width, height, logy, evenly):
    chart = Chart("loss", "MSE")
    chart.show(
        [(label, [x for x, _ in pts], [y for _, y in pts]) for label, pts in data],
        logy=logy,
        evenly=evenly,
    )
    text = chart.draw(width, height)
    lines = text.split("\n")
    assert len(lines) <= max(1, height)
    assert all(line.cell_len <= width for line in lines)
    assert lines[0].plain.startswith("loss"[:width])


def test_a_chart_of_a_million_points_draws():
    xs = list(range(10**6))
    chart = Chart("loss", "MSE")
    chart.show([("val", xs, [1 / (1 + x) for x in xs])], logy=True)
    assert chart.logy
    assert len(chart.draw(120, 30).plain.split("\n")) == 30


def test_epoch_ticks_are_whole_and_the_legend_is_above_the_curves():
    chart = Chart("loss", "MSE")
    chart.show(
        [("train", [1, 2, 3], [0.5, 0.3, 0.2]), ("val", [1, 2, 3], [0.6, 0.4, 0.3])], xrange=(1, 10)
    )
    lines = chart.draw(80, 20).plain.split("\n")
    assert "▄ train" in lines[0] and "▄ val" in lines[0]
    axis = lines[-2]  # the tick labels under the plot (the axis label is under them)
    assert "1" in axis and "10" in axis and "." not in axis
    assert "train" not in "\n".join(lines[1:])
    narrow = chart.draw(18, 10).plain.split("\n")[0]
    assert narrow == "loss"  # no room for all of the legend: none of it


async def test_a_line_says_the_terminal_is_too_small_until_it_grows(tmp_path):
    make_runs(tmp_path / "runs")
    app = make_app(tmp_path / "missing.toml", tmp_path / "runs")
    async with app.run_test(size=(60, 20)) as pilot:
        assert isinstance(app.screen, TooSmallScreen)
        line = str(app.screen.query_one("#too-small", Static).render())
        assert line == "too small: 60x20, needs 64x18 · q quits"
        await pilot.press("a", "j")  # the other keys wait
        assert isinstance(app.screen, TooSmallScreen)
        await pilot.resize_terminal(100, 30)
        await until(pilot, lambda: isinstance(app.screen, RunsScreen))
        await until(pilot, lambda: app.query_one(RunsTable).row_count == 2)
        await pilot.press("o")
        await until(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.ready)
        await pilot.resize_terminal(20, 8)
        await until(pilot, lambda: isinstance(app.screen, TooSmallScreen))
        assert "too small: 20x8," in str(app.screen.query_one("#too-small", Static).render())
        await pilot.resize_terminal(64, 18)  # the least size: the run view again
        await until(pilot, lambda: isinstance(app.screen, RunScreen))
        await pilot.resize_terminal(30, 30)
        await until(pilot, lambda: isinstance(app.screen, TooSmallScreen))
        await pilot.press("q")
        await until(pilot, lambda: not app.is_running)


async def test_the_study_view_survives_every_size(tmp_path):
    make_runs(tmp_path / "runs")
    make_study(tmp_path / "runs", upto=1)  # one value done: one point on each chart
    app = make_app(tmp_path / "missing.toml", tmp_path / "runs")
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.query_one(RunsTable).row_count == 3)
        await select_row(pilot, app, STUDY_NAME)
        await pilot.press("o")
        await until(pilot, lambda: isinstance(app.screen, StudyScreen) and app.screen.ready)
        await resize_through(pilot, app, StudyScreen)
        await pilot.press("escape", "q")
        await until(pilot, lambda: not app.is_running)
    assert app.return_code == 0
