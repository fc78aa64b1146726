"""Detection metrics and the review order: exact values on hand-made inputs."""

import numpy as np
import pytest

from rmwnet_tf.evaluate import spearman
from rmwnet_tf.metrics import average_ranks, detection_auc, suspicion_ranks


def test_average_ranks_share_ties():
    np.testing.assert_array_equal(average_ranks([3.0, 1.0, 3.0, 2.0]), [3.5, 1.0, 3.5, 2.0])


@pytest.mark.parametrize(
    "scores, is_noisy, expected",
    [
        ([0.9, 0.8, 0.2, 0.1], [False, False, True, True], 1.0),  # clean all above noisy
        ([0.1, 0.2, 0.8, 0.9], [False, False, True, True], 0.0),  # reversed
        ([0.5, 0.5, 0.5, 0.5], [False, True, False, True], 0.5),  # all tied
        # clean {0.9, 0.8} vs noisy {0.8, 0.3}: pairs 1 + 1 + 0.5 (tie) + 1 = 3.5 of 4
        ([0.9, 0.8, 0.8, 0.3], [False, True, False, True], 0.875),
        # clean {3, 1} vs noisy {2}: one win, one loss
        ([3.0, 2.0, 1.0], [False, True, False], 0.5),
        # clean {2} vs noisy {1, 3, 0}: beats two of three
        ([1.0, 2.0, 3.0, 0.0], [True, False, True, True], 2.0 / 3.0),
    ],
)
def test_detection_auc_exact(scores, is_noisy, expected):
    assert detection_auc(scores, is_noisy) == pytest.approx(expected, abs=1e-12)


def test_detection_auc_undefined_with_one_class():
    assert detection_auc([0.1, 0.7], [False, False]) is None
    assert detection_auc([0.1, 0.7], [True, True]) is None


def test_detection_auc_rejects_nan():
    with pytest.raises(ValueError, match="finite"):
        detection_auc([0.1, np.nan], [False, True])


def test_suspicion_ranks_weight_then_loss_then_index():
    weights = [0.5, 0.2, 0.5, 0.2, 0.9]
    losses = [1.0, 0.3, 2.0, 0.3, 0.1]
    # 0.2 tie with equal losses -> lower position first; 0.5 tie -> higher loss first
    np.testing.assert_array_equal(suspicion_ranks(weights, losses), [4, 1, 3, 2, 5])
    # explicit sample indices decide the last tie instead of position
    np.testing.assert_array_equal(suspicion_ranks(weights, losses, indices=[9, 8, 7, 6, 5]), [4, 2, 3, 1, 5])


@pytest.mark.parametrize("a, b, expected", [
    ([1, 2, 3, 4], [10, 20, 30, 40], 1.0),
    ([1, 2, 3, 4], [4, 3, 2, 1], -1.0),
    ([1, 2, 3], [1, 3, 2], 0.5),  # d^2 = 0 + 1 + 1: 1 - 6*2/(3*8)
])
def test_spearman_exact(a, b, expected):
    assert spearman(a, b) == pytest.approx(expected, abs=1e-12)


def test_spearman_undefined_for_a_constant():
    assert spearman([1, 1, 1], [1, 2, 3]) is None
