"""Kolmogorov-Smirnov study: when does z_t = sqrt(alpha_bar_t) x + sqrt(1 - alpha_bar_t) eps
become indistinguishable from N(0, 1)?

:func:`schedule_study` is what ``diffui schedules`` and ``diffui --batch`` (into
``RUNS/schedules``, for the claims ledger) both run: the distinct schedules of an experiments
file, tested on its training images, written as tables and figures with the settings they were
computed from (batch mode leaves a folder that holds them for the same settings as it is).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import LogLocator, MaxNLocator, NullFormatter
from scipy import stats

import engine.style as style
from engine.data import datasets as data
from engine.diffusion.schedules import Schedule, from_spec
from engine.files import atomic_write_text, make_dir
from engine.spec.specs import RunSpec

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
    """Write schedules.csv, ks.csv, ks_summary.csv and the figures schedules and ks (each a PNG
    and a vector PDF, :func:`engine.style.save_figure`) into out_dir.

    Every schedule is tested with the same seed. Returns {name: first t with p > alpha, or None}.
    """
    out = make_dir(out_dir)
    names = list(names) if names is not None else [s.kind for s in schedules]
    pvalues = [ks_pvalues(s, images, n=n, seed=seed) for s in schedules]
    first = {name: first_indistinguishable(p, alpha) for name, p in zip(names, pvalues)}
    _write_tables(out, names, schedules, pvalues, first, n, alpha)
    style.save_figure(_schedules_figure(names, schedules), out / "schedules.png")
    style.save_figure(_ks_figure(names, pvalues, n, alpha), out / "ks.png")
    return first


FILES = (
    "schedules.csv",
    "ks.csv",
    "ks_summary.csv",
    "schedules.png",
    "schedules.pdf",
    "ks.png",
    "ks.pdf",
)
SETTINGS = "ks_settings.json"  # what the files of a folder were computed from
LAYOUT = 2  # the files' layout (2: the figures in the report's style, PNG and PDF)


class NoImages(Exception):
    """The training images of the runs cannot be loaded; ``str()`` says why in one line."""


@dataclass(frozen=True)
class ScheduleStudy:
    """What :func:`schedule_study` found: per schedule name the first t with p > 0.05 (None:
    never), for each cosine schedule with a cap its max_beta, T and the steps whose beta is at it,
    and whether the files were written (False: the folder held them for the same settings)."""

    first: dict[str, int | None]
    capped: dict[str, tuple[float, int, list[int]]]  # max_beta, T, the steps at it
    written: bool


def distinct_schedules(runs: list[RunSpec]) -> tuple[list[Schedule], list[str], list]:
    """Each distinct schedule of ``runs`` once, named by its kind (``cosine-RUN`` for a second
    cosine with other betas), and its ``max_beta`` (None where it has none)."""
    schedules: list[Schedule] = []
    names: list[str] = []
    caps: list[float | None] = []
    for run in runs:
        sched = from_spec(run.schedule)
        name = sched.kind
        if any(s.kind == sched.kind and not s.betas.equal(sched.betas) for s in schedules):
            name = f"{sched.kind}-{run.name}"
        if name not in names:
            schedules.append(sched)
            names.append(name)
            caps.append(getattr(run.schedule.params(), "max_beta", None))
    return schedules, names, caps


def schedule_study(
    runs: list[RunSpec], out_dir, *, n: int = 2000, seed: int = 0, reuse: bool = False
) -> ScheduleStudy:
    """The KS study of the distinct schedules of ``runs`` on the training images of the first
    run's data, into ``out_dir`` (:func:`write_schedule_figures`, and the settings it was
    computed from, :data:`SETTINGS`). With ``reuse``, a folder that holds every file for the
    same settings (schedules, n, seed, data) is left as it is, told before any image is loaded
    where the data's files tell which images a load gives (:func:`data.source_fingerprint`).
    Raises :class:`NoImages`."""
    schedules, names, caps = distinct_schedules(runs)
    capped = {
        name: (cap, s.T, [t for t in range(1, s.T + 1) if float(s.betas[t]) >= cap])
        for name, s, cap in zip(names, schedules, caps)
        if s.kind == "cosine" and cap is not None
    }
    hashes = {
        m: hashlib.sha256(s.betas.numpy().tobytes()).hexdigest() for m, s in zip(names, schedules)
    }
    settings = {"layout": LAYOUT, "n": n, "seed": seed, "schedules": hashes}
    dataset, out = runs[0].data.dataset, Path(out_dir)
    known = data.source_fingerprint(runs[0].data)
    if reuse and known is not None:  # (the images are loaded only when they are needed)
        first = _stored_first(out, {**settings, "data": [dataset, known]})
        if first is not None:
            return ScheduleStudy(first, capped, written=False)
    try:
        ds = data.load_configured(runs[0].data)
    except (data.DataUnavailable, ValueError) as e:  # (ValueError: a damaged IDX file, named)
        raise NoImages(str(e)) from None
    known = data.source_fingerprint(runs[0].data)  # (a load may have fetched the files)
    settings["data"] = [dataset, known] if known else [dataset, ds.source, len(ds.images)]
    first = _stored_first(out, settings) if reuse else None
    if first is not None:
        return ScheduleStudy(first, capped, written=False)
    (out / SETTINGS).unlink(missing_ok=True)  # (a study cut short is never taken for done)
    first = write_schedule_figures(
        schedules, data.to_model(ds.images), out, n=n, seed=seed, names=names
    )
    atomic_write_text(out / SETTINGS, json.dumps(settings, indent=1) + "\n")
    return ScheduleStudy(first, capped, written=True)


def _stored_first(out: Path, settings: dict) -> dict[str, int | None] | None:
    """The first t of each schedule in ``out`` when it holds every file of the study computed
    from ``settings``; None otherwise (or when a table is unreadable: computed again)."""
    try:
        if json.loads((out / SETTINGS).read_text()) != settings:
            return None
        if not all((out / f).is_file() for f in FILES):
            return None
        with open(out / "ks_summary.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        first = {r["schedule"]: r["first_t_indistinguishable"] for r in rows}
        return {k: int(t) if t else None for k, t in first.items()}
    except (OSError, ValueError, KeyError, TypeError, csv.Error):
        return None


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


def _step_axis(ax, label: str) -> None:
    """The x axis counts diffusion steps t; the y axis is ``label``; ticks and legend sized as
    the report's."""
    ax.set_xlabel("diffusion step t", fontsize=style.LABEL)
    ax.set_ylabel(label, fontsize=style.LABEL)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))
    ax.set_xlim(left=0)
    ax.tick_params(which="both", labelsize=style.TICK)
    ax.grid(alpha=0.3, lw=0.5)


def _schedules_figure(names: list[str], schedules: list[Schedule]) -> Figure:
    """beta_t (log scale, plain tick labels) and alpha_bar_t of every schedule, side by side."""
    fig = style.new_figure(7.0, 3.0)
    ax_beta, ax_bar = fig.subplots(1, 2)
    betas = []
    for name, s in zip(names, schedules):
        t = np.arange(1, s.T + 1)
        ax_beta.plot(t, s.betas[1:].numpy(), label=name, lw=1)
        ax_bar.plot(t, s.alpha_bar[1:].numpy(), label=name, lw=1)
        betas += s.betas[1:].tolist()
    style.value_axis(ax_beta, betas, r"$\beta_t$ (variance added at step t)")
    _step_axis(ax_beta, ax_beta.get_ylabel())
    ax_bar.set_ylim(0, 1.02)
    _step_axis(ax_bar, r"$\bar\alpha_t = \Pi_{s \leq t}\,(1 - \beta_s)$ (signal kept)")
    ax_beta.set_title("noise added per step", fontsize=style.SMALL + 1)
    ax_bar.set_title("signal variance left of the image", fontsize=style.SMALL + 1)
    fig.legend(
        *ax_bar.get_legend_handles_labels(),
        loc="outside lower center",
        ncols=len(names),
        fontsize=style.SMALL,
        frameon=False,
    )
    fig.suptitle("Noise schedules", fontsize=style.TITLE)
    return fig


def _ks_figure(names: list[str], pvalues: list, n: int, alpha: float) -> Figure:
    """The KS p-value of z_t against N(0, 1) at every t, per schedule, on a log scale."""
    fig = style.new_figure(6.0, 3.4)
    ax = fig.subplots()
    for name, p in zip(names, pvalues):
        ax.plot(np.arange(1, len(p) + 1), np.maximum(p, _P_FLOOR), label=name, lw=0.8)
    ax.axhline(alpha, color="k", ls="--", lw=0.8, label=f"p = {alpha:g}")
    ax.set_yscale("log")
    ax.set_ylim(_P_FLOOR / 3, 3)
    ax.yaxis.set_major_locator(LogLocator(base=10, numticks=9))
    ax.yaxis.set_major_formatter(style.PlainLog())
    ax.yaxis.set_minor_formatter(NullFormatter())
    _step_axis(ax, f"KS p-value (floored at {_P_FLOOR:g})")
    fig.legend(
        *ax.get_legend_handles_labels(),
        loc="outside lower center",
        ncols=len(names) + 1,
        fontsize=style.SMALL,
        frameon=False,
    )
    fig.suptitle(
        f"KS test of $z_t$ against N(0, 1)\nn = {n} independent pixels per step (one per image)",
        fontsize=style.TITLE,
    )
    return fig
