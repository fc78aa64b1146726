"""The classifier architectures by name, as data: no TensorFlow, so flags can be checked first.

`config.py` takes its `--model` choices from here; `models/` holds one builder per name.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Classifier:
    name: str
    summary: str


CLASSIFIERS: dict[str, Classifier] = {
    c.name: c
    for c in (
        Classifier("resnet32", "ResNet-32 (0.46M parameters), the paper's network for flip2 noise"),
        Classifier("wrn28_10", "Wide ResNet 28-10 (36.5M parameters), the paper's network for uniform and flip noise"),
        Classifier("small_cnn", "a small CNN for CPU runs (not in the paper)"),
        Classifier("tiny", "a minimal CNN with BatchNorm for unit tests"),
    )
}


def get_classifier(name: str) -> Classifier:
    try:
        return CLASSIFIERS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(CLASSIFIERS)}") from None
