"""The ``[[studies]]`` tables of an experiments file -> :class:`StudySpec`: sampling studies on
the file's runs (``kind`` at each of ``values``), checked against the run they sample from."""

from __future__ import annotations

import math
from typing import Any

from engine.spec.checks import Checker, check_keys, check_name, check_table
from engine.spec.components import DEGRADATIONS
from engine.spec.profiles import Profile, check_listed
from engine.spec.sections import (
    MAX_AVERAGED,
    MAX_COMPONENTS,
    MAX_NOISE,
    STUDY_KINDS,
    HostSpec,
    StudyKeys,
)
from engine.spec.specs import RunSpec, StudySpec

STUDY_KEYS = {"name", "run", "kind", "values", "host"}  # and those of StudyKeys


def parse_studies(
    ck: Checker,
    tables: Any,
    profile: Profile,
    profiles: dict[str, dict[str, Any]],
    every_run: dict[str, RunSpec],
    selected: set[str],
    hosts: dict[str, HostSpec],
) -> list[StudySpec]:
    """The studies of the file that ``profile`` keeps and whose run is ``selected``; every
    study is checked against its run in ``every_run`` (the file's runs, whatever the profile)."""
    if not isinstance(tables, list):
        ck.fail("studies", "a list of [[studies]] tables", tables)
    out, names = [], []
    for i, table in enumerate(tables):
        table = check_table(ck, f"studies[{i}]", table)
        name = check_name(ck, f"studies[{i}].name", table)
        where = f"studies[{i}] ({name})"
        if name in names:
            ck.fail(f"{where}.name", "a name used once among the studies", show_got=False)
        names.append(name)
        spec = _study_spec(ck, where, table, profile, every_run, hosts)
        if spec.run in selected and profile.selects("studies", name):
            out.append(spec)
    check_listed(ck, profiles, "studies", names, "names of studies in this file")
    return out


def _study_spec(
    ck: Checker,
    where: str,
    table: dict[str, Any],
    profile: Profile,
    every_run: dict[str, RunSpec],
    hosts: dict[str, HostSpec],
) -> StudySpec:
    extra = {k: v for k, v in table.items() if k not in STUDY_KEYS}
    check_keys(ck, where, StudyKeys, extra)
    host = profile.hosts(ck, where, table, hosts)
    run = table.get("run")
    if not isinstance(run, str) or run not in every_run:
        ck.fail(
            f"{where}.run",
            "the name of a run of this file"
            + (f" (have: {', '.join(every_run)})" if every_run else ""),
            run,
        )
    spec_run = every_run[run]
    kind = _kind(ck, where, table.get("kind"), spec_run.degradation)
    values = _values(ck, where, kind, table.get("values"))
    keys = StudyKeys(**{**extra, **profile.table.get("study", {})})
    samplers = DEGRADATIONS.get(spec_run.degradation).samplers
    if keys.sampler and keys.sampler not in samplers:
        ck.fail(
            f"{where}.sampler",
            "one of "
            + ", ".join(map(repr, samplers))
            + f" for the {spec_run.degradation} degradation",
            keys.sampler,
        )
    if keys.steps > spec_run.schedule.T:
        ck.fail(
            f"{where}.steps", f"at most the run's schedule.T ({spec_run.schedule.T})", keys.steps
        )
    return StudySpec(
        name=str(table["name"]),
        run=run,
        kind=kind,
        values=values,
        keys=keys,
        degradation=spec_run.degradation,
        profile=profile.name,
        host=host,
    )


def _kind(ck: Checker, where: str, kind: Any, degradation: str) -> str:
    """A study kind that a run of ``degradation`` has (gmm: morph runs only)."""
    allowed = STUDY_KINDS if degradation == "morph" else STUDY_KINDS[:2]
    if kind not in allowed:
        ck.fail(
            f"{where}.kind",
            "one of "
            + ", ".join(map(repr, allowed))
            + (
                f" for a run of the {degradation} degradation (gmm fits a mixture to "
                "FashionMNIST latents)"
                if kind == "gmm"
                else ""
            ),
            kind,
        )
    return str(kind)


def _values(ck: Checker, where: str, kind: str, values: Any) -> list[Any]:
    """Distinct values of the study's kind: 0 <= λ < MAX_NOISE (noise), integers from 1 to
    MAX_AVERAGED (N latents averaged), integers from 1 to MAX_COMPONENTS (mixture components).
    Values that read alike to 6 significant digits (``{v:g}``, how files and tables name them) are refused."""
    expected = {
        "noise": f"numbers from 0 to below {MAX_NOISE:,.0f} (λ)",
        "interpolation": f"integers from 1 to {MAX_AVERAGED} (N latents averaged)",
        "gmm": f"integers from 1 to {MAX_COMPONENTS} (mixture components)",
    }[kind]
    if not isinstance(values, list) or not values:
        ck.fail(f"{where}.values", f"a non-empty list of distinct {expected}", values)
    bad = [v for v in values if not _value_ok(kind, v)]
    if bad:  # (the value that is out, not only the list)
        ck.fail(f"{where}.values", expected, bad[0])
    if len(set(values)) != len(values):
        ck.fail(f"{where}.values", f"distinct {expected}", values)
    named: dict[str, Any] = {}
    for v in values:
        if f"{v:g}" in named:
            ck.fail(
                f"{where}.values",
                f"values that differ in their first 6 digits (files and tables name a value "
                f"by them: {named[f'{v:g}']!r} and {v!r} are both {v:g})",
                show_got=False,
            )
        named[f"{v:g}"] = v
    return list(values)


def _value_ok(kind: str, v: Any) -> bool:
    if isinstance(v, bool):
        return False
    if kind == "noise":
        return isinstance(v, (int, float)) and math.isfinite(v) and 0 <= v < MAX_NOISE
    most = MAX_AVERAGED if kind == "interpolation" else MAX_COMPONENTS
    return isinstance(v, int) and 1 <= v <= most
