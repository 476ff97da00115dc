"""The claims ledger in the UI (``v``, or "Claims ledger" in the palette): each claim of the
study, its verdict, what the runs measured and why, as ``diffui claims`` prints it
(:mod:`engine.report.claims`). Computed off the event loop from the run folders; escape closes.
"""

from __future__ import annotations

from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label

from engine.report.claims import HOLDS, UNDECIDED, Row, ledger

COLUMNS = ("claim", "verdict", "diffui", "why")
STYLES = {HOLDS: "green", UNDECIDED: "yellow"}  # does not hold: red


class ClaimsScreen(ModalScreen):
    """The claims ledger of the runs folder, one row per claim."""

    BINDINGS = [Binding("escape", "dismiss", "close", tooltip="close the claims ledger")]

    def __init__(self, runs_dir: Path):
        super().__init__()
        self.runs_dir = runs_dir
        self.rows: list[Row] = []

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(
                "Claims ledger (reading the run folders...) · escape closes", id="claims-title"
            )
            yield DataTable(id="claims", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns(*COLUMNS)
        self._read()

    @work(thread=True, exclusive=True)
    def _read(self) -> None:
        rows = ledger(self.runs_dir)
        self.app.call_from_thread(self.show, rows)

    def show(self, rows: list[Row]) -> None:
        from rich.text import Text

        self.rows = rows
        table = self.query_one(DataTable)
        table.clear()
        for r in rows:
            verdict = Text(r.verdict, style=STYLES.get(r.verdict, "red"))
            table.add_row(f"{r.id} {r.claim}", verdict, r.measured, r.reason, key=r.id)
        counts = ", ".join(
            f"{sum(r.verdict == v for r in rows)} {v}" for v in (HOLDS, "does not hold", UNDECIDED)
        )
        self.query_one("#claims-title", Label).update(
            f"Claims ledger of {self.runs_dir}: {counts} · escape closes"
        )
