"""``diffui`` with no command word: the terminal UI. Apart from :mod:`cli.commands` so that the
UI starts without importing what the other commands need (the queue service, the report)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from cli.parsers import runs_dir_of


def cmd_ui(args: argparse.Namespace) -> int:
    """The terminal UI. A broken experiments file is shown inside it, not refused here."""
    if args.colors:  # read when Textual is imported
        os.environ["TEXTUAL_COLOR_SYSTEM"] = {"16": "standard"}.get(args.colors, args.colors)
    from tui import terminal

    # what the terminal can draw: asked now, answered while Textual and the app are imported
    asked = terminal.question() if args.images != "halfcell" else None
    try:
        from tui.app import DiffuiApp
        from tui.widgets import image_widget_class
    finally:
        answer = asked.answer() if asked else terminal.Answer()
    image_class = image_widget_class(args.images, args.colors or "256", answer)

    file = Path(args.file)
    app = DiffuiApp(
        file,
        runs_dir_of(args, file),
        profile=args.profile,
        image_class=image_class,
        jobs=args.jobs,
        only=args.only,
    )
    app.run()
    return app.return_code or 0
