"""The public API (rmwnet_tf.MetaWeightModel) on one device or mirrored over two logical CPUs.

Run as a subprocess: logical devices must be configured before TensorFlow initialises.
    python api_distributed.py train SETTING...   (default, mirrored, mirrored_compile_outside)
    python api_distributed.py refusals
Prints one line `RESULT <json>`. One process runs every setting asked for: the default strategy
places everything on the first logical CPU, as in a process that configured one.
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

import rmwnet_tf  # noqa: E402
from rmwnet_tf import models  # noqa: E402

from tests.helpers.api_data import X, X_META, Y, Y_META, classifier  # noqa: E402  (test_api.py's data)


def all_weights(model):
    variables = list(model.classifier.weights) + list(model.optimizer.variables)
    if model.vnet is not None:
        variables += list(model.vnet.weights) + list(model.vnet_optimizer.variables)
    return [np.asarray(v).tolist() for v in variables]


def strategy_for(name):
    if name == "default":
        return tf.distribute.get_strategy()
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


def train(name):
    strategy = strategy_for(name)
    out = {"replicas": strategy.num_replicas_in_sync}
    with strategy.scope():
        model = rmwnet_tf.MetaWeightModel(classifier(), method="rmnwnet", seed=0)
        if name != "mirrored_compile_outside":
            model.compile()
    if name == "mirrored_compile_outside":
        model.compile()  # the default optimizers, created outside the scope by the user's call
    history = model.fit(X, Y, meta_data=(X_META, Y_META), batch_size=16, epochs=2, verbose=0,
                        validation_data=(X_META, Y_META))
    ranking = rmwnet_tf.rank_suspects(model, (X, Y))
    out["rmnwnet"] = {
        "iterations": int(np.asarray(model.optimizer.iterations)),
        "weights": all_weights(model),
        "logs": {k: [float(x) for x in v] for k, v in history.history.items()},
        # 7: every batch splits 4 + 3 over two replicas, the last (6) 3 + 3
        "evaluate7": model.evaluate(X, Y, batch_size=7, verbose=0, return_dict=True),
        "evaluate48": model.evaluate(X, Y, batch_size=48, verbose=0, return_dict=True),
        "predict7": np.asarray(model.predict(X, batch_size=7, verbose=0)).tolist(),
        "logits": np.asarray(model.classifier(X, training=False)).tolist(),
        "sample_weights": model.sample_weights((X, Y), batch_size=20).tolist(),
        "ranking": {"indices": ranking.indices.tolist(), "weights": ranking.weights.tolist()},
    }
    if name == "mirrored_compile_outside":
        return out
    with strategy.scope():  # a tf.data pipeline, and a method without a meta set
        model = rmwnet_tf.MetaWeightModel(classifier(), method="base", seed=0)
        model.compile()
    history = model.fit(tf.data.Dataset.from_tensor_slices((X, Y[:, None])).batch(12), epochs=2, verbose=0)
    out["base"] = {
        "iterations": int(np.asarray(model.optimizer.iterations)),
        "weights": all_weights(model),
        "logs": {k: [float(x) for x in v] for k, v in history.history.items()},
    }
    return out


def refusals():
    """Each misuse under a two-replica MirroredStrategy: the exception's type and message."""
    strategy = strategy_for("mirrored")
    outside = classifier()

    def in_scope(**kwargs):
        with strategy.scope():
            model = rmwnet_tf.MetaWeightModel(classifier(), seed=0, **kwargs)
            model.compile()
        return model

    def fit(x, y=None, **kwargs):
        return in_scope().fit(x, y, meta_data=(X_META, Y_META), epochs=1, verbose=0, **kwargs)

    def classifier_outside():
        with strategy.scope():
            rmwnet_tf.MetaWeightModel(outside, seed=0)

    def vnet_outside():
        vnet = models.build_vnet(seed=1)
        with strategy.scope():
            rmwnet_tf.MetaWeightModel(classifier(), seed=0, vnet=vnet)

    def model_outside():
        with strategy.scope():
            inside = classifier()
        rmwnet_tf.MetaWeightModel(inside, seed=0)

    def optimizer_outside():
        optimizer = keras.optimizers.SGD(0.05)
        with strategy.scope():
            model = rmwnet_tf.MetaWeightModel(classifier(), seed=0)
            model.compile(optimizer)

    cases = {
        "classifier_outside": classifier_outside,
        "vnet_outside": vnet_outside,
        "model_outside": model_outside,
        "optimizer_outside": optimizer_outside,
        "odd_batch_size": lambda: fit(X, Y, batch_size=15),
        "odd_last_batch": lambda: fit(X[:47], Y[:47], batch_size=16),  # 16, 16, 15
        "odd_meta_batch_size": lambda: fit(X, Y, batch_size=16, meta_batch_size=11),
        "odd_dataset_batch": lambda: fit(tf.data.Dataset.from_tensor_slices((X[:47], Y[:47])).batch(16)),
    }
    out = {}
    for name, call in cases.items():
        try:
            call()
            out[name] = None
        except Exception as error:  # noqa: BLE001 - reported to the test
            out[name] = [type(error).__name__, str(error)]
    return out


if __name__ == "__main__":
    result = {name: train(name) for name in sys.argv[2:]} if sys.argv[1] == "train" else refusals()
    print("RESULT " + json.dumps(result))
