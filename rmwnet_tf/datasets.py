"""The training data sources by name, as data: no TensorFlow, so flags can be checked first.

`config.py` takes its `--dataset` choices and the class counts it validates noise against from
here; `data/sources.py` loads them.
"""

from __future__ import annotations

import dataclasses


# How a source is read: data/sources.py holds one loader per kind (LOADERS). Adding a source of a
# known kind is one Dataset entry below; a new kind adds its loader there.
LOADER_KINDS = ("tfds", "image_folder", "synthetic")


@dataclasses.dataclass(frozen=True)
class Dataset:
    name: str
    num_classes: int | None  # None: decided by the data (folder names, generator setting)
    loader: str  # one of LOADER_KINDS
    summary: str
    # Human label sets shipped with the images (CIFAR-N), selected by --label_key; the source's
    # own `label` stays the clean truth, so detection AUCs and fit rates still work.
    label_keys: tuple[str, ...] = ()

    @property
    def from_folder(self) -> bool:
        """Reads --data_dir."""
        return self.loader == "image_folder"


DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        Dataset("cifar10", 10, "tfds", "CIFAR-10 through tensorflow-datasets"),
        Dataset("cifar100", 100, "tfds", "CIFAR-100 through tensorflow-datasets"),
        Dataset("cifar10_n", 10, "tfds", "CIFAR-10 with the CIFAR-10N human labels (tensorflow-datasets, "
                "manual download)", ("aggre_label", "random_label1", "random_label2", "random_label3",
                                     "worse_label")),
        Dataset("cifar100_n", 100, "tfds", "CIFAR-100 with the CIFAR-100N human labels (tensorflow-datasets, "
                "manual download)", ("noise_label",)),
        Dataset("image_folder", None, "image_folder", "a folder of image files: <data_dir>/{train,test}/<class>/*"),
        Dataset("synthetic", None, "synthetic", "generated class patterns, for tests and the quick start"),
    )
}


# The halves of a source's training set a run can be restricted to (--part; noisy_split.training_part).
TRAINING_PARTS = ("all", "a", "b")
