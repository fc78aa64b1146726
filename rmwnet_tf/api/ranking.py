"""Per-sample losses and weights of a trained model, and the review order of its training labels.

The order is the command line's (`metrics.suspicion_ranks`, the order of sample_scores.csv):
lowest weight W(loss) first, i.e. the label the weighting net trusts least; equal weights (Base,
GCE, oracle: all ones) fall back to the highest loss, then to the lowest position.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from rmwnet_tf import evaluate as evaluate_lib
from rmwnet_tf import outputs
from rmwnet_tf.api import pairing
from rmwnet_tf.metrics import suspicion_ranks


def score(model, data, *, batch_size: int = 256) -> dict:
    """One inference pass over `data` ((images, labels) arrays or a dataset of such batches,
    un-augmented, in a fixed order): per sample, in data order, its given label, the prediction,
    the class probabilities, the cross-entropy, the method's training loss (the weighting net's input:
    GCE for rmnwnet_gce, else the cross-entropy again) and the weight W(train_loss) (ones without a
    weighting net)."""
    if isinstance(data, tf.data.Dataset):
        batches = pairing.labelled_dataset(data, "the data to score")
    else:
        images, labels = pairing.to_arrays(data, "the data to score")
        batches = tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch_size)
    samples = evaluate_lib.inference_pass(evaluate_lib.predict_fn(model),
                                          batches.map(lambda images, labels: {"image": images, "label": labels}))
    if not len(samples["label"]):
        raise ValueError("the data to score is empty")
    samples["given"] = samples.pop("label")
    samples["predicted"] = samples["probs"].argmax(-1)
    samples["weight"] = model.weight_function(samples["train_loss"])  # W reads what it reads in training
    return samples


@dataclasses.dataclass(frozen=True)
class SuspectRanking:
    """The samples of the ranked data, most suspicious label first. Every array is in that order;
    `indices` are positions in the data as given (row i of the arrays, i-th sample of a dataset)."""

    indices: np.ndarray  # int64 [N]
    weights: np.ndarray  # W(loss), the weighting net's trust in the given label (1 without one)
    losses: np.ndarray  # cross-entropy of the given label
    given_labels: np.ndarray
    predicted_labels: np.ndarray

    def __len__(self) -> int:
        return len(self.indices)

    def top(self, count: int) -> "SuspectRanking":
        """The `count` most suspicious samples."""
        return SuspectRanking(*(getattr(self, field.name)[:count] for field in dataclasses.fields(self)))

    def to_csv(self, path, clean_labels=None) -> None:
        """The command line's sample_scores.csv: index, given and predicted label, weight, loss,
        suspicion_rank (and clean_label, is_noisy when `clean_labels`, in data order, are known)."""
        order = np.argsort(self.indices)
        outputs.write_sample_scores(
            path, indices=self.indices[order], given_labels=self.given_labels[order],
            predicted_labels=self.predicted_labels[order], weights=self.weights[order], losses=self.losses[order],
            clean_labels=None if clean_labels is None else np.asarray(clean_labels).reshape(-1)[self.indices[order]])


def rank_suspects(model, data, *, batch_size: int = 256) -> SuspectRanking:
    """Rank the labels of `data` by how likely they are wrong, most suspicious first.

    Args:
        model: a trained `rmwnet_tf.MetaWeightModel` (any method; Base ranks by loss alone).
        data: the training samples with their given labels, un-augmented: (images, labels)
            arrays or a `tf.data.Dataset` of (images, labels) batches in a fixed order.
        batch_size: images per inference batch when `data` are arrays.

    Returns:
        A `SuspectRanking` (indices, weights, losses, given and predicted labels).
    """
    samples = score(model, data, batch_size=batch_size)
    positions = np.arange(len(samples["loss"]), dtype=np.int64)
    order = np.argsort(suspicion_ranks(samples["weight"], samples["loss"], positions), kind="stable")
    return SuspectRanking(indices=positions[order], weights=samples["weight"][order], losses=samples["loss"][order],
                          given_labels=samples["given"][order].astype(np.int64),
                          predicted_labels=samples["predicted"][order].astype(np.int64))
