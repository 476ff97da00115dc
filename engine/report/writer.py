"""A report of run folders: every figure a folder has the data for (:mod:`engine.report.figures`,
each as PNG and PDF), ``report.md`` (a Markdown page: the sections it is given, such as the
claims ledger, then the table of final numbers, the runs compared, each run's settings and
figures with their captions, one section per sampling study) and ``report.pdf``, the same in one
file to hand in.

:func:`plan` lists the figures a report will draw, so progress can count them;
:func:`write_report` draws and writes it. A run folder without the process figures' arrays
(made before diffui wrote them, or not finished) gets those figures skipped; what cannot be read
(a damaged file) is said in the report and left out of the figures, and the rest is drawn.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

from engine.files import atomic_write_bytes, atomic_write_text, make_dir
from engine.report import captions
from engine.report.arrays import (
    by_epoch,
    damaged_files,
    process_figures,
    sample_grids,
    values_in_order,
)
from engine.report.claims import ledger, ledger_table, verdict_counts
from engine.report.document import (
    FigureRef,
    Heading,
    Item,
    Paragraph,
    PdfReport,
    Section,
    to_markdown,
)
from engine.report.figures import (
    fid_figure,
    grids_figure,
    losses_figure,
    process_figure,
    study_figure,
)
from engine.report.seeds import seed_groups, seed_rows
from engine.report.tables import run_spec, settings_table, study_table, summary_table
from engine.rundir.events import Eval
from engine.rundir.progress import RunProgress, summary, why
from engine.rundir.run import STUDIES_DIR, DamagedRun, Run
from engine.spec.specs import StudySpec
from engine.style import save_figure

# The report's own figures (runs overlaid, studies) start with this, which no run name can (run
# names start with a letter or digit), so that a run's "<run>-loss.png" never overwrites them.
OWN = "_"
TITLE = "diffui report"


def study_file(study: Run) -> str:
    """The file name of a study's figure in a report."""
    return f"{OWN}study-{study.path.name}.png"


def plan_run(run: Run) -> list[FigureRef]:
    """The figures of one run that its folder has the data for."""
    made = [FigureRef(f"{run.name}-loss.png", captions.loss([run]), partial(losses_figure, [run]))]
    if by_epoch(run, Eval):
        made.append(
            FigureRef(f"{run.name}-fid.png", captions.fid([run]), partial(fid_figure, [run]))
        )
    if sample_grids(run):
        made.append(
            FigureRef(f"{run.name}-grids.png", captions.grids(run), partial(grids_figure, run))
        )
    for name, event in process_figures(run).items():
        made.append(
            FigureRef(
                f"{run.name}-{name}.png",
                captions.process(run, event),
                partial(process_figure, run, event),
            )
        )
    return made


def objectives(runs: list[Run]) -> dict[str, list[Run]]:
    """The runs by what their network is trained to predict (their degradation): loss curves
    are overlaid only within one (DDPM's noise MSE and morph's digit MSE apart)."""
    out: dict[str, list[Run]] = {}
    for r in runs:
        spec = run_spec(r)
        out.setdefault(spec.degradation if spec else "unknown", []).append(r)
    return out


def plan(runs: list[Run]) -> tuple[dict[str, list[FigureRef]], list[FigureRef]]:
    """(figures of each run by name, figures overlaying the runs) of a report: loss curves of
    the runs of each objective that has several, FID of every run with evaluations."""
    per_run = {r.name: plan_run(r) for r in runs}
    overlays = []
    if len(runs) > 1:
        for kind, group in objectives(runs).items():
            if len(group) > 1:
                overlays.append(
                    FigureRef(
                        f"{OWN}compare-loss-{kind}.png",
                        captions.loss(group),
                        partial(losses_figure, group),
                    )
                )
        with_fid = [r for r in runs if by_epoch(r, Eval)]
        if with_fid:
            overlays.append(
                FigureRef(
                    f"{OWN}compare-fid.png", captions.fid(with_fid), partial(fid_figure, runs)
                )
            )
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
    sections: Sequence[Section] | None = None,
) -> Path:
    """Figures for every run (PNG and PDF), overlaid curves when there are several, a section
    with the table and figure of every sampling study among ``runs``, all in ``report.md`` and
    ``report.pdf``; ``sections`` come first in both (by default the claims ledger and the runs
    that differ only by seed: :func:`study_sections`). ``progress(done,
    total)`` is called before the first figure and after each one. What cannot be read (a
    damaged file of a run) is left out of the figures, said in the report and told to
    ``warn(line)``, one line each; the rest is drawn. Returns report.md's path."""
    out = make_dir(out)
    studies = [r for r in runs if _is_study(r)]
    runs = [r for r in runs if r not in studies]
    found = {r.name: problems(r) for r in [*runs, *studies]}
    told = [x for lines in found.values() for x in lines]
    for line in told:
        if warn:
            warn(line)
    if sections is None:
        sections = study_sections([*runs, *studies])
    items = document(runs, studies, found, sections)
    pdf = PdfReport(TITLE)
    _render(items, out, pdf, told, progress, warn)
    atomic_write_bytes(out / "report.pdf", pdf.close())
    path = out / "report.md"
    atomic_write_text(path, to_markdown(items))
    return path


def study_sections(runs: list[Run]) -> list[Section]:
    """The claims ledger over ``runs`` (runs and studies; the schedules' tables from ``diffui
    schedules --out RUNS/schedules``), then the runs that differ only by their seed, if any."""
    if not runs:
        return []
    plain = [r.path.parent for r in runs if not _is_study(r)]
    runs_dir = plain[0] if plain else runs[0].path.parent.parent
    rows = ledger(runs_dir, runs=runs)
    claims = Section(
        "The study's claims",
        [
            f"Each claim of the study held against these runs: {verdict_counts(rows)}. "
            "How each claim is measured and judged: docs/claims.md (diffui claims prints "
            "this table).",
        ],
        [ledger_table(rows)],
    )
    groups = seed_groups([r for r in runs if not _is_study(r)])
    if not groups:
        return [claims]
    seeds = Section(
        "Runs that differ only by their seed",
        ["Final numbers as mean ± sd across seeds."],
        [seed_rows(groups)],
    )
    return [claims, seeds]


def document(
    runs: list[Run], studies: list[Run], found: dict[str, list[str]], sections: Sequence[Section]
) -> list[Item]:
    """The report's items in order: title, ``sections``, final numbers, runs compared, each
    run, the sampling studies."""
    summaries = [summary(r) for r in runs]
    items: list[Item] = [Heading(TITLE, 1)]
    for sec in sections:
        items += sec.items()
    items += [Heading("Final numbers"), summary_table(summaries)]
    per_run, overlays = plan(runs)
    if overlays:
        items += [Heading("Runs compared"), *overlays]
    for r, s in zip(runs, summaries):
        items += _run_section(r, s, found[r.name], per_run[r.name])
    if studies:
        items.append(Heading("Sampling studies"))
    for study in studies:
        items += _study_section(study, found[study.name])
    return items


def _render(
    items: list[Item],
    out: Path,
    pdf: PdfReport,
    told: list[str],
    progress: Callable[[int, int], None] | None,
    warn: Callable[[str], None] | None,
) -> None:
    """Draw and save each figure (numbered as drawn), adding every item to ``pdf`` in order; a
    figure with a damaged file of its run is not drawn (and told unless ``told`` has said it
    already)."""
    todo = [it for it in items if isinstance(it, FigureRef)]
    if progress:
        progress(0, len(todo))
    done = drawn = 0
    for it in items:
        if not isinstance(it, FigureRef):
            pdf.add(it)
            continue
        try:
            fig = it.draw()
            save_figure(fig, out / it.file)
            drawn += 1
            it.number = drawn
            pdf.add(it, fig)
        except DamagedRun as e:  # (told above, as a rule): draw the others
            if warn and not any(str(e) in line for line in told):
                warn(f"{it.file}: not drawn: {e}")
        done += 1
        if progress:
            progress(done, len(todo))


def _run_section(
    run: Run, p: RunProgress, found: list[str], figures: list[FigureRef]
) -> list[Item]:
    """A run's section: its folder, state, what could not be read, settings and figures."""
    items: list[Item] = [Heading(run.name), Paragraph(f"Run folder: `{run.path}`")]
    if why(p):
        items.append(Paragraph(f"**{p.state}**: {why(p)}"))
    items += [Paragraph(f"Not read: {line}") for line in found if line != f"{run.name}: {p.detail}"]
    table = settings_table(run)
    if table is not None:
        items += [Heading(f"{run.name}: settings", 3), table]
    items += figures
    if not process_figures(run):
        items.append(
            Paragraph(
                "No diffusion or restoration figures: the run folder has none of their "
                "arrays (the run has not finished, or finished before diffui wrote them)."
            )
        )
    return items


def _study_section(study: Run, found: list[str]) -> list[Item]:
    """A sampling study's section: what it is, its table and figure."""
    if study.damage():
        return [
            Heading(study.path.name, 3),
            Paragraph(f"**damaged**: {study.damage()}; study folder: `{study.path}`"),
        ]
    spec = study.study_spec()
    items: list[Item] = [
        Heading(spec.name, 3),
        Paragraph(
            f"{spec.kind} on run {spec.run}, n = {spec.keys.n} samples per value; "
            f"study folder: `{study.path}`"
        ),
    ]
    items += [Paragraph(f"Not read: {line}") for line in found]
    if not values_in_order(study):
        return [*items, Paragraph("No value has finished yet.")]
    return [
        *items,
        study_table(study),
        FigureRef(study_file(study), captions.study(study), partial(study_figure, study)),
    ]
