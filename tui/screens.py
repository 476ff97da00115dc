"""The screens of the diffui app besides the runs view: one run, several runs compared, and the
modal dialogs (pick experiments, runs at once, edit a setting)."""
from __future__ import annotations

import time
from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer, Header, Input, Label, RichLog, Select, SelectionList, Static

from engine.config import ConfigError, RunSpec, spec_to_toml
from engine.edit import get_setting, set_setting, targets
from engine.events import SUMMARY_COLUMNS, Epoch, Eval, EventReader, Samples, summary_row
from engine.events import Progress as StepProgress
from engine.events import RunProgress as Progress
from engine.events import End, Start, latest_by_epoch
from engine.runs import Run

from .widgets import Chart, GridView


class History:
    """A run's events read incrementally: the curves, the evaluations and the grids. The
    frequent step-progress events are left out (the runs view shows those)."""

    def __init__(self, run: Run):
        self.run = run
        self.events: list = []
        self._reader = EventReader(run.events_path)

    def update(self) -> list:
        new = [e for e in self._reader.read() if not isinstance(e, StepProgress)]
        self.events += new
        return new

    def epochs(self) -> dict[int, dict]:
        return latest_by_epoch(self.events, Epoch)

    def evals(self) -> dict[int, dict]:
        return latest_by_epoch(self.events, Eval)

    def grids(self) -> list[tuple[int, Path, str]]:
        return [(epoch, self.run.path / e.png, e.sampler)
                for epoch, e in latest_by_epoch(self.events, Samples).items()
                if (self.run.path / e.png).exists()]


def describe_event(e) -> str | None:
    """One line of a run's event log (None for the frequent progress events)."""
    if isinstance(e, Start):
        return (f"start at epoch {e.epoch}/{e.epochs} on {e.device or '?'}"
                + (" (resumed)" if e.resumed else ""))
    if isinstance(e, Epoch):
        return (f"epoch {e.epoch}/{e.epochs}  train {e.train_loss:.4f}  "
                f"val {e.val_loss:.4f}  ({e.seconds:.1f} s)")
    if isinstance(e, Samples):
        return f"grid of epoch {e.epoch} ({e.sampler}, {e.n} images)"
    if isinstance(e, Eval):
        return (f"FID {e.fid:.2f} (floor {e.floor:.2f}, n {e.n}, {e.sampler}), "
                f"class entropy {e.entropy or 0:.2f} bits")
    if isinstance(e, End):
        return f"end: {e.status}" + (f": {e.error}" if e.error else "")
    return None


def loss_series(h: History, prefix: str = "", train: bool = True) -> list[tuple[str, list, list]]:
    ep = h.epochs()
    out = [(f"{prefix}val", list(ep), [e.val_loss for e in ep.values()])]
    if train:
        out.insert(0, (f"{prefix}train", list(ep), [e.train_loss for e in ep.values()]))
    return out


def fid_series(h: History, prefix: str = "", floor: bool = True) -> list[tuple[str, list, list]]:
    ev = h.evals()
    out = [(f"{prefix}FID", list(ev), [e.fid for e in ev.values()])]
    if floor:
        out.append((f"{prefix}floor", list(ev), [e.floor for e in ev.values()]))
    return out


class RunScreen(Screen):
    """One run: live loss and FID charts, its sample grids epoch by epoch, settings and events."""

    ready = False  # composed and mounted: the app may refresh it
    BINDINGS = [
        Binding("left,left_square_bracket", "grid(-1)", "◀ grid", key_display="[", priority=True),
        Binding("right,right_square_bracket", "grid(1)", "grid ▶", key_display="]", priority=True),
        Binding("home", "grid_to(0)", "first grid", show=False, priority=True),
        Binding("end", "grid_to(-1)", "newest grid", show=False, priority=True),
        Binding("z", "zoom", "zoom grid"),
        Binding("escape", "app.pop_screen", "back"),
    ]

    def __init__(self, run: Run, image_class):
        super().__init__()
        self.run = run
        self.history = History(run)
        self.image_class = image_class

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="top"):
            with Vertical(id="charts"):
                yield Chart("loss", "MSE", id="loss-chart")
                yield Chart("FID", "FID", id="fid-chart")
            with Vertical(id="grid-box"):
                yield Label("", id="grid-label", markup=False)
                yield GridView(self.image_class, id="grid")
        with Horizontal(id="bottom"):
            with VerticalScroll(id="settings"):
                yield Static(self._settings_text(), id="settings-text", markup=False)
            yield RichLog(id="events", max_lines=500, wrap=True)
        yield Footer(compact=True)

    def _settings_text(self) -> str:
        try:
            return spec_to_toml(self.run.spec())
        except (OSError, ValueError) as e:
            return f"cannot read {self.run.config_path}: {e}"

    def on_mount(self) -> None:
        self.sub_title = self.run.name
        self.refresh_data()
        self.ready = True

    def refresh_data(self, progress: Progress | None = None) -> None:
        new = self.history.update()
        if progress is not None:
            self.sub_title = f"{self.run.name} · {progress.state}"
        if not new and self.query_one("#loss-chart", Chart).series:
            return
        log = self.query_one("#events", RichLog)
        for e in new:
            line = describe_event(e)
            if line:
                log.write(time.strftime("%H:%M:%S ", time.localtime(e.time)) + line)
        self.query_one("#loss-chart", Chart).show(loss_series(self.history), logy=True)
        self.query_one("#fid-chart", Chart).show(fid_series(self.history))
        self.query_one("#grid", GridView).set_grids(self.history.grids())
        self._label()

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


class CompareScreen(Screen):
    """Several runs: validation loss and FID overlaid, final numbers side by side."""

    BINDINGS = [Binding("escape", "app.pop_screen", "back")]
    ready = False

    def __init__(self, runs: list[Run]):
        super().__init__()
        self.histories = [History(r) for r in runs]
        self.rows: list[list[str]] = []

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="compare-charts"):
            yield Chart("validation loss", "MSE", id="loss-chart")
            yield Chart("FID", "FID", id="fid-chart")
        yield DataTable(id="compare-table", cursor_type="row")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.sub_title = "compare " + ", ".join(h.run.name for h in self.histories)
        self.query_one(DataTable).add_columns(*SUMMARY_COLUMNS)
        self.refresh_data(self.app.snapshot)
        self.ready = True

    def refresh_data(self, progress: dict[str, Progress]) -> None:
        changed = [h.update() for h in self.histories]
        table = self.query_one(DataTable)
        if any(changed) or not table.row_count:
            many = len(self.histories) > 1
            self.query_one("#loss-chart", Chart).show(
                [s for h in self.histories
                 for s in loss_series(h, f"{h.run.name} " if many else "", train=not many)], logy=True)
            self.query_one("#fid-chart", Chart).show(
                [s for h in self.histories
                 for s in fid_series(h, f"{h.run.name} " if many else "", floor=not many)])
        rows = [summary_row(progress.get(h.run.name) or Progress(h.run.name))
                for h in self.histories]
        if rows != self.rows:
            self.rows, row = rows, table.cursor_row
            table.clear()
            for cells in rows:
                table.add_row(*cells, key=cells[0])
            table.move_cursor(row=row)


# --- dialogs --------------------------------------------------------------------------------

class PickScreen(ModalScreen[list[str]]):
    """Pick runs of the experiments file to queue (a sweep lists each of its runs)."""

    BINDINGS = [Binding("enter", "submit", "queue", priority=True),
                Binding("a", "all", "all"), Binding("n", "none", "none"),
                Binding("escape", "dismiss", "cancel")]

    def __init__(self, specs: list[RunSpec], states: dict[str, str]):
        super().__init__()
        self.specs, self.states = specs, states

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Queue which runs? space: toggle · a: all · n: none · enter: queue · "
                        "escape: cancel")
            items = []
            for s in self.specs:
                label = s.name if s.name == s.experiment else f"{s.name}  (sweep of {s.experiment})"
                state = self.states.get(s.name)
                label += f"  ({state})" if state else ""
                items.append((label, s.name, state not in ("finished", "running")))
            yield SelectionList[str](*items, id="pick")

    def action_all(self) -> None:
        self.query_one(SelectionList).select_all()

    def action_none(self) -> None:
        self.query_one(SelectionList).deselect_all()

    def action_submit(self) -> None:
        self.dismiss(list(self.query_one(SelectionList).selected))


class JobsScreen(ModalScreen[int]):
    """How many runs the queue runs at once."""

    BINDINGS = [Binding("escape", "dismiss", "cancel")]

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
    """Change one setting of the experiments file and save it (comments and layout are kept)."""

    BINDINGS = [Binding("escape", "dismiss", "cancel")]

    def __init__(self, path: Path, profile: str | None, target: str = "defaults"):
        super().__init__()
        self.path, self.profile = path, profile
        text = path.read_text(encoding="utf-8")
        self.targets = targets(text)
        self.target = target if target in self.targets else "defaults"

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(f"Edit {self.path.name}: where, key (section.key), value as TOML; "
                        "enter saves, escape cancels")
            yield Select([(t, t) for t in self.targets], value=self.target, allow_blank=False,
                         id="target")
            yield Input(placeholder="training.epochs", id="key")
            yield Input(placeholder="value, e.g. 20 or \"cosine\"", id="value")
            yield Label("", id="edit-error", classes="error", markup=False)

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "key":
            self._show_current()

    def on_select_changed(self, event: Select.Changed) -> None:
        self._show_current()

    def _show_current(self) -> None:
        key = self.query_one("#key", Input).value.strip()
        err = self.query_one("#edit-error", Label)
        try:
            value = get_setting(self.path.read_text(encoding="utf-8"), self.path,
                                str(self.query_one("#target", Select).value), key)
        except ConfigError:
            err.update("")
            return
        err.update("" if value is None else f"now: {value!r}")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "key":
            self.query_one("#value", Input).focus()
            return
        target = str(self.query_one("#target", Select).value)
        key = self.query_one("#key", Input).value.strip()
        value = self.query_one("#value", Input).value.strip()
        try:
            set_setting(self.path, target, key, value, self.profile)
        except ConfigError as e:
            self.query_one("#edit-error", Label).update(f"error: {e}")
            return
        self.dismiss(f"saved {key} = {value} at {target} in {self.path.name}")
