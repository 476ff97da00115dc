"""Shared fixtures: a tiny study that runs the real code paths in seconds."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

TINY = """
[defaults.data]
train_subset = {subset}
[defaults.schedule]
T = 40
[defaults.training]
epochs = {epochs}
batch_size = 32
seed = {seed}
progress_every = 0.05
[defaults.evaluation]
grid_epochs = [1]
steps = 4
n_grid = 4
{extra}
[[experiments]]
name = "{name}"
"""


def tiny_study(path: Path, name: str = "tiny", epochs: int = 2, subset: int = 256, seed: int = 0,
               extra: str = "") -> Path:
    path.write_text(TINY.format(name=name, epochs=epochs, subset=subset, seed=seed, extra=extra))
    return path


def wait_for(predicate, timeout: float = 60.0, every: float = 0.05):
    """Poll ``predicate`` until it is truthy; fail the test after ``timeout`` seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"condition not met within {timeout} s")


@pytest.fixture
def study_file(tmp_path):
    return tiny_study(tmp_path / "exp.toml")
