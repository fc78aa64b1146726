"""The numbers of results.json, each under its history name, prefixed by the row it comes from.

A metric has one name from the step that measures it to the report that quotes it:
`test/accuracy` in the history, `final/test/accuracy` in a flattened results.json and in every
reproduction entry. The sections:

    final/<metric>       the last evaluation (every metric it measured, and its epoch)
    best/<metric>        the highest value over the evaluations, for BEST_OF: test/accuracy (the
                         paper's and the official code's "best", picked with clean test labels),
                         detection/auc and detection/auc_loss (the paper's Table 3: best over training)
    best_epoch/<metric>  the epoch of that value
    selected/<metric>    the epoch the meta set picks (selection.py; no clean labels needed), every
                         metric of it and its epoch; absent without a meta set (`selection_note` says why)

Run folders written before this scheme are read through `upgrade`, which recomputes the same
sections from the history the old file carries, so they report the same numbers.
This module imports no TensorFlow.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from rmwnet_tf import selection

SECTIONS = ("final", "best", "best_epoch", "selected")
BEST_OF = ("test/accuracy", "detection/auc", "detection/auc_loss")
# results.json keys of the first scheme, replaced by the sections above (read by `upgrade` only).
_FIRST_SCHEME = ("test_accuracy_final", "test_accuracy_best", "best_epoch", "selected_epoch", "test_accuracy_selected",
                 "detection_auc_final", "detection_auc_best", "detection_auc_loss_final", "train_images_per_second")


def _evaluated(history: Sequence[Mapping]) -> list[Mapping]:
    return [row for row in history if row.get("test/accuracy") is not None]


def _metrics(row: Mapping) -> dict:
    """A history row's measurements (names with a '/') and its epoch; the timings stay in the history."""
    return {key: value for key, value in row.items() if "/" in key or key == "epoch"}


def summarise(history: Sequence[Mapping]) -> dict:
    """The four sections of results.json, from a run's history."""
    evaluated = _evaluated(history)
    best, best_epoch = {}, {}
    for metric in BEST_OF:
        scored = [(row[metric], -row["epoch"]) for row in evaluated if row.get(metric) is not None]
        if scored:  # the highest value; ties go to the earlier epoch
            value, negative_epoch = max(scored)
            best[metric], best_epoch[metric] = value, -negative_epoch
    selected = selection.selected_row(history)
    return {
        "final": _metrics(evaluated[-1]) if evaluated else {},
        "best": best,
        "best_epoch": best_epoch,
        "selected": _metrics(selected),
        "selected_by": selection.DEFAULT_CRITERION if selected else None,
        "selection_note": None if selected else selection.NO_META_SET,
        "train_seconds": float(sum(row.get("train_seconds") or 0.0 for row in history)),
    }


def flat(results: Mapping) -> dict:
    """{'final/test/accuracy': ..., 'best_epoch/test/accuracy': ..., 'selected/epoch': ...}."""
    return {f"{section}/{metric}": value for section in SECTIONS for metric, value in (results.get(section) or {}).items()}


def upgrade(results: dict | None) -> dict | None:
    """A results.json of the first scheme (flat renamed keys) in today's sections, from its own history."""
    if results is None or "best" in results or "history" not in results:
        return results
    upgraded = {key: value for key, value in results.items() if key not in _FIRST_SCHEME}
    upgraded.update(summarise(results["history"]))
    upgraded["images_per_second"] = results.get("train_images_per_second")
    return upgraded

