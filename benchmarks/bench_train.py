"""Training and sampling throughput of diffui's engine against a minimal plain PyTorch loop.

    python benchmarks/bench_train.py [--steps N] [--batch 128] [--device auto|cpu|cuda]
                                     [--network cnn|unet] [--sample-n N] [--repeats 3] [--quick]

The two training loops run the same model (same seed), optimizer, data tensor, batch size and
number of steps; they are interleaved and the median of the repeats is reported, so noise from
other processes hits both alike. The target is diffui/plain >= 0.95.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from engine.diffusion import nets, samplers  # noqa: E402
from engine.jobs import setup, training  # noqa: E402
from engine.spec.experiments import parse_experiments  # noqa: F401

STUDY = """
[[experiments]]
name = "bench"
data = {{ train_subset = {subset} }}
network = {{ kind = "{network}" }}
training = {{ batch_size = {batch}, device = "{device}" }}
"""


def make_spec(args):
    # enough images for `steps` batches after the validation split (the data source may hold
    # fewer; the train set is then tiled below, which does not change the cost of a step)
    subset = math.ceil(args.batch * args.steps / (1 - 0.1)) + 1
    text = STUDY.format(subset=subset, network=args.network, batch=args.batch, device=args.device)
    return parse_experiments(text, Path("bench.toml")).runs[0]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def plain_epoch(model, opt, x, alpha_bar, T: int, bs: int, amp) -> None:
    """The engine's training step written out as a minimal PyTorch loop."""
    perm = torch.randperm(len(x), device=x.device)
    for s in range(len(x) // bs):
        xb = x[perm[s * bs : (s + 1) * bs]]
        with amp():
            t = torch.randint(1, T + 1, (bs,), device=x.device)
            eps = torch.randn_like(xb)
            a = alpha_bar[t].view(-1, 1, 1, 1)
            z = a.sqrt() * xb + (1 - a).sqrt() * eps
            loss = F.mse_loss(model(z, t / T), eps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=40, help="optimizer steps per timed epoch")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--network", default="cnn", choices=("cnn", "unet"))
    ap.add_argument(
        "--sample-n",
        type=int,
        default=None,
        help="images per sampler (default 100 on CPU, 1000 on CUDA)",
    )
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds (median taken)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 4 steps, 2 rounds, 10 samples")
    args = ap.parse_args()
    if args.quick:
        args.steps, args.repeats, args.sample_n = 4, 2, args.sample_n or 10
    start = time.perf_counter()
    con = Console()

    if args.steps < 1 or args.batch < 1 or args.repeats < 1:
        ap.error("--steps, --batch and --repeats must be >= 1")
    spec = make_spec(args)
    try:
        p = setup.prepare(spec)
    except RuntimeError as e:  # e.g. --device cuda without a GPU
        con.print(f"[red]error:[/] {e}")
        return 2
    dev, tr = p.device, spec.training
    need = args.steps * args.batch
    x = p.train_x
    if len(x) < need:
        x = x.repeat(math.ceil(need / len(x)), 1, 1, 1)
    p.train_x = x[:need].contiguous()  # one epoch = exactly `steps` batches

    torch.manual_seed(tr.seed)
    model = nets.build(spec.network).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=tr.lr)
    fp32 = nullcontext
    engine_amp = lambda: setup.autocast(dev, tr.amp)  # noqa: E731  (what the engine uses)
    on_cuda = dev.type == "cuda"
    amp_name = ("fp16" if tr.amp == "fp16" else "bf16") if on_cuda and tr.amp != "off" else ""

    con.print(
        f"device {dev}"
        + (f" ({torch.cuda.get_device_name(dev)})" if on_cuda else "")
        + f" | torch {torch.__version__} | threads {torch.get_num_threads()}"
    )
    con.print(
        f"network {spec.network.kind} ({sum(q.numel() for q in model.parameters()):,} "
        f"parameters) | data {p.source}"
    )
    con.print(
        f"{len(p.train_x):,} train images = batch {args.batch} x {args.steps} steps | "
        f"{args.repeats} interleaved rounds" + (f" | engine amp {amp_name}" if amp_name else "")
    )

    loops = {
        "plain PyTorch (fp32)": lambda: plain_epoch(
            model, opt, p.train_x, p.deg.alpha_bar, p.deg.T, args.batch, fp32
        )
    }
    if amp_name:
        loops[f"plain PyTorch ({amp_name} autocast)"] = lambda: plain_epoch(
            model, opt, p.train_x, p.deg.alpha_bar, p.deg.T, args.batch, engine_amp
        )
    epoch = [1]

    def diffui():
        training.train_epoch(p, epoch[0])
        epoch[0] += 1

    engine_name = f"diffui train_epoch{f' ({amp_name} autocast)' if amp_name else ' (fp32)'}"
    loops[engine_name] = diffui

    for fn in loops.values():  # warm-up: one pass of each
        timed(fn, dev)
    times = {name: [] for name in loops}
    for _ in range(args.repeats):
        for name, fn in loops.items():
            times[name].append(timed(fn, dev))
    rate = {name: [need / s for s in ts] for name, ts in times.items()}
    med = {name: statistics.median(r) for name, r in rate.items()}

    table = Table(
        title="Training throughput",
        caption="diffui/plain = diffui median / this loop's median; "
        "target >= 0.95 (vs the plain loop at the engine's precision)",
    )
    table.add_column("loop")
    table.add_column("images/s (median)", justify="right")
    table.add_column("min - max", justify="right")
    table.add_column("diffui/plain", justify="right")
    for name in loops:
        ratio = "" if name == engine_name else f"{med[engine_name] / med[name]:.3f}"
        table.add_row(
            name, f"{med[name]:,.1f}", f"{min(rate[name]):,.1f} - {max(rate[name]):,.1f}", ratio
        )
    con.print(table)

    # --- sampling ------------------------------------------------------------------------
    n = args.sample_n or (1000 if on_cuda else 100)
    runs = [("ddpm", p.deg.T), ("ddim", 50), ("ddim", 100)]

    def draw(sampler: str, steps: int, count: int):
        g = torch.Generator(device=dev).manual_seed(tr.seed + setup.SAMPLES_SEED_OFFSET)
        with setup.autocast(dev, tr.amp):  # as the engine's draw_samples does
            samplers.sample(p.model, p.deg, sampler, count, steps, g, dev)

    timed(lambda: draw("ddim", 5, n), dev)  # warm-up
    secs = {}
    for sampler, steps in runs:
        secs[(sampler, steps)] = timed(lambda s=sampler, k=steps: draw(s, k, n), dev)
    base = secs[("ddpm", p.deg.T)]
    st = Table(
        title=f"Sampling throughput ({n} images{f', {amp_name} autocast' if amp_name else ''})"
    )
    for col in ("sampler", "seconds", "images/s", f"speed-up over DDPM-{p.deg.T}"):
        st.add_column(col, justify="left" if col == "sampler" else "right")
    for (sampler, steps), s in secs.items():
        st.add_row(
            samplers.describe(sampler, steps, p.deg.T),
            f"{s:.2f}",
            f"{n / s:,.1f}",
            f"{base / s:.1f}x",
        )
    con.print(st)
    con.print(f"total time {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
