"""The SSH executor: jobs on a GPU box reached over SSH (``[hosts.NAME]`` with ``kind = "ssh"``).

Everything goes through asyncssh, on one connection per host held by the executor's own thread
(an asyncio loop), with the user's keys and agent, ``~/.ssh/config`` (aliases, ProxyJump) and
``~/.ssh/known_hosts``: an unknown or changed host key is refused with its fingerprint.

The remote side is a plain run folder: ``WORKDIR/runs/<run>`` (a study: ``WORKDIR/runs/studies/
NAME``, beside the run it samples from, as locally). A job's start copies the local run folder
there (the resolved config.toml, a resumed run's checkpoint and events; a study also gets its
run's config.toml, checkpoint.pt and worker records), then starts ``PYTHON -m engine.jobs.worker DIR`` detached
(``setsid nohup``: it outlives the connection and the laptop) with ``CUDA_VISIBLE_DEVICES`` of
its slot and ``DIFFUI_DATA_DIR=WORKDIR/data``.

While it runs, the executor mirrors the remote folder into the local one every half second:
``events.jsonl`` from a byte offset that is the local file's size (complete lines only, so the
local file is always a prefix of the remote one: a follow-up after any interruption neither
loses nor repeats an event), the other files when their size or time changed (``exit.json``
last, once every event before it is in), and the heartbeat (touched locally while the remote
one moves). The local ``worker.json`` names the host (``host = "gpu1"``), so the local status
trusts that heartbeat. A dropped connection is made again with back-off; the run goes on
remotely meanwhile.
"""
from __future__ import annotations

import asyncio
import json
import os
import posixpath
import shlex
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh

from engine.spec.names import SAFE_NAME
from engine.spec.sections import HostSpec
from engine.spec.specs import StudySpec
from engine.rundir.run import STUDIES_DIR, Run
from engine.files import atomic_write_bytes, atomic_write_json
from engine.queue.executors.base import Job, StartError

POLL_EVERY = 0.5  # seconds between two mirrors of a running job
LIVE_EVERY = 5.0  # seconds between two checks that the remote worker's process lives
CONNECT_TIMEOUT = 15.0
BACKOFF_MAX = 30.0
NOT_PUSHED = {"worker.log", "heartbeat", "worker.json", "exit.json"}  # the worker's records
KEPT_REMOTELY = NOT_PUSHED  # left in the remote folder at a start though not local
NOT_PULLED = {"events.jsonl", "heartbeat", "config.toml", "worker.json", "exit.json"}


class HostError(Exception):
    """The host cannot be used; ``str()`` is one line for the user (``gpu1: ...``)."""


# --- connecting -------------------------------------------------------------------------------


def _target(spec: HostSpec) -> dict:
    """asyncssh.connect's host, port and user: the table's, else ~/.ssh/config's (port 22 is
    the table's default, so it leaves the port to ~/.ssh/config)."""
    kw: dict = {"host": spec.address}
    if spec.port != 22:
        kw["port"] = spec.port
    if spec.user:
        kw["username"] = spec.user
    return kw


def _where(spec: HostSpec) -> str:
    return spec.address + (f" port {spec.port}" if spec.port != 22 else "")


async def _host_key_problem(name: str, spec: HostSpec) -> str:
    """Why the host key was refused, with its fingerprint and what to do. A second handshake
    learns the real host and port (after ~/.ssh/config) and what known_hosts says of them."""
    seen: dict = {}
    known = Path.home() / ".ssh" / "known_hosts"

    def record(host: str, addr: str, port: int | None):
        seen.update(host=host, addr=addr, port=port or 22)
        if known.is_file():
            try:
                seen["trusted"] = asyncssh.read_known_hosts(str(known)).match(host, addr, port)[0]
            except (ValueError, OSError, asyncssh.Error):
                pass
        return [], [], []  # trust nothing: this handshake only looks

    try:
        await asyncio.wait_for(asyncssh.connect(**_target(spec), known_hosts=record),
                               CONNECT_TIMEOUT)
    except (OSError, asyncssh.Error, asyncio.TimeoutError):
        pass
    host, port = seen.get("host", spec.address), seen.get("port", spec.port)
    try:
        key = await asyncio.wait_for(asyncssh.get_server_host_key(host, port), CONNECT_TIMEOUT)
    except (OSError, asyncssh.Error, asyncio.TimeoutError):
        key = None
    shown = f"{key.get_algorithm()} {key.get_fingerprint()}" if key else "fingerprint unknown"
    entry = host if port == 22 else f"[{host}]:{port}"
    scan = f"ssh-keyscan{' -p %d' % port if port != 22 else ''} {host} >> ~/.ssh/known_hosts"
    if seen.get("trusted"):
        return (f"{name}: the host key of {spec.address} has CHANGED (now {shown}); refused: "
                f"if the host was reinstalled, check the fingerprint with its owner, then "
                f"ssh-keygen -R '{entry}' and {scan}")
    return (f"{name}: the host key of {spec.address} is unknown ({shown}); refused: check the "
            f"fingerprint with the host's owner, then add it ({scan}, or connect once with ssh)")


async def connect(name: str, spec: HostSpec) -> asyncssh.SSHClientConnection:
    """A connection to the host, or a :class:`HostError` saying in one line why not."""
    try:
        return await asyncio.wait_for(asyncssh.connect(**_target(spec)), CONNECT_TIMEOUT)
    except asyncssh.HostKeyNotVerifiable:
        raise HostError(await _host_key_problem(name, spec)) from None
    except asyncssh.PermissionDenied as e:
        raise HostError(f"{name}: {_where(spec)} refused our keys ({e.reason}): add your public "
                        "key to the host's ~/.ssh/authorized_keys, or load it into your "
                        "SSH agent") from None
    except asyncio.TimeoutError:
        raise HostError(f"{name}: cannot reach {_where(spec)}: no answer within "
                        f"{CONNECT_TIMEOUT:.0f} s") from None
    except (OSError, asyncssh.Error) as e:
        reason = (getattr(e, "reason", "") or (os.strerror(e.errno) if getattr(e, "errno", None)
                                                else "") or str(e))
        raise HostError(f"{name}: cannot connect to {_where(spec)}: "
                        + " ".join(str(reason).split())) from None


class Remote:
    """One connection to a host with its SFTP session and the remote paths diffui uses."""

    def __init__(self, name: str, spec: HostSpec):
        self.name, self.spec = name, spec
        self.conn: asyncssh.SSHClientConnection | None = None
        self.sftp: asyncssh.SFTPClient | None = None
        self.home = ""
        self.checked = False  # whether the remote python runs diffui's worker

    async def open(self) -> "Remote":
        self.conn = await connect(self.name, self.spec)
        try:
            self.home = (await self.run('printf %s "$HOME"')).strip()
            self.sftp = await self.conn.start_sftp_client()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.conn = self.sftp = None

    @property
    def closed(self) -> bool:
        return self.conn is None or self.conn.is_closed()

    def path(self, p: str) -> str:
        """An absolute remote path: ``~`` and relative paths are under the remote home."""
        if p == "~" or p.startswith("~/"):
            p = p[2:]
        return p if p.startswith("/") else posixpath.join(self.home, p)

    @property
    def workdir(self) -> str:
        return self.path(self.spec.workdir)

    @property
    def python(self) -> str:
        p = self.spec.python
        return self.path(p) if p.startswith("~") or "/" in p else p  # a bare name: on PATH

    async def run(self, command: str, check: bool = True, input: str | None = None) -> str:
        """stdout of ``command`` (a shell line whose values are quoted; ``input`` on its stdin);
        a non-zero exit is a :class:`HostError` with its last line of stderr when ``check``."""
        r = await self.conn.run(command, check=False, input=input)
        if check and r.exit_status != 0:
            err = (r.stderr or r.stdout or "").strip().splitlines()
            raise HostError(f"{self.name}: {err[-1] if err else f'exit status {r.exit_status}'}")
        return r.stdout or ""

    async def run_full(self, command: str) -> asyncssh.SSHCompletedProcess:
        return await self.conn.run(command, check=False)

    async def check_worker(self) -> None:
        """A :class:`HostError` unless the host's python imports diffui's worker."""
        if self.checked:
            return
        r = await self.run_full(f"{shlex.quote(self.python)} -c 'import engine.jobs.worker'")
        if r.exit_status != 0:
            lines = (r.stderr or r.stdout or "").strip().splitlines()
            why = lines[-1] if lines else f"exit status {r.exit_status}"
            raise HostError(f"{self.name}: {self.spec.python} cannot run diffui ({why}): "
                            f"install it with: diffui hosts install {self.name}")
        self.checked = True

    async def listing(self, folder: str, depth: int = 3) -> dict[str, "RemoteFile"]:
        """Every file under ``folder`` (relative names, '/'-separated; hidden ones left out):
        {} when it is missing. Through find, not SFTP: SFTP's times are whole seconds, so a
        checkpoint rewritten within a second at the same size would look unchanged."""
        out: dict[str, RemoteFile] = {}
        text = await self.run(f"find {shlex.quote(folder)} -mindepth 1 -maxdepth {int(depth)} "
                              "-type f -printf '%P\\t%s\\t%T@\\n' 2>/dev/null", check=False)
        for line in text.splitlines():
            rel, _, rest = line.partition("\t")
            size, _, mtime = rest.partition("\t")
            if rel and not any(part.startswith(".") for part in rel.split("/")):
                out[rel] = RemoteFile(int(size), float(mtime))
        return out

    async def put(self, local: Path, remote: str) -> None:
        """Copy a file there (atomically: a temp name, then a rename), keeping its time."""
        await self.sftp.makedirs(posixpath.dirname(remote), exist_ok=True)
        tmp = posixpath.join(posixpath.dirname(remote), f".{posixpath.basename(remote)}.up")
        await self.sftp.put(str(local), tmp, preserve=True)
        await self.sftp.posix_rename(tmp, remote)

    async def get(self, remote: str, local: Path) -> None:
        """Copy a file here (atomically), keeping its time."""
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.parent / f".{local.name}.down"
        await self.sftp.get(remote, str(tmp), preserve=True)
        os.replace(tmp, local)


@dataclass(frozen=True)
class RemoteFile:
    size: int
    mtime: float  # seconds, as finely as the host's filesystem keeps them


def same_file(local: Path, attrs: RemoteFile) -> bool:
    """Whether ``local`` is the copy of a remote file (copies keep its time, in whole seconds)."""
    try:
        st = local.stat()
    except FileNotFoundError:
        return False
    return st.st_size == attrs.size and int(st.st_mtime) == int(attrs.mtime)


# --- the executor -----------------------------------------------------------------------------


@dataclass
class _Job:
    """What the executor knows of one job it follows."""

    job: Job
    rel: str  # the run folder's name below RUNS (``run`` or ``studies/NAME``)
    gpu: int | None = None
    pid: int | None = None
    state: str = "starting"  # starting | running | lost (adopted, pid unsure) | gone
    signal: str = ""  # TERM or KILL: to be sent to the remote worker
    seen: dict = field(default_factory=dict)  # remote file -> (size, mtime) mirrored
    beat: float = 0.0  # the remote heartbeat's last time seen
    checked: float = 0.0  # when the remote worker was last seen alive
    note: str = ""  # what goes wrong meanwhile (a lost connection), for queue.json
    task: object = None
    slurm: dict = field(default_factory=dict)  # a cluster's job: its handle (engine.queue.executors.slurm)


class SSHExecutor:
    """Jobs on one SSH host; see the module's text."""

    def __init__(self, name: str, spec: HostSpec, runs_dir: Path):
        self.name, self.spec, self.runs_dir = name, spec, Path(runs_dir).resolve()
        self._jobs: dict[str, _Job] = {}
        self._remote: Remote | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._conn_lock: asyncio.Lock | None = None

    # -- the interface --
    def slots(self, jobs: int) -> list[str]:
        if self.spec.gpus:
            return [f"{self.name}:gpu{g}" for g in self.spec.gpus]
        return [f"{self.name}:{i}" for i in range(self.spec.slots)]

    def start(self, job: Job, slot: str, threads: int | None = None) -> dict:
        rel = self._rel(job)
        gpu = None
        if slot.startswith(f"{self.name}:gpu"):
            gpu = int(slot.rsplit("gpu", 1)[1])
        now = time.time()
        run = Run(job.run_dir)  # reads as running on this host while it starts (heartbeat)
        atomic_write_json(run.worker_path, {"pid": None, "host": self.name, "started": now})
        run.beat()
        j = _Job(job, rel, gpu)
        self._follow(j)
        return self._handle(j)

    def alive(self, job: Job, handle: dict) -> bool:
        j = self._jobs.get(job.name) or self._adopt(job, handle)
        return j is not None and j.state != "gone"

    def sync(self, job: Job, handle: dict) -> None:
        j = self._jobs.get(job.name) or self._adopt(job, handle)
        if j is not None:
            handle.pop("note", None)
            handle.update(self._handle(j))

    def stop(self, job: Job, handle: dict) -> None:
        self._signal(job, handle, "TERM")

    def kill(self, job: Job, handle: dict) -> None:
        self._signal(job, handle, "KILL")

    def close(self) -> None:
        """Stop following (the remote workers go on) and close the connection."""
        loop = self._loop
        if loop is None:
            return

        async def shut():
            for j in self._jobs.values():
                if j.task is not None:
                    j.task.cancel()
            if self._remote is not None:
                self._remote.close()
        asyncio.run_coroutine_threadsafe(shut(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(10)
        self._loop = None

    # -- bookkeeping --
    def _rel(self, job: Job) -> str:
        """The job's folder below RUNS, checked so that it stays inside the remote workdir."""
        try:
            parts = job.run_dir.resolve().relative_to(self.runs_dir).parts
        except ValueError:
            raise StartError(f"{self.name}: {job.run_dir} is not in {self.runs_dir}") from None
        ok = (len(parts) == 1 or (len(parts) == 2 and parts[0] == STUDIES_DIR))
        if not ok or not all(SAFE_NAME.fullmatch(p) and p not in (".", "..") for p in parts):
            raise StartError(f"{self.name}: run name {'/'.join(parts)!r} cannot be used on a "
                             "host (expected letters, digits, '.', '_', '-')")
        return "/".join(parts)

    def _handle(self, j: _Job) -> dict:
        return {"host": self.name, "run": j.rel, "gpu": j.gpu, "pid": j.pid, "state": j.state,
                **({"note": j.note} if j.note else {})}

    def _adopt(self, job: Job, handle: dict) -> _Job | None:
        """A job a previous service started (its handle from queue.json): follow it again."""
        try:
            rel = self._rel(job)
        except StartError:
            return None
        j = _Job(job, rel, handle.get("gpu"), handle.get("pid"),
                 "running" if handle.get("state") in ("running", "gone") else "lost")
        self._follow(j)
        return j

    def _signal(self, job: Job, handle: dict, sig: str) -> None:
        j = self._jobs.get(job.name) or self._adopt(job, handle)
        if j is not None:
            j.signal = sig

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def main():
                    asyncio.set_event_loop(loop)
                    self._conn_lock = asyncio.Lock()
                    loop.call_soon(ready.set)
                    loop.run_forever()
                self._thread = threading.Thread(target=main, name=f"ssh-{self.name}", daemon=True)
                self._thread.start()
                ready.wait()
                self._loop = loop
            return self._loop

    def _follow(self, j: _Job) -> None:
        self._jobs[j.job.name] = j
        loop = self._ensure_loop()

        def go():
            j.task = loop.create_task(self._run(j))
        loop.call_soon_threadsafe(go)

    # -- the thread's work --
    async def _remote_conn(self) -> Remote:
        async with self._conn_lock:
            if self._remote is None or self._remote.closed:
                self._remote = await Remote(self.name, self.spec).open()
            return self._remote

    def _drop(self, remote: Remote | None) -> None:
        if remote is not None and remote is self._remote:
            remote.close()

    async def _run(self, j: _Job) -> None:
        run = Run(j.job.run_dir)
        if j.state == "starting":
            try:
                try:
                    await self._launch(j)
                except (asyncssh.Error, OSError):  # a connection that had dropped: once more
                    self._drop(self._remote)
                    await self._launch(j)
            except Exception as e:  # noqa: BLE001 (whatever it is, the run says it, in one line)
                line = str(e) if isinstance(e, HostError) else \
                    f"{self.name}: could not start the worker: " \
                    + (" ".join(str(e).split()) or type(e).__name__)
                run.record_failure(self.name, line)
                j.state = "gone"
                return
            j.state = "running"
        delay = 1.0
        while True:
            remote = None
            try:
                remote = await self._remote_conn()
                if await self._mirror(remote, j):
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
                j.note = (f"connection lost ({' '.join(str(e).split()) or type(e).__name__}); "
                          f"trying again in {delay:.0f} s")
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX)

    async def _launch(self, j: _Job) -> None:
        remote = await self._remote_conn()
        await remote.check_worker()
        folder = await self._push_job(remote, j)
        q = shlex.quote
        env = {"CUDA_VISIBLE_DEVICES": "" if j.gpu is None else str(j.gpu),
               "DIFFUI_DATA_DIR": posixpath.join(remote.workdir, "data")}
        command = (f"cd {q(folder)} && {{ setsid nohup env "
                   + " ".join(f"{k}={q(v)}" for k, v in env.items())
                   + f" {q(remote.python)} -m engine.jobs.worker {q(folder)} >> worker.log 2>&1 "
                   "< /dev/null & }; echo $!")
        j.pid = int((await remote.run(command)).strip().splitlines()[-1])
        j.checked = time.time()

    async def _push_job(self, remote: Remote, j: _Job) -> str:
        """Copy the job's run folder there (a study: and the run it samples from, beside it as
        locally), an earlier attempt's records taken away; the remote folder."""
        runs = posixpath.join(remote.workdir, "runs")
        folder = posixpath.join(runs, j.rel)
        await self._push(remote, j.job.run_dir, folder, everything=True)
        spec = Run(j.job.run_dir).spec()
        if isinstance(spec, StudySpec):
            await self._push(remote, self.runs_dir / spec.run, posixpath.join(runs, spec.run),
                             only=("config.toml", "checkpoint.pt", "worker.json", "exit.json"))
        await remote.run(f"cd {shlex.quote(folder)} && rm -f exit.json worker.json")
        return folder

    async def _push(self, remote: Remote, local: Path, folder: str, everything: bool = False,
                    only: tuple = ()) -> None:
        """Make the remote folder a copy of the local one (or of its files ``only``, e.g. a
        study's run: its settings, model and the records that say it finished): files that
        differ are copied; with ``everything``, remote files the local folder lacks (an earlier
        attempt's) are removed, but for the worker's own records."""
        there = await remote.listing(folder)
        here = {p.relative_to(local).as_posix(): p for p in sorted(local.rglob("*"))
                if p.is_file() and not any(part.startswith(".") for part in
                                           p.relative_to(local).parts)}
        for rel, path in here.items():
            if rel not in only if only else rel in NOT_PUSHED:
                continue
            if rel in there and same_file(path, there[rel]):
                continue
            await remote.put(path, posixpath.join(folder, rel))
        if everything:
            for rel in there:
                if rel not in here and rel not in KEPT_REMOTELY:
                    await remote.sftp.remove(posixpath.join(folder, rel))
            await remote.sftp.makedirs(folder, exist_ok=True)

    async def _mirror(self, remote: Remote, j: _Job) -> bool:
        """Bring the remote folder's news here; send a pending signal; True once the worker is
        gone and everything it wrote is here."""
        folder = posixpath.join(remote.workdir, "runs", j.rel)
        local = j.job.run_dir
        if j.signal and j.pid:
            await remote.run(f"kill -{j.signal} {int(j.pid)}", check=False)
            j.signal = ""
        files = await self._pull(remote, j)
        if "exit.json" in files:
            return True
        if time.time() - j.checked >= LIVE_EVERY or j.state == "lost":
            alive = bool(j.pid) and (await remote.run(
                f"kill -0 {int(j.pid)} 2>/dev/null && echo yes || echo no")).strip() == "yes"
            if not alive and "worker.json" not in files:  # it never got going
                log = (await self._read(remote, folder, "worker.log")).decode(errors="replace")
                last = log.strip().splitlines()[-1:] or ["no output"]
                Run(local).record_failure(self.name, f"{self.name}: the worker exited at once: "
                                          + " ".join(last[0].split()))
                return True
            if not alive:  # died without an exit record: mirror what is left, then say so
                if "events.jsonl" in files:
                    attrs = (await remote.listing(folder)).get("events.jsonl")
                    if attrs is not None:
                        await self._pull_events(remote, folder, local / "events.jsonl",
                                                attrs.size)
                hb = local / "heartbeat"
                if hb.exists():
                    os.utime(hb, (0, 0))  # the local status stops trusting it at once
                return True
            j.checked, j.state = time.time(), "running"
        return False

    async def _pull(self, remote: Remote, j: _Job) -> dict[str, RemoteFile]:
        """Bring the remote run folder's news here: first the worker's record, then every
        event, then the other files and the heartbeat, exit.json last (once every event before
        it is in); the remote listing."""
        folder = posixpath.join(remote.workdir, "runs", j.rel)
        local = j.job.run_dir
        files = await remote.listing(folder)
        if "worker.json" in files and j.seen.get("worker.json") != _key(files["worker.json"]):
            rec = json.loads((await self._read(remote, folder, "worker.json")) or b"{}")
            if rec:
                j.pid = rec.get("pid") or j.pid
                rec["remote_host"], rec["host"] = rec.get("host", ""), self.name
                atomic_write_json(local / "worker.json", rec)
            j.seen["worker.json"] = _key(files["worker.json"])
        if "events.jsonl" in files:
            await self._pull_events(remote, folder, local / "events.jsonl",
                                    files["events.jsonl"].size)
        for rel, attrs in files.items():
            if rel in NOT_PULLED or j.seen.get(rel) == _key(attrs):
                continue
            if rel in j.seen or not same_file(local / rel, attrs):  # (new to us: maybe here)
                await remote.get(posixpath.join(folder, rel), local / rel)
            j.seen[rel] = _key(attrs)
        beat = files.get("heartbeat")
        if beat is not None and beat.mtime != j.beat:
            j.beat = beat.mtime
            Run(local).beat()
        if "exit.json" in files and j.seen.get("exit.json") != _key(files["exit.json"]):
            attrs = (await remote.listing(folder)).get("events.jsonl")
            if attrs is not None:
                await self._pull_events(remote, folder, local / "events.jsonl", attrs.size)
            data = await self._read(remote, folder, "exit.json")
            if data:
                atomic_write_bytes(local / "exit.json", data)
            j.seen["exit.json"] = _key(files["exit.json"])
        return files

    async def _read(self, remote: Remote, folder: str, name: str) -> bytes:
        try:
            async with remote.sftp.open(posixpath.join(folder, name), "rb") as f:
                return await f.read()
        except asyncssh.SFTPNoSuchFile:
            return b""

    async def _pull_events(self, remote: Remote, folder: str, local: Path, size: int) -> None:
        """Append the remote events.jsonl's complete lines past the local file's end."""
        have = local.stat().st_size if local.exists() else 0
        if size <= have:
            return
        async with remote.sftp.open(posixpath.join(folder, "events.jsonl"), "rb") as f:
            data = await f.read(size - have, have)
        cut = data.rfind(b"\n") + 1
        if cut:
            with open(local, "ab") as out:
                out.write(data[:cut])
                out.flush()
                os.fsync(out.fileno())


def _key(attrs: RemoteFile) -> tuple:
    return attrs.size, attrs.mtime


# --- diffui hosts check / install -----------------------------------------------------------

# Run by the host's python with the remote workdir as argument; prints one JSON object. Plain
# Python only: it must say what is missing on a host that lacks diffui or torch.
PROBE = r"""
import json, os, platform, shutil, sys
out = {"python": platform.python_version(), "diffui": "", "problem": "", "torch": "",
       "cuda": "", "data": {}}
try:
    from importlib.metadata import version
    out["diffui"] = version("diffui")
except Exception:
    pass
try:
    import engine.jobs.worker
except Exception as e:
    out["problem"] = "diffui: " + " ".join(f"{type(e).__name__}: {e}".split())
try:
    import submitit
    out["submitit"] = submitit.__version__
except Exception:
    out["submitit"] = ""
try:
    import torch
    out["torch"] = torch.__version__
    out["cuda"] = (torch.version.cuda or "") if torch.cuda.is_available() else ""
    out["cuda_devices"] = torch.cuda.device_count() if torch.cuda.is_available() else 0
except Exception as e:
    out["problem"] = out["problem"] or "torch: " + " ".join(f"{type(e).__name__}: {e}".split())
work = sys.argv[1]
p = work
while not os.path.isdir(p):
    p = os.path.dirname(p) or "/"
out["free"] = shutil.disk_usage(p).free
for name, folder in (("mnist", "mnist"), ("fashion_mnist", "fashion-mnist")):
    d = os.path.join(work, "data", folder)
    names = os.listdir(d) if os.path.isdir(d) else []
    out["data"][name] = [s for s, pre in (("train", "train"), ("test", "t10k"))
                         if any(n.startswith(pre + "-images-idx3-ubyte") for n in names)
                         and any(n.startswith(pre + "-labels-idx1-ubyte") for n in names)]
print(json.dumps(out))
"""
GPU_QUERY = ("nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader "
             "2>/dev/null || true")


def local_version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("diffui")
    except PackageNotFoundError:
        return "unknown"


async def probe(remote: Remote) -> dict:
    """What the host has: python, diffui, torch and CUDA, GPUs, free disk, datasets."""
    q = shlex.quote
    r = await remote.run_full(f"{q(remote.python)} -c {q(PROBE)} {q(remote.workdir)}")
    if r.exit_status != 0:
        lines = (r.stderr or r.stdout or "").strip().splitlines()
        why = lines[-1] if lines else f"exit status {r.exit_status}"
        return {"problem": f"{remote.spec.python}: {why}", "python": "", "diffui": "",
                "torch": "", "cuda": "", "data": {}}
    info = json.loads(r.stdout.strip().splitlines()[-1])
    gpus = (await remote.run(GPU_QUERY, check=False)).strip().splitlines()
    info["gpus"] = [g.strip() for g in gpus if g.strip()]
    return info


async def _check(name: str, spec: HostSpec) -> dict:
    try:
        remote = await Remote(name, spec).open()
    except HostError as e:
        return {"host": name, "reachable": False, "problem": str(e)}
    try:
        info = await probe(remote)
        if spec.kind == "slurm":  # a cluster's login node: the GPUs are Slurm's
            r = await remote.run_full("sbatch --version")
            info["slurm"] = (r.stdout or "").strip() or "sbatch missing"
            if r.exit_status != 0:
                info["problem"] = info["problem"] or f"{name}: sbatch cannot run there " \
                    "(is this the cluster's login node?)"
            elif not info.get("submitit") and not info["problem"]:
                info["problem"] = f"{name}: {spec.python} lacks submitit: install diffui " \
                    f"with: diffui hosts install {name}"
        return {"host": name, "reachable": True, **info}
    except (asyncssh.Error, OSError, ValueError) as e:
        return {"host": name, "reachable": True, "problem": f"{name}: {e}"}
    finally:
        remote.close()


def check_hosts(hosts: dict[str, HostSpec]) -> list[dict]:
    """``diffui hosts check``: each host's probe (or why it cannot be reached), all at once."""
    async def main():
        return await asyncio.gather(*(_check(n, s) for n, s in hosts.items()))
    return list(asyncio.run(main()))


def build_wheel(out: Path) -> Path:
    """A wheel of this diffui (``pip wheel --no-deps`` of the checkout it runs from)."""
    import subprocess
    import sys
    root = Path(__file__).resolve().parents[3]
    if not (root / "pyproject.toml").is_file():
        raise HostError(f"cannot build a wheel of diffui: {root} has no pyproject.toml "
                        "(install diffui on the host from the same source as here)")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                        "-q", "-w", str(out), str(root)], capture_output=True, text=True)
    wheels = sorted(out.glob("diffui-*.whl"))
    if r.returncode != 0 or not wheels:
        lines = (r.stderr or r.stdout).strip().splitlines()
        raise HostError(f"pip wheel {root} failed: {lines[-1] if lines else r.returncode}")
    return wheels[-1]


def install(name: str, spec: HostSpec, wheel: Path, log=print) -> None:
    """``diffui hosts install``: the wheel into the host's python (its dependencies from the
    host's package index when missing), then the datasets the host lacks into its workdir."""
    from engine.data import datasets as data

    async def main():
        remote = await Remote(name, spec).open()
        q = shlex.quote
        try:
            where = posixpath.join(remote.workdir, "wheels", wheel.name)
            await remote.put(wheel, where)
            log(f"{name}: copied {wheel.name}; pip install into {spec.python}")
            py = q(remote.python)
            await remote.run(f"{py} -m pip install -q {q(where)} && "  # and what it needs
                             f"{py} -m pip install -q --force-reinstall --no-deps {q(where)}")
            info = await probe(remote)
            if info["problem"]:
                raise HostError(f"{name}: installed, but {info['problem']}")
            log(f"{name}: diffui {info['diffui']} installed (python {info['python']}, "
                f"torch {info['torch'] or '-'})")
            for ds in data.DATASETS:
                for split in data.SPLITS:
                    if split in info["data"].get(ds, []):
                        continue
                    pair = data.idx_files(ds, split)
                    if pair is None:
                        log(f"{name}: {ds} {split}: not here either; not copied")
                        continue
                    folder = posixpath.join(remote.workdir, "data",
                                            data.dataset_folder(ds).name)
                    for f in pair:
                        await remote.put(f.resolve(), posixpath.join(folder, f.name))
                    log(f"{name}: {ds} {split}: copied {pair[0].name}, {pair[1].name} "
                        f"into {folder}")
        finally:
            remote.close()
    try:
        asyncio.run(main())
    except (asyncssh.Error, OSError) as e:
        raise HostError(f"{name}: {' '.join(str(e).split())}") from None
