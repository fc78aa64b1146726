"""Times train steps of every variant in one process, so ratios are comparable.

Absolute times on a shared 2-core machine drift by tens of percent between runs; ratios
measured back to back in one process are what the build notes quote.

Each variant has a short mode name (`plain`, `exact`, ..., `every4`) used by the flags and by
the `ratio MODE/plain` lines. A `meta_every=k` variant is timed a whole cycle of k steps at a
time (one meta step and k-1 weighted steps, whatever the phase), so its per-step figure is the
amortised cost of the schedule.
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
    mode: str
    label: str
    method: str
    meta_step: str = "exact"
    meta_every: int = 1

    @property
    def uses_meta(self) -> bool:
        return self.method != "base"


VARIANTS = (
    Variant("plain", "plain CE step (base)", "base"),
    Variant("exact", "meta step, double backward (reuses forward)", "rmnwnet", meta_step="exact"),
    Variant("jvp", "meta step, forward-mode jvp (reuses forward)", "rmnwnet", meta_step="jvp"),
    Variant("nested", "naive nested-tape meta step", "rmnwnet", meta_step="nested"),
    Variant("head", "meta step, head only (approximate)", "rmnwnet", meta_step="head"),
    Variant("every2", "exact meta step on 1 step in 2 (meta_every=2)", "rmnwnet", meta_every=2),
    Variant("every4", "exact meta step on 1 step in 4 (meta_every=4)", "rmnwnet", meta_every=4),
    Variant("every8", "exact meta step on 1 step in 8 (meta_every=8)", "rmnwnet", meta_every=8),
)
VARIANTS_BY_MODE = {v.mode: v for v in VARIANTS}


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


def build_model(variant: Variant, *, model_name, batch_size, input_shape, num_classes, seed=0):
    """The MetaWeightModel of `variant`, compiled with the product's optimizers.

    Under a mixed precision policy the weighting net is built in float32: it maps a float32
    loss to a weight, and the losses are float32 whatever the classifier computes in.
    """
    classifier = models.build(model_name, num_classes=num_classes, input_shape=input_shape, seed=seed)
    vnet = None
    if variant.uses_meta:
        policy = keras.mixed_precision.global_policy()
        keras.mixed_precision.set_global_policy("float32")
        try:
            vnet = models.build_vnet(seed=seed)
        finally:
            keras.mixed_precision.set_global_policy(policy)
    model = MetaWeightModel(
        classifier,
        vnet,
        method=variant.method,
        meta_step=variant.meta_step,
        meta_every=variant.meta_every,
    )
    model.compile(
        keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
        keras.optimizers.SGD(1e-3, momentum=0.9, nesterov=True) if vnet is not None else None,
    )
    return model


def compile_steps(train_step, *, jit_compile, steps_per_execution=1):
    """`train_step` in one tf.function that runs `steps_per_execution` steps per call (a loop,
    as Keras' steps_per_execution), so the per-call overhead is paid once per k steps."""
    if steps_per_execution == 1:
        return tf.function(train_step, jit_compile=jit_compile)

    def several(batch):
        logs = train_step(batch)
        for _ in tf.range(steps_per_execution - 1):
            logs = train_step(batch)
        return logs

    return tf.function(several, jit_compile=jit_compile)


def build_step(variant: Variant, *, model_name, batch_size, input_shape, num_classes, jit_compile, seed=0,
               steps_per_execution=1):
    """A compiled train step for `variant`, as `fit` would run it on one device."""
    model = build_model(variant, model_name=model_name, batch_size=batch_size, input_shape=input_shape,
                        num_classes=num_classes, seed=seed)
    return compile_steps(model.train_step, jit_compile=jit_compile, steps_per_execution=steps_per_execution)


def time_interleaved(steps: dict, batch, *, warmup: int, rounds: int, calls: dict | None = None,
                     steps_per_call: int = 1) -> dict:
    """Median seconds per step of every compiled step, timed round-robin.

    Interleaving (one sample of each variant per round) spreads any drift of the machine's
    speed over all variants alike, so their ratios stay meaningful on a shared machine.
    One sample of `key` is `calls[key]` calls (a meta_every cycle; default 1), each of which
    runs `steps_per_call` steps (steps_per_execution).
    """
    calls = calls or {}
    for step in steps.values():
        for _ in range(warmup):  # the first call compiles
            float(step(batch)["train/loss"])
    times = {key: [] for key in steps}
    for _ in range(rounds):
        for key, step in steps.items():
            n = calls.get(key, 1)
            start = time.perf_counter()
            for _ in range(n):
                logs = step(batch)
            float(logs["train/loss"])  # waits for the steps to finish
            times[key].append((time.perf_counter() - start) / (n * steps_per_call))
    return {key: float(np.median(values)) for key, values in times.items()}
