"""A run's history as the poll thread reads it (:class:`RunHistory`): its events without the
frequent step-progress ones, and its sample grids decoded once (:class:`Grid`). The screens get
them in :class:`tui.messages.RunEvents`."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from engine.errors import UserError
from engine.rundir.events import EventReader, Samples, Value, latest_by_epoch
from engine.rundir.events import Progress as StepProgress
from engine.rundir.progress import study_values
from engine.rundir.run import Run, read_file
from engine.spec.specs import spec_to_toml

if TYPE_CHECKING:  # (PIL: imported when the first grid is read)
    from PIL import Image as PILImage


@dataclass(frozen=True)
class Grid:
    """One sample grid of a run: its epoch, PNG file, sampler and the decoded image; a sampling
    study's grid of one value has ``value`` (and ``epoch`` its place among the finished ones)."""

    epoch: int
    png: Path
    sampler: str
    image: PILImage.Image = field(compare=False, repr=False)
    value: float | None = None


class RunHistory:
    """A run's events read incrementally, on the poll thread: the curves, evaluations and grids
    (a study's: the grid of each value). The frequent step-progress events are left out (the
    runs view shows those).

    ``state`` is (events, grids, grids version, settings) as of the last :meth:`update`: a tuple
    of objects that are replaced, never changed, so the event loop may read it as it is."""

    def __init__(self, run: Run):
        self.run = run
        self.events: list = []
        self.grids: list[Grid] = []
        self.grids_version = 0
        self.settings: str | None = None
        self.state: tuple[list, list[Grid], int, str | None] | None = None
        self._reader = EventReader(run.events_path)
        self._images: dict[Path, PILImage.Image] = {}

    def update(self) -> bool:
        """Read new events; True when there were any."""
        if self.settings is None:
            try:
                self.settings = spec_to_toml(self.run.spec())
            except (OSError, ValueError, UserError) as e:  # UserError: a damaged file
                self.settings = f"cannot read {self.run.config_path}: {e}"
        new = [e for e in self._reader.read() if not isinstance(e, StepProgress)]
        if new:
            self.events = self.events + new  # a new list: ``state`` keeps the old one
        if any(isinstance(e, (Samples, Value)) for e in new) or (
            self.grids_version == 0 and self._grid_events()
        ):
            self._load_grids()
        self.state = (self.events, self.grids, self.grids_version, self.settings)
        return bool(new)

    def _grid_events(self) -> dict[int, Samples | Value]:
        """The grid events by epoch (a study's values by their place)."""
        values = study_values(self.events)
        if values:
            return {i: e for i, e in enumerate(values.values(), 1)}
        return latest_by_epoch(self.events, Samples)

    def _load_grids(self) -> None:
        grids = []
        for epoch, e in self._grid_events().items():
            png = self.run.path / e.png
            image = self._images.get(png)
            if image is None:
                try:
                    image = load_grid(png)
                except (OSError, ValueError):  # (DecompressionBombError is neither)
                    continue  # not written yet (or removed): try again on the next grid event
                self._images[png] = image
            grids.append(Grid(epoch, png, e.sampler, image, getattr(e, "value", None)))
        if grids != self.grids or not self.grids_version:
            self.grids = grids
            self.grids_version += 1


MAX_GRID_SIDE = 4096  # pixels: a worker's grid of 1024 samples is 962 wide


def load_grid(png: Path) -> PILImage.Image:
    """A sample grid's PNG decoded, checked first: a regular file of at most 64 MiB whose
    header declares at most MAX_GRID_SIDE pixels a side (a ValueError otherwise, never a
    decompression bomb decoded nor a FIFO waited on)."""
    from PIL import Image as PILImage

    data = read_file(png, limit=64 << 20)
    try:
        with PILImage.open(io.BytesIO(data)) as f:
            if max(f.size) > MAX_GRID_SIDE:
                raise ValueError(f"{png}: {f.size[0]} x {f.size[1]} pixels, no sample grid")
            return f.convert("RGB")
    except (PILImage.DecompressionBombError, SyntaxError) as e:  # (PIL's own, for some files)
        raise ValueError(f"{png}: {e}") from None
