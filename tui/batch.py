"""``diffui --batch``: run the queue headless with a rich progress bar per run."""
from __future__ import annotations

import os
import signal
import time

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

from engine.queue import Progress as RunProgress
from engine.queue import SUMMARY_COLUMNS, Queue, fmt, summary, summary_row
from engine.runs import Run, format_seconds

EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130


def _eta(seconds: float | None) -> str:
    return "-" if seconds is None else format_seconds(seconds)


def run_batch(runs: list[Run], jobs: int = 1, console: Console | None = None,
              poll_every: float = 0.25) -> int:
    if console is None:
        console = Console()
        if not console.is_terminal:  # a log file: room for the whole table
            console = Console(width=200)
    queue = Queue(runs, jobs=jobs)  # each worker gets the cores shared out by jobs
    for name in queue.skipped:
        console.print(f"[dim]{name}: finished already, skipped[/dim]")
    interrupted = False
    live = console.is_terminal
    bars = Progress(TextColumn("{task.description:<24}"), BarColumn(),
                    TextColumn("{task.fields[status]}"), console=console, disable=not live)
    tasks = {r.name: bars.add_task(r.name, total=1.0, status="")
             for r in runs if r.name not in queue.skipped}
    logged: dict[str, int] = {}

    def on_term(*_):  # a job scheduler's SIGTERM stops the runs like Ctrl-C does
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        with bars:
            while queue.poll():
                for name, task in tasks.items():
                    p = queue.progress[name]
                    bars.update(task, completed=p.fraction, status=_status_text(p))
                    if not live and p.epoch > logged.get(name, 0):  # plain log lines for files/CI
                        logged[name] = p.epoch
                        console.print(f"{name}: epoch {p.epoch}/{p.epochs} train {fmt(p.train_loss)}"
                                      f" val {fmt(p.val_loss)} eta {_eta(p.eta())}")
                time.sleep(poll_every)
    except KeyboardInterrupt:
        interrupted = True
        console.print("[yellow]interrupted: stopping workers (runs stay resumable)...[/yellow]")
        queue.stop()
    finally:
        signal.signal(signal.SIGTERM, previous)
    console.print(summary_table(runs))
    if interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if any(queue.progress[r.name].state != "finished" for r in runs) else EXIT_OK


def _status_text(p: RunProgress) -> str:
    if p.state != "running":
        return p.state
    text = f"epoch {p.epoch}/{p.epochs}"
    if p.loss is not None:
        text += f"  loss {p.loss:.4f}"
    return text + f"  eta {_eta(p.eta())}"


def summary_table(runs: list[Run]) -> Table:
    """The report's table of final numbers, with each run's folder."""
    table = Table(title="diffui runs")
    for col in (*SUMMARY_COLUMNS, "folder"):
        table.add_column(col)
    for run in runs:
        table.add_row(*summary_row(summary(run)), os.path.relpath(run.path))
    return table
