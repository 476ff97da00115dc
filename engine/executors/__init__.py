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


def executors() -> dict[str, Executor]:
    """Every executor this diffui can use, by name."""
    from .local import LocalExecutor
    return {"local": LocalExecutor()}


__all__ = ["Executor", "Job", "executors"]
