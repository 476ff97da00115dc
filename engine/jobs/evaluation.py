"""The evaluation pass of a training run: after an epoch, draw its samples and write them as a
grid (``samples/epoch-NNNN.png`` and ``.npy``, a ``samples`` event) and score them (FID, floor,
class histogram, entropy: an ``eval`` event).

The measures themselves live in :mod:`engine.evaluation`; this module decides when an epoch is
evaluated, with which sampler and seed, and writes the files. The sampling study writes its
samples with :func:`save_samples` too.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.utils import make_grid

from engine.data import datasets
from engine.diffusion import samplers
from engine.evaluation.fid import FID, score_samples
from engine.files import atomic_save
from engine.jobs.setup import SAMPLES_SEED_OFFSET, Prepared, autocast
from engine.jobs.tasks import Diverged, TaskProgress
from engine.rundir.events import Eval, EventLog, Samples, read_events
from engine.rundir.run import Run
from engine.spec.sections import EvaluationSection


def save_samples(
    run: Run, stem: str, images: torch.Tensor, folder: str = "samples", n_grid: int | None = None
) -> tuple[str, str]:
    """``<folder>/<stem>.png`` (a grid of the first ``n_grid``, default all) and
    ``<folder>/<stem>.npy`` (all of them, N x 28 x 28 float32 in [0, 1]), in the run folder;
    their paths relative to it."""
    imgs = datasets.from_model(images.float().cpu())
    arr = imgs[:, 0].numpy().astype(np.float32)
    shown = imgs[:n_grid]
    nrow = max(1, round(math.sqrt(len(shown))))
    grid = make_grid(shown, nrow=nrow, padding=2, pad_value=1.0)[0]
    png = Image.fromarray((grid.numpy() * 255).round().astype(np.uint8), mode="L")
    rel = Path(folder)
    (run.path / rel).mkdir(exist_ok=True)
    atomic_save(lambda f: np.save(f, arr), run.path / rel / f"{stem}.npy")
    atomic_save(lambda f: png.save(f, format="PNG"), run.path / rel / f"{stem}.png")
    return str(rel / f"{stem}.png"), str(rel / f"{stem}.npy")


def final_sampler(evaluation: EvaluationSection) -> str:
    """The sampler of the last epoch's samples (``final_sampler``, where "same" means
    ``sampler``)."""
    final = evaluation.final_sampler
    return evaluation.sampler if final == "same" else final


class Evaluator:
    """Draws the samples of an epoch: a grid when the epoch is a grid epoch, and FID, floor and
    the class histogram when it is an evaluation epoch (every ``every`` epochs and the last)."""

    def __init__(
        self, p: Prepared, run: Run, log: EventLog, should_stop: Callable[[], bool] | None = None
    ):
        self.p, self.run, self.log = p, run, log
        self.ev = p.spec.evaluation
        self._fid: FID | None = None
        self.task = lambda name: TaskProgress(log, name, should_stop=should_stop)

    def fid(self) -> FID:
        """The scorer, built on the first evaluation epoch (it may train the classifier)."""
        if self._fid is None:
            self._fid = FID(self.ev.backbone, self.p.spec.data, tasks=self.task)
        return self._fid

    def __call__(self, epoch: int, last: bool) -> None:
        ev = self.ev
        grid, score = self.due(epoch, last)
        if not (grid or score):
            return
        sampler = final_sampler(ev) if last else ev.sampler
        name = samplers.describe(sampler, ev.steps, self.p.deg.T)
        n = max(ev.n_grid if grid else 0, ev.n_eval if score else 0)
        t0 = time.time()
        imgs = self.draw(epoch, sampler, name, n)
        seconds = round(time.time() - t0, 3)
        if not torch.isfinite(imgs).all():
            raise Diverged(
                f"the {name} samples of epoch {epoch} are not finite (NaN or inf): "
                "the model or its schedule gives no usable samples"
            )
        if grid:
            png, npy = save_samples(self.run, f"epoch-{epoch:04d}", imgs[: ev.n_grid])
            self.log.emit(
                Samples(epoch=epoch, png=png, npy=npy, n=ev.n_grid, sampler=name, seconds=seconds)
            )
        if score:
            t1 = time.time()
            fid = self.fid()
            # n_eval images whatever n_grid is: FID's bias depends on N, so every epoch's
            # number is comparable
            x = datasets.from_model(imgs[: ev.n_eval].float().cpu())[:, 0]
            s = score_samples(fid, x)
            self.log.emit(
                Eval(
                    epoch=epoch,
                    sampler=name,
                    backbone=ev.backbone,
                    **{k: v for k, v in asdict(s).items() if k != "classes"},
                    sample_seconds=seconds,
                    score_seconds=round(time.time() - t1, 3),
                )
            )

    def due(self, epoch: int, last: bool) -> tuple[bool, bool]:
        """(a grid, a score) of ``epoch``: what its evaluation writes."""
        ev = self.ev
        grid = epoch in ev.grid_epochs or last
        score = ev.every > 0 and (epoch % ev.every == 0 or last)
        if last:  # the final evaluation of an attempt that was stopped: do only what is left
            done = read_events(self.run.events_path)
            grid = grid and not any(
                isinstance(e, Samples) and e.epoch == epoch and (self.run.path / e.npy).is_file()
                for e in done
            )
            score = score and not any(isinstance(e, Eval) and e.epoch == epoch for e in done)
        return grid, score

    def draw(self, epoch: int, sampler: str, name: str, n: int) -> torch.Tensor:
        """``n`` samples of ``epoch`` (model space) from its own seed."""
        p, ev = self.p, self.ev
        g = torch.Generator(device=p.device).manual_seed(
            p.spec.training.seed + SAMPLES_SEED_OFFSET + epoch
        )
        with autocast(p.device, p.spec.training.amp):
            imgs = samplers.sample(
                p.net,
                p.deg,
                sampler,
                n,
                ev.steps,
                g,
                p.device,
                latent=ev.morph_latent,
                progress=self.task(f"{name} samples"),
            )
        return imgs
