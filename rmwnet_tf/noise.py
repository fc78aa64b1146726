"""Synthetic label noise: transition matrices and label corruption (numpy only).

Everything here is a pure function of its arguments, so a run's noisy labels can be
recomputed from (noise_type, rate, num_classes, seed) alone and never need to be stored.

Random streams: ``seed`` feeds a ``np.random.SeedSequence``; the matrix (the random flip
targets) is drawn from spawn key ``(0,)`` and the label draws from spawn key ``(1, draw)``.
Keeping them apart means a second, independent corruption of the same labels under the
*same* matrix (``draw=1``, used for the noisy meta set) is just another ``draw`` value.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from typing import Callable

import numpy as np

_MATRIX_STREAM = 0
_LABEL_STREAM = 1


def _no_noise(k: int, rate: float, rng) -> np.ndarray:
    return np.eye(k)


def _uniform(k: int, rate: float, rng) -> np.ndarray:
    """Each label redrawn with probability `rate` from all K classes, its own included."""
    return (1.0 - rate) * np.eye(k) + (rate / k) * np.ones((k, k))


def _flip_to(targets_per_class: int):
    """A fraction `rate` of each class moves to `targets_per_class` random other classes, equally.

    The targets are random (from the seed) rather than ``c -> c+1`` because that is how the
    reference experiments draw them; several classes may share a target."""

    def matrix(k: int, rate: float, rng) -> np.ndarray:
        result = (1.0 - rate) * np.eye(k)
        for c in range(k):
            others = np.delete(np.arange(k), c)
            targets = rng.choice(others, size=targets_per_class, replace=False)
            result[c, targets] += rate / targets_per_class
        return result

    return matrix


@dataclasses.dataclass(frozen=True)
class NoiseModel:
    """One synthetic noise type: its transition matrix and the settings it can be used with.

    Adding a noise type is one entry in NOISE_MODELS (its name becomes a --noise_type choice)."""

    name: str
    matrix: Callable[[int, float, np.random.Generator], np.ndarray]  # (K, rate, rng) -> T
    min_classes: int
    # Largest rate (exclusive) at which the true class still has the largest probability in its
    # row; at or above it a noisy class ties with or beats the true one and nothing can be
    # learned from the labels. None: no limit (no noise).
    majority_limit: float | None
    limit_text: str = ""
    wrong_class: str = "a wrong class"  # what becomes the majority past the limit


NOISE_MODELS: dict[str, NoiseModel] = {m.name: m for m in (
    NoiseModel("none", _no_noise, 2, None),
    NoiseModel("uniform", _uniform, 2, 1.0, "1"),
    NoiseModel("flip", _flip_to(1), 2, 0.5, "0.5", "the flipped class"),
    NoiseModel("flip2", _flip_to(2), 3, 2.0 / 3.0, "2/3", "the flipped class"),
)}
NOISE_TYPES = tuple(NOISE_MODELS)


def validate_noise(noise_type: str, rate: float, num_classes: int) -> None:
    """Reject settings that are meaningless or leave the labels unlearnable, before any work.

    ``rate`` is ignored (beyond being a finite, non-negative number) for ``"none"``.
    """
    if noise_type not in NOISE_MODELS:
        raise ValueError(f"unknown noise_type={noise_type!r}; expected one of {NOISE_TYPES}")
    model = NOISE_MODELS[noise_type]
    try:
        num_classes = operator.index(num_classes)
    except TypeError:
        raise ValueError(f"num_classes must be an integer, got {num_classes!r}") from None
    if num_classes < model.min_classes:
        raise ValueError(
            f"noise_type={noise_type!r} needs num_classes >= {model.min_classes}, "
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
    if model.majority_limit is not None and rate >= model.majority_limit:
        raise ValueError(
            f"noise_rate={rate:g} makes {model.wrong_class} the majority for noise_type={noise_type!r} "
            f"(needs rate < {model.limit_text})"
        )


def _rng(seed: int, *spawn_key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=spawn_key))


def transition_matrix(noise_type: str, rate: float, num_classes: int, seed: int) -> np.ndarray:
    """T[i, j] = P(given label j | true label i); float64 [K, K], rows sum to 1."""
    validate_noise(noise_type, rate, num_classes)
    k, rate = int(num_classes), float(rate)
    if rate == 0.0:
        return np.eye(k)
    return NOISE_MODELS[noise_type].matrix(k, rate, _rng(seed, _MATRIX_STREAM))


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
