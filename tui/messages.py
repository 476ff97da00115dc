"""The typed messages the poll thread posts to the screens (and the workers to the app).

They carry plain data read off the event loop; handlers (``on_snapshot``, ``on_run_events``,
``on_file_loaded``) only draw it. None bubbles: each is posted to the screen that subscribed."""

from __future__ import annotations

from textual.message import Message

from engine.queue.expected import Expected
from engine.rundir.events import Event
from engine.rundir.progress import RunProgress
from engine.spec.experiments import Experiments
from tui.history import Grid


class Snapshot(Message, bubble=False):
    """The queue and every run folder, one poll round: ``progress`` by run name (copies),
    ``queued`` in queue order, ``planned`` the runs of the experiments file in its order, and
    ``problem`` a one-line error when the runs could not be followed (then ``progress`` is
    empty), ``queue_error`` the one line of a damaged queue.json ("" when it is fine), ``where``
    each run's place in words (``gpu1``, ``→ gpu1, local``, ``cluster: job 3 RUNNING``),
    ``expected`` the expected start and end of each queued and running run as of ``now``
    (:func:`engine.queue.expected.expected_times`, from the cached calibrations)."""

    def __init__(
        self,
        progress: dict[str, RunProgress],
        queued: list[str],
        jobs: int,
        paused: bool,
        planned: list[str],
        problem: str = "",
        queue_error: str = "",
        where: dict[str, str] | None = None,
        expected: dict[str, Expected] | None = None,
        now: float = 0.0,
    ):
        super().__init__()
        self.progress, self.queued, self.jobs, self.paused = progress, queued, jobs, paused
        self.planned, self.problem, self.queue_error = planned, problem, queue_error
        self.where, self.expected, self.now = where or {}, expected or {}, now


class RunEvents(Message, bubble=False):
    """New events of one followed run (its whole history in the first message to a screen),
    without the step-progress ones. ``grids`` is the run's sample grids when they changed
    (else None), ``settings`` its resolved settings as TOML in the first message (else None)."""

    def __init__(
        self, name: str, events: list[Event], grids: list[Grid] | None, settings: str | None
    ):
        super().__init__()
        self.name, self.events, self.grids, self.settings = name, events, grids, settings


class FileLoaded(Message, bubble=False):
    """The experiments file as read by a worker (:class:`Experiments`) and its text, or the
    one-line error; ``selected`` its runs that ``--only`` names (all of them without it)."""

    def __init__(
        self,
        experiments: Experiments | None,
        text: str | None,
        error: str,
        selected: list | None = None,
    ):
        super().__init__()
        self.experiments, self.text, self.error = experiments, text, error
        self.selected = list(selected or [])
