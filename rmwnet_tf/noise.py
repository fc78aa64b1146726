"""Synthetic label noise: transition matrices and label corruption (numpy only).

Everything here is a pure function of its arguments, so a run's noisy labels can be
recomputed from (noise_type, rate, num_classes, seed) alone and never need to be stored.

Random streams: ``seed`` feeds a ``np.random.SeedSequence``; the matrix (the random flip
targets) is drawn from spawn key ``(0,)`` and the label draws from spawn key ``(1, draw)``.
Keeping them apart means a second, independent corruption of the same labels under the
*same* matrix (``draw=1``, used for the noisy meta set) is just another ``draw`` value.
"""

from __future__ import annotations

import math
import operator

import numpy as np

NOISE_TYPES = ("none", "uniform", "flip", "flip2")

# Largest rate (exclusive) at which the true class still has the largest probability in
# its row; at or above it a noisy class ties with or beats the true one and nothing can be
# learned from the labels.
_MAJORITY_LIMIT = {"uniform": 1.0, "flip": 0.5, "flip2": 2.0 / 3.0}
_LIMIT_TEXT = {"uniform": "1", "flip": "0.5", "flip2": "2/3"}
_MIN_CLASSES = {"none": 2, "uniform": 2, "flip": 2, "flip2": 3}

_MATRIX_STREAM = 0
_LABEL_STREAM = 1


def validate_noise(noise_type: str, rate: float, num_classes: int) -> None:
    """Reject settings that are meaningless or leave the labels unlearnable, before any work.

    ``rate`` is ignored (beyond being a finite, non-negative number) for ``"none"``.
    """
    if noise_type not in NOISE_TYPES:
        raise ValueError(f"unknown noise_type={noise_type!r}; expected one of {NOISE_TYPES}")
    try:
        num_classes = operator.index(num_classes)
    except TypeError:
        raise ValueError(f"num_classes must be an integer, got {num_classes!r}") from None
    if num_classes < _MIN_CLASSES[noise_type]:
        raise ValueError(
            f"noise_type={noise_type!r} needs num_classes >= {_MIN_CLASSES[noise_type]}, "
            f"got {num_classes}"
        )
    try:
        rate = float(rate)
    except (TypeError, ValueError):
        raise ValueError(f"noise_rate must be a number, got {rate!r}") from None
    if not math.isfinite(rate):
        raise ValueError(f"noise_rate must be finite, got {rate}")
    if rate < 0:
        raise ValueError(f"noise_rate must be >= 0, got {rate}")
    if noise_type == "none":
        return
    if rate >= _MAJORITY_LIMIT[noise_type]:
        what = "the flipped class" if noise_type.startswith("flip") else "a wrong class"
        raise ValueError(
            f"noise_rate={rate:g} makes {what} the majority for noise_type={noise_type!r} "
            f"(needs rate < {_LIMIT_TEXT[noise_type]})"
        )


def _rng(seed: int, *spawn_key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=spawn_key))


def transition_matrix(noise_type: str, rate: float, num_classes: int, seed: int) -> np.ndarray:
    """T[i, j] = P(given label j | true label i); float64 [K, K], rows sum to 1.

    The flip targets are random (from ``seed``) rather than ``c -> c+1`` because that is how
    the reference experiments draw them; several classes may share a target.
    """
    validate_noise(noise_type, rate, num_classes)
    k, rate = int(num_classes), float(rate)
    eye = np.eye(k)
    if noise_type == "none" or rate == 0.0:
        return eye
    if noise_type == "uniform":
        return (1.0 - rate) * eye + (rate / k) * np.ones((k, k))
    rng = _rng(seed, _MATRIX_STREAM)
    matrix = (1.0 - rate) * eye
    targets_per_class = 1 if noise_type == "flip" else 2
    for c in range(k):
        others = np.delete(np.arange(k), c)
        targets = rng.choice(others, size=targets_per_class, replace=False)
        matrix[c, targets] += rate / targets_per_class
    return matrix


def corrupt_labels(
    labels, noise_type: str, rate: float, num_classes: int, seed: int, *, draw: int = 0
) -> np.ndarray:
    """Redraw each label y from row y of the transition matrix; int64, same shape.

    ``draw`` selects an independent label stream under the same matrix (0 = the training
    labels, 1 = the noisy meta labels); identical arguments give identical output.
    """
    validate_noise(noise_type, rate, num_classes)
    labels = np.asarray(labels)
    clean = _checked_labels(labels, num_classes, "labels")
    if noise_type == "none" or float(rate) == 0.0:
        return clean.copy()
    matrix = transition_matrix(noise_type, rate, num_classes, seed)
    cumulative = np.cumsum(matrix, axis=1)
    cumulative[:, -1] = 1.0  # rounding must never leave a gap above the last class
    uniforms = _rng(seed, _LABEL_STREAM, draw).random(clean.shape)
    noisy = np.empty_like(clean)
    for c in range(int(num_classes)):
        where = clean == c
        noisy[where] = np.searchsorted(cumulative[c], uniforms[where], side="right")
    return noisy


def realised_matrix(clean, noisy, num_classes: int) -> np.ndarray:
    """Empirical T[i, j] = fraction of class-i samples labelled j; empty rows are identity."""
    clean = _checked_labels(np.asarray(clean), num_classes, "clean")
    noisy = _checked_labels(np.asarray(noisy), num_classes, "noisy")
    if clean.shape != noisy.shape:
        raise ValueError(f"clean {clean.shape} and noisy {noisy.shape} differ in shape")
    k = int(num_classes)
    counts = np.bincount(clean.ravel() * k + noisy.ravel(), minlength=k * k)
    counts = counts.reshape(k, k).astype(np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    empty = totals[:, 0] == 0
    counts[empty] = np.eye(k)[empty]
    totals[empty] = 1.0
    return counts / totals


def realised_rate(clean, noisy) -> float:
    """Fraction of labels the corruption actually changed (0.0 for no labels)."""
    clean, noisy = np.asarray(clean), np.asarray(noisy)
    if clean.shape != noisy.shape:
        raise ValueError(f"clean {clean.shape} and noisy {noisy.shape} differ in shape")
    return float(np.mean(clean != noisy)) if clean.size else 0.0


def _checked_labels(labels: np.ndarray, num_classes: int, name: str) -> np.ndarray:
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{name} must be integers, got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"{name} must lie in [0, {num_classes}); found [{labels.min()}, {labels.max()}]"
        )
    return labels
