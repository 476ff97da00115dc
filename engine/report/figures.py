"""The report's figures, each a matplotlib ``Figure`` drawn from run folders alone.

Per run: loss curves (train and validation), FID against epoch (with its floor), the sequence of
sample grids across epochs, and the process figures whose arrays the worker wrote when training
ended (``engine.jobs.figures``): the forward and backward diffusion of a few images (Gaussian
runs) or, for morph runs, the restoration of one digit from several t and direct against
iterative restoration of ten digits. Across runs: the same curves overlaid. Per sampling study:
each value's grid with its numbers. :func:`save_figure` writes one as a PNG file.

No pyplot (no global state, no GUI backend) and no torch.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from engine.files import atomic_save
from engine.report.arrays import by_epoch, load_array, process_table, sample_grids, values_in_order
from engine.rundir.events import Epoch, Eval
from engine.rundir.events import Figure as FigureEvent
from engine.rundir.run import DamagedRun, Run
from engine.spec.sections import STUDY_VALUE
from engine.text import fmt


def _overlay_figure(runs: list[Run]) -> tuple[Figure, Axes]:
    """A figure for curves of ``runs``, wider when several runs put their legend beside it."""
    fig = Figure(figsize=(10 if len(runs) > 1 else 7, 4))
    ax = fig.add_subplot()
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # epochs
    return fig, ax


def _legend(ax: Axes, runs: list[Run]) -> None:
    if len(runs) > 1:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    else:
        ax.legend(fontsize=7)


def losses_figure(runs: list[Run]) -> Figure:
    """Training and validation loss against epoch of each of ``runs``."""
    fig, ax = _overlay_figure(runs)
    for i, run in enumerate(runs):
        ep = by_epoch(run, Epoch)
        x = list(ep)
        color = f"C{i % 10}"
        ax.plot(
            x,
            [e.train_loss for e in ep.values()],
            "-",
            color=color,
            label=f"{run.name} train" if len(runs) > 1 else "train",
        )
        ax.plot(
            x,
            [e.val_loss for e in ep.values()],
            "--",
            color=color,
            label=f"{run.name} validation" if len(runs) > 1 else "validation",
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (MSE to the noise, or to x for morph runs)")
    ax.set_yscale("log")
    ax.set_title("training and validation loss")
    _legend(ax, runs)
    return fig


def fid_figure(runs: list[Run]) -> Figure:
    """FID against epoch of each of ``runs`` that has evaluations, with its floor."""
    fig, ax = _overlay_figure(runs)
    for i, run in enumerate(runs):
        ev = by_epoch(run, Eval)
        if not ev:
            continue
        color = f"C{i % 10}"
        ax.plot(list(ev), [e.fid for e in ev.values()], "o-", color=color, label=run.name)
        ax.plot(
            list(ev),
            [e.floor for e in ev.values()],
            ":",
            color=color,
            label=f"{run.name} floor (real vs real)",
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel("FID (MNIST classifier features)")
    ax.set_yscale("log")
    ax.set_title("FID against epoch")
    _legend(ax, runs)
    return fig


def _damaged_panel(ax: Axes, e: DamagedRun) -> None:
    ax.text(0.5, 0.5, f"{e.path.name}\ndamaged", ha="center", va="center", fontsize=7)
    ax.set_xticks([])
    ax.set_yticks([])


def grids_figure(run: Run) -> Figure:
    """The sample grids side by side (a damaged grid file shows as a panel saying so)."""
    grids = sample_grids(run)
    fig = Figure(figsize=(2.2 * len(grids), 2.6))
    for i, (epoch, npy, sampler) in enumerate(grids):
        ax = fig.add_subplot(1, len(grids), i + 1)
        ax.set_title(f"epoch {epoch}\n{sampler}", fontsize=8)
        try:
            ax.imshow(_tile(load_array(npy, ndim=3)), cmap="gray", vmin=0, vmax=1)
        except DamagedRun as e:
            _damaged_panel(ax, e)
            continue
        ax.axis("off")
    return fig


def _tile(imgs: np.ndarray) -> np.ndarray:
    n = len(imgs)
    cols = max(1, round(math.sqrt(n)))
    rows = math.ceil(n / cols)
    out = np.ones((rows * 30, cols * 30), dtype=np.float32)
    for k, img in enumerate(imgs):
        r, c = divmod(k, cols)
        out[r * 30 + 1 : r * 30 + 29, c * 30 + 1 : c * 30 + 29] = img
    return out


def process_figure(run: Run, event: FigureEvent) -> Figure:
    """A figure of image rows (one image per panel) with the event's row labels and column
    titles."""
    table = process_table(run, event)
    rows, cols = table.shape[:2]
    labels = [*event.rows, *[""] * rows][:rows]  # (an event may name fewer, or none)
    titles = [*event.columns, *[""] * cols][:cols]
    fig = Figure(figsize=(1.1 * cols + 0.4, 1.15 * rows + 0.5))
    for i in range(rows):
        for j in range(cols):
            ax = fig.add_subplot(rows, cols, i * cols + j + 1)
            ax.imshow(table[i, j], cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0 and titles[j]:
                ax.set_title(titles[j], fontsize=7)
            if j == 0:
                ax.set_ylabel(labels[i], fontsize=7)
    return fig


def study_figure(study: Run) -> Figure:
    """Each value's grid side by side, its numbers under it."""
    spec, values = study.study_spec(), values_in_order(study)
    fig = Figure(figsize=(2.3 * max(1, len(values)) + 0.4, 3.9))
    for i, e in enumerate(values):
        ax = fig.add_subplot(1, len(values), i + 1)
        try:
            ax.imshow(
                _tile(load_array(study.path / e.npy, ndim=3)[: spec.keys.n_grid]),
                cmap="gray",
                vmin=0,
                vmax=1,
            )
        except DamagedRun as damaged:
            _damaged_panel(ax, damaged)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{STUDY_VALUE[spec.kind]} = {e.value:g}", fontsize=9)
        ax.set_xlabel(
            f"FID {e.fid:.0f} (floor {e.floor:.0f})\ndistinct {fmt(e.distinct_share, '.0%')}"
            f" · near-copies {fmt(e.near_copy_share, '.0%')}\nentropy {fmt(e.entropy, '.2f')} bits",
            fontsize=7,
        )
    fig.suptitle(
        f"{spec.name}: {spec.kind} on {spec.run} ({values[0].sampler if values else ''},"
        f" n = {spec.keys.n})",
        fontsize=9,
    )
    return fig


def save_figure(fig: Figure, path: Path) -> Path:
    """``fig`` as a PNG file, written whole or not at all."""
    fig.tight_layout()
    atomic_save(lambda f: fig.savefig(f, format="png", dpi=110), path)
    return path
