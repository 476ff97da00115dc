"""The diffui terminal app: the runs view, and the actions on the queue and its runs.

The queue lives in the runs folder (``queue.json``) and every run in its own folder, so the app
holds no state of its own: closing it (or losing the SSH connection) leaves the workers running,
and opening it again picks everything up from the folders. A thread polls the queue and the run
folders; the event loop only draws what it hands over, so key presses never wait on a worker.
"""
from __future__ import annotations

import copy
import socket
import threading
import time
from functools import partial
from pathlib import Path

from textual import work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.screen import ModalScreen
from textual.widgets import Footer, Header, Static
from textual.worker import get_current_worker

from engine.config import ConfigError, Study, load_study
from engine.queue import Queue, QueueError
from engine.runs import Run, prepare_runs

from .screens import CompareScreen, EditScreen, JobsScreen, PickScreen, RunScreen
from .widgets import RunsTable

# (key, action, footer label, palette title, palette help)
ACTIONS = [
    ("a", "add", "add", "Queue experiments", "pick runs of the experiments file to queue"),
    ("s", "toggle_queue", "start/pause", "Start or pause the queue",
     "a paused queue starts nothing new; running runs go on"),
    ("j", "jobs", "jobs", "Runs at once", "how many runs the queue runs at the same time"),
    ("K", "move(-1)", "up", "Move run up", "move the selected queued run towards the front"),
    ("J", "move(1)", "down", "Move run down", "move the selected queued run towards the back"),
    ("x", "cancel", "cancel", "Cancel run", "take a queued run off the queue, or stop a running one"),
    ("r", "resume", "resume", "Resume run", "queue a stopped run again; it goes on from its checkpoint"),
    ("t", "retry", "retry", "Retry run", "queue a failed run again (from its checkpoint if it has one)"),
    ("o", "open", "open", "Open run", "charts, sample grids, settings and events of the selected run"),
    ("space", "mark", "mark", "Mark run", "mark or unmark the selected run for the compare view"),
    ("c", "compare", "compare", "Compare runs", "curves and final numbers of the marked runs"),
    ("w", "report", "report", "Write report", "figures and report.md of every run, in RUNS/report"),
    ("e", "edit", "edit", "Edit a setting", "change a setting of the experiments file and save it"),
    ("l", "reload", "reload", "Reload experiments file", "read the experiments file again"),
    ("q", "quit", "quit", "Quit", "close the UI; the queue service and its runs go on"),
]
ACTION_NAMES = {a.partition("(")[0] for _, a, *_ in ACTIONS}
TABLE_ACTIONS = {"move", "open", "mark"}  # need the runs table under them


class DiffuiApp(App):
    TITLE = "diffui"
    CSS = """
    #error { color: $error; text-style: bold; display: none; height: auto; }
    #error.shown { display: block; }
    #queue-line { height: 1; color: $text-muted; }
    RunsTable { height: 1fr; }
    #top { height: 2fr; }
    #charts { width: 3fr; }
    #grid-box { width: 2fr; }
    #grid-label { height: 1; }
    #bottom { height: 1fr; min-height: 5; }
    #settings { width: 1fr; }
    #events { width: 2fr; }
    RunScreen.zoomed #charts, RunScreen.zoomed #bottom { display: none; }
    #compare-charts { height: 2fr; }
    #compare-table { height: 1fr; }
    .dialog { width: 90%; height: auto; max-height: 90%; border: thick $primary;
              background: $surface; padding: 0 1; }
    ModalScreen { align: center middle; }
    SelectionList { height: auto; max-height: 16; }
    .error { color: $error; }
    """
    BINDINGS = [Binding(k, a, label) for k, a, label, _, _ in ACTIONS]

    def __init__(self, file: Path, runs_dir: Path, profile: str | None = None,
                 image_class=None, poll_every: float = 0.5, jobs: int | None = None):
        super().__init__()
        if image_class is None:
            from .widgets import image_widget_class
            image_class = image_widget_class("halfcell")
        self.file, self.runs_dir, self.profile = Path(file), Path(runs_dir), profile
        self.image_class = image_class
        self.poll_every = poll_every
        self.here = socket.gethostname()
        self.study: Study | None = None
        self.errors: dict[str, str] = {}  # "file" and "queue": one line each
        self.queue = Queue.open(self.runs_dir)
        if self.queue.error:  # a damaged queue.json: show it, and leave the file alone
            self.errors["queue"] = f"error: {self.queue.error}"
        elif jobs:
            self.queue.set_jobs(jobs)
        self.snapshot: dict = {}
        self._wake = threading.Event()

    # -- layout and refresh --
    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="error", markup=False)
        yield Static("", id="queue-line", markup=False)
        yield RunsTable(id="runs")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.sub_title = f"{self.file.name}{f' · profile {self.profile}' if self.profile else ''}" \
                         f" · {self.runs_dir}"
        self.load_file()
        self.poll_loop()

    def on_unmount(self) -> None:
        self._wake.set()

    def load_file(self) -> bool:
        """Read the experiments file; a problem shows as one line and changes nothing else."""
        try:
            self.study = load_study(self.file, self.profile)
        except ConfigError as e:
            self.show_error("file", f"error: {e}")
            return False
        self.show_error("file", "")
        return True

    def show_error(self, kind: str, text: str) -> None:
        self.errors[kind] = text
        lines = [t for t in self.errors.values() if t]
        try:
            box = self.runs_view.query_one("#error", Static)
        except NoMatches:  # the app is closing
            return
        box.update("\n".join(lines))
        box.set_class(bool(lines), "shown")

    @work(thread=True, exclusive=True, group="poll")
    def poll_loop(self) -> None:
        worker = get_current_worker()
        scanned = 0.0
        while not worker.is_cancelled:
            try:
                with self.queue.lock:
                    if time.time() - scanned > 2.0:
                        self.queue.rescan()
                        scanned = time.time()
                    self.queue.poll()
                    queue_error = f"error: {self.queue.error}" if self.queue.error else ""
                    snap = {n: copy.copy(p) for n, p in self.queue.progress.items()}
                    state = (self.queue.queued(), self.queue.jobs, self.queue.paused)
                problem = ""
            except OSError as e:  # a run folder we cannot read: say so, keep following the rest
                problem = f"error: following the runs: {e}"
            if worker.is_cancelled:
                break
            try:
                self.call_from_thread(self.show_error, "poll", problem)
                self.call_from_thread(self.show_error, "queue", queue_error if not problem else
                                      self.errors.get("queue", ""))
                if not problem:
                    self.call_from_thread(self.show_snapshot, snap, *state)
            except RuntimeError:  # the app is closing
                break
            self._wake.wait(self.poll_every)
            self._wake.clear()

    def poll_now(self) -> None:
        self._wake.set()

    @property
    def runs_view(self):
        return self.screen_stack[0]

    @property
    def table(self) -> RunsTable:
        return self.runs_view.query_one(RunsTable)

    def show_snapshot(self, snap: dict, queued: list[str], jobs: int, paused: bool) -> None:
        self.snapshot = snap
        running = sum(p.state == "running" for p in snap.values())
        state = "paused (s to start)" if paused else "started"
        try:
            self.runs_view.query_one("#queue-line", Static).update(
                f"queue {state} · {jobs} at once · {running} running · {len(queued)} queued")
            self.table.show(snap, queued, self.here)
            screen = self.screen
            if isinstance(screen, RunScreen) and screen.ready:
                screen.refresh_data(snap.get(screen.run.name))
            elif isinstance(screen, CompareScreen) and screen.ready:
                screen.refresh_data(snap)
        except NoMatches:  # the app is closing: its widgets are gone
            pass

    # -- the command palette and which actions apply where --
    def get_system_commands(self, screen):
        yield from super().get_system_commands(screen)
        for key, action, _, title, help in ACTIONS:
            name, _, arg = action.partition("(")
            if self._applies(name, screen) and name != "quit":
                call = partial(getattr(self, f"action_{name}"), *([int(arg[:-1])] if arg else []))
                yield SystemCommand(f"{title}  [{key}]", help, call)

    def check_action(self, action: str, parameters) -> bool | None:
        return self._applies(action, self.screen)

    def _applies(self, action: str, screen) -> bool:
        """Our actions wait while a dialog is open; the table's need the runs view."""
        if isinstance(screen, ModalScreen) and action in ACTION_NAMES:
            return False
        return not (action in TABLE_ACTIONS and screen is not self.screen_stack[0])

    def selected(self) -> Run | None:
        screen = self.screen
        if isinstance(screen, RunScreen):
            return screen.run
        name = self.table.selected()
        return next((r for r in self.queue.runs if r.name == name), None)

    def _with_run(self, fn) -> None:
        run = self.selected()
        if run is None:
            self.say("no run selected", severity="warning")
            return
        try:
            message = fn(run)
        except QueueError as e:
            self.say(str(e), severity="warning")
            return
        if message:
            self.say(message)
        self.poll_now()

    def say(self, message: str, **kw) -> None:
        """A notification shown as plain text (run names and file keys hold brackets)."""
        self.notify(message, markup=False, **kw)

    # -- actions --
    def action_add(self) -> None:
        if self.study is None or self.errors.get("file"):
            self.say(self.errors.get("file") or "no experiments file loaded", severity="error")
            return
        states = {r.name: p.state for r in self.queue.runs if (p := self.snapshot.get(r.name))}
        self.push_screen(PickScreen(self.study.runs, states), self._queue_picked)

    def _queue_picked(self, names: list[str] | None) -> None:
        if names:
            self._prepare_and_queue([s for s in self.study.runs if s.name in names])

    @work(thread=True, group="queue")
    def _prepare_and_queue(self, specs: list) -> None:
        """Make the run folders and queue them, off the event loop: checking a morph run's
        inputs reads FashionMNIST from disk."""
        try:
            runs = prepare_runs(specs, self.runs_dir)
        except ConfigError as e:
            self.call_from_thread(self.say, f"error: {e}", severity="error", timeout=10)
            return
        self.queue.add(runs)
        queued, skipped = [], []
        for run in runs:
            try:
                self.queue.enqueue(run.name)
                queued.append(run.name)
            except QueueError as e:
                skipped.append(str(e))
        text = f"queued {len(queued)} run{'s' * (len(queued) != 1)}"
        if self.queue.paused and queued:
            text += "; press s to start the queue"
        self.call_from_thread(self.say, "; ".join([text, *skipped]))
        self.poll_now()

    def action_toggle_queue(self) -> None:
        try:
            self.queue.set_paused(not self.queue.paused)
        except QueueError as e:
            self.say(str(e), severity="error")
            return
        self.say("queue paused: running runs go on, nothing new starts" if self.queue.paused
                 else f"queue started: up to {self.queue.jobs} at once")
        self.poll_now()

    def action_jobs(self) -> None:
        def set_jobs(n: int | None) -> None:
            if n:
                try:
                    self.queue.set_jobs(n)
                except QueueError as e:
                    self.say(str(e), severity="error")
                    return
                self.say(f"{n} run{'s' * (n != 1)} at once")
                self.poll_now()
        self.push_screen(JobsScreen(self.queue.jobs), set_jobs)

    def action_move(self, delta: int) -> None:
        self._with_run(lambda run: self.queue.move(run.name, delta))

    def action_cancel(self) -> None:
        self._with_run(lambda run: self.queue.cancel(run.name))

    def _requeue(self, run: Run, done: str, state: str) -> str:
        now = run.status().state
        if now != state:
            raise QueueError(f"{run.name} is {now}: only a {state} run can be {done}")
        self.queue.enqueue(run.name)
        return f"{run.name} queued" + ("; press s to start the queue" if self.queue.paused else "")

    def action_resume(self) -> None:
        self._with_run(lambda run: self._requeue(run, "resumed", "resumable"))

    def action_retry(self) -> None:
        self._with_run(lambda run: self._requeue(run, "retried", "failed"))

    def action_open(self) -> None:
        run = self.selected()
        if run is not None:
            self.push_screen(RunScreen(run, self.image_class))

    def on_data_table_row_selected(self, event) -> None:
        if isinstance(event.data_table, RunsTable):
            self.action_open()

    def action_mark(self) -> None:
        table = self.table
        table.toggle_mark()
        table.show(self.snapshot, self.queue.queued(), self.here)

    def action_compare(self) -> None:
        marked = self.table.marked
        runs = [r for r in self.queue.runs if r.name in marked] or \
               [r for r in self.queue.runs if r.events_path.exists()]
        if not runs:
            self.say("no runs to compare yet: mark runs with space", severity="warning")
            return
        self.push_screen(CompareScreen(runs))

    def action_report(self) -> None:
        runs = [r for r in self.queue.runs if r.events_path.exists()]
        if not runs:
            self.say("no run has started yet: nothing to report", severity="warning")
            return
        self.say(f"writing the report of {len(runs)} runs...")
        self._write_report(runs, self.runs_dir / "report")

    @work(thread=True, group="report")
    def _write_report(self, runs: list[Run], out: Path) -> None:
        from engine.report import write_report
        try:
            path = write_report(runs, out)
        except Exception as e:  # shown to the user; the runs are untouched
            self.call_from_thread(self.say, f"report failed: {type(e).__name__}: {e}",
                                  severity="error")
            return
        self.call_from_thread(self.say, f"wrote {path}", timeout=10)

    def action_edit(self) -> None:
        if not self.file.is_file():
            self.say(f"{self.file}: no such file", severity="error")
            return
        run = self.selected()
        target = f"experiments.{run.spec().experiment}" if run else "defaults"

        def saved(message: str | None) -> None:
            if message:
                self.load_file()
                self.say(message)
        self.push_screen(EditScreen(self.file, self.profile, target), saved)

    def action_reload(self) -> None:
        if self.load_file():
            self.say(f"read {self.file.name}: {len(self.study.runs)} runs")

    def action_quit(self) -> None:
        running = sum(p.state == "running" for p in self.snapshot.values())
        queued = 0 if self.queue.paused else len(self.queue.queued())
        self.exit(message=f"diffui: {running} run{'s' * (running != 1)} running, {queued} queued; "
                          "the queue service goes on: open diffui again (or diffui queue status) "
                          "to follow them" if running or queued else None)
