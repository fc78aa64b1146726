"""ResNet-32 for CIFAR (He et al. 2016, §4.2), as used by MW-Net and RMNW-Net.

Reference: the `ResNet32` of the official RMNW-Net / MW-Net PyTorch code. Choices that
follow it (and differ from Keras defaults):
  * every conv and the final Linear kernel: Kaiming normal, fan_in, untruncated
    (`_weights_init` applies `kaiming_normal` to MetaConv2d and MetaLinear);
  * final Linear bias: PyTorch default U(±1/sqrt(64)) (never re-initialised there);
  * BatchNorm: momentum 0.9 (PyTorch 0.1), epsilon 1e-5, gamma 1, beta 0;
  * option-A shortcut: `x[::2, ::2]` and zero channels split evenly before/after, no
    parameters, so the trainable count is the standard 0.46M.
The pooling is global (not a fixed 8×8 window) so other image sizes work.
"""

from __future__ import annotations

import keras
from keras import ops

from rmwnet_tf.models.initializers import (
    SeedStream,
    batch_norm,
    conv,
    he_normal,
    torch_linear_bias,
)

STAGE_WIDTHS = (16, 32, 64)
BLOCKS_PER_STAGE = 5  # 6n + 2 = 32 layers with n = 5


@keras.saving.register_keras_serializable(package="rmwnet_tf")
class OptionAShortcut(keras.layers.Layer):
    """Parameter-free shortcut when a block halves resolution and widens channels.

    A custom layer rather than a `Lambda` so the model serialises without unsafe
    deserialisation and traces cleanly under XLA.
    """

    def __init__(self, out_channels: int, **kwargs):
        super().__init__(**kwargs)
        self.out_channels = out_channels

    def call(self, x):
        in_channels = x.shape[-1]
        extra = self.out_channels - in_channels
        before, after = extra // 2, extra - extra // 2
        subsampled = x[:, ::2, ::2, :]
        return ops.pad(subsampled, [[0, 0], [0, 0], [0, 0], [before, after]])

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape
        half = lambda n: None if n is None else (n + 1) // 2  # noqa: E731
        return (batch, half(height), half(width), self.out_channels)

    def get_config(self):
        return {**super().get_config(), "out_channels": self.out_channels}


def _conv3x3(width: int, strides: int, seeds: SeedStream, name: str):
    return conv(width, 3, strides=strides, init_mode="fan_in", seeds=seeds, name=name)


def _basic_block(x, width: int, strides: int, seeds: SeedStream, name: str):
    residual = _conv3x3(width, strides, seeds, f"{name}_conv1")(x)
    residual = batch_norm(f"{name}_bn1")(residual)
    residual = keras.layers.ReLU(name=f"{name}_relu1")(residual)
    residual = _conv3x3(width, 1, seeds, f"{name}_conv2")(residual)
    residual = batch_norm(f"{name}_bn2")(residual)

    if strides != 1 or x.shape[-1] != width:
        shortcut = OptionAShortcut(width, name=f"{name}_shortcut")(x)
    else:
        shortcut = x
    out = keras.layers.Add(name=f"{name}_add")([residual, shortcut])
    return keras.layers.ReLU(name=f"{name}_out")(out)


def resnet32(*, num_classes: int, input_shape=(32, 32, 3), seed: int | None = None):
    seeds = SeedStream(seed)
    images = keras.Input(shape=input_shape, name="image")

    x = _conv3x3(STAGE_WIDTHS[0], 1, seeds, "stem_conv")(images)
    x = batch_norm("stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)

    for stage, width in enumerate(STAGE_WIDTHS, start=1):
        for block in range(1, BLOCKS_PER_STAGE + 1):
            strides = 2 if stage > 1 and block == 1 else 1
            x = _basic_block(x, width, strides, seeds, name=f"stage{stage}_block{block}")

    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    logits = keras.layers.Dense(
        num_classes,
        kernel_initializer=he_normal("fan_in", seeds.next()),
        bias_initializer=torch_linear_bias(STAGE_WIDTHS[-1], seeds.next()),
        name="logits",
    )(x)
    return keras.Model(images, logits, name="resnet32")
