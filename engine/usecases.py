"""What the front ends do to a runs folder, each written once: queue runs, queue a study, resume,
retry, cancel, start the queue, and the queue's status. The UI (:mod:`tui.app`), batch mode
(:mod:`cli.batch`, ``diffui --batch``) and ``diffui queue``/``diffui study`` call these and keep
only presentation: how they ask, and how they word and draw the answer.

The rules themselves live with what they are about: a study needs a finished run
(:func:`engine.rundir.run.can_sample`), a run's status in words
(:func:`engine.rundir.progress.status_text`), a study's finished values
(:func:`engine.rundir.progress.study_values`); the queue's own rules (what can be queued,
cancelled, moved) are :class:`engine.queue.client.Queue`'s.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import UserError
from engine.queue import service
from engine.queue.client import Queue, QueueError
from engine.queue.expected import Expected, expected_times
from engine.rundir.progress import status_text
from engine.rundir.run import can_sample, check_runs, source_run, source_state
from engine.spec.checks import ConfigError
from engine.spec.components import DEGRADATIONS
from engine.spec.costs import CalibrationCache
from engine.spec.experiments import Experiments
from engine.spec.specs import RunSpec, StudySpec
from engine.text import fmt, format_seconds


@dataclass
class Queued:
    """What :func:`queue_runs` did: the names it queued, and one line for each run it left out
    (finished, queued already, damaged)."""

    names: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


class StudyWaits(UserError):
    """A study whose run has not finished: a study samples from a finished run. ``state`` is
    that run's state (``not made yet`` when it has no folder)."""

    def __init__(self, spec: StudySpec, state: str, detail: str = ""):
        super().__init__(
            f"study {spec.name} samples from run {spec.run}, which is damaged ({detail}): "
            "mend or remove that file of the run, then finish the run"
            if state == "damaged"
            else f"study {spec.name} samples from run {spec.run}, which is {state}: finish it first"
        )
        self.spec, self.state = spec, state


# --- the queue -----------------------------------------------------------------------------------


def open_queue(runs_dir: Path) -> Queue:
    """The queue of ``runs_dir``; a :class:`UserError` when its queue.json is damaged."""
    queue = Queue.open(runs_dir)
    if queue.error:
        raise UserError(queue.error)
    return queue


def queue_runs(queue: Queue, specs: list, hosts: dict) -> Queued:
    """Make the run folders of ``specs`` (RunSpecs, and StudySpecs: queue a study) placed where
    their ``host`` says (``hosts``: the experiments file's tables), and queue them at the end.
    A run that cannot be queued is left out with its reason. Nothing is made when one cannot
    be: a :class:`UserError` when a folder holds other settings, :class:`StudyWaits` when the
    run a study samples from has not finished. The queue stays paused or started as it was."""
    for spec in specs:
        if isinstance(spec, StudySpec):
            check_study(queue.runs_dir, spec)
    check_inputs(specs)
    runs = queue.prepare(specs, hosts)
    done = Queued()
    for run in runs:
        try:
            queue.enqueue(run.name)
            done.names.append(run.name)
        except QueueError as e:
            done.skipped.append(str(e))
    return done


def runs_to_train(specs: list[RunSpec], runs_dir: Path) -> list[RunSpec]:
    """The runs of ``specs`` not finished yet in ``runs_dir`` (the ones batch mode prepares the
    evaluation for); a :class:`UserError` when a run's inputs cannot be loaded
    (:func:`check_inputs`) or a folder holds other settings. Makes nothing."""
    check_inputs(specs)
    return [
        s
        for s, r in zip(specs, check_runs(specs, runs_dir))
        if not (r.exists() and r.status().state == "finished")
    ]


def check_inputs(specs: list) -> None:
    """A :class:`ConfigError` when a run of ``specs`` cannot load the inputs its degradation
    needs (its registry entry's ``check_inputs``: FashionMNIST for morph), before any folder is
    made (its worker would fail on it)."""
    from engine.data import datasets as data  # (imports torch: only when runs are queued)

    for spec in specs:
        check = (
            DEGRADATIONS.get(spec.degradation).check_inputs if isinstance(spec, RunSpec) else None
        )
        if check is None:
            continue
        try:
            check(spec)
        except data.DataUnavailable as e:
            raise ConfigError(
                f"{spec.experiment}: degradation = {spec.degradation!r}: {e.one_line()}"
            ) from None


def start_queue(queue: Queue, wait: float = 10.0) -> int | None:
    """Start the queue; when runs are queued, wait (up to ``wait`` seconds) for its service and
    return its pid (None when none was needed or it did not show in time)."""
    queue.set_paused(False)
    if not queue.queued():
        return None
    deadline = time.time() + wait
    while time.time() < deadline:
        pid = service.running_pid(queue.runs_dir)
        if pid:
            return pid
        time.sleep(0.05)
    return None


def service_pid(queue: Queue) -> int | None:
    """The pid of the queue service of ``queue``'s runs folder (None when none runs)."""
    return service.running_pid(queue.runs_dir)


# --- one run -------------------------------------------------------------------------------------


def cancel(queue: Queue, name: str) -> str:
    """Take a queued run off the queue, or stop a running one; what was done, in words."""
    return queue.cancel(name)


def resume(queue: Queue, name: str) -> None:
    """Queue a stopped (resumable) run again; it goes on from its checkpoint."""
    _requeue(queue, name, "resumed", "resumable")


def retry(queue: Queue, name: str) -> None:
    """Queue a failed run again (from its checkpoint when it has one)."""
    _requeue(queue, name, "retried", "failed")


def _requeue(queue: Queue, name: str, done: str, state: str) -> None:
    run = next((r for r in queue.runs if r.name == name), None)
    if run is None:
        raise QueueError(f"no run named {name}")
    now = run.status().state
    if now != state:
        raise QueueError(f"{name} is {now}: only a {state} run can be {done}")
    queue.enqueue(name)


# --- sampling studies ----------------------------------------------------------------------------


def find_study(experiments: Experiments, name: str, file: Path) -> StudySpec:
    """The study ``name`` of the experiments file ``file``; a :class:`ConfigError` naming the
    file's studies when it has no such study."""
    spec = next((s for s in experiments.studies if s.name == name), None)
    if spec is None:
        have = ", ".join(s.name for s in experiments.studies) or "none"
        raise ConfigError(f"{Path(file).name}: study {name}: no such study (studies: {have})")
    return spec


def studies_of(experiments: Experiments, runs: list[str]) -> list[StudySpec]:
    """The studies of the experiments file that sample from one of ``runs``, in its order."""
    return [s for s in experiments.studies if s.run in runs]


def check_study(runs_dir: Path, spec: StudySpec) -> None:
    """:class:`StudyWaits` when the run study ``spec`` samples from has not finished."""
    state = source_state(runs_dir, spec)
    if not can_sample(state):
        detail = source_run(runs_dir, spec).status().detail if state == "damaged" else ""
        raise StudyWaits(spec, state, detail)


def split_studies(
    runs_dir: Path, studies: list[StudySpec]
) -> tuple[list[StudySpec], list[StudyWaits]]:
    """``studies`` whose runs have finished (they can start), and the others as
    :class:`StudyWaits` (each with the state of its run)."""
    ready: list[StudySpec] = []
    waiting: list[StudyWaits] = []
    for spec in studies:
        try:
            check_study(runs_dir, spec)
            ready.append(spec)
        except StudyWaits as e:
            waiting.append(e)
    return ready, waiting


# --- the queue's status --------------------------------------------------------------------------

STATUS_COLUMNS = ("run", "status", "epoch", "val loss", "FID", "elapsed", "expected", "where")
NOT_CALIBRATED = (
    "expected start and end: not calibrated on these hosts (diffui plan calibrates this machine)"
)


def status_rows(
    queue: Queue, here: str, cache: CalibrationCache | None = None, now: float | None = None
) -> list[list[str]]:
    """``diffui queue status``'s table (:data:`STATUS_COLUMNS`) as of the queue's last poll:
    the queued runs in queue order, then the others by name; ``here`` is this machine's host
    name (its runs show no host). ``expected`` is a queued run's expected start and end, a
    running run's end (:func:`engine.queue.expected.expected_times`, from the calibrations in
    ``cache``), "-" where not known."""
    now = time.time() if now is None else now
    # (a queued name whose run folder was removed meanwhile is no run: the service drops it)
    queued = [n for n in queue.queued() if n in queue.progress]
    runs = {run.name: run for run in queue.runs}
    times = expected_times(queue.state, runs, queue.progress, cache, now)
    rows = []
    for name in queued + sorted(n for n in queue.progress if n not in queued):
        p = queue.progress[name]
        rows.append(
            [
                name,
                status_text(p, queued.index(name) if name in queued else None, style="table"),
                f"{p.epoch}/{p.epochs}" if p.epochs else "-",
                fmt(p.val_loss),
                p.estimate.text(".2f") if p.estimate else fmt(p.fid, ".2f"),
                format_seconds(p.elapsed()),
                expected_text(times.get(name), name in queued, queue.paused, now),
                queue.state.where_text(name, p.host, here) or "-",
            ]
        )
    return rows


def expected_text(e: Expected | None, queued: bool, paused: bool, now: float) -> str:
    """``17:42-17:55``: a queued run's expected start and end; ``ends 17:55``: a running run's
    end; a paused queue's queued runs count from its start (``+0:12-+0:25``). "-" when not
    known: the run is not calibrated on its host, or waits behind one that is not."""
    if e is None or e.end is None or (queued and e.start is None):
        return "-"

    def at(s: float, relative: bool) -> str:
        if relative:
            minutes = round(s / 60)
            return f"+{minutes // 60}:{minutes % 60:02d}"
        t = time.localtime(now + s)
        same_day = t[:3] == time.localtime(now)[:3]
        return time.strftime("%H:%M" if same_day else "%a %H:%M", t)

    if not queued or e.start is None:
        return f"ends {at(e.end, False)}"
    return f"{at(e.start, paused)}-{at(e.end, paused)}"
