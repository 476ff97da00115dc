"""The ``[profiles.NAME]`` tables of an experiments file: settings that override those of every
experiment (``quick`` for a smoke run), and the :class:`Profile` a file is read with.

A profile may restrict the experiments (``experiments = [...]``; its settings are then
cross-checked against those experiments only) and the studies (``studies = [...]``), override
the studies' keys (a ``study`` table) and send everything to other hosts (``host``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.spec.checks import Checker, check_degradation, check_keys, check_section, check_table
from engine.spec.hosts import host_list
from engine.spec.names import name_problem, safe_name
from engine.spec.sections import LOCAL, SECTIONS, HostSpec, StudyKeys

PROFILE_KEYS = {"experiments", "degradation", "studies", "study", "host", *SECTIONS}


@dataclass(frozen=True)
class Profile:
    """The profile a file is read with: its name ("" for none) and its table ({} for none)."""

    name: str = ""
    table: dict[str, Any] = field(default_factory=dict)

    def selects(self, key: str, name: str) -> bool:
        """Whether the profile keeps the experiment (``key = "experiments"``) or the study
        (``"studies"``) called ``name``: all of them unless it lists some."""
        return name in self.table.get(key, [name])

    def hosts(
        self, ck: Checker, where: str, table: dict[str, Any], hosts: dict[str, HostSpec]
    ) -> list[str]:
        """Where the experiment or study of ``table`` (at ``where``) may run: the profile's
        ``host`` when it has one, else the table's own (this machine by default)."""
        if "host" in self.table:
            return host_list(ck, f"profiles.{self.name}.host", self.table["host"], hosts)
        return host_list(ck, f"{where}.host", table.get("host", LOCAL), hosts)


def parse_profiles(
    ck: Checker, table: Any, hosts: dict[str, HostSpec]
) -> dict[str, dict[str, Any]]:
    """The ``[profiles.NAME]`` tables by name, every one checked (not only the one selected)."""
    profiles = check_table(ck, "profiles", table)
    for pname, ptable in profiles.items():
        if not safe_name(pname):  # it names the folder runs-PROFILE
            ck.fail(
                f"profiles.{pname}", "a profile name that is " + name_problem(pname), show_got=False
            )
        for key, value in check_table(ck, f"profiles.{pname}", ptable).items():
            _check_profile_key(ck, f"profiles.{pname}.{key}", key, value, hosts)
    return profiles


def _check_profile_key(
    ck: Checker, where: str, key: str, value: Any, hosts: dict[str, HostSpec]
) -> None:
    if key == "experiments":
        if not isinstance(value, list) or not value or not all(isinstance(x, str) for x in value):
            ck.fail(where, "a non-empty list of experiment names", value)
    elif key == "degradation":
        check_degradation(ck, where, value)
    elif key == "studies":
        if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
            ck.fail(where, "a list of study names", value)
    elif key == "study":
        check_keys(ck, where, StudyKeys, check_table(ck, where, value))
    elif key == "host":
        host_list(ck, where, value, hosts)
    elif key in SECTIONS:
        check_section(ck, where, key, value)
    else:
        ck.fail(where, "one of the keys " + ", ".join(sorted(PROFILE_KEYS)), show_got=False)


def check_listed(
    ck: Checker,
    profiles: dict[str, dict[str, Any]],
    key: str,
    names: set[str] | list[str],
    expected: str,
) -> None:
    """Every name that a profile lists under ``key`` (``experiments``, ``studies``) is one of
    ``names``: every profile, not only the one selected."""
    for pname, ptable in profiles.items():
        for n in ptable.get(key, []):
            if n not in names:
                ck.fail(f"profiles.{pname}.{key}", expected, n)
