"""The study's figures and numbers as files, from run folders alone.

Per run: loss curves (train and validation), FID against epoch (with its floor), the sequence of
sample grids across epochs, and the forward and backward diffusion of a few images every 200
steps (Gaussian runs) or, for morph runs, the restoration of one digit from several t and direct
against iterative restoration of ten digits. Across runs: the same curves overlaid. ``write_report`` adds a Markdown page with the table
of final numbers.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from .queue import SUMMARY_COLUMNS, summary, summary_row
from .runs import Run, latest_by_epoch

FIGURE_SEED = 0  # the images, noise and latents the figures show (the same for every run)

# --- figures -------------------------------------------------------------------------------------

def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def _overlay_figure(runs: list[Run]) -> tuple[Figure, object]:
    """A figure for curves of ``runs``, wider when several runs put their legend beside it."""
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(10 if len(runs) > 1 else 7, 4))
    ax = fig.add_subplot()
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs
    return fig, ax


def _legend(ax, runs: list[Run]) -> None:
    if len(runs) > 1:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    else:
        ax.legend(fontsize=7)


def plot_losses(runs: list[Run], path: Path) -> Path:
    fig, ax = _overlay_figure(runs)
    ax = fig.add_subplot()
    for i, run in enumerate(runs):
        ep = latest_by_epoch(run.events(), "epoch")
        x = list(ep)
        color = f"C{i % 10}"
        ax.plot(x, [e["train_loss"] for e in ep.values()], "-", color=color,
                label=f"{run.name} train" if len(runs) > 1 else "train")
        ax.plot(x, [e["val_loss"] for e in ep.values()], "--", color=color,
                label=f"{run.name} validation" if len(runs) > 1 else "validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (MSE to the noise, or to x for morph runs)")
    ax.set_yscale("log")
    ax.set_title("training and validation loss")
    _legend(ax, runs)
    return _save(fig, path)


def plot_fid(runs: list[Run], path: Path) -> Path:
    fig, ax = _overlay_figure(runs)
    for i, run in enumerate(runs):
        ev = latest_by_epoch(run.events(), "eval")
        if not ev:
            continue
        color = f"C{i % 10}"
        ax.plot(list(ev), [e["fid"] for e in ev.values()], "o-", color=color, label=run.name)
        ax.plot(list(ev), [e["floor"] for e in ev.values()], ":", color=color,
                label=f"{run.name} floor (real vs real)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("FID (MNIST classifier features)")
    ax.set_yscale("log")
    ax.set_title("FID against epoch")
    _legend(ax, runs)
    return _save(fig, path)


def plot_grid_sequence(run: Run, path: Path) -> Path | None:
    samples = latest_by_epoch(run.events(), "samples")
    grids = [(e, run.path / s["npy"]) for e, s in samples.items() if (run.path / s["npy"]).exists()]
    if not grids:
        return None
    fig = Figure(figsize=(2.2 * len(grids), 2.6))
    for i, (epoch, npy) in enumerate(grids):
        imgs = np.load(npy)
        ax = fig.add_subplot(1, len(grids), i + 1)
        ax.imshow(_tile(imgs), cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"epoch {epoch}\n{samples[epoch]['sampler']}", fontsize=8)
        ax.axis("off")
    return _save(fig, path)


def _tile(imgs: np.ndarray) -> np.ndarray:
    n = len(imgs)
    cols = max(1, round(math.sqrt(n)))
    rows = math.ceil(n / cols)
    out = np.ones((rows * 30, cols * 30), dtype=np.float32)
    for k, img in enumerate(imgs):
        r, c = divmod(k, cols)
        out[r * 30 + 1:r * 30 + 29, c * 30 + 1:c * 30 + 29] = img
    return out


def _image_rows(rows: list[tuple[str, torch.Tensor]], titles: list[str], path: Path) -> Path:
    """A figure of image rows: each row (label, images in model space, one per column)."""
    from . import data as datasets

    fig = Figure(figsize=(1.1 * len(titles) + 0.4, 1.15 * len(rows) + 0.5))
    for i, (label, imgs) in enumerate(rows):
        for j, img in enumerate(imgs):
            ax = fig.add_subplot(len(rows), len(titles), i * len(titles) + j + 1)
            ax.imshow(datasets.from_model(img.reshape(datasets.IMAGE_SHAPE[1:])).numpy(),
                      cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0 and titles[j]:
                ax.set_title(titles[j], fontsize=7)
            if j == 0:
                ax.set_ylabel(label, fontsize=7)
    return _save(fig, path)


def plot_diffusion(run: Run, path: Path, n: int = 4, every: int = 200) -> Path | None:
    """Forward diffusion of ``n`` training images and backward (DDPM) diffusion of ``n``
    samples, shown every ``every`` steps."""
    from . import data as datasets
    from .samplers import ddpm
    from .training import load_model

    if not run.checkpoint_path.exists():
        return None
    spec = run.spec()
    model, deg = load_model(run)
    T = deg.T
    shown = sorted(set(list(range(0, T + 1, every)) + [T]))
    ds = datasets.load_configured(spec.data)
    g = torch.Generator().manual_seed(FIGURE_SEED)
    x0 = datasets.to_model(ds.images[torch.randperm(len(ds.images), generator=g)[:n]])
    eps = torch.randn(x0.shape, generator=g)
    forward = torch.stack([deg.degrade(x0, torch.full((n,), t), eps) for t in shown], 1)
    backward: dict[int, torch.Tensor] = {}
    ddpm(model, deg, n, g, on_step=lambda t, z: backward.__setitem__(t, z) if t in shown else None)
    backward_rows = torch.stack([backward[t] for t in shown], 1)
    rows = [("forward" if i == 0 else "", forward[i]) for i in range(n)]
    rows += [("backward" if i == 0 else "", backward_rows[i]) for i in range(n)]
    return _image_rows(rows, [f"t={t}" for t in shown], path)


@torch.no_grad()
def plot_restoration(run: Run, path: Path, columns: int = 8) -> Path | None:
    """Morph: one held-out digit degraded to ``columns`` times t from 0 to T (top row) and its
    direct restoration R(z_t, t) (bottom row)."""
    from . import data as datasets
    from .training import load_model, training_data

    if not run.checkpoint_path.exists():
        return None
    model, deg = load_model(run)
    x = training_data(run.spec())[1][:1]
    z = deg.latents(1, torch.Generator().manual_seed(FIGURE_SEED), held_out=True)
    ts = torch.linspace(0, deg.T, columns).round().long()
    degraded = torch.cat([deg.degrade(x, t.view(1), z) for t in ts])
    restored = model(degraded, ts / deg.T).clamp(datasets.LO, datasets.HI)
    return _image_rows([("degraded z_t", degraded), ("restored R(z_t, t)", restored)],
                       [f"t={t}" for t in ts.tolist()], path)


@torch.no_grad()
def plot_direct_vs_iterative(run: Run, path: Path, n: int = 10) -> Path | None:
    """Morph: ``n`` held-out digits degraded to t = T, restored directly (R(z_T, T)) and with
    the iterative sampler of the run's ``steps``, with either latent setting."""
    from . import data as datasets
    from . import samplers
    from .config import MORPH_LATENTS
    from .training import load_model, training_data

    if not run.checkpoint_path.exists():
        return None
    spec = run.spec()
    steps = spec.evaluation.steps
    model, deg = load_model(run)
    x = training_data(spec)[1][:n]
    z = deg.latents(len(x), torch.Generator().manual_seed(FIGURE_SEED), held_out=True)
    z_T = deg.degrade(x, torch.full((len(x),), deg.T), z)
    name = samplers.describe("iterative", steps, deg.T)
    rows = [("digit x", x), (f"z_T (t={deg.T})", z_T), ("direct", samplers.direct(model, deg, z_T))]
    rows += [(f"{name}\n{mode} latent", samplers.iterative(model, deg, z_T, z, steps, mode))
             for mode in MORPH_LATENTS]
    return _image_rows([(label, imgs.clamp(datasets.LO, datasets.HI)) for label, imgs in rows],
                       [""] * len(x), path)


def write_run_figures(run: Run, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    made = [plot_losses([run], out / f"{run.name}-loss.png")]
    if latest_by_epoch(run.events(), "eval"):
        made.append(plot_fid([run], out / f"{run.name}-fid.png"))
    if run.spec().degradation == "morph":
        process = ((plot_restoration, "restoration"), (plot_direct_vs_iterative, "direct-vs-iterative"))
    else:
        process = ((plot_diffusion, "diffusion"),)
    for fn, name in ((plot_grid_sequence, "grids"), *process):
        p = fn(run, out / f"{run.name}-{name}.png")
        if p:
            made.append(p)
    return made


def write_report(runs: list[Run], out: Path) -> Path:
    """Figures for every run, overlaid curves when there are several, and ``report.md``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summaries = [summary(r) for r in runs]
    figures = {r.name: write_run_figures(r, out) for r in runs}
    overlays = []
    if len(runs) > 1:
        overlays.append(plot_losses(runs, out / "compare-loss.png"))
        if any(latest_by_epoch(r.events(), "eval") for r in runs):
            overlays.append(plot_fid(runs, out / "compare-fid.png"))
    lines = ["# diffui report", "", markdown_table(summaries), ""]
    lines += [f"![{p.stem}]({p.name})" for p in overlays]
    for r in runs:
        lines += ["", f"## {r.name}", "", f"Run folder: `{r.path}`", ""]
        lines += [f"![{p.stem}]({p.name})" for p in figures[r.name]]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def markdown_table(summaries: list) -> str:
    rows = ["| " + " | ".join(SUMMARY_COLUMNS) + " |", "|" + "---|" * len(SUMMARY_COLUMNS)]
    rows += ["| " + " | ".join(summary_row(p)) + " |" for p in summaries]
    return "\n".join(rows)
