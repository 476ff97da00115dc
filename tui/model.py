"""The UI's poll service, kept apart from the widgets: :class:`Poller` does every file read the
screens need, on the poll thread: the queue's poll (run folders' events and status), each
followed run's events, settings text and sample grids (:class:`tui.history.RunHistory`). It posts
what it found to the screens that subscribed, as the typed messages of :mod:`tui.messages`; the
event loop only draws. :func:`read_experiments` reads the experiments file for the app's worker.
"""

from __future__ import annotations

import copy
import socket
import threading
import time
from pathlib import Path

from engine.queue.client import Queue
from engine.queue.expected import Expected, expected_times
from engine.rundir.run import Run
from engine.spec.checks import ConfigError
from engine.spec.costs import CalibrationCache
from engine.spec.experiments import Experiments, load_experiments, parse_experiments
from tui.history import Grid, RunHistory
from tui.messages import RunEvents, Snapshot


class Poller:
    """The poll thread's work, one :meth:`poll` per round: follow the queue and the run folders,
    and post a :class:`Snapshot` to every subscriber and the new :class:`RunEvents` of the runs
    each follows. Screens subscribe on mount and unsubscribe on unmount; every method is safe
    to call from any thread."""

    RESCAN_EVERY = 2.0  # seconds between looks for run folders another diffui made
    EXPECT_EVERY = 2.0  # seconds between two reckonings of the queued runs' expected times

    def __init__(self, queue: Queue, runs_dir: Path):
        self.queue = queue
        self.runs_dir = Path(runs_dir)
        self.planned: list[str] = []  # the runs of the experiments file, in its order
        self._subs: dict[object, tuple[tuple[str, ...], bool]] = {}
        self._sent: dict[tuple[int, str], tuple[int, int]] = {}  # (events, grids version) sent
        self._histories: dict[str, RunHistory] = {}
        self._lock = threading.Lock()
        self._scanned = 0.0
        self._expected: tuple[float, dict[str, Expected]] = (0.0, {})  # (as of, expected times)
        self.here = socket.gethostname()  # "local" in the where column

    def subscribe(
        self,
        target,
        runs: tuple[str, ...] = (),
        snapshots: bool = True,
        have: dict[str, tuple[int, int]] | None = None,
    ) -> None:
        """``target`` (a screen) gets a :class:`Snapshot` every round when ``snapshots``, and
        the events of ``runs``: all of them at first, then the new ones. ``have`` says what it
        holds already (from :meth:`history`): run name -> (events, grids version)."""
        with self._lock:
            self._subs[target] = (tuple(runs), snapshots)
            for name in runs:
                self._sent.pop((id(target), name), None)
            for name, held in (have or {}).items():
                self._sent[(id(target), name)] = held

    def history(self, name: str) -> tuple[list, list[Grid], int, str | None] | None:
        """What the poll thread has read of a run so far (its ``RunHistory.state``), or None:
        a screen opening on the run draws it in its first frame. Safe on the event loop: no
        file is read, and the objects handed out are never changed."""
        history = self._histories.get(name)
        return history.state if history is not None else None

    def unsubscribe(self, target) -> None:
        with self._lock:
            if self._subs.pop(target, None) is not None:
                for key in [k for k in self._sent if k[0] == id(target)]:
                    del self._sent[key]

    def poll(self) -> None:
        """One round (on the poll thread). The followed runs' events go out first, so that a run
        view that has just opened fills without waiting for the whole queue's poll."""
        with self._lock:
            subs = list(self._subs.items())
        self._feed(subs)
        problem = ""
        try:
            with self.queue.lock:
                if time.time() - self._scanned > self.RESCAN_EVERY:
                    self.queue.rescan()
                    self._scanned = time.time()
                self.queue.poll()
                progress = {n: copy.copy(p) for n, p in self.queue.progress.items()}
                queued, jobs, paused = self.queue.queued(), self.queue.jobs, self.queue.paused
                queue_error = f"error: {self.queue.error}" if self.queue.error else ""
                where = {
                    n: self.queue.state.where_text(n, p.host, self.here)
                    for n, p in progress.items()
                }
                now, expected = self._expected_times()
        except OSError as e:  # a run folder we cannot read: say so, keep following the rest
            problem = f"error: following the runs: {e}"
            progress, queued, jobs, paused = {}, [], self.queue.jobs, self.queue.paused
            queue_error, where, now, expected = "", {}, time.time(), {}
        planned = list(self.planned)
        with self._lock:
            subs = list(self._subs.items())
        for target, (_, snapshots) in subs:
            if snapshots:
                self._post(
                    target,
                    Snapshot(
                        progress,
                        queued,
                        jobs,
                        paused,
                        planned,
                        problem,
                        queue_error,
                        where,
                        expected,
                        now,
                    ),
                )

    def _expected_times(self) -> tuple[float, dict[str, Expected]]:
        """The queued and running runs' expected times (under the queue's lock), reckoned
        again every :data:`EXPECT_EVERY` seconds from the calibrations cached on disk (never
        calibrating: that is ``diffui plan``'s), with the time they are as of."""
        now = time.time()
        if now - self._expected[0] >= self.EXPECT_EVERY:
            runs = {run.name: run for run in self.queue.runs}
            cache = CalibrationCache()
            self._expected = (
                now,
                expected_times(self.queue.state, runs, self.queue.progress, cache, now),
            )
        return self._expected

    def _feed(self, subs) -> None:
        """Read the new events of every run (so that a screen opening on one has its history at
        hand) and post them to the screens following it."""
        names = {r.name for r in list(self.queue.runs)} | {
            name for _, (runs, _) in subs for name in runs
        }
        for name in names:
            history = self._histories.get(name)
            if history is None:
                history = self._histories[name] = RunHistory(Run(self.runs_dir / name))
            try:
                history.update()
            except OSError:
                continue  # shown by the queue's poll below
        for target, (runs, _) in subs:
            for name in runs:
                if self._histories[name].state is None:
                    continue  # not read yet (a folder we could not read)
                events, grids, version, settings = self._histories[name].state
                key = (id(target), name)
                with self._lock:
                    if target not in self._subs:
                        continue
                    sent = self._sent.get(key)
                    if sent == (len(events), version):
                        continue
                    self._sent[key] = (len(events), version)
                n_sent, grids_sent = sent or (0, 0)
                self._post(
                    target,
                    RunEvents(
                        name,
                        events[n_sent:],
                        list(grids) if version != grids_sent else None,
                        settings if sent is None else None,
                    ),
                )

    def _post(self, target, message) -> None:
        if not target.post_message(message):  # closing or closed
            self.unsubscribe(target)


def read_experiments(file: Path, profile: str | None) -> tuple[Experiments | None, str | None, str]:
    """The experiments file (:class:`Experiments`) and its text, or the one-line error of batch
    mode (call it off the event loop)."""
    try:
        text = file.read_text(encoding="utf-8")
        return parse_experiments(text, file, profile), text, ""
    except (OSError, UnicodeDecodeError):
        text = None
    except ConfigError as e:
        return None, text, f"error: {e}"
    try:  # unreadable: load_experiments words it as batch mode does
        return load_experiments(file, profile), None, ""
    except ConfigError as e:
        return None, None, f"error: {e}"
