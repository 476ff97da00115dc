"""``diffui --batch``: queue the runs, let the queue service run them, and follow them with a
rich progress bar per run (one line per epoch when the output is not a terminal)."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console, Group
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from engine.queue.client import Queue
from engine.rundir.progress import (
    SUMMARY_COLUMNS,
    RunProgress,
    status_text,
    summary,
    summary_row,
    why,
)
from engine.rundir.run import Run
from engine.text import fmt, format_seconds

EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130


def _eta(seconds: float | None) -> str:
    return "-" if seconds is None else format_seconds(seconds)


def run_batch(
    queue: Queue,
    runs: list[Run],
    jobs: int | None = None,
    console: Console | None = None,
    poll_every: float = 0.25,
) -> int:
    """Run ``runs`` (folders of ``queue``'s runs folder) to their end through the queue."""
    if console is None:
        console = Console()
        if not console.is_terminal:  # a log file: room for the whole table
            console = Console(width=200)
    names = [r.name for r in runs]
    queue.poll()
    for name in names:
        if queue.progress[name].state == "finished":
            console.print(f"[dim]{name}: finished already, skipped[/dim]")
    todo = [n for n in names if queue.progress[n].state != "finished"]
    interrupted = False
    with _stop_on_signals() as stopping:
        try:
            queue.submit(todo, jobs)
            _follow(queue, todo, console, poll_every)
        except KeyboardInterrupt:
            interrupted = True
            stopping.append(True)
            console.print("[yellow]interrupted: stopping workers (runs stay resumable)...[/yellow]")
            queue.stop(todo)
        console.print(summary_table(runs, console.width))
    for run in runs:  # bad lines of events.jsonl, skipped
        for line in summary(run).problems:
            console.print(f"warning: {line}", markup=False, highlight=False, soft_wrap=True)
    if interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if any(summary(r).state != "finished" for r in runs) else EXIT_OK


@contextmanager
def _stop_on_signals() -> Iterator[list[bool]]:
    """Ctrl-C, or a job scheduler's SIGTERM, as a KeyboardInterrupt (the caller stops the runs,
    resumable, and appends to the list it is handed while it does); a second one while they stop
    is only answered, since leaving then would leave their workers running."""
    stopping: list[bool] = []

    def on_signal(*_):
        if stopping:
            sys.stderr.write("still stopping the workers: they save their state and stop\n")
            return
        stopping.append(True)
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stopping
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _follow(queue: Queue, todo: list[str], console: Console, poll_every: float) -> None:
    """A bar per run of ``todo`` in a terminal (plain lines otherwise), until none of them is
    queued or running."""
    live = console.is_terminal
    bars = Progress(
        TextColumn("{task.description:<24}"),
        BarColumn(),
        TextColumn("{task.fields[status]}"),
        console=console,
        disable=not live,
    )
    tasks = {n: bars.add_task(n, total=1.0, status="") for n in todo}
    logged: dict[str, tuple] = {}
    with bars:
        while True:
            queue.poll()
            queued = queue.queued()
            for name, task in tasks.items():
                p = queue.progress[name]
                status = status_text(p, queued.index(name) if name in queued else None, style="bar")
                bars.update(task, completed=p.fraction, status=status)
                if not live:
                    _log_line(console, p, logged)
            if queue.settled(todo):
                break
            if _paused_elsewhere(queue, todo, console):
                break
            time.sleep(poll_every)


def _paused_elsewhere(queue: Queue, todo: list[str], console: Console) -> bool:
    """Whether the queue was paused (``diffui queue stop`` or ``pause`` from another shell, the
    UI) and none of ``todo`` runs any more: the rest would wait for ever. Said in one line."""
    if not queue.paused or any(
        n in queue.active() or queue.progress[n].state == "running" for n in todo
    ):
        return False
    waiting = [n for n in todo if n in queue.queued()]
    console.print(
        f"[yellow]the queue was paused from elsewhere (diffui queue stop or pause): "
        f"{', '.join(waiting) or 'nothing'} waiting in it; diffui queue start goes on[/yellow]"
    )
    return True


@contextmanager
def task_bars(console: Console):
    """A ``tasks(name)`` factory for long steps of the front end itself (the FID classifier,
    the report's figures): each task a rich bar (done / total, ETA) in a terminal, one line as it
    starts otherwise. Ctrl-C meanwhile is a KeyboardInterrupt that is noted too, and raised again
    at the task's next step should the first one be lost on its way (a Ctrl-C right as the FID
    classifier started training once went unanswered for minutes)."""
    with (
        Progress(
            TextColumn("{task.description:<24}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=console,
            disable=not console.is_terminal,
        ) as bars,
        _ctrl_c_noted() as interrupted,
    ):
        ids: dict[str, int] = {}

        def tasks(name: str):
            def update(done: int, total: int) -> None:
                if interrupted:
                    raise KeyboardInterrupt
                if name not in ids:
                    ids[name] = bars.add_task(name, total=total)
                    if not console.is_terminal:
                        console.print(f"{name}...")
                bars.update(ids[name], completed=done, total=total)

            return update

        yield tasks


@contextmanager
def _ctrl_c_noted() -> Iterator[list[bool]]:
    """SIGINT as a KeyboardInterrupt, noted in the list it yields."""
    noted: list[bool] = []

    def on_signal(*_):
        noted.append(True)
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGINT, on_signal)
    except ValueError:  # (not the main thread: the UI's report worker)
        yield noted
        return
    try:
        yield noted
    finally:
        signal.signal(signal.SIGINT, previous)


def _log_line(console: Console, p: RunProgress, logged: dict[str, tuple]) -> None:
    """Plain lines for log files and CI: each epoch, and each long task as it starts."""
    if p.epoch > logged.get(p.name, (0, ""))[0]:
        numbers = (
            f"FID {p.estimate.text() if p.estimate else fmt(p.fid, '.1f')}"
            if p.unit == "value"
            else f"train {fmt(p.train_loss)} val {fmt(p.val_loss)}"
        )
        console.print(f"{p.name}: {p.unit} {p.epoch}/{p.epochs} {numbers} eta {_eta(p.eta())}")
    elif p.task and p.task != logged.get(p.name, (0, ""))[1]:
        console.print(f"{p.name}: {p.task}...")
    logged[p.name] = (p.epoch, p.task)


WIDE = 120  # columns from which batch mode's table holds each run's folder and why it failed


def summary_table(runs: list[Run], width: int = WIDE) -> Table | Group:
    """The report's table of final numbers, with each run's folder, and why a run failed or
    is damaged when one is. Narrower than :data:`WIDE` columns the folders and the reasons are
    lines under the table, whose run names are never cut."""
    summaries = [summary(run) for run in runs]
    reasons = [why(p) for p in summaries]
    wide = width >= WIDE
    table = compact_table(width, title="diffui runs")
    for col in (*SUMMARY_COLUMNS, *(("folder",) if wide else ())):  # narrow: a word a line
        table.add_column(col if wide else col.replace(" ", "\n"), no_wrap=not wide)
    keep_names_whole(table, [r.name for r in runs])
    if wide and any(reasons):
        table.add_column("why", overflow="fold")
    for run, p, reason in zip(runs, summaries, reasons):
        folder = (os.path.relpath(run.path),) if wide else ()
        table.add_row(*summary_row(p), *folder, *((reason,) if wide and any(reasons) else ()))
    if wide:
        return table
    folders = sorted({os.path.relpath(run.path.parent) for run in runs})
    lines = [f"{r.name}: {reason}" for r, reason in zip(runs, reasons) if reason]
    lines.append(f"run folders in {', '.join(folders)}")
    return Group(table, *(Text(line, overflow="fold") for line in lines))


def compact_table(width: int, **kw) -> Table:
    """A table with lines around it when there is room (:data:`WIDE` columns), else with one
    space between columns and no lines: 80 columns hold a summary's numbers whole."""
    if width >= WIDE:
        return Table(**kw)
    return Table(box=None, pad_edge=False, collapse_padding=True, **kw)


def keep_names_whole(table: Table, names: list[str]) -> None:
    """The table's first column (run names) as wide as its longest name, never cut."""
    run = table.columns[0]
    run.no_wrap, run.min_width = True, max([len(n) for n in names] + [len(str(run.header))])
