"""Classifiers (all output logits) and the weighting net, behind one factory.

Every classifier is a functional `keras.Model` made of stock layers plus one small custom
layer, so `model.stateless_call(...)` (used by the meta step to evaluate the network at
virtual weights), MirroredStrategy and XLA all work without special cases. Its last layer is
the Dense `logits`, which the `head` meta step looks ahead through.
"""

from __future__ import annotations

import functools

import keras

from rmwnet_tf.classifiers import CLASSIFIERS, get_classifier, resolved_weights
from rmwnet_tf.models import pretrained
from rmwnet_tf.models.resnet import resnet32
from rmwnet_tf.models.small import small_cnn, tiny
from rmwnet_tf.models.vnet import build_vnet
from rmwnet_tf.models.wide_resnet import wrn28_10

# The architectures built here, from scratch, by name.
OWN_BUILDERS = {
    "resnet32": resnet32,
    "wrn28_10": wrn28_10,
    "small_cnn": small_cnn,
    "tiny": tiny,
}
# One builder per name of the TF-free registry rmwnet_tf.classifiers (which flags read), derived
# from it: a keras.applications entry there is built by `pretrained.backbone_classifier`.
BUILDERS = {
    name: functools.partial(pretrained.backbone_classifier, spec) if spec.pretrained else OWN_BUILDERS[name]
    for name, spec in CLASSIFIERS.items()
}

__all__ = ["BUILDERS", "build", "build_vnet"]


def build(name: str, *, num_classes: int, input_shape=(32, 32, 3), seed: int | None = None,
          weights: str | None = None, trainable: str = "all", input_stats=None):
    """Build classifier `name`; the same `seed` always gives the same initial weights.

    For a keras.applications backbone only: `weights` ("imagenet", a weights file of the
    backbone, "auto" = imagenet; None or "none": random init), `trainable` ("all" or "head":
    the backbone frozen) and `input_stats`, the (mean, std) the pipeline standardised the
    images with (default: images in [0, 1]).
    """
    spec = get_classifier(name)  # an unknown name fails here, naming the known ones
    if int(num_classes) < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    input_shape = tuple(int(d) for d in input_shape)
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (height, width, channels), got {input_shape}")
    weights = resolved_weights(name, weights or "none")
    options = {}
    if spec.pretrained:
        options = dict(weights=weights, trainable=trainable)
        if input_stats is not None:
            options.update(input_mean=input_stats[0], input_std=input_stats[1])
    elif weights is not None or trainable != "all":
        raise ValueError(f"{name} is built from scratch here: weights={weights!r} and trainable={trainable!r} "
                         "apply to keras.applications backbones only")
    model: keras.Model = BUILDERS[name](
        num_classes=int(num_classes), input_shape=input_shape, seed=seed, **options
    )
    return model
