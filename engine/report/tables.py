"""The report's Markdown tables: the final numbers of runs, and a sampling study's numbers."""

from __future__ import annotations

from engine.report.arrays import values_in_order
from engine.rundir.progress import SUMMARY_COLUMNS, RunProgress, summary_row
from engine.rundir.run import Run
from engine.spec.sections import STUDY_VALUE
from engine.text import fmt


def markdown_table(summaries: list[RunProgress]) -> str:
    """One row of final numbers per run (the columns of batch mode's table)."""
    rows = ["| " + " | ".join(SUMMARY_COLUMNS) + " |", "|" + "---|" * len(SUMMARY_COLUMNS)]
    rows += ["| " + " | ".join(summary_row(p)) + " |" for p in summaries]
    return "\n".join(rows)


def study_table(study: Run) -> str:
    """The study's numbers as a Markdown table (one row per finished value)."""
    spec = study.study_spec()
    rows = [
        f"| {STUDY_VALUE[spec.kind]} | FID | floor | entropy (bits) | distinct | pairwise "
        "distance | nearest training digit | near-copies |",
        "|" + "---|" * 8,
    ]
    rows += [
        f"| {e.value:g} | {e.fid:.1f} | {e.floor:.1f} | {fmt(e.entropy, '.2f')} | "
        f"{fmt(e.distinct_share, '.0%')} | {fmt(e.pairwise_distance, '.2f')} | "
        f"{fmt(e.nearest_train_distance, '.4f')} | {fmt(e.near_copy_share, '.0%')} |"
        for e in values_in_order(study)
    ]
    return "\n".join(rows)
