"""The classifier and its weighting net trained together by one custom `train_step`.

One meta step (MW-Net's bilevel update, as the official code does it): the look-ahead
(`lookahead.py`, one function per `--meta_step`, picked once here) records the train batch's
forward and returns the directional derivatives s of the per-sample losses along the meta
loss's gradient at the virtual weights; then

4. Theta is updated with the exact meta-gradient, -lr * sum_i s_i dW~_i/dTheta;
5. the real step reuses the recorded forward, weighted by the *updated* weighting net.

The weighting net reads, and the steps weight, the per-sample loss the method's classifier
minimises (`methods.Method.train_loss`: CE, or GCE for `rmnwnet_gce`), the paper's
W(l_i(w); Theta); `train/loss` stays the mean CE for every method, so the logs compare.

`meta_every=k` updates the weighting net on one step in k (see `_scheduled_train_step`); the
other steps are real steps weighted by the current VNet, at about the cost of a plain step.
Base (and the references gce, oracle) take a plain step on their own per-sample loss.

Global-batch semantics under tf.distribute: see `collectives.py`.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from rmwnet_tf import lookahead
from rmwnet_tf import losses as losses_lib
from rmwnet_tf.collectives import all_gather, all_reduce_sum, as_logs, local_slice, num_replicas
from rmwnet_tf.meta_steps import get_meta_step
from rmwnet_tf.methods import get_method
from rmwnet_tf.optimizer_steps import add_coupled_decay, apply_where

WEIGHT_NORMS = ("sum", "mean")


class MetaWeightModel(keras.Model):
    """A classifier plus (for the meta methods) the weighting net W(loss; Theta)."""

    def __init__(
        self,
        classifier: keras.Model,
        vnet: keras.Model | None = None,
        *,
        method: str = "rmnwnet",
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
        # The per-sample loss the classifier minimises, and for the meta methods W's input.
        self.train_loss_fn = losses_lib.TRAIN_LOSSES[self.spec.train_loss]
        self.weight_norm = weight_norm
        self.meta_step = step.name
        self.meta_every = int(meta_every)
        self._vnet_update_gate = None  # set while tracing the masked schedule (_scheduled_train_step)
        self.weight_decay = float(weight_decay)
        self.vnet_weight_decay = float(vnet_weight_decay)
        self.lookahead = lookahead.step_for(step.name, classifier) if self.spec.uses_meta else None

        self.loss_tracker = keras.metrics.Mean(name="train/loss")
        self.accuracy_tracker = keras.metrics.Mean(name="train/accuracy")
        self.weighted_loss_tracker = keras.metrics.Mean(name="train/weighted_loss")
        self.meta_loss_tracker = keras.metrics.Mean(name="meta/loss")
        self.weight_mean_tracker = keras.metrics.Mean(name="train/weight_mean")
        # evaluate() / validation_data: plain CE and accuracy of the classifier in inference mode.
        self.eval_loss_tracker = keras.metrics.Mean(name="loss")
        self.eval_accuracy_tracker = keras.metrics.Mean(name="accuracy")

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

    def reset_metrics(self):
        """Also the evaluation means, which stay out of `metrics` (the train step's logs)."""
        super().reset_metrics()
        self.eval_loss_tracker.reset_state()
        self.eval_accuracy_tracker.reset_state()

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Skipped: everything is built in __init__/compile, and under MultiWorkerMirroredStrategy
        Keras' build cannot all-reduce our nested-dict batches (TF 2.21: "unsupported type <dict>")."""
        return

    def call(self, images, training=False):
        return self.classifier(images, training=training)

    # ---------------------------------------------------------------- weights
    def weight_function(self, losses: np.ndarray) -> np.ndarray:
        """Raw W(loss) for an array of the method's training losses (`train_loss_fn`'s values;
        ones for the base method)."""
        losses = np.asarray(losses, np.float32).reshape(-1, 1)
        if self.vnet is None:
            return np.ones(len(losses), np.float32)
        return np.asarray(self.vnet(losses, training=False)).reshape(-1)

    def raw_weights(self, losses, vnet_values=None):
        """W_i = VNet(l_i) with l_i a constant input (at `vnet_values` if given)."""
        x = tf.reshape(tf.stop_gradient(losses), [-1, 1])
        if vnet_values is None:
            w = self.vnet(x, training=True)
        else:
            w, _ = self.vnet.stateless_call(vnet_values, [], x, training=True)
        return tf.reshape(w, [-1])

    def normalise(self, raw):
        """`sum`: W / sum(W) over the global batch (official code); `mean`: W / n (paper)."""
        if self.weight_norm == "sum":
            return tf.math.divide_no_nan(raw, tf.reduce_sum(raw))
        return raw / tf.cast(tf.shape(raw)[0], raw.dtype)

    def lookahead_context(self) -> lookahead.Context:
        """What the look-ahead needs, read at call time (the meta loss may be swapped by tests)."""
        return lookahead.Context(
            classifier=self.classifier, lr=tf.cast(self.optimizer.learning_rate, tf.float32),
            train_loss=self.train_loss_fn, meta_loss=self.meta_loss_fn,
            sample_weights=lambda losses, vnet_values=None: self.normalise(self.raw_weights(losses, vnet_values)))

    # ---------------------------------------------------------------- batch layouts
    def step_layout(self, data) -> dict:
        """The train step's batch as {"train": {"image", "label"}, "meta": {"image", "label"}}.

        Also accepted, for Keras users: `(images, labels)` batches (a method without a meta
        set), and either part as an `(images, labels)` pair. Anything else fails here with one
        line naming the layouts, not deep inside the step with a `TypeError` on a tuple index.
        """
        if isinstance(data, dict) and "train" in data:
            layout = {"train": labelled_batch(data["train"], "the training batch")}
            if "meta" in data:
                layout["meta"] = labelled_batch(data["meta"], "the meta batch")
        else:
            layout = {"train": labelled_batch(data, "the training batch")}
        if self.spec.uses_meta and "meta" not in layout:
            raise ValueError(
                f"method {self.method!r} needs a meta batch with every training batch: fit "
                "rmwnet_tf.MetaWeightModel with meta_data=(meta_images, meta_labels), or feed batches "
                "{'train': (images, labels), 'meta': (images, labels)}")
        return layout

    # ---------------------------------------------------------------- steps
    def test_step(self, data):
        """Mean cross-entropy and accuracy of the classifier (inference mode) on `(images, labels)`
        batches: what `evaluate` and `fit(validation_data=...)` (as `val_loss`, `val_accuracy`) report."""
        batch = labelled_batch(data, "an evaluation batch")
        logits = self.classifier(batch["image"], training=False)
        loss = losses_lib.cross_entropy(batch["label"], logits)
        predicted = tf.argmax(logits, axis=-1, output_type=tf.int32)
        correct = tf.cast(tf.equal(predicted, tf.cast(batch["label"], tf.int32)), tf.float32)
        if num_replicas() == 1:
            self.eval_loss_tracker.update_state(loss)
            self.eval_accuracy_tracker.update_state(correct)
        else:
            # Each replica's means must be the global batch's: Keras averages the replicas' logs,
            # which is the global mean only when every replica held as many samples, and a
            # short last batch splits unevenly (e.g. 4 and 3 of 7). Sums and counts add up exactly.
            count = all_reduce_sum(tf.cast(tf.shape(loss)[0], tf.float32))
            for tracker, values in ((self.eval_loss_tracker, loss), (self.eval_accuracy_tracker, correct)):
                tracker.update_state(all_reduce_sum(tf.reduce_sum(values)) / count, sample_weight=count)
        return {m.name: m.result() for m in (self.eval_loss_tracker, self.eval_accuracy_tracker)}

    def predict_step(self, data):
        """The classifier's logits (inference mode) for image batches, `(images, labels)` or
        {"image", ...} batches (the labels are ignored)."""
        if isinstance(data, dict) and "image" in data:
            images = data["image"]
        elif isinstance(data, (tuple, list)):
            images = data[0]
        else:
            images = data
        return self.classifier(images, training=False)

    def train_step(self, data):
        data = self.step_layout(data)
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
        if num_replicas() == 1 or tf.__internal__.distribute.strategy_supports_no_merge_call():
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
            losses = self.train_loss_fn(y, logits)
        global_losses = all_gather(losses)
        raw = self.raw_weights(global_losses)
        weights = tf.stop_gradient(local_slice(self.normalise(raw), tf.shape(losses)[0]))
        grads = tape.gradient(losses, self.classifier.trainable_variables, output_gradients=weights)
        self._apply_classifier_step(grads)
        return dict(
            logits=logits,
            global_losses=global_losses,
            global_raw_weights=raw,
            meta_loss=tf.zeros([]),
            weighted_loss=all_reduce_sum(tf.reduce_sum(weights * losses)),
        )

    def _update_train_metrics(self, train, *, logits, global_losses, global_raw_weights, meta_loss,
                              weighted_loss, meta_weight=None):
        """Running means over the global batch (the steps have gathered the vectors already).

        The step reports only these means; per-sample numbers come from `evaluate.evaluate`.
        `global_losses` are the training losses (what was weighted); `train/loss` is their mean
        for a CE method and the mean CE, computed here, for the others (gce, rmnwnet_gce), so that
        it means the same for every method. `meta_weight` (0 or 1) leaves the steps that
        computed no meta loss out of its mean.
        """
        if self.spec.train_loss != "ce":
            global_losses = all_gather(losses_lib.cross_entropy(train["label"], logits))
        self.loss_tracker.update_state(global_losses)
        predicted = tf.argmax(logits, axis=-1, output_type=tf.int32)
        self.accuracy_tracker.update_state(tf.cast(tf.equal(predicted, tf.cast(train["label"], tf.int32)), tf.float32))
        if self.spec.uses_meta:
            self.weighted_loss_tracker.update_state(weighted_loss)
            self.meta_loss_tracker.update_state(meta_loss, sample_weight=meta_weight)
            self.weight_mean_tracker.update_state(global_raw_weights)
        return as_logs({m.name: m.result() for m in self.metrics})

    def _apply_classifier_step(self, grads):
        params = self.classifier.trainable_variables
        grads = add_coupled_decay(grads, params, self.weight_decay, 1.0 / num_replicas())
        self.optimizer.apply(grads, params)

    def _base_train_step(self, train):
        x, y = train["image"], train["label"]
        global_n = tf.cast(tf.shape(y)[0] * num_replicas(), tf.float32)
        with tf.GradientTape() as tape:
            logits = self.classifier(x, training=True)
            losses = self.train_loss_fn(y, logits)
            local_objective = tf.reduce_sum(losses) / global_n
        self._apply_classifier_step(tape.gradient(local_objective, self.classifier.trainable_variables))
        global_losses = all_gather(losses)
        return dict(
            logits=logits,
            global_losses=global_losses,
            global_raw_weights=tf.ones_like(global_losses),
            meta_loss=tf.zeros([]),
            weighted_loss=tf.reduce_mean(global_losses),
        )

    def _meta_train_step(self, train, meta):
        context = self.lookahead_context()
        ahead = self.lookahead(context, train, meta)
        return self._vnet_then_real_step(ahead.forward, ahead.s, context.lr, ahead.meta_loss)

    def _update_vnet(self, global_losses, global_s, lr):
        """Theta <- optimizer(dL_meta/dTheta)."""
        # Every replica holds the full global vectors, so each computed the whole gradient.
        self._apply_global_vnet_grads(self.vnet_meta_gradient(global_losses, global_s, lr))

    def vnet_meta_gradient(self, global_losses, global_s, lr):
        """dL_meta/dTheta = -lr sum_i s_i dW~_i/dTheta from the global batch's losses and s (the
        weighting net's meta-gradient, before weight decay; also read by the meta-signal diagnostic)."""
        with tf.GradientTape() as tape:
            normalised = self.normalise(self.raw_weights(global_losses))
            surrogate = -lr * tf.reduce_sum(tf.stop_gradient(global_s) * normalised)
        return tape.gradient(surrogate, self.vnet.trainable_variables)

    def _apply_global_vnet_grads(self, grads):
        """Apply a gradient every replica holds in full (the optimizer sums over replicas)."""
        vnet_vars = self.vnet.trainable_variables
        replicas = num_replicas()
        grads = add_coupled_decay([g / replicas for g in grads], vnet_vars, self.vnet_weight_decay, 1.0 / replicas)
        if self._vnet_update_gate is None:
            self.vnet_optimizer.apply(grads, vnet_vars)
        else:  # the masked schedule (see _scheduled_train_step): kept on meta steps only
            apply_where(self._vnet_update_gate, self.vnet_optimizer, grads, vnet_vars)

    def _vnet_then_real_step(self, forward: lookahead.Forward, s, lr, meta_loss):
        """Steps 4 and 5: update Theta from s, then the real step reusing the recorded forward."""
        tape, logits, losses, global_losses = forward
        self._update_vnet(global_losses, all_gather(s), lr)
        local_n = tf.shape(losses)[0]
        new_raw = self.raw_weights(global_losses)
        new_weights = local_slice(self.normalise(new_raw), local_n)
        params = self.classifier.trainable_variables
        real_grads = tape.gradient(losses, params, output_gradients=tf.stop_gradient(new_weights))
        self._apply_classifier_step(real_grads)
        return dict(
            logits=logits,
            global_losses=global_losses,
            global_raw_weights=new_raw,
            meta_loss=meta_loss,
            weighted_loss=all_reduce_sum(tf.reduce_sum(new_weights * losses)),
        )


def labelled_batch(batch, what: str) -> dict:
    """{"image", "label"} from a dict of those keys or an `(images, labels)` pair."""
    if isinstance(batch, dict) and "image" in batch and "label" in batch:
        return batch
    if isinstance(batch, (tuple, list)) and len(batch) == 3:
        raise ValueError(f"{what} carries sample weights: the method weights the samples itself "
                         "(drop sample_weight / class_weight)")
    if isinstance(batch, (tuple, list)) and len(batch) == 2 and not isinstance(batch[0], (tuple, list, dict)):
        return {"image": batch[0], "label": class_indices(batch[1], what)}
    shown = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
    raise ValueError(f"{what} must be (images, labels) or a dict with keys 'image' and 'label'; got {shown}")


def class_indices(labels, what: str):
    """Integer labels as a vector: Keras' own datasets give them as [n, 1] (CIFAR), which the
    per-sample losses would reject; one-hot [n, K] labels are refused, not flattened wrongly."""
    labels = tf.convert_to_tensor(labels)
    if labels.shape.rank == 2 and labels.shape[-1] not in (1, None):
        raise ValueError(f"{what}: labels must be integer class indices, got shape {labels.shape} "
                         "(one-hot? pass argmax(labels, axis=-1))")
    return tf.reshape(labels, [-1])
