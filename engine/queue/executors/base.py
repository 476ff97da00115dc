"""Where work runs. An executor starts a job (a run folder to work on) somewhere and can tell
whether it still lives; the queue service decides what runs next on which slot and never knows
where that is.

Every executor implements the same small interface (:class:`Executor`):

* ``slots(jobs)``: the names of the slots it offers (a local machine: ``jobs`` slots; a host:
  one per GPU);
* ``start(job, slot, threads)``: start a worker for ``job`` on ``slot``; returns a handle, a
  JSON-able dict the service keeps in ``queue.json`` so that a restarted service can follow it;
* ``alive(job, handle)``: whether that worker still runs;
* ``stop(job, handle)``: ask it to stop (it stays resumable); ``kill(job, handle)``: make it.

Executors of other machines (``[hosts.NAME]`` tables: :func:`make`) also have

* ``sync(job, handle)``: called by the service on every pass for each job it follows there;
  brings the remote run folder's new events and files into the local one (it may change
  ``handle`` in place, e.g. to record a byte offset or a Slurm state);
* ``close()``: called when the service exits.

A handle whose job has ended with ``handle["again"] = "why"`` (a Slurm job pre-empted for good)
goes back to the front of the queue, to resume in a new job.

An executor may also have ``start_many(jobs, slots)``: start several jobs at once (Slurm: one
job array), one handle per job; the service calls it for the runs it starts there in one pass.

``start`` must return quickly (the service holds the queue's lock meanwhile): slow work, such
as connecting and copying files, goes on in the executor's own thread, and ``alive`` is true
while it does. A start that cannot be made raises :class:`StartError` with one line for the
user; the service records it in the run folder (:meth:`engine.rundir.run.Run.record_failure`).

Whatever the executor, the worker writes an ordinary run folder (local, or mirrored back), so
the UI, batch mode and the report read every run the same way.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class Job:
    """Run the worker on this folder (a training run or a study: the worker tells them apart)."""

    run_dir: Path

    @property
    def name(self) -> str:
        return self.run_dir.name


class Executor(Protocol):
    name: str

    def slots(self, jobs: int) -> list[str]: ...

    def start(self, job: Job, slot: str, threads: int | None = None) -> dict: ...

    def alive(self, job: Job, handle: dict) -> bool: ...

    def stop(self, job: Job, handle: dict) -> None: ...

    def kill(self, job: Job, handle: dict) -> None: ...


class StartError(Exception):
    """A job could not be started there; ``str()`` is one line for the user (``gpu1: ...``)."""


def executors() -> dict[str, Executor]:
    """The executors that need no [hosts] table, by name: this machine's."""
    from engine.queue.executors.local import LocalExecutor
    return {"local": LocalExecutor()}


def describe(handle: dict) -> str:
    """A handle in words for ``diffui queue status``: ``job 12 PENDING (Resources)`` for a Slurm
    job, "" for others."""
    if not handle.get("job_id"):
        return ""
    reason = f" ({handle['reason']})" if handle.get("reason") else ""
    return f"job {handle['job_id']} {handle.get('state', '')}{reason}"


KINDS = {"ssh": "engine.queue.executors.ssh:SSHExecutor", "slurm": "engine.queue.executors.slurm:executor"}


def make(name: str, table: dict, runs_dir: Path) -> Executor:
    """The executor of host ``name`` from its ``[hosts.NAME]`` table (as the queue keeps it)."""
    import importlib

    from engine.spec.sections import HostSpec
    spec = HostSpec(**{k: v for k, v in table.items() if k in HostSpec.keys()})
    module, _, cls = KINDS[spec.kind].partition(":")
    return getattr(importlib.import_module(module), cls)(name, spec, Path(runs_dir))


__all__ = ["Executor", "Job", "StartError", "describe", "executors", "make"]
