"""Training: the epoch loop of one run, with validation, sample grids and checkpoints.

Reproducible by construction: every epoch draws its shuffling and noise from a generator seeded
by (seed, epoch), so a run resumed from the checkpoint of epoch k continues exactly as an
uninterrupted run would.

The run's set-up is :mod:`engine.jobs.setup`, its checkpoints :mod:`engine.jobs.checkpoints`,
the samples and scores of its epochs :mod:`engine.jobs.evaluation`, the arrays of its report's
figures :mod:`engine.jobs.figures`.
"""

from __future__ import annotations

import math
import socket
import time
from collections.abc import Callable

import torch

from engine.jobs import figures
from engine.jobs.checkpoints import resume, save_checkpoint
from engine.jobs.evaluation import Evaluator
from engine.jobs.setup import (
    VALIDATION_SEED_OFFSET,
    Prepared,
    autocast,
    device_name,
    epoch_generator,
    prepare,
    run_spec,
)
from engine.jobs.tasks import check_finite
from engine.rundir.events import Checkpoint, Epoch, EventLog, Progress, Start
from engine.rundir.run import Run


def train_epoch(
    p: Prepared,
    epoch: int,
    should_stop: Callable[[], bool] = lambda: False,
    on_step: Callable[[int, int, torch.Tensor], bool | None] | None = None,
    scaler: torch.amp.GradScaler | None = None,
) -> float | None:
    """One pass over the training set; the mean loss, or None when stopped part-way.
    :class:`Diverged`, naming the first step, when a step's loss is not finite. The losses stay
    on the device (no wait per step): they are checked at the end of the epoch, or earlier when
    ``on_step(step, steps, loss)``, which reads some of them, returns True for a bad one."""
    tr = p.spec.training
    g = epoch_generator(tr.seed, epoch, p.device)
    n, bs = len(p.train_x), tr.batch_size
    perm = torch.randperm(n, generator=g, device=p.device)
    steps = math.ceil(n / bs)
    total = torch.zeros((), device=p.device)
    first_bad = torch.full((), steps + 1, device=p.device)  # the first step with a bad loss
    p.model.train()
    for step in range(steps):
        if should_stop():
            return None
        x = p.train_x[perm[step * bs : (step + 1) * bs]]
        with autocast(p.device, tr.amp):
            loss = p.deg.loss(p.net, x, g)
        p.optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(p.optimizer)
            scaler.update()
        else:
            loss.backward()
            p.optimizer.step()
        total += loss.detach() * len(x)
        first_bad = torch.where(
            torch.isfinite(loss.detach()), first_bad, first_bad.clamp(max=step + 1)
        )
        if on_step is not None and on_step(step + 1, steps, loss):
            break  # a non-finite loss: the epoch's mean is not finite either
    mean = total.item() / n
    if not math.isfinite(mean):
        check_finite(
            mean, "the training loss", f"epoch {epoch}, step {int(first_bad.item())} of {steps}"
        )
    return mean


@torch.no_grad()
def validation_loss(p: Prepared, batch: int = 1000) -> float:
    """Mean loss on the held-out split (and held-out latents) with noise fixed by the seed
    (comparable across epochs)."""
    g = torch.Generator(device=p.device).manual_seed(p.spec.training.seed + VALIDATION_SEED_OFFSET)
    p.model.eval()
    total = 0.0
    for start in range(0, len(p.val_x), batch):
        x = p.val_x[start : start + batch]
        with autocast(p.device, p.spec.training.amp):
            total += p.deg.loss(p.net, x, g, held_out=True).item() * len(x)
    p.model.train()
    return total / len(p.val_x)


class LossProgress:
    """The ``on_step`` of :func:`train_epoch` in a run: a ``progress`` event with the loss at
    most every ``every`` seconds and at an epoch's last step. True (stop the epoch) for a loss
    that is not finite: :func:`train_epoch` then says at which step it began."""

    def __init__(self, log: EventLog, every: float):
        self.log, self.every = log, every
        self.epoch = 0
        self.last = time.time()

    def __call__(self, step: int, steps: int, loss: torch.Tensor) -> bool:
        now = time.time()
        if now - self.last >= self.every or step == steps:
            self.last = now
            value = loss.item()
            if not math.isfinite(value):
                return True
            self.log.emit(Progress(epoch=self.epoch, step=step, steps=steps, loss=value))
        return False


def run_training(run: Run, log: EventLog, should_stop: Callable[[], bool]) -> str:
    """Train ``run`` from its checkpoint (if any) to the end. Returns 'finished' or 'stopped'."""
    spec = run_spec(run)
    p = prepare(spec)
    tr = spec.training
    scaler = torch.amp.GradScaler("cuda") if p.device.type == "cuda" and tr.amp == "fp16" else None
    start_epoch, note = resume(run, p)
    log.emit(
        Start(
            epoch=start_epoch,
            epochs=tr.epochs,
            device=str(p.device),
            device_name=device_name(p.device),
            host=socket.gethostname(),
            data_source=p.source,
            train_size=len(p.train_x),
            val_size=len(p.val_x),
            parameters=sum(x.numel() for x in p.model.parameters()),
            resumed=start_epoch > 0,
            note=note,
        )
    )

    on_step = LossProgress(log, tr.progress_every)
    evaluate = Evaluator(p, run, log, should_stop)

    for epoch in range(start_epoch + 1, tr.epochs + 1):
        t0 = time.time()
        on_step.epoch = epoch
        train_loss = train_epoch(p, epoch, should_stop, on_step, scaler)
        if train_loss is None:
            return "stopped"
        seconds = time.time() - t0
        val_loss = validation_loss(p)
        check_finite(val_loss, "the validation loss", f"epoch {epoch}")
        log.emit(
            Epoch(
                epoch=epoch,
                epochs=tr.epochs,
                train_loss=train_loss,
                val_loss=val_loss,
                seconds=round(seconds, 3),
                images_per_s=round(len(p.train_x) / max(seconds, 1e-9), 1),
            )
        )
        if epoch != tr.epochs:
            evaluate(epoch, last=False)
        save_checkpoint(run, p, epoch, keep_previous=not note)  # not a damaged one
        note = ""
        log.emit(Checkpoint(epoch=epoch))
        if should_stop():
            return "stopped"
    # the last epoch uses the final sampler (the study's ancestral DDPM by default)
    evaluate(tr.epochs, last=True)
    figures.write_arrays(p, run, log, should_stop)  # the report's process figures
    return "finished"
