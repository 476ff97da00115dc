"""A small UNet of ConvNeXt-style blocks working at 28x28 (28 -> 14 -> 7 and back)."""

from __future__ import annotations

import torch
from torch import nn

from engine.diffusion.nets.embedding import TimeEmbedding


class ConvNeXtBlock(nn.Module):
    """time embedding added first, depthwise 7x7, LayerNorm, 3x3 widening 4x, GELU, 3x3 back,
    residual. A 1x1 convolution adapts the width when ``c_in != c_out``."""

    def __init__(self, c_in: int, c_out: int, t_dim: int):
        super().__init__()
        self.adapt = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        self.time = nn.Sequential(nn.GELU(), nn.Linear(t_dim, c_out))
        self.body = nn.Sequential(
            nn.Conv2d(c_out, c_out, 7, padding=3, groups=c_out),
            nn.GroupNorm(1, c_out),  # LayerNorm over (C, H, W)
            nn.Conv2d(c_out, 4 * c_out, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(4 * c_out, c_out, 3, padding=1),
        )

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        x = self.adapt(x)
        return x + self.body(x + self.time(temb)[:, :, None, None])


class UNet(nn.Module):
    """Three down blocks (widths c1, c2, c3; max-pooling after the first two), a middle block,
    three up blocks fed with the skip connections (transposed convolutions 7 -> 14 -> 28) and a
    final convolution back to ``in_channels``."""

    def __init__(self, channels=(32, 64, 128), time_embedding: int = 16, in_channels: int = 1):
        super().__init__()
        c1, c2, c3 = channels
        t_dim = 4 * c1
        self.time = TimeEmbedding(time_embedding, t_dim)
        self.stem = nn.Conv2d(in_channels, c1, 3, padding=1)
        self.down = nn.ModuleList(
            [
                ConvNeXtBlock(c1, c1, t_dim),
                ConvNeXtBlock(c1, c2, t_dim),
                ConvNeXtBlock(c2, c3, t_dim),
            ]
        )
        self.pool = nn.MaxPool2d(2)
        self.mid = ConvNeXtBlock(c3, c3, t_dim)
        self.up = nn.ModuleList(
            [
                ConvNeXtBlock(2 * c3, c3, t_dim),
                ConvNeXtBlock(2 * c2, c2, t_dim),
                ConvNeXtBlock(2 * c1, c1, t_dim),
            ]
        )
        self.upsample = nn.ModuleList(
            [nn.ConvTranspose2d(c3, c2, 2, stride=2), nn.ConvTranspose2d(c2, c1, 2, stride=2)]
        )
        self.final = nn.Conv2d(c1, in_channels, 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x: (B, C, 28, 28); t: (B,) time as a fraction t/T in [0, 1]."""
        temb = self.time(t)
        h = self.stem(x)
        skips = []
        for i, block in enumerate(self.down):
            h = block(h, temb)
            skips.append(h)
            if i < 2:
                h = self.pool(h)
        h = self.mid(h, temb)
        for i, block in enumerate(self.up):
            h = block(torch.cat([h, skips.pop()], dim=1), temb)
            if i < 2:
                h = self.upsample[i](h)
        return self.final(h)
