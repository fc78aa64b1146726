"""`MetaWeightModel`: a Keras user's classifier trained by one of the methods, with compile / fit /
evaluate / predict and the stock callbacks.

Why a subclass of the engine (`rmwnet_tf.meta_model.MetaWeightModel`) and not new arguments on
it: the engine's constructor is the command line's contract
(a weighting net passed in, a batch layout of nested dicts); this class only builds what a user
should not have to (the seeded weighting net, the default optimizers, the paired meta batches) and
leaves every step to the engine. The command line (`rmwnet_tf/train.py`) builds this class too and
hands `fit` the engine's own batch layout, so there is one way to train.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from rmwnet_tf import meta_model, models
from rmwnet_tf.api import pairing, ranking
from rmwnet_tf.config import Config
from rmwnet_tf.methods import get_method

UNEVEN_BATCH = ("fit(): a training batch of the dataset does not split evenly over the replicas of the "
                "tf.distribute strategy: batch it in multiples of the replica count (drop_remainder=True)")
DEFAULTS = Config()  # the command line's defaults, the paper's settings where it gives them


def default_optimizer() -> keras.optimizers.Optimizer:
    """The classifier's: SGD with Nesterov momentum 0.9 at the command line's lr (0.05)."""
    return keras.optimizers.SGD(DEFAULTS.lr, momentum=DEFAULTS.momentum, nesterov=True)


def default_vnet_optimizer() -> keras.optimizers.Optimizer:
    """The weighting net's (the paper's): SGD, lr 1e-3, Nesterov momentum 0.9 (its weight decay,
    5e-4, is the model's `vnet_weight_decay`)."""
    return keras.optimizers.SGD(DEFAULTS.vnet_lr, momentum=DEFAULTS.vnet_momentum, nesterov=True)


class MetaWeightModel(meta_model.MetaWeightModel):
    """Your classifier, trained on noisy labels by RMNW-Net (default) or a relative.

    A weighting net W(loss) gives each training sample a weight in (0, 1) from its loss; it is
    learned by a meta step on a *meta set*, a small held-out part of your noisy data (no gold
    labels needed for `rmnwnet` and `mnwnet`). Usage::

        model = rmwnet_tf.MetaWeightModel(classifier, method="rmnwnet", seed=0)
        model.compile()  # the default optimizers, or compile(optimizer, vnet_optimizer)
        model.fit(x_train, y_train, meta_data=(x_meta, y_meta), batch_size=100, epochs=20,
                  validation_data=(x_meta, y_meta))  # val_accuracy: a monitor without gold labels
        model.evaluate(x_test, y_test)  # {"loss", "accuracy"}
        ranking = rmwnet_tf.rank_suspects(model, (x_train, y_train))

    Args:
        classifier: a built `keras.Model` mapping images to *logits* (no softmax), e.g. a
            Sequential ending in `Dense(num_classes)`. Augmentation layers inside it augment the
            training and the meta batches alike.
        method: `rmnwnet` (noisy meta set, MAE meta loss), `mnwnet` (noisy meta set, CE),
            `mwnet` (MW-Net*: a clean, gold meta set, CE), or a reference without a meta set:
            `base` (plain CE), `gce` (generalized CE), `oracle` (plain CE; give it only the
            correctly labelled samples). `rmwnet_tf.METHODS` describes each.
        seed: seeds the weighting net's initial weights (`seed + 1`, as the command line does),
            the order of training arrays and the meta batches. The classifier's initial
            weights are yours to seed (`keras.utils.set_random_seed`).
        vnet: your own weighting net ([n, 1] losses -> [n, 1] weights), instead of the paper's
            1-100-1 MLP built by default. Ignored by methods without a meta set.
        meta_step: how the meta-gradient is computed: `exact` (default), `jvp`, `nested` (the
            same update, slower), `head` (a cheap approximation through the last Dense layer).
        meta_every: the meta step on one training step in `meta_every` (default 1: every step).
        weight_norm: `sum` (weights divided by their batch sum, the official code) or `mean`
            (by the batch size, the paper's text).
        weight_decay: the classifier's L2 coefficient, coupled as in PyTorch's SGD (the paper's
            5e-4); 0 if your optimizer or layers decay the weights already.
        vnet_weight_decay: the weighting net's L2 coefficient (5e-4).
        name: the Keras model name.
        image_classifier: only when `classifier` is a head trained on precomputed backbone
            features: the whole images -> logits network (sharing the head's variables), which
            checkpoints hold and exports serve. The command line's head-only runs pass it
            (`--trainable=head --augment=false`, rmwnet_tf/feature_cache.py); default `classifier`.

    `fit` takes what Keras' takes (arrays or a tf.data.Dataset of (images, labels) batches,
    `epochs`, `callbacks`, `validation_data`, ...) plus `meta_data` and `meta_batch_size`; its
    logs are `train/loss`, `train/accuracy` and, with a weighting net, `train/weighted_loss`,
    `meta/loss` and `train/weight_mean`. `predict` returns the classifier's logits.
    Under `tf.distribute` (e.g. `MirroredStrategy`), build the classifier, this model and any
    optimizers you pass inside one `with strategy.scope():` (refused otherwise: outside it they
    would fail or train wrongly); `compile` and `fit` may then be called anywhere. Every training
    and meta batch must split evenly over the replicas; the steps then train as one device does on
    the same global batches, and `evaluate`, `predict`, `sample_weights` and `rank_suspects` work
    as without a strategy.
    Save the weights (`save_weights`, `ModelCheckpoint(save_weights_only=True)`,
    `BackupAndRestore`): they hold the classifier, the weighting net and both optimizers.
    """

    def __init__(self, classifier, method: str = "rmnwnet", *, seed: int = 0, vnet=None,
                 meta_step: str = "exact", meta_every: int = 1, weight_norm: str = "sum",
                 weight_decay: float = DEFAULTS.weight_decay,
                 vnet_weight_decay: float = DEFAULTS.vnet_weight_decay, name: str | None = None,
                 image_classifier=None):
        _check_classifier(classifier)
        spec = get_method(method)
        _check_strategy("the classifier", classifier.weights)
        if spec.uses_meta and vnet is None:
            vnet = models.build_vnet(seed=int(seed) + 1)
        elif spec.uses_meta:
            _check_strategy("the vnet", vnet.weights)
        super().__init__(classifier, vnet, method=method, weight_norm=weight_norm,
                         meta_step=meta_step, meta_every=meta_every, weight_decay=weight_decay,
                         vnet_weight_decay=vnet_weight_decay, image_classifier=image_classifier, name=name)
        self.seed = int(seed)

    # ---------------------------------------------------------------- compile
    def compile(self, optimizer=None, vnet_optimizer=None, *, jit_compile=None, **kwargs):
        """Sets both optimizers, built here up front (the classifier's and the weighting net's).

        Args:
            optimizer: the classifier's optimizer (default: SGD, lr 0.05, Nesterov momentum 0.9);
                under tf.distribute, yours must be created in the model's strategy scope.
            vnet_optimizer: the weighting net's (default: the paper's SGD, lr 1e-3, Nesterov
                momentum 0.9); unused by methods without a meta set.
            jit_compile: XLA for the steps (default: on with a GPU, off on CPU, where it was
                measured slower, and off for `meta_every > 1`; see BUILD_NOTES.md).
            **kwargs: Keras' `compile` arguments (`steps_per_execution`, ...). There is no `loss`
                or `metrics`: the method fixes the loss, and the step reports its own means.
        """
        for unused in ("loss", "metrics", "weighted_metrics", "loss_weights"):
            if kwargs.get(unused) is not None:
                raise ValueError(f"compile(): no {unused}= here: the method ({self.method}) fixes the "
                                 "loss, and fit/evaluate report loss and accuracy themselves")
            kwargs.pop(unused, None)
        if jit_compile is None:
            jit_compile = bool(tf.config.list_physical_devices("GPU")) and self.meta_every == 1
        # In the model's strategy scope, wherever compile is called: the default optimizers and
        # every optimizer's slots belong to the strategy the model's variables do.
        with self.distribute_strategy.scope():
            optimizer = optimizer or default_optimizer()
            vnet_optimizer = (vnet_optimizer or default_vnet_optimizer()) if self.spec.uses_meta else None
            for which, given in (("optimizer", optimizer), ("vnet_optimizer", vnet_optimizer)):
                if given is not None and not self._in_my_strategy(given.iterations):
                    # Else fit fails deep in Keras, or (compiled outside the scope) trains silently
                    # other weights than one device would under a multi-replica strategy.
                    raise ValueError(f"compile(): the {which} was created outside the tf.distribute strategy "
                                     "scope of the model: create it inside the same `with strategy.scope():`")
            super().compile(optimizer, vnet_optimizer, jit_compile=jit_compile, **kwargs)

    def _in_my_strategy(self, variable) -> bool:
        return self.distribute_strategy.extended.variable_created_in_scope(_tf_variable(variable))

    # ---------------------------------------------------------------- fit
    def fit(self, x=None, y=None, *, meta_data=None, batch_size=None, meta_batch_size=None, shuffle=True,
            sample_weight=None, class_weight=None, validation_split=0.0, **kwargs):
        """Keras' `fit`, with the meta set.

        Args:
            x, y: the training images and their (noisy) integer labels as arrays, or in `x` a
                `tf.data.Dataset` of (images, labels) batches (`y` None).
            meta_data: the meta set, for the methods with one: (images, labels) arrays or a
                dataset of such batches (held in memory; keep it small). Its batches are drawn
                without replacement in reshuffled passes, resumable (rmwnet_tf/api/pairing.py).
            batch_size: training batch size for arrays (default 32, as Keras).
            meta_batch_size: meta batch size (default: the training batch size, or the whole
                meta set when it is smaller; for a dataset, the size of its first batch, read
                once before training: give it to skip that read).
            shuffle: reshuffle training arrays every epoch (by `seed` and the epoch alone).
            sample_weight, class_weight, validation_split: refused with a message saying why
                (the method weights the samples; pass `validation_data` instead).
            **kwargs: the rest of Keras' `fit`: `epochs`, `callbacks`, `validation_data`
                (evaluated by `test_step`: `val_loss`, `val_accuracy`), `initial_epoch`, `verbose`...
        """
        if sample_weight is not None or class_weight is not None:
            raise ValueError("fit(): no sample_weight / class_weight here: the method weights the samples itself")
        if validation_split:
            raise ValueError("fit(): validation_split is not supported here; pass validation_data= (e.g. the meta set)")
        if self.optimizer is None:
            raise ValueError("call compile() before fit()")
        step = self.optimizer.iterations.value
        if isinstance(x, tf.data.Dataset):
            if y is not None or batch_size is not None:
                raise ValueError("fit(): with a tf.data.Dataset, give no y and no batch_size (batch the dataset)")
            if isinstance(x.element_spec, dict) and "train" in x.element_spec:  # the engine's own layout
                if meta_data is not None:
                    raise ValueError("fit(): these batches carry their meta part already; drop meta_data")
                return super().fit(x, shuffle=shuffle, **kwargs)
            train = pairing.labelled_dataset(x, "the training dataset")
            if meta_batch_size is None and self.spec.uses_meta:  # else never read: the pipeline is not run ahead
                batch_size = pairing.batch_size_of(train)
            train = self._even_across_replicas(train)
        else:
            images, labels = pairing.to_arrays((x, y), "the training data (x, y)")
            batch_size = int(batch_size or 32)
            self._check_splits("batch_size", batch_size, last=len(images) % batch_size)
            train = pairing.train_epoch(images, labels, batch_size=batch_size, seed=self.seed, shuffle=shuffle,
                                        step=step)
        meta = None
        if self.spec.uses_meta:
            if meta_data is None:
                raise ValueError(f"method {self.method!r} learns its weighting from a meta set: pass "
                                 "fit(..., meta_data=(meta_images, meta_labels))")
            meta_images, meta_labels = pairing.to_arrays(meta_data, "meta_data")
            meta_batch_size = int(meta_batch_size or min(batch_size, len(meta_images)))
            self._check_splits("meta_batch_size", meta_batch_size)
            meta = pairing.meta_stream(meta_images, meta_labels, batch_size=meta_batch_size,
                                       seed=self.seed, step=step)
        elif meta_data is not None:
            raise ValueError(f"method {self.method!r} uses no meta set; drop meta_data (or train one with a meta set)")
        try:
            return super().fit(pairing.paired(train, meta), shuffle=False, **kwargs)
        except tf.errors.InvalidArgumentError as error:  # _even_across_replicas' check, as one sentence
            if UNEVEN_BATCH not in str(error):
                raise
            raise ValueError(UNEVEN_BATCH) from None

    # ---------------------------------------------------------------- tf.distribute
    def _check_splits(self, name: str, size: int, last: int = 0) -> None:
        """Under a multi-replica strategy every training and meta batch must split evenly: the
        steps gather per-sample vectors of equal per-replica length (collectives.all_gather), and
        an uneven split fails deep in TF ("Shape mismatch in the collective instance")."""
        replicas = self.distribute_strategy.num_replicas_in_sync
        if size % replicas:
            raise ValueError(f"fit(): {name}={size} does not split evenly over the {replicas} replicas of the "
                             f"tf.distribute strategy; pass a multiple of {replicas}")
        if last % replicas:
            raise ValueError(f"fit(): the last training batch holds {last} samples, which do not split evenly "
                             f"over the {replicas} replicas; pick a batch_size that leaves a multiple of {replicas} "
                             "(or none) over, or drop those samples")

    def _even_across_replicas(self, train: tf.data.Dataset) -> tf.data.Dataset:
        """A user's training batches, each checked to split evenly over the replicas (see
        `_check_splits`; a dataset's last batch is known only when it comes)."""
        replicas = self.distribute_strategy.num_replicas_in_sync
        if replicas == 1:
            return train

        def check(images, labels):  # fit turns a failed assertion into a ValueError of its message
            with tf.control_dependencies([tf.debugging.assert_equal(tf.shape(labels)[0] % replicas, 0,
                                                                    message=UNEVEN_BATCH)]):
                return tf.identity(images), tf.identity(labels)

        return train.map(check)

    # ---------------------------------------------------------------- per-sample outputs
    def sample_weights(self, data, *, batch_size: int = 256) -> np.ndarray:
        """W(loss) of each sample of `data` ((images, labels) arrays or a dataset of such batches),
        in its order: the weighting net's trust in each given label (ones without a weighting net).
        These are the raw weights; a training step divides them by their batch sum."""
        return ranking.score(self, data, batch_size=batch_size)["weight"]

    # ---------------------------------------------------------------- saving
    def save(self, filepath, *args, **kwargs):
        raise NotImplementedError(
            f"a MetaWeightModel cannot be saved whole ({filepath}): its training step is code, not config. Save "
            "model.save_weights('x.weights.h5') (classifier, weighting net and optimizers; "
            "ModelCheckpoint(save_weights_only=True) does so) to train on, or model.classifier.save('x.keras') "
            "to predict with")

    def get_config(self):
        raise NotImplementedError("a MetaWeightModel has no config to rebuild it from; see save()")


def _tf_variable(variable):
    return variable.value if isinstance(variable, keras.Variable) else variable


def _check_strategy(what: str, weights) -> None:
    """The model is built in the strategy scope its networks' variables were created in.

    A classifier built outside `with strategy.scope():` and trained inside it fails in compile
    with a Keras error printing the whole kernel; one built inside a scope and wrapped outside
    it would train on one device. Either way: one sentence here."""
    strategy = tf.distribute.get_strategy()
    if not all(strategy.extended.variable_created_in_scope(_tf_variable(v)) for v in weights):
        raise ValueError(f"{what} and the MetaWeightModel were built in different tf.distribute strategy "
                         f"scopes (or one in none): build both inside the same `with strategy.scope():`")


def _check_classifier(classifier) -> None:
    if not isinstance(classifier, keras.Model):
        raise ValueError(f"classifier must be a keras.Model mapping images to logits; got {type(classifier).__name__}")
    if not classifier.built or not classifier.weights:
        raise ValueError("the classifier is not built: give it a keras.Input (or call it on a batch) first, so "
                         "its weights exist before the optimizers are built")
    last = classifier.layers[-1] if classifier.layers else None
    if isinstance(last, keras.layers.Softmax) or getattr(last, "activation", None) is keras.activations.softmax:
        raise ValueError("the classifier ends in a softmax: give it logits (e.g. Dense(num_classes) without "
                         "activation); the losses apply the softmax themselves")
