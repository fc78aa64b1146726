"""A head-only run's frozen-backbone features, computed once instead of at every step.

With `--trainable=head` the backbone is frozen and runs in inference mode
(`models/pretrained.py`), so it is a fixed function of the image; without augmentation every
epoch shows it the same images. Running it inside every step would recompute the same numbers
epoch after epoch, and the backbone is nearly all of a step's cost. Instead its features are
computed once for every image the run looks at (training and meta sets, test set), the
pipelines hand them out in place of the pixels (`NoisyData.features`), and the steps, the
weighting net and the evaluations run on the head alone (`head_network`).

The head network *is* the classifier's `logits` layer called on another input (the same
variables), so training it trains the classifier: the checkpoints, the selected model and the
exports keep the whole classifier (backbone + head), which takes images.
"""

from __future__ import annotations

import dataclasses
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from rmwnet_tf import data as data_lib
from rmwnet_tf.data.noisy_split import CachedFeatures


def _head_layer(classifier: keras.Model) -> keras.layers.Dense:
    head = classifier.layers[-1]
    if not isinstance(head, keras.layers.Dense):
        raise ValueError(f"{classifier.name}: its last layer must be the Dense head to cache the features under it")
    return head


def backbone_network(classifier: keras.Model) -> keras.Model:
    """images -> the features the classifier's head sees (the same layers and variables)."""
    return keras.Model(classifier.inputs, _head_layer(classifier).input, name=f"{classifier.name}_backbone")


def head_network(classifier: keras.Model) -> keras.Model:
    """features -> logits through the classifier's own head layer (its variables, not a copy)."""
    head = _head_layer(classifier)
    features = keras.Input(shape=tuple(head.input.shape[1:]), name="features")
    return keras.Model(features, head(features), name=f"{classifier.name}_head")


def with_features(data: data_lib.NoisyData, classifier: keras.Model, *, batch_size: int) -> data_lib.NoisyData:
    """`data` with the features of `classifier`'s backbone (in inference mode) for every image
    the run uses; the pipelines built from the result hand out features instead of pixels."""
    started = time.perf_counter()
    backbone = backbone_network(classifier)
    forward = tf.function(lambda images: backbone(images, training=False))
    used = np.union1d(data.train_indices, data.meta_indices)
    rows = np.full(len(data.source.y_train), -1, np.int32)
    rows[used] = np.arange(len(used), dtype=np.int32)

    def features_of(images, indices):
        parts = [forward(data_lib.normalize(images[indices[i : i + batch_size]], data.mean, data.std)).numpy()
                 for i in range(0, len(indices), batch_size)]
        return np.concatenate(parts).astype(np.float32)

    features = CachedFeatures(
        rows=rows,
        train=features_of(data.source.x_train, used),
        test=features_of(data.source.x_test, np.arange(len(data.source.y_test))),
    )
    logging.info("backbone features of %d training and %d test images computed once (%.1f s); the steps "
                 "train the head on them", len(used), len(features.test), time.perf_counter() - started)
    return dataclasses.replace(data, features=features)
