"""The Slurm executor: each job one Slurm job, submitted with submitit from the cluster's login
node, where diffui runs (``[hosts.NAME]`` with ``kind = "slurm"`` and ``address = ""``). The
runs folder is on the cluster's shared filesystem, so the job's worker writes the very run folder
that diffui reads: nothing is copied.

A Slurm job runs :class:`WorkerJob` (a ``submitit.helpers.Checkpointable``): it starts
``python -m engine.worker RUN_DIR`` and waits for it. Slurm sends submitit's signal
``signal_delay_s`` seconds before the time limit (or on pre-emption): submitit calls
:meth:`WorkerJob.checkpoint`, which asks the worker to stop (SIGTERM: it stops between two
optimizer steps, its last epoch checkpoint stays) and waits for its exit record; submitit then
requeues the job, and the requeued job's worker resumes the run from that checkpoint. ``scancel``
(the queue's stop) sends SIGTERM to the worker too: the run stays resumable.

The handle kept in ``queue.json``: ``{"job_id", "folder" (submitit's logs), "state", "reason"
(why it is pending), "since", "seen"}``; :meth:`SlurmExecutor.sync` updates the state from
``sacct`` (one call for all our jobs every :data:`POLL_EVERY` seconds). submitit's log folders are
``RUNS/.slurm/HOST/<slurmctld boot time>/``: a restarted test cluster numbers its jobs from 1
again. A sweep queued together goes as one job array (:meth:`SlurmExecutor.start_many`).
"""
from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import submitit
from submitit.core.utils import DelayedSubmission, FailedJobError, FailedSubmissionError
from submitit.slurm.slurm import SlurmInfoWatcher, SlurmJobEnvironment

from ..registry import SBATCH_OPTION
from ..runs import Run
from ..worker import EXIT_CODES
from . import Job, StartError

ENGINE_ROOT = Path(__file__).resolve().parents[2]
POLL_EVERY = 3.0  # seconds between two sacct calls
LOST_AFTER = 600.0  # a job Slurm has not known of for this long is gone (a wiped cluster)
MAX_TIMEOUTS = 100  # requeues on time limits before submitit gives up on a run
# Slurm states of a job that has ended for good (REQUEUED, PREEMPTED are on their way back)
ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
         "BOOT_FAIL", "DEADLINE", "REVOKED", "LOST"}


def time_minutes(text: str) -> int:
    """A Slurm time limit (``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH[:MM[:SS]]``) in whole minutes,
    rounded up."""
    days, _, rest = text.rpartition("-")
    parts = [int(x) for x in rest.split(":")]
    if days:  # D-HH, D-HH:MM, D-HH:MM:SS
        h, m, s = (parts + [0, 0])[:3]
    elif len(parts) == 3:
        h, m, s = parts
    else:  # MM, MM:SS
        h, (m, s) = 0, (parts + [0])[:2]
    return max(1, math.ceil((int(days or 0) * 86400 + h * 3600 + m * 60 + s) / 60))


def sbatch_options(items: list[str]) -> dict:
    """``["--constraint=a100", "--exclusive"]`` as submitit's additional_parameters."""
    out: dict = {}
    for item in items:
        m = SBATCH_OPTION.fullmatch(item)
        if not m:
            raise ValueError(f"sbatch: {item!r}: expected a long option, --name or --name=value")
        out[m.group(1)] = True if m.group(2) is None else m.group(2)
    return out


def cluster_start() -> str:
    """When slurmctld started (``scontrol show config``'s BOOT_TIME), as a folder name."""
    try:
        out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True,
                             timeout=60)
    except FileNotFoundError:
        raise StartError("scontrol not found: run diffui on the cluster's login node") from None
    except subprocess.TimeoutExpired:
        raise StartError("scontrol show config did not answer in 60 s") from None
    m = re.search(r"^BOOT_TIME\s*=\s*(\S+)", out.stdout, re.M)
    if out.returncode or not m:
        raise StartError("scontrol show config: " + _last_line(out.stderr or out.stdout))
    return re.sub(r"[^0-9T]", "", m.group(1))


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower()]
    return (errors or lines or ["(no output)"])[-1]


class WorkerJob(submitit.helpers.Checkpointable):
    """What a Slurm job runs: the worker on ``run_dir``, checkpointed and requeued by submitit
    before the time limit or on pre-emption."""

    def __init__(self, run_dir: str, stop_wait: float = 60.0):
        self.run_dir = str(run_dir)
        self.stop_wait = stop_wait  # seconds the worker gets to stop before it is killed
        self._proc: subprocess.Popen | None = None
        self._checkpointed = False

    def __getstate__(self) -> dict:  # the worker process stays behind
        return {"run_dir": self.run_dir, "stop_wait": self.stop_wait, "_proc": None,
                "_checkpointed": False}

    def __call__(self) -> str:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ENGINE_ROOT), env.get("PYTHONPATH")]))
        if env.get("SLURM_CPUS_PER_TASK"):  # torch would use every core of the node
            env.setdefault("DIFFUI_THREADS", env["SLURM_CPUS_PER_TASK"])
        usr = SlurmJobEnvironment._usr_sig()

        def ignore_usr():  # Slurm signals every process of the job: the worker waits for ours
            signal.signal(usr, signal.SIG_IGN)

        with open(Path(self.run_dir) / "worker.log", "ab") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "engine.worker", self.run_dir], stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=self.run_dir,
                preexec_fn=ignore_usr)
        while self._proc.poll() is None:
            time.sleep(0.5)
        status, rc = Run(Path(self.run_dir)).status(), self._proc.returncode
        if rc == EXIT_CODES["stopped"] and not self._checkpointed:
            # stopped by a SIGTERM from Slurm: a scancel (Slurm ends this job in KillWait) or a
            # pre-emption, whose signal to checkpoint and requeue may follow: wait for either
            time.sleep(self.stop_wait)
        if status.state == "failed" or rc not in (EXIT_CODES["finished"], EXIT_CODES["stopped"]):
            raise RuntimeError(f"worker exited with {rc}: {status.state} {status.detail}".strip())
        return status.state

    def checkpoint(self, *args, **kwargs) -> DelayedSubmission:
        """Stop the worker (its last epoch checkpoint stays) and resubmit a fresh job."""
        self._checkpointed = True
        proc, run = self._proc, Run(Path(self.run_dir))
        if proc is not None and proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            proc.send_signal(signal.SIGCONT)  # a stopped worker must run to stop
            # wait for its exit record (not with proc.wait(): this runs in a signal handler,
            # maybe inside the poll() of __call__, which holds the Popen's lock)
            deadline = time.time() + self.stop_wait
            while run.status().state == "running" and time.time() < deadline:
                time.sleep(0.2)
            if run.status().state == "running":
                proc.kill()
        return DelayedSubmission(WorkerJob(self.run_dir, self.stop_wait))


class _Watcher(SlurmInfoWatcher):
    """submitit's sacct watcher, and why pending jobs are pending: from squeue (sacct keeps the
    reason a job had when it was submitted)."""

    def update(self) -> None:
        super().update()
        pending = {j.split("_")[0] for j in self._registered - self._finished
                   if self._info_dict.get(j, {}).get("State") == "PENDING"}
        if not pending:
            return
        try:
            out = subprocess.run(["squeue", "-h", "-o", "%i|%r", "-j", ",".join(sorted(pending))],
                                 capture_output=True, text=True, timeout=60).stdout
        except (OSError, subprocess.SubprocessError):
            return
        for job_id, info in self.read_info("JobID|Reason\n" + out).items():
            if job_id in self._info_dict:
                self._info_dict[job_id] = {**self._info_dict[job_id], "Reason": info["Reason"]}


class SlurmExecutor:
    """Jobs on the Slurm cluster of host ``name``, submitted from this machine (its login
    node)."""

    def __init__(self, name: str, spec, runs_dir: Path):
        if spec.address:
            raise ValueError("a cluster reached over SSH is not supported yet: run diffui on the "
                             "cluster's login node, with address = \"\"")
        self.name, self.spec, self.runs_dir = name, spec, Path(runs_dir)
        self.parameters = self._parameters(spec)
        self._executor: submitit.SlurmExecutor | None = None
        self._boot = ""
        self._watcher = _Watcher(delay_s=int(POLL_EVERY))
        self._polled = 0.0

    @staticmethod
    def _parameters(spec) -> dict:
        p = {"time": time_minutes(spec.time), "cpus_per_task": spec.cpus_per_job,
             "mem": f"{spec.mem_gb}GB", "signal_delay_s": spec.signal_delay_s,
             "array_parallelism": spec.max_jobs, "stderr_to_stdout": True,
             "setup": [f"export PYTHONPATH={ENGINE_ROOT}${{PYTHONPATH:+:$PYTHONPATH}}"],
             "additional_parameters": sbatch_options(spec.sbatch)}
        for key, value in (("partition", spec.partition), ("account", spec.account),
                           ("qos", spec.qos), ("gpus_per_node", spec.gpus_per_job)):
            if value:
                p[key] = value
        return p

    def slots(self, jobs: int) -> list[str]:
        return [f"{self.name}:{i}" for i in range(self.spec.max_jobs)]

    def _submitit(self) -> submitit.SlurmExecutor:
        """submitit's executor, its log folder of this cluster start."""
        boot = cluster_start()
        if self._executor is None or boot != self._boot:
            folder = self.runs_dir / ".slurm" / self.name / boot
            ex = submitit.SlurmExecutor(folder=folder / "%j", max_num_timeout=MAX_TIMEOUTS)
            ex.update_parameters(**self.parameters)
            self._executor, self._boot = ex, boot
        return self._executor

    def start(self, job: Job, slot: str, threads: int | None = None) -> dict:
        return self.start_many([job], [slot])[0]

    def start_many(self, jobs: list[Job], slots: list[str]) -> list[dict]:
        """Submit ``jobs`` together: one Slurm job, or one job array for several."""
        try:
            ex = self._submitit()
            ex.update_parameters(job_name="diffui-" + (jobs[0].name.replace("/", "-")
                                                       if len(jobs) == 1 else "sweep"))
            with ex.batch():
                submitted = [ex.submit(WorkerJob(str(job.run_dir),
                                                 max(5.0, self.spec.signal_delay_s - 10.0)))
                             for job in jobs]
        except (FailedJobError, FailedSubmissionError, OSError, subprocess.SubprocessError) as e:
            line = _last_line(e).removeprefix("sbatch: error: ")
            raise StartError(f"{self.name}: sbatch: {line}") from None
        except StartError as e:
            raise StartError(f"{self.name}: {e}") from None
        now = round(time.time(), 3)
        handles = []
        for sj in submitted:
            self._watcher.register_job(sj.job_id)
            handles.append({"job_id": sj.job_id, "folder": str(sj.paths.folder),
                            "state": "PENDING", "reason": "", "since": now, "seen": now})
        return handles

    def sync(self, job: Job, handle: dict) -> None:
        """Bring the handle's Slurm state up to date (sacct, at most every POLL_EVERY s)."""
        job_id = handle.get("job_id")
        if not job_id:
            return
        self._watcher.register_job(job_id)  # (again after a restart of the service)
        now = time.time()
        if now - self._polled >= POLL_EVERY:
            self._polled = now
            self._watcher.update()
        info = self._watcher.get_info(job_id, mode="cache")
        state = (info.get("State") or "UNKNOWN").split()[0]  # "CANCELLED by 0"
        if state == "UNKNOWN":
            if now - handle.get("seen", now) > LOST_AFTER:
                handle["state"] = "LOST"
            return
        reason = info.get("Reason", "")
        handle.update(state=state, seen=round(now, 3),
                      reason=reason if state == "PENDING" and reason != "None" else "")
        if state in ENDED and not handle.get("stopped"):
            self._record_end(job, handle)

    def _record_end(self, job: Job, handle: dict) -> None:
        """A job that ended without its worker saying how (it failed before the worker ran, or
        Slurm killed it: memory, a node failure, the time limit with no requeue left): the run
        reads as failed, with Slurm's state and where its log is."""
        run = Run(job.run_dir)
        if run.status().state == "running":  # another worker holds the run (ours refused)
            return
        try:
            worker = json.loads(run.worker_path.read_text(encoding="utf-8"))
            ended = json.loads(run.exit_path.read_text(encoding="utf-8"))
            if ended.get("started") == worker.get("started"):
                return  # the worker recorded its own end
        except (OSError, ValueError):
            pass
        log = Path(handle.get("folder", "")) / f"{handle['job_id']}_0_log.out"
        run.record_failure(self.name, f"{self.name}: Slurm job {handle['job_id']} ended "
                                      f"{handle['state']} (its log: {log})")

    def alive(self, job: Job, handle: dict) -> bool:
        """Whether the Slurm job is still queued, running or on its way back (requeued)."""
        return bool(handle.get("job_id")) and handle.get("state", "UNKNOWN") not in ENDED

    def stop(self, job: Job, handle: dict) -> None:
        """scancel: a pending job goes; a running one's worker gets SIGTERM and stops, resumable."""
        handle["stopped"] = True  # its end is ours, not a failure
        self._scancel(handle)

    def kill(self, job: Job, handle: dict) -> None:
        """scancel again: Slurm kills what is left of the job KillWait seconds after a cancel
        (scancel --signal=KILL is a plain cancel too)."""
        self.stop(job, handle)

    def _scancel(self, handle: dict) -> None:
        if handle.get("job_id"):
            try:
                subprocess.run(["scancel", handle["job_id"]], capture_output=True, timeout=60)
            except (OSError, subprocess.SubprocessError):
                pass

    def close(self) -> None:
        self._executor = None

