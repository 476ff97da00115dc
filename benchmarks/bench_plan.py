"""``diffui plan``'s estimate of each run against the wall time it took: the finished runs of a
runs folder (e.g. the quick profile's), each estimated from this machine's calibration of its
network (diffui's cache, or measured now with --fresh), next to its measured time. It ends with
one line per run, ``ratio plan-RUN: X`` (estimate / measured), and ``ratio plan-quick: X``
(all the runs' estimates / all their measured times).

    python benchmarks/bench_plan.py RUNS_DIR [--fresh] [--cache FILE]

The measured time is the run's worker attempts (start to end, as the UI's elapsed). Its parts,
from the run's events: the epochs (training and validation), the sampling after them (grids,
FIDs, the report's figures), and the one-off work of a first run on a machine (the FID
reference statistics, the FID classifier) that the estimate does not count. A run that did
not finish is listed and left out of the ratios.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from engine.jobs import plan  # noqa: E402
from engine.jobs.setup import resolve_device  # noqa: E402
from engine.rundir.events import Epoch, Eval, Progress, Samples  # noqa: E402
from engine.rundir.progress import summary  # noqa: E402
from engine.rundir.run import Run, iter_runs  # noqa: E402
from engine.spec.costs import (  # noqa: E402
    OVERHEAD_S,
    fid_seconds,
    run_seconds,
    sampling_seconds,
)

ONE_OFF = ("FID reference statistics", "FID classifier")  # cached after a machine's first run


def measured_parts(run: Run) -> tuple[float, float, float]:
    """(seconds in epochs, of scoring FIDs, of one-off tasks) from the run's events; scoring is
    an ``eval`` event's time after its ``samples`` event (the features, FID, its interval)."""
    epochs = scoring = 0.0
    sampled: float | None = None
    spans: dict[str, list[float]] = {}
    for e in run.events():
        if isinstance(e, Epoch):
            epochs += e.seconds
        elif isinstance(e, Samples):
            sampled = e.time
        elif isinstance(e, Eval) and sampled is not None:
            scoring, sampled = scoring + max(0.0, e.time - sampled), None
        elif isinstance(e, Progress) and e.task in ONE_OFF:
            spans.setdefault(e.task, []).append(e.time)
    return epochs, scoring, sum(max(t) - min(t) for t in spans.values())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path)
    ap.add_argument("--fresh", action="store_true", help="calibrate again (into the cache)")
    ap.add_argument("--cache", type=Path, default=None, help="calibration.json to use")
    args = ap.parse_args()
    runs = [r for r in iter_runs(args.runs) if r.exists()]
    if not runs:
        print(f"error: {args.runs}: no run folders in it", file=sys.stderr)
        return 2
    cache = plan.CalibrationCache(args.cache)
    console = Console(width=max(120, Console().width))
    load = os.getloadavg()[0]
    console.print(
        f"runs {args.runs} | device {resolve_device('auto')} | torch {torch.__version__}"
        f" | threads {torch.get_num_threads()} | load average {load:.1f} | cache {cache.path}"
    )
    table = Table(title="plan estimate against measured wall time (s)")
    cols = ("run", "estimate", "measured", "ratio", "est. epochs", "epochs", "est. sampling")
    for col in (*cols, "sampling", "est. scoring", "scoring", "one-off", "epoch max/min"):
        table.add_column(col, justify="left" if col == "run" else "right")
    ratios, total_est, total_measured, left_out = {}, 0.0, 0.0, []
    fresh: set[str] = set()
    for run in runs:
        p = summary(run)
        if p.state != "finished":
            left_out.append(f"{run.name} ({p.state})")
            continue
        spec = run.spec()
        key = plan.calibration_key("local", str(resolve_device(spec.training.device)), spec)
        if args.fresh and key not in fresh:  # (once per network)
            cache.entries.pop(key, None)
            fresh.add(key)
        cal = cache.local(spec)
        cache.count_images(spec)
        est = run_seconds(spec, cal, available=cache.images("local", spec))
        measured = p.elapsed()
        epochs, scoring, one_off = measured_parts(run)
        sampling = sampling_seconds(spec, cal) - fid_seconds(spec)
        spread = max(p.epoch_seconds) / min(p.epoch_seconds) if p.epoch_seconds else 0.0
        table.add_row(
            run.name,
            f"{est:.0f}",
            f"{measured:.0f}",
            f"{est / measured:.2f}",
            f"{est - sampling - fid_seconds(spec) - OVERHEAD_S:.0f}",
            f"{epochs:.0f}",
            f"{sampling:.0f}",
            f"{measured - epochs - scoring - one_off - OVERHEAD_S:.0f}",
            f"{fid_seconds(spec):.0f}",
            f"{scoring:.0f}",
            f"{one_off:.0f}",
            f"{spread:.2f}",
        )
        ratios[run.name] = est / measured
        total_est, total_measured = total_est + est, total_measured + measured
    console.print(table)
    console.print(
        f"load average {os.getloadavg()[0]:.1f} at the end; sampling measured = the run's time "
        f"less its epochs, scoring, one-off tasks and {OVERHEAD_S:.0f} s to start"
        + (f"; not finished, left out: {', '.join(left_out)}" if left_out else "")
    )
    for name, r in ratios.items():
        print(f"ratio plan-{name}: {r:.2f}")
    if total_measured:
        print(f"ratio plan-quick: {total_est / total_measured:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
