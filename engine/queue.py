"""The queue: run folders to create, worker processes to start, and their progress to follow.

Front ends (batch mode, the UI) drive a :class:`Queue` by calling ``poll()`` periodically; it
never blocks on a worker. Everything it reports is read back from the run folders.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .config import ConfigError, RunSpec
from .runs import Run, read_events

ENGINE_ROOT = Path(__file__).resolve().parent.parent


def prepare_runs(specs: list[RunSpec], runs_dir: Path) -> list[Run]:
    """The run folder of every spec, created when new. A folder that already holds a run with
    other settings is an error (nothing in it is touched): resuming it would mix two studies.
    So is missing input that a run cannot train without (checked before any folder is made)."""
    check_inputs(specs)
    runs = []
    for spec in specs:
        run = Run(Path(runs_dir) / spec.name)
        if run.exists():
            diff = _first_difference(run.spec().to_dict(), spec.to_dict())
            if diff:
                raise ConfigError(
                    f"{run.path}: holds a run with other settings ({diff}); "
                    "use --runs-dir for a separate set of runs, or remove that folder")
        else:
            Run.create(run.path, spec)
        runs.append(run)
    return runs


def check_inputs(specs: list[RunSpec]) -> None:
    """A :class:`ConfigError` when a morph run's latents (FashionMNIST) cannot be loaded."""
    from . import data

    for spec in specs:
        if spec.degradation != "morph":
            continue
        try:
            for split in ("train", "test"):
                data.load_latents(spec.data, split)
        except data.DataUnavailable as e:
            raise ConfigError(f"{spec.experiment}: degradation = 'morph' needs FashionMNIST (its "
                              f"latents): {' '.join(str(e).split())}") from None


def _first_difference(old: dict, new: dict, prefix: str = "") -> str:
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            d = _first_difference(a, b, f"{prefix}{key}.")
            if d:
                return d
        elif a != b and key != "profile":
            return f"{prefix}{key} is {a!r} there, {b!r} here"
    return ""


class LocalExecutor:
    """Starts workers as child processes of this machine, each in its own session so that they
    outlive the terminal (and the UI) that started them."""

    where = "local"

    def start(self, run: Run, threads: int | None = None) -> subprocess.Popen:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ENGINE_ROOT), env.get("PYTHONPATH")]))
        if threads:
            env["DIFFUI_THREADS"] = str(threads)
        log = open(run.log_path, "ab")
        try:
            return subprocess.Popen([sys.executable, "-m", "engine.worker", str(run.path)],
                                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=env, cwd=run.path, start_new_session=True)
        finally:
            log.close()


@dataclass
class Progress:
    """What a front end shows about one run, folded from its events."""

    name: str
    state: str = "pending"
    detail: str = ""
    epoch: int = 0  # last completed epoch
    epochs: int = 0
    step: int = 0
    steps: int = 0
    loss: float | None = None  # latest training step loss
    train_loss: float | None = None  # last epoch's mean
    val_loss: float | None = None
    started: float | None = None  # this attempt's start time
    epoch_started: float | None = None
    epoch_seconds: list[float] = field(default_factory=list)
    _offset: int = 0

    def fold(self, e: dict) -> None:
        t = e.get("type")
        if t == "start":
            self.started = self.epoch_started = e["time"]
            self.epoch, self.epochs = e["epoch"], e["epochs"]
            self.step = 0
        elif t == "progress":
            self.step, self.steps, self.loss = e["step"], e["steps"], e["loss"]
        elif t == "epoch":
            self.epoch, self.epochs = e["epoch"], e["epochs"]
            self.train_loss, self.val_loss = e["train_loss"], e["val_loss"]
            self.epoch_seconds.append(e["seconds"])
            self.epoch_started, self.step = e["time"], 0

    @property
    def fraction(self) -> float:
        if not self.epochs:
            return 0.0
        within = self.step / self.steps if self.steps else 0.0
        return min(1.0, (self.epoch + within) / self.epochs)

    def eta(self) -> float | None:
        """Seconds left, from the mean epoch time so far (None before the first epoch ends)."""
        if self.state != "running" or not self.epoch_seconds:
            return None
        per_epoch = sum(self.epoch_seconds[-5:]) / len(self.epoch_seconds[-5:])
        within = self.step / self.steps if self.steps else 0.0
        return max(0.0, per_epoch * (self.epochs - self.epoch - within))


def follow(run: Run, prog: Progress) -> Progress:
    """Fold the run's new events into ``prog`` and refresh its derived state."""
    events, prog._offset = read_events(run.events_path, prog._offset)
    for e in events:
        prog.fold(e)
    st = run.status()
    prog.state, prog.detail = st.state, st.detail
    return prog


class Queue:
    """Runs ``runs`` with at most ``jobs`` workers at once. Finished runs are skipped; unfinished
    ones (resumable, failed, pending) are started and resume from their checkpoints."""

    def __init__(self, runs: list[Run], jobs: int = 1, executor=None, threads: int | None = None):
        self.runs = runs
        self.jobs = max(1, jobs)
        self.executor = executor or LocalExecutor()
        self.threads = threads
        self.progress = {r.name: Progress(r.name) for r in runs}
        self.procs: dict[str, subprocess.Popen] = {}
        self.todo = [r for r in runs if r.status().state != "finished"]
        self.skipped = [r.name for r in runs if r not in self.todo]

    def poll(self) -> bool:
        """Start what fits, reap exited workers, refresh progress. False once all are done."""
        for name, proc in list(self.procs.items()):
            if proc.poll() is not None:
                del self.procs[name]
        while self.todo and len(self.procs) < self.jobs:
            run = self.todo.pop(0)
            if run.status().state == "running":  # another diffui already runs it: follow it
                continue
            self.procs[run.name] = self.executor.start(run, self.threads)
        for run in self.runs:
            follow(run, self.progress[run.name])
        return bool(self.todo or self.procs or any(
            p.state == "running" for p in self.progress.values()))

    def stop(self, timeout: float = 30.0) -> None:
        """Ask every worker this queue started to stop (SIGTERM), wait, then kill stragglers."""
        self.todo.clear()
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.time() + timeout
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()
        for run in self.runs:
            follow(run, self.progress[run.name])
