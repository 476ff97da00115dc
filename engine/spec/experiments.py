"""Reading an experiments file (experiments.toml) into :class:`Experiments`: validated run specs,
its profiles, its sampling studies and its hosts.

The file has these kinds of table:

* ``[defaults]`` (with sub-tables ``data``, ``schedule``, ``network``, ``training``,
  ``evaluation``) applies to every experiment;
* ``[[experiments]]`` lists experiments; each may override any default and may carry a
  ``sweep`` table of ``"section.key" = [values]`` that expands into a grid of runs
  (:mod:`engine.spec.sweeps`);
* ``[profiles.NAME]`` overrides settings of every experiment for a named profile
  (:mod:`engine.spec.profiles`);
* ``[[studies]]`` lists sampling studies on the runs (:mod:`engine.spec.studies`);
* ``[hosts.NAME]`` names the machines runs may go to besides this one (:mod:`engine.spec.hosts`).

The sections are typed (:mod:`engine.spec.sections`). Schedule kinds, networks, degradations and
samplers come from the registries of :mod:`engine.spec.components`; each degradation's entry
names its samplers (``ddim`` / ``ddpm`` for ``gaussian``, ``iterative`` / ``direct`` for
``morph``); ``final_sampler = "same"`` repeats ``sampler`` whatever it is.

Everything is validated before anything runs; the first problem raises
:class:`engine.spec.checks.ConfigError` whose message is one line naming the file, the key path
and what was expected.
"""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.spec.checks import (
    Checker,
    ConfigError,
    check_degradation,
    check_name,
    check_section,
    check_table,
    merge,
)
from engine.spec.components import DEGRADATIONS, SAMPLERS, SCHEDULES
from engine.spec.hosts import parse_hosts
from engine.spec.names import name_problem, safe_name
from engine.spec.profiles import Profile, check_listed, parse_profiles
from engine.spec.sections import LOCAL, SCHEMA, SECTIONS, HostSpec, make_sections
from engine.spec.specs import RunSpec, StudySpec
from engine.spec.studies import parse_studies
from engine.spec.sweeps import expand_sweep
from engine.text import escape_breaks

EXPERIMENT_KEYS = {"name", "degradation", "sweep", "host", *SECTIONS}
TOP_KEYS = {"defaults", "experiments", "profiles", "studies", "hosts"}


@dataclass
class Experiments:
    """An experiments file, read: its runs (sweeps expanded, the profile applied), its profiles,
    its sampling studies and its hosts."""

    path: Path
    runs: list[RunSpec] = field(default_factory=list)
    profiles: list[str] = field(default_factory=list)
    studies: list[StudySpec] = field(default_factory=list)
    hosts: dict[str, HostSpec] = field(default_factory=dict)


@dataclass
class _Defaults:
    """The ``[defaults]`` of a file: every section's table, and the degradation."""

    sections: dict[str, dict[str, Any]]
    degradation: str = "gaussian"


def parse_experiments(text: str, path: Path, profile: str | None = None) -> Experiments:
    """The experiments file ``text`` (read from ``path``, whose name the messages give) with
    ``profile`` applied; :class:`ConfigError` at the first problem."""
    ck = Checker(path)
    doc = _toml(ck, text)
    defaults = _parse_defaults(ck, doc.get("defaults", {}))
    hosts = parse_hosts(ck, doc.get("hosts", {}))
    profiles = parse_profiles(ck, doc.get("profiles", {}), hosts)
    if profile is not None and profile not in profiles:
        known = ", ".join(profiles) or "none defined"
        raise ConfigError(
            escape_breaks(f"{path.name}: profiles.{profile}: no such profile (profiles: {known})")
        )
    chosen = Profile(profile, profiles[profile]) if profile else Profile()
    every_run = _parse_runs(ck, doc.get("experiments", []), defaults, chosen, hosts)
    check_listed(
        ck,
        profiles,
        "experiments",
        {r.experiment for r in every_run.values()},
        "names of experiments in this file",
    )
    runs = [r for r in every_run.values() if chosen.selects("experiments", r.experiment)]
    studies = parse_studies(
        ck, doc.get("studies", []), chosen, profiles, every_run, {r.name for r in runs}, hosts
    )
    return Experiments(path=path, runs=runs, profiles=list(profiles), studies=studies, hosts=hosts)


def _toml(ck: Checker, text: str) -> dict[str, Any]:
    """The TOML document of a file, with top-level tables of an experiments file only."""
    if text.startswith("\ufeff"):  # a byte-order mark (some Windows editors write one)
        text = text[1:]
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{ck.path.name}: not valid TOML: {e}") from None
    for key in doc:
        if key not in TOP_KEYS:
            ck.fail(
                key, "one of the top-level tables " + ", ".join(sorted(TOP_KEYS)), show_got=False
            )
    return doc


def _parse_defaults(ck: Checker, table: Any) -> _Defaults:
    """diffui's defaults with those of the ``[defaults]`` table set."""
    out = _Defaults({s: {k: copy.deepcopy(v[0]) for k, v in SCHEMA[s].items()} for s in SECTIONS})
    for key, value in check_table(ck, "defaults", table).items():
        if key == "degradation":
            out.degradation = check_degradation(ck, "defaults.degradation", value)
        elif key in SECTIONS:
            out.sections[key] = merge(
                out.sections[key], check_section(ck, f"defaults.{key}", key, value)
            )
        else:
            ck.fail(
                f"defaults.{key}",
                "one of the keys degradation, " + ", ".join(SECTIONS),
                show_got=False,
            )
    return out


def _parse_runs(
    ck: Checker, tables: Any, defaults: _Defaults, profile: Profile, hosts: dict[str, HostSpec]
) -> dict[str, RunSpec]:
    """Every run of the file by name, whatever experiments the profile keeps (its settings
    applied); the profile's own runs are cross-checked."""
    if not isinstance(tables, list) or not tables:
        ck.fail("experiments", "at least one [[experiments]] table", tables)
    every_run: dict[str, RunSpec] = {}
    seen: dict[str, str] = {}  # where each run name comes from
    for i, table in enumerate(tables):
        exp = check_table(ck, f"experiments[{i}]", table)
        name = check_name(
            ck, f"experiments[{i}].name", exp, "a name for the experiment (a safe folder name)"
        )
        where = f"experiments[{i}] ({name})"
        _check_experiment(ck, where, exp)
        host = profile.hosts(ck, where, exp, hosts)
        for run_name, e in expand_sweep(ck, where, exp):
            _check_run_name(ck, where, run_name, seen)
            seen[run_name] = where
            spec = _run_spec(ck, where, run_name, e, defaults, profile, host)
            if profile.selects("experiments", name):  # a profile's own runs only
                _cross_checks(ck, where, spec)
            every_run[run_name] = spec
    return every_run


def _check_experiment(ck: Checker, where: str, exp: dict[str, Any]) -> None:
    for key, value in exp.items():
        if key not in EXPERIMENT_KEYS:
            ck.fail(
                f"{where}.{key}",
                "one of the keys " + ", ".join(sorted(EXPERIMENT_KEYS)),
                show_got=False,
            )
        if key in SECTIONS:
            check_section(ck, f"{where}.{key}", key, value)
    if "degradation" in exp:
        check_degradation(ck, f"{where}.degradation", exp["degradation"])


def _check_run_name(ck: Checker, where: str, run_name: str, seen: dict[str, str]) -> None:
    if seen.get(run_name) == where:  # two values of its own sweep print alike
        ck.fail(
            f"{where}.sweep",
            f'values that give distinct run names ("{run_name}" comes twice)',
            show_got=False,
        )
    if run_name in seen:
        ck.fail(
            f"{where}.name",
            f'a name used once ("{run_name}" is also {seen[run_name]})',
            show_got=False,
        )
    if not safe_name(run_name):
        ck.fail(
            f"{where}.sweep",
            f"values that make {name_problem(run_name)}, not {run_name!r}",
            show_got=False,
        )


def _run_spec(
    ck: Checker,
    where: str,
    run_name: str,
    exp: dict[str, Any],
    defaults: _Defaults,
    profile: Profile,
    host: list[str],
) -> RunSpec:
    """The run ``run_name`` of the experiment table ``exp`` (a sweep's values set): defaults,
    then the experiment's settings, then the profile's."""
    sections = {
        s: merge(merge(defaults.sections[s], exp.get(s, {})), profile.table.get(s, {}))
        for s in SECTIONS
    }
    for s in SECTIONS:  # a sweep value is checked like any other value
        check_section(ck, f"{where}.{s}", s, sections[s])
    degradation = profile.table.get("degradation", exp.get("degradation", defaults.degradation))
    return RunSpec(
        name=run_name,
        experiment=exp["name"],
        profile=profile.name,
        host=host,
        degradation=degradation,
        **make_sections(sections),
    )


def _cross_checks(ck: Checker, where: str, spec: RunSpec) -> None:
    """What the keys of a run must agree on: the schedule's own check, the degradation's,
    samplers of the degradation, sampler steps within the schedule."""
    sch = spec.schedule
    check = SCHEDULES.get(sch.kind).check
    problem = check(sch.params()) if check else None
    if problem:
        key_, expected, got = problem
        ck.fail(f"{where}.schedule.{key_}", expected, got)
    deg_check = DEGRADATIONS.get(spec.degradation).check
    problem = deg_check(spec) if deg_check else None
    if problem:
        key_, expected, got = problem
        ck.fail(f"{where}.{key_}", expected, got)
    ev = spec.evaluation
    allowed = DEGRADATIONS.get(spec.degradation).samplers
    for name, ok in (("sampler", allowed), ("final_sampler", (*allowed, "same"))):
        value = getattr(ev, name)
        if value not in ok:
            ck.fail(
                f"{where}.evaluation.{name}",
                f"one of {', '.join(map(repr, ok))} for the {spec.degradation} degradation",
                value,
            )
    used = {ev.sampler, ev.final_sampler} - {"same"}
    if any(SAMPLERS.get(s).uses_steps for s in used) and ev.steps > sch.T:
        ck.fail(f"{where}.evaluation.steps", f"at most schedule.T ({sch.T})", ev.steps)


def load_experiments(path: str | Path, profile: str | None = None) -> Experiments:
    """The experiments file at ``path`` with ``profile`` applied (see :func:`parse_experiments`)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such file (expected an experiments file, e.g. experiments.toml)"
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot be read: {e}") from None
    return parse_experiments(text, path, profile)


def select(experiments: Experiments, only: list[str] | None) -> list[RunSpec]:
    """Runs whose name or experiment name is in ``only`` (all when ``only`` is empty)."""
    if not only:
        return list(experiments.runs)
    known = {r.name for r in experiments.runs} | {r.experiment for r in experiments.runs}
    for n in only:
        if n not in known:
            raise ConfigError(
                escape_breaks(
                    f"{experiments.path.name}: --only {n}: expected the name of an experiment or run "
                    f"in this file (have: {', '.join(sorted(known))})"
                )
            )
    return [r for r in experiments.runs if r.name in only or r.experiment in only]


def override_host(
    experiments: Experiments, specs: Sequence[RunSpec | StudySpec], host: str | None
) -> None:
    """``--host NAME``: every spec of ``specs`` goes to that host (``local`` or a [hosts]
    table of the file) for this call."""
    if host is None:
        return
    if host != LOCAL and host not in experiments.hosts:
        raise ConfigError(
            f"--host {host}: expected {LOCAL!r} or a host of "
            f"{experiments.path.name} (hosts: "
            f"{', '.join(experiments.hosts) or 'none defined'})"
        )
    for spec in specs:
        spec.host = [host]
