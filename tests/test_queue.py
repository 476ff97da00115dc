"""The queue a runs folder keeps for the UI: order, runs at once, pause, saved in queue.json."""
from __future__ import annotations

import json

import pytest

from engine.config import ConfigError, load_study
from engine.queue import Queue, QueueError, prepare_runs
from engine.runs import Run, atomic_write_json

from conftest import tiny_study


class RecordingExecutor:
    """Starts nothing: records which runs the queue would start, as live processes."""

    def __init__(self):
        self.started: list[str] = []

    def start(self, run: Run, threads=None):
        self.started.append(run.name)

        class Alive:
            def poll(self):
                return None
        return Alive()


@pytest.fixture
def runs_dir(tmp_path):
    f = tiny_study(tmp_path / "exp.toml", name="a")
    f.write_text(f.read_text() + '\n[[experiments]]\nname = "b"\n[[experiments]]\nname = "c"\n')
    prepare_runs(load_study(f).runs, tmp_path / "runs")
    return tmp_path / "runs"


def test_a_new_queue_is_paused_and_empty(runs_dir):
    q = Queue.open(runs_dir)
    assert q.paused and q.jobs == 1 and q.queued() == []
    assert sorted(r.name for r in q.runs) == ["a", "b", "c"]
    assert not (runs_dir / "queue.json").exists()  # nothing written until something changes


def test_order_jobs_and_pause_are_saved_and_restored(runs_dir):
    q = Queue.open(runs_dir)
    for name in ("a", "b", "c"):
        q.enqueue(name)
    q.move("c", -2)
    q.move("a", 5)  # clamped to the back
    q.set_jobs(2)
    q.set_paused(False)
    assert json.loads((runs_dir / "queue.json").read_text()) == \
        {"queued": ["c", "b", "a"], "jobs": 2, "paused": False}
    again = Queue.open(runs_dir)
    assert again.queued() == ["c", "b", "a"] and again.jobs == 2 and not again.paused
    assert again.cancel("b") == "b taken off the queue"
    assert Queue.open(runs_dir).queued() == ["c", "a"]


def test_poll_starts_in_order_up_to_jobs_and_not_while_paused(runs_dir):
    ex = RecordingExecutor()
    q = Queue.open(runs_dir, executor=ex)
    for name in ("b", "a", "c"):
        q.enqueue(name)
    q.poll()
    assert ex.started == []  # paused
    q.set_jobs(2)
    q.set_paused(False)
    q.poll()
    assert ex.started == ["b", "a"] and q.queued() == ["c"]
    q.poll()
    assert ex.started == ["b", "a"]  # both slots still busy
    assert Queue.open(runs_dir).queued() == ["c"]


def test_refusals_are_one_line(runs_dir):
    q = Queue.open(runs_dir)
    q.enqueue("a")
    with pytest.raises(QueueError, match="^a is queued already$"):
        q.enqueue("a")
    with pytest.raises(QueueError, match="^b is not queued: only queued runs can be reordered$"):
        q.move("b", 1)
    with pytest.raises(QueueError, match="^b is neither queued nor running here$"):
        q.cancel("b")
    with pytest.raises(QueueError, match="^no run named zz$"):
        q.enqueue("zz")
    with pytest.raises(QueueError, match="expected an integer >= 1, got 0"):
        q.set_jobs(0)
    run = Run(runs_dir / "c")  # a finished run is not queued again
    atomic_write_json(run.worker_path, {"pid": 1, "host": "h", "started": 1.0})
    atomic_write_json(run.exit_path, {"status": "finished", "started": 1.0})
    with pytest.raises(QueueError, match="^c is finished: nothing to queue$"):
        q.enqueue("c")


def test_a_damaged_queue_file_is_reported_and_kept(runs_dir):
    (runs_dir / "queue.json").write_text("{not json")
    with pytest.raises(ConfigError) as err:
        Queue.open(runs_dir)
    assert str(err.value) == (f"{runs_dir / 'queue.json'}: not valid JSON (the saved queue); "
                              "remove it to start afresh")
    assert (runs_dir / "queue.json").read_text() == "{not json"
