"""The arrays behind a run's process figures, written by the worker when training ends.

The report reads run folders only: it never loads a checkpoint, a dataset or a sampler. So the
worker, which has the trained model at hand, draws the images of the figures that need the model
and keeps them in the run folder:

    <run>/figures/diffusion-forward.npy    Gaussian runs: 4 training digits noised to 6 times t
    <run>/figures/diffusion-backward.npy   and 4 DDPM samples seen at the same t (T down to 0)
    <run>/figures/restoration.npy          morph runs: one held-out digit degraded to 8 times t
                                           (row 0) and restored directly, R(z_t, t) (row 1)
    <run>/figures/direct-vs-iterative.npy  morph runs: 10 held-out digits x, z_T, the direct
                                           restoration and the iterative sampler with either
                                           latent setting (5 rows)

Every file is float32 ``(rows, columns, 28, 28)`` in [0, 1] (display space, as the sample grids).
Each set is announced by one ``figure`` event::

    {"type": "figure", "name": "diffusion", "epoch": 30,
     "files": ["figures/diffusion-forward.npy", "figures/diffusion-backward.npy"],
     "rows": ["forward", "", "", "", "backward", "", "", ""],   # a label per row, files stacked
     "columns": ["t=0", "t=200", ...],                          # a title per column ("" for none)
     "t": [0, 200, ...]}                                        # the column times, where they are times

The seeds are those the report used when it drew these figures itself, so the figures look the
same as before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import numpy as np
import torch

from engine.data import datasets
from engine.diffusion import samplers
from engine.files import atomic_save
from engine.jobs.setup import Prepared
from engine.jobs.tasks import TaskProgress
from engine.rundir.events import EventLog, Figure, read_events
from engine.rundir.run import Run
from engine.spec.components import DEGRADATIONS
from engine.spec.costs import DIFFUSION_IMAGES  # digits in the forward and backward strips
from engine.spec.sections import MORPH_LATENTS

FIGURES_DIR = "figures"
FIGURE_SEED = 0  # the generator of every figure's images and latents
DIFFUSION_TIMES = 6  # columns of the strips, from t = 0 to t = T (every 200 steps at T = 1000)
RESTORATION_TIMES = 8  # columns of the restoration figure, from t = 0 to t = T
DIRECT_DIGITS = 10  # columns of the direct against iterative figure


def write_arrays(p: Prepared, run: Run, log: EventLog, should_stop=None) -> list[Figure]:
    """Draw and save the arrays of ``run``'s process figures (its degradation's) that an
    earlier attempt has not written; one ``figure`` event each. Returns the new events.
    ``should_stop()`` stops it within a sampler step (:class:`engine.rundir.events.Stopped`)."""
    done = {
        e.name
        for e in read_events(run.events_path)
        if isinstance(e, Figure) and all((run.path / f).is_file() for f in e.files)
    }
    model = p.model
    was_training = model.training
    model.eval()
    progress = TaskProgress(log, "report figures", should_stop=should_stop)
    epoch = p.spec.training.epochs
    made = []
    try:
        for name in DEGRADATIONS.get(p.spec.degradation).figures:
            if name not in done:
                with torch.no_grad():
                    arrays = FIGURES[name](p, progress=progress)
                made.append(_save(run, log, epoch, **arrays))
    finally:
        model.train(was_training)
    return made


def _save(
    run: Run,
    log: EventLog,
    epoch: int,
    name: str,
    arrays: dict[str, torch.Tensor],
    rows: list[str],
    columns: list[str],
    t: list[int] | None = None,
) -> Figure:
    files = []
    for stem, images in arrays.items():
        arr = datasets.from_model(images.float().cpu())[:, :, 0].numpy().astype(np.float32)
        rel = f"{FIGURES_DIR}/{stem}.npy"
        atomic_save(lambda f, arr=arr: np.save(f, arr), run.path / rel)
        files.append(rel)
    return cast(
        Figure,
        log.emit(
            Figure(name=name, epoch=epoch, files=files, rows=rows, columns=columns, t=t or [])
        ),
    )


def _generator(device: torch.device, seed: int = FIGURE_SEED) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def _times(T: int, n: int) -> list[int]:
    return torch.linspace(0, T, n).round().long().tolist()


def diffusion(
    p: Prepared, n: int = DIFFUSION_IMAGES, columns: int = DIFFUSION_TIMES, progress=None
) -> dict:
    """Forward diffusion of ``n`` training digits and backward (ancestral DDPM) diffusion of
    ``n`` samples, at ``columns`` times from 0 to T; one generator draws the digits, the noise
    and the samples (on the CPU; the samples' noise comes from the device's own generator)."""
    deg, device = p.deg, p.device
    shown = _times(deg.T, columns)
    ds = datasets.load_configured(p.spec.data)
    g = _generator(torch.device("cpu"))
    x0 = datasets.to_model(ds.images[torch.randperm(len(ds.images), generator=g)[:n]])
    eps = torch.randn(x0.shape, generator=g)
    x0, eps = x0.to(device), eps.to(device)
    forward = torch.stack(
        [deg.degrade(x0, torch.full((n,), t, device=device), eps) for t in shown], 1
    )
    seen: dict[int, torch.Tensor] = {}
    samplers.ddpm(
        p.model,
        deg,
        n,
        g if device.type == "cpu" else _generator(device),
        device,
        on_step=lambda t, z: seen.__setitem__(t, z) if t in shown else None,
        progress=progress,
    )
    backward = torch.stack([seen[t] for t in shown], 1)
    label = lambda first: [first] + [""] * (n - 1)  # noqa: E731
    return dict(
        name="diffusion",
        arrays={"diffusion-forward": forward, "diffusion-backward": backward},
        rows=label("forward") + label("backward"),
        columns=[f"t={t}" for t in shown],
        t=shown,
    )


def restoration(p: Prepared, columns: int = RESTORATION_TIMES, progress=None) -> dict:
    """Morph: the first held-out digit degraded to ``columns`` times from 0 to T and its direct
    restoration R(z_t, t), clipped to the data range."""
    deg, device = p.deg, p.device
    x = p.val_x[:1]
    z = deg.latents(1, _generator(device), held_out=True)
    ts = torch.tensor(_times(deg.T, columns), device=device)
    degraded = torch.cat([deg.degrade(x, t.view(1), z) for t in ts])
    restored = p.model(degraded, ts / deg.T).clamp(datasets.LO, datasets.HI)
    return dict(
        name="restoration",
        arrays={"restoration": torch.stack([degraded, restored])},
        rows=["degraded z_t", "restored R(z_t, t)"],
        columns=[f"t={t}" for t in ts.tolist()],
        t=ts.tolist(),
    )


def direct_vs_iterative(p: Prepared, n: int = DIRECT_DIGITS, progress=None) -> dict:
    """Morph: ``n`` held-out digits degraded to t = T, restored directly (R(z_T, T)) and with
    the iterative sampler of the run's ``steps``, with either latent setting."""
    deg, device = p.deg, p.device
    steps = p.spec.evaluation.steps
    x = p.val_x[:n]
    z = deg.latents(len(x), _generator(device), held_out=True)
    z_T = deg.degrade(x, torch.full((len(x),), deg.T, device=device), z)
    name = samplers.describe("iterative", steps, deg.T)
    rows = [
        ("digit x", x),
        (f"z_T (t={deg.T})", z_T),
        ("direct", samplers.direct(p.model, deg, z_T)),
    ]
    rows += [
        (f"{name}\n{mode} latent", samplers.iterative(p.model, deg, z_T, z, steps, mode))
        for mode in MORPH_LATENTS
    ]
    table = torch.stack([imgs.clamp(datasets.LO, datasets.HI) for _, imgs in rows])
    return dict(
        name="direct-vs-iterative",
        arrays={"direct-vs-iterative": table},
        rows=[label for label, _ in rows],
        columns=[""] * len(x),
    )


# the figure kinds a degradation names (engine.spec.components: DegradationEntry.figures)
FIGURES: dict[str, Callable[..., dict]] = {
    "diffusion": diffusion,
    "restoration": restoration,
    "direct-vs-iterative": direct_vs_iterative,
}
