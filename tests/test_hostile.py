"""Issue 19: files of a runs folder written by someone else (a shared filesystem, a GPU box others
use) or left by chance (a reused pid) are never trusted: no pid <= 0 and no process of another
folder is signalled, no name leaves the runs folder, a damaged queue.json is one line naming the
file and key, and the queue service outlives it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import tiny_study, wait_for

from cli.main import main
from engine.errors import UserError
from engine.files import atomic_write_json
from engine.queue import service
from engine.queue.client import Queue
from engine.queue.executors.base import Job
from engine.queue.executors.local import LocalExecutor
from engine.queue.handle import Handle
from engine.queue.service import Service
from engine.queue.state import QueueFile
from engine.rundir.run import Run, pid_running, prepare_runs
from engine.spec.experiments import load_experiments


@pytest.fixture
def runs_dir(tmp_path):
    f = tiny_study(tmp_path / "exp.toml", name="t", epochs=1)
    f.write_text(f.read_text() + '\n[[experiments]]\nname = "u"\n')
    prepare_runs(load_experiments(f).runs, tmp_path / "runs")
    return tmp_path / "runs"


@pytest.fixture
def signals(monkeypatch, tmp_path) -> Iterator[list[tuple[int, int]]]:
    """Every os.kill diffui makes with a pid <= 0 (recorded, never sent: with the defect it
    signals every process on the machine). The hostile files go before the cleanup of
    conftest (which reads them) runs, so that a diffui with the defect cannot kill everything
    when this file runs against it."""
    sent: list[tuple[int, int]] = []
    real = os.kill

    def kill(pid, sig):
        if pid <= 0:
            sent.append((pid, sig))
            return None
        return real(pid, sig)

    monkeypatch.setattr(os, "kill", kill)
    yield sent
    for name in ("worker.json", "service.lock", "queue.json"):
        for path in tmp_path.rglob(name):
            path.unlink()


@pytest.fixture
def impostor(tmp_path):
    """A process whose command line looks like diffui's (``... -m MODULE FOLDER``) for a folder
    of another runs folder: ``start(module, folder, cwd)`` gives its pid."""
    procs: list[subprocess.Popen] = []

    def start(module: str, folder: str, cwd: Path | None = None) -> int:
        code = "import time; time.sleep(120)"
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", code, "-m", module, folder], cwd=cwd or tmp_path
            )
        )
        return procs[-1].pid

    yield start
    for p in procs:
        p.kill()
        p.wait()


def write_queue(runs_dir: Path, state: dict) -> None:
    (runs_dir / "queue.json").write_text(json.dumps(state))


def queue_error(runs_dir: Path) -> str:
    with pytest.raises(UserError) as e:
        QueueFile(runs_dir).read()
    line = str(e.value)
    assert "\n" not in line and str(runs_dir / "queue.json") in line
    return line


# --- defect 1: a pid <= 0 signals every process ---------------------------------------------


@pytest.mark.parametrize("pid", [-1, -12345])
def test_a_worker_record_with_a_negative_pid_is_damaged_and_signals_nothing(runs_dir, signals, pid):
    run = Run(runs_dir / "t")
    atomic_write_json(run.worker_path, {"pid": pid, "host": socket.gethostname(), "started": 1.0})
    st = run.status()
    assert st.state == "damaged" and "worker.json" in st.detail and "pid" in st.detail
    assert not run.request_stop()
    assert signals == []


@pytest.mark.parametrize("pid", [0, -1, True, "12", 2**80])
def test_a_pid_that_is_no_process_id_is_no_worker(runs_dir, signals, pid):
    assert not pid_running(pid, runs_dir / "t")
    assert signals == []


def test_a_queue_handle_with_pid_minus_one_is_refused_and_never_signalled(runs_dir, signals):
    handle = {"pid": -1, "host": socket.gethostname()}
    write_queue(
        runs_dir,
        {
            "active": {"t": {"executor": "local", "slot": "local:0", "handle": handle}},
            "stop": ["t"],
        },
    )
    assert "active.t.handle.pid: expected a process id" in queue_error(runs_dir)
    assert Handle.from_dict(handle).pid is None  # read leniently elsewhere: no pid
    ex, job = LocalExecutor(), Job(runs_dir / "t")
    ex.stop(job, Handle(pid=-1))
    ex.kill(job, Handle(pid=-1))
    logged: list[str] = []
    s = Service(runs_dir, {"local": ex}, log=logged.append)
    assert not s._readable(s.reconcile) and not s._readable(s._pass)  # waits for a fix
    assert len(logged) == 1 and "active.t.handle.pid" in logged[0]  # said once
    assert signals == []


# --- defect 4: a worker is known by its run folder's path, not by a substring ------------------


def test_a_worker_of_another_folder_with_the_same_run_name_is_not_this_runs(
    runs_dir, tmp_path, impostor
):
    other = tmp_path / "other" / "t"
    other.mkdir(parents=True)
    pid = impostor("engine.jobs.worker", str(other))
    wait_for(lambda: pid_running(pid, other), timeout=30)  # it is the other folder's worker
    run = Run(runs_dir / "t")
    atomic_write_json(run.worker_path, {"pid": pid, "host": socket.gethostname(), "started": 1.0})
    assert not pid_running(pid, run.path)
    assert run.status().state != "running"
    assert not run.request_stop()
    write_queue(runs_dir, {"stop": ["t"]})
    s = Service(runs_dir, {"local": LocalExecutor()}, log=lambda msg: None)
    s._readable(s.reconcile)
    s._readable(s._pass)
    assert pid_running(pid, other)  # nothing signalled it


def test_a_worker_started_with_a_relative_folder_is_known_by_its_working_folder(tmp_path, impostor):
    folder = tmp_path / "runs" / "t"
    folder.mkdir(parents=True)
    pid = impostor("engine.jobs.worker", "t", cwd=tmp_path / "runs")
    wait_for(lambda: pid_running(pid, folder), timeout=30)
    assert not pid_running(pid, tmp_path / "t")


# --- defect 15: a service.lock holding another folder's service ------------------------------


def test_a_service_lock_naming_another_folders_service_is_not_believed(
    runs_dir, tmp_path, impostor
):
    other = tmp_path / "other-runs"
    other.mkdir()
    pid = impostor(service.MODULE, str(other))
    (other / service.LOCK).write_text(f"{pid}\n")
    wait_for(lambda: service.running_pid(other) == pid, timeout=30)  # that folder's service
    (runs_dir / service.LOCK).write_text(f"{pid}\n")
    assert service.running_pid(runs_dir) is None
    assert not service.stop_service(runs_dir, timeout=0.1)


@pytest.mark.parametrize("text", ["-1\n", "0\n", "abc\n", "\xff"])
def test_a_service_lock_without_a_process_id_names_no_service(runs_dir, signals, text):
    (runs_dir / service.LOCK).write_text(text, encoding="latin-1")
    assert service.running_pid(runs_dir) is None
    assert not service.stop_service(runs_dir, timeout=0.1)
    assert signals == []


# --- defect 2: names in queue.json stay inside the runs folder ---------------------------------


@pytest.mark.parametrize(
    "state,key",
    [
        ({"queued": ["../victim1", "t"]}, "queued"),
        ({"queued": ["/abs/victim2"]}, "queued"),
        ({"queued": ["studies/../../victim"]}, "queued"),
        ({"stop": ["../victim1"]}, "stop"),
        ({"active": {"../victim1": {"executor": "local"}}}, "active"),
        ({"where": {"/abs/victim2": ["local"]}}, "where"),
        ({"queued": [".hidden"]}, "queued"),
        ({"queued": ["queue.json"]}, "queued"),
        ({"hosts": {"../../x": {"kind": "slurm"}}}, "hosts"),
        ({"where": {"t": ["gpu1", "../x"]}}, "where.t"),
    ],
)
def test_run_names_in_queue_json_that_leave_the_folder_are_refused(
    runs_dir, tmp_path, capsys, state, key
):
    write_queue(runs_dir, {**state, "paused": False})
    line = queue_error(runs_dir)
    assert f"queue.json: {key}: " in line and ("run's name" in line or "host name" in line)
    assert main(["queue", "start", "--runs-dir", str(runs_dir)]) == 2
    assert "queue.json" in capsys.readouterr().err
    assert not (tmp_path / "victim1").exists()


def test_a_host_of_no_known_kind_fails_its_runs_and_the_service_goes_on(runs_dir):
    where = {"t": ["gpu1"]}
    write_queue(
        runs_dir,
        {"queued": ["t"], "paused": False, "where": where, "hosts": {"gpu1": {"kind": "weird"}}},
    )
    logged: list[str] = []
    s = Service(runs_dir, {"local": LocalExecutor()}, log=logged.append)
    assert s._readable(s._pass)  # nothing left to do
    assert any("host gpu1: cannot be used" in line for line in logged)
    st = Run(runs_dir / "t").status()
    assert st.state == "failed" and "no host to run on: gpu1" in st.detail


def test_a_study_and_plain_runs_are_fine_queue_names(runs_dir):
    from engine.spec.names import safe_queue_name

    assert safe_queue_name("studies/s1") and safe_queue_name("t") and safe_queue_name("a.b-c_d")
    for bad in ("studies/", "studies/..", "studies/a/b", "a/b", "..", "", "x\n", None, 3):
        assert not safe_queue_name(bad), bad
    write_queue(runs_dir, {"queued": ["t", "studies/s1"], "where": {"studies/s1": ["gpu1"]}})
    assert QueueFile(runs_dir).read().queued == ["t", "studies/s1"]


# --- defects 10 and 12: active entries are type-checked; Slurm job ids are Slurm's ------------


@pytest.mark.parametrize(
    "entry,key",
    [
        ({"executor": "local", "handle": "a string"}, "active.t.handle: expected a JSON object"),
        ({"executor": "local", "handle": {"pid": "abc"}}, "active.t.handle.pid"),
        ({"executor": 7, "handle": {}}, "active.t.executor"),
        ({"executor": "local", "slot": ["x"]}, "active.t.slot"),
        ({"executor": "local", "stopping": "soon"}, "active.t.stopping"),
        ({"executor": "local", "since": 1e999}, "active.t.since"),
        ({"executor": "gpu1", "handle": {"gpu": -1}}, "active.t.handle.gpu"),
        ({"executor": "gpu1", "handle": {"run": "../../x"}}, "active.t.handle.run"),
        ({"executor": "c", "handle": {"job_id": "--user=root"}}, "active.t.handle.job_id"),
        ({"executor": "c", "handle": {"job_id": "12;rm"}}, "active.t.handle.job_id"),
        ({"executor": "c", "handle": {"job_id": 12}}, "active.t.handle.job_id"),
        ({"executor": "c", "handle": {"job_id": "12", "seen": "x"}}, "active.t.handle.seen"),
    ],
)
def test_active_entries_of_the_wrong_kind_are_one_line_naming_the_key(runs_dir, capsys, entry, key):
    write_queue(runs_dir, {"active": {"t": entry}})
    assert key in queue_error(runs_dir)
    assert main(["queue", "status", "--runs-dir", str(runs_dir)]) == 2
    err = capsys.readouterr().err
    assert key in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_slurm_job_ids_are_digits_or_an_array_task():
    for good in ("12", "12_3"):
        handle = Handle.from_dict({"job_id": good})
        assert handle.slurm is not None and handle.slurm.job_id == good
    for bad in ("--user=root", "-1", "12 13", "12_", "_3", "12_3_4", "1\n"):
        assert Handle.from_dict({"job_id": bad}).slurm is None, bad


def test_the_service_outlives_a_damaged_queue_json_and_goes_on_once_fixed(runs_dir):
    (runs_dir / "queue.json").write_text('{"active": {"t": {"handle": {"pid": "abc"}}}}')
    proc = service.spawn(runs_dir)
    try:
        log = runs_dir / service.LOG
        wait_for(lambda: log.exists() and "active.t.handle.pid" in log.read_text(), timeout=60)
        assert proc.poll() is None and service.running_pid(runs_dir) == proc.pid
        (runs_dir / "queue.json").write_text('{"paused": true}')  # fixed: nothing to do
        wait_for(lambda: proc.poll() is not None, timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    text = log.read_text()
    assert "Traceback" not in text and "reads well again" in text
    assert text.count("active.t.handle.pid") == 1  # said once, not every pass


# --- defect 6: queue status with a queued run's folder deleted ---------------------------------


def test_queue_status_shows_the_rest_when_a_queued_runs_folder_was_deleted(runs_dir, capsys):
    import shutil

    write_queue(runs_dir, {"queued": ["u", "t"], "paused": True})
    shutil.rmtree(runs_dir / "u")
    assert main(["queue", "status", "--runs-dir", str(runs_dir)]) == 0
    out = capsys.readouterr().out
    assert "queued #1" in out and " t " in out and " u " not in out
    assert Queue.open(runs_dir, start_service=False).queued() == ["u", "t"]  # nothing changed


# --- defect 19 (the files of this area): a FIFO where diffui keeps a file --------------------


@pytest.mark.parametrize(
    "fifo,code,said",
    [
        ("queue.json", 2, "queue.json: not a file"),
        ("service.lock", 0, "service not running"),
        ("t/worker.json", 0, "│ t │ damaged"),
        ("t/exit.json", 0, "│ t │ damaged"),
    ],
)
def test_a_fifo_in_place_of_a_file_is_said_and_never_waited_on(runs_dir, fifo, code, said):
    if fifo == "t/exit.json":  # (read once a worker record is there)
        record = {"pid": 0, "host": "elsewhere", "started": 1.0}
        atomic_write_json(runs_dir / "t" / "worker.json", record)
    os.mkfifo(runs_dir / fifo)
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run(
        [sys.executable, "-m", "cli.main", "queue", "status", "--runs-dir", str(runs_dir)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == code and said in " ".join((r.stdout + r.stderr).split())
    assert "Traceback" not in r.stderr
    if fifo.startswith("t/"):
        assert Run(runs_dir / "t").status().detail == f"{fifo[2:]}: damaged (not a file)"
