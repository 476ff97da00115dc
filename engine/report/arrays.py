"""What a report reads of a run folder besides its events: the arrays the worker wrote (sample
grids, the process figures' images, a sampling study's values), each checked as it is loaded.

Nothing here loads a checkpoint, a dataset or a network (nor imports torch): a run trained on a
remote GPU box reports from a copy of its folder without its checkpoint.
"""

from __future__ import annotations

from pathlib import Path
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


def load_array(path: Path) -> np.ndarray:
    """Images of a run folder's ``.npy`` file (..., 28, 28) in [0, 1]; :class:`DamagedRun`
    naming the file when it is not such an array (cut short, empty, other bytes)."""
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise DamagedRun(path, f"damaged (not a NumPy array file: {one_line(e)[:100]})") from None
    if arr.ndim < 3 or arr.shape[-2:] != (28, 28) or not np.issubdtype(arr.dtype, np.floating):
        raise DamagedRun(
            path,
            f"damaged (expected images N x 28 x 28, got {arr.dtype} "
            f"{'x'.join(map(str, arr.shape)) or 'scalar'})",
        )
    return arr


def sample_grids(run: Run) -> list[tuple[int, Path, str]]:
    """(epoch, npy path, sampler) of every sample grid of ``run`` whose file is there."""
    samples = by_epoch(run, Samples)
    return [
        (e, run.path / s.npy, s.sampler) for e, s in samples.items() if (run.path / s.npy).exists()
    ]


def process_figures(run: Run) -> dict[str, FigureEvent]:
    """The latest ``figure`` event of each name whose array files are all in the run folder."""
    out = {e.name: e for e in run.events() if isinstance(e, FigureEvent)}
    return {name: e for name, e in out.items() if all((run.path / f).is_file() for f in e.files)}


def values_in_order(study: Run) -> list[ValueEvent]:
    """The finished values of a study (their files on disk), in the study's order."""
    done = study_values(study.events(), study.path)
    return [done[v] for v in study.study_spec().values if v in done]


def damaged_files(run: Run) -> list[DamagedRun]:
    """The array files named by ``run``'s events that are there but cannot be read."""
    named = [
        p
        for e in run.events()
        for p in (
            e.files
            if isinstance(e, FigureEvent)
            else [e.npy]
            if isinstance(e, (Samples, ValueEvent))
            else []
        )
    ]
    out = []
    for rel in dict.fromkeys(named):
        if (run.path / rel).is_file():
            try:
                load_array(run.path / rel)
            except DamagedRun as e:
                out.append(e)
    return out
