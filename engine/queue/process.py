"""How diffui starts its own processes and knows them again by pid: the queue service
(``python -m engine.queue.service``), a worker (``python -m engine.jobs.worker``) started by
the local executor or inside a Slurm job. Each of them imports this very diffui first (its
folder leads ``PYTHONPATH``), whatever else is installed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ENGINE_ROOT = Path(__file__).resolve().parents[2]  # the folder that holds the engine package


def python_env(threads: int | None = None) -> dict[str, str]:
    """This process's environment for a python child that imports this diffui: ``PYTHONPATH``
    led by :data:`ENGINE_ROOT`, and ``DIFFUI_THREADS`` (torch's threads) when ``threads``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ENGINE_ROOT), env.get("PYTHONPATH")]))
    if threads:
        env["DIFFUI_THREADS"] = str(threads)
    return env


def pythonpath_line() -> str:
    """:func:`python_env`'s ``PYTHONPATH`` as a shell line (a Slurm job's set-up)."""
    return f"export PYTHONPATH={ENGINE_ROOT}${{PYTHONPATH:+:$PYTHONPATH}}"


def python_command(module: str, *args: str) -> list[str]:
    """``python -m module args`` with this interpreter."""
    return [sys.executable, "-m", module, *args]


def spawn_detached(
    module: str, args: list[str], log: Path, cwd: Path, threads: int | None = None
) -> subprocess.Popen:
    """Start ``python -m module args`` in a session of its own, so that it outlives the
    terminal, the UI or the service that started it; its output is appended to ``log``."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            python_command(module, *args),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=python_env(threads),
            cwd=cwd,
            start_new_session=True,
        )
