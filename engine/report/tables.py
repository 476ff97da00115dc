"""The report's Markdown tables: the final numbers of runs, and a sampling study's numbers."""

from __future__ import annotations

from engine.report.arrays import values_in_order
from engine.rundir.estimates import Estimate
from engine.rundir.progress import SUMMARY_COLUMNS, RunProgress, summary_row
from engine.rundir.run import Run
from engine.spec.sections import STUDY_VALUE


def markdown_table(summaries: list[RunProgress]) -> str:
    """One row of final numbers per run (the columns of batch mode's table)."""
    rows = ["| " + " | ".join(SUMMARY_COLUMNS) + " |", "|" + "---|" * len(SUMMARY_COLUMNS)]
    rows += ["| " + " | ".join(summary_row(p)) + " |" for p in summaries]
    return "\n".join(rows)


def study_table(study: Run) -> str:
    """The study's numbers as a Markdown table (one row per finished value)."""
    spec = study.study_spec()
    rows = [
        f"| {STUDY_VALUE[spec.kind]} | FID [95% interval] | floor | entropy (bits) | distinct | pairwise "
        "distance | nearest training digit | near-copies |",
        "|" + "---|" * 8,
    ]
    rows += [
        f"| {e.value:g} | {Estimate.of(e).text()} | {e.floor:.1f} | {e.entropy or 0:.2f} | "
        f"{e.distinct_share:.0%} | {e.pairwise_distance:.2f} | "
        f"{e.nearest_train_distance:.4f} | {e.near_copy_share:.0%} |"
        for e in values_in_order(study)
    ]
    return "\n".join(rows)
