"""The meta step's look-ahead, one function per `--meta_step`: from a train batch and a meta
batch, the directional derivatives s_i = G . grad l_i(w) that train the weighting net.

MW-Net's bilevel step (as the official code does it): a virtual SGD step of the classifier on
the W-weighted loss, w_hat = w - lr * sum_i W~_i grad l_i(w); the meta loss at w_hat; Theta
updated by dL_meta/dTheta; then the real step. Because l_i enters the weighting net as a
constant, the meta-gradient factorises,

    dL_meta/dTheta = -lr * sum_i s_i dW~_i/dTheta,   s_i = G . grad l_i(w),   G = grad L_meta(w_hat),

so a look-ahead only has to produce s (and the meta loss, for the logs); the model turns s into
the weighting net's update and reuses the forward recorded here for the real step. The ways to
get s, by `--meta_step` (registry: `meta_steps.META_STEPS`; each name is a factory below, which
builds the step once for its classifier):

- `exact`: differentiate the virtual step's backward pass once more (reuses the forward);
- `jvp`: a forward-mode product through a stateless re-run of the train forward;
- `nested`: the textbook second-order computation, dL_meta/dW~ through the virtual step by
  nested tapes (s = -dL_meta/dW~ / lr), kept as the reference the tests hold the others to;
- `head` (approximate): the virtual step moves only the last Dense layer, whose per-sample
  gradients are known in closed form, so the meta batch needs a forward pass only.

Every function takes a narrow `Context` (the classifier, the lr, the training and meta losses,
the current weighting) and knows nothing of the model that holds it. The training loss l is any
per-sample loss (`losses.TRAIN_LOSSES`: CE, or GCE for `rmnwnet_gce`): every step weights it,
feeds it to the weighting net and differentiates it, so none of them assumes CE (`head` reads its
per-sample logit gradients off the loss by autodiff). Collectives make every replica compute
the global-batch quantities (`collectives.py`).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple

import keras
import tensorflow as tf

from rmwnet_tf import losses as losses_lib
from rmwnet_tf.collectives import all_gather, all_reduce_sum, local_slice, num_replicas
from rmwnet_tf.meta_steps import get_meta_step


@dataclasses.dataclass(frozen=True)
class Context:
    """What a look-ahead needs, and nothing else."""

    classifier: keras.Model  # called statelessly at virtual weights
    lr: tf.Tensor  # the classifier's current learning rate (the virtual step's)
    # The per-sample loss the classifier minimises, (labels, logits) -> [n]: what the virtual and
    # real steps weight and what the weighting net reads (the method's train_loss).
    train_loss: Callable[[tf.Tensor, tf.Tensor], tf.Tensor]
    meta_loss: Callable[[tf.Tensor, tf.Tensor], tf.Tensor]  # per-sample, (labels, logits) -> [m]
    # Global per-sample losses -> normalised global weights W~ by the current weighting net, or by
    # the weighting net at `vnet_values` (the reference differentiates through those).
    sample_weights: Callable[..., tf.Tensor]


class Forward(NamedTuple):
    """The train batch's forward, recorded once: the real step's gradients come from its tape."""

    tape: tf.GradientTape  # persistent
    logits: tf.Tensor
    losses: tf.Tensor  # this replica's per-sample training losses (the weighting net's input)
    global_losses: tf.Tensor  # all replicas', gathered


class Lookahead(NamedTuple):
    forward: Forward
    s: tf.Tensor  # this replica's G . grad l_i(w)
    meta_loss: tf.Tensor  # the global mean meta loss at the virtual weights


Step = Callable[[Context, dict, dict], Lookahead]


def record_forward(context: Context, train) -> Forward:
    """The real step's forward: the only call of the step that updates BN moving statistics."""
    with tf.GradientTape(persistent=True) as tape:
        logits = context.classifier(train["image"], training=True)
        losses = context.train_loss(train["label"], logits)
    return Forward(tape, logits, losses, all_gather(losses))


def meta_objective(context: Context, meta, trainable_values, non_trainable_values):
    """Sum of this replica's meta losses / global meta batch: all-reduce gives the mean."""
    logits, _ = context.classifier.stateless_call(trainable_values, non_trainable_values, meta["image"],
                                                  training=True)
    per_sample = context.meta_loss(meta["label"], logits)
    global_m = tf.cast(tf.shape(per_sample)[0] * num_replicas(), tf.float32)
    return tf.reduce_sum(per_sample) / global_m


# ------------------------------------------------------------------------------------ exact, jvp
def _factored(context: Context, train, meta, *, forward_mode: bool) -> Lookahead:
    """s from one recorded train forward: by a second backward pass, or forward mode."""
    x, y = train["image"], train["label"]
    classifier, lr = context.classifier, context.lr
    params = classifier.trainable_variables
    forward = record_forward(context, train)
    old_weights = local_slice(context.sample_weights(forward.global_losses), tf.shape(y)[0])

    # Virtual step. The output weights are watched so that s = J G can later be read off this
    # very backward pass by differentiating it once more.
    with tf.GradientTape() as weights_tape:
        weights_tape.watch(old_weights)
        local_grads = forward.tape.gradient(forward.losses, params, output_gradients=old_weights)
    lookahead_grads = all_reduce_sum(local_grads)
    param_values = [tf.convert_to_tensor(p) for p in params]
    non_trainable = [tf.convert_to_tensor(v) for v in classifier.non_trainable_variables]
    w_hat = [p - lr * g for p, g in zip(param_values, lookahead_grads)]

    with tf.GradientTape() as meta_tape:
        meta_tape.watch(w_hat)
        local_meta = meta_objective(context, meta, w_hat, non_trainable)
    meta_grads = all_reduce_sum(meta_tape.gradient(local_meta, w_hat))
    meta_loss = all_reduce_sum(local_meta)

    if not forward_mode:
        s = weights_tape.gradient(local_grads, old_weights, output_gradients=meta_grads)
    else:
        with tf.autodiff.ForwardAccumulator(param_values, meta_grads) as accumulator:
            jvp_logits, _ = classifier.stateless_call(param_values, non_trainable, x, training=True)
            jvp_losses = context.train_loss(y, jvp_logits)
        s = accumulator.jvp(jvp_losses)
    return Lookahead(forward, s, meta_loss)


def exact(classifier: keras.Model) -> Step:
    del classifier
    return lambda context, train, meta: _factored(context, train, meta, forward_mode=False)


def jvp(classifier: keras.Model) -> Step:
    del classifier
    return lambda context, train, meta: _factored(context, train, meta, forward_mode=True)


# ------------------------------------------------------------------------------------ nested reference
def lookahead_meta_loss(context: Context, train, meta, vnet_values=None, sample_weights=None) -> tf.Tensor:
    """This replica's share of L_meta(w_hat) at the classifier's current weights.

    The meta objective as a plain function of the weighting net's parameters (`vnet_values`)
    or, with `sample_weights`, of this replica's normalised per-sample weights, so that it can
    be differentiated through the virtual step (by the nested step, and by the tests, also by
    finite differences). BN moving statistics are left alone (stateless calls).
    """
    x, y = train["image"], train["label"]
    params = [tf.convert_to_tensor(p) for p in context.classifier.trainable_variables]
    fixed = [tf.convert_to_tensor(v) for v in context.classifier.non_trainable_variables]
    with tf.GradientTape() as inner:
        inner.watch(params)
        logits, _ = context.classifier.stateless_call(params, fixed, x, training=True)
        losses = context.train_loss(y, logits)
        if sample_weights is None:
            sample_weights = local_slice(context.sample_weights(all_gather(losses), vnet_values), tf.shape(losses)[0])
        weighted = tf.reduce_sum(sample_weights * losses)
    grads = all_reduce_sum(inner.gradient(weighted, params))
    w_hat = [p - context.lr * g for p, g in zip(params, grads)]
    return meta_objective(context, meta, w_hat, fixed)


def _nested_step(context: Context, train, meta) -> Lookahead:
    forward = record_forward(context, train)
    weights = tf.stop_gradient(local_slice(context.sample_weights(forward.global_losses), tf.shape(forward.losses)[0]))
    with tf.GradientTape() as tape:
        tape.watch(weights)
        local_meta = lookahead_meta_loss(context, train, meta, sample_weights=weights)
    # dL_meta/dW~_i = -lr s_i (the gradient of the all-reduce is an all-reduce: the global L_meta's)
    s = -tape.gradient(local_meta, weights) / context.lr
    return Lookahead(forward, s, all_reduce_sum(local_meta))


def nested(classifier: keras.Model) -> Step:
    del classifier
    return _nested_step


# ------------------------------------------------------------------------------------ head (approximate)
def head(classifier: keras.Model) -> Step:
    """The closed-form look-ahead through the last Dense layer; the split is made once, here."""
    dense = classifier.layers[-1]
    if not isinstance(dense, keras.layers.Dense) or not dense.use_bias:
        raise ValueError("meta_step='head' needs a classifier whose last layer is a Dense with bias")
    body = keras.Model(classifier.inputs, dense.input, name="body")

    def step(context: Context, train, meta) -> Lookahead:
        """With features h_i and delta_i = d l_i / d logits_i, grad l_i = (h_i delta_i^T, delta_i)
        in closed form, so the virtual step, G and every s_i cost a few small matmuls (delta_i is
        softmax_i - onehot_i for CE, p_y^q (softmax_i - onehot_i) for GCE; read off the loss)."""
        x, y = train["image"], train["label"]
        lr = context.lr
        kernel, bias = dense.kernel, dense.bias
        with tf.GradientTape(persistent=True) as tape:
            features = body(x, training=True)
            logits = dense(features)
            losses = context.train_loss(y, logits)
        global_losses = all_gather(losses)
        old_weights = local_slice(context.sample_weights(global_losses), tf.shape(y)[0])
        # float32 closed form under a mixed precision policy too (the head's variables are float32).
        delta = losses_lib.logit_gradients(context.train_loss, y, logits)
        features = tf.cast(tf.stop_gradient(features), tf.float32)
        weighted_delta = old_weights[:, None] * delta
        kernel_hat = kernel - lr * all_reduce_sum(tf.matmul(features, weighted_delta, transpose_a=True))
        bias_hat = bias - lr * all_reduce_sum(tf.reduce_sum(weighted_delta, axis=0))

        body_values = [tf.convert_to_tensor(v) for v in body.trainable_variables]
        body_fixed = [tf.convert_to_tensor(v) for v in body.non_trainable_variables]
        meta_features, _ = body.stateless_call(body_values, body_fixed, meta["image"], training=True)
        meta_features = tf.cast(meta_features, tf.float32)
        with tf.GradientTape() as meta_tape:
            meta_tape.watch([kernel_hat, bias_hat])
            meta_logits = tf.matmul(meta_features, kernel_hat) + bias_hat
            per_sample = context.meta_loss(meta["label"], meta_logits)
            global_m = tf.cast(tf.shape(per_sample)[0] * num_replicas(), tf.float32)
            local_meta = tf.reduce_sum(per_sample) / global_m
        g_kernel, g_bias = all_reduce_sum(meta_tape.gradient(local_meta, [kernel_hat, bias_hat]))
        s = tf.reduce_sum(tf.matmul(features, g_kernel) * delta, axis=1) + tf.linalg.matvec(delta, g_bias)
        return Lookahead(Forward(tape, logits, losses, global_losses), s, all_reduce_sum(local_meta))

    return step


def step_for(meta_step: str, classifier: keras.Model) -> Step:
    """The look-ahead function of `--meta_step`, made once for this classifier."""
    return globals()[get_meta_step(meta_step).name](classifier)
