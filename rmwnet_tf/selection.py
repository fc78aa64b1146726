"""Gold-free checkpoint selection: which evaluated epoch to keep when no label can be trusted.

A user with noisy labels has no clean test set to pick the best epoch with (the paper's and the
official code's "best" is picked on the test set). What every run does have is its meta set
with its own, possibly noisy, labels, scored un-augmented at each evaluation.

The criterion is the meta set's *accuracy* on those labels. Under uniform noise of rate eta
(a label redrawn from all K classes with probability eta), the expected accuracy on noisy
labels is (1 - eta) * clean accuracy + eta / K: an affine function with a positive slope, so
it ranks checkpoints as the clean accuracy does. The same argument holds for the meta MAE
(the symmetry of the paper's Theorem 1), which was the first criterion; measured on protocol
v2.1's 16 uniform cells it was the wrong one (BUILD_NOTES, "Gold-free selection: accuracy, not
MAE"): MAE rewards the confidence a memorising network keeps gaining after its accuracy has
peaked, so it picked late epochs well below the test-picked best, with *clean* meta labels
(MW-Net*) as with noisy ones, where the meta accuracy came close to that best.
Under flip noise neither is an affine function of its clean counterpart.

This module imports no TensorFlow, so the reproduction report can apply it to old histories.
"""
from __future__ import annotations

from typing import Mapping, Sequence

# Criterion name -> (history metric, +1 when higher is better, -1 when lower is).
CRITERIA = {"meta_accuracy": ("meta/accuracy", +1), "meta_mae": ("meta/mae", -1)}
DEFAULT_CRITERION = "meta_accuracy"
# Why a run has no selected epoch (results.json `selection_note`): the criterion needs a meta set,
# and only Base trains without one, on every training sample.
NO_META_SET = ("no epoch selected: the criterion scores the meta set with its own labels, and this run "
               "held none out (a method without a meta set, base, gce or oracle, trains on every training sample; "
               "with --hold_out_meta=true it leaves out the meta set a meta method would take, and is selected "
               "the same way)")


def select_epoch(history: Sequence[Mapping], criterion: str = DEFAULT_CRITERION) -> int | None:
    """The evaluated epoch the criterion prefers; None when no evaluation scored a meta set.

    Ties (accuracy on 1,000 meta samples ties often) go to the earlier epoch, not to the lower
    MAE: that would bring back the preference for a memorising network's late confidence
    (tried first; BUILD_NOTES has both).
    """
    metric, sign = CRITERIA[criterion]
    scored = [(-sign * row[metric], row["epoch"]) for row in history if row.get(metric) is not None]
    return min(scored)[1] if scored else None


def selected_row(history: Sequence[Mapping], criterion: str = DEFAULT_CRITERION) -> Mapping:
    """The history row of the selected epoch; empty when nothing was selected."""
    epoch = select_epoch(history, criterion)
    return next((row for row in history if row["epoch"] == epoch), {})
