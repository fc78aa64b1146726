"""Collectives for the meta step under tf.distribute, each a no-op on a single device.

Global-batch semantics: per-sample losses, weights and directional derivatives are
all-gathered (they are [n] vectors), gradients are all-reduced, so every replica computes the
same virtual step and the same weighting-net update as a single device would.
"""

from __future__ import annotations

import keras
import tensorflow as tf


def replica_context():
    return tf.distribute.get_replica_context()


def num_replicas() -> int:
    ctx = replica_context()
    return ctx.num_replicas_in_sync if ctx is not None else 1


def all_reduce_sum(values):
    """Sum over replicas; a no-op (no collective op at all) on a single device."""
    if num_replicas() == 1:
        return values
    return replica_context().all_reduce(tf.distribute.ReduceOp.SUM, values)


def all_gather(value):
    """Concatenate a per-replica [n] vector over replicas, in replica-id order.

    Built from an all-reduce of zero-padded slots: `ReplicaContext.all_gather` fails under
    MultiWorkerMirroredStrategy in TF 2.21 ("destinations can not be empty"), and these
    vectors are tiny.
    """
    replicas = num_replicas()
    if replicas == 1:
        return value
    ctx = replica_context()
    local_n = tf.shape(value)[0]
    start = tf.cast(ctx.replica_id_in_sync_group, tf.int32) * local_n
    slot = tf.pad(tf.cast(value, tf.float32), [[start, (replicas - 1) * local_n - start]])
    return tf.cast(ctx.all_reduce(tf.distribute.ReduceOp.SUM, slot), value.dtype)


def local_slice(global_value, local_size):
    """This replica's rows of an all-gathered vector (replicas are gathered in id order)."""
    if num_replicas() == 1:
        return global_value
    replica_id = replica_context().replica_id_in_sync_group
    start = tf.cast(replica_id, tf.int32) * local_size
    return global_value[start : start + local_size]


def assign_from_replicas(variables, values):
    """variable.assign(value) from replica context, for (mirrored) variables of any aggregation.

    Every replica passes the same values; the assignment runs in cross-replica context, as the
    Keras optimizers update their variables.
    """
    def assign_all(strategy, values):
        for variable, value in zip(variables, values):
            target = variable.value if isinstance(variable, keras.Variable) else variable
            strategy.extended.update(target, lambda v, x: v.assign(x), args=(value,), group=False)

    ctx = replica_context()
    if ctx is None or num_replicas() == 1:
        for variable, value in zip(variables, values):
            variable.assign(value)
    else:
        ctx.merge_call(assign_all, args=(values,))


def as_logs(results: dict) -> dict:
    """Step outputs in the shape Keras can reduce across workers.

    Keras (3.15) reduces per-replica logs of a multi-worker run with
    `strategy.reduce("MEAN", v, axis=0)`, which rejects scalars; a [1] vector reduces to the
    same scalar mean. Elsewhere the logs stay scalars.
    """
    if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
        return {name: tf.reshape(value, [1]) for name, value in results.items()}
    return results
