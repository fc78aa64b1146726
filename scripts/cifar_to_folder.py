"""Make an image folder (`--dataset=image_folder`) from the official CIFAR python archive.

    python scripts/cifar_to_folder.py --archive=cifar-10-python.tar.gz --out=data/cifar10

reads cifar-10-python.tar.gz (or cifar-100-python.tar.gz: fine labels) as downloaded from
https://www.cs.toronto.edu/~kriz/cifar.html, without unpacking it, and writes

    <out>/train/<class name>/NNNN.png   (50,000 images)
    <out>/test/<class name>/NNNN.png    (10,000 images)

PNG, so the pixels are exactly the archive's. NNNN counts the images of a class in the archive's
(official) order, zero-padded, so the folder's sample order (class, then file name) is a stable
sort of the official labels: labels given in the official order (CIFAR-10N) go through
`rmwnet_tf.data.official_to_folder_order` to follow it. An existing non-empty <out> is refused.
"""

from __future__ import annotations

import io
import pathlib
import pickle
import sys
import tarfile

import numpy as np
from absl import app, flags
from PIL import Image

flags.DEFINE_string("archive", None, "cifar-10-python.tar.gz or cifar-100-python.tar.gz (the python version).")
flags.DEFINE_string("out", None, "The image folder to create (must not exist, or be empty).")
flags.mark_flags_as_required(["archive", "out"])

# archive layout: (folder, train batches, test batch, meta file, label key, class-names key)
LAYOUTS = {
    "cifar-10-batches-py": ([f"data_batch_{i}" for i in range(1, 6)], "test_batch", "batches.meta", b"labels",
                            b"label_names"),
    "cifar-100-python": (["train"], "test", "meta", b"fine_labels", b"fine_label_names"),
}


def _load(tar: tarfile.TarFile, member: str) -> dict:
    handle = tar.extractfile(member)
    if handle is None:
        raise ValueError(f"{member} is not a file in the archive")
    return pickle.load(io.BytesIO(handle.read()), encoding="bytes")


def read_archive(path) -> tuple[dict, list[str]]:
    """({"train": (images uint8 [N,32,32,3], labels [N]), "test": ...}, class names), official order."""
    with tarfile.open(path, "r:gz") as tar:
        names = set(tar.getnames())
        folder = next((f for f in LAYOUTS if f"{f}/{LAYOUTS[f][2]}" in names), None)
        if folder is None:
            raise ValueError(f"{path} is not the python version of CIFAR-10 or CIFAR-100 (no "
                             f"{' or '.join(f'{f}/{LAYOUTS[f][2]}' for f in LAYOUTS)} inside)")
        train_batches, test_batch, meta_file, label_key, names_key = LAYOUTS[folder]
        classes = [name.decode() for name in _load(tar, f"{folder}/{meta_file}")[names_key]]
        splits = {}
        for split, batches in (("train", train_batches), ("test", [test_batch])):
            parts = [_load(tar, f"{folder}/{batch}") for batch in batches]
            rows = np.concatenate([np.asarray(part[b"data"], np.uint8) for part in parts])
            images = rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # planes R, G, B of 32x32
            labels = np.concatenate([np.asarray(part[label_key], np.int64) for part in parts])
            splits[split] = (images, labels)
    return splits, classes


def write_folder(splits: dict, classes: list[str], out: pathlib.Path) -> int:
    """Write <out>/<split>/<class>/NNNN.png; returns the number of images written."""
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} exists and is not empty; choose a new --out")
    written = 0
    for split, (images, labels) in splits.items():
        for label, name in enumerate(classes):
            folder = out / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for number, index in enumerate(np.flatnonzero(labels == label)):
                Image.fromarray(images[index]).save(folder / f"{number:04d}.png")
                written += 1
    return written


def main(argv):
    del argv
    try:
        splits, classes = read_archive(flags.FLAGS.archive)
        written = write_folder(splits, classes, pathlib.Path(flags.FLAGS.out))
    except (OSError, ValueError, tarfile.TarError, pickle.UnpicklingError, KeyError) as error:
        print(f"error: {' '.join(str(error).split()) or type(error).__name__}", file=sys.stderr)
        return 2
    print(f"wrote {written} images of {len(classes)} classes to {flags.FLAGS.out} "
          f"(train: {len(splits['train'][1])}, test: {len(splits['test'][1])}); train on it with "
          f"--dataset=image_folder --data_dir={flags.FLAGS.out}")
    return 0


if __name__ == "__main__":
    app.run(main)
