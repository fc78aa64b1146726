"""Two ways the steps hand gradients to an optimizer that Keras does not offer as is.

- Coupled L2 decay (PyTorch's SGD `weight_decay`, the official code's): the decay joins the
  gradient before momentum, where Keras' `weight_decay` is decoupled (applied to the weights).
- A gated update: apply, then restore the variables and the optimizer's state unless a gate is
  true. It serves `--meta_every` under strategies that refuse collectives inside a `tf.cond`
  (every multi-replica CPU strategy): the step is computed everywhere and undone where it
  should not have happened (meta_model.MetaWeightModel._scheduled_train_step).
"""

from __future__ import annotations

import tensorflow as tf

from rmwnet_tf.collectives import assign_from_replicas


def add_coupled_decay(grads, variables, decay, scale=1.0):
    """grad + decay * scale * w for each pair. `scale` divides the decay term across replicas,
    because the optimizer sums the per-replica gradients it is given."""
    if not decay:
        return list(grads)
    return [g + (decay * scale) * tf.convert_to_tensor(v) for g, v in zip(grads, variables)]


def apply_where(gate, optimizer, grads, variables) -> None:
    """`optimizer.apply(grads, variables)`, kept only where the scalar boolean `gate` is true."""
    state = list(variables) + list(optimizer.variables)
    before = [tf.identity(tf.convert_to_tensor(v)) for v in state]
    with tf.control_dependencies(before):
        optimizer.apply(grads, variables)
    kept = [tf.where(gate, tf.convert_to_tensor(v), old) for v, old in zip(state, before)]
    assign_from_replicas(state, kept)
