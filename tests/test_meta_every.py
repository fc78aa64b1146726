"""`meta_every=k`: the weighting net is updated on one step in k, by the optimizer's step count."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from rmwnet_tf import losses, models
from rmwnet_tf.meta_model import MetaWeightModel
from rmwnet_tf.methods import METHODS
from tests.test_meta_model import BATCH, NUM_CLASSES, SHAPE, make_batch, make_model, values


def run_steps(model, batches, jit_compile=False):
    step = tf.function(model.train_step, jit_compile=jit_compile)
    return [{k: float(v) for k, v in step(b).items()} for b in batches]


def test_meta_every_1_is_the_meta_step_itself():
    """k=1 runs `_meta_train_step` unconditioned: bit-identical to calling it directly."""
    batches = [make_batch(s) for s in (10, 11, 12)]
    scheduled = make_model(meta_every=1, vnet_lr=1e-2)
    run_steps(scheduled, batches)
    direct = make_model(vnet_lr=1e-2)
    step = tf.function(lambda b: direct._update_train_metrics(
        b["train"], **direct._meta_train_step(b["train"], b["meta"])))
    for b in batches:
        step(b)
    for got, want in zip(values(scheduled.weights), values(direct.weights)):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("method, jit_compile", [("rmnwnet", False), ("rmnwnet", True), ("rmnwnet_gce", False)])
def test_meta_every_3_skips_the_vnet_on_steps_1_and_2(method, jit_compile):
    """The weighted steps between meta steps weight, and feed W, the method's training loss."""
    lr, decay = 0.1, 5e-4
    train_loss = losses.TRAIN_LOSSES[METHODS[method].train_loss]
    model = make_model(method, meta_every=3, lr=lr, weight_decay=decay, vnet_lr=1e-2)
    step = tf.function(model.train_step, jit_compile=jit_compile)
    vnet_before = values(model.vnet.trainable_variables)
    logs0 = step(make_batch(20))  # iteration 0: a meta step
    after_meta = values(model.vnet.trainable_variables)
    assert any(np.abs(a - b).max() > 0 for a, b in zip(after_meta, vnet_before))
    assert int(model.vnet_optimizer.iterations) == 1

    for seed in (21, 22):  # iterations 1 and 2: weighted steps with the frozen VNet
        batch = make_batch(seed)
        twin = models.build("tiny", num_classes=NUM_CLASSES, input_shape=SHAPE, seed=0)
        twin.set_weights(model.classifier.get_weights())
        x, y = batch["train"]["image"], batch["train"]["label"]
        with tf.GradientTape() as tape:
            per_sample = train_loss(y, twin(x, training=True))
            raw = tf.reshape(model.vnet(tf.reshape(tf.stop_gradient(per_sample), [-1, 1])), [-1])
            objective = tf.reduce_sum(tf.stop_gradient(raw / tf.reduce_sum(raw)) * per_sample)
        for variable, grad in zip(twin.trainable_variables, tape.gradient(objective, twin.trainable_variables)):
            variable.assign_sub(lr * (grad + decay * variable))

        logs = step(batch)

        for got, want in zip(model.classifier.weights, twin.weights):
            np.testing.assert_allclose(np.array(got), np.array(want), rtol=1e-5, atol=1e-6)
        for got, want in zip(values(model.vnet.trainable_variables), after_meta):
            np.testing.assert_array_equal(got, want)
        assert int(model.vnet_optimizer.iterations) == 1
        assert float(logs["meta/loss"]) == float(logs0["meta/loss"]) > 0  # the mean over meta steps only

    step(make_batch(23))  # iteration 3: a meta step again
    assert any(np.abs(a - b).max() > 0 for a, b in zip(values(model.vnet.trainable_variables), after_meta))
    assert int(model.vnet_optimizer.iterations) == 2


def _momentum_model(meta_every):
    classifier = models.build("tiny", num_classes=NUM_CLASSES, input_shape=SHAPE, seed=0)
    model = MetaWeightModel(classifier, models.build_vnet(seed=1), meta_every=meta_every)
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True),
                  keras.optimizers.SGD(1e-2, momentum=0.9, nesterov=True))
    return model


def _checkpoint(model):
    return tf.train.Checkpoint(classifier=model.classifier, optimizer=model.optimizer,
                               vnet=model.vnet, vnet_optimizer=model.vnet_optimizer)


def test_resume_from_a_checkpoint_takes_the_same_steps(tmp_path):
    """6 steps straight = 3 steps, a checkpoint, a fresh model restored from it, 3 more steps."""
    batches = [make_batch(30 + i) for i in range(6)]
    straight = _momentum_model(meta_every=4)
    run_steps(straight, batches)

    first = _momentum_model(meta_every=4)
    run_steps(first, batches[:3])
    path = _checkpoint(first).save(str(tmp_path / "ckpt"))
    resumed = _momentum_model(meta_every=4)
    _checkpoint(resumed).restore(path).assert_consumed()
    run_steps(resumed, batches[3:])

    assert int(resumed.optimizer.iterations) == 6 and int(resumed.vnet_optimizer.iterations) == 2
    for got, want in zip(values(_checkpoint_values(resumed)), values(_checkpoint_values(straight))):
        np.testing.assert_array_equal(got, want)


def _checkpoint_values(model):
    return (model.classifier.weights + model.vnet.weights + model.optimizer.variables
            + model.vnet_optimizer.variables)


@pytest.mark.parametrize("meta_every", [0, -1, 1.5])
def test_meta_every_must_be_a_positive_integer(meta_every):
    with pytest.raises(ValueError, match="meta_every must be an integer >= 1"):
        make_model(meta_every=meta_every)
