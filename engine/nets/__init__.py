"""The denoising / restoration networks. Both take (x, t/T) and return an image-shaped tensor."""
from __future__ import annotations

from torch import nn

from .cnn import CNN
from .unet import UNet


def build(network: dict, in_channels: int = 1) -> nn.Module:
    """A network from the ``[network]`` settings of a run."""
    if network["kind"] == "cnn":
        return CNN(tuple(network["channels"]), network["time_embedding"], in_channels)
    if network["kind"] == "unet":
        return UNet(tuple(network["unet_channels"]), network["time_embedding"], in_channels)
    raise ValueError(f"unknown network kind {network['kind']!r} (expected 'cnn' or 'unet')")


__all__ = ["CNN", "UNet", "build"]
