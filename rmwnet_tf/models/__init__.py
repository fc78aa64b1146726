"""Classifiers (all output logits) and the weighting net, behind one factory.

Every classifier is a functional `keras.Model` made of stock layers plus one small custom
layer, so `model.stateless_call(...)` (used by the meta step to evaluate the network at
virtual weights), MirroredStrategy and XLA all work without special cases.
"""

from __future__ import annotations

import keras

from rmwnet_tf.classifiers import get_classifier
from rmwnet_tf.models.resnet import resnet32
from rmwnet_tf.models.small import small_cnn, tiny
from rmwnet_tf.models.vnet import build_vnet
from rmwnet_tf.models.wide_resnet import wrn28_10

# One builder per name of the TF-free registry rmwnet_tf.classifiers (which flags read).
BUILDERS = {
    "resnet32": resnet32,
    "wrn28_10": wrn28_10,
    "small_cnn": small_cnn,
    "tiny": tiny,
}

__all__ = ["BUILDERS", "build", "build_vnet"]


def build(name: str, *, num_classes: int, input_shape=(32, 32, 3), seed: int | None = None):
    """Build classifier `name`; the same `seed` always gives the same initial weights."""
    get_classifier(name)  # an unknown name fails here, naming the known ones
    if int(num_classes) < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    input_shape = tuple(int(d) for d in input_shape)
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (height, width, channels), got {input_shape}")
    model: keras.Model = BUILDERS[name](
        num_classes=int(num_classes), input_shape=input_shape, seed=seed
    )
    return model
