"""The component registry (engine/spec/registry.py, engine/spec/components.py): unknown names, a new
schedule added as one entry, and the README's table of keys against the schema."""
from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

import pytest
import torch

from engine.spec import registry
from engine.spec.components import (DEGRADATIONS, NETWORKS, SAMPLERS, SCHEDULES, ScheduleEntry)
from engine.spec.sections import SECTIONS, section_class
from engine.spec.checks import ConfigError
from engine.spec.specs import RunSpec, spec_from_toml, spec_to_toml
from engine.spec.experiments import parse_experiments
from engine.diffusion.schedules import from_spec, make_schedule

README = Path(__file__).resolve().parent.parent / "README.md"
P = Path("exp.toml")
ONE = '[[experiments]]\nname = "a"\n'


def error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_experiments(text, P)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("exp.toml: "), msg
    return msg


@pytest.mark.parametrize("reg, name, known", [
    (SCHEDULES, "sigmoid", "linear, cosine, constant, inverse_linear"),
    (NETWORKS, "mlp", "cnn, unet"),
    (DEGRADATIONS, "blur", "gaussian, morph"),
    (SAMPLERS, "euler", "ddim, ddpm, iterative, direct"),
])
def test_unknown_names_raise_one_line_listing_the_known_ones(reg, name, known):
    with pytest.raises(registry.UnknownName) as info:
        reg.get(name)
    assert str(info.value) == f"unknown {reg.what} {name!r}; expected one of {known}"
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("text, message", [
    (ONE + 'schedule = { kind = "sigmoid" }\n',
     "exp.toml: experiments[0] (a).schedule.kind: expected one of 'linear', 'cosine', "
     "'constant', 'inverse_linear', got 'sigmoid'"),
    (ONE + 'network = { kind = "mlp" }\n',
     "exp.toml: experiments[0] (a).network.kind: expected one of 'cnn', 'unet', got 'mlp'"),
    (ONE + 'degradation = "blur"\n',
     "exp.toml: experiments[0] (a).degradation: expected one of 'gaussian', 'morph', got 'blur'"),
    (ONE + 'evaluation = { sampler = "euler" }\n',
     "exp.toml: experiments[0] (a).evaluation.sampler: expected one of 'ddim', 'ddpm', "
     "'iterative', 'direct', got 'euler'"),
])
def test_config_rejects_unknown_names_with_the_same_line_as_before(text, message):
    assert error(text) == message


def test_degradations_declare_samplers_inputs_and_figures():
    g, m = DEGRADATIONS.get("gaussian"), DEGRADATIONS.get("morph")
    assert (g.samplers, g.figures, g.check_inputs) == (("ddim", "ddpm"), ("diffusion",), None)
    assert m.samplers == ("iterative", "direct") and callable(m.check_inputs)
    assert m.figures == ("restoration", "direct-vs-iterative")
    assert all(s in SAMPLERS for d in DEGRADATIONS for s in d.samplers)


@dataclasses.dataclass(frozen=True)
class SigmoidParams:
    tau: float = registry.key(3.0, registry.number(0, 100, lo_open=True), "sigmoid steepness")
    beta_max: float = registry.key(0.02, registry.number(0, 1, lo_open=True, hi_open=True))


def sigmoid_betas(T, p):
    t = torch.linspace(-p.tau, p.tau, T, dtype=torch.float64)
    return p.beta_max * torch.sigmoid(t)


@pytest.fixture
def sigmoid():
    """A new schedule: one entry, registered here, with a key of its own (``tau``) and one it
    shares with linear (``beta_max``, same default)."""
    SCHEDULES.register(ScheduleEntry("sigmoid", SigmoidParams, sigmoid_betas))
    try:
        yield
    finally:
        SCHEDULES.unregister("sigmoid")


def test_a_new_schedule_is_one_entry(sigmoid, tmp_path):
    text = ONE + 'schedule = { kind = "sigmoid", tau = 2.0, T = 50 }\n'
    spec = parse_experiments(text, P).runs[0]
    assert (spec.schedule.kind, spec.schedule.tau, spec.schedule.T) == ("sigmoid", 2.0, 50)
    assert spec.schedule.params() == SigmoidParams(tau=2.0)
    sch = from_spec(spec.schedule)
    assert sch.T == 50 and torch.equal(sch.betas[1:], sigmoid_betas(50, SigmoidParams(2.0)))
    assert torch.equal(make_schedule("sigmoid", 50, tau=2.0).alpha_bar, sch.alpha_bar)
    assert spec_from_toml(spec_to_toml(spec)) == spec
    # its key is validated like every other, and other kinds accept it too (flat table)
    assert error(ONE + 'schedule = { kind = "sigmoid", tau = 0 }\n') == (
        "exp.toml: experiments[0] (a).schedule.tau: expected a number in (0, 100], got 0")
    assert parse_experiments(ONE, P).runs[0].schedule.tau == 3.0


def test_without_the_entry_its_name_and_key_are_unknown():
    assert "sigmoid" not in SCHEDULES and "tau" not in section_class("schedule").keys()
    assert "one of the keys" in error(ONE + "schedule = { tau = 2.0 }\n")


def test_old_config_toml_gets_defaults_for_missing_keys():
    old = {"name": "x", "degradation": "gaussian", "schedule": {"kind": "cosine", "T": 10},
           "network": {"kind": "cnn"}, "training": {"epochs": 3}}
    spec = RunSpec.from_dict(old)
    assert (spec.schedule.max_beta, spec.network.channels, spec.training.epochs) == (0.1, [16, 32, 32, 16], 3)
    assert spec.evaluation.n_grid == 25 and spec.experiment == "x"


# --- the README's table of keys --------------------------------------------------------------


def readme_rows() -> list[tuple[str, list[str], list[str], str]]:
    lines = README.read_text().splitlines()
    start = lines.index("| section | key | default | meaning |") + 2
    rows, section = [], ""
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        section = cells[0].strip("`") or section
        rows.append((section, re.findall(r"`([^`]*)`", cells[1]), re.findall(r"`([^`]*)`", cells[2]),
                     cells[3]))
    return rows


def test_readme_table_has_every_key_with_its_default_and_nothing_else():
    documented = {}
    for section, keys, defaults, _meaning in readme_rows():
        assert len(keys) == len(defaults), (section, keys, defaults)
        for k, d in zip(keys, defaults):
            documented[(section, k)] = tomllib.loads(f"v = {d}")["v"]
    schema = {("(top)", "degradation"): "gaussian"}
    schema |= {(s, k): v[0] for s in SECTIONS for k, v in section_class(s).keys().items()}
    assert set(documented) == set(schema), set(documented) ^ set(schema)
    for where, default in schema.items():
        assert documented[where] == default, (where, documented[where], default)


def test_readme_table_names_every_registered_kind():
    meaning = {(s, tuple(k)): m for s, k, _, m in readme_rows()}
    for where, reg in ((("schedule", ("kind",)), SCHEDULES), (("network", ("kind",)), NETWORKS),
                       (("(top)", ("degradation",)), DEGRADATIONS)):
        assert all(f"`{n}`" in meaning[where] for n in reg.names()), (where, meaning[where])


def test_the_edit_dialog_describes_keys_from_the_schema():
    from engine.spec.edit import key_help
    assert key_help("schedule.max_beta") == \
        "default 0.1 (cosine beta cap (0.1 in the study, 0.999 in the paper))"
    assert key_help("training").startswith("keys of [training]: epochs, batch_size, lr")
    assert key_help("training.epoch").startswith("keys of [training]: epochs")
    assert key_help("nonsense.key") == ""
