"""What a run trains with, built from its spec: the device and its precision, the seeds of its
random streams, its data (the training subset and the validation split) and its model.

Both jobs start here: training (:mod:`engine.jobs.training`) prepares everything; the sampling
study (:mod:`engine.jobs.study`) needs only the device and the training images of its run.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch

from engine.data import datasets
from engine.diffusion import degradations, nets
from engine.diffusion.degradations import Degradation
from engine.rundir.run import Run
from engine.spec.specs import RunSpec


def resolve_device(name: str) -> torch.device:
    """The device of ``training.device``: "auto" is CUDA when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"training.device = {name!r} but no CUDA device is available")
    return dev


def autocast(device: torch.device, amp: str) -> AbstractContextManager:
    """Mixed precision on CUDA (bf16 by default); full precision on the CPU."""
    if device.type != "cuda" or amp == "off":
        return nullcontext()
    return torch.autocast("cuda", dtype=torch.float16 if amp == "fp16" else torch.bfloat16)


# The seeds of a run's random streams, all derived from training.seed. Their values are part of
# the results: changing one changes every run's losses and samples.
EPOCH_SEED_STRIDE = 1_000_003  # epoch e of seed s draws from s * stride + e (a prime > any epoch)
VALIDATION_SEED_OFFSET = 7919  # validation noise: seed + offset, the same every epoch
SAMPLES_SEED_OFFSET = 104729  # an epoch's grid and FID samples: seed + offset + epoch


def epoch_generator(seed: int, epoch: int, device: torch.device) -> torch.Generator:
    """The generator of an epoch's shuffling and noise."""
    return torch.Generator(device=device).manual_seed(seed * EPOCH_SEED_STRIDE + epoch)


def run_spec(run: Run) -> RunSpec:
    """The settings of ``run``, a training run (a study folder holds a StudySpec instead)."""
    spec = run.spec()
    if not isinstance(spec, RunSpec):
        raise TypeError(f"{run.path} is a study folder, not a training run")
    return spec


@dataclass
class Prepared:
    """Everything a run trains with, built from its spec."""

    spec: RunSpec
    device: torch.device
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    deg: Degradation
    train_x: torch.Tensor  # (N, *data.IMAGE_SHAPE) model space, on the device
    val_x: torch.Tensor
    source: str


def training_data(spec: RunSpec) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(train_x, val_x, source) of a run: its subset of the training images, split by its seed,
    in model space."""
    d = spec.data
    ds = datasets.load_configured(d)
    seed = spec.training.seed
    images = ds.images
    if d.train_subset and d.train_subset < len(images):
        pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
        images = images[pick[: d.train_subset]]
    train_idx, val_idx = datasets.split_train_val(len(images), d.val_fraction, seed)
    x = datasets.to_model(images)
    return x[train_idx], x[val_idx], ds.source


def prepare(spec: RunSpec) -> Prepared:
    """The device, data, model (seeded by ``training.seed``), optimizer and degradation of a
    run, before any checkpoint is loaded."""
    device = resolve_device(spec.training.device)
    torch.backends.cudnn.benchmark = device.type == "cuda"  # fixed 28x28 shapes: let cuDNN tune
    train_x, val_x, source = training_data(spec)
    torch.manual_seed(spec.training.seed)
    model = nets.build(spec.network).to(device)
    return Prepared(
        spec=spec,
        device=device,
        model=model,
        optimizer=torch.optim.Adam(model.parameters(), lr=spec.training.lr),
        deg=degradations.build(spec, device),
        train_x=train_x.to(device),
        val_x=val_x.to(device),
        source=source,
    )
