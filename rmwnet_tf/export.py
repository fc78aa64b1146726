"""A deployable SavedModel of the trained classifier: raw uint8 images in, probabilities out.

Only the classifier is exported — the weighting net and the meta machinery are training
aids. Normalisation is baked into the graph so a consumer cannot feed images scaled the
wrong way, and BatchNorm runs in inference mode (moving statistics).

Overwriting: exporting into a directory that already holds a SavedModel replaces it
(re-exporting after more training is the normal case). A non-empty directory that is
*not* a SavedModel is refused, so a mistyped path cannot wipe unrelated files.
"""

from __future__ import annotations

import os
from typing import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

SIGNATURE_NAME = "serving_default"
INPUT_NAME = "images"
OUTPUT_NAME = "probabilities"


def _prepare_export_dir(export_dir: str) -> None:
    if not tf.io.gfile.exists(export_dir) or not tf.io.gfile.listdir(export_dir):
        return
    if tf.io.gfile.exists(os.path.join(export_dir, "saved_model.pb")):
        tf.io.gfile.rmtree(export_dir)
        return
    raise FileExistsError(
        f"{export_dir} is not empty and does not hold a SavedModel; refusing to overwrite it. "
        "Choose an empty or new directory."
    )


def _per_channel(values, channels: int, what: str) -> tf.Tensor:
    array = np.asarray(values, dtype=np.float32).reshape(-1)
    if array.shape != (channels,):
        raise ValueError(f"{what} must have one value per channel ({channels}), got {array.shape}")
    if what == "std" and np.any(array <= 0):
        raise ValueError(f"std must be positive, got {array}")
    return tf.constant(array)


def _checked_shape(images, image_shape, expected: str):
    """Fail with a message that states the expected input, in the graph, before any layer runs.

    Why: the signature's TensorSpec states [None, H, W, C], but a loaded signature does not
    enforce it: a wrong image size or 1 channel ran silently (global pooling accepts any
    size, the normalisation broadcasts over 1 channel), 4 channels failed deep inside with
    "Incompatible shapes", and a missing batch dimension aborted the process in the conv."""
    shape = tf.shape(images, out_type=tf.int64)
    tail = tf.concat([shape, tf.zeros([4], tf.int64)], 0)[1:4]  # [H, W, C] if the rank is 4
    good = tf.logical_and(tf.equal(tf.size(shape), 4),
                          tf.reduce_all(tf.equal(tail, tf.constant(image_shape, tf.int64))))
    check = tf.debugging.Assert(good, [f"the model takes {expected}; got shape", shape])
    with tf.control_dependencies([check]):
        return tf.identity(images)


def export_classifier(
    classifier: keras.Model,
    export_dir: str,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    image_shape: Sequence[int],
) -> str:
    """Write `classifier` (logits) as a SavedModel whose `serving_default` maps
    uint8 `images` [N, H, W, C] to `probabilities` [N, K]. Returns `export_dir`."""
    height, width, channels = (int(d) for d in image_shape)
    mean_t = _per_channel(mean, channels, "mean")
    std_t = _per_channel(std, channels, "std")

    expected = f"uint8 images [N, {height}, {width}, {channels}]"

    def serve(images):
        images = _checked_shape(images, (height, width, channels), expected)
        scaled = tf.cast(images, tf.float32) / 255.0
        logits = classifier((scaled - mean_t) / std_t, training=False)
        return {OUTPUT_NAME: tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)}

    archive = keras.export.ExportArchive()
    archive.track(classifier)
    archive.add_endpoint(
        name=SIGNATURE_NAME,
        fn=serve,
        input_signature=[
            tf.TensorSpec([None, height, width, channels], tf.uint8, name=INPUT_NAME)
        ],
    )
    _prepare_export_dir(export_dir)
    archive.write_out(export_dir, verbose=False)
    return export_dir


def load_exported(export_dir: str) -> Callable[[np.ndarray], np.ndarray]:
    """Load an export; returns `predict(uint8 images [N,H,W,C]) -> probabilities [N,K]`.

    `predict.image_shape` is (H, W, C) as the signature states it; other shapes are refused."""
    signature = tf.saved_model.load(export_dir).signatures[SIGNATURE_NAME]
    image_shape = tuple(signature.structured_input_signature[1][INPUT_NAME].shape.as_list()[1:])

    def predict(images: np.ndarray) -> np.ndarray:
        images = np.asarray(images)
        if images.dtype != np.uint8:
            raise ValueError(
                f"Expected raw uint8 images (normalisation happens inside), got {images.dtype}"
            )
        if images.ndim != 4 or images.shape[1:] != image_shape:
            height, width, channels = image_shape
            raise ValueError(
                f"Expected uint8 images [N, {height}, {width}, {channels}] (N images of "
                f"{height}x{width} pixels, {channels} channels), got shape {images.shape}"
            )
        return signature(**{INPUT_NAME: tf.constant(images)})[OUTPUT_NAME].numpy()

    predict.image_shape = image_shape
    predict.signature = signature  # keeps the loaded object (and its variables) alive
    return predict
