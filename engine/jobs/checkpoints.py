"""A run's checkpoints: ``checkpoint.pt`` (model and optimizer states, epoch), written
atomically after every epoch, with the one it replaces kept as ``checkpoint.prev.pt``.

Training resumes from them (falling back to the previous one when the last is damaged); the
sampling study and the benchmarks load the trained model from the last one.
"""

from __future__ import annotations

from pathlib import Path

import torch

from engine.diffusion import degradations, nets
from engine.diffusion.degradations import Degradation
from engine.files import atomic_save, keep_file
from engine.jobs.setup import Prepared, run_spec
from engine.rundir.run import DamagedRun, Run
from engine.text import one_line


def read_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict:
    """A checkpoint file's contents (model and optimizer states, epoch); :class:`DamagedRun`
    naming the file when it cannot be read as one (cut short, empty, other bytes)."""
    try:
        ck = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # torch raises many kinds here (zip, pickle, EOF, runtime)
        raise DamagedRun(
            path, f"damaged (not a checkpoint torch can read: {one_line(e)[:120]})"
        ) from None
    if not (
        isinstance(ck, dict)
        and isinstance(ck.get("model"), dict)
        and isinstance(ck.get("epoch"), int)
    ):
        raise DamagedRun(path, "damaged (not a checkpoint of diffui: no model or epoch in it)")
    return ck


def _apply(
    path: Path, ck: dict, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None
) -> None:
    try:
        model.load_state_dict(ck["model"])
        if optimizer is not None:
            optimizer.load_state_dict(ck["optimizer"])
    except (KeyError, ValueError, RuntimeError) as e:
        raise DamagedRun(
            path, f"damaged (does not fit the run's network: {one_line(e)[:120]})"
        ) from None


def load_model(run: Run, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, Degradation]:
    """The model of ``run``'s last checkpoint and its degradation, ready to sample
    (:class:`DamagedRun` when the checkpoint is damaged)."""
    spec = run_spec(run)
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
        note = (
            (
                f"{damaged[0].path.name} is {damaged[0].why}; resumed from {path.name} "
                f"(epoch {ck['epoch']})"
            )
            if damaged
            else ""
        )
        return ck["epoch"], note
    if len(damaged) > 1:
        raise DamagedRun(
            damaged[0].path,
            f"{damaged[0].why}; so is {damaged[1].path.name}: "
            "remove both to train the run from the start",
        )
    if damaged:
        raise DamagedRun(
            damaged[0].path,
            f"{damaged[0].why}; no earlier checkpoint is kept: "
            "remove it to train the run from the start",
        )
    return 0, ""


def save_checkpoint(run: Run, p: Prepared, epoch: int, keep_previous: bool = True) -> None:
    """``checkpoint.pt`` of ``epoch`` (atomically); the one it replaces is kept as
    ``checkpoint.prev.pt`` when ``keep_previous`` (not when it was found damaged)."""
    if keep_previous:
        keep_file(run.checkpoint_path, run.previous_checkpoint_path)
    atomic_save(
        lambda f: torch.save(
            {"model": p.model.state_dict(), "optimizer": p.optimizer.state_dict(), "epoch": epoch},
            f,
        ),
        run.checkpoint_path,
    )
