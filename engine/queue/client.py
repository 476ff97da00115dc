"""The front ends' handle on the queue of a runs folder (:class:`Queue`): they change
``queued``, ``jobs``, ``paused`` and ``stop`` in ``queue.json`` (:mod:`engine.queue.state`), read
the run folders, and make sure a queue service runs when there is work for it."""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from engine.errors import UserError
from engine.queue.state import NOT_STARTED, QueueFile, QueueState
from engine.rundir.progress import RunProgress, follow
from engine.rundir.run import Run, iter_runs, prepare_runs
from engine.spec.sections import LOCAL


class QueueError(Exception):
    """An action the queue cannot take, in one line for the user."""


# --- the client ---------------------------------------------------------------------------------


class Queue:
    """A front end's handle on the queue of a runs folder: follows every run in it and changes
    the queue; the queue service (started here when there is work for it) starts the runs.

    Every method is safe to call from any thread; none waits on a worker. :meth:`poll` reads
    the queue and the run folders (a UI calls it from a thread, batch mode in its loop).
    """

    def __init__(self, runs_dir: Path, start_service: bool = True):
        self.runs_dir = Path(runs_dir)
        self.file = QueueFile(self.runs_dir)
        self.start_service = start_service  # tests of the queue alone leave the service out
        self.state = QueueState()
        self.error = ""  # what is wrong with queue.json, in one line ("" when nothing)
        self.runs: list[Run] = []
        self.progress: dict[str, RunProgress] = {}
        self.lock = threading.RLock()
        self._spawned = 0.0
        self._read_state()
        self.rescan()

    @classmethod
    def open(cls, runs_dir: Path, **kw) -> Queue:
        return cls(runs_dir, **kw)

    # -- what is there --
    @property
    def jobs(self) -> int:
        return self.state.jobs

    @property
    def paused(self) -> bool:
        return self.state.paused

    def queued(self) -> list[str]:
        return list(self.state.queued)

    def active(self) -> list[str]:
        return list(self.state.active)

    def rescan(self) -> None:
        """Follow run folders that appeared in the runs folder since (another diffui's)."""
        self.add(list(iter_runs(self.runs_dir, studies=True)))

    def add(self, runs: list[Run]) -> None:
        with self.lock:
            for run in runs:
                if run.name not in self.progress:
                    self.runs.append(run)
                    self.progress[run.name] = RunProgress(run.name)

    def poll(self) -> bool:
        """Read the queue and every run's new events; start a queue service when there is work
        and none runs. False once nothing is queued (unpaused), active or running."""
        with self.lock:
            self._read_state()
            for run in self.runs:
                follow(run, self.progress[run.name])
            self._ensure_service()
            return self.state.busy() or any(p.state == "running" for p in self.progress.values())

    def settled(self, names: list[str]) -> bool:
        """Whether none of ``names`` is queued, active or running (as of the last poll)."""
        with self.lock:
            return not any(
                n in self.state.queued
                or n in self.state.active
                or self.progress[n].state == "running"
                for n in names
            )

    # -- actions --
    def submit(self, names: list[str], jobs: int | None = None) -> list[str]:
        """Batch mode: queue ``names`` that are not finished, queued or running yet, and start
        the queue. Returns the names it queued."""
        added = []
        with self.lock, self._edit() as st:
            for name in names:
                state = self._run(name).status().state
                if state in NOT_STARTED or name in st.queued:
                    continue
                st.queued.append(name)
                added.append(name)
            if jobs:
                st.jobs = jobs
            st.paused = False
        self._ensure_service()
        return added

    def prepare(self, specs: list, hosts: dict) -> list[Run]:
        """The run folders of ``specs`` (RunSpecs, StudySpecs) in this runs folder, made when
        new (:func:`engine.rundir.run.prepare_runs`: a UserError when a folder holds other
        settings), followed from now on, and placed where their ``host`` says."""
        runs = prepare_runs(specs, self.runs_dir)
        self.place({run.name: spec.host for run, spec in zip(runs, specs, strict=True)}, hosts)
        self.add(runs)
        return runs

    def place(self, where: dict[str, list[str]], hosts: dict) -> None:
        """Record where runs may go (``{name: host names in order}``; ``["local"]`` is the
        default) and the ``[hosts]`` tables (HostSpecs) of the experiments file, which the
        service makes its executors from."""
        with self.lock, self._edit() as st:
            st.hosts.update({h: spec.to_dict() for h, spec in hosts.items()})
            for name, names in where.items():
                if list(names) == [LOCAL]:
                    st.where.pop(name, None)
                else:
                    st.where[name] = list(names)

    def enqueue(self, name: str) -> None:
        """Queue a run that is not finished, running or queued already (at the end)."""
        with self.lock:
            run = self._run(name)
            st_ = run.status()
            if st_.state == "damaged":
                raise QueueError(
                    f"{name} is damaged ({st_.detail}): fix or remove that file to queue it"
                )
            if st_.state in NOT_STARTED:
                raise QueueError(f"{name} is {st_.state}: nothing to queue")
            with self._edit() as st:
                if name in st.queued:  # (a stopped run still in `active` is started once gone)
                    raise QueueError(f"{name} is queued already")
                st.queued.append(name)
            self._ensure_service()

    def cancel(self, name: str) -> str:
        """Take a queued run off the queue, or stop a running one (it stays resumable from its
        last checkpoint). Returns what was done, in words."""
        with self.lock:
            run = self._run(name)
            with self._edit() as st:
                if name in st.queued:
                    st.queued.remove(name)
                    return f"{name} taken off the queue"
                if name not in st.active and run.status().state != "running":
                    raise QueueError(f"{name} is neither queued nor running")
                if name not in st.stop:
                    st.stop.append(name)
            self._ensure_service()
        return f"{name}: stopping (resumable from its last checkpoint)"

    def stop(self, names: list[str], timeout: float = 60.0) -> None:
        """Take ``names`` off the queue and stop those running; wait (up to ``timeout``
        seconds) until none runs. Batch mode's Ctrl-C."""
        with self.lock, self._edit() as st:
            st.queued = [n for n in st.queued if n not in names]
            for n in names:
                if (n in st.active or self.progress[n].state == "running") and n not in st.stop:
                    st.stop.append(n)
        deadline = time.time() + timeout
        while time.time() < deadline:
            self.poll()
            if self.settled(names):
                return
            time.sleep(0.2)

    def stop_all(self) -> list[str]:
        """Pause the queue and stop every running run; they go back to the front of the queue,
        so that starting it again resumes them. Returns their names."""
        with self.lock, self._edit() as st:
            running = [n for n in st.active] + [
                n for n, p in self.progress.items() if p.state == "running" and n not in st.active
            ]
            st.paused = True
            st.stop = list(dict.fromkeys([*st.stop, *running]))
            st.queued[:0] = [n for n in running if n not in st.queued]
        self._ensure_service()
        return running

    def move(self, name: str, delta: int) -> None:
        """Move a queued run ``delta`` places towards the front (negative) or back."""
        with self.lock, self._edit() as st:
            if name not in st.queued:
                raise QueueError(f"{name} is not queued: only queued runs can be reordered")
            i = st.queued.index(name)
            j = min(max(i + delta, 0), len(st.queued) - 1)
            st.queued.insert(j, st.queued.pop(i))

    def set_jobs(self, jobs: int) -> None:
        if jobs < 1:
            raise QueueError(f"runs at once: expected an integer >= 1, got {jobs}")
        with self.lock, self._edit() as st:
            st.jobs = jobs
        self._ensure_service()

    def set_paused(self, paused: bool) -> None:
        """A paused queue starts nothing new; runs already running go on."""
        with self.lock, self._edit() as st:
            st.paused = paused
        self._ensure_service()

    def _read_state(self) -> None:
        try:
            self.state = self.file.read()
            self.error = ""
        except UserError as e:  # keep the last good state; say what is wrong, touch nothing
            self.error = str(e)

    @contextmanager
    def _edit(self) -> Iterator[QueueState]:
        """Change queue.json (holding its lock); a damaged one is refused, not overwritten."""
        try:
            with self.file.edit() as st:
                yield st
                self.state = copy.deepcopy(st)
        except UserError as e:
            self.error = str(e)
            raise QueueError(str(e)) from None

    def _run(self, name: str) -> Run:
        for run in self.runs:
            if run.name == name:
                return run
        raise QueueError(f"no run named {name}")

    def _ensure_service(self) -> None:
        if not self.start_service or not self.state.busy():
            return
        from engine.queue import service  # (its executors: not imported for a first frame)

        if service.running_pid(self.runs_dir) is None and time.time() - self._spawned > 5:
            service.spawn(self.runs_dir)
            self._spawned = time.time()
