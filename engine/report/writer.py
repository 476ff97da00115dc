"""A report of run folders: every figure a folder has the data for (:mod:`engine.report.figures`)
and ``report.md``, a Markdown page with the table of final numbers, each run's section and one
per sampling study.

:func:`plan` lists what a report will draw, so progress can count it; :func:`write_report` draws
and writes it. A run folder without the process figures' arrays (made before diffui wrote them,
or not finished) gets those figures skipped; what cannot be read (a damaged file) is said in
``report.md`` and left out of the figures, and the rest is drawn.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from matplotlib.figure import Figure

from engine.files import atomic_write_text, make_dir
from engine.report.arrays import (
    by_epoch,
    damaged_files,
    process_figures,
    sample_grids,
    values_in_order,
)
from engine.report.figures import (
    fid_figure,
    grids_figure,
    losses_figure,
    process_figure,
    save_figure,
    study_figure,
)
from engine.report.tables import markdown_table, study_table
from engine.rundir.events import Eval
from engine.rundir.progress import RunProgress, summary, why
from engine.rundir.run import STUDIES_DIR, DamagedRun, Run
from engine.spec.specs import StudySpec

# The report's own figures (runs overlaid, studies) start with this, which no run name can (run
# names start with a letter or digit), so that a run's "<run>-loss.png" never overwrites them.
OWN = "_"


def study_file(study: Run) -> str:
    """The file name of a study's figure in a report."""
    return f"{OWN}study-{study.path.name}.png"


@dataclass
class Planned:
    """One figure file of a report, drawn when ``draw()`` is called."""

    file: str  # its name in the report folder
    draw: Callable[[], Figure]


def plan_run(run: Run) -> list[Planned]:
    """The figures of one run that its folder has the data for."""
    made = [Planned(f"{run.name}-loss.png", partial(losses_figure, [run]))]
    if by_epoch(run, Eval):
        made.append(Planned(f"{run.name}-fid.png", partial(fid_figure, [run])))
    if sample_grids(run):
        made.append(Planned(f"{run.name}-grids.png", partial(grids_figure, run)))
    for name, event in process_figures(run).items():
        made.append(Planned(f"{run.name}-{name}.png", partial(process_figure, run, event)))
    return made


def plan(runs: list[Run]) -> tuple[dict[str, list[Planned]], list[Planned]]:
    """(figures of each run by name, figures overlaying the runs) of a report."""
    per_run = {r.name: plan_run(r) for r in runs}
    overlays = []
    if len(runs) > 1:
        overlays.append(Planned(f"{OWN}compare-loss.png", partial(losses_figure, runs)))
        if any(by_epoch(r, Eval) for r in runs):
            overlays.append(Planned(f"{OWN}compare-fid.png", partial(fid_figure, runs)))
    return per_run, overlays


def _is_study(run: Run) -> bool:
    try:
        return isinstance(run.spec(), StudySpec)
    except DamagedRun:  # no settings to tell: where it lies
        return run.path.parent.name == STUDIES_DIR


def problems(run: Run) -> list[str]:
    """What the report could not read of ``run``, one line each: a damaged file of the
    worker's, array files, bad lines of events.jsonl."""
    p = summary(run)
    lines = [f"{run.name}: {p.detail}"] if p.state == "damaged" else []
    lines += [f"{run.name}: {e}" for e in damaged_files(run)]
    return lines + p.problems


def write_report(
    runs: list[Run],
    out: Path,
    progress: Callable[[int, int], None] | None = None,
    warn: Callable[[str], None] | None = None,
) -> Path:
    """Figures for every run, overlaid curves when there are several, and ``report.md``; a
    section with the table and figure of every sampling study among ``runs``.
    ``progress(done, total)`` is called before the first figure and after each one. What cannot
    be read (a damaged file of a run) is left out of the figures, said in ``report.md`` and
    told to ``warn(line)``, one line each; the rest is drawn."""
    out = make_dir(out)
    studies = [r for r in runs if _is_study(r)]
    runs = [r for r in runs if r not in studies]
    summaries = [summary(r) for r in runs]
    found = {r.name: problems(r) for r in [*runs, *studies]}
    told = [x for lines in found.values() for x in lines]
    for line in told:
        if warn:
            warn(line)
    per_run, overlays = plan(runs)
    todo = [p for r in runs for p in per_run[r.name]] + overlays
    todo += [
        Planned(study_file(s), partial(study_figure, s))
        for s in studies
        if not s.damage() and values_in_order(s)
    ]
    skipped = _draw(todo, out, told, progress, warn)
    lines = ["# diffui report", "", markdown_table(summaries), ""]
    lines += _shown((p.file for p in overlays), skipped)
    for r, s in zip(runs, summaries):
        lines += _run_section(
            r, s, found[r.name], _shown((p.file for p in per_run[r.name]), skipped)
        )
    if studies:
        lines += ["", "## Sampling studies"]
    for study in studies:
        lines += _study_section(study, found[study.name], skipped)
    path = out / "report.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def _draw(
    todo: list[Planned],
    out: Path,
    told: list[str],
    progress: Callable[[int, int], None] | None,
    warn: Callable[[str], None] | None,
) -> set[str]:
    """Draw and save each planned figure; the files not drawn (a damaged file of theirs, told
    unless ``told`` has said it already)."""
    if progress:
        progress(0, len(todo))
    skipped = set()
    for done, p in enumerate(todo, 1):
        try:
            save_figure(p.draw(), out / p.file)
        except DamagedRun as e:  # (told above, as a rule): draw the others
            skipped.add(p.file)
            if warn and not any(str(e) in line for line in told):
                warn(f"{p.file}: not drawn: {e}")
        if progress:
            progress(done, len(todo))
    return skipped


def _shown(files: Iterable[str], skipped: set[str]) -> list[str]:
    """The Markdown images of the figure files that were drawn."""
    return [f"![{Path(f).stem}]({f})" for f in files if f not in skipped]


def _run_section(run: Run, p: RunProgress, found: list[str], figures: list[str]) -> list[str]:
    """A run's section of report.md: its folder, state, what could not be read, figures."""
    lines = ["", f"## {run.name}", "", f"Run folder: `{run.path}`", ""]
    if why(p):
        lines += [f"**{p.state}**: {why(p)}", ""]
    lines += [f"Not read: {line}" for line in found if line != f"{run.name}: {p.detail}"]
    lines += figures
    if not process_figures(run):
        lines += [
            "",
            "No diffusion or restoration figures: the run folder has none of their "
            "arrays (the run has not finished, or finished before diffui wrote "
            "them).",
        ]
    return lines


def _study_section(study: Run, found: list[str], skipped: set[str]) -> list[str]:
    """A sampling study's section of report.md: what it is, its table and figure."""
    if study.damage():
        return [
            "",
            f"### {study.path.name}",
            "",
            f"**damaged**: {study.damage()}; study folder: `{study.path}`",
        ]
    spec = study.study_spec()
    lines = [
        "",
        f"### {spec.name}",
        "",
        f"{spec.kind} on run {spec.run}, n = {spec.keys.n} "
        f"samples per value; study folder: `{study.path}`",
        "",
    ]
    lines += [f"Not read: {line}" for line in found]
    lines += (
        [study_table(study), "", *_shown([study_file(study)], skipped)]
        if values_in_order(study)
        else ["No value has finished yet."]
    )
    return lines
