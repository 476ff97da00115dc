"""Beta schedules for the DDPM forward process.

Every array is float64 and indexed by t = 0..T: t = 0 is "no noise"
(beta_0 = 0, alpha_bar_0 = 1) and t = 1..T are the real diffusion steps.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from engine.spec.components import SCHEDULES
from engine.spec.registry import params_of



@dataclass(frozen=True)
class Schedule:
    kind: str
    T: int
    betas: torch.Tensor  # (T+1,), betas[0] = 0
    alphas: torch.Tensor  # 1 - betas
    alpha_bar: torch.Tensor  # cumulative product of alphas, alpha_bar[0] = 1


# The betas of each kind, beta_1..beta_T; registered in engine/spec/components.py with their
# parameters (each takes T and that kind's parameter dataclass).

def linear_betas(T: int, p) -> torch.Tensor:
    # linspace hits both endpoints exactly; for T == 1 it is just [beta_min].
    return torch.linspace(p.beta_min, p.beta_max, T, dtype=torch.float64)


def inverse_linear_betas(T: int, p) -> torch.Tensor:
    return linear_betas(T, p).flip(0)


def cosine_betas(T: int, p) -> torch.Tensor:
    """Nichol & Dhariwal (2021): beta_t = min(1 - f(t)/f(t-1), max_beta)."""
    t = torch.arange(T + 1, dtype=torch.float64)
    f = torch.cos((t / T + p.s) / (1 + p.s) * math.pi / 2) ** 2
    return (1 - f[1:] / f[:-1]).clamp(max=p.max_beta)


def constant_betas(T: int, p) -> torch.Tensor:
    return torch.full((T,), p.beta, dtype=torch.float64)


def make_schedule(kind: str, T: int = 1000, **params) -> Schedule:
    """Build the registered schedule ``kind`` with T steps; ``params`` are its keys (those it
    does not declare are ignored, missing ones get their defaults). An unknown kind raises
    ValueError listing the known ones."""
    entry = SCHEDULES.get(kind)
    steps = entry.betas(T, params_of(entry.params, params))
    betas = torch.cat([torch.zeros(1, dtype=torch.float64), steps])
    alphas = 1 - betas
    return Schedule(kind, T, betas, alphas, torch.cumprod(alphas, 0))


def from_spec(schedule) -> Schedule:
    """Build a schedule from a run's ``schedule`` section."""
    return make_schedule(schedule.kind, schedule.T, **dataclasses.asdict(schedule.params()))
