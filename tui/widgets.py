"""Widgets of the diffui app: the runs table, curve charts and the sample-grid viewer.

They only display what they are handed (progress snapshots, events, decoded sample grids);
reading run folders is the poll thread's work (:mod:`tui.model`), driving the queue the app's.
"""

from __future__ import annotations

import math
import time

from rich.style import Style
from rich.text import Text
from textual.css.query import NoMatches
from textual.widget import Widget
from textual.widgets import DataTable
from textual_plotext import PlotextPlot

from engine.rundir.progress import RunProgress, status_text
from engine.text import fmt, format_seconds
from tui.history import Grid

IMAGE_MODES = ("auto", "halfcell", "sixel", "tgp")


def image_widget_class(mode: str = "halfcell", colors: str = "256") -> type[Widget]:
    """The widget class that draws sample grids: half-block characters (``halfcell``, in any
    terminal of 256 colours or more; with ``colors`` "16": shade glyphs, 13 greys), or a
    graphics protocol. ``auto`` asks the terminal (call it before the app starts: the query
    needs the terminal) and falls back to cells."""
    from tui.pixels import HalfBlocks, Shades

    cells = Shades if colors == "16" else HalfBlocks
    if mode == "halfcell":
        return cells
    # imported only here: importing textual_image queries the terminal
    from textual_image import renderable
    from textual_image import widget as timg

    if mode == "auto":  # what the terminal answered when textual_image was imported
        mode = {renderable.SixelImage: "sixel", renderable.TGPImage: "tgp"}.get(
            renderable.Image, ""
        )
    return {"sixel": timg.SixelImage, "tgp": timg.TGPImage}.get(mode, cells)


class RunsTable(DataTable):
    """Every run of the experiments file and of the runs folder: its state, progress and latest
    numbers. Space marks runs for the compare view."""

    COLUMNS = ("run", "status", "epoch", "train", "val", "FID", "elapsed", "ETA", "where")

    def __init__(self, **kw):
        super().__init__(cursor_type="row", zebra_stripes=True, **kw)
        self.marked: set[str] = set()

    def on_mount(self) -> None:
        for col in self.COLUMNS:
            self.add_column(col, key=col)

    def selected(self) -> str | None:
        if not self.row_count:
            return None
        return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value

    def toggle_mark(self) -> None:
        name = self.selected()
        if name:
            self.marked ^= {name}

    def show(
        self,
        progress: dict[str, RunProgress],
        queued: list[str],
        where: dict[str, str],
        planned: list[str] = (),
        now: float | None = None,
        expected: dict | None = None,
    ) -> None:
        """Redraw from a progress snapshot: the queued runs in queue order, then the runs of
        the experiments file (``planned``) in its order, then other run folders by name. A run
        of the file with no folder yet shows as not queued. A queued run's eta is its expected
        end (``expected``: :func:`engine.queue.expected.expected_times` as of ``now``). Cells
        change in place; when runs come, go or change order, the rows are rebuilt with the
        cursor kept on the same run."""
        now = now or time.time()
        order = list(dict.fromkeys([*queued, *planned, *sorted(progress)]))
        rows = {
            name: self._cells(
                progress.get(name) or RunProgress(name),
                queued,
                where.get(name, ""),
                now,
                (expected or {}).get(name),
            )
            for name in order
        }
        if [k.value for k in self.rows] == order:
            for name, cells in rows.items():
                for col, value in zip(self.COLUMNS, cells):
                    if self.get_cell(name, col) != value:  # wider when it must ("finished")
                        self.update_cell(name, col, value, update_width=True)
            return
        keep = self.selected()
        self.clear()
        for name, cells in rows.items():
            self.add_row(*cells, key=name)
        if keep in order:
            self.move_cursor(row=order.index(keep))

    def _cells(
        self, p: RunProgress, queued: list[str], where: str, now: float, expected=None
    ) -> list[str]:
        q = queued.index(p.name) if p.name in queued else None
        eta = p.task_eta(now) if p.task else p.eta()
        if q is not None and p.state != "running" and expected is not None and expected.end:
            eta = expected.end  # (seconds from the snapshot's now)
        return [
            ("● " if p.name in self.marked else "") + p.name,
            status_text(p, q),
            f"{p.epoch}/{p.epochs}" if p.epochs else "-",
            fmt(p.train_loss),
            fmt(p.val_loss),
            fmt(p.fid, ".1f"),
            format_seconds(p.elapsed(now)) if p.started else "-",
            "-" if eta is None else format_seconds(eta),
            where,
        ]


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

    def show(
        self,
        series: list[tuple[str, list, list]],
        logy: bool = False,
        evenly: bool = False,
        xrange: tuple[float, float] | None = None,
    ) -> None:
        """Draw ``series``; with ``evenly`` the x values are set at even steps, labelled with
        their values (a study's λ = 0, 0.001, 0.01, 0.1 apart). ``logy``: a log y axis when
        every value is positive."""
        self.series, self.evenly, self.xrange = series, evenly, xrange
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


class GridView(Widget):
    """The sample grids of a run, one epoch at a time; step with :meth:`step`."""

    DEFAULT_CSS = "GridView { height: 1fr; width: 1fr; }"

    def __init__(self, image_class: type[Widget], **kw):
        super().__init__(**kw)
        self.image_class = image_class
        self.grids: list[Grid] = []
        self.index = -1  # -1: follow the newest grid

    def compose(self):
        yield self.image_class(None, id="grid-image")

    @property
    def current(self) -> Grid | None:
        if not self.grids:
            return None
        return self.grids[self.index if self.index >= 0 else len(self.grids) - 1]

    def set_grids(self, grids: list[Grid]) -> None:
        before = self.current
        self.grids = grids
        if self.current != before:
            self._draw()

    def step(self, delta: int | None = None, to: int | None = None) -> None:
        """Move ``delta`` grids back or forward, or ``to`` an index (-1: the newest)."""
        if not self.grids:
            return
        i = self.index if self.index >= 0 else len(self.grids) - 1
        i = to if to is not None else min(max(i + (delta or 0), 0), len(self.grids) - 1)
        self.index = -1 if i == len(self.grids) - 1 or i < 0 else i
        self._draw()

    def label(self) -> str:
        cur = self.current
        if cur is None:
            return "no sample grid yet"
        pos = self.grids.index(cur) + 1
        return f"epoch {cur.epoch} · {cur.sampler} · grid {pos} of {len(self.grids)}"

    def on_resize(self) -> None:
        self._draw()

    def _draw(self) -> None:
        """Draw the current grid as large as the widget allows, keeping its aspect ratio (a
        terminal cell is about twice as tall as wide: two half-block pixels)."""
        try:
            img = self.query_one("#grid-image")
        except NoMatches:  # not composed yet: drawn when it is (on its first resize)
            return
        cur = self.current
        if cur is None:
            img.image = None
            return
        pil = cur.image
        if self.size.width and self.size.height:
            scale = min(self.size.width / pil.width, 2 * (self.size.height) / pil.height)
            img.styles.width = max(1, int(pil.width * scale))
            img.styles.height = max(1, int(pil.height * scale / 2))
        img.image = pil


class KeyBar(Widget):
    """The keys that apply on this screen, in one line at the bottom, drawn like Textual's compact
    Footer (which mounts one widget per key, again on every screen switch: slow). In priority
    order, the screen's keys then the app's, as many whole entries as fit; it always ends with
    ``? help`` and ``q quit``. A click on an entry runs it."""

    ALLOW_SELECT = False
    TAIL = ("help", "quit")  # the actions always shown, at the end
    COMPONENT_CLASSES = {"keybar--key", "keybar--description", "keybar--disabled"}
    DEFAULT_CSS = """
    KeyBar {
        dock: bottom; height: 1; text-wrap: nowrap; text-overflow: clip;
        color: $footer-foreground; background: $footer-background;
        & > .keybar--key { color: $footer-key-foreground; background: $footer-key-background;
                           text-style: bold; }
        & > .keybar--description { color: $footer-description-foreground;
                                   background: $footer-description-background; }
        & > .keybar--disabled { text-style: dim; }
    }
    """

    def __init__(self, **kw):
        super().__init__(**kw)
        self.spans: list[tuple[int, int, str, object]] = []  # (from, to, action, node) clicked

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, lambda _screen: self.refresh())

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def entries(self) -> list[tuple[str, str, str, object, bool]]:
        """(key, description, action, node, enabled) of each shown binding, in priority order:
        the screen's, the app's, the command palette, then the tail."""
        app = self.app
        palette = app.COMMAND_PALETTE_BINDING if app.ENABLE_COMMAND_PALETTE else None
        out, seen = [], set()
        for _key, (node, binding, enabled, _tip) in self.screen.active_bindings.items():
            if not binding.show or binding.action in seen:
                continue
            seen.add(binding.action)
            out.append(
                (
                    app.get_key_display(binding),
                    binding.description,
                    binding.action,
                    node,
                    enabled,
                    binding.key == palette,
                )
            )
        rank = lambda e: (e[2] in self.TAIL, e[5], e[3] is app)  # noqa: E731
        out.sort(key=lambda e: (rank(e), self.TAIL.index(e[2]) if e[2] in self.TAIL else 0))
        return [e[:5] for e in out]

    def render(self) -> Text:
        key_style = self.get_component_rich_style("keybar--key")
        desc_style = self.get_component_rich_style("keybar--description")
        dim = self.get_component_rich_style("keybar--disabled")
        entries = self.entries()
        tail = [e for e in entries if e[2] in self.TAIL]
        width = self.size.width - sum(len(k) + len(d) + 2 for k, d, *_ in tail)
        shown = []
        for entry in entries:
            if entry[2] in self.TAIL:
                continue
            width -= len(entry[0]) + len(entry[1]) + 2
            if width < 0:
                break
            shown.append(entry)
        text, self.spans = Text(no_wrap=True, overflow="crop"), []
        for key, description, action, node, enabled in shown + tail:
            extra = Style() if enabled else dim
            start = text.cell_len
            text.append(key, key_style + extra)
            text.append(f" {description}", desc_style + extra)
            self.spans.append((start, text.cell_len, action, node))
            text.append(" ")
        return text

    async def on_click(self, event) -> None:
        for start, end, action, node in self.spans:
            if start <= event.x < end:
                await self.app.run_action(action, node)
                return
