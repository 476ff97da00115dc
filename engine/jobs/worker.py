"""The worker process: ``python -m engine.jobs.worker RUN_DIR`` runs one job to its end.

A job is whatever its run folder holds: a training run (``engine.jobs.training``) or a sampling
study (``engine.jobs.study``); the executor that started the worker does not know which. The
worker records itself in the run folder (worker.json, heartbeat, exit.json, events.jsonl) so
that anyone can tell its state from the folder alone, and holds ``.worker.lock`` while it
lives, so that a second worker of the same run refuses to start rather than train it twice.
SIGTERM or SIGINT stop it cleanly between two optimizer steps; the run stays resumable from its
last checkpoint.
"""

from __future__ import annotations

import fcntl
import os
import signal
import sys
import threading
import traceback
from pathlib import Path

from engine.files import os_error_line
from engine.jobs.tasks import Stopped
from engine.rundir.events import End, EventLog
from engine.rundir.run import EXIT_BUSY, EXIT_CODES, HEARTBEAT_EVERY, Run, RunError
from engine.spec.specs import StudySpec
from engine.text import one_line

# The jobs (and torch) are imported only once a job runs: the worker refuses a folder that is
# not a run, damaged or held by another worker without waiting seconds for torch, and a host's
# install check (``import engine.jobs.worker`` over SSH) stays quick.


def job_function(run: Run):
    """What the worker runs for this folder: ``fn(run, log, should_stop) -> status``: a
    sampling study for a study folder, training otherwise."""
    if isinstance(run.spec(), StudySpec):
        from engine.jobs.study import run_study  # lazy: torch (see above)

        return run_study
    from engine.jobs.training import run_training  # lazy: torch (see above)

    return run_training


def execute(run: Run, stop: threading.Event) -> str:
    """Run ``run``'s job as one attempt, keeping its worker records; 'finished', 'stopped' or
    'failed'. ``stop`` asks it to stop at the next safe point."""
    attempt = run.begin_attempt()
    done = threading.Event()

    def heartbeat() -> None:
        while not done.wait(HEARTBEAT_EVERY):
            run.beat()

    threading.Thread(target=heartbeat, daemon=True).start()
    log = EventLog(run.events_path)
    error = ""
    try:
        status = job_function(run)(run, log, stop.is_set)
    except Stopped:  # a long task (sampling, evaluation, figures) heard the stop request
        status = "stopped"
    except Exception as e:  # the run failed: record why, keep the traceback in worker.log
        traceback.print_exc()
        status = "failed"
        why = os_error_line(e) if isinstance(e, OSError) else f"{type(e).__name__}: {e}"
        error = one_line(e) if isinstance(e, RunError) else one_line(why)
    finally:
        done.set()
    try:
        log.emit(End(status=status, error=error, started=attempt["started"]))
        log.close()
    except OSError:  # a full disk: the small exit record below may still fit
        traceback.print_exc()
    run.end_attempt(attempt, status, error)
    return status


def hold_run(run: Run):
    """The open lock file of ``run`` once this process holds it; None when another worker
    does. Keep the returned file open for as long as the worker lives."""
    f = open(run.path / ".worker.lock", "a")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        return None
    return f


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m engine.jobs.worker RUN_DIR", file=sys.stderr)
        return 2
    run = Run(Path(argv[0]).resolve())
    if not run.exists():
        print(f"error: {run.path}: not a run folder (no config.toml)", file=sys.stderr)
        return 2
    state = run.status()
    if state.state == "damaged":  # starting would overwrite the worker's records
        print(
            f"error: {run.path}: {state.detail}; not starting (fix or remove that file)",
            file=sys.stderr,
        )
        return 2
    lock = hold_run(run)
    if lock is None:
        print(
            f"error: {run.path}: another worker runs it already; not starting a second",
            file=sys.stderr,
        )
        return EXIT_BUSY
    if os.environ.get("DIFFUI_THREADS"):
        import torch  # lazy: only now that the worker runs a job (see above)

        torch.set_num_threads(int(os.environ["DIFFUI_THREADS"]))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return EXIT_CODES[execute(run, stop)]


if __name__ == "__main__":
    sys.exit(main())
