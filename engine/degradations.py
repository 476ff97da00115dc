"""Degradations: how a clean image x is corrupted to z_t, and the training loss that undoes it.

Only Gaussian noise (DDPM) for now: z_t = sqrt(a_t) x + sqrt(1 - a_t) eps, with a noise-predicting
network trained with MSE on eps. Time enters the networks as t/T.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .schedules import Schedule


class Gaussian:
    name = "gaussian"

    def __init__(self, schedule: Schedule, device: torch.device | str = "cpu"):
        self.T = schedule.T
        self.betas = schedule.betas.to(device=device, dtype=torch.float32)
        self.alpha_bar = schedule.alpha_bar.to(device=device, dtype=torch.float32)

    def degrade(self, x: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """z_t for a batch x with integer times t (shape (B,)) and noise eps."""
        a = self.alpha_bar[t].view(-1, 1, 1, 1)
        return a.sqrt() * x + (1 - a).sqrt() * eps

    def loss(self, model, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Noise-prediction MSE at t ~ U{1..T}, the study's (and Ho et al.'s) simple loss."""
        t = torch.randint(1, self.T + 1, (x.shape[0],), device=x.device, generator=generator)
        eps = torch.randn(x.shape, device=x.device, generator=generator)
        return F.mse_loss(model(self.degrade(x, t, eps), t / self.T), eps)
