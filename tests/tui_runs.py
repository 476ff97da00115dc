"""Run folders with fixed numbers for the UI's snapshot tests: a finished run's files written as
a worker writes them, with set losses, FIDs and times (real runs differ in their timings)."""
from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
from PIL import Image

from engine import data
from engine.config import parse_study
from engine.runs import Run, atomic_write_json

STUDY = """
[defaults.data]
train_subset = 512
[defaults.schedule]
T = 40
[defaults.training]
epochs = 4
[defaults.evaluation]
grid_epochs = [1, 2, 3]
n_grid = 4
every = 2
steps = 4
[[experiments]]
name = "ddpm-linear"
schedule = {kind = "linear"}
[[experiments]]
name = "ddpm-cosine"
schedule = {kind = "cosine"}
"""
T0 = 1_767_225_600.0  # 2026-01-01 00:00 UTC


def grid_png(path: Path, digits: np.ndarray) -> None:
    """A 2 x 2 grid of 28 x 28 digits with 2-pixel white padding (the workers' layout)."""
    g = np.full((62, 62), 255, np.uint8)
    for i, d in enumerate(digits[:4]):
        r, c = divmod(i, 2)
        g[2 + r * 30:30 + r * 30, 2 + c * 30:30 + c * 30] = d
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(g, mode="L").save(path)


def make_runs(runs_dir: Path) -> list[Run]:
    """Two finished runs of STUDY with fixed curves, two evaluations and three grids each."""
    digits = data.load("mnist", "test").images.numpy()
    runs = []
    for k, spec in enumerate(parse_study(STUDY, Path("study.toml")).runs):
        run = Run.create(runs_dir / spec.name, spec)
        t, events = T0 + 3600 * k, []

        def emit(type, **fields):
            events.append({"type": type, "time": t, **fields})
        emit("start", epoch=0, epochs=4, device="cpu", resumed=False)
        for epoch in range(1, 5):
            t += 30.0
            emit("epoch", epoch=epoch, epochs=4, train_loss=0.5 / epoch + 0.01 * k,
                 val_loss=0.45 / epoch + 0.02 * k, seconds=30.0)
            sampler = "DDPM-40" if epoch == 4 else "DDIM-4"
            if epoch in (1, 2, 4):
                stem = f"samples/epoch-{epoch:04d}"
                grid_png(run.path / f"{stem}.png", digits[4 * epoch + k:4 * epoch + k + 4])
                emit("samples", epoch=epoch, png=f"{stem}.png", npy=f"{stem}.npy", n=4,
                     sampler=sampler, seconds=1.0)
            if epoch % 2 == 0:
                emit("eval", epoch=epoch, sampler=sampler, n=200, backbone="lenet",
                     fid=300.0 / epoch + 10 * k, floor=12.5, histogram=[20] * 10, entropy=3.32 - k / 10)
        t += 1.0
        emit("end", status="finished")
        run.events_path.write_text("".join(json.dumps(e) + "\n" for e in events))
        atomic_write_json(run.worker_path, {"pid": 1, "host": socket.gethostname(), "started": T0})
        atomic_write_json(run.exit_path, {"status": "finished", "error": "", "started": T0, "time": t})
        runs.append(run)
    return runs
