"""The queue: run folders to create, worker processes to start, and their progress to follow.

Front ends (batch mode, the UI) drive a :class:`Queue` by calling ``poll()`` periodically; it
never blocks on a worker. Everything it reports is read back from the run folders.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .config import ConfigError, RunSpec
from .runs import Run, atomic_write_json, format_seconds, read_events

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
    """A :class:`ConfigError` when a run's degradation cannot load its inputs (its registry
    entry's ``check_inputs``: FashionMNIST for morph)."""
    from . import data
    from .components import DEGRADATIONS

    for spec in specs:
        check = DEGRADATIONS.get(spec.degradation).check_inputs
        if check is None:
            continue
        try:
            check(spec)
        except data.DataUnavailable as e:
            raise ConfigError(f"{spec.experiment}: degradation = {spec.degradation!r}: "
                              f"{e.one_line()}") from None


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
    host: str = ""  # where the latest worker runs (or ran)
    epoch: int = 0  # last completed epoch
    epochs: int = 0
    step: int = 0
    steps: int = 0
    loss: float | None = None  # latest training step loss
    train_loss: float | None = None  # last epoch's mean
    val_loss: float | None = None
    fid: float | None = None  # latest evaluation
    floor: float | None = None
    entropy: float | None = None
    sampler: str = ""
    started: float | None = None  # this attempt's start time
    epoch_started: float | None = None
    epoch_seconds: list[float] = field(default_factory=list)
    wall_seconds: float = 0.0  # time in attempts that have ended
    last_time: float | None = None  # time of the latest event
    _open: bool = False  # an attempt has started and not ended
    _offset: int = 0

    def fold(self, e: dict) -> None:
        t = e.get("type")
        if t == "start":
            if self._open:  # an attempt that died without an end event
                self.wall_seconds += self.last_time - self.started
            self.started = self.epoch_started = e["time"]
            self.epoch, self.epochs = e["epoch"], e["epochs"]
            self.step, self._open = 0, True
        elif t == "progress":
            self.step, self.steps, self.loss = e["step"], e["steps"], e["loss"]
        elif t == "epoch":
            self.epoch, self.epochs = e["epoch"], e["epochs"]
            self.train_loss, self.val_loss = e["train_loss"], e["val_loss"]
            self.epoch_seconds.append(e["seconds"])
            self.epoch_started, self.step = e["time"], 0
        elif t == "eval":
            self.fid, self.floor, self.entropy = e["fid"], e["floor"], e.get("entropy")
            self.sampler = e.get("sampler", "")
        elif t == "end" and self._open:
            self.wall_seconds += e["time"] - self.started
            self._open = False
        self.last_time = e.get("time", self.last_time)

    def elapsed(self, now: float | None = None) -> float:
        """Seconds spent in worker attempts, the current one counted up to ``now`` while it runs
        (up to its last event when it died)."""
        if not self._open:
            return self.wall_seconds
        end = (now or time.time()) if self.state == "running" else self.last_time
        return self.wall_seconds + max(0.0, end - self.started)

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
    prog.state, prog.detail, prog.host = st.state, st.detail, st.host
    return prog


SUMMARY_COLUMNS = ("run", "status", "epochs", "final val loss", "FID", "floor", "class entropy",
                   "sampler", "wall time")


def summary(run: Run) -> Progress:
    """A run's latest numbers, read from its folder (epochs from its settings before it starts)."""
    p = follow(run, Progress(run.name))
    p.epochs = p.epochs or run.spec().training.epochs
    return p


def fmt(x: float | None, spec: str = ".4f") -> str:
    return "-" if x is None else format(x, spec)


def summary_row(p: Progress) -> list[str]:
    """The row of the report's table (SUMMARY_COLUMNS): batch mode, report.md, the compare view."""
    return [p.name, p.state, f"{p.epoch}/{p.epochs}", fmt(p.val_loss), fmt(p.fid, ".2f"),
            fmt(p.floor, ".2f"), fmt(p.entropy, ".2f"), p.sampler or "-", format_seconds(p.elapsed())]


class QueueError(Exception):
    """An action the queue cannot take, in one line for the user."""


class Queue:
    """Runs the queued runs in order with at most ``jobs`` workers at once, and follows every run
    it knows (also those another diffui started: they count towards ``jobs``).

    Batch mode builds one over its runs (every unfinished run queued, never paused). The UI opens
    the one persisted in a runs folder (``queue.json``: the queued names, ``jobs`` and ``paused``),
    so that a queue outlives the UI like its runs do. Every method is safe to call from any
    thread; none waits on a worker.
    """

    STATE_FILE = "queue.json"

    def __init__(self, runs: list[Run], jobs: int = 1, executor=None, threads: int | None = None,
                 queued: list[str] | None = None, paused: bool = False,
                 state_path: Path | None = None):
        self.runs = list(runs)
        self.jobs = max(1, jobs)
        self.executor = executor or LocalExecutor()
        self.threads = threads  # torch threads per worker; None: the cores shared out by jobs
        self.progress = {r.name: Progress(r.name) for r in self.runs}
        self.procs: dict[str, subprocess.Popen] = {}
        self.paused = paused
        self.state_path = state_path
        self.lock = threading.RLock()
        by_name = {r.name: r for r in self.runs}
        if queued is None:
            self.todo = [r for r in self.runs if r.status().state != "finished"]
            self.skipped = [r.name for r in self.runs if r not in self.todo]
        else:
            self.todo = [by_name[n] for n in dict.fromkeys(queued) if n in by_name]
            self.skipped = []

    # -- the persisted queue of a runs folder (the UI's) --
    @classmethod
    def open(cls, runs_dir: Path, executor=None) -> "Queue":
        from .runs import iter_runs
        state_path = Path(runs_dir) / cls.STATE_FILE
        state = _read_state(state_path)
        return cls(list(iter_runs(runs_dir)), jobs=state.get("jobs", 1), executor=executor,
                   queued=state.get("queued", []), paused=state.get("paused", True),
                   state_path=state_path)

    def _save(self) -> None:
        if self.state_path is not None:
            atomic_write_json(self.state_path, {"queued": [r.name for r in self.todo],
                                                "jobs": self.jobs, "paused": self.paused})

    def rescan(self) -> None:
        """Follow run folders that appeared in the runs folder since (another diffui's)."""
        if self.state_path is not None:
            from .runs import iter_runs
            self.add(list(iter_runs(self.state_path.parent)))

    def add(self, runs: list[Run]) -> None:
        with self.lock:
            for run in runs:
                if run.name not in self.progress:
                    self.runs.append(run)
                    self.progress[run.name] = Progress(run.name)

    # -- actions --
    def queued(self) -> list[str]:
        with self.lock:
            return [r.name for r in self.todo]

    def enqueue(self, name: str) -> None:
        """Queue a run that is not finished, running or queued already (at the end)."""
        with self.lock:
            run = self._run(name)
            state = run.status().state
            if state in ("finished", "running"):
                raise QueueError(f"{name} is {state}: nothing to queue")
            if run in self.todo:
                raise QueueError(f"{name} is queued already")
            self.todo.append(run)
            self._save()

    def cancel(self, name: str) -> str:
        """Take a queued run off the queue, or stop a running one (it stays resumable from its
        last checkpoint). Returns what was done, in words."""
        with self.lock:
            run = self._run(name)
            if run in self.todo:
                self.todo.remove(run)
                self._save()
                return f"{name} taken off the queue"
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                return f"{name}: stopping (resumable from its last checkpoint)"
            if run.request_stop():
                return f"{name}: stopping (resumable from its last checkpoint)"
            raise QueueError(f"{name} is neither queued nor running here")

    def move(self, name: str, delta: int) -> None:
        """Move a queued run ``delta`` places towards the front (negative) or back."""
        with self.lock:
            run = self._run(name)
            if run not in self.todo:
                raise QueueError(f"{name} is not queued: only queued runs can be reordered")
            i = self.todo.index(run)
            j = min(max(i + delta, 0), len(self.todo) - 1)
            self.todo.insert(j, self.todo.pop(i))
            self._save()

    def set_jobs(self, jobs: int) -> None:
        if jobs < 1:
            raise QueueError(f"runs at once: expected an integer >= 1, got {jobs}")
        with self.lock:
            self.jobs = jobs
            self._save()

    def set_paused(self, paused: bool) -> None:
        """A paused queue starts nothing new; runs already running go on."""
        with self.lock:
            self.paused = paused
            self._save()

    def _run(self, name: str) -> Run:
        for run in self.runs:
            if run.name == name:
                return run
        raise QueueError(f"no run named {name}")

    def poll(self) -> bool:
        """Reap exited workers, refresh progress, start what fits. False once all are done."""
        with self.lock:
            for name, proc in list(self.procs.items()):
                if proc.poll() is not None:
                    del self.procs[name]
            for run in self.runs:
                follow(run, self.progress[run.name])
            busy = set(self.procs) | {n for n, p in self.progress.items() if p.state == "running"}
            started = False
            while not self.paused and self.todo and len(busy) < self.jobs:
                run = self.todo.pop(0)
                started = True
                if run.name in busy or run.status().state in ("running", "finished"):
                    continue  # another diffui runs it (or ran it to the end): follow it
                threads = self.threads or max(1, (os.cpu_count() or 1) // self.jobs)
                self.procs[run.name] = self.executor.start(run, threads)
                busy.add(run.name)
            if started:
                self._save()
            return bool(self.todo or self.procs or any(
                p.state == "running" for p in self.progress.values()))

    def stop(self, timeout: float = 30.0) -> None:
        """Ask every worker this queue started to stop (SIGTERM), wait, then kill stragglers."""
        with self.lock:
            self.todo.clear()
            self._save()
            procs = list(self.procs.values())
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.time() + timeout
        for proc in procs:
            try:
                proc.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        with self.lock:
            self.procs.clear()
            for run in self.runs:
                follow(run, self.progress[run.name])


def _read_state(path: Path) -> dict:
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except ValueError:
        raise ConfigError(f"{path}: not valid JSON (the saved queue); remove it to start afresh") \
            from None
    return state if isinstance(state, dict) else {}
