"""What a run trains with, built from its spec: the device and its precision, the seeds of its
random streams, its data (the training subset and the validation split) and its model.

Both jobs start here: training (:mod:`engine.jobs.training`) prepares everything; the sampling
study (:mod:`engine.jobs.study`) needs only the device and the training images of its run.
"""

from __future__ import annotations

import platform
import shutil
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import cast

import torch

from engine.data import datasets
from engine.diffusion import degradations, nets
from engine.diffusion.degradations import Degradation
from engine.rundir.run import Run, RunError
from engine.spec.specs import RunSpec


def resolve_device(name: str) -> torch.device:
    """The device of ``training.device``: "auto" is CUDA when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"training.device = {name!r} but no CUDA device is available")
    return dev


def device_name(device: torch.device) -> str:
    """The hardware of ``device`` in words, for the start event: the GPU's name ("NVIDIA H100
    80GB HBM3"), or the CPU's model with the threads torch uses ("AMD EPYC 7763 64-Core
    Processor, 2 threads"); "" when it cannot be told."""
    try:
        if device.type == "cuda":
            return torch.cuda.get_device_name(device)
        if device.type == "cpu":
            threads = torch.get_num_threads()
            count = f"{threads} thread{'s' * (threads != 1)}"
            model = cpu_model()
            return f"{model}, {count}" if model else count
        return ""
    except (RuntimeError, OSError, AssertionError):  # a driver that does not answer
        return ""


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux) or the platform module, "" if unknown."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                    return " ".join(value.split())
    except OSError:
        pass
    return platform.processor()


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes in bf16 in hardware: a CUDA GPU that supports it, or a CPU
    with AMX or AVX-512 bf16 (elsewhere bf16 on the CPU is emulated, many times slower)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    cpu = getattr(torch, "cpu", None)
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return device.type == "cpu" and any(getattr(cpu, n, lambda: False)() for n in probes)


def precision(device: torch.device, amp: str) -> str:
    """What ``training.amp`` means on ``device``: "fp32", "bf16" or "fp16". ``auto`` is bf16
    where the device computes it in hardware (a GPU, a CPU with AMX or AVX-512 bf16), else
    fp32. A setting the device cannot do raises :class:`RunError` in one line."""
    if amp == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if amp == "off":
        return "fp32"
    if amp == "fp16" and device.type != "cuda":
        raise RunError(f"training.amp = 'fp16' needs a CUDA device, not {device} (use bf16 or off)")
    return amp


def autocast(device: torch.device, amp: str) -> AbstractContextManager:
    """Mixed precision as :func:`precision` resolves ``training.amp`` on ``device``."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision(device, amp))
    if dtype is None:
        return nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def compiler_missing() -> str:
    """Why torch.compile cannot run here ("" when it can): its CPU code needs a C++ compiler."""
    if not hasattr(torch, "compile"):
        return "this PyTorch has no torch.compile"
    if not any(shutil.which(c) for c in ("c++", "g++", "clang++")):
        return "torch.compile needs a C++ compiler (c++, g++ or clang++) on the PATH"
    return ""


def use_compile(device: torch.device, setting: str) -> bool:
    """What ``training.compile`` means on ``device``: ``auto`` compiles on CUDA only (on the
    CPU the compiled code is no faster for these networks, see docs/benchmarks.md, and the
    compile costs a minute); ``on`` where the compiler is missing raises RunError in one line."""
    if setting == "off" or (setting == "auto" and device.type != "cuda"):
        return False
    why = compiler_missing()
    if why and setting == "on":
        raise RunError(f"training.compile = 'on' but {why}")
    return not why


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
    compiled: torch.nn.Module | None = None  # torch.compile(model) where training.compile says

    @property
    def net(self) -> torch.nn.Module:
        """What trains and samples: the compiled model where there is one, else ``model`` (the
        two share their parameters; checkpoints save ``model``)."""
        return self.model if self.compiled is None else self.compiled


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
    precision(device, spec.training.amp)  # a setting the device cannot do: one line, now
    compiled = use_compile(device, spec.training.compile)
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
        compiled=cast(torch.nn.Module, torch.compile(model)) if compiled else None,
    )
