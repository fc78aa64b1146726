"""The tensorflow-datasets path without a network: tfds.testing.mock_data feeds --dataset=cifar10
and cifar100 through train.run, and an unreachable download host fails in seconds, in one line."""

import pathlib
import re
import socket
import time

import numpy as np
import pytest
import tensorflow_datasets as tfds

from rmwnet_tf import data, train
from rmwnet_tf.config import Config

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("dataset, method, num_classes", [("cifar10", "rmnwnet", 10), ("cifar100", "base", 100)])
def test_cifar_through_the_real_tfds_code_path(tmp_path, monkeypatch, dataset, method, num_classes):
    # The network is "there" (the probe passes); mock_data stands in for download and files.
    monkeypatch.setattr(data.sources, "probe_download_host", lambda host: None)
    config = Config(dataset=dataset, tfds_data_dir=str(tmp_path / "tfds"), method=method, model="tiny",
                    noise_type="uniform", noise_rate=0.4, meta_size=10, batch_size=20, meta_batch_size=10,
                    epochs=1, lr_boundaries="", export=False, model_dir=str(tmp_path / "run"))
    with tfds.testing.mock_data(num_examples=60):
        results = train.run(config)
    assert results["data"]["num_classes"] == num_classes
    assert results["data"]["num_test"] == 60
    train_samples = 60 - (10 if method != "base" else 0)
    assert results["data"]["num_train"] == train_samples
    assert results["steps"] == train_samples // 20
    assert results["epochs_completed"] == 1 and results["final"]["test/accuracy"] is not None
    assert (tmp_path / "run" / "sample_scores.csv").exists()


def test_unreachable_download_host_fails_fast_in_one_line(tmp_path, monkeypatch):
    def no_network(address, timeout=None, *args, **kwargs):
        raise OSError(101, "Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.delenv("https_proxy", raising=False)
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    model_dir = tmp_path / "run"
    started = time.perf_counter()
    with pytest.raises(RuntimeError) as failed:
        train.run(Config(dataset="cifar10", tfds_data_dir=str(tmp_path / "tfds"), model="tiny",
                         model_dir=str(model_dir), epochs=1))
    assert time.perf_counter() - started < 30
    message = str(failed.value)
    assert "\n" not in message
    assert message == (
        "cannot download cifar10: www.cs.toronto.edu:443 is unreachable (OSError: [Errno 101] Network is "
        f"unreachable), and {tmp_path}/tfds/cifar10/3.0.2 holds no prepared copy. Either pass "
        "--tfds_data_dir=<folder holding a prepared cifar10> (README, 'A prepared tensorflow-datasets copy'), "
        "or train from images on disk with --dataset=image_folder --data_dir=<folder with train/ and test/> "
        "(README, 'Offline, from an image folder').")
    headings = re.findall(r"^#+ (.+)$", (ROOT / "README.md").read_text(), re.MULTILINE)
    for section in re.findall(r"README, '([^']+)'", message):
        assert section in headings, section
    # Nothing left that blocks the next attempt in the same folder, e.g. the offline route:
    assert not model_dir.exists()
    results = train.run(Config(dataset="synthetic", synthetic_train_size=100, synthetic_test_size=20,
                               method="base", model="tiny", batch_size=50, epochs=1, export=False,
                               model_dir=str(model_dir)))
    assert results["epochs_completed"] == 1


def test_config_json_of_a_start_that_never_trained_does_not_block(tmp_path):
    model_dir = tmp_path / "run"
    model_dir.mkdir()
    (model_dir / "config.json").write_text('{"dataset": "cifar10", "epochs": 120}')  # e.g. an older version's
    results = train.run(Config(dataset="synthetic", synthetic_train_size=100, synthetic_test_size=20,
                               method="base", model="tiny", batch_size=50, epochs=1, export=False,
                               model_dir=str(model_dir)))
    assert results["epochs_completed"] == 1


@pytest.mark.parametrize("dataset, label_key, num_classes, method", [
    ("cifar10_n", "worse_label", 10, "rmnwnet"), ("cifar100_n", "noise_label", 100, "base")])
def test_cifar_n_trains_on_the_human_labels_and_keeps_the_clean_ones(tmp_path, monkeypatch, dataset, label_key,
                                                                     num_classes, method):
    monkeypatch.setattr(data.sources, "probe_download_host", lambda host: None)
    with tfds.testing.mock_data(num_examples=200):  # random labels: every CIFAR-10 class present
        source = data.load_source(dataset, tfds_data_dir=str(tmp_path / "tfds"), label_key=label_key)
        split = tfds.load(dataset, split="train", data_dir=str(tmp_path / "tfds"))
        features = next(iter(split.batch(200)))
        config = Config(dataset=dataset, label_key=label_key, method=method, tfds_data_dir=str(tmp_path / "tfds"), model="tiny",
                        meta_size=10, batch_size=10, meta_batch_size=10, epochs=1, lr_boundaries="",
                        export=False, model_dir=str(tmp_path / "run"))
        results = train.run(config)
    # side by side as the builder yields them: images, clean `label`, the chosen human labels
    np.testing.assert_array_equal(source.y_train, features["label"].numpy())
    np.testing.assert_array_equal(source.given_train, features[label_key].numpy())
    assert len(source.class_names) == num_classes
    if dataset == "cifar10_n":
        assert source.class_names[:3] == ["airplane", "automobile", "bird"]
    assert results["noise_matrix_nominal"] is None  # no synthetic noise: the human labels are it
    given = np.load(tmp_path / "run" / "given_labels.npy")
    index = np.load(tmp_path / "run" / "sample_index.npy")
    np.testing.assert_array_equal(given, features[label_key].numpy()[index])  # trained on the human labels
    realised = np.mean(features["label"].numpy()[index] != given)
    assert results["noise_realised"]["rate"] == pytest.approx(realised)  # measured against the clean ones


def test_label_key_is_checked_against_the_dataset():
    assert Config(dataset="cifar10_n", label_key="aggre_label").problems() == []
    assert Config(dataset="cifar10_n", label_key="noise_label").problems()[0][0] == "label_key"
    assert Config(dataset="cifar10", label_key="worse_label").problems()[0][0] == "label_key"
    assert Config(dataset="cifar10_n", label_key="worse_label", noise_type="uniform",
                  noise_rate=0.4).problems()[0][0] == "noise_type"
