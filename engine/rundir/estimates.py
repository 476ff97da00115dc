"""A number with its uncertainty: an FID as one small record (value, interval, level, n, method,
floor, KID) read from an ``eval`` or ``value`` event, so that no table, chart or report shows a
bare FID by accident; the comparison of two of them that a claim's verdict uses; and the mean ±
sd of a number across runs that differ only by their seed.

An event written before diffui measured intervals has none: its :class:`Estimate` says so
(``low`` and ``high`` are None) and its text is the bare value, marked "(no interval)" where a
comparison needs one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Estimate:
    """An FID with its bootstrap interval (``low``, ``high`` at ``level``), its floor at n, and
    KID (mean ± ``kid_std``) in the same feature space."""

    value: float
    low: float | None = None
    high: float | None = None
    level: float | None = None
    n: int | None = None
    method: str = ""
    floor: float | None = None
    kid: float | None = None
    kid_std: float | None = None

    @classmethod
    def of(cls, e: Any) -> Estimate:
        """The FID of an ``eval`` or ``value`` event (:mod:`engine.rundir.events`)."""
        return cls(
            value=e.fid,
            low=getattr(e, "fid_low", None),
            high=getattr(e, "fid_high", None),
            level=getattr(e, "fid_level", None),
            n=getattr(e, "n", None),
            method=getattr(e, "fid_method", ""),
            floor=getattr(e, "floor", None),
            kid=getattr(e, "kid", None),
            kid_std=getattr(e, "kid_std", None),
        )

    @property
    def has_interval(self) -> bool:
        return self.low is not None and self.high is not None

    def text(self, spec: str = ".1f") -> str:
        """``41.2 [38.0, 44.9]``, or ``41.2`` when it has no interval."""
        if not self.has_interval:
            return format(self.value, spec)
        return f"{self.value:{spec}} [{self.low:{spec}}, {self.high:{spec}}]"

    def kid_text(self) -> str:
        """``KID 0.012 ± 0.002`` ("" when not measured)."""
        if self.kid is None:
            return ""
        return f"KID {self.kid:.4f} ± {self.kid_std or 0:.4f}"


def compare(a: Estimate, b: Estimate) -> str:
    """How ``a`` stands to ``b``: "lower" or "higher" when their intervals do not overlap,
    "overlap" when they do, "no interval" when either has none (a run scored before diffui
    measured intervals: no verdict can rest on it)."""
    if not (a.has_interval and b.has_interval):
        return "no interval"
    assert a.low is not None and a.high is not None and b.low is not None and b.high is not None
    if a.high < b.low:
        return "lower"
    if a.low > b.high:
        return "higher"
    return "overlap"


@dataclass(frozen=True)
class Spread:
    """A number across runs (seeds): mean, sample standard deviation (None for one run), count."""

    mean: float
    sd: float | None
    n: int

    def text(self, spec: str = ".2f") -> str:
        """``41.20 ± 1.30 (3 seeds)``, ``41.20 (1 seed)``."""
        seeds = f"({self.n} seed{'s' if self.n != 1 else ''})"
        if self.sd is None:
            return f"{self.mean:{spec}} {seeds}"
        return f"{self.mean:{spec}} ± {self.sd:{spec}} {seeds}"


def spread(values: list[float]) -> Spread | None:
    """Mean ± sd of ``values`` (None when there are none)."""
    xs = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not xs:
        return None
    mean = sum(xs) / len(xs)
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else None
    return Spread(mean, sd, len(xs))
