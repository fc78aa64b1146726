"""RMNW-Net from numpy arrays with a Keras Sequential CNN, against plain cross-entropy (Base).

The data are the tool's generated stand-in for CIFAR (offline; swap in your own arrays, e.g.
`keras.datasets.cifar10.load_data()`), with 60% of the training labels redrawn uniformly at
random. A tenth of the *noisy* training set is held out as the meta set: no label is checked by
hand. The clean labels are used only to report how many of the top suspects are really wrong.

    python examples/numpy_arrays.py          # about 2,000 images, 16x16, 15 epochs
    python examples/numpy_arrays.py --tiny   # seconds: what the test suite runs
"""

import argparse

import keras
import numpy as np

import rmwnet_tf
from rmwnet_tf.data import make_synthetic
from rmwnet_tf.noise import corrupt_labels

SIZES = {False: dict(train=2000, test=2000, image=16, epochs=15), True: dict(train=200, test=60, image=8, epochs=2)}


def cnn(image_size: int, num_classes: int) -> keras.Model:
    """Any Keras classifier that returns logits will do."""
    return keras.Sequential([
        keras.Input((image_size, image_size, 3)),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(num_classes),  # logits
    ])


def main(tiny: bool = False) -> dict:
    size = SIZES[tiny]
    source = make_synthetic(size["train"], size["test"], image_size=size["image"], seed=0)
    x, x_test = source.x_train.astype("float32") / 255, source.x_test.astype("float32") / 255
    y_clean, y_test = source.y_train, source.y_test
    y = corrupt_labels(y_clean, "uniform", 0.6, num_classes=10, seed=0)  # the labels you were given
    meta = len(x) // 10  # the meta set: a held-out tenth of the noisy data
    x_meta, y_meta, x_train, y_train = x[:meta], y[:meta], x[meta:], y[meta:]

    accuracy = {}
    for method in ("base", "rmnwnet"):
        keras.utils.set_random_seed(0)  # the same initial classifier for both
        model = rmwnet_tf.MetaWeightModel(cnn(size["image"], 10), method=method, seed=0)
        model.compile(keras.optimizers.SGD(0.03, momentum=0.9, nesterov=True), vnet_optimizer=keras.optimizers.Adam(1e-3))
        model.fit(x_train, y_train, meta_data=(x_meta, y_meta) if method != "base" else None,
                  batch_size=50, epochs=size["epochs"], verbose=0)
        accuracy[method] = model.evaluate(x_test, y_test, verbose=0, return_dict=True)["accuracy"]
        print(f"{method}: test accuracy {accuracy[method]:.3f}")

    ranking = rmwnet_tf.rank_suspects(model, (x_train, y_train))  # the RMNW-Net model
    top = ranking.top(len(ranking) // 10)
    wrong = y_train[top.indices] != y_clean[meta:][top.indices]
    print(f"of the {len(top)} most suspicious training labels, {wrong.mean():.0%} are wrong "
          f"({(y_train != y_clean[meta:]).mean():.0%} of all training labels are)")
    for index, weight, given, predicted in list(zip(top.indices, top.weights, top.given_labels, top.predicted_labels))[:5]:
        print(f"  sample {index}: given {given}, predicted {predicted}, weight {weight:.3f}")
    return {"accuracy": accuracy, "ranking": ranking}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny sizes: seconds (the test suite's run)")
    main(parser.parse_args().tiny)
