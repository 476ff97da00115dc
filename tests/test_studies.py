"""The latents of the sampling studies (engine/diffusion/latents.py) on a tiny trained morph run and a tiny
Gaussian run: sampling from given latents is the samplers' own sampling, λ = 0 and N = 1 are
plain sampling, the perturbations are the documented ones, GMM draws are new latents in range,
and bad kinds or values are one line."""

from __future__ import annotations

import math
import threading

import pytest
import torch
from conftest import tiny_study

from engine.data import datasets as data
from engine.diffusion import latents as studies
from engine.diffusion import samplers
from engine.jobs.checkpoints import load_model
from engine.jobs.worker import execute
from engine.rundir.run import prepare_runs
from engine.spec.experiments import load_experiments

MORPH = """degradation = "morph"
network = { kind = "unet", unet_channels = [8, 16, 16] }
evaluation = { sampler = "iterative", final_sampler = "same" }
"""
STEPS, SEED, N = 4, 3, 6


def _trained(folder, name: str, extra: str = ""):
    f = tiny_study(folder / f"{name}.toml", name=name, epochs=1)  # T = 40, 256 images
    if extra:
        f.write_text(f.read_text() + extra)
    run = prepare_runs(load_experiments(f).runs, folder / "runs")[0]
    assert execute(run, threading.Event()) == "finished", run.status()
    return load_model(run)


@pytest.fixture(scope="module")
def morph_run(tmp_path_factory):
    return _trained(tmp_path_factory.mktemp("morph"), "morph", MORPH)


@pytest.fixture(scope="module")
def gauss_run(tmp_path_factory):
    return _trained(tmp_path_factory.mktemp("gauss"), "gauss")


@pytest.fixture(
    params=[("morph", "direct"), ("morph", "iterative"), ("gauss", "ddim"), ("gauss", "ddpm")],
    ids=lambda p: p[1],
)
def run_sampler(request):
    model, deg = request.getfixturevalue(f"{request.param[0]}_run")
    return model, deg, request.param[1]


def plain(model, deg, sampler, n=N, seed=SEED):
    return samplers.sample(model, deg, sampler, n, STEPS, torch.Generator().manual_seed(seed))


# --- sampling from given latents -----------------------------------------------------------


def test_sample_from_the_samplers_own_latents_is_its_sampling(run_sampler):
    model, deg, sampler = run_sampler
    g = torch.Generator().manual_seed(SEED)
    z = deg.latents(N, g, held_out=True)  # what the sampler draws first (ddpm: then its noise)
    got = studies.sample_from(model, deg, sampler, z, STEPS, generator=g)
    assert torch.equal(got, plain(model, deg, sampler))
    assert torch.equal(studies.baseline_latents(deg, N, SEED), z)
    other = studies.sample_from(
        model, deg, sampler, torch.flip(z, [0]), STEPS, generator=torch.Generator().manual_seed(0)
    )
    assert not torch.equal(other, got)  # the latents are used


def test_latents_of_the_wrong_number_are_refused(morph_run):
    model, deg = morph_run
    z = studies.baseline_latents(deg, 4, SEED)
    with pytest.raises(ValueError, match="4 starting latents for 5 samples"):
        samplers.sample(model, deg, "direct", 5, STEPS, None, z=z)


def _cdist(a, b):  # exact distances (the matrix-product form loses ~0.005 to cancellation)
    return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")


# --- noise and interpolation ---------------------------------------------------------------


def test_lambda_0_and_n_1_are_plain_sampling(run_sampler):
    model, deg, sampler = run_sampler
    want = plain(model, deg, sampler)
    for kind, value in (("noise", 0), ("noise", 0.0), ("interpolation", 1)):
        assert torch.equal(
            studies.study_latents(kind, value, deg, N, SEED), studies.baseline_latents(deg, N, SEED)
        )
    for kind, value in (("noise", 0), ("interpolation", 1)):
        got = studies.study_samples(model, deg, sampler, kind, value, N, STEPS, SEED)
        assert torch.equal(got, want), (kind, value)
    got = studies.study_samples(model, deg, sampler, "noise", 0.25, N, STEPS, SEED)
    assert not torch.equal(got, want) and got.shape == want.shape


@pytest.mark.parametrize("which", ["morph", "gauss"])
def test_noise_adds_lambda_times_one_epsilon_unscaled(request, which):
    _, deg = request.getfixturevalue(f"{which}_run")
    n = 200
    z0 = studies.baseline_latents(deg, n, SEED)
    d1 = studies.study_latents("noise", 0.1, deg, n, SEED) - z0
    d2 = studies.study_latents("noise", 0.5, deg, n, SEED) - z0
    torch.testing.assert_close(d2, 5 * d1, atol=1e-5, rtol=0)  # the same ε for every λ
    assert abs(d1.std().item() - 0.1) < 0.003  # λ·ε, ε standard normal, not rescaled
    other = studies.study_latents("noise", 0.1, deg, n, SEED + 1) - studies.baseline_latents(
        deg, n, SEED + 1
    )
    assert not torch.allclose(other, d1)  # and ε depends on the seed


def test_gaussian_interpolation_is_rescaled_to_unit_variance(gauss_run):
    _, deg = gauss_run
    n = 200
    for N_ in (5, 20):
        z = studies.study_latents("interpolation", N_, deg, n, SEED)
        assert z.shape == (n, *data.IMAGE_SHAPE)
        assert abs(z.std().item() - 1) < 0.01 and abs(z.mean().item()) < 0.01
        # the mean of N latents, the first the unperturbed one: correlation 1/sqrt(N) with it
        z0 = studies.baseline_latents(deg, n, SEED)
        r = torch.corrcoef(torch.stack([z.flatten(), z0.flatten()]))[0, 1].item()
        assert abs(r - 1 / math.sqrt(N_)) < 0.01


def test_morph_interpolation_is_the_mean_of_held_out_images(morph_run):
    _, deg = morph_run
    n = 8
    z0 = studies.baseline_latents(deg, n, SEED)
    z = studies.study_latents("interpolation", 2, deg, n, SEED)
    assert data.LO <= z.min() and z.max() <= data.HI  # a mean of images: no rescaling
    second = (2 * z - z0).flatten(1)  # the other image of each pair
    held_out = data.to_model(deg.pools[True]).flatten(1)
    assert _cdist(second, held_out).min(1).values.max() < 1e-4


# --- Gaussian-mixture latents --------------------------------------------------------------


def _min_distance_to(latents: torch.Tensor, pool_uint8: torch.Tensor) -> torch.Tensor:
    x = latents.flatten(1)
    out = []
    for chunk in pool_uint8.split(10_000):
        out.append(_cdist(x, data.to_model(chunk).flatten(1)).min(1).values)
    return torch.stack(out).min(0).values


@pytest.mark.parametrize("components,covariance,pca", [(3, "full", 20), (2, "diag", 0)])
def test_gmm_draws_new_latents_in_range(morph_run, components, covariance, pca):
    _, deg = morph_run
    n = 16
    z = studies.study_latents("gmm", components, deg, n, SEED, covariance=covariance, pca=pca)
    assert z.shape == (n, *data.IMAGE_SHAPE) and z.dtype == torch.float32
    assert data.LO <= z.min() and z.max() <= data.HI
    assert _min_distance_to(z, deg.pools[False]).min() > 0  # none is a training latent
    assert _min_distance_to(z, deg.pools[True]).min() > 0
    assert len({tuple(v.flatten().tolist()) for v in z}) == n  # all distinct
    again = studies.study_latents("gmm", components, deg, n, SEED, covariance=covariance, pca=pca)
    assert torch.equal(z, again)  # reproducible from the seed
    assert not torch.equal(
        z,
        studies.study_latents("gmm", components, deg, n, SEED + 1, covariance=covariance, pca=pca),
    )
    key = (components, covariance, pca, SEED, studies.GMM_FIT_SIZE)
    assert studies.GMM_FIT_SECONDS[key] > 0


def test_gmm_samples_run_through_the_morph_samplers(morph_run):
    model, deg = morph_run
    for sampler in ("direct", "iterative"):
        x = studies.study_samples(model, deg, sampler, "gmm", 2, 5, STEPS, SEED, pca=10)
        assert x.shape == (5, *data.IMAGE_SHAPE) and torch.isfinite(x).all()


# --- bad input -----------------------------------------------------------------------------


def test_gmm_on_a_gaussian_run_is_one_line(gauss_run):
    model, deg = gauss_run
    with pytest.raises(ValueError) as e:
        studies.study_latents("gmm", 3, deg, 4, SEED)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("gmm latents need a morph run")
    assert msg.endswith("this run's degradation is gaussian")
    with pytest.raises(ValueError, match="^gmm latents need a morph run"):
        studies.study_samples(model, deg, "ddim", "gmm", 3, 4, STEPS, SEED)


@pytest.mark.parametrize(
    "kind,value,kw,start",
    [
        ("noise", -0.1, {}, "noise: λ must be a number >= 0"),
        ("noise", float("nan"), {}, "noise: λ must be a number >= 0"),
        ("interpolation", 0, {}, "interpolation: N (latents averaged) must be an integer >= 1"),
        ("interpolation", 2.5, {}, "interpolation: N (latents averaged) must be an integer >= 1"),
        ("interpolation", 1001, {}, "interpolation: N (latents averaged) must be at most 1000"),
        ("gmm", 0, {}, "gmm: components must be an integer >= 1"),
        ("gmm", 101, {}, "gmm: components must be at most 100"),
        (
            "gmm",
            2,
            {"covariance": "round"},
            "gmm: covariance must be one of full, diag, tied, spherical",
        ),
        ("gmm", 2, {"pca": 785}, "gmm: pca must be an integer from 0 (none) to 784"),
        ("mix", 1, {}, "unknown study kind 'mix'; expected one of noise, interpolation, gmm"),
    ],
)
def test_bad_kinds_and_values_are_one_line(kind, value, kw, start):
    with pytest.raises(ValueError) as e:
        studies.check(kind, value, "morph", **kw)
    assert str(e.value).startswith(start) and "\n" not in str(e.value)
