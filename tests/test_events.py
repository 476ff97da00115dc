"""events.jsonl as an interface: every event type round-trips, the reader skips and names bad
lines, a torn last line neither breaks reading nor swallows the next event, and the one fold
turns events into what the front ends show."""

from __future__ import annotations

import json

import pytest

from engine.jobs.tasks import TaskProgress
from engine.rundir import events as ev
from engine.rundir.events import (
    TYPES,
    BadEvent,
    Checkpoint,
    End,
    Epoch,
    Eval,
    EventLog,
    EventReader,
    Figure,
    Other,
    Progress,
    Samples,
    Start,
    Value,
    from_dict,
    latest_by_epoch,
    read_events,
)
from engine.rundir.progress import RunProgress

EXAMPLES = [
    Start(
        time=1.0,
        epoch=0,
        epochs=3,
        device="cpu",
        data_source="IDX files in /d",
        train_size=900,
        val_size=100,
        parameters=1234,
        resumed=False,
    ),
    Progress(time=2.0, epoch=1, step=5, steps=8, loss=0.25),
    Progress(time=2.5, task="FID classifier", step=10, steps=100),
    Epoch(
        time=3.0, epoch=1, epochs=3, train_loss=0.5, val_loss=0.45, seconds=1.5, images_per_s=600.0
    ),
    Samples(
        time=4.0,
        epoch=1,
        png="samples/epoch-0001.png",
        npy="samples/epoch-0001.npy",
        n=4,
        sampler="DDIM-4",
        seconds=0.1,
    ),
    Eval(
        time=5.0,
        epoch=1,
        sampler="DDIM-4",
        n=200,
        backbone="lenet",
        fid=80.5,
        floor=12.0,
        histogram=[20] * 10,
        entropy=3.32,
        sample_seconds=1.0,
        score_seconds=0.5,
    ),
    Checkpoint(time=6.0, epoch=1),
    Figure(
        time=7.0,
        name="diffusion",
        files=["figures/diffusion-forward.npy"],
        epoch=3,
        rows=["forward", ""],
        columns=["t=0", "t=40"],
        t=[0, 40],
    ),
    Value(
        time=7.5,
        value=0.01,
        n=200,
        sampler="iterative-4",
        png="value-0.01.png",
        npy="value-0.01.npy",
        fid=90.0,
        floor=12.0,
        histogram=[20] * 10,
        entropy=3.3,
        distinct_share=1.0,
        pairwise_distance=4.5,
        nearest_train_distance=0.03,
        near_copy_share=0.0,
        seconds=2.0,
    ),
    End(time=8.0, status="failed", error="RuntimeError: boom"),
]


def test_every_event_type_round_trips_through_json(tmp_path):
    assert {type(e) for e in EXAMPLES} == set(TYPES.values())  # every type has an example
    log = EventLog(tmp_path / "events.jsonl")
    for e in EXAMPLES:
        log.emit(e)
    log.close()
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    assert [json.loads(line)["type"] for line in lines] == [e.type for e in EXAMPLES]
    assert read_events(tmp_path / "events.jsonl") == EXAMPLES
    assert [from_dict(json.loads(json.dumps(e.to_dict()))) for e in EXAMPLES] == EXAMPLES


def test_an_event_without_a_time_is_stamped_when_written(tmp_path):
    log = EventLog(tmp_path / "e.jsonl")
    written = log.emit(Checkpoint(epoch=2))
    assert written.time > 1.7e9 and read_events(tmp_path / "e.jsonl") == [written]


def test_bad_lines_are_skipped_and_named_unknown_types_kept(tmp_path):
    path = tmp_path / "events.jsonl"
    good = [json.dumps(e.to_dict()) for e in EXAMPLES[:2]]
    path.write_text(
        "\n".join(
            [
                good[0],
                "42",
                '{"type": "epoch"}',
                "not json",
                '{"type": "epoch", "epoch": "one", "epochs": 2, "train_loss": 1,'
                ' "val_loss": 1, "seconds": 1}',
                '{"type": "gpu", "time": 3, "util": 0.9}',
                good[1],
            ]
        )
        + "\n"
    )
    reader = EventReader(path)
    got = reader.read()
    assert got[0] == EXAMPLES[0] and got[-1] == EXAMPLES[1]
    assert got[1] == Other(time=3, data={"type": "gpu", "time": 3, "util": 0.9})
    assert reader.problems == [
        f"{path}: line 2: expected a JSON object, got int",
        f"{path}: line 3: epoch event without 'epoch'",
        f"{path}: line 4: not JSON",
        f'{path}: line 5: epoch event: epoch = "one" is not int',
    ]
    with pytest.raises(BadEvent):
        from_dict({"type": "end"})


def test_a_torn_last_line_waits_and_a_new_writer_starts_a_fresh_line(tmp_path):
    path = tmp_path / "events.jsonl"
    log = EventLog(path)
    log.emit(EXAMPLES[0])
    log.close()
    with open(path, "a") as f:  # a worker killed mid-write
        f.write('{"type": "epoch", "epo')
    reader = EventReader(path)
    assert reader.read() == [EXAMPLES[0]] and reader.read() == []
    log = EventLog(path)  # the resumed worker
    log.emit(EXAMPLES[-1])
    log.close()
    assert reader.read() == [EXAMPLES[-1]]  # the torn line is reported, the new event kept
    assert reader.problems == [f"{path}: line 2: not JSON"]


def test_latest_by_epoch_keeps_the_last_of_a_repeated_epoch():
    first = Epoch(time=1, epoch=1, epochs=2, train_loss=1.0, val_loss=1.0, seconds=1)
    again = Epoch(time=2, epoch=1, epochs=2, train_loss=0.9, val_loss=0.9, seconds=1)
    assert latest_by_epoch([first, EXAMPLES[0], again], Epoch) == {1: again}


def test_the_fold_follows_attempts_tasks_and_numbers():
    p = RunProgress("r")
    p.state = "running"
    for e in EXAMPLES[:3]:
        p.fold(e)
    assert (p.epoch, p.epochs, p.step, p.steps, p.loss) == (0, 3, 5, 8, 0.25)
    assert p.task == "FID classifier" and p.task_text(now=2.5) == "FID classifier 10%"
    p.fold(Progress(time=4.5, task="FID classifier", step=50, steps=100))
    assert p.task_text(now=4.5).startswith("FID classifier 50% eta 0:02")
    for e in EXAMPLES[3:]:
        if not isinstance(e, Value):  # a study's event (below)
            p.fold(e)
    assert (p.epoch, p.train_loss, p.val_loss, p.fid, p.floor, p.entropy, p.sampler) == (
        1,
        0.5,
        0.45,
        80.5,
        12.0,
        3.32,
        "DDIM-4",
    )
    assert p.task == "" and p.elapsed() == 7.0  # from start (1.0) to end (8.0)
    p.fold(Start(time=10.0, epoch=1, epochs=3))  # resumed: a second attempt
    p.fold(Epoch(time=12.0, epoch=2, epochs=3, train_loss=0.4, val_loss=0.4, seconds=2))
    p.state = "resumable"  # it died after epoch 2: counted up to its last event
    assert p.elapsed() == 9.0 and p.fraction == pytest.approx(2 / 3)


def test_task_progress_writes_rate_limited_events(tmp_path):
    log = EventLog(tmp_path / "e.jsonl")
    progress = TaskProgress(log, "final samples", every=3600)
    for done in range(0, 11):
        progress(done, 10)
    got = [(e.task, e.step, e.steps) for e in read_events(tmp_path / "e.jsonl")]
    assert got == [("final samples", 0, 10), ("final samples", 10, 10)]


def test_every_type_is_documented_with_its_fields():
    """docs/run-folders.md has a row per event type that lists its fields, in order."""
    import dataclasses
    import re
    from pathlib import Path

    page = (Path(__file__).resolve().parents[1] / "docs" / "run-folders.md").read_text()
    for name, cls in ev.TYPES.items():
        rows = [line for line in page.splitlines() if line.startswith(f"| `{name}` |")]
        assert len(rows) == 1, name
        fields = [f.name for f in dataclasses.fields(cls) if f.name != "time"]
        assert re.findall(r"`([^`]*)`", rows[0].split("|")[2]) == fields, name


def test_a_studys_values_fold_like_epochs():
    p = RunProgress("studies/s", state="running")
    p.fold(Start(time=1.0, epoch=1, epochs=3))  # resumed with one value done
    p.fold(EXAMPLES[-2])
    assert (p.epoch, p.epochs, p.fid, p.floor, p.sampler) == (2, 3, 90.0, 12.0, "iterative-4")
    assert p.fraction == pytest.approx(2 / 3) and p.eta() == pytest.approx(2.0)


def test_a_runs_status_in_words_as_each_front_end_shows_it():
    """One status_text for the UI's runs table (ui), batch mode's bars (bar) and diffui queue
    status (table): each front end's words, as they were when each wrote its own."""
    from engine.rundir.progress import status_text

    def shown(p: RunProgress, queued_at: int | None = None) -> tuple[str, str, str]:
        return tuple(status_text(p, queued_at, style) for style in ("ui", "bar", "table"))

    assert shown(RunProgress("r")) == ("not queued", "pending", "pending")
    assert shown(RunProgress("r"), 1) == ("queued #2", "queued", "queued #2")
    assert shown(RunProgress("r", state="failed")) == ("failed",) * 3
    p = RunProgress("r", state="running")
    p.fold(Start(time=1.0, epoch=0, epochs=4))
    p.fold(Epoch(time=3.0, epoch=1, epochs=4, train_loss=1, val_loss=1, seconds=2))
    p.fold(Progress(time=4.0, step=5, steps=10, loss=0.25))
    assert shown(p) == ("running  38%", "epoch 1/4  loss 0.2500  eta 0:05", "running 38%")
    assert shown(p, 0) == ("running  38%", "queued", "running 38%")  # running beats queued
    p.fold(Progress(time=5.0, task="FID classifier", step=10, steps=100))
    assert shown(p) == (
        "FID classifier 10%",
        f"epoch 1/4  {p.task_text()}",
        f"running 38% ({p.task_text()})",
    )


def test_a_studys_finished_values_are_the_latest_of_each_with_files_on_disk(tmp_path):
    from dataclasses import replace

    from engine.rundir.progress import study_values

    a, b = EXAMPLES[-2], replace(EXAMPLES[-2], value=0.1, npy="value-0.1.npy", fid=70.0)
    again = replace(a, fid=80.0, time=9.0)
    assert study_values([a, EXAMPLES[0], b, again]) == {0.01: again, 0.1: b}
    assert list(study_values([a, b, again])) == [0.01, 0.1]  # in the order they first came
    (tmp_path / "value-0.1.npy").write_bytes(b"")
    assert study_values([a, b, again], tmp_path) == {0.1: b}  # 0.01's samples are not there


def test_an_fid_with_or_without_its_interval_reads_and_shows_so(tmp_path):
    """Runs scored before diffui measured intervals read as before and show the bare FID; newer
    ones show the interval in every table of runs (summary_row)."""
    from engine.rundir.progress import RunProgress, summary_row

    old = {"type": "eval", "time": 1.0, "epoch": 1, "sampler": "DDIM-4", "n": 200, "fid": 80.5,
           "floor": 12.0}  # fmt: skip
    new = dict(old, epoch=2, fid=70.25, fid_low=61.5, fid_high=74.0, fid_level=0.95, kid=0.02,
               kid_std=0.004, recognised=0.9)  # fmt: skip
    (tmp_path / "e.jsonl").write_text(json.dumps(old) + "\n" + json.dumps(new) + "\n")
    first, second = read_events(tmp_path / "e.jsonl")
    assert first.fid_low is None and first.kid is None and second.fid_high == 74.0
    p = RunProgress("r")
    p.fold(first)
    assert summary_row(p)[4] == "80.50"
    p.fold(second)
    assert summary_row(p)[4] == "70.25 [61.50, 74.00]"
