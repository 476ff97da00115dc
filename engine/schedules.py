"""Beta schedules for the DDPM forward process.

Every array is float64 and indexed by t = 0..T: t = 0 is "no noise"
(beta_0 = 0, alpha_bar_0 = 1) and t = 1..T are the real diffusion steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

KINDS = ("linear", "cosine", "constant", "inverse_linear")


@dataclass(frozen=True)
class Schedule:
    kind: str
    T: int
    betas: torch.Tensor  # (T+1,), betas[0] = 0
    alphas: torch.Tensor  # 1 - betas
    alpha_bar: torch.Tensor  # cumulative product of alphas, alpha_bar[0] = 1


def _linear(T: int, beta_min: float, beta_max: float) -> torch.Tensor:
    # linspace hits both endpoints exactly; for T == 1 it is just [beta_min].
    return torch.linspace(beta_min, beta_max, T, dtype=torch.float64)


def _cosine(T: int, s: float, max_beta: float) -> torch.Tensor:
    """Nichol & Dhariwal (2021): beta_t = min(1 - f(t)/f(t-1), max_beta)."""
    t = torch.arange(T + 1, dtype=torch.float64)
    f = torch.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2
    return (1 - f[1:] / f[:-1]).clamp(max=max_beta)


def make_schedule(kind: str, T: int = 1000, *, beta_min: float = 1e-4, beta_max: float = 0.02,
                  s: float = 0.008, max_beta: float = 0.1, beta: float = 0.01) -> Schedule:
    """Build the schedule `kind` with T steps (parameters not used by `kind` are ignored)."""
    if kind == "linear":
        steps = _linear(T, beta_min, beta_max)
    elif kind == "inverse_linear":
        steps = _linear(T, beta_min, beta_max).flip(0)
    elif kind == "cosine":
        steps = _cosine(T, s, max_beta)
    elif kind == "constant":
        steps = torch.full((T,), beta, dtype=torch.float64)
    else:
        raise ValueError(f"unknown schedule kind {kind!r}; expected one of {', '.join(KINDS)}")
    betas = torch.cat([torch.zeros(1, dtype=torch.float64), steps])
    alphas = 1 - betas
    return Schedule(kind, T, betas, alphas, torch.cumprod(alphas, 0))


def from_spec(schedule_cfg: dict) -> Schedule:
    """Build a schedule from a config's ``schedule`` table."""
    params = ("T", "beta_min", "beta_max", "s", "max_beta", "beta")
    return make_schedule(schedule_cfg["kind"], **{k: schedule_cfg[k] for k in params})
