"""A Keras user's data as the train step's batches: training batches, each paired with a meta batch.

Why the meta batches are drawn here and not by a user's own `repeat().shuffle()`: the meta
stream must continue where it stopped when a run is restarted (`keras.callbacks.BackupAndRestore`),
and a tf.data shuffle starts its sequence again in a new process. So, like the command line's
pipelines (`rmwnet_tf/data/pipelines.py`), meta batch t holds positions [tB, (t+1)B) of an
endless chain of per-pass permutations of the meta set, a pure function of (seed, t); here t is
the model's step counter (`optimizer.iterations`, which checkpoints and BackupAndRestore keep),
read when each epoch's iterator starts. Training arrays are shuffled the same way, epoch e's
order a pure function of (seed, e). A restarted run therefore trains on the very batches the
uninterrupted run would have (a user's own training `tf.data` pipeline is taken as it is).

The meta set is held in memory as one array (it is small by design: the paper uses 1,000 images).
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from rmwnet_tf.data.pipelines import epoch_order, stream_key
from rmwnet_tf.meta_model import class_indices, labelled_batch

TRAIN_ORDER, META_ORDER = 1, 3  # stateless streams, numbered as in data/pipelines.py


def is_arrays(data) -> bool:
    return isinstance(data, (tuple, list)) and len(data) == 2 and not isinstance(data[0], tf.data.Dataset)


def to_arrays(data, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(images, labels) numpy arrays from a pair of arrays or a dataset of (images, labels) batches."""
    if isinstance(data, tf.data.Dataset):
        parts = [labelled_batch(batch, what) for batch in data]
        if not parts:
            raise ValueError(f"{what} is an empty dataset")
        images = np.concatenate([np.asarray(part["image"]) for part in parts])
        labels = np.concatenate([np.asarray(class_indices(part["label"], what)) for part in parts])
        return images, labels
    if not is_arrays(data):
        raise ValueError(f"{what} must be a pair (images, labels) of arrays or a tf.data.Dataset of "
                         f"(images, labels) batches; got {type(data).__name__}")
    images, labels = np.asarray(data[0]), np.asarray(class_indices(data[1], what))
    if len(images) != len(labels):
        raise ValueError(f"{what}: {len(images)} images but {len(labels)} labels")
    if not len(images):
        raise ValueError(f"{what} holds no samples")
    return images, labels


def labelled_dataset(dataset: tf.data.Dataset, what: str) -> tf.data.Dataset:
    """A user's batches as (images, integer label vector) pairs, checked once, up front."""
    spec = dataset.element_spec
    if not ((isinstance(spec, tuple) and len(spec) == 2) or (isinstance(spec, dict) and {"image", "label"} <= set(spec))):
        shown = sorted(spec) if isinstance(spec, dict) else spec
        raise ValueError(f"{what} must yield (images, labels) batches or dicts with keys 'image' and 'label'; "
                         f"it yields {shown}")
    return dataset.map(lambda *batch: _as_pair(batch[0] if len(batch) == 1 else batch, what))


def _as_pair(batch, what):
    batch = labelled_batch(batch, what)
    return batch["image"], class_indices(batch["label"], what)


def batch_size_of(dataset: tf.data.Dataset) -> int:
    """The size of a batched dataset's batches: from its spec, else from its first batch."""
    size = tf.nest.flatten(dataset.element_spec)[0].shape[0]
    if size is None:
        first = next(iter(dataset), None)
        if first is None:
            raise ValueError("the training dataset is empty")
        size = tf.nest.flatten(first)[0].shape[0]
    return int(size)


def _at_step(step: tf.Variable) -> tf.data.Dataset:
    """One element: the value of `step` when an iterator of the dataset starts."""
    return tf.data.Dataset.from_tensors(0).map(lambda _: tf.cast(tf.identity(step), tf.int64))


def train_epoch(images, labels, *, batch_size: int, seed: int, shuffle: bool, step: tf.Variable) -> tf.data.Dataset:
    """One epoch of (images, labels) batches (the last may be short); epoch `step // steps` is
    shuffled by (seed, epoch) alone."""
    count = len(images)
    steps = math.ceil(count / batch_size)
    images, labels = tf.constant(images), tf.constant(labels)

    def epoch_batches(start):
        epoch = start // steps
        order = epoch_order(count, stream_key(seed, TRAIN_ORDER, epoch)) if shuffle else tf.range(count, dtype=tf.int64)
        return tf.data.Dataset.from_tensor_slices(order).batch(batch_size)

    batches = _at_step(step).flat_map(epoch_batches).map(lambda index: (tf.gather(images, index), tf.gather(labels, index)))
    return batches.apply(tf.data.experimental.assert_cardinality(steps)).prefetch(tf.data.AUTOTUNE)


def meta_stream(images, labels, *, batch_size: int, seed: int, step: tf.Variable) -> tf.data.Dataset:
    """Endless meta batches from position `step * batch_size` of the chain of permutations."""
    size = len(images)
    if batch_size > size:
        raise ValueError(f"meta_batch_size={batch_size} exceeds the {size} meta samples; a meta batch would "
                         "repeat samples (pass a smaller meta_batch_size)")
    images, labels = tf.constant(images), tf.constant(labels)

    def positions(start):
        first = start * batch_size
        passes = tf.data.Dataset.counter(first // size).flat_map(
            lambda n: tf.data.Dataset.from_tensor_slices(epoch_order(size, stream_key(seed, META_ORDER, n))))
        return passes.skip(first % size).batch(batch_size, drop_remainder=True)

    batches = _at_step(step).flat_map(positions).map(lambda index: (tf.gather(images, index), tf.gather(labels, index)))
    return batches.apply(tf.data.experimental.assert_cardinality(tf.data.INFINITE_CARDINALITY)).prefetch(tf.data.AUTOTUNE)


def paired(train: tf.data.Dataset, meta: tf.data.Dataset | None) -> tf.data.Dataset:
    """{"train": batch, "meta": batch} per training batch (just {"train": batch} without a meta set)."""
    if meta is None:
        return train.map(lambda images, labels: {"train": (images, labels)})
    return tf.data.Dataset.zip({"train": train, "meta": meta})
