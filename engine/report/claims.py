"""The claims ledger: each claim of the study, what diffui measured for it in a runs folder, and
whether it holds, does not hold or is undecided (and why), from run folders alone.

Each claim is one entry of :data:`CLAIMS`: an id, the study's words and value, and a rule that
finds the runs it needs by what they are (degradation, network, schedule kind, a study's kind;
never by name: :mod:`engine.report.findings`), reads their values with their intervals and
gives a verdict. A claim without its runs is undecided, never an error. Honesty first: runs
trained for fewer epochs than the study's, runs trained on different data, samples that are
still noise, or intervals that overlap leave a claim undecided, with the reason in words.

:func:`ledger` gives the rows, :func:`ledger_markdown` the report's table of them,
:func:`ledger_lines` the plain table ``diffui claims`` prints. docs/claims.md describes each
rule and measure.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.report import measures as m
from engine.report.arrays import load_array
from engine.report.findings import (
    BACKBONE_NOTE,
    FAILS,
    HOLDS,
    KINDS,
    UNDECIDED,
    Facts,
    Found,
    Interval,
    Judged,
    StudyFacts,
    across,
    across_arm,
    across_seeds,
    arm_fid,
    fid_text,
    find,
    gate,
    missing,
    names,
    overlap,
    pick,
    seeded,
)
from engine.report.tables import Table
from engine.rundir.estimates import compare
from engine.rundir.run import DamagedRun


@dataclass(frozen=True)
class Claim:
    """One claim of the study: its words, its value, and the rule that judges it."""

    id: str
    claim: str
    study: str
    judge: Callable[[Found], Judged]


@dataclass(frozen=True)
class Row:
    """One line of the ledger."""

    id: str
    claim: str  # the study's words, shortened
    study: str  # the study's value
    measured: str  # diffui's value(s), with their uncertainty
    runs: str  # the runs (and n) it rests on
    verdict: str  # holds, does not hold, undecided
    reason: str  # why, in words


# --- C1, C2: the schedules (RUNS/schedules: diffui --batch, or diffui schedules) ------------


def _csv(path: Path) -> list[dict[str, str]] | None:
    try:
        with open(path, newline="") as f:
            return list(csv.DictReader(f))
    except (OSError, csv.Error, UnicodeDecodeError):
        return None


def _kind(name: str) -> str:
    return name.split("-")[0]


def _and(words: list[str]) -> str:
    """``a, b and c``."""
    return " and ".join([", ".join(words[:-1]), words[-1]] if len(words) > 1 else words)


def _how(found: Found) -> str:
    return f"run `diffui --batch` or `diffui schedules --out {found.schedules}`"


def c1(found: Found) -> Judged:
    rows = _csv(found.schedules / "ks_summary.csv")
    if rows is None:
        return missing(f"KS results: {_how(found)}")
    first = {_kind(r["schedule"]): r["first_t_indistinguishable"] for r in rows}
    if any(k not in first for k in KINDS):
        return missing(f"KS result of every schedule in {found.schedules}")
    t = {k: int(first[k]) if first[k] else float("inf") for k in KINDS}
    measured = ", ".join(f"{k} t = {first[k] or 'never'}" for k in KINDS)
    where = f"{found.schedules / 'ks_summary.csv'}"
    if all(t[k] < t["cosine"] for k in KINDS if k != "cosine"):
        return Judged(measured, where, HOLDS, "cosine's z_t stays distinguishable longest")
    never = [k for k in KINDS if first[k] == ""]
    if "cosine" in never:  # and another: which of them gets there last is not measured
        reason = f"{_and(never)} never reach N(0, 1) within T: their order is unknown"
        return Judged(measured, where, UNDECIDED, reason)
    last = [k for k in KINDS if t[k] >= t["cosine"] and k != "cosine"]
    verb = "reaches" if len(last) == 1 else "reach"
    return Judged(measured, where, FAILS, f"{_and(last)} {verb} N(0, 1) no earlier than cosine")


def c2(found: Found) -> Judged:
    rows = _csv(found.schedules / "schedules.csv")
    betas = [float(r["beta"]) for r in rows or [] if _kind(r["schedule"]) == "cosine"]
    if not betas:
        if rows is None:
            return missing(f"cosine schedule table: {_how(found)}")
        return missing(f"cosine schedule in {found.schedules} (the experiments file has none)")
    cap = max(betas)
    at_cap = [t for t, b in enumerate(betas, 1) if b >= cap - 1e-12]
    T, n = len(betas), len(at_cap)
    where = str(found.schedules / "schedules.csv")
    if n <= 1:
        return Judged(f"0 of {T} capped", where, FAILS, "no beta reaches the cap")
    measured = f"{n} of {T} capped at {cap:g} (t = {at_cap[0]}..{at_cap[-1]})"
    if at_cap != list(range(T - n + 1, T + 1)):
        return Judged(measured, where, FAILS, "capped betas are not only the last ones")
    return Judged(measured, where, HOLDS, f"only the last betas are capped: {n}, not 10")


# --- DDPM's four schedules ----------------------------------------------------------------------


def _four(found: Found) -> tuple[list[Facts], str]:
    """The Gaussian runs of the four schedules (one network, the CNN where it has them all)."""
    for net in ("cnn", "unet"):
        runs = [pick(found, "gaussian", k, net) for k in KINDS]
        if all(runs):
            return [r for r in runs if r], ""
    have = {k for k in KINDS if pick(found, "gaussian", k)}
    return [], "DDPM run of " + ", ".join(k for k in KINDS if k not in have)


def _loss(f: Facts) -> Interval | None:
    return None if f.val_loss is None else (f.val_loss, f.val_loss, f.val_loss)


def _above(high: list[Interval], low: list[Interval]) -> str:
    """How the intervals ``high`` stand to ``low``: "above" when every one of ``high`` is above
    every one of ``low``, "below" when one of ``high`` is below one of ``low`` and none overlap,
    "overlap" otherwise."""
    if min(h[1] for h in high) > max(lo[2] for lo in low):
        return "above"
    if all(h[2] < lo[1] or h[1] > lo[2] for h in high for lo in low):
        return "below"
    return "overlap"


def c3(found: Found) -> Judged:
    runs, lack = _four(found)
    if lack:
        return missing(lack)
    why = gate(runs, noise=False)
    loss = {f.spec.schedule.kind: across(f, _loss) for f in runs}
    measured = ", ".join(_number(k, v, ".4f", f) for (k, v), f in zip(loss.items(), runs) if v)
    if why or any(v is None for v in loss.values()):
        return Judged(measured or "-", names(runs), UNDECIDED, why or "a run has no loss")
    done = {k: v for k, v in loss.items() if v is not None}
    order = _above([done["linear"], done["cosine"]], [done["constant"], done["inverse_linear"]])
    if not seeded(runs):
        note = "final validation loss, one seed each (no spread across seeds)"
        return Judged(measured, names(runs), HOLDS if order == "above" else FAILS, note)
    verdict = {"above": HOLDS, "below": FAILS, "overlap": UNDECIDED}[order]
    note = "final validation loss, mean ± sd across seeds"
    return Judged(measured, names(runs), verdict, overlap(runs) if order == "overlap" else note)


def _number(kind: str, v: Interval, spec: str, f: Facts, sd: bool = False) -> str:
    """``cosine 0.0410``, or across seeds (or with ``sd``: a symmetric interval) ``cosine
    0.0410 ± 0.0020``."""
    spread = sd or len(f.arm) > 1
    return f"{kind} {v[0]:{spec}}" + (f" ± {v[2] - v[0]:{spec}}" if spread else "")


def _fid_order(a: Facts, b: Facts) -> str:
    fa, fb = arm_fid(a), arm_fid(b)
    return compare(fa, fb) if fa and fb else "no interval"


def _fids(runs: list[Facts]) -> str:
    return "; ".join(t for f in runs if (t := fid_text(f)))


def c4(found: Found) -> Judged:
    runs, lack = _four(found)
    if lack:
        return missing(lack)
    why = gate(runs)
    if why:
        return Judged(_fids(runs) or "-", names(runs), UNDECIDED, why)
    cos = runs[KINDS.index("cosine")]
    order = {f.spec.schedule.kind: _fid_order(cos, f) for f in runs if f is not cos}
    measured = _fids(runs)
    if "no interval" in order.values():
        return Judged(measured, names(runs), UNDECIDED, "a FID without interval (an older run)")
    if all(o == "lower" for o in order.values()):
        return Judged(measured, names(runs), HOLDS, f"cosine's interval lowest; {BACKBONE_NOTE}")
    if "higher" in order.values():
        better = [k for k, o in order.items() if o == "higher"]
        return Judged(measured, names(runs), FAILS, f"{', '.join(better)} clearly below cosine")
    over = [k for k, o in order.items() if o == "overlap"]
    return Judged(measured, names(runs), UNDECIDED, f"{overlap(runs)}: cosine and {over[0]}")


def _grid_share(f: Facts, epoch: int):
    e = f.evals.get(epoch)
    if e is None or e.recognised is None:
        return None
    return m.share_interval(round(e.recognised * e.n), e.n)


def c5(found: Found) -> Judged:
    runs, lack = _four(found)
    if lack:
        return missing(lack)
    why = gate(runs, epochs=10, noise=False)
    shares = {f.spec.schedule.kind: across(f, lambda f: _grid_share(f, 10)) for f in runs}
    measured = ", ".join(
        f"{k} {s[0]:.0%} "
        + (f"± {s[2] - s[0]:.0%}" if len(f.arm) > 1 else f"[{s[1]:.0%}, {s[2]:.0%}]")
        for (k, s), f in zip(shares.items(), runs)
        if s
    )
    if why or any(s is None for s in shares.values()):
        reason = why or "no epoch-10 evaluation with recognised shares (evaluation.every)"
        return Judged(measured or "-", names(runs), UNDECIDED, reason)
    early = [shares["linear"], shares["cosine"]]
    late = [shares["constant"], shares["inverse_linear"]]
    note = "share of epoch-10 samples that read as digits"
    if min(s[1] for s in early) > max(s[2] for s in late):  # type: ignore[index]
        return Judged(measured, names(runs), HOLDS, note)
    if max(s[2] for s in early) < min(s[1] for s in late):  # type: ignore[index]
        return Judged(measured, names(runs), FAILS, note + ": the other way round")
    return Judged(measured, names(runs), UNDECIDED, overlap(runs))


def _background(f: Facts):
    if not f.samples:
        return None
    s = f.samples[max(f.samples)]
    try:
        return m.mean_interval(m.background_noise(load_array(f.run.path / s.npy)))
    except (OSError, DamagedRun):
        return None


def c6(found: Found) -> Judged:
    runs, lack = _four(found)
    if lack:
        return missing(lack)
    why = gate(runs)
    score = {f.spec.schedule.kind: across(f, _background) for f in runs}
    measured = ", ".join(
        _number(k, s, ".4f", f, sd=True) for (k, s), f in zip(score.items(), runs) if s
    )
    if why or any(s is None for s in score.values()):
        return Judged(measured or "-", names(runs), UNDECIDED, why or "a run has no final grid")
    noisy = [score["constant"], score["inverse_linear"]]
    clean = [score["linear"], score["cosine"]]
    note = "background-pixel variance of the final grid"
    if min(s[1] for s in noisy) > max(s[2] for s in clean):  # type: ignore[index]
        return Judged(measured, names(runs), HOLDS, note)
    if max(s[2] for s in noisy) < min(s[1] for s in clean):  # type: ignore[index]
        return Judged(measured, names(runs), FAILS, note + ": the other way round")
    return Judged(measured, names(runs), UNDECIDED, overlap(runs))


def _pair(found: Found, deg: str, a: str, b: str, net: str | None = None):
    return pick(found, deg, a, net), pick(found, deg, b, net)


def c7(found: Found) -> Judged:
    lin, cos = _pair(found, "gaussian", "linear", "cosine")
    if not (lin and cos):
        return missing("DDPM run of linear and of cosine")
    runs = [lin, cos]
    why = gate(runs)
    if why:
        return Judged(_fids(runs) or "-", names(runs), UNDECIDED, why)
    order = _fid_order(cos, lin)
    verdicts = {
        "overlap": (
            HOLDS,
            f"the FIDs' intervals overlap{across_seeds(runs)}: no clear improvement",
        ),
        "lower": (FAILS, "cosine clearly lower: more than marginal"),
        "higher": (FAILS, "cosine clearly higher: no improvement"),
        "no interval": (UNDECIDED, "a FID without interval (an older run)"),
    }
    return Judged(_fids(runs), names(runs), *verdicts[order])


def c8(found: Found) -> Judged:
    lin, cos = _pair(found, "morph", "linear", "cosine")
    if not (lin and cos):
        return missing("morph run of linear and of cosine")
    runs = [lin, cos]
    why = gate(runs)
    loss_lin, loss_cos = across(lin, _loss), across(cos, _loss)
    losses = [
        _number(k, v, ".4f", f)
        for k, v, f in (("linear", loss_lin, lin), ("cosine", loss_cos, cos))
        if v
    ]
    measured = _fids(runs) + (f"; loss {', '.join(losses)}" if len(losses) == 2 else "")
    if why or loss_lin is None or loss_cos is None:
        return Judged(measured or "-", names(runs), UNDECIDED, why or "a run has no loss")
    order = _fid_order(cos, lin)
    if order == "no interval":
        return Judged(measured, names(runs), UNDECIDED, "a FID without interval (an older run)")
    if loss_cos[2] >= loss_lin[1]:  # not clearly lower
        if seeded(runs) and loss_cos[1] <= loss_lin[2]:
            return Judged(measured, names(runs), UNDECIDED, "losses' " + overlap(runs))
        return Judged(measured, names(runs), FAILS, "cosine's loss is not lower")
    if order != "overlap":
        return Judged(measured, names(runs), FAILS, f"cosine's FID clearly {order}")
    return Judged(
        measured, names(runs), HOLDS, f"lower loss, FID intervals overlap{across_seeds(runs)}"
    )


def _rows(f: Facts) -> tuple[np.ndarray, np.ndarray] | None:
    """(direct, iterative) restorations of the run's direct-vs-iterative figure."""
    e = f.figures.get("direct-vs-iterative")
    if e is None:
        return None
    try:
        table = np.concatenate([load_array(f.run.path / p) for p in e.files])
    except (OSError, DamagedRun):
        return None
    labels = list(e.rows)
    mode = f"{f.spec.evaluation.morph_latent} latent"
    it = [i for i, r in enumerate(labels) if r.endswith(mode)] or [
        i for i, r in enumerate(labels) if r.startswith("iterative")
    ]
    if "direct" not in labels or not it or len(table) != len(labels):
        return None
    return table[labels.index("direct")], table[it[0]]


def _sharpness(f: Facts) -> tuple[Interval | None, Interval | None]:
    """The mean sharpness of the direct and of the iterative restorations of ``f``'s arm (one
    run: with its interval; several seeds: mean ± sd across them)."""
    rows = {id(s): _rows(s) for s in f.arm}

    def of(row: int) -> Callable[[Facts], Interval | None]:
        return lambda s: (
            None if (r := rows[id(s)]) is None else m.mean_interval(m.sharpness(r[row]))
        )

    return across(f, of(0)), across(f, of(1))


def c9(found: Found) -> Judged:
    morph = [f for f in found.runs if f.spec.degradation == "morph" and _rows(f) is not None]
    if not morph:
        return missing("morph run with its direct-vs-iterative arrays")
    # the morph arm trained longest (every seed of it), of most seeds
    f = max(morph, key=lambda f: (min(s.epochs for s in f.arm), len(f.arm)))
    d, i = _sharpness(f)
    measured = "-"
    if d and i:
        measured = (
            f"sharpness direct {d[0]:.4f} ± {d[2] - d[0]:.4f}, "
            f"iterative {i[0]:.4f} ± {i[2] - i[0]:.4f}"
        )
    runs = names([f])
    if not seeded([f]):
        runs = f"{f.run.name} ({f.epochs} epochs, {len(_rows(f)[0])} digits)"  # type: ignore[index]
    why = gate([f], noise=False)
    if why or d is None or i is None:
        return Judged(measured, runs, UNDECIDED, why or "a seed has no direct-vs-iterative arrays")
    if i[1] > d[2]:
        reason = "higher gradient energy (mean squared neighbour difference)"
        return Judged(measured, runs, HOLDS, reason + across_seeds([f]))
    if i[2] < d[1]:
        return Judged(measured, runs, FAILS, "direct restorations are sharper" + across_seeds([f]))
    return Judged(measured, runs, UNDECIDED, overlap([f]))


def _best(found: Found, deg: str, net: str) -> Facts | None:
    """The run (arm) of ``deg`` and ``net`` with the lowest final FID (any schedule)."""
    fids = {
        id(f): fid
        for f in found.runs
        if f.spec.degradation == deg and f.spec.network.kind == net and (fid := arm_fid(f))
    }
    runs = [f for f in found.runs if id(f) in fids]
    return min(runs, key=lambda f: fids[id(f)].value, default=None)


def _versus(found: Found, a: tuple[str, str], b: tuple[str, str]) -> tuple[list[Facts], str]:
    fa, fb = _best(found, *a), _best(found, *b)
    lack = [" + ".join(x) for x, f in ((a, fa), (b, fb)) if f is None]
    return [f for f in (fa, fb) if f], ("evaluated run of " + " and ".join(lack) if lack else "")


NO_INTERVAL = (UNDECIDED, "a FID without interval (an older run)")


def _fid_versus(
    found: Found, a: tuple[str, str], b: tuple[str, str], verdicts: dict[str, tuple[str, str]]
) -> Judged:
    """The final FIDs of run ``a`` against run ``b`` (degradation, network), judged by how
    their intervals stand (:func:`_fid_order`) through ``verdicts`` (whose reason for
    overlapping intervals is said of mean ± sd where an arm has several seeds)."""
    runs, lack = _versus(found, a, b)
    if lack:
        return missing(lack)
    why = gate(runs)
    if why:
        return Judged(_fids(runs), names(runs), UNDECIDED, why)
    order = _fid_order(*runs)
    verdict, reason = verdicts[order]
    if order == "overlap":
        reason = reason.replace("intervals overlap", overlap(runs))
    return Judged(_fids(runs), names(runs), verdict, reason)


def c10(found: Found) -> Judged:
    return _fid_versus(
        found,
        ("morph", "unet"),
        ("gaussian", "cnn"),
        {
            "lower": (HOLDS, f"morph + UNet's interval lower; {BACKBONE_NOTE}"),
            "higher": (FAILS, f"DDPM + CNN clearly lower; {BACKBONE_NOTE}"),
            "overlap": (UNDECIDED, "intervals overlap"),
            "no interval": NO_INTERVAL,
        },
    )


def c11(found: Found) -> Judged:
    return _fid_versus(
        found,
        ("gaussian", "unet"),
        ("morph", "unet"),
        {
            "lower": (HOLDS, "DDPM + UNet's interval lower"),
            "overlap": (HOLDS, "intervals overlap: as good"),
            "higher": (FAILS, "morph + UNet clearly lower"),
            "no interval": NO_INTERVAL,
        },
    )


def _study(found: Found, kind: str) -> StudyFacts | None:
    """The study of ``kind`` on a morph run, with the same study of the other seeds of that
    run (its arm): the arm with most values done by every study of it, of most seeds."""
    studies = [
        s
        for s in found.studies
        if s.spec.kind == kind and s.source is not None and s.source.spec.degradation == "morph"
    ]
    return max(studies, key=lambda s: (len(s.done), len(s.arm)), default=None)


def _study_runs(s: StudyFacts, what: str = "") -> str:
    """``s-noise (n 1000)``, or for an arm of several seeds ``s-noise + s-noise-1 (n = 2
    seeds, 1000 samples each)``; ``what``: more said in the brackets."""
    if len(s.arm) == 1:
        return f"{s.study.name} ({what}n {s.values[s.done[0]].n})" if s.done else s.study.name
    joined = " + ".join(a.study.name for a in s.arm)
    n = f", {s.values[s.done[0]].n} samples each" if s.done else ""
    return f"{joined} ({what}n = {len(s.arm)} seeds{n})"


def _near(values, target: float, lo: float, hi: float) -> float | None:
    inside = [v for v in values if lo <= v <= hi]
    return min(inside, key=lambda v: abs(v - target), default=None)


def _mean(values: list[float]) -> float:
    return float(np.mean(values))


def _study_gate(s: StudyFacts) -> str:
    """Why the runs of a study's arm cannot decide a claim (an undertrained run's latents say
    nothing of the study's model)."""
    return gate([a.source for a in s.arm if a.source], noise=False, arms=False)


def c12(found: Found) -> Judged:
    s = _study(found, "noise")
    if s is None:
        return missing("noise study on a morph run")
    v = s.done
    small, mid = _near(v, 0.001, 1e-9, 0.002), _near(v, 0.01, 0.005, 0.02)
    large = max((x for x in v if x >= 0.25), default=None)
    runs = _study_runs(s)
    if 0 not in v or None in (small, mid, large):
        return Judged("-", runs, UNDECIDED, "values missing: needs λ = 0, ~0.001, ~0.01, >= 0.25")
    assert small is not None and mid is not None and large is not None
    bases = [a.values[0] for a in s.arm]
    if any(b.recognised is None or not b.classes for b in bases):
        return Judged("-", runs, UNDECIDED, "study scored before diffui measured classes")
    rec = {x: _mean([a.values[x].recognised or 0.0 for a in s.arm]) for x in (0, small, mid, large)}
    if rec[0] < 0.5:
        return Judged("-", runs, UNDECIDED, f"λ = 0 samples are noise ({rec[0]:.0%})")
    changed = {  # (several seeds: the mean of each seed's share)
        x: _mean([m.changed_share(a.values[x].classes, a.values[0].classes) for a in s.arm])
        for x in (small, mid, large)
    }
    measured = (f"mean of {len(s.arm)} seeds: " if seeded([s]) else "") + "; ".join(
        f"λ {x:g}: " + (f"{changed[x]:.0%} changed, " if x else "") + f"{rec[x]:.0%} digits"
        for x in rec
    )
    why = _study_gate(s)
    if why:
        return Judged(measured, runs, UNDECIDED, why)
    parts = [
        changed[small] <= 0.1,  # small λ ≈ λ = 0
        changed[mid] > changed[small] and rec[mid] >= rec[0] - 0.1,  # new digits, still digits
        rec[large] < 0.5,  # large λ: unrecognisable
    ]
    if all(parts):
        return Judged(measured, runs, HOLDS, "small λ keeps the digit, λ≈0.01 changes some")
    failed = ["small λ changes digits", "λ≈0.01 adds no legible new digits", "large λ legible"]
    return Judged(measured, runs, FAILS, "; ".join(w for w, ok in zip(failed, parts) if not ok))


def c13(found: Found) -> Judged:
    s = _study(found, "interpolation")
    if s is None:
        return missing("interpolation study on a morph run")
    v = s.done
    if 1 not in v or len(v) < 2:
        return Judged("-", _study_runs(s), UNDECIDED, "values missing: needs N = 1 and a larger N")
    n_max = max(v)
    runs = _study_runs(s, f"N = 1 and {n_max:g}, ")
    # the excess of 3s and 8s at N = n_max over N = 1, with its interval (several seeds: the
    # mean ± sd of each seed's excess)
    excess = across_arm(s.arm, lambda a: m.excess(a.values[n_max].histogram, a.values[1].histogram))
    if excess is None:
        return Judged("-", runs, UNDECIDED, "a seed's excess is not a number")
    d, lo, hi = excess
    recs = [a.values[n_max].recognised for a in s.arm]
    big = _mean([r for r in recs if r is not None]) if None not in recs else None
    one = _mean([a.values[1].recognised or 0.0 for a in s.arm])
    rec = f"{one:.0%} → {big:.0%} digits" if big else ""
    spread = f"± {hi - d:.0%}" if len(s.arm) > 1 else f"[{lo:+.0%}, {hi:+.0%}]"
    measured = f"3s + 8s {d:+.0%} {spread} at N = {n_max:g}" + (f"; {rec}" if rec else "")
    why = _study_gate(s)
    if why:
        return Judged(measured, runs, UNDECIDED, why)
    if big is None:
        return Judged(measured, runs, UNDECIDED, "study scored before diffui measured digits")
    if big < 0.5:
        reason = f"N = {n_max:g} samples are not digits ({big:.0%}): classes say nothing"
        return Judged(measured, runs, UNDECIDED, reason)
    seeds = across_seeds([s])
    if lo > 0:
        return Judged(measured, runs, HOLDS, "more 3s and 8s than at N = 1" + seeds)
    if hi < 0:
        return Judged(measured, runs, FAILS, "fewer 3s and 8s than at N = 1" + seeds)
    return Judged(measured, runs, UNDECIDED, "interval of the excess includes 0" + seeds)


CLAIMS = [
    Claim("C1", "KS test: cosine's z_t reaches N(0, 1) last", "t = 906; others earlier", c1),
    Claim("C2", "capping cosine betas at 0.1 changes only the last betas", "10 of 1000", c2),
    Claim("C3", "DDPM loss: linear, cosine above constant, inverse linear", "Fig. 3", c3),
    Claim("C4", "cosine gives the lowest FID of the four schedules", "Fig. 6", c4),
    Claim("C5", "linear, cosine draw digits earlier (epoch 10)", "by eye", c5),
    Claim("C6", "constant, inverse linear: noisy, pixelated backgrounds", "by eye", c6),
    Claim("C7", "cosine's improvement over linear is marginal", "Fig. 6", c7),
    Claim("C8", "morph: cosine reaches a lower loss, similar FID", "-", c8),
    Claim("C9", "iterative restoration sharper than direct", "by eye", c9),
    Claim("C10", "morph + UNet beats DDPM + CNN on FID", "50.98 vs 113.31", c10),
    Claim("C11", "DDPM + UNet at least as good as morph + UNet", "-", c11),
    Claim("C12", "latent noise: small λ ≈ 0; λ≈0.01 best; large λ unrecognisable", "by eye", c12),
    Claim("C13", "averaging N latents smears, biases to 3s and 8s", "by eye", c13),
]


def ledger(runs_dir: Path, schedules: Path | None = None, runs: list | None = None) -> list[Row]:
    """The ledger of the runs folder ``runs_dir`` (``schedules``: the folder of ``diffui
    schedules``' tables, by default ``runs_dir/schedules``), one row per claim; with ``runs``
    (:class:`engine.rundir.run.Run` of runs and studies, as a report is given them) only those
    are looked at."""
    found = find(Path(runs_dir), schedules, runs)
    return [
        Row(c.id, c.claim, c.study, j.measured, j.runs, j.verdict, j.reason)
        for c in CLAIMS
        for j in [c.judge(found)]
    ]


COLUMNS = ("claim", "study", "diffui", "runs", "verdict", "why")


def _cells(r: Row) -> list[str]:
    return [f"{r.id} {r.claim}", r.study, r.measured, r.runs, r.verdict, r.reason]


def ledger_table(rows: list[Row]) -> Table:
    """The ledger as the report's table (its first section)."""
    return Table(list(COLUMNS), [_cells(r) for r in rows])


def verdict_counts(rows: list[Row]) -> str:
    """``2 holds, 1 does not hold, 10 undecided``."""
    counts = {v: sum(r.verdict == v for r in rows) for v in (HOLDS, FAILS, UNDECIDED)}
    return ", ".join(f"{n} {v}" for v, n in counts.items())


def ledger_markdown(rows: list[Row]) -> str:
    """The ledger as a Markdown table (``diffui claims --markdown``)."""
    esc = lambda s: s.replace("|", "\\|")  # noqa: E731
    out = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    out += ["| " + " | ".join(esc(c) for c in _cells(r)) + " |" for r in rows]
    return "\n".join(out)


def ledger_lines(rows: list[Row]) -> list[str]:
    """The ledger as plain lines: per claim, its verdict line and the numbers beneath."""
    out = []
    for r in rows:
        out.append(f"{r.id:<4} {r.verdict:<14} {r.claim}")
        out.append(f"     study: {r.study}; diffui: {r.measured}")
        out.append(f"     runs: {r.runs}; why: {r.reason}")
    out.append(verdict_counts(rows))
    return out
