"""Cold diffusion "morph": the degradation, its samplers (direct and iterative, both latent
settings), the UNet with either degradation, a tiny morph run with its figures, and the error
when FashionMNIST is missing."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
import torch
from conftest import tiny_study

from engine.data import datasets as data
from engine.diffusion import samplers
from engine.diffusion.degradations import Gaussian, Morph
from engine.diffusion.nets import build
from engine.diffusion.nets.unet import UNet
from engine.diffusion.schedules import make_schedule
from engine.jobs.worker import execute
from engine.rundir.events import Epoch, Eval, Samples, latest_by_epoch
from engine.rundir.run import Run, prepare_runs
from engine.spec.experiments import load_experiments
from engine.spec.sections import make_section

MORPH = """degradation = "morph"
network = { kind = "unet", unet_channels = [8, 16, 16] }
evaluation = { sampler = "iterative", final_sampler = "same", morph_latent = "%s" }
"""


def fake_latents(n: int, seed: int) -> torch.Tensor:
    """uint8 (n, 28, 28) images standing in for FashionMNIST."""
    return torch.randint(
        0, 256, (n, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed)
    )


def morph(kind: str = "linear", T: int = 40) -> Morph:
    return Morph(make_schedule(kind, T), fake_latents(50, 1), fake_latents(20, 2))


def digits(n: int = 6) -> torch.Tensor:
    return data.to_model(fake_latents(n, 3))


def morph_study(tmp_path, latent: str = "estimate", **kw):
    f = tiny_study(tmp_path / "exp.toml", **kw)
    f.write_text(f.read_text() + MORPH % latent)
    return f


# --- the degradation -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["linear", "cosine", "constant", "inverse_linear"])
def test_degradation_is_x_at_0_and_the_latent_at_T(kind):
    deg = morph(kind, T=1000)
    x = digits()
    z = deg.latents(len(x), torch.Generator().manual_seed(0))
    assert torch.equal(deg.degrade(x, torch.zeros(len(x), dtype=torch.long), z), x)
    a_T = deg.alpha_bar[-1]
    z_T = deg.degrade(x, torch.full((len(x),), 1000), z)
    torch.testing.assert_close(z_T, a_T.sqrt() * x + (1 - a_T).sqrt() * z)
    # alpha_bar_T is not exactly 0, so z_T is z up to sqrt(alpha_bar_T) (|x|, |z| <= 0.5)
    assert (z_T - z).abs().max() <= a_T.sqrt() + 1e-6
    if kind in ("linear", "cosine"):  # the study's morph schedules: within 0.011 of z
        assert a_T.sqrt() < 0.011


def test_morph_latents_come_from_the_right_pool_and_the_loss_targets_x():
    deg = morph()
    g = torch.Generator().manual_seed(0)
    train = {tuple(im.flatten().tolist()) for im in data.to_model(deg.pools[False])}
    held_out = {tuple(im.flatten().tolist()) for im in data.to_model(deg.pools[True])}
    assert all(tuple(z.flatten().tolist()) in train for z in deg.latents(10, g))
    assert all(tuple(z.flatten().tolist()) in held_out for z in deg.latents(10, g, held_out=True))
    x = digits()
    assert deg.loss(lambda z_t, t: x, x, g).item() == 0.0  # a perfect restorer has no loss
    assert Gaussian(make_schedule("linear", 40)).loss(lambda z_t, t: x, x, g).item() > 0.5


# --- the samplers ----------------------------------------------------------------------------


@pytest.mark.parametrize("latent", ["start", "estimate"])
@pytest.mark.parametrize(
    "kind,T,steps",
    [("linear", 40, 40), ("cosine", 40, 40), ("cosine", 40, 7), ("linear", 1000, 1000)],
)
def test_iterative_sampler_with_a_perfect_oracle_returns_x(latent, kind, T, steps):
    deg = morph(kind, T)
    x = digits()
    z = deg.latents(len(x), torch.Generator().manual_seed(0), held_out=True)
    z_T = deg.degrade(x, torch.full((len(x),), T), z)
    calls = []

    def oracle(z_t, t):
        calls.append(round(t[0].item() * T))
        return x

    out = samplers.iterative(oracle, deg, z_T, z, steps, latent)
    torch.testing.assert_close(out, x, atol=1e-5, rtol=0)
    assert calls[0] == T and len(calls) == steps and calls == sorted(calls, reverse=True)
    torch.testing.assert_close(samplers.direct(oracle, deg, z_T), x)


@pytest.mark.parametrize("latent", ["start", "estimate"])
def test_iterative_sampler_at_steps_T_is_the_algorithm_step_by_step(latent):
    """With steps = T the strided sampler is exactly: for t = T..1: x̂ = R(z_t, t);
    z_{t-1} = z_t - D(x̂, t) + D(x̂, t - 1), D's latent being the start image or the estimate."""
    T = 40
    deg = morph("cosine", T)
    z0 = deg.latents(4, torch.Generator().manual_seed(0), held_out=True)

    def R(z_t, t):  # an imperfect restorer that depends on z_t and t
        return (0.7 * z_t.flip(-1) + 0.2 * t.view(-1, 1, 1, 1) - 0.1).clamp(-0.5, 0.5)

    z = z0
    for t in range(T, 0, -1):
        tt = torch.full((4,), t)
        x_hat = R(z, tt / T)
        a = deg.alpha_bar[t]
        lat = z0 if latent == "start" else (z - a.sqrt() * x_hat) / (1 - a).sqrt()
        z = z - deg.degrade(x_hat, tt, lat) + deg.degrade(x_hat, tt - 1, lat)
    got = samplers.iterative(R, deg, z0, z0, T, latent)
    torch.testing.assert_close(got, z, atol=1e-5, rtol=0)
    other = samplers.iterative(R, deg, z0, z0, T, "estimate" if latent == "start" else "start")
    assert (other - got).abs().max() > 1e-2  # the setting matters for an imperfect R


def test_sample_starts_from_held_out_latents_and_names_the_samplers():
    deg = morph()
    direct = samplers.sample(_Identity(), deg, "direct", 5, 4, torch.Generator().manual_seed(0))
    z = deg.latents(5, torch.Generator().manual_seed(0), held_out=True)
    torch.testing.assert_close(direct, z)  # R = identity: the sample is its FashionMNIST start
    assert samplers.describe("iterative", 20, 1000) == "iterative-20"
    assert samplers.describe("iterative", 1000, 1000) == "iterative-1000"
    assert samplers.describe("direct", 20, 1000) == "direct"


class _Identity(torch.nn.Module):
    def forward(self, z, t):
        return z


# --- the networks ----------------------------------------------------------------------------


def test_unet_structure_and_28x28_output_for_both_degradations():
    model = UNet((32, 64, 128), time_embedding=16)
    shapes = {}
    for name in ("down", "up"):
        for i, block in enumerate(getattr(model, name)):
            block.register_forward_hook(
                lambda m, inp, out, key=f"{name}{i}": shapes.__setitem__(key, tuple(out.shape[1:]))
            )
    model.mid.register_forward_hook(
        lambda m, i, out: shapes.__setitem__("mid", tuple(out.shape[1:]))
    )
    x = digits(3)
    g = torch.Generator().manual_seed(0)
    for deg in (Gaussian(make_schedule("linear", 40)), morph()):
        loss = deg.loss(model, x, g)
        loss.backward()
        assert math.isfinite(loss.item())
        out = model(deg.degrade(x, torch.full((3,), 20), deg.latents(3, g)), torch.full((3,), 0.5))
        assert out.shape == (3, 1, 28, 28)
    assert shapes == {
        "down0": (32, 28, 28),
        "down1": (64, 14, 14),
        "down2": (128, 7, 7),
        "mid": (128, 7, 7),
        "up0": (128, 7, 7),
        "up1": (64, 14, 14),
        "up2": (32, 28, 28),
    }
    block = model.down[0]
    assert block.body[0].groups == 32 and block.body[0].kernel_size == (7, 7)  # depthwise 7x7
    assert block.body[2].out_channels == 4 * 32 and block.body[2].kernel_size == (3, 3)
    assert isinstance(block.body[3], torch.nn.GELU) and block.body[4].out_channels == 32
    assert isinstance(model.pool, torch.nn.MaxPool2d)
    assert all(isinstance(u, torch.nn.ConvTranspose2d) for u in model.upsample)


def test_cnn_restores_with_the_morph_degradation():
    model = build(make_section("network", {"kind": "cnn", "channels": [4, 4], "time_embedding": 4}))
    deg = morph()
    x = digits(2)
    assert model(
        deg.degrade(x, torch.full((2,), 5), deg.latents(2, None)), torch.full((2,), 0.1)
    ).shape == (2, 1, 28, 28)


# --- a tiny morph run, end to end ----------------------------------------------------------


def test_tiny_morph_run_evaluates_and_writes_its_figures(tmp_path):
    from cli.main import main

    f = morph_study(tmp_path, epochs=2, every=2)
    run = prepare_runs(load_experiments(f).runs, tmp_path / "runs")[0]
    spec = run.spec()
    assert spec.degradation == "morph" and spec.network.kind == "unet"
    assert execute(run, threading.Event()) == "finished", run.status()
    start = run.events()[0]
    assert start.train_size + start.val_size == 256
    epochs = latest_by_epoch(run.events(), Epoch)
    assert sorted(epochs) == [1, 2]
    assert epochs[2].val_loss < 0.2  # MSE to x in [-0.5, 0.5] of a network that learns
    samples = latest_by_epoch(run.events(), Samples)
    assert {e: s.sampler for e, s in samples.items()} == {1: "iterative-4", 2: "iterative-4"}
    evals = latest_by_epoch(run.events(), Eval)
    assert sorted(evals) == [2]
    ev = evals[2]
    assert ev.sampler == "iterative-4" and ev.n == 200 and ev.fid > ev.floor > 0
    assert sum(ev.histogram) == 200 and 0 <= ev.entropy <= math.log2(10)

    out = tmp_path / "report"
    assert main(["report", "--runs-dir", str(tmp_path / "runs"), "--out", str(out)]) == 0
    names = (
        "tiny-loss.png",
        "tiny-fid.png",
        "tiny-grids.png",
        "tiny-restoration.png",
        "tiny-direct-vs-iterative.png",
    )
    for name in names:
        assert (out / name).stat().st_size > 5000, name
    assert not (out / "tiny-diffusion.png").exists()  # the DDPM strip is for Gaussian runs
    md = (out / "report.md").read_text()
    assert "| tiny | finished | 2/2 |" in md and f"{ev.fid:.2f}" in md
    assert "iterative-4" in md and all(f"]({n})" in md for n in names)


@pytest.mark.parametrize("latent", ["start", "estimate"])
def test_a_runs_samples_use_its_latent_setting(tmp_path, latent):
    from engine.jobs.checkpoints import load_model

    f = morph_study(tmp_path, latent, epochs=1, subset=64)
    run = prepare_runs(load_experiments(f).runs, tmp_path / "runs")[0]
    assert execute(run, threading.Event()) == "finished"
    model, deg = load_model(run)
    saved = torch.from_numpy(np.load(run.samples_dir / "epoch-0001.npy"))
    z = deg.latents(4, torch.Generator().manual_seed(104729 + 1), held_out=True)  # as Evaluator
    other = "estimate" if latent == "start" else "start"
    want, unwanted = (
        data.from_model(samplers.iterative(model, deg, z, z, 4, mode))[:, 0]
        for mode in (latent, other)
    )
    torch.testing.assert_close(saved, want, atol=1e-5, rtol=0)
    assert (saved - unwanted).abs().max() > 1e-3


# --- FashionMNIST missing ------------------------------------------------------------------


def test_missing_fashion_mnist_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    from cli.main import main

    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "empty")  # and the data folder has none
    f = morph_study(tmp_path)
    assert main(["--batch", str(f), "--runs-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert err.startswith(
        "error: tiny: degradation = 'morph': cannot load FashionMNIST (train split)"
    )
    assert f"Debian folder {tmp_path / 'empty' / 'fashion-mnist'}: no such folder" in err
    assert "apt-get install dataset-fashion-mnist" in err and "copy its IDX files into" in err
    assert "idx_dir" not in err  # data.idx_dir holds the digits, not the latents
    assert not (tmp_path / "runs").exists()  # nothing was written


def test_a_morph_run_whose_fashion_mnist_disappears_fails_with_the_reason(tmp_path, monkeypatch):
    run = prepare_runs(load_experiments(morph_study(tmp_path)).runs, tmp_path / "runs")[0]
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "empty")
    assert execute(run, threading.Event()) == "failed"
    st = Run(run.path).status()
    assert st.state == "failed" and "cannot load FashionMNIST (train split)" in st.detail
