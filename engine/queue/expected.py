"""When each queued run of a runs folder is expected to start and end, and each running run to
end: ``diffui plan``'s estimate (:mod:`engine.spec.costs`, from the calibrations cached per host
and device) placed on the slots of the hosts each run may use, behind what runs now.

A running run's time left is its estimate for the epochs it has not finished, less the time
into the current one, or the pace of its epochs so far when that says more (a loaded machine);
a run stopped part-way and queued again counts the epochs left. The queued runs take, in queue
order, the slot that frees first among their hosts, as the queue service gives them. Nothing is
guessed: a run never calibrated on its host has no end, and the runs behind it on that slot no
start (None).
"""

from __future__ import annotations

import math
import time
from contextlib import suppress
from dataclasses import dataclass

from engine.queue.state import NOT_STARTED, QueueState
from engine.rundir.progress import RunProgress
from engine.rundir.run import Run, RunError, source_run
from engine.spec import costs
from engine.spec.costs import OVERHEAD_S, CalibrationCache, study_seconds
from engine.spec.sections import LOCAL, HostSpec
from engine.spec.specs import RunSpec, StudySpec


@dataclass(frozen=True)
class Expected:
    """Seconds from now to a run's expected start and end (None: not known)."""

    start: float | None
    end: float | None


@dataclass
class _Lane:
    """One slot of a host: free from ``free`` seconds from now (only from then at the earliest
    when not ``known``)."""

    free: float = 0.0
    known: bool = True


def host_slots(st: QueueState) -> dict[str, int]:
    """Runs at once on each host of the queue: ``jobs`` here, an SSH host's GPUs (or ``slots``),
    a cluster's ``max_jobs`` (a host whose table cannot be read gets none, as in the service)."""
    hosts = {}
    for name, table in st.hosts.items():
        with suppress(TypeError, ValueError):
            hosts[name] = HostSpec(**table)
    return costs.host_slots(hosts, st.jobs)


class _Costs:
    """Each job's estimate on a host, from its run folder's settings and the calibrations."""

    def __init__(self, runs: dict[str, Run], cache: CalibrationCache):
        self.runs, self.cache = runs, cache
        self.specs: dict[str, RunSpec | StudySpec | None] = {}

    def spec(self, run: Run) -> RunSpec | StudySpec | None:
        if run.name not in self.specs:
            self.specs[run.name] = None
            with suppress(RunError, OSError):
                self.specs[run.name] = run.spec()
        return self.specs[run.name]

    def seconds(self, name: str, host: str, p: RunProgress, started: bool) -> float | None:
        """The estimate of what is left of job ``name`` on ``host`` (None when not known)."""
        run = self.runs.get(name)
        spec = self.spec(run) if run is not None else None
        done = p.epoch if p.epochs else 0
        if isinstance(spec, RunSpec):
            return self.cache.run_estimate(host, spec, done, started)
        if isinstance(spec, StudySpec) and run is not None:
            source = self.spec(source_run(run.path.parent.parent, spec))
            cal = self.cache.cached(host, source) if isinstance(source, RunSpec) else None
            if cal is None or not isinstance(source, RunSpec):
                return None
            return study_seconds(spec, source, cal, done) - (OVERHEAD_S if started else 0.0)
        return None


def _left(costs: _Costs, name: str, host: str, p: RunProgress, now: float) -> float | None:
    """Seconds left of a run that runs (or was started and has not begun yet)."""
    if p.state != "running":
        return costs.seconds(name, host, p, started=False)
    est = costs.seconds(name, host, p, started=True)
    if est is not None:
        est -= max(0.0, now - (p.epoch_started or now))
    pace = p.eta()
    known = [s for s in (est, pace) if s is not None and math.isfinite(s)]
    return max(0.0, *known) if known else None


def _busy_lanes(
    st: QueueState, progress: dict[str, RunProgress], costs: _Costs, now: float
) -> tuple[dict[str, list[_Lane]], dict[str, Expected]]:
    """Each host's slots with what runs on them now (the service's ``active`` runs on their
    host, the runs that run outside it here), and when those runs end."""
    slots = host_slots(st)
    left: dict[str, list[float | None]] = {h: [] for h in slots}
    ends: dict[str, Expected] = {}
    for name, p in progress.items():
        active = st.active.get(name)
        if active is None and p.state != "running":
            continue
        host = active.get("executor", LOCAL) if active is not None else LOCAL
        s = _left(costs, name, host, p, now)
        ends[name] = Expected(0.0 if p.state == "running" else None, s)
        left.setdefault(host, []).append(s)
    lanes = {}
    for host, n in slots.items():  # the n runs that end last hold the n slots
        order = sorted(left.get(host, []), key=lambda s: math.inf if s is None else s)[::-1]
        lanes[host] = [_Lane(s or 0.0, s is not None) for s in order[:n]]
        lanes[host] += [_Lane() for _ in range(n - len(lanes[host]))]
    return lanes, ends


def expected_times(
    st: QueueState,
    runs: dict[str, Run],
    progress: dict[str, RunProgress],
    cache: CalibrationCache | None = None,
    now: float | None = None,
) -> dict[str, Expected]:
    """The expected start and end (seconds from ``now``) of each queued run of ``st`` that has
    a folder in ``runs`` and of each run that runs; a paused queue's as if started now."""
    now = time.time() if now is None else now
    costs = _Costs(runs, cache or CalibrationCache())
    lanes, out = _busy_lanes(st, progress, costs, now)
    for name in st.queued:
        p = progress.get(name)
        if p is None or p.state in NOT_STARTED:
            continue
        mine = [(h, lane) for h in st.hosts_of(name) for lane in lanes.get(h, [])]
        if not mine:
            out[name] = Expected(None, None)
            continue
        # the slot that frees first (a known end before an unknown one of the same bound, then
        # the first host): a slot whose end is not known frees no earlier than its bound
        host, lane = min(mine, key=lambda hl: (hl[1].free, not hl[1].known))
        known = lane.known
        seconds = costs.seconds(name, host, p, started=False)
        start = lane.free
        lane.free, lane.known = start + (seconds or 0.0), known and seconds is not None
        out[name] = Expected(
            start if known else None, lane.free if known and seconds is not None else None
        )
    return out
