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

from dataclasses import dataclass, fields


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _time(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


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
            job_id=_str(d.get("job_id")),
            folder=_str(d.get("folder")),
            state=_str(d.get("state")) or "UNKNOWN",
            reason=_str(d.get("reason")),
            since=_time(d.get("since")),
            seen=_time(d.get("seen")),
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
        slurm = SlurmJob.from_dict(d) if _str(d.get("job_id")) else None
        return cls(
            pid=_int(d.get("pid")),
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
