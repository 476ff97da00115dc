"""Run folders with fixed numbers for the UI's snapshot tests: a finished run's files written as
a worker writes them, with set losses, FIDs and times (real runs differ in their timings)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
from PIL import Image

from engine.data import datasets as data
from engine.files import atomic_write_json
from engine.rundir.run import Run
from engine.spec.experiments import parse_experiments

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
        g[2 + r * 30 : 30 + r * 30, 2 + c * 30 : 30 + c * 30] = d
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(g, mode="L").save(path)


def make_runs(runs_dir: Path) -> list[Run]:
    """Two finished runs of STUDY with fixed curves, two evaluations and three grids each."""
    digits = data.load("mnist", "test").images.numpy()
    runs = []
    for k, spec in enumerate(parse_experiments(STUDY, Path("study.toml")).runs):
        run = Run.create(runs_dir / spec.name, spec)
        t, events = T0 + 3600 * k, []

        def emit(type, **fields):  # called in this iteration only, at the time t has reached
            events.append({"type": type, "time": t, **fields})  # noqa: B023

        emit("start", epoch=0, epochs=4, device="cpu", resumed=False)
        for epoch in range(1, 5):
            t += 30.0
            emit(
                "epoch",
                epoch=epoch,
                epochs=4,
                train_loss=0.5 / epoch + 0.01 * k,
                val_loss=0.45 / epoch + 0.02 * k,
                seconds=30.0,
            )
            sampler = "DDPM-40" if epoch == 4 else "DDIM-4"
            if epoch in (1, 2, 4):
                stem = f"samples/epoch-{epoch:04d}"
                grid_png(run.path / f"{stem}.png", digits[4 * epoch + k : 4 * epoch + k + 4])
                emit(
                    "samples",
                    epoch=epoch,
                    png=f"{stem}.png",
                    npy=f"{stem}.npy",
                    n=4,
                    sampler=sampler,
                    seconds=1.0,
                )
            if epoch % 2 == 0:
                emit(
                    "eval",
                    epoch=epoch,
                    sampler=sampler,
                    n=200,
                    backbone="lenet",
                    fid=300.0 / epoch + 10 * k,
                    floor=12.5,
                    histogram=[20] * 10,
                    entropy=3.32 - k / 10,
                )
        t += 1.0
        emit("end", status="finished")
        run.events_path.write_text("".join(json.dumps(e) + "\n" for e in events))
        atomic_write_json(run.worker_path, {"pid": 1, "host": socket.gethostname(), "started": T0})
        atomic_write_json(
            run.exit_path, {"status": "finished", "error": "", "started": T0, "time": t}
        )
        runs.append(run)
    return runs


STUDIES = """
[[studies]]
name = "linear-noise"
run = "ddpm-linear"
kind = "noise"
values = [0, 0.1, 0.5]
n = 200
n_grid = 4
"""
STUDY_NAME = "studies/linear-noise"


def study_values(k: int) -> dict:
    """The fixed numbers of value k of the study (its FID, diversity and novelty)."""
    return dict(
        fid=200.0 + 100 * k,
        floor=12.5,
        histogram=[20] * 10,
        entropy=3.3 - 0.5 * k,
        distinct_share=1 - 0.25 * k,
        pairwise_distance=20.0 - 4 * k,
        nearest_train_distance=0.2 + 0.05 * k,
        near_copy_share=0.05 * k,
    )


def make_study(runs_dir: Path, upto: int = 3, host: str | None = None) -> Run:
    """The folder of STUDIES' study of ``ddpm-linear`` (make_runs), as its worker writes it,
    with its first ``upto`` values done: finished when all are, else running on ``host`` (a
    remote worker, alive while its heartbeat is fresh)."""
    from engine.jobs.study import value_stem, write_results
    from engine.rundir.run import study_run

    spec = parse_experiments(STUDY + STUDIES, Path("study.toml")).studies[0]
    study = study_run(runs_dir, spec.name)
    Run.create(study.path, spec)
    digits = data.load("mnist", "test").images.numpy()
    t = T0 + 7200
    events = [{"type": "start", "time": t, "epoch": 0, "epochs": len(spec.values), "device": "cpu"}]
    for k, value in enumerate(spec.values[:upto]):
        t += 20.0
        stem = value_stem(value)
        grid_png(study.path / f"{stem}.png", digits[40 + 4 * k : 44 + 4 * k])
        np.save(
            study.path / f"{stem}.npy", digits[40 + 4 * k : 44 + 4 * k].astype(np.float32) / 255
        )
        events.append(
            {
                "type": "value",
                "time": t,
                "value": value,
                "n": 200,
                "sampler": "DDPM-40",
                "png": f"{stem}.png",
                "npy": f"{stem}.npy",
                "seconds": 20.0,
                **study_values(k),
            }
        )
    done = upto >= len(spec.values)
    if done:
        events.append({"type": "end", "time": t + 1.0, "status": "finished"})
    study.events_path.write_text("".join(json.dumps(e) + "\n" for e in events))
    atomic_write_json(
        study.worker_path, {"pid": 1, "host": host or socket.gethostname(), "started": T0}
    )
    if done:
        atomic_write_json(
            study.exit_path, {"status": "finished", "error": "", "started": T0, "time": t + 1.0}
        )
    else:
        study.beat()
    write_results(study)
    return study
