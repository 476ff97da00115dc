"""Training and sampling throughput of diffui's engine against a minimal plain PyTorch loop.

    python benchmarks/bench_train.py [--steps N] [--device auto|cpu|cuda] [--networks cnn,unet]
                                     [--sample-n N] [--repeats 3] [--quick]

For each network (the study's CNN at batch 128, the UNet at batch 64) the engine's training
epoch at its default settings (``training.amp`` and ``training.compile`` = auto) runs against a
plain fp32 PyTorch loop of the same model (same seed), optimizer, data tensor, batch size and
number of steps; they are interleaved and the median of the repeats is reported, so noise from
other processes hits both alike. Then the final sampler (DDPM-T) of the engine against the
sampler as it was before (``torch.no_grad``, per-batch coefficients), same seed, same images.
The last lines read ``ratio train-cnn: X``, ``ratio train-unet: X`` (engine / plain fp32
images per second) and ``ratio sample-ddpm: X`` (old seconds / new seconds).
"""

from __future__ import annotations

import argparse
import math
import os
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
from engine.diffusion.samplers import _coefficients, _start, _times  # noqa: E402
from engine.jobs import setup, training  # noqa: E402
from engine.spec.experiments import parse_experiments  # noqa: F401

STUDY = """
[[experiments]]
name = "bench"
data = {{ train_subset = {subset} }}
network = {{ kind = "{network}" }}
training = {{ batch_size = {batch}, device = "{device}" }}
"""
BATCH = {"cnn": 128, "unet": 64}  # the study's CNN batch; the UNet's (the digits profile's)


def make_spec(args, network: str):
    # enough images for `steps` batches after the validation split (the data source may hold
    # fewer; the train set is then tiled below, which does not change the cost of a step)
    batch = BATCH[network]
    subset = math.ceil(batch * args.steps / (1 - 0.1)) + 1
    text = STUDY.format(subset=subset, network=network, batch=batch, device=args.device)
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


@torch.no_grad()
def old_ddpm(model, deg, n, generator, device):
    """The DDPM sampler as it was before issue 22 (no_grad, the same arithmetic)."""
    T = deg.T
    c = _coefficients(deg)
    betas, sqrt_alphas, sigmas = c.betas.tolist(), c.sqrt_alphas.tolist(), c.sqrt_betas.tolist()
    s1ma = c.sqrt_one_minus_alpha_bar.tolist()
    z = _start(None, n, generator, device)
    for t in range(T, 0, -1):
        eps = model(z, _times(n, t, device) / T)
        z = (z - betas[t] / s1ma[t] * eps) / sqrt_alphas[t]
        if t > 1:
            z = z + sigmas[t] * torch.randn(z.shape, generator=generator, device=device)
    return z


def bench_training(args, network: str, con: Console):
    """(the prepared run, engine images/s ÷ plain fp32 images/s, both medians)."""
    spec = make_spec(args, network)
    p = setup.prepare(spec)
    dev, tr, bs = p.device, spec.training, BATCH[network]
    need = args.steps * bs
    x = p.train_x
    if len(x) < need:
        x = x.repeat(math.ceil(need / len(x)), 1, 1, 1)
    p.train_x = x[:need].contiguous()  # one epoch = exactly `steps` batches
    torch.manual_seed(tr.seed)
    model = nets.build(spec.network).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=tr.lr)
    prec = setup.precision(dev, tr.amp)
    compiled = setup.use_compile(dev, tr.compile)
    con.print(
        f"network {network} ({sum(q.numel() for q in model.parameters()):,} parameters) | "
        f"batch {bs} x {args.steps} steps | engine: {prec}"
        + (", compiled" if compiled else "")
        + f" | {args.repeats} interleaved rounds"
    )
    epoch = [1]

    def diffui():
        training.train_epoch(p, epoch[0])
        epoch[0] += 1

    loops = {
        "plain PyTorch (fp32)": lambda: plain_epoch(
            model, opt, p.train_x, p.deg.alpha_bar, p.deg.T, bs, nullcontext
        ),
        f"diffui train_epoch ({prec}{', compiled' if compiled else ''})": diffui,
    }
    for fn in loops.values():  # warm-up (and the compile, where on)
        timed(fn, dev)
    times: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(args.repeats):
        for name, fn in loops.items():
            times[name].append(timed(fn, dev))
    rate = {name: [need / s for s in ts] for name, ts in times.items()}
    med = {name: statistics.median(r) for name, r in rate.items()}
    plain, engine = list(loops)
    table = Table(title=f"Training throughput, {network}")
    for col in ("loop", "images/s (median)", "min - max", "ratio to plain fp32"):
        table.add_column(col, justify="left" if col == "loop" else "right")
    for name in loops:
        table.add_row(
            name,
            f"{med[name]:,.1f}",
            f"{min(rate[name]):,.1f} - {max(rate[name]):,.1f}",
            f"{med[name] / med[plain]:.3f}",
        )
    con.print(table)
    return p, med[engine] / med[plain]


def bench_sampling(args, p, con: Console) -> float:
    """Old ÷ new seconds of the final sampler (DDPM-T) on ``p``'s model; the images agree."""
    dev, n, tr = p.device, args.sample_n, p.spec.training
    seed = tr.seed + setup.SAMPLES_SEED_OFFSET

    def new():
        g = torch.Generator(device=dev).manual_seed(seed)
        with setup.autocast(dev, tr.amp):  # as the engine's evaluation pass does
            return samplers.sample(p.net, p.deg, "ddpm", n, 0, g, dev)

    def old():
        g = torch.Generator(device=dev).manual_seed(seed)
        p.model.eval()
        return old_ddpm(p.model, p.deg, n, g, dev).clamp(-0.5, 0.5)

    same = (new() - old()).abs().max().item()  # (also the warm-up)
    secs: dict[str, list[float]] = {"old": [], "new": []}
    for _ in range(args.repeats):
        secs["old"].append(timed(old, dev))
        secs["new"].append(timed(new, dev))
    med = {k: statistics.median(v) for k, v in secs.items()}
    table = Table(title=f"Final sampler DDPM-{p.deg.T}, {n} images, {p.spec.network.kind}")
    for col in ("sampler", "seconds (median)", "images/s"):
        table.add_column(col, justify="left" if col == "sampler" else "right")
    for k in ("old", "new"):
        table.add_row(
            f"{k} (engine {'before' if k == 'old' else 'now'})",
            f"{med[k]:.2f}",
            f"{n / med[k]:.2f}",
        )
    con.print(table)
    con.print(f"largest difference between their images: {same:.2e}")
    return med["old"] / med["new"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=8, help="optimizer steps per timed epoch")
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--networks", default="cnn,unet", help="comma-separated: cnn, unet")
    ap.add_argument("--sample-n", type=int, default=10, help="images for the sampler timing")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds (median taken)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 steps, 1 round, 2 images")
    args = ap.parse_args()
    if args.quick:
        args.steps, args.repeats, args.sample_n = 2, 1, 2
    nets_ = [n.strip() for n in args.networks.split(",") if n.strip()]
    if args.steps < 1 or args.repeats < 1 or args.sample_n < 1 or not set(nets_) <= set(BATCH):
        ap.error("--steps, --repeats, --sample-n must be >= 1; --networks of cnn, unet")
    start = time.perf_counter()
    con = Console()
    dev = setup.resolve_device(args.device)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    con.print(
        f"device {dev}"
        + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else "")
        + f" | torch {torch.__version__} | threads {torch.get_num_threads()}"
        + f" | CPU bf16 in hardware: {setup.native_bf16(torch.device('cpu'))}"
        + f" | load average {load:.1f}"
    )
    ratios, prepared = {}, {}
    for network in nets_:
        prepared[network], ratios[f"train-{network}"] = bench_training(args, network, con)
    ratios["sample-ddpm"] = bench_sampling(args, prepared.get("cnn") or prepared[nets_[0]], con)
    con.print(f"total time {time.perf_counter() - start:.1f} s")
    for name, r in ratios.items():
        print(f"ratio {name}: {r:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
