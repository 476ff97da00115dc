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

EXIT_FINISHED, EXIT_FAILED, EXIT_STOPPED = 0, 1, 3


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m engine.worker RUN_DIR", file=sys.stderr)
        return 2
    run = Run(Path(argv[0]).resolve())
    if not run.exists():
        print(f"error: {run.path}: not a run folder (no config.toml)", file=sys.stderr)
        return 2
    threads = os.environ.get("DIFFUI_THREADS")
    if threads:
        import torch
        torch.set_num_threads(int(threads))

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    attempt = run.begin_attempt()
    done = threading.Event()

    def heartbeat() -> None:
        while not done.wait(HEARTBEAT_EVERY):
            run.beat()

    threading.Thread(target=heartbeat, daemon=True).start()
    log = EventLog(run.events_path)
    try:
        from .training import run_training
        status = run_training(run, log, stop.is_set)
    except Exception as e:  # the run failed: record why, keep the traceback in worker.log
        traceback.print_exc()
        error = f"{type(e).__name__}: {e}".splitlines()[0]
        log.emit("end", status="failed", error=error)
        run.end_attempt(attempt, "failed", error)
        return EXIT_FAILED
    finally:
        done.set()
    log.emit("end", status=status)
    run.end_attempt(attempt, status)
    log.close()
    return EXIT_FINISHED if status == "finished" else EXIT_STOPPED


if __name__ == "__main__":
    sys.exit(main())
