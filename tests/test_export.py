"""The exported SavedModel reproduces the in-memory classifier on raw uint8 images."""

import os
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from rmwnet_tf.export import export_classifier, load_exported
from rmwnet_tf.models import build

IMAGE_SHAPE = (16, 16, 3)
MEAN = np.array([0.49, 0.48, 0.45], np.float32)
STD = np.array([0.25, 0.24, 0.26], np.float32)


@pytest.fixture(scope="module")
def classifier():
    model = build("tiny", num_classes=5, input_shape=IMAGE_SHAPE, seed=0)
    # Non-trivial moving statistics, so train-mode and inference-mode BN disagree.
    bn = model.get_layer("block_bn")
    rng = np.random.default_rng(0)
    bn.moving_mean.assign(rng.normal(size=bn.moving_mean.shape).astype(np.float32))
    variance = rng.uniform(0.5, 2.0, size=bn.moving_variance.shape)
    bn.moving_variance.assign(variance.astype(np.float32))
    return model


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(1).integers(0, 256, size=(6, *IMAGE_SHAPE), dtype=np.uint8)


def reference_probabilities(model, images, training=False):
    normalised = (images.astype(np.float32) / 255.0 - MEAN) / STD
    return tf.nn.softmax(model(normalised, training=training)).numpy()


def test_serving_signature_matches_in_memory_model(classifier, images, tmp_path):
    export_dir = str(tmp_path / "export")
    export_classifier(classifier, export_dir, mean=MEAN, std=STD, image_shape=IMAGE_SHAPE)

    signature = tf.saved_model.load(export_dir).signatures["serving_default"]
    spec = signature.structured_input_signature[1]["images"]
    assert spec.dtype == tf.uint8 and spec.shape.as_list() == [None, *IMAGE_SHAPE]

    probabilities = signature(images=tf.constant(images))["probabilities"].numpy()
    expected = reference_probabilities(classifier, images)
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    # Inference-mode BN: a train-mode forward pass would give something else.
    train_mode = reference_probabilities(classifier, images, training=True)
    assert not np.allclose(probabilities, train_mode, atol=1e-3)

    predict = load_exported(export_dir)
    np.testing.assert_allclose(predict(images), expected, atol=1e-5)
    with pytest.raises(ValueError, match="uint8"):
        predict(images.astype(np.float32))


def test_reexport_overwrites_but_foreign_directory_is_refused(classifier, tmp_path):
    export_dir = tmp_path / "export"
    kwargs = dict(mean=MEAN, std=STD, image_shape=IMAGE_SHAPE)
    export_classifier(classifier, str(export_dir), **kwargs)
    export_classifier(classifier, str(export_dir), **kwargs)  # replaces the previous export
    assert (export_dir / "saved_model.pb").exists()

    foreign = tmp_path / "results"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        export_classifier(classifier, str(foreign), **kwargs)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_normalisation_must_match_channels(classifier, tmp_path):
    with pytest.raises(ValueError, match="mean"):
        export_classifier(
            classifier, str(tmp_path / "e"), mean=[0.5], std=STD, image_shape=IMAGE_SHAPE
        )


@pytest.mark.parametrize("shape", [(2, 20, 20, 3), (2, 16, 16, 1), (2, 16, 16, 4), (16, 16, 3)],
                         ids=["other_size", "one_channel", "four_channels", "no_batch_dim"])
def test_wrong_image_shape_is_refused_with_the_expected_shape(classifier, tmp_path, shape):
    export_dir = str(tmp_path / "export")
    export_classifier(classifier, export_dir, mean=MEAN, std=STD, image_shape=IMAGE_SHAPE)
    signature = tf.saved_model.load(export_dir).signatures["serving_default"]
    images = np.zeros(shape, np.uint8)
    # The signature itself (what a serving system calls) refuses it in the graph, by message...
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"the model takes uint8 images \[N, 16, 16, 3\]"):
        signature(images=tf.constant(images))
    # ...and the Python helper before calling it, naming what it got.
    predict = load_exported(export_dir)
    assert predict.image_shape == IMAGE_SHAPE
    with pytest.raises(ValueError, match=r"Expected uint8 images \[N, 16, 16, 3\].*got shape " + re.escape(str(shape))):
        predict(images)
    assert predict(np.zeros((2, *IMAGE_SHAPE), np.uint8)).shape == (2, 5)


def test_an_empty_batch_returns_no_rows(classifier, tmp_path):
    """Issue 22: a batch of 0 images raised a batch-norm shape error."""
    export_dir = str(tmp_path / "export")
    export_classifier(classifier, export_dir, mean=MEAN, std=STD, image_shape=IMAGE_SHAPE)
    signature = tf.saved_model.load(export_dir).signatures["serving_default"]
    empty = np.zeros((0, *IMAGE_SHAPE), np.uint8)
    assert signature(images=tf.constant(empty))["probabilities"].shape == (0, 5)
    assert load_exported(export_dir)(empty).shape == (0, 5)


def test_a_link_where_the_export_goes_is_refused_and_its_target_kept(classifier, tmp_path):
    """Issue 22: an export/ that was a link to a folder elsewhere had that folder emptied."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "saved_model.pb").write_text("someone else's")
    (elsewhere / "precious.txt").write_text("keep me")
    link = tmp_path / "export"
    link.symlink_to(elsewhere)
    with pytest.raises(FileExistsError, match=r"export is a symbolic link \(to .*elsewhere\); an export never"):
        export_classifier(classifier, str(link), mean=MEAN, std=STD, image_shape=IMAGE_SHAPE)
    assert sorted(p.name for p in elsewhere.iterdir()) == ["precious.txt", "saved_model.pb"]


def test_a_failed_export_leaves_the_previous_one_whole(classifier, tmp_path, monkeypatch):
    """Written beside the target and renamed into place: a failure mid-write (a full disk, a
    signal) leaves the previous export as it was, and no staging folder."""
    export_dir = tmp_path / "export"
    kwargs = dict(mean=MEAN, std=STD, image_shape=IMAGE_SHAPE)
    export_classifier(classifier, str(export_dir), **kwargs)
    before = sorted(str(p.relative_to(export_dir)) for p in export_dir.rglob("*"))

    def disk_full(self, path, verbose=True):
        os.makedirs(path)
        open(os.path.join(path, "saved_model.pb"), "w").close()
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(type(keras.export.ExportArchive()), "write_out", disk_full)
    with pytest.raises(OSError, match="No space left"):
        export_classifier(classifier, str(export_dir), **kwargs)
    assert sorted(str(p.relative_to(export_dir)) for p in export_dir.rglob("*")) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]
    np.testing.assert_allclose(load_exported(str(export_dir))(np.zeros((1, *IMAGE_SHAPE), np.uint8)).sum(), 1.0,
                               atol=1e-5)


def test_the_loaded_export_is_callable_like_a_model(classifier, images, tmp_path):
    """Issue 36: `tf.saved_model.load(path)(images)`, what users try first, failed with
    "'_UserObject' object is not callable". It returns the probabilities, as the signature does."""
    export_dir = str(tmp_path / "export")
    export_classifier(classifier, export_dir, mean=MEAN, std=STD, image_shape=IMAGE_SHAPE)
    model = tf.saved_model.load(export_dir)
    np.testing.assert_allclose(model(images).numpy(), reference_probabilities(classifier, images), atol=1e-5)
    assert model(np.zeros((0, *IMAGE_SHAPE), np.uint8)).shape == (0, 5)
    assert sorted(model.signatures) == ["__call__", "serving_default"]


@pytest.mark.parametrize("shape", [(2, 20, 20, 3), (2, 16, 16, 1), (2, 16, 16, 4), (16, 16, 3)],
                         ids=["other_size", "one_channel", "four_channels", "no_batch_dim"])
def test_a_wrong_shape_is_refused_stating_the_whole_shape_it_got(classifier, tmp_path, shape):
    """Issue 36: the refusal cut the shape after 3 numbers ("got shape [2 16 16...]"), hiding the
    channels. Inside the SavedModel the sentence comes after TensorFlow's own "Graph execution
    error" lines, which no graph can change; `load_exported` states it alone."""
    export_dir = str(tmp_path / "export")
    export_classifier(classifier, export_dir, mean=MEAN, std=STD, image_shape=IMAGE_SHAPE)
    model = tf.saved_model.load(export_dir)
    images = np.zeros(shape, np.uint8)
    got = re.escape(f"assertion failed: [the model takes uint8 images [N, 16, 16, 3]; got shape] "
                    f"[{' '.join(map(str, shape))}] [(rmwnet_tf.export.load_exported(<export dir>) checks the shape "
                    "in Python, in one line)]")
    with pytest.raises(tf.errors.InvalidArgumentError, match=got):
        model.signatures["serving_default"](images=tf.constant(images))
    with pytest.raises(tf.errors.InvalidArgumentError, match=got):
        model(images)
    with pytest.raises(ValueError) as raised:  # the Python path: the sentence is the whole message
        load_exported(export_dir)(images)
    assert str(raised.value) == (f"Expected uint8 images [N, 16, 16, 3] (N images of 16x16 pixels, 3 channels), "
                                 f"got shape {shape}")
