"""The typed tables of an experiments file: a run's sections (``data``, ``schedule``,
``network``, ``training``, ``evaluation``), a sampling study's keys and a host's table.

Each section is a frozen dataclass whose fields are the keys of the table, declared with
:func:`engine.spec.registry.key` (default, checker, meaning). The ``schedule`` and ``network``
sections also have the keys of every registered kind (:mod:`engine.spec.components`), so
:func:`section_class` builds them from the registries. :data:`SCHEMA` reads the keys of every
section (``SCHEMA[section]`` = ``{key: (default, checker)}``) for the defaults and sweeps of
:mod:`engine.spec.experiments`.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from engine.spec.components import NETWORKS, SAMPLERS, SCHEDULES
from engine.spec.registry import (
    Registry,
    boolean,
    choice,
    int_list,
    integer,
    keys_of,
    number,
    params_of,
    sbatch_options,
    slurm_time,
    string,
)
from engine.spec.registry import device as device_check
from engine.spec.registry import key as setting

DATASETS = ("mnist", "fashion_mnist")
MORPH_LATENTS = ("estimate", "start")
SECTIONS = ("data", "schedule", "network", "training", "evaluation")
MIN_TRAIN_SUBSET = 2  # one image to train on and one held out for validation


@dataclass(frozen=True)
class Section:
    """A validated table of a run's settings; read as attributes (``spec.training.epochs``)."""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def keys(cls) -> dict[str, tuple[Any, Any]]:
        """``{key: (default, checker)}`` in the table's order."""
        return keys_of(cls)

    @classmethod
    def docs(cls) -> dict[str, str]:
        return {f.name: f.metadata.get("doc", "") for f in dataclasses.fields(cls)}


@dataclass(frozen=True)
class DataSection(Section):
    dataset: str = setting("mnist", choice(DATASETS), "`mnist` or `fashion_mnist`")
    train_subset: int = setting(
        0,
        lambda v: (
            None
            if v == 0 or not integer(MIN_TRAIN_SUBSET)(v)
            else f"0 (all) or an integer >= {MIN_TRAIN_SUBSET} (one image "
            "to train on, one held out)"
        ),
        "use this many training images (0 = all)",
    )
    val_fraction: float = setting(0.1, number(0, 0.5, lo_open=True), "held out for validation")
    idx_dir: str = setting("", string(), "a folder of IDX files (optional)")
    torchvision_root: str = setting("", string(), "torchvision's root folder (optional)")
    download: bool = setting(False, boolean(), "let torchvision download into torchvision_root")
    fetch: bool = setting(
        True,
        boolean(),
        "download the full set into diffui's data folder on first use when no local source has it",
    )


@dataclass(frozen=True)
class ScheduleSection(Section):
    """``kind`` and ``T``; the section of a spec is a subclass that also has every kind's keys
    (see :func:`section_class`); :meth:`params` gives the ones ``kind`` reads."""

    kind: str = setting("linear", choice(SCHEDULES.names), "the beta schedule")
    T: int = setting(1000, integer(1, 100_000), "diffusion steps")

    def params(self) -> Any:
        return params_of(SCHEDULES.get(self.kind).params, self)


@dataclass(frozen=True)
class NetworkSection(Section):
    kind: str = setting("cnn", choice(NETWORKS.names), "the denoising / restoration network")

    def params(self) -> Any:
        return params_of(NETWORKS.get(self.kind).params, self)


@dataclass(frozen=True)
class TrainingSection(Section):
    epochs: int = setting(50, integer(1, 100_000))
    batch_size: int = setting(128, integer(1, 65_536))
    lr: float = setting(2e-4, number(0, 10, lo_open=True), "Adam's learning rate")
    seed: int = setting(0, integer(0, 2**31 - 1))
    device: str = setting("auto", device_check, "`auto`, `cpu`, `cuda`, `cuda:N`")
    amp: str = setting(
        "auto",
        choice(("auto", "off", "bf16", "fp16")),
        "mixed precision (`auto`: bf16 where the device computes it in hardware, else fp32)",
    )
    compile: str = setting(
        "auto", choice(("auto", "on", "off")), "torch.compile the network (`auto`: on CUDA)"
    )
    progress_every: float = setting(
        1.0, number(0, 3600, lo_open=True), "seconds between progress events"
    )


@dataclass(frozen=True)
class EvaluationSection(Section):
    sampler: str = setting("ddim", choice(SAMPLERS.names), "sampler for grids and FID in training")
    steps: int = setting(50, integer(1, 100_000), "DDIM steps, or iterative morph steps")
    grid_epochs: list[int] = setting([5, 10, 20, 30, 40], int_list(1), "epochs that save a grid")
    n_grid: int = setting(25, integer(1, 1024), "images per grid")
    final_sampler: str = setting(
        "ddpm",
        choice(lambda: (*SAMPLERS.names(), "same")),
        "samples after the last epoch (`same`: `sampler`)",
    )
    morph_latent: str = setting(
        "estimate", choice(MORPH_LATENTS), "the latent of D in the iterative morph sampler"
    )
    every: int = setting(
        5, integer(0, 100_000), "FID every k epochs and after the last (0 = never)"
    )
    n_eval: int = setting(1000, integer(2, 100_000), "samples per FID evaluation")
    backbone: str = setting("lenet", choice(("lenet", "inception")), "FID feature network")


HOST_KINDS = ("ssh", "slurm")
LOCAL = "local"  # the host name of this machine (not a [hosts] table)
SLURM_KEYS = (
    "partition",
    "gpus_per_job",
    "cpus_per_job",
    "mem_gb",
    "time",
    "account",
    "qos",
    "sbatch",
    "max_jobs",
    "signal_delay_s",
)
SSH_KEYS = ("gpus", "slots")


@dataclass(frozen=True)
class HostSpec(Section):
    """A ``[hosts.NAME]`` table: where runs and studies may run besides this machine. ``kind =
    "ssh"`` is a GPU box reached over SSH; ``kind = "slurm"`` a cluster's login node (reached
    over SSH, or this machine when ``address`` is empty) that submits each job to Slurm."""

    kind: str = setting("ssh", choice(HOST_KINDS), "`ssh` (a GPU box) or `slurm` (a cluster)")
    address: str = setting(
        "",
        string(),
        'host name, IP or ~/.ssh/config alias (slurm: "" = this machine is the login node)',
    )
    user: str = setting("", string(), '"" = ~/.ssh/config\'s or the local user')
    port: int = setting(22, integer(1, 65535), "the SSH port")
    python: str = setting(
        "python3",
        string(),
        "the remote interpreter that has diffui installed "
        "(slurm on its login node: diffui's own unless given)",
    )
    workdir: str = setting("~/diffui", string(), "remote folder for run folders and data")
    gpus: list[int] = setting([], int_list(0), "ssh: one job per listed GPU; [] = CPU")
    slots: int = setting(1, integer(1, 1024), "ssh: jobs at once when gpus = []")
    partition: str = setting("", string(), 'slurm: the partition ("" = the cluster\'s default)')
    gpus_per_job: int = setting(0, integer(0, 64), "slurm: GPUs per job")
    cpus_per_job: int = setting(1, integer(1, 1024), "slurm: CPUs per job")
    mem_gb: int = setting(4, integer(1, 100_000), "slurm: memory per job (GiB)")
    time: str = setting(
        "04:00:00", slurm_time, "slurm: time limit per job; a longer run resumes in the next job"
    )
    account: str = setting("", string(), 'slurm: --account ("" = none)')
    qos: str = setting("", string(), 'slurm: --qos ("" = none)')
    sbatch: list[str] = setting([], sbatch_options, "slurm: further sbatch options")
    max_jobs: int = setting(20, integer(1, 100_000), "slurm: our jobs queued or running at once")
    signal_delay_s: int = setting(
        90,
        integer(10, 3600),
        "slurm: seconds before the time limit at which a job saves its state and is requeued",
    )


STUDY_KINDS = ("noise", "interpolation", "gmm")
STUDY_VALUE = {"noise": "λ", "interpolation": "N", "gmm": "components"}  # what a value is
MAX_NOISE = 1e6  # λ below this
MAX_AVERAGED = 1000  # N latents averaged at most: each is n more latents drawn (time grows with N)
# mixture components at most: a full covariance is 784 x 784 floats (4.9 MB) per component, and
# the fit's time grows with them (10 full: 26 s on 2 cores, see latents.GMM_FIT_SIZE)
MAX_COMPONENTS = 100
COVARIANCES = ("full", "diag", "tied", "spherical")  # scikit-learn's GaussianMixture


@dataclass(frozen=True)
class StudyKeys(Section):
    """The keys of a ``[[studies]]`` table besides ``name``, ``run``, ``kind`` and ``values``."""

    n: int = setting(1000, integer(2, 100_000), "samples per value (for the measurements)")
    n_grid: int = setting(25, integer(1, 1024), "samples in each value's grid")
    seed: int = setting(0, integer(0, 2**31 - 1), "seed of the latents and the sampler")
    sampler: str = setting(
        "", choice(lambda: ("", *SAMPLERS.names())), "the run's final sampler when empty"
    )
    steps: int = setting(0, integer(0, 100_000), "sampler steps (0: the run's evaluation.steps)")
    covariance: str = setting("full", choice(COVARIANCES), "gmm: the mixture's covariance")
    pca: int = setting(0, integer(0, 784), "gmm: fit in this many PCA components (0 = none)")


_STATIC: dict[str, type[Section]] = {
    "data": DataSection,
    "training": TrainingSection,
    "evaluation": EvaluationSection,
}
_KINDED: dict[str, tuple[type[Section], Registry[Any]]] = {
    "schedule": (ScheduleSection, SCHEDULES),
    "network": (NetworkSection, NETWORKS),
}
_built: dict[str, tuple[int, type[Section]]] = {}


def section_class(section: str) -> type[Section]:
    """The dataclass of a table. ``schedule`` and ``network``: the base's keys, then the keys of
    each registered kind in registration order (rebuilt when the registry changes)."""
    if section in _STATIC:
        return _STATIC[section]
    base, registry = _KINDED[section]
    cached = _built.get(section)
    if cached and cached[0] == registry.version:
        return cached[1]
    extra: dict[str, dataclasses.Field[Any]] = {}
    for entry in registry:
        for f in dataclasses.fields(entry.params):
            if f.name in extra or f.name in {b.name for b in dataclasses.fields(base)}:
                seen = extra.get(f.name)
                if seen is not None and _default_of(seen) != _default_of(f):
                    raise ValueError(
                        f"{section}.{f.name}: {registry.what} {entry.name!r} "
                        "declares it with another default"
                    )
                continue
            extra[f.name] = f
    cls = dataclasses.make_dataclass(
        base.__name__,
        [
            (
                n,
                f.type,
                dataclasses.field(
                    default=f.default, default_factory=f.default_factory, metadata=f.metadata
                ),
            )
            for n, f in extra.items()
        ],
        bases=(base,),
        frozen=True,
    )
    cls.__module__ = __name__
    _built[section] = (registry.version, cls)
    return cls


def _default_of(f: dataclasses.Field[Any]) -> Any:
    return f.default if f.default_factory is dataclasses.MISSING else f.default_factory()


def make_section(section: str, values: dict[str, Any]) -> Section:
    """The typed section from a table (keys it does not have are ignored; missing keys get
    their defaults)."""
    cls = section_class(section)
    known = cls.keys()
    return cls(**{k: copy.deepcopy(v) for k, v in values.items() if k in known})


def make_sections(tables: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """The typed sections of a run by name (RunSpec's keywords), from its tables (a missing
    table gets the defaults)."""
    return {s: make_section(s, tables.get(s, {})) for s in SECTIONS}


class _Schema(Mapping[str, dict[str, tuple[Any, Any]]]):
    """``SCHEMA[section]`` = ``{key: (default, checker)}``, read from the sections."""

    def __getitem__(self, section: str) -> dict[str, tuple[Any, Any]]:
        if section not in SECTIONS:
            raise KeyError(section)
        return section_class(section).keys()

    def __iter__(self) -> Iterator[str]:
        return iter(SECTIONS)

    def __len__(self) -> int:
        return len(SECTIONS)


SCHEMA = _Schema()
