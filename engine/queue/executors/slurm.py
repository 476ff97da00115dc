"""The Slurm executor: each job one Slurm job, submitted with submitit from the cluster's login
node (``[hosts.NAME]`` with ``kind = "slurm"``).

* On the login node itself (``address = ""``): :class:`SlurmExecutor`. The runs folder is on the
  cluster's shared filesystem, so the job's worker writes the very run folder that diffui reads:
  nothing is copied. The jobs run diffui's own interpreter, or ``python`` when it is given.
* From elsewhere (a laptop: ``address`` set): :class:`SlurmOverSSH`. The run folders go to
  ``WORKDIR/runs`` on the login node as for an SSH host (:mod:`engine.queue.executors.ssh`); the
  login node's diffui (``PYTHON -m engine.queue.executors.slurm submit``) submits them with the very
  code of :class:`SlurmExecutor`; sacct, squeue and scancel run over the same connection, and
  the run folders are mirrored back as an SSH host's are.

A Slurm job runs :class:`WorkerJob` (a ``submitit.helpers.Checkpointable``): it starts
``python -m engine.jobs.worker RUN_DIR`` and waits for it. Slurm sends submitit's signal
``signal_delay_s`` seconds before the time limit (or on pre-emption): submitit calls
:meth:`WorkerJob.checkpoint`, which asks the worker to stop (SIGTERM: it stops between two
optimizer steps, its last epoch checkpoint stays) and waits for its exit record; submitit then
requeues the job, and the requeued job's worker resumes the run from that checkpoint. ``scancel``
(the queue's stop) sends SIGTERM to the worker too: the run stays resumable.

A job's handle has a Slurm part (:class:`engine.queue.handle.SlurmJob`: its id, submitit's log
folder, its state and why it is pending, when it was submitted and last seen), brought up to
date from ``sacct`` (one call for all our jobs every :data:`POLL_EVERY` seconds). submitit's log
folders are ``RUNS/.slurm/HOST/<slurmctld boot time>/``: a restarted test cluster numbers its
jobs from 1 again. A sweep queued together goes as one job array (``start_many``).
"""

from __future__ import annotations

import json
import math
import os
import posixpath
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import submitit
from submitit.core.utils import DelayedSubmission, FailedJobError, FailedSubmissionError
from submitit.slurm.slurm import SlurmInfoWatcher, SlurmJobEnvironment

from engine.queue.executors.base import Executor, Job, StartError
from engine.queue.executors.remote import HostError, Remote, failure_line
from engine.queue.executors.ssh import RemoteJob, SSHExecutor
from engine.queue.handle import Handle, SlurmJob
from engine.queue.process import python_command, python_env, pythonpath_line
from engine.rundir.run import EXIT_CODES, Run, read_file
from engine.spec.registry import SBATCH_OPTION
from engine.spec.sections import HostSpec

POLL_EVERY = 3.0  # seconds between two sacct calls
LOST_AFTER = 600.0  # a job Slurm has not known of for this long is gone (a wiped cluster)
MAX_TIMEOUTS = 100  # requeues on time limits before submitit gives up on a run
# Slurm states of a job that has ended for good (REQUEUED is on its way back; PREEMPTED is when
# squeue says so too: a job pre-empted with PreemptMode=REQUEUE is pending again there, while
# sacct may still show its last record, PREEMPTED)
ENDED = {
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "PREEMPTED",
    "BOOT_FAIL",
    "DEADLINE",
    "REVOKED",
    "LOST",
}


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


def parse_sbatch_options(items: list[str]) -> dict:
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
        out = subprocess.run(
            ["scontrol", "show", "config"], capture_output=True, text=True, timeout=60
        )
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
        return {
            "run_dir": self.run_dir,
            "stop_wait": self.stop_wait,
            "_proc": None,
            "_checkpointed": False,
        }

    def __call__(self) -> str:
        env = python_env()
        if env.get("SLURM_CPUS_PER_TASK"):  # torch would use every core of the node
            env.setdefault("DIFFUI_THREADS", env["SLURM_CPUS_PER_TASK"])
        usr = SlurmJobEnvironment._usr_sig()

        def ignore_usr():  # Slurm signals every process of the job: the worker waits for ours
            signal.signal(usr, signal.SIG_IGN)

        with open(Path(self.run_dir) / "worker.log", "ab") as log:
            self._proc = subprocess.Popen(
                python_command("engine.jobs.worker", self.run_dir),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self.run_dir,
                preexec_fn=ignore_usr,
            )
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
    """submitit's sacct watcher, fed by whoever runs the commands (this machine, or the login
    node over SSH), and why pending jobs are pending: from squeue (sacct keeps the reason a job
    had when it was submitted)."""

    def update(self) -> None:  # on the login node
        self.take(_output(self._make_command()))
        self.take_queue(_output(self.queue_command()))

    def take(self, out: str | None) -> None:
        """sacct's answer (None: no answer, or no job to ask about)."""
        if out is not None:
            self._info_dict.update(self.read_info(out))
        self._last_status_check = time.time()
        for job_id in self._registered - self._finished:
            if self.is_done(job_id, mode="cache"):
                self._finished.add(job_id)

    def queue_command(self) -> list[str] | None:
        """squeue for the jobs sacct says are pending (why) or pre-empted (whether requeued)."""
        asked = {
            j.split("_")[0]
            for j in self._registered - self._finished
            if self._info_dict.get(j, {}).get("State") in ("PENDING", "PREEMPTED")
        }
        return (
            ["squeue", "-h", "-t", "all", "-o", "%i|%T|%r", "-j", ",".join(sorted(asked))]
            if asked
            else None
        )

    def take_queue(self, out: str | None) -> None:
        """squeue's answer: a job's "Queue" is its state there, GONE when it was asked about
        and is not there (None: no answer)."""
        if out is None:
            return
        seen = self.read_info("JobID|Queue|Reason\n" + out)
        for job_id, info in self._info_dict.items():
            if info.get("State") in ("PENDING", "PREEMPTED"):
                there = seen.get(job_id, {})
                self._info_dict[job_id] = {
                    **info,
                    "Queue": there.get("Queue", "GONE"),
                    "Reason": there.get("Reason", ""),
                }

    def follow(self, slurm: SlurmJob, now: float) -> None:
        """Bring a job's Slurm part up to date from what was read last."""
        info = self.get_info(slurm.job_id, mode="cache")
        state = (info.get("State") or "UNKNOWN").split()[0]  # "CANCELLED by 0"
        if state == "UNKNOWN":
            if now - (now if slurm.seen is None else slurm.seen) > LOST_AFTER:
                slurm.state = "LOST"
            return
        if state == "PREEMPTED":  # ended, or requeued (PreemptMode=REQUEUE): squeue knows
            if "Queue" not in info:
                return  # ask again
            if info["Queue"] not in ("PREEMPTED", "GONE"):
                state = info["Queue"]
            else:
                self._finished.add(slurm.job_id)
        reason = info.get("Reason", "")
        slurm.state, slurm.seen = state, round(now, 3)
        slurm.reason = reason if state == "PENDING" and reason != "None" else ""


def _output(command: list[str] | None) -> str | None:
    if command is None:
        return None
    try:
        return subprocess.run(
            command, capture_output=True, text=True, timeout=60, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def job_ended(run: Run, host: str, slurm: SlurmJob, log: str) -> str:
    """What the end of a job we did not stop means for its run; why the run goes back to the
    queue ("" when it does not). Pre-empted for good (PreemptMode=CANCEL): back to the queue
    (the handle's ``again``, which the service reads), to resume in a new job. Else, when its
    worker did not record how it ended (it failed before the worker ran, or Slurm killed it:
    memory, a node failure, the time limit with no requeue left): the run reads as failed, with
    Slurm's state and where the job's log is."""
    if slurm.stopped:
        return ""
    if slurm.state == "PREEMPTED":
        return f"{host}: Slurm job {slurm.job_id} was pre-empted"
    try:
        worker = json.loads(read_file(run.worker_path).decode("utf-8"))
        ended = json.loads(read_file(run.exit_path).decode("utf-8"))
        if isinstance(worker, dict) and isinstance(ended, dict):
            if ended.get("started") == worker.get("started"):
                return ""  # the worker recorded its own end
    except (OSError, ValueError):  # (none, a FIFO, not UTF-8, not JSON: no record of its end)
        pass
    run.record_failure(
        host, f"{host}: Slurm job {slurm.job_id} ended {slurm.state} (its log: {log})"
    )
    return ""


def log_path(slurm: SlurmJob) -> str:
    """submitit's log of the job (on the login node)."""
    return posixpath.join(slurm.folder, f"{slurm.job_id}_0_log.out")


class _SubmitsTogether:
    """A cluster takes a pass's jobs in one submission (a job array): starting jobs is
    :meth:`submit`, whether one or many."""

    def submit(self, jobs: list[Job]) -> list[Handle]:
        raise NotImplementedError

    def start(self, job: Job, slot: str, threads: int | None = None) -> Handle:
        return self.submit([job])[0]

    def start_many(
        self, jobs: list[Job], slots: list[str], threads: int | None = None
    ) -> list[Handle | StartError]:
        return [*self.submit(jobs)]


class SlurmExecutor(_SubmitsTogether, Executor):
    """Jobs on the Slurm cluster of host ``name``, submitted from this machine (its login
    node)."""

    def __init__(self, name: str, spec: HostSpec, runs_dir: Path):
        self.name, self.spec, self.runs_dir = name, spec, Path(runs_dir)
        self.parameters = self._parameters(spec)
        self._executor: submitit.SlurmExecutor | None = None
        self._boot = ""
        self._watcher = _Watcher(delay_s=int(POLL_EVERY))
        self._polled = 0.0

    @staticmethod
    def _parameters(spec: HostSpec) -> dict:
        p = {
            "time": time_minutes(spec.time),
            "cpus_per_task": spec.cpus_per_job,
            "mem": f"{spec.mem_gb}GB",
            "signal_delay_s": spec.signal_delay_s,
            "array_parallelism": spec.max_jobs,
            "stderr_to_stdout": True,
            "setup": [pythonpath_line()],
            "additional_parameters": parse_sbatch_options(spec.sbatch),
        }
        for key, value in (
            ("partition", spec.partition),
            ("account", spec.account),
            ("qos", spec.qos),
            ("gpus_per_node", spec.gpus_per_job),
        ):
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
            python = os.path.expanduser(self.spec.python) if self.spec.python else None
            ex = submitit.SlurmExecutor(
                folder=folder / "%j", max_num_timeout=MAX_TIMEOUTS, python=python
            )
            ex.update_parameters(**self.parameters)
            self._executor, self._boot = ex, boot
        return self._executor

    def submit(self, jobs: list[Job]) -> list[Handle]:
        """Submit ``jobs`` together: one Slurm job, or one job array for several; a
        StartError when sbatch refuses them."""
        try:
            ex = self._submitit()
            ex.update_parameters(
                job_name="diffui-" + (jobs[0].name.replace("/", "-") if len(jobs) == 1 else "sweep")
            )
            with ex.batch():
                submitted = [
                    ex.submit(
                        WorkerJob(str(job.run_dir), max(5.0, self.spec.signal_delay_s - 10.0))
                    )
                    for job in jobs
                ]
        except (FailedJobError, FailedSubmissionError, OSError, subprocess.SubprocessError) as e:
            line = _last_line(str(e)).removeprefix("sbatch: error: ")
            raise StartError(f"{self.name}: sbatch: {line}") from None
        except StartError as e:
            raise StartError(f"{self.name}: {e}") from None
        now = round(time.time(), 3)
        handles = []
        for sj in submitted:
            self._watcher.register_job(sj.job_id)
            handles.append(
                Handle(slurm=SlurmJob(sj.job_id, str(sj.paths.folder), since=now, seen=now))
            )
        return handles

    def sync(self, job: Job, handle: Handle) -> None:
        """Bring the handle's Slurm state up to date (sacct, at most every POLL_EVERY s)."""
        slurm = handle.slurm
        if slurm is None:
            return
        self._watcher.register_job(slurm.job_id)  # (again after a restart of the service)
        now = time.time()
        if now - self._polled >= POLL_EVERY:
            self._polled = now
            self._watcher.update()
        self._watcher.follow(slurm, now)
        run = Run(job.run_dir)
        # (a run still running here has another worker, which ours refused to disturb)
        if slurm.state in ENDED and run.status().state != "running":
            handle.again = job_ended(run, self.name, slurm, log_path(slurm)) or handle.again

    def alive(self, job: Job, handle: Handle) -> bool:
        """Whether the Slurm job is still queued, running or on its way back (requeued)."""
        return handle.slurm is not None and handle.slurm.state not in ENDED

    def stop(self, job: Job, handle: Handle) -> None:
        """scancel: a pending job goes; a running one's worker gets SIGTERM and stops, resumable."""
        if handle.slurm is None:
            return
        handle.slurm.stopped = True  # its end is ours, not a failure
        try:
            subprocess.run(["scancel", handle.slurm.job_id], capture_output=True, timeout=60)
        except (OSError, subprocess.SubprocessError):
            pass

    def kill(self, job: Job, handle: Handle) -> None:
        """scancel again: Slurm kills what is left of the job KillWait seconds after a cancel
        (scancel --signal=KILL is a plain cancel too)."""
        self.stop(job, handle)

    def close(self) -> None:
        self._executor = None


class SlurmOverSSH(_SubmitsTogether, SSHExecutor):
    """Jobs on the Slurm cluster of host ``name``, whose login node is reached over SSH (see the
    module's text): an SSH executor whose jobs are Slurm jobs, submitted together, stopped with
    scancel and followed with sacct (its hooks). Everything that touches the login node runs on
    the executor's thread; the service's calls only read and note."""

    def __init__(self, name: str, spec: HostSpec, runs_dir: Path):
        super().__init__(name, spec, runs_dir)
        SlurmExecutor._parameters(spec)  # bad sbatch options: a ValueError now, not at sbatch
        self._watcher = _Watcher(delay_s=int(POLL_EVERY))
        self._polled = 0.0

    def slots(self, jobs: int) -> list[str]:
        return [f"{self.name}:{i}" for i in range(self.spec.max_jobs)]

    def submit(self, jobs: list[Job]) -> list[Handle]:
        """Copy the run folders to the login node and submit them together (one job array for
        several), on the executor's thread; the handles get their job ids when that is done."""
        js = [RemoteJob(job, self.rel(job)) for job in jobs]
        for j in js:
            self.track(j)
        self.soon(self._submit(js))
        return [self.handle(j) for j in js]

    # -- the hooks of SSHExecutor --
    def handle(self, j: RemoteJob) -> Handle:
        return Handle(
            host=self.name,
            run=j.rel,
            state="" if j.slurm else "SUBMITTING",
            note=j.note,
            again=j.again,
            slurm=replace(j.slurm) if j.slurm else None,
        )

    def adopt(self, job: Job, handle: Handle) -> RemoteJob | None:
        """A job a previous service submitted: follow it again (one whose submission never
        finished is gone: the queue puts its run back)."""
        if handle.slurm is None:
            return None
        try:
            j = RemoteJob(
                job, self.rel(job), state="running", again=handle.again, slurm=replace(handle.slurm)
            )
        except StartError:
            return None
        self._watcher.register_job(handle.slurm.job_id)
        self.follow(j)
        return j

    def send_signal(self, j: RemoteJob, sig: str) -> None:
        """Stop and kill are both scancel (Slurm kills what is left KillWait seconds later)."""
        j.signal = "scancel"
        if j.slurm is not None:
            j.slurm.stopped = True  # its end is ours, not a failure

    async def mirror(self, remote: Remote, j: RemoteJob) -> bool:
        """scancel when asked; the Slurm state; the run folder's news. True once the job has
        ended and everything it wrote is here."""
        slurm = j.slurm
        if slurm is None:  # (never: a job is followed once submitted)
            return True
        if j.signal:
            await remote.run(f"scancel {shlex.quote(slurm.job_id)}", check=False)
            j.signal = ""
        await self._poll(remote)
        ended = slurm.state in ENDED  # (seen before the folder is read: all of it is in)
        await self.pull(remote, j)
        if not ended:
            return False
        run = Run(j.job.run_dir)
        if run.heartbeat_path.exists():
            os.utime(run.heartbeat_path, (0, 0))  # no worker there any more
        j.again = job_ended(run, self.name, slurm, f"{self.name}:{log_path(slurm)}") or j.again
        return True

    # -- the executor's thread --
    async def _submit(self, js: list[RemoteJob]) -> None:
        """Copy the run folders there, have the login node's diffui submit them, then follow
        them; when that fails, their runs say why."""
        try:
            handles = await self._submitted(js)
        except Exception as e:  # noqa: BLE001 (whatever it is, the runs say it, in one line)
            line = failure_line(e, f"{self.name}: could not submit")
            for j in js:
                Run(j.job.run_dir).record_failure(self.name, line)
                j.state = "gone"
            return
        for j, h in zip(js, handles, strict=True):
            j.slurm = replace(SlurmJob.from_dict(h), stopped=bool(j.signal))
            j.state = "running"
            self._watcher.register_job(j.slurm.job_id)
            self.follow(j)

    async def _submitted(self, js: list[RemoteJob]) -> list[dict]:
        """``python -m engine.queue.executors.slurm submit`` on the login node: the handles."""
        q = shlex.quote
        remote = await self.connection()
        await remote.check_worker()
        for j in js:
            await self.push_job(remote, j)
        runs = posixpath.join(remote.workdir, "runs")
        request = {
            "name": self.name,
            "table": {**self.spec.to_dict(), "address": "", "python": ""},
            "runs": runs,
            "jobs": [j.rel for j in js],
        }
        out = await remote.run(
            f"env DIFFUI_DATA_DIR={q(posixpath.join(remote.workdir, 'data'))}"
            f" {q(remote.python)} -m engine.queue.executors.slurm submit",
            input=json.dumps(request),
        )
        answer = json.loads(out.strip().splitlines()[-1])
        if answer.get("error"):
            raise HostError(answer["error"])
        return answer["handles"]

    async def _poll(self, remote: Remote) -> None:
        """sacct (and squeue for pending jobs) on the login node for all our jobs, at most every
        POLL_EVERY seconds."""
        now = time.time()
        if now - self._polled < POLL_EVERY:
            return
        self._polled = now
        for command, take in (
            (self._watcher._make_command, self._watcher.take),
            (self._watcher.queue_command, self._watcher.take_queue),
        ):
            argv = command()
            r = await remote.run_full(shlex.join(argv)) if argv else None
            take(r.stdout if r is not None and r.exit_status == 0 else None)
        for j in self.tracked():
            if j.slurm is not None:
                self._watcher.follow(j.slurm, now)


def executor(name: str, spec: HostSpec, runs_dir: Path) -> Executor:
    """The executor of a ``kind = "slurm"`` host: on its login node, or over SSH to it."""
    return (SlurmOverSSH if spec.address else SlurmExecutor)(name, spec, runs_dir)


def main(argv: list[str] | None = None) -> int:
    """``python -m engine.queue.executors.slurm submit``: run on a cluster's login node over SSH by
    :class:`SlurmOverSSH`. Submits the run folders the JSON request on stdin names (``{"name",
    "table", "runs", "jobs": [folders below runs]}``) as :class:`SlurmExecutor` does on the
    login node, and prints ``{"handles": [...]}`` or ``{"error": "one line"}``."""
    argv = sys.argv[1:] if argv is None else argv
    if argv != ["submit"]:
        print(
            "usage: python -m engine.queue.executors.slurm submit < REQUEST.json", file=sys.stderr
        )
        return 2
    req = json.load(sys.stdin)
    spec = HostSpec(**{k: v for k, v in req["table"].items() if k in HostSpec.keys()})
    ex = SlurmExecutor(req["name"], spec, Path(req["runs"]))
    jobs = [Job(Path(req["runs"]) / rel) for rel in req["jobs"]]
    answer: dict[str, object]
    try:
        answer = {"handles": [h.slurm.to_dict() for h in ex.submit(jobs) if h.slurm]}
    except StartError as e:
        answer = {"error": str(e)}
    print(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
