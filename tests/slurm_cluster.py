"""A real single-node Slurm cluster for the tests, without systemd: munge, a private MariaDB,
slurmdbd, slurmctld and slurmd, every file of theirs in one temporary folder, every port a free
one of 127.0.0.1. :class:`SlurmCluster` starts them in that order (each waits for the one
before), and stops only the processes it started. Slurm's client commands (sbatch, sacct,
scancel...) find this cluster through ``SLURM_CONF`` (:meth:`SlurmCluster.env`).

Needs root and Debian's ``munge slurmctld slurmd slurm-client slurmdbd mariadb-server``
(``.ci/install``). ``python tests/slurm_cluster.py`` brings one up until Ctrl-C, for trying
things by hand. What each configuration line is for: ../shared/notes/slurm.md.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

from conftest import wait_for

PACKAGES = "munge slurmctld slurmd slurm-client slurmdbd mariadb-server"
DAEMONS = ("munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd")


class ClusterError(RuntimeError):
    """The cluster could not be brought up; ``str()`` says which step and shows its log."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SlurmCluster:
    def __init__(self, root: Path | None = None, cpus: int = 8, name: str = "diffuitest"):
        self.root = Path(root or tempfile.mkdtemp(prefix="diffui-slurm-"))
        self.cpus = cpus  # advertised (SlurmdParameters=config_overrides): jobs at once
        self.name = name
        self.host = socket.gethostname().split(".")[0]
        self.pids: dict[str, int] = {}
        self._procs: list[subprocess.Popen] = []
        self.conf = self.root / "etc" / "slurm.conf"

    # -- environment for Slurm's commands --
    def env(self) -> dict[str, str]:
        return {"SLURM_CONF": str(self.conf)}

    def _run(
        self, *cmd: str, check: bool = True, timeout: float = 30
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
            env={**os.environ, **self.env()},
        )

    # -- bringing it up --
    def start(self, timeout: float = 60.0) -> SlurmCluster:
        missing = [
            d
            for d in DAEMONS + ("setpriv", "mariadb-install-db", "sacctmgr")
            if not shutil.which(d, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
        ]
        if missing:
            raise ClusterError(
                f"missing {', '.join(missing)}: apt-get install "
                f"--no-install-recommends {PACKAGES} (see .ci/install)"
            )
        if os.geteuid() != 0:
            raise ClusterError("a test Slurm cluster needs root (munged runs as the munge user)")
        try:
            self._start_munge()
            self._start_mariadb(timeout)
            self._write_configs()
            self._start_daemon(
                "slurmdbd",
                ["slurmdbd", "-D"],
                lambda: self._run("sacctmgr", "-n", "list", "cluster", check=False).returncode == 0,
                timeout,
            )
            self._start_daemon(
                "slurmctld",
                ["slurmctld", "-D", "-i", "-f", str(self.conf)],
                lambda: self._run("scontrol", "ping", check=False).stdout.count("UP"),
                timeout,
            )
            self._start_daemon(
                "slurmd",
                ["slurmd", "-D", "-f", str(self.conf)],
                lambda: self._run("sinfo", "-h", "-o", "%T", check=False).stdout.strip() == "idle",
                timeout,
            )
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, name: str, cmd: list[str], user: str | None = None) -> subprocess.Popen:
        if user:
            cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", *cmd]
        log = open(self.root / "log" / f"{name}.out", "ab")
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **self.env()},
            start_new_session=True,
        )
        log.close()
        self._procs.append(proc)
        self.pids[name] = proc.pid
        return proc

    def _wait(self, name: str, ready, timeout: float) -> None:
        proc = self._procs[-1]

        def up() -> str:
            if proc.poll() is not None:
                return "exited"
            try:
                return "ready" if ready() else ""
            except (OSError, subprocess.SubprocessError):
                return ""

        try:
            seen = wait_for(up, timeout, every=0.2)
        except AssertionError:
            seen = f"not ready after {timeout:.0f} s"
        if seen != "ready":
            logs = "".join(
                p.read_text(errors="replace")[-2000:]
                for p in sorted((self.root / "log").glob(f"{name}*"))
            )
            raise ClusterError(f"{name} {seen}; its log:\n{logs}")

    def _start_daemon(self, name: str, cmd: list[str], ready, timeout: float) -> None:
        self._spawn(name, cmd)
        self._wait(name, ready, timeout)

    def _start_munge(self) -> None:
        for sub in ("etc", "log", "state", "spool", "run", "db", "munge"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)  # munged (user munge) must reach its folder
        munge = pwd.getpwnam("munge")
        mdir = self.root / "munge"
        os.chown(mdir, munge.pw_uid, munge.pw_gid)
        mdir.chmod(0o755)
        self.munge_socket = mdir / "munge.socket"
        self._spawn(
            "munged",
            [
                "munged",
                "-F",
                f"--socket={self.munge_socket}",
                "--key-file=/etc/munge/munge.key",
                f"--pid-file={mdir / 'munged.pid'}",
                f"--log-file={mdir / 'munged.log'}",
                f"--seed-file={mdir / 'munged.seed'}",
            ],
            user="munge",
        )
        self._wait(
            "munged",
            lambda: (
                subprocess.run(
                    ["munge", "-n", f"--socket={self.munge_socket}"],
                    capture_output=True,
                    timeout=10,
                ).returncode
                == 0
            ),
            30,
        )

    def _start_mariadb(self, timeout: float) -> None:
        datadir, self.db_socket = self.root / "db", self.root / "run" / "mysqld.sock"
        self.db_port = free_port()
        subprocess.run(
            [
                "mariadb-install-db",
                "--no-defaults",
                "--user=root",
                f"--datadir={datadir}",
                "--auth-root-authentication-method=socket",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        self._spawn(
            "mariadbd",
            [
                "mariadbd",
                "--no-defaults",
                "--user=root",
                f"--datadir={datadir}",
                f"--port={self.db_port}",
                "--bind-address=127.0.0.1",
                "--skip-name-resolve",
                f"--socket={self.db_socket}",
                f"--pid-file={self.root / 'run' / 'mariadbd.pid'}",
                f"--log-error={self.root / 'log' / 'mariadbd.log'}",
            ],
        )

        def sql(statement: str) -> bool:
            return (
                subprocess.run(
                    [
                        "mariadb",
                        "--no-defaults",
                        f"--socket={self.db_socket}",
                        "-u",
                        "root",
                        "-e",
                        statement,
                    ],
                    capture_output=True,
                    timeout=10,
                ).returncode
                == 0
            )

        self._wait("mariadbd", lambda: sql("SELECT 1"), timeout)
        if not sql(
            "CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm'; "
            "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
        ):
            raise ClusterError("mariadbd: could not create the slurm user")

    def _write_configs(self) -> None:
        r = self.root
        self.ports = {"slurmctld": free_port(), "slurmd": free_port(), "slurmdbd": free_port()}
        auth = f"AuthType=auth/munge\nAuthInfo=socket={self.munge_socket}"
        dbd = r / "etc" / "slurmdbd.conf"
        dbd.write_text(f"""{auth}
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort={self.ports["slurmdbd"]}
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={self.db_port}
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
PidFile={r / "run" / "slurmdbd.pid"}
LogFile={r / "log" / "slurmdbd.log"}
""")
        dbd.chmod(0o600)
        memory = 4096
        for word in self._run("slurmd", "-C", check=False).stdout.split():
            if word.startswith("RealMemory="):
                memory = int(int(word.split("=")[1]) * 0.9)
        self.conf.write_text(f"""ClusterName={self.name}
SlurmctldHost={self.host}(127.0.0.1)
SlurmctldPort={self.ports["slurmctld"]}
SlurmdPort={self.ports["slurmd"]}
SlurmUser=root
{auth},cred_expire=10
StateSaveLocation={r / "state"}
SlurmdSpoolDir={r / "spool"}
SlurmctldPidFile={r / "run" / "slurmctld.pid"}
SlurmdPidFile={r / "run" / "slurmd.pid"}
SlurmctldLogFile={r / "log" / "slurmctld.log"}
SlurmdLogFile={r / "log" / "slurmd.log"}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_interval=5,bf_interval=5
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort={self.ports["slurmdbd"]}
AccountingStoragePass={self.munge_socket}
MpiDefault=none
SlurmdParameters=config_overrides
ReturnToService=2
KillWait=5
MailProg=/bin/true
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
NodeName={self.host} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={memory} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
PartitionName=scavenger Nodes=ALL PreemptMode=CANCEL MaxTime=INFINITE State=UP
PartitionName=urgent Nodes=ALL PriorityTier=2 MaxTime=INFINITE State=UP
""")
        # slurmdbd reads its file from beside slurm.conf (SLURM_CONF's folder)

    # -- taking it down --
    def stop(self, timeout: float = 20.0) -> None:
        """Cancel the jobs still there, then SIGTERM to each daemon this cluster started (last
        started first), SIGKILL to those still there after ``timeout``; a zombie counts as
        stopped. Leaves the folder."""
        if "slurmctld" in self.pids and self._procs and self._procs[-1].poll() is None:
            self._cancel_jobs()
        for proc in reversed(self._procs):
            if proc.poll() is None:
                try:
                    os.kill(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            try:
                wait_for(lambda p=proc: p.poll() is not None, timeout, every=0.1)
            except AssertionError:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10)
        self._procs.clear()
        self._stop_job_steps()

    def _cancel_jobs(self, timeout: float = 20.0) -> None:
        try:
            jobs = self._run("squeue", "-h", "-o", "%i", check=False).stdout.split()
            if jobs:
                self._run("scancel", *jobs, check=False)
                wait_for(
                    lambda: not self._run("squeue", "-h", "-o", "%i", check=False).stdout.split(),
                    timeout,
                    every=0.5,
                )
        except (subprocess.SubprocessError, AssertionError):
            pass  # a cluster being torn down: what is left is killed with it

    def _stop_job_steps(self) -> None:
        """slurmstepd processes (and the jobs under them) may outlive slurmd: end those of this
        cluster (they inherit slurmd's SLURM_CONF, which names this cluster's folder)."""
        mark = f"SLURM_CONF={self.conf}".encode()
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                comm = (proc / "comm").read_text().strip()
                env = (proc / "environ").read_bytes().split(b"\0") if comm == "slurmstepd" else []
            except OSError:
                continue
            if mark in env:
                try:
                    os.kill(int(proc.name), signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


if __name__ == "__main__":
    cluster = SlurmCluster().start()
    print(f"export SLURM_CONF={cluster.conf}   # Ctrl-C stops the cluster")
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
        cluster.remove()
