"""The UI at any terminal size and on any numbers: resizing while a run view or the compare view
is open (over runs whose curves hold zero, negative, NaN and infinite values or one point, with
events still coming) never ends the app, and the chart code draws any series at any size. A walk
opens every screen and dialog, resizes it below the least size, to it and up to 300x100 while
events come, and presses every key its key bar shows: the app goes on, and answers q.

Drawing is what these tests spend their time on (a second or more per size from 100x30 up, on
a busy machine): each test runs one app through its screens and sizes, the large sizes are drawn
once per screen (in the walk), and the sizes in between are left to the chart and grid code's
hypothesis tests, which draw them all."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

from conftest import until
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from PIL import Image as PILImage
from test_tui import make_app, select_row
from textual.command import CommandPalette
from textual.widgets import Static
from tui_runs import STUDIES, STUDY, STUDY_NAME, T0, make_runs, make_study

from engine.queue.client import Queue
from tui.chart import Chart
from tui.pixels import ANSI_GREYS, HalfBlocks, Shades
from tui.runs_screen import RunsScreen
from tui.screens import (
    CompareScreen,
    EditScreen,
    HelpScreen,
    HostPickScreen,
    JobsScreen,
    PickScreen,
    RunScreen,
    StudyPickScreen,
    StudyScreen,
    TooSmallScreen,
)
from tui.widgets import KeyBar, RunsTable

# (the views open at 120x40) the least size; below it in width, in both, in height; back. The
# walk draws every screen at 300x100 too; each size costs a second of drawing, and the chart
# code draws odd numbers at every size in test_a_chart_draws_any_series_at_any_size
SIZES = [(64, 18), (60, 20), (20, 8), (80, 17), (100, 30)]
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


async def test_every_run_view_survives_every_size_on_odd_numbers(tmp_path):
    """One app opens the view of each odd run (and of ddpm-linear, plain numbers) in turn and
    resizes it through SIZES while the run's events come."""
    make_odd_runs(tmp_path / "runs")
    app = make_app(tmp_path / "missing.toml", tmp_path / "runs")
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.query_one(RunsTable).row_count == 2 + len(ODD))
        for name in [*ODD, "ddpm-linear"]:
            await select_row(pilot, app, name)
            await pilot.press("o")
            await until(
                pilot,
                lambda n=name: (
                    isinstance(app.screen, RunScreen)
                    and app.screen.run_name == n
                    and app.screen.ready
                ),
            )
            await resize_through(pilot, app, RunScreen, tmp_path / "runs" / name / "events.jsonl")
            await pilot.press("escape")
            await until(pilot, lambda: isinstance(app.screen, RunsScreen))
        await pilot.press("q")
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
    assert "▄ train" in lines[0] and "• val" in lines[0]
    axis = lines[-2]  # the tick labels under the plot (the axis label is under them)
    assert "1" in axis and "10" in axis and "." not in axis
    assert "train" not in "\n".join(lines[1:])
    narrow = chart.draw(18, 10).plain.split("\n")[0]
    assert narrow == "loss"  # no room for all of the legend: none of it


def test_without_colour_each_line_has_its_own_glyph_and_the_legend_says_which():
    """A 16-colour or monochrome terminal still tells the lines apart: each series is drawn
    with its own glyph (the first in quadrant blocks), which the legend shows before its
    label; the colours repeat after six series, the glyphs only after eight."""
    chart = Chart("loss", "MSE")
    chart.show([(name, [1, 2, 3], [y, y, y]) for name, y in (("a", 3), ("b", 2), ("c", 1))])
    lines = chart.draw(60, 20).plain.split("\n")
    assert lines[0] == "loss  ▄ a  • b  + c"
    rows = [set(line[line.index("┤") + 1 : -1].strip()) if "┤" in line else set() for line in lines]
    drawn = [r for r in rows if r - set("│")]
    assert len(drawn) == 3  # one row per line, top to bottom: a, b, c
    assert drawn[0] <= set("▄▀▖▗▘▝▚▞▙▛▜▟█▐▌") and drawn[1] == {"•"} and drawn[2] == {"+"}
    chart.show([(f"s{i}", [1, 2], [i, i]) for i in range(8)])
    legend = chart.draw(300, 40).split("\n")[0]
    glyphs = [legend.plain[m.start() - 2] for m in re.finditer(r"s\d", legend.plain)]
    assert len(set(glyphs)) == 8
    looks = {(str(span.style), legend.plain[span.start : span.end]) for span in legend.spans}
    assert len({look for look in looks if look[0] != "bold"}) == 8  # no two series alike


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


# --- the walk: every screen, every size, every key of its key bar ----------------------------

# too small in both, in width, in height; the least size; the largest (where the key bar shows
# every key); the keys are pressed back at KEYS_SIZE (drawing at 300x100 takes seconds a key)
WALK_SIZES = [(20, 8), (63, 40), (120, 17), (64, 18), (300, 100)]
KEYS_SIZE = (80, 24)
WALK_FILE = (
    STUDY
    + STUDIES
    + """
[[studies]]
name = "linear-mean"
run = "ddpm-linear"
kind = "interpolation"
values = [1, 2]
[hosts.gpu1]
address = "gpu1.lab"
"""
)
# screen -> (the run selected, the keys that open it from the runs view, its class)
WALK = {
    "runs": (None, [], RunsScreen),
    "run": ("live", ["o"], RunScreen),
    "zoomed run": ("live", ["o", "z"], RunScreen),
    "compare": (None, ["c"], CompareScreen),
    "study": (STUDY_NAME, ["o"], StudyScreen),
    "zoomed study": (STUDY_NAME, ["o", "z"], StudyScreen),
    "pick": (None, ["a"], PickScreen),
    "host pick": (None, ["a", "space", "enter"], HostPickScreen),
    "study pick": ("ddpm-linear", ["S"], StudyPickScreen),
    "jobs": (None, ["j"], JobsScreen),
    "edit": (None, ["e"], EditScreen),
    "help": (None, ["question_mark"], HelpScreen),
    "palette": (None, ["ctrl+p"], CommandPalette),
}
NOT_PRESSED = ("q", "w")  # q at the end; w writes the report's figures (test_palette_and_report)


async def open_screen(pilot, app, name: str):
    row, keys, cls = WALK[name]
    while len(app.screen_stack) > 1:
        app.pop_screen()
    await pilot.pause()
    if row is not None:
        await select_row(pilot, app, row)
    await pilot.press(*keys)
    await until(pilot, lambda: isinstance(app.screen, cls))
    return app.screen


def bar_keys(screen, own: bool = False) -> list[str]:
    """The keys the key bar of ``screen`` shows (all of them, at 300 columns), as pressed;
    ``own``: only the screen's own, not the app's."""
    if not screen.query(KeyBar):
        return ["escape"]
    keys: dict[str, str] = {}  # action -> its first key
    for key, (node, binding, _on, _tip) in screen.active_bindings.items():
        if binding.show and key not in NOT_PRESSED and (node is screen or not own):
            keys.setdefault(binding.action, key)
    shown = screen.query_one(KeyBar).render().plain
    assert shown.rstrip().endswith("? help q quit"), shown
    return list(keys.values())


def live_runs(runs_dir: Path) -> Path:
    """Two finished runs, a finished study and a run "live" that has not ended (its events
    file, returned, can be appended to)."""
    make_runs(runs_dir)
    make_study(runs_dir)
    shutil.copytree(runs_dir / "ddpm-linear", runs_dir / "live")
    (runs_dir / "live" / "exit.json").unlink()
    events = runs_dir / "live" / "events.jsonl"
    events.write_text("".join(line for line in events.open() if '"end"' not in line))
    return events


async def test_the_walk_every_screen_every_size_every_key(tmp_path):
    """Each screen in turn: resized through WALK_SIZES while the live run writes events, then
    back to KEYS_SIZE, where every key of its key bar is pressed (a screen a key opened is
    closed, a screen a key closed is opened again; a zoomed view has the keys of the view, and
    only its own are pressed again). The app goes on all along, and quits on q with nothing
    queued."""
    runs_dir = tmp_path / "runs"
    events = live_runs(runs_dir)
    (tmp_path / "exp.toml").write_text(WALK_FILE)
    app = make_app(tmp_path / "exp.toml", runs_dir)
    app.poll_every = 0.5  # (the walk's own pace: fewer rounds of the poll thread)
    epoch = 5
    async with app.run_test(size=KEYS_SIZE) as pilot:
        await until(pilot, lambda: app.experiments is not None and app.table.row_count == 4)
        for name in WALK:
            screen = await open_screen(pilot, app, name)
            for w, h in WALK_SIZES:
                append(events, epoch_events([0.1 / epoch], [500.0 / epoch], start=epoch))
                epoch += 1
                await pilot.resize_terminal(w, h)
                await pilot.pause()
                assert app.is_running and app.return_code is None, (name, w, h)
            await until(pilot, lambda s=screen: app.screen is s)  # back from the too-small line
            keys = bar_keys(screen, own=name.startswith("zoomed"))
            await pilot.resize_terminal(*KEYS_SIZE)
            await until(pilot, lambda s=screen: app.screen is s and app.size == KEYS_SIZE)
            for key in keys:
                await pilot.press(key)
                await pilot.pause()
                assert app.is_running and app.return_code is None, (name, key)
                if screen in app.screen_stack:  # a key that opened a screen over this one
                    while app.screen is not screen:
                        app.pop_screen()
                    await pilot.pause()
                else:  # a key that closed this one
                    screen = await open_screen(pilot, app, name)
        while len(app.screen_stack) > 1:
            app.pop_screen()
        await pilot.press("q")
        await until(pilot, lambda: not app.is_running)
    assert app.return_code == 0
    assert Queue.open(runs_dir).queued() == []  # no key queued a finished run or a study


# --- the grid code: any image at any size, and the greys of 16 colours -----------------------


@settings(max_examples=60, deadline=None, phases=(Phase.explicit, Phase.generate), database=None)
@given(
    st.integers(1, 200),
    st.integers(1, 200),
    st.sampled_from(["L", "RGB", "1", "I"]),
    st.integers(0, 300),
    st.integers(0, 100),
    st.sampled_from([HalfBlocks, Shades]),
)
def test_a_grid_draws_any_image_in_any_size(w, h, mode, width, height, cls):
    image = PILImage.effect_noise((w, h), 64).convert(mode)
    lines = cls(image).strips(width, height)
    assert len(lines) == height
    assert all(line.cell_length == width for line in lines)


def test_in_16_colours_a_grid_keeps_more_than_8_greys():
    ramp = PILImage.linear_gradient("L").resize((1, 64))  # black to white, top to bottom
    cells = {(s.text, s.style) for line in Shades(ramp).strips(1, 64) for s in line}
    assert len(cells) >= 8
    assert all(
        s.style.color.name in {n for n, _ in ANSI_GREYS}
        for line in Shades(ramp).strips(1, 64)
        for s in line
    )


async def test_a_grid_follows_its_widget_size_in_the_app(tmp_path):
    """GridView scales the grid to its box, keeping its aspect: resizing redraws it."""
    make_runs(tmp_path / "runs")
    app = make_app(tmp_path / "missing.toml", tmp_path / "runs")
    app.image_class = Shades
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.query_one(RunsTable).row_count == 2)
        await pilot.press("o", "z")
        await until(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.ready)
        image = app.screen.query_one(Shades)
        await until(pilot, lambda: image.size.width > 0)
        big = tuple(image.size)
        await pilot.resize_terminal(80, 24)
        await until(pilot, lambda: tuple(image.size) != big)
        assert image.size.width < big[0] and image.size.height <= image.size.width


async def test_the_event_log_wraps_at_its_width_and_again_when_it_changes(tmp_path):
    """No event line is cut at the log's right edge, at the first width or after a resize."""
    make_runs(tmp_path / "runs")
    app = make_app(tmp_path / "missing.toml", tmp_path / "runs")

    def lines_fit(log) -> bool:
        text = " ".join(" ".join(s.text.split()) for s in log.lines)
        wanted = " ".join(" ".join(t.split()) for t in log.texts)
        width = log.scrollable_content_region.width
        return text == wanted and all(s.cell_length <= width for s in log.lines)

    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.query_one(RunsTable).row_count == 2)
        await pilot.press("o")
        await until(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.ready)
        log = app.screen.query_one("#events")
        await until(pilot, lambda: log.texts and lines_fit(log))
        assert log.max_scroll_x == 0  # no line wider than the log: nothing to scroll to
        wide = log.size.width
        await pilot.resize_terminal(80, 24)  # narrower than its longest lines (73 cells)
        await until(pilot, lambda: log.size.width < wide and lines_fit(log))
        assert log.max_scroll_x == 0
