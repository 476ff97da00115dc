"""The bad-input corpus (issue 13): every bad experiments file and every bad command line gets
ONE line on stderr naming the key or option, exit code 2, no traceback, and nothing on disk
changes: a runs folder holding a finished run stays byte-identical and no other file appears.
Validation only: nothing here trains.

Then the defects of issue 13 that are about the front door: reserved names, the report's own
file names, full and read-only disks, inception failing before anything is written, n_eval,
the runs table's widths, wall time after a failed resume, and the damaged queue file."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY as TEMPLATE
from conftest import tiny_study, until, wait_for

from cli.main import main
from engine.rundir.events import End, Epoch, EventLog, Start
from engine.rundir.run import Run, prepare_runs
from engine.spec.experiments import load_experiments
from engine.spec.names import RESERVED_NAMES

ROOT = Path(__file__).resolve().parents[1]

ONE = '[[experiments]]\nname = "a"\n'
TINY_RUN = "tiny"  # the finished run every case must leave alone


def snapshot(*folders: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and folder (None) below ``folders``."""
    out: dict[str, bytes | None] = {}
    for folder in folders:
        for p in sorted(folder.rglob("*")):
            out[str(p)] = None if p.is_dir() else p.read_bytes()
    return out


def finish(run: Run, epochs: int = 1) -> Run:
    """Give ``run`` the records of a finished attempt (as a worker writes them)."""
    attempt = run.begin_attempt()
    log = EventLog(run.events_path)
    log.emit(Start(epoch=0, epochs=epochs))
    for e in range(1, epochs + 1):
        log.emit(Epoch(epoch=e, epochs=epochs, train_loss=0.5 / e, val_loss=0.6 / e, seconds=1.0))
    log.emit(End(status="finished", started=attempt["started"]))
    log.close()
    run.end_attempt(attempt, "finished")
    return run


@pytest.fixture
def place(tmp_path):
    """(tmp_path, runs folder holding the finished run ``tiny``)."""
    f = tiny_study(tmp_path / "tiny.toml", name=TINY_RUN, epochs=1)
    runs_dir = tmp_path / "runs"
    finish(prepare_runs(load_experiments(f).runs, runs_dir)[0])
    assert Run(runs_dir / TINY_RUN).status().state == "finished"
    return tmp_path, runs_dir


def refused(argv: list[str], capsys, code: int, *fragments: str) -> str:
    """Run ``argv``; it must exit ``code`` with one line on stderr holding ``fragments``."""
    capsys.readouterr()
    assert main(argv) == code
    out, err = capsys.readouterr()
    assert err.startswith("error: ") and err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in out + err
    for frag in fragments:
        assert frag in err, (frag, err)
    return err


# --- bad experiments files: (text, key named in the message, --profile) -----------------------


def tiny_text(name: str, epochs: int = 1) -> str:
    """tiny_study's file, as text."""
    return TEMPLATE.format(name=name, epochs=epochs, subset=256, seed=0, every=0, extra="")


TINY = tiny_text("b")
STUDY_VALUES = [
    (
        "noise",
        "[0.1, 0.1000001]",
        "values that differ in their first 6 digits (files and tables name a value by them: "
        "0.1 and 0.1000001 are both 0.1)",
    ),
    ("noise", "[5, 5.0000001]", "values that differ in their first 6 digits"),
    ("interpolation", "[1, 100000000]", "integers from 1 to 1000 (N latents averaged), got "),
    ("interpolation", "[1001]", "integers from 1 to 1000 (N latents averaged), got 1001"),
    ("noise", "[0, 1e6]", "numbers from 0 to below 1,000,000 (λ), got 1000000.0"),
]

FILES = [
    # names (defect 15: a full match; defect 3: reserved names)
    ('[[experiments]]\nname = "evil\\n"\n', "experiments[0].name"),
    ('[[experiments]]\nname = "a\\nb"\n', "experiments[0].name"),
    ('[[experiments]]\nname = "../x"\n', "experiments[0].name"),
    ('[[experiments]]\nname = ".hidden"\n', "experiments[0].name"),
    ('[[experiments]]\nname = ""\n', "experiments[0].name"),
    ('[[experiments]]\nname = "' + "x" * 101 + '"\n', "experiments[0].name"),
    ("[[experiments]]\nname = 3\n", "experiments[0].name"),
    ("[[experiments]]\nname = true\n", "experiments[0].name"),
    *[(f'[[experiments]]\nname = "{n}"\n', "experiments[0].name") for n in RESERVED_NAMES],
    ("[[experiments]]\ntraining = { epochs = 1 }\n", "experiments[0].name"),
    (ONE + ONE, "experiments[1] (a).name"),
    (
        '[[experiments]]\nname = "a-lr0.001"\n' + ONE + 'sweep = { "training.lr" = [1e-3] }\n',
        "experiments[1] (a).name",
    ),
    (ONE + 'sweep = { "training.lr" = [1e-3, 1e-3] }\n', "experiments[0] (a).sweep"),
    (ONE + 'sweep = { "data.idx_dir" = ["../x"] }\n', "experiments[0] (a).sweep"),
    (ONE + 'sweep = { "data.idx_dir" = ["x\\n"] }\n', "experiments[0] (a).sweep"),
    (
        '[[experiments]]\nname = "studie"\nsweep = { "data.idx_dir" = ["s"] }\n'
        '[[experiments]]\nname = "studies-x"\n',
        None,
    ),  # (a valid file: see the test below)
    # profiles (defect 15: a profile name makes the folder runs-PROFILE)
    (
        ONE + '[profiles."x/../../../escape"]\ntraining = { epochs = 1 }\n',
        "profiles.x/../../../escape",
        "x/../../../escape",
    ),
    (ONE + '[profiles."q\\n"]\n', "profiles.q\\n"),
    (ONE + '[profiles.".q"]\n', "profiles..q"),
    (ONE + "[profiles.q]\nfoo = 1\n", "profiles.q.foo"),
    (ONE + '[profiles.q]\nexperiments = ["zzz"]\n', "profiles.q.experiments"),
    (ONE + "[profiles.q]\nexperiments = []\n", "profiles.q.experiments"),
    (ONE + '[profiles.q]\nexperiments = "a"\n', "profiles.q.experiments"),
    (ONE + "[profiles.q]\ntraining = { epochs = 0 }\n", "profiles.q.training.epochs"),
    (ONE + "[profiles.q]\ntraining = 3\n", "profiles.q.training"),
    (ONE + '[profiles.q]\ndegradation = "cold"\n', "profiles.q.degradation"),
    (ONE + "[profiles]\nq = 1\n", "profiles.q"),
    (ONE, "profiles.nope", "nope"),
    # data (defect 15: too few images to train and validate on is refused here, not at run time)
    (ONE + "data = { train_subset = 1 }\n", "experiments[0] (a).data.train_subset"),
    (ONE + "data = { train_subset = -1 }\n", "experiments[0] (a).data.train_subset"),
    (ONE + 'data = { dataset = "cifar" }\n', "experiments[0] (a).data.dataset"),
    (ONE + "data = { val_fraction = 0 }\n", "experiments[0] (a).data.val_fraction"),
    (ONE + "data = { val_fraction = 0.6 }\n", "experiments[0] (a).data.val_fraction"),
    (ONE + "data = { idx_dir = 3 }\n", "experiments[0] (a).data.idx_dir"),
    (ONE + "data = { download = 1 }\n", "experiments[0] (a).data.download"),
    (ONE + "data = { images = 5 }\n", "experiments[0] (a).data.images"),
    # training
    (ONE + "training = { lr = nan }\n", "experiments[0] (a).training.lr"),
    (ONE + "training = { lr = inf }\n", "experiments[0] (a).training.lr"),
    (ONE + "training = { lr = 0 }\n", "experiments[0] (a).training.lr"),
    (ONE + "training = { epochs = 1.5 }\n", "experiments[0] (a).training.epochs"),
    (ONE + "training = { epochs = 100001 }\n", "experiments[0] (a).training.epochs"),
    (ONE + "training = { epochs = true }\n", "experiments[0] (a).training.epochs"),
    (ONE + "training = { epochs = 1979-05-27 }\n", "experiments[0] (a).training.epochs"),
    (ONE + "training = { batch_size = 0 }\n", "experiments[0] (a).training.batch_size"),
    (ONE + "training = { seed = -1 }\n", "experiments[0] (a).training.seed"),
    (ONE + "training = { seed = 2147483648 }\n", "experiments[0] (a).training.seed"),
    (ONE + 'training = { device = "tpu" }\n', "experiments[0] (a).training.device"),
    (ONE + 'training = { device = "cuda:x" }\n', "experiments[0] (a).training.device"),
    (ONE + 'training = { amp = "fp8" }\n', "experiments[0] (a).training.amp"),
    (ONE + "training = { progress_every = 0 }\n", "experiments[0] (a).training.progress_every"),
    (ONE + "training = { learning_rate = 1e-3 }\n", "experiments[0] (a).training.learning_rate"),
    # schedule
    (ONE + 'schedule = { kind = "sigmoid" }\n', "experiments[0] (a).schedule.kind"),
    (ONE + "schedule = { T = 0 }\n", "experiments[0] (a).schedule.T"),
    (ONE + "schedule = { T = 100001 }\n", "experiments[0] (a).schedule.T"),
    (ONE + "schedule = { beta_min = 0 }\n", "experiments[0] (a).schedule.beta_min"),
    (ONE + "schedule = { beta_max = 1.0 }\n", "experiments[0] (a).schedule.beta_max"),
    (
        ONE + "schedule = { beta_min = 0.05, beta_max = 0.02 }\n",
        "experiments[0] (a).schedule.beta_min",
    ),
    (
        ONE + 'schedule = { kind = "cosine", max_beta = 0 }\n',
        "experiments[0] (a).schedule.max_beta",
    ),
    (ONE + 'schedule = { kind = "constant", beta = -0.1 }\n', "experiments[0] (a).schedule.beta"),
    # network
    (ONE + 'network = { kind = "mlp" }\n', "experiments[0] (a).network.kind"),
    (ONE + "network = { channels = [] }\n", "experiments[0] (a).network.channels"),
    (ONE + 'network = { channels = ["a"] }\n', "experiments[0] (a).network.channels"),
    (
        ONE + 'network = { kind = "unet", unet_channels = [32, 64] }\n',
        "experiments[0] (a).network.unet_channels",
    ),
    (ONE + "network = { time_embedding = 0 }\n", "experiments[0] (a).network.time_embedding"),
    # evaluation
    (ONE + 'evaluation = { sampler = "euler" }\n', "experiments[0] (a).evaluation.sampler"),
    (ONE + 'evaluation = { sampler = "iterative" }\n', "experiments[0] (a).evaluation.sampler"),
    (ONE + 'evaluation = { final_sampler = "x" }\n', "experiments[0] (a).evaluation.final_sampler"),
    (ONE + "evaluation = { steps = 0 }\n", "experiments[0] (a).evaluation.steps"),
    (
        ONE + "schedule = { T = 10 }\nevaluation = { steps = 50 }\n",
        "experiments[0] (a).evaluation.steps",
    ),
    (ONE + "evaluation = { grid_epochs = [0] }\n", "experiments[0] (a).evaluation.grid_epochs"),
    (ONE + "evaluation = { grid_epochs = 5 }\n", "experiments[0] (a).evaluation.grid_epochs"),
    (ONE + "evaluation = { n_grid = 0 }\n", "experiments[0] (a).evaluation.n_grid"),
    (ONE + "evaluation = { n_grid = 2000 }\n", "experiments[0] (a).evaluation.n_grid"),
    (ONE + 'evaluation = { morph_latent = "end" }\n', "experiments[0] (a).evaluation.morph_latent"),
    (ONE + "evaluation = { every = -1 }\n", "experiments[0] (a).evaluation.every"),
    (ONE + "evaluation = { n_eval = 1 }\n", "experiments[0] (a).evaluation.n_eval"),
    (ONE + 'evaluation = { backbone = "vgg" }\n', "experiments[0] (a).evaluation.backbone"),
    # degradation
    (ONE + 'degradation = "cold"\n', "experiments[0] (a).degradation"),
    (ONE + 'degradation = "morph"\n', "experiments[0] (a).evaluation.sampler"),
    ("[defaults]\ndegradation = 3\n" + ONE, "defaults.degradation"),
    # the shape of the file
    ("bogus = 1\n" + ONE, "bogus"),
    ("[defaults]\nfoo = 1\n" + ONE, "defaults.foo"),
    ("[defaults]\ntraining = 5\n" + ONE, "defaults.training"),
    (ONE + "epochs = 3\n", "experiments[0] (a).epochs"),
    (ONE + 'training = "fast"\n', "experiments[0] (a).training"),
    ("[defaults]\n", "experiments"),
    ("experiments = []\n", "experiments"),
    ("experiments = 3\n", "experiments"),
    ("experiments = [1]\n", "experiments[0]"),
    (ONE + "training = { lr = \n", "not valid TOML"),
    ("\ufeffbogus = 1\n" + ONE, "bogus"),  # a byte-order mark is skipped, the key named
    # hosts
    (ONE + '[hosts."x/y"]\nkind = "ssh"\naddress = "h"\n', "hosts.x/y"),
    (ONE + '[hosts.local]\nkind = "ssh"\naddress = "h"\n', "hosts.local"),
    (ONE + '[hosts.g]\nkind = "ssh"\n', "hosts.g.address"),
    (ONE + '[hosts.g]\nkind = "ftp"\naddress = "h"\n', "hosts.g.kind"),
    (ONE + 'host = "nowhere"\n', "experiments[0] (a).host"),
    # sweeps
    (ONE + 'sweep = { "training.nope" = [1, 2] }\n', "experiments[0] (a).sweep.training.nope"),
    (ONE + 'sweep = { "lr" = [1e-3] }\n', "experiments[0] (a).sweep.lr"),
    (ONE + 'sweep = { "training.lr" = [] }\n', "experiments[0] (a).sweep.training.lr"),
    (ONE + 'sweep = { "training.lr" = 1e-3 }\n', "experiments[0] (a).sweep.training.lr"),
    (ONE + "sweep = {}\n", "experiments[0] (a).sweep"),
    (ONE + 'sweep = { "training.epochs" = [0] }\n', "experiments[0] (a).sweep.training.epochs"),
    (ONE + "sweep = 3\n", "experiments[0] (a).sweep"),
    # studies
    (
        TINY + '[[studies]]\nname = "s"\nrun = "zzz"\nkind = "noise"\nvalues = [0]\n',
        "studies[0] (s).run",
    ),
    (
        TINY + '[[studies]]\nname = "s"\nrun = "b"\nkind = "gmm"\nvalues = [1]\n',
        "studies[0] (s).kind",
    ),
    (
        TINY + '[[studies]]\nname = "s"\nrun = "b"\nkind = "noise"\nvalues = []\n',
        "studies[0] (s).values",
    ),
    (
        TINY + '[[studies]]\nname = "s"\nrun = "b"\nkind = "interpolation"\nvalues = [0.5]\n',
        "studies[0] (s).values",
    ),
    (
        TINY + '[[studies]]\nname = "s"\nrun = "b"\nkind = "noise"\nvalues = [0]\nfoo = 1\n',
        "studies[0] (s).foo",
    ),
    (
        TINY + '[[studies]]\nname = "s"\nrun = "b"\nkind = "noise"\nvalues = [0]\nsteps = 999\n',
        "studies[0] (s).steps",
    ),
    (
        TINY + '[[studies]]\nname = "s\\n"\nrun = "b"\nkind = "noise"\nvalues = [0]\n',
        "studies[0].name",
    ),
    (
        TINY + '[[studies]]\nname = "s"\nrun = "b"\nkind = "noise"\nvalues = [0]\n'
        '[[studies]]\nname = "s"\nrun = "b"\nkind = "noise"\nvalues = [1]\n',
        "studies[1] (s).name",
    ),
    (TINY + "studies = 3\n", "studies"),
    # issue 19: values that would share files (defect 11), N without a bound (18), λ's bound
    *[
        (
            TINY + f'[[studies]]\nname = "s"\nrun = "b"\nkind = "{kind}"\nvalues = {values}\n',
            f"studies[0] (s).values: expected {expected}",
        )
        for kind, values, expected in STUDY_VALUES
    ],
    # a run of the file whose folder holds a run with other settings: refused, kept
    (tiny_text(TINY_RUN, epochs=3), "training.epochs is 1 there, 3 here"),
    (
        tiny_text(TINY_RUN).replace("[defaults.data]", "[defaults.data]\ndownload = true"),
        "data.download is false there, true here",
    ),
]
BAD_FILES = [c for c in FILES if c[1] is not None]


def _id(case) -> str:
    return f"{FILES.index(case)}-{case[1]}"[:60]


@pytest.mark.parametrize("case", BAD_FILES, ids=[_id(c) for c in BAD_FILES])
def test_a_bad_experiments_file_is_one_line_exit_2_and_writes_nothing(case, place, capsys):
    text, key, *profile = case
    tmp_path, runs_dir = place
    f = tmp_path / "exp.toml"
    f.write_text(text, encoding="utf-8")
    # with a profile, its default runs folder (runs-PROFILE beside the file), which must not
    # be made either, inside or outside tmp_path
    argv = [
        "--batch",
        str(f),
        *(["--profile", profile[0]] if profile else ["--runs-dir", str(runs_dir)]),
    ]
    before = snapshot(tmp_path)
    err = refused(argv, capsys, 2, key)
    assert err.startswith("error: exp.toml: ") or "holds a run" in err, err
    assert snapshot(tmp_path) == before
    assert not (tmp_path.parent.parent / "escape").exists()


def test_the_corpus_is_large_enough():
    assert len(BAD_FILES) >= 60 and len(COMMANDS) >= 20


def test_names_near_the_reserved_ones_are_fine(tmp_path):
    f = tmp_path / "exp.toml"
    f.write_text(FILES[[c[1] for c in FILES].index(None)][0])
    assert [r.name for r in load_experiments(f).runs] == ["studie-idx_dirs", "studies-x"]


def test_reserved_names_are_what_diffui_writes_in_a_runs_folder():
    from engine.queue import service
    from engine.queue import state as queue
    from engine.rundir import run as runs

    assert {queue.STATE_FILE, service.LOCK, service.LOG, runs.STUDIES_DIR} <= set(RESERVED_NAMES)
    assert "report" in RESERVED_NAMES  # the UI writes its report into RUNS/report


def test_an_experiments_file_that_is_no_text_or_no_file(place, capsys):
    tmp_path, runs_dir = place
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe\x00garbage")
    before = snapshot(tmp_path)
    refused(["--batch", str(tmp_path / "bin.toml")], capsys, 2, "bin.toml: cannot be read")
    refused(["--batch", str(tmp_path)], capsys, 2, f"{tmp_path}: cannot be read")
    refused(["--batch", str(tmp_path / "nope.toml")], capsys, 2, "nope.toml: no such file")
    assert snapshot(tmp_path) == before


# --- bad command lines: (arguments, exit code, what the message names) ----------------------
# In the arguments, FILE is a valid experiments file, RUNS the runs folder with the finished run,
# AFILE a plain file, OUT a folder that does not exist yet.

COMMANDS = [
    (["--batch", "FILE", "--runs-dir", "AFILE"], "--runs-dir"),
    (["--batch", "FILE", "--runs-dir", "AFILE/sub"], "--runs-dir"),
    (["--batch", "FILE", "--jobs", "0"], "--jobs"),
    (["--batch", "FILE", "--jobs", "many"], "--jobs"),
    (["--batch", "FILE", "--jobs", "100000000"], "--jobs"),
    (["--batch", "FILE", "--only", "nope"], "--only nope"),
    (["--batch", "FILE", "--only", "no\npe"], "--only no\\npe"),
    (["--batch", "FILE", "--profile", "nope"], "profiles.nope"),
    (["--batch", "FILE", "--profile", "x/../../escape"], "profiles.x/../../escape"),
    (["--batch", "FILE", "--bogus"], "--bogus"),
    (["--images", "jpeg"], "--images"),
    (["--batch", "FILE", "--host", "nowhere"], "--host nowhere"),
    (["queue", "add", "FILE", "--runs-dir", "RUNS", "--host", "nowhere"], "--host nowhere"),
    (["FILE", "--jobs", "-1"], "--jobs"),
    (["schedules", "FILE", "--out", "AFILE"], "--out"),
    (["schedules", "FILE", "--out", "AFILE/sub"], "--out"),
    (["schedules", "FILE", "--out", "OUT", "--seed", "-1"], "--seed"),
    (["schedules", "FILE", "--out", "OUT", "--n", "100000000"], "--n"),
    (["schedules", "FILE", "--out", "OUT", "--n", "1"], "--n"),
    (["schedules", "FILE", "--out", "OUT", "--n", "lots"], "--n"),
    (["schedules", "FILE"], "--out"),
    (["report", "--runs-dir", "AFILE", "--out", "OUT"], "--runs-dir"),
    (["report", "--runs-dir", "RUNS", "--out", "AFILE"], "--out"),
    (["report", "--runs-dir", "RUNS", "--out", "OUT", "../tiny"], "report ../tiny"),
    (["report", "--runs-dir", "RUNS", "--out", "OUT", "nope"], "no run folder nope"),
    (["report", "--runs-dir", "OUT", "--out", "OUT2"], "no run folders"),
    (["report", "--runs-dir", "RUNS"], "--out"),
    (["queue", "start", "--runs-dir", "RUNS", "--jobs", "0"], "--jobs"),
    (["queue", "start", "--runs-dir", "AFILE"], "--runs-dir"),
    (["queue", "start", "--profile", "../escape"], "--profile ../escape"),
    (["queue", "add", "FILE", "--runs-dir", "RUNS", "--only", "nope"], "--only nope"),
    (["queue", "frobnicate"], "frobnicate"),
    (["queue"], "ACTION"),
    (["study", "nope", "FILE", "--runs-dir", "RUNS"], "study nope"),
    (["study"], "name"),
    (["study", "x", "FILE", "--runs-dir", "AFILE"], "study x"),
    (["data", "fetch", "cifar"], "cifar"),
    (["data", "frobnicate"], "frobnicate"),
]


@pytest.mark.parametrize("argv,key", COMMANDS, ids=[" ".join(c[0])[:50] for c in COMMANDS])
def test_a_bad_command_line_is_one_line_exit_2_and_writes_nothing(
    argv, key, place, capsys, monkeypatch
):
    tmp_path, runs_dir = place
    monkeypatch.chdir(tmp_path)  # defaults (./runs, ./experiments.toml) land here, if anywhere
    f = tiny_study(tmp_path / "exp.toml", name=TINY_RUN, epochs=1)
    (tmp_path / "afile").write_text("not a folder")
    names = {
        "FILE": str(f),
        "RUNS": str(runs_dir),
        "AFILE": str(tmp_path / "afile"),
        "OUT": str(tmp_path / "out"),
        "OUT2": str(tmp_path / "out2"),
    }
    argv = [names.get(a, a.replace("AFILE", names["AFILE"])) for a in argv]
    before = snapshot(tmp_path)
    refused(argv, capsys, 2, key)
    assert snapshot(tmp_path) == before


# --- defect 3: the report's own figures cannot be overwritten by a run's ---------------------


def test_a_run_named_compare_keeps_its_figure_beside_the_overlay(tmp_path):
    from engine.report.writer import write_report

    text = tiny_text("compare") + '[[experiments]]\nname = "b"\n'
    (tmp_path / "exp.toml").write_text(text)
    runs = [
        finish(r, epochs=2)
        for r in prepare_runs(load_experiments(tmp_path / "exp.toml").runs, tmp_path / "runs")
    ]
    write_report(runs, tmp_path / "report")
    overlay_name = "_compare-loss-gaussian.png"
    own, overlay = (tmp_path / "report" / n for n in ("compare-loss.png", overlay_name))
    assert own.is_file() and overlay.is_file() and own.read_bytes() != overlay.read_bytes()
    md = (tmp_path / "report" / "report.md").read_text()
    assert "(compare-loss.png)" in md and f"({overlay_name})" in md


# --- defect 10: full and read-only disks ------------------------------------------------------


def fill_disk(monkeypatch) -> None:
    """Every fsync fails as a full disk makes it fail (ENOSPC is reported at the latest when
    the data reach the disk); diffui's writes all go through engine.rundir.run.atomic_write_bytes,
    which syncs before it renames."""

    def fsync(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", fsync)


@pytest.fixture
def disk_full(monkeypatch):
    fill_disk(monkeypatch)


def no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


def test_a_new_run_on_a_full_disk_is_one_line_and_leaves_nothing(place, capsys, disk_full):
    tmp_path, runs_dir = place
    f = tmp_path / "exp.toml"
    f.write_text(tiny_text("fresh"))
    before = snapshot(tmp_path)
    err = refused(
        ["--batch", str(f), "--runs-dir", str(runs_dir)],
        capsys,
        1,
        f"no space left on the device of {runs_dir / 'fresh' / 'config.toml'}",
    )
    assert snapshot(tmp_path) == before and not (runs_dir / "fresh").exists(), err


def test_a_resume_on_a_full_disk_is_one_line_and_keeps_queue_json(place, capsys, monkeypatch):
    from engine.queue.client import Queue

    tmp_path, runs_dir = place
    f = tmp_path / "exp.toml"
    f.write_text(tiny_text("half"))
    run = prepare_runs(load_experiments(f).runs, runs_dir)[0]
    run.begin_attempt()  # a worker that died after its first checkpoint
    run.checkpoint_path.write_bytes(b"a checkpoint")
    assert run.status().state == "resumable"
    Queue.open(runs_dir, start_service=False).set_jobs(1)  # queue.json, as diffui left it
    before = snapshot(tmp_path)
    fill_disk(monkeypatch)
    refused(
        ["--batch", str(f), "--runs-dir", str(runs_dir)],
        capsys,
        1,
        f"no space left on the device of {runs_dir / 'queue.json'}",
    )
    assert snapshot(tmp_path) == before and no_temp_files(tmp_path)


def test_schedules_and_report_on_a_full_disk_leave_no_file(place, capsys, disk_full):
    tmp_path, runs_dir = place
    f = tiny_study(tmp_path / "exp.toml", epochs=1)
    refused(
        ["schedules", str(f), "--out", str(tmp_path / "sched")],
        capsys,
        1,
        "no space left on the device of",
        str(tmp_path / "sched"),
    )
    assert list((tmp_path / "sched").iterdir()) == []  # no 0-byte schedules.csv
    refused(
        ["report", "--runs-dir", str(runs_dir), "--out", str(tmp_path / "rep")],
        capsys,
        1,
        "no space left on the device of",
        str(tmp_path / "rep"),
    )
    assert list((tmp_path / "rep").iterdir()) == []


def test_a_worker_whose_disk_fills_records_why(tmp_path, monkeypatch):
    from engine.jobs.worker import execute

    f = tiny_study(tmp_path / "exp.toml", epochs=1)
    run = prepare_runs(load_experiments(f).runs, tmp_path / "runs")[0]
    real_fsync = os.fsync

    def fsync(fd):  # a disk with a few KB left: the first sample grid or checkpoint fills it
        if os.fstat(fd).st_size > 4096:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    assert execute(run, threading.Event()) == "failed"
    st = run.status()
    assert st.state == "failed" and st.detail.startswith(
        f"no space left on the device of {run.path}"
    ), st
    assert no_temp_files(run.path) and not run.checkpoint_path.exists()


@pytest.fixture
def shared_place():
    """place, in a folder that user nobody may enter (pytest's tmp_path is root's alone)."""
    top = Path(tempfile.mkdtemp(prefix="diffui-ro-"))
    top.chmod(0o755)
    f = tiny_study(top / "tiny.toml", name=TINY_RUN, epochs=1)
    runs_dir = top / "runs"
    finish(prepare_runs(load_experiments(f).runs, runs_dir)[0])
    yield top, runs_dir
    shutil.rmtree(top)


@contextmanager
def read_only(folder: Path):
    """``folder`` cannot be written in: mode 0o555. Root writes whatever the mode says, so a
    root process acts meanwhile as user nobody (its effective uid only: the real uid stays
    root, so it can come back)."""
    mode = folder.stat().st_mode
    folder.chmod(0o555)
    as_root = os.geteuid() == 0
    try:
        if as_root:
            os.seteuid(65534)
        yield
    finally:
        if as_root:
            os.seteuid(0)
        folder.chmod(mode)


def test_a_read_only_runs_folder_is_one_line_and_unchanged(shared_place, capsys):
    top, runs_dir = shared_place
    f = top / "exp.toml"
    f.write_text(tiny_text("fresh"))
    f.chmod(0o644)
    import engine.report.writer  # noqa: F401 (matplotlib: imported as root, who may write its caches)

    before = snapshot(top)
    with read_only(runs_dir):
        refused(
            ["queue", "add", str(f), "--runs-dir", str(runs_dir)],
            capsys,
            1,
            f"cannot write {runs_dir / 'fresh'}: Permission denied",
        )
        refused(
            ["queue", "start", "--runs-dir", str(runs_dir)],
            capsys,
            1,
            f"cannot write {runs_dir / '.queue.lock'}: Permission denied",
        )
        refused(
            ["report", "--runs-dir", str(runs_dir), "--out", str(runs_dir / "rep")],
            capsys,
            1,
            f"cannot write {runs_dir / 'rep'}: Permission denied",
        )
    assert snapshot(top) == before


# --- defect 14: a backbone that cannot load is refused before any folder is made -------------


def test_an_inception_backbone_that_cannot_load_writes_nothing(place, capsys):
    tmp_path, runs_dir = place
    f = tiny_study(tmp_path / "exp.toml", name="incept", every=1, extra='backbone = "inception"')
    before = snapshot(tmp_path)
    refused(
        ["--batch", str(f), "--runs-dir", str(runs_dir)],
        capsys,
        2,
        "exp.toml: evaluation.backbone: ",
        "inception",
    )
    assert snapshot(tmp_path) == before


# --- defect 12: Ctrl-C twice, and at start-up -------------------------------------------------


class Output:
    """A child process's output, read as it comes (so that a test can wait for a line)."""

    def __init__(self, proc: subprocess.Popen):
        self.proc, self.text = proc, ""
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for line in iter(self.proc.stdout.readline, b""):
            self.text += line.decode(errors="replace")

    def finish(self, timeout: float = 180) -> str:
        try:
            self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        self.thread.join(timeout=10)
        return self.text


def batch(f: Path, runs_dir: Path, **env) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "cli.main", "--batch", str(f), "--runs-dir", str(runs_dir)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **env}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_ctrl_c_twice_stops_the_worker_and_prints_the_summary(tmp_path):
    from engine.rundir.run import pid_running

    f = tiny_study(tmp_path / "exp.toml", epochs=1000)  # cannot end before the signals
    runs_dir = tmp_path / "runs"
    run = Run(runs_dir / "tiny")
    proc = batch(f, runs_dir)
    out = Output(proc)
    try:
        wait_for(run.checkpoint_path.exists, timeout=180)
        proc.send_signal(signal.SIGINT)
        wait_for(lambda: "interrupted" in out.text, timeout=60)
        pid = run.status().pid
        proc.send_signal(signal.SIGINT)  # while its worker stops
    finally:
        text = out.finish()
    assert proc.returncode == 130, text
    assert "Traceback" not in text and "diffui runs" in text, text  # the summary table
    st = run.status()
    assert st.state == "resumable" and st.detail == "stopped", (st, text)
    assert not pid_running(pid, run.path)


def test_ctrl_c_at_start_up_is_one_line_and_writes_no_run(tmp_path):
    f = tiny_study(tmp_path / "exp.toml", every=1)  # FID: the classifier trains first...
    runs_dir = tmp_path / "runs"
    proc = batch(f, runs_dir, DIFFUI_CACHE_DIR=str(tmp_path / "cache"))  # ...in a new cache
    out = Output(proc)
    try:
        wait_for(lambda: "training the FID classifier" in out.text, timeout=180)
        proc.send_signal(signal.SIGINT)
    finally:
        text = out.finish()
    # 130; once, on a loaded machine, the process exited by SIGINT itself right after printing
    # its line (shells report that as 130 too): cause not found, so both are accepted here
    assert proc.returncode in (130, -signal.SIGINT), text
    assert text.endswith("interrupted\n") and "Traceback" not in text, text
    assert not (runs_dir / "tiny").exists()


# --- defect 1 (fixed before): a relative --runs-dir ---------------------------------------------


def test_a_relative_runs_dir_trains_its_runs(tmp_path, monkeypatch, capsys):
    tiny_study(tmp_path / "exp.toml", epochs=1)
    monkeypatch.chdir(tmp_path)
    assert main(["--batch", "exp.toml", "--runs-dir", "myruns"]) == 0, capsys.readouterr()
    assert Run(tmp_path / "myruns" / "tiny").status().state == "finished"


# --- defect 9 (fixed before): a damaged queue.json ----------------------------------------------


@pytest.mark.parametrize(
    "text,message",
    [
        ('{"jobs": "x"}', "jobs: expected an integer >= 1"),
        ("[]", "(top): expected a JSON object"),
        ("{oops", "not valid JSON"),
    ],
)
def test_a_damaged_queue_is_shown_paused_refused_and_kept(tmp_path, text, message, capsys):
    from engine.queue.client import Queue

    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    (runs_dir / "queue.json").write_text(text)
    q = Queue.open(runs_dir, start_service=False)
    assert message in q.error and q.paused and q.queued() == []
    refused(["queue", "start", "--runs-dir", str(runs_dir)], capsys, 2, message)
    assert (runs_dir / "queue.json").read_text() == text


# --- defect 16: FID takes n_eval samples whatever n_grid is ------------------------------------


def test_fid_uses_n_eval_samples_when_the_grid_is_larger(tmp_path, monkeypatch):
    from engine.jobs.evaluation import Evaluator
    from engine.jobs.setup import prepare
    from engine.rundir.events import Eval, Samples

    f = tiny_study(tmp_path / "exp.toml", every=1)
    f.write_text(
        f.read_text().replace("n_grid = 4", "n_grid = 9").replace("n_eval = 200", "n_eval = 4")
    )
    run = prepare_runs(load_experiments(f).runs, tmp_path / "runs")[0]
    scored = []

    class FID:  # the real one trains a classifier: here only the N it is given matters
        def score(self, x):
            scored.append(len(x))
            return 1.0

        def floor(self, n):
            return 0.5

        backbone = "lenet"

        def features(self, x):
            return np.zeros((len(x), 2))

        def classify(self, feats):
            return np.zeros(len(feats), int), np.ones(len(feats), bool)

        def uncertainty(self, feats, fid):
            return 0.9, 1.1, 0.0, 0.0

    monkeypatch.setattr(Evaluator, "fid", lambda self: FID())
    log = EventLog(run.events_path)
    Evaluator(prepare(run.spec()), run, log)(1, last=False)  # a grid epoch and a FID epoch
    log.close()
    events = run.events()
    assert [e.n for e in events if isinstance(e, Samples)] == [9]
    assert [e.n for e in events if isinstance(e, Eval)] == [4] and scored == [4]


# --- defect 18: the small ones --------------------------------------------------------------


def test_wall_time_counts_a_failed_resume_once():
    from engine.rundir.progress import RunProgress

    p = RunProgress("a")
    for e in (
        Start(time=100.0, epoch=0, epochs=5),
        Epoch(time=110.0, epoch=1, epochs=5, train_loss=1.0, val_loss=1.0, seconds=10.0),
        # killed here; an hour later a resume fails 5 s in, before its start event
        End(time=3715.0, status="failed", error="boom", started=3710.0),
    ):
        p.fold(e)
    assert p.elapsed() == 15.0


async def test_the_runs_table_widens_a_column_for_a_longer_status():
    from textual.app import App

    from engine.rundir.progress import RunProgress
    from tui.widgets import RunsTable

    class One(App):
        def compose(self):
            yield RunsTable()

    app = One()
    async with app.run_test(size=(120, 10)) as pilot:
        table = app.query_one(RunsTable)
        table.show({"a": RunProgress("a", state="failed")}, [], {})
        await pilot.pause()
        table.show({"a": RunProgress("a", state="finished")}, [], {})
        await pilot.pause()
        status = next(c for c in table.columns.values() if c.label.plain == "status")
        assert status.content_width >= len("finished")
        assert table.get_cell("a", "status") == "finished"


# --- defect 10 in the UI: starting the queue on a full disk -----------------------------------


async def test_the_ui_says_a_full_disk_in_one_line_and_goes_on(tmp_path, monkeypatch):
    from textual_image.widget import HalfcellImage
    from tui_runs import make_runs

    from tui.app import DiffuiApp

    runs_dir = tmp_path / "runs"
    make_runs(runs_dir)
    app = DiffuiApp(tmp_path / "missing.toml", runs_dir, image_class=HalfcellImage, poll_every=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        before = snapshot(runs_dir)
        fill_disk(monkeypatch)
        await pilot.press("s")  # start the queue: queue.json cannot be written
        line = f"error: no space left on the device of {runs_dir / 'queue.json'}"
        await until(
            pilot,
            lambda: any(n.message.startswith(line) for n in app._notifications),
            30,
            why=lambda: str([n.message for n in app._notifications]),
        )
        assert app.is_running and app.queue.paused
    after = snapshot(runs_dir)
    assert after.pop(str(runs_dir / ".queue.lock")) == b""  # the lock of any queue change
    assert after == before and no_temp_files(runs_dir)


# --- issue 19: damaged and hostile .gz files of a dataset (defects 16, 17) ----------------------


def _gz_idx(folder: Path, n: int = 10, extra: int = 0, corrupt: bool = False) -> Path:
    """An MNIST-shaped pair of .gz IDX files in ``folder`` (a fresh one) holding ``n`` images,
    the images' stream followed by ``extra`` zero bytes (a bomb: its header stays valid), or
    with damaged deflate data."""
    import gzip
    import struct
    import zlib

    folder.mkdir(parents=True)
    head = bytes([0, 0, 8, 3]) + struct.pack(">3I", n, 28, 28)
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # (31: a gzip stream)
    parts = [packer.compress(head + bytes(n * 784))]
    parts += [packer.compress(bytes(1 << 20)) for _ in range(extra >> 20)]
    images = b"".join([*parts, packer.flush()])
    if corrupt:
        images = images[:20] + bytes(b ^ 0x55 for b in images[20:40]) + images[40:]
    (folder / "train-images-idx3-ubyte.gz").write_bytes(images)
    labels = bytes([0, 0, 8, 1]) + struct.pack(">I", n) + bytes(n)
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(labels))
    return folder


def test_corrupt_deflate_data_is_one_line_in_data_import_and_data(tmp_path, monkeypatch, capsys):
    from engine.data import datasets

    monkeypatch.setenv("DIFFUI_DATA_DIR", str(tmp_path / "data"))
    bad = _gz_idx(tmp_path / "bad", corrupt=True)
    assert main(["data", "import", str(bad), "--as", "mnist"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(
        f"error: {bad / 'train-images-idx3-ubyte.gz'}: cannot decompress (Error -3 while "
    )
    assert not (tmp_path / "data").exists()  # nothing imported
    _gz_idx(tmp_path / "data" / "mnist", corrupt=True)  # damaged in diffui's data folder
    datasets._load.cache_clear()
    assert main(["data"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.split()[:2] == ["mnist", "train"])
    assert "train-images-idx3-ubyte.gz: cannot decompress (Error -3 while" in row
    datasets._load.cache_clear()


def test_a_gzip_bomb_is_refused_after_its_declared_size(tmp_path):
    import tracemalloc

    from engine.data.datasets import read_idx

    bomb = _gz_idx(tmp_path / "bomb", n=10, extra=64 << 20) / "train-images-idx3-ubyte.gz"
    tracemalloc.start()
    try:
        with pytest.raises(ValueError) as e:
            read_idx(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(e.value) == (
        f"{bomb}: header says shape (10, 28, 28) (7840 bytes) but the file holds more bytes of data"
    )
    assert peak < 1 << 20  # read up to 7,841 bytes: not the 64 MiB it expands to
