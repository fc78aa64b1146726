"""rmwnet_tf: learning from noisy labels without gold samples (RMNW-Net) in Keras 3.

The public Python API (each name documented by its own `help()`):

    MetaWeightModel   your classifier trained by RMNW-Net or a relative (compile / fit / evaluate /
                      predict, fit(..., meta_data=...), sample_weights)
    rank_suspects     the training labels in review order, most suspicious first -> SuspectRanking
    WeightHistograms  a Keras callback: the weights as TensorBoard histograms and the W(loss) curve
    METHODS           the methods by name, with what each needs

The names are loaded on first use, so `import rmwnet_tf` (and the command line's flag checks)
stay free of TensorFlow until a model is asked for.
"""

import importlib

__version__ = "0.1.0"

_PUBLIC = {
    "MetaWeightModel": "rmwnet_tf.api.model",
    "rank_suspects": "rmwnet_tf.api.ranking",
    "SuspectRanking": "rmwnet_tf.api.ranking",
    "WeightHistograms": "rmwnet_tf.api.callbacks",
    "METHODS": "rmwnet_tf.methods",
}
__all__ = ["__version__", *_PUBLIC]


def __getattr__(name):
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value  # once
        return value
    raise AttributeError(f"module 'rmwnet_tf' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC))
