"""A connection to a host over SSH (:class:`Remote`), as the SSH and Slurm executors and
``diffui hosts`` use it: asyncssh, with the user's keys and agent, ``~/.ssh/config`` (aliases,
ProxyJump) and ``~/.ssh/known_hosts``. An unknown or changed host key is refused with its
fingerprint and what to do; every failure is a :class:`HostError` of one line."""

from __future__ import annotations

import asyncio
import os
import posixpath
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from engine.spec.names import SAFE_NAME
from engine.spec.sections import HostSpec
from engine.text import one_line

CONNECT_TIMEOUT = 15.0


class HostError(Exception):
    """The host cannot be used; ``str()`` is one line for the user (``gpu1: ...``)."""


def failure_line(e: BaseException, what: str) -> str:
    """Why a host failed a job, in one line: a :class:`HostError` says it itself; anything else
    is ``what: the error`` (its name when it says nothing)."""
    return str(e) if isinstance(e, HostError) else f"{what}: {one_line(e) or type(e).__name__}"


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
        await asyncio.wait_for(
            asyncssh.connect(**_target(spec), known_hosts=record), CONNECT_TIMEOUT
        )
    except (TimeoutError, OSError, asyncssh.Error):
        pass
    host, port = seen.get("host", spec.address), seen.get("port", spec.port)
    try:
        key = await asyncio.wait_for(asyncssh.get_server_host_key(host, port), CONNECT_TIMEOUT)
    except (TimeoutError, OSError, asyncssh.Error):
        key = None
    shown = f"{key.get_algorithm()} {key.get_fingerprint()}" if key else "fingerprint unknown"
    entry = host if port == 22 else f"[{host}]:{port}"
    port_option = f" -p {port}" if port != 22 else ""
    scan = f"ssh-keyscan{port_option} {host} >> ~/.ssh/known_hosts"
    if seen.get("trusted"):
        return (
            f"{name}: the host key of {spec.address} has CHANGED (now {shown}); refused: "
            f"if the host was reinstalled, check the fingerprint with its owner, then "
            f"ssh-keygen -R '{entry}' and {scan}"
        )
    return (
        f"{name}: the host key of {spec.address} is unknown ({shown}); refused: check the "
        f"fingerprint with the host's owner, then add it ({scan}, or connect once with ssh)"
    )


async def connect(name: str, spec: HostSpec) -> asyncssh.SSHClientConnection:
    """A connection to the host, or a :class:`HostError` saying in one line why not."""
    try:
        return await asyncio.wait_for(asyncssh.connect(**_target(spec)), CONNECT_TIMEOUT)
    except asyncssh.HostKeyNotVerifiable:
        raise HostError(await _host_key_problem(name, spec)) from None
    except asyncssh.PermissionDenied as e:
        raise HostError(
            f"{name}: {_where(spec)} refused our keys ({e.reason}): add your public "
            "key to the host's ~/.ssh/authorized_keys, or load it into your "
            "SSH agent"
        ) from None
    except TimeoutError:
        raise HostError(
            f"{name}: cannot reach {_where(spec)}: no answer within {CONNECT_TIMEOUT:.0f} s"
        ) from None
    except (OSError, asyncssh.Error) as e:
        errno = getattr(e, "errno", None)
        reason = (
            getattr(e, "reason", "")
            or (os.strerror(errno) if isinstance(errno, int) else "")
            or str(e)
        )
        raise HostError(
            f"{name}: cannot connect to {_where(spec)}: " + " ".join(str(reason).split())
        ) from None


class Remote:
    """One connection to a host with its SFTP session and the remote paths diffui uses."""

    def __init__(self, name: str, spec: HostSpec):
        self.name, self.spec = name, spec
        self._conn: asyncssh.SSHClientConnection | None = None
        self._sftp: asyncssh.SFTPClient | None = None
        self.home = ""
        self.checked = False  # whether the remote python runs diffui's worker

    async def open(self) -> Remote:
        self._conn = await connect(self.name, self.spec)
        try:
            self.home = (await self.run('printf %s "$HOME"')).strip()
            try:
                self._sftp = await self._conn.start_sftp_client()
            except asyncssh.ChannelOpenError as e:
                raise HostError(
                    f"{self.name}: {_where(self.spec)} offers no SFTP ({e.reason}), which diffui "
                    "copies run folders with: add 'Subsystem sftp internal-sftp' to the host's "
                    "sshd_config and reload sshd"
                ) from None
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = self._sftp = None

    @property
    def closed(self) -> bool:
        return self._conn is None or self._conn.is_closed()

    @property
    def conn(self) -> asyncssh.SSHClientConnection:
        if self._conn is None:
            raise HostError(f"{self.name}: the connection is closed")
        return self._conn

    @property
    def sftp(self) -> asyncssh.SFTPClient:
        if self._sftp is None:
            raise HostError(f"{self.name}: the connection is closed")
        return self._sftp

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
        r = await self.run_full(command, input=input)
        if check and r.exit_status != 0:
            err = (r.stderr or r.stdout).strip().splitlines()
            raise HostError(f"{self.name}: {err[-1] if err else f'exit status {r.exit_status}'}")
        return r.stdout

    async def run_streamed(self, command: str, line: Callable[[str], None]) -> None:
        """Run ``command``, each line of its output (stdout and stderr) handed to ``line`` as it
        comes (pip's progress); a :class:`HostError` with its last line when it fails."""
        last = ""
        async with self.conn.create_process(
            command, stderr=asyncssh.STDOUT, errors="replace"
        ) as proc:
            async for text in proc.stdout:
                text = " ".join(str(text).split())
                if text:
                    last = text
                    line(text)
            await proc.wait()
        if proc.exit_status != 0:
            raise HostError(f"{self.name}: {last or f'exit status {proc.exit_status}'}")

    async def run_full(self, command: str, input: str | None = None) -> Completed:
        """How ``command`` ended, whatever its exit status."""
        r = await self.conn.run(command, check=False, input=input, errors="replace")
        status = -1 if r.exit_status is None else r.exit_status  # (None: killed by a signal)
        return Completed(status, _text(r.stdout), _text(r.stderr))

    async def check_worker(self) -> None:
        """A :class:`HostError` unless the host's python imports diffui's worker."""
        if self.checked:
            return
        r = await self.run_full(f"{shlex.quote(self.python)} -c 'import engine.jobs.worker'")
        if r.exit_status != 0:
            lines = (r.stderr or r.stdout).strip().splitlines()
            why = lines[-1] if lines else f"exit status {r.exit_status}"
            raise HostError(
                f"{self.name}: {self.spec.python} cannot run diffui ({why}): "
                f"install it with: diffui hosts install {self.name}"
            )
        self.checked = True

    async def listing(self, folder: str, depth: int = 3) -> Listing:
        """Every file under ``folder`` (relative names, '/'-separated; hidden ones left out):
        {} when it is missing. Through find, not SFTP: SFTP's times are whole seconds, so a
        checkpoint rewritten within a second at the same size would look unchanged. Its names
        come NUL-separated (a name may hold tabs and newlines); one whose parts are not safe
        names is left out and kept in ``hostile``; symbolic links are left out and kept in
        ``links`` (nothing is copied through one)."""
        out = Listing()
        text = await self.run(
            f"find {shlex.quote(folder)} -mindepth 1 -maxdepth {int(depth)} "
            "\\( -type f -o -type l \\) -printf '%y\\0%P\\0%s\\0%T@\\0' 2>/dev/null",
            check=False,
        )
        fields = text.split("\0")
        for i in range(0, len(fields) - 3, 4):
            kind, rel, size, mtime = fields[i : i + 4]
            parts = rel.split("/")
            if not rel or any(part.startswith(".") for part in parts):
                continue  # (our own temp files)
            if not safe_rel(rel):
                out.hostile.append(rel)
            elif kind == "l":
                out.links.add(rel)
            elif kind == "f":
                try:
                    out[rel] = RemoteFile(int(size), float(mtime))
                except ValueError:
                    out.hostile.append(rel)
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
class Completed:
    """A command that ran on the host: its exit status and output."""

    exit_status: int
    stdout: str
    stderr: str


def _text(out: object) -> str:
    return out.decode(errors="replace") if isinstance(out, bytes) else str(out or "")


def safe_rel(rel: str) -> bool:
    """Whether ``rel`` is a relative path of safe names (no '', '.', '..', tab or newline): one
    that stays inside the folder it is joined to, on either side."""
    return all(SAFE_NAME.fullmatch(part) for part in rel.split("/"))


def through_link(rel: str, links: set[str]) -> bool:
    """Whether ``rel`` or a folder above it is one of the symbolic links ``links``."""
    parts = rel.split("/")
    return any("/".join(parts[:i]) in links for i in range(1, len(parts) + 1))


def inside(root: Path, rel: str) -> Path | None:
    """``root / rel`` when it stays inside ``root`` once the links of its folders are followed
    (a local copy never lands elsewhere), else None."""
    if not safe_rel(rel):
        return None
    target = root / rel
    try:
        target.parent.resolve().relative_to(root.resolve())
    except ValueError:
        return None
    return target


@dataclass(frozen=True)
class RemoteFile:
    size: int
    mtime: float  # seconds, as finely as the host's filesystem keeps them


class Listing(dict[str, "RemoteFile"]):
    """A remote folder's files (:meth:`Remote.listing`), with the names it left out."""

    def __init__(self) -> None:
        super().__init__()
        self.hostile: list[str] = []  # names that are not safe (never copied nor removed)
        self.links: set[str] = set()  # symbolic links (nothing is copied through them)


def same_file(local: Path, attrs: RemoteFile) -> bool:
    """Whether ``local`` is the copy of a remote file (copies keep its time, in whole seconds)."""
    try:
        st = local.stat()
    except FileNotFoundError:
        return False
    return st.st_size == attrs.size and int(st.st_mtime) == int(attrs.mtime)
