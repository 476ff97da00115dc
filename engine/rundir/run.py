"""The run directory: the single source of truth about a run.

    <run>/config.toml      the resolved settings (written once, before the worker starts)
    <run>/events.jsonl     append-only events, one JSON object per line (engine/rundir/events.py)
    <run>/worker.json      pid, host and start time of the latest worker (its "attempt")
    <run>/heartbeat        touched every few seconds by a live worker
    <run>/exit.json        the exit record of an attempt: status finished | failed | stopped
    <run>/checkpoint.pt    the last completed epoch (written atomically)
    <run>/checkpoint.prev.pt   the one before (a damaged checkpoint.pt falls back to it)
    <run>/samples/         epoch-NNNN.png / .npy grids, final.png / .npy
    <run>/figures/         *.npy images of the report's process figures (engine.jobs.figures)
    <run>/worker.log       the worker's stdout and stderr
    <run>/.worker.lock     held (flock) by the live worker: a second worker of the run refuses

Status is derived when read, never stored: a worker that was killed leaves no exit record, its
pid is gone (or its heartbeat is stale), so it reads as resumable (or failed when it had not yet
written a checkpoint; a study resumes at its first value not finished) — never as running.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISREG

from engine.errors import UserError
from engine.files import atomic_write_json, atomic_write_text, write_error
from engine.rundir.events import Event, read_events
from engine.spec.checks import toml_text
from engine.spec.names import STUDIES
from engine.spec.specs import RunSpec, StudySpec, spec_from_toml, spec_to_toml
from engine.text import json_kind, one_line

HEARTBEAT_EVERY = 5.0  # seconds between heartbeats of a live worker
HEARTBEAT_STALE = 60.0  # a remote worker silent this long is taken for dead
# "damaged": a file of the run folder that diffui wrote cannot be read (the detail names it);
# nothing starts the run until it is fixed or removed, and nothing in it is changed
STATES = ("pending", "running", "finished", "resumable", "failed", "damaged")
EXIT_STATUSES = ("finished", "failed", "stopped")
# the worker's exit code for each status of its exit record, and for a run another worker holds
EXIT_CODES = {"finished": 0, "failed": 1, "stopped": 3}
EXIT_BUSY = 4


class RunError(Exception):
    """A run cannot go on, for a reason ``str()`` tells in one line (no exception name needed
    in an exit record or a message)."""


class DamagedRun(RunError, UserError):
    """A file of a run folder cannot be read as what diffui wrote there; ``str()`` names it
    (``path``) and says what is wrong (``why``). A :class:`UserError` too: a command that
    meets one exits 2 with that line."""

    def __init__(self, path: Path, why: str):
        super().__init__(f"{path}: {why}")
        self.path, self.why = Path(path), why


# --- the run directory ----------------------------------------------------------------------------


@dataclass
class RunStatus:
    state: str  # one of STATES
    detail: str = ""
    pid: int | None = None
    host: str = ""


STUDIES_DIR = STUDIES  # RUNS/studies/NAME: the folders of sampling studies


class Run:
    """A run folder, or a study folder (the same files; its config.toml holds a StudySpec).
    ``name`` is how the queue and the front ends call it: the folder's name for a run,
    ``studies/NAME`` for a study."""

    def __init__(self, path: str | Path, name: str | None = None):
        self.path = Path(path)
        self._name = name

    name = property(lambda self: self._name or self.path.name)
    config_path = property(lambda self: self.path / "config.toml")
    events_path = property(lambda self: self.path / "events.jsonl")
    checkpoint_path = property(lambda self: self.path / "checkpoint.pt")
    samples_dir = property(lambda self: self.path / "samples")
    worker_path = property(lambda self: self.path / "worker.json")
    heartbeat_path = property(lambda self: self.path / "heartbeat")
    exit_path = property(lambda self: self.path / "exit.json")
    log_path = property(lambda self: self.path / "worker.log")

    previous_checkpoint_path = property(lambda self: self.path / "checkpoint.prev.pt")

    @classmethod
    def create(cls, path: Path, spec: RunSpec) -> Run:
        """A new run folder holding ``spec``; when it cannot be written, no folder is left."""
        run = cls(path)
        new = not run.path.exists()
        try:
            run.path.mkdir(parents=True, exist_ok=True)
            atomic_write_text(run.config_path, spec_to_toml(spec))
        except OSError as e:
            if new:
                try:
                    run.path.rmdir()
                except OSError:
                    pass
            raise write_error(e, e.filename or run.path) from None
        return run

    def exists(self) -> bool:
        return self.config_path.is_file()

    def spec(self) -> RunSpec | StudySpec:
        """The settings of config.toml; :class:`DamagedRun` when it is not what diffui wrote."""
        try:
            text = read_file(self.config_path, RECORD_LIMIT).decode("utf-8")
        except UnicodeDecodeError:
            raise DamagedRun(self.config_path, "damaged (not UTF-8 text)") from None
        except NotAFile as e:
            raise DamagedRun(self.config_path, f"damaged ({e.why})") from None
        try:
            return spec_from_toml(text)
        except ValueError as e:  # tomllib.TOMLDecodeError, or a value of the wrong kind
            raise DamagedRun(self.config_path, f"damaged (not TOML: {one_line(e)})") from None
        except (KeyError, TypeError, AttributeError) as e:
            what = f"no {e}" if isinstance(e, KeyError) else one_line(e)
            raise DamagedRun(self.config_path, f"damaged (not a run's settings: {what})") from None

    def study_spec(self) -> StudySpec:
        """The settings of a study folder (:meth:`spec`); :class:`DamagedRun` when config.toml
        holds a run's."""
        spec = self.spec()
        if not isinstance(spec, StudySpec):
            raise DamagedRun(self.config_path, "not a study's settings (a run's)")
        return spec

    def damage(self) -> str:
        """What is damaged in config.toml, in one line ("" when it reads well, or is missing).
        Remembered while the file is unchanged (status is read often)."""
        try:
            st = self.config_path.stat()
        except FileNotFoundError:
            return ""
        key = (st.st_mtime_ns, st.st_size, st.st_ino)
        if getattr(self, "_damage", (None, ""))[0] != key:
            try:
                self._study = isinstance(self.spec(), StudySpec)
                found = ""
            except DamagedRun as e:
                found = f"{e.path.name}: {e.why}"
            self._damage = (key, found)
        return self._damage[1]

    def _events_damage(self) -> str:
        """What is wrong with the path of events.jsonl ("" when it is a file, or none): a FIFO
        or a folder there is no log a worker can append to."""
        try:
            if S_ISREG(self.events_path.stat().st_mode):
                return ""
        except OSError:
            return ""  # none (a reader says what else is wrong, if anything)
        return f"{self.events_path.name}: damaged (not a file)"

    def events(self) -> list[Event]:
        return read_events(self.events_path)

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
        atomic_write_json(
            self.exit_path,
            {
                "status": status,
                "error": error,
                "pid": attempt["pid"],
                "started": attempt["started"],
                "time": time.time(),
            },
        )

    def record_failure(self, host: str, error: str) -> None:
        """An attempt that never got a worker (a host down, a refused key): the run reads as
        failed with ``error``, and a retry starts it again."""
        attempt = {"pid": 0, "host": host, "started": time.time()}  # 0: no process
        self.end_attempt(attempt, "failed", error)  # (first: see status())
        atomic_write_json(self.worker_path, attempt)

    # -- derived status --
    def status(self) -> RunStatus:
        damage = self.damage() or self._events_damage()
        if damage:
            return RunStatus("damaged", damage)
        worker, damage = _read_record(self.worker_path, WORKER_RECORD)
        if damage:
            return RunStatus("damaged", damage)
        if worker is None:
            return RunStatus("pending")
        pid, host = worker.get("pid"), worker.get("host", "")
        exit_rec, damage = _read_record(self.exit_path, EXIT_RECORD)
        if damage:
            return RunStatus("damaged", damage, pid, host)
        # the exit record of this attempt; or that of a newer attempt without a process,
        # whose worker record (written after it by record_failure) is on its way
        if exit_rec and (
            exit_rec.get("started") == worker.get("started")
            or (exit_rec.get("pid") == 0 and exit_rec["started"] > worker["started"])
        ):
            st = exit_rec.get("status")
            if st == "finished":
                return RunStatus("finished", pid=pid, host=host)
            if st == "stopped":  # resumes from its checkpoint, or starts again without one
                return RunStatus("resumable", "stopped", pid=pid, host=host)
            return RunStatus("failed", exit_rec.get("error", "") or "worker failed", pid, host)
        if self._alive(pid, host):
            return RunStatus("running", pid=pid, host=host)
        return RunStatus(
            self._unfinished(), f"worker {pid} on {host} died without an exit record", pid, host
        )

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
        """The state of a run whose worker died without an exit record: resumable from its
        checkpoint (failed without one); a study always resumes, at its first value not
        finished (the model it samples is its run's)."""
        if getattr(self, "_study", False) or self.checkpoint_path.exists():
            return "resumable"
        return "failed"

    def _alive(self, pid: int | None, host: str) -> bool:
        if host == socket.gethostname() and pid:
            return pid_running(pid, self.path)
        try:  # another host: trust a fresh heartbeat (a mirrored run updates it as it goes)
            return time.time() - self.heartbeat_path.stat().st_mtime < HEARTBEAT_STALE
        except FileNotFoundError:
            return False


class NotAFile(OSError):
    """A path where diffui keeps a file holds something else (a FIFO, a device, a folder), or
    a file far larger than any diffui writes there; ``why`` says which, in words."""

    def __init__(self, path: Path, why: str = "not a file"):
        super().__init__(f"{path}: {why}")
        self.why = why


RECORD_LIMIT = 1 << 20  # bytes: config.toml, worker.json, exit.json are a few hundred


def read_file(path: Path, limit: int | None = None) -> bytes:
    """The bytes of the file ``path`` (FileNotFoundError when there is none); :class:`NotAFile`
    when it is no regular file, instead of waiting forever on a FIFO or reading a device, or
    when it holds more than ``limit`` bytes (only ``limit`` + 1 are read)."""
    with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as f:
        if not S_ISREG(os.fstat(f.fileno()).st_mode):
            raise NotAFile(path)
        data = f.read() if limit is None else f.read(limit + 1)
    if limit is not None and len(data) > limit:
        raise NotAFile(path, f"larger than {limit:,} bytes")
    return data


def pid_running(pid: object, run_path: Path) -> bool:
    """True when ``pid`` is a live worker of this run (``python -m engine.jobs.worker RUN``),
    not a pid reused by another program nor the worker of another folder."""
    return runs_module(pid, WORKER_MODULE, run_path)


WORKER_MODULE = "engine.jobs.worker"  # the worker process: python -m engine.jobs.worker RUN_DIR


def runs_module(pid: object, module: str, folder: Path) -> bool:
    """Whether ``pid`` (an integer > 0; anything else never is) is a live process of this
    machine started as ``python -m module FOLDER`` with ``folder`` as its argument (the same
    folder, once both paths are resolved): how diffui knows its own processes again by a pid
    read from a file, whatever reused that pid since. Without /proc (not Linux): whether it
    lives."""
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        return False  # 0, -1: os.kill would signal a process group, or every process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    except OverflowError:
        return False
    if not Path("/proc/self/cmdline").exists():
        return True  # no /proc: trust the signal check
    proc = Path(f"/proc/{pid}")
    try:
        args = (proc / "cmdline").read_bytes().split(b"\0")
        stat = (proc / "stat").read_text()
        cwd = os.readlink(proc / "cwd")
    except OSError:  # gone meanwhile, or another user's: not ours
        return False
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":  # a zombie has exited
        return False
    arg = _module_argument([os.fsdecode(a) for a in args], module)
    return arg is not None and _same_path(os.path.join(cwd, arg), folder)


def _module_argument(args: list[str], module: str) -> str | None:
    """The first argument after ``-m module`` in a command line, or None."""
    for i, a in enumerate(args[:-2]):
        if a == "-m" and args[i + 1] == module and args[i + 2]:
            return args[i + 2]
    return None


def _same_path(a: str, b: str | Path) -> bool:
    try:
        return os.path.realpath(a) == os.path.realpath(b)
    except (OSError, ValueError):
        return False


# the fields a worker record must have, and their JSON types
WORKER_RECORD: dict[str, tuple[type, ...]] = {
    "pid": (int,),
    "host": (str,),
    "started": (int, float),
}
EXIT_RECORD: dict[str, tuple[type, ...]] = {"status": (str,), "started": (int, float)}


def _read_record(path: Path, fields: dict[str, tuple[type, ...]]) -> tuple[dict | None, str]:
    """(the JSON object of ``path`` or None when there is none, what is wrong with it in one
    line naming the file, or "")."""
    try:
        text = read_file(path, RECORD_LIMIT).decode("utf-8")
    except FileNotFoundError:
        return None, ""
    except UnicodeDecodeError:
        return None, f"{path.name}: damaged (not UTF-8 text)"
    except NotAFile as e:
        return None, f"{path.name}: damaged ({e.why})"
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as e:
        return None, f"{path.name}: damaged (not JSON: {one_line(e)[:100]})"
    if not isinstance(obj, dict):
        return None, f"{path.name}: damaged (expected a JSON object, got {json_kind(obj)})"
    for name, types in fields.items():
        v = obj.get(name)
        if isinstance(v, bool) or not isinstance(v, types):
            return None, (
                f"{path.name}: damaged ({name} = {json.dumps(v)[:30]}, expected "
                f"{json_kind(types[0]())})"
            )
        if isinstance(v, float) and not math.isfinite(v):  # NaN, Infinity: no time
            return None, f"{path.name}: damaged ({name} = {v}, expected a finite number)"
    if fields is WORKER_RECORD and obj["pid"] < 0:  # (0: an attempt without a process)
        return (
            None,
            f"{path.name}: damaged (pid = {str(obj['pid'])[:30]}, expected a process id >= 0)",
        )
    if fields is EXIT_RECORD and obj["status"] not in EXIT_STATUSES:
        return None, (
            f"{path.name}: damaged (status = {json.dumps(obj['status'])[:30]}, "
            f"expected one of {', '.join(EXIT_STATUSES)})"
        )
    return obj, ""


def iter_runs(runs_dir: Path, studies: bool = False) -> Iterator[Run]:
    """Every run folder directly below ``runs_dir``, by name; with ``studies``, then every
    study folder of ``runs_dir/studies``."""
    if not Path(runs_dir).is_dir():
        return
    for p in sorted(Path(runs_dir).iterdir()):
        if (p / "config.toml").is_file():
            yield Run(p)
    if studies and (Path(runs_dir) / STUDIES_DIR).is_dir():
        for p in sorted((Path(runs_dir) / STUDIES_DIR).iterdir()):
            if (p / "config.toml").is_file():
                yield Run(p, f"{STUDIES_DIR}/{p.name}")


def study_run(runs_dir: Path, name: str) -> Run:
    """The folder of study ``name`` in ``runs_dir``."""
    return Run(Path(runs_dir) / STUDIES_DIR / name, f"{STUDIES_DIR}/{name}")


def is_study(name: str) -> bool:
    """Whether a name of the queue is a sampling study's (``studies/NAME``)."""
    return name.startswith(f"{STUDIES_DIR}/")


# --- sampling studies and the runs they sample from -----------------------------------------------


def can_sample(state: str) -> bool:
    """Whether a study can sample from a run in ``state``: a study needs a finished run (its
    final model). The study job, batch mode, ``diffui study`` and the UI all ask this."""
    return state == "finished"


def source_run(runs_dir: Path, spec: StudySpec) -> Run:
    """The folder of the run study ``spec`` samples from (in ``runs_dir``, beside
    ``studies/``)."""
    return Run(Path(runs_dir) / spec.run)


def source_state(runs_dir: Path, spec: StudySpec, missing: str = "not made yet") -> str:
    """The state of the run study ``spec`` samples from, read from its folder (``missing``
    when it has none); :func:`can_sample` says whether the study can start."""
    source = source_run(runs_dir, spec)
    return source.status().state if source.exists() else missing


# --- making run folders ---------------------------------------------------------------------------


def prepare_runs(specs: list, runs_dir: Path) -> list[Run]:
    """The run folder of every spec (a StudySpec's in ``runs_dir/studies``), created when new,
    after :func:`check_runs` has found nothing wrong with any of them (so a refusal writes
    nothing)."""
    return create_runs(specs, check_runs(specs, runs_dir))


def create_runs(specs: list, runs: list[Run]) -> list[Run]:
    """Make the folders of ``runs`` (from :func:`check_runs`) that do not exist yet."""
    for spec, run in zip(specs, runs):
        if not run.exists():
            Run.create(run.path, spec)
    return runs


def check_runs(specs: list, runs_dir: Path) -> list[Run]:
    """The run folders of ``specs``, made by nothing: a :class:`UserError` when one already
    holds a run with other settings (resuming it would mix two studies; nothing in it is
    touched), or when a folder's place is taken by a file. (Whether a run's inputs can be
    loaded is :func:`engine.usecases.check_inputs`: the run folder knows no datasets.)"""
    runs = []
    for spec in specs:
        run = (
            study_run(runs_dir, spec.name)
            if isinstance(spec, StudySpec)
            else Run(Path(runs_dir) / spec.name)
        )
        if run.exists():
            try:
                old = run.spec().to_dict()
            except (ValueError, KeyError, TypeError) as e:  # tomllib's errors are ValueErrors
                raise UserError(
                    f"{run.config_path}: not a run's settings ({e}); "
                    "use --runs-dir for a separate set of runs, or remove that "
                    "folder"
                ) from None
            diff = _first_difference(old, spec.to_dict())
            if diff:
                raise UserError(
                    f"{run.path}: holds a run with other settings ({diff}); "
                    "use --runs-dir for a separate set of runs, or remove that folder"
                )
        elif run.path.exists() and not run.path.is_dir():
            raise UserError(
                f"{run.path}: a file is where the folder of run {spec.name} goes; "
                "move it away or use --runs-dir"
            )
        runs.append(run)
    return runs


def _first_difference(old: dict, new: dict, prefix: str = "") -> str:
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            d = _first_difference(a, b, f"{prefix}{key}.")
            if d:
                return d
        elif a != b and key != "profile":
            return f"{prefix}{key} is {toml_text(a)} there, {toml_text(b)} here"
    return ""
