"""The report: the worker writes the process figures' arrays into the run folder, the report draws
every figure from run folders alone (no checkpoint, no torch), one axes per panel, with progress."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_study

from engine.data import datasets
from engine.diffusion import samplers
from engine.jobs.worker import execute
from engine.report import writer
from engine.rundir.events import Figure as FigureEvent
from engine.rundir.events import Samples, latest_by_epoch
from engine.rundir.run import Run, prepare_runs
from engine.spec.experiments import load_experiments

MORPH = """degradation = "morph"
network = { kind = "unet", unet_channels = [8, 16, 16] }
evaluation = { sampler = "iterative", final_sampler = "same" }
"""
T = 40  # tiny_study's


def _train(tmp_path_factory, name: str, experiment: str = "") -> Run:
    folder = tmp_path_factory.mktemp(name)
    f = tiny_study(folder / "exp.toml", name=name, epochs=1)
    f.write_text(f.read_text() + experiment)  # keys of the experiment
    run = prepare_runs(load_experiments(f).runs, folder / "runs")[0]
    assert execute(run, threading.Event()) == "finished", run.status()
    return run


@pytest.fixture(scope="module")
def gaussian(tmp_path_factory) -> Run:
    return _train(tmp_path_factory, "gauss")


@pytest.fixture(scope="module")
def morph(tmp_path_factory) -> Run:
    return _train(tmp_path_factory, "morph", MORPH)


def figure_events(run: Run) -> dict[str, FigureEvent]:
    return {e.name: e for e in run.events() if isinstance(e, FigureEvent)}


def load(run: Run, rel: str) -> np.ndarray:
    arr = np.load(run.path / rel)
    assert arr.dtype == np.float32 and 0.0 <= arr.min() and arr.max() <= 1.0
    return arr


# --- the arrays the worker writes ------------------------------------------------------------


def test_gaussian_run_writes_the_diffusion_strips(gaussian):
    events = figure_events(gaussian)
    assert list(events) == ["diffusion"]
    e = events["diffusion"]
    assert e.files == ["figures/diffusion-forward.npy", "figures/diffusion-backward.npy"]
    assert e.epoch == 1 and e.t == [0, 8, 16, 24, 32, 40]
    assert e.columns == [f"t={t}" for t in e.t]
    assert e.rows == ["forward", "", "", "", "backward", "", "", ""]
    forward, backward = (load(gaussian, f) for f in e.files)
    assert forward.shape == backward.shape == (4, 6, 28, 28)
    types = [ev.type for ev in gaussian.events()]
    assert types.index("figure") > max(i for i, t in enumerate(types) if t == "samples")
    assert types[-1] == "end"

    # the same images the report drew from the checkpoint before (same seeds): real digits
    # noised with one generator, then DDPM samples from it
    from engine.jobs.checkpoints import load_model

    model, deg = load_model(gaussian)
    g = torch.Generator().manual_seed(0)
    ds = datasets.load_configured(gaussian.spec().data)
    x0 = datasets.to_model(ds.images[torch.randperm(len(ds.images), generator=g)[:4]])
    eps = torch.randn(x0.shape, generator=g)
    want = torch.stack([deg.degrade(x0, torch.full((4,), t), eps) for t in e.t], 1)
    np.testing.assert_allclose(forward, datasets.from_model(want)[:, :, 0].numpy(), atol=1e-6)
    assert np.abs(forward[:, 0] * 255 - np.round(forward[:, 0] * 255)).max() < 1e-3  # the digits
    seen = {}
    samplers.ddpm(model, deg, 4, g, on_step=lambda t, z: seen.__setitem__(t, z))
    want = torch.stack([seen[t] for t in e.t], 1)
    np.testing.assert_allclose(backward, datasets.from_model(want)[:, :, 0].numpy(), atol=1e-5)


def test_morph_run_writes_restoration_and_direct_vs_iterative(morph):
    events = figure_events(morph)
    assert list(events) == ["restoration", "direct-vs-iterative"]
    rest, dvi = events["restoration"], events["direct-vs-iterative"]
    assert rest.files == ["figures/restoration.npy"]
    assert rest.t == torch.linspace(0, T, 8).round().long().tolist()
    assert rest.rows == ["degraded z_t", "restored R(z_t, t)"]
    assert dvi.files == ["figures/direct-vs-iterative.npy"]
    assert dvi.rows == [
        "digit x",
        f"z_T (t={T})",
        "direct",
        "iterative-4\nestimate latent",
        "iterative-4\nstart latent",
    ]
    r, d = load(morph, rest.files[0]), load(morph, dvi.files[0])
    assert r.shape == (2, 8, 28, 28) and d.shape == (5, 10, 28, 28)
    np.testing.assert_allclose(r[0, 0], d[0, 0], atol=1e-6)  # t = 0: the first held-out digit

    # the same images as the report drew from the checkpoint before (same seeds)
    from engine.jobs.checkpoints import load_model
    from engine.jobs.setup import training_data

    model, deg = load_model(morph)
    x = training_data(morph.spec())[1][:10]
    z = deg.latents(10, torch.Generator().manual_seed(0), held_out=True)
    z_T = deg.degrade(x, torch.full((10,), T), z)
    with torch.no_grad():
        want = samplers.iterative(model, deg, z_T, z, 4, "start").clamp(-0.5, 0.5)
    np.testing.assert_allclose(d[4], datasets.from_model(want)[:, 0].numpy(), atol=1e-5)
    np.testing.assert_allclose(d[1], datasets.from_model(z_T)[:, 0].numpy(), atol=1e-6)


# --- the report from run folders alone ---------------------------------------------------------


def copy_without_checkpoints(runs: list[Run], dest) -> list[Run]:
    copies = []
    for run in runs:
        shutil.copytree(run.path, dest / run.name)
        (dest / run.name / "checkpoint.pt").unlink()
        copies.append(Run(dest / run.name))
    return copies


def add_evaluations(run: Run) -> None:
    """Two FID evaluations, as a run with ``every`` > 0 writes them (FID itself is tested in
    test_metrics)."""
    with open(run.events_path, "a") as f:
        for epoch, fid in ((1, 90.0), (2, 60.0)):
            f.write(
                json.dumps(
                    {
                        "type": "eval",
                        "time": 0.0,
                        "epoch": epoch,
                        "sampler": "DDIM-4",
                        "n": 200,
                        "fid": fid,
                        "floor": 5.0,
                        "entropy": 3.0,
                    }
                )
                + "\n"
            )


def test_report_draws_every_figure_from_folders_without_checkpoints(
    gaussian, morph, tmp_path, capsys
):
    from cli.main import main

    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    copy_without_checkpoints([gaussian, morph], runs_dir)
    out = tmp_path / "report"
    assert main(["report", "--runs-dir", str(runs_dir), "--out", str(out)]) == 0
    names = [
        "gauss-loss.png",
        "gauss-grids.png",
        "gauss-diffusion.png",
        "morph-loss.png",
        "morph-grids.png",
        "morph-restoration.png",
        "morph-direct-vs-iterative.png",
        "_compare-loss.png",
    ]
    assert sorted(p.name for p in out.glob("*.png")) == sorted(names)
    for name in names:
        assert (out / name).stat().st_size > 5000, name
    md = (out / "report.md").read_text()
    assert all(f"]({n})" in md for n in names) and "No diffusion or restoration" not in md
    # not a terminal: the one line, no progress bar
    assert capsys.readouterr().out == f"wrote {out / 'report.md'} and {len(names)} figures\n"


def test_a_folder_without_the_arrays_gets_those_figures_skipped(gaussian, tmp_path):
    (run,) = copy_without_checkpoints([gaussian], tmp_path)
    shutil.rmtree(run.path / "figures")  # as a run made before the worker wrote them
    writer.write_report([run], tmp_path / "report")
    assert sorted(p.name for p in (tmp_path / "report").glob("*.png")) == [
        "gauss-grids.png",
        "gauss-loss.png",
    ]
    assert "No diffusion or restoration figures" in (tmp_path / "report" / "report.md").read_text()


def test_every_figure_has_one_axes_per_panel(gaussian, morph, tmp_path):
    from matplotlib.ticker import MaxNLocator

    runs = copy_without_checkpoints([gaussian, morph], tmp_path)
    add_evaluations(runs[0])
    per_run, overlays = writer.plan(runs)
    planned = [p for r in runs for p in per_run[r.name]] + overlays
    assert {p.file for p in planned} >= {"gauss-fid.png", "_compare-fid.png", "_compare-loss.png"}
    for run in runs:
        assert len(latest_by_epoch(run.events(), Samples)) == 1  # epochs = 1: one grid
    panels = {
        "gauss-diffusion.png": 8 * 6,  # forward and backward rows, 6 times
        "morph-restoration.png": 2 * 8,
        "morph-direct-vs-iterative.png": 5 * 10,
    }
    for p in planned:
        fig = p.draw()
        assert len(fig.axes) == panels.get(p.file, 1), p.file
        if p.file.endswith(("loss.png", "fid.png")):
            locator = fig.axes[0].xaxis.get_major_locator()
            assert isinstance(locator, MaxNLocator) and locator._integer, p.file


def test_write_report_calls_progress_per_figure(gaussian, tmp_path):
    calls = []
    writer.write_report(
        [gaussian], tmp_path, progress=lambda done, total: calls.append((done, total))
    )
    n = len(list(tmp_path.glob("*.png")))
    assert n == 3 and calls == [(i, n) for i in range(n + 1)]


def test_report_on_a_terminal_shows_a_progress_bar(gaussian, tmp_path, capsys, monkeypatch):
    from cli.main import main

    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert main(["report", "--runs-dir", str(gaussian.path.parent), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "report figures" in out and "3/3" in out
    assert out.rstrip().endswith(f"wrote {tmp_path / 'report.md'} and 3 figures")


def test_report_does_not_import_torch():
    code = (
        "import sys, engine.report.arrays, engine.report.figures, engine.report.tables, "
        "engine.report.writer, engine.rundir.run, engine.spec.experiments, "
        "engine.queue.client; "
        "print(sorted(m for m in ('torch', 'torchvision') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert out.stdout.strip() == "[]"
