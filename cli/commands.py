"""The commands of ``diffui`` about runs and their queue: ``diffui --batch``, ``diffui study``
and ``diffui queue`` (the UI is :mod:`cli.ui`). What they do to the runs folder is :mod:`engine.usecases`; here is
how they ask (the command line) and what they print."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from socket import gethostname

from rich.console import Console

from cli.batch import EXIT_INTERRUPTED, compact_table, keep_names_whole, run_batch, task_bars
from cli.parsers import check_jobs, runs_dir_of
from engine import usecases
from engine.errors import UserError
from engine.files import os_error_line
from engine.queue.client import Queue, QueueError
from engine.report.findings import SCHEDULES_DIR
from engine.spec.checks import ConfigError
from engine.spec.costs import CalibrationCache
from engine.spec.experiments import load_experiments, override_host, select
from engine.text import escape_breaks


def cmd_batch(args: argparse.Namespace) -> int:
    """``diffui --batch``: the runs of the file (or ``--only``) to their end, then the studies
    of those runs whose runs have finished."""
    file = Path(args.file)
    experiments = load_experiments(file, args.profile)
    specs = select(experiments, args.only)
    override_host(experiments, [*specs, *experiments.studies], args.host)
    runs_dir = runs_dir_of(args, file)
    queue = usecases.open_queue(runs_dir)
    # everything that can refuse the input comes before the first folder is made
    _prepare_evaluation(usecases.runs_to_train(specs, runs_dir), file)
    runs = queue.prepare(specs, experiments.hosts)
    rc = run_batch(queue, runs, jobs=args.jobs)
    if rc == EXIT_INTERRUPTED:
        return rc
    studies = usecases.studies_of(experiments, [s.name for s in specs])
    rc = max(rc, run_studies(queue, studies, experiments.hosts, args.jobs))
    schedules_for_claims(experiments.runs, runs_dir)
    return rc


def schedules_for_claims(runs: list, runs_dir: Path) -> None:
    """Batch mode's last step: the schedules' KS tables and figures of the file's runs into
    ``RUNS/schedules`` (what ``diffui schedules --out RUNS/schedules`` writes), so that the claims
    ledger decides C1 and C2; left as they are when computed for the same settings. Said in one
    line; a failure here is a warning (the runs are done)."""
    from engine.evaluation.ks import NoImages, schedule_study  # (imports torch)

    if not runs:
        return
    out = runs_dir / SCHEDULES_DIR
    try:
        study = schedule_study(runs, out, reuse=True)
    except (NoImages, OSError) as e:
        line = os_error_line(e) if isinstance(e, OSError) else str(e)
        print(f"warning: schedules' KS test not written: {escape_breaks(line)}")
        return
    done = "written to" if study.written else "up to date in"
    print(f"schedules: KS tables and figures {done} {os.path.relpath(out)} (claims C1, C2)")


def _prepare_evaluation(todo: list, file: Path) -> None:
    """What the runs ``todo`` need before they start: notes on the data they train on, and the
    FID classifier (trained once, with a progress bar)."""
    from engine.data.datasets import fallback_notes  # (these import torch)
    from engine.evaluation import fid

    for note in fallback_notes([s.data for s in todo]):
        print(note)
    try:
        with task_bars(Console()) as tasks:
            fid.prepare_evaluation(todo, log=print, tasks=tasks)
    except fid.MetricsError as e:
        raise ConfigError(f"{file.name}: evaluation.backbone: {e}") from None


def run_studies(queue: Queue, studies: list, hosts: dict, jobs: int | None) -> int:
    """Batch mode after its runs: the studies whose runs have finished, through the queue like
    the runs; the others wait, and say so. The batch exit code of the studies run."""
    ready, waiting = usecases.split_studies(queue.runs_dir, studies)
    rc = 0
    if ready:
        rc = run_batch(queue, queue.prepare(ready, hosts), jobs=jobs)
    for w in waiting:
        print(f"study {w.spec.name} waits: its run {w.spec.run} is {w.state}")
    return rc


def cmd_study(args: argparse.Namespace) -> int:
    """``diffui study NAME``: queue one study of the file and follow it to its end."""
    file = Path(args.file)
    experiments = load_experiments(file, args.profile)
    spec = usecases.find_study(experiments, args.name, file)
    override_host(experiments, [spec], args.host)
    runs_dir = runs_dir_of(args, file)
    try:
        usecases.check_study(runs_dir, spec)
    except usecases.StudyWaits as e:
        how = "" if e.state == "damaged" else f" (diffui --batch {file} --only {spec.run})"
        print(f"error: {e}{how}", file=sys.stderr)
        return 1
    queue = usecases.open_queue(runs_dir)
    return run_batch(queue, queue.prepare([spec], experiments.hosts), jobs=args.jobs)


def cmd_queue(args: argparse.Namespace) -> int:
    """``diffui queue add|start|pause|stop|status``."""
    check_jobs(args)
    file = Path(getattr(args, "file", "experiments.toml"))
    queue = usecases.open_queue(runs_dir_of(args, file))
    try:
        if args.jobs:
            queue.set_jobs(args.jobs)
        if args.action == "add":
            _queue_add(queue, args, file)
        elif args.action == "start":
            pid = usecases.start_queue(queue)
            print(
                f"queue started: {len(queue.queued())} queued, {queue.jobs} at once"
                + (f"; service pid {pid}" if pid else "")
            )
        elif args.action == "pause":
            queue.set_paused(True)
            print("queue paused: nothing new starts; running runs go on")
        elif args.action == "stop":
            stopped = queue.stop_all()
            print(
                f"queue paused; stopping {len(stopped)} run{'s' * (len(stopped) != 1)}"
                + (
                    f" ({', '.join(stopped)}): resumable, queued again at the front"
                    if stopped
                    else ""
                )
            )
        else:
            _queue_status(queue)
    except QueueError as e:
        raise UserError(str(e)) from None
    return 0


def _queue_add(queue: Queue, args: argparse.Namespace, file: Path) -> None:
    experiments = load_experiments(file, args.profile)
    specs = select(experiments, args.only)
    override_host(experiments, specs, args.host)
    done = usecases.queue_runs(queue, specs, experiments.hosts)
    for line in done.skipped:
        print(line)
    n = len(done.names)
    print(
        f"queued {n} run{'s' * (n != 1)} in {queue.runs_dir}"
        + ("; the queue is paused: diffui queue start" if queue.paused else "")
    )


def _queue_status(queue: Queue) -> None:
    queue.poll()
    pid = usecases.service_pid(queue)
    print(
        f"{queue.runs_dir}: queue {'paused' if queue.paused else 'started'}, "
        f"{queue.jobs} at once, service " + (f"running (pid {pid})" if pid else "not running")
    )
    console = Console()
    cache = CalibrationCache()
    if cache.problem:
        print(f"warning: {cache.problem}", file=sys.stderr)
    rows = usecases.status_rows(queue, gethostname(), cache)
    cols = list(usecases.STATUS_COLUMNS)
    at = cols.index("expected")
    known = any(row[at] != "-" for row in rows)
    if not known:  # nothing calibrated: the column is left out (one line says so)
        cols.pop(at)
        rows = [row[:at] + row[at + 1 :] for row in rows]
    table = compact_table(console.width)
    for col in cols:
        table.add_column(col, overflow="fold", no_wrap=col != "where")
    keep_names_whole(table, [row[0] for row in rows])
    for row in rows:
        table.add_row(*row)
    console.print(table)
    if not known and (
        queue.queued()
        or queue.active()
        or any(p.state == "running" for p in queue.progress.values())
    ):
        print(usecases.NOT_CALIBRATED)
    for p in queue.progress.values():  # bad lines of events.jsonl, skipped
        for line in p.problems:
            print(f"warning: {line}", file=sys.stderr)
