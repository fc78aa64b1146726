"""Runs a few fit steps on one device or mirrored over two logical CPUs; prints weights as JSON.

Run as a subprocess: logical devices must be configured before TensorFlow initialises.
    python distributed_step.py {default|mirrored} {base|mwnet|mnwnet|rmnwnet} {exact|jvp|nested|head} JIT [META_EVERY]
"""

import json
import os
import pathlib
import sys

# Run as a file, this puts only tests/helpers/ on sys.path: add the repository root, so the
# checkout under test is imported rather than whichever rmwnet_tf is installed.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from rmwnet_tf import models  # noqa: E402
from rmwnet_tf.meta_model import MetaWeightModel  # noqa: E402
from rmwnet_tf.train import make_strategy  # noqa: E402

strategy_name, method, variant, jit = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
meta_every = int(sys.argv[5]) if len(sys.argv) > 5 else 1
BATCH, K, SHAPE, STEPS = 16, 4, (6, 6, 3), 3


def batch_free_classifier():
    """No BatchNorm: per-replica batch statistics would differ from the global ones by design."""
    inputs = keras.Input(SHAPE)
    x = keras.layers.Conv2D(4, 3, kernel_initializer=keras.initializers.GlorotUniform(1))(inputs)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(K, kernel_initializer=keras.initializers.GlorotUniform(2))(x))


rng = np.random.default_rng(0)
n = BATCH * STEPS
train = {"image": rng.normal(size=(n, *SHAPE)).astype("float32"), "label": rng.integers(0, K, n).astype("int32")}
meta = {"image": rng.normal(size=(n, *SHAPE)).astype("float32"), "label": rng.integers(0, K, n).astype("int32")}
dataset = tf.data.Dataset.from_tensor_slices({"train": train, "meta": meta}).batch(BATCH)
if method == "base":
    dataset = dataset.map(lambda b: {"train": b["train"]})

strategy = make_strategy(strategy_name)
with strategy.scope():
    vnet = models.build_vnet(seed=0) if method != "base" else None
    model = MetaWeightModel(
        batch_free_classifier(), vnet, method=method,
        meta_step=variant, meta_every=meta_every,
    )
    model.compile(keras.optimizers.SGD(0.5, momentum=0.9, nesterov=True),
                  keras.optimizers.SGD(0.5, momentum=0.9, nesterov=True) if vnet else None, jit_compile=jit)
history = model.fit(dataset, epochs=1, verbose=0)
out = {
    "replicas": strategy.num_replicas_in_sync,
    "classifier": [np.asarray(v).tolist() for v in model.classifier.trainable_variables],
    "vnet": [np.asarray(v).tolist() for v in (vnet.trainable_variables if vnet else [])],
    "logs": {k: float(v[-1]) for k, v in history.history.items()},
}
print("RESULT " + json.dumps(out))
