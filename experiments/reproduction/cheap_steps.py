"""The cheap meta steps re-judged at protocol v3 (issue 21, item 6), against issue 14's bar.

Issue 14 judged `--meta_step=head` and `--meta_every=4` at v2.1, where the exact step itself
gained nothing, so "the cheap step loses nothing" could not be told from "there was nothing to
lose". At v3 the exact step's weighting net learns a falling W, so the question has an answer.
Each cheap step runs as a variant of v3 that differs only in how the meta-gradient is computed,
with its own runs and report folder, e.g.

    python scripts/reproduce.py --protocol=v3 --settings=uniform40 --methods=rmnwnet --seeds=0,1 \
        --meta_step=head --runs_dir=results/runs_v3_head --out_dir=results/v3/v3_cheap_head

and is paired seed by seed with the grid's exact RMNW-Net cells (same seed: same noisy labels,
meta set, order and initialisation). The bar is issue 14's: the cheap step's mean final test
accuracy within 1 point and mean final detection AUC within 0.02 of the exact step's on the same
seeds. With two seeds the 95% intervals shown beside the means are wide; the bar reads the means.

Reads reproduction.json files only (no TensorFlow).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Mapping, Sequence

from absl import logging

from rmwnet_tf.config import Config

from experiments.reproduction.claims import ACCURACY, AUC_BEST, AUC_FINAL, Metric
from experiments.reproduction.paired import PairedDifference, paired_difference

CHEAP_FIELDS = ("meta_step", "meta_every")
EXACT_STEP = {"meta_step": "exact", "meta_every": 1}  # the grid's values of CHEAP_FIELDS (Config's defaults)
ACCURACY_BAR_POINTS = 1.0
AUC_BAR = 0.02
METHOD = "rmnwnet"
MEMORISED = Metric("final/fit/noisy_memorised", "wrong labels memorised at the end", 100.0, 1, " points")
SECONDS_PER_STEP = Metric("seconds_per_step", "training seconds per step", 1.0, 3, " s")
COMPARED = (ACCURACY, AUC_FINAL, AUC_BEST, MEMORISED, SECONDS_PER_STEP)


@dataclasses.dataclass(frozen=True)
class CheapVariant:
    folder: str  # the variant's report folder, relative to the main report's
    label: str  # e.g. "meta_step=head"
    entries: tuple[Mapping, ...]


def mode_label(fields: Mapping) -> str:
    """How a variant computes its meta step, e.g. "meta_step=head" or "meta_every=4"."""
    parts = [f"{name}={fields[name]}" for name in CHEAP_FIELDS
             if name in fields and fields[name] != EXACT_STEP[name]]
    return ", ".join(parts) or "exact"


_DEFAULTS = {field.name: field.default for field in dataclasses.fields(Config)}


def find_cheap_variants(results_dir, protocol_name: str, protocol_fields: Mapping) -> list[CheapVariant]:
    """Every report folder under `results_dir` of this protocol whose fields differ from
    `protocol_fields` in the meta step's fields only. An unreadable report is skipped with a warning."""
    variants = []
    for path in sorted(pathlib.Path(results_dir).glob("*/reproduction.json")):
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            logging.warning("skipping report %s: %s", path, error)
            continue
        # Another protocol's report (v2.1's names its protocol by a dict of fields) is not a variant.
        if not isinstance(saved, dict) or saved.get("protocol") != protocol_name:
            continue
        fields, entries = saved.get("protocol_fields"), saved.get("entries")
        if not isinstance(fields, dict) or not isinstance(entries, list):
            logging.warning("skipping report %s: no protocol_fields or entries", path)
            continue
        # A field added to Config since the report was written takes its default, which is the
        # behaviour from before it existed (config.upgrade_saved's rule).
        changed = {key for key in set(fields) | set(protocol_fields)
                   if fields.get(key, _DEFAULTS.get(key)) != protocol_fields.get(key, _DEFAULTS.get(key))}
        if changed and changed <= set(CHEAP_FIELDS):
            variants.append(CheapVariant(path.parent.name, mode_label(fields), tuple(entries)))
    return variants


@dataclasses.dataclass(frozen=True)
class CheapComparison:
    setting: str
    label: str
    differences: dict  # metric key -> PairedDifference | None (cheap − exact)

    @property
    def seeds(self) -> tuple[int, ...]:
        accuracy = self.differences[ACCURACY.key]
        return tuple(seed for seed, _ in accuracy.per_seed) if accuracy else ()

    @property
    def within_bar(self) -> bool | None:
        """Issue 14's bar on the paired means; None until both measures have a common seed."""
        accuracy, auc = self.differences[ACCURACY.key], self.differences[AUC_FINAL.key]
        if accuracy is None or auc is None:
            return None
        return abs(accuracy.mean) <= ACCURACY_BAR_POINTS and abs(auc.mean) <= AUC_BAR


def compare(exact_entries: Sequence[Mapping], variant: CheapVariant, setting: str) -> CheapComparison | None:
    """The variant's RMNW-Net cells minus the grid's exact ones, per seed both finished."""
    cheap = [{**e, "method": "cheap"} for e in variant.entries if e["method"] == METHOD]
    exact = [e for e in exact_entries if e["method"] == METHOD]
    differences = {metric.key: paired_difference([*cheap, *exact], setting, "cheap", METHOD, metric)
                   for metric in COMPARED}
    if differences[ACCURACY.key] is None:
        return None
    return CheapComparison(setting, variant.label, differences)


def comparisons(exact_entries: Sequence[Mapping], variants: Sequence[CheapVariant],
                settings: Sequence) -> list[tuple[CheapVariant, CheapComparison]]:
    """Every (variant, comparison) with a seed in common with the grid, setting by setting."""
    found = [(variant, compare(exact_entries, variant, setting.name)) for setting in settings for variant in variants]
    return [(variant, comparison) for variant, comparison in found if comparison is not None]


def _text(difference: PairedDifference | None) -> str:
    return "—" if difference is None else difference.text()


def section(exact_entries: Sequence[Mapping], variants: Sequence[CheapVariant], settings: Sequence) -> str:
    """The report's *Cheap meta steps* section: one row per variant and setting with a common seed;
    nothing at all for a protocol no cheap step was run under (v3.1's report has no such section)."""
    if not variants:
        return ""
    lines = ["## Cheap meta steps, re-judged in this regime (issue 14's bar)", "",
             f"RMNW-Net with a cheaper meta-gradient minus the exact step, paired by seed (mean [95% interval] "
             f"(per seed)). The bar (issue 14): mean final test accuracy within {ACCURACY_BAR_POINTS:g} point and "
             f"mean final detection AUC within {AUC_BAR:g} of the exact step's on the same seeds. Seconds per "
             "step are the runs' own training time, taken beside other work: a cost hint, not a benchmark "
             "(BUILD_NOTES.md has the idle step benchmark)."]
    labels = {setting.name: setting.label for setting in settings}
    rows = []
    for variant, found in comparisons(exact_entries, variants, settings):
        verdict = {True: "yes", False: "**no**", None: "—"}[found.within_bar]
        cells = " | ".join(_text(found.differences[m.key]) for m in COMPARED)
        rows.append(f"| {labels[found.setting]} | `{found.label}` ([report]({variant.folder}/REPRODUCTION.md)) | "
                    f"{cells} | {verdict} |")
    if not rows:
        return "\n".join(lines + ["", "No cheap-step variant has a seed in common with the grid yet."])
    header = " | ".join(f"Δ {m.name}" for m in COMPARED)
    return "\n".join(lines + ["", f"| noise | meta step | {header} | within the bar |",
                              "|---" * (len(COMPARED) + 3) + "|", *rows])


def as_json(exact_entries: Sequence[Mapping], variants: Sequence[CheapVariant], settings: Sequence) -> list[dict]:
    """The section's numbers for reproduction.json."""
    return [{"setting": found.setting, "meta_step": found.label, "report": variant.folder,
             "within_bar": found.within_bar, "differences": {
                 key: None if d is None else {"mean": d.mean, "low": d.low, "high": d.high, "per_seed": dict(d.per_seed)}
                 for key, d in found.differences.items()}}
            for variant, found in comparisons(exact_entries, variants, settings)]
