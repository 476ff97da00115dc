"""The SSH executor: jobs on a GPU box reached over SSH (``[hosts.NAME]`` with ``kind = "ssh"``).

Everything goes through one connection per host (:class:`engine.queue.executors.remote.Remote`)
held by the executor's own thread (an asyncio loop).

The remote side is a plain run folder: ``WORKDIR/runs/<run>`` (a study: ``WORKDIR/runs/studies/
NAME``, beside the run it samples from, as locally). A job's start copies the local run folder
there (the resolved config.toml, a resumed run's checkpoint and events; a study also gets its
run's config.toml, checkpoint.pt and worker records), then starts ``PYTHON -m engine.jobs.worker
DIR`` detached (``setsid nohup``: it outlives the connection and the laptop) with
``CUDA_VISIBLE_DEVICES`` of its slot and ``DIFFUI_DATA_DIR=WORKDIR/data``.

While it runs, the executor mirrors the remote folder into the local one every half second:
``events.jsonl`` from a byte offset that is the local file's size (complete lines only, so the
local file is always a prefix of the remote one: a follow-up after any interruption neither
loses nor repeats an event), the other files when their size or time changed (``exit.json``
last, once every event before it is in), and the heartbeat (touched locally while the remote
one moves). The local ``worker.json`` names the host (``host = "gpu1"``), so the local status
trusts that heartbeat. A dropped connection is made again with back-off; the run goes on
remotely meanwhile.

The Slurm executor of a cluster reached over SSH (:class:`engine.queue.executors.slurm.
SlurmOverSSH`) is this executor with other ways to start, stop and follow a job: see the hooks
of :class:`SSHExecutor`.
"""

from __future__ import annotations

import asyncio
import json
import os
import posixpath
import shlex
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh

from engine.files import atomic_write_bytes, atomic_write_json
from engine.queue.executors.base import Executor, Job, StartError, say
from engine.queue.executors.remote import (
    HostError,
    Remote,
    RemoteFile,
    failure_line,
    inside,
    safe_rel,
    same_file,
    through_link,
)
from engine.queue.handle import Handle, SlurmJob, positive_pid
from engine.rundir.run import STUDIES_DIR, Run
from engine.spec.names import SAFE_NAME
from engine.spec.sections import HostSpec
from engine.spec.specs import StudySpec

POLL_EVERY = 0.5  # seconds between two mirrors of a running job
LIVE_EVERY = 5.0  # seconds between two checks that the remote worker's process lives
BACKOFF_MAX = 30.0
NOT_PUSHED = {"worker.log", "heartbeat", "worker.json", "exit.json"}  # the worker's records
KEPT_REMOTELY = NOT_PUSHED  # left in the remote folder at a start though not local
UNSAFE = "not a safe file name (expected letters, digits, '.', '_', '-' in each part)"
NOT_PULLED = {"events.jsonl", "heartbeat", "config.toml", "worker.json", "exit.json"}


@dataclass
class RemoteJob:
    """What an SSH executor (or a subclass) knows of one job it follows."""

    job: Job
    rel: str  # the run folder's name below RUNS (``run`` or ``studies/NAME``)
    gpu: int | None = None
    pid: int | None = None
    state: str = "starting"  # starting | running | lost (adopted, pid unsure) | gone
    signal: str = ""  # what to send to the job: TERM or KILL (a subclass's own: scancel)
    seen: dict[str, tuple[int, float]] = field(default_factory=dict)  # file -> size, mtime
    beat: float = 0.0  # the remote heartbeat's last time seen
    checked: float = 0.0  # when the remote worker was last seen alive
    note: str = ""  # what goes wrong meanwhile (a lost connection), for queue.json
    again: str = ""  # why its run goes back to the queue once the job is gone
    skipped: set[str] = field(default_factory=set)  # unsafe names already reported
    task: asyncio.Task | None = None
    slurm: SlurmJob | None = None  # a cluster's job (SlurmOverSSH)


class SSHExecutor(Executor):
    """Jobs on one SSH host; see the module's text.

    A subclass changes how jobs are started, stopped and followed by overriding these hooks:

    * :meth:`handle`: a job's handle for queue.json;
    * :meth:`adopt`: a job a previous service started, from its handle: followed again;
    * :meth:`send_signal`: note that a job is to be stopped or killed;
    * :meth:`launch` (on the executor's thread): start a job on the host;
    * :meth:`mirror` (on the executor's thread): one round of following a job.

    and starts its jobs with :meth:`track` and :meth:`follow`, running coroutines on the
    executor's thread with :meth:`soon`, on :meth:`connection`, copying with :meth:`push_job`
    and :meth:`pull`.
    """

    def __init__(self, name: str, spec: HostSpec, runs_dir: Path):
        self.name, self.spec, self.runs_dir = name, spec, Path(runs_dir).resolve()
        self._jobs: dict[str, RemoteJob] = {}
        self._remote: Remote | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._conn_lock = asyncio.Lock()  # (made again with each loop of the executor)

    # -- the executor --
    def slots(self, jobs: int) -> list[str]:
        if self.spec.gpus:
            return [f"{self.name}:gpu{g}" for g in self.spec.gpus]
        return [f"{self.name}:{i}" for i in range(self.spec.slots)]

    def start(self, job: Job, slot: str, threads: int | None = None) -> Handle:
        rel = self.rel(job)
        gpu = None
        if slot.startswith(f"{self.name}:gpu"):
            gpu = int(slot.rsplit("gpu", 1)[1])
        run = Run(job.run_dir)  # reads as running on this host while it starts (heartbeat)
        # pid 0: no process here (yet); the fresh heartbeat makes it read as running
        atomic_write_json(run.worker_path, {"pid": 0, "host": self.name, "started": time.time()})
        run.beat()
        j = RemoteJob(job, rel, gpu)
        self.follow(j)
        return self.handle(j)

    def alive(self, job: Job, handle: Handle) -> bool:
        j = self._jobs.get(job.name) or self.adopt(job, handle)
        return j is not None and j.state != "gone"

    def sync(self, job: Job, handle: Handle) -> None:
        j = self._jobs.get(job.name) or self.adopt(job, handle)
        if j is not None:
            handle.update(self.handle(j))

    def stop(self, job: Job, handle: Handle) -> None:
        j = self._jobs.get(job.name) or self.adopt(job, handle)
        if j is not None:
            self.send_signal(j, "TERM")

    def kill(self, job: Job, handle: Handle) -> None:
        j = self._jobs.get(job.name) or self.adopt(job, handle)
        if j is not None:
            self.send_signal(j, "KILL")

    def close(self) -> None:
        """Stop following (the remote workers go on) and close the connection."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return

        async def shut() -> None:
            for j in self._jobs.values():
                if j.task is not None:
                    j.task.cancel()
            if self._remote is not None:
                self._remote.close()

        asyncio.run_coroutine_threadsafe(shut(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        self._loop = None

    # -- the hooks --
    def handle(self, j: RemoteJob) -> Handle:
        """The handle of a job, for queue.json."""
        return Handle(host=self.name, run=j.rel, gpu=j.gpu, pid=j.pid, state=j.state, note=j.note)

    def adopt(self, job: Job, handle: Handle) -> RemoteJob | None:
        """A job a previous service started (its handle from queue.json): followed again;
        None when it cannot be."""
        try:
            rel = self.rel(job)
        except StartError:
            return None
        j = RemoteJob(
            job,
            rel,
            handle.gpu,
            handle.pid,
            "running" if handle.state in ("running", "gone") else "lost",
        )
        self.follow(j)
        return j

    def send_signal(self, j: RemoteJob, sig: str) -> None:
        """Note that the job is to get ``sig`` (TERM: stop, KILL); :meth:`mirror` sends it."""
        j.signal = sig

    async def launch(self, remote: Remote, j: RemoteJob) -> None:
        """Start the job on the host: its run folder copied there, its worker started."""
        await remote.check_worker()
        folder = await self.push_job(remote, j)
        q = shlex.quote
        env = {
            "CUDA_VISIBLE_DEVICES": "" if j.gpu is None else str(j.gpu),
            "DIFFUI_DATA_DIR": posixpath.join(remote.workdir, "data"),
        }
        command = (
            f"cd {q(folder)} && {{ setsid nohup env "
            + " ".join(f"{k}={q(v)}" for k, v in env.items())
            + f" {q(remote.python)} -m engine.jobs.worker {q(folder)} >> worker.log 2>&1 "
            "< /dev/null & }; echo $!"
        )
        j.pid = int((await remote.run(command)).strip().splitlines()[-1])
        j.checked = time.time()

    async def mirror(self, remote: Remote, j: RemoteJob) -> bool:
        """Bring the remote folder's news here; send a pending signal; True once the worker is
        gone and everything it wrote is here."""
        if j.signal and positive_pid(j.pid):
            await remote.run(f"kill -{j.signal} {int(j.pid or 0)}", check=False)
            j.signal = ""
        files = await self.pull(remote, j)
        if "exit.json" in files:
            return True
        if time.time() - j.checked >= LIVE_EVERY or j.state == "lost":
            alive = (
                positive_pid(j.pid) is not None
                and (
                    await remote.run(
                        f"kill -0 {int(j.pid or 0)} 2>/dev/null && echo yes || echo no"
                    )
                ).strip()
                == "yes"
            )
            if not alive:
                await self._ended(remote, j, files)
                return True
            j.checked, j.state = time.time(), "running"
        return False

    # -- for the hooks --
    def rel(self, job: Job) -> str:
        """The job's folder below RUNS, checked so that it stays inside the remote workdir."""
        try:
            parts = job.run_dir.resolve().relative_to(self.runs_dir).parts
        except ValueError:
            raise StartError(f"{self.name}: {job.run_dir} is not in {self.runs_dir}") from None
        ok = len(parts) == 1 or (len(parts) == 2 and parts[0] == STUDIES_DIR)
        if not ok or not all(SAFE_NAME.fullmatch(p) and p not in (".", "..") for p in parts):
            raise StartError(
                f"{self.name}: run name {'/'.join(parts)!r} cannot be used on a "
                "host (expected letters, digits, '.', '_', '-')"
            )
        return "/".join(parts)

    def skip(self, j: RemoteJob, folder: str, names: list[str], why: str = UNSAFE) -> None:
        """Say in one line (once a job) each file left alone, and why."""
        for rel in names:
            if rel not in j.skipped:
                j.skipped.add(rel)
                say(f"{self.name}: {folder}: skipped {rel!r}: {why}")

    def track(self, j: RemoteJob) -> None:
        """Know of the job (it is alive until its state is gone)."""
        self._jobs[j.job.name] = j

    def tracked(self) -> list[RemoteJob]:
        return list(self._jobs.values())

    def follow(self, j: RemoteJob) -> None:
        """Know of the job and follow it on the executor's thread: :meth:`launch` it when it
        is starting, then :meth:`mirror` it until it is gone."""
        self.track(j)
        loop = self._ensure_loop()

        def go() -> None:
            j.task = loop.create_task(self._run(j))

        loop.call_soon_threadsafe(go)

    def soon(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` on the executor's thread."""
        loop = self._ensure_loop()
        loop.call_soon_threadsafe(lambda: loop.create_task(work))

    async def connection(self) -> Remote:
        """The connection to the host, made (again) when there is none."""
        async with self._conn_lock:
            if self._remote is None or self._remote.closed:
                self._remote = await Remote(self.name, self.spec).open()
            return self._remote

    async def push_job(self, remote: Remote, j: RemoteJob) -> str:
        """Copy the job's run folder there (a study: and the run it samples from, beside it as
        locally), an earlier attempt's records taken away; the remote folder."""
        runs = posixpath.join(remote.workdir, "runs")
        folder = posixpath.join(runs, j.rel)
        await self._push(remote, j.job.run_dir, folder, everything=True, j=j)
        spec = Run(j.job.run_dir).spec()
        if isinstance(spec, StudySpec):
            await self._push(
                remote,
                self.runs_dir / spec.run,
                posixpath.join(runs, spec.run),
                only=("config.toml", "checkpoint.pt", "worker.json", "exit.json"),
                j=j,
            )
        await remote.run(f"cd {shlex.quote(folder)} && rm -f exit.json worker.json")
        return folder

    async def pull(self, remote: Remote, j: RemoteJob) -> dict[str, RemoteFile]:
        """Bring the remote run folder's news here: first the worker's record, then every
        event, then the other files and the heartbeat, exit.json last (once every event before
        it is in); the remote listing."""
        folder = posixpath.join(remote.workdir, "runs", j.rel)
        local = j.job.run_dir
        files = await remote.listing(folder)
        self.skip(j, folder, files.hostile)
        if "worker.json" in files and j.seen.get("worker.json") != _key(files["worker.json"]):
            rec = _worker_record(await _read(remote, folder, "worker.json"))
            if isinstance(rec, dict):
                j.pid = positive_pid(rec["pid"]) or j.pid  # (-1 would signal every process)
                rec["remote_host"], rec["host"] = rec["host"], self.name
                atomic_write_json(local / "worker.json", rec)
            elif rec:
                say(f"{self.name}: {posixpath.join(folder, 'worker.json')}: {rec}; not copied")
            j.seen["worker.json"] = _key(files["worker.json"])
        if "events.jsonl" in files:
            await _pull_events(remote, folder, local / "events.jsonl", files["events.jsonl"].size)
        for rel, attrs in files.items():
            if rel in NOT_PULLED or j.seen.get(rel) == _key(attrs):
                continue
            target = inside(local, rel)
            if target is None:
                self.skip(j, str(local), [rel], "a folder of its path leads out of the run")
                continue
            if rel in j.seen or not same_file(target, attrs):  # (new to us: maybe here)
                await remote.get(posixpath.join(folder, rel), target)
            j.seen[rel] = _key(attrs)
        beat = files.get("heartbeat")
        if beat is not None and beat.mtime != j.beat:
            j.beat = beat.mtime
            Run(local).beat()
        if "exit.json" in files and j.seen.get("exit.json") != _key(files["exit.json"]):
            events = (await remote.listing(folder)).get("events.jsonl")
            if events is not None:
                await _pull_events(remote, folder, local / "events.jsonl", events.size)
            data = await _read(remote, folder, "exit.json")
            if data:
                atomic_write_bytes(local / "exit.json", data)
            j.seen["exit.json"] = _key(files["exit.json"])
        return files

    # -- the thread's work --
    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()
                self._conn_lock = asyncio.Lock()

                def main() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                self._thread = threading.Thread(target=main, name=f"ssh-{self.name}", daemon=True)
                self._thread.start()
                ready.wait()
                self._loop = loop
            return self._loop

    def _drop(self, remote: Remote | None) -> None:
        if remote is not None and remote is self._remote:
            remote.close()

    async def _run(self, j: RemoteJob) -> None:
        """Launch the job when it is starting, then mirror it until it is gone."""
        if j.state == "starting":
            if not await self._launched(j):
                j.state = "gone"
                return
            j.state = "running"
        delay = 1.0
        while True:
            remote = None
            try:
                remote = await self.connection()
                if await self.mirror(remote, j):
                    j.state = "gone"
                    return
                delay, j.note = 1.0, ""
                await asyncio.sleep(POLL_EVERY)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 (a lost connection, mostly): again, backing off
                self._drop(remote)
                if j.state == "running":  # can't tell: the run goes on remotely meanwhile
                    Run(j.job.run_dir).beat()
                j.note = (
                    f"connection lost ({' '.join(str(e).split()) or type(e).__name__}); "
                    f"trying again in {delay:.0f} s"
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX)

    async def _launched(self, j: RemoteJob) -> bool:
        """Launch the job (again once on a connection that had dropped); False when it could
        not be, which its run folder then says."""
        try:
            try:
                await self.launch(await self.connection(), j)
            except (asyncssh.Error, OSError):  # a connection that had dropped: once more
                self._drop(self._remote)
                await self.launch(await self.connection(), j)
        except Exception as e:  # noqa: BLE001 (whatever it is, the run says it, in one line)
            line = failure_line(e, f"{self.name}: could not start the worker")
            Run(j.job.run_dir).record_failure(self.name, line)
            return False
        return True

    async def _push(
        self,
        remote: Remote,
        local: Path,
        folder: str,
        everything: bool = False,
        only: tuple = (),
        j: RemoteJob | None = None,
    ) -> None:
        """Make the remote folder a copy of the local one (or of its files ``only``, e.g. a
        study's run: its settings, model and the records that say it finished): files that
        differ are copied; with ``everything``, remote files the local folder lacks (an earlier
        attempt's) are removed, but for the worker's own records."""
        if (await remote.run_full(f"test -L {shlex.quote(folder)}")).exit_status == 0:
            raise HostError(
                f"{self.name}: {folder} is a symbolic link: a run folder is copied into a real "
                "folder only (remove the link)"
            )
        there = await remote.listing(folder)
        here, unsafe = _local_files(local)
        if j is not None:
            self.skip(j, folder, there.hostile)
            self.skip(j, str(local), unsafe)
        for rel, path in here.items():
            if rel not in only if only else rel in NOT_PUSHED:
                continue
            if rel in there and same_file(path, there[rel]):
                continue
            if through_link(rel, there.links):  # (it would land where the link points)
                if j is not None:
                    self.skip(j, folder, [rel], "a folder of its path is a symbolic link there")
                continue
            await remote.put(path, posixpath.join(folder, rel))
        if everything:
            for rel in there:
                if rel not in here and rel not in KEPT_REMOTELY:
                    await remote.sftp.remove(posixpath.join(folder, rel))
            await remote.sftp.makedirs(folder, exist_ok=True)

    async def _ended(self, remote: Remote, j: RemoteJob, files: dict[str, RemoteFile]) -> None:
        """The remote worker is gone without an exit record: a worker that never got going
        fails its run with its last line of output; else what is left is mirrored, and the
        local heartbeat is made stale so that the local status says so at once."""
        folder, local = posixpath.join(remote.workdir, "runs", j.rel), j.job.run_dir
        if "worker.json" not in files:  # it never got going
            data = b"" if "worker.log" not in files else await _read(remote, folder, "worker.log")
            log = data.decode(errors="replace")
            last = log.strip().splitlines()[-1:] or ["no output"]
            Run(local).record_failure(
                self.name, f"{self.name}: the worker exited at once: " + " ".join(last[0].split())
            )
            return
        if "events.jsonl" in files:
            attrs = (await remote.listing(folder)).get("events.jsonl")
            if attrs is not None:
                await _pull_events(remote, folder, local / "events.jsonl", attrs.size)
        hb = local / "heartbeat"
        if hb.exists():
            os.utime(hb, (0, 0))


def _local_files(local: Path) -> tuple[dict[str, Path], list[str]]:
    """The local run folder's files by relative name (hidden ones and links left out), and the
    names that are not safe (left out too)."""
    files: dict[str, Path] = {}
    hostile: list[str] = []
    for p in sorted(local.rglob("*")):
        rel = p.relative_to(local).as_posix()
        if any(part.startswith(".") for part in rel.split("/")) or p.is_symlink():
            continue
        if p.is_file() and safe_rel(rel):
            files[rel] = p
        elif p.is_file():
            hostile.append(rel)
    return files, hostile


def _worker_record(data: bytes) -> dict | str:
    """A remote worker.json as the worker writes it (pid, host, start time), or what is wrong
    with it ("" when it is empty: being written)."""
    if not data:
        return ""
    try:
        rec = json.loads(data.decode("utf-8"))
    except ValueError:  # (UnicodeDecodeError too)
        return "damaged (not JSON)"
    ok = (
        isinstance(rec, dict)
        and type(rec.get("pid")) is int
        and rec["pid"] >= 0
        and isinstance(rec.get("host"), str)
        and type(rec.get("started")) in (int, float)
    )
    return rec if ok else "damaged (expected a pid >= 0, a host and a start time)"


def _key(attrs: RemoteFile) -> tuple[int, float]:
    return attrs.size, attrs.mtime


def _bytes(data: bytes | str) -> bytes:
    """What a file opened "rb" read (asyncssh's types allow text too)."""
    return data if isinstance(data, bytes) else data.encode()


async def _read(remote: Remote, folder: str, name: str) -> bytes:
    try:
        async with remote.sftp.open(posixpath.join(folder, name), "rb") as f:
            return _bytes(await f.read())
    except asyncssh.SFTPNoSuchFile:
        return b""


async def _pull_events(remote: Remote, folder: str, local: Path, size: int) -> None:
    """Append the remote events.jsonl's complete lines past the local file's end."""
    have = local.stat().st_size if local.exists() else 0
    if size <= have:
        return
    async with remote.sftp.open(posixpath.join(folder, "events.jsonl"), "rb") as f:
        data = _bytes(await f.read(size - have, have))
    cut = data.rfind(b"\n") + 1
    if cut:
        with open(local, "ab") as out:
            out.write(data[:cut])
            out.flush()
            os.fsync(out.fileno())
