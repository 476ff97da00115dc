"""The caption under each figure of the report: what it shows, of which run, measured how (the
sampler, n, the floor), so that a figure read alone in a paper says what it is."""

from __future__ import annotations

from engine.report.arrays import by_epoch, sample_grids
from engine.report.tables import about, about_runs, interval, objective, run_spec
from engine.rundir.events import Eval
from engine.rundir.events import Figure as FigureEvent
from engine.rundir.run import Run


def _samplers(evals: list[Eval]) -> str:
    pairs = dict.fromkeys((e.sampler, e.n) for e in evals)
    return "; ".join(f"{s}, n = {n}" for s, n in pairs)


def loss(runs: list[Run]) -> str:
    specs = [s for s in map(run_spec, runs) if s is not None]
    what = objective(specs[0].degradation) if specs else "MSE"
    who = (
        about(runs[0])
        if len(runs) == 1
        else about_runs(runs) + " (" + ", ".join(r.name for r in runs) + ")"
    )
    return (
        f"Training loss (solid: the mean over each epoch's batches) and validation loss "
        f"(dashed: held-out images) against epoch; loss: {what}, log scale. {who}."
    )


def fid(runs: list[Run]) -> str:
    evals = [e for r in runs for e in by_epoch(r, Eval).values()]
    backbones = ", ".join(sorted({e.backbone for e in evals}))
    who = about(runs[0]) if len(runs) == 1 else about_runs(runs)
    bars = " Error bars: the FID's interval." if any(interval(e) is not None for e in evals) else ""
    return (
        f"FID of generated samples against epoch ({_samplers(evals)}), in the feature space "
        f"of the {backbones} network; log scale. Dotted: the floor, the FID between two "
        f"disjoint sets of n real images (what FID reads for real data at that n), one line "
        f"per distinct floor.{bars} {who}."
    )


def grids(run: Run) -> str:
    epochs = ", ".join(str(e) for e, _, _ in sample_grids(run))
    samplers = ", ".join(dict.fromkeys(s for _, _, s in sample_grids(run)))
    return f"Samples at epochs {epochs} ({samplers}), one grid per epoch. {about(run)}."


def process(run: Run, event: FigureEvent) -> str:
    ts = ", ".join(map(str, event.t))
    spec = run_spec(run)
    T = spec.schedule.T if spec else "T"
    text = {
        "diffusion": (
            f"Top: the forward process q(z_t | x) of training digits at t = {ts} (T = {T}). "
            f"Bottom: the backward process, DDPM ancestral sampling from pure noise, read "
            f"from t = {T} to 0 (each block has its own t labels)."
        ),
        "restoration": (
            f"Top: one held-out digit degraded to z_t at t = {ts} (T = {T}); bottom: its "
            f"direct restoration R(z_t, t)."
        ),
        "direct-vs-iterative": (
            f"Ten held-out digits x, their degraded z_T (T = {T}), the direct restoration "
            f"R(z_T, T) and the iterative sampler with D's latent re-estimated from z_t "
            f"(estimate) or kept at the start latent (start)."
        ),
    }.get(event.name, f"The {event.name} figure.")
    return f"{text} Epoch {event.epoch}. {about(run)}."


def study(study: Run) -> str:
    spec = study.study_spec()
    return (
        f"Sampling study {spec.name}: {spec.kind} on run {spec.run}, {spec.keys.n_grid} of "
        f"n = {spec.keys.n} samples per value shown; under each grid its FID (and floor), the "
        f"share of distinct samples and near-copies of training digits, and the entropy of "
        f"the predicted classes."
    )
