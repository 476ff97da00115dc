"""The docs' screenshots of the UI (docs/ui/), taken headless (Textual's run_test) over real
run folders.

    python docs/screenshots.py RUNS_DIR [--file experiments.toml] [--profile quick] [--out docs/ui]

Writes runs.svg (the runs view, 100x30), help.svg (its help screen, ``?``, 100x30), run.svg
(the view of --run, 100x30), compare.svg (every run compared, 120x36) and, when RUNS_DIR has its
folder, study.svg (the view of the sampling study --study, 100x30). Grids are drawn in half
blocks, as ``diffui --images halfcell`` draws them. Look at each one before committing it (e.g.
``rsvg-convert docs/ui/run.svg -o /tmp/run.png``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tui.app import DiffuiApp  # noqa: E402
from tui.pixels import HalfBlocks  # noqa: E402
from tui.screens import CompareScreen, HelpScreen, RunScreen, StudyScreen  # noqa: E402


async def shoot(args, size, keys, ready, name, row=None) -> None:
    app = DiffuiApp(args.file, args.runs_dir, profile=args.profile, image_class=HalfBlocks)
    async with app.run_test(size=size) as pilot:
        while app.table.row_count == 0 or (row and row not in app.snapshot):
            await pilot.pause(0.1)
        if row or args.run:
            app.table.move_cursor(row=app.table.get_row_index(row or args.run))
        for key in keys:
            await pilot.press(key)
        while not ready(app):
            await pilot.pause(0.1)
        await pilot.pause(0.5)
        app.save_screenshot(str(args.out / f"{name}.svg"))
    print(f"wrote {args.out / name}.svg")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs_dir", type=Path)
    ap.add_argument("--file", type=Path, default=Path("experiments.toml"))
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--out", type=Path, default=Path("docs/ui"))
    ap.add_argument("--run", default="morph-cosine", help="the run shown in run.svg")
    ap.add_argument("--study", default="morph-cosine-noise", help="the study in study.svg")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    asyncio.run(shoot(args, (100, 30), [], lambda app: True, "runs"))
    asyncio.run(
        shoot(
            args,
            (100, 30),
            ["enter"],
            lambda app: isinstance(app.screen, RunScreen) and app.screen.ready,
            "run",
        )
    )
    asyncio.run(
        shoot(
            args,
            (100, 30),
            ["question_mark"],
            lambda app: isinstance(app.screen, HelpScreen),
            "help",
        )
    )
    asyncio.run(
        shoot(
            args,
            (120, 36),
            ["c"],
            lambda app: isinstance(app.screen, CompareScreen) and app.screen.ready,
            "compare",
        )
    )
    if (args.runs_dir / "studies" / args.study / "config.toml").is_file():
        asyncio.run(
            shoot(
                args,
                (100, 30),
                ["enter"],
                lambda app: (
                    isinstance(app.screen, StudyScreen)
                    and app.screen.ready
                    and len(app.screen.grids) == len(app.screen.spec.values)
                ),
                "study",
                row=f"studies/{args.study}",
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
