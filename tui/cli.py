"""The ``diffui`` command line.

    diffui [FILE] [--profile NAME] [--runs-dir DIR] [--jobs N] [--images MODE]   (the terminal UI)
    diffui --batch [FILE] [--profile NAME] [--only NAME ...] [--runs-dir DIR] [--jobs N]
    diffui schedules [FILE] --out DIR [--profile NAME] [--n N] [--seed S]
    diffui report [--runs-dir DIR] [RUN ...] --out DIR

FILE defaults to ./experiments.toml. Runs go to ``runs/`` beside FILE (``runs-<profile>/`` for
a profile) unless --runs-dir says otherwise. Bad input prints one line and exits with 2.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.config import ConfigError, load_study, select

EXIT_USAGE = 2


def default_runs_dir(file: Path, profile: str | None) -> Path:
    return file.resolve().parent / (f"runs-{profile}" if profile else "runs")


def _main_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="diffui", description="Diffusion experiment manager.",
                                epilog="Also: diffui schedules [FILE] --out DIR; "
                                       "diffui report [--runs-dir DIR] [RUN ...] --out DIR")
    p.add_argument("file", nargs="?", default="experiments.toml", help="the experiments file")
    p.add_argument("--batch", action="store_true", help="run the queue with no UI")
    p.add_argument("--profile", help="a named profile of the file, e.g. quick")
    p.add_argument("--only", nargs="+", metavar="NAME", help="run only these experiments or runs")
    p.add_argument("--runs-dir", type=Path, help="where run folders go")
    p.add_argument("--jobs", type=int, help="runs at once (default 1; the UI keeps the last value)")
    p.add_argument("--images", choices=("auto", "halfcell", "sixel", "tgp"), default="auto",
                   help="how the UI draws sample grids: half-block characters (any terminal) or "
                        "a graphics protocol; auto asks the terminal (default)")
    return p


def _schedules_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="diffui schedules",
                                description="Schedule values and the KS test of z_t against N(0, 1).")
    p.add_argument("file", nargs="?", default="experiments.toml")
    p.add_argument("--out", type=Path, required=True, help="folder for the CSV and PNG files")
    p.add_argument("--profile")
    p.add_argument("--n", type=int, default=2000, help="samples per KS test (default 2000)")
    p.add_argument("--seed", type=int, default=0)
    return p


def _report_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="diffui report",
                                description="Figures (PNG) and a Markdown report of runs.")
    p.add_argument("runs", nargs="*", metavar="RUN", help="run names (default: every run)")
    p.add_argument("--runs-dir", type=Path, default=Path("runs"),
                   help="the folder holding the run folders (default ./runs)")
    p.add_argument("--out", type=Path, required=True, help="folder for the report")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv[:1] == ["schedules"]:
            return cmd_schedules(_schedules_parser().parse_args(argv[1:]))
        if argv[:1] == ["report"]:
            return cmd_report(_report_parser().parse_args(argv[1:]))
        args = _main_parser().parse_args(argv)
        if args.jobs is not None and args.jobs < 1:
            raise ConfigError(f"--jobs: expected an integer >= 1, got {args.jobs}")
        return cmd_batch(args) if args.batch else cmd_ui(args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE


def cmd_batch(args: argparse.Namespace) -> int:
    from engine.metrics import MetricsError, prepare_evaluation
    from engine.queue import prepare_runs
    from .batch import run_batch

    file = Path(args.file)
    study = load_study(file, args.profile)
    specs = select(study, args.only)
    runs_dir = args.runs_dir or default_runs_dir(file, args.profile)
    runs = prepare_runs(specs, runs_dir)
    try:
        prepare_evaluation([r.spec() for r in runs if r.status().state != "finished"], log=print)
    except MetricsError as e:
        raise ConfigError(f"{file.name}: evaluation.backbone: {e}") from None
    return run_batch(runs, jobs=args.jobs or 1)


def cmd_ui(args: argparse.Namespace) -> int:
    """The terminal UI. A broken experiments file is shown inside it, not refused here."""
    from .widgets import image_widget_class
    image_class = image_widget_class(args.images)  # may query the terminal: before the app runs
    from .app import DiffuiApp

    file = Path(args.file)
    app = DiffuiApp(file, args.runs_dir or default_runs_dir(file, args.profile),
                    profile=args.profile, image_class=image_class, jobs=args.jobs)
    app.run()
    return app.return_code or 0


def cmd_schedules(args: argparse.Namespace) -> int:
    from engine import data
    from engine.ks import write_schedule_study
    from engine.schedules import from_spec

    if args.n < 2:
        raise ConfigError(f"--n: expected an integer >= 2, got {args.n}")
    study = load_study(Path(args.file), args.profile)
    schedules, names = [], []
    for run in study.runs:
        sched = from_spec(run.schedule)
        name = sched.kind
        if any(s.kind == sched.kind and not (s.betas.equal(sched.betas)) for s in schedules):
            name = f"{sched.kind}-{run.name}"
        if name not in names:
            schedules.append(sched)
            names.append(name)
    try:
        ds = data.load_configured(study.runs[0].data)
    except data.DataUnavailable as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    first = write_schedule_study(schedules, data.to_model(ds.images), args.out, n=args.n,
                                 seed=args.seed, names=names)
    for name, t in first.items():
        when = f"t = {t}" if t is not None else "never"
        print(f"{name}: z_t indistinguishable from N(0, 1) (KS, p > 0.05) first at {when}")
    print(f"wrote schedules.csv, ks.csv, ks_summary.csv, schedules.png, ks.png to {args.out}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from engine.report import write_report
    from engine.runs import Run, iter_runs

    if args.runs:
        runs = [Run(args.runs_dir / name) for name in args.runs]
        missing = [r.name for r in runs if not r.exists()]
        if missing:
            raise ConfigError(f"{args.runs_dir}: no run folder {', '.join(missing)} "
                              "(expected folders holding a config.toml)")
    else:
        runs = list(iter_runs(args.runs_dir))
        if not runs:
            raise ConfigError(f"{args.runs_dir}: no run folders in it (use --runs-dir)")
    if sys.stdout.isatty():
        with _FigureBar() as bar:
            path = write_report(runs, args.out, progress=bar)
    else:  # a log file or a pipe: the one line below only
        path = write_report(runs, args.out)
    print(f"wrote {path} and {len(list(args.out.glob('*.png')))} figures")
    return 0


class _FigureBar:
    """A rich progress bar (figures done / total, ETA) as a ``progress(done, total)`` callback."""

    def __enter__(self):
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeRemainingColumn)

        self.bar = Progress(TextColumn("report figures"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("eta"), TimeRemainingColumn())
        self.task = self.bar.add_task("figures", total=None)
        self.bar.start()
        return self

    def __call__(self, done: int, total: int) -> None:
        self.bar.update(self.task, completed=done, total=total)

    def __exit__(self, *exc) -> None:
        self.bar.stop()


if __name__ == "__main__":
    sys.exit(main())
