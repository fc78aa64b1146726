"""The paper's claims as explicit rules over the seeds' results, and the cost per step.

A verdict rests on stated rules (mean difference against the seeds' spread) rather than on
reading a table by eye, so the same numbers always give the same verdict.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from typing import Callable, Iterable, Sequence

from experiments.reproduction import paper
from experiments.reproduction.protocol import (
    META_METHODS,
    METHOD_LABELS,
    METHOD_ORDER,
    NOISY_SETTINGS,
    SETTINGS_BY_NAME,
    UNIFORM_SETTINGS,
    markdown,
)

# ------------------------------------------------------------------------------------ aggregation
@dataclasses.dataclass(frozen=True)
class Summary:
    """Mean, sample std (None when unknown, e.g. one seed) and number of seeds of one cell."""

    mean: float
    std: float | None
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> "Summary":
        values = [float(v) for v in values]
        return cls(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None, len(values))


def summarize(entries: Iterable[dict], setting: str, method: str, key: str) -> Summary | None:
    values = [
        float(e[key]) for e in entries
        if e["setting"] == setting and e["method"] == method and e["status"] == "done" and e.get(key) is not None
    ]
    return Summary.of(values) if values else None


def format_mean_std(values: Sequence[float] | Summary | None, *, scale: float = 1.0, digits: int = 2) -> str:
    """"mean ± std" over seeds; just the value when the std is unknown; "—" when nothing is measured."""
    summary = values
    if summary is not None and not isinstance(summary, Summary):
        summary = Summary.of(summary) if len(summary) else None
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
    unit: str  # of the shown value, for margins ("points", "")


# Final, not best, accuracy: the best epoch is picked on the test set, which flatters a method.
ACCURACY = Metric("final/test/accuracy", "final test accuracy", 100.0, 2, " points")
# Table 3's definition: the best AUC seen during training (here: over the evaluations).
AUC_BEST = Metric("best/detection/auc", "detection AUC, best over training (Table 3's definition)", 1.0, 4, "")
# The final model's AUC over the whole (un-augmented) training set: the issue's target.
AUC_FINAL = Metric("final/detection/auc", "detection AUC of the final model", 1.0, 4, "")


def paper_summary(metric: Metric, setting: str, method: str) -> Summary | None:
    """The paper's CIFAR-10 number for a metric as a Summary in entry units (5 seeds; AUC has no std)."""
    measured = metric.key.split("/", 1)[1]  # final/test/accuracy -> test/accuracy
    if measured == "test/accuracy":
        value = paper.accuracy(setting, method)
        return None if value is None else Summary(value[0] / 100.0, value[1] / 100.0, paper.SEEDS)
    if measured == "detection/auc":
        value = paper.detection_auc(setting, method)
        return None if value is None else Summary(value, None, paper.SEEDS)
    raise ValueError(f"the paper has no {metric.key}")


RELATION_RULES = {
    "approx": "≈: |Δ| ≤ max(margin, pooled std)",
    "greater": ">: Δ > max(margin, pooled std)",
    "not_lower": "≥: Δ ≥ −max(margin, pooled std)",
}


@dataclasses.dataclass(frozen=True)
class Claim:
    number: int
    statement: str  # "a <relation> b", as the paper states it
    source: str  # where the paper says so
    metric: Metric
    relation: str  # a key of RELATION_RULES
    settings: tuple[str, ...]  # the scope: where the paper makes the claim
    pairs: tuple[tuple[str, str], ...]  # (method a, method b) compared in every setting of the scope
    margin: float = 0.0  # in shown units; the rule also forgives the seeds' pooled std

    def comparisons_asked(self) -> tuple[tuple[str, str, str], ...]:
        return tuple((s, a, b) for s in self.settings for a, b in self.pairs)

    @property
    def scope(self) -> str:
        return ", ".join(SETTINGS_BY_NAME[s].label for s in self.settings)

    @property
    def tolerance(self) -> str:
        """The rule with this claim's margin, e.g. "|Δ| ≤ max(1 point, pooled std)"."""
        if self.margin:
            unit = self.metric.unit.rstrip("s") if self.margin == 1 else self.metric.unit
            bound = f"max({self.margin:g}{unit}, pooled std)"
        else:
            bound = "pooled std"
        return {"approx": f"|Δ| ≤ {bound}", "greater": f"Δ > {bound}", "not_lower": f"Δ ≥ −{bound}"}[self.relation]


UNIFORM_AND_CLEAN = ("uniform40", "uniform60", "none0")
FLIP_FAMILIES = ("flip2_20", "flip2_40", "flip15", "flip30")
TABLE1_NOISY = ("uniform40", "uniform60", "flip2_20", "flip2_40")


def paper_claims() -> tuple[Claim, ...]:
    """The paper's CIFAR-10 claims, each scoped to where the paper makes it (Sections 3-4).

    Fixed before protocol v2's results came in, and checked against the paper's own numbers
    (`sanity_row`): a rule that fails on the paper's table would state the claim wrongly.
    """
    return (
        Claim(1, "RMNW-Net ≈ MW-Net* (no clean meta samples needed)",
              "§4.1: under uniform noise only RMNW-Net \"retains performance similar to MW-Net*\"; at 0% "
              "\"marginally better than MW-Net*\"", ACCURACY, "approx", UNIFORM_AND_CLEAN,
              (("rmnwnet", "mwnet"),), margin=1.0),
        Claim(2, "RMNW-Net is not far below MW-Net* under flip2 and flip noise",
              "§4.1: flip2 \"similar to MW-Net\", flip \"no significant drop ... compared to MW-Net*\" (its "
              "own largest gap: −2.32 points at flip 30%)", ACCURACY, "not_lower", FLIP_FAMILIES,
              (("rmnwnet", "mwnet"),), margin=3.0),
        Claim(3, "RMNW-Net > MNW-Net under uniform noise",
              "Theorem 1 (uniform noise only); Table 1: +2.0 points at 40% and 60%", ACCURACY, "greater",
              UNIFORM_SETTINGS, (("rmnwnet", "mnwnet"),)),
        Claim(4, "MNW-Net ≥ RMNW-Net under flip2 and flip noise",
              "§4.1: \"MNW-Net performs slightly better than RMNW-Net on CIFAR-10\" (flip2 and flip); "
              "Theorem 1 does not cover these", ACCURACY, "not_lower", FLIP_FAMILIES, (("mnwnet", "rmnwnet"),)),
        Claim(5, "every meta method > Base under label noise",
              "Table 1 (the paper has no Base under flip noise)", ACCURACY, "greater", TABLE1_NOISY,
              tuple((m, "base") for m in META_METHODS)),
        Claim(6, "RMNW-Net's detection AUC ≥ MW-Net*'s under uniform and flip2 noise",
              "§4.1 \"RMNW-Net ... performs better than MW-Net*\"; Table 3 shows it for uniform and flip2 "
              "on CIFAR-10 (not for flip: see claim 7)", AUC_BEST, "not_lower", TABLE1_NOISY,
              (("rmnwnet", "mwnet"),)),
        Claim(7, "RMNW-Net's detection AUC is close to MW-Net*'s under flip noise",
              "§4.1 \"RMNW-Net retains strong performance for all cases\"; Table 3, CIFAR-10 flip: "
              "MW-Net* ahead by 0.005 and 0.011", AUC_BEST, "not_lower", ("flip15", "flip30"),
              (("rmnwnet", "mwnet"),), margin=0.02),
        Claim(8, "RMNW-Net's detection AUC > MNW-Net's",
              "§4.1 and Table 3: the MAE meta loss is what lets noisy meta samples teach the weighting "
              "(MNW-Net's AUC falls to 0.25-0.51 under flip2 and flip)", AUC_BEST, "greater", NOISY_SETTINGS,
              (("rmnwnet", "mnwnet"),)),
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
        if self.tolerance == 0 and relation != "approx":
            needs = {"greater": "needs Δ > 0", "not_lower": "needs Δ ≥ 0"}[relation]
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
        return f"{len(self.comparisons)} of {len(self.claim.comparisons_asked())} comparisons measured"


def pooled_std(a: Summary, b: Summary) -> float:
    """Root mean square of the two sides' standard deviations; an unknown std counts as 0.

    With one seed per side the spread is unknown, so the rules then reduce to the margin (and
    the report says how many seeds each comparison rests on).
    """
    return math.sqrt(((a.std or 0.0) ** 2 + (b.std or 0.0) ** 2) / 2.0)


def compare(relation: str, a: Summary, b: Summary, metric: Metric, margin: float = 0.0) -> tuple[float, float, bool]:
    """(difference, tolerance, holds) of "a <relation> b", in the metric's shown units."""
    difference = (a.mean - b.mean) * metric.scale
    tolerance = max(margin, pooled_std(a, b) * metric.scale)
    if relation == "approx":
        return difference, tolerance, abs(difference) <= tolerance
    if relation == "greater":
        return difference, tolerance, difference > tolerance
    if relation == "not_lower":
        return difference, tolerance, difference >= -tolerance
    raise ValueError(f"unknown relation {relation!r}")


Lookup = Callable[[Metric, str, str], "Summary | None"]  # (metric, setting, method) -> Summary


def entries_lookup(entries: Sequence[dict]) -> Lookup:
    return lambda metric, setting, method: summarize(entries, setting, method, metric.key)


def evaluate_claim(claim: Claim, lookup: Lookup) -> ClaimResult:
    """HOLDS if every measured comparison holds, FAILS if any fails, else NOT YET MEASURED."""
    comparisons = []
    for setting, method_a, method_b in claim.comparisons_asked():
        a, b = lookup(claim.metric, setting, method_a), lookup(claim.metric, setting, method_b)
        if a is None or b is None:
            continue
        difference, tolerance, holds = compare(claim.relation, a, b, claim.metric, claim.margin)
        comparisons.append(Comparison(setting, method_a, method_b, a, b, difference, tolerance, holds))
    if not comparisons:
        verdict = NOT_YET_MEASURED
    else:
        verdict = HOLDS if all(c.holds for c in comparisons) else FAILS
    return ClaimResult(claim, verdict, tuple(comparisons))


def evaluate_claims(entries: Sequence[dict]) -> list[ClaimResult]:
    return [evaluate_claim(claim, entries_lookup(entries)) for claim in paper_claims()]


def sanity_row() -> list[ClaimResult]:
    """Every rule applied to the paper's own CIFAR-10 numbers (mean ± std of 5 seeds): all must hold."""
    return [evaluate_claim(claim, paper_summary) for claim in paper_claims()]


# ------------------------------------------------------------------------------------ targets
@dataclasses.dataclass(frozen=True)
class Target:
    """A fixed bar of the issue at one setting, judged on the means: "a - b >= threshold" (b given),
    "|a - b| <= threshold" ("within"), or "a >= threshold" (b None)."""

    statement: str
    setting: str
    metric: Metric
    method_a: str
    method_b: str | None
    relation: str  # "at_least" | "within"
    threshold: float  # in shown units


@dataclasses.dataclass(frozen=True)
class TargetResult:
    target: Target
    verdict: str
    a: Summary | None
    b: Summary | None
    value: float | None  # the judged number in shown units (difference, or a's mean)


def issue_targets() -> tuple[Target, ...]:
    """The issue's targets at uniform 40%, read off Table 1 (and Table 3 for the AUC)."""
    return (
        Target("RMNW-Net ≥ Base + 5 points", "uniform40", ACCURACY, "rmnwnet", "base", "at_least", 5.0),
        Target("RMNW-Net within 1.5 points of MW-Net*", "uniform40", ACCURACY, "rmnwnet", "mwnet", "within", 1.5),
        Target("RMNW-Net's detection AUC ≥ 0.95", "uniform40", AUC_FINAL, "rmnwnet", None, "at_least", 0.95),
    )


def evaluate_target(target: Target, lookup: Lookup) -> TargetResult:
    a = lookup(target.metric, target.setting, target.method_a)
    b = None if target.method_b is None else lookup(target.metric, target.setting, target.method_b)
    if a is None or (target.method_b is not None and b is None):
        return TargetResult(target, NOT_YET_MEASURED, a, b, None)
    value = (a.mean - (b.mean if b is not None else 0.0)) * target.metric.scale
    holds = abs(value) <= target.threshold if target.relation == "within" else value >= target.threshold
    return TargetResult(target, HOLDS if holds else FAILS, a, b, value)


def evaluate_targets(entries: Sequence[dict]) -> list[TargetResult]:
    return [evaluate_target(target, entries_lookup(entries)) for target in issue_targets()]


def paper_target_row() -> list[TargetResult]:
    """The targets on the paper's own numbers (its Table 3 AUC is the best over training)."""
    def lookup(metric, setting, method):
        return paper_summary(AUC_BEST if metric is AUC_FINAL else metric, setting, method)

    return [evaluate_target(target, lookup) for target in issue_targets()]


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


