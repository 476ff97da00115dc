"""Where work runs. An executor starts a job (a run folder to work on) somewhere and can tell
whether it still lives; the queue service decides what runs next on which slot and never knows
where that is.

Every executor implements the same small interface (:class:`Executor`):

* ``slots(jobs)``: the names of the slots it offers (a local machine: ``jobs`` slots; a host:
  one per GPU);
* ``start(job, slot, threads)``: start a worker for ``job`` on ``slot``; returns its
  :class:`~engine.queue.handle.Handle`, which the service keeps in ``queue.json`` so that a
  restarted service can follow it;
* ``alive(job, handle)``: whether that worker still runs;
* ``stop(job, handle)``: ask it to stop (it stays resumable); ``kill(job, handle)``: make it.

and three more, which do nothing (or the obvious) unless an executor needs them, as those of
other machines (``[hosts.NAME]`` tables: :func:`engine.queue.executors.registry.make`) do:

* ``sync(job, handle)``: called by the service on every pass for each job it follows there;
  brings the remote run folder's new events and files into the local one (it may change
  ``handle`` in place, e.g. to record a Slurm state);
* ``close()``: called when the service exits;
* ``start_many(jobs, slots, threads)``: start the jobs the service starts there in one pass
  (Slurm: one job array); by default one by one.

A job that has ended with ``handle.again = "why"`` (a Slurm job pre-empted for good) goes back
to the front of the queue, to resume in a new job.

``start`` must return quickly (the service holds the queue's lock meanwhile): slow work, such
as connecting and copying files, goes on in the executor's own thread, and ``alive`` is true
while it does. A start that cannot be made raises :class:`StartError` with one line for the
user; the service records it in the run folder (:meth:`engine.rundir.run.Run.record_failure`).

Whatever the executor, the worker writes an ordinary run folder (local, or mirrored back), so
the UI, batch mode and the report read every run the same way.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from engine.queue.handle import Handle


@dataclass(frozen=True)
class Job:
    """Run the worker on this folder (a training run or a study: the worker tells them apart)."""

    run_dir: Path

    @property
    def name(self) -> str:
        return self.run_dir.name


class StartError(Exception):
    """A job could not be started there; ``str()`` is one line for the user (``gpu1: ...``)."""


def start_error(e: OSError | StartError) -> StartError:
    """Why a start failed, as a :class:`StartError` (an OSError of this machine, in words)."""
    return e if isinstance(e, StartError) else StartError(f"could not start a worker: {e}")


class Executor(ABC):
    """Where jobs run (see the module's text)."""

    name: str

    @abstractmethod
    def slots(self, jobs: int) -> list[str]:
        """The slots it offers (``jobs``: the queue's runs at once, for this machine's)."""

    @abstractmethod
    def start(self, job: Job, slot: str, threads: int | None = None) -> Handle:
        """Start a worker for ``job`` on ``slot`` (quickly); a StartError when it cannot."""

    @abstractmethod
    def alive(self, job: Job, handle: Handle) -> bool:
        """Whether that job still runs (or is on its way)."""

    @abstractmethod
    def stop(self, job: Job, handle: Handle) -> None:
        """Ask the job to stop; it stays resumable."""

    @abstractmethod
    def kill(self, job: Job, handle: Handle) -> None:
        """Make it stop (after a stop that was not heeded)."""

    def start_many(
        self, jobs: list[Job], slots: list[str], threads: int | None = None
    ) -> list[Handle | StartError]:
        """Start ``jobs`` on ``slots``: for each, its handle or why it could not be started.
        By default one by one; an executor that starts them together (a Slurm job array) may
        instead raise a StartError for them all."""
        out: list[Handle | StartError] = []
        for job, slot in zip(jobs, slots, strict=True):
            try:
                out.append(self.start(job, slot, threads))
            except (OSError, StartError) as e:
                out.append(start_error(e))
        return out

    def sync(self, job: Job, handle: Handle) -> None:  # noqa: B027 (no-op by default)
        """Bring a job's news here (each pass of the service); nothing by default."""

    def close(self) -> None:  # noqa: B027 (no-op by default)
        """Let go of what it holds (the service exits); nothing by default."""


__all__ = ["Executor", "Job", "StartError", "start_error"]


def say(line: str) -> None:
    """A line of the queue service's log (its stdout: service.log), with the time. Lost when
    the log cannot be written (a full disk, a file made unwritable): the service goes on."""
    try:
        print(time.strftime("%Y-%m-%d %H:%M:%S ") + line, flush=True)
    except (OSError, ValueError):
        pass
