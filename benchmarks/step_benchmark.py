"""Times train steps of every variant in one process, so ratios are comparable.

Absolute times on a shared 2-core machine drift by tens of percent between runs; ratios
measured back to back in one process are what the build notes quote.
"""

from __future__ import annotations

import dataclasses
import time

import keras
import numpy as np
import tensorflow as tf

from rmwnet_tf import models
from rmwnet_tf.meta_model import MetaWeightModel


@dataclasses.dataclass(frozen=True)
class Variant:
    label: str
    method: str
    meta_step: str = "exact"


VARIANTS = (
    Variant("plain CE step (base)", "base"),
    Variant("naive nested-tape meta step", "rmnwnet", meta_step="nested"),
    Variant("meta step, double backward (reuses forward)", "rmnwnet", meta_step="exact"),
    Variant("meta step, forward-mode jvp (reuses forward)", "rmnwnet", meta_step="jvp"),
    Variant("meta step, head only (approximate)", "rmnwnet", meta_step="head"),
)


def synthetic_batch(batch_size, input_shape, num_classes, seed):
    rng = np.random.default_rng(seed)

    def images():
        return tf.constant(rng.normal(size=(batch_size, *input_shape)), tf.float32)

    def labels():
        return tf.constant(rng.integers(0, num_classes, batch_size), tf.int32)

    return {
        "train": {
            "image": images(),
            "label": labels(),
        },
        "meta": {"image": images(), "label": labels()},
    }


def build_step(variant: Variant, *, model_name, batch_size, input_shape, num_classes, jit_compile, seed=0):
    """A compiled train step for `variant`, as `fit` would run it on one device."""
    classifier = models.build(model_name, num_classes=num_classes, input_shape=input_shape, seed=seed)
    vnet = models.build_vnet(seed=seed) if variant.method != "base" else None
    model = MetaWeightModel(
        classifier,
        vnet,
        method=variant.method,
        global_batch_size=batch_size,
        meta_step=variant.meta_step,
    )
    model.compile(
        keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
        keras.optimizers.SGD(1e-3, momentum=0.9, nesterov=True) if vnet is not None else None,
    )
    return tf.function(model.train_step, jit_compile=jit_compile)


def time_interleaved(steps: dict, batch, *, warmup: int, rounds: int) -> dict:
    """Median seconds per step of every compiled step, timed round-robin.

    Interleaving (one step of each variant per round) spreads any drift of the machine's
    speed over all variants alike, so their ratios stay meaningful on a shared machine.
    """
    for step in steps.values():
        for _ in range(warmup):  # the first call compiles
            float(step(batch)["train/loss"])
    times = {key: [] for key in steps}
    for _ in range(rounds):
        for key, step in steps.items():
            start = time.perf_counter()
            float(step(batch)["train/loss"])  # waits for the step to finish
            times[key].append(time.perf_counter() - start)
    return {key: float(np.median(values)) for key, values in times.items()}
