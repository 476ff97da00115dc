"""Degradations: how a clean image x is corrupted to z_t, and the training loss that undoes it.

Both interpolate between x and a latent z with the schedule's alpha_bar:
z_t = D(x, t) = sqrt(a_t) x + sqrt(1 - a_t) z.

* ``gaussian`` (DDPM): z is Gaussian noise; the network predicts the noise (MSE to z).
* ``morph`` (cold diffusion, Bansal et al. 2022): z is a FashionMNIST image drawn at random for
  each example; the restoration network R(z_t, t) predicts x (MSE to x).

Time enters the networks as t/T.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from engine.data import datasets
from engine.diffusion.schedules import Schedule, from_spec
from engine.spec.components import DEGRADATIONS


class Degradation:
    """How images are corrupted and the loss that undoes it; ``schedule`` holds its coefficients
    (float32, on its device)."""

    name = ""

    def __init__(self, schedule: Schedule, device: torch.device | str = "cpu"):
        self.T = schedule.T
        self.schedule = schedule.to(device=device, dtype=torch.float32)

    @property
    def alpha_bar(self) -> torch.Tensor:
        """ᾱ_t, t = 0..T (the schedule's, float32 on the device)."""
        return self.schedule.alpha_bar

    @property
    def device(self) -> torch.device:
        return self.schedule.alpha_bar.device

    def degrade(self, x: torch.Tensor, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """z_t for a batch x with integer times t (shape (B,)) and latents z."""
        sqrt_a = self.schedule.sqrt_alpha_bar[t].view(-1, 1, 1, 1)
        sqrt_1ma = self.schedule.sqrt_one_minus_alpha_bar[t].view(-1, 1, 1, 1)
        return sqrt_a * x + sqrt_1ma * z

    def latents(self, n: int, generator: torch.Generator, held_out: bool = False) -> torch.Tensor:
        raise NotImplementedError

    def target(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def loss(
        self, model, x: torch.Tensor, generator: torch.Generator, held_out: bool = False
    ) -> torch.Tensor:
        """MSE of the network's prediction at t ~ U{1..T} (the study's, and Ho et al.'s, simple
        loss); ``held_out`` draws latents from the held-out pool where there is one."""
        t = torch.randint(1, self.T + 1, (x.shape[0],), device=x.device, generator=generator)
        z = self.latents(x.shape[0], generator, held_out)
        return F.mse_loss(model(self.degrade(x, t, z), t / self.T), self.target(x, z))


class Gaussian(Degradation):
    name = "gaussian"

    def latents(self, n, generator, held_out=False):
        return torch.randn((n, *datasets.IMAGE_SHAPE), device=self.device, generator=generator)

    def target(self, x, z):
        return z


class Morph(Degradation):
    """Latents are FashionMNIST images: the training split for training, the test split
    (``held_out``) for validation and for generation."""

    name = "morph"

    def __init__(
        self,
        schedule: Schedule,
        train_latents: torch.Tensor,
        test_latents: torch.Tensor,
        device: torch.device | str = "cpu",
    ):
        super().__init__(schedule, device)
        self.pools = {False: train_latents.to(device), True: test_latents.to(device)}  # uint8

    def latents(self, n, generator, held_out=False):
        pool = self.pools[held_out]
        pick = torch.randint(len(pool), (n,), device=pool.device, generator=generator)
        return datasets.to_model(pool[pick])

    def target(self, x, z):
        return x


def build_gaussian(schedule: Schedule, spec, device) -> Gaussian:
    return Gaussian(schedule, device)


def build_morph(schedule: Schedule, spec, device) -> Morph:
    return Morph(
        schedule,
        datasets.load_latents(spec.data, "train").images,
        datasets.load_latents(spec.data, "test").images,
        device,
    )


def check_morph_inputs(spec) -> None:
    """Raises :class:`data.DataUnavailable` when FashionMNIST (both splits) cannot be loaded."""
    for split in ("train", "test"):
        datasets.load_latents(spec.data, split)


def build(spec, device: torch.device | str = "cpu") -> Degradation:
    """The degradation of a run spec, from its registry entry (``morph`` loads FashionMNIST,
    see ``data.load_latents``)."""
    return DEGRADATIONS.get(spec.degradation).build(from_spec(spec.schedule), spec, device)
