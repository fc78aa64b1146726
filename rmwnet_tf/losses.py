"""Per-sample losses and the meta-loss registry.

Everything here returns one value per sample (shape [n]); reductions are the caller's business
because the meta step needs global-batch semantics across replicas.

The meta loss is what makes RMNW-Net work without gold samples: a *symmetric* loss
(sum over classes of loss(c, f(x)) is a constant) gives, under uniform label noise, a
meta-gradient equal to the clean one times (1 - eta). MAE is the symmetric loss the paper uses;
a method names its meta loss and its training loss by their keys in the two registries below.
"""

from __future__ import annotations

from typing import Callable

import tensorflow as tf

PerSampleLoss = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]


def cross_entropy(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Per-sample softmax cross-entropy from integer labels and logits."""
    labels = tf.cast(labels, tf.int32)
    # float32 under a mixed precision policy too: the weighting net and the meta step read the losses.
    logits = tf.cast(logits, tf.float32)
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)


def mean_absolute_error(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Per-sample sum_k |softmax_k - onehot_k|, which equals 2 (1 - p_y).

    The closed form is used because it is exact and avoids a [n, K] abs (whose gradient at 0 is
    arbitrary); the official code computes `2 * mean(1 - p_y)` the same way.
    """
    labels = tf.cast(labels, tf.int32)
    probs = tf.nn.softmax(tf.cast(logits, tf.float32))
    p_true = tf.gather(probs, labels, axis=1, batch_dims=1)
    return 2.0 * (1.0 - p_true)


GCE_Q = 0.7  # Zhang & Sabuncu (2018)'s choice for CIFAR


def generalized_cross_entropy(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Per-sample GCE (1 - p_y^q) / q, Keras' own implementation: a robust loss between CE
    (q -> 0) and MAE (q = 1), the baseline a robust meta loss should beat."""
    import keras  # the losses module stays importable where only TensorFlow is needed

    probs = tf.nn.softmax(tf.cast(logits, tf.float32))
    return keras.losses.categorical_generalized_cross_entropy(tf.cast(labels, tf.int32), probs, q=GCE_Q)


def logit_gradients(loss: PerSampleLoss, labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Per-sample d loss_i / d logits_i, [n, K] in float32, for any per-sample loss.

    Each sample's loss reads its own row of logits only, so the gradient of their sum has the
    per-sample gradients as its rows: one backward pass through the loss, no closed form to keep
    in step with the registry (CE's is softmax - onehot, GCE's p_y^q (softmax - onehot)).
    """
    logits = tf.cast(tf.stop_gradient(logits), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(logits)
        total = tf.reduce_sum(loss(labels, logits))
    return tape.gradient(total, logits)


# The per-sample losses a classifier can be trained on (methods.Method.train_loss).
TRAIN_LOSSES: dict[str, PerSampleLoss] = {
    "ce": cross_entropy,
    "gce": generalized_cross_entropy,
}

_META_LOSSES: dict[str, PerSampleLoss] = {
    "ce": cross_entropy,
    "mae": mean_absolute_error,
}


def meta_loss_names() -> tuple[str, ...]:
    return tuple(sorted(_META_LOSSES))


def get_meta_loss(name: str) -> PerSampleLoss:
    try:
        return _META_LOSSES[name]
    except KeyError:
        raise ValueError(
            f"unknown meta loss {name!r}; known: {', '.join(meta_loss_names())}"
        ) from None
