"""What a report reads of a run folder besides its events: the arrays the worker wrote (sample
grids, the process figures' images, a sampling study's values), each checked as it is loaded.

Nothing here loads a checkpoint, a dataset or a network (nor imports torch): a run trained on a
remote GPU box reports from a copy of its folder without its checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path
from stat import S_ISREG
from typing import TypeVar, cast

import numpy as np

from engine.rundir.events import Event, Samples, latest_by_epoch
from engine.rundir.events import Figure as FigureEvent
from engine.rundir.events import Value as ValueEvent
from engine.rundir.progress import study_values
from engine.rundir.run import DamagedRun, Run
from engine.text import one_line

E = TypeVar("E", bound=Event)


def by_epoch(run: Run, kind: type[E]) -> dict[int, E]:
    """The last event of class ``kind`` of each epoch of ``run`` (see ``latest_by_epoch``)."""
    return cast(dict[int, E], latest_by_epoch(run.events(), kind))


MAX_BYTES = 1 << 30  # of one array file (a study of n = 100,000 writes 314 MB)
MAX_PANELS = 400  # images of a process figure (the worker's have at most 8 x 10)


def load_array(path: Path, ndim: int | None = None) -> np.ndarray:
    """Images of a run folder's ``.npy`` file (..., 28, 28) in [0, 1], with ``ndim`` axes when
    given (3: N images, 4: rows x columns); :class:`DamagedRun` naming the file when it is not
    such an array (cut short, empty, other bytes, other axes, over MAX_BYTES, no regular
    file). Only the header is read before the checks."""
    if not S_ISREG(os.stat(path).st_mode):  # (FileNotFoundError when there is none)
        raise DamagedRun(path, "damaged (not a file)")
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise DamagedRun(path, f"damaged (not a NumPy array file: {one_line(e)[:100]})") from None
    if not isinstance(arr, np.ndarray):  # (an .npz archive)
        raise DamagedRun(path, "damaged (not a NumPy array file: an archive of arrays)")
    if (
        arr.ndim < 3
        or (ndim is not None and arr.ndim != ndim)
        or arr.shape[-2:] != (28, 28)
        or not np.issubdtype(arr.dtype, np.floating)
        or not 0 < arr.nbytes <= MAX_BYTES
    ):
        axes = {3: "N x 28 x 28", 4: "rows x columns x 28 x 28"}.get(ndim or 3, "")
        raise DamagedRun(
            path,
            f"damaged (expected images {axes}"
            + (f" of at most {MAX_BYTES >> 20} MiB" if arr.nbytes > MAX_BYTES else "")
            + f", got {arr.dtype} {'x'.join(map(str, arr.shape)) or 'scalar'})",
        )
    return np.array(arr)


def sample_grids(run: Run) -> list[tuple[int, Path, str]]:
    """(epoch, npy path, sampler) of every sample grid of ``run`` whose file is there."""
    samples = by_epoch(run, Samples)
    return [
        (e, run.path / s.npy, s.sampler) for e, s in samples.items() if (run.path / s.npy).exists()
    ]


def process_figures(run: Run) -> dict[str, FigureEvent]:
    """The latest ``figure`` event of each name whose array files are all in the run folder."""
    out = {e.name: e for e in run.events() if isinstance(e, FigureEvent)}
    return {
        name: e
        for name, e in out.items()
        if e.files and all((run.path / f).exists() for f in e.files)
    }


def process_blocks(run: Run, event: FigureEvent) -> list[np.ndarray]:
    """The images of a ``figure`` event, one (rows, columns, 28, 28) array in [0, 1] per file;
    :class:`DamagedRun` naming a file whose rank or columns do not fit, or a figure of more
    than :data:`MAX_PANELS` images."""
    blocks = [load_array(run.path / f, ndim=4) for f in event.files]
    for f, t in zip(event.files, blocks):
        if t.shape[1] != blocks[0].shape[1]:
            raise DamagedRun(
                run.path / f,
                f"damaged ({t.shape[1]} columns of images, {event.files[0]} has "
                f"{blocks[0].shape[1]})",
            )
    rows, cols = sum(len(t) for t in blocks), blocks[0].shape[1]
    if rows * cols > MAX_PANELS:
        raise DamagedRun(
            run.path / event.files[0],
            f"damaged ({rows} x {cols} images for a figure, at most {MAX_PANELS})",
        )
    return blocks


def values_in_order(study: Run) -> list[ValueEvent]:
    """The finished values of a study (their files on disk), in the study's order."""
    done = study_values(study.events(), study.path)
    return [done[v] for v in study.study_spec().values if v in done]


def damaged_files(run: Run) -> list[DamagedRun]:
    """The array files named by ``run``'s events that are there but cannot be read."""
    named: dict[str, int] = {}  # file -> its images' axes
    for e in run.events():
        if isinstance(e, FigureEvent):
            named.update(dict.fromkeys(e.files, 4))
        elif isinstance(e, (Samples, ValueEvent)):
            named[e.npy] = 3
    out = []
    for rel, ndim in named.items():
        if (run.path / rel).exists():
            try:
                load_array(run.path / rel, ndim)
            except DamagedRun as e:
                out.append(e)
    return out
