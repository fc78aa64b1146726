"""The training data sources by name, as data: no TensorFlow, so flags can be checked first.

`config.py` takes its `--dataset` choices and the class counts it validates noise against from
here; `data/sources.py` loads them.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Dataset:
    name: str
    num_classes: int | None  # None: decided by the data (folder names, generator setting)
    from_folder: bool  # reads --data_dir
    summary: str


DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        Dataset("cifar10", 10, False, "CIFAR-10 through tensorflow-datasets"),
        Dataset("cifar100", 100, False, "CIFAR-100 through tensorflow-datasets"),
        Dataset("image_folder", None, True, "a folder of image files: <data_dir>/{train,test}/<class>/*"),
        Dataset("synthetic", None, False, "generated class patterns, for tests and the quick start"),
    )
}


def get_dataset(name: str) -> Dataset:
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}") from None
