"""Initialisers and layer defaults that reproduce the PyTorch reference code in Keras.

Keras and PyTorch disagree on almost every default that matters for these nets:
Keras' `he_normal` is truncated at 2σ, Keras BatchNormalization uses epsilon 1e-3, and
Keras Dense uses Glorot-uniform kernels with zero bias, while PyTorch's `nn.Linear` draws
kernel *and* bias from U(±1/sqrt(fan_in)). Everything here exists to close those gaps in
one place, so the model files read like the architecture and nothing else.

Seeding: a Keras initialiser seeded with an int returns the same tensor on every call, so
two layers of equal shape given the same int would start identical. `SeedStream` hands
each layer its own seed derived from the model seed, which keeps "same seed → same
weights" without that coupling.
"""

from __future__ import annotations

import math

import keras
import numpy as np

# PyTorch BatchNorm2d(momentum=0.1) updates running = 0.9 * running + 0.1 * batch;
# Keras' `momentum` is the weight of the old value, hence 0.9.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


class SeedStream:
    """Deterministic per-layer seeds from one model seed (or None for unseeded init)."""

    def __init__(self, seed: int | None):
        self._seed = seed
        self._count = 0

    def next(self) -> int | None:
        if self._seed is None:
            return None
        self._count += 1
        mixed = np.random.SeedSequence([int(self._seed), self._count]).generate_state(1)[0]
        return int(mixed) & 0x7FFFFFFF


def he_normal(mode: str, seed: int | None) -> keras.initializers.Initializer:
    """Kaiming normal, N(0, 2/fan) *untruncated*, as `torch.nn.init.kaiming_normal_`.

    `mode` is "fan_in" (ResNet-32 reference) or "fan_out" (WRN reference, which draws
    normal(0, sqrt(2 / (k*k*out_channels)))). Keras' own `he_normal` truncates at 2σ,
    which shrinks the effective std by ~12%.
    """
    return keras.initializers.VarianceScaling(
        scale=2.0, mode=mode, distribution="untruncated_normal", seed=seed
    )


def torch_linear_kernel(seed: int | None) -> keras.initializers.Initializer:
    """PyTorch `nn.Linear` default kernel init: U(±1/sqrt(fan_in)).

    (kaiming_uniform with a=sqrt(5) reduces to exactly this bound; VarianceScaling's
    uniform limit is sqrt(3*scale/fan_in), so scale=1/3.)
    """
    return keras.initializers.VarianceScaling(
        scale=1.0 / 3.0, mode="fan_in", distribution="uniform", seed=seed
    )


def torch_linear_bias(fan_in: int, seed: int | None) -> keras.initializers.Initializer:
    """PyTorch `nn.Linear` default bias init: U(±1/sqrt(fan_in)) of the *kernel's* fan_in."""
    bound = 1.0 / math.sqrt(fan_in)
    return keras.initializers.RandomUniform(minval=-bound, maxval=bound, seed=seed)


def batch_norm(name: str) -> keras.layers.BatchNormalization:
    """BatchNormalization with PyTorch's momentum/epsilon (gamma=1, beta=0 as in PyTorch ≥1.2)."""
    return keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name)


def conv(
    filters: int,
    kernel_size: int,
    *,
    strides: int,
    init_mode: str,
    seeds: SeedStream,
    name: str,
):
    """A bias-free convolution padded the PyTorch way (`padding=k//2` on both sides).

    TF's "same" padding with stride 2 on an even-sized input pads only bottom/right, so
    the sampled grid shifts by one pixel relative to PyTorch (and relative to the
    `x[::2, ::2]` option-A shortcut). Explicit symmetric padding plus "valid" keeps the
    residual and shortcut branches aligned exactly as in the reference code.
    Returns a callable tensor -> tensor.
    """
    pad = kernel_size // 2
    layer = keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same" if strides == 1 else "valid",
        use_bias=False,
        kernel_initializer=he_normal(init_mode, seeds.next()),
        name=name,
    )
    if strides == 1 or pad == 0:
        return layer

    padding = keras.layers.ZeroPadding2D(pad, name=f"{name}_pad")
    return lambda x: layer(padding(x))
