"""Training runs: files written, reproducibility, derived status, resume after SIGKILL."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import socket
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch
from conftest import tiny_study, wait_for
from PIL import Image

from engine.jobs.worker import execute
from engine.queue.executors.base import Job
from engine.queue.executors.local import LocalExecutor
from engine.rundir.events import End, Epoch, Progress, Samples, Start, latest_by_epoch
from engine.rundir.run import Run, prepare_runs
from engine.spec.experiments import load_experiments


def make_run(tmp_path, name="tiny", **kw) -> Run:
    f = tiny_study(tmp_path / f"{name}.toml", name=name, **kw)
    return prepare_runs(load_experiments(f).runs, tmp_path / "runs")[0]


def epoch_losses(run: Run) -> list[tuple[int, float, float]]:
    return [
        (e, ev.train_loss, ev.val_loss) for e, ev in latest_by_epoch(run.events(), Epoch).items()
    ]


def test_tiny_run_writes_every_file(tmp_path):
    run = make_run(tmp_path)
    assert run.status().state == "pending"
    assert execute(run, threading.Event()) == "finished"

    assert run.status().state == "finished"
    assert run.config_path.is_file() and run.checkpoint_path.is_file()
    types = [e.type for e in run.events()]
    assert types[0] == "start" and types[-1] == "end"
    assert {"progress", "epoch", "samples", "checkpoint", "figure"} <= set(types)
    # long steps report progress: the grids' sampling and the report figures' DDPM strip
    tasks = {e.task for e in run.events() if isinstance(e, Progress)}
    assert tasks == {"train", "DDIM-4 samples", "DDPM-40 samples", "report figures"}
    last = [e for e in run.events() if isinstance(e, Progress) and e.task == "DDPM-40 samples"][-1]
    assert last.step == last.steps == 40
    assert [e for e, _, _ in epoch_losses(run)] == [1, 2]
    samples = latest_by_epoch(run.events(), Samples)
    assert sorted(samples) == [1, 2]  # the configured grid epoch and the final one
    assert samples[1].sampler == "DDIM-4" and samples[2].sampler == "DDPM-40"
    for epoch in (1, 2):
        arr = np.load(run.samples_dir / f"epoch-{epoch:04d}.npy")
        assert arr.shape == (4, 28, 28) and arr.dtype == np.float32
        assert 0.0 <= arr.min() and arr.max() <= 1.0
        png = Image.open(run.samples_dir / f"epoch-{epoch:04d}.png")
        assert png.size == (2 * 28 + 3 * 2, 2 * 28 + 3 * 2)  # a 2x2 grid with 2-pixel padding
    ck = torch.load(run.checkpoint_path, weights_only=True)
    assert ck["epoch"] == 2 and "model" in ck and "optimizer" in ck
    assert json.loads(run.exit_path.read_text())["status"] == "finished"
    start = run.events()[0]
    assert start.train_size + start.val_size == 256 and start.device == "cpu"
    # where it ran, for the run view: the host, and the CPU's model with torch's threads
    assert start.host == socket.gethostname()
    assert re.fullmatch(r"(.+, )?\d+ threads?", start.device_name), start.device_name


def test_same_seed_gives_same_losses_other_seed_differs(tmp_path):
    a, b = make_run(tmp_path, "a", epochs=1), make_run(tmp_path, "b", epochs=1)
    c = make_run(tmp_path, "c", epochs=1, seed=1)
    for run in (a, b, c):
        execute(run, threading.Event())
    assert epoch_losses(a) == epoch_losses(b)
    assert epoch_losses(a) != epoch_losses(c)
    np.testing.assert_array_equal(
        np.load(a.samples_dir / "epoch-0001.npy"), np.load(b.samples_dir / "epoch-0001.npy")
    )


def test_stop_request_leaves_run_resumable(tmp_path):
    run = make_run(tmp_path, epochs=2)
    stop = threading.Event()
    original = run.checkpoint_path

    # ask to stop once the first checkpoint exists
    threading.Thread(target=lambda: (wait_for(original.exists), stop.set()), daemon=True).start()
    assert execute(run, stop) == "stopped"
    st = run.status()
    assert st.state == "resumable" and st.detail == "stopped"
    assert execute(run, threading.Event()) == "finished"
    assert run.status().state == "finished"


def test_dead_worker_reads_as_resumable_or_failed_never_running(tmp_path):
    run = make_run(tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run.worker_path.write_text(
        json.dumps({"pid": dead.pid, "host": os.uname().nodename, "started": 1.0})
    )
    assert run.status().state == "failed"  # died before writing a checkpoint
    run.checkpoint_path.write_bytes(b"")
    st = run.status()
    assert st.state == "resumable" and "died" in st.detail
    # a live process that is not this run's worker (pid reuse) does not count as running
    run.worker_path.write_text(
        json.dumps({"pid": os.getpid(), "host": os.uname().nodename, "started": 1.0})
    )
    assert run.status().state == "resumable"


def test_resume_after_sigkill_continues_exactly(tmp_path):
    killed = make_run(tmp_path, "killed", epochs=3, subset=512)
    reference = make_run(tmp_path, "reference", epochs=3, subset=512)
    executor, job = LocalExecutor(), Job(killed.path)
    handle = executor.start(job, "local:0", threads=1)
    try:
        wait_for(killed.checkpoint_path.exists)
        assert killed.status().state == "running"
        executor.kill(job, handle)
        wait_for(lambda: not executor.alive(job, handle), timeout=10)
    finally:
        executor.kill(job, handle)
    st = killed.status()
    assert st.state == "resumable", st
    done_before = torch.load(killed.checkpoint_path, weights_only=True)["epoch"]
    assert 1 <= done_before < 3

    assert execute(killed, threading.Event()) == "finished"
    assert [e.resumed for e in killed.events() if isinstance(e, Start)] == [False, True]
    execute(reference, threading.Event())
    # same seed, resumed from the checkpoint: the losses of every epoch match an unbroken run
    got, want = epoch_losses(killed), epoch_losses(reference)
    assert [e for e, _, _ in got] == [1, 2, 3]
    assert np.array(got) == pytest.approx(np.array(want), rel=1e-4)


def test_failed_run_records_the_error(tmp_path):
    bad = tmp_path / "idx"
    bad.mkdir()
    (bad / "train-images-idx3-ubyte").write_bytes(b"not an idx file")
    (bad / "train-labels-idx1-ubyte").write_bytes(b"nope")
    run = make_run(tmp_path)
    spec = run.spec()
    spec.data = dataclasses.replace(spec.data, idx_dir=str(bad))
    Run.create(run.path, spec)
    assert execute(run, threading.Event()) == "failed"
    st = run.status()
    assert st.state == "failed" and "train-images-idx3-ubyte" in st.detail
    assert isinstance(run.events()[-1], End) and run.events()[-1].status == "failed"


def test_seed_streams_are_pinned(tmp_path):
    """The named seed offsets (training.EPOCH_SEED_STRIDE, VALIDATION_SEED_OFFSET,
    SAMPLES_SEED_OFFSET) keep the values they had as literals: the tiny run's losses are the ones
    it gave before they were named."""
    run = make_run(tmp_path)
    assert execute(run, threading.Event()) == "finished"
    assert np.array(epoch_losses(run))[:, 1:] == pytest.approx(
        np.array(
            [[1.0476007212763248, 0.9101762771606445], [0.8510852979577106, 0.7526090741157532]]
        ),
        rel=1e-5,
    )


def _curve(tmp_path, name, epochs=2, **training):
    """(train, validation) losses per epoch of a tiny CNN run with ``training`` keys."""
    from engine.jobs import setup
    from engine.jobs import training as jobs_training

    extra = "[defaults.network]\nchannels = [8, 8]\n"
    f = tiny_study(tmp_path / f"{name}.toml", name=name, epochs=epochs, subset=96, extra=extra)
    spec = load_experiments(f).runs[0]
    spec.training = dataclasses.replace(spec.training, **training)
    p = setup.prepare(spec)
    out = []
    for epoch in range(1, epochs + 1):
        out.append((jobs_training.train_epoch(p, epoch), jobs_training.validation_loss(p)))
    return np.array(out)


@pytest.mark.parametrize("setting", [{"amp": "bf16"}, {"compile": "on"}])
def test_bf16_and_compiled_training_follow_the_fp32_loss_curve(tmp_path, setting):
    """The fast paths train the same model: the loss curve of a tiny run within 2% (bf16) or
    0.1% (compiled fp32) of the fp32 one, epoch by epoch. Compiling needs a C++ compiler
    (.ci/install installs g++) and takes about a minute the first time on 2 cores (inductor
    caches the kernels)."""
    fp32 = _curve(tmp_path, "fp32", amp="off", compile="off")
    fast = _curve(tmp_path, "fast", **{"amp": "off", "compile": "off", **setting})
    assert fp32[-1, 1] < fp32[0, 0]  # it learns
    np.testing.assert_allclose(fast, fp32, rtol=0.02 if "amp" in setting else 1e-3)


def test_a_precision_or_compile_the_device_cannot_do_fails_the_run_in_one_line(
    tmp_path, monkeypatch
):
    from engine.jobs import setup

    run = make_run(tmp_path, "half")
    spec = run.spec()
    spec.training = dataclasses.replace(spec.training, amp="fp16")
    Run.create(run.path, spec)
    assert execute(run, threading.Event()) == "failed"
    assert run.status().detail == (
        "training.amp = 'fp16' needs a CUDA device, not cpu (use bf16 or off)"
    )
    monkeypatch.setattr(setup.shutil, "which", lambda name: None)
    spec.training = dataclasses.replace(spec.training, amp="auto", compile="on")
    with pytest.raises(setup.RunError, match="^training.compile = 'on' but torch.compile needs"):
        setup.prepare(spec)
    assert not setup.use_compile(torch.device("cpu"), "auto")  # auto: never on the CPU
    assert setup.precision(torch.device("cpu"), "auto") == (
        "bf16" if setup.native_bf16(torch.device("cpu")) else "fp32"
    )
