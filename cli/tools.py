"""The commands of ``diffui`` besides the runs and their queue: ``diffui schedules`` (the KS
study of the schedules), ``diffui report``, ``diffui data`` and ``diffui hosts``. Their heavy
imports (torch, matplotlib, asyncssh) are inside the commands, so that the others start fast."""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path

from rich.console import Console

from cli.batch import task_bars
from cli.parsers import MAX_KS_SAMPLES, folder_arg, int_arg
from engine.errors import UserError
from engine.rundir.run import STUDIES_DIR, Run, iter_runs
from engine.spec.checks import ConfigError
from engine.spec.experiments import load_experiments
from engine.spec.names import safe_name
from engine.text import escape_breaks


def cmd_schedules(args: argparse.Namespace) -> int:
    from engine.evaluation.ks import FILES, NoImages, schedule_study  # (imports torch)

    int_arg("--n", args.n, 2, MAX_KS_SAMPLES)
    int_arg("--seed", args.seed, 0, 2**32 - 1)  # numpy's seeds
    folder_arg("--out", args.out)
    experiments = load_experiments(Path(args.file), args.profile)
    try:
        study = schedule_study(experiments.runs, args.out, n=args.n, seed=args.seed)
    except NoImages as e:
        print(f"error: {escape_breaks(str(e))}", file=sys.stderr)
        return 1
    for name, t in study.first.items():
        when = f"t = {t}" if t is not None else "never"
        print(f"{name}: z_t indistinguishable from N(0, 1) (KS, p > 0.05) first at {when}")
    for name, (cap, T, capped) in study.capped.items():
        where = f" (t = {capped[0]}..{capped[-1]})" if capped else ""
        print(f"{name}: {len(capped)} of {T} betas capped at max_beta = {cap:g}{where}")
    print(f"wrote {', '.join(FILES)} to {args.out}")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    """``diffui data [list|fetch|import DIR]``: the datasets diffui trains on."""
    from engine.data import datasets as data  # (imports torch)

    if args.action == "fetch":
        return _data_fetch(data, args.dataset)
    if args.action == "import":
        return _data_import(data, args.dir, args.as_name)
    print(f"diffui data folder: {data.data_dir()}")
    rows = [("dataset", "split", "images", "full", "source")]
    infos = data.describe()
    for info in infos:
        if info.source is None:
            rows.append((info.name, info.split, "-", "no", info.problem or "none"))
        else:
            source = info.source + (f" ({info.origin})" if info.origin else "")
            rows.append(
                (info.name, info.split, f"{info.size:,}", "yes" if info.full else "no", source)
            )
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        cells = [
            r[0].ljust(widths[0]),
            r[1].ljust(widths[1]),
            r[2].rjust(widths[2]),
            r[3].ljust(widths[3]),
            r[4],
        ]
        print("  ".join(cells).rstrip())
    for note in filter(None, (data.fallback_note(i.source) for i in infos)):
        print(note)
    return 0


def _data_fetch(data, dataset: str | None) -> int:
    """``diffui data fetch [NAME]``: download the full sets through torchvision."""
    for name in [dataset] if dataset else list(data.DATASETS):
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
        print(
            f"{name}: {data.FULL_SIZE['train']:,} training and "
            f"{data.FULL_SIZE['test']:,} test images in {folder}"
        )
    return 0


def _data_import(data, folder: Path, as_name: str | None) -> int:
    """``diffui data import DIR [--as NAME]``: copy IDX files into diffui's data folder."""
    try:
        done = data.import_dir(folder, as_name)
    except data.DataInputError as e:
        raise UserError(str(e)) from None
    except (ValueError, OSError) as e:  # a file that does not parse, or cannot be copied
        print(f"error: {e}", file=sys.stderr)
        return 1
    for name, split, n, dest in done:
        full = (
            ""
            if n == data.FULL_SIZE[split]
            else f" (not the full set of {data.FULL_SIZE[split]:,})"
        )
        print(f"{name} {split}: {n:,} images into {dest}{full}")
    return 0


def cmd_hosts(args: argparse.Namespace) -> int:
    """``diffui hosts check|install``: 0 when every host asked about can run diffui's jobs."""
    # (imports asyncssh: only for this command)
    from engine.queue.executors.remote import HostError
    from engine.queue.hosts import (
        build_wheel,
        check_hosts,
        data_differences,
        install,
        local_version,
    )

    hosts = _hosts_asked(args)
    if args.action == "install":
        try:
            with tempfile.TemporaryDirectory() as tmp:
                wheel = build_wheel(Path(tmp))
                print(f"built {wheel.name}")
                install(args.name, hosts[args.name], wheel, torch_index=args.torch_index)
        except HostError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        return 0
    here = local_version()
    rows = [
        ("host", "reachable", "python", "diffui", "torch / CUDA", "GPUs", "free disk", "datasets")
    ]
    problems, notes = [], []
    for info in check_hosts(hosts):
        if info.get("problem"):
            problems.append(
                info["problem"]
                if info["problem"].startswith(f"{info['host']}:")
                else f"{info['host']}: {info['problem']}"
            )
        elif info["reachable"] and (lacks := data_differences(info)):
            notes.append(
                f"note: {info['host']}: lacks {', '.join(lacks)}, which this machine has: runs "
                f"there train on another data source than here (diffui hosts install "
                f"{info['host']} copies them)"
            )
        rows.append(_host_row(info, here))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    for line in problems + notes:
        print(line)
    return 1 if problems else 0


def _hosts_asked(args: argparse.Namespace) -> dict:
    """The file's hosts reached over SSH (a cluster: its login node), or the one named."""
    experiments = load_experiments(args.file)
    hosts = {n: h for n, h in experiments.hosts.items() if h.address}
    if args.name is not None:
        if args.name not in hosts:
            raise ConfigError(
                f"{args.file.name}: hosts.{args.name}: no such host reached over "
                f"SSH (hosts: {', '.join(hosts) or 'none defined'})"
            )
        hosts = {args.name: hosts[args.name]}
    if not hosts:
        raise ConfigError(f"{args.file.name}: hosts: no [hosts.NAME] table with an address")
    return hosts


def _host_row(info: dict, here: str) -> tuple[str, ...]:
    """One row of ``diffui hosts check``'s table, from what the host's probe found."""
    if not info["reachable"]:
        return (info["host"], "no", *["-"] * 6)
    version = info.get("diffui") or "missing"
    if info.get("diffui") and info["diffui"] != here:
        version += f" (here {here})"
    cuda = (
        f" / CUDA {info['cuda']}" if info.get("cuda") else " / no CUDA" if info.get("torch") else ""
    )
    torch = (info.get("torch") or "missing") + cuda
    gpus = info["slurm"] if "slurm" in info else _gpus_text(info.get("gpus", []))
    free = f"{info['free'] / 1e9:.1f} GB" if "free" in info else "-"
    sets = ", ".join(f"{n} ({'+'.join(s)})" for n, s in info.get("data", {}).items() if s)
    return (
        info["host"],
        "yes",
        info.get("python") or "-",
        version,
        torch,
        gpus,
        free,
        sets or "none",
    )


def _gpus_text(lines: list[str]) -> str:
    """nvidia-smi's ``index, name, memory`` lines as ``2x NVIDIA H100 (81559 MiB)``."""
    kinds = Counter(
        " (".join(line.split(", ")[1:3]) + ")" if line.count(", ") >= 2 else line for line in lines
    )
    return ", ".join(f"{n}x {kind}" for kind, n in kinds.items()) or "none (nvidia-smi)"


def cmd_claims(args: argparse.Namespace) -> int:
    """``diffui claims``: the claims ledger of a runs folder (every claim a row; a claim whose
    runs are missing is undecided, not an error)."""
    from engine.report.claims import ledger, ledger_lines, ledger_markdown

    folder_arg("--runs-dir", args.runs_dir)
    if not args.runs_dir.is_dir():
        raise UserError(f"--runs-dir {args.runs_dir}: no such folder")
    rows = ledger(args.runs_dir, args.schedules)
    print(ledger_markdown(rows) if args.markdown else "\n".join(ledger_lines(rows)))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from engine.report.writer import write_report

    folder_arg("--runs-dir", args.runs_dir)
    folder_arg("--out", args.out)
    for name in args.runs:  # a run's name becomes part of figure file names in --out
        folder, _, study = name.partition("/")
        if not (safe_name(name) or folder == STUDIES_DIR and safe_name(study)):
            raise UserError(
                escape_breaks(
                    f"report {name}: expected the name of a run folder in "
                    f"{args.runs_dir} (or {STUDIES_DIR}/NAME for a study)"
                )
            )
    if args.runs:
        runs = [Run(args.runs_dir / name) for name in args.runs]
        missing = [r.name for r in runs if not r.exists()]
        if missing:
            raise UserError(
                f"{args.runs_dir}: no run folder {', '.join(missing)} "
                "(expected folders holding a config.toml)"
            )
    else:
        runs = list(iter_runs(args.runs_dir, studies=True))
        if not runs:
            raise UserError(f"{args.runs_dir}: no run folders in it (use --runs-dir)")

    def warn(line: str) -> None:  # a damaged file: said, left out; the rest is drawn
        print(f"warning: {line}", file=sys.stderr)

    if sys.stdout.isatty():
        with task_bars(Console(force_terminal=True)) as tasks:
            path = write_report(runs, args.out, progress=tasks("report figures"), warn=warn)
    else:  # a log file or a pipe: the one line below only (and what could not be read)
        path = write_report(runs, args.out, warn=warn)
    n = len(list(args.out.glob("*.png")))
    print(f"wrote {path}, {path.with_suffix('.pdf')} and {n} figures (PNG and PDF)")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    """``diffui plan``: each job's estimated wall time on each allowed host, the total and the
    critical path (:mod:`engine.jobs.plan`; calibrating a network here takes seconds)."""
    from engine.jobs import plan
    from engine.rundir.run import RunError
    from engine.spec.experiments import override_host

    file = Path(args.file)
    int_arg("--jobs", args.jobs, 1, 1024)
    experiments = load_experiments(file, args.profile)
    override_host(experiments, [*experiments.runs, *experiments.studies], args.host)
    try:
        cache = plan.CalibrationCache()
        for run in experiments.runs if args.recalibrate else []:
            cache.forget(run)
        jobs, per_host, critical = plan.plan_jobs(
            experiments.runs,
            experiments.studies,
            cache,
            plan.host_slots(experiments.hosts, args.jobs),
        )
    except (RunError, RuntimeError) as e:  # a precision or device this machine cannot do
        raise UserError(f"{file}: {e}") from None
    title = f"{file}" + (f", profile {args.profile}" if args.profile else "")
    Console().print(plan_table(title, jobs, per_host, [*experiments.runs, *experiments.studies]))
    total = sum(j.seconds or 0.0 for j in jobs)
    missing = [j.name for j in jobs if j.seconds is None]
    for source in sorted(set(cache.fallbacks.values())):
        names = ", ".join(n for n, s in cache.fallbacks.items() if s == source)
        print(
            f"note: {names} counted on the training images of {source} here (what it would "
            "train on now; the full MNIST's 60,000 after 'diffui data fetch')"
        )
    for name, doubt in cache.doubts.items():
        print(
            f"note: {name} was {doubt}: its estimate may be slower than this machine idle "
            "('diffui plan --recalibrate' on an idle machine measures it again)"
        )
    print(
        f"total {plan.duration_text(total)} of work; "
        f"critical path {plan.duration_text(critical)}"
        + (f"; not calibrated: {', '.join(missing)}" if missing else "")
    )
    return 0


def plan_table(title: str, jobs: list, per_host: dict, specs: list):
    """``diffui plan``'s table: each job's estimate on each host, what of it is FID scoring,
    and its start and end on the slots."""
    from rich.table import Table

    from engine.jobs import plan
    from engine.spec.specs import RunSpec

    hosts = sorted({h for est in per_host.values() for h in est}, key=lambda h: h != "local")
    by_name = {s.name: s for s in specs}
    table = Table(title=title)
    for col in ("job", *hosts, "of it FID", "starts", "ends"):
        table.add_column(col, justify="left" if col == "job" else "right")
    for job in jobs:
        cells = [
            plan.duration_text(per_host[job.name][h]) if h in per_host[job.name] else ""
            for h in hosts
        ]
        spec = by_name[job.name]
        fid = plan.fid_seconds(spec) if isinstance(spec, RunSpec) else plan.study_fid_seconds(spec)
        starts, ends = (plan.duration_text(t) for t in (job.start, job.end))
        table.add_row(job.name, *cells, plan.duration_text(fid), starts, ends)
    return table
