"""RMNW-Net on a `tf.data` pipeline with a `keras.applications` backbone (MobileNetV3Small).

Your pipeline stays yours: shuffle, augment and batch as you would for `model.fit`; the meta set
is a dataset of (image, label) batches too (held in memory by `fit`: keep it small). Checkpoints,
resumption after a crash and early stopping on the meta set's accuracy (no gold labels needed)
come from the stock Keras callbacks.

    python examples/tf_data_backbone.py                     # ImageNet weights (downloaded once), 3,000 images
    python examples/tf_data_backbone.py --tiny --weights=none   # seconds, random weights: the test suite's run
"""

import argparse
import os
import tempfile

import keras
import tensorflow as tf

import rmwnet_tf
from rmwnet_tf.data import make_synthetic
from rmwnet_tf.noise import corrupt_labels

SIZES = {False: dict(train=3000, test=1000, epochs=10, batch=64), True: dict(train=48, test=16, epochs=1, batch=16)}
IMAGE_SIZE = 32  # the smallest input MobileNetV3 takes; ImageNet weights prefer 96 and above


def backbone_classifier(num_classes: int, weights) -> keras.Model:
    backbone = keras.applications.MobileNetV3Small(
        input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3), include_top=False, weights=weights, pooling="avg",
        include_preprocessing=True)  # takes pixels in [0, 255]
    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3))
    return keras.Model(inputs, keras.layers.Dense(num_classes)(backbone(inputs)))  # logits


def augment(image, label):
    return tf.image.random_flip_left_right(image), label


def main(tiny: bool = False, weights: str | None = "imagenet", work_dir: str | None = None) -> dict:
    size = SIZES[tiny]
    source = make_synthetic(size["train"], size["test"], image_size=IMAGE_SIZE, seed=0)
    labels = corrupt_labels(source.y_train, "uniform", 0.4, num_classes=10, seed=0)
    meta = len(labels) // 10
    images = tf.cast(source.x_train, tf.float32)
    train = (tf.data.Dataset.from_tensor_slices((images[meta:], labels[meta:]))
             .shuffle(4096, seed=0).map(augment).batch(size["batch"]).prefetch(tf.data.AUTOTUNE))
    meta_set = tf.data.Dataset.from_tensor_slices((images[:meta], labels[:meta])).batch(size["batch"])
    train_unaugmented = tf.data.Dataset.from_tensor_slices((images[meta:], labels[meta:])).batch(256)
    test = tf.data.Dataset.from_tensor_slices((tf.cast(source.x_test, tf.float32), source.y_test)).batch(256)

    keras.utils.set_random_seed(0)
    model = rmwnet_tf.MetaWeightModel(backbone_classifier(10, weights), method="rmnwnet", seed=0)
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True))
    work_dir = work_dir or tempfile.mkdtemp(prefix="rmwnet_example_")
    callbacks = [
        keras.callbacks.BackupAndRestore(os.path.join(work_dir, "backup")),  # rerun after a crash: goes on
        keras.callbacks.ModelCheckpoint(os.path.join(work_dir, "best.weights.h5"), monitor="val_accuracy",
                                        mode="max", save_best_only=True, save_weights_only=True),
        keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max", patience=3),
        keras.callbacks.TensorBoard(os.path.join(work_dir, "tensorboard")),
        rmwnet_tf.WeightHistograms(os.path.join(work_dir, "tensorboard"), train_unaugmented),
    ]
    # validation_data = the noisy meta set: its accuracy picks the checkpoint without gold labels.
    model.fit(train, meta_data=meta_set, validation_data=meta_set, epochs=size["epochs"], callbacks=callbacks,
              verbose=0 if tiny else 2)
    model.load_weights(os.path.join(work_dir, "best.weights.h5"))
    result = model.evaluate(test, verbose=0, return_dict=True)
    print(f"test accuracy {result['accuracy']:.3f} (checkpoint picked by the meta set's accuracy); "
          f"logs in {work_dir}")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny sizes: seconds (the test suite's run)")
    parser.add_argument("--weights", default="imagenet", help="backbone weights: imagenet or none (random)")
    parser.add_argument("--work_dir", default=None, help="checkpoints and TensorBoard logs (default: a new temp folder)")
    args = parser.parse_args()
    main(args.tiny, None if args.weights == "none" else args.weights, args.work_dir)
