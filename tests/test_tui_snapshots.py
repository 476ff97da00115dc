"""What the UI looks like at fixed terminal sizes (SVG snapshots in tests/__snapshots__).

Update them after an intended change of the UI with ``pytest tests/test_tui_snapshots.py
--snapshot-update`` and look at the SVG files before committing them."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import until
from test_tui import select_row
from textual_image.widget import HalfcellImage
from tui_runs import STUDY, STUDY_NAME, make_runs, make_study

from tui.app import DiffuiApp
from tui.screens import CompareScreen, RunScreen, StudyScreen
from tui.widgets import RunsTable


@pytest.fixture
def app(tmp_path, monkeypatch):
    """The app over two finished runs with fixed numbers, its folders named relative to the
    test's folder and times shown in UTC, so that every pixel is the same on each run."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    make_runs(Path("runs"))
    Path("experiments.toml").write_text(STUDY)
    yield DiffuiApp(
        Path("experiments.toml"), Path("runs"), image_class=HalfcellImage, poll_every=0.1
    )
    monkeypatch.undo()
    time.tzset()


def measured(table, rows: int) -> bool:
    """Whether the table has its rows and has measured them: a DataTable sizes its columns
    to new rows when it is next idle, which on a busy machine comes after the rows do."""
    return table.row_count == rows and not table._require_update_dimensions


async def rows_shown(pilot):
    await until(pilot, lambda: measured(pilot.app.query_one(RunsTable), 2))


def test_runs_view_80x24(snap_compare, app):
    assert snap_compare(app, terminal_size=(80, 24), run_before=rows_shown)


def test_run_view_80x24(snap_compare, app):
    async def open_run(pilot):
        await rows_shown(pilot)
        await pilot.press("enter")
        await until(pilot, lambda: getattr(pilot.app.screen, "ready", False))
        await pilot.press("left_square_bracket")

    assert snap_compare(app, terminal_size=(80, 24), run_before=open_run)


def test_run_view_zoomed_grid_120x40(snap_compare, app):
    async def zoom(pilot):
        await rows_shown(pilot)
        await pilot.press("enter")
        await until(
            pilot, lambda: isinstance(pilot.app.screen, RunScreen) and pilot.app.screen.ready
        )
        await pilot.press("z")
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=(120, 40), run_before=zoom)


def test_compare_view_100x30(snap_compare, app):
    async def compare(pilot):
        await rows_shown(pilot)
        await pilot.press("c")
        await until(
            pilot,
            lambda: (
                isinstance(pilot.app.screen, CompareScreen)
                and measured(pilot.app.screen.query_one("#compare-table"), 2)
            ),
        )

    assert snap_compare(app, terminal_size=(100, 30), run_before=compare)


async def open_study(pilot):
    """The study view, its grids read, at its second value (λ = 0.1)."""
    await until(pilot, lambda: pilot.app.query_one(RunsTable).row_count == 3)
    await select_row(pilot, pilot.app, STUDY_NAME)
    await pilot.press("enter")
    await until(
        pilot,
        lambda: (
            isinstance(pilot.app.screen, StudyScreen)
            and pilot.app.screen.ready
            and len(pilot.app.screen.grids) == 3
        ),
    )
    await pilot.press("left", "left", "left", "right")
    await pilot.pause(0.3)


def test_study_view_100x30(snap_compare, app):
    make_study(Path("runs"))
    assert snap_compare(app, terminal_size=(100, 30), run_before=open_study)


SIZES = [(80, 24), (120, 40)]


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_study_view_at_one_value(snap_compare, app, size):
    make_study(Path("runs"))
    assert snap_compare(app, terminal_size=size, run_before=open_study)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_pick_dialog_nothing_ticked(snap_compare, app, size):
    async def pick(pilot):
        await rows_shown(pilot)
        await until(pilot, lambda: pilot.app.experiments is not None)
        await pilot.press("a")
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=size, run_before=pick)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_help_of_the_runs_view(snap_compare, app, size):
    async def help(pilot):
        await rows_shown(pilot)
        await pilot.press("question_mark")
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=size, run_before=help)


@pytest.mark.parametrize("size", [(60, 20), (120, 16)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_too_small(snap_compare, app, size):
    assert snap_compare(app, terminal_size=size)


def test_too_small_40x12(snap_compare, app):
    assert snap_compare(app, terminal_size=(40, 12))
