"""The local executor: each job a detached child process of this machine
(``python -m engine.jobs.worker RUN_DIR``) in its own session, so that it outlives the terminal, the
UI and the queue service that started it."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from engine.rundir.run import pid_running
from engine.queue.executors.base import Job

ENGINE_ROOT = Path(__file__).resolve().parents[3]  # the folder holding engine/


class LocalExecutor:
    name = "local"

    def __init__(self):
        self._procs: dict[int, subprocess.Popen] = {}  # our children, reaped when they exit

    def slots(self, jobs: int) -> list[str]:
        return [f"local:{i}" for i in range(max(1, jobs))]

    def start(self, job: Job, slot: str, threads: int | None = None) -> dict:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ENGINE_ROOT), env.get("PYTHONPATH")]))
        if threads:
            env["DIFFUI_THREADS"] = str(threads)
        with open(job.run_dir / "worker.log", "ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", "engine.jobs.worker", str(job.run_dir)],
                                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=env, cwd=job.run_dir, start_new_session=True)
        self._procs[proc.pid] = proc
        return {"pid": proc.pid, "host": socket.gethostname()}

    def alive(self, job: Job, handle: dict) -> bool:
        pid = handle.get("pid")
        proc = self._procs.get(pid)
        if proc is not None:  # our own child: poll() also reaps it
            if proc.poll() is None:
                return True
            del self._procs[pid]
            return False
        return bool(pid) and pid_running(pid, job.run_dir)

    def stop(self, job: Job, handle: dict) -> None:
        self._signal(job, handle, signal.SIGTERM)

    def kill(self, job: Job, handle: dict) -> None:
        self._signal(job, handle, signal.SIGKILL)

    def _signal(self, job: Job, handle: dict, sig: int) -> None:
        if self.alive(job, handle):
            try:
                os.kill(handle["pid"], sig)
            except ProcessLookupError:
                pass
