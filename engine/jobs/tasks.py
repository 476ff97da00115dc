"""Long tasks of a worker (sampling, evaluation, figures) report their progress as events and
hear a stop request within a step; and the two ways a job ends early: :class:`Stopped` (asked
to, resumable) and :class:`Diverged` (non-finite numbers, failed)."""

from __future__ import annotations

import math
import time

from engine.rundir.events import EventLog, Progress
from engine.rundir.run import RunError


class Stopped(Exception):
    """Raised in a long task by its :class:`TaskProgress` when the worker was asked to stop:
    the worker ends the attempt as ``stopped`` (resumable), as it does between two epochs."""


class Diverged(RunError):
    """Training or sampling gave non-finite numbers (NaN or inf); ``str()`` says which and
    where, in one line. The run fails: going on would only report NaN as results."""


def check_finite(value: float, what: str, where: str) -> None:
    """A :class:`Diverged` when ``value`` (a loss) is NaN or infinite."""
    if not math.isfinite(value):
        raise Diverged(
            f"{what} is {value} at {where}: the run diverged (a lower training.lr may help)"
        )


class TaskProgress:
    """A callable ``progress(done, total)`` for one long task that writes :class:`Progress`
    events, at most one every ``every`` seconds (and always the first and the last). With
    ``should_stop``, it raises :class:`Stopped` as soon as that says so: sampling, evaluation
    and the report's figures stop within a step, not at their end."""

    def __init__(self, log: EventLog | None, task: str, every: float = 1.0, should_stop=None):
        self.log, self.task, self.every = log, task, every
        self.should_stop = should_stop
        self._last = 0.0

    def __call__(self, done: int, total: int) -> None:
        if self.should_stop is not None and done < total and self.should_stop():
            raise Stopped(self.task)
        now = time.time()
        if self.log is None:
            return
        if done in (0, total) or now - self._last >= self.every:
            self._last = now
            self.log.emit(Progress(task=self.task, step=done, steps=total))
