"""The paper's claims as explicit rules over the seeds' results, and the cost per step.

A verdict rests on stated rules (mean difference against the seeds' spread) rather than on
reading a table by eye, so the same numbers always give the same verdict.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from typing import Iterable, Sequence

from experiments.reproduction.protocol import (
    HEAVY_NOISE_SETTINGS,
    META_METHODS,
    METHOD_LABELS,
    METHOD_ORDER,
    NOISY_SETTINGS,
    SETTINGS,
    SETTINGS_BY_NAME,
    UNIFORM_SETTINGS,
    markdown,
)

# ------------------------------------------------------------------------------------ aggregation
@dataclasses.dataclass(frozen=True)
class Summary:
    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float | None:
        """Sample standard deviation over seeds (n - 1); None for a single seed."""
        return statistics.stdev(self.values) if self.n > 1 else None


def summarize(entries: Iterable[dict], setting: str, method: str, key: str) -> Summary | None:
    values = tuple(
        float(e[key]) for e in entries
        if e["setting"] == setting and e["method"] == method and e["status"] == "done" and e.get(key) is not None
    )
    return Summary(values) if values else None


def format_mean_std(values: Sequence[float] | Summary | None, *, scale: float = 1.0, digits: int = 2) -> str:
    """"mean ± std" over seeds; just the value for one seed; "—" when nothing is measured."""
    summary = values
    if summary is not None and not isinstance(summary, Summary):
        summary = Summary(tuple(summary)) if len(summary) else None
    if summary is None:
        return "—"
    if summary.std is None:
        return f"{summary.mean * scale:.{digits}f}"
    return f"{summary.mean * scale:.{digits}f} ± {summary.std * scale:.{digits}f}"


# ------------------------------------------------------------------------------------ claims
HOLDS, FAILS, NOT_YET_MEASURED = "HOLDS", "FAILS", "NOT YET MEASURED"


@dataclasses.dataclass(frozen=True)
class Metric:
    key: str  # field of an entry
    name: str
    scale: float  # entry value -> shown value
    digits: int
    approx_tolerance: float  # in shown units: the smallest gap "≈" always forgives


# Final, not best, accuracy: the best epoch is picked on the test set, which flatters a method.
ACCURACY = Metric("test_accuracy_final", "final test accuracy", 100.0, 2, approx_tolerance=1.0)
AUC = Metric("detection_auc_final_pass", "detection AUC of the final weights", 1.0, 4, approx_tolerance=0.01)

RELATION_RULES = {
    "approx": "≈: |mean difference| ≤ max(1 point, pooled std of the seeds)",
    "greater": ">: mean difference > 0 and > pooled std of the seeds",
    "not_lower": "≥: mean difference ≥ −(pooled std of the seeds), i.e. not lower beyond the seeds' spread",
}


@dataclasses.dataclass(frozen=True)
class Claim:
    number: int
    statement: str
    metric: Metric
    relation: str  # a key of RELATION_RULES
    pairs: tuple[tuple[str, str, str], ...]  # (setting, method a, method b): "a <relation> b"


def paper_claims() -> tuple[Claim, ...]:
    return (
        Claim(1, "RMNW-Net ≈ MW-Net* although it uses no clean samples", ACCURACY, "approx",
              tuple((s.name, "rmnwnet", "mwnet") for s in SETTINGS)),
        Claim(2, "RMNW-Net > MNW-Net under uniform noise", ACCURACY, "greater",
              tuple((s, "rmnwnet", "mnwnet") for s in UNIFORM_SETTINGS)),
        Claim(3, "every meta method > Base under heavy noise (uniform 60%, flip 30%, flip2 40%)", ACCURACY,
              "greater", tuple((s, m, "base") for s in HEAVY_NOISE_SETTINGS for m in META_METHODS)),
        Claim(4, "RMNW-Net's detection AUC ≥ MW-Net*'s", AUC, "not_lower",
              tuple((s, "rmnwnet", "mwnet") for s in NOISY_SETTINGS)),
    )


@dataclasses.dataclass(frozen=True)
class Comparison:
    setting: str
    method_a: str
    method_b: str
    a: Summary
    b: Summary
    difference: float  # in shown units
    tolerance: float  # in shown units
    holds: bool

    def describe(self, metric: Metric, relation: str) -> str:
        """One Markdown line with the numbers the verdict rests on."""
        label = SETTINGS_BY_NAME[self.setting].label
        a = format_mean_std(self.a, scale=metric.scale, digits=metric.digits)
        b = format_mean_std(self.b, scale=metric.scale, digits=metric.digits)
        threshold = f"{self.tolerance:.{metric.digits}f}"
        needs = {"approx": f"needs |Δ| ≤ {threshold}", "greater": f"needs Δ > {threshold}",
                 "not_lower": f"needs Δ ≥ −{threshold}"}[relation]
        return (f"{label}: {markdown(METHOD_LABELS[self.method_a])} {a} vs "
                f"{markdown(METHOD_LABELS[self.method_b])} {b}: Δ {self.difference:+.{metric.digits}f}, "
                f"{needs} ({self.a.n}+{self.b.n} seeds) → {'holds' if self.holds else 'fails'}")


@dataclasses.dataclass(frozen=True)
class ClaimResult:
    claim: Claim
    verdict: str
    comparisons: tuple[Comparison, ...]

    @property
    def coverage(self) -> str:
        return f"{len(self.comparisons)} of {len(self.claim.pairs)} comparisons measured"


def pooled_std(a: Summary, b: Summary) -> float:
    """Root mean square of the two seeds' standard deviations; a one-seed side counts as 0.

    With one seed per side the spread is unknown, so the rules then reduce to comparing means
    (and the report says how many seeds each comparison rests on).
    """
    return math.sqrt(((a.std or 0.0) ** 2 + (b.std or 0.0) ** 2) / 2.0)


def compare(relation: str, a: Summary, b: Summary, metric: Metric) -> tuple[float, float, bool]:
    """(difference, tolerance, holds) of "a <relation> b", in the metric's shown units."""
    difference = (a.mean - b.mean) * metric.scale
    spread = pooled_std(a, b) * metric.scale
    if relation == "approx":
        tolerance = max(metric.approx_tolerance, spread)
        return difference, tolerance, abs(difference) <= tolerance
    if relation == "greater":
        return difference, spread, difference > 0 and difference > spread
    if relation == "not_lower":
        return difference, spread, difference >= -spread
    raise ValueError(f"unknown relation {relation!r}")


def evaluate_claim(claim: Claim, entries: Sequence[dict]) -> ClaimResult:
    """HOLDS if every measured comparison holds, FAILS if any fails, else NOT YET MEASURED."""
    comparisons = []
    for setting, method_a, method_b in claim.pairs:
        a = summarize(entries, setting, method_a, claim.metric.key)
        b = summarize(entries, setting, method_b, claim.metric.key)
        if a is None or b is None:
            continue
        difference, tolerance, holds = compare(claim.relation, a, b, claim.metric)
        comparisons.append(Comparison(setting, method_a, method_b, a, b, difference, tolerance, holds))
    if not comparisons:
        verdict = NOT_YET_MEASURED
    else:
        verdict = HOLDS if all(c.holds for c in comparisons) else FAILS
    return ClaimResult(claim, verdict, tuple(comparisons))


def evaluate_claims(entries: Sequence[dict]) -> list[ClaimResult]:
    return [evaluate_claim(claim, entries) for claim in paper_claims()]


# ------------------------------------------------------------------------------------ cost
def cost_rows(entries: Sequence[dict]) -> list[dict]:
    """Mean training seconds per step of each method over its finished cells, and the ratio to Base.

    Per step, not per run: Base has no meta set, so it takes more steps per epoch.
    """
    per_method = {}
    for method in METHOD_ORDER:
        values = [e["seconds_per_step"] for e in entries
                  if e["method"] == method and e["status"] == "done" and e["seconds_per_step"]]
        per_method[method] = values
    base = statistics.fmean(per_method["base"]) if per_method["base"] else None
    rows = []
    for method, values in per_method.items():
        mean = statistics.fmean(values) if values else None
        rows.append({
            "method": method, "cells": len(values), "seconds_per_step": mean,
            "ratio_to_base": mean / base if mean is not None and base else None,
        })
    return rows


