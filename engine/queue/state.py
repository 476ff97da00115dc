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
(:mod:`engine.queue.service`) is the only one that starts work: it takes runs off ``queued`` and
records them in ``active`` in one locked step, so a run is never started twice.
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from engine.errors import UserError
from engine.files import atomic_write_json, make_dir, write_error
from engine.queue.handle import Handle, finite_time, handle_problem
from engine.rundir.run import NotAFile, read_file
from engine.spec.names import QUEUE_NAME_EXPECTED, SAFE_NAME, safe_queue_name
from engine.spec.sections import LOCAL

STATE_FILE = "queue.json"


LOCK_FILE = ".queue.lock"


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
        active = self.active.get(name)
        if active is not None:
            host = active.get("executor", LOCAL)
            job = Handle.from_dict(active.get("handle", {})).describe()
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


def next_jobs(
    st: QueueState, statuses: dict[str, str], slots: dict[str, list[str]], foreign: int = 0
) -> list[tuple[str, str | None, str | None]]:
    """What to start now, in queue order: ``(name, host, slot)`` for each queued run that gets
    a free slot on one of the hosts it may use (the first of them that has one), taking it off
    ``st.queued``; ``(name, None, None)`` for a run that ``statuses`` says another diffui runs
    or ran to its end (taken off, not started). ``slots`` are each host's slots; a slot is taken
    by each run of ``st.active``, and ``foreign`` local slots by runs running outside this
    queue. A run still in ``st.active`` (stopped, and queued again) waits for its worker to be
    gone; a run whose hosts are all full waits without holding up the runs behind it."""
    used = {(a.get("executor", LOCAL), a.get("slot")) for a in st.active.values()}
    free: dict[str, list[str]] = {}
    for host, names in slots.items():
        left = [s for s in names if (host, s) not in used]
        if host == LOCAL:
            taken = sum(1 for h, _ in used if h == LOCAL)
            left = left[: max(0, len(names) - taken - foreign)]
        free[host] = left
    out: list[tuple[str, str | None, str | None]] = []
    for name in list(st.queued):
        if name in st.active:
            continue
        if statuses.get(name) in NOT_STARTED:
            st.queued.remove(name)
            out.append((name, None, None))
            continue
        to = next((h for h in st.hosts_of(name) if free.get(h)), None)
        if to is None:
            continue
        st.queued.remove(name)
        out.append((name, to, free[to].pop(0)))
    return out


class QueueFile:
    """``queue.json`` of a runs folder, read freely (it is replaced atomically) and changed only
    inside :meth:`edit`, which holds ``.queue.lock``."""

    def __init__(self, runs_dir: Path):
        self.runs_dir = Path(runs_dir)
        self.path = self.runs_dir / STATE_FILE

    def read(self) -> QueueState:
        """The queue as saved; a :class:`UserError` in one line naming the file and the key
        when it is no queue diffui wrote: not JSON, a value of the wrong kind, a run name that
        could leave the runs folder (``../x``, ``/x``), an active job's pid that is no process
        id (<= 0) or a Slurm job id that is not Slurm's shape."""
        try:
            raw = json.loads(read_file(self.path).decode("utf-8"))
        except FileNotFoundError:
            return QueueState()
        except NotAFile:
            raise UserError(f"{self.path}: not a file (the saved queue); remove it") from None
        except (ValueError, UnicodeDecodeError, RecursionError):  # (nested beyond reason)
            raise UserError(
                f"{self.path}: not valid JSON (the saved queue); remove it to start afresh"
            ) from None
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
        return UserError(
            f"{path}: {key}: expected {expected} (the saved queue); fix or remove "
            "it to start afresh"
        )

    if not isinstance(raw, dict):
        raise bad("(top)", "a JSON object")
    s = QueueState()
    for key, check, expected in (
        (
            "queued",
            lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
            "a list of run names",
        ),
        (
            "jobs",
            lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
            "an integer >= 1",
        ),
        ("paused", lambda v: isinstance(v, bool), "true or false"),
        (
            "active",
            lambda v: isinstance(v, dict) and all(isinstance(x, dict) for x in v.values()),
            "an object of run names",
        ),
        (
            "stop",
            lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
            "a list of run names",
        ),
        (
            "where",
            lambda v: (
                isinstance(v, dict)
                and all(
                    isinstance(x, list) and all(isinstance(h, str) for h in x) for x in v.values()
                )
            ),
            "an object of run names and lists of hosts",
        ),
        (
            "hosts",
            lambda v: isinstance(v, dict) and all(isinstance(x, dict) for x in v.values()),
            "an object of host tables",
        ),
    ):
        if key in raw:
            if not check(raw[key]):
                raise bad(key, expected)
            setattr(s, key, raw[key])
    problem = _names_problem(s)
    if problem:
        raise bad(*problem)
    return s


def _names_problem(s: QueueState) -> tuple[str, str] | None:
    """(the key, what it should be) of a run or host name of the queue that could leave the
    runs folder (``../x``, ``/x``), or of an ``active`` entry of the wrong kind; or None."""
    for key, names in (
        ("queued", s.queued),
        ("stop", s.stop),
        ("active", s.active),
        ("where", s.where),
    ):
        for name in names:
            if not safe_queue_name(name):
                return f"{key}: {json.dumps(name)[:60]}", QUEUE_NAME_EXPECTED
    for key, hosts in [("hosts", list(s.hosts)), *((f"where.{n}", h) for n, h in s.where.items())]:
        for host in hosts:
            if not SAFE_NAME.fullmatch(host):  # (it names RUNS/.slurm/HOST)
                return f"{key}: {json.dumps(host)[:60]}", "a host name (a safe folder name)"
    for name, entry in s.active.items():
        problem = _active_problem(entry)
        if problem:
            return f"active.{name}.{problem[0]}", problem[1]
    return None


def _active_problem(entry: dict) -> tuple[str, str] | None:
    """(the key, what it should be) of what is wrong with an ``active`` entry, or None."""
    for key in ("executor", "slot"):
        if not isinstance(entry.get(key, ""), str):
            return key, "text"
    for key in ("since", "stopping"):
        if finite_time(entry.get(key, 0)) is None:
            return key, "a time (a number)"
    if "handle" in entry:
        problem = handle_problem(entry["handle"])
        if problem:
            return ".".join(filter(None, ("handle", problem[0]))), problem[1]
    return None
