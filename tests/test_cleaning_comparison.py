"""The cleaning comparison's scores, exactly, on hand-made detectors."""

import numpy as np
import pytest

from experiments.cleaning_comparison import compare, scores


def test_scores_of_a_flagged_set_and_a_ranking():
    noisy = np.array([True, False, True, False, False, True])
    flagged = np.array([True, True, False, False, False, True])  # 2 of 3 flagged are noisy
    order = np.array([0, 1, 2, 3, 4, 5])  # top k=3: positions 0, 1, 2 -> 2 noisy
    s = scores(flagged, order, noisy)
    assert s == dict(flagged=3, precision=2 / 3, recall=2 / 3, precision_at_k=2 / 3, k=3)


def test_compare_runs_cleanlab_on_both_runs():
    pytest.importorskip("cleanlab")
    rng = np.random.default_rng(0)
    n, k = 200, 4
    clean = np.arange(n) % k
    given = clean.copy()
    given[:40] = (clean[:40] + 1) % k  # 40 wrong labels
    probs = np.full((n, k), 0.02)
    probs[np.arange(n), clean] = 0.94  # a model that predicts the true class
    run = dict(index=np.arange(n), probs=probs, given=given, noisy=given != clean,
               rank=np.argsort(np.argsort(-(given != clean).astype(float) - rng.random(n) * 0.1)) + 1,
               loss=-np.log(probs[np.arange(n), given]), predicted=clean)
    result = compare(run, run)
    for name, s in result.items():
        assert s["k"] == 40 and s["precision_at_k"] == 1.0, name
    assert result["cleanlab on Base's pred_probs"]["flagged"] == 40
