"""A job's handle: what an executor needs to find a job it started again (a pid, a host, a
Slurm job), kept by the queue service in ``queue.json`` (``active[RUN]["handle"]``) so that a
restarted service can follow the job.

In ``queue.json`` a handle is one flat JSON object, as executors have always written it, with
the fields an executor uses (a field that is not set is left out):

* the local executor: ``{"pid": 123, "host": "laptop"}``;
* an SSH host: ``{"host": "gpu1", "run": "a", "gpu": 0, "pid": 4567, "state": "running"}``
  (``run``: the run folder below the remote ``WORKDIR/runs``; ``state``: starting, running,
  lost or gone), with ``"note"`` while something goes wrong (a lost connection);
* a Slurm job (:class:`SlurmJob`): ``{"job_id": "12", "folder": ..., "state": "PENDING",
  "reason": "Priority", "since": ..., "seen": ...}``, and ``"stopped": true`` once the queue
  cancelled it; over SSH beside ``host`` and ``run`` (``state`` is ``SUBMITTING`` until the
  job has an id);
* any of them ``"again": "why"`` when the job ended in a way that sends its run back to the
  front of the queue (a Slurm job pre-empted for good).

:meth:`Handle.from_dict` reads whatever ``queue.json`` holds without failing: a field of the
wrong type reads as unset.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields

from engine.spec.names import safe_queue_name

# what Slurm calls a job: 12, or a job array's task 12_3 (anything else on a command line of
# scancel, sacct or squeue could be an option: "--user=root")
SLURM_JOB_ID = re.compile(r"[0-9]{1,20}(_[0-9]{1,10})?")


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def positive_pid(value: object) -> int | None:
    """``value`` when it is a process id (an integer > 0, below 2**31), else None: a pid of 0
    or -1 would signal a process group or every process."""
    pid = _int(value)
    return pid if pid is not None and 0 < pid < 2**31 else None


def finite_time(value: object) -> float | None:
    """``value`` as a time (seconds), or None when it is no finite number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        seconds = float(value)
    except OverflowError:  # an integer of 400 digits
        return None
    return seconds if math.isfinite(seconds) else None


def _job_id(value: object) -> str:
    return value if isinstance(value, str) and SLURM_JOB_ID.fullmatch(value) else ""


_TEXT = ("host", "state", "note", "again", "folder", "reason")  # a handle's text fields


def handle_problem(d: object) -> tuple[str, str] | None:
    """What is wrong with a handle of queue.json: (its key, "" for the handle itself, and what
    it should be), or None. Its pid must be a process id (an integer > 0), a Slurm job id Slurm's shape (digits, or
    ``12_3``), its run folder a run's name."""
    if not isinstance(d, dict):
        return "", "a JSON object"
    checks = [
        ("pid", lambda v: positive_pid(v) is not None, "a process id (an integer > 0)"),
        ("gpu", lambda v: _int(v) is not None and v >= 0, "a GPU number (an integer >= 0)"),
        ("job_id", lambda v: v == "" or _job_id(v), "a Slurm job id (digits, or 12_3)"),
        ("run", lambda v: v == "" or safe_queue_name(v), "a run's name"),
        ("since", lambda v: finite_time(v) is not None, "a time (a number)"),
        ("seen", lambda v: finite_time(v) is not None, "a time (a number)"),
        ("stopped", lambda v: isinstance(v, bool), "true or false"),
    ] + [(k, lambda v: isinstance(v, str), "text") for k in _TEXT]
    for key, ok, expected in checks:
        if d.get(key) is not None and not ok(d[key]):
            return key, expected
    return None


@dataclass
class SlurmJob:
    """A job on a Slurm cluster, as sacct and squeue last said."""

    job_id: str
    folder: str = ""  # submitit's log folder of the job (on the login node)
    state: str = "PENDING"  # Slurm's (PENDING, RUNNING, COMPLETED, ... or LOST)
    reason: str = ""  # why it is pending
    since: float | None = None  # when it was submitted
    seen: float | None = None  # when Slurm last knew of it
    stopped: bool = False  # cancelled by the queue: its end is no failure

    def to_dict(self) -> dict:
        d: dict = {
            "job_id": self.job_id,
            "folder": self.folder,
            "state": self.state,
            "reason": self.reason,
            "since": self.since,
            "seen": self.seen,
        }
        if self.stopped:
            d["stopped"] = True
        return d

    @classmethod
    def from_dict(cls, d: dict) -> SlurmJob:
        return cls(
            job_id=_job_id(d.get("job_id")),
            folder=_str(d.get("folder")),
            state=_str(d.get("state")) or "UNKNOWN",
            reason=_str(d.get("reason")),
            since=finite_time(d.get("since")),
            seen=finite_time(d.get("seen")),
            stopped=d.get("stopped") is True,
        )


@dataclass
class Handle:
    """How an executor finds a job it started again (see the module's text)."""

    pid: int | None = None  # the worker's process (locally, or on an SSH host)
    host: str = ""  # the machine it runs on (this one's name; an SSH host's)
    run: str = ""  # on a host reached over SSH: the run folder below WORKDIR/runs
    gpu: int | None = None  # an SSH host's GPU (None: no GPU given)
    state: str = ""  # an SSH job's: starting | running | lost | gone (a Slurm job: its own)
    note: str = ""  # what goes wrong meanwhile (a lost connection)
    again: str = ""  # why its run goes back to the front of the queue, once the job ended
    slurm: SlurmJob | None = None  # a Slurm job

    def to_dict(self) -> dict:
        """The JSON object kept in queue.json (flat, only the fields in use)."""
        d = {
            k: v
            for k, v in (
                ("pid", self.pid),
                ("host", self.host),
                ("run", self.run),
                ("gpu", self.gpu),
                ("state", self.state),
            )
            if v is not None and v != ""
        }
        if self.slurm is not None:
            d.update(self.slurm.to_dict())
        if self.again:
            d["again"] = self.again
        if self.note:
            d["note"] = self.note
        return d

    @classmethod
    def from_dict(cls, d: object) -> Handle:
        """The handle of a JSON object of queue.json (anything else: an empty handle)."""
        if not isinstance(d, dict):
            return cls()
        slurm = SlurmJob.from_dict(d) if _job_id(d.get("job_id")) else None
        return cls(
            pid=positive_pid(d.get("pid")),
            host=_str(d.get("host")),
            run=_str(d.get("run")),
            gpu=_int(d.get("gpu")),
            state="" if slurm else _str(d.get("state")),
            note=_str(d.get("note")),
            again=_str(d.get("again")),
            slurm=slurm,
        )

    def update(self, other: Handle) -> None:
        """Take every field of ``other`` (an executor bringing a handle up to date)."""
        for f in fields(self):
            setattr(self, f.name, getattr(other, f.name))

    def describe(self) -> str:
        """The handle in words for the runs tables: ``job 12 PENDING (Resources)`` for a Slurm
        job, "" for others."""
        if self.slurm is None or not self.slurm.job_id:
            return ""
        reason = f" ({self.slurm.reason})" if self.slurm.reason else ""
        return f"job {self.slurm.job_id} {self.slurm.state}{reason}"
