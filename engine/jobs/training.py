"""Training: the epoch loop of one run, with validation, sample grids and checkpoints.

Reproducible by construction: every epoch draws its shuffling and noise from a generator seeded
by (seed, epoch), so a run resumed from the checkpoint of epoch k continues exactly as an
uninterrupted run would.
"""
from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from engine.data import datasets
from engine.diffusion import degradations
from engine.jobs import figures
from engine.diffusion import nets
from engine.diffusion import samplers
from engine.spec.specs import RunSpec
from engine.diffusion.degradations import Degradation
from engine.rundir.events import Checkpoint, Epoch, Eval, EventLog, Progress, Samples, Start, read_events
from engine.jobs.tasks import TaskProgress
from engine.rundir.run import DamagedRun, Run, RunError
from engine.files import atomic_save, keep_file
from engine.text import one_line


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"training.device = {name!r} but no CUDA device is available")
    return dev


def autocast(device: torch.device, amp: str):
    """Mixed precision on CUDA (bf16 by default); full precision on the CPU."""
    if device.type != "cuda" or amp == "off":
        return nullcontext()
    return torch.autocast("cuda", dtype=torch.float16 if amp == "fp16" else torch.bfloat16)


# The seeds of a run's random streams, all derived from training.seed. Their values are part of
# the results: changing one changes every run's losses and samples.
EPOCH_SEED_STRIDE = 1_000_003  # epoch e of seed s draws from s * stride + e (a prime > any epoch)
VALIDATION_SEED_OFFSET = 7919  # validation noise: seed + offset, the same every epoch
SAMPLES_SEED_OFFSET = 104729  # an epoch's grid and FID samples: seed + offset + epoch


def epoch_generator(seed: int, epoch: int, device: torch.device) -> torch.Generator:
    """The generator of an epoch's shuffling and noise."""
    return torch.Generator(device=device).manual_seed(seed * EPOCH_SEED_STRIDE + epoch)


@dataclass
class Prepared:
    """Everything a run trains with, built from its spec."""

    spec: RunSpec
    device: torch.device
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    deg: Degradation
    train_x: torch.Tensor  # (N, *data.IMAGE_SHAPE) model space, on the device
    val_x: torch.Tensor
    source: str


def training_data(spec: RunSpec) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(train_x, val_x, source) of a run: its subset of the training images, split by its seed,
    in model space."""
    d = spec.data
    ds = datasets.load_configured(d)
    seed = spec.training.seed
    images = ds.images
    if d.train_subset and d.train_subset < len(images):
        pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
        images = images[pick[: d.train_subset]]
    train_idx, val_idx = datasets.split_train_val(len(images), d.val_fraction, seed)
    x = datasets.to_model(images)
    return x[train_idx], x[val_idx], ds.source


def prepare(spec: RunSpec) -> Prepared:
    device = resolve_device(spec.training.device)
    torch.backends.cudnn.benchmark = device.type == "cuda"  # fixed 28x28 shapes: let cuDNN tune
    train_x, val_x, source = training_data(spec)
    torch.manual_seed(spec.training.seed)
    model = nets.build(spec.network).to(device)
    return Prepared(
        spec=spec, device=device, model=model,
        optimizer=torch.optim.Adam(model.parameters(), lr=spec.training.lr),
        deg=degradations.build(spec, device),
        train_x=train_x.to(device), val_x=val_x.to(device), source=source,
    )


class Diverged(RunError):
    """Training or sampling gave non-finite numbers (NaN or inf); ``str()`` says which and
    where, in one line. The run fails: going on would only report NaN as results."""


def check_finite(value: float, what: str, where: str) -> None:
    """A :class:`Diverged` when ``value`` (a loss) is NaN or infinite."""
    if not math.isfinite(value):
        raise Diverged(f"{what} is {value} at {where}: the run diverged (a lower training.lr "
                       "may help)")


def train_epoch(p: Prepared, epoch: int, should_stop: Callable[[], bool] = lambda: False,
                on_step: Callable[[int, int, torch.Tensor], bool | None] | None = None,
                scaler: torch.amp.GradScaler | None = None) -> float | None:
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
        x = p.train_x[perm[step * bs:(step + 1) * bs]]
        with autocast(p.device, tr.amp):
            loss = p.deg.loss(p.model, x, g)
        p.optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(p.optimizer)
            scaler.update()
        else:
            loss.backward()
            p.optimizer.step()
        total += loss.detach() * len(x)
        first_bad = torch.where(torch.isfinite(loss.detach()), first_bad,
                                first_bad.clamp(max=step + 1))
        if on_step is not None and on_step(step + 1, steps, loss):
            break  # a non-finite loss: the epoch's mean is not finite either
    mean = total.item() / n
    if not math.isfinite(mean):
        check_finite(mean, "the training loss", f"epoch {epoch}, step {int(first_bad.item())} "
                     f"of {steps}")
    return mean


@torch.no_grad()
def validation_loss(p: Prepared, batch: int = 1000) -> float:
    """Mean loss on the held-out split (and held-out latents) with noise fixed by the seed
    (comparable across epochs)."""
    g = torch.Generator(device=p.device).manual_seed(p.spec.training.seed + VALIDATION_SEED_OFFSET)
    p.model.eval()
    total = 0.0
    for start in range(0, len(p.val_x), batch):
        x = p.val_x[start:start + batch]
        with autocast(p.device, p.spec.training.amp):
            total += p.deg.loss(p.model, x, g, held_out=True).item() * len(x)
    p.model.train()
    return total / len(p.val_x)


def save_samples(run: Run, stem: str, images: torch.Tensor, folder: str = "samples",
                 n_grid: int | None = None) -> tuple[str, str]:
    """``<folder>/<stem>.png`` (a grid of the first ``n_grid``, default all) and
    ``<folder>/<stem>.npy`` (all of them, N x 28 x 28 float32 in [0, 1]), in the run folder;
    their paths relative to it."""
    from PIL import Image
    from torchvision.utils import make_grid

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


class Evaluator:
    """Draws the samples of an epoch: a grid when the epoch is a grid epoch, and FID, floor and
    the class histogram when it is an evaluation epoch (every ``every`` epochs and the last)."""

    def __init__(self, p: Prepared, run: Run, log: EventLog,
                 should_stop: Callable[[], bool] | None = None):
        self.p, self.run, self.log = p, run, log
        self.ev = p.spec.evaluation
        self._fid = None
        self.task = lambda name: TaskProgress(log, name, should_stop=should_stop)

    def fid(self):
        if self._fid is None:
            from engine.evaluation.fid import FID
            self._fid = FID(self.ev.backbone, self.p.spec.data, tasks=self.task)
        return self._fid

    def __call__(self, epoch: int, last: bool) -> None:
        ev, p = self.ev, self.p
        grid = epoch in ev.grid_epochs or last
        score = ev.every > 0 and (epoch % ev.every == 0 or last)
        if last:  # the final evaluation of an attempt that was stopped: do only what is left
            done = read_events(self.run.events_path)
            grid = grid and not any(isinstance(e, Samples) and e.epoch == epoch
                                    and (self.run.path / e.npy).is_file() for e in done)
            score = score and not any(isinstance(e, Eval) and e.epoch == epoch for e in done)
        if not (grid or score):
            return
        sampler = final_sampler(ev) if last else ev.sampler
        name = samplers.describe(sampler, ev.steps, p.deg.T)
        n = max(ev.n_grid if grid else 0, ev.n_eval if score else 0)
        t0 = time.time()
        g = torch.Generator(device=p.device).manual_seed(
            p.spec.training.seed + SAMPLES_SEED_OFFSET + epoch)
        with autocast(p.device, p.spec.training.amp):
            imgs = samplers.sample(p.model, p.deg, sampler, n, ev.steps, g, p.device,
                                   latent=ev.morph_latent,
                                   progress=self.task(f"{name} samples"))
        seconds = round(time.time() - t0, 3)
        if not torch.isfinite(imgs).all():
            raise Diverged(f"the {name} samples of epoch {epoch} are not finite (NaN or inf): "
                           "the model or its schedule gives no usable samples")
        if grid:
            png, npy = save_samples(self.run, f"epoch-{epoch:04d}", imgs[:ev.n_grid])
            self.log.emit(Samples(epoch=epoch, png=png, npy=npy, n=ev.n_grid, sampler=name,
                                  seconds=seconds))
        if score:
            from engine.evaluation.fid import entropy_bits
            t1 = time.time()
            fid = self.fid()
            # n_eval images whatever n_grid is: FID's bias depends on N, so every epoch's
            # number is comparable
            x = datasets.from_model(imgs[:ev.n_eval].float().cpu())[:, 0]
            hist = fid.class_histogram(x)
            self.log.emit(Eval(epoch=epoch, sampler=name, n=len(x), backbone=ev.backbone,
                               fid=fid.score(x), floor=fid.floor(len(x)), histogram=hist.tolist(),
                               entropy=entropy_bits(hist), sample_seconds=seconds,
                               score_seconds=round(time.time() - t1, 3)))


def final_sampler(evaluation) -> str:
    """The sampler of the last epoch's samples (``final_sampler``, where "same" means
    ``sampler``)."""
    final = evaluation.final_sampler
    return evaluation.sampler if final == "same" else final


def read_checkpoint(path: Path, device="cpu") -> dict:
    """A checkpoint file's contents (model and optimizer states, epoch); :class:`DamagedRun`
    naming the file when it cannot be read as one (cut short, empty, other bytes)."""
    try:
        ck = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # torch raises many kinds here (zip, pickle, EOF, runtime)
        raise DamagedRun(path, f"damaged (not a checkpoint torch can read: {one_line(e)[:120]})") \
            from None
    if not (isinstance(ck, dict) and isinstance(ck.get("model"), dict)
            and isinstance(ck.get("epoch"), int)):
        raise DamagedRun(path, "damaged (not a checkpoint of diffui: no model or epoch in it)")
    return ck


def _apply(path: Path, ck: dict, model: torch.nn.Module, optimizer=None) -> None:
    try:
        model.load_state_dict(ck["model"])
        if optimizer is not None:
            optimizer.load_state_dict(ck["optimizer"])
    except (KeyError, ValueError, RuntimeError) as e:
        raise DamagedRun(path, f"damaged (does not fit the run's network: {one_line(e)[:120]})") \
            from None


def load_model(run: Run, device: str = "cpu") -> tuple[torch.nn.Module, Degradation]:
    """The model of ``run``'s last checkpoint and its degradation, ready to sample
    (:class:`DamagedRun` when the checkpoint is damaged)."""
    spec = run.spec()
    model = nets.build(spec.network)
    _apply(run.checkpoint_path, read_checkpoint(run.checkpoint_path, device), model)
    return model.to(device).eval(), degradations.build(spec, device)


def resume(run: Run, p: Prepared) -> tuple[int, str]:
    """Load the run's checkpoint into ``p`` (model and optimizer): (its epoch, a note). A
    damaged ``checkpoint.pt`` falls back to the previous one (``checkpoint.prev.pt``), and the
    note says so; with no usable one left, :class:`DamagedRun` names the damaged file.
    (0, "") for a run with no checkpoint."""
    damaged: list[DamagedRun] = []
    for path in (run.checkpoint_path, run.previous_checkpoint_path):
        if not path.exists():
            continue
        try:
            ck = read_checkpoint(path, p.device)
            _apply(path, ck, p.model, p.optimizer)
        except DamagedRun as e:
            damaged.append(e)
            continue
        note = (f"{damaged[0].path.name} is {damaged[0].why}; resumed from {path.name} "
                f"(epoch {ck['epoch']})") if damaged else ""
        return ck["epoch"], note
    if len(damaged) > 1:
        raise DamagedRun(damaged[0].path, f"{damaged[0].why}; so is {damaged[1].path.name}: "
                                          "remove both to train the run from the start")
    if damaged:
        raise DamagedRun(damaged[0].path, f"{damaged[0].why}; no earlier checkpoint is kept: "
                                          "remove it to train the run from the start")
    return 0, ""


def save_checkpoint(run: Run, p: Prepared, epoch: int, keep_previous: bool = True) -> None:
    """``checkpoint.pt`` of ``epoch`` (atomically); the one it replaces is kept as
    ``checkpoint.prev.pt`` when ``keep_previous`` (not when it was found damaged)."""
    if keep_previous:
        keep_file(run.checkpoint_path, run.previous_checkpoint_path)
    atomic_save(lambda f: torch.save({"model": p.model.state_dict(),
                                      "optimizer": p.optimizer.state_dict(),
                                      "epoch": epoch}, f), run.checkpoint_path)


def run_training(run: Run, log: EventLog, should_stop: Callable[[], bool]) -> str:
    """Train ``run`` from its checkpoint (if any) to the end. Returns 'finished' or 'stopped'."""
    spec = run.spec()
    p = prepare(spec)
    tr = spec.training
    scaler = torch.amp.GradScaler("cuda") if p.device.type == "cuda" and tr.amp == "fp16" else None
    start_epoch, note = resume(run, p)
    log.emit(Start(epoch=start_epoch, epochs=tr.epochs, device=str(p.device),
                   data_source=p.source, train_size=len(p.train_x), val_size=len(p.val_x),
                   parameters=sum(x.numel() for x in p.model.parameters()),
                   resumed=start_epoch > 0, note=note))

    last_progress = [time.time()]
    evaluate = Evaluator(p, run, log, should_stop)

    for epoch in range(start_epoch + 1, tr.epochs + 1):
        t0 = time.time()

        def on_step(step: int, steps: int, loss: torch.Tensor, epoch=epoch) -> bool:
            now = time.time()
            if now - last_progress[0] >= tr.progress_every or step == steps:
                last_progress[0] = now
                value = loss.item()
                if not math.isfinite(value):
                    return True  # train_epoch says where it began
                log.emit(Progress(epoch=epoch, step=step, steps=steps, loss=value))
            return False

        train_loss = train_epoch(p, epoch, should_stop, on_step, scaler)
        if train_loss is None:
            return "stopped"
        seconds = time.time() - t0
        val_loss = validation_loss(p)
        check_finite(val_loss, "the validation loss", f"epoch {epoch}")
        log.emit(Epoch(epoch=epoch, epochs=tr.epochs, train_loss=train_loss,
                       val_loss=val_loss, seconds=round(seconds, 3),
                       images_per_s=round(len(p.train_x) / max(seconds, 1e-9), 1)))
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
