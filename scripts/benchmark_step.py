"""Times a plain CE step against the meta steps, with XLA on and off, in one process.

    python scripts/benchmark_step.py --model=resnet32 --batch_size=100

The last line is `ratio meta/plain = X.XX` for the default configuration on this machine:
the default meta step against the plain step, each with XLA as `default_jit_compile` picks it
for this device type and step kind.
"""

import pathlib
import sys

# benchmarks/ sits beside rmwnet_tf/ in the repository and is not installed with the wheel;
# `python scripts/benchmark_step.py` puts only scripts/ on sys.path, so add the repository root.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from absl import app, flags  # noqa: E402

from rmwnet_tf.classifiers import CLASSIFIERS  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_enum("model", "resnet32", list(CLASSIFIERS), "Classifier to time.")
flags.DEFINE_integer("batch_size", 100, "Train and meta batch size.", lower_bound=1)
flags.DEFINE_integer("num_classes", 10, "Number of classes.", lower_bound=2)
flags.DEFINE_integer("image_size", 32, "Image height and width.", lower_bound=8)
flags.DEFINE_integer("steps", 10, "Timed rounds; each round times one step of every variant.", lower_bound=3)
flags.DEFINE_integer("warmup", 3, "Untimed steps per variant, the first of which compiles.", lower_bound=1)
flags.DEFINE_enum("xla", "both", ["both", "on", "off"], "Which XLA settings to time.")


def main(argv):
    del argv
    from benchmarks import step_benchmark as sb
    from rmwnet_tf.meta_model import default_jit_compile

    jit_settings = {"both": (False, True), "on": (True,), "off": (False,)}[FLAGS.xla]
    shape = (FLAGS.image_size, FLAGS.image_size, 3)
    batch = sb.synthetic_batch(FLAGS.batch_size, shape, FLAGS.num_classes, seed=0)
    steps = {
        (variant.label, jit): sb.build_step(
            variant, model_name=FLAGS.model, batch_size=FLAGS.batch_size,
            input_shape=shape, num_classes=FLAGS.num_classes, jit_compile=jit,
        )
        for jit in jit_settings
        for variant in sb.VARIANTS
    }
    medians = sb.time_interleaved(steps, batch, warmup=FLAGS.warmup, rounds=FLAGS.steps)
    for (label, jit), median in medians.items():
        print(f"{FLAGS.model} batch {FLAGS.batch_size} xla={'on ' if jit else 'off'} "
              f"{label:48s} {median:7.3f} s/step (median of {FLAGS.steps})")
    for jit in jit_settings:
        plain = medians[(sb.VARIANTS[0].label, jit)]
        for variant in sb.VARIANTS[1:]:
            print(f"xla={'on ' if jit else 'off'} {variant.label:48s} "
                  f"ratio to plain = {medians[(variant.label, jit)] / plain:.2f}")
    if len(jit_settings) == 2:
        for variant in sb.VARIANTS:
            print(f"{variant.label:48s} xla on/off = "
                  f"{medians[(variant.label, True)] / medians[(variant.label, False)]:.2f}")

    def default(label, uses_meta):
        jit = default_jit_compile(uses_meta)
        return (label, jit if jit in jit_settings else jit_settings[0])

    plain_key = default(sb.VARIANTS[0].label, False)
    meta_key = default(sb.VARIANTS[2].label, True)
    print(f"default: plain step xla={'on' if plain_key[1] else 'off'}; "
          f"{meta_key[0]} xla={'on' if meta_key[1] else 'off'}")
    print(f"ratio meta/plain = {medians[meta_key] / medians[plain_key]:.2f}")


if __name__ == "__main__":
    app.run(main)
