"""Samplers for the Gaussian degradation: the study's ancestral DDPM sampler and DDIM (eta = 0).

Both return images in model space ([-0.5, 0.5]) and draw all randomness from ``generator``.
"""
from __future__ import annotations

import math

import torch

from .degradations import Gaussian

LO, HI = -0.5, 0.5  # the data range in model space


def _times(n: int, t: int, device) -> torch.Tensor:
    return torch.full((n,), float(t), device=device)


@torch.no_grad()
def ddpm(model, deg: Gaussian, n: int, generator: torch.Generator, device="cpu",
         on_step=None) -> torch.Tensor:
    """Ancestral sampling over all T steps (Ho et al. 2020, sigma_t^2 = beta_t).
    ``on_step(t, z_t)`` sees every state from z_T down to z_0."""
    T = deg.T
    betas, alpha_bar = deg.betas.tolist(), deg.alpha_bar.tolist()  # Python floats: no tiny kernels
    z = torch.randn((n, 1, 28, 28), generator=generator, device=device)
    if on_step:
        on_step(T, z)
    for t in range(T, 0, -1):
        beta, a_bar = betas[t], alpha_bar[t]
        eps = model(z, _times(n, t, device) / T)
        z = (z - beta / math.sqrt(1 - a_bar) * eps) / math.sqrt(1 - beta)
        if t > 1:
            z = z + math.sqrt(beta) * torch.randn(z.shape, generator=generator, device=device)
        if on_step:
            on_step(t - 1, z)
    return z


def ddim_timesteps(T: int, steps: int) -> list[int]:
    """``steps + 1`` decreasing times from T to 0, evenly spaced, the first being T."""
    ts = torch.linspace(T, 0, steps + 1).round().long().tolist()
    return sorted(set(ts), reverse=True)


@torch.no_grad()
def ddim(model, deg: Gaussian, n: int, steps: int, generator: torch.Generator,
         device="cpu") -> torch.Tensor:
    """Deterministic DDIM (Song et al. 2021) with ``steps`` network evaluations; the predicted
    clean image is clipped to the data range at each step."""
    T = deg.T
    alpha_bar = deg.alpha_bar.tolist()
    z = torch.randn((n, 1, 28, 28), generator=generator, device=device)
    ts = ddim_timesteps(T, steps)
    for t, t_prev in zip(ts[:-1], ts[1:]):
        a, a_prev = alpha_bar[t], alpha_bar[t_prev]
        eps = model(z, _times(n, t, device) / T)
        x0 = ((z - math.sqrt(1 - a) * eps) / math.sqrt(a)).clamp(LO, HI)
        eps = (z - math.sqrt(a) * x0) / math.sqrt(1 - a)
        z = math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev) * eps
    return z


def sample(model, deg: Gaussian, sampler: str, n: int, steps: int, generator: torch.Generator,
           device="cpu", batch: int = 500) -> torch.Tensor:
    """``n`` images in model space with the named sampler, in batches of ``batch``."""
    was_training = model.training
    model.eval()
    out = []
    try:
        for start in range(0, n, batch):
            m = min(batch, n - start)
            if sampler == "ddpm":
                out.append(ddpm(model, deg, m, generator, device))
            elif sampler == "ddim":
                out.append(ddim(model, deg, m, steps, generator, device))
            else:
                raise ValueError(f"unknown sampler {sampler!r} (expected 'ddpm' or 'ddim')")
    finally:
        model.train(was_training)
    return torch.cat(out).clamp(LO, HI)


def describe(sampler: str, steps: int, T: int) -> str:
    return f"DDPM-{T}" if sampler == "ddpm" else f"DDIM-{len(ddim_timesteps(T, steps)) - 1}"
