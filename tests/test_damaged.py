"""Issue 13, part B: runs that blow up, stops during the final evaluation, damaged run files and
checkpoints, paths in events.jsonl. Each bad case ends in one line that names the file or key,
the exit code says what happened, and nothing already on disk changes."""

from __future__ import annotations

import importlib
import json
import pkgutil
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import table_why, tiny_study, wait_for

import engine.report
from cli.main import main
from engine.files import atomic_write_json
from engine.jobs.worker import execute
from engine.queue.executors.base import Job
from engine.queue.executors.local import LocalExecutor
from engine.report import arrays, writer
from engine.rundir.events import (
    BadEvent,
    Checkpoint,
    End,
    Epoch,
    EventReader,
    Figure,
    Progress,
    Samples,
    Start,
    from_dict,
    read_events,
)
from engine.rundir.progress import summary
from engine.rundir.run import DamagedRun, Run, prepare_runs
from engine.spec.experiments import load_experiments


def study(path: Path, replace: dict[str, str] | None = None, **kw) -> Path:
    """tiny_study with some of its lines replaced (its tables cannot be given twice)."""
    f = tiny_study(path, **kw)
    text = f.read_text()
    for old, new in (replace or {}).items():
        assert old in text
        text = text.replace(old, new)
    f.write_text(text)
    return f


def make_run(
    tmp_path: Path, name: str = "tiny", replace: dict[str, str] | None = None, **kw
) -> Run:
    f = study(tmp_path / f"{name}.toml", replace, name=name, **kw)
    return prepare_runs(load_experiments(f).runs, tmp_path / "runs")[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` and its bytes."""
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


class StopWhen:
    """A worker's stop request (``is_set``) that turns on once the run's events hold one that
    ``predicate`` accepts: a stop at an exact point, with no timing involved."""

    def __init__(self, run: Run, predicate):
        self.run, self.predicate = run, predicate

    def is_set(self) -> bool:
        return any(self.predicate(e) for e in read_events(self.run.events_path))


def exit_record(run: Run) -> dict:
    return json.loads(run.exit_path.read_text())


# --- defect 4: values that make the maths blow up, non-finite losses and samples ----------------

COSINE_1 = {"T = 40": 'T = 40\nkind = "cosine"\nmax_beta = 1.0'}


@pytest.mark.parametrize(
    "replace, key, expected",
    [
        (
            {"T = 40": "T = 40\n[defaults.network]\ntime_embedding = 300"},
            "network.time_embedding",
            "expected an integer in [1, 216], got 300",
        ),
        (COSINE_1, "schedule.max_beta", "expected a number below 1 for the gaussian degradation"),
    ],
)
def test_values_that_blow_up_are_refused_in_one_line(tmp_path, capsys, replace, key, expected):
    f = study(tmp_path / "exp.toml", replace)
    assert main(["--batch", str(f), "--runs-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{key}: {expected}" in err
    assert not (tmp_path / "runs").exists()  # nothing written


def test_the_time_embedding_bound_is_where_float32_overflows():
    from engine.diffusion.nets.embedding import TimeEmbedding
    from engine.spec.components import MAX_TIME_EMBEDDING

    t = torch.tensor([0.0, 0.5, 1.0])
    assert torch.isfinite(TimeEmbedding(MAX_TIME_EMBEDDING, 4)(t)).all()
    assert not torch.isfinite(TimeEmbedding(MAX_TIME_EMBEDDING + 1, 4)(t)).all()


def test_max_beta_1_stays_allowed_for_morph(tmp_path):
    f = study(
        tmp_path / "exp.toml",
        {
            **COSINE_1,
            'name = "tiny"': 'name = "tiny"\n'
            'degradation = "morph"\nevaluation = { sampler = '
            '"iterative", final_sampler = "iterative" }',
        },
    )
    assert load_experiments(f).runs[0].schedule.max_beta == 1.0  # z_T = z: no division by zero


def test_a_nan_loss_fails_the_run_naming_epoch_and_step(tmp_path, monkeypatch):
    from engine.diffusion.degradations import Gaussian

    run = make_run(tmp_path, epochs=2)
    config = run.config_path.read_bytes()
    calls = []
    original = Gaussian.loss

    def loss(self, model, x, generator, held_out=False):
        value = original(self, model, x, generator, held_out)
        if not held_out:
            calls.append(1)
            if len(calls) == 3:  # the third training step of epoch 1
                return value * float("nan")
        return value

    monkeypatch.setattr(Gaussian, "loss", loss)

    assert execute(run, threading.Event()) == "failed"
    steps = next(e.steps for e in run.events() if isinstance(e, Progress) and e.task == "train")
    error = (
        f"the training loss is nan at epoch 1, step 3 of {steps}: the run diverged "
        "(a lower training.lr may help)"
    )
    assert exit_record(run)["error"] == error
    st = run.status()
    assert (st.state, st.detail) == ("failed", error)
    last = run.events()[-1]  # (its time, and when the attempt began: the worker's)
    assert last == End(status="failed", error=error, time=last.time, started=last.started)
    assert all(e.loss == e.loss for e in run.events() if isinstance(e, Progress) and e.loss)
    assert not any(isinstance(e, (Epoch, Checkpoint)) for e in run.events())
    assert not run.checkpoint_path.exists() and run.config_path.read_bytes() == config


def test_non_finite_samples_fail_the_run_and_write_no_grid(tmp_path, monkeypatch):
    from engine.diffusion import samplers

    run = make_run(tmp_path, epochs=1)
    monkeypatch.setattr(
        samplers,
        "sample",
        lambda model, deg, sampler, n, *a, **kw: torch.full((n, 1, 28, 28), float("nan")),
    )
    assert execute(run, threading.Event()) == "failed"
    assert exit_record(run)["error"].startswith(
        "the DDPM-40 samples of epoch 1 are not finite (NaN or inf)"
    )
    assert not any(isinstance(e, Samples) for e in run.events())
    assert not run.samples_dir.exists()


def test_fid_refuses_non_finite_samples_in_one_line():
    from engine.evaluation.fid import FID, MetricsError

    fid = FID.__new__(FID)  # the check comes before anything FID has
    with pytest.raises(MetricsError, match="not finite"):
        fid.score(torch.full((4, 28, 28), float("nan")))


# --- defect 5: a stop during the final evaluation and figures -----------------------------------


def test_sigterm_during_the_final_sampling_is_a_clean_stop(tmp_path):
    """The last epoch's samples (DDPM-1000 of a small CNN here: 1,000 steps of about 3 ms of
    CPU, long enough to be under way when the signal comes, on a fast machine too, and cheap to
    finish after) hear SIGTERM within a step: the worker writes its exit record; the resumed
    run does not train again and writes each file once."""
    small = "T = 1000\n[defaults.network]\nchannels = [4, 4]"
    run = make_run(tmp_path, epochs=1, replace={"T = 40": small})
    executor, job = LocalExecutor(), Job(run.path)
    handle = executor.start(job, "local:0", threads=1)
    try:
        wait_for(
            lambda: any(
                isinstance(e, Progress) and e.task == "DDPM-1000 samples" for e in run.events()
            ),
            timeout=180,
        )
        executor.stop(job, handle)  # SIGTERM, as batch mode's queue does
        wait_for(lambda: not executor.alive(job, handle), timeout=120)
    finally:
        executor.kill(job, handle)
    assert exit_record(run)["status"] == "stopped"
    assert run.events()[-1].status == "stopped"
    st = run.status()
    assert (st.state, st.detail) == ("resumable", "stopped")

    assert execute(run, threading.Event()) == "finished"
    events = run.events()
    assert [e.epoch for e in events if isinstance(e, Start)] == [0, 1]  # no epoch trained twice
    assert len([e for e in events if isinstance(e, Epoch)]) == 1
    assert len([e for e in events if isinstance(e, Samples) and e.epoch == 1]) == 1
    assert [e.name for e in events if isinstance(e, Figure)] == ["diffusion"]


def test_a_resumed_final_phase_does_only_what_is_left(tmp_path):
    run = make_run(tmp_path, epochs=1)
    stop = StopWhen(run, lambda e: isinstance(e, Progress) and e.task == "report figures")
    assert execute(run, stop) == "stopped"
    before = run.events()
    assert len([e for e in before if isinstance(e, Samples)]) == 1
    assert not any(isinstance(e, Figure) for e in before)
    grid = (run.samples_dir / "epoch-0001.npy").read_bytes()

    assert execute(run, threading.Event()) == "finished"
    after = run.events()[len(before) :]
    assert not any(isinstance(e, (Samples, Epoch)) for e in after)  # kept, not redone
    assert [e.name for e in after if isinstance(e, Figure)] == ["diffusion"]
    assert (run.samples_dir / "epoch-0001.npy").read_bytes() == grid


# --- defects 6 and 7: damaged worker.json, exit.json and config.toml ---------------------------

WORKER = {"pid": 1, "host": socket.gethostname(), "started": 5.0}


@pytest.mark.parametrize(
    "file, text, why",
    [
        ("worker.json", "[1]", "worker.json: damaged (expected a JSON object, got a list)"),
        ("worker.json", "42", "worker.json: damaged (expected a JSON object, got a number)"),
        (
            "worker.json",
            "",
            "worker.json: damaged (not JSON: Expecting value: line 1 column 1 (char 0))",
        ),
        (
            "worker.json",
            '{"pid": "x", "host": "h", "started": 1}',
            'worker.json: damaged (pid = "x", expected a number)',
        ),
        ("exit.json", "[1]", "exit.json: damaged (expected a JSON object, got a list)"),
        (
            "exit.json",
            '{"status": "done", "started": 5.0}',
            'exit.json: damaged (status = "done", expected one of finished, failed, stopped)',
        ),
        (
            "exit.json",
            '{"status": "finished"}',
            "exit.json: damaged (started = null, expected a number)",
        ),
        ("config.toml", "name = [", "config.toml: damaged (not TOML: "),
        ("config.toml", "a = 1", "config.toml: damaged (not a run's settings: no 'name')"),
    ],
)
def test_a_damaged_run_file_shows_the_run_damaged_naming_the_file(tmp_path, file, text, why):
    run = make_run(tmp_path)
    atomic_write_json(run.worker_path, WORKER)
    (run.path / file).write_text(text)
    st = run.status()
    assert st.state == "damaged" and st.detail.startswith(why)
    assert "\n" not in st.detail
    p = summary(run)  # the fold of batch mode, the report and the compare view
    assert (p.state, p.detail) == ("damaged", st.detail)


def test_batch_shows_a_damaged_run_and_runs_the_others(tmp_path, capsys):
    f = tiny_study(tmp_path / "exp.toml", name="good", epochs=1)
    f.write_text(f.read_text() + '\n[[experiments]]\nname = "bad"\n')
    runs_dir = tmp_path / "runs"
    bad = prepare_runs([s for s in load_experiments(f).runs if s.name == "bad"], runs_dir)[0]
    bad.worker_path.write_text("[1]")
    kept = snapshot(bad.path)

    assert main(["--batch", str(f), "--runs-dir", str(runs_dir)]) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert "damaged" in out and "worker.json: damaged" in out
    assert Run(runs_dir / "good").status().state == "finished"
    assert snapshot(bad.path) == kept  # no worker touched it


def test_batch_refuses_a_run_whose_config_is_not_toml_in_one_line(tmp_path, capsys):
    f = tiny_study(tmp_path / "exp.toml")
    run = prepare_runs(load_experiments(f).runs, tmp_path / "runs")[0]
    run.config_path.write_text("name = [\n")
    kept = snapshot(tmp_path / "runs")
    assert main(["--batch", str(f), "--runs-dir", str(tmp_path / "runs")]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1
    assert captured.err.startswith(f"error: {run.config_path}: damaged (not TOML: ")
    assert "Traceback" not in captured.out + captured.err
    assert snapshot(tmp_path / "runs") == kept


def test_a_damaged_run_is_neither_queued_nor_started(tmp_path):
    from engine.queue.client import Queue, QueueError
    from engine.queue.state import QueueState, next_jobs

    run = make_run(tmp_path)
    run.exit_path.write_text("[1]")
    atomic_write_json(run.worker_path, WORKER)
    queue = Queue(tmp_path / "runs", start_service=False)
    with pytest.raises(QueueError, match=r"tiny is damaged \(exit.json: damaged"):
        queue.enqueue("tiny")
    assert queue.submit(["tiny"]) == []
    st = QueueState(queued=["tiny"])
    assert next_jobs(st, {"tiny": "damaged"}, {"local": ["local:0"]}) == [("tiny", None, None)]


def test_the_worker_refuses_a_damaged_run_and_changes_nothing(tmp_path, capsys):
    from engine.jobs.worker import main as worker_main

    run = make_run(tmp_path)
    run.exit_path.write_text("{")
    atomic_write_json(run.worker_path, WORKER)
    kept = snapshot(run.path)
    assert worker_main([str(run.path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "exit.json: damaged (not JSON" in err
    assert snapshot(run.path) == kept


def test_report_draws_the_other_runs_and_names_the_damaged_files(tmp_path, capsys):
    good = make_run(tmp_path, "good", epochs=1)
    assert execute(good, threading.Event()) == "finished"
    toml_bad = make_run(tmp_path, "tomlbad", epochs=1)
    toml_bad.config_path.write_text("name = [\n")
    json_bad = make_run(tmp_path, "jsonbad", epochs=1)
    json_bad.events_path.write_text(good.events_path.read_text())
    json_bad.worker_path.write_text("[1]")
    runs_dir = tmp_path / "runs"
    kept = snapshot(runs_dir)

    assert main(["report", "--runs-dir", str(runs_dir), "--out", str(tmp_path / "rep")]) == 0
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if line.startswith("warning: ")]
    assert warnings == [
        "warning: jsonbad: worker.json: damaged (expected a JSON object, got a list)",
        "warning: tomlbad: config.toml: damaged (not TOML: Invalid value (at end of document))",
    ]
    assert captured.out.startswith("wrote ")
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "**damaged**: config.toml: damaged (not TOML" in md
    assert "**damaged**: worker.json: damaged" in md
    for name in ("good-loss.png", "good-grids.png", "good-diffusion.png", "jsonbad-loss.png"):
        assert (tmp_path / "rep" / name).is_file()
    assert snapshot(runs_dir) == kept


# --- defect 8: damaged checkpoints --------------------------------------------------------------


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    path.write_bytes(
        {
            "cut": data[: len(data) // 2],
            "empty": b"",
            "random": np.random.default_rng(0).bytes(len(data)),
        }[how]
    )


@pytest.fixture(scope="module")
def stopped_after_two(tmp_path_factory) -> Path:
    """A run of 3 epochs stopped after the checkpoint of epoch 2 (so epoch 1's is kept)."""
    tmp = tmp_path_factory.mktemp("ck")
    run = make_run(tmp, epochs=3)
    assert (
        execute(run, StopWhen(run, lambda e: isinstance(e, Checkpoint) and e.epoch == 2))
        == "stopped"
    )
    return run.path


def _copy(folder: Path, tmp_path: Path) -> Run:
    import shutil

    shutil.copytree(folder, tmp_path / "runs" / folder.name)
    return Run(tmp_path / "runs" / folder.name)


@pytest.mark.parametrize("how", ["cut", "empty", "random"])
def test_a_damaged_checkpoint_is_named(stopped_after_two, tmp_path, how):
    from engine.jobs.checkpoints import load_model, read_checkpoint

    run = _copy(stopped_after_two, tmp_path)
    assert torch.load(run.previous_checkpoint_path, weights_only=True)["epoch"] == 1
    _damage(run.checkpoint_path, how)
    with pytest.raises(DamagedRun) as e:
        read_checkpoint(run.checkpoint_path)
    assert str(e.value).startswith(f"{run.checkpoint_path}: damaged (")
    assert "\n" not in str(e.value)
    with pytest.raises(DamagedRun, match="checkpoint.pt: damaged"):
        load_model(run)  # a study samples from the run's last model, never an older one


def test_a_damaged_checkpoint_falls_back_to_the_previous_one(stopped_after_two, tmp_path):
    run = _copy(stopped_after_two, tmp_path)
    _damage(run.checkpoint_path, "cut")
    previous = run.previous_checkpoint_path.read_bytes()
    assert execute(run, threading.Event()) == "finished"
    start = [e for e in run.events() if isinstance(e, Start)][-1]
    assert start.epoch == 1 and start.resumed
    assert start.note.startswith("checkpoint.pt is damaged (not a checkpoint torch can read")
    assert start.note.endswith("resumed from checkpoint.prev.pt (epoch 1)")
    assert [e.epoch for e in run.events() if isinstance(e, Checkpoint)] == [1, 2, 2, 3]
    assert torch.load(run.checkpoint_path, weights_only=True)["epoch"] == 3
    # the damaged one was not kept as "previous": epoch 1's stayed until epoch 3 replaced it
    ck = torch.load(run.previous_checkpoint_path, weights_only=True)
    assert ck["epoch"] == 2 and run.previous_checkpoint_path.read_bytes() != previous


def test_a_damaged_checkpoint_with_none_before_fails_in_one_line_and_stays(tmp_path):
    run = make_run(tmp_path, epochs=2)
    assert execute(run, StopWhen(run, lambda e: isinstance(e, Checkpoint))) == "stopped"
    assert not run.previous_checkpoint_path.exists()
    _damage(run.checkpoint_path, "random")
    damaged = run.checkpoint_path.read_bytes()
    assert execute(run, threading.Event()) == "failed"
    error = exit_record(run)["error"]
    assert error.startswith(f"{run.checkpoint_path}: damaged (not a checkpoint torch can read")
    assert error.endswith(
        "no earlier checkpoint is kept: remove it to train the run from the start"
    )
    assert run.checkpoint_path.read_bytes() == damaged


def test_report_draws_what_it_can_around_a_damaged_array(stopped_after_two, tmp_path):
    run = _copy(stopped_after_two, tmp_path)
    (run.samples_dir / "epoch-0001.npy").write_bytes(b"\x93NUMPY garbage")
    told = []
    path = writer.write_report([run], tmp_path / "rep", warn=told.append)
    assert len(told) == 1 and told[0].startswith(
        f"tiny: {run.samples_dir / 'epoch-0001.npy'}: damaged (not a NumPy array file: "
    )
    assert "Not read: tiny: " in path.read_text()
    assert (tmp_path / "rep" / "tiny-grids.png").is_file()  # a panel says which is damaged
    assert (tmp_path / "rep" / "tiny-loss.png").is_file()


# --- defect 13: why a run failed, in batch mode's table and the UI ------------------------------


def test_batch_table_says_why_a_run_failed(tmp_path, capsys):
    bad = tmp_path / "idx"
    bad.mkdir()
    (bad / "train-images-idx3-ubyte").write_bytes(b"garbage")
    (bad / "train-labels-idx1-ubyte").write_bytes(b"garbage")
    f = study(tmp_path / "exp.toml", {"[defaults.data]": f'[defaults.data]\nidx_dir = "{bad}"'})
    assert main(["--batch", str(f), "--runs-dir", str(tmp_path / "runs")]) == 1
    error = Run(tmp_path / "runs" / "tiny").status().detail
    assert "train-images-idx3-ubyte" in error
    # the table's last column, wrapped (at spaces, or inside a long path)
    assert table_why(capsys.readouterr().out) == error.replace(" ", "")


# --- defect 17: paths in events.jsonl stay inside the run folder -------------------------------


@pytest.mark.parametrize(
    "path", ["/etc/hostname", "../other/samples/x.npy", "samples/../../x", "~/x.npy", ""]
)
def test_event_paths_outside_the_run_folder_are_refused(path):
    with pytest.raises(BadEvent, match="is not a path inside the run folder"):
        from_dict(
            {
                "type": "samples",
                "epoch": 1,
                "png": "samples/a.png",
                "npy": path,
                "n": 4,
                "sampler": "DDIM-4",
            }
        )
    with pytest.raises(BadEvent, match="is not a path inside the run folder"):
        from_dict({"type": "figure", "name": "diffusion", "files": ["figures/a.npy", path]})


def test_report_never_reads_a_file_outside_the_run_folder(tmp_path, monkeypatch):
    outside = tmp_path / "secret.npy"
    np.save(outside, np.zeros((4, 28, 28), np.float32))
    run = make_run(tmp_path)
    line = {
        "type": "samples",
        "time": 1.0,
        "epoch": 1,
        "png": "samples/a.png",
        "npy": str(outside),
        "n": 4,
        "sampler": "DDIM-4",
    }
    run.events_path.write_text(json.dumps(line) + "\n")
    reader = EventReader(run.events_path)
    assert reader.read() == []
    assert reader.problems == [
        f"{run.events_path}: line 1: samples event: npy = "
        f"{json.dumps(str(outside))[:60]} is not a path inside the run "
        "folder"
    ]
    loaded = []
    for info in pkgutil.iter_modules(engine.report.__path__):  # each module that loads arrays
        module = importlib.import_module(f"engine.report.{info.name}")
        if hasattr(module, "load_array"):
            monkeypatch.setattr(module, "load_array", lambda p: loaded.append(p))
    told = []
    writer.write_report([run], tmp_path / "rep", warn=told.append)
    assert loaded == [] and arrays.sample_grids(run) == []
    assert told == reader.problems


# --- issue 19, defect 8: the report draws the rest around odd files ----------------------------


def test_report_draws_the_rest_around_odd_events_and_arrays(tmp_path):
    f = study(tmp_path / "exp.toml", name="t", epochs=1)
    f.write_text(
        f.read_text() + '[[studies]]\nname = "s"\nrun = "t"\nkind = "noise"\nvalues = [0, 0.5]\n'
    )
    spec = load_experiments(f)
    run, st = prepare_runs([*spec.runs, *spec.studies], tmp_path / "runs")
    arrays = {
        "samples/epoch-0001.npy": (4, 2, 28, 28),  # a sample array of 4 axes
        "figures/a.npy": (2, 3, 28, 28),  # rows and columns: more than the event names
        "figures/b.npy": (3, 28, 28),  # a figure array of the wrong rank
        "figures/c.npy": (1, 4, 28, 28),  # columns that do not fit the first file's
    }
    for rel, shape in arrays.items():
        (run.path / rel).parent.mkdir(exist_ok=True)
        np.save(run.path / rel, np.full(shape, 0.5, np.float32))
    events = [
        Start(time=1.0, epoch=0, epochs=1),
        Epoch(time=2.0, epoch=1, epochs=1, train_loss=0.5, val_loss=0.4, seconds=1.0),
        Samples(time=3.0, epoch=1, png="samples/x.png", npy="samples/epoch-0001.npy", n=4,
                sampler="DDIM-4"),
        Figure(time=4.0, name="diffusion", files=["figures/a.npy"], rows=["forward"],
               columns=["t=0"]),
        Figure(time=4.0, name="restoration", files=["figures/b.npy"], rows=["x"]),
        Figure(time=4.0, name="direct-vs-iterative", files=["figures/a.npy", "figures/c.npy"]),
        End(time=5.0, status="finished", started=0.5),
    ]  # fmt: skip
    run.events_path.write_text("".join(json.dumps(e.to_dict()) + "\n" for e in events))
    np.save(st.path / "value-0.npy", np.full((24, 28, 28), 0.5, np.float32))
    value = {"type": "value", "time": 6.0, "value": 0, "n": 24, "sampler": "DDIM-4",
             "png": "value-0.png", "npy": "value-0.npy", "fid": 9.5, "floor": 1.5}  # fmt: skip
    st.events_path.write_text(json.dumps(value) + "\n")  # without its optional measures

    told: list[str] = []
    out = tmp_path / "rep"
    md = writer.write_report([run, st], out, warn=told.append).read_text()
    figures = run.path / "figures"
    assert told == [
        f"t: {run.samples_dir / 'epoch-0001.npy'}: damaged (expected images N x 28 x 28, got "
        "float32 4x2x28x28)",
        f"t: {figures / 'b.npy'}: damaged (expected images rows x columns x 28 x 28, got "
        "float32 3x28x28)",
        f"t-direct-vs-iterative.png: not drawn: {figures / 'c.npy'}: damaged (4 columns of "
        "images, figures/a.npy has 3)",
    ]
    for drawn in ("t-loss.png", "t-grids.png", "t-diffusion.png", "_study-s.png"):
        assert (out / drawn).is_file() and f"({drawn})" in md, drawn
    assert not (out / "t-restoration.png").exists() and "(t-restoration.png)" not in md
    assert "| 0 | 9.5 | 1.5 | - | - | - | - | - |" in md  # the study's row, measures unknown


def test_a_study_of_a_damaged_run_says_it_is_damaged_and_what_to_do(tmp_path, capsys):
    f = study(tmp_path / "exp.toml", name="t", epochs=1)
    f.write_text(
        f.read_text() + '[[studies]]\nname = "s"\nrun = "t"\nkind = "noise"\nvalues = [0]\n'
    )
    run = prepare_runs(load_experiments(f).runs, tmp_path / "runs")[0]
    run.config_path.write_text("name = [\n")
    assert main(["study", "s", str(f), "--runs-dir", str(tmp_path / "runs")]) == 1
    assert capsys.readouterr().err == (
        "error: study s samples from run t, which is damaged (config.toml: damaged (not TOML: "
        "Invalid value (at end of document))): mend or remove that file of the run, then "
        "finish the run\n"
    )  # (not "finish it first (diffui --batch ...)": a batch cannot finish a damaged run)
