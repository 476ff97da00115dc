"""FID with the cached MNIST classifier, its floor, class histograms, and evaluation in a run."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
import torch
from conftest import tiny_study

from engine.evaluation import fid as metrics
from engine.jobs.worker import execute
from engine.rundir.events import Eval, latest_by_epoch
from engine.rundir.run import prepare_runs
from engine.spec.experiments import load_experiments


@pytest.fixture(scope="module")
def fid():
    """The real FID scorer: trains the classifier once into the session's cache folder."""
    return metrics.FID("lenet")


def test_classifier_reaches_98_percent_on_the_mnist_test_set(fid):
    assert fid.info.test_accuracy >= metrics.MIN_ACCURACY
    assert "t10k" in fid.info.test_source or "IDX" in fid.info.test_source
    assert fid.info.path.exists() and fid.info.path.with_suffix(".json").exists()


def test_classifier_cache_is_reused(fid, monkeypatch):
    def no_training(*a, **k):
        raise AssertionError("retrained although a cached classifier exists")

    monkeypatch.setattr(metrics, "train_classifier", no_training)
    clf, info = metrics.load_classifier()
    assert info.path == fid.info.path and info.test_accuracy == fid.info.test_accuracy
    for a, b in zip(clf.state_dict().values(), fid.clf.state_dict().values()):
        assert torch.equal(a, b)


def test_the_classifier_epochs_come_from_the_environment(monkeypatch):
    """$DIFFUI_CLASSIFIER_EPOCHS (fewer epochs for a cheaper classifier in the tests); a bad
    value is one line, not a classifier trained for 0 epochs."""
    monkeypatch.setenv("DIFFUI_CLASSIFIER_EPOCHS", "7")
    assert metrics.classifier_epochs() == 7
    monkeypatch.setenv("DIFFUI_CLASSIFIER_EPOCHS", "")
    assert metrics.classifier_epochs() == metrics.EPOCHS == 30
    for bad in ("0", "x", "-3"):
        monkeypatch.setenv("DIFFUI_CLASSIFIER_EPOCHS", bad)
        with pytest.raises(metrics.MetricsError) as e:
            metrics.load_classifier()
        assert str(e.value) == (
            f"$DIFFUI_CLASSIFIER_EPOCHS: expected a positive integer, got {bad!r}"
        )


def test_fid_of_the_reference_against_itself_is_near_zero_and_noise_is_large(fid):
    assert fid.score(fid.reference) == pytest.approx(0.0, abs=1e-2)
    noise = torch.rand((1000, 28, 28), generator=torch.Generator().manual_seed(0))
    real = fid.reference[torch.randperm(len(fid.reference))[:1000]]
    floor = fid.floor(1000)
    assert 0 < floor < fid.score(real) * 3 + 1  # real data sits near its floor
    assert fid.score(noise) > 50 * max(floor, 1.0)
    assert fid.floor(1000) == floor  # cached and reproducible


def test_histogram_of_one_class_is_one_hot_and_entropy(fid):
    threes = fid.reference[torch.as_tensor(reference_labels(fid) == 3)]
    hist = fid.class_histogram(threes)
    assert hist.sum() == len(threes) and hist.argmax() == 3
    assert hist[3] / hist.sum() >= 0.97
    full = fid.class_histogram(fid.reference)
    assert metrics.entropy_bits(full) > 3.2  # all ten digits, nearly uniform
    assert metrics.entropy_bits(hist) < 0.3
    assert metrics.entropy_bits([5, 0, 0]) == 0.0
    assert metrics.entropy_bits([1] * 10) == pytest.approx(math.log2(10))


def test_real_digits_are_recognised_and_noise_is_not(fid):
    g = torch.Generator().manual_seed(0)
    real = fid.reference[5000:5500]
    cases = {
        "real": real,
        "uniform noise": torch.rand(500, 28, 28, generator=g),  # the classifier says 8, sure
        "half noise": 0.5 * real + 0.5 * torch.rand(500, 28, 28, generator=g),
    }
    share = {k: fid.classify(fid.features(x))[1].mean() for k, x in cases.items()}
    assert share["real"] >= 0.95 and share["uniform noise"] <= 0.05 and share["half noise"] < 0.5
    classes = fid.classify(fid.features(real))[0]
    assert (classes == reference_labels(fid)[5000:5500]).mean() > 0.97


def reference_labels(fid) -> np.ndarray:
    return metrics.reference_set().labels.numpy()


def test_inception_backbone_fails_with_one_clear_line(monkeypatch):
    import torchmetrics.image.fid as tm

    def offline(*a, **k):
        raise RuntimeError("could not download weights\nURLError: no network")

    monkeypatch.setattr(tm, "FrechetInceptionDistance", offline)
    with pytest.raises(metrics.MetricsError) as e:
        metrics.inception_metric()
    msg = str(e.value)
    assert "\n" not in msg and "backbone = 'lenet'" in msg and "inception" in msg


def test_batch_refuses_an_unloadable_inception_backbone_before_training(
    tmp_path, monkeypatch, capsys
):
    import torchmetrics.image.fid as tm

    from cli.main import main

    def offline(*a, **k):
        raise RuntimeError("no network")

    monkeypatch.setattr(tm, "FrechetInceptionDistance", offline)
    f = tiny_study(tmp_path / "exp.toml", every=1, extra='backbone = "inception"')
    assert main(["--batch", str(f), "--runs-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: exp.toml: evaluation.backbone:") and "\n" not in err
    assert not (tmp_path / "runs" / "tiny" / "events.jsonl").exists()  # nothing was trained


def test_tiny_run_evaluates_and_report_writes_files(tmp_path, fid, capsys):
    f = tiny_study(tmp_path / "exp.toml", epochs=2, every=1)
    run = prepare_runs(load_experiments(f).runs, tmp_path / "runs")[0]
    assert execute(run, threading.Event()) == "finished"
    evals = latest_by_epoch(run.events(), Eval)
    assert sorted(evals) == [1, 2]
    for e in evals.values():
        assert e.n == 200 and e.fid > 0 and e.floor > 0
        assert 0 <= e.fid_low < e.fid_high and e.fid_level == 0.95 and "bootstrap" in e.fid_method
        assert e.kid is not None and e.kid_std is not None and e.kid_std >= 0
        assert 0 <= e.recognised <= 1
        assert sum(e.histogram) == 200 and 0 <= e.entropy <= math.log2(10)
    assert evals[1].sampler == "DDIM-4" and evals[2].sampler == "DDPM-40"
    assert evals[2].floor == pytest.approx(fid.floor(200))

    from cli.main import main

    out = tmp_path / "report"
    assert main(["report", "--runs-dir", str(tmp_path / "runs"), "--out", str(out)]) == 0
    for name in (
        "report.md",
        "tiny-loss.png",
        "tiny-fid.png",
        "tiny-grids.png",
        "tiny-diffusion.png",
    ):
        assert (out / name).stat().st_size > 0, name
    md = (out / "report.md").read_text()
    assert "| tiny | finished | 2/2 |" in md
    assert f"{evals[2].fid:.2f} [{evals[2].fid_low:.2f}, {evals[2].fid_high:.2f}]" in md
    assert main(["report", "--runs-dir", str(tmp_path / "runs"), "nope", "--out", str(out)]) == 2
    assert "no run folder nope" in capsys.readouterr().err


# --- the FID's interval and KID (engine.evaluation.uncertainty), on Gaussians with known FID ---


@pytest.fixture
def one_thread():
    """Small matrices: one thread is faster than two fighting over a busy machine's cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def gaussians(rng, n: int, d: int = 8, n_ref: int = 1000):
    """n features from N(0.3, diag(s²)) and n_ref from N(0, I); their true FID is
    ||0.3||² + sum (s - 1)² (both covariances diagonal)."""
    s = np.linspace(0.5, 1.5, d)
    true = 0.09 * d + float(((s - 1) ** 2).sum())
    return rng.standard_normal((n, d)) * s + 0.3, rng.standard_normal((n_ref, d)), true


def test_the_fid_interval_covers_the_true_fid_at_its_level(one_thread):
    from engine.evaluation import uncertainty

    rng = np.random.default_rng(0)
    repeats, covered, above = 60, 0, 0
    for r in range(repeats):
        fake, real, true = gaussians(rng, 100)
        fid, low, high = uncertainty.fid_interval(fake, uncertainty.Reference(real, seed=r), seed=r)
        covered += low <= true <= high
        above += fid > true
    # 95 % intervals: >= 90 % of 60 repeats (at this seed: 58); the FID of n = 100 itself reads
    # above the truth nearly always (its bias), which the percentile interval would inherit
    assert covered / repeats >= 0.90
    assert above / repeats >= 0.9


def test_the_fid_interval_shrinks_as_n_grows(one_thread):
    from engine.evaluation import uncertainty

    rng = np.random.default_rng(1)
    widths = []
    for n in (100, 400, 1600):
        w = []
        for r in range(4):
            fake, real, _ = gaussians(rng, n)
            _, low, high = uncertainty.fid_interval(fake, uncertainty.Reference(real, seed=r))
            w.append(high - low)
        widths.append(np.mean(w))
    assert widths[0] > 1.3 * widths[1] > 1.3 * 1.3 * widths[2]


def test_the_kept_and_the_recomputed_reference_resamples_agree(one_thread, monkeypatch):
    from engine.evaluation import uncertainty

    fake, real, _ = gaussians(np.random.default_rng(2), 50, d=4, n_ref=200)
    kept = uncertainty.fid_interval(fake, uncertainty.Reference(real, resamples=30))
    monkeypatch.setattr(uncertainty, "KEEP_DIM", 2)  # Inception-sized features: recomputed
    assert uncertainty.Reference(real, resamples=30).kept is None
    assert uncertainty.fid_interval(fake, uncertainty.Reference(real, resamples=30)) == kept
    assert uncertainty.fid_of(fake, real) == pytest.approx(kept[0])


def test_kid_is_near_zero_for_one_distribution_and_grows_with_the_shift(one_thread):
    from engine.evaluation import uncertainty

    rng = np.random.default_rng(3)
    real = rng.standard_normal((1000, 8))
    same, same_std = uncertainty.kid(rng.standard_normal((500, 8)), real)
    assert abs(same) < 3 * same_std + 1e-3  # unbiased: zero within its spread
    shifted = [uncertainty.kid(rng.standard_normal((500, 8)) + m, real)[0] for m in (0.5, 1.0)]
    assert same < shifted[0] < shifted[1]
