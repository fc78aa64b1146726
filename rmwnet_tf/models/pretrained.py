"""Classifiers on a pretrained `keras.applications` backbone, for fine-tuning on noisy labels.

Most people who fight label noise fine-tune a network pretrained on clean data. Every backbone
named in `rmwnet_tf.classifiers` (those with an `application`) is built here the same way, as
one functional `keras.Model` (so `stateless_call`, which the meta step runs at virtual weights,
works as for the own architectures):

    images as the pipeline delivers them (standardised by the training set's mean and std)
    -> `to_backbone_range`: one per-channel multiply-add back to the pixel range the backbone
       expects (MobileNetV3 and EfficientNetV2 take [0, 255] pixels and rescale them with their
       own `include_preprocessing` layers; ResNet50V2 takes [-1, 1])
    -> `resize` to the backbone's input size (224): the ImageNet features are learnt at that scale
    -> the backbone (include_top=False, global average pooling)
    -> `logits`, a Dense layer on the pooled features: the last layer, so the `head` meta step
       looks ahead through it as through the own architectures' last Dense.

`trainable="head"` freezes the backbone and runs it in inference mode whatever the step asks:
BatchNorm with its ImageNet statistics and no stochastic depth (EfficientNetV2's blocks drop
paths in training mode even when frozen). So the frozen backbone is a fixed function of the
image, which is what lets a head-only run compute its features once (`feature_cache.py`).

ImageNet weights come from Keras' download host on first use and are cached under
`$KERAS_HOME/models` (default `~/.keras/models`). `check_weights_available` tells in seconds
when they cannot come (no cached copy, host unreachable) and names the file to fetch by other
means and pass as `--weights=<file>`.
"""

from __future__ import annotations

import os
import urllib.parse

import keras
import numpy as np

from rmwnet_tf.classifiers import Classifier, get_classifier, resolved_weights
from rmwnet_tf.data import sources
from rmwnet_tf.errors import UserError, described
from rmwnet_tf.models.initializers import SeedStream

IMAGENET = "imagenet"
# README section the offline message points to (a test keeps it in the README).
README_PRETRAINED = "Fine-tuning a pretrained backbone"


@keras.saving.register_keras_serializable(package="rmwnet_tf")
class InferenceOnly(keras.layers.Layer):
    """Runs a frozen network in inference mode whatever the caller's `training` says.

    Why a layer: a functional model passes its own `training` to every layer it calls (Keras
    3.15 overrides a `training=False` written into the graph), so `backbone(x, training=False)`
    would still drop paths while the classifier trains.
    """

    def __init__(self, network: keras.Model, **kwargs):
        super().__init__(**kwargs)
        self.network = network
        self.network.trainable = False

    def call(self, inputs):
        return self.network(inputs, training=False)

    def compute_output_shape(self, input_shape):
        return self.network.compute_output_shape(input_shape)

    def get_config(self):
        return {**super().get_config(), "network": keras.saving.serialize_keras_object(self.network)}

    @classmethod
    def from_config(cls, config):
        return cls(**{**config, "network": keras.saving.deserialize_keras_object(config["network"])})


def weights_cache_path(spec: Classifier) -> str:
    """Where `keras.utils.get_file` keeps the backbone's ImageNet weights once downloaded."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(home, "models", os.path.basename(urllib.parse.urlsplit(spec.imagenet_url).path))


def check_weights_available(model: str, weights: str) -> None:
    """Stop in seconds, with the way forward, when `--weights` asks for ImageNet weights that are
    neither cached nor downloadable (no network, host unreachable): without this, Keras would
    retry its download for minutes and end in a traceback."""
    spec = get_classifier(model)
    if resolved_weights(model, weights) != IMAGENET or os.path.isfile(weights_cache_path(spec)):
        return
    unreachable = sources.probe_download_host(urllib.parse.urlsplit(spec.imagenet_url).hostname)
    if unreachable:
        raise RuntimeError(
            f"cannot download the ImageNet weights of --model={model}: {unreachable}, and "
            f"{weights_cache_path(spec)} does not exist. Download {spec.imagenet_url} on a machine with "
            f"internet and pass --weights=<that file> (README, '{README_PRETRAINED}'), or train from "
            "scratch with --weights=none."
        )


def backbone_classifier(
    spec: Classifier,
    *,
    num_classes: int,
    input_shape=(32, 32, 3),
    seed: int | None = None,
    weights: str | None = None,
    trainable: str = "all",
    input_mean=(0.0, 0.0, 0.0),
    input_std=(1.0, 1.0, 1.0),
) -> keras.Model:
    """`spec`'s backbone with a fresh `logits` head for `num_classes`.

    `weights`: None (random init), "imagenet", or a weights file of the backbone alone (the
    file keras.applications downloads for include_top=False, or one written by
    `backbone.save_weights`). `input_mean`/`input_std`: the per-channel statistics (of images
    scaled to [0, 1]) the pipeline standardised the images with; the default takes [0, 1] images.
    """
    if trainable not in ("all", "head"):
        raise ValueError(f"trainable must be 'all' or 'head', got {trainable!r}")
    size = spec.input_size
    constructor = getattr(keras.applications, spec.application)
    try:
        backbone = constructor(include_top=False, weights=weights, input_shape=(size, size, 3), pooling="avg")
    except (OSError, ValueError) as error:
        if weights in (None, IMAGENET):
            raise
        # h5py's and Keras' own messages name neither the file nor the flag it came from.
        raise UserError(
            f"--weights={weights}: cannot load it into the {spec.application} backbone of --model={spec.name} "
            f"({described(error, limit=200, named=True)}); give that backbone's weights file without its top "
            "(include_top=False), e.g. the one --weights=imagenet downloads"
        ) from error

    # standardised z = (p / 255 - mean) / std  ->  pixels p = 255 (std z + mean)  ->  scale p + offset
    mean, std = (np.asarray(v, np.float64).reshape(3) for v in (input_mean, input_std))
    scale, offset = spec.pixel_scale_offset
    images = keras.Input(shape=input_shape, name="image")
    x = keras.layers.Rescaling((255.0 * scale * std).tolist(), (255.0 * scale * mean + offset).tolist(),
                               name="to_backbone_range")(images)
    if tuple(input_shape[:2]) != (size, size):
        x = keras.layers.Resizing(size, size, interpolation="bilinear", name="resize")(x)
    features = InferenceOnly(backbone, name="frozen_backbone")(x) if trainable == "head" else backbone(x)
    seeds = SeedStream(seed)
    logits = keras.layers.Dense(
        num_classes, kernel_initializer=keras.initializers.GlorotUniform(seeds.next()), name="logits"
    )(features)
    return keras.Model(images, logits, name=spec.name)
