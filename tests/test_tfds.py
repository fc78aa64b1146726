"""The tensorflow-datasets path without a network: tfds.testing.mock_data feeds --dataset=cifar10
and cifar100 through train.run, and an unreachable download host fails in seconds, in one line."""

import pathlib
import re
import socket
import time

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
    assert results["epochs_completed"] == 1 and results["test_accuracy_final"] is not None
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
