"""The ``diffui`` command line.

    diffui [FILE] [--profile NAME] [--runs-dir DIR] [--jobs N] [--images MODE]   (the terminal UI)
    diffui --batch [FILE] [--profile NAME] [--only NAME ...] [--runs-dir DIR] [--jobs N]
    diffui queue add [FILE] [--profile NAME] [--only NAME ...] [--runs-dir DIR]
    diffui queue start|pause|stop|status [--profile NAME] [--runs-dir DIR] [--jobs N]
    diffui study NAME [FILE] [--profile NAME] [--runs-dir DIR] [--jobs N]
    diffui schedules [FILE] --out DIR [--profile NAME] [--n N] [--seed S]
    diffui report [--runs-dir DIR] [RUN ...] --out DIR
    diffui claims [--runs-dir DIR] [--schedules DIR] [--markdown]
    diffui data [list] | data fetch [mnist|fashion_mnist] | data import DIR [--as NAME]
    diffui hosts check [NAME] [--file FILE] | hosts install NAME [--torch-index URL] [--file FILE]
    diffui plan [FILE] [--profile NAME] [--host NAME] [--jobs N]

FILE defaults to ./experiments.toml. Runs go to ``runs/`` beside FILE (``runs-<profile>/`` for
a profile) unless --runs-dir says otherwise. Bad input prints one line and exits with 2;
``diffui data`` exits with 1 when a download fails or a file does not parse; ``diffui hosts``
with 1 when a host cannot be used.

The arguments are :mod:`cli.parsers`; the commands about runs and their queue
:mod:`cli.commands` (through :mod:`engine.usecases`), the others :mod:`cli.tools`.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys

from cli import parsers
from engine.errors import UserError
from engine.files import os_error_line
from engine.text import escape_breaks

EXIT_USAGE = 2
EXIT_FAILED = 1  # a run failed, a download failed, or the disk refused a write
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what `git log | head` gives: the reader closed the pipe

# diffui WORD ...: the parser and the command of each word ("module.function": the commands'
# modules are imported only for their word, so that the UI starts without them)
SUBCOMMANDS = {
    "data": (parsers.data_parser, "tools.cmd_data"),
    "schedules": (parsers.schedules_parser, "tools.cmd_schedules"),
    "report": (parsers.report_parser, "tools.cmd_report"),
    "claims": (parsers.claims_parser, "tools.cmd_claims"),
    "queue": (parsers.queue_parser, "commands.cmd_queue"),
    "hosts": (parsers.hosts_parser, "tools.cmd_hosts"),
    "study": (parsers.study_parser, "commands.cmd_study"),
    "plan": (parsers.plan_parser, "tools.cmd_plan"),
}


def command_of(name: str):
    """The function ``module.function`` of :mod:`cli`, its module imported now."""
    module, _, function = name.partition(".")
    return getattr(importlib.import_module(f"cli.{module}"), function)


def main(argv: list[str] | None = None) -> int:
    """The command; ``argv`` None: the real command line (then an interrupted command exits at
    once, see :func:`_exit_now`)."""
    rc = _main(sys.argv[1:] if argv is None else argv)
    if argv is None and rc == EXIT_INTERRUPTED:
        _exit_now(rc)
    return rc


def _main(argv: list[str]) -> int:
    try:
        if argv[:1] and argv[0] in SUBCOMMANDS:
            parser, command = SUBCOMMANDS[argv[0]]
            return command_of(command)(parser().parse_args(argv[1:]))
        args = parsers.main_parser().parse_args(argv)
        parsers.check_jobs(args)
        if args.batch:
            return command_of("commands.cmd_batch")(args)
        from cli.ui import cmd_ui  # (Textual and the UI's modules: not the commands')

        return cmd_ui(args)
    except UserError as e:
        print(f"error: {escape_breaks(str(e))}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # `diffui claims | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return EXIT_BROKEN_PIPE
    except OSError as e:  # a full or read-only disk; atomic writes leave no half-written file
        print(f"error: {escape_breaks(os_error_line(e))}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:  # Ctrl-C before any run started (batch mode stops its own runs)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # (a second one is not a traceback)
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _exit_now(rc: int) -> None:
    """Leave without the interpreter's clean-up: after a Ctrl-C in the middle of a torch
    operation (the FID classifier's training) that clean-up was seen to hang for minutes on a
    loaded machine (garbage-collecting beside torch's own threads). Every file diffui writes is
    written atomically and the runs are stopped by then; only stdout and stderr need flushing."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(rc)


if __name__ == "__main__":
    sys.exit(main())
