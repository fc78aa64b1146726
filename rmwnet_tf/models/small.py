"""Networks sized for CPU: `small_cnn` for real but cheap runs, `tiny` for unit tests.

Neither exists in the paper. `small_cnn` lets a 2-core machine reach a useful CIFAR-10
accuracy in minutes, so the noisy-label methods can be compared end to end without a
GPU; `tiny` keeps the meta step's tests fast while still containing BatchNorm, whose
moving statistics are the part of the model most easily mishandled by a functional
(stateless) lookahead step. Init and BN follow the ResNet-32 reference (Kaiming-normal
fan_in untruncated convs, PyTorch-default Linear, BN momentum 0.9 / epsilon 1e-5).
"""

from __future__ import annotations

import keras

from rmwnet_tf.models.initializers import (
    SeedStream,
    batch_norm,
    conv,
    torch_linear_bias,
    torch_linear_kernel,
)

SMALL_CNN_WIDTHS = ((32, 32), (64, 64), (128,))  # conv widths per resolution, pool between
TINY_WIDTH = 8


def _conv_bn_relu(x, width: int, seeds: SeedStream, name: str):
    x = conv(width, 3, strides=1, init_mode="fan_in", seeds=seeds, name=f"{name}_conv")(x)
    x = batch_norm(f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def _logits(x, num_classes: int, seeds: SeedStream):
    return keras.layers.Dense(
        num_classes,
        kernel_initializer=torch_linear_kernel(seeds.next()),
        bias_initializer=torch_linear_bias(x.shape[-1], seeds.next()),
        name="logits",
    )(x)


def small_cnn(*, num_classes: int, input_shape=(32, 32, 3), seed: int | None = None):
    seeds = SeedStream(seed)
    images = keras.Input(shape=input_shape, name="image")
    x = images
    for stage, widths in enumerate(SMALL_CNN_WIDTHS, start=1):
        if stage > 1:
            x = keras.layers.MaxPooling2D(2, name=f"stage{stage}_pool")(x)
        for i, width in enumerate(widths, start=1):
            x = _conv_bn_relu(x, width, seeds, name=f"stage{stage}_{i}")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(images, _logits(x, num_classes, seeds), name="small_cnn")


def tiny(*, num_classes: int, input_shape=(32, 32, 3), seed: int | None = None):
    seeds = SeedStream(seed)
    images = keras.Input(shape=input_shape, name="image")
    x = _conv_bn_relu(images, TINY_WIDTH, seeds, name="block")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(images, _logits(x, num_classes, seeds), name="tiny")
