"""Kolmogorov-Smirnov study: when does z_t = sqrt(alpha_bar_t) x + sqrt(1 - alpha_bar_t) eps
become indistinguishable from N(0, 1)?"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from scipy import stats

from engine.diffusion.schedules import Schedule
from engine.files import atomic_save, atomic_write_text, make_dir

_CHUNK = 1000  # at most this many steps noised at once...
_CHUNK_FLOATS = 2_000_000  # ...and at most this many samples (about 16 MB per array)
_P_FLOOR = 1e-16  # p-values below this are drawn at this height on the log axis


def _draw_rows(rng: np.random.Generator, N: int, n: int, k: int) -> np.ndarray:
    """(k, n) image indices: n images per step, without replacement unless N < n."""
    if N < n:
        return rng.integers(N, size=(k, n))
    return np.stack([rng.choice(N, n, replace=False) for _ in range(k)])


def ks_pvalues(
    schedule: Schedule, images: torch.Tensor, n: int = 2000, seed: int = 0
) -> np.ndarray:
    """KS p-value of z_t against N(0, 1) for t = 1..T (index 0 is t = 1).

    For each t, n images are drawn at random and ONE random pixel is taken from each, so
    the n samples are independent; each is noised to z_t with fresh eps.
    `images` is (N, 1, 28, 28) or (N, 28, 28) in model space [-0.5, 0.5].
    """
    flat = images.detach().reshape(len(images), -1).to("cpu", torch.float64).numpy()
    N, P = flat.shape
    rng = np.random.default_rng(seed)
    sqrt_a = schedule.sqrt_alpha_bar[1:].numpy()
    sqrt_1ma = schedule.sqrt_one_minus_alpha_bar[1:].numpy()
    pvalues = np.empty(schedule.T)
    chunk = max(1, min(_CHUNK, _CHUNK_FLOATS // n))
    for lo in range(0, schedule.T, chunk):
        a, b = sqrt_a[lo : lo + chunk, None], sqrt_1ma[lo : lo + chunk, None]
        rows = _draw_rows(rng, N, n, len(a))
        x = flat[rows, rng.integers(P, size=rows.shape)]
        z = a * x + b * rng.standard_normal(rows.shape)
        pvalues[lo : lo + len(a)] = stats.kstest(z, "norm", axis=1).pvalue
    return pvalues


def first_indistinguishable(pvalues, alpha: float = 0.05) -> int | None:
    """First t (1-based) whose p-value exceeds alpha, or None if there is none."""
    hits = np.flatnonzero(np.asarray(pvalues) > alpha)
    return int(hits[0]) + 1 if hits.size else None


def _write_csv(path: Path, header: list[str], rows) -> None:
    """Written whole or not at all (a full disk leaves no half-written table)."""
    fh = io.StringIO(newline="")
    writer = csv.writer(fh)
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write_text(path, fh.getvalue())


def write_schedule_figures(
    schedules: list[Schedule],
    images: torch.Tensor,
    out_dir,
    *,
    n: int = 2000,
    seed: int = 0,
    names: list[str] | None = None,
    alpha: float = 0.05,
) -> dict:
    """Write schedules.csv, ks.csv, ks_summary.csv, schedules.png and ks.png into out_dir.

    Every schedule is tested with the same seed. Returns {name: first t with p > alpha, or None}.
    """
    out = make_dir(out_dir)
    names = list(names) if names is not None else [s.kind for s in schedules]
    pvalues = [ks_pvalues(s, images, n=n, seed=seed) for s in schedules]
    first = {name: first_indistinguishable(p, alpha) for name, p in zip(names, pvalues)}
    _write_tables(out, names, schedules, pvalues, first, n, alpha)
    atomic_save(
        lambda f: _schedules_figure(names, schedules).savefig(f, format="png", dpi=120),
        out / "schedules.png",
    )
    atomic_save(
        lambda f: _ks_figure(names, pvalues, n, alpha).savefig(f, format="png", dpi=120),
        out / "ks.png",
    )
    return first


def _write_tables(
    out: Path,
    names: list[str],
    schedules: list[Schedule],
    pvalues: list,
    first: dict,
    n: int,
    alpha: float,
) -> None:
    """schedules.csv (beta and alpha_bar per t), ks.csv (p per t), ks_summary.csv."""
    _write_csv(
        out / "schedules.csv",
        ["schedule", "t", "beta", "alpha_bar"],
        (
            (name, t, repr(float(s.betas[t])), repr(float(s.alpha_bar[t])))
            for name, s in zip(names, schedules)
            for t in range(1, s.T + 1)
        ),
    )
    _write_csv(
        out / "ks.csv",
        ["schedule", "t", "p_value", "n"],
        (
            (name, t, repr(float(pv)), n)
            for name, p in zip(names, pvalues)
            for t, pv in enumerate(p, start=1)
        ),
    )
    _write_csv(
        out / "ks_summary.csv",
        ["schedule", "first_t_indistinguishable", "alpha"],
        ((name, "" if first[name] is None else first[name], alpha) for name in names),
    )


def _schedules_figure(names: list[str], schedules: list[Schedule]) -> Figure:
    """beta_t and alpha_bar_t of every schedule, side by side."""
    fig = Figure(figsize=(11, 4), layout="constrained")
    ax_beta, ax_bar = fig.subplots(1, 2)
    for name, s in zip(names, schedules):
        t = np.arange(1, s.T + 1)
        ax_beta.plot(t, s.betas[1:].numpy(), label=name)
        ax_bar.plot(t, s.alpha_bar[1:].numpy(), label=name)
    ax_beta.set(xlabel="t", ylabel=r"$\beta_t$", title="beta schedule")
    ax_bar.set(xlabel="t", ylabel=r"$\alpha_t = \prod_{s \leq t} (1 - \beta_s)$", title="alpha_t")
    ax_beta.legend()
    return fig


def _ks_figure(names: list[str], pvalues: list, n: int, alpha: float) -> Figure:
    """The KS p-value of z_t against N(0, 1) at every t, per schedule, on a log scale."""
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    for name, p in zip(names, pvalues):
        ax.plot(np.arange(1, len(p) + 1), np.maximum(p, _P_FLOOR), label=name, lw=0.8)
    ax.axhline(alpha, color="k", ls="--", lw=1, label=f"p = {alpha:g}")
    ax.set_yscale("log")
    ax.set(
        xlabel="t",
        ylabel=f"KS p-value (floored at {_P_FLOOR:g})",
        title=f"KS test vs N(0, 1), n = {n}",
    )
    ax.legend()
    return fig
