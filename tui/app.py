"""The diffui terminal app: the shell around the screens. It holds the queue, the poll thread and
the bindings that apply on every screen; the runs view is :class:`tui.runs_screen.RunsScreen`.

The queue lives in the runs folder (``queue.json``) and every run in its own folder, so the app
holds no state of its own: closing it (or losing the SSH connection) leaves the workers running,
and opening it again picks everything up from the folders. A thread polls the queue and the run
folders and posts typed messages to the screens (:mod:`tui.messages`); another thread carries out
the actions on the queue in the order of the key presses; the event loop only draws, so key
presses never wait on a worker or a file.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from functools import partial
from pathlib import Path
from queue import Empty, SimpleQueue

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.screen import ModalScreen
from textual.worker import get_current_worker

from engine.errors import UserError
from engine.files import atomic_write_json, os_error_line
from engine.queue.client import Queue, QueueError
from engine.rundir.run import can_sample, is_study, study_run
from engine.spec.checks import ConfigError
from engine.spec.experiments import Experiments, select
from engine.spec.specs import RunSpec
from tui.messages import FileLoaded, Snapshot
from tui.model import Poller, read_experiments
from tui.runs_screen import RUNS_ACTIONS, RunsScreen
from tui.screens import (
    EditScreen,
    HelpScreen,
    HostPickScreen,
    JobsScreen,
    PickScreen,
    RunScreen,
    StudyPickScreen,
    StudyScreen,
    TooSmallScreen,
)
from tui.widgets import RunsTable, image_widget_class

# (key, action, footer label, palette title, palette help): the actions of every screen
APP_ACTIONS = [
    ("a", "add", "add", "Queue experiments", "pick runs of the experiments file to queue"),
    (
        "s",
        "toggle_queue",
        "start/pause",
        "Start or pause the queue",
        "a paused queue starts nothing new; running runs go on",
    ),
    ("j", "jobs", "jobs", "Runs at once", "how many runs the queue runs at the same time"),
    (
        "x",
        "cancel",
        "cancel",
        "Cancel run",
        "take a queued run off the queue, or stop a running one",
    ),
    (
        "r",
        "resume",
        "resume",
        "Resume run",
        "queue a stopped run again; it goes on from its checkpoint",
    ),
    (
        "t",
        "retry",
        "retry",
        "Retry run",
        "queue a failed run again (from its checkpoint if it has one)",
    ),
    ("w", "report", "report", "Write report", "figures and report.md of every run, in RUNS/report"),
    (
        "v",
        "claims",
        "claims",
        "Claims ledger",
        "each claim of the study, what the runs measured, and whether it holds",
    ),
    ("e", "edit", "edit", "Edit a setting", "change a setting of the experiments file and save it"),
    ("l", "reload", "reload", "Reload experiments file", "read the experiments file again"),
    (
        "?,f1",
        "help",
        "help",
        "Keys of this screen",
        "every key of the current screen with what it does; enter runs the chosen one",
    ),
    ("q", "quit", "quit", "Quit", "close the UI; the queue service and its runs go on"),
]
OFF_BAR = {"claims"}  # in the help screen and the palette, not in the key bar (no room there)
APP_ACTION_NAMES = {a.partition("(")[0] for _, a, *_ in APP_ACTIONS}


UI_FILE = "ui.json"  # in the runs folder: what the UI keeps between sessions (the marks)


def read_marks(path: Path) -> set[str]:
    """The marked runs kept in ``path`` (none when it is missing or damaged)."""
    try:
        marked = json.loads(path.read_text(encoding="utf-8")).get("marked", [])
    except (OSError, ValueError, AttributeError):
        return set()
    return {m for m in marked if isinstance(m, str)} if isinstance(marked, list) else set()


class DiffuiApp(App):
    TITLE = "diffui"
    # the styles of every screen, read once as the app starts (a screen's own CSS_PATH is read
    # when it is first shown, and then restyles the whole app: a run view would open slower)
    CSS_PATH = [
        "styles/app.tcss",
        "styles/run.tcss",
        "styles/study.tcss",
        "styles/compare.tcss",
        "styles/dialogs.tcss",
    ]
    BINDINGS = [
        Binding(k, a, label, key_display=k.split(",")[0], tooltip=help, show=a not in OFF_BAR)
        for k, a, label, _, help in APP_ACTIONS
    ]
    MIN_SIZE = (64, 18)  # (columns, rows) below which one line says the terminal is too small
    RUN_SCREENS_KEPT = 8  # run views kept composed (and following their runs) for a quick reopen

    def __init__(
        self,
        file: Path,
        runs_dir: Path,
        profile: str | None = None,
        image_class=None,
        poll_every: float = 0.5,
        jobs: int | None = None,
        only: list[str] | None = None,
    ):
        """``only``: the experiments or runs of ``diffui --only``; the UI shows those runs (and
        their studies) alone, as batch mode runs them alone."""
        super().__init__()
        if image_class is None:
            image_class = image_widget_class("halfcell")
        self.file, self.runs_dir, self.profile = Path(file), Path(runs_dir), profile
        self.image_class = image_class
        self.poll_every = poll_every
        self.experiments: Experiments | None = None
        self.only = list(only or [])
        self.selected: list[RunSpec] = []  # the runs of the file --only names (all without it)
        self.file_text: str | None = None  # the experiments file as last read (by a worker)
        self.errors: dict[str, str] = {}  # "file", "queue" and "poll": one line each
        self.queue = Queue.open(self.runs_dir)
        if self.queue.error:  # a damaged queue.json: show it, and leave the file alone
            self.errors["queue"] = f"error: {self.queue.error}"
        elif jobs:
            self.queue.set_jobs(jobs)
        self.poller = Poller(self.queue, self.runs_dir)
        self._wake = threading.Event()
        self._jobs: SimpleQueue = SimpleQueue()  # actions on the queue, run in order off the loop
        self._run_screens: list[str] = []  # installed run views, least recently opened first
        self._announce_load = False
        self.marked = read_marks(self.runs_dir / UI_FILE)  # the runs view's marks, kept

    # -- the shell: screens, threads, messages --
    def get_default_screen(self) -> RunsScreen:
        self.runs_screen = RunsScreen()
        return self.runs_screen

    def on_mount(self) -> None:
        self.sub_title = (
            f"{self.file.name}{f' · profile {self.profile}' if self.profile else ''}"
            f" · {self.runs_dir}"
        )
        self.show_error("queue", self.errors.get("queue", ""))
        self.fit(self.size)
        self.load_file()
        self.poll_loop()
        self.action_loop()

    def on_resize(self, event) -> None:
        self.fit(event.size)

    def fit(self, size) -> None:
        """Below :attr:`MIN_SIZE` the too-small line covers the screens; back when it grows."""
        if not self.is_mounted or not self.screen_stack:
            return
        small = size.width < self.MIN_SIZE[0] or size.height < self.MIN_SIZE[1]
        top = self.screen
        if small and isinstance(top, TooSmallScreen):
            top.show(tuple(size))
        elif small:
            self.push_screen(TooSmallScreen(tuple(size), self.MIN_SIZE))
        elif isinstance(top, TooSmallScreen):
            self.pop_screen()

    def on_unmount(self) -> None:
        self._wake.set()
        self._jobs.put(None)

    @work(thread=True, exclusive=True, group="poll")
    def poll_loop(self) -> None:
        worker = get_current_worker()
        while not worker.is_cancelled:
            self.poller.poll()
            self._wake.wait(self.poll_every)
            self._wake.clear()

    def poll_now(self) -> None:
        self._wake.set()

    @work(thread=True, exclusive=True, group="actions")
    def action_loop(self) -> None:
        """Carry out the actions on the queue and its run folders (they take the queue's lock
        and write queue.json), one at a time in the order they were asked for."""
        worker = get_current_worker()
        while not worker.is_cancelled:
            try:
                job = self._jobs.get(timeout=0.5)
            except Empty:
                continue
            if job is None:
                break
            try:
                job()
            except QueueError as e:  # e.g. a damaged queue.json: say so, change nothing
                self.tell(str(e), severity="error")
            except OSError as e:  # a full or read-only disk: queue.json is left as it was
                self.tell(f"error: {os_error_line(e)}", severity="error", timeout=10)
            self.poll_now()

    def keep_marks(self, marked: set[str]) -> None:
        """Keep the runs view's marks in the runs folder, for the next session."""
        self.marked = set(marked)
        path, data = self.runs_dir / UI_FILE, {"marked": sorted(marked)}
        self.in_background(lambda: atomic_write_json(path, data))

    def in_background(self, job) -> None:
        self._jobs.put(job)

    def tell(self, message: str, **kw) -> None:
        """:meth:`say` from a worker thread."""
        try:
            self.call_from_thread(self.say, message, **kw)
        except RuntimeError:  # the app is closing
            pass

    def load_file(self) -> None:
        """Read the experiments file in a worker; a problem shows as one line and changes
        nothing else."""
        self._load_file()

    @work(thread=True, exclusive=True, group="file")
    def _load_file(self) -> None:
        experiments, text, error = read_experiments(self.file, self.profile)
        selected: list[RunSpec] = []
        if experiments is not None:
            try:
                selected = select(experiments, self.only)
            except ConfigError as e:
                error = f"error: {e}"
            self.poller.planned = [s.name for s in selected]
        self.post_message(FileLoaded(experiments, text, error, selected))
        self.poll_now()

    def on_file_loaded(self, message: FileLoaded) -> None:
        self.file_text = message.text
        self.show_error("file", message.error)
        if message.experiments is not None:
            self.experiments, self.selected = message.experiments, message.selected
        if self._announce_load:
            self._announce_load = False
            if message.experiments is not None:
                self.say(f"read {self.file.name}: {len(message.experiments.runs)} runs")

    @property
    def last_snapshot(self) -> Snapshot | None:
        """The latest good :class:`Snapshot`, as the runs view shows it."""
        return self.runs_screen.snapshot

    @property
    def snapshot(self) -> dict:
        """Run name -> Progress of every run folder, as the runs view shows it."""
        return self.last_snapshot.progress if self.last_snapshot else {}

    def show_error(self, kind: str, text: str) -> None:
        self.errors[kind] = text
        try:
            self.runs_screen.show_errors([t for t in self.errors.values() if t])
        except NoMatches:  # not composed yet, or the app is closing
            pass

    @property
    def table(self) -> RunsTable:
        return self.runs_screen.table

    def open_run(self, name: str) -> None:
        """Show the run view of ``name`` (the study view of a study): the kept one when it was
        opened lately."""
        screen_class = StudyScreen if is_study(name) else RunScreen
        if self.RUN_SCREENS_KEPT < 1:
            self.push_screen(screen_class(name, self.image_class, self.poller.history(name)))
            return
        key = f"run:{name}"
        if not self.is_screen_installed(key):
            self.install_screen(
                screen_class(name, self.image_class, self.poller.history(name)), key
            )
        self._run_screens = [k for k in self._run_screens if k != key] + [key]
        while len(self._run_screens) > self.RUN_SCREENS_KEPT:
            old = self.get_screen(self._run_screens.pop(0))
            self.uninstall_screen(old)
            old.remove()
        self.push_screen(key)

    # -- the command palette and which actions apply where --
    def get_system_commands(self, screen):
        # Textual's "Keys" panel (one word a key; escape left it open) gives way to our help
        yield from (c for c in super().get_system_commands(screen) if c.title != "Keys")
        for key, action, _, title, help in APP_ACTIONS + RUNS_ACTIONS:
            name, _, arg = action.partition("(")
            args = [int(arg[:-1])] if arg else []
            if name in APP_ACTION_NAMES and self._applies(name, screen) and name != "quit":
                yield SystemCommand(
                    f"{title}  [{key}]", help, partial(getattr(self, f"action_{name}"), *args)
                )
            elif name not in APP_ACTION_NAMES and isinstance(screen, RunsScreen):
                yield SystemCommand(
                    f"{title}  [{key}]", help, partial(getattr(screen, f"action_{name}"), *args)
                )

    def check_action(self, action: str, parameters) -> bool | None:
        return self._applies(action, self.screen)

    def _applies(self, action: str, screen) -> bool:
        """Our actions wait while a dialog is open; only quit works while the terminal is too
        small."""
        if isinstance(screen, TooSmallScreen):
            return action == "quit"
        if isinstance(screen, HelpScreen):  # its own keys; q still quits
            return action in ("quit", "help")
        return not (isinstance(screen, ModalScreen) and action in APP_ACTION_NAMES)

    def selected_run(self) -> str | None:
        """The run the current screen is about (the runs table's cursor, the open run)."""
        selected = getattr(self.screen, "selected_run", None)
        return selected() if selected else None

    def with_run(self, fn) -> None:
        """``fn(queue, name)`` on the selected run, off the event loop; its answer or refusal is
        shown."""
        name = self.selected_run()
        if name is None:
            self.say("no run selected", severity="warning")
            return
        if name not in self.snapshot:
            self.say(
                f"{name} is not queued yet: press a to pick the runs to queue", severity="warning"
            )
            return

        def job() -> None:
            try:
                message = fn(self.queue, name)
            except QueueError as e:
                self.tell(str(e), severity="warning")
                return
            if message:
                self.tell(message)

        self.in_background(job)

    def say(self, message: str, **kw) -> None:
        """A notification shown as plain text (run names and file keys hold brackets)."""
        self.notify(message, markup=False, **kw)

    # -- actions --
    def file_read(self) -> bool:
        """Whether the experiments file has been read well (else the reason is said)."""
        if self.experiments is None or self.errors.get("file"):
            self.say(self.errors.get("file") or "no experiments file loaded", severity="error")
            return False
        return True

    def action_add(self) -> None:
        if not self.file_read():
            return
        states = {n: p.state for n, p in self.snapshot.items()}
        ticked = [s.name for s in self.selected] if self.only else []
        self.push_screen(PickScreen(self.selected, states, ticked), self._queue_picked)

    def shown(self, name: str) -> bool:
        """Whether the runs view shows run folder ``name``: every one, or with ``--only`` the
        runs it names and their studies."""
        if not self.only:
            return True
        picked = {s.name for s in self.selected}
        if is_study(name):
            studies = self.experiments.studies if self.experiments else []
            return any(study_run(Path(), s.name).name == name and s.run in picked for s in studies)
        return name in picked

    def _queue_picked(self, names: list[str] | None) -> None:
        if names is not None and not names:
            self.say("nothing ticked: nothing queued")
        if not names:
            return
        specs = [s for s in self.experiments.runs if s.name in names]
        if not self.experiments.hosts:
            self.in_background(partial(self._queue_runs, specs))
            return

        def placed(host: list | None) -> None:
            if host is None:
                return
            chosen = [dataclasses.replace(spec, host=host) for spec in specs] if host else specs
            self.in_background(partial(self._queue_runs, chosen))

        self.push_screen(HostPickScreen(self.experiments.hosts), placed)

    def queue_study(self, name: str | None) -> None:
        """Queue a study of the experiments file on the finished run ``name``: the one study of
        that run, or the one picked in a dialog when it has several."""
        if name is None:
            self.say("no run selected", severity="warning")
            return
        if not self.file_read():
            return
        if is_study(name):
            self.say(
                f"{name} is a study: select the run it samples from and press S", severity="warning"
            )
            return
        from engine import usecases

        studies = usecases.studies_of(self.experiments, [name])
        p = self.snapshot.get(name)
        state = "not queued" if p is None or p.state == "pending" else p.state
        if not studies:
            self.say(
                f"{self.file.name} has no study of {name}: add a [[studies]] table with "
                f'run = "{name}"',
                severity="warning",
            )
        elif not can_sample(state):
            self.say(
                f"{name} is {state}: a study samples from a finished run "
                f"(its studies: {', '.join(s.name for s in studies)})",
                severity="warning",
            )
        elif len(studies) == 1:
            self._queue_study(studies[0].name)
        else:
            states = {
                s.name: p.state
                for s in studies  # of the studies that have a folder
                if (p := self.snapshot.get(study_run(self.runs_dir, s.name).name))
            }
            self.push_screen(StudyPickScreen(name, studies, states), self._queue_study)

    def _queue_study(self, name: str | None) -> None:
        spec = next((s for s in self.experiments.studies if s.name == name), None)
        if spec is not None:
            self.in_background(partial(self._queue_runs, [spec], f"study {name}"))

    def _queue_runs(self, specs: list, what: str | None = None) -> None:
        """Make the run folders and queue them (on the action thread: checking a morph run's
        inputs reads FashionMNIST from disk); ``what`` names them in the answer."""
        from engine import usecases  # (the queue service: imported when first asked for)

        try:
            done = usecases.queue_runs(self.queue, specs, self.experiments.hosts)
        except (UserError, QueueError) as e:
            self.tell(f"error: {e}", severity="error", timeout=10)
            return
        n = len(done.names)
        text = f"queued {what}" if what and n else f"queued {n} run{'s' * (n != 1)}"
        if self.queue.paused and n:
            text += "; press s to start the queue"
        self.tell("; ".join([text, *done.skipped]))

    def action_toggle_queue(self) -> None:
        def toggle() -> None:
            queue = self.queue
            queue.set_paused(not queue.paused)
            self.tell(
                "queue paused: running runs go on, nothing new starts"
                if queue.paused
                else f"queue started: up to {queue.jobs} at once"
            )

        self.in_background(toggle)

    def action_jobs(self) -> None:
        def set_jobs(n: int | None) -> None:
            if n:

                def job() -> None:
                    self.queue.set_jobs(n)
                    self.tell(f"{n} run{'s' * (n != 1)} at once")

                self.in_background(job)

        jobs = self.last_snapshot.jobs if self.last_snapshot else self.queue.jobs
        self.push_screen(JobsScreen(jobs), set_jobs)

    def action_cancel(self) -> None:
        from engine import usecases

        self.with_run(usecases.cancel)

    def action_resume(self) -> None:
        from engine import usecases

        self.with_run(partial(self._queue_again, usecases.resume))

    def action_retry(self) -> None:
        from engine import usecases

        self.with_run(partial(self._queue_again, usecases.retry))

    @staticmethod
    def _queue_again(use_case, queue: Queue, name: str) -> str:
        """``use_case`` (resume or retry) on run ``name``, and the answer to show."""
        use_case(queue, name)
        return f"{name} queued" + ("; press s to start the queue" if queue.paused else "")

    def action_report(self) -> None:
        started = [n for n, p in self.snapshot.items() if p.last_time is not None]
        runs = [r for r in self.queue.runs if r.name in started]
        if not runs:
            self.say("no run has started yet: nothing to report", severity="warning")
            return
        self.say(f"writing the report of {len(runs)} runs...")
        self._write_report(runs, self.runs_dir / "report")

    @work(thread=True, group="report")
    def _write_report(self, runs: list, out: Path) -> None:
        from engine.report.writer import write_report

        unread: list[str] = []
        try:
            path = write_report(runs, out, warn=unread.append)
        except OSError as e:
            self.tell(f"report failed: {os_error_line(e)}", severity="error", timeout=10)
            return
        except Exception as e:  # shown to the user; the runs are untouched
            self.tell(f"report failed: {type(e).__name__}: {e}", severity="error")
            return
        if unread:  # damaged files: left out, the rest drawn
            self.tell(
                f"wrote {path}; could not read {len(unread)} file"
                f"{'s' * (len(unread) != 1)}: {unread[0]}",
                severity="warning",
                timeout=10,
            )
        else:
            self.tell(f"wrote {path}", timeout=10)

    def action_claims(self) -> None:
        from tui.claims_screen import ClaimsScreen  # (the report's claims: numpy)

        self.push_screen(ClaimsScreen(self.runs_dir))

    def action_edit(self) -> None:
        if self.file_text is None:
            self.say(self.errors.get("file") or f"{self.file}: not read yet", severity="error")
            return
        name = self.selected_run()
        runs = self.experiments.runs if self.experiments else []
        spec = next((s for s in runs if s.name == name), None)
        target = f"experiments.{spec.experiment}" if spec else "defaults"

        def saved(message: str | None) -> None:
            if message:
                self.load_file()
                self.say(message)

        self.push_screen(EditScreen(self.file, self.profile, self.file_text, target), saved)

    def action_help(self) -> None:
        """The keys of the current screen, grouped; the one chosen with enter is run."""
        screen = self.screen
        if isinstance(screen, HelpScreen):
            return

        def chosen(choice) -> None:
            if choice is not None:
                action, node = choice
                self.call_later(self.run_action, action, node)

        self.push_screen(HelpScreen(screen), chosen)

    def action_reload(self) -> None:
        self._announce_load = True
        self.load_file()

    def action_quit(self) -> None:
        self.exit(message=self.quit_line())

    def quit_line(self) -> str | None:
        """The line printed as the UI closes while runs go on without it (None when none do)."""
        running = sum(p.state == "running" for p in self.snapshot.values())
        queued = 0 if self.queue.paused else len(self.queue.queued())
        if not running + queued:
            return None
        n = running + queued
        where = f" --profile {self.profile}" if self.profile else ""
        return (
            f"{n} run{'s' * (n != 1)} continue{'s' * (n == 1)} in the queue service "
            f"({running} running, {queued} queued); diffui queue status{where}"
        )
