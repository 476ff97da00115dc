"""Runs on a Slurm cluster through submitit, against a real single-node cluster that the session
fixture brings up (tests/slurm_cluster.py) and takes down: a held job shown with its job id and
pending reason, then run to its end; a sweep as one job array; a cancelled job that resumes in a
new job; a job caught by its time limit, checkpointed and requeued, with the losses of an
uninterrupted run.

A worker is frozen (SIGSTOP) where a test needs it still running at a later moment (a cancel, a
time limit): the run is tiny, so nothing else keeps it from finishing first. Slurm sends SIGCONT
with its stop signals, and the job's checkpoint() does too."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest
from conftest import MORPH_STUDY, tiny_study, until, wait_for
from slurm_cluster import SlurmCluster
from sshd import ALIAS, serving
from test_tui import cell, make_app

from cli.main import main
from engine.evaluation.fid import load_classifier
from engine.jobs.worker import execute
from engine.queue.client import Queue
from engine.queue.service import running_pid
from engine.rundir.events import Checkpoint, End, Epoch, Progress, Start, Value, latest_by_epoch
from engine.rundir.run import Run, prepare_runs
from engine.spec.experiments import load_experiments
from tui.widgets import RunsTable


@pytest.fixture(scope="session")
def slurm():
    cluster, old = SlurmCluster(), os.environ.get("SLURM_CONF")
    try:
        cluster.start()  # (stops what it started when a daemon fails to come up)
        os.environ.update(cluster.env())  # sbatch, sacct, scancel, and the tests' services
        yield cluster
    finally:
        cluster.stop()
        cluster.remove()
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old


@pytest.fixture(scope="module")
def login(slurm, tmp_path_factory):
    """An OpenSSH server on 127.0.0.1 as the cluster's login node, as a laptop reaches it (its
    sessions know the cluster: SLURM_CONF)."""
    with serving(tmp_path_factory.mktemp("login"), env=slurm.env()) as server:
        yield server


def cluster_study(
    tmp_path, names=("tiny",), epochs=2, time="00:10:00", sbatch=(), partition="debug", **more
):
    """A study of tiny runs (FID off) whose runs all go to [hosts.cluster] (``more``: further
    keys of its table, e.g. address, python, workdir)."""
    table = (
        f'\n[hosts.cluster]\nkind = "slurm"\n'
        f'partition = "{partition}"\ncpus_per_job = 1\n'
        f'mem_gb = 1\ntime = "{time}"\nsignal_delay_s = 30\nmax_jobs = 4\n'
        f"sbatch = {json.dumps(list(sbatch))}\n"
        + "".join(f"{k} = {json.dumps(str(v))}\n" for k, v in more.items())
    )
    f = tiny_study(tmp_path / "exp.toml", name=names[0], epochs=epochs, extra=table)
    text = f.read_text() + 'host = "cluster"\n'
    for name in names[1:]:
        text += f'[[experiments]]\nname = "{name}"\nhost = "cluster"\n'
    f.write_text(text)
    return f


def queue_and_start(f, runs_dir, capsys) -> Queue:
    assert main(["queue", "add", str(f), "--runs-dir", str(runs_dir)]) == 0
    assert main(["queue", "start", "--runs-dir", str(runs_dir)]) == 0
    capsys.readouterr()
    return Queue(runs_dir)


def handle(runs_dir, name) -> dict:
    """The Slurm handle of ``name`` while the queue follows its job ({} otherwise)."""
    return Queue(runs_dir, start_service=False).state.active.get(name, {}).get("handle", {})


def sacct(slurm, job_id: str, *options: str) -> list[str]:
    out = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-o", "State", *options, "-j", job_id],
        capture_output=True,
        text=True,
        env={**os.environ, **slurm.env()},
    )
    return [line.split()[0] for line in out.stdout.splitlines() if line.strip()]  # "CANCELLED by 0"


def epoch_losses(run: Run) -> list[tuple[int, float, float]]:
    return [
        (e, ev.train_loss, ev.val_loss) for e, ev in latest_by_epoch(run.events(), Epoch).items()
    ]


def freeze_after_first_checkpoint(run: Run) -> int:
    """Wait for the run's first epoch checkpoint, then SIGSTOP its worker; its pid."""
    wait_for(lambda: any(isinstance(e, Checkpoint) for e in run.events()), timeout=120)
    pid = json.loads(run.worker_path.read_text())["pid"]
    os.kill(pid, signal.SIGSTOP)
    return pid


async def where_in_ui(f, runs_dir, name: str, text: str) -> None:
    """The UI's runs table shows ``text`` in the where column of run ``name``."""
    app = make_app(f, runs_dir)
    async with app.run_test(size=(160, 30)) as pilot:
        await until(
            pilot,
            lambda: app.query_one(RunsTable).row_count and cell(app, name, "where") == text,
            timeout=60,
        )


def test_the_hosts_table_becomes_sbatch_options():
    from engine.queue.executors.slurm import SlurmExecutor, time_minutes
    from engine.spec.sections import HostSpec

    assert [
        time_minutes(t) for t in ("90", "1:30", "04:00:00", "1-12", "1-12:30", "0-00:00:30")
    ] == [90, 2, 240, 2160, 2190, 1]
    spec = HostSpec(
        kind="slurm",
        partition="gpu",
        gpus_per_job=2,
        cpus_per_job=8,
        mem_gb=32,
        time="1-00:00:00",
        account="lab",
        sbatch=["--constraint=a100", "--exclusive"],
        max_jobs=5,
        signal_delay_s=120,
    )
    p = SlurmExecutor._parameters(spec)
    assert {
        k: p[k]
        for k in (
            "partition",
            "gpus_per_node",
            "cpus_per_task",
            "mem",
            "time",
            "account",
            "signal_delay_s",
            "array_parallelism",
        )
    } == {
        "partition": "gpu",
        "gpus_per_node": 2,
        "cpus_per_task": 8,
        "mem": "32GB",
        "time": 1440,
        "account": "lab",
        "signal_delay_s": 120,
        "array_parallelism": 5,
    }
    assert "qos" not in p
    assert p["additional_parameters"] == {"constraint": "a100", "exclusive": True}
    with pytest.raises(ValueError, match="sbatch: '-C a100': expected a long option"):
        SlurmExecutor._parameters(HostSpec(kind="slurm", sbatch=["-C a100"]))


def test_a_run_goes_to_the_cluster_and_is_followed_to_its_end(slurm, tmp_path, capsys, monkeypatch):
    """Held, it shows its job id, state and pending reason in `diffui queue status` and in the
    UI's where column; released, it runs to its end."""
    monkeypatch.setenv("COLUMNS", "200")  # the status table on one line per run
    runs_dir = tmp_path / "runs"
    f = cluster_study(tmp_path, sbatch=["--hold"])  # held: pending until released below
    queue_and_start(f, runs_dir, capsys)
    h = wait_for(
        lambda: (
            handle(runs_dir, "tiny").get("reason") == "JobHeldUser" and handle(runs_dir, "tiny")
        ),
        timeout=60,
    )
    job_id = h["job_id"]
    assert main(["queue", "status", "--runs-dir", str(runs_dir)]) == 0
    assert f"cluster: job {job_id} PENDING (JobHeldUser)" in capsys.readouterr().out
    asyncio.run(where_in_ui(f, runs_dir, "tiny", f"cluster: job {job_id} PENDING (JobHeldUser)"))

    subprocess.run(["scontrol", "release", job_id], check=True)
    run = Run(runs_dir / "tiny")
    wait_for(lambda: run.status().state == "finished" and not handle(runs_dir, "tiny"), timeout=180)
    assert sacct(slurm, job_id) == ["COMPLETED"]
    for name in ("checkpoint.pt", "samples/epoch-0001.png", "samples/epoch-0002.png", "worker.log"):
        assert (run.path / name).is_file(), name
    assert [e for e, _, _ in epoch_losses(run)] == [1, 2]
    # submitit's files: per runs folder, cluster and slurmctld start
    logs = list((runs_dir / ".slurm" / "cluster").glob(f"*/{job_id}/{job_id}_0_log.out"))
    assert len(logs) == 1 and "Job completed successfully" in logs[0].read_text()
    assert "tiny: worker ended (finished)" in (runs_dir / "service.log").read_text()


def test_a_sweep_goes_as_one_job_array(slurm, tmp_path, capsys):
    """Its jobs run the table's python (here a wrapper that notes each call)."""
    runs_dir, calls = tmp_path / "runs", tmp_path / "calls.log"
    python = tmp_path / "python"
    python.write_text(f'#!/bin/sh\necho "$*" >> {calls}\nexec {sys.executable} "$@"\n')
    python.chmod(0o755)
    f = cluster_study(tmp_path, names=("a", "b"), epochs=1, python=python)
    queue_and_start(f, runs_dir, capsys)
    ids = wait_for(
        lambda: (
            [handle(runs_dir, n).get("job_id") for n in ("a", "b")]
            if all(handle(runs_dir, n) for n in ("a", "b"))
            else None
        ),
        timeout=60,
    )
    array = ids[0].split("_")[0]
    assert sorted(ids) == [f"{array}_0", f"{array}_1"]
    wait_for(
        lambda: (
            all(Run(runs_dir / n).status().state == "finished" for n in ("a", "b"))
            and not any(handle(runs_dir, n) for n in ("a", "b"))
        ),
        timeout=240,
    )
    assert sacct(slurm, array) == ["COMPLETED", "COMPLETED"]
    assert calls.read_text().count("-m submitit.core._submit") == 2


def test_a_job_the_cluster_refuses_fails_with_one_line(slurm, tmp_path, capsys):
    runs_dir = tmp_path / "runs"
    queue_and_start(cluster_study(tmp_path, partition="nope"), runs_dir, capsys)
    run = Run(runs_dir / "tiny")
    wait_for(lambda: run.status().state == "failed", timeout=60)
    assert (
        run.status().detail
        == "cluster: sbatch: Batch job submission failed: Invalid partition name specified"
    )


def test_a_cancelled_job_stays_resumable_and_resumes_in_a_new_job(slurm, tmp_path, capsys):
    runs_dir = tmp_path / "runs"
    f = cluster_study(tmp_path, epochs=3)
    queue = queue_and_start(f, runs_dir, capsys)
    run = Run(runs_dir / "tiny")
    first = wait_for(lambda: handle(runs_dir, "tiny").get("job_id"), timeout=60)
    freeze_after_first_checkpoint(run)
    assert queue.cancel("tiny") == "tiny: stopping (resumable from its last checkpoint)"
    wait_for(lambda: not handle(runs_dir, "tiny"), timeout=120)
    wait_for(lambda: sacct(slurm, first) == ["CANCELLED"], timeout=30)
    st = run.status()
    assert (st.state, st.detail) == ("resumable", "stopped")  # scancel's SIGTERM: a clean stop

    queue.enqueue("tiny")  # a retry is a new job, from the checkpoint
    second = wait_for(lambda: handle(runs_dir, "tiny").get("job_id"), timeout=60)
    assert second != first
    wait_for(lambda: run.status().state == "finished", timeout=180)
    starts = [e for e in run.events() if isinstance(e, Start)]
    assert [s.resumed for s in starts] == [False, True] and starts[1].epoch >= 1


def test_a_job_killed_under_its_worker_marks_the_run_failed_with_slurms_state(
    slurm, tmp_path, capsys
):
    """As when the kernel's OOM killer ends the worker: no exit record from it."""
    runs_dir = tmp_path / "runs"
    queue_and_start(cluster_study(tmp_path, epochs=2), runs_dir, capsys)
    run = Run(runs_dir / "tiny")
    job_id = wait_for(lambda: handle(runs_dir, "tiny").get("job_id"), timeout=60)
    os.kill(freeze_after_first_checkpoint(run), signal.SIGKILL)
    wait_for(lambda: not handle(runs_dir, "tiny"), timeout=120)
    st = run.status()
    state = sacct(slurm, job_id)[0]
    assert st.state == "failed" and state == "FAILED"
    assert st.detail.startswith(f"cluster: Slurm job {job_id} ended {state} (its log: ")
    assert run.checkpoint_path.is_file()  # a retry resumes from it


def test_a_preempted_job_is_requeued_and_resumes(slurm, tmp_path, capsys):
    """Pre-emption as submitit simulates it (SlurmJob._interrupt): SIGTERM to the job's tasks,
    then its checkpoint signal; a job far from its time limit counts it as pre-emption."""
    runs_dir = tmp_path / "runs"
    queue_and_start(cluster_study(tmp_path, epochs=2, time="01:00:00"), runs_dir, capsys)
    run = Run(runs_dir / "tiny")
    job_id = wait_for(lambda: handle(runs_dir, "tiny").get("job_id"), timeout=60)
    freeze_after_first_checkpoint(run)
    for sig in ("TERM", "USR2"):
        subprocess.run(["scancel", f"--signal={sig}", job_id], check=True)
    wait_for(lambda: run.status().state == "finished" and not handle(runs_dir, "tiny"), timeout=180)
    starts = [e for e in run.events() if isinstance(e, Start)]
    assert [s.resumed for s in starts] == [False, True]
    assert [e.status for e in run.events() if isinstance(e, End)] == ["stopped", "finished"]
    log = next((runs_dir / ".slurm" / "cluster").glob(f"*/{job_id}/{job_id}_0_log.out")).read_text()
    assert "this job is preempted" in log and f"Requeued job {job_id}" in log
    assert sacct(slurm, job_id, "--duplicates") == ["REQUEUED", "COMPLETED"]


@pytest.mark.parametrize("partition, mode", [("debug", "REQUEUE"), ("scavenger", "CANCEL")])
def test_a_job_preempted_by_slurm_itself_resumes_from_its_checkpoint(
    slurm, tmp_path, capsys, partition, mode
):
    """Slurm's own pre-emption (PreemptType=preempt/partition_prio): a job of the higher
    partition `urgent` that wants the whole node ends ours, whose worker stops on Slurm's
    SIGTERM. PreemptMode=REQUEUE: Slurm requeues the same job. PreemptMode=CANCEL: the job ends
    PREEMPTED for good, and the queue puts the run back at its front: a new job. Either way the
    run resumes from its checkpoint."""
    runs_dir = tmp_path / "runs"
    f = cluster_study(tmp_path, epochs=2, time="01:00:00", partition=partition)
    queue_and_start(f, runs_dir, capsys)
    run = Run(runs_dir / "tiny")
    job_id = wait_for(lambda: handle(runs_dir, "tiny").get("job_id"), timeout=60)
    freeze_after_first_checkpoint(run)
    urgent = subprocess.run(
        [
            "sbatch",
            "--parsable",
            "-p",
            "urgent",
            "--exclusive",
            "-o",
            "/dev/null",
            "--wrap",
            "sleep 1",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    wait_for(lambda: run.status().state == "finished" and not handle(runs_dir, "tiny"), timeout=240)
    starts = [e for e in run.events() if isinstance(e, Start)]
    assert [s.resumed for s in starts] == [False, True] and starts[1].epoch >= 1
    assert [e.status for e in run.events() if isinstance(e, End)] == ["stopped", "finished"]
    assert sacct(slurm, urgent) == ["COMPLETED"]
    log = (runs_dir / "service.log").read_text()
    again = f"tiny: cluster: Slurm job {job_id} was pre-empted; back at the front of the queue"
    if mode == "REQUEUE":
        assert sacct(slurm, job_id, "--duplicates") == ["PREEMPTED", "COMPLETED"]
        assert again not in log
    else:
        assert sacct(slurm, job_id, "--duplicates") == ["PREEMPTED"]
        assert again in log and log.count(": started on cluster:") == 2


def test_a_job_at_its_time_limit_is_requeued_and_resumes_exactly(slurm, tmp_path, capsys):
    runs_dir = tmp_path / "runs"
    f = cluster_study(tmp_path, epochs=3, time="2")  # 2 minutes; the signal comes 30-60 s before
    queue_and_start(f, runs_dir, capsys)
    run = Run(runs_dir / "tiny")
    job_id = wait_for(lambda: handle(runs_dir, "tiny").get("job_id"), timeout=60)
    freeze_after_first_checkpoint(run)  # now only the time limit ends this job

    reference = prepare_runs(
        load_experiments(tiny_study(tmp_path / "ref.toml", name="reference", epochs=3)).runs,
        tmp_path / "ref",
    )[0]
    assert execute(reference, threading.Event()) == "finished"  # meanwhile, unbroken, here

    wait_for(lambda: run.status().state == "finished" and not handle(runs_dir, "tiny"), timeout=240)
    starts = [e for e in run.events() if isinstance(e, Start)]
    assert [s.resumed for s in starts] == [False, True] and starts[1].epoch >= 1
    # the checkpoint signal stopped the worker cleanly (an exit record), then Slurm requeued
    assert [e.status for e in run.events() if isinstance(e, End)] == ["stopped", "finished"]
    assert sacct(slurm, job_id, "--duplicates") == ["REQUEUED", "COMPLETED"]  # one job, requeued
    log = next((runs_dir / ".slurm" / "cluster").glob(f"*/{job_id}/{job_id}_0_log.out")).read_text()
    assert "this job is timed-out" in log and f"Requeued job {job_id}" in log
    got, want = epoch_losses(run), epoch_losses(reference)
    assert [e for e, _, _ in got] == [1, 2, 3]
    assert np.array(got) == pytest.approx(np.array(want), rel=1e-4)


def test_a_sweep_submitted_over_ssh_to_the_login_node_comes_back_whole(
    slurm, login, tmp_path, capsys, monkeypatch
):
    """From a laptop: the run folders go to the login node's workdir, its diffui submits them as
    one job array, the laptop follows them through sacct and squeue over SSH (a held job shows
    its job id and pending reason) and mirrors their folders back; a new service follows them
    when the first one is killed; a cancel is a scancel there, and the cancelled run resumes in
    a new job from its checkpoint."""
    monkeypatch.setenv("COLUMNS", "200")
    runs_dir, workdir = tmp_path / "runs", tmp_path / "login-node"
    f = cluster_study(
        tmp_path,
        names=("a", "b"),
        epochs=3,
        sbatch=["--hold"],
        address=ALIAS,
        python=login.python,
        workdir=workdir,
    )
    queue = queue_and_start(f, runs_dir, capsys)
    ids = wait_for(
        lambda: (
            [handle(runs_dir, n).get("job_id") for n in ("a", "b")]
            if all(handle(runs_dir, n).get("reason") == "JobHeldUser" for n in ("a", "b"))
            else None
        ),
        timeout=120,
    )
    array = ids[0].split("_")[0]
    assert ids == [f"{array}_0", f"{array}_1"]
    assert main(["queue", "status", "--runs-dir", str(runs_dir)]) == 0
    out = capsys.readouterr().out
    assert f"cluster: job {array}_0 PENDING (JobHeldUser)" in out
    assert f"cluster: job {array}_1 PENDING (JobHeldUser)" in out
    assert (workdir / "runs" / "a" / "config.toml").read_text() == (
        runs_dir / "a" / "config.toml"
    ).read_text()
    # the laptop's service dies (a closed lid): the next one follows the same jobs
    os.kill(running_pid(runs_dir), signal.SIGKILL)
    wait_for(lambda: running_pid(runs_dir) is None, timeout=30)
    queue.poll()  # (a client starts a new service: it finds the jobs in `active`)
    wait_for(lambda: running_pid(runs_dir), timeout=30)

    subprocess.run(["scontrol", "release", array], check=True)
    a, b = Run(runs_dir / "a"), Run(runs_dir / "b")
    freeze_after_first_checkpoint(b)  # its worker.json (and pid) mirrored from the login node
    assert queue.cancel("b") == "b: stopping (resumable from its last checkpoint)"
    wait_for(lambda: not handle(runs_dir, "b"), timeout=120)
    assert sacct(slurm, f"{array}_1") == ["CANCELLED"]
    assert (b.status().state, b.status().detail) == ("resumable", "stopped")

    queue.enqueue("b")  # a new job, from the checkpoint mirrored here and copied back there
    second = wait_for(lambda: handle(runs_dir, "b").get("job_id"), timeout=120)
    assert second.split("_")[0] != array
    subprocess.run(["scontrol", "release", second], check=True)  # (held too)
    wait_for(
        lambda: (
            a.status().state == b.status().state == "finished"
            and not handle(runs_dir, "a")
            and not handle(runs_dir, "b")
        ),
        timeout=300,
    )
    assert sacct(slurm, f"{array}_0") == ["COMPLETED"]
    assert (runs_dir / "service.log").read_text().count("a: started on cluster:") == 1
    for run in (a, b):
        assert [e for e, _, _ in epoch_losses(run)] == [1, 2, 3]
        for name in ("checkpoint.pt", "samples/epoch-0003.png", "worker.log"):
            assert (run.path / name).is_file(), (run.name, name)
        assert (run.path / "events.jsonl").read_bytes() == (
            workdir / "runs" / run.name / "events.jsonl"
        ).read_bytes()
    starts = [e for e in b.events() if isinstance(e, Start)]
    assert [s.resumed for s in starts] == [False, True] and starts[1].epoch >= 1
    # submitit's files stay on the login node
    assert list((workdir / "runs" / ".slurm" / "cluster").glob(f"*/{array}_0/{array}_0_0_log.out"))
    assert not (runs_dir / ".slurm").exists()


def test_a_study_goes_over_ssh_to_the_cluster_with_the_run_it_samples(slurm, login, tmp_path):
    """A sampling study of a run trained here: the run's model goes to the login node beside
    the study, and the study's numbers and arrays come back."""
    f = cluster_study(
        tmp_path,
        names=("m",),
        epochs=1,
        address=ALIAS,
        python=login.python,
        workdir=tmp_path / "login-node",
    )
    f.write_text(f.read_text().replace('host = "cluster"\n', MORPH_STUDY + 'host = "cluster"\n'))
    study = load_experiments(f)
    runs_dir = tmp_path / "runs"
    (run,) = prepare_runs(study.runs, runs_dir)
    assert execute(run, threading.Event()) == "finished"
    load_classifier(data_cfg=run.spec().data)  # the FID classifier, in the cache the job shares
    q = Queue.open(runs_dir)
    (folder,) = q.prepare(study.studies, study.hosts)
    q.submit([folder.name])
    wait_for(lambda: (q.poll(), q.settled([folder.name]))[1], timeout=300)
    assert folder.status().state == "finished", folder.status()
    remote = tmp_path / "login-node" / "runs"
    assert (remote / "m" / "checkpoint.pt").read_bytes() == run.checkpoint_path.read_bytes()
    assert [e.value for e in folder.events() if isinstance(e, Value)] == [0, 0.5]
    # the host's worker used the classifier trained here (the same $DIFFUI_CLASSIFIER_EPOCHS)
    assert not any(isinstance(e, Progress) and e.task == "FID classifier" for e in folder.events())
    assert (folder.path / "events.jsonl").read_bytes() == (
        remote / "studies" / "noise" / "events.jsonl"
    ).read_bytes()
    rows = (folder.path / "results.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["0", "0.5"]
    assert (folder.path / "value-0.5.npy").is_file()


def test_a_submission_the_cluster_refuses_over_ssh_fails_with_one_line(
    slurm, login, tmp_path, capsys
):
    runs_dir = tmp_path / "runs"
    queue_and_start(
        cluster_study(
            tmp_path,
            partition="nope",
            address=ALIAS,
            python=login.python,
            workdir=tmp_path / "login-node",
        ),
        runs_dir,
        capsys,
    )
    run = Run(runs_dir / "tiny")
    wait_for(lambda: run.status().state == "failed", timeout=120)
    assert (
        run.status().detail
        == "cluster: sbatch: Batch job submission failed: Invalid partition name specified"
    )


def test_hosts_check_tells_what_the_login_node_has(slurm, login, tmp_path, capsys):
    f = cluster_study(tmp_path, address=ALIAS, python=login.python, workdir=tmp_path / "w")
    version = subprocess.run(["sbatch", "--version"], capture_output=True, text=True).stdout.strip()
    assert main(["hosts", "check", "-f", str(f)]) == 0
    row = capsys.readouterr().out.splitlines()[1].split()
    assert row[:2] == ["cluster", "yes"] and " ".join(row).count(version) == 1


def test_a_jobs_end_reads_its_run_records_as_files_only(tmp_path):
    """Issue 19: a worker.json made a FIFO (or not an object) blocked or crashed the service when
    a Slurm job ended; it is no record of the worker's end: the run fails, saying where the log
    is."""
    from engine.queue.executors.slurm import job_ended
    from engine.queue.handle import SlurmJob

    f = tiny_study(tmp_path / "exp.toml", epochs=1)
    (run,) = prepare_runs(load_experiments(f).runs, tmp_path / "runs")
    for odd in ("fifo", "[]"):
        run.worker_path.unlink(missing_ok=True)
        if odd == "fifo":
            os.mkfifo(run.worker_path)
        else:
            run.worker_path.write_text(odd)
        run.exit_path.write_text("[]")
        assert job_ended(run, "cluster", SlurmJob("7", state="FAILED"), "LOG") == ""
        st = run.status()
        assert (st.state, st.detail) == (
            "failed",
            "cluster: Slurm job 7 ended FAILED (its log: LOG)",
        )
