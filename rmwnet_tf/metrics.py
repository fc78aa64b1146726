"""Label-noise detection metrics (pure numpy, no sklearn).

The learned weight W(loss) doubles as a detector of wrong labels: a sample the
weighting net trusts less is more likely mislabelled. The paper (Table 3)
scores this with the AUC of the weight as a "label is clean" score; these
helpers compute that number exactly and turn weights into a review order.
"""

from __future__ import annotations

import numpy as np


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of `values`, ties sharing the mean of the ranks they span.

    Average ranks make the Mann-Whitney statistic count a tie between a clean
    and a noisy sample as half a correct ordering, which is what AUC means.
    """
    values = np.asarray(values)
    unique, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    del unique
    first_rank = np.cumsum(counts) - counts + 1  # rank of the first member of each tie group
    mean_rank = first_rank + (counts - 1) / 2.0
    return mean_rank[inverse.reshape(-1)].reshape(values.shape)


def detection_auc(scores, is_noisy) -> float | None:
    """AUC of `scores` as a score for "this training label is CLEAN".

    Positives are clean samples (is_noisy False). 1.0: every clean sample scores
    above every noisy one; 0.5: no better than chance; 0.0: perfectly reversed.
    Computed exactly with the Mann-Whitney rank statistic (ties count 1/2).
    Returns None when only one class is present, since AUC is then undefined
    (e.g. noise rate 0, or an epoch that saw no noisy sample).
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    is_noisy = np.asarray(is_noisy, dtype=bool).reshape(-1)
    if scores.shape != is_noisy.shape:
        raise ValueError(f"scores {scores.shape} and is_noisy {is_noisy.shape} differ in length")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores must be finite; drop unseen (NaN) samples first")
    is_clean = ~is_noisy
    num_clean = int(is_clean.sum())
    num_noisy = int(is_noisy.sum())
    if num_clean == 0 or num_noisy == 0:
        return None
    rank_sum_clean = average_ranks(scores)[is_clean].sum()
    wins = rank_sum_clean - num_clean * (num_clean + 1) / 2.0  # Mann-Whitney U of the clean class
    return float(wins / (num_clean * num_noisy))


def suspicion_ranks(weights, losses, indices=None) -> np.ndarray:
    """Review order for mislabelled samples: rank 1 = most suspicious.

    Lowest weight first (the weighting net trusts it least); equal weights
    (e.g. method base, or a saturated W) fall back to higher loss first, then
    to lower sample index (or position when `indices` is None) so the order is
    total and reproducible. NaN weights/losses go last within their key.
    Returns int64 ranks 1..N aligned with the inputs.
    """
    weights = np.asarray(weights, dtype=np.float64).reshape(-1)
    losses = np.asarray(losses, dtype=np.float64).reshape(-1)
    tie_break = np.arange(weights.size) if indices is None else np.asarray(indices).reshape(-1)
    if not (weights.shape == losses.shape == tie_break.shape):
        raise ValueError(
            f"weights {weights.shape}, losses {losses.shape}, indices {tie_break.shape} differ in length"
        )
    order = np.lexsort((tie_break, -losses, weights))  # last key is the primary one
    ranks = np.empty(weights.size, dtype=np.int64)
    ranks[order] = np.arange(1, weights.size + 1)
    return ranks
