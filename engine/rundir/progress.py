"""The one fold of a run's events into what a front end shows (:class:`RunProgress`), a run's
status in words (:func:`status_text`), a study's finished values (:func:`study_values`), and the
summary row every table of runs uses."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from engine.rundir.estimates import Estimate
from engine.rundir.events import End, Epoch, Eval, Event, EventReader, Other, Progress, Start, Value
from engine.text import fmt, format_seconds


@dataclass
class RunProgress:
    """What a front end shows about one run, folded from its events (:meth:`fold`) and its
    derived status (:func:`engine.rundir.run.Run.status`, set by the follower)."""

    name: str
    state: str = "pending"
    detail: str = ""
    host: str = ""  # where the latest worker runs (or ran)
    epoch: int = 0  # last completed epoch
    epochs: int = 0
    step: int = 0
    steps: int = 0
    loss: float | None = None  # latest training step loss
    train_loss: float | None = None  # last epoch's mean
    val_loss: float | None = None
    fid: float | None = None  # latest evaluation
    floor: float | None = None
    estimate: Estimate | None = None  # the latest FID with its interval (when it has one)
    entropy: float | None = None
    sampler: str = ""
    data_source: str = ""
    unit: str = "epoch"  # what ``epoch`` counts: "value" for a sampling study
    task: str = ""  # a long task under way besides training ("" when none)
    task_step: int = 0
    task_steps: int = 0
    task_started: float | None = None  # time and step of the task's first event
    task_base: int = 0
    started: float | None = None  # this attempt's start time
    epoch_started: float | None = None
    epoch_seconds: list[float] = field(default_factory=list)
    wall_seconds: float = 0.0  # time in attempts that have ended
    last_time: float | None = None  # time of the latest event
    problems: list[str] = field(default_factory=list)  # bad lines of events.jsonl
    problem_count: int = 0  # how many: the count, not only those named
    reader: EventReader | None = field(default=None, repr=False, compare=False)
    _open: bool = False  # an attempt has started and not ended

    def fold(self, e: Event) -> None:
        """Take in the next event. Events come checked (finite, bounded numbers: see
        :mod:`engine.rundir.events`) but in any order a file may hold: no time span is
        counted below 0."""
        if isinstance(e, Start):
            if self._open and self.started is not None:  # an attempt that died without an end
                self.wall_seconds += self._since_start(self.last_time)
            self.started = self.epoch_started = e.time
            self.epoch, self.epochs = e.epoch, e.epochs
            self.data_source = e.data_source
            self.step, self._open, self.task = 0, True, ""
        elif isinstance(e, Progress):
            if e.task == "train":
                self.step, self.steps, self.loss, self.task = e.step, e.steps, e.loss, ""
            else:
                if e.task != self.task or e.step < self.task_step:  # a new task begins
                    self.task_started, self.task_base = e.time, e.step
                self.task, self.task_step, self.task_steps = e.task, e.step, e.steps
                if e.step >= e.steps:
                    self.task = ""
        elif isinstance(e, Epoch):
            self.epoch, self.epochs = e.epoch, e.epochs
            self.train_loss, self.val_loss = e.train_loss, e.val_loss
            self.epoch_seconds.append(e.seconds)
            self.epoch_started, self.step, self.task = e.time, 0, ""
        elif isinstance(e, Eval):
            self.fid, self.floor, self.entropy = e.fid, e.floor, e.entropy
            self.estimate = Estimate.of(e)
            self.sampler, self.task = e.sampler, ""
        elif isinstance(e, Value):  # a study's value counts like a run's epoch
            self.epoch, self.unit = self.epoch + 1, "value"
            self.epoch_seconds.append(e.seconds)
            self.fid, self.floor, self.entropy = e.fid, e.floor, e.entropy
            self.estimate = Estimate.of(e)
            self.sampler, self.task, self.epoch_started, self.step = e.sampler, "", e.time, 0
        elif isinstance(e, End):
            if e.started is not None and e.started > (self.last_time or 0.0):
                # an attempt that ended before its start event (it failed while preparing):
                # the attempt still open before it died without an end
                if self._open and self.started is not None:
                    self.wall_seconds += self._since_start(self.last_time)
                self.wall_seconds += max(0.0, e.time - e.started)
            elif self._open and self.started is not None:
                self.wall_seconds += self._since_start(e.time)
            self._open, self.task = False, ""
        if not isinstance(e, Other) or e.time:
            self.last_time = e.time

    def _since_start(self, t: float | None) -> float:
        """Seconds from this attempt's start to ``t`` (0 when ``t`` comes before it)."""
        return max(0.0, (t or 0.0) - (self.started or 0.0))

    def elapsed(self, now: float | None = None) -> float:
        """Seconds spent in worker attempts, the current one counted up to ``now`` while it runs
        (up to its last event when it died)."""
        if not self._open or self.started is None:
            return self.wall_seconds
        end = (now or time.time()) if self.state == "running" else (self.last_time or self.started)
        return self.wall_seconds + max(0.0, end - self.started)

    @property
    def fraction(self) -> float:
        if not self.epochs:
            return 0.0
        within = self.step / self.steps if self.steps else 0.0
        return min(1.0, (self.epoch + within) / self.epochs)

    def eta(self) -> float | None:
        """Seconds left, from the mean epoch time so far (None before the first epoch ends)."""
        if self.state != "running" or not self.epoch_seconds:
            return None
        per_epoch = sum(self.epoch_seconds[-5:]) / len(self.epoch_seconds[-5:])
        within = self.step / self.steps if self.steps else 0.0
        return max(0.0, per_epoch * (self.epochs - self.epoch - within))

    def task_eta(self, now: float | None = None) -> float | None:
        """Seconds left in the long task under way, from its pace so far (None when unknown)."""
        if not self.task or self.state != "running" or not self.task_steps:
            return None
        spent = (now or time.time()) - (self.task_started or 0.0)
        if self.task_step <= self.task_base or spent <= 0:
            return None
        return spent / (self.task_step - self.task_base) * (self.task_steps - self.task_step)

    def task_text(self, now: float | None = None, eta: bool = True) -> str:
        """The long task under way, e.g. "FID classifier 40% eta 1:10" ("" when none)."""
        if not self.task or self.state != "running":
            return ""
        text = self.task
        if self.task_steps:
            text += f" {self.task_step / self.task_steps:.0%}"
        left = self.task_eta(now) if eta else None
        return text + (f" eta {format_seconds(left)}" if left is not None else "")


STATUS_STYLES = ("ui", "bar", "table")


def status_text(p: RunProgress, queued_at: int | None = None, style: str = "ui") -> str:
    """A run's status in a few words; ``queued_at`` its place in the queue (None when it is not
    queued). Each front end has its ``style``:

    * ``ui``: the UI's runs table and study line: ``queued #2``, the long task under way or
      ``running  40%``, ``not queued`` for a run no worker has started;
    * ``bar``: beside batch mode's progress bar: ``queued``, or ``epoch 3/10`` with the long
      task under way (and its ETA), or with the step loss and the run's ETA;
    * ``table``: ``diffui queue status``: ``running 40% (task)``, ``queued #2``.

    Otherwise it is the run's state (``finished``, ``failed``...)."""
    if queued_at is not None and (style == "bar" or p.state != "running"):
        return "queued" if style == "bar" else f"queued #{queued_at + 1}"
    if p.state == "running":
        return _running_text(p, style)
    if p.state == "pending" and style == "ui":  # no worker has started it, and it is not queued
        return "not queued"
    return p.state


def _running_text(p: RunProgress, style: str) -> str:
    if style == "ui":  # a long step besides training says what it is
        return p.task_text(eta=False) or f"running {p.fraction:4.0%}"
    if style == "table":
        return f"running {p.fraction:.0%}" + (f" ({p.task_text()})" if p.task else "")
    text = f"{p.unit} {p.epoch}/{p.epochs}"
    if p.task:
        return text + "  " + p.task_text()
    if p.loss is not None:
        text += f"  loss {p.loss:.4f}"
    eta = p.eta()
    return text + f"  eta {'-' if eta is None else format_seconds(eta)}"


def study_values(events: Iterable[Event], folder: Path | None = None) -> dict[float, Value]:
    """A sampling study's latest :class:`Value` event of each value, in the order the values
    first came. With ``folder`` (the study's), only the values whose samples are on disk there:
    the finished values a resumed study skips, the report draws and ``results.csv`` lists."""
    out: dict[float, Value] = {}
    for e in events:
        if isinstance(e, Value) and (folder is None or (Path(folder) / e.npy).is_file()):
            out[e.value] = e
    return out


def follow(run, prog: RunProgress) -> RunProgress:
    """Fold the new events of ``run`` (an :class:`engine.rundir.run.Run`) into ``prog`` and refresh
    its derived state."""
    if prog.reader is None:
        prog.reader = EventReader(run.events_path)
    reader = prog.reader
    for e in reader.read():
        prog.fold(e)
    prog.problems, prog.problem_count = reader.problems, reader.problem_count
    st = run.status()
    prog.state, prog.detail, prog.host = st.state, st.detail, st.host
    return prog


SUMMARY_COLUMNS = (
    "run",
    "status",
    "epochs",
    "final val loss",
    "FID",
    "floor",
    "class entropy",
    "sampler",
    "wall time",
)


def summary(run) -> RunProgress:
    """A run's latest numbers, read from its folder (epochs from its settings before it starts)."""
    p = follow(run, RunProgress(run.name))
    if run.damage():
        return p  # no settings to read (its state says config.toml is damaged)
    spec = run.spec()  # a run's epochs, or a study's values, before it starts
    p.epochs = p.epochs or (len(spec.values) if hasattr(spec, "values") else spec.training.epochs)
    return p


def why(p: RunProgress) -> str:
    """Why a run did not finish, in one line: a failed run's error, what is damaged ("" for
    the other states)."""
    return p.detail if p.state in ("failed", "damaged") else ""


def summary_row(p: RunProgress) -> list[str]:
    """The row of the report's table (SUMMARY_COLUMNS): batch mode, report.md, the compare view."""
    return [
        p.name,
        p.state,
        f"{p.epoch}/{p.epochs}",
        fmt(p.val_loss),
        p.estimate.text(".2f") if p.estimate else fmt(p.fid, ".2f"),
        fmt(p.floor, ".2f"),
        fmt(p.entropy, ".2f"),
        p.sampler or "-",
        format_seconds(p.elapsed()),
    ]
