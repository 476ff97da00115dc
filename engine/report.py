"""The study's figures and numbers as files, from run folders alone.

Per run: loss curves (train and validation), FID against epoch (with its floor), the sequence of
sample grids across epochs, and the forward and backward diffusion of a few images every 200
steps. Across runs: the same curves overlaid. ``write_report`` adds a Markdown page with the table
of final numbers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from .runs import Run, latest_by_epoch

COLUMNS = ("run", "status", "epochs", "final val loss", "FID", "floor", "class entropy",
           "sampler", "wall time")


@dataclass
class Summary:
    run: str
    status: str
    epoch: int
    epochs: int
    val_loss: float | None
    fid: float | None
    floor: float | None
    entropy: float | None
    sampler: str
    wall_seconds: float
    path: Path

    def row(self) -> list[str]:
        f = lambda x, spec: "-" if x is None else format(x, spec)  # noqa: E731
        return [self.run, self.status, f"{self.epoch}/{self.epochs}", f(self.val_loss, ".4f"),
                f(self.fid, ".2f"), f(self.floor, ".2f"), f(self.entropy, ".2f"), self.sampler or "-",
                format_seconds(self.wall_seconds)]


def format_seconds(s: float) -> str:
    m, sec = divmod(int(round(s)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def wall_seconds(events: list[dict]) -> float:
    """Time spent in worker attempts: each start to its end (or to the last event seen)."""
    total, begun, last = 0.0, None, None
    for e in events:
        if e["type"] == "start":
            if begun is not None and last is not None:
                total += last - begun  # an attempt that died without an end event
            begun = e["time"]
        last = e["time"]
        if e["type"] == "end" and begun is not None:
            total += e["time"] - begun
            begun = None
    if begun is not None and last is not None:
        total += last - begun
    return total


def summarize(run: Run) -> Summary:
    events = run.events()
    epochs = latest_by_epoch(events, "epoch")
    evals = latest_by_epoch(events, "eval")
    last_epoch = epochs[max(epochs)] if epochs else {}
    last_eval = evals[max(evals)] if evals else {}
    spec = run.spec()
    return Summary(
        run=run.name, status=run.status().state, epoch=max(epochs, default=0),
        epochs=spec.training["epochs"], val_loss=last_epoch.get("val_loss"),
        fid=last_eval.get("fid"), floor=last_eval.get("floor"), entropy=last_eval.get("entropy"),
        sampler=last_eval.get("sampler", ""), wall_seconds=wall_seconds(events), path=run.path)


# --- figures -------------------------------------------------------------------------------------

def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def plot_losses(runs: list[Run], path: Path) -> Path:
    fig = Figure(figsize=(7, 4))
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
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.set_title("training and validation loss")
    ax.legend(fontsize=7)
    return _save(fig, path)


def plot_fid(runs: list[Run], path: Path) -> Path:
    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
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
    ax.set_title("FID against epoch")
    ax.legend(fontsize=7)
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


def plot_diffusion(run: Run, path: Path, n: int = 4, every: int = 200) -> Path | None:
    """Forward diffusion of ``n`` training images and backward (DDPM) diffusion of ``n``
    samples, shown every ``every`` steps."""
    from . import data as datasets
    from .training import load_model

    if not run.checkpoint_path.exists():
        return None
    spec = run.spec()
    model, deg = load_model(run)
    T = deg.T
    shown = sorted(set(list(range(0, T + 1, every)) + [T]))
    ds = datasets.load_configured(spec.data)
    g = torch.Generator().manual_seed(0)
    x0 = datasets.to_model(ds.images[torch.randperm(len(ds.images), generator=g)[:n]])
    eps = torch.randn(x0.shape, generator=g)
    forward = [x0 if t == 0 else deg.degrade(x0, torch.full((n,), t), eps) for t in shown]
    from .samplers import ddpm
    backward: dict[int, torch.Tensor] = {}
    ddpm(model, deg, n, g, on_step=lambda t, z: backward.__setitem__(t, z) if t in shown else None)
    fig = Figure(figsize=(1.1 * len(shown), 1.2 * 2 * n + 0.8))
    rows = [("forward", [forward[i] for i in range(len(shown))]),
            ("backward", [backward[t] for t in shown])]
    for block, (label, cols) in enumerate(rows):
        for i in range(n):
            for j, t in enumerate(shown):
                ax = fig.add_subplot(2 * n, len(shown), (block * n + i) * len(shown) + j + 1)
                ax.imshow(datasets.from_model(cols[j][i, 0]).numpy(), cmap="gray", vmin=0, vmax=1)
                ax.set_xticks([])
                ax.set_yticks([])
                if i == 0:
                    ax.set_title(f"t={t}", fontsize=7)
                if j == 0:
                    ax.set_ylabel(label if i == 0 else "", fontsize=7)
    return _save(fig, path)


def write_run_figures(run: Run, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    made = [plot_losses([run], out / f"{run.name}-loss.png")]
    if latest_by_epoch(run.events(), "eval"):
        made.append(plot_fid([run], out / f"{run.name}-fid.png"))
    for fn, name in ((plot_grid_sequence, "grids"), (plot_diffusion, "diffusion")):
        p = fn(run, out / f"{run.name}-{name}.png")
        if p:
            made.append(p)
    return made


def write_report(runs: list[Run], out: Path) -> Path:
    """Figures for every run, overlaid curves when there are several, and ``report.md``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summaries = [summarize(r) for r in runs]
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


def markdown_table(summaries: list[Summary]) -> str:
    rows = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    rows += ["| " + " | ".join(s.row()) + " |" for s in summaries]
    return "\n".join(rows)
