"""The framework-light ResNet-32 reference of the step benchmark is the same network and trains."""

import numpy as np
import tensorflow as tf

from benchmarks.tfnn_resnet import TfnnResNet32, make_train_step
from rmwnet_tf import models


def test_same_parameter_count_as_the_keras_resnet32():
    keras_net = models.build("resnet32", num_classes=10, input_shape=(32, 32, 3), seed=0)
    net = TfnnResNet32(num_classes=10)
    trainable = sum(int(np.prod(v.shape)) for v in keras_net.trainable_variables)
    assert net.num_parameters() == trainable == 464_154
    everything = sum(int(np.prod(v.shape)) for v in keras_net.weights)
    assert net.num_parameters(trainable_only=False) == everything
    assert len(net.trainable) == len(keras_net.trainable_variables)


def test_one_step_lowers_the_loss_on_a_fixed_batch():
    rng = np.random.default_rng(0)
    batch = {"train": {"image": tf.constant(rng.normal(size=(8, 8, 8, 3)), tf.float32),
                       "label": tf.constant(rng.integers(0, 10, 8), tf.int32)}}
    net = TfnnResNet32(num_classes=10)
    step = make_train_step(net, lr=0.05)
    before = float(step(batch)["train/loss"])  # the loss at the initial weights, then a step
    moving_before = net.moving["stem_mean"].numpy().copy()
    after = float(step(batch)["train/loss"])
    assert np.isfinite(before) and after < before
    assert not np.array_equal(net.moving["stem_mean"].numpy(), moving_before)
