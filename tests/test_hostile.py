"""Issue 19: files of a runs folder written by someone else (a shared filesystem, a GPU box others
use) or left by chance (a reused pid) are never trusted: no pid <= 0 and no process of another
folder is signalled, no name leaves the runs folder, a damaged queue.json is one line naming the
file and key, and the queue service outlives it."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import threading
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
from engine.rundir.progress import summary
from engine.rundir.run import Run, pid_running, prepare_runs
from engine.spec.experiments import load_experiments
from tui.history import RunHistory


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
    rows = [line.split()[:3] for line in out.splitlines()]
    assert ["t", "queued", "#1"] in rows and not any(r[:1] == ["u"] for r in rows)
    assert Queue.open(runs_dir, start_service=False).queued() == ["u", "t"]  # nothing changed


# --- defect 19 (the files of this area): a FIFO where diffui keeps a file --------------------


@pytest.mark.parametrize(
    "fifo,code,said",
    [
        ("queue.json", 2, "queue.json: not a file"),
        ("service.lock", 0, "service not running"),
        ("t/worker.json", 0, "t damaged"),
        ("t/exit.json", 0, "t damaged"),
        ("t/events.jsonl", 0, "t/events.jsonl: not a file (a FIFO, a device or a folder)"),
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


def _diffui(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    root = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "-m", "cli.main", *argv]
    return subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=timeout)


def test_events_jsonl_as_a_fifo_blocks_no_reader(runs_dir, tmp_path):
    for name in ("t", "u"):  # (finished: batch mode only shows them)
        finished_with(runs_dir / name, GOOD)
    (runs_dir / "t" / "events.jsonl").unlink()
    os.mkfifo(runs_dir / "t" / "events.jsonl")
    said = f"{runs_dir / 't' / 'events.jsonl'}: not a file (a FIFO, a device or a folder)"
    report = _diffui("report", "--runs-dir", str(runs_dir), "--out", str(tmp_path / "rep"))
    assert report.returncode == 0 and f"warning: {said}" in report.stderr
    assert (tmp_path / "rep" / "u-loss.png").is_file()
    batch = _diffui("--batch", str(tmp_path / "exp.toml"), "--runs-dir", str(runs_dir))
    assert batch.returncode == 1 and said in batch.stdout.replace("\n", "")  # t is damaged
    assert "events.jsonl: damaged (not a file)" in " ".join(batch.stdout.split())
    assert "Traceback" not in report.stderr + batch.stdout + batch.stderr
    history = RunHistory(Run(runs_dir / "t"))  # the UI's reader, on its poll thread
    thread = threading.Thread(target=history.update, daemon=True)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive() and history.events == []


# --- defect 7: non-finite and huge numbers in events.jsonl --------------------------------------

GOOD = [
    '{"type": "start", "time": 1000.0, "epoch": 0, "epochs": 1}',
    '{"type": "epoch", "time": 1010.0, "epoch": 1, "epochs": 1, "train_loss": 0.5, '
    '"val_loss": 0.25, "seconds": 10.0}',
    '{"type": "end", "time": 1020.0, "status": "finished", "started": 999.0}',
]


def finished_with(folder: Path, lines: list[str]) -> None:
    """Give a run folder a finished attempt whose events.jsonl holds ``lines``."""
    atomic_write_json(folder / "worker.json", {"pid": 0, "host": "elsewhere", "started": 1.0})
    atomic_write_json(folder / "exit.json", {"status": "finished", "started": 1.0, "pid": 0})
    (folder / "events.jsonl").write_text("".join(line + "\n" for line in lines))


@pytest.mark.parametrize(
    "line, said",
    [
        (GOOD[0].replace("1000.0", "Infinity"), "start event: time = Infinity is not a number"),
        (GOOD[0].replace("1000.0", "NaN"), "start event: time = NaN is not a number of seconds"),
        ('{"type": "progress", "time": 1005, "step": 1' + "0" * 400 + ', "steps": 8}',
         "progress event: step = a huge integer is not an integer from 0 to"),
        (GOOD[1].replace('"epoch": 1,', '"epoch": 1' + "0" * 400 + ","),
         "epoch event: epoch = a huge integer is not an integer from 0 to"),
        (GOOD[1].replace("10.0}", "1e308}"), "epoch event: seconds = 1e+308 is not a number of"),
        (GOOD[1].replace("0.25", "NaN"), "epoch event: val_loss = NaN is not a finite number"),
    ],
    ids=["time-inf", "time-nan", "step-huge", "epoch-huge", "seconds-1e308", "val_loss-nan"],
)  # fmt: skip
def test_non_finite_or_huge_numbers_in_events_are_one_line_and_the_rest_is_read(
    runs_dir, tmp_path, capsys, line, said
):
    lines = [*GOOD[:2], line, GOOD[2]] if line.startswith('{"type": "progress"') else GOOD[:]
    bad = next((i for i, g in enumerate(GOOD) if g[:30] == line[:30] and g != line), 2)
    lines[bad] = line
    for name in ("t", "u"):  # (finished: batch mode only shows them)
        finished_with(runs_dir / name, lines if name == "t" else GOOD)
    where = f"{runs_dir / 't' / 'events.jsonl'}: line {bad + 1}: {said}"
    out = tmp_path / "rep"
    for argv in (
        ["queue", "status", "--runs-dir", str(runs_dir)],
        ["report", "--runs-dir", str(runs_dir), "--out", str(out)],
        ["--batch", str(tmp_path / "exp.toml"), "--runs-dir", str(runs_dir)],
    ):
        assert main(argv) == 0, argv
        captured = capsys.readouterr()
        assert where in " ".join((captured.out + captured.err).split()), argv
    assert "0.2500" in (out / "report.md").read_text()  # u's validation loss, and t's if kept
    history = RunHistory(Run(runs_dir / "t"))  # what the UI's charts draw
    history.update()
    numbers = [v for e in history.events for v in vars(e).values() if isinstance(v, (int, float))]
    assert all(math.isfinite(v) and abs(v) < 1e15 for v in numbers)


def test_an_end_before_its_start_counts_no_negative_time(runs_dir, capsys):
    end = GOOD[2].replace("1020.0", "500.0").replace("999.0", "400.0")
    finished_with(runs_dir / "t", [*GOOD[:2], end])
    assert main(["queue", "status", "--runs-dir", str(runs_dir)]) == 0
    out = capsys.readouterr().out.splitlines()
    col = next(r for r in out if r.startswith("run ")).index("elapsed")
    row = next(r for r in out if r.startswith("t "))
    assert row[col:].split()[0] == "0:00"  # the elapsed column: not -499065:55:21
    assert summary(Run(runs_dir / "t")).elapsed() == 0.0


# --- defect 9: a sample grid's PNG that declares 20000 x 20000 pixels ---------------------------


def _png_header(width: int, height: int) -> bytes:
    """A PNG of a header alone (IHDR and IEND), declaring ``width`` x ``height`` pixels."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


@pytest.mark.parametrize("grid", ["bomb", "fifo", "5000 wide"])
def test_the_ui_skips_a_grid_png_it_should_not_decode(runs_dir, grid):
    from PIL import Image

    run = Run(runs_dir / "t")
    samples = {"type": "samples", "time": 1.0, "n": 4, "sampler": "DDIM-4"}
    (run.path / "samples").mkdir()
    lines = []
    for epoch in (1, 2):
        png = f"samples/epoch-{epoch}.png"
        lines.append(json.dumps({**samples, "epoch": epoch, "png": png, "npy": png + ".npy"}))
    Image.new("L", (62, 62)).save(run.path / "samples" / "epoch-1.png")
    bad = run.path / "samples" / "epoch-2.png"
    if grid == "bomb":
        bad.write_bytes(_png_header(20000, 20000))
        assert len(bad.read_bytes()) < 80
    elif grid == "fifo":
        os.mkfifo(bad)
    else:
        Image.new("L", (5000, 10)).save(bad)
    run.events_path.write_text("\n".join(lines) + "\n")
    history = RunHistory(run)
    thread = threading.Thread(target=history.update, daemon=True)  # (a FIFO must not block it)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert [g.epoch for g in history.grids] == [1]  # the good grid shows, the other is left out
