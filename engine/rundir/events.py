"""The run folder's event schema: ``events.jsonl``, one typed record per line.

A run folder's ``events.jsonl`` is an interface: the worker appends to it, a remote host streams
it byte for byte, the queue, batch mode, the UI and the report read it, and other tools may too.
Every line is one JSON object with ``type`` (below) and ``time`` (seconds since the epoch), and
the fields of its type. This module owns the types (:data:`TYPES`), the one writer
(:class:`EventLog`) and the one reader (:class:`EventReader`); :mod:`engine.rundir.progress`
folds them into what a front end shows (:class:`engine.rundir.progress.RunProgress`).

Rules a reader can rely on:

* lines are appended and flushed one at a time; a torn last line (a worker killed mid-write)
  is left for the next read, and a writer that finds one starts a fresh line;
* a line that is not a JSON object of a known shape is skipped and reported in
  :attr:`EventReader.problems` (file and line named), never fatal;
* types this version does not know are read as :class:`Other` and ignored by the fold, so
  newer workers stay readable;
* a resumed run appends a new ``start`` and may repeat epochs: the latest event of an epoch
  wins (:func:`latest_by_epoch`).
"""

from __future__ import annotations

import json
import os
import time
import typing
from collections.abc import Iterable
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar, TypeVar

# --- the event types ------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Event:
    type: ClassVar[str] = ""
    time: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            **{
                k: v for k, v in asdict(self).items() if v is not None or k in _REQUIRED[type(self)]
            },
        }


@dataclass(frozen=True, kw_only=True)
class Start(Event):
    """A worker attempt begins (training from ``epoch``, 0 for a fresh run)."""

    type: ClassVar[str] = "start"
    epoch: int
    epochs: int
    device: str = ""
    data_source: str = ""  # where the training images came from, in words
    train_size: int = 0
    val_size: int = 0
    parameters: int = 0  # the network's parameter count
    resumed: bool = False
    note: str = ""  # what the worker had to work around, e.g. a damaged checkpoint


@dataclass(frozen=True, kw_only=True)
class Progress(Event):
    """Progress within a step: training steps of an epoch (``task`` "train", with ``epoch`` and
    the step ``loss``), or a long task (``task`` names it: "FID classifier", "reference
    statistics", "FID floor", "final samples", ...) that is ``step`` of ``steps`` done."""

    type: ClassVar[str] = "progress"
    step: int
    steps: int
    task: str = "train"
    epoch: int | None = None
    loss: float | None = None


@dataclass(frozen=True, kw_only=True)
class Epoch(Event):
    """An epoch ended: mean training loss, held-out validation loss."""

    type: ClassVar[str] = "epoch"
    epoch: int
    epochs: int
    train_loss: float
    val_loss: float
    seconds: float
    images_per_s: float = 0.0


@dataclass(frozen=True, kw_only=True)
class Samples(Event):
    """A sample grid: ``png`` (the grid) and ``npy`` (N x 28 x 28 float32 in [0, 1]), paths
    relative to the run folder."""

    type: ClassVar[str] = "samples"
    epoch: int
    png: str
    npy: str
    n: int
    sampler: str
    seconds: float = 0.0


@dataclass(frozen=True, kw_only=True)
class Eval(Event):
    """FID of ``n`` samples with its bootstrap interval [``fid_low``, ``fid_high``] at
    ``fid_level`` (``fid_method`` says how), KID (mean ± ``kid_std`` over subsets), its
    real-vs-real floor at that n, the class histogram and entropy, and the share of samples
    that read as a digit (``recognised``). The interval, KID and ``recognised`` are optional:
    runs scored before diffui measured them have none, and read as before."""

    type: ClassVar[str] = "eval"
    epoch: int
    sampler: str
    n: int
    fid: float
    floor: float
    backbone: str = "lenet"
    histogram: list = field(default_factory=list)
    entropy: float | None = None
    fid_low: float | None = None  # the FID's interval (absent in older runs: optional)
    fid_high: float | None = None
    fid_level: float | None = None
    fid_method: str = ""
    kid: float | None = None
    kid_std: float | None = None
    recognised: float | None = None  # the share of samples that read as a digit
    sample_seconds: float = 0.0
    score_seconds: float = 0.0


@dataclass(frozen=True, kw_only=True)
class Checkpoint(Event):
    """``checkpoint.pt`` now holds the end of ``epoch`` (a resumed run starts after it)."""

    type: ClassVar[str] = "checkpoint"
    epoch: int
    path: str = "checkpoint.pt"


@dataclass(frozen=True, kw_only=True)
class Figure(Event):
    """Arrays for one of the report's figures, written by the worker (paths relative to the run
    folder), so that the report draws from the folder alone."""

    type: ClassVar[str] = "figure"
    name: str  # "diffusion", "restoration", "direct-vs-iterative"
    files: list = field(default_factory=list)  # .npy (rows, columns, 28, 28) in [0, 1], stacked
    epoch: int | None = None
    rows: list = field(default_factory=list)  # a label per row, across the files
    columns: list = field(default_factory=list)  # a title per column ("" for none)
    t: list = field(default_factory=list)  # the columns' times, where they are times


@dataclass(frozen=True, kw_only=True)
class Value(Event):
    """A sampling study finished one of its values: ``n`` samples (``npy``, and a grid
    ``png``, paths relative to the study folder), their FID, floor, class histogram and
    entropy, diversity (the share of distinct samples, the mean pairwise feature distance) and
    novelty (the mean distance to the nearest training digit, the share of near-copies)."""

    type: ClassVar[str] = "value"
    value: float
    n: int
    sampler: str
    png: str
    npy: str
    fid: float
    floor: float
    histogram: list = field(default_factory=list)
    entropy: float | None = None
    fid_low: float | None = None  # as in Eval
    fid_high: float | None = None
    fid_level: float | None = None
    fid_method: str = ""
    kid: float | None = None
    kid_std: float | None = None
    recognised: float | None = None
    classes: list = field(default_factory=list)  # each sample's digit, in the samples' order
    distinct_share: float | None = None
    pairwise_distance: float | None = None
    nearest_train_distance: float | None = None
    near_copy_share: float | None = None
    seconds: float = 0.0


@dataclass(frozen=True, kw_only=True)
class End(Event):
    """A worker attempt ended: ``finished``, ``stopped`` (resumable) or ``failed`` (``error``)."""

    type: ClassVar[str] = "end"
    status: str
    error: str = ""
    started: float | None = None  # when the attempt began (worker.json), before its ``start``


@dataclass(frozen=True, kw_only=True)
class Other(Event):
    """An event of a type this version does not know (kept whole in ``data``)."""

    type: ClassVar[str] = "other"
    data: dict = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.data)


TYPES: dict[str, type[Event]] = {
    c.type: c for c in (Start, Progress, Epoch, Samples, Eval, Checkpoint, Figure, Value, End)
}
_REQUIRED = {
    c: {f.name for f in fields(c) if f.default is MISSING and f.default_factory is MISSING}
    for c in (*TYPES.values(), Other)
}


class BadEvent(ValueError):
    """A line that is JSON but not an event of a known shape; ``str()`` says why."""


def _expected(tp) -> tuple[type, ...]:
    """The JSON value types a field of annotation ``tp`` accepts."""
    args = typing.get_args(tp)
    if args:  # X | None
        return tuple(t for a in args for t in _expected(a))
    if tp is float:
        return (int, float)
    return {type(None): (type(None),)}.get(tp, (tp,))


_HINTS = {c: typing.get_type_hints(c) for c in (*TYPES.values(), Other)}


def from_dict(d: Any) -> Event:
    """The typed record of one decoded line; :class:`BadEvent` when its shape is wrong."""
    if not isinstance(d, dict):
        raise BadEvent(f"expected a JSON object, got {type(d).__name__}")
    name = d.get("type")
    cls = TYPES.get(name) if isinstance(name, str) else None
    if cls is None:
        if not isinstance(name, str):
            raise BadEvent('no "type" field')
        return Other(time=_num(d.get("time", 0.0)), data=d)
    hints = _HINTS[cls]
    kw: dict[str, Any] = {}
    for f in fields(cls):
        if f.name not in d:
            if f.name in _REQUIRED[cls]:
                raise BadEvent(f"{name} event without {f.name!r}")
            continue
        v = d[f.name]
        ok = _expected(hints[f.name])
        if isinstance(v, bool) and bool not in ok or not isinstance(v, ok):
            raise BadEvent(
                f"{name} event: {f.name} = {json.dumps(v)[:40]} is not "
                f"{' or '.join(t.__name__ for t in ok)}"
            )
        if f.name in PATH_FIELDS:
            for path in v if isinstance(v, list) else [v]:
                if not inside_folder(path):
                    raise BadEvent(
                        f"{name} event: {f.name} = {json.dumps(path)[:60]} is not a "
                        "path inside the run folder"
                    )
        kw[f.name] = v
    return cls(**kw)


PATH_FIELDS = {"png", "npy", "files", "path"}  # files of the run folder, relative to it


def inside_folder(path: Any) -> bool:
    """Whether ``path`` (from an event) names a file inside the folder it is relative to: a
    relative path with no ``..`` (a run's files never read outside their run folder)."""
    if not isinstance(path, str) or not path or "\0" in path:
        return False
    p = PurePosixPath(path)
    return not p.is_absolute() and ".." not in p.parts and not path.startswith("~")


def _num(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else 0.0


# --- writing --------------------------------------------------------------------------------------


class EventLog:
    """Appends events to ``events.jsonl``; each line is flushed as it is written. A torn last
    line left by a killed writer is ended first, so it cannot swallow the next event."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._f = open(self.path, "a+b")
        if self._f.tell() > 0:
            self._f.seek(-1, os.SEEK_END)
            if self._f.read(1) != b"\n":
                self._f.write(b"\n")
        self._f.seek(0, os.SEEK_END)

    def emit(self, event: Event) -> Event:
        """Write ``event`` (stamped with the current time when it has none) and return it."""
        if not event.time:
            event = replace(event, time=round(time.time(), 3))
        self._f.write(json.dumps(event.to_dict()).encode() + b"\n")
        self._f.flush()
        return event

    def close(self) -> None:
        self._f.close()


# --- reading --------------------------------------------------------------------------------------


class EventReader:
    """Reads a run's events incrementally from a byte offset (a follower calls :meth:`read`
    again for what was appended since). Bad lines are skipped and named in :attr:`problems`."""

    def __init__(self, path: Path, offset: int = 0):
        self.path = Path(path)
        self.offset = offset
        self.line = 0  # complete lines read so far (for messages)
        self.problems: list[str] = []

    def read(self) -> list[Event]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n") + 1  # a torn last line waits for its newline
        self.offset += end
        out = []
        for raw in data[:end].split(b"\n")[:-1]:
            self.line += 1
            if not raw.strip():
                continue
            try:
                out.append(from_dict(json.loads(raw)))
            except (ValueError, BadEvent) as e:
                reason = str(e) if isinstance(e, BadEvent) else "not JSON"
                self.problems.append(f"{self.path}: line {self.line}: {reason}")
        return out


def read_events(path: Path) -> list[Event]:
    """Every complete, well-formed event of ``path`` (a run's ``events.jsonl``)."""
    return EventReader(path).read()


E = TypeVar("E", bound=Event)


def latest_by_epoch(events: Iterable[Event], kind: type[E]) -> dict[int, E]:
    """The last event of class ``kind`` for each epoch (a resumed run may repeat an epoch)."""
    out: dict[int, E] = {}
    for e in events:
        epoch = getattr(e, "epoch", None)
        if isinstance(e, kind) and epoch is not None:
            out[epoch] = e
    return dict(sorted(out.items()))
