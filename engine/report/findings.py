"""What the claims ledger (:mod:`engine.report.claims`) reads of a runs folder: each training
run's facts (what it is, from its config.toml; how long it trained, on which data, its FIDs
with their intervals, from its events), each sampling study's values, and the rules every claim
shares: how a run is found by what it is (:func:`pick`), and why runs cannot decide a claim
(:func:`gate`: different training data, fewer epochs than the study's, samples still noise).

An *arm* of a claim is the run :func:`pick` finds with the runs that differ from it only by
``training.seed`` (:func:`engine.report.seeds.seed_groups`' groups). One run: its own number
with its interval (:func:`across` hands it back). Several seeds: the mean ± sd of the number
across them, as the interval a verdict compares, and ``n = k seeds`` where the runs are named.
A study's arm (:attr:`StudyFacts.arm`) is the same study of each run of its run's arm.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from engine.report.seeds import setting_key
from engine.rundir.estimates import Estimate, spread
from engine.rundir.events import Epoch, Eval, Figure, Samples, Start, Value, latest_by_epoch
from engine.rundir.run import DamagedRun, Run, iter_runs
from engine.spec.specs import RunSpec, StudySpec

HOLDS, FAILS, UNDECIDED = "holds", "does not hold", "undecided"
STUDY_EPOCHS = 50  # the study trains every model for 50 epochs
NOISE = 0.5  # samples of which fewer than this share read as digits are "still noise"
SCHEDULES_DIR = "schedules"  # diffui schedules --out RUNS/schedules: the KS and beta tables
KINDS = ("linear", "cosine", "constant", "inverse_linear")


@dataclass
class Facts:
    """What the ledger reads of one training run's folder."""

    run: Run
    spec: RunSpec
    state: str
    epochs: int  # trained (the last epoch event)
    data: str  # where its training digits came from
    evals: dict[int, Eval]
    samples: dict[int, Samples]
    figures: dict[str, Figure]
    val_loss: float | None
    # its arm: the runs that differ from it only by their seed, itself too (set by find)
    seeds: list[Facts] = field(default_factory=list, compare=False, repr=False)

    @property
    def arm(self) -> list[Facts]:
        """The runs of this one's setting but their seed (itself alone when none)."""
        return self.seeds or [self]

    @property
    def final(self) -> Eval | None:
        return self.evals[max(self.evals)] if self.evals else None

    @property
    def fid(self) -> Estimate | None:
        return Estimate.of(self.final) if self.final else None


@dataclass
class StudyFacts:
    """What the ledger reads of one sampling study's folder."""

    study: Run
    spec: StudySpec
    source: Facts | None
    values: dict[float, Value] = field(default_factory=dict)
    # its arm: the same study (but its name and seed) of each run of its source's arm, itself
    # too, one per run (set by find)
    seeds: list[StudyFacts] = field(default_factory=list, compare=False, repr=False)

    @property
    def arm(self) -> list[StudyFacts]:
        """This study and the same study of the other seeds of its run (itself alone when none)."""
        return self.seeds or [self]

    @property
    def done(self) -> list[float]:
        """The values every study of the arm has finished, in order."""
        return sorted(set.intersection(*(set(m.values) for m in self.arm)))


@dataclass
class Found:
    """Everything the ledger knows of a runs folder."""

    runs: list[Facts]
    studies: list[StudyFacts]
    schedules: Path  # the folder of ``diffui schedules`` tables


def _facts(run: Run) -> Facts | None:
    try:
        spec = run.spec()
    except DamagedRun:
        return None
    if not isinstance(spec, RunSpec):
        return None
    events = run.events()
    epochs = [e for e in events if isinstance(e, Epoch)]
    start = [e for e in events if isinstance(e, Start)]
    data = f"{start[-1].data_source} ({start[-1].train_size:,} digits)" if start else ""
    return Facts(
        run=run,
        spec=spec,
        state=run.status().state,
        epochs=epochs[-1].epoch if epochs else 0,
        data=data if start and start[-1].data_source else "",
        evals=latest_by_epoch(events, Eval),
        samples=latest_by_epoch(events, Samples),
        figures={e.name: e for e in events if isinstance(e, Figure)},
        val_loss=epochs[-1].val_loss if epochs else None,
    )


def find(runs_dir: Path, schedules: Path | None = None, only: list[Run] | None = None) -> Found:
    """The runs and studies of ``runs_dir`` (or only those of ``only``, runs and studies, as a
    report is given them) as the claims see them."""
    every = list(iter_runs(runs_dir, studies=True)) if only is None else list(only)
    runs = [f for r in every if (f := _facts(r)) is not None]
    arms: dict[str, list[Facts]] = {}
    for f in runs:
        arms.setdefault(setting_key(f.spec), []).append(f)
    for f in runs:
        f.seeds = arms[setting_key(f.spec)]
    by_name = {f.run.name: f for f in runs}
    studies = []
    for s in every:
        try:
            spec = s.spec()
        except DamagedRun:
            continue
        if isinstance(spec, StudySpec):
            values = {e.value: e for e in s.events() if isinstance(e, Value)}
            studies.append(StudyFacts(s, spec, by_name.get(spec.run), values))
    _study_arms(studies)
    return Found(runs, studies, schedules or Path(runs_dir) / SCHEDULES_DIR)


def _study_arms(studies: list[StudyFacts]) -> None:
    """Sets each study's arm: the studies of one setting (all but their names, runs and
    ``seed``) whose runs are one arm, one per run (the one with most values done)."""
    arms: dict[str, dict[str, StudyFacts]] = {}
    for s in studies:
        if s.source is None:
            continue
        d = s.spec.to_dict()
        for k in ("name", "run"):
            d.pop(k)
        d["study"] = {k: v for k, v in d["study"].items() if k != "seed"}
        key = setting_key(s.source.spec) + json.dumps(d, sort_keys=True, default=str)
        per_run = arms.setdefault(key, {})
        kept = per_run.get(s.source.run.name)
        if kept is None or len(s.values) > len(kept.values):
            per_run[s.source.run.name] = s
    for per_run in arms.values():
        for s in per_run.values():
            s.seeds = list(per_run.values())


def pick(
    found: Found, degradation: str, schedule: str | None = None, network: str | None = None
) -> Facts | None:
    """The run that is what is asked (the one trained longest when several are)."""
    match = [
        f
        for f in found.runs
        if f.spec.degradation == degradation
        and (schedule is None or f.spec.schedule.kind == schedule)
        and (network is None or f.spec.network.kind == network)
    ]
    return max(match, key=lambda f: (f.epochs, f.state == "finished"), default=None)


def _epochs(n: int) -> str:
    return f"{n} epoch" + ("s" if n != 1 else "")


def names(facts: list[Facts]) -> str:
    """``ddpm-linear (50 epochs, n 1000), ...``: the runs a row rests on; an arm of several
    seeds as ``a + b + c (50 epochs, n = 3 seeds)``."""
    parts = []
    for f in facts:
        if len(f.arm) > 1:
            trained = min(m.epochs for m in f.arm)
            joined = " + ".join(m.run.name for m in f.arm)
            parts.append(f"{joined} ({_epochs(trained)}, n = {len(f.arm)} seeds)")
            continue
        n = f", n {f.final.n}" if f.final else ""
        parts.append(f"{f.run.name} ({_epochs(f.epochs)}{n})")
    return ", ".join(parts)


Interval = tuple[float, float, float]  # value, low, high
T = TypeVar("T")


def across(f: Facts, one: Callable[[Facts], Interval | None]) -> Interval | None:
    """A number of ``f``'s arm: ``one(f)`` for a single run; for several seeds the mean ± sd
    across them of each seed's value (None when a seed has none)."""
    return across_arm(f.arm, one)


def across_arm(arm: list[T], one: Callable[[T], Interval | None]) -> Interval | None:
    """:func:`across` of any arm (runs of several seeds, or their studies)."""
    if len(arm) == 1:
        return one(arm[0])
    values = [one(m) for m in arm]
    if any(v is None for v in values):
        return None
    s = spread([v[0] for v in values if v is not None])
    if s is None or s.sd is None:  # (values that are not finite are left out of a spread)
        return None
    return s.mean, s.mean - s.sd, s.mean + s.sd


def arm_fid(f: Facts) -> Estimate | None:
    """The final FID of ``f``'s arm: its own (with its interval) or, across seeds, the mean with
    mean ± sd as the interval."""
    if len(f.arm) == 1:
        return f.fid
    v = across(f, lambda m: (m.fid.value, m.fid.value, m.fid.value) if m.fid else None)
    return Estimate(v[0], v[1], v[2]) if v else None


def fid_text(f: Facts) -> str:
    """``ddpm-linear 41.2 [38.0, 44.9]``, or across seeds ``ddpm-linear 41.2 ± 1.3 (3 seeds)``."""
    fid = arm_fid(f)
    if fid is None:
        return ""
    if len(f.arm) == 1:
        return f"{f.run.name} {fid.text()}"
    assert fid.high is not None
    return f"{f.run.name} {fid.value:.1f} ± {fid.high - fid.value:.1f} ({len(f.arm)} seeds)"


def seeded(facts: Sequence[Facts | StudyFacts]) -> bool:
    """Whether an arm of ``facts`` has several seeds (its interval is then mean ± sd)."""
    return any(len(f.arm) > 1 for f in facts)


def across_seeds(facts: Sequence[Facts | StudyFacts]) -> str:
    """`` (mean ± sd across seeds)`` where an arm of ``facts`` has several seeds, else ""."""
    return " (mean ± sd across seeds)" if seeded(facts) else ""


def overlap(facts: Sequence[Facts | StudyFacts]) -> str:
    """``intervals overlap``, said of mean ± sd where an arm has several seeds."""
    return "intervals overlap" + across_seeds(facts)


def gate(
    facts: list[Facts], epochs: int = STUDY_EPOCHS, noise: bool = True, arms: bool = True
) -> str:
    """Why these runs (and, with ``arms``, every seed of their arms) cannot decide a claim (""
    when they can): different training data, fewer epochs than the study's, no evaluation,
    samples that are still noise."""
    facts = [m for f in facts for m in (f.arm if arms else [f])]
    sources = {f.data for f in facts if f.data}
    if len(sources) > 1:
        return (
            "runs trained on different data sources ("
            + "; ".join(f"{f.run.name}: {f.data}" for f in facts)
            + "): not compared"
        )
    short = [f for f in facts if f.epochs < epochs]
    if short:
        trained = min(f.epochs for f in short)
        if epochs != STUDY_EPOCHS:  # a claim about one epoch of training
            return f"{_epochs(trained)} trained, the claim looks at epoch {epochs}"
        return f"{_epochs(trained)}, the study trains {epochs}"
    for f in facts:
        if f.final is None:
            return f"{f.run.name} has no FID evaluation"
        if noise and f.final.recognised is not None and f.final.recognised < NOISE:
            return (
                f"{f.run.name}'s samples are still noise ({f.final.recognised:.0%} read as digits)"
            )
    return ""


BACKBONE_NOTE = "the study's FIDs are Inception FIDs, diffui's another network's: order only"


@dataclass
class Judged:
    """What a claim's rule found: diffui's values, the runs they rest on, the verdict, why."""

    measured: str
    runs: str
    verdict: str
    reason: str


def missing(what: str) -> Judged:
    return Judged("-", "-", UNDECIDED, f"runs missing: no {what}")
