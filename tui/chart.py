"""The charts of the run, study and compare views: curves drawn with plotext, whatever the size
and the data. A module of its own so that plotext is imported when a view with a chart is first
opened, not as the UI starts."""

from __future__ import annotations

import math

from rich.text import Text
from textual_plotext import PlotextPlot

CHART_COLORS = ("blue", "red", "green", "magenta", "cyan", "yellow")  # plotext and Rich names
# each series' glyph, so that a 16-colour or monochrome terminal tells the lines apart too:
# plotext's quadrant blocks ("hd") for the first, then characters of every font
CHART_MARKERS = ("hd", "•", "+", "x", "o", "*", "#", "%")


def legend_glyph(marker: str) -> str:
    """The glyph the legend shows for a series drawn with ``marker``."""
    return "▄" if marker == "hd" else marker


def series_key(i: int) -> Text:
    """The glyph, in its colour, of the ``i``-th series of a chart (a legend entry without its
    label, e.g. for a table whose rows are the series)."""
    marker = CHART_MARKERS[i % len(CHART_MARKERS)]
    return Text(legend_glyph(marker), style=CHART_COLORS[i % len(CHART_COLORS)])


PLOT_MIN = (16, 6)  # (width, height) below which a chart is one line of text, not a plot


def finite_points(xs: list, ys: list, logy: bool = False, most: int = 0) -> tuple[list, list]:
    """The points of a series that can be drawn: finite (and positive on a log axis), thinned to
    at most ``most`` points (0: all) keeping the last."""
    pts = [
        (float(x), float(y))
        for x, y in zip(xs, ys)
        if _finite(x) and _finite(y) and (not logy or float(y) > 0)
    ]
    if most and len(pts) > most:
        step = -(-len(pts) // most)
        pts = pts[::-1][::step][::-1]
    return [x for x, _ in pts], [y for _, y in pts]


def _finite(v) -> bool:
    """Whether ``v`` is a number a chart can place (magnitudes past 1e100 are left out: their
    ranges overflow)."""
    try:
        return math.isfinite(float(v)) and abs(float(v)) < 1e100
    except (TypeError, ValueError, OverflowError):
        return False


def padded(lo: float, hi: float, pad: float) -> tuple[float, float]:
    """An axis range that holds ``lo`` and ``hi`` and is never empty."""
    if hi - lo <= 1e-12 * max(1.0, abs(hi)):
        return lo - pad, hi + pad
    return lo, hi


def integer_ticks(lo: float, hi: float, most: int) -> list[int]:
    """Whole-number ticks from ``lo`` to ``hi`` (at most ``most``, at a step of 1, 2, 5, 10, ...)."""
    first, last = math.ceil(lo), math.floor(hi)
    if last < first:
        return []
    step = 1
    while (last - first) // step + 1 > max(1, most):
        step = step * 5 // 2 if str(step)[0] == "2" else step * 2
    return list(range(first, last + 1, step))


def value_ticks(lo: float, hi: float, n: int, logy: bool) -> tuple[list[float], list[str]]:
    """``n`` ticks from ``lo`` to ``hi`` (log10 of the values on a log axis) and their labels."""
    n = max(2, n)
    ticks = [lo + (hi - lo) * i / (n - 1) for i in range(n)]
    return ticks, [f"{10**t if logy else t:.3g}" for t in ticks]


class Chart(PlotextPlot):
    """Curves against epoch (or ``xlabel``): ``series`` is a list of (label, xs, ys).

    Drawn afresh from the series at each render, so any size and any data draw: points that
    are not finite (or not positive on a log axis) are left out, one point or one value gets a
    range around it, and below :data:`PLOT_MIN` the chart is its title line alone. The title
    line holds the legend, so the legend never covers the curves (all of it, or none when it
    does not fit).
    Epochs are whole numbers, from ``xrange`` when given (one range shared by a view's charts).
    """

    def __init__(self, title: str, ylabel: str, xlabel: str = "epoch", **kw):
        super().__init__(**kw)
        self.title, self.ylabel, self.xlabel = title, ylabel, xlabel
        self.series: list[tuple[str, list, list]] = []
        self.logy = self.evenly = False
        self.xrange: tuple[float, float] | None = None
        self.note = ""  # said after the title ("floor 138 below the chart")

    def show(
        self,
        series: list[tuple[str, list, list]],
        logy: bool = False,
        evenly: bool = False,
        xrange: tuple[float, float] | None = None,
        note: str = "",
    ) -> None:
        """Draw ``series``; with ``evenly`` the x values are set at even steps, labelled with
        their values (a study's λ = 0, 0.001, 0.01, 0.1 apart). ``logy``: a log y axis when
        every value is positive. ``note``: words after the title."""
        self.series, self.evenly, self.xrange, self.note = series, evenly, xrange, note
        ys = [y for _, xs, ys in series for x, y in zip(xs, ys) if _finite(x) and _finite(y)]
        self.logy = logy and bool(ys) and all(float(y) > 0 for y in ys)
        self.refresh()

    def render(self) -> Text:
        return self.draw(self.size.width, self.size.height)

    def drawn(self, most: int = 0) -> list[tuple[str, tuple[str, str], list, list]]:
        """(label, (colour, marker), xs, ys) of each series with a point to draw (x: its step
        when ``evenly``); the i-th series keeps its colour and marker whether or not the ones
        before it have points."""
        steps: dict = {}
        if self.evenly:
            steps = {
                x: i for i, x in enumerate(dict.fromkeys(x for _, s, _ in self.series for x in s))
            }
        out = []
        for i, (label, xs, ys) in enumerate(self.series):
            if self.evenly:
                xs = [steps[x] for x in xs]
            xs, ys = finite_points(xs, ys, self.logy, most)
            if xs:
                label = "".join(c for c in " ".join(str(label).split()) if c.isprintable())
                look = (CHART_COLORS[i % len(CHART_COLORS)], CHART_MARKERS[i % len(CHART_MARKERS)])
                out.append((label, look, xs, ys))
        return out

    def title_line(self, drawn: list, width: int) -> Text:
        """The title, then the legend entries that fit in ``width``."""
        line = Text(self.title if drawn else f"{self.title}: nothing yet", style="bold")
        if self.logy:
            line.append(" (log)")
        if self.note and drawn:
            line.append(f" · {self.note}", style="not bold")
        legend = Text.assemble(
            *(
                Text.assemble("  ", (legend_glyph(marker), color), f" {label}")
                for label, (color, marker), _, _ in drawn
            )
        )
        if len(drawn) > 1 and line.cell_len + legend.cell_len <= width:  # all of it, or none
            line.append_text(legend)
        line.truncate(max(0, width))
        return line

    def draw(self, width: int, height: int) -> Text:
        """The chart as text, ``width`` x ``height`` cells at most."""
        drawn = self.drawn(most=max(2, 4 * width))
        line = self.title_line(drawn, width)
        if width < PLOT_MIN[0] or height < PLOT_MIN[1] or not drawn:
            return line
        plt = self._plot
        plt.clear_figure()
        plt.plotsize(width, height - 1)
        plt._set_size(width, height - 1)
        if self.is_mounted:
            plt.theme(self._get_plotext_theme_name(self.app.theme))
        self._axes(plt, drawn, width, height - 1)
        for _, (color, marker), xs, ys in drawn:
            # quadrant blocks and plain characters: in more fonts than braille; the legend is
            # the title line
            plt.plot(
                xs, [math.log10(y) for y in ys] if self.logy else ys, color=color, marker=marker
            )
        plot = Text.from_ansi(plt.build()).split("\n")[: height - 1]  # plotext may draw more
        for row in plot:
            row.truncate(width)
        return Text("\n").join([line, *plot])

    def _axes(self, plt, drawn: list, width: int, height: int) -> None:
        """Ranges and ticks: whole epochs (or the study's values) along x, values up y."""
        xs = [x for _, _, s, _ in drawn for x in s]
        ys = [math.log10(y) if self.logy else y for _, _, _, s in drawn for y in s]
        lo, hi = padded(min(ys), max(ys), 0.5 if self.logy else max(abs(min(ys)) * 0.1, 0.5))
        plt.ylim(lo, hi)
        plt.yticks(*value_ticks(lo, hi, min(5, (height - 2) // 2), self.logy))
        if self.evenly:
            steps = list(dict.fromkeys(x for _, xs_, _ in self.series for x in xs_))
            plt.xlim(*padded(0, len(steps) - 1, 0.5))
            shown = integer_ticks(0, len(steps) - 1, max(1, width // 8))
            plt.xticks(shown, [f"{steps[i]:g}" for i in shown])
        else:
            x0, x1 = self.xrange or (min(xs), max(xs))
            x0, x1 = padded(min(x0, min(xs)), max(x1, max(xs)), 0.5)
            plt.xlim(x0, x1)
            ticks = integer_ticks(x0, x1, max(1, width // 8))
            plt.xticks(ticks, [str(t) for t in ticks])
        if height >= 10:
            plt.xlabel(self.xlabel)
