"""The queue of a runs folder: which runs wait, in which order, how many run at once.

It lives in ``RUNS/queue.json`` and every change goes through :class:`QueueFile` under a lock
file, so any number of diffuis (UIs, batch processes, ``diffui queue``) can change it at once:

    {"queued": ["a", "b"],   # waiting, in order
     "jobs": 1,              # runs at once (slots of the local executor)
     "paused": true,         # a paused queue starts nothing new; running runs go on
     "active": {"c": {...}}, # started by the queue service: executor, slot, handle, since
     "stop": ["c"],          # stop requests the service carries out
     "where": {"b": ["gpu1", "local"]},  # the hosts a run may go to, in order (else local)
     "hosts": {"gpu1": {...}}}           # those hosts' [hosts.NAME] tables, as last submitted

:func:`next_jobs` decides what runs next on which slot. The queue service
(:mod:`engine.service`) is the only one that starts work: it takes runs off ``queued`` and
records them in ``active`` in one locked step, so a run is never started twice.
Front ends are clients (:class:`Queue`): they change ``queued``, ``jobs``, ``paused`` and
``stop``, read the run folders, and make sure a service runs when there is work for it.
"""
from __future__ import annotations

import copy
import fcntl
import json
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

from .config import LOCAL, ConfigError
from .events import RunProgress, follow
from .runs import Run, atomic_write_json, iter_runs, make_dir, prepare_runs, write_error

STATE_FILE = "queue.json"
LOCK_FILE = ".queue.lock"


class QueueError(Exception):
    """An action the queue cannot take, in one line for the user."""


@dataclass
class QueueState:
    queued: list[str] = field(default_factory=list)
    jobs: int = 1
    paused: bool = True
    active: dict[str, dict] = field(default_factory=dict)
    stop: list[str] = field(default_factory=list)
    where: dict[str, list[str]] = field(default_factory=dict)
    hosts: dict[str, dict] = field(default_factory=dict)

    def hosts_of(self, name: str) -> list[str]:
        """Where run ``name`` may go, in order of preference."""
        return self.where.get(name) or [LOCAL]

    def where_text(self, name: str, worker_host: str, here: str) -> str:
        """Where a run is, in words for the runs tables: the host the queue follows it on
        (``gpu1``; a cluster with its job, ``cluster: job 12 PENDING (Priority)``), the hosts
        a queued run waits for (``→ gpu1, local``), or the host of its last worker."""
        from .executors import describe
        active = self.active.get(name)
        if active is not None:
            host = active.get("executor", LOCAL)
            job = describe(active.get("handle", {}))
            return f"{host}: {job}" if job else host
        if name in self.queued and name in self.where:
            return "→ " + ", ".join(self.where[name])
        return "" if not worker_host else LOCAL if worker_host == here else worker_host

    def busy(self) -> bool:
        """Whether a queue service has work: runs to start, runs to follow or to stop."""
        return bool((self.queued and not self.paused) or self.active or self.stop)


# states in which the queue starts no worker: nothing to do, one runs, or starting one would
# overwrite a damaged file
NOT_STARTED = ("finished", "running", "damaged")


def next_jobs(st: QueueState, statuses: dict[str, str], slots: dict[str, list[str]],
              foreign: int = 0) -> list[tuple[str, str | None, str | None]]:
    """What to start now, in queue order: ``(name, host, slot)`` for each queued run that gets
    a free slot on one of the hosts it may use (the first of them that has one), taking it off
    ``st.queued``; ``(name, None, None)`` for a run that ``statuses`` says another diffui runs
    or ran to its end (taken off, not started). ``slots`` are each host's slots; a slot is taken
    by each run of ``st.active``, and ``foreign`` local slots by runs running outside this
    queue. A run still in ``st.active`` (stopped, and queued again) waits for its worker to be
    gone; a run whose hosts are all full waits without holding up the runs behind it."""
    used = {(a.get("executor", LOCAL), a.get("slot")) for a in st.active.values()}
    free = {}
    for host, names in slots.items():
        left = [s for s in names if (host, s) not in used]
        if host == LOCAL:
            taken = sum(1 for h, _ in used if h == LOCAL)
            left = left[:max(0, len(names) - taken - foreign)]
        free[host] = left
    out: list[tuple[str, str | None, str | None]] = []
    for name in list(st.queued):
        if name in st.active:
            continue
        if statuses.get(name) in NOT_STARTED:
            st.queued.remove(name)
            out.append((name, None, None))
            continue
        host = next((h for h in st.hosts_of(name) if free.get(h)), None)
        if host is None:
            continue
        st.queued.remove(name)
        out.append((name, host, free[host].pop(0)))
    return out


class QueueFile:
    """``queue.json`` of a runs folder, read freely (it is replaced atomically) and changed only
    inside :meth:`edit`, which holds ``.queue.lock``."""

    def __init__(self, runs_dir: Path):
        self.runs_dir = Path(runs_dir)
        self.path = self.runs_dir / STATE_FILE

    def read(self) -> QueueState:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return QueueState()
        except (ValueError, UnicodeDecodeError):
            raise ConfigError(f"{self.path}: not valid JSON (the saved queue); remove it to "
                              "start afresh") from None
        return _state(raw, self.path)

    @contextmanager
    def edit(self) -> Iterator[QueueState]:
        """The state to change in place; written back (atomically) when changed."""
        make_dir(self.runs_dir)
        try:
            lock = open(self.runs_dir / LOCK_FILE, "a")
        except OSError as e:  # a read-only or full disk: say which file, in one line
            raise write_error(e, e.filename or self.runs_dir) from None
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = self.read()
            before = asdict(state)
            yield state
            if asdict(state) != before:
                state.queued = list(dict.fromkeys(state.queued))
                atomic_write_json(self.path, asdict(state))


def _state(raw, path: Path) -> QueueState:
    def bad(key: str, expected: str):
        return ConfigError(f"{path}: {key}: expected {expected} (the saved queue); fix or remove "
                           "it to start afresh")
    if not isinstance(raw, dict):
        raise bad("(top)", "a JSON object")
    s = QueueState()
    for key, check, expected in (
            ("queued", lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
             "a list of run names"),
            ("jobs", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
             "an integer >= 1"),
            ("paused", lambda v: isinstance(v, bool), "true or false"),
            ("active", lambda v: isinstance(v, dict) and all(isinstance(x, dict) for x in v.values()),
             "an object of run names"),
            ("stop", lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
             "a list of run names"),
            ("where", lambda v: isinstance(v, dict) and all(
                isinstance(x, list) and all(isinstance(h, str) for h in x) for x in v.values()),
             "an object of run names and lists of hosts"),
            ("hosts", lambda v: isinstance(v, dict) and all(isinstance(x, dict) for x in v.values()),
             "an object of host tables")):
        if key in raw:
            if not check(raw[key]):
                raise bad(key, expected)
            setattr(s, key, raw[key])
    return s


# --- the client ------------------------------------------------------------------------------------

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
    def open(cls, runs_dir: Path, **kw) -> "Queue":
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
            return not any(n in self.state.queued or n in self.state.active
                           or self.progress[n].state == "running" for n in names)

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
        new (:func:`engine.runs.prepare_runs`: a ConfigError when a folder holds other
        settings), followed from now on, and placed where their ``host`` says."""
        runs = prepare_runs(specs, self.runs_dir)
        self.place({run.name: spec.host for run, spec in zip(runs, specs)}, hosts)
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
                raise QueueError(f"{name} is damaged ({st_.detail}): fix or remove that file "
                                 "to queue it")
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
            running = [n for n in st.active] + [n for n, p in self.progress.items()
                                                if p.state == "running" and n not in st.active]
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
        except ConfigError as e:  # keep the last good state; say what is wrong, touch nothing
            self.error = str(e)

    @contextmanager
    def _edit(self) -> Iterator[QueueState]:
        """Change queue.json (holding its lock); a damaged one is refused, not overwritten."""
        try:
            with self.file.edit() as st:
                yield st
                self.state = copy.deepcopy(st)
        except ConfigError as e:
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
        from . import service
        if service.running_pid(self.runs_dir) is None and time.time() - self._spawned > 5:
            service.spawn(self.runs_dir)
            self._spawned = time.time()
