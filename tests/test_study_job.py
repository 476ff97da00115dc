"""A sampling study as a job: a study folder run by the worker on a finished tiny morph run writes
each value's samples, grid, value event and results.csv row, resumes at the values it has not
finished, and the report shows its table and figure."""

from __future__ import annotations

import csv
import threading

import numpy as np
import pytest
from conftest import MORPH_STUDY as STUDY
from conftest import tiny_study

from engine.jobs.study import RESULT_COLUMNS, run_study
from engine.jobs.worker import execute
from engine.rundir.events import EventLog, Start, Value
from engine.rundir.run import prepare_runs, study_run
from engine.spec.experiments import load_experiments


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished tiny morph run and the study's folder beside it (not started)."""
    folder = tmp_path_factory.mktemp("study")
    f = tiny_study(folder / "exp.toml", name="m", epochs=1)
    f.write_text(
        f.read_text().replace(
            '[[experiments]]\nname = "m"\n', '[[experiments]]\nname = "m"\n' + STUDY
        )
    )
    study = load_experiments(f)
    run = prepare_runs(study.runs, folder / "runs")[0]
    assert execute(run, threading.Event()) == "finished", run.status()
    return folder / "runs", study.studies[0]


def test_a_study_stopped_after_a_value_resumes_with_the_rest(finished):
    runs_dir, spec = finished
    folder = prepare_runs([spec], runs_dir)[0]
    assert folder.path == study_run(runs_dir, "noise").path and folder.name == "studies/noise"

    def after_first_value() -> bool:  # a stop request that lands once one value is done
        return any(isinstance(e, Value) for e in folder.events())

    log = EventLog(folder.events_path)
    assert run_study(folder, log, after_first_value) == "stopped"
    log.close()
    with open(folder.path / "results.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == list(RESULT_COLUMNS) and [r[0] for r in rows[1:]] == ["0"]

    assert execute(folder, threading.Event()) == "finished"  # the worker, as the queue runs it
    events = folder.events()
    assert [(e.epoch, e.epochs, e.resumed) for e in events if isinstance(e, Start)] == [
        (0, 2, False),
        (1, 2, True),
    ]
    values = [e for e in events if isinstance(e, Value)]
    assert [v.value for v in values] == [0, 0.5]  # each value once
    for v in values:
        arr = np.load(folder.path / v.npy)
        assert arr.shape == (24, 28, 28) and arr.dtype == np.float32
        assert 0 <= arr.min() and arr.max() <= 1 and (folder.path / v.png).is_file()
        assert v.n == 24 and v.sampler == "iterative-4" and v.fid > v.floor > 0
        assert sum(v.histogram) == 24 and 0 <= v.distinct_share <= 1
        assert 0 <= v.near_copy_share <= 1 and v.nearest_train_distance > 0
    assert values[0].npy == "value-0.npy" and values[1].png == "value-0.5.png"
    with open(folder.path / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["value"] for r in rows] == ["0", "0.5"]
    assert float(rows[1]["fid"]) == pytest.approx(values[1].fid, abs=1e-4)
    assert (folder.path / "study.png").stat().st_size > 5000
    assert folder.status().state == "finished"

    from engine.report.writer import write_report

    out = runs_dir.parent / "report"
    md = write_report([folder], out).read_text()
    assert "### noise" in md and "| 0.5 |" in md and "(_study-noise.png)" in md
    assert (out / "_study-noise.png").is_file()
