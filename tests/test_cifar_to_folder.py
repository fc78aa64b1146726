"""scripts/cifar_to_folder.py on a tiny fake of the official python archive: exact pixels, class
folders, and a sample order that official_to_folder_order maps official-order labels onto."""

import io
import os
import pathlib
import pickle
import subprocess
import sys
import tarfile

import numpy as np

from rmwnet_tf import data

ROOT = pathlib.Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
CLASSES = ["airplane", "automobile", "bird"]


def _fake_cifar10(path: pathlib.Path, rng) -> dict:
    """cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta} with 4 images per train batch."""
    made = {"train": ([], []), "test": ([], [])}
    with tarfile.open(path, "w:gz") as tar:
        def add(name, obj):
            payload = pickle.dumps(obj)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))

        add("batches.meta", {b"label_names": [c.encode() for c in CLASSES], b"num_vis": 3072})
        for name, split, count in [*((f"data_batch_{i}", "train", 4) for i in range(1, 6)), ("test_batch", "test", 3)]:
            images = rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
            labels = rng.integers(0, len(CLASSES), count).tolist()
            rows = images.transpose(0, 3, 1, 2).reshape(count, 3072)  # the archive's R, G, B planes
            add(name, {b"data": rows, b"labels": labels, b"batch_label": name.encode()})
            made[split][0].append(images)
            made[split][1].extend(labels)
    return {split: (np.concatenate(images), np.asarray(labels)) for split, (images, labels) in made.items()}


def convert(*argv):
    return subprocess.run([sys.executable, str(ROOT / "scripts/cifar_to_folder.py"), *argv],
                          capture_output=True, text=True, timeout=120, env=ENV)


def test_archive_becomes_an_image_folder_in_official_order_within_each_class(tmp_path):
    official = _fake_cifar10(tmp_path / "cifar-10-python.tar.gz", np.random.default_rng(0))
    result = convert(f"--archive={tmp_path / 'cifar-10-python.tar.gz'}", f"--out={tmp_path / 'cifar10'}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (f"wrote 23 images of 3 classes to {tmp_path / 'cifar10'} (train: 20, test: 3); "
                                     f"train on it with --dataset=image_folder --data_dir={tmp_path / 'cifar10'}")
    images, labels = official["train"]
    first_bird = np.flatnonzero(labels == 2)[0]
    assert (tmp_path / "cifar10" / "train" / "bird" / "0000.png").is_file()

    source = data.load_image_folder(tmp_path / "cifar10", image_size=32, cache_dir=None)
    assert source.class_names == CLASSES
    np.testing.assert_array_equal(source.x_train, data.official_to_folder_order(images, labels))  # lossless
    np.testing.assert_array_equal(source.y_train, np.sort(labels))
    np.testing.assert_array_equal(source.x_train[np.sum(labels < 2)], images[first_bird])
    np.testing.assert_array_equal(source.x_test, data.official_to_folder_order(*official["test"]))


def test_other_files_and_a_used_folder_are_refused_in_one_line(tmp_path):
    with tarfile.open(tmp_path / "empty.tar.gz", "w:gz"):
        pass
    result = convert(f"--archive={tmp_path / 'empty.tar.gz'}", f"--out={tmp_path / 'out'}")
    assert result.returncode == 2 and result.stderr.splitlines() == [
        f"error: {tmp_path / 'empty.tar.gz'} is not the python version of CIFAR-10 or CIFAR-100 (no "
        "cifar-10-batches-py/batches.meta or cifar-100-python/meta inside)"]
    _fake_cifar10(tmp_path / "c10.tar.gz", np.random.default_rng(1))
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "notes.txt").write_text("mine")
    result = convert(f"--archive={tmp_path / 'c10.tar.gz'}", f"--out={tmp_path / 'used'}")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"error: {tmp_path / 'used'} exists and is not empty; choose a new --out"]
