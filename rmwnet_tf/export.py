"""A deployable SavedModel of the trained classifier: raw uint8 images in, probabilities out.

Only the classifier is exported — the weighting net and the meta machinery are training
aids. Normalisation is baked into the graph so a consumer cannot feed images scaled the
wrong way, and BatchNorm runs in inference mode (moving statistics).

Overwriting: exporting into a directory that already holds a SavedModel replaces it
(re-exporting after more training is the normal case). A non-empty directory that is
*not* a SavedModel is refused, so a mistyped path cannot wipe unrelated files, and so is a
symbolic link (the old code emptied the link's target). The SavedModel is written to a
staging folder beside ``export_dir`` and renamed into place, so an interruption or a full
disk never leaves a half-written export where a complete one is expected.
"""

from __future__ import annotations

import os
import shutil
from typing import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

SIGNATURE_NAME = "serving_default"
INPUT_NAME = "images"
OUTPUT_NAME = "probabilities"
CALL_NAME = "__call__"  # the loaded object is callable: model(images) -> probabilities


def _check_export_dir(export_dir: str) -> None:
    """Refuse a link, a file, or a non-empty folder that is not a SavedModel."""
    if os.path.islink(export_dir):
        raise FileExistsError(
            f"{export_dir} is a symbolic link (to {os.readlink(export_dir)}); an export never writes "
            "through a link: remove the link, or export to a folder"
        )
    if not os.path.exists(export_dir):
        return
    if not os.path.isdir(export_dir):
        raise FileExistsError(f"{export_dir} is a file; refusing to overwrite it. Choose a new directory.")
    if os.listdir(export_dir) and not os.path.exists(os.path.join(export_dir, "saved_model.pb")):
        raise FileExistsError(
            f"{export_dir} is not empty and does not hold a SavedModel; refusing to overwrite it. "
            "Choose an empty or new directory."
        )


def _remove(path: str) -> None:
    if os.path.islink(path) or os.path.isfile(path):
        os.remove(path)
    elif os.path.isdir(path):
        shutil.rmtree(path)


def _write_in_place(archive, export_dir: str) -> None:
    """Write into a staging folder beside ``export_dir``, then swap it in by renames."""
    export_dir = os.path.normpath(export_dir)
    staging, old = f"{export_dir}.partial-{os.getpid()}", f"{export_dir}.old-{os.getpid()}"
    _remove(staging)
    try:
        archive.write_out(staging, verbose=False)
    except BaseException:
        _remove(staging)
        raise
    if os.path.exists(export_dir):
        _remove(old)
        os.rename(export_dir, old)
        os.rename(staging, export_dir)
        _remove(old)
    else:
        os.rename(staging, export_dir)


def _per_channel(values, channels: int, what: str) -> tf.Tensor:
    array = np.asarray(values, dtype=np.float32).reshape(-1)
    if array.shape != (channels,):
        raise ValueError(f"{what} must have one value per channel ({channels}), got {array.shape}")
    if what == "std" and np.any(array <= 0):
        raise ValueError(f"std must be positive, got {array}")
    return tf.constant(array)


LOADER_HINT = "(rmwnet_tf.export.load_exported(<export dir>) checks the shape in Python, in one line)"


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
    # summarize: the whole shape (TF prints 3 entries by default: "[2 16 16...]" hid the channels).
    # TensorFlow puts its own "Graph execution error" lines before any in-graph message, so the
    # message also names the Python loader, whose refusal is the sentence alone.
    check = tf.debugging.Assert(good, [f"the model takes {expected}; got shape", shape, LOADER_HINT], summarize=8)
    with tf.control_dependencies([check]):
        checked = tf.identity(images)
    checked.set_shape([None, *image_shape])  # for `__call__`'s open spec: the layers need the rank
    return checked


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
    _check_export_dir(export_dir)
    num_classes = int(classifier.output_shape[-1])

    expected = f"uint8 images [N, {height}, {width}, {channels}]"

    def probabilities(images):
        scaled = tf.cast(images, tf.float32) / 255.0
        logits = classifier((scaled - mean_t) / std_t, training=False)
        return tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)

    def serve(images):
        images = _checked_shape(images, (height, width, channels), expected)
        # An empty batch is a valid request (a filter that left nothing): answer it with an
        # empty result; the classifier itself fails on it (a batch-norm shape error).
        empty = tf.zeros([0, num_classes], tf.float32)
        return {OUTPUT_NAME: tf.cond(tf.shape(images)[0] > 0, lambda: probabilities(images), lambda: empty)}

    def call(images):
        return serve(images)[OUTPUT_NAME]

    archive = keras.export.ExportArchive()
    archive.track(classifier)
    archive.add_endpoint(
        name=SIGNATURE_NAME,
        fn=serve,
        input_signature=[
            tf.TensorSpec([None, height, width, channels], tf.uint8, name=INPUT_NAME)
        ],
    )
    # `model = tf.saved_model.load(export_dir); model(images)` is what users try first; without a
    # `__call__` it failed with "'_UserObject' object is not callable". It returns the probabilities
    # themselves, as a Keras model would. Its input spec leaves the shape open so that a wrong
    # shape reaches `_checked_shape` and is refused with the sentence saying what the model takes
    # (a fixed spec fails in TensorFlow's argument binding instead, printing the whole array).
    archive.add_endpoint(name=CALL_NAME, fn=call, input_signature=[tf.TensorSpec(None, tf.uint8, name=INPUT_NAME)])
    _write_in_place(archive, export_dir)
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
