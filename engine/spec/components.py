"""The components diffui knows, one registry entry each: schedules, networks, degradations and
samplers.

An entry names its parameters (a frozen dataclass of config keys, see :func:`registry.key`) and
its code. Adding a schedule, network, degradation or sampler is one ``register(...)`` call here
(or in a module or test of its own): config validation, the README's key table and the code
that builds the component all read these entries.

The ``[schedule]`` and ``[network]`` tables stay flat: their keys are ``kind`` (and ``T``) plus
the keys of every kind's parameters, so existing experiments files and run folders keep working;
a key shared by several kinds is declared by each with the same default.

Torch-free: code that needs torch is referenced with :func:`registry.lazy`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine.spec.registry import Registry, int_list, integer, key, lazy, number, three_widths


@dataclass(frozen=True)
class ScheduleEntry:
    name: str
    params: type  # dataclass of the [schedule] keys this kind reads
    betas: Callable[[int, Any], Any]  # (T, params) -> float64 tensor of beta_1..beta_T
    # cross-check of the parameters: None, or (key, what was expected, the value got)
    check: Callable[[Any], tuple[str, str, Any] | None] | None = None
    doc: str = ""


@dataclass(frozen=True)
class NetworkEntry:
    name: str
    params: type  # dataclass of the [network] keys this kind reads (time_embedding included)
    build: Callable[[Any, int], Any]  # (params, in_channels) -> nn.Module taking (x, t/T)
    doc: str = ""


@dataclass(frozen=True)
class DegradationEntry:
    name: str
    build: Callable[[Any, Any, Any], Any]  # (Schedule, RunSpec, device) -> Degradation
    samplers: tuple[str, ...]  # the samplers that undo it (evaluation.sampler / final_sampler)
    # before a run is queued: raises data.DataUnavailable when an input cannot be loaded
    check_inputs: Callable[[Any], None] | None = None
    figures: tuple[str, ...] = ()  # the report's figure kinds for its runs
    # cross-check of a run spec: None, or (dotted key, what was expected, the value got)
    check: Callable[[Any], tuple[str, str, Any] | None] | None = None
    doc: str = ""


@dataclass(frozen=True)
class SamplerEntry:
    """``run(model, deg, n, *, steps, generator, device, latent, progress=None, z=None)`` returns
    ``n`` images in model space, starting from the latents ``z`` when given (else drawn from
    ``generator``); ``describe(steps, T)`` names it for tables and events (e.g. "DDIM-50")."""

    name: str
    run: Callable[..., Any]
    describe: Callable[[int, int], str]
    uses_steps: bool = False  # takes evaluation.steps strides, so steps <= schedule.T
    doc: str = ""


SCHEDULES: Registry[ScheduleEntry] = Registry("schedule kind")
NETWORKS: Registry[NetworkEntry] = Registry("network kind")
DEGRADATIONS: Registry[DegradationEntry] = Registry("degradation")
SAMPLERS: Registry[SamplerEntry] = Registry("sampler")


# --- schedules -----------------------------------------------------------------------------

_BETA = number(0, 1, lo_open=True, hi_open=True)


@dataclass(frozen=True)
class LinearParams:
    beta_min: float = key(1e-4, _BETA, "linear and inverse linear")
    beta_max: float = key(0.02, _BETA, "linear and inverse linear")


@dataclass(frozen=True)
class CosineParams:
    s: float = key(0.008, number(0, 1), "cosine offset")
    max_beta: float = key(
        0.1, number(0, 1, lo_open=True), "cosine beta cap (0.1 in the study, 0.999 in the paper)"
    )


@dataclass(frozen=True)
class ConstantParams:
    beta: float = key(0.01, _BETA, "constant")


def _beta_min_at_most_max(p: LinearParams):
    if p.beta_min > p.beta_max:
        return "beta_min", f"a number <= beta_max ({p.beta_max})", p.beta_min
    return None


SCHEDULES.register(
    ScheduleEntry(
        "linear",
        LinearParams,
        lazy("engine.diffusion.schedules:linear_betas"),
        _beta_min_at_most_max,
        "Ho et al. (2020)",
    )
)
SCHEDULES.register(
    ScheduleEntry(
        "cosine",
        CosineParams,
        lazy("engine.diffusion.schedules:cosine_betas"),
        doc="Nichol & Dhariwal (2021)",
    )
)
SCHEDULES.register(
    ScheduleEntry("constant", ConstantParams, lazy("engine.diffusion.schedules:constant_betas"))
)
SCHEDULES.register(
    ScheduleEntry(
        "inverse_linear",
        LinearParams,
        lazy("engine.diffusion.schedules:inverse_linear_betas"),
        _beta_min_at_most_max,
        "linear, reversed",
    )
)


# --- networks ------------------------------------------------------------------------------

# The embedding's frequencies are 2π·1.5^i for i < time_embedding - 1, in float32: past this many
# the largest overflows to inf and every loss is NaN.
MAX_TIME_EMBEDDING = 2 + int(math.log(3.4028234663852886e38 / (2 * math.pi)) / math.log(1.5))
_TIME_EMBEDDING = (16, integer(1, MAX_TIME_EMBEDDING), "sinusoidal frequencies of t/T")


@dataclass(frozen=True)
class CNNParams:
    channels: list[int] = key([16, 32, 32, 16], int_list(1, min_len=1), "the CNN's block widths")
    time_embedding: int = key(*_TIME_EMBEDDING)


@dataclass(frozen=True)
class UNetParams:
    unet_channels: list[int] = key(
        [32, 64, 128], three_widths, "the UNet's widths at 28, 14 and 7 pixels"
    )
    time_embedding: int = key(*_TIME_EMBEDDING)


NETWORKS.register(
    NetworkEntry("cnn", CNNParams, lazy("engine.diffusion.nets:build_cnn"), "the study's")
)
NETWORKS.register(
    NetworkEntry("unet", UNetParams, lazy("engine.diffusion.nets:build_unet"), "ConvNeXt blocks")
)


# --- samplers ------------------------------------------------------------------------------

SAMPLERS.register(
    SamplerEntry(
        "ddim",
        lazy("engine.diffusion.samplers:run_ddim"),
        lazy("engine.diffusion.samplers:describe_ddim"),
        uses_steps=True,
    )
)
SAMPLERS.register(
    SamplerEntry("ddpm", lazy("engine.diffusion.samplers:run_ddpm"), lambda steps, T: f"DDPM-{T}")
)
SAMPLERS.register(
    SamplerEntry(
        "dpm++",
        lazy("engine.diffusion.samplers:run_dpmpp"),
        lazy("engine.diffusion.samplers:describe_dpmpp"),
        uses_steps=True,
        doc="DPM-Solver++(2M) (Lu et al. 2022) in `steps` network evaluations",
    )
)
SAMPLERS.register(
    SamplerEntry(
        "iterative",
        lazy("engine.diffusion.samplers:run_iterative"),
        lazy("engine.diffusion.samplers:describe_iterative"),
        uses_steps=True,
    )
)
SAMPLERS.register(
    SamplerEntry("direct", lazy("engine.diffusion.samplers:run_direct"), lambda steps, T: "direct")
)


# --- degradations --------------------------------------------------------------------------


def _betas_below_one(spec):
    """DDPM divides by sqrt(1 - beta_t) and DDIM by sqrt(alpha_bar_T): a beta of 1 (the cosine
    cap ``max_beta = 1``) makes every sample NaN."""
    cap = getattr(spec.schedule.params(), "max_beta", None)
    if cap is not None and cap >= 1:
        return (
            "schedule.max_beta",
            ("a number below 1 for the gaussian degradation (DDPM divides by sqrt(1 - beta))"),
            cap,
        )
    return None


DEGRADATIONS.register(
    DegradationEntry(
        "gaussian",
        lazy("engine.diffusion.degradations:build_gaussian"),
        ("ddim", "ddpm", "dpm++"),
        figures=("diffusion",),
        check=_betas_below_one,
        doc="DDPM's noise",
    )
)
DEGRADATIONS.register(
    DegradationEntry(
        "morph",
        lazy("engine.diffusion.degradations:build_morph"),
        ("iterative", "direct"),
        check_inputs=lazy("engine.diffusion.degradations:check_morph_inputs"),
        figures=("restoration", "direct-vs-iterative"),
        doc="cold diffusion into FashionMNIST images",
    )
)
