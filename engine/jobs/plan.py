"""How long the runs and studies of an experiments file will take, before they run.

A short calibration times the run's network on a device (a few training steps at the run's
batch size and precision, a few network evaluations at the sampling batch) and is cached per
host, device and network; the estimate counts what the run does with those two costs: every
training and validation image of every epoch, and every network evaluation of its grids, FIDs,
final samples and figures (:func:`run_seconds`); a study, its samples per value
(:func:`study_seconds`). :func:`schedule` places the jobs on the slots of their hosts (a study
after its run) for the total and the critical path.
"""

from __future__ import annotations

import json
import math
import time
from contextlib import suppress
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from engine.data.datasets import IMAGE_SHAPE
from engine.diffusion import nets
from engine.diffusion.samplers import ddim_timesteps
from engine.evaluation.fid import cache_dir
from engine.files import atomic_write_text
from engine.jobs.figures import DIFFUSION_IMAGES
from engine.jobs.setup import autocast, precision, resolve_device
from engine.spec.specs import RunSpec, StudySpec

SAMPLE_BATCH = 500  # samplers.sample's batch
CALIBRATION_STEPS = 3  # timed training steps (after one untimed) and timed evaluations
OVERHEAD_S = 10.0  # a worker's start: importing torch, loading the data, writing the files


@dataclass(frozen=True)
class Calibration:
    """Seconds per image of one training step and of one network evaluation (sampling)."""

    train_s: float
    eval_s: float


def calibration_key(host: str, device: str, spec: RunSpec) -> str:
    """What a calibration depends on: the host, its device, the network, batch and precision."""
    net = json.dumps(spec.network.to_dict(), sort_keys=True)
    return f"{host}|{device}|{net}|{spec.training.batch_size}|{spec.training.amp}"


def _timed(fn, device: torch.device, repeats: int) -> float:
    fn()  # warm-up (allocations, oneDNN's choice of kernels)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - t0) / repeats


def calibrate(spec: RunSpec, device: torch.device, steps: int = CALIBRATION_STEPS) -> Calibration:
    """Time the run's network on ``device``: training steps of its batch under its precision
    (on random images: the cost does not depend on them) and network evaluations of a
    sampling batch (the run's batch on the CPU, where larger ones cost the same per image)."""
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

    m = SAMPLE_BATCH if device.type == "cuda" else bs
    xs, ts = torch.randn((m, *IMAGE_SHAPE), device=device), torch.rand(m, device=device)

    def evaluate():
        with torch.inference_mode(), autocast(device, spec.training.amp):
            model(xs, ts)

    train = _timed(train_step, device, steps) / bs
    return Calibration(train_s=train, eval_s=_timed(evaluate, device, steps) / m)


class CalibrationCache:
    """Calibrations by :func:`calibration_key`, in ``calibration.json`` of diffui's cache folder
    (a damaged file reads as empty and is rewritten)."""

    def __init__(self, path: Path | None = None):
        self.path = path or cache_dir() / "calibration.json"
        self.entries: dict[str, dict] = {}
        with suppress(OSError, ValueError):
            loaded = json.loads(self.path.read_text())
            if isinstance(loaded, dict):
                self.entries = loaded

    def get(self, key: str) -> Calibration | None:
        with suppress(TypeError, KeyError):
            return Calibration(**self.entries[key])
        return None

    def put(self, key: str, cal: Calibration) -> None:
        self.entries[key] = asdict(cal)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, json.dumps(self.entries, indent=1, sort_keys=True))

    def local(self, spec: RunSpec, host: str = "local") -> Calibration:
        """This machine's calibration of ``spec`` (measured now when not cached)."""
        device = resolve_device(spec.training.device)
        precision(device, spec.training.amp)  # one line where the device cannot do it
        key = calibration_key(host, str(device), spec)
        cal = self.get(key)
        if cal is None:
            cal = calibrate(spec, device)
            self.put(key, cal)
        return cal


def evaluations(sampler: str, steps: int, T: int) -> int:
    """Network evaluations per image of a sampler."""
    if sampler == "ddpm":
        return T
    if sampler == "direct":
        return 1
    return len(ddim_timesteps(T, min(steps, T))) - 1


def image_counts(spec: RunSpec) -> tuple[int, int]:
    """(training, validation) images of a run, from its keys (the data source may hold fewer
    than ``train_subset``: the MNIST training set has 60,000)."""
    total = spec.data.train_subset or 60_000
    val = max(1, round(total * spec.data.val_fraction))
    return total - val, val


def run_evaluations(spec: RunSpec) -> int:
    """Image-evaluations of the network a run spends sampling: grids and FIDs during training,
    the final samples, and the report's diffusion strip."""
    ev, T, epochs = spec.evaluation, spec.schedule.T, spec.training.epochs
    final = ev.sampler if ev.final_sampler == "same" else ev.final_sampler
    total = 0
    for epoch in range(1, epochs + 1):
        last = epoch == epochs
        grid = epoch in ev.grid_epochs or last
        score = ev.every > 0 and (epoch % ev.every == 0 or last)
        n = max(ev.n_grid if grid else 0, ev.n_eval if score else 0)
        total += n * evaluations(final if last else ev.sampler, ev.steps, T)
    if spec.degradation == "gaussian":
        total += DIFFUSION_IMAGES * T
    return total


def run_seconds(spec: RunSpec, cal: Calibration) -> float:
    """The estimated wall time of a run from its calibration."""
    n_train, n_val = image_counts(spec)
    epochs = spec.training.epochs
    steps = epochs * n_train * cal.train_s + epochs * n_val * cal.eval_s
    return OVERHEAD_S + steps + run_evaluations(spec) * cal.eval_s


def study_seconds(study: StudySpec, run: RunSpec, cal: Calibration) -> float:
    """The estimated wall time of a study: ``n`` samples per value with its sampler."""
    ev = run.evaluation
    sampler = study.keys.sampler or (ev.sampler if ev.final_sampler == "same" else ev.final_sampler)
    k = evaluations(sampler, study.keys.steps or ev.steps, run.schedule.T)
    return OVERHEAD_S + len(study.values) * study.keys.n * k * cal.eval_s


@dataclass
class Planned:
    """One job of the plan: its name, host, estimated seconds (None: not calibrated), the job
    it waits for, and its start and end on the host's slots once :func:`schedule` placed it."""

    name: str
    host: str
    seconds: float | None
    after: str = ""
    start: float = 0.0
    end: float = 0.0


def schedule(jobs: list[Planned], slots: dict[str, int]) -> float:
    """Place ``jobs`` in their order on their hosts' slots (each on the slot free first, not
    before the job it waits for ends); returns the end of the last one: the critical path.
    A job without an estimate takes no time."""
    free = {host: [0.0] * max(1, n) for host, n in slots.items()}
    ends: dict[str, float] = {}
    for job in jobs:
        lanes = free.setdefault(job.host, [0.0])
        i = min(range(len(lanes)), key=lanes.__getitem__)
        job.start = max(lanes[i], ends.get(job.after, 0.0))
        job.end = job.start + (job.seconds or 0.0)
        lanes[i] = ends[job.name] = job.end
    return max((j.end for j in jobs), default=0.0)


def host_slots(hosts: dict, local_jobs: int) -> dict[str, int]:
    """Jobs at once on each host: ``local_jobs`` here, an SSH host's GPUs (or ``slots``), a
    Slurm cluster's ``max_jobs``."""
    slots = {"local": local_jobs}
    for name, h in hosts.items():
        slots[name] = h.max_jobs if h.kind == "slurm" else (len(h.gpus) or h.slots)
    return slots


def estimates(spec: RunSpec, cache: CalibrationCache) -> dict[str, Calibration | None]:
    """The calibration of ``spec`` on each of its hosts: measured here for ``local``, cached
    (from an earlier calibration on that host) or None for the others."""
    out: dict[str, Calibration | None] = {}
    for host in spec.host:
        if host == "local":
            out[host] = cache.local(spec)
        else:
            keys = (calibration_key(host, dev, spec) for dev in ("cuda", "cuda:0", "cpu"))
            out[host] = next((c for c in map(cache.get, keys) if c is not None), None)
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
        cals = estimates(r, cache)
        per_host[r.name] = {h: None if c is None else run_seconds(r, c) for h, c in cals.items()}
        jobs.append(Planned(r.name, r.host[0], per_host[r.name][r.host[0]]))
    for st in studies:
        run = by_name.get(st.run)
        if run is None:  # its run is not in this file's selection: nothing to calibrate
            per_host[st.name] = {h: None for h in st.host}
        else:
            cals = {h: estimates(run, cache).get(h) for h in st.host}
            if "local" in st.host and cals["local"] is None:
                cals["local"] = cache.local(run)
            per_host[st.name] = {
                h: None if c is None else study_seconds(st, run, c) for h, c in cals.items()
            }
        jobs.append(Planned(st.name, st.host[0], per_host[st.name][st.host[0]], after=st.run))
    return jobs, per_host, schedule(jobs, slots)


def fmt_seconds(s: float | None) -> str:
    """ "1 h 05 min", "12 min", "45 s"; "not calibrated" for None."""
    if s is None or not math.isfinite(s):
        return "not calibrated"
    if s < 60:
        return f"{s:.0f} s"
    minutes = round(s / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"
