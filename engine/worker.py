"""The worker process: ``python -m engine.worker RUN_DIR`` trains one run to its end.

It records itself in the run folder (worker.json, heartbeat, exit.json) so that anyone can tell
its state from the folder alone. SIGTERM or SIGINT stop it cleanly between two optimizer steps;
the run stays resumable from its last checkpoint.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import traceback
from pathlib import Path

from .runs import HEARTBEAT_EVERY, EventLog, Run

EXIT_CODES = {"finished": 0, "failed": 1, "stopped": 3}


def execute(run: Run, stop: threading.Event) -> str:
    """Train ``run`` as one attempt, keeping its worker records; 'finished', 'stopped' or
    'failed'. ``stop`` asks it to stop at the next optimizer step."""
    attempt = run.begin_attempt()
    done = threading.Event()

    def heartbeat() -> None:
        while not done.wait(HEARTBEAT_EVERY):
            run.beat()

    threading.Thread(target=heartbeat, daemon=True).start()
    log = EventLog(run.events_path)
    error = ""
    try:
        from .training import run_training
        status = run_training(run, log, stop.is_set)
    except Exception as e:  # the run failed: record why, keep the traceback in worker.log
        traceback.print_exc()
        status, error = "failed", " ".join(f"{type(e).__name__}: {e}".split())  # one line
    finally:
        done.set()
    log.emit("end", status=status, **({"error": error} if error else {}))
    log.close()
    run.end_attempt(attempt, status, error)
    return status


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m engine.worker RUN_DIR", file=sys.stderr)
        return 2
    run = Run(Path(argv[0]).resolve())
    if not run.exists():
        print(f"error: {run.path}: not a run folder (no config.toml)", file=sys.stderr)
        return 2
    if os.environ.get("DIFFUI_THREADS"):
        import torch
        torch.set_num_threads(int(os.environ["DIFFUI_THREADS"]))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return EXIT_CODES[execute(run, stop)]


if __name__ == "__main__":
    sys.exit(main())
