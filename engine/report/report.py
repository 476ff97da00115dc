"""The study's figures and numbers as files, from run folders alone.

Per run: loss curves (train and validation), FID against epoch (with its floor), the sequence of
sample grids across epochs, and the process figures whose arrays the worker wrote when training
ended (``engine.jobs.figures``): the forward and backward diffusion of a few images (Gaussian runs) or,
for morph runs, the restoration of one digit from several t and direct against iterative
restoration of ten digits. Across runs: the same curves overlaid. ``write_report`` adds a
Markdown page with the table of final numbers.

Nothing here loads a checkpoint, a dataset or a network (nor imports torch): a run trained on a
remote GPU box reports from a copy of its folder without its checkpoint. A run folder without the
arrays (made before diffui wrote them, or not finished) gets those figures skipped.

Each figure is built as a matplotlib ``Figure`` by a function of the run folders (``*_figure``)
and saved by ``write_report``; ``plan`` lists what a report will draw, so progress can count it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from matplotlib.figure import Figure

from engine.rundir.progress import SUMMARY_COLUMNS, summary, summary_row, why
from engine.rundir.progress import study_values as finished_values
from engine.rundir.events import Epoch, Eval, Figure as FigureEvent, Samples, latest_by_epoch
from engine.spec.config import STUDY_VALUE, StudySpec
from engine.rundir.events import Value as ValueEvent
from engine.rundir.run import STUDIES_DIR, DamagedRun, Run
from engine.rundir.files import atomic_save, atomic_write_text, make_dir
from engine.text import one_line

# --- figures -------------------------------------------------------------------------------------


def _overlay_figure(runs: list[Run]) -> tuple[Figure, object]:
    """A figure for curves of ``runs``, wider when several runs put their legend beside it."""
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(10 if len(runs) > 1 else 7, 4))
    ax = fig.add_subplot()
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # epochs
    return fig, ax


def _legend(ax, runs: list[Run]) -> None:
    if len(runs) > 1:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    else:
        ax.legend(fontsize=7)


def losses_figure(runs: list[Run]) -> Figure:
    fig, ax = _overlay_figure(runs)
    for i, run in enumerate(runs):
        ep = latest_by_epoch(run.events(), Epoch)
        x = list(ep)
        color = f"C{i % 10}"
        ax.plot(x, [e.train_loss for e in ep.values()], "-", color=color,
                label=f"{run.name} train" if len(runs) > 1 else "train")
        ax.plot(x, [e.val_loss for e in ep.values()], "--", color=color,
                label=f"{run.name} validation" if len(runs) > 1 else "validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (MSE to the noise, or to x for morph runs)")
    ax.set_yscale("log")
    ax.set_title("training and validation loss")
    _legend(ax, runs)
    return fig


def fid_figure(runs: list[Run]) -> Figure:
    fig, ax = _overlay_figure(runs)
    for i, run in enumerate(runs):
        ev = latest_by_epoch(run.events(), Eval)
        if not ev:
            continue
        color = f"C{i % 10}"
        ax.plot(list(ev), [e.fid for e in ev.values()], "o-", color=color, label=run.name)
        ax.plot(list(ev), [e.floor for e in ev.values()], ":", color=color,
                label=f"{run.name} floor (real vs real)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("FID (MNIST classifier features)")
    ax.set_yscale("log")
    ax.set_title("FID against epoch")
    _legend(ax, runs)
    return fig


def sample_grids(run: Run) -> list[tuple[int, Path, str]]:
    """(epoch, npy path, sampler) of every sample grid of ``run`` whose file is there."""
    samples = latest_by_epoch(run.events(), Samples)
    return [(e, run.path / s.npy, s.sampler) for e, s in samples.items()
            if (run.path / s.npy).exists()]


def load_array(path: Path) -> np.ndarray:
    """Images of a run folder's ``.npy`` file (..., 28, 28) in [0, 1]; :class:`DamagedRun`
    naming the file when it is not such an array (cut short, empty, other bytes)."""
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise DamagedRun(path, f"damaged (not a NumPy array file: {one_line(e)[:100]})") \
            from None
    if arr.ndim < 3 or arr.shape[-2:] != (28, 28) or not np.issubdtype(arr.dtype, np.floating):
        raise DamagedRun(path, f"damaged (expected images N x 28 x 28, got {arr.dtype} "
                               f"{'x'.join(map(str, arr.shape)) or 'scalar'})")
    return arr


def _damaged_panel(ax, e: DamagedRun) -> None:
    ax.text(0.5, 0.5, f"{e.path.name}\ndamaged", ha="center", va="center", fontsize=7)
    ax.set_xticks([])
    ax.set_yticks([])


def grids_figure(run: Run) -> Figure:
    """The sample grids side by side (a damaged grid file shows as a panel saying so)."""
    grids = sample_grids(run)
    fig = Figure(figsize=(2.2 * len(grids), 2.6))
    for i, (epoch, npy, sampler) in enumerate(grids):
        ax = fig.add_subplot(1, len(grids), i + 1)
        ax.set_title(f"epoch {epoch}\n{sampler}", fontsize=8)
        try:
            ax.imshow(_tile(load_array(npy)), cmap="gray", vmin=0, vmax=1)
        except DamagedRun as e:
            _damaged_panel(ax, e)
            continue
        ax.axis("off")
    return fig


def _tile(imgs: np.ndarray) -> np.ndarray:
    n = len(imgs)
    cols = max(1, round(math.sqrt(n)))
    rows = math.ceil(n / cols)
    out = np.ones((rows * 30, cols * 30), dtype=np.float32)
    for k, img in enumerate(imgs):
        r, c = divmod(k, cols)
        out[r * 30 + 1:r * 30 + 29, c * 30 + 1:c * 30 + 29] = img
    return out


def process_figures(run: Run) -> dict[str, FigureEvent]:
    """The latest ``figure`` event of each name whose array files are all in the run folder."""
    out = {e.name: e for e in run.events() if isinstance(e, FigureEvent)}
    return {name: e for name, e in out.items()
            if all((run.path / f).is_file() for f in e.files)}


def process_table(run: Run, event: FigureEvent) -> np.ndarray:
    """The images of a ``figure`` event: (rows, columns, 28, 28) in [0, 1], files stacked."""
    return np.concatenate([load_array(run.path / f) for f in event.files])


def process_figure(run: Run, event: FigureEvent) -> Figure:
    """A figure of image rows (one image per panel) with the event's row labels and column
    titles."""
    table = process_table(run, event)
    rows, cols = table.shape[:2]
    labels, titles = event.rows or [""] * rows, event.columns or [""] * cols
    fig = Figure(figsize=(1.1 * cols + 0.4, 1.15 * rows + 0.5))
    for i in range(rows):
        for j in range(cols):
            ax = fig.add_subplot(rows, cols, i * cols + j + 1)
            ax.imshow(table[i, j], cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0 and titles[j]:
                ax.set_title(titles[j], fontsize=7)
            if j == 0:
                ax.set_ylabel(labels[i], fontsize=7)
    return fig


# --- the report ----------------------------------------------------------------------------------


# The report's own figures (runs overlaid, studies) start with this, which no run name can (run
# names start with a letter or digit), so that a run's "<run>-loss.png" never overwrites them.
OWN = "_"


def study_file(study: Run) -> str:
    return f"{OWN}study-{study.path.name}.png"


@dataclass
class Planned:
    """One figure file of a report, drawn when ``draw()`` is called."""

    file: str  # its name in the report folder
    draw: Callable[[], Figure]


def plan_run(run: Run) -> list[Planned]:
    """The figures of one run that its folder has the data for."""
    made = [Planned(f"{run.name}-loss.png", lambda: losses_figure([run]))]
    if latest_by_epoch(run.events(), Eval):
        made.append(Planned(f"{run.name}-fid.png", lambda: fid_figure([run])))
    if sample_grids(run):
        made.append(Planned(f"{run.name}-grids.png", lambda: grids_figure(run)))
    for name, event in process_figures(run).items():
        made.append(Planned(f"{run.name}-{name}.png", lambda e=event: process_figure(run, e)))
    return made


def plan(runs: list[Run]) -> tuple[dict[str, list[Planned]], list[Planned]]:
    """(figures of each run by name, figures overlaying the runs) of a report."""
    per_run = {r.name: plan_run(r) for r in runs}
    overlays = []
    if len(runs) > 1:
        overlays.append(Planned(f"{OWN}compare-loss.png", lambda: losses_figure(runs)))
        if any(latest_by_epoch(r.events(), Eval) for r in runs):
            overlays.append(Planned(f"{OWN}compare-fid.png", lambda: fid_figure(runs)))
    return per_run, overlays


def save_figure(fig: Figure, path: Path) -> Path:
    """``fig`` as a PNG file, written whole or not at all."""
    fig.tight_layout()
    atomic_save(lambda f: fig.savefig(f, format="png", dpi=110), path)
    return path


def study_values(study: Run) -> list[ValueEvent]:
    """The finished values of a study (their files on disk), in the study's order."""
    done = finished_values(study.events(), study.path)
    return [done[v] for v in study.spec().values if v in done]


def study_figure(study: Run) -> Figure:
    """Each value's grid side by side, its numbers under it."""
    spec, values = study.spec(), study_values(study)
    fig = Figure(figsize=(2.3 * max(1, len(values)) + 0.4, 3.9))
    for i, e in enumerate(values):
        ax = fig.add_subplot(1, len(values), i + 1)
        try:
            ax.imshow(_tile(load_array(study.path / e.npy)[:spec.keys.n_grid]), cmap="gray",
                      vmin=0, vmax=1)
        except DamagedRun as damaged:
            _damaged_panel(ax, damaged)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{STUDY_VALUE[spec.kind]} = {e.value:g}", fontsize=9)
        ax.set_xlabel(f"FID {e.fid:.0f} (floor {e.floor:.0f})\ndistinct {e.distinct_share:.0%}"
                      f" · near-copies {e.near_copy_share:.0%}\nentropy {e.entropy or 0:.2f} bits",
                      fontsize=7)
    fig.suptitle(f"{spec.name}: {spec.kind} on {spec.run} ({values[0].sampler if values else ''},"
                 f" n = {spec.keys.n})", fontsize=9)
    return fig


def study_table(study: Run) -> str:
    """The study's numbers as a Markdown table (one row per finished value)."""
    spec = study.spec()
    rows = [f"| {STUDY_VALUE[spec.kind]} | FID | floor | entropy (bits) | distinct | pairwise "
            "distance | nearest training digit | near-copies |", "|" + "---|" * 8]
    rows += [f"| {e.value:g} | {e.fid:.1f} | {e.floor:.1f} | {e.entropy or 0:.2f} | "
             f"{e.distinct_share:.0%} | {e.pairwise_distance:.2f} | "
             f"{e.nearest_train_distance:.4f} | {e.near_copy_share:.0%} |"
             for e in study_values(study)]
    return "\n".join(rows)


def _is_study(run: Run) -> bool:
    try:
        return isinstance(run.spec(), StudySpec)
    except DamagedRun:  # no settings to tell: where it lies
        return run.path.parent.name == STUDIES_DIR


def damaged_files(run: Run) -> list[DamagedRun]:
    """The array files named by ``run``'s events that are there but cannot be read."""
    named = [p for e in run.events() for p in
             (e.files if isinstance(e, FigureEvent) else
              [e.npy] if isinstance(e, (Samples, ValueEvent)) else [])]
    out = []
    for rel in dict.fromkeys(named):
        if (run.path / rel).is_file():
            try:
                load_array(run.path / rel)
            except DamagedRun as e:
                out.append(e)
    return out


def problems(run: Run) -> list[str]:
    """What the report could not read of ``run``, one line each: a damaged file of the
    worker's, array files, bad lines of events.jsonl."""
    p = summary(run)
    lines = [f"{run.name}: {p.detail}"] if p.state == "damaged" else []
    lines += [f"{run.name}: {e}" for e in damaged_files(run)]
    return lines + p.problems


def write_report(runs: list[Run], out: Path,
                 progress: Callable[[int, int], None] | None = None,
                 warn: Callable[[str], None] | None = None) -> Path:
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
    todo += [Planned(study_file(s), lambda s=s: study_figure(s)) for s in studies
             if not s.damage() and study_values(s)]
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
    shown = lambda planned: [f"![{Path(p.file).stem}]({p.file})" for p in planned  # noqa: E731
                             if p.file not in skipped]
    lines = ["# diffui report", "", markdown_table(summaries), ""]
    lines += shown(overlays)
    for r, p in zip(runs, summaries):
        lines += ["", f"## {r.name}", "", f"Run folder: `{r.path}`", ""]
        if why(p):
            lines += [f"**{p.state}**: {why(p)}", ""]
        lines += [f"Not read: {line}" for line in found[r.name] if line != f"{r.name}: {p.detail}"]
        lines += shown(per_run[r.name])
        if not process_figures(r):
            lines += ["", "No diffusion or restoration figures: the run folder has none of their "
                          "arrays (the run has not finished, or finished before diffui wrote "
                          "them)."]
    if studies:
        lines += ["", "## Sampling studies"]
    for s in studies:
        if s.damage():
            lines += ["", f"### {s.path.name}", "", f"**damaged**: {s.damage()}; study folder: "
                      f"`{s.path}`"]
            continue
        spec = s.spec()
        lines += ["", f"### {spec.name}", "", f"{spec.kind} on run {spec.run}, n = {spec.keys.n} "
                  f"samples per value; study folder: `{s.path}`", ""]
        lines += [f"Not read: {line}" for line in found[s.name]]
        lines += [study_table(s), "", *shown([Planned(study_file(s), None)])] \
            if study_values(s) else ["No value has finished yet."]
    path = out / "report.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def markdown_table(summaries: list) -> str:
    rows = ["| " + " | ".join(SUMMARY_COLUMNS) + " |", "|" + "---|" * len(SUMMARY_COLUMNS)]
    rows += ["| " + " | ".join(summary_row(p)) + " |" for p in summaries]
    return "\n".join(rows)
