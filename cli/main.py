"""The ``diffui`` command line.

    diffui [FILE] [--profile NAME] [--runs-dir DIR] [--jobs N] [--images MODE]   (the terminal UI)
    diffui --batch [FILE] [--profile NAME] [--only NAME ...] [--runs-dir DIR] [--jobs N]
    diffui queue add [FILE] [--profile NAME] [--only NAME ...] [--runs-dir DIR]
    diffui queue start|pause|stop|status [--profile NAME] [--runs-dir DIR] [--jobs N]
    diffui study NAME [FILE] [--profile NAME] [--runs-dir DIR] [--jobs N]
    diffui schedules [FILE] --out DIR [--profile NAME] [--n N] [--seed S]
    diffui report [--runs-dir DIR] [RUN ...] --out DIR
    diffui data [list] | data fetch [mnist|fashion_mnist] | data import DIR [--as NAME]
    diffui hosts check [NAME] [--file FILE] | hosts install NAME [--file FILE]

FILE defaults to ./experiments.toml. Runs go to ``runs/`` beside FILE (``runs-<profile>/`` for
a profile) unless --runs-dir says otherwise. Bad input prints one line and exits with 2;
``diffui data`` exits with 1 when a download fails or a file does not parse; ``diffui hosts``
with 1 when a host cannot be used.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.errors import UserError
from engine.spec.checks import ConfigError
from engine.spec.experiments import load_experiments, override_host, select
from engine.spec.names import safe_name
from engine.text import escape_breaks

EXIT_USAGE = 2
EXIT_FAILED = 1  # a run failed, a download failed, or the disk refused a write
EXIT_INTERRUPTED = 130
MAX_KS_SAMPLES = 1_000_000  # diffui schedules --n (memory is bounded per chunk, time is not)
MAX_JOBS = 256  # --jobs: the local executor makes a slot per job


def default_runs_dir(file: Path, profile: str | None) -> Path:
    return file.resolve().parent / (f"runs-{profile}" if profile else "runs")


def runs_dir_of(args: argparse.Namespace, file: Path = Path("experiments.toml")) -> Path:
    """The runs folder a command works on, resolved here once (workers and the queue service
    run in other folders); a :class:`ConfigError` when it cannot be a folder."""
    if args.profile is not None and not safe_name(args.profile):  # it names runs-PROFILE
        raise ConfigError(escape_breaks(f"--profile {args.profile}: expected the name of a profile "
                                   "(letters, digits, '.', '_', '-')"))
    runs_dir = (args.runs_dir or default_runs_dir(file, args.profile)).expanduser().resolve()
    return folder_arg("--runs-dir", runs_dir)


def folder_arg(option: str, path: Path) -> Path:
    """``path`` when it is a folder or can be made one; a :class:`UserError` naming
    ``option`` when a file is in the way (it or one of its parents)."""
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                raise UserError(escape_breaks(f"{option} {path}: expected a folder, but "
                                           + ("it is a file" if p == path else f"{p} is a file")))
            break
    return path


def int_arg(option: str, value: int, lo: int, hi: int) -> int:
    if not lo <= value <= hi:
        raise UserError(f"{option}: expected an integer in [{lo}, {hi}], got {value}")
    return value


class _OneLineParser(argparse.ArgumentParser):
    """Usage errors as one ``error:`` line (exit 2) rather than argparse's usage block."""

    def error(self, message):
        raise UserError(f"{self.prog}: {message}")


def _main_parser() -> argparse.ArgumentParser:
    p = _OneLineParser(prog="diffui", description="Diffusion experiment manager.",
                       epilog="Also: diffui queue add|start|pause|stop|status; "
                              "diffui schedules [FILE] --out DIR; "
                              "diffui report [--runs-dir DIR] [RUN ...] --out DIR; "
                              "diffui data [list|fetch|import]; "
                              "diffui hosts check|install")
    p.add_argument("file", nargs="?", default="experiments.toml", help="the experiments file")
    p.add_argument("--batch", action="store_true", help="run the queue with no UI")
    p.add_argument("--profile", help="a named profile of the file, e.g. quick")
    p.add_argument("--only", nargs="+", metavar="NAME", help="run only these experiments or runs")
    p.add_argument("--runs-dir", type=Path, help="where run folders go")
    p.add_argument("--jobs", type=int, help="runs at once (default 1; the UI keeps the last value)")
    p.add_argument("--host", help="run everything on this host ('local' or a [hosts] table)")
    p.add_argument("--images", choices=("auto", "halfcell", "sixel", "tgp"), default="auto",
                   help="how the UI draws sample grids: half-block characters (any terminal) or "
                        "a graphics protocol; auto asks the terminal (default)")
    return p


def _schedules_parser() -> argparse.ArgumentParser:
    p = _OneLineParser(prog="diffui schedules",
                       description="Schedule values and the KS test of z_t against N(0, 1).")
    p.add_argument("file", nargs="?", default="experiments.toml")
    p.add_argument("--out", type=Path, required=True, help="folder for the CSV and PNG files")
    p.add_argument("--profile")
    p.add_argument("--n", type=int, default=2000, help="samples per KS test (default 2000)")
    p.add_argument("--seed", type=int, default=0)
    return p


def _study_parser() -> argparse.ArgumentParser:
    p = _OneLineParser(prog="diffui study", description="Run one sampling study of the "
                       "experiments file on its finished run, and follow it.")
    p.add_argument("name", help="the study's name ([[studies]] name = ...)")
    p.add_argument("file", nargs="?", default="experiments.toml")
    p.add_argument("--profile")
    p.add_argument("--runs-dir", type=Path)
    p.add_argument("--jobs", type=int, help="runs at once (kept in the queue)")
    p.add_argument("--host", help="run it on this host ('local' or a [hosts] table)")
    return p


def _queue_parser() -> argparse.ArgumentParser:
    p = _OneLineParser(
        prog="diffui queue", description="The queue of a runs folder, from a shell. Its service "
        "(one detached process per runs folder) starts the queued runs and goes on when the "
        "terminal closes.")
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = sub.add_parser("add", help="queue runs of an experiments file (the queue stays "
                                     "paused or started as it was)")
    add.add_argument("file", nargs="?", default="experiments.toml")
    add.add_argument("--only", nargs="+", metavar="NAME", help="only these experiments or runs")
    add.add_argument("--host", help="queue them for this host ('local' or a [hosts] table)")
    for name, text in (("start", "start the queue (starts its service)"),
                       ("pause", "start nothing new; running runs go on"),
                       ("stop", "pause, and stop the running runs (resumable; they go back "
                                "to the front of the queue)"),
                       ("status", "the queue and its runs as a table")):
        sub.add_parser(name, help=text)
    for action in sub.choices.values():
        action.add_argument("--profile", help="the runs of this profile (runs-PROFILE/)")
        action.add_argument("--runs-dir", type=Path, help="the runs folder (default: runs/ "
                            "beside the experiments file)")
        action.add_argument("--jobs", type=int, help="runs at once (kept in the queue)")
    return p


def _report_parser() -> argparse.ArgumentParser:
    p = _OneLineParser(prog="diffui report",
                       description="Figures (PNG) and a Markdown report of runs.")
    p.add_argument("runs", nargs="*", metavar="RUN", help="run names (default: every run)")
    p.add_argument("--runs-dir", type=Path, default=Path("runs"),
                   help="the folder holding the run folders (default ./runs)")
    p.add_argument("--out", type=Path, required=True, help="folder for the report")
    return p


def _data_parser() -> argparse.ArgumentParser:
    from engine.data.datasets import DATASETS

    p = _OneLineParser(prog="diffui data",
                       description="MNIST and FashionMNIST in diffui's data folder "
                                   "($DIFFUI_DATA_DIR or the user data folder).")
    sub = p.add_subparsers(dest="action", metavar="{list,fetch,import}")
    sub.add_parser("list", help="which source each dataset and split comes from (the default)")
    f = sub.add_parser("fetch", help="download through torchvision into the data folder")
    f.add_argument("dataset", nargs="?", choices=DATASETS, help="default: both")
    i = sub.add_parser("import", help="copy IDX files (plain or .gz) into the data folder")
    i.add_argument("dir", type=Path, help="a folder of IDX files, or torchvision's root folder")
    i.add_argument("--as", dest="as_name", choices=DATASETS,
                   help="the dataset of the files directly in DIR (default: from its name)")
    return p


def _hosts_parser() -> argparse.ArgumentParser:
    p = _OneLineParser(prog="diffui hosts", description="The [hosts] tables of the experiments "
                       "file reached over SSH (GPU boxes, and clusters' login nodes): what each "
                       "host has, and diffui installed on it.")
    sub = p.add_subparsers(dest="action", required=True, metavar="{check,install}")
    c = sub.add_parser("check", help="reachable, python, diffui, torch and CUDA, GPUs (a "
                                     "cluster: its Slurm), free disk and datasets of each host "
                                     "(or of NAME), as a table")
    c.add_argument("name", nargs="?", help="one host (default: all)")
    i = sub.add_parser("install", help="build a wheel of this diffui, pip install it into the "
                                       "host's python, copy the datasets it lacks")
    i.add_argument("name", help="the host")
    for action in (c, i):
        action.add_argument("--file", "-f", type=Path, default=Path("experiments.toml"),
                            help="the experiments file (default ./experiments.toml)")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv[:1] == ["data"]:
            return cmd_data(_data_parser().parse_args(argv[1:]))
        if argv[:1] == ["schedules"]:
            return cmd_schedules(_schedules_parser().parse_args(argv[1:]))
        if argv[:1] == ["report"]:
            return cmd_report(_report_parser().parse_args(argv[1:]))
        if argv[:1] == ["queue"]:
            return cmd_queue(_queue_parser().parse_args(argv[1:]))
        if argv[:1] == ["hosts"]:
            return cmd_hosts(_hosts_parser().parse_args(argv[1:]))
        if argv[:1] == ["study"]:
            return cmd_study(_study_parser().parse_args(argv[1:]))
        args = _main_parser().parse_args(argv)
        check_jobs(args)
        return cmd_batch(args) if args.batch else cmd_ui(args)
    except UserError as e:
        print(f"error: {escape_breaks(str(e))}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:  # a full or read-only disk; atomic writes leave no half-written file
        from engine.files import os_error_line
        print(f"error: {escape_breaks(os_error_line(e))}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:  # Ctrl-C before any run started (batch mode stops its own runs)
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def check_jobs(args: argparse.Namespace) -> None:
    if getattr(args, "jobs", None) is not None:
        int_arg("--jobs", args.jobs, 1, MAX_JOBS)


def cmd_batch(args: argparse.Namespace) -> int:
    from engine.data.datasets import fallback_notes
    from engine.evaluation.fid import MetricsError, prepare_evaluation
    from engine.rundir.run import check_runs
    from rich.console import Console

    from cli.batch import run_batch, task_bars

    file = Path(args.file)
    study = load_experiments(file, args.profile)
    specs = select(study, args.only)
    override_host(study, [*specs, *study.studies], args.host)
    runs_dir = runs_dir_of(args, file)
    queue = _open_queue(runs_dir)
    # everything that can refuse the input comes before the first folder is made
    todo = [s for s, r in zip(specs, check_runs(specs, runs_dir))
            if not (r.exists() and r.status().state == "finished")]
    for note in fallback_notes([s.data for s in todo]):
        print(note)
    try:
        with task_bars(Console()) as tasks:
            prepare_evaluation(todo, log=print, tasks=tasks)
    except MetricsError as e:
        raise ConfigError(f"{file.name}: evaluation.backbone: {e}") from None
    runs = queue.prepare(specs, study.hosts)
    rc = run_batch(queue, runs, jobs=args.jobs)
    if rc == 130:
        return rc
    return max(rc, run_studies(queue, [s for s in study.studies if s.run in
                                       {r.name for r in specs}], study.hosts, args.jobs))


def run_studies(queue, studies: list, hosts: dict, jobs: int | None) -> int:
    """Batch mode after its runs: the studies whose runs have finished, through the queue like
    the runs; the others wait, and say so. The batch exit code of the studies run."""
    from engine.rundir.run import Run
    from cli.batch import run_batch

    runs_dir = queue.runs_dir

    ready, waiting = [], []
    for s in studies:
        run = Run(runs_dir / s.run)
        state = run.status().state if run.exists() else "not made yet"
        (ready if state == "finished" else waiting).append((s, state))
    rc = 0
    if ready:
        rc = run_batch(queue, queue.prepare([s for s, _ in ready], hosts), jobs=jobs)
    for s, state in waiting:
        print(f"study {s.name} waits: its run {s.run} is {state}")
    return rc


def cmd_study(args: argparse.Namespace) -> int:
    """``diffui study NAME``: queue one study of the file and follow it to its end."""
    from engine.rundir.run import Run
    from cli.batch import run_batch

    file = Path(args.file)
    study = load_experiments(file, args.profile)
    spec = next((s for s in study.studies if s.name == args.name), None)
    if spec is None:
        have = ", ".join(s.name for s in study.studies) or "none"
        raise ConfigError(f"{file.name}: study {args.name}: no such study (studies: {have})")
    override_host(study, [spec], args.host)
    runs_dir = runs_dir_of(args, file)
    run = Run(runs_dir / spec.run)
    state = run.status().state if run.exists() else "not made yet"
    if state != "finished":
        print(f"error: study {spec.name} samples from run {spec.run}, which is {state}: "
              f"finish it first (diffui --batch {file} --only {spec.run})", file=sys.stderr)
        return 1
    queue = _open_queue(runs_dir)
    return run_batch(queue, queue.prepare([spec], study.hosts), jobs=args.jobs)


def _open_queue(runs_dir: Path):
    from engine.queue.client import Queue
    queue = Queue.open(runs_dir)
    if queue.error:
        raise UserError(queue.error)
    return queue


def cmd_queue(args: argparse.Namespace) -> int:
    from socket import gethostname

    from engine.queue import service
    from engine.text import format_seconds
    from engine.queue.client import QueueError
    from rich.console import Console
    from rich.table import Table

    check_jobs(args)
    file = Path(getattr(args, "file", "experiments.toml"))
    runs_dir = runs_dir_of(args, file)
    queue = _open_queue(runs_dir)
    try:
        if args.jobs:
            queue.set_jobs(args.jobs)
        if args.action == "add":
            study = load_experiments(file, args.profile)
            specs = select(study, args.only)
            override_host(study, specs, args.host)
            runs = queue.prepare(specs, study.hosts)
            added, skipped = [], []
            for run in runs:
                try:
                    queue.enqueue(run.name)
                    added.append(run.name)
                except QueueError as e:
                    skipped.append(str(e))
            for line in skipped:
                print(line)
            print(f"queued {len(added)} run{'s' * (len(added) != 1)} in {runs_dir}"
                  + ("; the queue is paused: diffui queue start" if queue.paused else ""))
        elif args.action == "start":
            queue.set_paused(False)
            pid = _wait_for_service(runs_dir) if queue.queued() else None
            print(f"queue started: {len(queue.queued())} queued, {queue.jobs} at once"
                  + (f"; service pid {pid}" if pid else ""))
        elif args.action == "pause":
            queue.set_paused(True)
            print("queue paused: nothing new starts; running runs go on")
        elif args.action == "stop":
            stopped = queue.stop_all()
            print(f"queue paused; stopping {len(stopped)} run{'s' * (len(stopped) != 1)}"
                  + (f" ({', '.join(stopped)}): resumable, queued again at the front"
                     if stopped else ""))
        else:
            queue.poll()
            pid = service.running_pid(runs_dir)
            print(f"{runs_dir}: queue {'paused' if queue.paused else 'started'}, "
                  f"{queue.jobs} at once, service " + (f"running (pid {pid})" if pid else "not running"))
            table = Table()
            for col in ("run", "status", "epoch", "val loss", "FID", "elapsed", "where"):
                table.add_column(col)
            queued = queue.queued()
            order = queued + sorted(n for n in queue.progress if n not in queued)
            for name in order:
                p = queue.progress[name]
                status = f"queued #{queued.index(name) + 1}" if name in queued else p.state
                if p.state == "running":
                    status = f"running {p.fraction:.0%}" + (f" ({p.task_text()})" if p.task else "")
                table.add_row(name, status, f"{p.epoch}/{p.epochs}" if p.epochs else "-",
                              "-" if p.val_loss is None else f"{p.val_loss:.4f}",
                              "-" if p.fid is None else f"{p.fid:.2f}",
                              format_seconds(p.elapsed()),
                              queue.state.where_text(name, p.host, gethostname()) or "-")
            Console().print(table)
    except QueueError as e:
        raise UserError(str(e)) from None
    return 0


def _wait_for_service(runs_dir: Path, timeout: float = 10.0) -> int | None:
    import time
    from engine.queue import service
    deadline = time.time() + timeout
    while time.time() < deadline:
        pid = service.running_pid(runs_dir)
        if pid:
            return pid
        time.sleep(0.05)
    return None


def cmd_ui(args: argparse.Namespace) -> int:
    """The terminal UI. A broken experiments file is shown inside it, not refused here."""
    from tui.widgets import image_widget_class
    image_class = image_widget_class(args.images)  # may query the terminal: before the app runs
    from tui.app import DiffuiApp

    file = Path(args.file)
    app = DiffuiApp(file, runs_dir_of(args, file),
                    profile=args.profile, image_class=image_class, jobs=args.jobs)
    app.run()
    return app.return_code or 0


def cmd_schedules(args: argparse.Namespace) -> int:
    from engine.data import datasets as data
    from engine.evaluation.ks import write_schedule_figures
    from engine.diffusion.schedules import from_spec

    int_arg("--n", args.n, 2, MAX_KS_SAMPLES)
    int_arg("--seed", args.seed, 0, 2**32 - 1)  # numpy's seeds
    folder_arg("--out", args.out)
    study = load_experiments(Path(args.file), args.profile)
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
    first = write_schedule_figures(schedules, data.to_model(ds.images), args.out, n=args.n,
                                 seed=args.seed, names=names)
    for name, t in first.items():
        when = f"t = {t}" if t is not None else "never"
        print(f"{name}: z_t indistinguishable from N(0, 1) (KS, p > 0.05) first at {when}")
    print(f"wrote schedules.csv, ks.csv, ks_summary.csv, schedules.png, ks.png to {args.out}")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from engine.data import datasets as data

    if args.action == "fetch":
        for name in [args.dataset] if args.dataset else list(data.DATASETS):
            folder = data.dataset_folder(name)
            if data.has_full_set(name):
                print(f"{name}: the full set is in {folder} already")
                continue
            print(f"{name}: downloading through torchvision into {folder}", flush=True)
            try:
                data.fetch(name)
            except data.FetchError as e:
                print(f"error: {e}", file=sys.stderr)
                return 1
            print(f"{name}: {data.FULL_SIZE['train']:,} training and "
                  f"{data.FULL_SIZE['test']:,} test images in {folder}")
        return 0
    if args.action == "import":
        try:
            done = data.import_dir(args.dir, args.as_name)
        except data.DataInputError as e:
            raise UserError(str(e)) from None
        except (ValueError, OSError) as e:  # a file that does not parse, or cannot be copied
            print(f"error: {e}", file=sys.stderr)
            return 1
        for name, split, n, dest in done:
            full = "" if n == data.FULL_SIZE[split] else \
                f" (not the full set of {data.FULL_SIZE[split]:,})"
            print(f"{name} {split}: {n:,} images into {dest}{full}")
        return 0
    print(f"diffui data folder: {data.data_dir()}")
    rows = [("dataset", "split", "images", "full", "source")]
    infos = data.describe()
    for info in infos:
        if info.source is None:
            rows.append((info.name, info.split, "-", "no", info.problem or "none"))
        else:
            source = info.source + (f" ({info.origin})" if info.origin else "")
            rows.append((info.name, info.split, f"{info.size:,}", "yes" if info.full else "no",
                         source))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join([r[0].ljust(widths[0]), r[1].ljust(widths[1]), r[2].rjust(widths[2]),
                         r[3].ljust(widths[3]), r[4]]).rstrip())
    for note in filter(None, (data.fallback_note(i.source) for i in infos)):
        print(note)
    return 0


def cmd_hosts(args: argparse.Namespace) -> int:
    """``diffui hosts check|install``: 0 when every host asked about can run diffui's jobs."""
    import tempfile

    from engine.queue.executors.remote import HostError
    from engine.queue.hosts import build_wheel, check_hosts, install, local_version

    study = load_experiments(args.file)
    hosts = {n: h for n, h in study.hosts.items() if h.address}  # (a cluster: its login node)
    if args.name is not None:
        if args.name not in hosts:
            raise ConfigError(f"{args.file.name}: hosts.{args.name}: no such host reached over "
                              f"SSH (hosts: {', '.join(hosts) or 'none defined'})")
        hosts = {args.name: hosts[args.name]}
    if not hosts:
        raise ConfigError(f"{args.file.name}: hosts: no [hosts.NAME] table with an address")
    if args.action == "install":
        try:
            with tempfile.TemporaryDirectory() as tmp:
                wheel = build_wheel(Path(tmp))
                print(f"built {wheel.name}")
                install(args.name, hosts[args.name], wheel)
        except HostError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        return 0
    here = local_version()
    rows = [("host", "reachable", "python", "diffui", "torch / CUDA", "GPUs", "free disk",
             "datasets")]
    problems = []
    for info in check_hosts(hosts):
        if info.get("problem"):
            problems.append(info["problem"] if info["problem"].startswith(f"{info['host']}:")
                            else f"{info['host']}: {info['problem']}")
        if not info["reachable"]:
            rows.append((info["host"], "no", *["-"] * 6))
            continue
        version = info.get("diffui") or "missing"
        if info.get("diffui") and info["diffui"] != here:
            version += f" (here {here})"
        torch = (info.get("torch") or "missing") + (f" / CUDA {info['cuda']}" if info.get("cuda")
                                                    else " / no CUDA" if info.get("torch") else "")
        gpus = info["slurm"] if "slurm" in info else _gpus_text(info.get("gpus", []))
        free = f"{info['free'] / 1e9:.1f} GB" if "free" in info else "-"
        sets = ", ".join(f"{n} ({'+'.join(s)})" for n, s in info.get("data", {}).items() if s)
        rows.append((info["host"], "yes", info.get("python") or "-", version, torch, gpus, free,
                     sets or "none"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    for line in problems:
        print(line)
    return 1 if problems else 0


def _gpus_text(lines: list[str]) -> str:
    """nvidia-smi's ``index, name, memory`` lines as ``2x NVIDIA H100 (81559 MiB)``."""
    from collections import Counter
    kinds = Counter(" (".join(line.split(", ")[1:3]) + ")" if line.count(", ") >= 2 else line
                    for line in lines)
    return ", ".join(f"{n}x {kind}" for kind, n in kinds.items()) or "none (nvidia-smi)"


def cmd_report(args: argparse.Namespace) -> int:
    from engine.report.writer import write_report
    from engine.rundir.run import STUDIES_DIR, Run, iter_runs

    folder_arg("--runs-dir", args.runs_dir)
    folder_arg("--out", args.out)
    for name in args.runs:  # a run's name becomes part of figure file names in --out
        folder, _, study = name.partition("/")
        if not (safe_name(name) or folder == STUDIES_DIR and safe_name(study)):
            raise UserError(escape_breaks(f"report {name}: expected the name of a run folder in "
                                       f"{args.runs_dir} (or {STUDIES_DIR}/NAME for a study)"))
    if args.runs:
        runs = [Run(args.runs_dir / name) for name in args.runs]
        missing = [r.name for r in runs if not r.exists()]
        if missing:
            raise UserError(f"{args.runs_dir}: no run folder {', '.join(missing)} "
                              "(expected folders holding a config.toml)")
    else:
        runs = list(iter_runs(args.runs_dir, studies=True))
        if not runs:
            raise UserError(f"{args.runs_dir}: no run folders in it (use --runs-dir)")
    def warn(line: str) -> None:  # a damaged file: said, left out; the rest is drawn
        print(f"warning: {line}", file=sys.stderr)

    if sys.stdout.isatty():
        from rich.console import Console

        from cli.batch import task_bars
        with task_bars(Console(force_terminal=True)) as tasks:
            path = write_report(runs, args.out, progress=tasks("report figures"), warn=warn)
    else:  # a log file or a pipe: the one line below only (and what could not be read)
        path = write_report(runs, args.out, warn=warn)
    print(f"wrote {path} and {len(list(args.out.glob('*.png')))} figures")
    return 0


if __name__ == "__main__":
    sys.exit(main())
