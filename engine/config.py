"""experiments.toml -> validated run specs.

The file has four kinds of table:

* ``[defaults]`` (with sub-tables ``data``, ``schedule``, ``network``, ``training``,
  ``evaluation``) applies to every experiment;
* ``[[experiments]]`` lists experiments; each may override any default and may carry a
  ``sweep`` table of ``"section.key" = [values]`` that expands into a grid of runs;
* ``[profiles.NAME]`` overrides settings of every experiment for a named profile (``quick``
  for a smoke run) and may restrict the experiments with ``experiments = [...]`` (the
  profile's settings are then cross-checked against those experiments only).

The samplers depend on the degradation: ``ddim`` / ``ddpm`` for ``gaussian``, ``iterative`` /
``direct`` for ``morph``; ``final_sampler = "same"`` repeats ``sampler`` whatever it is.

Everything is validated before anything runs; the first problem raises :class:`ConfigError`
whose message is one line naming the file, the key path and what was expected.
"""
from __future__ import annotations

import copy
import itertools
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEDULE_KINDS = ("linear", "cosine", "constant", "inverse_linear")
DEGRADATIONS = ("gaussian", "morph")
NETWORKS = ("cnn", "unet")
DATASETS = ("mnist", "fashion_mnist")
# the samplers of each degradation; "same" (final_sampler only) repeats evaluation.sampler
DEGRADATION_SAMPLERS = {"gaussian": ("ddim", "ddpm"), "morph": ("iterative", "direct")}
SAMPLERS = tuple(s for group in DEGRADATION_SAMPLERS.values() for s in group)
MORPH_LATENTS = ("estimate", "start")
SECTIONS = ("data", "schedule", "network", "training", "evaluation")
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class ConfigError(Exception):
    """A problem in an experiments file; ``str()`` is the one-line message for the user."""


# --- the schema --------------------------------------------------------------------------
# Each key: (default, checker). A checker returns None when the value is fine, otherwise the
# text of "what was expected".


def _int(lo=None, hi=None):
    def check(v):
        if isinstance(v, bool) or not isinstance(v, int):
            return _range_text("an integer", lo, hi)
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            return _range_text("an integer", lo, hi)
        return None
    return check


def _float(lo=None, hi=None, lo_open=False, hi_open=False):
    def check(v):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return _range_text("a number", lo, hi, lo_open, hi_open)
        if lo is not None and (v < lo or (lo_open and v == lo)):
            return _range_text("a number", lo, hi, lo_open, hi_open)
        if hi is not None and (v > hi or (hi_open and v == hi)):
            return _range_text("a number", lo, hi, lo_open, hi_open)
        return None
    return check


def _range_text(what, lo, hi, lo_open=False, hi_open=False):
    if lo is not None and hi is not None:
        return f"{what} in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{what} {'>' if lo_open else '>='} {lo}"
    if hi is not None:
        return f"{what} {'<' if hi_open else '<='} {hi}"
    return what


def _choice(options):
    def check(v):
        if v not in options:
            return "one of " + ", ".join(repr(o) for o in options)
        return None
    return check


def _str():
    return lambda v: None if isinstance(v, str) else "a string"


def _bool():
    return lambda v: None if isinstance(v, bool) else "true or false"


def _int_list(lo=None, min_len=0):
    item = _int(lo)

    def check(v):
        what = f"a list of integers{'' if lo is None else f' >= {lo}'}"
        if not isinstance(v, list) or len(v) < min_len or any(item(x) for x in v):
            return what + (f" (at least {min_len})" if min_len else "")
        return None
    return check


def _three_widths(v):
    if _int_list(1)(v) or len(v) != 3:
        return "three integers >= 1 (e.g. [32, 64, 128])"
    return None


def _device(v):
    if isinstance(v, str) and (v in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", v)):
        return None
    return "'auto', 'cpu', 'cuda' or 'cuda:N'"


SCHEMA: dict[str, dict[str, tuple[Any, Any]]] = {
    "data": {
        "dataset": ("mnist", _choice(DATASETS)),
        "train_subset": (0, _int(0)),  # 0 = every training image available
        "val_fraction": (0.1, _float(0, 0.5, lo_open=True)),
        "idx_dir": ("", _str()),  # a folder of IDX files (optional)
        "torchvision_root": ("", _str()),  # torchvision's root folder (optional)
        "download": (False, _bool()),  # let torchvision download into torchvision_root
        "fetch": (True, _bool()),  # download into diffui's data folder when no local source has it
    },
    "schedule": {
        "kind": ("linear", _choice(SCHEDULE_KINDS)),
        "T": (1000, _int(1, 100_000)),
        "beta_min": (1e-4, _float(0, 1, lo_open=True, hi_open=True)),  # linear, inverse_linear
        "beta_max": (0.02, _float(0, 1, lo_open=True, hi_open=True)),  # linear, inverse_linear
        "s": (0.008, _float(0, 1)),  # cosine offset
        "max_beta": (0.1, _float(0, 1, lo_open=True)),  # cosine cap (0.999 in the paper)
        "beta": (0.01, _float(0, 1, lo_open=True, hi_open=True)),  # constant
    },
    "network": {
        "kind": ("cnn", _choice(NETWORKS)),
        "channels": ([16, 32, 32, 16], _int_list(1, min_len=1)),  # the CNN's block widths
        "unet_channels": ([32, 64, 128], _three_widths),  # the UNet's widths, 28, 14 and 7 pixels
        "time_embedding": (16, _int(1, 1024)),
    },
    "training": {
        "epochs": (50, _int(1, 100_000)),
        "batch_size": (128, _int(1, 65_536)),
        "lr": (2e-4, _float(0, 10, lo_open=True)),
        "seed": (0, _int(0, 2**31 - 1)),
        "device": ("auto", _device),
        "amp": ("auto", _choice(("auto", "off", "bf16", "fp16"))),
        "progress_every": (1.0, _float(0, 3600, lo_open=True)),  # seconds between progress events
    },
    "evaluation": {
        "sampler": ("ddim", _choice(SAMPLERS)),
        "steps": (50, _int(1, 100_000)),  # DDIM steps, or iterative morph steps
        "grid_epochs": ([5, 10, 20, 30, 40], _int_list(1)),
        "n_grid": (25, _int(1, 1024)),  # images per grid (a square number draws a square grid)
        "final_sampler": ("ddpm", _choice((*SAMPLERS, "same"))),  # samples after the last epoch
        "morph_latent": ("estimate", _choice(MORPH_LATENTS)),  # the latent of D in the iterative loop
        "every": (5, _int(0, 100_000)),  # FID every k epochs and after the last (0 = never)
        "n_eval": (1000, _int(2, 100_000)),  # samples per FID evaluation
        "backbone": ("lenet", _choice(("lenet", "inception"))),  # FID feature network
    },
}
EXPERIMENT_KEYS = {"name", "degradation", "sweep", *SECTIONS}
PROFILE_KEYS = {"experiments", "degradation", *SECTIONS}
TOP_KEYS = {"defaults", "experiments", "profiles"}


@dataclass
class RunSpec:
    """One fully resolved run: an experiment after defaults, sweep and profile."""

    name: str
    degradation: str
    data: dict[str, Any]
    schedule: dict[str, Any]
    network: dict[str, Any]
    training: dict[str, Any]
    evaluation: dict[str, Any]
    experiment: str = ""  # the experiment it came from (differs from name for sweeps)
    profile: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = {"name": self.name, "experiment": self.experiment or self.name,
             "profile": self.profile, "degradation": self.degradation}
        for s in SECTIONS:
            d[s] = copy.deepcopy(getattr(self, s))
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunSpec":
        """From a run's config.toml; keys added to diffui after the run was made get their
        defaults, so older run folders stay readable."""
        return cls(name=d["name"], degradation=d["degradation"],
                   experiment=d.get("experiment", d["name"]), profile=d.get("profile", ""),
                   **{s: {**{k: copy.deepcopy(v[0]) for k, v in SCHEMA[s].items()}, **d.get(s, {})}
                      for s in SECTIONS})


@dataclass
class Study:
    path: Path
    runs: list[RunSpec] = field(default_factory=list)
    profiles: list[str] = field(default_factory=list)


class _Ctx:
    def __init__(self, path: Path):
        self.path = path

    def fail(self, key: str, expected: str, got: Any = None, show_got: bool = True) -> None:
        msg = f"{self.path.name}: {key}: expected {expected}"
        if show_got:
            msg += f", got {_show(got)}"
        # keys come from the file and a quoted TOML key may hold a line break: keep one line
        raise ConfigError(msg.replace("\r", "\\r").replace("\n", "\\n"))


def _show(v: Any) -> str:
    if isinstance(v, dict):
        return "a table"
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_table(ctx: _Ctx, where: str, value: Any) -> dict:
    if not isinstance(value, dict):
        ctx.fail(where, "a table", value)
    return value


def _check_section(ctx: _Ctx, where: str, section: str, table: Any) -> dict:
    table = _check_table(ctx, where, table)
    schema = SCHEMA[section]
    for key, value in table.items():
        if key not in schema:
            ctx.fail(f"{where}.{key}", "one of the keys " + ", ".join(schema), show_got=False)
        problem = schema[key][1](value)
        if problem:
            ctx.fail(f"{where}.{key}", problem, value)
    return table


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = copy.deepcopy(v)
    return out


def _cross_checks(ctx: _Ctx, where: str, spec: RunSpec) -> None:
    sch = spec.schedule
    if sch["kind"] in ("linear", "inverse_linear") and sch["beta_min"] > sch["beta_max"]:
        ctx.fail(f"{where}.schedule.beta_min", f"a number <= beta_max ({sch['beta_max']})",
                 sch["beta_min"])
    ev = spec.evaluation
    allowed = DEGRADATION_SAMPLERS[spec.degradation]
    for key, ok in (("sampler", allowed), ("final_sampler", (*allowed, "same"))):
        if ev[key] not in ok:
            ctx.fail(f"{where}.evaluation.{key}", f"one of {', '.join(map(repr, ok))} for the "
                     f"{spec.degradation} degradation", ev[key])
    if {"ddim", "iterative"} & {ev["sampler"], ev["final_sampler"]} and ev["steps"] > sch["T"]:
        ctx.fail(f"{where}.evaluation.steps", f"at most schedule.T ({sch['T']})", ev["steps"])


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


def parse_study(text: str, path: Path, profile: str | None = None) -> Study:
    ctx = _Ctx(path)
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
                ctx.fail("defaults.degradation", "one of " + ", ".join(map(repr, DEGRADATIONS)), value)
            degradation = value
        elif key in SECTIONS:
            defaults[key] = _merge(defaults[key], _check_section(ctx, f"defaults.{key}", key, value))
        else:
            ctx.fail(f"defaults.{key}", "one of the keys degradation, " + ", ".join(SECTIONS),
                     show_got=False)

    profiles = _check_table(ctx, "profiles", doc.get("profiles", {}))
    for pname, ptable in profiles.items():
        ptable = _check_table(ctx, f"profiles.{pname}", ptable)
        for key, value in ptable.items():
            where = f"profiles.{pname}.{key}"
            if key == "experiments":
                if not isinstance(value, list) or not value or not all(isinstance(x, str) for x in value):
                    ctx.fail(where, "a non-empty list of experiment names", value)
            elif key == "degradation":
                if value not in DEGRADATIONS:
                    ctx.fail(where, "one of " + ", ".join(map(repr, DEGRADATIONS)), value)
            elif key in SECTIONS:
                _check_section(ctx, where, key, value)
            else:
                ctx.fail(where, "one of the keys " + ", ".join(sorted(PROFILE_KEYS)), show_got=False)
    if profile is not None and profile not in profiles:
        known = ", ".join(profiles) or "none defined"
        raise ConfigError(f"{path.name}: profiles.{profile}: no such profile (profiles: {known})")
    ptable = profiles.get(profile, {}) if profile else {}

    experiments = doc.get("experiments", [])
    if not isinstance(experiments, list) or not experiments:
        ctx.fail("experiments", "at least one [[experiments]] table", experiments)
    runs: list[RunSpec] = []
    seen: dict[str, str] = {}
    exp_names = []
    for i, exp in enumerate(experiments):
        where = f"experiments[{i}]"
        exp = _check_table(ctx, where, exp)
        if "name" not in exp:
            ctx.fail(f"{where}.name", "a name for the experiment (a safe folder name)", show_got=False)
        name = exp["name"]
        if not isinstance(name, str) or not SAFE_NAME.match(name):
            ctx.fail(f"{where}.name", "a safe folder name (letters, digits, '.', '_', '-'; "
                     "not starting with '.' or '-')", name)
        where = f"experiments[{i}] ({name})"
        exp_names.append(name)
        for key, value in exp.items():
            if key not in EXPERIMENT_KEYS:
                ctx.fail(f"{where}.{key}", "one of the keys " + ", ".join(sorted(EXPERIMENT_KEYS)),
                         show_got=False)
            if key in SECTIONS:
                _check_section(ctx, f"{where}.{key}", key, value)
        if "degradation" in exp and exp["degradation"] not in DEGRADATIONS:
            ctx.fail(f"{where}.degradation", "one of " + ", ".join(map(repr, DEGRADATIONS)),
                     exp["degradation"])
        for run_name, e in _expand_sweep(ctx, where, exp):
            if run_name in seen:
                ctx.fail(f"{where}.name", f"a name used once (\"{run_name}\" is also {seen[run_name]})",
                         show_got=False)
            if not SAFE_NAME.match(run_name):
                ctx.fail(f"{where}.sweep", f"values that make a safe folder name, not {run_name!r}",
                         show_got=False)
            seen[run_name] = where
            sections = {s: _merge(_merge(defaults[s], e.get(s, {})), ptable.get(s, {}))
                        for s in SECTIONS}
            for s in SECTIONS:  # a sweep value is checked like any other value
                _check_section(ctx, f"{where}.{s}", s, sections[s])
            spec = RunSpec(name=run_name, experiment=name, profile=profile or "",
                           degradation=ptable.get("degradation", e.get("degradation", degradation)),
                           **sections)
            if name in ptable.get("experiments", [name]):  # a profile's own runs only
                _cross_checks(ctx, where, spec)
                runs.append(spec)
    for pname, pt in profiles.items():  # every profile, not only the one selected
        for n in pt.get("experiments", []):
            if n not in exp_names:
                ctx.fail(f"profiles.{pname}.experiments", "names of experiments in this file", n)
    return Study(path=path, runs=runs, profiles=list(profiles))


def load_study(path: str | Path, profile: str | None = None) -> Study:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file (expected an experiments file, "
                          "e.g. experiments.toml)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot be read: {e}") from None
    return parse_study(text, path, profile)


def select(study: Study, only: list[str] | None) -> list[RunSpec]:
    """Runs whose name or experiment name is in ``only`` (all when ``only`` is empty)."""
    if not only:
        return list(study.runs)
    known = {r.name for r in study.runs} | {r.experiment for r in study.runs}
    for n in only:
        if n not in known:
            raise ConfigError(f"{study.path.name}: --only {n}: expected the name of an experiment "
                              f"or run in this file (have: {', '.join(sorted(known))})")
    return [r for r in study.runs if r.name in only or r.experiment in only]


def spec_to_toml(spec: RunSpec) -> str:
    import tomli_w
    return tomli_w.dumps(spec.to_dict())


def spec_from_toml(text: str) -> RunSpec:
    return RunSpec.from_dict(tomllib.loads(text))
