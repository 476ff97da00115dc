"""The ``[hosts.NAME]`` tables of an experiments file (:class:`HostSpec`), and the ``host`` key
of experiments, studies and profiles that names where they may run."""

from __future__ import annotations

import dataclasses
from typing import Any

from engine.spec.checks import Checker, check_keys, check_table
from engine.spec.names import SAFE_NAME
from engine.spec.sections import LOCAL, SLURM_KEYS, SSH_KEYS, HostSpec


def parse_hosts(ck: Checker, table: Any) -> dict[str, HostSpec]:
    """The ``[hosts.NAME]`` tables: keys of their kind only; an ssh host needs an address."""
    out = {}
    for name, value in check_table(ck, "hosts", table).items():
        where = f"hosts.{name}"
        if name == LOCAL or not SAFE_NAME.fullmatch(name):
            ck.fail(
                where,
                "a host name of letters, digits, '.', '_', '-' other than "
                f"{LOCAL!r} (this machine)",
                name,
            )
        value = check_table(ck, where, value)
        check_keys(ck, where, HostSpec, value)
        spec = HostSpec(**value)
        other = SSH_KEYS if spec.kind == "slurm" else SLURM_KEYS
        for key in value:
            if key in other:
                ck.fail(
                    f"{where}.{key}",
                    f"only the keys of a kind = {spec.kind!r} host (this "
                    f"key is for kind = {'ssh' if spec.kind == 'slurm' else 'slurm'!r})",
                    show_got=False,
                )
        if spec.kind == "ssh" and not spec.address:
            ck.fail(
                f"{where}.address",
                "the host's name, IP or ~/.ssh/config alias",
                spec.address,
                show_got="address" in value,
            )
        if spec.kind == "slurm" and not spec.address:  # diffui runs on the login node
            if "workdir" in value:
                ck.fail(
                    f"{where}.workdir",
                    "no workdir on a cluster without an address (on "
                    "its login node, runs stay in diffui's runs folder; workdir is for a "
                    "login node reached over SSH)",
                    spec.workdir,
                )
            if "python" not in value:  # the jobs run diffui's own interpreter
                spec = dataclasses.replace(spec, python="")
        if len(set(spec.gpus)) != len(spec.gpus):
            ck.fail(f"{where}.gpus", "distinct GPU indices", spec.gpus)
        out[name] = spec
    return out


def host_list(ck: Checker, where: str, value: Any, hosts: dict[str, HostSpec]) -> list[str]:
    """``host = "gpu1"`` or ``["gpu1", "gpu2"]``: names of [hosts] tables, or ``"local"``."""
    names = [value] if isinstance(value, str) else value
    known = [LOCAL, *hosts]
    if (
        not isinstance(names, list)
        or not names
        or len(set(map(str, names))) != len(names)
        or any(n not in known for n in names)
    ):
        ck.fail(
            where,
            "a host name or a list of distinct host names, each one of "
            + ", ".join(map(repr, known)),
            value,
        )
    return list(names)
