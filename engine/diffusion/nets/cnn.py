"""The study's small CNN: 7x7 conv blocks with LayerNorm over the 28x28 map and GELU."""

from __future__ import annotations

import torch
from torch import nn

from engine.diffusion.nets.embedding import TimeEmbedding


class CNNBlock(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, size: tuple[int, int] = (28, 28), kernel: int = 7):
        super().__init__(
            nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2),
            nn.LayerNorm((c_out, *size)),
            nn.GELU(),
        )


class CNN(nn.Module):
    """Blocks of channels ``channels`` (16, 32, 32, 16 in the study), a last 3x3 convolution back
    to one channel, and the time embedding added after the first block."""

    def __init__(
        self,
        channels=(16, 32, 32, 16),
        time_embedding: int = 16,
        in_channels: int = 1,
        size: tuple[int, int] = (28, 28),
    ):
        super().__init__()
        widths = [in_channels, *channels]
        self.blocks = nn.ModuleList(CNNBlock(a, b, size) for a, b in zip(widths[:-1], widths[1:]))
        self.last = nn.Conv2d(channels[-1], in_channels, 3, padding=1)
        self.time = TimeEmbedding(time_embedding, channels[0])

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x: (B, 1, 28, 28); t: (B,) time as a fraction t/T in [0, 1]."""
        h = self.blocks[0](x) + self.time(t)[:, :, None, None]
        for block in self.blocks[1:]:
            h = block(h)
        return self.last(h)
