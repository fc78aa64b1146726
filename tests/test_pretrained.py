"""Pretrained keras.applications backbones: registry, the model around them, weights (none, a file,
the ImageNet download mocked), a frozen backbone, and a head-only run on cached features. Offline:
no test downloads anything."""

import json
import os
import pathlib
import re
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras.src.utils import file_utils
from PIL import Image

from rmwnet_tf import data as data_lib
from rmwnet_tf import export as export_lib
from rmwnet_tf import errors, feature_cache, models, train
from rmwnet_tf.classifiers import CLASSIFIERS, get_classifier
from rmwnet_tf.config import Config
from rmwnet_tf.models import pretrained

ROOT = pathlib.Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
SMALL = "mobilenet_v3_small"
PRETRAINED = [c.name for c in CLASSIFIERS.values() if c.pretrained]


class _Asked(Exception):
    pass


def _ask_for_weights(fname=None, origin=None, **kwargs):
    raise _Asked(origin)


@pytest.fixture(scope="module")
def backbone_file(tmp_path_factory):
    """A weights file of MobileNetV3Small's backbone (include_top=False), as a user would pass it."""
    path = tmp_path_factory.mktemp("weights") / "mobilenet_v3_small_notop.weights.h5"
    backbone = keras.applications.MobileNetV3Small(include_top=False, weights=None, input_shape=(224, 224, 3),
                                                   pooling="avg")
    backbone.save_weights(str(path))
    return path, [w.numpy() for w in backbone.weights]


def _backbone(classifier):
    return next(layer for layer in classifier.layers if isinstance(layer, (keras.Model, pretrained.InferenceOnly)))


# ------------------------------------------------------------------------------------ registry
def test_backbones_are_keras_applications_and_builders_derive_from_the_registry():
    assert PRETRAINED == ["mobilenet_v3_small", "efficientnet_v2_b0", "resnet50_v2"]
    for name in PRETRAINED:
        spec = get_classifier(name)
        assert callable(getattr(keras.applications, spec.application)) and spec.input_size == 224
        assert models.BUILDERS[name].func is pretrained.backbone_classifier and models.BUILDERS[name].args == (spec,)
    assert set(models.BUILDERS) == set(CLASSIFIERS)
    assert {name: models.BUILDERS[name] for name in models.OWN_BUILDERS} == models.OWN_BUILDERS


@pytest.mark.parametrize("name", PRETRAINED)
def test_the_imagenet_url_is_the_file_keras_downloads(name, monkeypatch):
    spec = get_classifier(name)
    monkeypatch.setattr(file_utils, "get_file", _ask_for_weights)
    with pytest.raises(_Asked) as asked:
        getattr(keras.applications, spec.application)(include_top=False, weights="imagenet",
                                                      input_shape=(224, 224, 3), pooling="avg")
    assert asked.value.args[0] == spec.imagenet_url


# ------------------------------------------------------------------------------------ the model
def test_model_takes_standardised_images_of_any_size_and_ends_in_the_dense_head():
    mean, std = np.array([0.4, 0.5, 0.6]), np.array([0.2, 0.25, 0.3])
    model = models.build(SMALL, num_classes=3, input_shape=(20, 20, 3), seed=0, input_stats=(mean, std))
    assert [layer.name for layer in model.layers[:3]] == ["image", "to_backbone_range", "resize"]
    assert model.get_layer("resize").output.shape == (None, 224, 224, 3)
    head = model.layers[-1]
    assert isinstance(head, keras.layers.Dense) and head.name == "logits" and head.use_bias
    assert head.input.shape == (None, 576)  # MobileNetV3Small's pooled features
    pixels = np.random.default_rng(0).integers(0, 256, size=(2, 20, 20, 3)).astype(np.float32)
    standardised = (pixels / 255.0 - mean) / std
    # MobileNetV3 rescales [0, 255] pixels itself (include_preprocessing): the layer gives them back.
    np.testing.assert_allclose(model.get_layer("to_backbone_range")(standardised), pixels, atol=1e-3)
    assert model(standardised).shape == (2, 3)


def test_resnet50_v2_gets_its_own_input_range():
    assert get_classifier("resnet50_v2").pixel_scale_offset == (1 / 127.5, -1.0)  # preprocess_input mode "tf"
    model = models.build("resnet50_v2", num_classes=2, input_shape=(8, 8, 3))
    pixels = np.array([0.0, 127.5, 255.0], np.float32).reshape(1, 1, 3, 1).repeat(3, -1)
    np.testing.assert_allclose(model.get_layer("to_backbone_range")(pixels / 255.0)[0, 0, :, 0], [-1, 0, 1], atol=1e-6)


def test_stateless_call_matches_call():
    model = models.build(SMALL, num_classes=3, input_shape=(16, 16, 3), seed=0)
    images = np.random.default_rng(1).normal(size=(2, 16, 16, 3)).astype(np.float32)
    trainable = [tf.identity(v.value) for v in model.trainable_variables]
    fixed = [tf.identity(v.value) for v in model.non_trainable_variables]
    logits, _ = model.stateless_call(trainable, fixed, images, training=False)
    np.testing.assert_allclose(logits, model(images, training=False), rtol=1e-5, atol=1e-5)


def test_head_only_freezes_the_backbone_in_inference_mode(backbone_file):
    path, _ = backbone_file
    model = models.build(SMALL, num_classes=3, input_shape=(16, 16, 3), seed=0, weights=str(path), trainable="head")
    assert [v.path for v in model.trainable_variables] == ["logits/kernel", "logits/bias"]
    stats = [v.numpy() for v in model.non_trainable_variables]
    images = np.random.default_rng(2).normal(size=(4, 16, 16, 3)).astype(np.float32)
    training = model(images, training=True)
    np.testing.assert_allclose(training, model(images, training=False), rtol=1e-6, atol=1e-6)
    for variable, before in zip(model.non_trainable_variables, stats):  # BatchNorm statistics kept
        np.testing.assert_array_equal(variable.numpy(), before)


def test_a_frozen_efficientnet_drops_no_paths():
    """EfficientNetV2's blocks drop paths in training mode even when frozen; InferenceOnly stops that,
    so a frozen backbone is a fixed function of the image (what lets its features be cached)."""
    backbone = keras.applications.EfficientNetV2B0(include_top=False, weights=None, input_shape=(224, 224, 3),
                                                   pooling="avg")
    frozen = pretrained.InferenceOnly(backbone)
    assert not backbone.trainable
    images = tf.random.stateless_uniform((2, 224, 224, 3), seed=[0, 3], maxval=255.0)
    inference = backbone(images, training=False)
    assert not np.allclose(backbone(images, training=True), inference, atol=1e-4)  # dropped paths
    np.testing.assert_allclose(frozen(images, training=True), inference, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------ weights
def test_a_weights_file_of_the_backbone_is_loaded(backbone_file):
    path, saved = backbone_file
    model = models.build(SMALL, num_classes=4, input_shape=(16, 16, 3), weights=str(path))
    for got, want in zip(_backbone(model).weights, saved):
        np.testing.assert_array_equal(got.numpy(), want)


def test_imagenet_weights_come_through_keras_download(backbone_file, monkeypatch, tmp_path):
    """The real `weights="imagenet"` path with the fetch mocked: Keras asks for the registry's URL
    and loads what the download returned."""
    path, saved = backbone_file
    asked = []

    def fetched(fname, origin, **kwargs):
        asked.append(origin)
        return str(path)

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(data_lib.sources, "probe_download_host", lambda host: None)  # the network is "there"
    monkeypatch.setattr(file_utils, "get_file", fetched)
    pretrained.check_weights_available(SMALL, "auto")
    model = models.build(SMALL, num_classes=2, input_shape=(16, 16, 3), weights="auto")
    assert asked == [get_classifier(SMALL).imagenet_url]
    for got, want in zip(_backbone(model).weights, saved):
        np.testing.assert_array_equal(got.numpy(), want)


def test_offline_imagenet_names_the_file_to_fetch(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(data_lib.sources, "probe_download_host",
                        lambda host: f"{host}:443 is unreachable (gaierror: no network)")
    url = get_classifier(SMALL).imagenet_url
    with pytest.raises(RuntimeError) as error:
        pretrained.check_weights_available(SMALL, "imagenet")
    assert str(error.value) == (
        f"cannot download the ImageNet weights of --model={SMALL}: storage.googleapis.com:443 is unreachable "
        f"(gaierror: no network), and {tmp_path}/models/{url.rsplit('/', 1)[1]} does not exist. Download {url} on "
        "a machine with internet and pass --weights=<that file> (README, 'Fine-tuning a pretrained backbone'), "
        "or train from scratch with --weights=none.")
    # A cached copy needs no network; --weights=none and a file never ask.
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / url.rsplit("/", 1)[1]).write_bytes(b"")
    pretrained.check_weights_available(SMALL, "imagenet")
    pretrained.check_weights_available("resnet32", "auto")
    assert "Fine-tuning a pretrained backbone" in (ROOT / "README.md").read_text()


def test_offline_imagenet_stops_the_cli_in_seconds_with_one_line(tmp_path):
    # A proxy on a closed local port: the probe fails at once, network or not.
    env = {**ENV, "KERAS_HOME": str(tmp_path / "keras"), "https_proxy": "http://127.0.0.1:9"}
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts/train.py"), f"--model={SMALL}", "--dataset=synthetic",
         f"--model_dir={tmp_path / 'run'}"], capture_output=True, text=True, timeout=300, env=env)
    seconds = time.perf_counter() - started
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot download the ImageNet weights of --model={SMALL}: "
                                                   "the proxy 127.0.0.1:9 is unreachable"), result.stderr
    assert "--weights=<that file>" in lines[0]
    assert seconds < 60  # TensorFlow's import included
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------------ flags
@pytest.mark.parametrize("fields, problem", [
    (dict(weights="imagenet"), ("weights", "--model=resnet32 is built from scratch here; pretrained weights are "
                                "for the keras.applications backbones (mobilenet_v3_small, efficientnet_v2_b0, "
                                "resnet50_v2)")),
    (dict(model=SMALL, weights="/no/such.weights.h5"),
     ("weights", "'/no/such.weights.h5' is neither one of auto, imagenet, none nor a file")),
    (dict(model=SMALL, trainable="head", weights="none"),
     ("trainable", "head freezes the backbone, which needs pretrained weights: a keras.applications --model with "
                   "--weights=imagenet or a weights file")),
    (dict(trainable="head"), ("trainable", "head freezes the backbone, which needs pretrained weights: a "
                              "keras.applications --model with --weights=imagenet or a weights file")),
])
def test_weights_and_trainable_are_checked_before_any_work(fields, problem):
    assert Config(**fields).problems() == [problem]


def test_a_weights_file_must_be_keras_weights(tmp_path):
    other = tmp_path / "weights.pt"
    other.write_bytes(b"")
    assert Config(model=SMALL, weights=str(other)).problems() == [
        ("weights", f"{str(other)!r} is not a Keras weights file (.h5 or .weights.h5)")]
    assert Config(model=SMALL).problems() == [] and Config(model=SMALL, trainable="head").problems() == []
    assert not Config(model=SMALL, trainable="head").caches_features  # augmentation on by default
    assert Config(model=SMALL, trainable="head", augment=False).caches_features


def test_a_weights_file_must_be_hdf5(tmp_path):
    """Issue 36: a file of garbage failed in h5py, naming neither the file nor --weights."""
    import h5py

    garbage, empty, with_user_block = (tmp_path / name for name in ("bad.weights.h5", "empty.h5", "block.h5"))
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    empty.write_bytes(b"")
    for path in (garbage, empty):
        assert Config(model=SMALL, weights=str(path)).problems() == [
            ("weights", f"{str(path)!r} is not an HDF5 file (Keras weights files are; this one is cut short or "
                        "something else): give the backbone's weights file, e.g. the one --weights=imagenet downloads")]
    with h5py.File(with_user_block, "w", userblock_size=1024) as handle:  # the signature after a user block
        handle["x"] = np.zeros(3)
    assert Config(model=SMALL, weights=str(with_user_block)).problems() == []


def test_a_weights_file_of_another_network_names_the_flag(tmp_path):
    """An HDF5 file that is not the backbone's weights: Keras' "Layer count mismatch" named no file."""
    other = tmp_path / "other.weights.h5"
    models.build("tiny", num_classes=2, input_shape=(16, 16, 3), seed=0).save_weights(str(other))
    with pytest.raises(errors.UserError, match=re.escape(
            f"--weights={other}: cannot load it into the MobileNetV3Small backbone of --model={SMALL} (ValueError: "
            "A total of 86 objects could not be loaded. ") + r".{100,200}\.\.\.\); " + re.escape(
            "give that backbone's weights file without its top (include_top=False), e.g. the one --weights=imagenet "
            "downloads")):
        models.build(SMALL, num_classes=2, input_shape=(16, 16, 3), weights=str(other))


# ------------------------------------------------------------------------------------ cached features
def _image_folder(root: pathlib.Path, size=(24, 20)) -> pathlib.Path:
    """Two classes of 4 training and 1 test images, 24x20 (not square, not 224)."""
    rng = np.random.default_rng(0)
    for split, count in (("train", 4), ("test", 1)):
        for label, name in enumerate(("cat", "dog")):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = np.clip(rng.normal(80 + 100 * label, 30, size=(*size, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i:02d}.png")
    return root


def test_head_network_on_cached_features_is_the_classifier_on_images(backbone_file):
    path, _ = backbone_file
    source = data_lib.make_synthetic(30, 6, num_classes=3, image_size=12, seed=0)
    data = data_lib.prepare(source, noise_type="none", noise_rate=0.0, seed=0, meta_size=6, meta_label_kind="noisy")
    classifier = models.build(SMALL, num_classes=3, input_shape=(12, 12, 3), seed=0, weights=str(path),
                              trainable="head", input_stats=(data.mean, data.std))
    cached = feature_cache.with_features(data, classifier, batch_size=7)
    assert (cached.features.rows >= 0).sum() == 30 and cached.features.train.shape == (30, 576)
    head = feature_cache.head_network(classifier)
    assert head.layers[-1] is classifier.layers[-1]  # the same variables, not a copy
    for images, features in ((data_lib.train_eval_dataset(data, batch_size=30), data_lib.train_eval_dataset(cached, batch_size=30)),
                             (data_lib.test_dataset(data, batch_size=6), data_lib.test_dataset(cached, batch_size=6))):
        (pixels,), (rows,) = list(images), list(features)
        np.testing.assert_array_equal(pixels["label"], rows["label"])
        np.testing.assert_allclose(head(rows["image"]), classifier(pixels["image"], training=True), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="cached backbone features cannot be augmented"):
        data_lib.train_dataset(cached, batch_size=5, seed=0, augment=True)


def test_head_only_run_on_an_image_folder_caches_features_and_exports_backbone_plus_head(backbone_file, tmp_path):
    path, _ = backbone_file
    folder = _image_folder(tmp_path / "images")
    config = Config(dataset="image_folder", data_dir=str(folder), image_size=24, model=SMALL, weights=str(path),
                    trainable="head", augment=False, noise_type="none", method="rmnwnet", meta_size=2,
                    batch_size=2, meta_batch_size=2, epochs=2, lr=0.05, lr_boundaries="", suspects=0,
                    model_dir=str(tmp_path / "run"))
    results = train.run(config)
    assert results["epochs_completed"] == 2 and results["steps"] == 6  # 6 training images, batches of 2
    # The checkpoint and the export hold the whole classifier: images in, the trained head's probabilities out.
    reader = tf.train.load_checkpoint(str(tmp_path / "run" / "checkpoints"))
    names = reader.get_variable_to_shape_map()
    assert sum("classifier" in n and "OPTIMIZER_SLOT" not in n for n in names) > 100
    predict = export_lib.load_exported(str(tmp_path / "run" / "export"))
    assert predict.image_shape == (24, 24, 3)
    source = data_lib.load_image_folder(folder, image_size=24, cache_dir=None)
    probs = predict(source.x_test)
    scores = json.loads((tmp_path / "run" / "results.json").read_text())
    assert probs.shape == (2, 2)
    assert scores["final"]["test/accuracy"] == float(np.mean(probs.argmax(-1) == source.y_test))
