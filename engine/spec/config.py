"""experiments.toml -> validated run specs.

The file has four kinds of table:

* ``[defaults]`` (with sub-tables ``data``, ``schedule``, ``network``, ``training``,
  ``evaluation``) applies to every experiment;
* ``[[experiments]]`` lists experiments; each may override any default and may carry a
  ``sweep`` table of ``"section.key" = [values]`` that expands into a grid of runs;
* ``[profiles.NAME]`` overrides settings of every experiment for a named profile (``quick``
  for a smoke run) and may restrict the experiments with ``experiments = [...]`` (the
  profile's settings are then cross-checked against those experiments only).

The sections are typed (:class:`DataSection`, :class:`ScheduleSection`, ...): their fields are
the keys with their defaults, checkers and meanings. Schedule kinds, networks, degradations and
samplers come from the registries of :mod:`engine.spec.components`; each degradation's entry names its
samplers (``ddim`` / ``ddpm`` for ``gaussian``, ``iterative`` / ``direct`` for ``morph``);
``final_sampler = "same"`` repeats ``sampler`` whatever it is.

Everything is validated before anything runs; the first problem raises :class:`ConfigError`
whose message is one line naming the file, the key path and what was expected.
"""
from __future__ import annotations

import copy
import dataclasses
import itertools
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import UserError
from engine.spec.components import DEGRADATIONS, NETWORKS, SAMPLERS, SCHEDULES
from engine.spec.registry import boolean, choice, int_list, integer, keys_of, number, params_of, string
from engine.spec.registry import sbatch_options, slurm_time
from engine.spec.registry import key as setting
from engine.spec.registry import device as device_check
from engine.text import escape_breaks

DATASETS = ("mnist", "fashion_mnist")
MORPH_LATENTS = ("estimate", "start")
SECTIONS = ("data", "schedule", "network", "training", "evaluation")
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")  # always fullmatch (no "a\n")
# what diffui writes in a runs folder itself (engine.queue.client, engine.queue.service, engine.rundir.run, the UI's
# report folder): no run may be named so (tests/test_bad_input.py checks the list)
RESERVED_NAMES = ("queue.json", "service.lock", "service.log", "studies", "report")
NAME_EXPECTED = ("a safe folder name (letters, digits, '.', '_', '-'; not starting with '.' or "
                 "'-'; at most 100 characters)")
MIN_TRAIN_SUBSET = 2  # one image to train on and one held out for validation


def safe_name(name: Any) -> bool:
    """Whether ``name`` can name a run, study or profile folder: a safe folder name that none of
    diffui's own files in a runs folder has."""
    return isinstance(name, str) and bool(SAFE_NAME.fullmatch(name)) and \
        name not in RESERVED_NAMES


def _name_problem(name: Any) -> str:
    if isinstance(name, str) and name in RESERVED_NAMES:
        return (f"a name other than {', '.join(RESERVED_NAMES)} (diffui's own files in a runs "
                "folder)")
    return NAME_EXPECTED


class ConfigError(UserError):
    """A problem in an experiments file; ``str()`` is the one-line message for the user."""


# --- the schema: one typed section per table -----------------------------------------------
# Each field is a key of the table, declared with registry.key(default, checker, meaning). The
# [schedule] and [network] sections add the keys of every registered kind (engine.spec.components).


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
    train_subset: int = setting(0, lambda v: None if v == 0 or not integer(MIN_TRAIN_SUBSET)(v)
                                else f"0 (all) or an integer >= {MIN_TRAIN_SUBSET} (one image "
                                "to train on, one held out)",
                                "use this many training images (0 = all)")
    val_fraction: float = setting(0.1, number(0, 0.5, lo_open=True), "held out for validation")
    idx_dir: str = setting("", string(), "a folder of IDX files (optional)")
    torchvision_root: str = setting("", string(), "torchvision's root folder (optional)")
    download: bool = setting(False, boolean(), "let torchvision download into torchvision_root")
    fetch: bool = setting(True, boolean(), "download the full set into diffui's data folder on "
                      "first use when no local source has it")


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
    amp: str = setting("auto", choice(("auto", "off", "bf16", "fp16")), "mixed precision")
    progress_every: float = setting(1.0, number(0, 3600, lo_open=True),
                                "seconds between progress events")


@dataclass(frozen=True)
class EvaluationSection(Section):
    sampler: str = setting("ddim", choice(SAMPLERS.names), "sampler for grids and FID in training")
    steps: int = setting(50, integer(1, 100_000), "DDIM steps, or iterative morph steps")
    grid_epochs: list[int] = setting([5, 10, 20, 30, 40], int_list(1), "epochs that save a grid")
    n_grid: int = setting(25, integer(1, 1024), "images per grid")
    final_sampler: str = setting("ddpm", choice(lambda: (*SAMPLERS.names(), "same")),
                             "samples after the last epoch (`same`: `sampler`)")
    morph_latent: str = setting("estimate", choice(MORPH_LATENTS),
                            "the latent of D in the iterative morph sampler")
    every: int = setting(5, integer(0, 100_000), "FID every k epochs and after the last (0 = never)")
    n_eval: int = setting(1000, integer(2, 100_000), "samples per FID evaluation")
    backbone: str = setting("lenet", choice(("lenet", "inception")), "FID feature network")


HOST_KINDS = ("ssh", "slurm")
LOCAL = "local"  # the host name of this machine (not a [hosts] table)
_SLURM_KEYS = ("partition", "gpus_per_job", "cpus_per_job", "mem_gb", "time", "account", "qos",
               "sbatch", "max_jobs", "signal_delay_s")
_SSH_KEYS = ("gpus", "slots")


@dataclass(frozen=True)
class HostSpec(Section):
    """A ``[hosts.NAME]`` table: where runs and studies may run besides this machine. ``kind =
    "ssh"`` is a GPU box reached over SSH; ``kind = "slurm"`` a cluster's login node (reached
    over SSH, or this machine when ``address`` is empty) that submits each job to Slurm."""

    kind: str = setting("ssh", choice(HOST_KINDS), "`ssh` (a GPU box) or `slurm` (a cluster)")
    address: str = setting("", string(), "host name, IP or ~/.ssh/config alias (slurm: \"\" = "
                           "this machine is the login node)")
    user: str = setting("", string(), "\"\" = ~/.ssh/config's or the local user")
    port: int = setting(22, integer(1, 65535), "the SSH port")
    python: str = setting("python3", string(), "the remote interpreter that has diffui installed "
                          "(slurm on its login node: diffui's own unless given)")
    workdir: str = setting("~/diffui", string(), "remote folder for run folders and data")
    gpus: list[int] = setting([], int_list(0), "ssh: one job per listed GPU; [] = CPU")
    slots: int = setting(1, integer(1, 1024), "ssh: jobs at once when gpus = []")
    partition: str = setting("", string(), "slurm: the partition (\"\" = the cluster's default)")
    gpus_per_job: int = setting(0, integer(0, 64), "slurm: GPUs per job")
    cpus_per_job: int = setting(1, integer(1, 1024), "slurm: CPUs per job")
    mem_gb: int = setting(4, integer(1, 100_000), "slurm: memory per job (GiB)")
    time: str = setting("04:00:00", slurm_time, "slurm: time limit per job; a longer run "
                        "resumes in the next job")
    account: str = setting("", string(), "slurm: --account (\"\" = none)")
    qos: str = setting("", string(), "slurm: --qos (\"\" = none)")
    sbatch: list[str] = setting([], sbatch_options, "slurm: further sbatch options")
    max_jobs: int = setting(20, integer(1, 100_000), "slurm: our jobs queued or running at once")
    signal_delay_s: int = setting(90, integer(10, 3600), "slurm: seconds before the time limit "
                                  "at which a job saves its state and is requeued")


_STATIC = {"data": DataSection, "training": TrainingSection, "evaluation": EvaluationSection}
_KINDED = {"schedule": (ScheduleSection, SCHEDULES), "network": (NetworkSection, NETWORKS)}
_built: dict[str, tuple[int, type]] = {}


def section_class(section: str) -> type:
    """The dataclass of a table. ``schedule`` and ``network``: the base's keys, then the keys of
    each registered kind in registration order (rebuilt when the registry changes)."""
    if section in _STATIC:
        return _STATIC[section]
    base, registry = _KINDED[section]
    cached = _built.get(section)
    if cached and cached[0] == registry.version:
        return cached[1]
    extra: dict[str, dataclasses.Field] = {}
    for entry in registry:
        for f in dataclasses.fields(entry.params):
            if f.name in extra or f.name in {b.name for b in dataclasses.fields(base)}:
                seen = extra.get(f.name)
                if seen is not None and _default_of(seen) != _default_of(f):
                    raise ValueError(f"{section}.{f.name}: {registry.what} {entry.name!r} "
                                     "declares it with another default")
                continue
            extra[f.name] = f
    cls = dataclasses.make_dataclass(
        base.__name__, [(n, f.type, dataclasses.field(default=f.default,
                                                      default_factory=f.default_factory,
                                                      metadata=f.metadata))
                        for n, f in extra.items()],
        bases=(base,), frozen=True)
    cls.__module__ = __name__
    _built[section] = (registry.version, cls)
    return cls


def _default_of(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def make_section(section: str, values: dict[str, Any]) -> Section:
    """The typed section from a table (keys it does not have are ignored; missing keys get
    their defaults)."""
    cls = section_class(section)
    known = cls.keys()
    return cls(**{k: copy.deepcopy(v) for k, v in values.items() if k in known})


class _Schema(Mapping):
    """``SCHEMA[section]`` = ``{key: (default, checker)}``, read from the sections."""

    def __getitem__(self, section: str) -> dict[str, tuple[Any, Any]]:
        if section not in SECTIONS:
            raise KeyError(section)
        return section_class(section).keys()

    def __iter__(self):
        return iter(SECTIONS)

    def __len__(self):
        return len(SECTIONS)


SCHEMA = _Schema()
EXPERIMENT_KEYS = {"name", "degradation", "sweep", "host", *SECTIONS}
PROFILE_KEYS = {"experiments", "degradation", "studies", "study", "host", *SECTIONS}
TOP_KEYS = {"defaults", "experiments", "profiles", "studies", "hosts"}
STUDY_KEYS = {"name", "run", "kind", "values", "host"}  # and those of StudyKeys


@dataclass
class RunSpec:
    """One fully resolved run: an experiment after defaults, sweep and profile."""

    name: str
    degradation: str
    data: DataSection
    schedule: ScheduleSection
    network: NetworkSection
    training: TrainingSection
    evaluation: EvaluationSection
    experiment: str = ""  # the experiment it came from (differs from name for sweeps)
    profile: str = ""
    host: list[str] = field(default_factory=lambda: [LOCAL])  # where it may run, in order
    # (not in to_dict: where a run goes is the queue's business, not part of what it is)

    def to_dict(self) -> dict[str, Any]:
        d = {"name": self.name, "experiment": self.experiment or self.name,
             "profile": self.profile, "degradation": self.degradation}
        for s in SECTIONS:
            d[s] = getattr(self, s).to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunSpec":
        """From a run's config.toml; keys added to diffui after the run was made get their
        defaults, so older run folders stay readable."""
        return cls(name=d["name"], degradation=d["degradation"],
                   experiment=d.get("experiment", d["name"]), profile=d.get("profile", ""),
                   **{s: make_section(s, d.get(s, {})) for s in SECTIONS})


STUDY_KINDS = ("noise", "interpolation", "gmm")
STUDY_VALUE = {"noise": "λ", "interpolation": "N", "gmm": "components"}  # what a value is
COVARIANCES = ("full", "diag", "tied", "spherical")  # scikit-learn's GaussianMixture


@dataclass(frozen=True)
class StudyKeys(Section):
    """The keys of a ``[[studies]]`` table besides ``name``, ``run``, ``kind`` and ``values``."""

    n: int = setting(1000, integer(2, 100_000), "samples per value (for the measurements)")
    n_grid: int = setting(25, integer(1, 1024), "samples in each value's grid")
    seed: int = setting(0, integer(0, 2**31 - 1), "seed of the latents and the sampler")
    sampler: str = setting("", choice(lambda: ("", *SAMPLERS.names())),
                           "the run's final sampler when empty")
    steps: int = setting(0, integer(0, 100_000), "sampler steps (0: the run's evaluation.steps)")
    covariance: str = setting("full", choice(COVARIANCES), "gmm: the mixture's covariance")
    pca: int = setting(0, integer(0, 784), "gmm: fit in this many PCA components (0 = none)")


@dataclass
class StudySpec:
    """One sampling study on a trained run: ``kind`` at each of ``values`` (λ for noise, N for
    interpolation, components for gmm), resolved against the run it samples from."""

    name: str
    run: str
    kind: str
    values: list
    keys: StudyKeys
    degradation: str = "gaussian"  # the run's
    profile: str = ""
    host: list[str] = field(default_factory=lambda: [LOCAL])  # where it may run (see RunSpec)

    job = "study"  # what the worker runs for a folder of this spec

    def to_dict(self) -> dict[str, Any]:
        return {"job": self.job, "name": self.name, "run": self.run, "kind": self.kind,
                "values": list(self.values), "degradation": self.degradation,
                "profile": self.profile, "study": self.keys.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "StudySpec":
        return cls(name=d["name"], run=d["run"], kind=d["kind"], values=list(d["values"]),
                   degradation=d.get("degradation", "gaussian"), profile=d.get("profile", ""),
                   keys=StudyKeys(**{k: v for k, v in d.get("study", {}).items()
                                     if k in StudyKeys.keys()}))


@dataclass
class Experiments:
    """An experiments file, read: its runs (sweeps expanded, the profile applied), its profiles,
    its sampling studies and its hosts."""

    path: Path
    runs: list[RunSpec] = field(default_factory=list)
    profiles: list[str] = field(default_factory=list)
    studies: list[StudySpec] = field(default_factory=list)
    hosts: dict[str, HostSpec] = field(default_factory=dict)


class _Ctx:
    def __init__(self, path: Path):
        self.path = path

    def fail(self, key: str, expected: str, got: Any = None, show_got: bool = True) -> None:
        msg = f"{self.path.name}: {key}: expected {expected}"
        if show_got:
            msg += f", got {_show(got)}"
        raise ConfigError(escape_breaks(msg))


def _show(v: Any) -> str:
    """A value as the file writes it (``true``, not Python's ``True``), cut at 40 characters."""
    text = toml_text(v)
    return text if len(text) <= 40 else text[:37] + "..."


def toml_text(v: Any) -> str:
    """``v`` as a TOML file writes it (``true``, ``[1, 2]``, ``'a'``; a table in words)."""
    if isinstance(v, dict):
        return "a table"
    if v is None:  # a key a file does not have
        return "not set"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return "[" + ", ".join(toml_text(x) for x in v) + "]"
    if isinstance(v, float) and not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if hasattr(v, "isoformat"):  # TOML dates and times
        return v.isoformat()
    return repr(v)


def _check_table(ctx: _Ctx, where: str, value: Any) -> dict:
    if not isinstance(value, dict):
        ctx.fail(where, "a table", value)
    return value


def _check_section(ctx: _Ctx, where: str, section: str, table: Any) -> dict:
    table = _check_table(ctx, where, table)
    _check_keys(ctx, where, section_class(section), table)
    return table


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = copy.deepcopy(v)
    return out


def _cross_checks(ctx: _Ctx, where: str, spec: RunSpec) -> None:
    sch = spec.schedule
    check = SCHEDULES.get(sch.kind).check
    problem = check(sch.params()) if check else None
    if problem:
        key_, expected, got = problem
        ctx.fail(f"{where}.schedule.{key_}", expected, got)
    deg_check = DEGRADATIONS.get(spec.degradation).check
    problem = deg_check(spec) if deg_check else None
    if problem:
        key_, expected, got = problem
        ctx.fail(f"{where}.{key_}", expected, got)
    ev = spec.evaluation
    allowed = DEGRADATIONS.get(spec.degradation).samplers
    for name, ok in (("sampler", allowed), ("final_sampler", (*allowed, "same"))):
        value = getattr(ev, name)
        if value not in ok:
            ctx.fail(f"{where}.evaluation.{name}", f"one of {', '.join(map(repr, ok))} for the "
                     f"{spec.degradation} degradation", value)
    used = {ev.sampler, ev.final_sampler} - {"same"}
    if any(SAMPLERS.get(s).uses_steps for s in used) and ev.steps > sch.T:
        ctx.fail(f"{where}.evaluation.steps", f"at most schedule.T ({sch.T})", ev.steps)


def _sweep_label(key: str, value: Any) -> str:
    leaf = key.rsplit(".", 1)[-1]
    if isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, list):
        text = "x".join(str(x) for x in value)
    else:
        text = str(value)
    return f"{leaf}{text}"


def _expand_sweep(ctx: _Ctx, where: str, exp: dict) -> list[tuple[str, dict]]:
    sweep = exp.get("sweep")
    if sweep is None:
        return [(exp["name"], exp)]
    sweep = _check_table(ctx, f"{where}.sweep", sweep)
    if not sweep:
        ctx.fail(f"{where}.sweep", "at least one \"section.key\" = [values] entry", sweep)
    axes = []
    for key, values in sweep.items():
        parts = key.split(".")
        if len(parts) != 2 or parts[0] not in SECTIONS or parts[1] not in SCHEMA[parts[0]]:
            ctx.fail(f"{where}.sweep.{key}", "a key of the form section.key, like \"training.lr\"",
                     show_got=False)
        if not isinstance(values, list) or not values:
            ctx.fail(f"{where}.sweep.{key}", "a non-empty list of values", values)
        for value in values:  # before the value becomes part of a run name
            problem = SCHEMA[parts[0]][parts[1]][1](value)
            if problem:
                ctx.fail(f"{where}.sweep.{key}", problem, value)
        axes.append((parts[0], parts[1], key, values))
    out = []
    for combo in itertools.product(*(a[3] for a in axes)):
        e = {k: copy.deepcopy(v) for k, v in exp.items() if k != "sweep"}
        labels = []
        for (section, leaf, key, _), value in zip(axes, combo):
            e.setdefault(section, {})
            e[section] = dict(e[section])
            e[section][leaf] = value
            labels.append(_sweep_label(key, value))
        out.append(("-".join([exp["name"], *labels]), e))
    return out


def parse_experiments(text: str, path: Path, profile: str | None = None) -> Experiments:
    ctx = _Ctx(path)
    if text.startswith("\ufeff"):  # a byte-order mark (some Windows editors write one)
        text = text[1:]
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path.name}: not valid TOML: {e}") from None
    for key in doc:
        if key not in TOP_KEYS:
            ctx.fail(key, "one of the top-level tables " + ", ".join(sorted(TOP_KEYS)), show_got=False)

    defaults = {s: {k: copy.deepcopy(v[0]) for k, v in SCHEMA[s].items()} for s in SECTIONS}
    degradation = "gaussian"
    dtable = _check_table(ctx, "defaults", doc.get("defaults", {}))
    for key, value in dtable.items():
        if key == "degradation":
            if value not in DEGRADATIONS:
                ctx.fail("defaults.degradation", "one of " + ", ".join(map(repr, DEGRADATIONS.names())), value)
            degradation = value
        elif key in SECTIONS:
            defaults[key] = _merge(defaults[key], _check_section(ctx, f"defaults.{key}", key, value))
        else:
            ctx.fail(f"defaults.{key}", "one of the keys degradation, " + ", ".join(SECTIONS),
                     show_got=False)

    hosts = _parse_hosts(ctx, doc.get("hosts", {}))
    profiles = _check_table(ctx, "profiles", doc.get("profiles", {}))
    for pname, ptable in profiles.items():
        if not safe_name(pname):  # it names the folder runs-PROFILE
            ctx.fail(f"profiles.{pname}", "a profile name that is " + _name_problem(pname),
                     show_got=False)
        ptable = _check_table(ctx, f"profiles.{pname}", ptable)
        for key, value in ptable.items():
            where = f"profiles.{pname}.{key}"
            if key == "experiments":
                if not isinstance(value, list) or not value or not all(isinstance(x, str) for x in value):
                    ctx.fail(where, "a non-empty list of experiment names", value)
            elif key == "degradation":
                if value not in DEGRADATIONS:
                    ctx.fail(where, "one of " + ", ".join(map(repr, DEGRADATIONS.names())), value)
            elif key == "studies":
                if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
                    ctx.fail(where, "a list of study names", value)
            elif key == "study":
                _check_keys(ctx, where, StudyKeys, _check_table(ctx, where, value))
            elif key == "host":
                _host_list(ctx, where, value, hosts)
            elif key in SECTIONS:
                _check_section(ctx, where, key, value)
            else:
                ctx.fail(where, "one of the keys " + ", ".join(sorted(PROFILE_KEYS)), show_got=False)
    if profile is not None and profile not in profiles:
        known = ", ".join(profiles) or "none defined"
        raise ConfigError(escape_breaks(f"{path.name}: profiles.{profile}: no such profile "
                                   f"(profiles: {known})"))
    ptable = profiles.get(profile, {}) if profile else {}

    experiments = doc.get("experiments", [])
    if not isinstance(experiments, list) or not experiments:
        ctx.fail("experiments", "at least one [[experiments]] table", experiments)
    runs: list[RunSpec] = []
    every_run: dict[str, RunSpec] = {}  # every run of the file, whatever the profile
    seen: dict[str, str] = {}
    exp_names = []
    for i, exp in enumerate(experiments):
        where = f"experiments[{i}]"
        exp = _check_table(ctx, where, exp)
        if "name" not in exp:
            ctx.fail(f"{where}.name", "a name for the experiment (a safe folder name)", show_got=False)
        name = exp["name"]
        if not safe_name(name):
            ctx.fail(f"{where}.name", _name_problem(name), name)
        where = f"experiments[{i}] ({name})"
        exp_names.append(name)
        for key, value in exp.items():
            if key not in EXPERIMENT_KEYS:
                ctx.fail(f"{where}.{key}", "one of the keys " + ", ".join(sorted(EXPERIMENT_KEYS)),
                         show_got=False)
            if key in SECTIONS:
                _check_section(ctx, f"{where}.{key}", key, value)
        if "degradation" in exp and exp["degradation"] not in DEGRADATIONS:
            ctx.fail(f"{where}.degradation", "one of " + ", ".join(map(repr, DEGRADATIONS.names())),
                     exp["degradation"])
        host = (_host_list(ctx, f"profiles.{profile}.host", ptable["host"], hosts) if "host" in ptable
                else _host_list(ctx, f"{where}.host", exp.get("host", LOCAL), hosts))
        for run_name, e in _expand_sweep(ctx, where, exp):
            if seen.get(run_name) == where:  # two values of its own sweep print alike
                ctx.fail(f"{where}.sweep", f"values that give distinct run names (\"{run_name}\" "
                         "comes twice)", show_got=False)
            if run_name in seen:
                ctx.fail(f"{where}.name", f"a name used once (\"{run_name}\" is also {seen[run_name]})",
                         show_got=False)
            if not safe_name(run_name):
                ctx.fail(f"{where}.sweep", f"values that make {_name_problem(run_name)}, not "
                         f"{run_name!r}", show_got=False)
            seen[run_name] = where
            sections = {s: _merge(_merge(defaults[s], e.get(s, {})), ptable.get(s, {}))
                        for s in SECTIONS}
            for s in SECTIONS:  # a sweep value is checked like any other value
                _check_section(ctx, f"{where}.{s}", s, sections[s])
            spec = RunSpec(name=run_name, experiment=name, profile=profile or "", host=host,
                           degradation=ptable.get("degradation", e.get("degradation", degradation)),
                           **{s: make_section(s, sections[s]) for s in SECTIONS})
            every_run[run_name] = spec
            if name in ptable.get("experiments", [name]):  # a profile's own runs only
                _cross_checks(ctx, where, spec)
                runs.append(spec)
    for pname, pt in profiles.items():  # every profile, not only the one selected
        for n in pt.get("experiments", []):
            if n not in exp_names:
                ctx.fail(f"profiles.{pname}.experiments", "names of experiments in this file", n)
    studies = _parse_studies(ctx, doc.get("studies", []), ptable, profiles, every_run,
                             {r.name for r in runs}, profile or "", hosts)
    return Experiments(path=path, runs=runs, profiles=list(profiles), studies=studies, hosts=hosts)


def _parse_hosts(ctx: _Ctx, table: Any) -> dict[str, HostSpec]:
    """The ``[hosts.NAME]`` tables: keys of their kind only; an ssh host needs an address."""
    out = {}
    for name, value in _check_table(ctx, "hosts", table).items():
        where = f"hosts.{name}"
        if name == LOCAL or not SAFE_NAME.fullmatch(name):
            ctx.fail(where, "a host name of letters, digits, '.', '_', '-' other than "
                     f"{LOCAL!r} (this machine)", name)
        value = _check_table(ctx, where, value)
        _check_keys(ctx, where, HostSpec, value)
        spec = HostSpec(**value)
        other = _SSH_KEYS if spec.kind == "slurm" else _SLURM_KEYS
        for key in value:
            if key in other:
                ctx.fail(f"{where}.{key}", f"only the keys of a kind = {spec.kind!r} host (this "
                         f"key is for kind = {'ssh' if spec.kind == 'slurm' else 'slurm'!r})",
                         show_got=False)
        if spec.kind == "ssh" and not spec.address:
            ctx.fail(f"{where}.address", "the host's name, IP or ~/.ssh/config alias",
                     spec.address, show_got="address" in value)
        if spec.kind == "slurm" and not spec.address:  # diffui runs on the login node
            if "workdir" in value:
                ctx.fail(f"{where}.workdir", "no workdir on a cluster without an address (on "
                         "its login node, runs stay in diffui's runs folder; workdir is for a "
                         "login node reached over SSH)", spec.workdir)
            if "python" not in value:  # the jobs run diffui's own interpreter
                spec = dataclasses.replace(spec, python="")
        if len(set(spec.gpus)) != len(spec.gpus):
            ctx.fail(f"{where}.gpus", "distinct GPU indices", spec.gpus)
        out[name] = spec
    return out


def _host_list(ctx: _Ctx, where: str, value: Any, hosts: dict[str, HostSpec]) -> list[str]:
    """``host = "gpu1"`` or ``["gpu1", "gpu2"]``: names of [hosts] tables, or ``"local"``."""
    names = [value] if isinstance(value, str) else value
    known = [LOCAL, *hosts]
    if (not isinstance(names, list) or not names or len(set(map(str, names))) != len(names)
            or any(n not in known for n in names)):
        ctx.fail(where, "a host name or a list of distinct host names, each one of "
                 + ", ".join(map(repr, known)), value)
    return list(names)


def _check_keys(ctx: _Ctx, where: str, cls: type, table: dict) -> None:
    """Every key of ``table`` is one of ``cls``'s (a Section) and passes its check."""
    keys = cls.keys()
    for name, value in table.items():
        if name not in keys:
            ctx.fail(f"{where}.{name}", "one of the keys " + ", ".join(keys), show_got=False)
        problem = keys[name][1](value)
        if problem:
            ctx.fail(f"{where}.{name}", problem, value)


def _parse_studies(ctx: _Ctx, tables: Any, ptable: dict, profiles: dict,
                   every_run: dict[str, RunSpec], selected: set[str],
                   profile: str, hosts: dict[str, HostSpec]) -> list[StudySpec]:
    """The ``[[studies]]`` of the file (those of the profile, whose runs it has), checked
    against the runs they sample from."""
    if not isinstance(tables, list):
        ctx.fail("studies", "a list of [[studies]] tables", tables)
    out, names = [], []
    for i, table in enumerate(tables):
        where = f"studies[{i}]"
        table = _check_table(ctx, where, table)
        name = table.get("name")
        if not safe_name(name):
            ctx.fail(f"{where}.name", _name_problem(name), name, show_got="name" in table)
        where = f"studies[{i}] ({name})"
        if name in names:
            ctx.fail(f"{where}.name", "a name used once among the studies", show_got=False)
        names.append(name)
        extra = {k: v for k, v in table.items() if k not in STUDY_KEYS}
        _check_keys(ctx, where, StudyKeys, extra)
        host = (_host_list(ctx, f"profiles.{profile}.host", ptable["host"], hosts) if "host" in ptable
                else _host_list(ctx, f"{where}.host", table.get("host", LOCAL), hosts))
        run = table.get("run")
        if run not in every_run:
            ctx.fail(f"{where}.run", "the name of a run of this file"
                     + (f" (have: {', '.join(every_run)})" if every_run else ""), run)
        spec_run = every_run[run]
        kind = table.get("kind")
        allowed = STUDY_KINDS if spec_run.degradation == "morph" else STUDY_KINDS[:2]
        if kind not in allowed:
            ctx.fail(f"{where}.kind", "one of " + ", ".join(map(repr, allowed)) + (
                f" for a run of the {spec_run.degradation} degradation (gmm fits a mixture to "
                "FashionMNIST latents)" if kind == "gmm" else ""), kind)
        values = table.get("values")
        integer_values = kind != "noise"
        ok = isinstance(values, list) and values and all(
            not isinstance(v, bool) and (isinstance(v, int) and v >= 1 if integer_values
                                         else isinstance(v, (int, float)) and 0 <= v < 1e6
                                         and math.isfinite(v)) for v in values)
        if not ok or len(set(values)) != len(values):
            ctx.fail(f"{where}.values", "a non-empty list of distinct " + (
                "integers >= 1 (N latents averaged)" if kind == "interpolation" else
                "integers >= 1 (mixture components)" if kind == "gmm" else "numbers >= 0 (λ)"),
                values)
        merged = {**extra, **ptable.get("study", {})}
        keys = StudyKeys(**merged)
        samplers = DEGRADATIONS.get(spec_run.degradation).samplers
        if keys.sampler and keys.sampler not in samplers:
            ctx.fail(f"{where}.sampler", "one of " + ", ".join(map(repr, samplers))
                     + f" for the {spec_run.degradation} degradation", keys.sampler)
        if keys.steps > spec_run.schedule.T:
            ctx.fail(f"{where}.steps", f"at most the run's schedule.T ({spec_run.schedule.T})",
                     keys.steps)
        if run in selected and name in ptable.get("studies", [name]):
            out.append(StudySpec(name=name, run=run, kind=kind, values=list(values), keys=keys,
                                 degradation=spec_run.degradation, profile=profile, host=host))
    for pname, pt in profiles.items():
        for n in pt.get("studies", []):
            if n not in names:
                ctx.fail(f"profiles.{pname}.studies", "names of studies in this file", n)
    return out


def load_experiments(path: str | Path, profile: str | None = None) -> Experiments:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file (expected an experiments file, "
                          "e.g. experiments.toml)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot be read: {e}") from None
    return parse_experiments(text, path, profile)


def select(study: Experiments, only: list[str] | None) -> list[RunSpec]:
    """Runs whose name or experiment name is in ``only`` (all when ``only`` is empty)."""
    if not only:
        return list(study.runs)
    known = {r.name for r in study.runs} | {r.experiment for r in study.runs}
    for n in only:
        if n not in known:
            raise ConfigError(escape_breaks(f"{study.path.name}: --only {n}: expected the name of an "
                                       f"experiment or run in this file (have: "
                                       f"{', '.join(sorted(known))})"))
    return [r for r in study.runs if r.name in only or r.experiment in only]


def override_host(study: Experiments, specs: list, host: str | None) -> None:
    """``--host NAME``: every spec of ``specs`` goes to that host (``local`` or a [hosts]
    table of the file) for this call."""
    if host is None:
        return
    if host != LOCAL and host not in study.hosts:
        raise ConfigError(f"--host {host}: expected {LOCAL!r} or a host of {study.path.name} "
                          f"(hosts: {', '.join(study.hosts) or 'none defined'})")
    for spec in specs:
        spec.host = [host]


def spec_to_toml(spec: RunSpec) -> str:
    import tomli_w
    return tomli_w.dumps(spec.to_dict())


def spec_from_toml(text: str) -> "RunSpec | StudySpec":
    """The spec in a run folder's (or a study folder's) config.toml."""
    d = tomllib.loads(text)
    return StudySpec.from_dict(d) if d.get("job") == StudySpec.job else RunSpec.from_dict(d)
