"""The sampling-study job: a worker runs it for a study folder (``RUNS/studies/NAME``).

For each value of the study (λ for ``noise``, N for ``interpolation``, mixture components for
``gmm``) it draws the study's latents (:mod:`engine.diffusion.latents`), samples ``n`` images from them
with the run's final model and sampler, measures them (FID and its floor, class histogram and
entropy, diversity, novelty), and writes ``value-<v>.npy``, ``value-<v>.png`` and a ``value``
event. ``results.csv`` is rewritten from those events after each value. A stopped or killed
study resumes at the first value it has not finished; values run in the file's order.
"""
from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import Callable

from engine.data import datasets
from engine.rundir.events import EventLog, Start, Value
from engine.jobs.tasks import TaskProgress
from engine.rundir.progress import study_values
from engine.rundir.run import Run, can_sample, source_run, source_state
from engine.rundir.files import atomic_write_text

RESULTS = "results.csv"
RESULT_COLUMNS = ("value", "n", "sampler", "fid", "floor", "entropy_bits", "distinct_share",
                  "pairwise_distance", "nearest_train_distance", "near_copy_share", "histogram")


def value_stem(value: float) -> str:
    """``value-0.01``, ``value-5``: the files of one value."""
    return f"value-{value:g}"


def write_results(study: Run) -> Path:
    """``results.csv``: one row per finished value, in the study's order."""
    done = study_values(study.events(), study.path)
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(RESULT_COLUMNS)
    for v in study.spec().values:
        e = done.get(v)
        if e is not None:
            w.writerow([f"{v:g}", e.n, e.sampler, f"{e.fid:.4f}", f"{e.floor:.4f}",
                        f"{e.entropy:.4f}", f"{e.distinct_share:.4f}", f"{e.pairwise_distance:.4f}",
                        f"{e.nearest_train_distance:.4f}", f"{e.near_copy_share:.4f}",
                        " ".join(str(int(c)) for c in e.histogram)])
    path = study.path / RESULTS
    atomic_write_text(path, out.getvalue())
    return path


def run_study(study: Run, log: EventLog, should_stop: Callable[[], bool]) -> str:
    """Run the study's values that are not finished; 'finished' or 'stopped'."""
    from engine.diffusion import samplers
    from engine.diffusion import latents as studies
    from engine.evaluation.measures import sample_stats
    from engine.evaluation.fid import FID, entropy_bits
    from engine.jobs.training import final_sampler, load_model, resolve_device, save_samples, training_data

    spec = study.study_spec()
    runs_dir = study.path.parent.parent  # RUNS/studies/NAME
    state = source_state(runs_dir, spec, missing="missing")
    if not can_sample(state):
        raise RuntimeError(f"run {spec.run} is {state}: a study samples from a finished run")
    source = source_run(runs_dir, spec)
    run_spec = source.spec()
    device = resolve_device(run_spec.training.device)
    model, deg = load_model(source, device)
    ev, keys = run_spec.evaluation, spec.keys
    sampler = keys.sampler or final_sampler(ev)
    steps = keys.steps or ev.steps
    name = samplers.describe(sampler, steps, deg.T)
    done = study_values(study.events(), study.path)
    log.emit(Start(epoch=len(done), epochs=len(spec.values), device=str(device),
                   resumed=bool(done)))
    task = lambda name: TaskProgress(log, name, should_stop=should_stop)  # noqa: E731
    fid = FID("lenet", run_spec.data, tasks=task)
    train = training_data(run_spec)[0]  # the digits the run trained on (model space)
    for value in spec.values:
        if value in done:
            continue
        if should_stop():
            return "stopped"
        t0 = time.time()
        imgs = studies.study_samples(model, deg, sampler, spec.kind, value, keys.n, steps,
                                     keys.seed, latent_mode=ev.morph_latent,
                                     covariance=keys.covariance, pca=keys.pca,
                                     progress=task(f"{name} samples, {value:g}"))
        png, npy = save_samples(study, value_stem(value), imgs, folder=".", n_grid=keys.n_grid)
        x = datasets.from_model(imgs.float().cpu())[:, 0]
        hist = fid.class_histogram(x)
        stats = sample_stats(x, datasets.from_model(train.cpu())[:, 0], fid.clf.features)
        log.emit(Value(value=value, n=len(x), sampler=name, png=png, npy=npy, fid=fid.score(x),
                       floor=fid.floor(len(x)), histogram=hist.tolist(),
                       entropy=entropy_bits(hist), distinct_share=stats.distinct_share,
                       pairwise_distance=stats.mean_pairwise_feature_distance,
                       nearest_train_distance=stats.mean_nearest_train_distance,
                       near_copy_share=stats.near_copy_share,
                       seconds=round(time.time() - t0, 3)))
        write_results(study)
    write_results(study)
    from engine.report.report import save_figure, study_figure
    save_figure(study_figure(study), study.path / "study.png")
    return "finished"

