"""The four training methods as data: which meta labels and which meta loss each one uses.

Kept apart from the model so that flag validation and data preparation can ask
"does this method need clean labels?" without importing TensorFlow.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Method:
    name: str
    meta_labels: str | None  # "clean", "noisy", or None (no meta set at all)
    meta_loss: str | None  # a name in losses' registry, or None
    summary: str

    @property
    def uses_meta(self) -> bool:
        return self.meta_labels is not None


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("base", None, None, "plain cross-entropy on the noisy labels"),
        Method("mwnet", "clean", "ce", "MW-Net*: clean (gold) meta samples, CE meta loss"),
        Method("mnwnet", "noisy", "ce", "MNW-Net: noisy meta samples, CE meta loss"),
        Method("rmnwnet", "noisy", "mae", "RMNW-Net: noisy meta samples, MAE meta loss"),
    )
}


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; known: {', '.join(METHODS)}") from None
