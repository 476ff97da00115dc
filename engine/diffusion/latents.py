"""The latents of the sampling studies (issue 10) and sampling from them.

A study takes a trained run and changes only where its sampler starts: z_T. Three kinds, each
with a value v per study row:

* ``noise`` (v = λ >= 0): the unperturbed latents z plus λ·ε, ε standard normal. Morph: z are
  held-out FashionMNIST images in model space; Gaussian (DDPM) run: z is the sampler's
  starting noise z_T. Not rescaled (a Gaussian latent then has variance 1 + λ²) and not
  clipped (a morph latent may leave [LO, HI]): the study's definition, and λ = 0 gives exactly
  the unperturbed latents.
* ``interpolation`` (v = N >= 1, an integer): z* = (1/N) Σ z_i over N latents, the first being
  the unperturbed one. Morph: N held-out FashionMNIST images in model space (not rescaled: the
  mean image). Gaussian: N standard normal latents, the mean multiplied by sqrt(N) so that z* is
  again standard normal. N = 1 gives exactly the unperturbed latents.
* ``gmm`` (v = components >= 1; morph only): scikit-learn's ``GaussianMixture`` fitted to
  :data:`GMM_FIT_SIZE` FashionMNIST *training* images in model space, flattened to 784 values
  (optionally in a ``pca``-component PCA space), new latents drawn from it (back through the
  PCA), shuffled, clipped to [LO, HI] and shaped ``IMAGE_SHAPE``.

Seeds. For a study seed s, the unperturbed latents are what the run's sampler would draw first
from ``torch.Generator(device).manual_seed(s)`` (:func:`baseline_latents`); the study's own
draws (ε, the other N - 1 latents) come from a second generator seeded s +
:data:`STUDY_SEED_OFFSET`, so every value of a study shares the same z (and ε), and
:func:`study_samples` hands the first generator, after that draw, to the sampler (DDPM's
per-step noise). Hence λ = 0 and N = 1 give, for n <= ``batch``, exactly the images of
``samplers.sample(model, deg, sampler, n, steps, torch.Generator(device).manual_seed(s))``.
The GMM uses ``random_state = s`` for the subsample, the PCA, the fit and the draws.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from engine.data import datasets
from engine.data.datasets import HI, IMAGE_SHAPE, LO
from engine.diffusion import samplers
from engine.diffusion.degradations import Degradation, Morph
from engine.spec.sections import (
    COVARIANCES,  # GaussianMixture's covariance_type
    MAX_AVERAGED,
    MAX_COMPONENTS,
)
from engine.spec.sections import STUDY_KINDS as KINDS

STUDY_SEED_OFFSET = 7919  # the generator of a study's own draws: seed + offset
# FashionMNIST training images the GMM is fitted on (a seeded subsample of the 60,000): a full
# covariance fit on all of them is far too slow. Measured on 2 CPU cores, 5,000 images, 784
# dimensions: 1 component full 2 s, 10 components full 26 s, 10 diag 6 s, 10 full in a 50-PCA
# space 10 s.
GMM_FIT_SIZE = 5000
GMM_FIT_SECONDS: dict[tuple, float] = {}  # (components, covariance, pca, seed, size) -> last fit


def check(kind: str, value, degradation: str, *, covariance: str = "full", pca: int = 0) -> None:
    """Raise ValueError, one line, when ``kind`` at ``value`` cannot be studied on a run of
    ``degradation`` ("gaussian" or "morph"); called by :func:`study_latents`, and cheap enough
    for config validation."""
    if kind not in KINDS:
        raise ValueError(f"unknown study kind {kind!r}; expected one of {', '.join(KINDS)}")
    if kind == "noise":
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or value < 0
        ):
            raise ValueError(f"noise: λ must be a number >= 0, got {value!r}")
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value != int(value)
        or value < 1
    ):
        what = "N (latents averaged)" if kind == "interpolation" else "components"
        raise ValueError(f"{kind}: {what} must be an integer >= 1, got {value!r}")
    if kind == "interpolation" and value > MAX_AVERAGED:
        raise ValueError(
            f"interpolation: N (latents averaged) must be at most {MAX_AVERAGED}, got {value!r}"
        )
    if kind == "gmm":
        if value > MAX_COMPONENTS:
            raise ValueError(f"gmm: components must be at most {MAX_COMPONENTS}, got {value!r}")
        if degradation != "morph":
            raise ValueError(
                f"gmm latents need a morph run (a Gaussian mixture fitted to its "
                f"FashionMNIST latents); this run's degradation is {degradation}"
            )
        if covariance not in COVARIANCES:
            raise ValueError(
                f"gmm: covariance must be one of {', '.join(COVARIANCES)}, got {covariance!r}"
            )
        dims = math.prod(IMAGE_SHAPE)
        if isinstance(pca, bool) or not isinstance(pca, int) or not 0 <= pca <= dims:
            raise ValueError(f"gmm: pca must be an integer from 0 (none) to {dims}, got {pca!r}")


def baseline_latents(deg: Degradation, n: int, seed: int) -> torch.Tensor:
    """The unperturbed latents of a study with ``seed``: the ``n`` z_T the run's sampler draws
    first from ``torch.Generator(device).manual_seed(seed)`` (held-out FashionMNIST images for a
    morph run, standard normal noise for a Gaussian one)."""
    return _draw_baseline(deg, n, seed)[0]


def _draw_baseline(deg, n, seed):
    g = torch.Generator(device=deg.device).manual_seed(seed)
    return deg.latents(n, g, held_out=True), g


def _extra_generator(deg, seed) -> torch.Generator:
    return torch.Generator(device=deg.device).manual_seed(seed + STUDY_SEED_OFFSET)


def _latents(kind, value, deg, n, seed, covariance, pca):
    """(n latents, the generator the sampler continues with)."""
    check(kind, value, deg.name, covariance=covariance, pca=pca)
    if kind == "gmm":
        z = gmm_latents(deg, n, int(value), seed, covariance=covariance, pca=pca)
        return z, torch.Generator(device=deg.device).manual_seed(seed)
    z, g = _draw_baseline(deg, n, seed)
    if kind == "noise":
        if value == 0:
            return z, g
        eps = torch.randn(z.shape, generator=_extra_generator(deg, seed), device=z.device)
        return z + float(value) * eps, g
    N = int(value)  # interpolation
    if N == 1:
        return z, g
    extra = _extra_generator(deg, seed)
    total = z.clone()  # a running sum: memory for two sets of latents, whatever N
    for _ in range(N - 1):
        total += deg.latents(n, extra, held_out=True)
    mean = total / N
    return (mean * math.sqrt(N) if deg.name == "gaussian" else mean), g


def study_latents(
    kind: str, value, deg: Degradation, n: int, seed: int, *, covariance: str = "full", pca: int = 0
) -> torch.Tensor:
    """``n`` starting latents (n, *IMAGE_SHAPE), float32 on the degradation's device, of study
    ``kind`` at ``value`` (λ, N or components; see the module's docstring), reproducible from
    ``seed``. ``covariance`` and ``pca`` are the ``gmm`` settings. A kind or value that does not
    fit the run raises ValueError with one line (see :func:`check`)."""
    return _latents(kind, value, deg, n, seed, covariance, pca)[0]


def sample_from(
    model,
    deg: Degradation,
    sampler: str,
    z: torch.Tensor,
    steps: int,
    latent_mode: str = "estimate",
    generator: torch.Generator | None = None,
    batch: int = 500,
    progress=None,
) -> torch.Tensor:
    """The images (model space, clipped to [LO, HI]) of the registered ``sampler`` started from
    the latents ``z`` rather than from latents it draws: ``ddim`` and ``ddpm`` take z = z_T
    (Gaussian noise), ``direct`` and ``iterative`` the FashionMNIST latent z_T (``latent_mode``
    is the iterative sampler's "estimate" or "start"). Only ``ddpm`` uses ``generator`` (its
    per-step noise; None: torch's global generator). Runs on z's device, in batches of
    ``batch``."""
    return samplers.sample(
        model,
        deg,
        sampler,
        len(z),
        steps,
        generator,
        z.device,
        batch=batch,
        latent=latent_mode,
        progress=progress,
        z=z,
    )


def study_samples(
    model,
    deg: Degradation,
    sampler: str,
    kind: str,
    value,
    n: int,
    steps: int,
    seed: int,
    *,
    latent_mode: str = "estimate",
    covariance: str = "full",
    pca: int = 0,
    batch: int = 500,
    progress=None,
) -> torch.Tensor:
    """``n`` images of the study ``kind`` at ``value``: :func:`study_latents` through
    :func:`sample_from`, the sampler continuing the seed's generator (so that λ = 0 and N = 1
    give exactly ``samplers.sample`` with that generator when n <= ``batch``)."""
    z, g = _latents(kind, value, deg, n, seed, covariance, pca)
    return sample_from(model, deg, sampler, z, steps, latent_mode, g, batch, progress)


# --- Gaussian-mixture latents ----------------------------------------------------------------


def fit_gmm(
    train_latents: torch.Tensor,
    components: int,
    seed: int,
    *,
    covariance: str = "full",
    pca: int = 0,
    fit_size: int | None = None,
):
    """(pca or None, GaussianMixture) fitted to ``fit_size`` (default :data:`GMM_FIT_SIZE`)
    images of ``train_latents`` (uint8 (N, 28, 28), FashionMNIST's training split), picked with
    ``random_state = seed`` and flattened in model space; ``pca`` > 0 fits in that many PCA
    components. The fit's seconds are kept in :data:`GMM_FIT_SECONDS`."""
    # lazy: scikit-learn takes seconds to import and only gmm studies use it
    from sklearn.decomposition import PCA
    from sklearn.mixture import GaussianMixture

    size = min(GMM_FIT_SIZE if fit_size is None else fit_size, len(train_latents))
    rng = np.random.RandomState(seed)
    pick = np.sort(rng.choice(len(train_latents), size, replace=False))
    images = datasets.to_model(train_latents[torch.from_numpy(pick)].cpu()).reshape(size, -1)
    x = images.numpy().astype(np.float64)
    t0 = time.time()
    reducer = PCA(n_components=pca, random_state=seed).fit(x) if pca else None
    if reducer is not None:
        x = reducer.transform(x)
    gmm = GaussianMixture(
        n_components=components, covariance_type=covariance, random_state=seed
    ).fit(x)
    GMM_FIT_SECONDS[(components, covariance, pca, seed, size)] = round(time.time() - t0, 3)
    return reducer, gmm


def gmm_latents(
    deg: Degradation, n: int, components: int, seed: int, *, covariance: str = "full", pca: int = 0
) -> torch.Tensor:
    """``n`` latents drawn from a Gaussian mixture fitted (:func:`fit_gmm`) to the morph run's
    FashionMNIST training latents; GaussianMixture.sample returns them grouped by component, so
    they are shuffled (``seed``), then clipped to [LO, HI]."""
    check("gmm", components, deg.name, covariance=covariance, pca=pca)
    assert isinstance(deg, Morph)  # check() refused every other degradation
    reducer, gmm = fit_gmm(deg.pools[False], components, seed, covariance=covariance, pca=pca)
    draws, _ = gmm.sample(n)
    if reducer is not None:
        draws = reducer.inverse_transform(draws)
    draws = draws[np.random.RandomState(seed + STUDY_SEED_OFFSET).permutation(n)]
    z = torch.from_numpy(np.clip(draws, LO, HI).astype(np.float32)).reshape(n, *IMAGE_SHAPE)
    return z.to(deg.device)
