"""Wide ResNet 28-10 (Zagoruyko & Komodakis 2016), the MW-Net CIFAR backbone.

Reference: `WideResNet(28, K, widen_factor=10, dropRate=0)` of the official MW-Net code
(which RMNW-Net reuses). Choices that follow it (and differ from Keras defaults):
  * conv kernels: normal(0, sqrt(2 / (k*k*out_channels))), i.e. Kaiming *fan_out*,
    untruncated — including the 1×1 shortcut convs;
  * final Linear: PyTorch default kernel U(±1/sqrt(640)), bias explicitly zeroed;
  * BatchNorm: momentum 0.9 (PyTorch 0.1), epsilon 1e-5, gamma 1, beta 0;
  * a block whose width changes applies its 1×1 shortcut to the *pre-activated* input
    (BN-ReLU output), an identity block adds the raw input — as the reference does.
Dropout is 0 in the reference runs, so there is no dropout layer at all. Pooling is
global rather than a fixed 8×8 window so other image sizes work.
"""

from __future__ import annotations

import keras

from rmwnet_tf.models.initializers import SeedStream, batch_norm, conv, torch_linear_kernel

DEPTH = 28
WIDEN_FACTOR = 10
STEM_WIDTH = 16
BLOCKS_PER_GROUP = (DEPTH - 4) // 6  # 4
GROUP_WIDTHS = tuple(w * WIDEN_FACTOR for w in (16, 32, 64))  # 160, 320, 640
GROUP_STRIDES = (1, 2, 2)


def _conv(width: int, kernel_size: int, strides: int, seeds: SeedStream, name: str):
    return conv(width, kernel_size, strides=strides, init_mode="fan_out", seeds=seeds, name=name)


def _wide_block(x, width: int, strides: int, seeds: SeedStream, name: str):
    preactivated = batch_norm(f"{name}_bn1")(x)
    preactivated = keras.layers.ReLU(name=f"{name}_relu1")(preactivated)

    residual = _conv(width, 3, strides, seeds, f"{name}_conv1")(preactivated)
    residual = batch_norm(f"{name}_bn2")(residual)
    residual = keras.layers.ReLU(name=f"{name}_relu2")(residual)
    residual = _conv(width, 3, 1, seeds, f"{name}_conv2")(residual)

    if x.shape[-1] == width and strides == 1:
        shortcut = x
    else:
        shortcut = _conv(width, 1, strides, seeds, f"{name}_shortcut")(preactivated)
    return keras.layers.Add(name=f"{name}_add")([shortcut, residual])


def wrn28_10(*, num_classes: int, input_shape=(32, 32, 3), seed: int | None = None):
    seeds = SeedStream(seed)
    images = keras.Input(shape=input_shape, name="image")

    x = _conv(STEM_WIDTH, 3, 1, seeds, "stem_conv")(images)
    for group, (width, group_stride) in enumerate(zip(GROUP_WIDTHS, GROUP_STRIDES), start=1):
        for block in range(1, BLOCKS_PER_GROUP + 1):
            strides = group_stride if block == 1 else 1
            x = _wide_block(x, width, strides, seeds, name=f"group{group}_block{block}")

    x = batch_norm("final_bn")(x)
    x = keras.layers.ReLU(name="final_relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    logits = keras.layers.Dense(
        num_classes,
        kernel_initializer=torch_linear_kernel(seeds.next()),
        bias_initializer="zeros",
        name="logits",
    )(x)
    return keras.Model(images, logits, name="wrn28_10")
