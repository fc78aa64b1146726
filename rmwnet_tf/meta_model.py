"""The classifier and its weighting net trained together by one custom `train_step`.

One meta step (MW-Net's bilevel update, as the official code does it):

1. forward the train batch at w; per-sample CE l_i; weights W_i = VNet(l_i) with l_i a constant;
2. virtual SGD step  w_hat = w - lr * sum_i W~_i grad l_i(w)   (no momentum, no weight decay);
3. meta loss on the meta batch at w_hat (training-mode BatchNorm, moving statistics discarded);
4. update Theta with the exact gradient of that meta loss;
5. real step with the weights of the *updated* VNet.

Why it is cheap. Because l_i enters the VNet as a constant, the meta-gradient factorises:
    dL_meta/dTheta = -lr * sum_i s_i dW~_i/dTheta,   s_i = G . grad l_i(w),   G = grad L_meta(w_hat).
So instead of differentiating through the virtual step (a second-order graph), the production
step needs only the directional derivatives s = J G of the per-sample losses along G. They
come from one backward pass *of the backward pass* that produced the virtual step
(`meta_step="exact"`) or from a forward-mode product (`meta_step="jvp"`); the real
step then reuses the recorded train-batch forward with new output weights. `meta_step="nested"`
is the textbook nested-tape computation, kept as the reference the tests compare against.

`meta_step="head"` is an approximation: the virtual step moves only the final Dense layer,
whose per-sample gradients are available in closed form, so the meta batch needs a forward
pass only.

`meta_every=k` updates the weighting net on one step in k (see `_scheduled_train_step`); the
other steps are real steps weighted by the current VNet, at about the cost of a plain step.

Global-batch semantics under tf.distribute: per-sample losses, weights and directional
derivatives are all-gathered (they are [n] vectors), gradients are all-reduced, so every
replica computes the same virtual step and the same VNet update as a single device would.
"""

from __future__ import annotations


import keras
import numpy as np
import tensorflow as tf

from rmwnet_tf import losses as losses_lib
from rmwnet_tf.meta_steps import get_meta_step
from rmwnet_tf.methods import get_method

WEIGHT_NORMS = ("sum", "mean")


def _replica_context():
    return tf.distribute.get_replica_context()


def _num_replicas() -> int:
    ctx = _replica_context()
    return ctx.num_replicas_in_sync if ctx is not None else 1


def _all_reduce_sum(values):
    """Sum over replicas; a no-op (no collective op at all) on a single device."""
    if _num_replicas() == 1:
        return values
    return _replica_context().all_reduce(tf.distribute.ReduceOp.SUM, values)


def _all_gather(value):
    """Concatenate a per-replica [n] vector over replicas, in replica-id order.

    Built from an all-reduce of zero-padded slots: `ReplicaContext.all_gather` fails under
    MultiWorkerMirroredStrategy in TF 2.21 ("destinations can not be empty"), and these
    vectors are tiny.
    """
    replicas = _num_replicas()
    if replicas == 1:
        return value
    ctx = _replica_context()
    local_n = tf.shape(value)[0]
    start = tf.cast(ctx.replica_id_in_sync_group, tf.int32) * local_n
    slot = tf.pad(tf.cast(value, tf.float32), [[start, (replicas - 1) * local_n - start]])
    return tf.cast(ctx.all_reduce(tf.distribute.ReduceOp.SUM, slot), value.dtype)


def _local_slice(global_value, local_size):
    """This replica's rows of an all-gathered vector (replicas are gathered in id order)."""
    if _num_replicas() == 1:
        return global_value
    replica_id = _replica_context().replica_id_in_sync_group
    start = tf.cast(replica_id, tf.int32) * local_size
    return global_value[start : start + local_size]


def _assign_from_replicas(variables, values):
    """variable.assign(value) from replica context, for (mirrored) variables of any aggregation.

    Every replica passes the same values; the assignment runs in cross-replica context, as the
    Keras optimizers update their variables.
    """
    def assign_all(strategy, values):
        for variable, value in zip(variables, values):
            target = variable.value if isinstance(variable, keras.Variable) else variable
            strategy.extended.update(target, lambda v, x: v.assign(x), args=(value,), group=False)

    ctx = _replica_context()
    if ctx is None or _num_replicas() == 1:
        for variable, value in zip(variables, values):
            variable.assign(value)
    else:
        ctx.merge_call(assign_all, args=(values,))


def _as_logs(results: dict) -> dict:
    """Step outputs in the shape Keras can reduce across workers.

    Keras (3.15) reduces per-replica logs of a multi-worker run with
    `strategy.reduce("MEAN", v, axis=0)`, which rejects scalars; a [1] vector reduces to the
    same scalar mean. Elsewhere the logs stay scalars.
    """
    if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
        return {name: tf.reshape(value, [1]) for name, value in results.items()}
    return results


def _add_coupled_decay(grads, variables, decay, scale=1.0):
    """PyTorch-style L2 (grad += decay * w), unlike Keras' decoupled `weight_decay`.

    `scale` divides the decay term across replicas, because the optimizer sums the per-replica
    gradients it is given.
    """
    if not decay:
        return list(grads)
    return [g + (decay * scale) * tf.convert_to_tensor(v) for g, v in zip(grads, variables)]


class MetaWeightModel(keras.Model):
    """A classifier plus (for the meta methods) the weighting net W(loss; Theta)."""

    def __init__(
        self,
        classifier: keras.Model,
        vnet: keras.Model | None = None,
        *,
        method: str = "rmnwnet",
        global_batch_size: int,
        weight_norm: str = "sum",
        meta_step: str = "exact",
        meta_every: int = 1,
        weight_decay: float = 5e-4,
        vnet_weight_decay: float = 5e-4,
        image_classifier: keras.Model | None = None,
        **kwargs,
    ):
        """`classifier` is the network the steps train and the evaluations run; `image_classifier`
        (default: the same) maps images to logits and is what checkpoints hold and exports serve.
        They differ only in a head-only run on cached backbone features (feature_cache.py), where
        `classifier` is the head alone, sharing `image_classifier`'s last layer."""
        super().__init__(**kwargs)
        self.spec = get_method(method)
        if self.spec.uses_meta and vnet is None:
            raise ValueError(f"method {method!r} needs a weighting net (vnet)")
        if weight_norm not in WEIGHT_NORMS:
            raise ValueError(f"weight_norm must be one of {WEIGHT_NORMS}, got {weight_norm!r}")
        step = get_meta_step(meta_step)
        if int(meta_every) != meta_every or meta_every < 1:
            raise ValueError(f"meta_every must be an integer >= 1, got {meta_every!r}")
        self.method = method
        self.classifier = classifier
        self.image_classifier = classifier if image_classifier is None else image_classifier
        self.vnet = vnet if self.spec.uses_meta else None
        self.meta_loss_fn = (
            losses_lib.get_meta_loss(self.spec.meta_loss) if self.spec.uses_meta else None
        )
        self.weight_norm = weight_norm
        self.meta_step = step.name
        self.meta_grad, self.meta_scope = step.grad, step.scope  # how _meta_train_step computes it
        self.meta_every = int(meta_every)
        self._vnet_update_gate = None  # set while tracing the masked schedule (_scheduled_train_step)
        self.weight_decay = float(weight_decay)
        self.vnet_weight_decay = float(vnet_weight_decay)
        self.global_batch_size = int(global_batch_size)
        if self.meta_scope == "head":
            self._split_head()

        self.loss_tracker = keras.metrics.Mean(name="train/loss")
        self.accuracy_tracker = keras.metrics.Mean(name="train/accuracy")
        self.weighted_loss_tracker = keras.metrics.Mean(name="train/weighted_loss")
        self.meta_loss_tracker = keras.metrics.Mean(name="meta/loss")
        self.weight_mean_tracker = keras.metrics.Mean(name="train/weight_mean")

        self.built = True

    # ---------------------------------------------------------------- compile
    def compile(self, optimizer, vnet_optimizer=None, **kwargs):
        """Also takes the weighting net's optimizer; both are built here, up front.

        Lazy optimizer creation inside the first step breaks under tf.distribute and XLA.
        """
        super().compile(optimizer=optimizer, **kwargs)
        self.optimizer.build(self.classifier.trainable_variables)
        self.vnet_optimizer = vnet_optimizer
        if self.spec.uses_meta:
            if vnet_optimizer is None:
                raise ValueError(f"method {self.method!r} needs a vnet_optimizer")
            vnet_optimizer.build(self.vnet.trainable_variables)

    @property
    def metrics(self):
        """The step's running means over the epoch's (augmented) training batches.

        Base reports only its loss and accuracy: its weights are all one and it has no meta loss.
        """
        trackers = [self.loss_tracker, self.accuracy_tracker]
        if self.spec.uses_meta:
            trackers += [self.weighted_loss_tracker, self.meta_loss_tracker, self.weight_mean_tracker]
        return trackers

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Skip Keras' symbolic build under a strategy: everything is built in __init__/compile.

        Keras would pull one batch off the iterator and all-reduce it; with our nested-dict
        batches MultiWorkerMirroredStrategy cannot (TF 2.21: "Attempt to convert a value
        ({'train': ...PerReplica...}) with an unsupported type (<class 'dict'>) to a Tensor").
        """
        return

    def call(self, images, training=False):
        return self.classifier(images, training=training)

    # ---------------------------------------------------------------- weights
    def weight_function(self, losses: np.ndarray) -> np.ndarray:
        """Raw W(loss) for an array of losses (ones for the base method)."""
        losses = np.asarray(losses, np.float32).reshape(-1, 1)
        if self.vnet is None:
            return np.ones(len(losses), np.float32)
        return np.asarray(self.vnet(losses, training=False)).reshape(-1)

    def _raw_weights(self, losses, vnet_values=None):
        """W_i = VNet(l_i) with l_i a constant input."""
        x = tf.reshape(tf.stop_gradient(losses), [-1, 1])
        if vnet_values is None:
            w = self.vnet(x, training=True)
        else:
            w, _ = self.vnet.stateless_call(vnet_values, [], x, training=True)
        return tf.reshape(w, [-1])

    def _normalise(self, raw):
        """`sum`: W / sum(W) over the global batch (official code); `mean`: W / n (paper)."""
        if self.weight_norm == "sum":
            return tf.math.divide_no_nan(raw, tf.reduce_sum(raw))
        return raw / tf.cast(tf.shape(raw)[0], raw.dtype)

    def _current_lr(self):
        return tf.cast(self.optimizer.learning_rate, tf.float32)

    # ---------------------------------------------------------------- steps
    def train_step(self, data):
        train = data["train"]
        if not self.spec.uses_meta:
            stats = self._base_train_step(train)
        elif self.meta_every == 1:
            stats = self._meta_train_step(train, data["meta"])
        else:
            stats = self._scheduled_train_step(train, data["meta"])
        return self._update_train_metrics(train, **stats)

    def _scheduled_train_step(self, train, meta):
        """`meta_every = k > 1`: the meta step on the steps where the classifier optimizer's
        iteration count is a multiple of k, a weighted step with the current VNet otherwise.

        The schedule is a pure function of `optimizer.iterations`, which is checkpointed, so a
        resumed run takes the same steps bit for bit. The meta batch is consumed on every step
        anyway: the input pipeline pairs one meta batch with each train batch (the meta stream
        is indexed by step), which keeps a resumed run's meta batches aligned too.

        `meta/loss` is averaged over the meta steps only (the other steps do not compute it);
        an epoch without a meta step reports 0.

        Where collectives may sit inside a `tf.cond` (one replica, or an all-GPU strategy under
        XLA), the non-meta steps skip the virtual step and the VNet update entirely: cost about
        a plain step plus W on one batch. Strategies that all-reduce through `merge_call` (every
        multi-replica CPU strategy, and GPUs without XLA) refuse collectives inside a `tf.cond`
        ("merge_call called while defining a new graph"), so there every step computes the meta
        step and a non-meta step restores the VNet and its optimizer before the real step: the
        same updates, without the saving.
        """
        iterations = tf.convert_to_tensor(self.optimizer.iterations)
        is_meta = tf.equal(tf.math.floormod(iterations, tf.cast(self.meta_every, iterations.dtype)), 0)
        if _num_replicas() == 1 or tf.__internal__.distribute.strategy_supports_no_merge_call():
            stats = tf.cond(is_meta, lambda: self._meta_train_step(train, meta),
                            lambda: self._weighted_train_step(train))
        else:
            self._vnet_update_gate = is_meta
            try:
                stats = self._meta_train_step(train, meta)
            finally:
                self._vnet_update_gate = None
        return dict(stats, meta_weight=tf.cast(is_meta, tf.float32))

    def _weighted_train_step(self, train):
        """A real step weighted by the current VNet: no virtual step, no VNet update."""
        x, y = train["image"], train["label"]
        with tf.GradientTape() as tape:
            logits = self.classifier(x, training=True)
            losses = losses_lib.cross_entropy(y, logits)
        global_losses = _all_gather(losses)
        raw = self._raw_weights(global_losses)
        weights = tf.stop_gradient(_local_slice(self._normalise(raw), tf.shape(losses)[0]))
        grads = tape.gradient(losses, self.classifier.trainable_variables, output_gradients=weights)
        self._apply_classifier_step(grads)
        return dict(
            logits=logits,
            global_losses=global_losses,
            global_raw_weights=raw,
            meta_loss=tf.zeros([]),
            weighted_loss=_all_reduce_sum(tf.reduce_sum(weights * losses)),
        )

    @staticmethod
    def _correct(labels, logits):
        predicted = tf.argmax(logits, axis=-1, output_type=tf.int32)
        return tf.cast(tf.equal(predicted, tf.cast(labels, tf.int32)), tf.float32)

    def _update_train_metrics(self, train, *, logits, global_losses, global_raw_weights, meta_loss,
                              weighted_loss, meta_weight=None):
        """Running means over the global batch (the steps have gathered the vectors already).

        The step reports only these means; per-sample numbers come from `evaluate.evaluate`.
        `meta_weight` (0 or 1) leaves the steps that computed no meta loss out of its mean.
        """
        self.loss_tracker.update_state(global_losses)
        self.accuracy_tracker.update_state(self._correct(train["label"], logits))
        if self.spec.uses_meta:
            self.weighted_loss_tracker.update_state(weighted_loss)
            self.meta_loss_tracker.update_state(meta_loss, sample_weight=meta_weight)
            self.weight_mean_tracker.update_state(global_raw_weights)
        return _as_logs({m.name: m.result() for m in self.metrics})

    def _apply_classifier_step(self, grads):
        params = self.classifier.trainable_variables
        grads = _add_coupled_decay(grads, params, self.weight_decay, 1.0 / _num_replicas())
        self.optimizer.apply(grads, params)

    def _base_train_step(self, train):
        x, y = train["image"], train["label"]
        global_n = tf.cast(tf.shape(y)[0] * _num_replicas(), tf.float32)
        with tf.GradientTape() as tape:
            logits = self.classifier(x, training=True)
            losses = losses_lib.cross_entropy(y, logits)
            local_objective = tf.reduce_sum(losses) / global_n
        self._apply_classifier_step(tape.gradient(local_objective, self.classifier.trainable_variables))
        global_losses = _all_gather(losses)
        return dict(
            logits=logits,
            global_losses=global_losses,
            global_raw_weights=tf.ones_like(global_losses),
            meta_loss=tf.zeros([]),
            weighted_loss=tf.reduce_mean(global_losses),
        )

    def _meta_objective(self, meta, trainable_values, non_trainable_values):
        """Sum of this replica's meta losses / global meta batch: all-reduce gives the mean."""
        logits, _ = self.classifier.stateless_call(
            trainable_values, non_trainable_values, meta["image"], training=True
        )
        per_sample = self.meta_loss_fn(meta["label"], logits)
        global_m = tf.cast(tf.shape(per_sample)[0] * _num_replicas(), tf.float32)
        return tf.reduce_sum(per_sample) / global_m

    def _meta_train_step(self, train, meta):
        if self.meta_grad == "nested":
            return self._nested_meta_step(train, meta)
        if self.meta_scope == "head":
            return self._head_meta_step(train, meta)
        return self._factored_meta_step(train, meta)

    def _update_vnet(self, global_losses, global_s, lr):
        """Theta <- optimizer(dL_meta/dTheta) with dL/dTheta = -lr sum_i s_i dW~_i/dTheta."""
        vnet_vars = self.vnet.trainable_variables
        with tf.GradientTape() as tape:
            normalised = self._normalise(self._raw_weights(global_losses))
            surrogate = -lr * tf.reduce_sum(tf.stop_gradient(global_s) * normalised)
        # Every replica holds the full global vectors, so each computed the whole gradient.
        self._apply_global_vnet_grads(tape.gradient(surrogate, vnet_vars))

    def _apply_global_vnet_grads(self, grads):
        """Apply a gradient every replica holds in full (the optimizer sums over replicas)."""
        vnet_vars = self.vnet.trainable_variables
        replicas = _num_replicas()
        grads = _add_coupled_decay([g / replicas for g in grads], vnet_vars, self.vnet_weight_decay, 1.0 / replicas)
        if self._vnet_update_gate is None:
            self.vnet_optimizer.apply(grads, vnet_vars)
            return
        # The masked schedule (see _scheduled_train_step): update, then restore unless a meta step.
        state = list(vnet_vars) + list(self.vnet_optimizer.variables)
        before = [tf.identity(tf.convert_to_tensor(v)) for v in state]
        with tf.control_dependencies(before):
            self.vnet_optimizer.apply(grads, vnet_vars)
        kept = [tf.where(self._vnet_update_gate, tf.convert_to_tensor(v), old) for v, old in zip(state, before)]
        _assign_from_replicas(state, kept)

    def _factored_meta_step(self, train, meta):
        """Exact meta step from one recorded train forward (see the module docstring)."""
        x, y = train["image"], train["label"]
        params = self.classifier.trainable_variables
        lr = self._current_lr()
        local_n = tf.shape(y)[0]

        # The real step's forward: the only call that updates BN moving statistics.
        with tf.GradientTape(persistent=True) as tape:
            logits = self.classifier(x, training=True)
            losses = losses_lib.cross_entropy(y, logits)
        global_losses = _all_gather(losses)
        old_weights = _local_slice(self._normalise(self._raw_weights(global_losses)), local_n)

        # Virtual step. The output weights are watched so that s = J G can later be read off
        # this very backward pass by differentiating it once more.
        with tf.GradientTape() as weights_tape:
            weights_tape.watch(old_weights)
            local_grads = tape.gradient(losses, params, output_gradients=old_weights)
        lookahead_grads = _all_reduce_sum(local_grads)
        param_values = [tf.convert_to_tensor(p) for p in params]
        non_trainable = [tf.convert_to_tensor(v) for v in self.classifier.non_trainable_variables]
        w_hat = [p - lr * g for p, g in zip(param_values, lookahead_grads)]

        with tf.GradientTape() as meta_tape:
            meta_tape.watch(w_hat)
            local_meta = self._meta_objective(meta, w_hat, non_trainable)
        meta_grads = _all_reduce_sum(meta_tape.gradient(local_meta, w_hat))
        meta_loss = _all_reduce_sum(local_meta)

        if self.meta_grad == "double_backward":
            s = weights_tape.gradient(local_grads, old_weights, output_gradients=meta_grads)
        else:  # jvp: forward-mode product through a stateless re-run of the train forward
            with tf.autodiff.ForwardAccumulator(param_values, meta_grads) as acc:
                jvp_logits, _ = self.classifier.stateless_call(
                    param_values, non_trainable, x, training=True
                )
                jvp_losses = losses_lib.cross_entropy(y, jvp_logits)
            s = acc.jvp(jvp_losses)
        return self._vnet_then_real_step(tape, logits, losses, global_losses, s, lr, meta_loss)

    def _vnet_then_real_step(self, tape, logits, losses, global_losses, s, lr, meta_loss):
        """Steps 4 and 5: update Theta from s, then the real step reusing the recorded forward."""
        self._update_vnet(global_losses, _all_gather(s), lr)
        local_n = tf.shape(losses)[0]
        new_raw = self._raw_weights(global_losses)
        new_weights = _local_slice(self._normalise(new_raw), local_n)
        params = self.classifier.trainable_variables
        real_grads = tape.gradient(losses, params, output_gradients=tf.stop_gradient(new_weights))
        self._apply_classifier_step(real_grads)
        return dict(
            logits=logits,
            global_losses=global_losses,
            global_raw_weights=new_raw,
            meta_loss=meta_loss,
            weighted_loss=_all_reduce_sum(tf.reduce_sum(new_weights * losses)),
        )

    def _nested_meta_step(self, train, meta):
        """Reference: differentiate the meta loss through the virtual step (second order)."""
        x, y = train["image"], train["label"]
        params = self.classifier.trainable_variables
        vnet_vars = self.vnet.trainable_variables
        local_n = tf.shape(y)[0]
        with tf.GradientTape() as vnet_tape:
            local_meta = lookahead_meta_loss(self, train, meta)
        self._apply_global_vnet_grads(_all_reduce_sum(vnet_tape.gradient(local_meta, vnet_vars)))

        # Real step: a fresh forward, as the official code does.
        with tf.GradientTape() as tape:
            logits = self.classifier(x, training=True)
            losses = losses_lib.cross_entropy(y, logits)
            global_losses = _all_gather(losses)
            new_raw = self._raw_weights(global_losses)
            new_weights = tf.stop_gradient(_local_slice(self._normalise(new_raw), local_n))
            objective = tf.reduce_sum(new_weights * losses)
        self._apply_classifier_step(tape.gradient(objective, params))
        return dict(
            logits=logits,
            global_losses=global_losses,
            global_raw_weights=new_raw,
            meta_loss=_all_reduce_sum(local_meta),
            weighted_loss=_all_reduce_sum(objective),
        )

    # ---------------------------------------------------------------- head scope
    def _split_head(self):
        head = self.classifier.layers[-1]
        if not isinstance(head, keras.layers.Dense) or not head.use_bias:
            raise ValueError("meta_step='head' needs a classifier whose last layer is a Dense with bias")
        self._head = head
        self._body = keras.Model(self.classifier.inputs, head.input, name="body")

    def _head_meta_step(self, train, meta):
        """Approximate step: the virtual SGD step moves only the final Dense layer.

        With features h_i and delta_i = softmax_i - onehot_i, grad l_i = (h_i delta_i^T, delta_i)
        in closed form, so the virtual step, G and every s_i cost a few small matmuls.
        """
        x, y = train["image"], train["label"]
        lr = self._current_lr()
        local_n = tf.shape(y)[0]
        kernel, bias = self._head.kernel, self._head.bias
        num_classes = tf.shape(kernel)[1]

        with tf.GradientTape(persistent=True) as tape:
            features = self._body(x, training=True)
            logits = self._head(features)
            losses = losses_lib.cross_entropy(y, logits)
        global_losses = _all_gather(losses)
        old_weights = _local_slice(self._normalise(self._raw_weights(global_losses)), local_n)
        # float32 closed form under a mixed precision policy too (the head's variables are float32).
        delta = tf.nn.softmax(tf.cast(logits, tf.float32)) - tf.one_hot(y, num_classes)
        features = tf.cast(tf.stop_gradient(features), tf.float32)
        weighted_delta = old_weights[:, None] * delta
        kernel_hat = kernel - lr * _all_reduce_sum(tf.matmul(features, weighted_delta, transpose_a=True))
        bias_hat = bias - lr * _all_reduce_sum(tf.reduce_sum(weighted_delta, axis=0))

        body_values = [tf.convert_to_tensor(v) for v in self._body.trainable_variables]
        body_fixed = [tf.convert_to_tensor(v) for v in self._body.non_trainable_variables]
        meta_features, _ = self._body.stateless_call(body_values, body_fixed, meta["image"], training=True)
        meta_features = tf.cast(meta_features, tf.float32)
        with tf.GradientTape() as meta_tape:
            meta_tape.watch([kernel_hat, bias_hat])
            meta_logits = tf.matmul(meta_features, kernel_hat) + bias_hat
            per_sample = self.meta_loss_fn(meta["label"], meta_logits)
            global_m = tf.cast(tf.shape(per_sample)[0] * _num_replicas(), tf.float32)
            local_meta = tf.reduce_sum(per_sample) / global_m
        g_kernel, g_bias = _all_reduce_sum(meta_tape.gradient(local_meta, [kernel_hat, bias_hat]))
        s = tf.reduce_sum(tf.matmul(features, g_kernel) * delta, axis=1) + tf.linalg.matvec(delta, g_bias)
        return self._vnet_then_real_step(tape, logits, losses, global_losses, s, lr, _all_reduce_sum(local_meta))


def lookahead_meta_loss(
    model: MetaWeightModel, train, meta, vnet_values=None, sample_weights=None
) -> tf.Tensor:
    """This replica's share of L_meta(w_hat(Theta)) at the classifier's current weights.

    The meta objective as a plain function of the weighting net's parameters (or, with
    `sample_weights`, of this replica's normalised per-sample weights), differentiated through
    the virtual step by the nested-tape step and by the tests (also by finite differences).
    BN moving statistics are left alone (stateless calls).
    """
    x, y = train["image"], train["label"]
    lr = model._current_lr()
    params = [tf.convert_to_tensor(p) for p in model.classifier.trainable_variables]
    fixed = [tf.convert_to_tensor(v) for v in model.classifier.non_trainable_variables]
    with tf.GradientTape() as inner:
        inner.watch(params)
        logits, _ = model.classifier.stateless_call(params, fixed, x, training=True)
        losses = losses_lib.cross_entropy(y, logits)
        if sample_weights is None:
            raw = model._raw_weights(_all_gather(losses), vnet_values)
            sample_weights = _local_slice(model._normalise(raw), tf.shape(losses)[0])
        weighted = tf.reduce_sum(sample_weights * losses)
    grads = _all_reduce_sum(inner.gradient(weighted, params))
    w_hat = [p - lr * g for p, g in zip(params, grads)]
    return model._meta_objective(meta, w_hat, fixed)


def meta_gradient(model: MetaWeightModel, train, meta) -> list[tf.Tensor]:
    """Reference dL_meta/dTheta by nested tapes (second order), without updating anything."""
    vnet_values = [tf.convert_to_tensor(v) for v in model.vnet.trainable_variables]
    with tf.GradientTape() as tape:
        tape.watch(vnet_values)
        value = lookahead_meta_loss(model, train, meta, vnet_values)
    return tape.gradient(value, vnet_values)


def default_jit_compile(uses_meta: bool) -> bool:
    """XLA by device type, as measured (BUILD_NOTES.md "XLA on CPU", scripts/benchmark_step.py).

    On CPU, off for every step kind: with oneDNN's convolution kernels (AVX-512 machine, 2
    cores, ResNet-32, batch 100, interleaved in one process) XLA made the plain step 1.67x
    slower at 32x32 and 1.19x at 16x16, and the exact meta step 1.48x and 1.22x slower (an
    older CPU had measured XLA 9-16% faster for the meta steps; the kernels, not the step
    kind, decide). On GPU XLA is the usual win. `uses_meta` is kept for callers that ask per
    step kind.
    """
    del uses_meta
    return bool(tf.config.list_physical_devices("GPU"))
