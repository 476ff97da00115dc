"""What may name a run, a study or a profile: a safe folder name that none of diffui's own files
in a runs folder has (an experiment's name, with its sweep labels, names the run folder)."""

from __future__ import annotations

import re
from typing import Any

SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")  # always fullmatch (no "a\n")
# what diffui writes in a runs folder itself (engine.queue.client, engine.queue.service,
# engine.rundir.run, the UI's report folder): no run may be named so (tests/test_bad_input.py
# checks the list)
RESERVED_NAMES = ("queue.json", "service.lock", "service.log", "studies", "report")
NAME_EXPECTED = (
    "a safe folder name (letters, digits, '.', '_', '-'; not starting with '.' or "
    "'-'; at most 100 characters)"
)


def safe_name(name: Any) -> bool:
    """Whether ``name`` can name a run, study or profile folder: a safe folder name that none of
    diffui's own files in a runs folder has."""
    return isinstance(name, str) and bool(SAFE_NAME.fullmatch(name)) and name not in RESERVED_NAMES


def name_problem(name: Any) -> str:
    """What a name that is not :func:`safe_name` was expected to be (for a message)."""
    if isinstance(name, str) and name in RESERVED_NAMES:
        return (
            f"a name other than {', '.join(RESERVED_NAMES)} (diffui's own files in a runs folder)"
        )
    return NAME_EXPECTED


STUDIES = "studies"  # a study's name in a queue: studies/NAME (its folder below RUNS/studies)
QUEUE_NAME_EXPECTED = "a run's name (a safe folder name; a study's: studies/NAME)"


def safe_queue_name(name: Any) -> bool:
    """Whether ``name`` can name a run or a study in a queue (``queue.json``): a
    :func:`safe_name`, or ``studies/NAME`` with a safe ``NAME``: a folder directly below the
    runs folder or its ``studies`` folder, never a path that leaves it."""
    if isinstance(name, str) and name.startswith(f"{STUDIES}/"):
        return safe_name(name[len(STUDIES) + 1 :])
    return safe_name(name)
