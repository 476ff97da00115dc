"""The run view's event log: Textual's RichLog, wrapped at its own width, and wrapped again when
that width changes (RichLog wraps a line once, as it is written, at 78 columns at least, and
crops what is wider than the log). A module of its own so that RichLog (and the rich.pretty it
imports) comes with the first run view, not as the UI starts."""

from __future__ import annotations

from textual.events import Resize
from textual.widgets import RichLog


class EventLog(RichLog):
    """The last ``max_lines`` lines written with :meth:`add`, wrapped at the log's width."""

    def __init__(self, max_lines: int = 500, **kw):
        super().__init__(max_lines=max_lines, wrap=True, min_width=1, **kw)
        self.texts: list[str] = []
        self.keep = max_lines
        self.wrapped_at = 0

    def add(self, line: str) -> None:
        self.texts = (self.texts + [line])[-self.keep :]
        self.write(line)

    def on_resize(self, event: Resize) -> None:
        # (RichLog's own on_resize runs after this one: the first time, it writes what waited
        # for the size)
        if event.size.width and event.size.width != self.wrapped_at:
            first = not self.wrapped_at
            self.wrapped_at = event.size.width
            if not first:
                self.clear()
                for line in self.texts:
                    self.write(line)
