"""The Python API tests' data and classifier, shared by tests/test_api.py and the subprocess
scenarios of tests/helpers/api_distributed.py (one device against two replicas must see the
same numbers)."""

import keras
import numpy as np

SHAPE, CLASSES = (8, 8, 3), 3
RNG = np.random.default_rng(0)
X = RNG.normal(size=(48, *SHAPE)).astype(np.float32)
Y = RNG.integers(0, CLASSES, 48).astype(np.int64)
X_META, Y_META = X[:12], Y[:12]


def classifier(seed=0):
    """No BatchNorm: under a strategy, per-replica batch statistics would differ from the global ones by design."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input(SHAPE), keras.layers.Conv2D(4, 3, activation="relu"),
        keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(CLASSES),
    ])
