"""The run directory: the single source of truth about a run.

    <run>/config.toml      the resolved settings (written once, before the worker starts)
    <run>/events.jsonl     append-only events, one JSON object per line, flushed per line
    <run>/worker.json      pid, host and start time of the latest worker (its "attempt")
    <run>/heartbeat        touched every few seconds by a live worker
    <run>/exit.json        the exit record of an attempt: status finished | failed | stopped
    <run>/checkpoint.pt    the last completed epoch (written atomically)
    <run>/samples/         epoch-NNNN.png / .npy grids, final.png / .npy
    <run>/figures/         *.npy images of the report's process figures (engine.figures)
    <run>/worker.log       the worker's stdout and stderr

Status is derived when read, never stored: a worker that was killed leaves no exit record, its
pid is gone (or its heartbeat is stale), so it reads as resumable (or failed when it had not yet
written a checkpoint) — never as running.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from .config import RunSpec, spec_from_toml, spec_to_toml

HEARTBEAT_EVERY = 5.0  # seconds between heartbeats of a live worker
HEARTBEAT_STALE = 60.0  # a remote worker silent this long is taken for dead
STATES = ("pending", "running", "finished", "resumable", "failed")


# --- atomic files ------------------------------------------------------------------------

def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file beside ``path``, fsync, rename: readers see old or new, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1) + "\n")


def atomic_save(save_fn, path: Path) -> None:
    """``save_fn(file_object)`` into ``path`` atomically (for torch.save, numpy.save, PIL)."""
    import io
    buf = io.BytesIO()
    save_fn(buf)
    atomic_write_bytes(path, buf.getvalue())


# --- events --------------------------------------------------------------------------------

class EventLog:
    """Appends events to ``events.jsonl``; each line is flushed as it is written."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._f = open(self.path, "a", encoding="utf-8")

    def emit(self, type: str, **fields: Any) -> dict:
        event = {"type": type, "time": round(time.time(), 3), **fields}
        self._f.write(json.dumps(event) + "\n")
        self._f.flush()
        return event

    def close(self) -> None:
        self._f.close()


def read_events(path: Path, offset: int = 0) -> tuple[list[dict], int]:
    """Complete events from byte ``offset`` on, and the offset to continue from. A torn last
    line (no newline yet, or not JSON) is left for the next read."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    events = []
    end = data.rfind(b"\n") + 1
    for line in data[:end].splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue  # a line torn by a crash mid-write, later completed by a newline
    return events, offset + end


# --- the run directory -----------------------------------------------------------------------

@dataclass
class RunStatus:
    state: str  # one of STATES
    detail: str = ""
    pid: int | None = None
    host: str = ""


class Run:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    name = property(lambda self: self.path.name)
    config_path = property(lambda self: self.path / "config.toml")
    events_path = property(lambda self: self.path / "events.jsonl")
    checkpoint_path = property(lambda self: self.path / "checkpoint.pt")
    samples_dir = property(lambda self: self.path / "samples")
    worker_path = property(lambda self: self.path / "worker.json")
    heartbeat_path = property(lambda self: self.path / "heartbeat")
    exit_path = property(lambda self: self.path / "exit.json")
    log_path = property(lambda self: self.path / "worker.log")

    @classmethod
    def create(cls, path: Path, spec: RunSpec) -> "Run":
        run = cls(path)
        run.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run.config_path, spec_to_toml(spec))
        return run

    def exists(self) -> bool:
        return self.config_path.is_file()

    def spec(self) -> RunSpec:
        return spec_from_toml(self.config_path.read_text(encoding="utf-8"))

    def events(self) -> list[dict]:
        return read_events(self.events_path)[0]

    # -- worker bookkeeping (called by the worker itself) --
    def begin_attempt(self) -> dict:
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        atomic_write_json(self.worker_path, info)
        self.exit_path.unlink(missing_ok=True)
        self.beat()
        return info

    def beat(self) -> None:
        self.heartbeat_path.touch()

    def end_attempt(self, attempt: dict, status: str, error: str = "") -> None:
        atomic_write_json(self.exit_path, {"status": status, "error": error,
                                           "started": attempt["started"], "time": time.time()})

    # -- derived status --
    def status(self) -> RunStatus:
        worker = _read_json(self.worker_path)
        if worker is None:
            return RunStatus("pending")
        pid, host = worker.get("pid"), worker.get("host", "")
        exit_rec = _read_json(self.exit_path)
        if exit_rec and exit_rec.get("started") == worker.get("started"):
            st = exit_rec.get("status")
            if st == "finished":
                return RunStatus("finished", pid=pid, host=host)
            if st == "stopped":  # resumes from its checkpoint, or starts again without one
                return RunStatus("resumable", "stopped", pid=pid, host=host)
            return RunStatus("failed", exit_rec.get("error", "") or "worker failed", pid, host)
        if self._alive(pid, host):
            return RunStatus("running", pid=pid, host=host)
        return RunStatus(self._unfinished(), f"worker {pid} on {host} died without an exit record",
                         pid, host)

    def request_stop(self) -> bool:
        """Ask this run's live worker on this machine to stop (SIGTERM): it stops between two
        optimizer steps and stays resumable. False when no such worker runs here."""
        st = self.status()
        if st.state != "running" or st.host != socket.gethostname() or not st.pid:
            return False
        try:
            os.kill(st.pid, signal.SIGTERM)
        except ProcessLookupError:
            return False
        return True

    def _unfinished(self) -> str:
        return "resumable" if self.checkpoint_path.exists() else "failed"

    def _alive(self, pid: int | None, host: str) -> bool:
        if host == socket.gethostname() and pid:
            return pid_running(pid, self.path)
        try:  # another host: trust a fresh heartbeat (a mirrored run updates it as it goes)
            return time.time() - self.heartbeat_path.stat().st_mtime < HEARTBEAT_STALE
        except FileNotFoundError:
            return False


def pid_running(pid: int, run_path: Path) -> bool:
    """True when ``pid`` is a live worker of this run (guards against pid reuse on Linux)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (not Linux): trust the signal check
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":  # a zombie has exited
        return False
    return b"engine.worker" in cmdline and run_path.name.encode() in cmdline


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None


def iter_runs(runs_dir: Path) -> Iterator[Run]:
    """Every run folder directly below ``runs_dir``, by name."""
    if not Path(runs_dir).is_dir():
        return
    for p in sorted(Path(runs_dir).iterdir()):
        if (p / "config.toml").is_file():
            yield Run(p)


def format_seconds(s: float) -> str:
    """1:02:03 or 2:03."""
    m, sec = divmod(int(round(s)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def latest_by_epoch(events: list[dict], type: str) -> dict[int, dict]:
    """The last event of ``type`` for each epoch (a resumed run may repeat an epoch)."""
    out: dict[int, dict] = {}
    for e in events:
        if e.get("type") == type and "epoch" in e:
            out[e["epoch"]] = e
    return dict(sorted(out.items()))
