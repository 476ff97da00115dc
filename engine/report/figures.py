"""The report's figures, each a matplotlib ``Figure`` drawn from run folders alone, in the one
style of :mod:`engine.style` and titled with the run it shows (schedule, network,
degradation).

Per run: loss curves (train and validation), FID against epoch (with its floor, the sampler and
n), the sequence of sample grids across epochs, and the process figures whose arrays the worker
wrote when training ended (``engine.jobs.figures``): the forward and backward diffusion of a few
images (Gaussian runs) or, for morph runs, the restoration of one digit from several t and
direct against iterative restoration of ten digits. Across runs: loss curves overlaid among runs
of one objective, FID of all. Per sampling study: each value's grid with its numbers.
:func:`engine.style.save_figure` writes one as PNG and PDF.

No pyplot (no global state, no GUI backend) and no torch.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

import engine.style as style
from engine.report.arrays import (
    by_epoch,
    load_array,
    process_blocks,
    sample_grids,
    values_in_order,
)
from engine.report.tables import about, about_runs, fid_text, interval, objective, run_spec
from engine.rundir.events import Epoch, Eval
from engine.rundir.events import Figure as FigureEvent
from engine.rundir.run import DamagedRun, Run
from engine.spec.sections import STUDY_VALUE
from engine.text import fmt


def _curves_figure(runs: list[Run]) -> tuple[Figure, Axes]:
    """A figure for curves against epoch of ``runs``, wider when several put their legend
    beside it."""
    fig = style.new_figure(8.5 if len(runs) > 1 else 6, 3.6)
    ax = fig.add_subplot()
    style.epoch_axis(ax)
    return fig, ax


def _legend(ax: Axes, runs: list[Run]) -> None:
    if len(runs) > 1:
        ax.legend(fontsize=style.SMALL, loc="upper left", bbox_to_anchor=(1.01, 1))
    else:
        ax.legend(fontsize=style.SMALL)


def _title(fig: Figure, what: str, runs: list[Run]) -> None:
    style.run_title(fig, what, about(runs[0]) if len(runs) == 1 else about_runs(runs))


def losses_figure(runs: list[Run]) -> Figure:
    """Training and validation loss against epoch of each of ``runs`` (runs of one objective:
    the y axis names it)."""
    fig, ax = _curves_figure(runs)
    for i, run in enumerate(runs):
        ep = by_epoch(run, Epoch)
        color = f"C{i % 10}"
        name = f"{run.name} " if len(runs) > 1 else ""
        ax.plot(
            list(ep), [e.train_loss for e in ep.values()], "-", color=color, label=name + "train"
        )
        ax.plot(
            list(ep),
            [e.val_loss for e in ep.values()],
            "--",
            color=color,
            label=name + "validation",
        )
    specs = [s for s in map(run_spec, runs) if s is not None]
    degradations = sorted({s.degradation for s in specs})
    ylabel = objective(degradations[0]) if len(degradations) == 1 else "loss (MSE)"
    values = [
        v for r in runs for e in by_epoch(r, Epoch).values() for v in (e.train_loss, e.val_loss)
    ]
    style.value_axis(ax, values, f"loss: {ylabel}")
    _title(fig, "Training and validation loss", runs)
    _legend(ax, runs)
    return fig


MARKERS = "os^Dv<>p"  # one marker per sampler in an FID figure


def fid_figure(runs: list[Run]) -> Figure:
    """FID against epoch of each of ``runs`` that has evaluations: a marker per sampler (the
    sampler and n in the legend), its interval as error bars where the events carry one, and
    one dotted line per distinct floor."""
    fig, ax = _curves_figure(runs)
    evals = {run.name: by_epoch(run, Eval) for run in runs}
    samplers = list(dict.fromkeys(e.sampler for ev in evals.values() for e in ev.values()))
    for i, run in enumerate(runs):
        ev = evals[run.name]
        if not ev:
            continue
        color = f"C{i % 10}"
        ax.plot(list(ev), [e.fid for e in ev.values()], "-", color=color, linewidth=1)
        groups: dict[tuple[str, int], list[Eval]] = {}
        for e in ev.values():
            groups.setdefault((e.sampler, e.n), []).append(e)
        for (sampler, n), group in groups.items():
            name = f"{run.name}, " if len(runs) > 1 else ""
            _fid_points(ax, group, color, MARKERS[samplers.index(sampler) % len(MARKERS)])
            ax.plot(
                [],
                [],
                MARKERS[samplers.index(sampler) % len(MARKERS)],
                color=color,
                label=f"{name}{sampler}, n = {n}",
            )
    _floor_lines(ax, [e for ev in evals.values() for e in ev.values()])
    backbones = sorted({e.backbone for ev in evals.values() for e in ev.values()})
    values = [v for ev in evals.values() for e in ev.values() for v in (e.fid, e.floor)]
    style.value_axis(ax, values, f"FID ({', '.join(backbones)} features)")
    _title(fig, "FID against epoch", [r for r in runs if evals[r.name]])
    _legend(ax, runs)
    return fig


def _fid_points(ax: Axes, group: list[Eval], color: str, marker: str) -> None:
    """The FIDs of one sampler and n, with their intervals as bars where they have them (the
    interval as it is: at a small n the basic bootstrap's, which corrects FID's upward bias,
    can lie wholly below the FID itself)."""
    x, y = [e.epoch for e in group], [e.fid for e in group]
    cis = [interval(e) for e in group]
    if all(ci is not None for ci in cis):
        lo, hi = np.array([ci for ci in cis if ci]).T
        ax.errorbar(x, (lo + hi) / 2, yerr=(hi - lo) / 2, fmt="none", ecolor=color, capsize=3)
    ax.plot(x, y, marker, color=color)


def _floor_lines(ax: Axes, evals: list[Eval]) -> None:
    """One dotted line per distinct floor (runs at the same n share one), across the epochs
    that have it, labelled with its n."""
    floors: dict[float, list[Eval]] = {}
    for e in evals:
        floors.setdefault(float(f"{e.floor:.4g}"), []).append(e)
    for k, (floor, group) in enumerate(sorted(floors.items())):
        epochs = [e.epoch for e in group]
        ns = ", ".join(str(n) for n in sorted({e.n for e in group}))
        ax.hlines(
            floor,
            min(epochs) - 0.25,
            max(epochs) + 0.25,
            colors="0.35",
            linestyles=(0, (1, 1 + k)),
            label=f"floor {floor:.4g} (real vs real, n = {ns})",
        )


def _damaged_panel(ax: Axes, e: DamagedRun) -> None:
    ax.text(0.5, 0.5, f"{e.path.name}\ndamaged", ha="center", va="center", fontsize=style.SMALL)
    ax.set_xticks([])
    ax.set_yticks([])


def grids_figure(run: Run) -> Figure:
    """The sample grids side by side (a damaged grid file shows as a panel saying so)."""
    grids = sample_grids(run)
    fig = style.new_figure(max(4.5, 2.0 * len(grids)), 3.0)
    for i, (epoch, npy, sampler) in enumerate(grids):
        ax = fig.add_subplot(1, len(grids), i + 1)
        try:
            imgs = load_array(npy, ndim=3)
        except DamagedRun as e:
            ax.set_title(f"epoch {epoch}\n{sampler}", fontsize=style.SMALL)
            _damaged_panel(ax, e)
            continue
        ax.set_title(f"epoch {epoch}\n{sampler}, n = {len(imgs)}", fontsize=style.SMALL)
        ax.imshow(_tile(imgs), cmap="gray", vmin=0, vmax=1)
        ax.axis("off")
    style.run_title(fig, "Samples across training", about(run))
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


# What each process figure shows (its title), and each direction of the diffusion figure: the
# backward rows run as the sampler does, from t = T to 0.
PROCESS_TITLES = {
    "diffusion": "Forward and backward diffusion",
    "restoration": "Restoration R(z_t, t) of one held-out digit from several t",
    "direct-vs-iterative": "Direct against iterative restoration",
}
DIRECTIONS = {
    "forward": ("forward: noising training digits, t = 0 → T", False),
    "backward": ("backward: DDPM sampling, t = T → 0", True),
}


def _blocks(run: Run, event: FigureEvent) -> list[tuple[str, np.ndarray, list[str], list[str]]]:
    """(title, images, row labels, column titles) of each block of a process figure: one per
    file, each with its own column titles; a direction's block in its own order of t."""
    blocks, first = [], 0
    for images in process_blocks(run, event):
        labels = [*event.rows[first : first + len(images)], *[""] * len(images)][: len(images)]
        cols = images.shape[1]  # (an event may name fewer rows or columns, or none)
        columns = [c.replace("t=", "t = ") for c in [*event.columns, *[""] * cols][:cols]]
        title, reverse = DIRECTIONS.get(labels[0], ("", False))
        if reverse:
            images, columns = images[:, ::-1], columns[::-1]
        blocks.append((title, images, [""] * len(labels) if title else labels, columns))
        first += len(images)
    return blocks


def process_figure(run: Run, event: FigureEvent) -> Figure:
    """A figure of image rows (one image per panel) in blocks, one per array file (the
    diffusion figure's forward and backward rows), each block titled and with its own column
    titles (t); row labels on the left."""
    blocks = _blocks(run, event)
    rows = sum(len(b[1]) for b in blocks)
    cols = blocks[0][1].shape[1]
    fig = style.new_figure(1.0 * cols + 0.9, 1.0 * rows + 0.45 * len(blocks) + 0.6)
    subs = fig.subfigures(
        len(blocks), 1, height_ratios=[len(b[1]) + 0.6 for b in blocks], squeeze=False
    )
    for sub, (title, images, labels, columns) in zip(subs[:, 0], blocks):
        if title:
            sub.suptitle(title, fontsize=style.LABEL)
        for i in range(len(images)):
            for j in range(cols):
                ax = sub.add_subplot(len(images), cols, i * cols + j + 1)
                ax.imshow(images[i, j], cmap="gray", vmin=0, vmax=1)
                ax.set_xticks([])
                ax.set_yticks([])
                if i == 0 and columns[j]:
                    ax.set_title(columns[j], fontsize=style.SMALL)
                if j == 0 and labels[i]:
                    ax.set_ylabel(labels[i], fontsize=style.SMALL)
    style.run_title(fig, PROCESS_TITLES.get(event.name, event.name), about(run))
    return fig


def study_figure(study: Run) -> Figure:
    """Each value's grid side by side, its numbers under it."""
    spec, values = study.study_spec(), values_in_order(study)
    fig = style.new_figure(2.2 * max(1, len(values)) + 0.4, 3.9)
    for i, e in enumerate(values):
        ax = fig.add_subplot(1, len(values), i + 1)
        try:
            imgs = load_array(study.path / e.npy, ndim=3)[: spec.keys.n_grid]
            ax.imshow(_tile(imgs), cmap="gray", vmin=0, vmax=1)
        except DamagedRun as damaged:
            _damaged_panel(ax, damaged)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{STUDY_VALUE[spec.kind]} = {e.value:g}", fontsize=style.LABEL)
        ax.set_xlabel(
            f"FID {fid_text(e, '.0f')} (floor {fmt(e.floor, '.3g')})\n"
            f"distinct {fmt(e.distinct_share, '.0%')} · near-copies {fmt(e.near_copy_share, '.0%')}\n"
            f"entropy {fmt(e.entropy, '.2f')} bits",
            fontsize=style.SMALL,
        )
    sampler = values[0].sampler if values else ""
    style.run_title(
        fig,
        f"Sampling study {spec.name}: {spec.kind} on run {spec.run}",
        f"{sampler}, n = {spec.keys.n} samples per value",
    )
    return fig
