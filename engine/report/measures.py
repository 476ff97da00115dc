"""The claims ledger's measures of what a run folder holds, where the study judged by eye: each
a plain function of sample arrays or of numbers in events (NumPy, no torch), tested on inputs
with known answers. The measures that need the FID classifier (which digit a sample is, whether
it reads as a digit at all) are computed by the worker into the events
(:meth:`engine.evaluation.fid.FID.classify`); these only combine them.

* :func:`background_noise` (claim C6, "noisy, pixelated backgrounds"): per image, the variance
  of the pixels outside the digit: the ink (pixels above :data:`INK` with at least two inked
  neighbours, so that isolated bright specks stay background) dilated by :data:`DILATE` pixels
  is the digit, the rest is background. A clean MNIST digit reads 0 (its background is exactly
  black); salt noise in the background raises it.
* :func:`sharpness` (C9, "iterative restoration is sharper than direct"): the mean squared
  difference between neighbouring pixels (horizontal and vertical), the gradient energy; a
  blurred digit reads lower (the mean absolute difference would not: blurring a step spreads
  it without changing its total).
* :func:`share_interval` (C5, C12, C13): a share k/n with its Wilson score interval.
* :func:`changed_share` (C12): the share of samples whose digit differs from that of the sample
  drawn from the same latent at λ = 0.
* :func:`excess` (C13): the share of given digits (3 and 8) in one class histogram minus that in
  another, with a normal (Wald) interval of the difference of two shares.
* :func:`mean_interval`: the mean of per-image scores with a normal interval (1.96 standard
  errors).
"""

from __future__ import annotations

import math

import numpy as np

INK = 0.5  # a pixel brighter than this is ink
DILATE = 2  # pixels of margin around the ink that still count as the digit
Z95 = 1.959964


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    """``mask`` (..., H, W) grown by ``r`` pixels (a square neighbourhood)."""
    out = mask.copy()
    h, w = mask.shape[-2:]
    padded = np.pad(mask, [(0, 0)] * (mask.ndim - 2) + [(r, r), (r, r)])
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            out |= padded[..., dy : dy + h, dx : dx + w]
    return out


def _dilate_count(mask: np.ndarray) -> np.ndarray:
    """How many of each pixel's 8 neighbours are set in ``mask``."""
    h, w = mask.shape[-2:]
    padded = np.pad(mask, [(0, 0)] * (mask.ndim - 2) + [(1, 1), (1, 1)]).astype(np.int16)
    total = sum(padded[..., dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3))
    return total - mask


def background_noise(images: np.ndarray) -> np.ndarray:
    """Per image ((N, 28, 28) in [0, 1]): the variance of its background pixels (0 for an image
    that is all digit)."""
    x = np.asarray(images, np.float64)
    ink = x > INK
    neighbours = _dilate_count(ink)
    background = ~_dilate(ink & (neighbours >= 2), DILATE)
    count = background.sum((-2, -1))
    mean = np.where(background, x, 0).sum((-2, -1)) / np.maximum(count, 1)
    var = np.where(background, (x - mean[..., None, None]) ** 2, 0).sum((-2, -1))
    return var / np.maximum(count, 1)


def sharpness(images: np.ndarray) -> np.ndarray:
    """Per image: the mean squared difference of neighbouring pixels (gradient energy)."""
    x = np.asarray(images, np.float64)
    dx = (np.diff(x, axis=-1) ** 2).mean((-2, -1))
    dy = (np.diff(x, axis=-2) ** 2).mean((-2, -1))
    return (dx + dy) / 2


def mean_interval(scores) -> tuple[float, float, float]:
    """(mean, low, high) of per-image scores: mean ± 1.96 standard errors."""
    s = np.asarray(scores, np.float64)
    mean = float(s.mean())
    se = float(s.std(ddof=1) / math.sqrt(len(s))) if len(s) > 1 else 0.0
    return mean, mean - Z95 * se, mean + Z95 * se


def share_interval(k: float, n: int) -> tuple[float, float, float]:
    """(k/n, low, high): the Wilson score interval at 95 %."""
    if n <= 0:
        return 0.0, 0.0, 1.0
    p = k / n
    denom = 1 + Z95**2 / n
    centre = (p + Z95**2 / (2 * n)) / denom
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / denom
    return p, max(0.0, centre - half), min(1.0, centre + half)


def changed_share(classes, base) -> float:
    """The share of samples whose digit (``classes``) differs from the digit of the sample of
    the same latent in ``base`` (λ = 0), over the samples both have."""
    n = min(len(classes), len(base))
    if n == 0:
        return float("nan")
    return float((np.asarray(classes[:n]) != np.asarray(base[:n])).mean())


def excess(histogram, base, digits=(3, 8)) -> tuple[float, float, float]:
    """(difference, low, high): the share of ``digits`` in ``histogram`` minus their share in
    ``base``, with a 95 % Wald interval of the difference of two independent shares."""
    h, b = np.asarray(histogram, np.float64), np.asarray(base, np.float64)
    n1, n2 = h.sum(), b.sum()
    p1, p2 = h[list(digits)].sum() / n1, b[list(digits)].sum() / n2
    se = math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
    d = float(p1 - p2)
    return d, d - Z95 * se, d + Z95 * se
