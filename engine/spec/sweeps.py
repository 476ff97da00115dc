"""An experiment's ``sweep`` table: ``"section.key" = [values]`` expands into a grid of runs,
each named after the experiment and its values (``lr-sweep-lr0.001-epochs5``)."""

from __future__ import annotations

import copy
import itertools
from typing import Any

from engine.spec.checks import Checker, check_table
from engine.spec.sections import SCHEMA, SECTIONS


def _sweep_label(key: str, value: Any) -> str:
    leaf = key.rsplit(".", 1)[-1]
    if isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, list):
        text = "x".join(str(x) for x in value)
    else:
        text = str(value)
    return f"{leaf}{text}"


def expand_sweep(ck: Checker, where: str, exp: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(run name, the experiment's table with the values set) of each run of the experiment
    ``exp``; the experiment itself when it has no sweep."""
    sweep = exp.get("sweep")
    if sweep is None:
        return [(exp["name"], exp)]
    sweep = check_table(ck, f"{where}.sweep", sweep)
    if not sweep:
        ck.fail(f"{where}.sweep", 'at least one "section.key" = [values] entry', sweep)
    axes = []
    for key, values in sweep.items():
        parts = key.split(".")
        if len(parts) != 2 or parts[0] not in SECTIONS or parts[1] not in SCHEMA[parts[0]]:
            ck.fail(
                f"{where}.sweep.{key}",
                'a key of the form section.key, like "training.lr"',
                show_got=False,
            )
        if not isinstance(values, list) or not values:
            ck.fail(f"{where}.sweep.{key}", "a non-empty list of values", values)
        for value in values:  # before the value becomes part of a run name
            problem = SCHEMA[parts[0]][parts[1]][1](value)
            if problem:
                ck.fail(f"{where}.sweep.{key}", problem, value)
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
