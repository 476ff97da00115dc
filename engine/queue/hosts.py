"""``diffui hosts check`` and ``diffui hosts install``: what a host has (python, diffui, torch
and CUDA, GPUs, free disk, datasets; a cluster's sbatch), and putting this diffui (a wheel of
it) and the datasets it lacks there."""

from __future__ import annotations

import asyncio
import json
import posixpath
import shlex
import subprocess
import sys
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import asyncssh

from engine.queue.executors.remote import HostError, Remote
from engine.queue.process import ENGINE_ROOT
from engine.spec.sections import HostSpec

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
GPU_QUERY = (
    "nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader 2>/dev/null || true"
)


def local_version() -> str:
    """The version of the diffui installed here (``unknown`` when it is not installed)."""
    try:
        return version("diffui")
    except PackageNotFoundError:
        return "unknown"


async def probe(remote: Remote) -> dict:
    """What the host has: python, diffui, torch and CUDA, GPUs, free disk, datasets."""
    q = shlex.quote
    r = await remote.run_full(f"{q(remote.python)} -c {q(PROBE)} {q(remote.workdir)}")
    if r.exit_status != 0:
        lines = (r.stderr or r.stdout).strip().splitlines()
        why = lines[-1] if lines else f"exit status {r.exit_status}"
        return {
            "problem": f"{remote.spec.python}: {why}",
            "python": "",
            "diffui": "",
            "torch": "",
            "cuda": "",
            "data": {},
        }
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
        if info["problem"].startswith("diffui: "):
            info["problem"] = (
                f"{name}: {info['problem']}: install it with: diffui hosts install {name}"
            )
        if spec.kind == "slurm":  # a cluster's login node: the GPUs are Slurm's
            r = await remote.run_full("sbatch --version")
            info["slurm"] = r.stdout.strip() or "sbatch missing"
            if r.exit_status != 0:
                info["problem"] = (
                    info["problem"]
                    or f"{name}: sbatch cannot run there (is this the cluster's login node?)"
                )
            elif not info.get("submitit") and not info["problem"]:
                info["problem"] = (
                    f"{name}: {spec.python} lacks submitit: install diffui "
                    f"with: diffui hosts install {name}"
                )
        return {"host": name, "reachable": True, **info}
    except (asyncssh.Error, OSError, ValueError) as e:
        return {"host": name, "reachable": True, "problem": f"{name}: {e}"}
    finally:
        remote.close()


def check_hosts(hosts: dict[str, HostSpec]) -> list[dict]:
    """``diffui hosts check``: each host's probe (or why it cannot be reached), all at once."""

    async def main() -> list[dict]:
        return await asyncio.gather(*(_check(n, s) for n, s in hosts.items()))

    return list(asyncio.run(main()))


def data_differences(info: dict) -> list[str]:
    """The datasets (name and split) this machine has and a host lacks (``info``: its probe):
    runs there would train on another source (a fall-back) than here."""
    from engine.data import datasets as data  # (imports torch: only when a host answered)

    return [
        f"{ds} {split}"
        for ds in data.DATASETS
        for split in data.SPLITS
        if data.idx_files(ds, split) is not None and split not in info.get("data", {}).get(ds, [])
    ]


def build_wheel(out: Path) -> Path:
    """A wheel of this diffui (``pip wheel --no-deps`` of the checkout it runs from)."""
    root = ENGINE_ROOT
    if not (root / "pyproject.toml").is_file():
        raise HostError(
            f"cannot build a wheel of diffui: {root} has no pyproject.toml "
            "(install diffui on the host from the same source as here)"
        )
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(root),
        ],
        capture_output=True,
        text=True,
    )
    wheels = sorted(out.glob("diffui-*.whl"))
    if r.returncode != 0 or not wheels:
        lines = (r.stderr or r.stdout).strip().splitlines()
        raise HostError(f"pip wheel {root} failed: {lines[-1] if lines else r.returncode}")
    return wheels[-1]


def install(
    name: str,
    spec: HostSpec,
    wheel: Path,
    log: Callable[[str], None] = print,
    torch_index: str = "",
) -> None:
    """``diffui hosts install``: the wheel into the host's python (its dependencies from the
    host's package index when missing; torch first from ``torch_index`` when given, e.g.
    ``https://download.pytorch.org/whl/cu121``), then the datasets the host lacks into its
    workdir. pip's lines are shown as they come."""

    async def main() -> None:
        remote = await Remote(name, spec).open()
        try:
            info = await _install_wheel(remote, wheel, log, torch_index)
            await _copy_datasets(remote, info, log)
        finally:
            remote.close()

    try:
        asyncio.run(main())
    except (asyncssh.Error, OSError) as e:
        raise HostError(f"{name}: {' '.join(str(e).split())}") from None


async def _install_wheel(
    remote: Remote, wheel: Path, log: Callable[[str], None], torch_index: str
) -> dict:
    """pip install the wheel there (torch first from ``torch_index``); the host's probe
    afterwards."""
    q, name = shlex.quote, remote.name
    where = posixpath.join(remote.workdir, "wheels", wheel.name)
    await remote.put(wheel, where)
    log(f"{name}: copied {wheel.name}; pip install into {remote.spec.python}")
    pip = f"{q(remote.python)} -m pip install --progress-bar off"
    steps = [f"{pip} torch --index-url {q(torch_index)}"] if torch_index else []
    steps += [
        f"{pip} {q(where)}",  # and what it needs
        f"{pip} --force-reinstall --no-deps {q(where)}",
    ]
    for command in steps:
        await remote.run_streamed(command, lambda text: log(f"{name}: pip: {text}"))
    info = await probe(remote)
    if info["problem"]:
        raise HostError(f"{name}: installed, but {info['problem']}")
    log(
        f"{name}: diffui {info['diffui']} installed (python {info['python']}, "
        f"torch {info['torch'] or '-'})"
    )
    return info


async def _copy_datasets(remote: Remote, info: dict, log: Callable[[str], None]) -> None:
    """The datasets (IDX files) found here that the host lacks (``info``: its probe)."""
    # imported here: the datasets module imports torch, which only an install needs
    from engine.data import datasets as data

    name = remote.name
    for ds in data.DATASETS:
        for split in data.SPLITS:
            if split in info["data"].get(ds, []):
                continue
            pair = data.idx_files(ds, split)
            if pair is None:
                log(
                    f"{name}: {ds} {split}: not copied (the host lacks it and so does this "
                    "machine: 'diffui data fetch' or 'diffui data import DIR' here, then install "
                    "again)"
                )
                continue
            folder = posixpath.join(remote.workdir, "data", data.dataset_folder(ds).name)
            for f in pair:
                await remote.put(f.resolve(), posixpath.join(folder, f.name))
            log(f"{name}: {ds} {split}: copied {pair[0].name}, {pair[1].name} into {folder}")
