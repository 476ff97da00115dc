"""What one job is: a :class:`RunSpec` (a training run, fully resolved) or a :class:`StudySpec`
(a sampling study on a trained run), and their config.toml in a run or study folder.

An experiments file resolves to these (:mod:`engine.spec.experiments`); a folder keeps its spec
as config.toml (:func:`spec_to_toml`), read back with :func:`spec_from_toml`.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from typing import Any

import tomli_w

from engine.spec.sections import (
    LOCAL,
    SECTIONS,
    DataSection,
    EvaluationSection,
    NetworkSection,
    ScheduleSection,
    StudyKeys,
    TrainingSection,
    make_sections,
)


@dataclass
class RunSpec:
    """One fully resolved run: an experiment after defaults, sweep and profile."""

    name: str
    degradation: str
    data: DataSection
    schedule: ScheduleSection
    network: NetworkSection
    training: TrainingSection
    evaluation: EvaluationSection
    experiment: str = ""  # the experiment it came from (differs from name for sweeps)
    profile: str = ""
    host: list[str] = field(default_factory=lambda: [LOCAL])  # where it may run, in order
    # (not in to_dict: where a run goes is the queue's business, not part of what it is)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name,
            "experiment": self.experiment or self.name,
            "profile": self.profile,
            "degradation": self.degradation,
        }
        for s in SECTIONS:
            d[s] = getattr(self, s).to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunSpec:
        """From a run's config.toml; keys added to diffui after the run was made get their
        defaults, so older run folders stay readable."""
        return cls(
            name=d["name"],
            degradation=d["degradation"],
            experiment=d.get("experiment", d["name"]),
            profile=d.get("profile", ""),
            **make_sections(d),
        )


@dataclass
class StudySpec:
    """One sampling study on a trained run: ``kind`` at each of ``values`` (λ for noise, N for
    interpolation, components for gmm), resolved against the run it samples from."""

    name: str
    run: str
    kind: str
    values: list
    keys: StudyKeys
    degradation: str = "gaussian"  # the run's
    profile: str = ""
    host: list[str] = field(default_factory=lambda: [LOCAL])  # where it may run (see RunSpec)

    job = "study"  # what the worker runs for a folder of this spec

    def to_dict(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "name": self.name,
            "run": self.run,
            "kind": self.kind,
            "values": list(self.values),
            "degradation": self.degradation,
            "profile": self.profile,
            "study": self.keys.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StudySpec:
        return cls(
            name=d["name"],
            run=d["run"],
            kind=d["kind"],
            values=list(d["values"]),
            degradation=d.get("degradation", "gaussian"),
            profile=d.get("profile", ""),
            keys=StudyKeys(
                **{k: v for k, v in d.get("study", {}).items() if k in StudyKeys.keys()}
            ),
        )


def spec_to_toml(spec: RunSpec | StudySpec) -> str:
    """The config.toml of a run folder (or a study folder) for ``spec``."""
    return tomli_w.dumps(spec.to_dict())


def spec_from_toml(text: str) -> RunSpec | StudySpec:
    """The spec in a run folder's (or a study folder's) config.toml."""
    d = tomllib.loads(text)
    return StudySpec.from_dict(d) if d.get("job") == StudySpec.job else RunSpec.from_dict(d)
