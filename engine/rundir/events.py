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
import math
import os
import time
import typing
from collections.abc import Iterable
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path, PurePosixPath
from stat import S_ISREG
from typing import Any, ClassVar, TypeVar

from engine.text import json_kind

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
    device: str = ""  # torch's name: "cpu", "cuda:0"
    device_name: str = ""  # its hardware: "NVIDIA H100 80GB HBM3", "AMD EPYC 7763, 2 threads"
    host: str = ""  # the machine's host name
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
_FLOATS = {k for h in _HINTS.values() for k, tp in h.items() if float in _expected(tp)}


def from_dict(d: Any) -> Event:
    """The typed record of one decoded line; :class:`BadEvent` when its shape is wrong."""
    if not isinstance(d, dict):
        raise BadEvent(f"expected a JSON object, got {type(d).__name__}")
    name = d.get("type")
    if not isinstance(name, str):
        raise BadEvent('no "type" field')
    cls = TYPES.get(name)
    if cls is None:
        return Other(time=_time(d.get("time")), data=d)
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
                f"{name} event: {f.name} = {_show(v)} is not {' or '.join(t.__name__ for t in ok)}"
            )
        _check_value(name, f.name, v)
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


# Numbers of an event are finite and bounded, so that no sum, difference or format of them
# overflows: counts (the int fields) are integers in [0, MAX_COUNT]; times and durations
# (TIMES) numbers in [0, MAX_SECONDS]; the other numbers (losses, FID, a study's value) at most
# MAX_NUMBER in size. Lists hold MAX_ITEMS items at most: numbers (histogram, t, classes) or strings.
MAX_COUNT = 10**12
MAX_SECONDS = 1e11  # seconds since the epoch: the year 5138
MAX_NUMBER = 1e12
MAX_ITEMS = 10_000
TIMES = {"time", "seconds", "started", "sample_seconds", "score_seconds"}
_LIST_ITEMS: dict[str, tuple[type, ...]] = {
    "histogram": (int, float),
    "t": (int, float),
    "classes": (int,),  # a study value's class per sample
}


def _check_value(name: str, key: str, v: Any) -> None:
    """:class:`BadEvent` when the value ``v`` of field ``key`` of a ``name`` event is out of
    bounds (a number) or holds what it should not (a list)."""
    if isinstance(v, list):
        items = _LIST_ITEMS.get(key, (str,))  # (rows, columns, files: strings)
        if len(v) > MAX_ITEMS:
            raise BadEvent(f"{name} event: {key} has {len(v)} items, at most {MAX_ITEMS}")
        for x in v:
            if isinstance(x, bool) or not isinstance(x, items):
                raise BadEvent(
                    f"{name} event: {key} holds {_show(x)}, expected "
                    + ("strings" if str in items else "numbers")
                )
            if str not in items:
                _check_value(name, key, x)
        return
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return
    low: float
    high: float
    if key in TIMES:
        low, high, what = 0, MAX_SECONDS, f"a number of seconds from 0 to {MAX_SECONDS:g}"
    elif isinstance(v, int) and key not in _FLOATS:
        low, high, what = 0, MAX_COUNT, f"an integer from 0 to {MAX_COUNT:,}"
    else:
        low, high, what = -MAX_NUMBER, MAX_NUMBER, f"a finite number of size <= {MAX_NUMBER:g}"
    if not (low <= v <= high and (isinstance(v, int) or math.isfinite(v))):  # (NaN fails)
        raise BadEvent(f"{name} event: {key} = {_show(v)} is not {what}")


def _show(v: Any) -> str:
    """A value of an event as its line has it, cut short (a huge integer unprinted)."""
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) > 10**40:
        return "a huge integer"
    try:
        return json.dumps(v)[:40]
    except (ValueError, RecursionError):
        return json_kind(v)


def _time(v: Any) -> float:
    """The time of an event of a type this version does not know; 0 when it is no time."""
    try:
        _check_value("", "time", v)
    except BadEvent:
        return 0.0
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


MAX_LINE = 1 << 20  # bytes: a longer line is no event (skipped, and said)
_CHUNK = 1 << 22  # bytes read at a time
MAX_PROBLEMS = 20  # bad lines said one by one; the others counted in one more line


class EventReader:
    """Reads a run's events incrementally from a byte offset (a follower calls :meth:`read`
    again for what was appended since). Bad lines are skipped and named in :attr:`problems`;
    a path that is no regular file (a FIFO, a folder) or cannot be read is one problem, never
    a wait. Memory stays within a few MiB whatever the file holds."""

    def __init__(self, path: Path, offset: int = 0):
        self.path = Path(path)
        self.offset = offset
        self.line = 0  # complete lines read so far (for messages)
        self._problems: list[str] = []
        self._more = 0  # bad lines beyond MAX_PROBLEMS
        self._long = False  # inside a line longer than MAX_LINE (skipped up to its newline)

    @property
    def problems(self) -> list[str]:
        """What could not be read, one line each naming the file (and the line)."""
        more = [f"{self.path}: {self._more} more bad lines"] if self._more else []
        return self._problems + more

    @property
    def problem_count(self) -> int:
        """How many problems there were, those beyond :data:`MAX_PROBLEMS` too."""
        return len(self._problems) + self._more

    def _problem(self, text: str, once: bool = False) -> None:
        line = f"{self.path}: {text}"
        if once and line in self._problems:
            return
        if len(self._problems) < MAX_PROBLEMS:
            self._problems.append(line)
        else:
            self._more += 1

    def read(self) -> list[Event]:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)  # (a FIFO opens, unread)
        except FileNotFoundError:
            return []
        except OSError as e:
            self._problem(f"cannot read ({e.strerror or e})", once=True)
            return []
        out: list[Event] = []
        with open(fd, "rb") as f:
            if not S_ISREG(os.fstat(fd).st_mode):
                self._problem("not a file (a FIFO, a device or a folder)", once=True)
                return []
            try:
                while self._read_chunk(f, out):
                    pass
            except OSError as e:
                self._problem(f"cannot read ({e.strerror or e})", once=True)
        return out

    def _read_chunk(self, f, out: list[Event]) -> bool:
        """Read the complete lines of the next chunk into ``out``; False at the end."""
        f.seek(self.offset)
        data = f.read(_CHUNK)
        end = data.rfind(b"\n") + 1  # a torn last line waits for its newline
        if not end:
            if len(data) < _CHUNK:
                return False
            self._long, self.offset = True, self.offset + len(data)  # no line is this long
            return True
        self.offset += end
        lines = data[:end].split(b"\n")[:-1]
        long_first, self._long = self._long, False  # the end of a line too long to read
        for i, raw in enumerate(lines):
            self.line += 1
            if len(raw) > MAX_LINE or (i == 0 and long_first):
                self._problem(f"line {self.line}: longer than {MAX_LINE} bytes")
            elif raw.strip():
                try:
                    out.append(from_dict(json.loads(raw)))
                except (ValueError, RecursionError) as e:  # (BadEvent is a ValueError)
                    reason = str(e) if isinstance(e, BadEvent) else "not JSON"
                    self._problem(f"line {self.line}: {reason}")
        return len(data) == _CHUNK


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
