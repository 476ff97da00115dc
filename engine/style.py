"""The one style of diffui's figures: sizes, fonts, resolution, axes that read well in a paper
(integer epoch ticks, plain tick labels on log axes), and the files each figure is written as: a
PNG at :data:`DPI` and a vector PDF beside it.

Every figure of the report (:mod:`engine.report.figures`) and of the schedules' KS study
(:mod:`engine.evaluation.ks`) starts with :func:`new_figure` and is written with
:func:`save_figure`; no pyplot (no global state, no GUI backend). Shared like ``text`` and
``files``: every package may import it.
"""

from __future__ import annotations

import math
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import Formatter, LogLocator, MaxNLocator, ScalarFormatter

from engine.files import atomic_save

DPI = 200  # PNG resolution: sharp in print at a column's width
TITLE = 10  # font sizes (points)
LABEL = 9
TICK = 8
SMALL = 7  # legends, panel titles, captions under panels
FORMATS = ("png", "pdf")  # the files of every figure (PDF: vector)


def new_figure(width: float, height: float) -> Figure:
    """A figure of ``width`` x ``height`` inches laid out with constrained layout (titles,
    labels and legends outside the axes get their room, so no tight bounding box is needed)."""
    return Figure(figsize=(width, height), layout="constrained")


def epoch_axis(ax: Axes) -> None:
    """The x axis counts epochs: integer ticks only, labelled with its unit."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.set_xlabel("epoch", fontsize=LABEL)
    ax.tick_params(labelsize=TICK)


class PlainLog(Formatter):
    """Tick labels of a log axis as plain numbers (0.6, 20, 1000), never 6×10⁻¹: powers of ten
    always; 2 and 5 times them too when the axis spans under two decades, and every minor tick
    but 9 (too near the next power of ten) when it spans under one."""

    def __call__(self, x: float, pos: int | None = None) -> str:
        if x <= 0 or not math.isfinite(x):
            return ""
        mantissa = round(x / 10 ** math.floor(math.log10(x) + 1e-9), 6)
        lo, hi = sorted(self.axis.get_view_interval()) if self.axis else (x, x)
        decades = math.log10(hi / lo) if lo > 0 else math.inf
        if mantissa == 1 or (decades < 1 and mantissa != 9) or (decades < 2 and mantissa in (2, 5)):
            return f"{x:.6g}"
        return ""


LOG_SPAN = 3.0  # the smallest max/min of positive values drawn on a log axis


def value_axis(ax: Axes, values: list[float], label: str) -> None:
    """The y axis of ``values`` (losses, FIDs), labelled ``label``: a log scale with plain tick
    labels (:class:`PlainLog`) when they are positive and span a factor of :data:`LOG_SPAN` or
    more, else linear with plain numbers (no offset, no powers of ten)."""
    ax.set_ylabel(label, fontsize=LABEL)
    finite = [v for v in values if math.isfinite(v)]
    if finite and min(finite) > 0 and max(finite) / min(finite) >= LOG_SPAN:
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(base=10))
        ax.yaxis.set_minor_locator(LogLocator(base=10, subs=tuple(range(2, 10))))
        ax.yaxis.set_major_formatter(PlainLog())
        ax.yaxis.set_minor_formatter(PlainLog())
    else:
        plain = ScalarFormatter(useOffset=False)
        plain.set_scientific(False)
        ax.yaxis.set_major_formatter(plain)
    ax.tick_params(which="both", labelsize=TICK)


def run_title(fig: Figure, what: str, about: str) -> None:
    """The figure's title: ``what`` it shows, then ``about`` (the run: its schedule, network and
    degradation) on a second line."""
    fig.suptitle(f"{what}\n{about}" if about else what, fontsize=TITLE)


def save_figure(fig: Figure, path: Path) -> list[Path]:
    """``fig`` as ``path`` (a PNG at :data:`DPI`) and the same name ending in ``.pdf`` (vector),
    each written whole or not at all; the paths written."""
    out = []
    for fmt in FORMATS:
        p = Path(path).with_suffix(f".{fmt}")
        atomic_save(
            lambda f, fmt=fmt: fig.savefig(f, format=fmt, dpi=DPI, metadata=_metadata(fmt)),
            p,
        )
        out.append(p)
    return out


def _metadata(fmt: str) -> dict[str, str | None]:
    """No creation date in PDFs (the same runs give the same bytes); matplotlib as the maker."""
    return {"CreationDate": None} if fmt == "pdf" else {}
