"""Widgets of the diffui app: the runs table, curve charts and the sample-grid viewer.

They only display what they are handed (progress snapshots, events, decoded sample grids);
reading run folders is the poll thread's work (:mod:`tui.model`), driving the queue the app's.
"""

from __future__ import annotations

import time

from rich.cells import cell_len
from rich.style import Style
from rich.text import Text
from textual.css.query import NoMatches
from textual.widget import Widget
from textual.widgets import DataTable

from engine.rundir.progress import RunProgress, status_text
from engine.text import fmt, format_seconds
from tui import terminal
from tui.history import Grid

IMAGE_MODES = ("auto", "halfcell", "sixel", "tgp")


def image_widget_class(
    mode: str = "halfcell", colors: str = "256", answer: terminal.Answer | None = None
) -> type[Widget]:
    """The widget class that draws sample grids: half-block characters (``halfcell``, in any
    terminal of 256 colours or more; with ``colors`` "16": shade glyphs, 13 greys), or a
    graphics protocol. ``auto`` takes the terminal's ``answer`` (:mod:`tui.terminal`; without
    one it asks now: call it before the app starts, the question needs the terminal) and falls
    back to cells."""
    from tui.pixels import HalfBlocks, Shades

    cells = Shades if colors == "16" else HalfBlocks
    if mode == "halfcell":
        return cells
    if answer is None:  # (for a graphics protocol's cell size too)
        asked = terminal.question()
        answer = asked.answer() if asked else terminal.Answer()
    if mode == "auto":
        mode = answer.protocol
    if mode not in ("sixel", "tgp"):
        return cells
    timg = terminal.import_textual_image(answer)
    return {"sixel": timg.SixelImage, "tgp": timg.TGPImage}[mode]


class FitTable(DataTable):
    """A table of named rows that shows the columns that fit its width: those of
    ``hide_first`` are hidden, in that order, while its cells are wider than the table (the
    others are always shown), and come back when it widens. :meth:`fill` sets every row."""

    def __init__(self, columns: tuple[str, ...], hide_first: tuple[str, ...] = (), **kw):
        super().__init__(**kw)
        self.all_columns, self.hide_first = columns, hide_first
        self.shown: tuple[str, ...] = columns
        self.cells: dict[str, list] = {}  # every column's cell of each row, shown or not

    def on_mount(self) -> None:
        self._add_columns()

    def on_resize(self) -> None:
        self.fill(self.cells)

    def _add_columns(self) -> None:
        for col in self.shown:
            self.add_column(col, key=col or "_")

    def fitting(self, rows: dict[str, list]) -> tuple[str, ...]:
        """The columns that fit the table's width with the cells of ``rows``."""
        room = self.size.width  # less a vertical scrollbar's, when the rows overflow
        if len(rows) + self.header_height > self.size.height:
            room -= self.styles.scrollbar_size_vertical
        widths = {
            col: max([len(col), *(_width(cells[i]) for cells in rows.values())])
            + 2 * self.cell_padding
            for i, col in enumerate(self.all_columns)
        }
        shown = list(self.all_columns)
        for col in self.hide_first:
            if room <= 0 or sum(widths[c] for c in shown) <= room:
                break
            shown.remove(col)
        return tuple(shown)

    def fill(self, rows: dict[str, list]) -> None:
        """Show ``rows`` (cells of every column, by row key) in their order. Cells change in
        place; when rows come, go or change order, or other columns fit, the table is built
        again with the cursor kept on the same row."""
        self.cells = rows
        shown = self.fitting(rows)
        if shown == self.shown and [k.value for k in self.rows] == list(rows):
            for name, cells in rows.items():
                for col, value in zip(self.all_columns, cells):
                    key = col or "_"
                    if col in shown and self.get_cell(name, key) != value:
                        self.update_cell(name, key, value, update_width=True)  # ("finished")
            return
        keep = self.selected()
        if shown != self.shown:
            self.shown = shown
            self.clear(columns=True)
            self._add_columns()
        else:
            self.clear()
        for name, cells in rows.items():
            self.add_row(*(v for c, v in zip(self.all_columns, cells) if c in shown), key=name)
        if keep in rows:
            self.move_cursor(row=list(rows).index(keep))

    def selected(self) -> str | None:
        if not self.row_count:
            return None
        return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value


def _width(cell) -> int:
    return cell.cell_len if isinstance(cell, Text) else cell_len(str(cell))


class RunsTable(FitTable):
    """Every run of the experiments file and of the runs folder: its state, progress and latest
    numbers (the columns that fit: train, where and elapsed are hidden first when the table is
    narrow). Space marks runs for the compare view."""

    COLUMNS = ("run", "status", "epoch", "train", "val", "FID", "elapsed", "ETA", "where")

    def __init__(self, **kw):
        hide_first = ("train", "where", "elapsed", "epoch")
        super().__init__(self.COLUMNS, hide_first, cursor_type="row", zebra_stripes=True, **kw)
        self.marked: set[str] = set()

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
        self.fill(rows)

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
