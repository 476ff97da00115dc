"""The queue service of a runs folder: ``python -m engine.queue.service RUNS_DIR``.

One detached process per runs folder starts what the queue says, on the executors' slots, and
follows what it started. The UI, ``diffui --batch`` and ``diffui queue`` are its clients: they
change ``queue.json`` (:mod:`engine.queue.client`) and start a service when there is work and
none runs (:func:`spawn`); closing them stops nothing. ``RUNS/service.lock`` holds the live
service's pid (and its flock), so a second service on the same folder exits at once with one
line. The service exits by itself when nothing is queued (or the queue is paused) and nothing
it started still runs; it logs what it does to ``RUNS/service.log``.

After a reboot (or a killed service) the queue is still in ``queue.json``: the next service
follows workers that still live, and puts runs whose worker died with the machine back at the
front of the queue, to resume from their checkpoints.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from engine.errors import UserError
from engine.queue.executors.base import Executor, Job, StartError, say, start_error
from engine.queue.executors.registry import executors, make
from engine.queue.handle import Handle
from engine.queue.process import spawn_detached
from engine.queue.state import QueueFile, QueueState, next_jobs
from engine.rundir.run import Run, iter_runs, read_file, runs_module
from engine.spec.costs import busy_cores, worker_threads
from engine.spec.sections import LOCAL

MODULE = "engine.queue.service"  # how the service is started (python -m), and known by pid
LOCK = "service.lock"
LOG = "service.log"
KILL_AFTER = 30.0  # seconds a stopped worker gets to save its state before it is killed


class ServiceRunning(Exception):
    """Another service holds the runs folder; ``str()`` is the one line for the user."""


def running_pid(runs_dir: Path) -> int | None:
    """The pid of the live queue service of ``runs_dir``, or None."""
    try:
        pid = int(read_file(Path(runs_dir) / LOCK).decode("utf-8").strip() or 0)
    except (OSError, ValueError):  # (a FIFO is no lock: NotAFile; UnicodeDecodeError)
        return None
    return pid if runs_module(pid, MODULE, Path(runs_dir)) else None


def spawn(runs_dir: Path) -> subprocess.Popen:
    """Start a detached service for ``runs_dir`` (it exits at once if one runs already)."""
    runs_dir = Path(runs_dir).resolve()
    runs_dir.mkdir(parents=True, exist_ok=True)
    return spawn_detached(MODULE, [str(runs_dir)], runs_dir / LOG, cwd=runs_dir)


def stop_service(runs_dir: Path, timeout: float = 10.0) -> bool:
    """Ask the service to exit (SIGTERM: it stops starting work; running work goes on).
    False when none runs."""
    pid = running_pid(runs_dir)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.time() + timeout
    while time.time() < deadline and running_pid(runs_dir) == pid:
        time.sleep(0.05)
    return True


class Service:
    """The queue service of one runs folder (see the module's text)."""

    def __init__(
        self,
        runs_dir: Path,
        executors_: dict[str, Executor] | None = None,
        poll_every: float = 0.5,
        log: Callable[[str], None] | None = None,
    ):
        self.runs_dir = Path(runs_dir).resolve()
        self.file = QueueFile(self.runs_dir)
        self.executors = executors_ or executors()
        self._tables: dict[str, dict] = {}  # the [hosts] table each host's executor was made from
        self.poll_every = poll_every
        self.log = log or say  # (a log that cannot be written is no reason to stop)
        self._lock_file: TextIO | None = None
        self._quit = False
        self._problem = ""  # what is wrong with queue.json, as last logged

    # -- the lock --
    def acquire(self) -> None:
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        f = open(self.runs_dir / LOCK, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            pid = running_pid(self.runs_dir)
            raise ServiceRunning(
                f"a queue service already runs for {self.runs_dir}"
                + (f" (pid {pid})" if pid else "")
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        self._lock_file = f

    def release(self) -> None:
        """Give the folder up: clear the pid (clients then start a new service when needed)."""
        if self._lock_file is not None:
            self._lock_file.seek(0)
            self._lock_file.truncate()
            self._lock_file.flush()
            self._lock_file.close()
            self._lock_file = None

    # -- the loop --
    def run(self) -> None:
        """Hold the folder, reconcile, then step until there is nothing to do."""
        self.acquire()
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "_quit", True))
        self.log(f"queue service started (pid {os.getpid()}) for {self.runs_dir}")
        try:
            while not self._readable(self.reconcile):
                time.sleep(self.poll_every)
            while not self._readable(self._pass):
                time.sleep(self.poll_every)
        finally:
            self.release()
            for ex in self.executors.values():
                ex.close()
        self.log(
            "queue service exits: "
            + ("asked to stop" if self._quit else "nothing queued and nothing running")
        )

    def _pass(self) -> bool:
        """One step over the queue; True (the folder given up) once there is nothing to do."""
        with self.file.edit() as st:
            self.step(st)
            if self._quit or not st.busy():
                self.release()  # inside the queue lock: no client can miss our exit
                return True
        return False

    def _readable(self, action: Callable[[], bool]) -> bool:
        """``action()``; while queue.json cannot be read (damaged, or changed into something
        that is no queue), False after one line in the log, the service waiting until it is
        fixed (or asked to stop: True)."""
        try:
            done = action()
        except UserError as e:
            if str(e) != self._problem:
                self.log(f"{e} (waiting until it is fixed)")
            self._problem = str(e)
            return self._quit
        if self._problem:
            self.log(f"{self.file.path}: reads well again")
            self._problem = ""
        return done

    def executor(self, st: QueueState, host: str) -> Executor | None:
        """The executor of ``host``: this machine's, or one made from its table in the queue
        (made again when the table changed and nothing runs on it)."""
        table = st.hosts.get(host)
        ex = self.executors.get(host)
        if table is None or host == LOCAL or (ex is not None and table == self._tables.get(host)):
            return ex
        if ex is not None and any(a.get("executor") == host for a in st.active.values()):
            return ex  # the new table applies once its jobs are done
        if ex is not None:
            ex.close()
        try:
            self.executors[host] = made = make(host, table, self.runs_dir)
        except (ImportError, TypeError, ValueError, KeyError) as e:  # (KeyError: no such kind)
            self.log(f"host {host}: cannot be used: {e}")
            return None
        self._tables[host] = table
        return made

    def reconcile(self) -> bool:
        """After a restart: runs the last service started whose workers died without an exit
        record (a reboot, a kill) go back to the front of the queue. (True: done.)"""
        with self.file.edit() as st:
            back = []
            for name, a in list(st.active.items()):
                ex, run = self.executor(st, a.get("executor", "")), Run(self.runs_dir / name)
                if ex is not None and ex.alive(Job(run.path), Handle.from_dict(a.get("handle"))):
                    continue
                del st.active[name]
                if run.exists() and run.status().state == "resumable" and name not in st.stop:
                    back.append(name)
            if back:
                self.log(f"requeued at the front (their workers died): {', '.join(back)}")
            st.queued[:0] = [n for n in back if n not in st.queued]
            st.stop = [
                n
                for n in st.stop  # requests for workers that are gone are done
                if n in st.active or Run(self.runs_dir / n).status().state == "running"
            ]
        return True

    def step(self, st: QueueState) -> None:
        """One pass over the queue, holding its lock: follow and reap, stop, start what fits."""
        now = time.time()
        self._follow(st)
        self._stop(st, now)
        if st.paused or self._quit:
            return
        statuses = self._statuses(st)
        if not st.queued:  # nothing to start: no need to count slots
            return
        wanted = {h for name in st.queued for h in st.hosts_of(name)}
        found = {h: ex for h in sorted(wanted) if (ex := self.executor(st, h)) is not None}
        slots = {h: ex.slots(st.jobs) for h, ex in found.items()}
        self._fail_nowhere(st, slots)
        foreign = self._foreign(st) if LOCAL in slots else 0
        starts: dict[str, list[tuple[str, str]]] = {}  # host -> (run, slot) to start there
        for name, host, slot in next_jobs(st, statuses, slots, foreign):
            if host is None or slot is None:
                self.log(
                    f"{name}: damaged; not started"
                    if statuses[name] == "damaged"
                    else f"{name}: {statuses[name]} already (another diffui ran it); not started"
                )
            else:
                starts.setdefault(host, []).append((name, slot))
        running = sum(a.get("executor", LOCAL) == LOCAL for a in st.active.values())
        threads = (  # (measured only when a local worker starts: it takes half a second)
            worker_threads(st.jobs, os.cpu_count() or 1, busy_cores(), running)
            if LOCAL in starts
            else None
        )
        for host, items in starts.items():
            self._start(st, host, found[host], items, threads if host == LOCAL else None, now)

    # -- the steps of a pass --
    def _follow(self, st: QueueState) -> None:
        """Bring each active job's news here (other machines' runs), and let go of those that
        ended; a job that ended to start again (pre-empted for good) goes back to the front."""
        for name, a in list(st.active.items()):
            ex, job = self.executor(st, a.get("executor", "")), Job(self.runs_dir / name)
            handle = Handle.from_dict(a.get("handle"))
            if ex is not None:
                ex.sync(job, handle)
                a["handle"] = handle.to_dict()
            if ex is None or not ex.alive(job, handle):
                del st.active[name]
                self.log(f"{name}: worker ended ({Run(self.runs_dir / name).status().state})")
                if handle.again and name not in st.queued and name not in st.stop:
                    st.queued.insert(0, name)
                    self.log(f"{name}: {handle.again}; back at the front of the queue")

    def _stop(self, st: QueueState, now: float) -> None:
        """Carry out the stop requests: stop, and kill what did not stop in KILL_AFTER s."""
        for name in list(st.stop):
            a = st.active.get(name)
            if a is None:
                Run(self.runs_dir / name).request_stop()  # a worker some other diffui started
                st.stop.remove(name)
                continue
            ex = self.executor(st, a.get("executor", ""))
            if ex is None:  # (not after _follow, which lets go of jobs without one)
                continue
            job, handle = Job(self.runs_dir / name), Handle.from_dict(a.get("handle"))
            if "stopping" not in a:
                ex.stop(job, handle)
                a["stopping"] = now
                self.log(f"{name}: stopping")
            elif now - a["stopping"] > KILL_AFTER:
                ex.kill(job, handle)
                self.log(f"{name}: killed ({KILL_AFTER:.0f} s after the stop request)")
            a["handle"] = handle.to_dict()

    def _statuses(self, st: QueueState) -> dict[str, str]:
        """The state of each queued run's folder; a run whose folder is gone is taken off."""
        statuses = {}
        for name in list(st.queued):
            run = Run(self.runs_dir / name)
            if not run.exists():
                st.queued.remove(name)
                self.log(f"{name}: no run folder any more; taken off the queue")
                continue
            statuses[name] = run.status().state
        return statuses

    def _fail_nowhere(self, st: QueueState, slots: dict[str, list[str]]) -> None:
        """Queued runs none of whose hosts can be used: off the queue, failed, saying why."""
        for name in list(st.queued):
            if not any(h in slots for h in st.hosts_of(name)):
                st.queued.remove(name)
                line = (
                    f"no host to run on: {', '.join(st.hosts_of(name))} "
                    "(not in the [hosts] tables of the experiments file, or unusable: "
                    "see service.log)"
                )
                self.log(f"{name}: {line}")
                Run(self.runs_dir / name).record_failure(st.hosts_of(name)[0], line)

    def _foreign(self, st: QueueState) -> int:
        """How many runs of the folder run outside this queue (others' workers, here)."""
        return sum(
            1
            for run in iter_runs(self.runs_dir, studies=True)
            if run.name not in st.active and run.status().state == "running"
        )

    def _start(
        self,
        st: QueueState,
        host: str,
        ex: Executor,
        items: list[tuple[str, str]],
        threads: int | None,
        now: float,
    ) -> None:
        """Start the runs ``items`` (name, slot) on ``host``, in one go: recorded as active, or
        as failed in their run folders."""
        jobs = [Job(self.runs_dir / name) for name, _ in items]
        results: list[Handle | StartError]
        try:
            results = ex.start_many(jobs, [slot for _, slot in items], threads)
        except (OSError, StartError) as e:  # (none of them started)
            results = [start_error(e)] * len(jobs)
        for (name, slot), job, result in zip(items, jobs, results, strict=True):
            if isinstance(result, StartError):
                self.log(f"{name}: {result}")
                Run(job.run_dir).record_failure(host, str(result))
                continue
            st.active[name] = {
                "executor": host,
                "slot": slot,
                "handle": result.to_dict(),
                "since": round(now, 3),
            }
            self.log(f"{name}: started on {slot} ({result.to_dict()})")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m engine.queue.service RUNS_DIR", file=sys.stderr)
        return 2
    try:
        Service(Path(argv[0])).run()
    except ServiceRunning as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
