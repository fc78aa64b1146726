"""The diagnostic's statistics (experiments/meta_gradient_direction.py) on arrays with known answers."""

import numpy as np
import pytest

from experiments.meta_gradient_direction import summarise


def test_a_signal_rising_with_the_loss_asks_for_an_increasing_weight():
    losses = np.array([[0.1, 0.5, 2.0, 3.0], [1.1, 1.5, 3.0, 4.0]])
    noisy = np.array([[False, False, True, True], [False, False, True, True]])
    result = summarise(losses, 2.0 * losses + 7.0, noisy)
    assert result["spearman_signal_loss"] == pytest.approx(1.0)
    assert result["pearson_centred"] == pytest.approx(1.0)
    assert result["auc_signal_clean"] == pytest.approx(0.0)  # it prefers the wrongly labelled ones


def test_centring_per_batch_removes_a_shift_between_batches():
    """Batch 2 has higher losses *and* higher signals, but within each batch the signal falls
    with the loss: pooled Spearman sees a rise, the per-batch centred correlation the fall."""
    losses = np.array([[0.0, 1.0], [10.0, 11.0]])
    signal = np.array([[1.0, 0.0], [11.0, 10.0]])
    noisy = np.array([[False, True], [False, True]])
    result = summarise(losses, signal, noisy)
    assert result["spearman_signal_loss"] > 0
    assert result["pearson_centred"] == pytest.approx(-1.0)
    assert result["auc_signal_clean"] == pytest.approx(0.75)
