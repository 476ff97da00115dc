"""The denoising / restoration networks. Both take (x, t/T) and return an image-shaped tensor.

Each is registered in engine/spec/components.py with its parameters; :func:`build` looks it up.
"""

from __future__ import annotations

from torch import nn

from engine.diffusion.nets.cnn import CNN
from engine.diffusion.nets.unet import UNet
from engine.spec.components import NETWORKS


def build_cnn(p, in_channels: int = 1) -> nn.Module:
    return CNN(tuple(p.channels), p.time_embedding, in_channels)


def build_unet(p, in_channels: int = 1) -> nn.Module:
    return UNet(tuple(p.unet_channels), p.time_embedding, in_channels)


def build(network, in_channels: int = 1) -> nn.Module:
    """A network from the ``network`` section of a run."""
    return NETWORKS.get(network.kind).build(network.params(), in_channels)


__all__ = ["CNN", "UNet", "build"]
