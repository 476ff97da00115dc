"""One evaluation pass of a trained run: N samples with DDIM-S, DPM-Solver++ at 10, 20 and 50
steps and DDPM-T (a morph run: direct, and iterative-S with either latent setting), timed, and
the FID with its bootstrap interval, KID, the floor and the class entropy each gives. A Gaussian
run ends with lines ``ratio dpm++-K: X`` (DDPM-T seconds / DPM-Solver++-K seconds),
``fid dpm++-K: F [lo, hi] (ddpm: G [lo, hi])`` and ``recommend: dpm++-K``, the fewest steps
whose FID interval overlaps DDPM-T's (``recommend: none`` when no interval does).

    python benchmarks/bench_eval.py RUN_DIR [--n 1000] [--steps 50] [--dpm-steps 10,20,50]
                                    [--ddpm-from-run]
                                    [--device auto|cpu|cuda]

RUN_DIR is a finished (or resumable) run folder with a checkpoint, e.g. runs-quick/ddpm-linear.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from engine.data import datasets as data  # noqa: E402
from engine.diffusion import samplers  # noqa: E402
from engine.evaluation.fid import FID, score_samples  # noqa: E402
from engine.jobs.checkpoints import load_model  # noqa: E402
from engine.jobs.setup import resolve_device  # noqa: E402
from engine.rundir.events import Eval, read_events  # noqa: E402
from engine.rundir.run import Run  # noqa: E402
from engine.spec.sections import MORPH_LATENTS  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--dpm-steps", default="10,20,50", help="DPM-Solver++ steps ('' for none)")
    ap.add_argument("--device", default="auto")
    ap.add_argument(
        "--ddpm-from-run",
        action="store_true",
        help="take DDPM-T's row from the run's own final evaluation of N samples (its eval "
        "event: FID, interval, KID and sampling time) instead of sampling it again",
    )
    args = ap.parse_args()
    run = Run(args.run)
    if not run.checkpoint_path.exists():
        print(
            f"error: {run.path}: no checkpoint.pt (expected a trained run folder)", file=sys.stderr
        )
        return 2
    device = resolve_device(args.device)
    model, deg = load_model(run, str(device))
    fid = FID("lenet", run.spec().data)
    console = Console(width=max(Console().width, 120))  # the table whole in a log file too
    console.print(
        f"run {run.name} ({run.spec().network.kind}, {deg.T} steps) | device {device}"
        f" | torch {torch.__version__} | threads {torch.get_num_threads()} | N = {args.n}"
    )
    table = Table(title=f"evaluation pass, N = {args.n}")
    level = "FID [95% interval]"
    for col in ("sampler", "sampling s", "scoring s", level, "KID ± sd", "floor", "entropy (bits)"):
        table.add_column(col, justify="right")
    if run.spec().degradation == "morph":
        cases = [("direct", "")] + [("iterative", latent) for latent in MORPH_LATENTS]
    else:
        dpm = [int(k) for k in args.dpm_steps.split(",") if k.strip()]
        cases = [("ddim", ""), *((f"dpm++:{k}", "") for k in dpm), ("ddpm", "")]
    seconds, fids = {}, {}
    for case, latent in cases:
        if case == "ddpm" and args.ddpm_from_run:
            e = final_eval(run, samplers.describe("ddpm", args.steps, deg.T), args.n)
            if e is None:
                print(
                    f"error: {run.path}: no DDPM-{deg.T} evaluation of {args.n} samples in "
                    "events.jsonl (run it to its end, or leave out --ddpm-from-run)",
                    file=sys.stderr,
                )
                return 2
            seconds[case], fids[case] = e.sample_seconds, e
            name = f"{e.sampler} (the run's own, epoch {e.epoch})"
            table.add_row(*_row(name, e.sample_seconds, e.score_seconds, e))
            continue
        sampler, _, k = case.partition(":")
        steps = int(k) if k else args.steps
        g = torch.Generator(device=device).manual_seed(0)
        t0 = time.perf_counter()
        imgs = samplers.sample(
            model, deg, sampler, args.n, steps, g, device, latent=latent or "estimate"
        )
        if device.type == "cuda":
            torch.cuda.synchronize()
        t1 = time.perf_counter()
        x = data.from_model(imgs.float().cpu())[:, 0]
        s = score_samples(fid, x)
        t2 = time.perf_counter()
        seconds[case], fids[case] = t1 - t0, s
        name = samplers.describe(sampler, steps, deg.T) + (f" ({latent} latent)" if latent else "")
        table.add_row(*_row(name, t1 - t0, t2 - t1, s))
    console.print(table)
    dpm = [case for case in seconds if case.startswith("dpm++")]
    if dpm and "ddpm" in seconds:
        ref = fids["ddpm"]
        for case in dpm:
            k = case.partition(":")[2]
            print(f"ratio dpm++-{k}: {seconds['ddpm'] / seconds[case]:.1f}")
            print(f"fid dpm++-{k}: {_fid(fids[case])} (ddpm: {_fid(ref)})")
        equal = [
            c for c in dpm if fids[c].fid_low <= ref.fid_high and ref.fid_low <= fids[c].fid_high
        ]
        best = min(equal, key=lambda c: int(c.partition(":")[2]), default=None)
        print(f"recommend: {best.replace(':', '-') if best else 'none'}")
    return 0


def final_eval(run: Run, sampler: str, n: int) -> Eval | None:
    """The run's last evaluation of ``n`` samples with ``sampler`` (with its interval)."""
    evals = [
        e
        for e in read_events(run.events_path)
        if isinstance(e, Eval) and e.sampler == sampler and e.n == n and e.fid_low is not None
    ]
    return evals[-1] if evals else None


def _row(name: str, sampling: float, scoring: float, s) -> list[str]:
    """A table row of ``s`` (the :class:`Scores` of a pass, or a run's :class:`Eval`)."""
    kid = f"{s.kid:.3g} ± {s.kid_std:.2g}" if s.kid is not None else "-"
    entropy = f"{s.entropy:.2f}" if s.entropy is not None else "-"
    return [name, f"{sampling:.1f}", f"{scoring:.1f}", _fid(s), kid, f"{s.floor:.2f}", entropy]


def _fid(s) -> str:
    return f"{s.fid:.2f} [{s.fid_low:.2f}, {s.fid_high:.2f}]"


if __name__ == "__main__":
    sys.exit(main())
