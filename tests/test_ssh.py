"""Runs and studies on an SSH host, against a real OpenSSH server on 127.0.0.1 (tests/sshd.py)
whose "remote" python is this test's own: a quick run trained there end to end and mirrored
into the local run folder (events equal line for line), a study, a connection cut mid-run, a
host that is down, an unknown or changed host key, a remote run cancelled and resumed, two
slots running two runs while a third waits, and ``diffui hosts check`` / ``install``."""

from __future__ import annotations

import json
import os
import signal
import site
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import MORPH_STUDY, table_why, tiny_study, wait_for
from sshd import free_port, serving, sshd_fixture  # noqa: F401 (the fixture `sshd`)

from engine.evaluation.fid import load_classifier
from engine.jobs.worker import execute
from engine.queue.client import Queue
from engine.queue.executors.base import Job, StartError
from engine.queue.executors.ssh import SSHExecutor
from engine.queue.hosts import local_version
from engine.queue.state import QueueFile
from engine.rundir.events import Checkpoint, End, Epoch, Progress, Start, Value
from engine.rundir.run import Run, prepare_runs
from engine.spec.experiments import load_experiments
from engine.spec.sections import HostSpec

DEADLINE = 300.0  # seconds a remote run gets on a busy machine


def remote_file(
    tmp_path: Path,
    server,
    name: str = "r",
    epochs: int = 2,
    subset: int = 256,
    more: str = "",
    workdir: str = "remote",
    **host,
) -> Path:
    """A tiny study whose run goes to host gpu1 (the test server), workdir tmp/remote."""
    f = tiny_study(
        tmp_path / "exp.toml",
        name=name,
        epochs=epochs,
        subset=subset,
        extra=server.table(tmp_path / workdir, **host),
    )
    f.write_text(f.read_text() + 'host = "gpu1"\n' + more)
    return f


def queue_runs(f: Path, runs_dir: Path):
    study = load_experiments(f)
    q = Queue.open(runs_dir)
    return q, q.prepare(study.runs, study.hosts)


def settle(q: Queue, names: list[str], timeout: float = DEADLINE) -> None:
    def done():
        q.poll()
        return q.settled(names)

    wait_for(done, timeout, every=0.2)


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


@contextmanager
def held(remote_run: Path):
    """The remote worker of ``remote_run`` (a process of this machine here) stopped with SIGSTOP
    meanwhile, so that the run cannot end behind the test's back, whatever the machine's speed."""
    pid = json.loads((remote_run / "worker.json").read_text())["pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        yield pid
    finally:
        os.kill(pid, signal.SIGCONT)


def pending(pid: int, sig: int) -> bool:
    """Whether ``sig`` waits to be delivered to the (stopped) process ``pid``."""
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    masks = [int(line.split()[1], 16) for line in status if line.startswith(("SigPnd", "ShdPnd"))]
    return any(m & (1 << (sig - 1)) for m in masks)


def first_epoch(run: Run) -> bool:
    return any(isinstance(e, Epoch) for e in run.events())


def first_checkpoint(run: Run) -> bool:
    """Whether the first epoch's checkpoint is written (after its epoch event and samples: a
    stop during those leaves none)."""
    return any(isinstance(e, Checkpoint) for e in run.events())


def test_a_quick_run_trains_on_the_host_and_comes_back_whole(tmp_path, sshd):
    f = remote_file(tmp_path, sshd)
    q, (run,) = queue_runs(f, tmp_path / "runs")
    q.submit(["r"])
    where = wait_for(lambda: QueueFile(q.runs_dir).read().active.get("r"), DEADLINE)
    assert where["executor"] == "gpu1" and where["slot"] == "gpu1:0"
    settle(q, ["r"])
    st = run.status()
    assert st.state == "finished" and st.host == "gpu1"  # the UI's where column
    remote = tmp_path / "remote" / "runs" / "r"
    assert lines(run.events_path) == lines(remote / "events.jsonl")  # line for line
    events = run.events()
    assert [type(e) for e in events if not type(e).__name__ == "Progress"][:1] == [Start]
    assert [e.epoch for e in events if isinstance(e, Epoch)] == [1, 2]
    assert isinstance(events[-1], End) and events[-1].status == "finished"
    for rel in (
        "samples/epoch-0001.png",
        "samples/epoch-0001.npy",
        "samples/epoch-0002.npy",
        "checkpoint.pt",
        "figures/diffusion-forward.npy",
    ):
        assert (run.path / rel).read_bytes() == (remote / rel).read_bytes(), rel
    assert (
        json.loads((run.path / "worker.json").read_text())["pid"]
        == json.loads((remote / "worker.json").read_text())["pid"]
    )
    calls = (sshd.folder / "calls.log").read_text()
    assert f"|-m engine.jobs.worker {remote}" in calls  # the remote folder, not the local one


STUDY = MORPH_STUDY + 'host = "gpu1"\n'  # the study goes to the host


def test_a_study_runs_on_the_host_from_the_run_it_samples(tmp_path, sshd):
    f = remote_file(tmp_path, sshd, name="m", epochs=1)
    f.write_text(f.read_text().replace('host = "gpu1"\n', STUDY))
    study = load_experiments(f)
    runs_dir = tmp_path / "runs"
    (run,) = prepare_runs(study.runs, runs_dir)  # the morph run, trained here
    assert execute(run, threading.Event()) == "finished"
    load_classifier(data_cfg=run.spec().data)  # the FID classifier, in the cache the host
    q = Queue.open(runs_dir)  # shares (trained once a session, unhurried)
    (folder,) = q.prepare(study.studies, study.hosts)
    q.submit([folder.name])
    settle(q, [folder.name])
    assert folder.status().state == "finished", folder.status()
    remote = tmp_path / "remote" / "runs"
    assert (remote / "m" / "checkpoint.pt").read_bytes() == run.checkpoint_path.read_bytes()
    assert lines(folder.events_path) == lines(remote / "studies" / "noise" / "events.jsonl")
    assert [e.value for e in folder.events() if isinstance(e, Value)] == [0, 0.5]
    # the host's worker used the classifier trained here (the same $DIFFUI_CLASSIFIER_EPOCHS)
    assert not any(isinstance(e, Progress) and e.task == "FID classifier" for e in folder.events())
    rows = (folder.path / "results.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["0", "0.5"]
    assert (folder.path / "value-0.5.npy").is_file()


def test_a_cut_connection_is_made_again_and_no_event_is_lost_or_repeated(tmp_path, sshd):
    f = remote_file(tmp_path, sshd, epochs=3)
    q, (run,) = queue_runs(f, tmp_path / "runs")
    q.submit(["r"])
    wait_for(lambda: first_epoch(run), DEADLINE)
    remote = tmp_path / "remote" / "runs" / "r"
    with held(remote):  # mid-run
        assert not any(isinstance(e, End) for e in Run(remote).events())
        before = set(sshd.connections())
        assert sshd.cut() >= 1  # the sshd serving the service's connection, killed
        wait_for(lambda: set(sshd.connections()) - before, DEADLINE)  # connected again
    settle(q, ["r"])
    assert run.status().state == "finished"
    assert lines(run.events_path) == lines(remote / "events.jsonl")
    assert [e.epoch for e in run.events() if isinstance(e, Epoch)] == [1, 2, 3]


def test_a_host_that_is_down_fails_its_run_in_one_line_and_leaves_the_rest(tmp_path, sshd, capsys):
    from cli.main import main

    port = free_port()  # nothing listens there
    f = tiny_study(
        tmp_path / "exp.toml",
        name="far",
        epochs=1,
        subset=64,
        extra=f'[hosts.gpu1]\naddress = "127.0.0.1"\nport = {port}\n',
    )
    f.write_text(f.read_text() + 'host = "gpu1"\n[[experiments]]\nname = "near"\n')
    assert main(["--batch", str(f), "--runs-dir", str(tmp_path / "runs")]) == 1
    line = f"gpu1: cannot connect to 127.0.0.1 port {port}: Connection refused"
    assert table_why(capsys.readouterr().out) == line.replace(" ", "")  # the table says why
    far, near = (Run(tmp_path / "runs" / n).status() for n in ("far", "near"))
    assert (far.state, far.detail) == ("failed", line)
    assert near.state == "finished"
    assert not QueueFile(tmp_path / "runs").read().busy()


def test_run_names_cannot_leave_the_remote_workdir(tmp_path):
    runs = tmp_path / "runs"
    (runs / "studies").mkdir(parents=True)
    (tmp_path / "out").mkdir()
    (runs / "link").symlink_to(tmp_path / "out")
    ex = SSHExecutor("gpu1", HostSpec(address="h"), runs)
    for bad in (
        tmp_path / "out",
        runs / "link",
        runs / "studies" / ".." / ".." / "out",
        runs / "a" / "b",
        runs / "-x",
    ):
        with pytest.raises(StartError, match="^gpu1: "):
            ex.start(Job(bad), "gpu1:0")
    assert ex._loop is None and not list(tmp_path.rglob("worker.json"))  # nothing started


def test_a_remote_run_that_is_starting_reads_as_running_on_its_host(tmp_path):
    """Its worker.json, before the remote worker writes its own, is a valid record (pid 0: no
    process here), not "damaged"."""
    import socket

    f = tiny_study(tmp_path / "exp.toml", epochs=1)
    (run,) = prepare_runs(load_experiments(f).runs, tmp_path / "runs")
    with socket.socket() as mute:  # a host that takes the connection and never answers
        mute.bind(("127.0.0.1", 0))
        mute.listen()
        spec = HostSpec(address="127.0.0.1", port=mute.getsockname()[1])
        ex = SSHExecutor("gpu1", spec, tmp_path / "runs")
        try:
            ex.start(Job(run.path), "gpu1:0")
            st = run.status()
            assert (st.state, st.host, st.pid) == ("running", "gpu1", 0), st
        finally:
            ex.close()


def test_a_host_without_diffui_fails_the_run_with_what_to_do(tmp_path, sshd):
    bare = tmp_path / "bare"  # a python without diffui
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    f = remote_file(tmp_path, sshd)
    f.write_text(
        f.read_text().replace(f'python = "{sshd.python}"', f'python = "{bare / "bin" / "python"}"')
    )
    q, (run,) = queue_runs(f, tmp_path / "runs")
    q.submit(["r"])
    settle(q, ["r"])
    st = run.status()
    assert (st.state, st.detail) == (
        "failed",
        f"gpu1: {bare / 'bin' / 'python'} cannot run diffui (ModuleNotFoundError: No "
        "module named 'engine'): install it with: diffui hosts install gpu1",
    )


def fingerprint(server) -> str:
    out = subprocess.run(
        ["ssh-keygen", "-lf", str(server.folder / "host_key.pub")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split()[1]  # SHA256:...


def test_an_unknown_host_key_is_refused_with_its_fingerprint(tmp_path, sshd):
    known = sshd.home / ".ssh" / "known_hosts"
    kept = known.read_text()
    known.write_text("")
    try:
        f = remote_file(tmp_path, sshd)
        q, (run,) = queue_runs(f, tmp_path / "runs")
        q.submit(["r"])
        settle(q, ["r"])
    finally:
        known.write_text(kept)
    st = run.status()
    assert st.state == "failed"
    assert st.detail.startswith(
        f"gpu1: the host key of testhost is unknown (ssh-ed25519 {fingerprint(sshd)}); refused:"
    )
    assert "ssh-keyscan" in st.detail and "\n" not in st.detail
    assert not (tmp_path / "remote" / "runs").exists()  # nothing was copied or started


def test_a_changed_host_key_is_refused_by_hosts_check(tmp_path, sshd, capsys):
    from cli.main import main

    known = sshd.home / ".ssh" / "known_hosts"
    kept = known.read_text()
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    known.write_text(
        f"[127.0.0.1]:{sshd.port} "
        + " ".join((tmp_path / "other.pub").read_text().split()[:2])
        + "\n"
    )
    try:
        rc = main(["hosts", "check", "-f", str(remote_file(tmp_path, sshd))])
    finally:
        known.write_text(kept)
    out = capsys.readouterr().out
    assert rc == 1
    assert (
        f"gpu1: the host key of testhost has CHANGED (now ssh-ed25519 {fingerprint(sshd)})" in out
    )


def test_a_remote_run_cancelled_is_resumable_and_resumes_to_the_end(tmp_path, sshd):
    workdir = "remote dir's $HOME"  # every value on a remote command line is quoted
    f = remote_file(tmp_path, sshd, epochs=4, workdir=workdir)
    q, (run,) = queue_runs(f, tmp_path / "runs")
    q.submit(["r"])
    wait_for(lambda: first_checkpoint(run), DEADLINE)
    with held(tmp_path / workdir / "runs" / "r") as pid:  # it cannot finish first
        q.cancel("r")
        wait_for(lambda: pending(pid, signal.SIGTERM), DEADLINE)  # sent over SSH
    settle(q, ["r"])
    st = run.status()
    assert (st.state, st.detail) == ("resumable", "stopped")
    assert run.checkpoint_path.is_file()
    first = run.events()
    assert isinstance(first[-1], End) and first[-1].status == "stopped"
    q.enqueue("r")
    settle(q, ["r"])
    assert run.status().state == "finished"
    remote = tmp_path / workdir / "runs" / "r" / "events.jsonl"
    assert lines(run.events_path) == lines(remote)
    events = run.events()
    starts = [e for e in events if isinstance(e, Start)]
    assert len(starts) == 2 and starts[1].epoch >= 1  # from the checkpoint
    assert sorted({e.epoch for e in events if isinstance(e, Epoch)}) == [1, 2, 3, 4]


def test_a_new_queue_service_follows_the_remote_run_where_the_killed_one_left(tmp_path, sshd):
    from engine.queue.service import running_pid

    f = remote_file(tmp_path, sshd, epochs=3)
    q, (run,) = queue_runs(f, tmp_path / "runs")
    q.submit(["r"])
    wait_for(lambda: first_epoch(run), DEADLINE)
    with held(tmp_path / "remote" / "runs" / "r"):  # mid-run
        os.kill(running_pid(q.runs_dir), signal.SIGKILL)  # the laptop's side dies, not the run
        wait_for(lambda: running_pid(q.runs_dir) is None, DEADLINE)
    settle(q, ["r"])  # the client starts a new service: it finds the run in `active`
    assert run.status().state == "finished"
    remote = tmp_path / "remote" / "runs" / "r" / "events.jsonl"
    assert lines(run.events_path) == lines(remote)
    assert len([e for e in run.events() if isinstance(e, Start)]) == 1  # never started again
    assert [e.epoch for e in run.events() if isinstance(e, Epoch)] == [1, 2, 3]


def test_two_gpus_of_a_host_run_two_runs_at_once_and_a_third_waits(tmp_path, sshd):
    more = "".join(f'[[experiments]]\nname = "{n}"\nhost = "gpu1"\n' for n in ("b", "c"))
    f = remote_file(tmp_path, sshd, name="a", epochs=1, subset=64, more=more, gpus=[0, 1])
    q, runs = queue_runs(f, tmp_path / "runs")
    q.submit(["a", "b", "c"], jobs=1)  # jobs is the local slots: the host has its own

    def two_at_once():
        st = QueueFile(q.runs_dir).read()
        return len(st.active) == 2 and st.queued == ["c"] and st

    st = wait_for(two_at_once, DEADLINE)
    assert sorted(a["slot"] for a in st.active.values()) == ["gpu1:gpu0", "gpu1:gpu1"]
    settle(q, ["a", "b", "c"])
    assert [r.status().state for r in runs] == ["finished"] * 3
    calls = [c.split("|") for c in (sshd.folder / "calls.log").read_text().splitlines()]
    used = {
        str(tmp_path / "remote" / "runs" / n): gpu
        for gpu, args in calls
        for n in "abc"
        if args == f"-m engine.jobs.worker {tmp_path / 'remote' / 'runs' / n}"
    }
    assert set(used.values()) == {"0", "1"} and len(used) == 3  # one GPU each


def test_hosts_check_tells_what_each_host_has(tmp_path, sshd, capsys):
    import platform

    from cli.main import main

    port = free_port()
    f = remote_file(tmp_path, sshd)
    f.write_text(
        f.read_text().replace(
            "[[experiments]]",
            f'[hosts.down]\naddress = "127.0.0.1"\nport = {port}\n[[experiments]]',
            1,
        )
    )
    rc = main(["hosts", "check", "-f", str(f)])
    out = capsys.readouterr().out.splitlines()
    assert rc == 1
    assert out[0].split() == [
        "host",
        "reachable",
        "python",
        "diffui",
        "torch",
        "/",
        "CUDA",
        "GPUs",
        "free",
        "disk",
        "datasets",
    ]
    gpu1 = out[1].split()
    assert gpu1[:4] == ["gpu1", "yes", platform.python_version(), local_version()]
    assert out[2].split()[:2] == ["down", "no"]
    assert out[3] == f"down: cannot connect to 127.0.0.1 port {port}: Connection refused"
    assert main(["hosts", "check", "gpu1", "-f", str(f)]) == 0
    assert main(["hosts", "check", "gpu9", "-f", str(f)]) == 2
    assert (
        capsys.readouterr().err.strip()
        == "error: exp.toml: hosts.gpu9: no such host reached over SSH (hosts: gpu1, down)"
    )


def test_hosts_install_puts_this_diffui_and_the_datasets_on_the_host(tmp_path, sshd, capsys):
    from cli.main import main

    venv = tmp_path / "venv"  # the host's environment: torch and the rest, but no diffui
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # this interpreter's packages without their .pth files (an editable diffui is one of them)
    site_dir = next((venv / "lib").glob("python3*/site-packages"))
    (site_dir / "system-site.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    f = remote_file(tmp_path, sshd)
    f.write_text(
        f.read_text().replace(f'python = "{sshd.python}"', f'python = "{venv / "bin" / "python"}"')
    )
    assert main(["hosts", "check", "-f", str(f)]) == 1
    assert (
        "gpu1: diffui: ModuleNotFoundError: No module named 'engine': install it with: diffui "
        "hosts install gpu1" in capsys.readouterr().out.splitlines()
    )
    assert main(["hosts", "install", "gpu1", "-f", str(f)]) == 0
    out = capsys.readouterr().out
    assert "gpu1: pip: Successfully installed diffui-" in out  # pip's lines, as they come
    assert f"gpu1: diffui {local_version()} installed" in out
    data = tmp_path / "remote" / "data"
    assert (data / "mnist" / "t10k-images-idx3-ubyte.gz").is_file()  # the session's test set
    assert (data / "fashion-mnist" / "train-images-idx3-ubyte.gz").is_file()  # Debian's
    assert main(["hosts", "check", "-f", str(f)]) == 0
    row = capsys.readouterr().out.splitlines()[1]
    assert "mnist (test)" in row and "fashion_mnist (train+test)" in row
    assert list((venv / "lib").glob("python3*/site-packages/engine/queue/executors/ssh.py"))


def test_a_file_rewritten_within_a_second_at_the_same_size_is_seen_as_changed(tmp_path, sshd):
    """The mirror compares remote listings: a checkpoint saved twice in one second at the same
    size (two quick epochs) must not look unchanged (SFTP's times are whole seconds)."""
    import asyncio

    from engine.queue.executors.remote import Remote

    spec = load_experiments(remote_file(tmp_path, sshd)).hosts["gpu1"]
    folder = tmp_path / "remote" / "runs" / "r"
    folder.mkdir(parents=True)
    ckpt = folder / "checkpoint.pt"

    async def listing_twice():
        remote = await Remote("gpu1", spec).open()
        try:
            ckpt.write_bytes(b"epoch 1")
            os.utime(ckpt, ns=(1_800_000_000_100_000_000,) * 2)
            first = await remote.listing(str(folder))
            ckpt.write_bytes(b"epoch 2")
            os.utime(ckpt, ns=(1_800_000_000_900_000_000,) * 2)  # the same second
            return first, await remote.listing(str(folder))
        finally:
            remote.close()

    first, second = asyncio.run(listing_twice())
    assert first["checkpoint.pt"].size == second["checkpoint.pt"].size == 7
    assert first["checkpoint.pt"] != second["checkpoint.pt"]


# --- issue 19, defect 3: remote file names are not trusted ---------------------------------------

HOSTILE = "x\t1\t1\n"  # a folder name that split a tab-and-newline listing into an absolute path


def test_a_remote_listing_keeps_hostile_names_and_links_out(tmp_path, sshd):
    import asyncio

    from engine.queue.executors.remote import Remote

    spec = load_experiments(remote_file(tmp_path, sshd)).hosts["gpu1"]
    folder = tmp_path / "remote" / "runs" / "r"
    (folder / HOSTILE / "tmp").mkdir(parents=True)
    (folder / HOSTILE / "tmp" / "victim").write_text("x")
    (folder / "samples").mkdir()
    (folder / "samples" / "epoch-0001.png").write_bytes(b"png")
    (folder / "a b").write_text("space")
    (folder / ".checkpoint.pt.up").write_text("ours, hidden")
    (folder / "out").symlink_to(tmp_path)

    async def listing():
        remote = await Remote("gpu1", spec).open()
        try:
            return await remote.listing(str(folder))
        finally:
            remote.close()

    files = asyncio.run(listing())
    assert sorted(files) == ["samples/epoch-0001.png"]
    assert sorted(files.hostile) == ["a b", f"{HOSTILE}/tmp/victim"]
    assert files.links == {"out"}


def test_a_hostile_remote_name_is_skipped_in_one_line_and_the_run_goes_on(tmp_path, sshd):
    victim = Path("/tmp") / f"diffui-victim-{os.getpid()}-{tmp_path.name}"  # "/" + "tmp/NAME"
    victim.write_text("keep me")
    try:
        f = remote_file(tmp_path, sshd, epochs=1)
        remote = tmp_path / "remote" / "runs" / "r"
        (remote / HOSTILE / "tmp").mkdir(parents=True)
        (remote / HOSTILE / "tmp" / victim.name).write_text("remote")  # there before the job
        q, (run,) = queue_runs(f, tmp_path / "runs")
        q.submit(["r"])
        settle(q, ["r"])
        assert run.status().state == "finished"
        assert victim.read_text() == "keep me"  # neither removed nor replaced
        assert (remote / HOSTILE / "tmp" / victim.name).read_text() == "remote"
        assert not (run.path / HOSTILE).exists()
        log = [line for line in lines(q.runs_dir / "service.log") if "skipped" in line]
        assert len(log) == 1 and f"skipped {HOSTILE + '/tmp/' + victim.name!r}" in log[0], log
    finally:
        victim.unlink(missing_ok=True)


def test_a_pulled_file_never_lands_outside_the_local_run_folder(tmp_path, sshd):
    import asyncio

    from engine.queue.executors.remote import Remote
    from engine.queue.executors.ssh import RemoteJob

    spec = load_experiments(remote_file(tmp_path, sshd)).hosts["gpu1"]
    remote = tmp_path / "remote" / "runs" / "r"
    (remote / "samples").mkdir(parents=True)
    (remote / "samples" / "epoch-0001.png").write_bytes(b"png")
    (remote / "results.csv").write_text("value\n")
    out = tmp_path / "out"
    out.mkdir()
    local = tmp_path / "runs" / "r"
    local.mkdir(parents=True)
    (local / "samples").symlink_to(out)  # a folder of the run that leads elsewhere
    ex = SSHExecutor("gpu1", spec, tmp_path / "runs")
    j = RemoteJob(Job(local), "r")

    async def pull():
        conn = await Remote("gpu1", spec).open()
        try:
            await ex.pull(conn, j)
        finally:
            conn.close()

    asyncio.run(pull())
    assert (local / "results.csv").read_text() == "value\n"
    assert list(out.iterdir()) == []


# --- issue 19, defect 20: what a host lacks, said first -----------------------------------------


def test_asyncssh_is_imported_without_its_deprecation_warnings():
    r = subprocess.run(
        [sys.executable, "-c", "import engine.queue.hosts, engine.queue.executors.slurm"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    assert r.returncode == 0 and r.stderr == "", r.stderr


def test_a_host_without_sftp_is_said_by_hosts_check_and_fails_its_run_so(tmp_path, capsys):
    from cli.main import main

    old_home = os.environ["HOME"]
    with serving(tmp_path / "nosftp", sftp=False) as server:
        f = tiny_study(tmp_path / "exp.toml", epochs=1, extra=server.table(tmp_path / "w"))
        f.write_text(f.read_text() + 'host = "gpu1"\n')
        line = (
            "gpu1: testhost offers no SFTP (Session request failed), which diffui copies run "
            "folders with: add 'Subsystem sftp internal-sftp' to the host's sshd_config and "
            "reload sshd"
        )
        assert main(["hosts", "check", "-f", str(f)]) == 1
        assert line in capsys.readouterr().out.splitlines()
        q, (run,) = queue_runs(f, tmp_path / "runs")
        q.submit(["tiny"])
        settle(q, ["tiny"], timeout=120)
        assert (run.status().state, run.status().detail) == ("failed", line)
    assert os.environ["HOME"] == old_home


def test_a_remote_run_folder_that_is_a_link_is_refused(tmp_path, sshd):
    import asyncio

    from engine.queue.executors.remote import HostError, Remote

    spec = load_experiments(remote_file(tmp_path, sshd)).hosts["gpu1"]
    (tmp_path / "remote" / "runs").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "remote" / "runs" / "r").symlink_to(tmp_path / "elsewhere")
    local = tmp_path / "runs" / "r"
    local.mkdir(parents=True)
    (local / "config.toml").write_text("x")
    ex = SSHExecutor("gpu1", spec, tmp_path / "runs")

    async def push():
        conn = await Remote("gpu1", spec).open()
        try:
            await ex._push(conn, local, str(tmp_path / "remote" / "runs" / "r"), everything=True)
        finally:
            conn.close()

    with pytest.raises(HostError, match="is a symbolic link"):
        asyncio.run(push())
    assert list((tmp_path / "elsewhere").iterdir()) == []
