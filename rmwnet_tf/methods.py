"""The training methods as data: which meta labels and meta loss each one uses, which loss the
classifier minimises and on which samples.

Kept apart from the model so that flag validation and data preparation can ask
"does this method need clean labels?" without importing TensorFlow.

Besides the paper's four, two references a user would compare against in the same regime:
`gce`, a robust loss trained directly at Base's cost (generalized cross-entropy, Zhang &
Sabuncu 2018, q = 0.7 as there), and `oracle`, plain CE on the training samples whose given
label is right (needs the clean labels: an upper reference, not a method a user can run on
real noisy data).

`rmnwnet_gce` is RMNW-Net's weighting on a robust training loss: the paper's Theorem 1 holds
whatever per-sample loss the classifier minimises, so the weighting net can weight GCE losses
instead of CE ones. W sees the loss it weights (the paper's W(l_i(w); Theta) with l the training
loss): the objective is sum_i W~_i l_gce_i, and every W of the method reads l_gce.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Method:
    name: str
    meta_labels: str | None  # "clean", "noisy", or None (no meta set at all)
    meta_loss: str | None  # a name in losses' registry, or None
    summary: str
    train_loss: str = "ce"  # the per-sample loss the classifier minimises (losses.TRAIN_LOSSES)
    clean_samples_only: bool = False  # train on the samples whose given label is the clean one

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
        Method("gce", None, None, "generalized cross-entropy (q=0.7) on the noisy labels, no meta set",
               train_loss="gce"),
        Method("rmnwnet_gce", "noisy", "mae", "RMNW-Net weighting per-sample GCE (q=0.7) losses: noisy meta "
               "samples, MAE meta loss", train_loss="gce"),
        Method("oracle", None, None, "plain cross-entropy on the correctly labelled samples only "
               "(needs clean labels; a reference)", clean_samples_only=True),
    )
}


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; known: {', '.join(METHODS)}") from None
