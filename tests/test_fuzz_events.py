"""Issue 19: a fuzz test of the events.jsonl reader (engine/rundir/events.py) and the progress
fold (engine/rundir/progress.py): whatever the file holds, the reader gives events whose numbers
are finite and bounded and names each line it skips in one line; folding those events and
showing them (every status style, the summary row, elapsed time, ETA) never raises."""

from __future__ import annotations

import json
import math
from dataclasses import fields

import hypothesis
from hypothesis import strategies as st

from engine.rundir.events import (
    MAX_COUNT,
    MAX_NUMBER,
    MAX_SECONDS,
    TYPES,
    EventReader,
    Other,
)
from engine.rundir.progress import (
    STATUS_STYLES,
    RunProgress,
    status_text,
    study_values,
    summary_row,
)

FIELDS = sorted({f.name for c in TYPES.values() for f in fields(c)} | {"type", "time"})
numbers = (
    st.integers()
    | st.integers(min_value=-(10**500), max_value=10**500)
    | st.floats()
    | st.sampled_from([0, 1, -1, 1e308, -1e308, 10**400, MAX_COUNT + 1, MAX_SECONDS * 2])
)
json_values = st.recursive(
    st.none() | st.booleans() | numbers | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=12,
)
# objects shaped like events: a known type (mostly) with some of the fields of any type
events = st.builds(
    lambda kind, body: {"type": kind, **body},
    st.sampled_from([*TYPES, "other", ""]) | json_values,
    st.dictionaries(st.sampled_from(FIELDS), numbers | json_values, max_size=10),
)
# the fields of a real event, each replaced now and then by a hostile value
real = [
    {"type": "start", "time": 100.0, "epoch": 0, "epochs": 2},
    {"type": "progress", "time": 101.0, "step": 1, "steps": 8, "loss": 0.5, "epoch": 1},
    {"type": "progress", "time": 102.0, "step": 3, "steps": 40, "task": "FID classifier"},
    {"type": "epoch", "time": 103.0, "epoch": 1, "epochs": 2, "train_loss": 1.0,
     "val_loss": 0.9, "seconds": 3.0},
    {"type": "eval", "time": 104.0, "epoch": 1, "sampler": "DDIM-4", "n": 200, "fid": 50.0,
     "floor": 2.0, "histogram": [20] * 10, "entropy": 3.3},
    {"type": "value", "time": 105.0, "value": 0.1, "n": 24, "sampler": "DDIM-4",
     "png": "value-0.1.png", "npy": "value-0.1.npy", "fid": 9.0, "floor": 1.0},
    {"type": "end", "time": 106.0, "status": "finished", "started": 99.0},
]  # fmt: skip
mutated = st.builds(
    lambda i, changes: {**real[i % len(real)], **changes},
    st.integers(min_value=0),
    st.dictionaries(st.sampled_from(FIELDS), numbers | json_values, max_size=2),
)


def line(value) -> bytes:
    try:
        return json.dumps(value).encode()
    except (ValueError, RecursionError):
        return b"{"


# real events at times in any order (an end before its start, a start after the end)
timed = st.builds(
    lambda i, t, started: {**real[i % len(real)], "time": t, "started": started},
    st.integers(min_value=0),
    st.integers(min_value=0, max_value=200),
    st.integers(min_value=0, max_value=200),
)
lines = (timed | mutated | events | json_values).map(line) | st.binary(max_size=40)


def check_numbers(value, key="") -> None:
    """Every number an event holds is finite and within the reader's bounds."""
    if isinstance(value, list):
        for x in value:
            check_numbers(x, key)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        assert math.isfinite(value) and abs(value) <= max(MAX_COUNT, MAX_NUMBER, MAX_SECONDS), (
            key,
            value,
        )
        if key == "time":
            assert 0 <= value <= MAX_SECONDS


def shown(p: RunProgress) -> list[str]:
    """Every text a front end makes of a run's progress."""
    texts = [status_text(p, q, style) for style in STATUS_STYLES for q in (None, 0)]
    texts += summary_row(p) + [p.task_text(now=1e9)]
    for x in (p.elapsed(now=1e9), p.eta(), p.task_eta(now=1e9), p.fraction):
        assert x is None or (math.isfinite(x) and x >= 0)
    return texts


@hypothesis.settings(max_examples=200, deadline=None)
@hypothesis.given(
    body=st.lists(lines, max_size=12) | st.lists(timed.map(line), max_size=8),
    state=st.sampled_from(["running", "failed"]),
)
def test_fuzz_events_read_checked_and_fold_without_an_error(tmp_path_factory, body, state):
    path = tmp_path_factory.mktemp("run") / "events.jsonl"
    path.write_bytes(b"".join(raw.replace(b"\n", b" ") + b"\n" for raw in body))
    reader = EventReader(path)
    got = reader.read()
    assert len(got) + len(reader.problems) <= len(body)
    for problem in reader.problems:
        assert "\n" not in problem and problem.startswith(f"{path}: line ")
    p = RunProgress("t", state=state)
    for e in got:
        if not isinstance(e, Other):
            for name, value in e.__dict__.items():
                check_numbers(value, name)
        assert math.isfinite(e.time)
        p.fold(e)
    shown(p)
    study_values(got)


@hypothesis.settings(max_examples=100, deadline=None)
@hypothesis.given(data=st.binary(max_size=200) | st.just(b"[" * 100_000 + b"\n"))
def test_fuzz_events_bytes_are_events_or_named_lines(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("run") / "events.jsonl"
    path.write_bytes(data)
    reader = EventReader(path)
    p = RunProgress("t", state="running")
    for e in reader.read():
        p.fold(e)
    shown(p)
    assert all("\n" not in x and x.startswith(f"{path}: ") for x in reader.problems)
