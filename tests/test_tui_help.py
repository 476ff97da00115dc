"""The UI explains itself: the key bar (what fits, in priority order, always ending with ``? help``
and ``q quit``) and the help screen (``?`` or F1: the current screen's keys, grouped, one sentence
each; enter runs the chosen one, escape closes)."""

from __future__ import annotations

from conftest import until
from test_tui import make_app, select_row
from textual.widgets import OptionList
from tui_runs import make_runs

from tui.runs_screen import RunsScreen
from tui.screens import HelpScreen, RunScreen
from tui.widgets import KeyBar, RunsTable


def bar(app) -> str:
    return app.screen.query_one(KeyBar).render().plain.rstrip()


async def started(tmp_path, pilot, app) -> None:
    await until(pilot, lambda: app.query_one(RunsTable).row_count == 2)


async def test_the_key_bar_fits_and_ends_with_help_and_quit(tmp_path):
    make_runs(tmp_path / "runs")
    app = make_app(tmp_path / "missing.toml", tmp_path / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        await started(tmp_path, pilot, app)
        line = bar(app)
        assert line.startswith("K/J move in queue o open")  # the screen's own keys first
        assert line.endswith("? help q quit") and len(line) <= 80
        assert "K up" not in line and "J down" not in line
        await pilot.press("o")
        await until(pilot, lambda: isinstance(app.screen, RunScreen))
        line = bar(app)
        assert line.startswith("[ ◀ grid ] grid ▶ z zoom grid esc back")
        assert line.endswith("? help q quit")
        await pilot.resize_terminal(200, 30)
        await pilot.pause()
        assert "l reload" in bar(app)  # room for every key
        await pilot.resize_terminal(64, 18)
        await pilot.pause()
        assert bar(app).endswith("? help q quit") and "l reload" not in bar(app)


async def test_help_lists_the_screens_keys_and_runs_the_chosen_one(tmp_path):
    make_runs(tmp_path / "runs")
    app = make_app(tmp_path / "missing.toml", tmp_path / "runs")
    async with app.run_test(size=(120, 40)) as pilot:
        await started(tmp_path, pilot, app)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        groups = dict(app.screen.groups)
        assert list(groups) == ["this screen", "every screen"]
        here = {row[0]: row[1:3] for row in groups["this screen"]}
        assert here["o"] == ("open", here["o"][1]) and here["o"][1].startswith("charts, sample")
        assert here["K"] == ("move in queue", here["K"][1]) and "front" in here["K"][1]
        assert here["J"] == ("move in queue", here["J"][1]) and "back" in here["J"][1]
        assert {row[1] for row in groups["every screen"]} >= {"add", "help", "quit"}
        assert all(row[2] for rows in groups.values() for row in rows)  # a sentence each
        await pilot.press("escape")
        assert isinstance(app.screen, RunsScreen)

        await select_row(pilot, app, "ddpm-cosine")
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        options = app.screen.query_one(OptionList)
        k = next(k for k, (action, _) in enumerate(app.screen.choices) if action == "open")
        index = options.get_option_index(str(k))
        options.highlighted = index
        await pilot.press("enter")  # runs "open"
        await until(pilot, lambda: isinstance(app.screen, RunScreen))
        assert app.screen.run_name == "ddpm-cosine"
        await pilot.press("question_mark")
        rows = dict(app.screen.groups)["this screen"]
        assert [set(r[0].split(", ")) for r in rows][:2] == [{"[", "←"}, {"]", "→"}]
        keys = {r[1]: r[0] for r in dict(app.screen.groups)["every screen"]}
        assert keys["help"] == "?, f1" and set(keys["quit"].split(", ")) == {"q", "^q"}
        await pilot.press("escape", "escape")
        assert isinstance(app.screen, RunsScreen)


async def test_the_palette_offers_the_help_instead_of_textuals_keys_panel(tmp_path):
    make_runs(tmp_path / "runs")
    app = make_app(tmp_path / "missing.toml", tmp_path / "runs")
    async with app.run_test(size=(100, 30)) as pilot:
        await started(tmp_path, pilot, app)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Keys" not in titles
        assert "Keys of this screen  [?,f1]" in titles
        await pilot.press("ctrl+p")
        await pilot.press(*"Keys of this")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, RunsScreen))


async def test_a_click_on_a_key_bar_entry_runs_it(tmp_path):
    make_runs(tmp_path / "runs")
    app = make_app(tmp_path / "missing.toml", tmp_path / "runs")
    async with app.run_test(size=(100, 30)) as pilot:
        await started(tmp_path, pilot, app)
        await select_row(pilot, app, "ddpm-cosine")
        at = bar(app).index("o open")
        await pilot.click(KeyBar, offset=(at + 2, 0))
        await until(pilot, lambda: isinstance(app.screen, RunScreen))
        assert app.screen.run_name == "ddpm-cosine"
        await pilot.click(KeyBar, offset=(bar(app).index("? help") + 1, 0))
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
