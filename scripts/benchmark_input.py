"""Measure how many augmented CIFAR-sized images per second the training input pipeline delivers.

Usage (no dataset files needed; 50,000 random 32x32x3 images are generated in memory):

    python scripts/benchmark_input.py                 # the shipped (vectorised) pipeline
    python scripts/benchmark_input.py --compare       # also the per-example map variant

The per-example variant exists only here, as the baseline that justified shipping the
vectorised crop/flip in rmwnet_tf.data.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from rmwnet_tf import data as data_lib  # noqa: E402


def fake_data(num_images: int, num_classes: int, seed: int) -> data_lib.NoisyData:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (num_images, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, num_classes, num_images).astype(np.int64)
    source = data_lib.ImageSource(
        images, labels, images[:100], labels[:100], [str(c) for c in range(num_classes)]
    )
    return data_lib.prepare(
        source, noise_type="uniform", noise_rate=0.4, seed=seed, meta_size=0, meta_label_kind="none"
    )


def per_example_train_dataset(data, *, batch_size: int, seed: int):
    """Baseline: one map call per example (pad, stateless crop, stateless flip), then batch."""
    images = tf.constant(data.source.x_train)
    given = tf.constant(data.given_labels)
    indices = tf.constant(data.train_indices.astype(np.int32))
    pad = data_lib.AUGMENT_PAD

    def epoch_examples(epoch):
        order = data_lib.epoch_order(len(data.train_indices), data_lib.stream_key(seed, 1, epoch))
        n = tf.shape(order, out_type=tf.int64)[0]
        examples = (tf.fill([n], epoch), tf.range(n), tf.gather(indices, order))
        return tf.data.Dataset.from_tensor_slices(examples)

    def augment(epoch, position, index):
        key = data_lib.stream_key(seed, 2, epoch, position)
        crop_key, flip_key = tf.unstack(tf.random.experimental.stateless_split(key, 2))
        padded = tf.pad(tf.gather(images, index), [[pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
        pixels = tf.image.stateless_random_crop(padded, [32, 32, 3], seed=crop_key)
        pixels = tf.image.stateless_random_flip_left_right(pixels, seed=flip_key)
        return {"image": pixels, "label": tf.gather(given, index), "index": index}

    def finish(batch):
        return dict(batch, image=data_lib.normalize(batch["image"], data.mean, data.std))

    dataset = tf.data.Dataset.counter(0).flat_map(epoch_examples)
    dataset = dataset.map(augment, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.batch(batch_size, drop_remainder=True)
    dataset = dataset.map(finish, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def images_per_second(dataset, batch_size: int, batches: int, warmup: int = 20) -> float:
    iterator = iter(dataset)
    for _ in range(warmup):
        next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        batch = next(iterator)
    batch["image"].numpy()  # make sure the last batch really exists
    return batches * batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_images", type=int, default=50_000)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--batches", type=int, default=400, help="timed batches (after 20 warm-up)")
    parser.add_argument("--compare", action="store_true", help="also time the per-example variant")
    args = parser.parse_args()

    data = fake_data(args.num_images, 10, seed=0)
    batch_size = args.batch_size
    variants = {"vectorised (shipped)": data_lib.train_dataset(data, batch_size=batch_size, seed=0)}
    if args.compare:
        variants["per-example map"] = per_example_train_dataset(data, batch_size=batch_size, seed=0)
    print(f"{args.num_images} images 32x32x3, batch {batch_size}, {os.cpu_count()} CPUs visible")
    for name, dataset in variants.items():
        rate = images_per_second(dataset, args.batch_size, args.batches)
        print(f"{name:>22}: {rate:,.0f} augmented images/s")


if __name__ == "__main__":
    main()
