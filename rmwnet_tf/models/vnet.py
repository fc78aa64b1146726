"""The weighting net W(loss; Θ): a per-sample loss in, a weight in (0, 1) out.

Same shape and init as the reference `VNet(1, 100, 1)`: two PyTorch-default Linear
layers (kernel and bias U(±1/sqrt(fan_in))), ReLU between, sigmoid at the end. Keras'
defaults (Glorot kernel, zero bias) would give W a different starting curve, and W's
initial curve is the weighting the classifier sees for the whole first stretch of training.
"""

from __future__ import annotations

import keras

from rmwnet_tf.models.initializers import SeedStream, torch_linear_bias, torch_linear_kernel


def _torch_dense(units: int, fan_in: int, activation: str, seeds: SeedStream, name: str):
    return keras.layers.Dense(
        units,
        activation=activation,
        kernel_initializer=torch_linear_kernel(seeds.next()),
        bias_initializer=torch_linear_bias(fan_in, seeds.next()),
        name=name,
    )


def build_vnet(hidden: int = 100, seed: int | None = None) -> keras.Model:
    """[n, 1] per-sample losses -> [n, 1] weights in (0, 1)."""
    if hidden < 1:
        raise ValueError(f"hidden must be a positive number of units, got {hidden}")
    seeds = SeedStream(seed)
    losses = keras.Input(shape=(1,), name="loss")
    x = _torch_dense(hidden, 1, "relu", seeds, "vnet_hidden")(losses)
    weights = _torch_dense(1, hidden, "sigmoid", seeds, "vnet_weight")(x)
    return keras.Model(losses, weights, name="vnet")
