"""The sampling-study job: a worker runs it for a study folder (``RUNS/studies/NAME``).

For each value of the study (λ for ``noise``, N for ``interpolation``, mixture components for
``gmm``) it draws the study's latents (:mod:`engine.diffusion.latents`), samples ``n`` images from them
with the run's final model and sampler, measures them (FID with its interval, KID, its floor, class histogram and
entropy, diversity, novelty), and writes ``value-<v>.npy``, ``value-<v>.png`` and a ``value``
event. ``results.csv`` is rewritten from those events after each value. A stopped or killed
study resumes at the first value it has not finished; values run in the file's order.
"""

from __future__ import annotations

import csv
import io
import socket
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch

from engine.data import datasets
from engine.diffusion import latents, samplers
from engine.evaluation.fid import FID, score_samples
from engine.evaluation.measures import sample_stats
from engine.files import atomic_write_text
from engine.jobs.checkpoints import load_model
from engine.jobs.evaluation import final_sampler, save_samples
from engine.jobs.setup import device_name, resolve_device, run_spec, training_data
from engine.jobs.tasks import TaskProgress
from engine.report.figures import study_figure
from engine.rundir.events import EventLog, Start, Value
from engine.rundir.progress import study_values
from engine.rundir.run import Run, can_sample, source_run, source_state
from engine.style import save_figure

RESULTS = "results.csv"
RESULT_COLUMNS = (
    "value",
    "n",
    "sampler",
    "fid",
    "fid_low",
    "fid_high",
    "kid",
    "kid_std",
    "recognised",
    "floor",
    "entropy_bits",
    "distinct_share",
    "pairwise_distance",
    "nearest_train_distance",
    "near_copy_share",
    "histogram",
)


def value_stem(value: float) -> str:
    """``value-0.01``, ``value-5``: the files of one value."""
    return f"value-{value:g}"


def write_results(study: Run) -> Path:
    """``results.csv``: one row per finished value, in the study's order."""
    done = study_values(study.events(), study.path)
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(RESULT_COLUMNS)
    for v in study.study_spec().values:
        e = done.get(v)
        if e is not None:
            w.writerow(
                [
                    f"{v:g}",
                    e.n,
                    e.sampler,
                    f"{e.fid:.4f}",
                    *(
                        "" if x is None else f"{x:.4f}"  # none in older studies' events
                        for x in (e.fid_low, e.fid_high, e.kid, e.kid_std, e.recognised)
                    ),
                    f"{e.floor:.4f}",
                    f"{e.entropy:.4f}",
                    f"{e.distinct_share:.4f}",
                    f"{e.pairwise_distance:.4f}",
                    f"{e.nearest_train_distance:.4f}",
                    f"{e.near_copy_share:.4f}",
                    " ".join(str(int(c)) for c in e.histogram),
                ]
            )
    path = study.path / RESULTS
    atomic_write_text(path, out.getvalue())
    return path


def run_study(study: Run, log: EventLog, should_stop: Callable[[], bool]) -> str:
    """Run the study's values that are not finished; 'finished' or 'stopped'."""
    spec = study.study_spec()
    runs_dir = study.path.parent.parent  # RUNS/studies/NAME
    state = source_state(runs_dir, spec, missing="missing")
    if not can_sample(state):
        raise RuntimeError(f"run {spec.run} is {state}: a study samples from a finished run")
    source = source_run(runs_dir, spec)
    source_spec = run_spec(source)
    device = resolve_device(source_spec.training.device)
    model, deg = load_model(source, device)
    ev, keys = source_spec.evaluation, spec.keys
    sampler = keys.sampler or final_sampler(ev)
    steps = keys.steps or ev.steps
    name = samplers.describe(sampler, steps, deg.T)
    done = study_values(study.events(), study.path)
    log.emit(
        Start(
            epoch=len(done),
            epochs=len(spec.values),
            device=str(device),
            device_name=device_name(device),
            host=socket.gethostname(),
            resumed=bool(done),
        )
    )
    task = lambda name: TaskProgress(log, name, should_stop=should_stop)  # noqa: E731
    fid = FID("lenet", source_spec.data, tasks=task)
    train = training_data(source_spec)[0]  # the digits the run trained on (model space)
    train_display = datasets.from_model(train.cpu())[:, 0]
    for value in spec.values:
        if value in done:
            continue
        if should_stop():
            return "stopped"
        t0 = time.time()
        imgs = latents.study_samples(
            model,
            deg,
            sampler,
            spec.kind,
            value,
            keys.n,
            steps,
            keys.seed,
            latent_mode=ev.morph_latent,
            covariance=keys.covariance,
            pca=keys.pca,
            progress=task(f"{name} samples, {value:g}"),
        )
        png, npy = save_samples(study, value_stem(value), imgs, folder=".", n_grid=keys.n_grid)
        log.emit(_value_event(value, name, png, npy, imgs, fid, train_display, time.time() - t0))
        write_results(study)
    write_results(study)
    save_figure(study_figure(study), study.path / "study.png")
    return "finished"


def _value_event(
    value: float,
    sampler: str,
    png: str,
    npy: str,
    imgs: torch.Tensor,
    fid: FID,
    train_display: torch.Tensor,
    seconds: float,
) -> Value:
    """What one value of a study measured: FID and its floor, classes, diversity, novelty."""
    x = datasets.from_model(imgs.float().cpu())[:, 0]
    scores = score_samples(fid, x)
    stats = sample_stats(x, train_display, fid.clf.features)
    return Value(
        value=value,
        sampler=sampler,
        png=png,
        npy=npy,
        **asdict(scores),
        distinct_share=stats.distinct_share,
        pairwise_distance=stats.mean_pairwise_feature_distance,
        nearest_train_distance=stats.mean_nearest_train_distance,
        near_copy_share=stats.near_copy_share,
        seconds=round(seconds, 3),
    )
