"""Beta schedules for the DDPM forward process, and every coefficient derived from them.

Every array is indexed by t = 0..T: t = 0 is "no noise" (beta_0 = 0, alpha_bar_0 = 1) and
t = 1..T are the real diffusion steps. A schedule is built in float64 on the CPU; a degradation
keeps a float32 copy on its device (:meth:`Schedule.to`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import cached_property

import torch

from engine.spec.components import SCHEDULES
from engine.spec.registry import params_of


@dataclass(frozen=True)
class Schedule:
    """A noise schedule and every coefficient derived from it, named as in Ho et al. (2020):
    the degradations and samplers read them here and compute none themselves (as in
    improved-diffusion, where one class owns the schedule's arrays).

    The schedule is ``betas`` and ``alpha_bar``; each other array is derived from those two, in
    their dtype and on their device, when first read (so a float32 copy gives exactly the
    numbers that float32 arithmetic on its ``alpha_bar`` gives)."""

    kind: str
    T: int
    betas: torch.Tensor  # β_t, (T+1,), betas[0] = 0
    alpha_bar: torch.Tensor  # ᾱ_t = Π_{s<=t} α_s, alpha_bar[0] = 1

    @cached_property
    def alphas(self) -> torch.Tensor:
        """α_t = 1 - β_t."""
        return 1 - self.betas

    @cached_property
    def sqrt_alphas(self) -> torch.Tensor:
        """√α_t: the ancestral sampler divides by it."""
        return self.alphas.sqrt()

    @cached_property
    def sqrt_betas(self) -> torch.Tensor:
        """σ_t = √β_t: the ancestral sampler's noise (σ_t² = β_t, Ho et al.'s first choice)."""
        return self.betas.sqrt()

    @cached_property
    def sqrt_alpha_bar(self) -> torch.Tensor:
        """√ᾱ_t: the weight of the image in z_t = √ᾱ_t x + √(1 - ᾱ_t) z."""
        return self.alpha_bar.sqrt()

    @cached_property
    def sqrt_one_minus_alpha_bar(self) -> torch.Tensor:
        """√(1 - ᾱ_t): the weight of the latent in z_t."""
        return (1 - self.alpha_bar).sqrt()

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> Schedule:
        """The same schedule with ``betas`` and ``alpha_bar`` on ``device`` as ``dtype``; the
        derived coefficients are computed from those, in that precision."""
        return Schedule(
            self.kind,
            self.T,
            self.betas.to(device=device, dtype=dtype),
            self.alpha_bar.to(device=device, dtype=dtype),
        )


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
    return Schedule(kind, T, betas, torch.cumprod(1 - betas, 0))


def from_spec(schedule) -> Schedule:
    """Build a schedule from a run's ``schedule`` section."""
    return make_schedule(schedule.kind, schedule.T, **dataclasses.asdict(schedule.params()))
