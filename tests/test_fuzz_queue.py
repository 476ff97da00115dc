"""Issue 19: a fuzz test of the queue.json reader (engine/queue/state.py): whatever the file
holds, the queue read is one inside the runs folder, with no pid <= 0 and only Slurm-shaped
job ids, or the reader says what is wrong in one line naming the file."""

from __future__ import annotations

import json

import hypothesis
from hypothesis import strategies as st

from engine.errors import UserError
from engine.queue.handle import Handle
from engine.queue.state import QueueFile
from engine.spec.names import SAFE_NAME

HOSTILE_NAMES = ["t", "studies/s", "..", "../v", "/abs/v", "studies/../v", "a/b", "", ".x", "-x"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=12,
)
names = st.sampled_from(HOSTILE_NAMES) | st.text(max_size=12)
handles = st.dictionaries(
    st.sampled_from(["pid", "job_id", "gpu", "run", "host", "since", "stopped"]),
    st.integers(min_value=-(2**70), max_value=2**70)
    | st.sampled_from(["12", "12_3", "--user=root", "-1", "../x"])
    | json_values,
)
active = st.fixed_dictionaries(
    {}, optional={"executor": json_values | st.just("local"), "handle": handles | json_values}
)
queues = st.fixed_dictionaries(
    {},
    optional={
        "queued": st.lists(names, max_size=4) | json_values,
        "stop": st.lists(names, max_size=3),
        "active": st.dictionaries(names, active, max_size=3) | json_values,
        "where": st.dictionaries(names, st.lists(names, max_size=2)),
        "hosts": st.dictionaries(names, st.dictionaries(st.text(max_size=4), json_values)),
        "jobs": json_values,
        "paused": json_values,
    },
)


@hypothesis.settings(max_examples=200, deadline=None)
@hypothesis.given(raw=queues | json_values)
def test_fuzz_queue_json_is_a_queue_inside_the_folder_or_one_line(tmp_path_factory, raw):
    runs_dir = tmp_path_factory.mktemp("runs")
    (runs_dir / "queue.json").write_text(json.dumps(raw))
    try:
        state = QueueFile(runs_dir).read()
    except UserError as e:
        assert "\n" not in str(e) and str(runs_dir / "queue.json") in str(e)
        return
    for name in [*state.queued, *state.stop, *state.active, *state.where]:
        path = (runs_dir / name).resolve()
        assert path.parent in (runs_dir.resolve(), runs_dir.resolve() / "studies"), name
    for host in [*state.hosts, *(h for hosts in state.where.values() for h in hosts)]:
        assert SAFE_NAME.fullmatch(host), host
    for entry in state.active.values():
        handle = entry.get("handle", {})
        assert handle.get("pid") is None or 0 < handle["pid"] < 2**31
        job = handle.get("job_id")
        assert job in (None, "") or job.replace("_", "").isdigit()
        Handle.from_dict(handle).describe()  # reads without failing


@hypothesis.settings(max_examples=100, deadline=None)
@hypothesis.given(data=st.binary(max_size=64) | st.just(b"[" * 100_000))
def test_fuzz_queue_json_bytes_are_a_queue_or_one_line(tmp_path_factory, data):
    runs_dir = tmp_path_factory.mktemp("runs")
    (runs_dir / "queue.json").write_bytes(data)
    try:
        QueueFile(runs_dir).read()
    except UserError as e:
        assert "\n" not in str(e)
