"""Sinusoidal encoding of t/T followed by a small MLP (shared by both networks)."""

from __future__ import annotations

import math

import torch
from torch import nn


class TimeEmbedding(nn.Module):
    def __init__(self, n_freq: int, out: int, hidden: int = 128):
        super().__init__()
        # frequency 0 plus a geometric ladder, as in the study's template
        freqs = torch.tensor([0.0] + [2 * math.pi * 1.5**i for i in range(n_freq - 1)])
        self.freqs: torch.Tensor
        self.register_buffer("freqs", freqs, persistent=False)
        self.mlp = nn.Sequential(
            nn.Linear(2 * n_freq, hidden),
            nn.GELU(),
            nn.Linear(hidden, hidden),
            nn.GELU(),
            nn.Linear(hidden, out),
        )

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        phases = t.float()[:, None] * self.freqs[None, :]
        return self.mlp(torch.cat([torch.sin(phases), torch.cos(phases) - 1], dim=1))
