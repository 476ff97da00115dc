"""The screens of the diffui app besides the runs view: one run, one sampling study, several runs
compared, and the modal dialogs (pick experiments, pick a study, runs at once, edit a setting).

The run, study and compare views subscribe to the poll thread (:class:`tui.model.Poller`) for
their runs' events and draw the :class:`RunEvents` and :class:`Snapshot` messages it posts; none
of these screens reads a file on the event loop (the edit dialog is handed the file's text and
saves in a worker)."""

from __future__ import annotations

import time
from pathlib import Path

from rich.segment import Segment
from rich.style import Style
from rich.table import Table
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.strip import Strip
from textual.widgets import (
    Header,
    Input,
    Label,
    OptionList,
    Select,
    SelectionList,
    Static,
)
from textual.widgets.option_list import Option, OptionDoesNotExist
from textual.worker import Worker, WorkerState

from engine.data.notes import fallback_note
from engine.rundir.estimates import Estimate
from engine.rundir.events import End, Epoch, Eval, Samples, Start, Value, latest_by_epoch
from engine.rundir.progress import (
    SUMMARY_COLUMNS,
    RunProgress,
    status_text,
    study_values,
    summary_row,
    why,
)
from engine.spec.checks import ConfigError
from engine.spec.costs import CalibrationCache
from engine.spec.sections import STUDY_VALUE
from engine.spec.specs import RunSpec, StudySpec, spec_from_toml
from engine.text import fmt, format_seconds
from tui.history import Grid
from tui.messages import RunEvents, Snapshot
from tui.widgets import FitTable, GridView, KeyBar

CURVE_EVENTS = (Epoch, Eval)  # the events that change a chart


def describe_event(e) -> str | None:
    """One line of a run's event log (None for the frequent progress events)."""
    if isinstance(e, Start):
        line = f"start at epoch {e.epoch}/{e.epochs} on {e.device or '?'}" + (
            " (resumed)" if e.resumed else ""
        )
        notes = [n for n in (e.note, fallback_note(e.data_source)) if n]
        return "; ".join([line, *notes])
    if isinstance(e, Epoch):
        return (
            f"epoch {e.epoch}/{e.epochs}  train {e.train_loss:.4f}  "
            f"val {e.val_loss:.4f}  ({e.seconds:.1f} s)"
        )
    if isinstance(e, Samples):
        return f"grid of epoch {e.epoch} ({e.sampler}, {e.n} images)"
    if isinstance(e, Eval):
        return (
            f"FID {Estimate.of(e).text('.2f')} (floor {e.floor:.2f}, n {e.n}, {e.sampler}), "
            f"class entropy {e.entropy or 0:.2f} bits"
        )
    if isinstance(e, End):
        return f"end: {e.status}" + (f": {e.error}" if e.error else "")
    return None


def run_line(start: Start | None, where: str) -> str:
    """Where a run runs (or ran) and on which data, from its latest start event (the host, the
    device and its hardware) and the queue's where text (host, a cluster's job)."""
    if start is None:
        return f"on {where}: not started yet" if where else "not started yet"
    place = start.host or where
    if start.host and where and where != start.host:
        place = f"{start.host} ({where})"  # e.g. "node17 (cluster: job 12 RUNNING)"
    device = start.device or "?"
    if start.device_name:
        device = f"{device} ({start.device_name})"
    parts = [f"on {place} · {device}" if place else f"on {device}"]
    if start.data_source:
        sizes = (
            f" ({start.train_size:,} training, {start.val_size:,} validation images)"
            if start.train_size
            else ""
        )
        parts.append(f"data: {start.data_source}{sizes}")
    if start.parameters:
        parts.append(f"{start.parameters:,} parameters")
    return " · ".join(parts)


def loss_series(events: list, prefix: str = "", train: bool = True) -> list[tuple[str, list, list]]:
    ep = latest_by_epoch(events, Epoch)
    out = [(f"{prefix}val", list(ep), [e.val_loss for e in ep.values()])]
    if train:
        out.insert(0, (f"{prefix}train", list(ep), [e.train_loss for e in ep.values()]))
    return out


def fid_series(events: list, prefix: str = "", floor: bool = True) -> list[tuple[str, list, list]]:
    ev = latest_by_epoch(events, Eval)
    out = [(f"{prefix}FID", list(ev), [e.fid for e in ev.values()])]
    if floor:
        out.append((f"{prefix}floor", list(ev), [e.floor for e in ev.values()]))
    return out


def epoch_range(*event_lists: list) -> tuple[int, int] | None:
    """The epochs a view's charts share: from 1 to the last planned (or done) epoch of its
    runs; None before any run has started."""
    last = [
        e.epochs if isinstance(e, Start) else e.epoch
        for events in event_lists
        for e in events
        if isinstance(e, (Start, Epoch, Eval))
    ]
    return (1, max(1, *last)) if last else None


def problems_note(p: RunProgress | None) -> str:
    """The run view's warning of the bad lines of a run's events.jsonl that were skipped (as
    batch mode and queue status warn of each): the first, and how many more ("" when none)."""
    if p is None or not p.problems:
        return ""
    more = p.problem_count - 1
    return f"warning: {p.problems[0]}" + (f" (and {more} more)" if more else "")


class FollowScreen(Screen):
    """A screen about one run folder (a run or a study), following it through the poll thread:
    it composes empty and fills from :class:`RunEvents`, the whole history in the first message
    (or at once from ``history``), then only new events. The app keeps a few of these installed,
    so that opening a run again shows it at once. Subclasses draw the events in
    ``on_run_events``."""

    ready = False  # the run's history has been drawn
    where = ""  # where the run runs, in the queue's words

    def __init__(self, name: str, image_class, history=None):
        """``history``: what the poll thread has read of the run so far
        (:meth:`Poller.history`), drawn in the first frame; the rest comes as messages."""
        super().__init__()
        self.run_name = name
        self.events: list = []
        self.state = ""
        self.image_class = image_class
        self.history = history
        self.problem_note = ""  # the warning of bad lines of its events.jsonl, skipped

    def on_mount(self) -> None:
        self.sub_title = self.run_name
        if self.app.last_snapshot is not None:
            self.on_snapshot(self.app.last_snapshot)
        have = {}
        if self.history is not None:
            events, grids, version, settings = self.history
            self.on_run_events(RunEvents(self.run_name, events, grids, settings))
            have[self.run_name] = (len(events), version)
            self.history = None
        self.app.poller.subscribe(self, runs=(self.run_name,), have=have)
        if not have:
            self.app.poll_now()

    def on_unmount(self) -> None:
        self.app.poller.unsubscribe(self)

    def where_changed(self) -> None:
        """The run's place, or its bad lines, changed (the screen's line may say it)."""

    def selected_run(self) -> str:
        return self.run_name

    def on_snapshot(self, message: Snapshot) -> None:
        where = message.where.get(self.run_name, self.where)
        if where != self.where:
            self.where = where
            self.where_changed()
        p = message.progress.get(self.run_name)
        note = problems_note(p)
        if p is not None and note != self.problem_note:
            self.problem_note = note
            self.where_changed()
        state = p and (f"{p.state}: {why(p)}" if why(p) else p.state)
        if p is not None and state != self.state:
            self.state = state
            self.sub_title = f"{self.run_name} · {state}"


class RunScreen(FollowScreen):
    """One run: live loss and FID charts, its sample grids epoch by epoch, settings and events;
    charts redraw only on new epochs and evaluations."""

    BINDINGS = [
        Binding(
            "left,left_square_bracket",
            "grid(-1)",
            "◀ grid",
            key_display="[",
            priority=True,
            tooltip="show the sample grid of the epoch before",
        ),
        Binding(
            "right,right_square_bracket",
            "grid(1)",
            "grid ▶",
            key_display="]",
            priority=True,
            tooltip="show the sample grid of the epoch after",
        ),
        Binding(
            "home",
            "grid_to(0)",
            "first grid",
            show=False,
            priority=True,
            tooltip="show the first sample grid",
        ),
        Binding(
            "end",
            "grid_to(-1)",
            "newest grid",
            show=False,
            priority=True,
            tooltip="show the newest sample grid, and follow new ones",
        ),
        Binding("z", "zoom", "zoom grid", tooltip="the sample grid alone, as large as it goes"),
        Binding("escape", "app.pop_screen", "back", tooltip="back to the runs view"),
    ]

    def compose(self) -> ComposeResult:
        from tui.chart import Chart  # (plotext: imported with the first chart)
        from tui.event_log import EventLog  # (RichLog: rich.pretty, attr)

        yield Header()
        yield Static("", id="run-line", markup=False)  # where it ran, on which data
        with Horizontal(id="top"):
            with Vertical(id="charts"):
                yield Chart("loss", "MSE", id="loss-chart")
                yield Chart("FID", "FID", id="fid-chart")
            with Vertical(id="grid-box"):
                yield Label("", id="grid-label", markup=False)
                yield GridView(self.image_class, id="grid")
        with Horizontal(id="bottom"):
            with VerticalScroll(id="settings"):
                yield Static("", id="settings-text", markup=False)
            yield EventLog(id="events")
        yield KeyBar()

    def on_run_events(self, message: RunEvents) -> None:
        from tui.chart import Chart
        from tui.event_log import EventLog

        if message.name != self.run_name:
            return
        if message.settings is not None:
            self.query_one("#settings-text", Static).update(message.settings)
        self.events = self.events + message.events
        log = self.query_one("#events", EventLog)
        for e in message.events:
            line = describe_event(e)
            if line:
                log.add(time.strftime("%H:%M:%S ", time.localtime(e.time)) + line)
        if not self.ready or any(isinstance(e, CURVE_EVENTS) for e in message.events):
            epochs = epoch_range(self.events)
            loss = self.query_one("#loss-chart", Chart)
            loss.show(loss_series(self.events), logy=True, xrange=epochs)
            self.query_one("#fid-chart", Chart).show(fid_series(self.events), xrange=epochs)
        if message.grids is not None:
            self.query_one("#grid", GridView).set_grids(message.grids)
            self._label()
        elif not self.ready:
            self._label()
        if not self.ready or any(isinstance(e, Start) for e in message.events):
            self._run_line()
        self.ready = True

    def where_changed(self) -> None:
        self._run_line()

    def _run_line(self) -> None:
        start = next((e for e in reversed(self.events) if isinstance(e, Start)), None)
        note = self.problem_note
        line = run_line(start, self.where) + (f"\n{note}" if note else "")
        self.query_one("#run-line", Static).update(line)

    def _label(self) -> None:
        self.query_one("#grid-label", Label).update(self.query_one("#grid", GridView).label())

    def action_grid(self, delta: int) -> None:
        self.query_one("#grid", GridView).step(delta)
        self._label()

    def action_grid_to(self, index: int) -> None:
        self.query_one("#grid", GridView).step(to=index)
        self._label()

    def action_zoom(self) -> None:
        self.toggle_class("zoomed")


STUDY_COLUMNS = ("FID", "floor", "distinct", "pairwise", "nearest", "copies")


def fid_cell(e: Value) -> str:
    """A value's FID as the study view writes it, with its interval where it has one."""
    return Estimate.of(e).text(".1f")


def value_cells(e: Value) -> list[str]:
    """The numbers of one finished value of a study, a cell per :data:`STUDY_COLUMNS`: FID and
    floor, distinct share and mean pairwise feature distance (diversity), RMS distance to the
    nearest training digit and near-copy share (novelty)."""
    return [
        fid_cell(e),
        fmt(e.floor, ".1f"),
        fmt(e.distinct_share, ".0%"),
        fmt(e.pairwise_distance, ".1f"),
        fmt(e.nearest_train_distance, ".3f"),
        fmt(e.near_copy_share, ".0%"),
    ]


def study_series(spec: StudySpec, values: dict[float, Value]) -> dict[str, tuple[list, str]]:
    """The study view's charts: chart id -> (series against the value, in the study's order;
    the chart's note)."""
    done = [values[v] for v in spec.values if v in values]
    xs = [e.value for e in done]

    def series(label: str, field: str) -> tuple[str, list, list]:
        pairs = [(x, getattr(e, field)) for x, e in zip(xs, done) if getattr(e, field) is not None]
        return label, [x for x, _ in pairs], [y for _, y in pairs]

    return {
        "fid-chart": fid_and_floor(series("FID", "fid"), series("floor", "floor")),
        "diversity-chart": ([series("pairwise distance", "pairwise_distance")], ""),
        "novelty-chart": ([series("nearest training digit", "nearest_train_distance")], ""),
    }


def fid_and_floor(fid: tuple, floor: tuple) -> tuple[list[tuple], str]:
    """The FID chart's series and note: the FID and its floor, or, when the floor lies so far
    below the FIDs that their differences would shrink to less than a third of the chart's
    height, the FID alone and a note that names the floor."""
    ys, floors = fid[2], floor[2]
    if not ys or not floors:
        return [fid, floor], ""
    spread, height = max(ys) - min(ys), max(ys) - min(min(ys), min(floors))
    if height <= 0 or spread / height >= 1 / 3:
        return [fid, floor], ""
    return [fid], f"floor {fmt(max(floors), '.4g')} below the chart"


class StudyScreen(FollowScreen):
    """One sampling study: charts of FID, diversity (mean pairwise feature distance) and novelty
    (RMS distance to the nearest training digit) against the value; under them the grid of one
    value at a time, as large as it goes (left and right step through the values, z shows the
    grid alone), beside a table of every value's numbers. It fills as the worker finishes
    values; a line says which value a running study is on."""

    BINDINGS = [
        Binding(
            "left,left_square_bracket",
            "value(-1)",
            "value",
            key_display="←/→",
            priority=True,
            tooltip="show the grid of the value before",
        ),
        Binding(
            "right,right_square_bracket",
            "value(1)",
            "value",
            key_display="→",
            show=False,  # one entry of the key bar with left: "←/→ value"
            priority=True,
            tooltip="show the grid of the value after",
        ),
        Binding(
            "z", "zoom", "zoom grid", tooltip="the grid of the value alone, as large as it goes"
        ),
        Binding("escape", "app.pop_screen", "back", tooltip="back to the runs view"),
    ]

    def __init__(self, name: str, image_class, history=None):
        super().__init__(name, image_class, history)
        self.spec: StudySpec | None = None
        self.values: dict[float, Value] = {}  # the latest event of each finished value
        self.grids: dict[float, Grid] = {}
        self.index: int | None = None  # the value shown (None: the newest finished one)
        self.progress: RunProgress | None = None
        self.queued: list[str] = []

    def compose(self) -> ComposeResult:
        from tui.chart import Chart  # (plotext: imported with the first chart)

        yield Header()
        yield Static("", id="study-line", markup=False)
        with Horizontal(id="study-charts"):
            yield Chart("FID", "FID", id="fid-chart")
            yield Chart("diversity", "pairwise feature distance", id="diversity-chart")
            yield Chart("novelty", "RMS to nearest training digit", id="novelty-chart")
        with Horizontal(id="study-body"):
            with Vertical(id="study-value"):
                yield Label("", id="value-label", markup=False)
                yield GridView(self.image_class, id="value-grid")
            yield Static("", id="study-table")
        yield KeyBar()

    @property
    def current(self) -> float | None:
        """The value a running study is on (the first one not finished), else None."""
        if self.spec is None or self.progress is None or self.progress.state != "running":
            return None
        return next((v for v in self.spec.values if v not in self.values), None)

    @property
    def shown_value(self) -> float | None:
        """The value whose grid is shown: the one stepped to, else the newest finished."""
        if self.spec is None or not self.spec.values:
            return None
        if self.index is not None:
            return self.spec.values[self.index]
        done = [v for v in self.spec.values if v in self.values]
        return done[-1] if done else self.spec.values[0]

    def on_snapshot(self, message: Snapshot) -> None:  # (Textual calls FollowScreen's too)
        if message.problem:
            return
        p = message.progress.get(self.run_name)
        before = (self.progress.state, self.progress.task_text()) if self.progress else None
        self.progress, self.queued = p, message.queued
        if p is not None and (p.state, p.task_text()) != before:
            self._show_line()

    def on_run_events(self, message: RunEvents) -> None:
        from tui.chart import Chart

        if message.name != self.run_name:
            return
        if message.settings is not None:
            self._read_spec(message.settings)
        self.events = self.events + message.events
        new_values = any(isinstance(e, Value) for e in message.events)
        if new_values:
            self.values = study_values(self.events)
        if self.spec is not None and (new_values or not self.ready):
            for chart_id, (series, note) in study_series(self.spec, self.values).items():
                self.query_one(f"#{chart_id}", Chart).show(series, evenly=True, note=note)
        if message.grids is not None:
            self.grids = {g.value: g for g in message.grids if g.value is not None}
        self._show_line()
        self.ready = self.spec is not None

    def _read_spec(self, settings: str) -> None:
        from tui.chart import Chart

        try:
            spec = spec_from_toml(settings)
        except (ValueError, KeyError, TypeError):
            spec = None
        if isinstance(spec, StudySpec):
            self.spec = spec
            for chart in self.query(Chart):
                chart.xlabel = STUDY_VALUE.get(spec.kind, "value")
        else:
            first = (settings.splitlines() or [""])[0]
            self.query_one("#study-line", Static).update(
                f"{self.run_name}: no study settings to show ({first})"
            )

    def action_value(self, delta: int) -> None:
        shown = self.shown_value
        if shown is None or self.spec is None:
            return
        i = self.spec.values.index(shown) + delta
        self.index = min(max(i, 0), len(self.spec.values) - 1)
        self._show_line()

    def action_zoom(self) -> None:
        self.toggle_class("zoomed")

    def table_rows(self) -> list[list[str]]:
        """The table's rows as shown: the value (▶ on the one sampling now), then its numbers,
        or what it waits for."""
        if self.spec is None:
            return []
        current = self.current
        rows = []
        for v in self.spec.values:
            e = self.values.get(v)
            cells = value_cells(e) if e else ["sampling..." if v == current else "to do"]
            rows.append([("▶ " if v == current else "") + f"{v:g}", *cells])
        return rows

    def where_changed(self) -> None:
        self._show_line()

    def _show_line(self) -> None:
        """The study's line, the table of numbers and the grid of the value shown."""
        if self.spec is None:
            return
        self.query_one("#study-line", Static).update(self.line())
        table = Table(box=None, padding=(0, 1), header_style="bold", expand=False)
        rows = self.table_rows()
        for i, col in enumerate((STUDY_VALUE.get(self.spec.kind, "value"), *STUDY_COLUMNS)):
            least = max((len(r[0]) for r in rows), default=1) if i == 0 else None  # values whole
            table.add_column(
                col, no_wrap=True, overflow="ellipsis", justify="right", min_width=least
            )
        shown = self.shown_value
        for v, cells in zip(self.spec.values, rows):
            table.add_row(*cells, style="reverse" if v == shown else "")
        self.query_one("#study-table", Static).update(table)
        grid = self.grids.get(shown)
        self.query_one("#value-grid", GridView).set_grids([grid] if grid else [])
        place = self.spec.values.index(shown) + 1
        state = "" if grid else " · no grid yet"
        self.query_one("#value-label", Label).update(
            f"◀ {STUDY_VALUE.get(self.spec.kind, 'value')} = {shown:g} ▶ "
            f"({place} of {len(self.spec.values)}){state}"
        )

    def line(self) -> str:
        """The study's line: kind, run, n, sampler, and where it is (and under it the warning
        of bad lines in its events.jsonl)."""
        spec, p = self.spec, self.progress
        what = STUDY_VALUE.get(spec.kind, "value")
        sampler = (
            next(reversed(self.values.values())).sampler
            if self.values
            else (spec.keys.sampler or "the run's final sampler")
        )
        parts = [
            f"{spec.kind} on {spec.run}",
            f"n {spec.keys.n}",
            sampler,
            f"{len(self.values)} of {len(spec.values)} values done",
        ]
        current = self.current
        if current is not None:
            place = spec.values.index(current) + 1
            task = p.task_text()
            parts.append(
                f"on value {place} of {len(spec.values)} ({what} = {current:g})"
                + (f": {task}" if task else "")
            )
        elif p is not None:
            q = self.queued.index(self.run_name) if self.run_name in self.queued else None
            parts.append(status_text(p, q) + (f": {p.detail}" if p.detail else ""))
        return " · ".join(parts) + (f"\n{self.problem_note}" if self.problem_note else "")


class CompareScreen(Screen):
    """Several runs: validation loss and FID overlaid, final numbers side by side."""

    BINDINGS = [Binding("escape", "app.pop_screen", "back", tooltip="back to the runs view")]
    ready = False  # every run's history has been drawn

    def __init__(self, names: list[str]):
        super().__init__()
        self.names = list(names)
        self.events: dict[str, list[dict]] = {}
        self.rows: list[list[str]] = []

    def compose(self) -> ComposeResult:
        from tui.chart import Chart  # (plotext: imported with the first chart)

        yield Header()
        with Horizontal(id="compare-charts"):
            yield Chart("validation loss", "MSE", id="loss-chart")
            yield Chart("FID", "FID", id="fid-chart")
        yield FitTable(  # (the first column: each run's glyph on the charts)
            ("", *SUMMARY_COLUMNS),
            ("class entropy", "floor", "epochs", "status", "wall time"),
            id="compare-table",
            cursor_type="row",
        )
        yield KeyBar()

    def on_mount(self) -> None:
        self.sub_title = "compare " + ", ".join(self.names)
        if self.app.last_snapshot is not None:
            self.on_snapshot(self.app.last_snapshot)
        self.app.poller.subscribe(self, runs=tuple(self.names))
        self.app.poll_now()

    def on_unmount(self) -> None:
        self.app.poller.unsubscribe(self)

    def selected_run(self) -> str | None:
        return self.query_one(FitTable).selected()

    def on_run_events(self, message: RunEvents) -> None:
        from tui.chart import Chart

        first = message.name not in self.events
        events = self.events.setdefault(message.name, [])
        events += message.events
        if not first and not any(isinstance(e, CURVE_EVENTS) for e in message.events):
            return
        many = len(self.names) > 1
        shown = [n for n in self.names if n in self.events]
        epochs = epoch_range(*(self.events[n] for n in shown))
        # a series for every run, with points or not: run k has the k-th glyph on both charts
        every = [(n, self.events.get(n, [])) for n in self.names]
        self.query_one("#loss-chart", Chart).show(
            [
                s
                for n, events in every
                for s in loss_series(events, f"{n} " if many else "", train=not many)
            ],
            logy=True,
            xrange=epochs,
        )
        self.query_one("#fid-chart", Chart).show(
            [
                s
                for n, events in every
                for s in fid_series(events, f"{n} " if many else "", floor=not many)
            ],
            xrange=epochs,
        )
        self.ready = len(shown) == len(self.names) and bool(self.rows)

    def on_snapshot(self, message: Snapshot) -> None:
        from tui.chart import series_key

        if message.problem:
            return
        rows = [summary_row(message.progress.get(n) or RunProgress(n)) for n in self.names]
        if rows != self.rows:
            self.rows, many = rows, len(self.names) > 1
            self.query_one(FitTable).fill(  # the glyphs: the legend when the charts have no room
                {cells[0]: [series_key(k) if many else "", *cells] for k, cells in enumerate(rows)}
            )
        self.ready = len(self.events) == len(self.names)


class HelpScreen(ModalScreen):
    """The keys of the screen below, grouped (that screen's, then every screen's), one sentence
    each; enter runs the chosen one, escape closes."""

    BINDINGS = [Binding("escape", "dismiss", "close", tooltip="close the help; nothing runs")]

    def __init__(self, screen: Screen):
        super().__init__()
        self.groups = help_groups(screen)
        self.choices: list[tuple[str, object]] = []

    def compose(self) -> ComposeResult:
        options: list = []
        for title, rows in self.groups:
            options.append(Option(title, disabled=True))
            for keys, description, sentence, action, node, enabled in rows:
                row = Table.grid(padding=(0, 1))  # the sentence wraps in its own column
                row.add_column(width=10, style="bold")
                row.add_column(width=16)
                row.add_column(ratio=1, style="dim")
                row.add_row(keys, description, sentence + ("" if enabled else " (not now)"))
                options.append(Option(row, id=str(len(self.choices)), disabled=not enabled))
                self.choices.append((action, node))
        with Vertical(classes="dialog"):
            yield Label("Keys · enter runs the chosen one · escape closes", markup=False)
            yield OptionList(*options, id="help-keys")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.choices[int(event.option.id)])


def help_groups(screen: Screen) -> list[tuple[str, list]]:
    """(group title, rows) of the keys active on ``screen``: its own, then the app's; a row is
    (keys, description, sentence, action, node, enabled), one per action."""
    rows: dict[tuple[int, str], list] = {}
    for key, (node, binding, enabled, _tip) in screen.active_bindings.items():
        if binding.system or not binding.tooltip:  # Textual's own (tab, copy) say nothing
            continue
        name = screen.app.get_key_display(Binding(key, binding.action))  # each key as itself
        row = rows.setdefault(
            (id(node), binding.action),
            [[], binding.description, binding.tooltip, binding.action] + [node, enabled],
        )
        if binding.show:  # the key bar's words, over a hidden twin's (Textual's ctrl+q "Quit")
            row[1:3] = binding.description, binding.tooltip
        if name not in row[0]:
            row[0].append(name)
    mine = [r for r in rows.values() if r[4] is screen]
    focused = [r for r in rows.values() if r[4] not in (screen, screen.app)]
    app = [r for r in rows.values() if r[4] is screen.app]
    out = []
    for title, group in (
        ("this screen", mine),
        ("the focused list", focused),
        ("every screen", app),
    ):
        if group:
            out.append((title, [(", ".join(r[0]), *r[1:]) for r in group]))
    return out


class TooSmallScreen(Screen):
    """Shown over the others while the terminal is smaller than the app can draw: one line that
    says so; the screen below comes back when the terminal grows. Only ``q`` works here."""

    def __init__(self, size: tuple[int, int], least: tuple[int, int]):
        super().__init__()
        self.size_now, self.least = size, least

    def compose(self) -> ComposeResult:
        yield Static(self.line(), id="too-small", markup=False)

    def line(self) -> str:
        (w, h), (mw, mh) = self.size_now, self.least
        return f"too small: {w}x{h}, needs {mw}x{mh} · q quits"  # one line from 40 columns

    def show(self, size: tuple[int, int]) -> None:
        self.size_now = size
        self.query_one("#too-small", Static).update(self.line())


# --- dialogs --------------------------------------------------------------------------------


class TickList(SelectionList[str]):
    """A :class:`SelectionList` whose ticks are glyphs, ``[x]`` and ``[ ]``, readable without
    colour (and in any font)."""

    TICKED, UNTICKED = "[x] ", "[ ] "

    def _get_left_gutter_width(self) -> int:
        return len(self.TICKED)

    def render_line(self, y: int) -> Strip:
        line = OptionList.render_line(self, y)
        index = self.scroll_offset[1] + y
        try:
            selection = self.get_option_at_index(index)
        except OptionDoesNotExist:
            return line
        ticked = selection.value in self._selected
        style = (next(iter(line)).style or self.rich_style) + Style(meta={"option": index})
        glyph = Segment(self.TICKED if ticked else self.UNTICKED, style + Style(bold=ticked))
        return Strip([glyph, *line])


def train_images(spec: RunSpec) -> int:
    """How many images a run trains on in an epoch: its subset (or the whole training split of
    60,000) less the share held out for validation."""
    n = spec.data.train_subset or 60_000
    return n - round(n * spec.data.val_fraction)


def pick_cost(
    picked: list[RunSpec],
    total: int,
    estimates: dict[str, float | None] | None = None,
    doubts: dict[str, str] | None = None,
) -> str:
    """The pick dialog's line: how many runs are ticked and what they cost: ``diffui plan``'s
    estimate of their wall time (the sum, from ``estimates``: seconds by run, None for a run
    never calibrated on its host; not read yet when None; ``doubts``: the runs whose
    calibration may be slow, :meth:`engine.spec.costs.CalibrationCache.doubt`) and epochs x
    images."""
    if not picked:
        return f"nothing ticked of {total} runs: space ticks one, a ticks all"
    epochs = sum(s.training.epochs for s in picked)
    images = sum(s.training.epochs * train_images(s) for s in picked)
    return (
        f"{len(picked)} of {total} runs ticked · "
        + wall_time_text([s.name for s in picked], estimates, doubts or {})
        + f"{epochs:,} epochs in all · "
        f"{count_text(images)} training images through the network (epochs x images)"
    )


def wall_time_text(
    names: list[str], estimates: dict[str, float | None] | None, doubts: dict[str, str]
) -> str:
    """ "about 1:05:00 of work · ", what of it is known, or that nothing is calibrated, and
    how many of the known were calibrated on a busy machine or without a record of its load."""
    if estimates is None:
        return ""
    known = [n for n in names if estimates.get(n) is not None]
    missing = [n for n in names if estimates.get(n) is None]
    if not known:
        return "time not estimated (not calibrated: diffui plan) · "
    text = f"about {format_seconds(sum(estimates[n] or 0.0 for n in known))} of work"
    if missing:
        text += f" for {len(known)} of them ({_some(missing)} not calibrated: diffui plan)"
    doubted = [n for n in known if n in doubts]
    if doubted:
        text += (
            f" ({_some(doubted)} calibrated under load or by an older diffui: "
            "diffui plan --recalibrate)"
        )
    return text + " · "


def _some(names: list[str]) -> str:
    """ "a, b and 3 more"."""
    return ", ".join(names[:2]) + (f" and {len(names) - 2} more" if len(names) > 2 else "")


def count_text(n: float) -> str:
    """1,234 / 12.3k / 4.5M."""
    for size, unit, least in ((1e9, "G", 1e9), (1e6, "M", 1e6), (1e3, "k", 1e4)):
        if n >= least:
            return f"{n / size:.1f}{unit}"
    return f"{n:,.0f}"


class PickScreen(ModalScreen[list[str]]):
    """Pick runs of the experiments file to queue (a sweep lists each of its runs). Nothing is
    ticked at first (with ``diffui --only``: the runs it names); a line under the list says how
    many runs are ticked and what they cost before enter queues them: ``diffui plan``'s
    estimate of their wall time on their first host, from the calibrations cached on disk (read
    off the event loop; the dialog never calibrates), and epochs x images."""

    BINDINGS = [
        Binding("enter", "submit", "queue", priority=True, tooltip="queue the ticked runs"),
        Binding("space", "toggle", "tick", tooltip="tick or untick the highlighted run"),
        Binding("a", "all", "all", tooltip="tick every run"),
        Binding("n", "none", "none", tooltip="untick every run"),
        Binding("escape", "dismiss", "cancel", tooltip="close this dialog; nothing is queued"),
    ]

    def __init__(self, specs: list[RunSpec], states: dict[str, str], ticked=()):
        super().__init__()
        self.specs, self.states, self.ticked = specs, states, set(ticked)
        self.estimates: dict[str, float | None] | None = None  # seconds by run, once read
        self.doubts: dict[str, str] = {}  # run -> why its calibration may be slow

    def on_mount(self) -> None:
        self.read_estimates()

    @work(thread=True, exclusive=True, group="estimates")
    def read_estimates(self) -> tuple[dict[str, float | None], dict[str, str]]:
        """Each run's estimate on its first host from the cached calibrations, and the doubts
        about them (a file read, on a worker thread; the result comes back in
        :meth:`on_worker_state_changed`)."""
        cache = CalibrationCache()
        estimates = {s.name: cache.run_estimate(s.host[0], s) for s in self.specs}
        keys = {s.name: cache.cached_key(s.host[0], s) for s in self.specs}
        doubts = {n: d for n, k in keys.items() if k and (d := cache.doubt(k))}
        return estimates, doubts

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group == "estimates" and event.state == WorkerState.SUCCESS:
            self.estimates, self.doubts = event.worker.result
            self.query_one("#pick-cost", Label).update(self.cost())

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(
                "Queue which runs? space: tick · a: all · n: none · enter: queue · escape: cancel"
            )
            items = []
            for s in self.specs:
                label = s.name if s.name == s.experiment else f"{s.name}  (sweep of {s.experiment})"
                state = self.states.get(s.name)
                label += f"  ({state})" if state else ""
                items.append((label, s.name, s.name in self.ticked))
            yield TickList(*items, id="pick")
            yield Label(self.cost(), id="pick-cost", markup=False)

    def cost(self) -> str:
        ticked = set(self.ticked)
        if self.is_mounted:
            ticked = set(self.query_one(TickList).selected)
        picked = [s for s in self.specs if s.name in ticked]
        return pick_cost(picked, len(self.specs), self.estimates, self.doubts)

    def on_selection_list_selected_changed(self, event: SelectionList.SelectedChanged) -> None:
        self.query_one("#pick-cost", Label).update(self.cost())

    def action_toggle(self) -> None:
        self.query_one(TickList).action_select()

    def action_all(self) -> None:
        self.query_one(TickList).select_all()

    def action_none(self) -> None:
        self.query_one(TickList).deselect_all()

    def action_submit(self) -> None:
        self.dismiss(list(self.query_one(TickList).selected))


class StudyPickScreen(ModalScreen[str]):
    """Pick one of the experiments file's studies of a run, to queue."""

    BINDINGS = [
        Binding("escape", "dismiss", "cancel", tooltip="close this dialog; nothing changes")
    ]

    def __init__(self, run: str, studies: list[StudySpec], states: dict[str, str]):
        super().__init__()
        self.run, self.studies, self.states = run, studies, states

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(
                f"Queue which study of {self.run}? enter: queue · escape: cancel", markup=False
            )
            items = []
            for s in self.studies:
                what = STUDY_VALUE.get(s.kind, "value")
                state = self.states.get(s.name)
                items.append(
                    f"{s.name}  ({s.kind}, {what} = "
                    f"{', '.join(f'{v:g}' for v in s.values)}, n {s.keys.n})"
                    + (f"  {state}" if state else "")
                )
            yield OptionList(*items, id="pick-study", markup=False)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.studies[event.option_index].name)


class HostPickScreen(ModalScreen[list]):
    """Where the picked runs go: where the experiments file says (their ``host`` keys), this
    machine, or one of the file's ``[hosts]``. Dismisses with the host list (``[]``: as the
    file says)."""

    BINDINGS = [
        Binding("escape", "dismiss", "cancel", tooltip="close this dialog; nothing changes")
    ]

    def __init__(self, hosts: dict):
        super().__init__()
        self.choices: list[list[str]] = [[], ["local"], *([h] for h in hosts)]
        self.labels = [
            "as the experiments file says (each run's host)",
            "local (this machine)",
            *(
                f"{h}  ({spec.kind}: {spec.address or 'this machine'}"
                + (f", GPUs {spec.gpus}" if spec.kind == "ssh" and spec.gpus else "")
                + ")"
                for h, spec in hosts.items()
            ),
        ]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Run them where? enter: queue · escape: cancel", markup=False)
            yield OptionList(*self.labels, id="pick-host", markup=False)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.choices[event.option_index])


class JobsScreen(ModalScreen[int]):
    """How many runs the queue runs at once."""

    BINDINGS = [
        Binding("escape", "dismiss", "cancel", tooltip="close this dialog; nothing changes")
    ]

    def __init__(self, jobs: int):
        super().__init__()
        self.jobs = jobs

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Runs at once (enter to set, escape to cancel):")
            yield Input(str(self.jobs), type="integer", id="jobs")
            yield Label("", id="jobs-error", classes="error", markup=False)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        value = int(event.value) if event.value.strip().lstrip("-").isdigit() else 0
        if value < 1:
            self.query_one("#jobs-error", Label).update("expected an integer >= 1")
            return
        self.dismiss(value)


class EditScreen(ModalScreen[str]):
    """Change one setting of the experiments file and save it (comments and layout are kept).

    It is handed the file's text (the app read it off the event loop) and shows the current
    value of the key from that text; saving (which reads, checks and writes the file) runs in a
    worker."""

    BINDINGS = [
        Binding("escape", "dismiss", "cancel", tooltip="close this dialog; nothing changes")
    ]

    def __init__(self, path: Path, profile: str | None, text: str, target: str = "defaults"):
        from engine.spec.edit import targets  # (tomlkit: only for this dialog)

        super().__init__()
        self.path, self.profile, self.text = path, profile, text
        self.targets = targets(text)
        self.target = target if target in self.targets else "defaults"

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(
                f"Edit {self.path.name}: where, key (section.key), value as TOML; "
                "enter saves, escape cancels"
            )
            yield Select(
                [(t, t) for t in self.targets], value=self.target, allow_blank=False, id="target"
            )
            yield Input(placeholder="training.epochs", id="key")
            yield Input(placeholder='value, e.g. 20 or "cosine"', id="value")
            yield Label("", id="edit-error", classes="error", markup=False)

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "key":
            self._show_current()

    def on_select_changed(self, event: Select.Changed) -> None:
        self._show_current()

    def _show_current(self) -> None:
        from engine.spec.edit import get_setting, key_help

        key = self.query_one("#key", Input).value.strip()
        err = self.query_one("#edit-error", Label)
        try:
            value = get_setting(
                self.text, self.path, str(self.query_one("#target", Select).value), key
            )
        except ConfigError:
            value = None
        info = [f"now: {value!r}"] if value is not None else []
        info += [key_help(key)] if key_help(key) else []
        err.update(" · ".join(info))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "key":
            self.query_one("#value", Input).focus()
            return
        target = str(self.query_one("#target", Select).value)
        key = self.query_one("#key", Input).value.strip()
        value = self.query_one("#value", Input).value.strip()
        self._save(target, key, value)

    @work(thread=True, exclusive=True, group="edit")
    def _save(self, target: str, key: str, value: str) -> None:
        from engine.spec.edit import set_setting

        try:
            set_setting(self.path, target, key, value, self.profile)
        except ConfigError as e:
            self.app.call_from_thread(self.query_one("#edit-error", Label).update, f"error: {e}")
            return
        self.app.call_from_thread(
            self.dismiss, f"saved {key} = {value} at {target} in {self.path.name}"
        )
