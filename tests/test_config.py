"""experiments.toml -> validated run specs (engine/spec/experiments.py): the repo's experiments
file, every kind of bad input (one line naming the file, the key path and what was expected),
sweeps, profiles, precedence, selection and the RunSpec round trip. Pure parsing: no processes,
no torch."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from engine.spec.checks import ConfigError
from engine.spec.experiments import load_experiments, parse_experiments, select
from engine.spec.specs import RunSpec, spec_from_toml, spec_to_toml

REPO_STUDY = Path(__file__).resolve().parent.parent / "experiments.toml"
P = Path("exp.toml")
ONE = '[[experiments]]\nname = "a"\n'
SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
STUDY_NAMES = ["ddpm-linear", "ddpm-cosine", "ddpm-constant", "ddpm-inverse-linear"]
STUDY_KINDS = ["linear", "cosine", "constant", "inverse_linear"]
ALL_NAMES = STUDY_NAMES + ["ddpm-unet-cosine", "morph-linear", "morph-cosine"]


def error(text: str, profile: str | None = None, path: Path = P) -> str:
    """The message of the ConfigError that parsing ``text`` raises; it must be one line that
    starts with the file's name."""
    with pytest.raises(ConfigError) as info:
        parse_experiments(text, path, profile)
    msg = str(info.value)
    assert "\n" not in msg and "\r" not in msg, msg
    assert msg.startswith(f"{path.name}: "), msg
    return msg


def assert_names(msg: str, key: str, *expected: str) -> None:
    """``msg`` names ``key`` as the key path (followed by what was expected) and every fragment
    of ``expected``."""
    assert f"{P.name}: {key}: expected " in msg, msg
    for frag in expected:
        assert frag in msg, (frag, msg)


def runs(text: str, profile: str | None = None) -> dict[str, RunSpec]:
    return {r.name: r for r in parse_experiments(text, P, profile).runs}


# --- the repo's study --------------------------------------------------------------------


def repo_runs(profile=None):
    return load_experiments(REPO_STUDY, profile).runs


def test_repo_study_is_the_whole_study_at_its_settings():
    study = load_experiments(REPO_STUDY)
    assert [r.name for r in study.runs] == ALL_NAMES
    by_name = {r.name: r for r in study.runs}
    for r in study.runs:
        assert r.experiment == r.name and r.profile == ""
        assert r.training.epochs == 50
        assert r.training.lr == 2e-4
        assert r.training.batch_size == 128
        assert r.schedule.T == 1000
        assert r.schedule.beta_min == 1e-4 and r.schedule.beta_max == 0.02
        assert r.schedule.max_beta == 0.1
    for name, kind in zip(STUDY_NAMES, STUDY_KINDS):  # DDPM with the study's CNN
        r = by_name[name]
        assert r.degradation == "gaussian" and r.schedule.kind == kind
        assert r.network.kind == "cnn" and r.network.channels == [16, 32, 32, 16]
        assert (r.evaluation.sampler, r.evaluation.final_sampler) == ("ddim", "ddpm")
    unet = by_name["ddpm-unet-cosine"]  # DDPM with the UNet
    assert unet.degradation == "gaussian" and unet.schedule.kind == "cosine"
    assert unet.network.kind == "unet" and unet.network.unet_channels == [32, 64, 128]
    for name, kind in (("morph-linear", "linear"), ("morph-cosine", "cosine")):  # cold diffusion
        r = by_name[name]
        assert r.degradation == "morph" and r.schedule.kind == kind
        assert r.network.kind == "unet" and r.network.unet_channels == [32, 64, 128]
        ev = r.evaluation
        assert (ev.sampler, ev.final_sampler, ev.morph_latent) == (
            "iterative",
            "iterative",
            "estimate",
        )
        assert ev.steps == 1000  # all T steps: the exact iterative algorithm
    assert {"quick", "digits"} <= set(study.profiles)


def test_repo_quick_profile_keeps_every_run_and_lowers_epochs():
    quick = repo_runs("quick")
    study = {r.name: r for r in repo_runs()}
    assert [r.name for r in quick] == ALL_NAMES
    for r in quick:
        full = study[r.name]
        assert r.profile == "quick"
        assert 1 <= r.training.epochs < 50
        # what the profile does not touch stays at the study's settings
        assert r.training.lr == 2e-4 and r.schedule == full.schedule
        assert r.degradation == full.degradation and r.network.kind == full.network.kind
        assert r.network.channels == [16, 32, 32, 16]
        assert r.network.unet_channels == [16, 32, 64]  # half the study's UNet
        assert r.evaluation.sampler == full.evaluation.sampler
        assert r.evaluation.final_sampler == "same" and r.evaluation.steps == 10


def test_repo_digits_profile_selects_its_listed_experiments():
    listed = tomllib.loads(REPO_STUDY.read_text())["profiles"]["digits"]["experiments"]
    assert listed and set(listed) < set(STUDY_NAMES)
    digits = repo_runs("digits")
    assert [r.experiment for r in digits] == [n for n in STUDY_NAMES if n in listed]
    assert all(r.profile == "digits" and r.network.kind == "unet" for r in digits)


# --- bad input: one line, file name, key path, what was expected ---------------------------

BAD = [
    # unknown keys
    (
        "bogus = 1\n" + ONE,
        "bogus",
        "top-level tables defaults, experiments, hosts, profiles, studies",
    ),
    ("[defaults]\nfoo = 1\n" + ONE, "defaults.foo", "degradation", "training"),
    (
        "[defaults.training]\nlearning_rate = 1e-3\n" + ONE,
        "defaults.training.learning_rate",
        "one of the keys",
        "lr",
    ),
    (ONE + "epochs = 3\n", "experiments[0] (a).epochs", "one of the keys", "training"),
    (ONE + "training = { nope = 1 }\n", "experiments[0] (a).training.nope", "lr", "epochs"),
    (ONE + "[profiles.quick]\nfoo = 1\n", "profiles.quick.foo", "one of the keys", "experiments"),
    (
        ONE + '[profiles.quick]\nschedule = { kind = "linear", tee = 5 }\n',
        "profiles.quick.schedule.tee",
        "one of the keys",
        "T",
    ),
    ("[defaults]\ntraining = 5\n" + ONE, "defaults.training", "a table", "got 5"),
    # wrong types
    (
        ONE + 'training = { epochs = "10" }\n',
        "experiments[0] (a).training.epochs",
        "an integer",
        "got '10'",
    ),
    (
        ONE + "training = { epochs = true }\n",
        "experiments[0] (a).training.epochs",
        "an integer",
        "got true",
    ),
    (
        ONE + "training = { batch_size = 64.0 }\n",
        "experiments[0] (a).training.batch_size",
        "an integer",
        "got 64.0",
    ),
    (ONE + 'training = { lr = "fast" }\n', "experiments[0] (a).training.lr", "a number"),
    (
        ONE + 'network = { channels = ["a", "b"] }\n',
        "experiments[0] (a).network.channels",
        "a list of integers",
    ),
    (ONE + 'data = { download = "yes" }\n', "experiments[0] (a).data.download", "true or false"),
    # out of range
    (ONE + "training = { lr = 0 }\n", "experiments[0] (a).training.lr", "a number in (0, 10]"),
    (ONE + "training = { lr = -1e-3 }\n", "experiments[0] (a).training.lr", "(0, 10]", "-0.001"),
    (
        ONE + "training = { epochs = 0 }\n",
        "experiments[0] (a).training.epochs",
        "an integer in [1, 100000]",
        "got 0",
    ),
    (
        ONE + "data = { val_fraction = 0.9 }\n",
        "experiments[0] (a).data.val_fraction",
        "(0, 0.5]",
        "got 0.9",
    ),
    (ONE + "schedule = { T = 0 }\n", "experiments[0] (a).schedule.T", "[1, 100000]", "got 0"),
    ("[defaults.training]\nepochs = -5\n" + ONE, "defaults.training.epochs", "an integer in"),
    # a profile that is not selected is still validated
    (
        ONE + "[profiles.quick]\ntraining = { epochs = 0 }\n",
        "profiles.quick.training.epochs",
        "an integer in [1, 100000]",
    ),
    # unknown schedule
    (
        '[defaults.schedule]\nkind = "sigmoid"\n' + ONE,
        "defaults.schedule.kind",
        "'linear', 'cosine', 'constant', 'inverse_linear'",
        "got 'sigmoid'",
    ),
    (
        ONE + 'schedule = { kind = "quadratic" }\n',
        "experiments[0] (a).schedule.kind",
        "'linear', 'cosine', 'constant', 'inverse_linear'",
        "got 'quadratic'",
    ),
    # names
    (ONE + ONE, "experiments[1] (a).name", "a name used once", '"a"', "experiments[0] (a)"),
    (
        ONE + 'sweep = { "training.lr" = [1e-3, 1e-3] }\n',
        "experiments[0] (a).sweep",
        "values that give distinct run names",
        '"a-lr0.001" comes twice',
    ),
    (
        '[[experiments]]\nname = "a-lr0.001"\n' + ONE + 'sweep = { "training.lr" = [1e-3] }\n',
        "experiments[1] (a).name",
        "a name used once",
        "a-lr0.001",
        "experiments[0] (a-lr0.001)",
    ),
    ('[[experiments]]\nschedule = { kind = "linear" }\n', "experiments[0].name", "a name"),
    ("[[experiments]]\nname = 3\n", "experiments[0].name", "a safe folder name", "got 3"),
    ("[defaults]\n", "experiments", "at least one [[experiments]] table"),
    ("experiments = []\n", "experiments", "at least one [[experiments]] table", "got []"),
    ("experiments = 3\n", "experiments", "at least one [[experiments]] table", "got 3"),
    # profiles restricting to an unknown experiment
    (
        ONE + '[profiles.p]\nexperiments = ["zzz"]\n',
        "profiles.p.experiments",
        "names of experiments in this file",
        "'zzz'",
    ),
    (
        ONE + "[profiles.p]\nexperiments = []\n",
        "profiles.p.experiments",
        "a non-empty list of experiment names",
    ),
    # sweeps
    (
        ONE + 'sweep = { "training.nope" = [1, 2] }\n',
        "experiments[0] (a).sweep.training.nope",
        "section.key",
    ),
    (ONE + 'sweep = { "lr" = [1e-3, 2e-4] }\n', "experiments[0] (a).sweep.lr", "section.key"),
    (
        ONE + 'sweep = { "training.lr" = [] }\n',
        "experiments[0] (a).sweep.training.lr",
        "a non-empty list of values",
    ),
    (
        ONE + 'sweep = { "training.lr" = 1e-3 }\n',
        "experiments[0] (a).sweep.training.lr",
        "a non-empty list of values",
    ),
    (ONE + "sweep = {}\n", "experiments[0] (a).sweep", "at least one"),
    (
        ONE + 'sweep = { "training.lr" = [1e-3, -1e-3] }\n',
        "experiments[0] (a).sweep.training.lr",
        "a number in (0, 10]",
        "got -0.001",
    ),
    (
        ONE + 'sweep = { "training.epochs" = ["ten epochs"] }\n',
        "experiments[0] (a).sweep.training.epochs",
        "an integer",
        "got 'ten epochs'",
    ),
    (
        ONE + 'sweep = { "data.idx_dir" = ["../x"] }\n',
        "experiments[0] (a).sweep",
        "safe folder name",
        "a-idx_dir../x",
    ),
    # cross-checks
    (
        ONE + 'schedule = { kind = "linear", beta_min = 0.05, beta_max = 0.02 }\n',
        "experiments[0] (a).schedule.beta_min",
        "<= beta_max (0.02)",
        "got 0.05",
    ),
    (
        ONE + 'schedule = { kind = "inverse_linear", beta_min = 0.05, beta_max = 0.02 }\n',
        "experiments[0] (a).schedule.beta_min",
        "<= beta_max",
    ),
    (
        ONE + "schedule = { T = 10 }\nevaluation = { steps = 50 }\n",
        "experiments[0] (a).evaluation.steps",
        "at most schedule.T (10)",
        "got 50",
    ),
    (
        ONE + 'schedule = { T = 10 }\nevaluation = { sampler = "ddpm", final_sampler = "ddim", '
        "steps = 50 }\n",
        "experiments[0] (a).evaluation.steps",
        "at most schedule.T (10)",
    ),
    (
        ONE + 'network = { kind = "unet", unet_channels = [32, 64] }\n',
        "experiments[0] (a).network.unet_channels",
        "three integers >= 1",
        "got [32, 64]",
    ),
    (
        ONE + '[profiles.u]\nnetwork = { kind = "unet", unet_channels = [32, 64, 128, 256] }\n',
        "profiles.u.network.unet_channels",
        "three integers",
    ),
    # samplers and latents of each degradation
    (
        ONE + 'degradation = "morph"\n',
        "experiments[0] (a).evaluation.sampler",
        "one of 'iterative', 'direct' for the morph degradation",
        "got 'ddim'",
    ),
    (
        ONE + 'degradation = "morph"\nevaluation = { sampler = "direct" }\n',
        "experiments[0] (a).evaluation.final_sampler",
        "one of 'iterative', 'direct', 'same' for the morph degradation",
        "got 'ddpm'",
    ),
    (
        ONE + 'evaluation = { sampler = "iterative" }\n',
        "experiments[0] (a).evaluation.sampler",
        "one of 'ddim', 'ddpm', 'dpm++' for the gaussian degradation",
        "got 'iterative'",
    ),
    (
        ONE + 'evaluation = { final_sampler = "direct" }\n',
        "experiments[0] (a).evaluation.final_sampler",
        "'ddim', 'ddpm', 'dpm++', 'same' for the gaussian",
    ),
    (
        ONE + 'evaluation = { morph_latent = "end" }\n',
        "experiments[0] (a).evaluation.morph_latent",
        "one of 'estimate', 'start'",
        "got 'end'",
    ),
    (ONE + 'degradation = "cold"\n', "experiments[0] (a).degradation", "'gaussian', 'morph'"),
    (
        ONE + 'degradation = "morph"\nschedule = { T = 10 }\nevaluation = { sampler = "iterative", '
        'final_sampler = "same", steps = 50 }\n',
        "experiments[0] (a).evaluation.steps",
        "at most schedule.T (10)",
    ),
    # hosts, and where runs and studies go
    (ONE + '[hosts.gpu1]\nuser = "me"\n', "hosts.gpu1.address", "the host's name, IP or"),
    (ONE + '[hosts.gpu1]\naddress = "g"\nport = 0\n', "hosts.gpu1.port", "[1, 65535]", "got 0"),
    (ONE + '[hosts.gpu1]\naddress = "g"\ngpus = [0, 0]\n', "hosts.gpu1.gpus", "distinct GPU"),
    (ONE + '[hosts.gpu1]\naddress = "g"\ngpus = "0"\n', "hosts.gpu1.gpus", "a list of integers"),
    (
        ONE + '[hosts.gpu1]\naddress = "g"\npartition = "gpu"\n',
        "hosts.gpu1.partition",
        "only the keys of a kind = 'ssh' host",
    ),
    (
        ONE + '[hosts.c]\nkind = "slurm"\nslots = 2\n',
        "hosts.c.slots",
        "only the keys of a kind = 'slurm' host",
    ),
    (ONE + '[hosts.c]\nkind = "slurm"\ntime = "4h"\n', "hosts.c.time", "a Slurm time limit"),
    (ONE + '[hosts.c]\nkind = "pbs"\n', "hosts.c.kind", "one of 'ssh', 'slurm'"),
    (
        ONE + '[hosts.c]\nkind = "slurm"\nsbatch = "--x"\n',
        "hosts.c.sbatch",
        "a list of long sbatch",
    ),
    (
        ONE + '[hosts.c]\nkind = "slurm"\nsbatch = ["-C a100"]\n',
        "hosts.c.sbatch",
        '"--name" or "--name=value"',
        "got ['-C a100']",
    ),
    (
        ONE + '[hosts.c]\nkind = "slurm"\nworkdir = "~/d"\n',
        "hosts.c.workdir",
        "no workdir on a cluster without an address",
        "got '~/d'",
    ),
    (ONE + '[hosts.local]\naddress = "g"\n', "hosts.local", "other than 'local'"),
    (ONE + 'host = "gpu9"\n', "experiments[0] (a).host", "one of 'local'", "got 'gpu9'"),
    (
        ONE + 'host = []\n[hosts.g]\naddress = "g"\n',
        "experiments[0] (a).host",
        "one of 'local', 'g'",
    ),
    (ONE + 'host = ["local", "local"]\n', "experiments[0] (a).host", "distinct host names"),
    (ONE + "[profiles.u]\nhost = 3\n", "profiles.u.host", "a host name", "got 3"),
]


@pytest.mark.parametrize("case", BAD, ids=[f"{i}-{c[1]}" for i, c in enumerate(BAD)])
def test_bad_input_gives_one_line_naming_file_key_and_expectation(case):
    text, key, *expected = case
    profile = "u" if "[profiles.u]" in text else None
    assert_names(error(text, profile), key, *expected)


def test_hosts_are_read_with_their_defaults_and_runs_carry_where_they_may_go():
    text = (
        ONE + 'host = ["gpu1", "local"]\n[[experiments]]\nname = "b"\n'
        '[hosts.gpu1]\naddress = "gpu1.lab"\ngpus = [0, 1]\n'
        '[hosts.cluster]\nkind = "slurm"\npartition = "gpu"\n'
        '[profiles.c]\nhost = "cluster"\n'
    )
    study = parse_experiments(text, Path("exp.toml"))
    gpu1, cluster = study.hosts["gpu1"], study.hosts["cluster"]
    assert (gpu1.kind, gpu1.address, gpu1.port, gpu1.gpus, gpu1.workdir) == (
        "ssh",
        "gpu1.lab",
        22,
        [0, 1],
        "~/diffui",
    )
    assert (cluster.kind, cluster.partition, cluster.time, cluster.max_jobs) == (
        "slurm",
        "gpu",
        "04:00:00",
        20,
    )
    assert [r.host for r in study.runs] == [["gpu1", "local"], ["local"]]
    assert [r.host for r in parse_experiments(text, Path("exp.toml"), "c").runs] == [
        ["cluster"]
    ] * 2
    # where a run goes is not what it is: a run folder does not record it
    assert "host" not in study.runs[0].to_dict()


@pytest.mark.parametrize("name", ["../x", "/", "", ".hidden", "a/b", "..", "-a", "a b", "x" * 101])
def test_unsafe_names_are_rejected(name):
    msg = error(f'[[experiments]]\nname = "{name}"\n')
    assert_names(msg, "experiments[0].name", "a safe folder name")
    assert f"got {name!r}"[:40] in msg


@pytest.mark.parametrize("name", ["a", "ddpm-linear", "A.b_c-9", "x" * 100])
def test_safe_names_are_accepted(name):
    assert list(runs(f'[[experiments]]\nname = "{name}"\n')) == [name]


def test_a_profile_restricting_to_an_unknown_experiment_fails_when_selected_too():
    text = ONE + '[[experiments]]\nname = "b"\n[profiles.p]\nexperiments = ["b", "c"]\n'
    assert_names(error(text, "p"), "profiles.p.experiments", "names of experiments", "got 'c'")


def test_boundary_values_are_accepted():
    r = runs(
        ONE + "data = { val_fraction = 0.5 }\ntraining = { epochs = 1, lr = 10 }\n"
        "schedule = { T = 1 }\nevaluation = { steps = 1 }\n"
    )["a"]
    assert (r.data.val_fraction, r.training.epochs, r.training.lr) == (0.5, 1, 10)
    # beta_min > beta_max only matters for the schedules that use them
    assert runs(ONE + 'schedule = { kind = "cosine", beta_min = 0.05, beta_max = 0.02 }\n')


def test_invalid_toml_names_the_file_and_the_place():
    msg = error(ONE + "training = { lr = \n")
    assert "not valid TOML" in msg and "line 3" in msg


def test_a_line_break_in_a_quoted_key_still_gives_one_line():
    msg = error('"x\\ny" = 1\n' + ONE)
    assert "top-level tables" in msg


def test_unknown_profile_lists_the_defined_ones():
    text = ONE + "[profiles.quick]\ntraining = { epochs = 1 }\n[profiles.digits]\n"
    msg = error(text, "fast")
    assert "profiles.fast" in msg and "quick, digits" in msg
    assert "none defined" in error(ONE, "quick")


def test_load_study_error_names_the_actual_file(tmp_path):
    f = tmp_path / "my-study.toml"
    f.write_text(ONE + "training = { epochs = 0 }\n")
    with pytest.raises(ConfigError) as info:
        load_experiments(f)
    assert str(info.value).startswith("my-study.toml: experiments[0] (a).training.epochs: ")


def test_load_study_on_a_missing_file(tmp_path):
    f = tmp_path / "nope" / "exp.toml"
    with pytest.raises(ConfigError) as info:
        load_experiments(f)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{f}: ") and "no such file" in msg


# --- sweeps ------------------------------------------------------------------------------


SWEEP = (
    ONE + "training = { epochs = 7 }\n"
    'sweep = { "training.lr" = [1e-3, 2e-4], "training.batch_size" = [32, 64] }\n'
    '[[experiments]]\nname = "b"\n'
)


def test_a_2x2_sweep_gives_four_runs_with_distinct_safe_names_and_their_settings():
    study = parse_experiments(SWEEP, P)
    swept = [r for r in study.runs if r.experiment == "a"]
    assert len(swept) == 4 and len({r.name for r in swept}) == 4
    assert {(r.training.lr, r.training.batch_size) for r in swept} == {
        (1e-3, 32),
        (1e-3, 64),
        (2e-4, 32),
        (2e-4, 64),
    }
    for r in swept:
        assert SAFE.fullmatch(r.name) and r.name.startswith("a-"), r.name
        assert f"lr{r.training.lr:g}" in r.name and f"batch_size{r.training.batch_size}" in r.name
        assert r.training.epochs == 7  # the experiment's own setting is kept
    # the sweep belongs to its experiment only
    b = [r for r in study.runs if r.experiment == "b"]
    assert [r.name for r in b] == ["b"] and b[0].training.lr == 2e-4
    assert b[0].training.batch_size == 128


def test_a_sweep_over_lists_gives_distinct_runs():
    rs = runs(ONE + 'sweep = { "network.channels" = [[8, 16], [16, 32, 64]] }\n')
    assert len(rs) == 2
    assert sorted(r.network.channels for r in rs.values()) == [[8, 16], [16, 32, 64]]
    assert all(SAFE.fullmatch(n) for n in rs)


def test_a_swept_combination_is_cross_checked():
    text = ONE + 'schedule = { T = 20 }\nsweep = { "evaluation.steps" = [10, 30] }\n'
    assert_names(error(text), "experiments[0] (a).evaluation.steps", "at most schedule.T (20)")


def test_a_profile_restricts_by_experiment_so_sweeps_come_whole():
    rs = runs(SWEEP + '[profiles.p]\nexperiments = ["a"]\n', "p")
    assert len(rs) == 4 and {r.experiment for r in rs.values()} == {"a"}


# --- precedence: defaults < experiment < profile -----------------------------------------


PRECEDENCE = """
[defaults.training]
epochs = 10
lr = 1e-3
batch_size = 16
[[experiments]]
name = "a"
training = { lr = 5e-4, batch_size = 32 }
[[experiments]]
name = "b"
[profiles.p]
training = { batch_size = 8 }
"""


def test_precedence_defaults_then_experiment_then_profile():
    plain = runs(PRECEDENCE)
    assert (plain["a"].training.epochs, plain["a"].training.lr, plain["a"].training.batch_size) == (
        10,
        5e-4,
        32,
    )
    assert (plain["b"].training.epochs, plain["b"].training.lr, plain["b"].training.batch_size) == (
        10,
        1e-3,
        16,
    )
    assert plain["a"].training.seed == 0  # untouched keys keep the built-in default
    prof = runs(PRECEDENCE, "p")
    assert (prof["a"].training.lr, prof["a"].training.batch_size) == (5e-4, 8)
    assert (prof["b"].training.lr, prof["b"].training.batch_size) == (1e-3, 8)
    assert prof["a"].training.epochs == 10
    assert {r.profile for r in prof.values()} == {"p"}


def test_a_profile_overrides_do_not_leak_between_parses():
    runs(PRECEDENCE, "p")
    assert runs(PRECEDENCE)["b"].training.batch_size == 16


# --- select ------------------------------------------------------------------------------


def test_select_by_run_name_and_by_experiment_name():
    study = parse_experiments(SWEEP, P)
    assert select(study, None) == study.runs and select(study, []) == study.runs
    one = study.runs[1].name
    assert [r.name for r in select(study, [one])] == [one]
    assert [r.name for r in select(study, ["a"])] == [r.name for r in study.runs[:4]]
    assert [r.name for r in select(study, ["b", one])] == [one, "b"]


def test_select_an_unknown_name_lists_the_known_ones():
    study = parse_experiments(SWEEP, P)
    with pytest.raises(ConfigError) as info:
        select(study, ["a", "zzz"])
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("exp.toml: ") and "zzz" in msg
    for known in ["a", "b", *(r.name for r in study.runs)]:
        assert known in msg


# --- RunSpec <-> TOML --------------------------------------------------------------------


def test_spec_toml_round_trip_is_exact():
    specs = repo_runs() + repo_runs("digits") + list(runs(SWEEP).values())
    for spec in specs:
        back = spec_from_toml(spec_to_toml(spec))
        assert back == spec
        assert repr(back.to_dict()) == repr(spec.to_dict())  # types too (1e-3 vs 1, lists)
    # the round trip carries what differs between specs
    a, b = specs[0], specs[1]
    assert spec_from_toml(spec_to_toml(a)) != spec_from_toml(spec_to_toml(b))


def test_a_profile_of_some_experiments_is_checked_against_those_only():
    text = (
        ONE + '[[experiments]]\nname = "m"\ndegradation = "morph"\n'
        'evaluation = { sampler = "iterative", final_sampler = "same" }\n'
        '[profiles.p]\nexperiments = ["a"]\nevaluation = { final_sampler = "ddpm" }\n'
    )
    assert list(runs(text)) == ["a", "m"]
    assert runs(text)["m"].evaluation.morph_latent == "estimate"  # the default
    assert list(runs(text, "p")) == ["a"]  # 'ddpm' would not do for the morph run m
    assert_names(
        error(text.replace('["a"]', '["a", "m"]'), "p"),
        "experiments[1] (m).evaluation.final_sampler",
        "for the morph degradation",
    )


STUDIES = """
[defaults.schedule]
T = 40
[defaults.evaluation]
steps = 4
[[experiments]]
name = "m"
degradation = "morph"
evaluation = { sampler = "iterative", final_sampler = "same" }
[[experiments]]
name = "g"
[[studies]]
name = "m-noise"
run = "m"
kind = "noise"
values = [0, 0.01]
n = 200
[[studies]]
name = "g-interp"
run = "g"
kind = "interpolation"
values = [1, 5]
[profiles.quick]
experiments = ["m"]
study = { n = 50 }
"""


def test_studies_are_read_resolved_against_their_runs_and_overridden_by_profiles(tmp_path):
    from engine.spec.specs import StudySpec, spec_from_toml, spec_to_toml

    f = tmp_path / "exp.toml"
    f.write_text(STUDIES)
    full = load_experiments(f)
    assert [(s.name, s.run, s.kind, s.values, s.degradation, s.keys.n) for s in full.studies] == [
        ("m-noise", "m", "noise", [0, 0.01], "morph", 200),
        ("g-interp", "g", "interpolation", [1, 5], "gaussian", 1000),
    ]
    quick = load_experiments(f, "quick")  # its runs only, its study settings
    assert [(s.name, s.keys.n, s.profile) for s in quick.studies] == [("m-noise", 50, "quick")]
    s = quick.studies[0]
    assert isinstance(s, StudySpec) and spec_from_toml(spec_to_toml(s)) == s


@pytest.mark.parametrize(
    "change, message",
    [
        (
            ('kind = "noise"', 'kind = "blur"'),
            "studies[0] (m-noise).kind: expected one of 'noise', 'interpolation', 'gmm', got 'blur'",
        ),
        (
            ('kind = "interpolation"', 'kind = "gmm"'),
            "studies[1] (g-interp).kind: expected one of 'noise', 'interpolation' for a run of the "
            "gaussian degradation (gmm fits a mixture to FashionMNIST latents), got 'gmm'",
        ),
        (
            ('run = "m"', 'run = "zz"'),
            "studies[0] (m-noise).run: expected the name of a run of this file (have: m, g), got 'zz'",
        ),
        (
            ('run = "m"', 'run = ["m"]'),  # a list is no name (it was a TypeError: unhashable)
            "studies[0] (m-noise).run: expected the name of a run of this file (have: m, g), got ['m']",
        ),
        (
            ("values = [1, 5]", "values = [1.5]"),
            "studies[1] (g-interp).values: expected integers from 1 to 1000 "
            "(N latents averaged), got 1.5",
        ),
        (  # a mixture of more components than a fit can take in time and memory
            ('kind = "noise"\nvalues = [0, 0.01]', 'kind = "gmm"\nvalues = [10, 101]'),
            "studies[0] (m-noise).values: expected integers from 1 to 100 "
            "(mixture components), got 101",
        ),
        (
            ("values = [0, 0.01]", "values = [-1]"),
            "studies[0] (m-noise).values: expected numbers from 0 to below 1,000,000 (λ), got -1",
        ),
        (("n = 200", "n = 1"), "studies[0] (m-noise).n: expected an integer in [2, 100000], got 1"),
        (
            ("n = 200", 'sampler = "ddim"'),
            "studies[0] (m-noise).sampler: expected one of "
            "'iterative', 'direct' for the morph degradation, got 'ddim'",
        ),
        (
            ("n = 200", "steps = 41"),
            "studies[0] (m-noise).steps: expected at most the run's schedule.T (40), got 41",
        ),
        (
            ("n = 200", "nn = 1"),
            "studies[0] (m-noise).nn: expected one of the keys n, n_grid, seed, "
            "sampler, steps, covariance, pca",
        ),
        (
            ('name = "g-interp"', 'name = "m-noise"'),
            "studies[1] (m-noise).name: expected a name used once among the studies",
        ),
        (
            ('experiments = ["m"]', 'studies = ["nope"]'),
            "profiles.quick.studies: expected names of studies in this file, got 'nope'",
        ),
    ],
)
def test_bad_study_tables_are_refused_in_one_line(tmp_path, change, message):
    f = tmp_path / "exp.toml"
    f.write_text(STUDIES.replace(*change))
    with pytest.raises(ConfigError) as err:
        load_experiments(f)
    assert str(err.value) == f"exp.toml: {message}"
