"""The executors by kind: this machine's, and one made from each ``[hosts.NAME]`` table."""

from __future__ import annotations

import importlib
from pathlib import Path

from engine.queue.executors.base import Executor
from engine.queue.executors.local import LocalExecutor
from engine.spec.sections import HostSpec

# a host's kind -> the class (or function) that makes its executor; imported when a host of
# that kind is used, so that a queue of local runs never imports asyncssh or submitit
KINDS = {
    "ssh": "engine.queue.executors.ssh:SSHExecutor",
    "slurm": "engine.queue.executors.slurm:executor",
}


def executors() -> dict[str, Executor]:
    """The executors that need no [hosts] table, by name: this machine's."""
    return {"local": LocalExecutor()}


def make(name: str, table: dict, runs_dir: Path) -> Executor:
    """The executor of host ``name`` from its ``[hosts.NAME]`` table (as the queue keeps it)."""
    spec = HostSpec(**{k: v for k, v in table.items() if k in HostSpec.keys()})
    module, _, attr = KINDS[spec.kind].partition(":")
    return getattr(importlib.import_module(module), attr)(name, spec, Path(runs_dir))
