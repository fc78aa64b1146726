"""Per-seed paired differences and their 95% intervals: the statistics the claims are judged on.

Why paired: two cells with the same seed share their noisy labels, meta set, training subset
and data order, so most of the seed-to-seed spread cancels in their difference. A pooled std
(the retired v2.1 report's rule) counts that shared spread twice and hides real effects, or,
with two seeds, decides on noise. Here each claim is judged on the mean of the per-seed
differences and its 95% Student-t interval: HOLDS when the whole interval satisfies the claim,
FAILS when none of it does, UNDECIDED when the interval straddles the bound (more seeds would
decide).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Sequence

from experiments.reproduction.claims import FAILS, HOLDS, NOT_YET_MEASURED, Claim, Metric

UNDECIDED = "UNDECIDED"

# Two-sided 95% quantiles of Student's t by degrees of freedom (standard table values).
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
         10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131}


@dataclasses.dataclass(frozen=True)
class PairedDifference:
    setting: str
    method_a: str
    method_b: str
    metric: Metric
    per_seed: tuple[tuple[int, float], ...]  # (seed, a - b) in shown units
    mean: float
    low: float | None  # None with one seed: no interval
    high: float | None

    @property
    def n(self) -> int:
        return len(self.per_seed)

    def text(self) -> str:
        digits = self.metric.digits
        interval = "" if self.low is None else f" [{self.low:+.{digits}f}, {self.high:+.{digits}f}]"
        seeds = ", ".join(f"{value:+.{digits}f}" for _, value in self.per_seed)
        return f"{self.mean:+.{digits}f}{interval} (n={self.n}: {seeds})"


def interval(values: Sequence[float]) -> tuple[float, float | None, float | None]:
    """(mean, low, high) of the 95% t interval; no interval for a single value."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None, None
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = T_975.get(n - 1, 1.96) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def values_by_seed(entries: Sequence[Mapping], setting: str, method: str, key: str) -> dict[int, float]:
    return {e["seed"]: e[key] for e in entries
            if e["setting"] == setting and e["method"] == method and e["status"] == "done"
            and e.get(key) is not None}


def paired_difference(entries: Sequence[Mapping], setting: str, a: str, b: str,
                      metric: Metric, b_key: str | None = None) -> PairedDifference | None:
    """a − b per seed both finished, in the metric's shown units; None without a common seed.
    `b_key` reads b's value under another key of the same units (e.g. Base's gold-free selected
    epoch against a method's final one)."""
    va, vb = values_by_seed(entries, setting, a, metric.key), values_by_seed(entries, setting, b, b_key or metric.key)
    seeds = sorted(set(va) & set(vb))
    if not seeds:
        return None
    per_seed = tuple((s, (va[s] - vb[s]) * metric.scale) for s in seeds)
    mean, low, high = interval([v for _, v in per_seed])
    return PairedDifference(setting, a, b, metric, per_seed, mean, low, high)


def verdict(relation: str, difference: PairedDifference | None, margin: float = 0.0) -> str:
    """A claim's verdict on one paired difference, in the metric's shown units.

    greater: a − b > margin; not_lower: a − b ≥ −margin; approx: |a − b| ≤ margin. With one seed
    (no interval) the mean alone decides, and the report says n=1.
    """
    if difference is None:
        return NOT_YET_MEASURED
    low, high = (difference.mean, difference.mean) if difference.low is None else (difference.low, difference.high)
    if relation == "greater":
        inside, outside = low > margin, high <= margin
    elif relation == "not_lower":
        inside, outside = low >= -margin, high < -margin
    elif relation == "approx":
        inside, outside = -margin <= low and high <= margin, high < -margin or low > margin
    else:
        raise ValueError(f"unknown relation {relation!r}")
    return HOLDS if inside else FAILS if outside else UNDECIDED


@dataclasses.dataclass
class PairedClaim:
    claim: Claim
    comparisons: list[tuple[str, str, str, PairedDifference | None, str]]  # setting, a, b, diff, verdict

    @property
    def verdict(self) -> str:
        measured = [v for *_, v in self.comparisons if v != NOT_YET_MEASURED]
        if not measured:
            return NOT_YET_MEASURED
        if all(v == HOLDS for v in measured):
            return HOLDS
        if all(v == FAILS for v in measured):
            return FAILS
        return "MIXED" if FAILS in measured and HOLDS in measured else UNDECIDED

    @property
    def coverage(self) -> str:
        measured = sum(v != NOT_YET_MEASURED for *_, v in self.comparisons)
        return f"{measured} of {len(self.comparisons)} comparisons measured"


def judge_claim(claim: Claim, entries: Sequence[Mapping], settings: Sequence[str]) -> PairedClaim:
    """A paper claim judged on paired intervals, restricted to the settings this grid has."""
    comparisons = []
    for setting, a, b in claim.comparisons_asked():
        if setting not in settings:
            continue
        difference = paired_difference(entries, setting, a, b, claim.metric)
        comparisons.append((setting, a, b, difference, verdict(claim.relation, difference, claim.margin)))
    return PairedClaim(claim, comparisons)
