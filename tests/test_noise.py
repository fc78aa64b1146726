"""Label-noise module: exact matrices, statistics of the draws, and refusal of bad settings."""

import subprocess
import sys

import numpy as np
import pytest

from rmwnet_tf import noise

K = 10
NOISY_TYPES = ["uniform", "flip", "flip2"]


# -- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "noise_type, rate, limit",
    [
        ("flip", 0.5, "0.5"),
        ("flip", 0.6, "0.5"),
        ("flip2", 2 / 3, "2/3"),
        ("flip2", 0.9, "2/3"),
        ("uniform", 1.0, "1"),
    ],
)
def test_majority_noise_is_refused_with_reason(noise_type, rate, limit):
    expected = rf"majority for noise_type='{noise_type}' \(needs rate < {limit}\)"
    with pytest.raises(ValueError, match=expected):
        noise.validate_noise(noise_type, rate, K)
    with pytest.raises(ValueError, match="majority"):
        noise.corrupt_labels(np.arange(K), noise_type, rate, K, seed=0)
    with pytest.raises(ValueError, match="majority"):
        noise.transition_matrix(noise_type, rate, K, seed=0)


def test_majority_message_names_the_rate():
    with pytest.raises(ValueError) as error:
        noise.validate_noise("flip", 0.6, K)
    assert str(error.value) == (
        "noise_rate=0.6 makes the flipped class the majority for noise_type='flip' "
        "(needs rate < 0.5)"
    )


@pytest.mark.parametrize(
    "noise_type, rate, num_classes, message",
    [
        ("flip", -0.1, K, "must be >= 0"),
        ("uniform", float("nan"), K, "finite"),
        ("uniform", float("inf"), K, "finite"),
        ("none", float("nan"), K, "finite"),
        ("pairflip", 0.2, K, "unknown noise_type='pairflip'"),
        ("uniform", 0.2, 1, "num_classes >= 2"),
        ("flip", 0.2, 1, "num_classes >= 2"),
        ("flip2", 0.2, 2, "num_classes >= 3"),
        ("flip", 0.2, 2.5, "num_classes must be an integer"),
        ("flip", "a lot", K, "noise_rate must be a number"),
    ],
)
def test_bad_settings_are_refused(noise_type, rate, num_classes, message):
    with pytest.raises(ValueError, match=message):
        noise.validate_noise(noise_type, rate, num_classes)


@pytest.mark.parametrize(
    "noise_type, rate",
    [("flip", 0.49), ("flip2", 0.66), ("uniform", 0.99), ("none", 0.0), ("none", 0.7),
     ("flip2", 0)],
)
def test_rates_just_below_the_limits_are_accepted(noise_type, rate):
    noise.validate_noise(noise_type, rate, K if noise_type != "flip2" else 3)


# -- transition matrices ------------------------------------------------------------------


def test_none_is_identity():
    np.testing.assert_array_equal(noise.transition_matrix("none", 0.0, K, seed=3), np.eye(K))


@pytest.mark.parametrize("rate", [0.0, 0.2, 0.4, 0.8])
def test_uniform_matches_definition(rate):
    expected = (1 - rate) * np.eye(K) + rate / K * np.ones((K, K))
    matrix = noise.transition_matrix("uniform", rate, K, seed=0)
    np.testing.assert_allclose(matrix, expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.diag(matrix), 1 - rate + rate / K, rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 7])
@pytest.mark.parametrize("noise_type, rate, targets", [("flip", 0.4, 1), ("flip2", 0.6, 2)])
def test_flip_noise_matches_definition(noise_type, rate, targets, seed):
    """flip: one fixed random target per class with prob. rate; flip2: two, rate/2 each."""
    matrix = noise.transition_matrix(noise_type, rate, K, seed)
    np.testing.assert_array_equal(np.diag(matrix), np.full(K, 1 - rate))
    for c in range(K):
        off = np.delete(matrix[c], c)
        assert np.count_nonzero(off) == targets  # distinct targets, never the class itself
        np.testing.assert_array_equal(off[off > 0], [rate / targets] * targets)
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0, rtol=0, atol=1e-12)


def test_flip2_with_three_classes_uses_both_other_classes():
    matrix = noise.transition_matrix("flip2", 0.5, 3, seed=0)
    np.testing.assert_array_equal(matrix, [[0.5, 0.25, 0.25], [0.25, 0.5, 0.25], [0.25, 0.25, 0.5]])


@pytest.mark.parametrize("noise_type", ["flip", "flip2"])
def test_flip_targets_depend_on_seed_only(noise_type):
    first = noise.transition_matrix(noise_type, 0.3, K, seed=5)
    np.testing.assert_array_equal(first, noise.transition_matrix(noise_type, 0.3, K, seed=5))
    assert not np.array_equal(first, noise.transition_matrix(noise_type, 0.3, K, seed=6))
    # the targets do not move with the rate
    assert np.array_equal(first > 0, noise.transition_matrix(noise_type, 0.1, K, seed=5) > 0)


# -- corrupting labels --------------------------------------------------------------------


def _labels(per_class=5000, seed=0):
    return np.random.default_rng(seed).permutation(np.repeat(np.arange(K), per_class))


@pytest.mark.parametrize("noise_type, rate", [("uniform", 0.4), ("flip", 0.4), ("flip2", 0.6)])
def test_empirical_transitions_match_matrix(noise_type, rate):
    clean = _labels()  # 50,000 labels, 5,000 per class
    noisy = noise.corrupt_labels(clean, noise_type, rate, K, seed=11)
    expected = noise.transition_matrix(noise_type, rate, K, seed=11)
    realised = noise.realised_matrix(clean, noisy, K)
    # 5-sigma binomial bound per entry; impossible transitions must never happen.
    sigma = np.sqrt(expected * (1 - expected) / 5000)
    assert np.all(np.abs(realised - expected) <= 5 * sigma + 1e-12)
    np.testing.assert_array_equal(realised[expected == 0], 0.0)
    changed = rate * (1 - 1 / K) if noise_type == "uniform" else rate
    tolerance = 5 * np.sqrt(changed * (1 - changed) / clean.size)
    assert abs(noise.realised_rate(clean, noisy) - changed) <= tolerance


@pytest.mark.parametrize("noise_type", NOISY_TYPES)
def test_same_seed_gives_identical_labels(noise_type):
    clean = _labels(per_class=300)
    a = noise.corrupt_labels(clean, noise_type, 0.4, K, seed=3)
    b = noise.corrupt_labels(clean, noise_type, 0.4, K, seed=3)
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.int64 and a.shape == clean.shape
    assert not np.array_equal(a, noise.corrupt_labels(clean, noise_type, 0.4, K, seed=4))


@pytest.mark.parametrize("noise_type", ["flip", "flip2"])
def test_second_draw_is_independent_but_uses_the_same_matrix(noise_type):
    clean = _labels(per_class=2000)
    first = noise.corrupt_labels(clean, noise_type, 0.4, K, seed=3)
    second = noise.corrupt_labels(clean, noise_type, 0.4, K, seed=3, draw=1)
    assert not np.array_equal(first, second)
    support = noise.transition_matrix(noise_type, 0.4, K, seed=3) > 0
    assert np.all(support[clean, first]) and np.all(support[clean, second])
    # independent draws: both flipped about rate**2 of the time (5 sigma)
    both = np.mean((first != clean) & (second != clean))
    assert abs(both - 0.16) <= 5 * np.sqrt(0.16 * 0.84 / clean.size)


def test_zero_rate_and_none_return_the_labels():
    clean = _labels(per_class=10)
    for noise_type in ["none", *NOISY_TYPES]:
        unchanged = noise.corrupt_labels(clean, noise_type, 0.0, K, seed=1)
        np.testing.assert_array_equal(unchanged, clean)


def test_shape_is_kept_and_bad_labels_are_refused():
    clean = _labels(per_class=6).reshape(6, K)
    assert noise.corrupt_labels(clean, "uniform", 0.5, K, seed=0).shape == (6, K)
    with pytest.raises(ValueError, match=r"must lie in \[0, 10\)"):
        noise.corrupt_labels([0, 10], "uniform", 0.5, K, seed=0)
    with pytest.raises(ValueError, match="must be integers"):
        noise.corrupt_labels([0.0, 1.5], "uniform", 0.5, K, seed=0)


# -- realised statistics ------------------------------------------------------------------


def test_realised_matrix_exact_and_empty_rows_are_identity():
    clean = np.array([0, 0, 0, 0, 1, 1])
    noisy = np.array([0, 0, 1, 2, 1, 0])
    expected = [[0.5, 0.25, 0.25], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]
    np.testing.assert_allclose(noise.realised_matrix(clean, noisy, 3), expected, rtol=0, atol=1e-12)
    assert noise.realised_rate(clean, noisy) == 3 / 6
    assert noise.realised_rate([], []) == 0.0
    with pytest.raises(ValueError, match="differ in shape"):
        noise.realised_matrix(clean, noisy[:3], 3)


def test_noise_module_does_not_import_tensorflow():
    code = "import sys, rmwnet_tf.noise; sys.exit('tensorflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
