"""Step cost of candidate keras.applications backbones on this machine (BUILD_NOTES.md,
*Pretrained backbones: which ones, measured*).

    python benchmarks/backbone_step.py --batch=32 --size=224

Each candidate: 32x32 inputs resized to `--size` inside the model, the backbone (include_top=False,
average pooling, random weights: the cost does not depend on them) and a Dense head; one plain SGD
step and one inference pass of the backbone, timed interleaved over `--rounds` rounds in one process
after a warm-up, median printed.
"""

import time

import keras
import numpy as np
import tensorflow as tf
from absl import app, flags

flags.DEFINE_integer("batch", 32, "Images per step.")
flags.DEFINE_integer("size", 224, "The side the backbone sees.")
flags.DEFINE_integer("rounds", 3, "Interleaved timing rounds.")

CANDIDATES = {
    "mobilenet_v3_small": keras.applications.MobileNetV3Small,
    "mobilenet_v3_large": keras.applications.MobileNetV3Large,
    "efficientnet_v2_b0": keras.applications.EfficientNetV2B0,
    "efficientnet_b0": keras.applications.EfficientNetB0,
    "resnet50_v2": keras.applications.ResNet50V2,
}


def timed_functions(constructor, images, labels, size):
    inputs = keras.Input((32, 32, 3))
    backbone = constructor(include_top=False, weights=None, input_shape=(size, size, 3), pooling="avg")
    model = keras.Model(inputs, keras.layers.Dense(10)(backbone(keras.layers.Resizing(size, size)(inputs))))
    optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
    optimizer.build(model.trainable_variables)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))
        optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
        return loss

    @tf.function
    def forward():
        return backbone(tf.image.resize(images, (size, size)), training=False)

    step(), forward()  # trace and warm up
    return backbone, step, forward


def main(argv):
    del argv
    batch, size = flags.FLAGS.batch, flags.FLAGS.size
    images = tf.random.uniform((batch, 32, 32, 3), 0, 255)
    labels = tf.random.uniform((batch,), 0, 10, tf.int32)
    functions = {}
    for name, constructor in CANDIDATES.items():
        backbone, step, forward = timed_functions(constructor, images, labels, size)
        functions[name] = (step, forward)
        print(f"{name}: {backbone.count_params() / 1e6:.2f}M parameters, {backbone.output.shape[-1]} features",
              flush=True)
    times = {name: ([], []) for name in functions}
    for _ in range(flags.FLAGS.rounds):
        for name, (step, forward) in functions.items():
            for kind, function in enumerate((step, forward)):
                started = time.perf_counter()
                function().numpy()
                times[name][kind].append(time.perf_counter() - started)
    reference = np.median(times["mobilenet_v3_small"][0])
    for name, (steps, forwards) in times.items():
        print(f"{name}: train step {np.median(steps):.2f} s, inference {np.median(forwards):.2f} s per batch of "
              f"{batch} at {size}x{size}; ratio {name}/mobilenet_v3_small = {np.median(steps) / reference:.1f}")


if __name__ == "__main__":
    app.run(main)
