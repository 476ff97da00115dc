"""The local executor: each job a detached child process of this machine
(``python -m engine.jobs.worker RUN_DIR``) in its own session, so that it outlives the terminal, the
UI and the queue service that started it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess

from engine.queue.executors.base import Executor, Job
from engine.queue.handle import Handle
from engine.queue.process import spawn_detached
from engine.rundir.run import pid_running


class LocalExecutor(Executor):
    name = "local"

    def __init__(self) -> None:
        self._procs: dict[int, subprocess.Popen] = {}  # our children, reaped when they exit

    def slots(self, jobs: int) -> list[str]:
        return [f"local:{i}" for i in range(max(1, jobs))]

    def start(self, job: Job, slot: str, threads: int | None = None) -> Handle:
        proc = spawn_detached(
            "engine.jobs.worker",
            [str(job.run_dir)],
            job.run_dir / "worker.log",
            cwd=job.run_dir,
            threads=threads,
        )
        self._procs[proc.pid] = proc
        return Handle(pid=proc.pid, host=socket.gethostname())

    def alive(self, job: Job, handle: Handle) -> bool:
        pid = handle.pid
        if not pid:
            return False
        proc = self._procs.get(pid)
        if proc is not None:  # our own child: poll() also reaps it
            if proc.poll() is None:
                return True
            del self._procs[pid]
            return False
        return pid_running(pid, job.run_dir)

    def stop(self, job: Job, handle: Handle) -> None:
        self._signal(job, handle, signal.SIGTERM)

    def kill(self, job: Job, handle: Handle) -> None:
        self._signal(job, handle, signal.SIGKILL)

    def _signal(self, job: Job, handle: Handle, sig: int) -> None:
        if handle.pid and self.alive(job, handle):
            try:
                os.kill(handle.pid, sig)
            except ProcessLookupError:
                pass
