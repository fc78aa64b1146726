"""The tf.data pipelines: train, meta, test and train-eval batches from a ``NoisyData``.

Reproducibility: the pipelines use stateless TF ops keyed by (seed, stream, epoch or step),
so a resumed run sees exactly the batches an uninterrupted run would have seen, whatever the
parallelism. Batches are built by looking indices up in the tables the noisy split made, so
nothing here decides a label.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from rmwnet_tf.data.noisy_split import NoisyData

AUGMENT_PAD = 4  # pixels of reflect-padding at the paper's 32x32 (12.5% of the side)



def cached_tensor(data: NoisyData, name: str, build):
    """One device copy per array of `data`, shared by all pipelines built from it."""
    if name not in data.device_copies:
        data.device_copies[name] = tf.constant(build())
    return data.device_copies[name]

def augment_pad(image_size: int) -> int:
    """The paper's 4-pixel pad at 32x32, scaled with the image side (2 px at 16x16).

    A fixed 4 px would shift a 16x16 image by up to 25% of its side, twice the paper's
    12.5%: a stronger augmentation that by itself keeps a network from fitting (and
    memorising) its training labels, so a reduced-size run would test a different regime.
    """
    return max(1, round(AUGMENT_PAD * int(image_size) / 32))

# TF stateless streams of the pipelines.
_TRAIN_ORDER, _TRAIN_AUGMENT, _META_ORDER, _META_AUGMENT = 1, 2, 3, 4


# ----------------------------------------------------------------------------------------
# tf.data building blocks (each usable eagerly and inside a pipeline)
# ----------------------------------------------------------------------------------------


def stream_key(seed, stream, *counters):
    """A stateless-op seed [2] int64 for (seed, stream, counters...): independent streams
    that need no state, so parallel and resumed pipelines agree."""
    key = tf.stack([tf.cast(seed, tf.int64), tf.cast(stream, tf.int64)])
    for counter in counters:
        key = tf.random.experimental.stateless_fold_in(key, tf.cast(counter, tf.int64))
    return key


def epoch_order(num_items: int, key):
    """A permutation of range(num_items), a pure function of ``key``."""
    return tf.random.experimental.stateless_shuffle(tf.range(num_items, dtype=tf.int64), seed=key)


def random_crop_flip(images, key, pad: int = AUGMENT_PAD):
    """Reflect-pad by ``pad``, random crop back to H x W, random horizontal flip: drawn per
    example from ``key``. A uint8 (or any dtype) batch [B,H,W,C] in, same shape out."""
    images = tf.convert_to_tensor(images)
    return gather_crop_flip(images, tf.range(tf.shape(images)[0]), key, pad)


def gather_crop_flip(table, index, key, pad: int = AUGMENT_PAD):
    """``random_crop_flip(tf.gather(table, index), key)`` as one gather.

    Padding, cropping and flipping only move pixels, so each output pixel's source pixel
    is computed (reflection folded into the index) and fetched with a single gather from
    the flattened table: measured ~4x faster than pad + batched gathers and faster than a
    per-example map (scripts/benchmark_input.py), while every example still gets its own
    crop and flip.
    """
    table = tf.convert_to_tensor(table)
    index = tf.cast(index, tf.int32)
    height, width, channels = tf.shape(table)[1], tf.shape(table)[2], tf.shape(table)[3]
    draws = tf.random.stateless_uniform(
        [3, tf.shape(index)[0]], seed=key, minval=0, maxval=2**30, dtype=tf.int32
    )
    top = draws[0] % (2 * pad + 1) - pad
    left = draws[1] % (2 * pad + 1) - pad
    flip = tf.equal(draws[2] % 2, 1)
    rows = _reflect(top[:, None] + tf.range(height)[None, :], height)
    cols = tf.range(width)[None, :]
    cols = _reflect(left[:, None] + tf.where(flip[:, None], width - 1 - cols, cols), width)
    # int64: tables of more than 2**31 pixels exist (e.g. 1M images of 64x64)
    rows, cols = tf.cast(rows, tf.int64), tf.cast(cols, tf.int64)
    height, width = tf.cast(height, tf.int64), tf.cast(width, tf.int64)
    image_row = tf.cast(index, tf.int64)[:, None, None] * height + rows[:, :, None]
    pixel = image_row * width + cols[:, None, :]
    return tf.gather(tf.reshape(table, [-1, channels]), pixel)


def _reflect(position, size):
    """Mirror positions outside [0, size) back inside, edge excluded (like pad REFLECT)."""
    return (size - 1) - tf.abs((size - 1) - tf.abs(position))


def normalize(images, mean, std):
    """uint8 -> float32 scaled to [0, 1], then standardised per channel (one multiply-add)."""
    scale = 1.0 / (255.0 * np.asarray(std, np.float64))
    offset = -np.asarray(mean, np.float64) / np.asarray(std, np.float64)
    scale, offset = tf.constant(scale, tf.float32), tf.constant(offset, tf.float32)
    return tf.cast(images, tf.float32) * scale + offset


def _finish(dataset: tf.data.Dataset, make_batch) -> tf.data.Dataset:
    """Parallel, order-preserving map; with stateless keys the output is reproducible."""
    dataset = dataset.map(make_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    options = tf.data.Options()
    options.deterministic = True
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)


def _train_lookup(data: NoisyData):
    """index -> the classifier's input for those source training samples, un-augmented: their
    normalised pixels, or in a head-only run on cached backbone features (``data.features``,
    rmwnet_tf/feature_cache.py) their features. The tables are fetched here, outside any
    tf.data function, so every pipeline shares one device copy."""
    if data.features is not None:
        rows = cached_tensor(data, "feature_rows", lambda: data.features.rows)
        table = cached_tensor(data, "train_features", lambda: data.features.train)
        return lambda index: tf.gather(table, tf.gather(rows, index))
    images = cached_tensor(data, "x_train", lambda: data.source.x_train)
    return lambda index: normalize(tf.gather(images, index), data.mean, data.std)


def _test_lookup(data: NoisyData):
    """index -> the classifier's input for those test samples (see `_train_lookup`)."""
    if data.features is not None:
        table = cached_tensor(data, "test_features", lambda: data.features.test)
        return lambda index: tf.gather(table, index)
    images = cached_tensor(data, "x_test", lambda: data.source.x_test)
    return lambda index: normalize(tf.gather(images, index), data.mean, data.std)


def _no_augmented_features(data: NoisyData, augment: bool) -> None:
    if augment and data.features is not None:
        raise ValueError("cached backbone features cannot be augmented (they stand for un-augmented images)")


# ----------------------------------------------------------------------------------------
# Pipelines
# ----------------------------------------------------------------------------------------


def steps_per_epoch(data: NoisyData, batch_size: int) -> int:
    steps = len(data.train_indices) // batch_size
    if steps < 1:
        raise ValueError(
            f"batch_size={batch_size} exceeds the {len(data.train_indices)} training samples"
        )
    return steps


def train_dataset(
    data: NoisyData,
    *,
    batch_size: int,
    seed: int,
    start_epoch: int = 0,
    augment: bool = True,
    start_step: int = 0,
) -> tf.data.Dataset:
    """Infinite epochs of full batches; epoch e's order and augmentation depend only on
    (seed, e), so resuming at ``start_epoch`` replays the uninterrupted run, and
    ``start_step`` (a run stopped mid-epoch) skips that many batches of the first epoch
    (index lists only: no pixel is gathered for them). The noise is applied here, by
    looking each index up in the label table."""
    steps = steps_per_epoch(data, batch_size)
    if not 0 <= start_step < steps:
        raise ValueError(f"start_step={start_step} is outside an epoch of {steps} steps")
    num_train = len(data.train_indices)
    _no_augmented_features(data, augment)
    train_indices = cached_tensor(data, "train_indices", lambda: data.train_indices.astype(np.int32))
    given = cached_tensor(data, "given", lambda: data.given_labels.astype(np.int32))
    pad = augment_pad(data.source.x_train.shape[1])
    lookup = None if augment else _train_lookup(data)
    images = cached_tensor(data, "x_train", lambda: data.source.x_train) if augment else None

    def epoch_batches(epoch):
        order = epoch_order(num_train, stream_key(seed, _TRAIN_ORDER, epoch))
        batches = tf.reshape(tf.gather(train_indices, order[: steps * batch_size]), [steps, -1])
        step = tf.range(steps, dtype=tf.int64)
        return tf.data.Dataset.from_tensor_slices((tf.fill([steps], epoch), step, batches))

    def make_batch(epoch, step, index):
        if augment:
            key = stream_key(seed, _TRAIN_AUGMENT, epoch, step)
            inputs = normalize(gather_crop_flip(images, index, key, pad), data.mean, data.std)
        else:
            inputs = lookup(index)
        return {"image": inputs, "label": tf.gather(given, index)}

    batches = tf.data.Dataset.counter(start_epoch).flat_map(epoch_batches).skip(start_step)
    return _finish(batches, make_batch)


def meta_dataset(
    data: NoisyData, *, batch_size: int, seed: int, start_step: int = 0, augment: bool = True
) -> tf.data.Dataset:
    """Infinite meta batches with their own order and augmentation streams.

    Augmented like the training stream (the same ``augment`` setting, as the official code's
    ``--no-augment`` turns off both): the meta loss then scores the classifier on inputs
    drawn like the ones it trains on.

    Batch t holds positions [tB, (t+1)B) of an endless chain of per-epoch permutations of
    the meta set, so it depends only on (seed, t): a run resumed at ``start_step`` sees
    the batches the uninterrupted run would have seen.
    """
    size = len(data.meta_indices)
    if size == 0:
        raise ValueError("this NoisyData has no meta set (meta_label_kind='none')")
    _no_augmented_features(data, augment)
    first = start_step * batch_size
    meta_indices = cached_tensor(data, "meta_indices", lambda: data.meta_indices.astype(np.int32))
    meta_labels = cached_tensor(data, "meta_labels", lambda: data.meta_labels.astype(np.int32))
    pad = augment_pad(data.source.x_train.shape[1])
    lookup = None if augment else _train_lookup(data)
    images = cached_tensor(data, "x_train", lambda: data.source.x_train) if augment else None

    def epoch_positions(epoch):
        order = epoch_order(size, stream_key(seed, _META_ORDER, epoch))
        return tf.data.Dataset.from_tensor_slices(order)

    positions = (
        tf.data.Dataset.counter(first // size)
        .flat_map(epoch_positions)
        .skip(first % size)
        .batch(batch_size, drop_remainder=True)
    )

    def make_batch(step, position):
        index = tf.gather(meta_indices, position)
        if augment:
            pixels = gather_crop_flip(images, index, stream_key(seed, _META_AUGMENT, step), pad)
            inputs = normalize(pixels, data.mean, data.std)
        else:
            inputs = lookup(index)
        return {"image": inputs, "label": tf.gather(meta_labels, position)}

    return _finish(tf.data.Dataset.zip(tf.data.Dataset.counter(start_step), positions), make_batch)


def test_dataset(data: NoisyData, *, batch_size: int) -> tf.data.Dataset:
    """All test images once, in order, not augmented (the last batch may be short)."""
    labels = cached_tensor(data, "y_test", lambda: data.source.y_test.astype(np.int32))
    lookup = _test_lookup(data)

    def make_batch(index):
        return {"image": lookup(index), "label": tf.gather(labels, index)}

    return _finish(tf.data.Dataset.range(len(data.source.y_test)).batch(batch_size), make_batch)


def train_eval_dataset(data: NoisyData, *, batch_size: int) -> tf.data.Dataset:
    """Every training sample once, in ``data.train_indices`` order, not augmented."""
    return _eval_dataset(data, data.train_indices, data.given_labels[data.train_indices], batch_size)


def meta_eval_dataset(data: NoisyData, *, batch_size: int) -> tf.data.Dataset:
    """Every meta sample once with its meta label, in ``data.meta_indices`` order, not augmented."""
    return _eval_dataset(data, data.meta_indices, data.meta_labels, batch_size)


def heldout_eval_dataset(data: NoisyData, *, batch_size: int) -> tf.data.Dataset:
    """The training fold left out by --holdout_folds, with its given labels, not augmented."""
    return _eval_dataset(data, data.heldout_indices, data.given_labels[data.heldout_indices], batch_size)


def _eval_dataset(data: NoisyData, indices, labels, batch_size: int) -> tf.data.Dataset:
    lookup = _train_lookup(data)

    def make_batch(index, label):
        return {"image": lookup(index), "label": label}

    pairs = (np.asarray(indices, np.int32), np.asarray(labels, np.int32))
    return _finish(tf.data.Dataset.from_tensor_slices(pairs).batch(batch_size), make_batch)
