"""The queue of a runs folder (order, runs at once, pause; queue.json shared by every diffui) and
its service (the one process that starts work, on the executors' slots)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import tiny_study

from engine.files import atomic_write_json
from engine.queue import service
from engine.queue.client import Queue, QueueError
from engine.queue.executors.base import Executor, Job
from engine.queue.handle import Handle, SlurmJob
from engine.queue.service import Service
from engine.queue.state import QueueFile
from engine.rundir.run import Run, prepare_runs
from engine.spec.experiments import load_experiments


class RecordingExecutor(Executor):
    """Starts nothing: records which runs the service starts; they live until marked done."""

    name = "local"

    def __init__(self):
        self.started: list[str] = []
        self.done: set[str] = set()
        self.stopped: list[str] = []

    def slots(self, jobs):
        return [f"local:{i}" for i in range(jobs)]

    def start(self, job: Job, slot, threads=None):
        self.started.append(job.name)
        return Handle(state=slot)

    def alive(self, job, handle):
        return job.name not in self.done

    def stop(self, job, handle):
        self.stopped.append(job.name)

    kill = stop


def serve(runs_dir, ex) -> Service:
    return Service(runs_dir, {"local": ex}, log=lambda msg: None)


def step(s: Service) -> None:
    with s.file.edit() as st:
        s.step(st)


@pytest.fixture
def runs_dir(tmp_path):
    f = tiny_study(tmp_path / "exp.toml", name="a")
    f.write_text(f.read_text() + '\n[[experiments]]\nname = "b"\n[[experiments]]\nname = "c"\n')
    prepare_runs(load_experiments(f).runs, tmp_path / "runs")
    return tmp_path / "runs"


def test_a_new_queue_is_paused_and_empty(runs_dir):
    q = Queue.open(runs_dir, start_service=False)
    assert q.paused and q.jobs == 1 and q.queued() == []
    assert sorted(r.name for r in q.runs) == ["a", "b", "c"]
    assert not (runs_dir / "queue.json").exists()  # nothing written until something changes


def test_order_jobs_and_pause_are_saved_and_restored(runs_dir):
    q = Queue.open(runs_dir, start_service=False)
    for name in ("a", "b", "c"):
        q.enqueue(name)
    q.move("c", -2)
    q.move("a", 5)  # clamped to the back
    q.set_jobs(2)
    q.set_paused(False)
    assert json.loads((runs_dir / "queue.json").read_text()) == {
        "queued": ["c", "b", "a"],
        "jobs": 2,
        "paused": False,
        "active": {},
        "stop": [],
        "where": {},
        "hosts": {},
    }
    again = Queue.open(runs_dir, start_service=False)
    assert again.queued() == ["c", "b", "a"] and again.jobs == 2 and not again.paused
    assert again.cancel("b") == "b taken off the queue"
    assert Queue.open(runs_dir, start_service=False).queued() == ["c", "a"]


def test_the_service_starts_in_order_up_to_jobs_and_not_while_paused(runs_dir):
    ex = RecordingExecutor()
    q = Queue.open(runs_dir, start_service=False)
    s = serve(runs_dir, ex)
    for name in ("b", "a", "c"):
        q.enqueue(name)
    step(s)
    assert ex.started == []  # paused
    q.set_jobs(2)
    q.set_paused(False)
    step(s)
    assert ex.started == ["b", "a"]
    q.poll()
    assert q.queued() == ["c"] and q.active() == ["b", "a"]
    step(s)
    assert ex.started == ["b", "a"]  # both slots still busy
    ex.done.add("a")
    step(s)
    q.poll()
    assert ex.started == ["b", "a", "c"] and q.active() == ["b", "c"] and q.queued() == []


def test_cancel_of_a_running_run_is_carried_out_by_the_service(runs_dir):
    ex = RecordingExecutor()
    q = Queue.open(runs_dir, start_service=False)
    s = serve(runs_dir, ex)
    q.enqueue("a")
    q.set_paused(False)
    step(s)
    assert q.cancel("a") == "a: stopping (resumable from its last checkpoint)"
    step(s)
    assert ex.stopped == ["a"]
    ex.done.add("a")
    step(s)
    st = QueueFile(runs_dir).read()
    assert st.active == {} and st.stop == [] and not st.busy()


def test_a_restarted_service_requeues_runs_whose_worker_died(runs_dir):
    """After a reboot: queue.json says a run was active; its worker is gone without an exit
    record. It goes back to the front of the queue to resume from its checkpoint."""
    run = Run(runs_dir / "b")
    run.checkpoint_path.write_bytes(b"x")  # it had saved an epoch
    atomic_write_json(run.worker_path, {"pid": 999_999_999, "host": "h", "started": 1.0})
    with QueueFile(runs_dir).edit() as st:
        st.queued, st.paused = ["c"], True
        st.active = {"b": {"executor": "local", "slot": "local:0", "handle": {"pid": 999_999_999}}}
    serve(runs_dir, RecordingExecutor()).reconcile()  # the recorder says no worker lives...
    st = QueueFile(runs_dir).read()
    assert st.active == {
        "b": {"executor": "local", "slot": "local:0", "handle": {"pid": 999_999_999}}
    }  # ...unless told it died:
    ex = RecordingExecutor()
    ex.done.add("b")
    serve(runs_dir, ex).reconcile()
    st = QueueFile(runs_dir).read()
    assert st.queued == ["b", "c"] and st.active == {}


def test_a_killed_study_is_resumable_and_requeued_by_the_next_service(tmp_path):
    """Issue 19, defect 5: client, service and worker killed after a study's first value; the
    study reads as resumable (it resumes at its next value), and the next service requeues it."""
    import socket

    from conftest import MORPH_STUDY

    f = tiny_study(tmp_path / "exp.toml", name="m")
    f.write_text(f.read_text() + MORPH_STUDY)
    study = load_experiments(f)
    runs_dir = tmp_path / "runs"
    (folder,) = prepare_runs(study.studies, runs_dir)
    dead = {"pid": 999_999_999, "host": socket.gethostname(), "started": 1.0}
    atomic_write_json(folder.worker_path, dead)  # a worker that died after its first value
    st = folder.status()
    assert (st.state, st.detail) == (
        "resumable",
        f"worker 999999999 on {socket.gethostname()} died without an exit record",
    )
    with QueueFile(runs_dir).edit() as q:
        q.paused = False
        q.active = {folder.name: {"executor": "local", "slot": "local:0", "handle": dead}}
    ex = RecordingExecutor()
    ex.done.add("noise")  # (a job is named by its folder)
    serve(runs_dir, ex).reconcile()
    assert QueueFile(runs_dir).read().queued == ["studies/noise"]


def test_refusals_are_one_line(runs_dir):
    q = Queue.open(runs_dir, start_service=False)
    q.enqueue("a")
    with pytest.raises(QueueError, match="^a is queued already$"):
        q.enqueue("a")
    with pytest.raises(QueueError, match="^b is not queued: only queued runs can be reordered$"):
        q.move("b", 1)
    with pytest.raises(QueueError, match="^b is neither queued nor running$"):
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
    q = Queue.open(runs_dir, start_service=False)
    assert q.error == (
        f"{runs_dir / 'queue.json'}: not valid JSON (the saved queue); remove it to start afresh"
    )
    with pytest.raises(QueueError, match="not valid JSON"):
        q.enqueue("a")
    assert (runs_dir / "queue.json").read_text() == "{not json"
    (runs_dir / "queue.json").write_text('{"queued": "a"}')
    assert Queue.open(runs_dir, start_service=False).error == (
        f"{runs_dir / 'queue.json'}: queued: expected a list of run names (the saved queue); "
        "fix or remove it to start afresh"
    )
    assert (runs_dir / "queue.json").read_text() == '{"queued": "a"}'


def test_two_services_on_one_runs_folder_one_wins(runs_dir):
    first = serve(runs_dir, RecordingExecutor())
    first.acquire()
    try:
        assert service.running_pid(runs_dir) is None  # this test process is not a service...
        cmd = [sys.executable, "-m", "engine.queue.service", str(runs_dir)]
        second = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert second.returncode == 1
        assert second.stderr == f"error: a queue service already runs for {runs_dir.resolve()}\n"
        assert (runs_dir / "service.lock").read_text() == f"{os.getpid()}\n"  # ...but holds it
    finally:
        first.release()
    assert (runs_dir / "service.lock").read_text() == ""


def test_next_jobs_fills_free_slots_in_order_and_drops_runs_done_elsewhere():
    from engine.queue.state import QueueState, next_jobs

    slots = {"local": ["local:0", "local:1", "local:2"]}
    st = QueueState(
        queued=["a", "b", "c", "d"], jobs=3, active={"x": {"executor": "local", "slot": "local:1"}}
    )
    got = next_jobs(st, {"a": "pending", "b": "finished", "c": "resumable", "d": "pending"}, slots)
    assert got == [("a", "local", "local:0"), ("b", None, None), ("c", "local", "local:2")]
    assert st.queued == ["d"]
    st = QueueState(queued=["a", "b"], jobs=2)
    two = {"local": slots["local"][:2]}
    assert next_jobs(st, {}, two, foreign=1) == [("a", "local", "local:0")]  # one taken outside
    st = QueueState(
        queued=["a", "b"], jobs=1, active={"a": {"executor": "local", "slot": "local:0"}}
    )
    assert next_jobs(st, {}, {"local": ["local:0"]}) == [] and st.queued == ["a", "b"]  # a stopping


def test_next_jobs_sends_each_run_to_the_first_of_its_hosts_with_a_free_slot():
    from engine.queue.state import QueueState, next_jobs

    slots = {"local": ["local:0"], "gpu1": ["gpu1:0", "gpu1:1"], "gpu2": ["gpu2:0"]}
    st = QueueState(
        queued=["a", "b", "c", "d", "e"],
        where={"a": ["gpu1"], "b": ["gpu1"], "c": ["gpu1"], "d": ["gpu1", "gpu2"]},
        active={"x": {"executor": "gpu2", "slot": "gpu2:0"}},
    )
    got = next_jobs(st, {}, slots)
    # c waits for gpu1 without holding up d (gpu2 is busy: d waits too) or e (local by default)
    assert got == [("a", "gpu1", "gpu1:0"), ("b", "gpu1", "gpu1:1"), ("e", "local", "local:0")]
    assert st.queued == ["c", "d"]
    # the same slot name on two hosts are two slots; foreign runs take local slots only
    st = QueueState(
        queued=["a", "b"], where={"a": ["gpu1"]}, active={"x": {"executor": "gpu1", "slot": "0"}}
    )
    assert next_jobs(st, {}, {"local": ["0"], "gpu1": ["0", "1"]}, foreign=1) == [
        ("a", "gpu1", "1")
    ]


def test_service_sends_runs_to_their_hosts_and_fails_a_run_with_nowhere_to_go(runs_dir):
    q = Queue.open(runs_dir, start_service=False)
    q.place({"a": ["gpu1"], "c": ["ghost"]}, {})
    for name in ("a", "b", "c"):
        q.enqueue(name)
    q.set_paused(False)
    local, gpu1 = RecordingExecutor(), RecordingExecutor()
    s = Service(runs_dir, {"local": local, "gpu1": gpu1}, log=lambda msg: None)
    step(s)
    assert gpu1.started == ["a"] and local.started == ["b"]
    active = QueueFile(runs_dir).read().active
    assert {n: a["executor"] for n, a in active.items()} == {"a": "gpu1", "b": "local"}
    status = Run(runs_dir / "c").status()
    assert status.state == "failed" and status.detail.startswith("no host to run on: ghost")
    assert QueueFile(runs_dir).read().queued == []


def test_a_start_that_failed_reads_as_failed_at_every_moment_of_its_recording(
    runs_dir, monkeypatch
):
    """``record_failure`` writes two files; a reader (the UI, a client waiting for the run)
    between the two already sees the failure and its line, never a worker that died."""
    run = prepare_runs(load_experiments(tiny_study(runs_dir.parent / "exp.toml")).runs, runs_dir)[0]
    run.record_failure("gpu1", "gpu1: cannot connect")  # an earlier attempt
    seen = []
    real = atomic_write_json

    def write(path, data):  # look at the run before each of its records is written
        seen.append(run.status())
        real(path, data)

    monkeypatch.setattr("engine.rundir.run.atomic_write_json", write)
    run.record_failure("gpu1", "gpu1: cannot connect again")
    seen.append(run.status())
    assert [(s.state, s.detail) for s in seen] == [
        ("failed", "gpu1: cannot connect"),
        ("failed", "gpu1: cannot connect again"),
        ("failed", "gpu1: cannot connect again"),
    ]


@pytest.mark.parametrize(
    "written",
    [
        {"pid": 123, "host": "laptop"},  # the local executor's
        {
            "host": "gpu1",
            "run": "a",
            "gpu": 0,
            "pid": 4567,
            "state": "running",
            "note": "connection lost; trying again in 2 s",
        },  # an SSH host's
        {
            "job_id": "12",
            "folder": "/r/.slurm/c/1/12",
            "state": "PENDING",
            "reason": "Priority",
            "since": 1.5,
            "seen": 2.5,
        },  # a Slurm job submitted on the login node
        {"host": "c", "run": "studies/s", "state": "SUBMITTING"},  # a Slurm job over SSH, and
        {
            "host": "c",
            "run": "a",
            "job_id": "12_0",
            "folder": "f",
            "state": "PREEMPTED",
            "reason": "",
            "since": 1.0,
            "seen": 2.0,
            "stopped": True,
            "again": "c: Slurm job 12_0 was pre-empted",
        },
    ],
)  # once submitted
def test_a_handle_is_written_back_to_queue_json_as_it_was_read(written):
    assert Handle.from_dict(json.loads(json.dumps(written))).to_dict() == written


def test_a_handle_of_a_damaged_queue_json_reads_as_unset_and_says_a_slurm_job_in_words():
    assert (
        Handle.from_dict({"pid": "1; rm -rf /", "gpu": True, "job_id": ["x"], "state": 3})
        == Handle()
        == Handle.from_dict([1, 2])
        == Handle.from_dict(None)
    )
    ssh = {"host": "gpu1", "run": "a", "gpu": None, "pid": None, "state": "starting"}
    assert Handle.from_dict(ssh).to_dict() == {"host": "gpu1", "run": "a", "state": "starting"}
    assert Handle(slurm=SlurmJob("12", reason="Priority")).describe() == "job 12 PENDING (Priority)"
    assert Handle(pid=1, host="h").describe() == ""


def test_a_service_whose_log_cannot_be_written_goes_on(tmp_path):
    """Issue 19, defect 14: service.log unwritable (here: a full disk) killed the service at its
    first line; the queued run then waited for another client."""
    f = tiny_study(tmp_path / "exp.toml", epochs=1, subset=64)
    runs_dir = tmp_path / "runs"
    (run,) = prepare_runs(load_experiments(f).runs, runs_dir)
    q = Queue.open(runs_dir, start_service=False)
    q.enqueue("tiny")
    q.set_paused(False)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    with open("/dev/full", "w") as full:
        proc = subprocess.Popen(
            [sys.executable, "-m", service.MODULE, str(runs_dir)],
            stdout=full,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        assert proc.wait(timeout=300) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert run.status().state == "finished"
    assert not QueueFile(runs_dir).read().busy()


# --- expected start and end (issue 22) ------------------------------------------------------------

# a tiny run (tests/conftest.py's TINY: 230 training and 26 validation images, 2 epochs, T = 40,
# a 4-image grid with DDIM-4 after epoch 1 and DDPM-40 after epoch 2) at 0.1 s a training image
# and 0.5 s a network call: 10 s to start, 2 x (23 + 0.5) s of epochs, (4 + 40) x 0.5 s of
# grids, 40 x 0.5 s of the report's DDPM strip
TINY_SECONDS = 10 + 2 * 23.5 + 22 + 20


def calibrated(runs_dir: Path, cache_path: Path, names: list[str], host: str = "local"):
    from engine.spec.costs import Calibration, CalibrationCache, calibration_key

    cache = CalibrationCache(cache_path)
    for name in names:
        key = calibration_key(host, "cpu", Run(runs_dir / name).spec())
        cache.put(key, Calibration(train_s=0.1, eval_s=0.0, call_s=0.5))
    return CalibrationCache(cache_path)  # read back from calibration.json


def test_queued_runs_expect_their_start_on_the_slot_that_frees_first(runs_dir, tmp_path):
    from engine.queue.expected import Expected, expected_times
    from engine.spec.costs import run_seconds

    cache = calibrated(runs_dir, tmp_path / "calibration.json", ["a", "b", "c"])
    assert run_seconds(Run(runs_dir / "a").spec(), cache.get(next(iter(cache.entries)))) == (
        pytest.approx(TINY_SECONDS)
    )
    q = Queue.open(runs_dir, start_service=False)
    for name in ("a", "b", "c"):
        q.enqueue(name)
    runs = {r.name: r for r in q.runs}
    got = expected_times(q.state, runs, q.progress, cache, now=1000.0)
    t = TINY_SECONDS
    assert got == {
        "a": Expected(0.0, t),
        "b": Expected(pytest.approx(t), pytest.approx(2 * t)),
        "c": Expected(pytest.approx(2 * t), pytest.approx(3 * t)),
    }
    q.set_jobs(2)  # two slots: b starts beside a, c when the first of them ends
    got = expected_times(q.state, runs, q.progress, cache, now=1000.0)
    assert [got[n].start for n in "abc"] == [0.0, 0.0, pytest.approx(t)]

    # a runs (epoch 1 of 2 done 10 s ago): what is left of its estimate, less those 10 s
    q.set_jobs(1)
    q.cancel("a")
    p = q.progress["a"]
    p.state, p.epoch, p.epochs, p.epoch_started, p.epoch_seconds = "running", 1, 2, 990.0, [30.0]
    left = 23.5 + 20 + 20 - 10  # epoch 2, its DDPM grid, the strip
    got = expected_times(q.state, runs, q.progress, cache, now=1000.0)
    assert got["a"] == Expected(0.0, pytest.approx(left))
    assert got["b"] == Expected(pytest.approx(left), pytest.approx(left + t))
    p.epoch_seconds = [90.0]  # its epochs go slower than estimated: their pace says more
    assert expected_times(q.state, runs, q.progress, cache, now=1000.0)["a"].end == 90.0


def test_a_run_never_calibrated_on_its_host_has_no_end_and_hides_the_starts_behind_it(
    runs_dir, tmp_path
):
    from engine.queue.expected import Expected, expected_times

    cache = calibrated(runs_dir, tmp_path / "calibration.json", ["c"])  # here only
    q = Queue.open(runs_dir, start_service=False)
    q.place({"a": ["gpu1"], "b": ["gpu1"]}, {})
    with q._edit() as st:  # a host of one GPU, calibrated nowhere
        st.hosts["gpu1"] = {"kind": "ssh", "address": "gpu1.example", "gpus": [0]}
    for name in ("a", "b", "c"):
        q.enqueue(name)
    runs = {r.name: r for r in q.runs}
    got = expected_times(q.state, runs, q.progress, cache, now=1000.0)
    # a starts on gpu1 at once and has no end there, so b behind it has no start; c runs here
    assert got == {
        "a": Expected(0.0, None),
        "b": Expected(None, None),
        "c": Expected(0.0, pytest.approx(TINY_SECONDS)),
    }
    cache = calibrated(runs_dir, tmp_path / "calibration.json", ["a"], host="gpu1")
    got = expected_times(q.state, runs, q.progress, cache, now=1000.0)
    assert got["b"] == Expected(pytest.approx(TINY_SECONDS), pytest.approx(2 * TINY_SECONDS))


def test_a_queued_study_expects_its_values_samples_from_its_runs_calibration(tmp_path):
    from conftest import MORPH_STUDY

    from engine.queue.expected import Expected, expected_times

    f = tiny_study(tmp_path / "exp.toml", name="m")
    f.write_text(f.read_text() + MORPH_STUDY)
    ex = load_experiments(f)
    runs_dir = tmp_path / "runs"
    prepare_runs(ex.runs + ex.studies, runs_dir)
    cache = calibrated(runs_dir, tmp_path / "calibration.json", ["m"])
    q = Queue.open(runs_dir, start_service=False)
    q.enqueue("studies/noise")
    runs = {r.name: r for r in q.runs}
    # 10 s to start, then 2 values x 24 samples x 4 iterative steps, one 0.5 s call each, and
    # scoring each value's 24 samples (6.5 ms each, 3.5 s to set up the scorer)
    assert expected_times(q.state, runs, q.progress, cache, now=1000.0) == {
        "studies/noise": Expected(0.0, pytest.approx(10 + 2 * 4 * 0.5 + 3.5 + 2 * 24 * 0.0065))
    }


def test_a_worker_takes_the_cores_its_share_and_the_load_leave_it():
    """Torch's threads in a local worker: the cores shared among the runs at once, fewer when
    other work keeps cores busy (the load average less this queue's own workers), at least 1."""
    from engine.spec.costs import worker_threads

    assert worker_threads(jobs=1, cpus=2, load=0.2, running=0) == 2  # an idle machine
    assert worker_threads(jobs=1, cpus=2, load=5.0, running=0) == 1  # shared with others
    assert worker_threads(jobs=2, cpus=16, load=0.0, running=0) == 8
    assert worker_threads(jobs=2, cpus=16, load=8.4, running=1) == 8  # its own first worker
    assert worker_threads(jobs=1, cpus=16, load=12.0, running=0) == 4
    assert worker_threads(jobs=4, cpus=2, load=0.0, running=0) == 1


def test_busy_cores_counts_a_busy_loop_now_and_falls_back_to_the_load_average(monkeypatch):
    """The busy cores are measured now (over half a second of /proc/stat), not the 1-minute
    load average, which still counts a worker that ended a minute ago: a process spinning
    beside the test counts as about a core (more when other work runs too), never more than
    the machine's cores; without /proc/stat, the load average."""
    import builtins
    import subprocess
    import sys

    from engine.spec import costs

    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        busy = costs.busy_cores(0.5)
    finally:
        spin.kill()
        spin.wait()
    assert 0.8 <= busy <= (os.cpu_count() or 1) + 1e-9

    real_open = builtins.open

    def no_proc_stat(path, *a, **kw):
        if str(path) == "/proc/stat":
            raise PermissionError(13, "Permission denied")
        return real_open(path, *a, **kw)

    monkeypatch.setattr(builtins, "open", no_proc_stat)
    monkeypatch.setattr(os, "getloadavg", lambda: (3.5, 2.0, 1.0))
    assert costs.busy_cores(0.01) == 3.5
