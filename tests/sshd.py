"""A real OpenSSH server on 127.0.0.1 for the SSH tests, started by the test session itself.

The session generates a host key and a client key (ssh-keygen), writes an sshd config with
``StrictModes no`` and an AuthorizedKeysFile in the session's tmp folder, and runs
``/usr/sbin/sshd -D -e -f CONFIG`` on a free port. The client side is a temporary HOME (set in
``os.environ`` for the session, so the queue services the tests spawn inherit it) holding
``.ssh/config`` (the alias ``testhost``), the client key and ``known_hosts``. The "remote"
python is a wrapper around this test's own interpreter that puts this checkout first on
PYTHONPATH (sshd gives its sessions a clean environment).
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import wait_for

SSHD = "/usr/sbin/sshd"
ROOT = Path(__file__).resolve().parents[1]
ALIAS = "testhost"


@dataclass
class Server:
    port: int
    proc: subprocess.Popen
    home: Path  # the client's HOME
    folder: Path
    python: Path  # the "remote" interpreter (a wrapper; each call logged in calls.log)
    host_pub: str  # "ssh-ed25519 AAAA..." of the server

    def connections(self) -> list[int]:
        """The pids of the sshd processes serving connections now (children of the listener)."""
        out = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.proc.pid:
                out.append(int(stat.parent.name))
        return out

    def cut(self) -> int:
        """Kill every connection's sshd (the clients see their connection drop)."""
        pids = self.connections()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return len(pids)

    def table(self, workdir: Path, **extra) -> str:
        """A [hosts.gpu1] table for this server (address: the ~/.ssh/config alias)."""
        lines = [
            "[hosts.gpu1]",
            f'address = "{ALIAS}"',
            f'python = "{self.python}"',
            f'workdir = "{workdir}"',
        ]
        lines += [
            f"{k} = {v!r}".replace("'", '"') if isinstance(v, str) else f"{k} = {v}"
            for k, v in extra.items()
        ]
        return "\n".join(lines) + "\n"


def _keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "diffui-test", "-f", str(path)],
        check=True,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(folder: Path, env: dict | None = None, sftp: bool = True) -> Server:
    home = folder / "home"
    (home / ".ssh").mkdir(parents=True)
    _keygen(folder / "host_key")
    _keygen(home / ".ssh" / "id_ed25519")
    shutil.copy(home / ".ssh" / "id_ed25519.pub", folder / "authorized_keys")
    port = free_port()
    (folder / "sshd_config").write_text(
        f"""\
Port {port}
ListenAddress 127.0.0.1
HostKey {folder / "host_key"}
PidFile {folder / "sshd.pid"}
AuthorizedKeysFile {folder / "authorized_keys"}
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin prohibit-password
MaxStartups 50
MaxSessions 50
LogLevel VERBOSE
"""
        + ("Subsystem sftp internal-sftp\n" if sftp else "")
        + "".join(f"SetEnv {k}={v}\n" for k, v in (env or {}).items())
    )
    host_pub = " ".join((folder / "host_key.pub").read_text().split()[:2])
    (home / ".ssh" / "config").write_text(
        f"Host {ALIAS}\n  HostName 127.0.0.1\n  Port {port}\n  User {getpass.getuser()}\n"
        f"  IdentityFile {home / '.ssh' / 'id_ed25519'}\n"
    )
    (home / ".ssh" / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub}\n")
    python = folder / "python"
    env = {
        "PYTHONPATH": str(ROOT),
        "DIFFUI_FETCH": "0",
        "DIFFUI_CACHE_DIR": os.environ.get("DIFFUI_CACHE_DIR", str(folder / "cache")),
        "DIFFUI_CLASSIFIER_EPOCHS": os.environ.get("DIFFUI_CLASSIFIER_EPOCHS", ""),
    }
    python.write_text(
        "#!/bin/sh\n"
        + "".join(f"export {k}='{v}'\n" for k, v in env.items())
        + f'printf \'%s|%s\\n\' "${{CUDA_VISIBLE_DEVICES-unset}}" "$*" >> '
        f"{folder / 'calls.log'}\n" + f'exec {sys.executable} "$@"\n'
    )
    python.chmod(0o755)
    try:  # sshd wants its privilege separation folder (made by .ci/install's package, as root)
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)
    except PermissionError:
        pass  # sshd says so in sshd.log if it needs it
    log = open(folder / "sshd.log", "ab")
    proc = subprocess.Popen(
        [SSHD, "-D", "-e", "-f", str(folder / "sshd_config")],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )

    def listening() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return proc.poll() is not None  # sshd exited: said below

    wait_for(
        listening,
        30,
        why=lambda: "sshd did not start: " + (folder / "sshd.log").read_text()[-2000:],
    )
    if proc.poll() is not None:
        raise RuntimeError("sshd did not start: " + (folder / "sshd.log").read_text()[-2000:])
    return Server(port, proc, home, folder, python, host_pub)


@contextmanager
def serving(folder: Path, env: dict | None = None, sftp: bool = True):
    """A server (its sessions get ``env``; without an SFTP subsystem unless ``sftp``), with HOME
    pointing at its client side meanwhile."""
    server = start_server(folder, env, sftp)
    old = {k: os.environ.get(k) for k in ("HOME", "SSH_AUTH_SOCK")}
    os.environ["HOME"] = str(server.home)
    os.environ.pop("SSH_AUTH_SOCK", None)
    try:
        yield server
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.proc.terminate()
        try:
            server.proc.wait(10)
        except subprocess.TimeoutExpired:
            server.proc.kill()


@pytest.fixture(scope="session", name="sshd")
def sshd_fixture(tmp_path_factory):
    """The server, with HOME pointing at its client side for the whole session."""
    with serving(tmp_path_factory.mktemp("sshd")) as server:
        yield server
