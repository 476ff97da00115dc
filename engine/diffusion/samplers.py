"""Samplers. Gaussian degradation: the study's ancestral DDPM sampler, DDIM (eta = 0) and
DPM-Solver++(2M) (Lu et al. 2022).
Morph degradation (cold diffusion): direct restoration R(z_T, T) and the iterative sampler
z_{t-1} = z_t - D(x̂, t) + D(x̂, t - 1) of Bansal et al. (2022), from a held-out FashionMNIST image.

All return images in model space ([data.LO, data.HI]) and draw all randomness from ``generator``.
"""

from __future__ import annotations

import math

import torch

from engine.data.datasets import HI, IMAGE_SHAPE, LO
from engine.diffusion.degradations import Degradation
from engine.diffusion.schedules import Schedule
from engine.spec.components import SAMPLERS


def _coefficients(deg: Degradation) -> Schedule:
    """The degradation's schedule in float64 on the CPU, read as Python floats per step (no
    tiny kernels); from the float32 arrays the network was trained with."""
    return deg.schedule.to("cpu", torch.float64)


def _times(n: int, t: int, device) -> torch.Tensor:
    return torch.full((n,), float(t), device=device)


def _start(z: torch.Tensor | None, n: int, generator: torch.Generator, device) -> torch.Tensor:
    """z_T of the Gaussian samplers: ``z`` when given (n of them), else standard noise drawn
    from ``generator``."""
    if z is None:
        return torch.randn((n, *IMAGE_SHAPE), generator=generator, device=device)
    if tuple(z.shape) != (n, *IMAGE_SHAPE):
        raise ValueError(
            f"starting latents have shape {tuple(z.shape)}, expected {(n, *IMAGE_SHAPE)}"
        )
    return z


@torch.inference_mode()
def ddpm(
    model,
    deg: Degradation,
    n: int,
    generator: torch.Generator,
    device="cpu",
    on_step=None,
    progress=None,
    z: torch.Tensor | None = None,
) -> torch.Tensor:
    """Ancestral sampling over all T steps (Ho et al. 2020, sigma_t^2 = beta_t).
    ``on_step(t, z_t)`` sees every state from z_T down to z_0; ``progress(k, T)`` hears of
    each of the T network evaluations. ``z``, when given, is z_T (n of them) instead of noise
    drawn from ``generator``, which then draws only the per-step noise."""
    T = deg.T
    c = _coefficients(deg)
    betas, sqrt_alphas, sigmas = c.betas.tolist(), c.sqrt_alphas.tolist(), c.sqrt_betas.tolist()
    sqrt_one_minus_alpha_bar = c.sqrt_one_minus_alpha_bar.tolist()
    z = _start(z, n, generator, device)
    if on_step:
        on_step(T, z)
    for t in range(T, 0, -1):
        eps = model(z, _times(n, t, device) / T)
        z = (z - betas[t] / sqrt_one_minus_alpha_bar[t] * eps) / sqrt_alphas[t]
        if t > 1:
            z = z + sigmas[t] * torch.randn(z.shape, generator=generator, device=device)
        if on_step:
            on_step(t - 1, z)
        if progress:
            progress(T - t + 1, T)
    return z


def ddim_timesteps(T: int, steps: int) -> list[int]:
    """``steps + 1`` decreasing times from T to 0, evenly spaced, the first being T."""
    ts = torch.linspace(T, 0, steps + 1).round().long().tolist()
    return sorted(set(ts), reverse=True)


@torch.inference_mode()
def ddim(
    model,
    deg: Degradation,
    n: int,
    steps: int,
    generator: torch.Generator,
    device="cpu",
    progress=None,
    z: torch.Tensor | None = None,
) -> torch.Tensor:
    """Deterministic DDIM (Song et al. 2021) with ``steps`` network evaluations; the predicted
    clean image is clipped to the data range at each step. ``z``, when given, is z_T (n of
    them) instead of noise drawn from ``generator``."""
    T = deg.T
    c = _coefficients(deg)
    sqrt_a, sqrt_1ma = c.sqrt_alpha_bar.tolist(), c.sqrt_one_minus_alpha_bar.tolist()
    z = _start(z, n, generator, device)
    ts = ddim_timesteps(T, steps)
    for k, (t, t_prev) in enumerate(zip(ts[:-1], ts[1:]), 1):
        eps = model(z, _times(n, t, device) / T)
        x0 = ((z - sqrt_1ma[t] * eps) / sqrt_a[t]).clamp(LO, HI)
        eps = (z - sqrt_a[t] * x0) / sqrt_1ma[t]
        z = sqrt_a[t_prev] * x0 + sqrt_1ma[t_prev] * eps
        if progress:
            progress(k, len(ts) - 1)
    return z


def _dpmpp_update(z, x0, prev, c: dict, t: int, s: int) -> torch.Tensor:
    """One DPM-Solver++ step from t to s in data prediction: first order (DDIM's step) when
    ``prev`` is None, else the 2M step with ``prev`` = (x0 at the previous time, its h)."""
    h = c["lam"][s] - c["lam"][t]
    phi = math.expm1(-h)  # e^{-h} - 1, exact where h is small
    lin = c["sigma"][s] / c["sigma"][t]
    if prev is None:
        return lin * z - c["alpha"][s] * phi * x0
    x0_prev, h_prev = prev
    d1 = (x0 - x0_prev) * (h / h_prev)  # (1 / r) (D0 - D_prev), r = h_prev / h
    return lin * z - c["alpha"][s] * phi * x0 - 0.5 * c["alpha"][s] * phi * d1


@torch.inference_mode()
def dpmpp(
    model,
    deg: Degradation,
    n: int,
    steps: int,
    generator: torch.Generator,
    device="cpu",
    progress=None,
    z: torch.Tensor | None = None,
    clip: bool = True,
    on_step=None,
) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, the multistep second-order solver in data prediction)
    over DDIM's ``steps`` times, with the predicted clean image clipped to the data range
    (``clip``, as DDIM here). The first step is first order, so is the last (to sigma = 0, as
    diffusers' DPMSolverMultistepScheduler with ``final_sigmas_type = "zero"``); in between,
    each step reuses the previous step's prediction. λ_t = log(√ᾱ_t / √(1 - ᾱ_t)).
    ``on_step(s, z_s)`` sees the state after each step."""
    T = deg.T
    sch = _coefficients(deg)
    alpha, sigma = sch.sqrt_alpha_bar.tolist(), sch.sqrt_one_minus_alpha_bar.tolist()
    lam = [math.log(a / q) if q > 0 else math.inf for a, q in zip(alpha, sigma)]
    c = {"alpha": alpha, "sigma": sigma, "lam": lam}
    z = _start(z, n, generator, device)
    ts = ddim_timesteps(T, steps)
    prev = None
    for k, (t, s) in enumerate(zip(ts[:-1], ts[1:]), 1):
        eps = model(z, _times(n, t, device) / T)
        x0 = (z - sigma[t] * eps) / alpha[t]
        if clip:
            x0 = x0.clamp(LO, HI)
        z = _dpmpp_update(z, x0, None if s == 0 else prev, c, t, s)
        prev = (x0, lam[s] - lam[t])
        if on_step:
            on_step(s, z)
        if progress:
            progress(k, len(ts) - 1)
    return z


@torch.inference_mode()
def direct(model, deg: Degradation, z: torch.Tensor) -> torch.Tensor:
    """Direct restoration x̂ = R(z_T, T)."""
    return model(z, _times(len(z), deg.T, z.device) / deg.T)


@torch.inference_mode()
def iterative(
    model,
    deg: Degradation,
    z: torch.Tensor,
    latent: torch.Tensor,
    steps: int,
    mode: str = "estimate",
    progress=None,
) -> torch.Tensor:
    """The cold-diffusion sampler from z = z_T down to z_0 in ``steps`` strides (every step
    when ``steps`` = T): x̂ = R(z_t, t), clipped to the data range;
    z_s = z_t - D(x̂, t) + D(x̂, s). D's latent is ``latent`` (``mode`` "start", the image the
    sampler started from) or the one re-estimated from z_t and x̂ (``mode`` "estimate":
    (z_t - sqrt(a_t) x̂) / sqrt(1 - a_t), which makes the step DDIM's with a predicted x)."""
    T = deg.T
    c = _coefficients(deg)
    sqrt_a, sqrt_1ma = c.sqrt_alpha_bar.tolist(), c.sqrt_one_minus_alpha_bar.tolist()
    n = len(z)
    ts = ddim_timesteps(T, steps)
    for k, (t, s) in enumerate(zip(ts[:-1], ts[1:]), 1):
        x = model(z, _times(n, t, z.device) / T).clamp(LO, HI)
        if mode == "estimate":
            latent = (z - sqrt_a[t] * x) / sqrt_1ma[t]
        z = z + (sqrt_a[s] - sqrt_a[t]) * x + (sqrt_1ma[s] - sqrt_1ma[t]) * latent
        if progress:
            progress(k, len(ts) - 1)
    return z


# The registered samplers (engine/spec/components.py) share one signature:
# run(model, deg, n, *, steps, generator, device, latent, progress, z) -> n images in model space;
# progress(k, K), when given, hears of each of the K network evaluations; z, when given, is the
# n starting latents z_T (Gaussian noise for ddpm/ddim, a FashionMNIST-like image for the morph
# samplers) instead of the ones the sampler draws from ``generator`` (which then draws only
# ddpm's per-step noise). Without z, the draws are exactly those of the samplers before z existed.


def run_ddpm(model, deg, n, *, steps, generator, device, latent, progress=None, z=None):
    return ddpm(model, deg, n, generator, device, progress=progress, z=z)


def run_ddim(model, deg, n, *, steps, generator, device, latent, progress=None, z=None):
    return ddim(model, deg, n, steps, generator, device, progress=progress, z=z)


def run_dpmpp(model, deg, n, *, steps, generator, device, latent, progress=None, z=None):
    return dpmpp(model, deg, n, steps, generator, device, progress=progress, z=z)


def run_direct(model, deg, n, *, steps, generator, device, latent, progress=None, z=None):
    out = direct(model, deg, deg.latents(n, generator, held_out=True) if z is None else z)
    if progress:
        progress(1, 1)
    return out


def run_iterative(model, deg, n, *, steps, generator, device, latent, progress=None, z=None):
    if z is None:
        z = deg.latents(n, generator, held_out=True)
    return iterative(model, deg, z, z, steps, latent, progress=progress)


def describe_ddim(steps: int, T: int) -> str:
    return f"DDIM-{len(ddim_timesteps(T, steps)) - 1}"


def describe_dpmpp(steps: int, T: int) -> str:
    return f"DPM++-{len(ddim_timesteps(T, steps)) - 1}"


def describe_iterative(steps: int, T: int) -> str:
    return f"iterative-{len(ddim_timesteps(T, steps)) - 1}"


def sample(
    model,
    deg: Degradation,
    sampler: str,
    n: int,
    steps: int,
    generator: torch.Generator | None,
    device="cpu",
    batch: int = 500,
    latent: str = "estimate",
    progress=None,
    z: torch.Tensor | None = None,
) -> torch.Tensor:
    """``n`` images in model space with the named (registered) sampler, in batches of
    ``batch``. The morph samplers start from held-out FashionMNIST images (z_T = z).
    ``progress(done, total)`` hears of every network evaluation of every batch. ``z``, when
    given, holds the ``n`` starting latents z_T (sliced per batch) instead of drawing them;
    ``generator`` then draws only ddpm's per-step noise."""
    if z is not None and len(z) != n:
        raise ValueError(f"{len(z)} starting latents for {n} samples")
    run = SAMPLERS.get(sampler).run
    was_training = model.training
    model.eval()
    out = []
    batches = math.ceil(n / batch)
    try:
        for i, start in enumerate(range(0, n, batch)):
            m = min(batch, n - start)
            within = progress and (lambda k, K, i=i: progress(i * K + k, batches * K))
            given = {} if z is None else {"z": z[start : start + m]}  # a sampler without z works
            out.append(
                run(
                    model,
                    deg,
                    m,
                    steps=steps,
                    generator=generator,
                    device=device,
                    latent=latent,
                    progress=within,
                    **given,
                )
            )
    finally:
        model.train(was_training)
    return torch.cat(out).clamp(LO, HI)


def describe(sampler: str, steps: int, T: int) -> str:
    """The sampler's name for tables and events, e.g. "DDIM-50" or "DDPM-1000"."""
    return SAMPLERS.get(sampler).describe(steps, T)
