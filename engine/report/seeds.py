"""Runs that differ only by their seed (a sweep over ``training.seed``), grouped, with the mean ±
sd across seeds of their final numbers: how much of a difference between two settings the seed
alone makes.

:func:`seed_groups` finds the groups among run folders (by their config.toml: every setting
equal but ``training.seed``, the run's name and its experiment's); :func:`seed_table` writes
them as a Markdown table for the report.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from engine.report.tables import Table
from engine.rundir.estimates import Estimate, Spread, spread
from engine.rundir.events import Epoch, Eval
from engine.rundir.run import DamagedRun, Run
from engine.spec.specs import RunSpec


@dataclass(frozen=True)
class SeedGroup:
    """Runs with the same settings but their seeds; their final numbers, and across seeds."""

    runs: list[str]
    seeds: list[int]
    setting: str  # what they share, in words (degradation, network, schedule)
    fids: list[Estimate]  # each run's final FID (where it has one), in ``runs`` order
    fid: Spread | None  # mean ± sd of the final FIDs across seeds
    val_loss: Spread | None  # of the final validation losses


def setting_key(spec: RunSpec) -> str:
    """What a run is but its seed (and its name): equal for runs of one seed group."""
    d = spec.to_dict()
    for k in ("name", "experiment"):
        d.pop(k, None)
    d["training"] = {k: v for k, v in d["training"].items() if k != "seed"}
    return json.dumps(d, sort_keys=True, default=str)


def describe(spec: RunSpec) -> str:
    """``gaussian, cnn, cosine``: what a run is, in the words a claim uses."""
    return f"{spec.degradation}, {spec.network.kind}, {spec.schedule.kind}"


def seed_groups(runs: list[Run]) -> list[SeedGroup]:
    """The groups of two or more ``runs`` that differ only by ``training.seed`` (studies and
    damaged folders are left out), in the order their first run comes."""
    groups: dict[str, list[tuple[Run, RunSpec]]] = {}
    for run in runs:
        try:
            spec = run.spec()
        except DamagedRun:
            continue
        if isinstance(spec, RunSpec):
            groups.setdefault(setting_key(spec), []).append((run, spec))
    return [_group(members) for members in groups.values() if len(members) > 1]


def _group(members: list[tuple[Run, RunSpec]]) -> SeedGroup:
    fids, losses = [], []
    for run, _ in members:
        events = run.events()
        evals = [e for e in events if isinstance(e, Eval)]
        epochs = [e for e in events if isinstance(e, Epoch)]
        if evals:
            fids.append(Estimate.of(evals[-1]))
        if epochs:
            losses.append(epochs[-1].val_loss)
    return SeedGroup(
        runs=[r.name for r, _ in members],
        seeds=[s.training.seed for _, s in members],
        setting=describe(members[0][1]),
        fids=fids,
        fid=spread([f.value for f in fids]),
        val_loss=spread(losses),
    )


SEED_COLUMNS = ("runs", "setting", "seeds", "final FID (mean ± sd across seeds)", "final val loss")


def seed_rows(groups: list[SeedGroup]) -> Table:
    """The groups as a table: runs, seeds, final FID and validation loss as mean ± sd across
    seeds."""
    rows = [
        [
            ", ".join(g.runs),
            g.setting,
            ", ".join(map(str, g.seeds)),
            g.fid.text(".2f") if g.fid else "-",
            g.val_loss.text(".4f") if g.val_loss else "-",
        ]
        for g in groups
    ]
    return Table(list(SEED_COLUMNS), rows)


def seed_table(groups: list[SeedGroup]) -> str:
    """The groups as a Markdown table ("" when there are no groups)."""
    if not groups:
        return ""
    t = seed_rows(groups)
    lines = ["| " + " | ".join(t.header) + " |", "|" + "---|" * len(t.header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in t.rows])
