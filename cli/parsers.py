"""The ``diffui`` command line's arguments: a parser per command, and the checks of option values
that argparse does not make (each a :class:`UserError` in one line: exit 2)."""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.errors import UserError
from engine.spec.checks import ConfigError
from engine.spec.names import safe_name
from engine.text import escape_breaks

MAX_KS_SAMPLES = 1_000_000  # diffui schedules --n (memory is bounded per chunk, time is not)
MAX_JOBS = 256  # --jobs: the local executor makes a slot per job


def default_runs_dir(file: Path, profile: str | None) -> Path:
    return file.resolve().parent / (f"runs-{profile}" if profile else "runs")


def runs_dir_of(args: argparse.Namespace, file: Path = Path("experiments.toml")) -> Path:
    """The runs folder a command works on, resolved here once (workers and the queue service
    run in other folders); a :class:`ConfigError` when it cannot be a folder."""
    if args.profile is not None and not safe_name(args.profile):  # it names runs-PROFILE
        raise ConfigError(
            escape_breaks(
                f"--profile {args.profile}: expected the name of a profile "
                "(letters, digits, '.', '_', '-')"
            )
        )
    runs_dir = (args.runs_dir or default_runs_dir(file, args.profile)).expanduser().resolve()
    return folder_arg("--runs-dir", runs_dir)


def folder_arg(option: str, path: Path) -> Path:
    """``path`` when it is a folder or can be made one; a :class:`UserError` naming
    ``option`` when a file is in the way (it or one of its parents)."""
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                raise UserError(
                    escape_breaks(
                        f"{option} {path}: expected a folder, but "
                        + ("it is a file" if p == path else f"{p} is a file")
                    )
                )
            break
    return path


def check_jobs(args: argparse.Namespace) -> None:
    if getattr(args, "jobs", None) is not None:
        int_arg("--jobs", args.jobs, 1, MAX_JOBS)


def int_arg(option: str, value: int, lo: int, hi: int) -> int:
    if not lo <= value <= hi:
        raise UserError(f"{option}: expected an integer in [{lo}, {hi}], got {value}")
    return value


class OneLineParser(argparse.ArgumentParser):
    """Usage errors as one ``error:`` line (exit 2) rather than argparse's usage block."""

    def error(self, message):
        raise UserError(f"{self.prog}: {message}")


# diffui WORD: one line each for diffui --help (cli.main.SUBCOMMANDS runs them; a test checks
# that the two lists agree)
COMMANDS = (
    ("queue", "add|start|pause|stop|status: the queue of a runs folder, from a shell"),
    ("study", "NAME [FILE]: run one sampling study on a finished run, and follow it"),
    ("schedules", "[FILE] --out DIR: the beta schedules and the KS test of z_t (CSV, PNG, PDF)"),
    ("report", "[RUN ...] --out DIR: figures and report.md from run folders"),
    ("data", "[list|fetch|import DIR]: the datasets diffui trains on"),
    ("hosts", "check [NAME] | install NAME: the file's SSH hosts and clusters"),
    ("claims", "[--runs-dir DIR]: the claims ledger: each claim of the study and whether it holds"),
    ("plan", "[FILE] [--host NAME]: each run's and study's estimated time, before queueing"),
)


def commands_text() -> str:
    width = max(len(w) for w, _ in COMMANDS)
    lines = [f"  {word.ljust(width)}  {text}" for word, text in COMMANDS]
    return "commands (diffui COMMAND --help for their options):\n" + "\n".join(lines)


def main_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="diffui",
        usage="diffui [FILE] [options]  |  diffui --batch [FILE] [options]  |  diffui COMMAND ...",
        description="Diffusion experiment manager: the terminal UI on FILE (default "
        "./experiments.toml),\nor with --batch its runs and studies with no UI.",
        epilog=commands_text(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", nargs="?", default="experiments.toml", help="the experiments file")
    p.add_argument("--batch", action="store_true", help="run the queue with no UI")
    p.add_argument("--profile", help="a named profile of the file, e.g. quick")
    p.add_argument(
        "--only",
        nargs="+",
        metavar="NAME",
        help="run only these experiments or runs (the UI shows only them)",
    )
    p.add_argument("--runs-dir", type=Path, help="where run folders go")
    p.add_argument("--jobs", type=int, help="runs at once (default 1; the UI keeps the last value)")
    p.add_argument("--host", help="run everything on this host ('local' or a [hosts] table)")
    p.add_argument(
        "--images",
        choices=("auto", "halfcell", "sixel", "tgp"),
        default="auto",
        help="how the UI draws sample grids: half-block characters (any terminal) or "
        "a graphics protocol; auto asks the terminal (default)",
    )
    p.add_argument(
        "--colors",
        choices=("16", "256", "truecolor"),
        help="the colours the UI uses (default: what the terminal says; NO_COLOR=1 for none); "
        "in 16 colours sample grids are drawn in shade glyphs",
    )
    return p


def schedules_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="diffui schedules",
        description="Schedule values and the KS test of z_t against N(0, 1).",
    )
    p.add_argument("file", nargs="?", default="experiments.toml")
    p.add_argument("--out", type=Path, required=True, help="folder for the CSV, PNG and PDF files")
    p.add_argument("--profile")
    p.add_argument("--n", type=int, default=2000, help="samples per KS test (default 2000)")
    p.add_argument("--seed", type=int, default=0)
    return p


def study_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="diffui study",
        description="Run one sampling study of the "
        "experiments file on its finished run, and follow it.",
    )
    p.add_argument("name", help="the study's name ([[studies]] name = ...)")
    p.add_argument("file", nargs="?", default="experiments.toml")
    p.add_argument("--profile")
    p.add_argument("--runs-dir", type=Path)
    p.add_argument("--jobs", type=int, help="runs at once (kept in the queue)")
    p.add_argument("--host", help="run it on this host ('local' or a [hosts] table)")
    return p


def queue_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="diffui queue",
        description="The queue of a runs folder, from a shell. Its service "
        "(one detached process per runs folder) starts the queued runs and goes on when the "
        "terminal closes.",
    )
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = sub.add_parser(
        "add",
        help="queue runs of an experiments file (the queue stays paused or started as it was)",
    )
    add.add_argument("file", nargs="?", default="experiments.toml")
    add.add_argument("--only", nargs="+", metavar="NAME", help="only these experiments or runs")
    add.add_argument("--host", help="queue them for this host ('local' or a [hosts] table)")
    for name, text in (
        ("start", "start the queue (starts its service)"),
        ("pause", "start nothing new; running runs go on"),
        (
            "stop",
            "pause, and stop the running runs (resumable; they go back to the front of the queue)",
        ),
        ("status", "the queue and its runs as a table"),
    ):
        sub.add_parser(name, help=text)
    for action in sub.choices.values():
        action.add_argument("--profile", help="the runs of this profile (runs-PROFILE/)")
        action.add_argument(
            "--runs-dir",
            type=Path,
            help="the runs folder (default: runs/ beside the experiments file)",
        )
        action.add_argument("--jobs", type=int, help="runs at once (kept in the queue)")
    return p


def report_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="diffui report",
        description="Figures (PNG and PDF), report.md and report.pdf of runs.",
    )
    p.add_argument("runs", nargs="*", metavar="RUN", help="run names (default: every run)")
    p.add_argument(
        "--runs-dir",
        type=Path,
        default=Path("runs"),
        help="the folder holding the run folders (default ./runs)",
    )
    p.add_argument("--out", type=Path, required=True, help="folder for the report")
    return p


def claims_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="diffui claims",
        description="The claims ledger: each claim of the study, what the runs measured, and "
        "whether it holds.",
    )
    p.add_argument(
        "--runs-dir",
        type=Path,
        default=Path("runs"),
        help="the folder holding the run folders (default ./runs)",
    )
    p.add_argument(
        "--schedules",
        type=Path,
        help="the folder of diffui schedules' tables (default RUNS/schedules)",
    )
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    return p


def data_parser() -> argparse.ArgumentParser:
    from engine.data.datasets import DATASETS  # (imports torch: only for diffui data)

    p = OneLineParser(
        prog="diffui data",
        description="MNIST and FashionMNIST in diffui's data folder "
        "($DIFFUI_DATA_DIR or the user data folder).",
    )
    sub = p.add_subparsers(dest="action", metavar="{list,fetch,import}")
    sub.add_parser("list", help="which source each dataset and split comes from (the default)")
    f = sub.add_parser("fetch", help="download through torchvision into the data folder")
    f.add_argument("dataset", nargs="?", choices=DATASETS, help="default: both")
    i = sub.add_parser("import", help="copy IDX files (plain or .gz) into the data folder")
    i.add_argument("dir", type=Path, help="a folder of IDX files, or torchvision's root folder")
    i.add_argument(
        "--as",
        dest="as_name",
        choices=DATASETS,
        help="the dataset of the files directly in DIR (default: from its name)",
    )
    return p


def hosts_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="diffui hosts",
        description="The [hosts] tables of the experiments "
        "file reached over SSH (GPU boxes, and clusters' login nodes): what each "
        "host has, and diffui installed on it.",
    )
    sub = p.add_subparsers(dest="action", required=True, metavar="{check,install}")
    c = sub.add_parser(
        "check",
        help="reachable, python, diffui, torch and CUDA, GPUs (a "
        "cluster: its Slurm), free disk and datasets of each host "
        "(or of NAME), as a table",
    )
    c.add_argument("name", nargs="?", help="one host (default: all)")
    i = sub.add_parser(
        "install",
        help="build a wheel of this diffui, pip install it into the "
        "host's python, copy the datasets it lacks",
    )
    i.add_argument("name", help="the host")
    i.add_argument(
        "--torch-index",
        default="",
        metavar="URL",
        help="pip install torch from this index first, to choose its build (e.g. "
        "https://download.pytorch.org/whl/cu121 for CUDA 12.1, .../whl/cpu for none); "
        "default: the host's package index",
    )
    for action in (c, i):
        action.add_argument(
            "--file",
            "-f",
            type=Path,
            default=Path("experiments.toml"),
            help="the experiments file (default ./experiments.toml)",
        )
    return p


def plan_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="diffui plan",
        description="The estimated wall time of each run and study on each allowed host "
        "(from a short calibration of its network, cached per host and device), the total, "
        "and the critical path on the hosts' slots.",
    )
    p.add_argument("file", nargs="?", default="experiments.toml")
    p.add_argument("--profile", help="a named profile of the file, e.g. quick")
    p.add_argument("--host", help="everything on this host ('local' or a [hosts] table)")
    p.add_argument("--jobs", type=int, default=1, help="runs at once here (default 1)")
    p.add_argument(
        "--recalibrate",
        action="store_true",
        help="measure this machine's calibrations of the file's runs again (e.g. the cached "
        "ones were measured on a busy machine)",
    )
    return p
