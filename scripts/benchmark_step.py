"""Times a plain CE step against the meta steps, with XLA on and off, in one process.

    python scripts/benchmark_step.py --model=resnet32 --batch_size=100
    python scripts/benchmark_step.py --model=wrn28_10 --batch_size=100 --memory --notiming

Modes (--modes): plain, exact, jvp, nested, head, every2, every4, every8 (the exact step with
meta_every=2, 4, 8). Output, in order:
  `MODEL batch B xla=X LABEL T s/step (median of N)`  every compiled (mode, XLA) pair;
  `xla=X LABEL ratio to plain = R`                     against plain at the same XLA setting;
  `LABEL xla on/off = R`                               with --xla=both;
  `time MODE = T s`                                    each mode at its default XLA setting;
  `ratio MODE/plain = R`                               the same, against plain;
  `time tfnn_plain = T s` and `ratio keras_plain/tfnn_plain = R`  (ResNet-32 only, --tfnn): our
      plain Keras step against the same network and update in bare tf.nn ops (benchmarks/tfnn_resnet.py);
  `memory MODE = M MiB (ratio to plain R)`             with --memory: peak RSS of the step over
      the RSS after building, each mode in a fresh process (benchmarks/step_memory.py says why);
and last `ratio meta/plain = X.XX` for the default configuration on this machine: the default
meta step against the plain step, each with XLA as a run's `--jit_compile=auto` picks it for this device
type and step kind.

Settings for measurement only (issue #15; no product default changes): --intra_op_threads,
--inter_op_threads, --onednn (sets TF_ENABLE_ONEDNN_OPTS; TensorFlow is imported only after the
flags are parsed, so no re-exec is needed), --xla=autoclustering (tf.config.optimizer.set_jit),
--mixed_precision=mixed_bfloat16, --steps_per_execution. scripts/benchmark_settings.py runs them.
"""

import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
# benchmarks/ sits beside rmwnet_tf/ in the repository and is not installed with the wheel;
# `python scripts/benchmark_step.py` puts only scripts/ on sys.path, so add the repository root.
sys.path.insert(0, str(ROOT))

from absl import app, flags  # noqa: E402

from rmwnet_tf.classifiers import CLASSIFIERS  # noqa: E402

MODES = ("plain", "exact", "jvp", "nested", "head", "every2", "every4", "every8")

FLAGS = flags.FLAGS
flags.DEFINE_enum("model", "resnet32", list(CLASSIFIERS), "Classifier to time.")
flags.DEFINE_integer("batch_size", 100, "Train and meta batch size.", lower_bound=1)
flags.DEFINE_integer("num_classes", 10, "Number of classes.", lower_bound=2)
flags.DEFINE_integer("image_size", 32, "Image height and width.", lower_bound=8)
flags.DEFINE_integer("steps", 10, "Timed rounds; each round times one step of every variant.", lower_bound=3)
flags.DEFINE_integer("warmup", 3, "Untimed steps per variant, the first of which compiles.", lower_bound=1)
flags.DEFINE_enum("xla", "both", ["both", "on", "off", "default", "autoclustering"],
                  "XLA settings to time: both (jit_compile off and on), on, off, default (each mode as "
                  "default_jit_compile picks), autoclustering (jit_compile off, tf.config.optimizer.set_jit).")
flags.DEFINE_list("modes", list(MODES), f"Step kinds to time, from {', '.join(MODES)} (plain is always timed).")
flags.DEFINE_bool("timing", True, "Time the steps (--notiming with --memory: memory only).")
flags.DEFINE_bool("tfnn", True, "With --model=resnet32: also time the bare tf.nn ResNet-32 plain step.")
flags.DEFINE_bool("memory", False, "Measure each mode's peak memory, one fresh process per mode.")
flags.DEFINE_integer("intra_op_threads", 0, "tf.config.threading intra-op threads (0: TF's default).", lower_bound=0)
flags.DEFINE_integer("inter_op_threads", 0, "tf.config.threading inter-op threads (0: TF's default).", lower_bound=0)
flags.DEFINE_enum("onednn", "default", ["default", "on", "off"], "TF_ENABLE_ONEDNN_OPTS before TF starts.")
flags.DEFINE_enum("mixed_precision", "float32", ["float32", "mixed_bfloat16"], "Keras dtype policy of the classifier.")
flags.DEFINE_integer("steps_per_execution", 1, "Steps per compiled call (timed per step).", lower_bound=1)


def start_tensorflow():
    """Apply the settings that must precede TensorFlow's start; returns the tf module."""
    if FLAGS.onednn != "default":
        if "tensorflow" in sys.modules:
            raise RuntimeError("--onednn must be set before TensorFlow is imported")
        os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1" if FLAGS.onednn == "on" else "0"
    import tensorflow as tf

    if FLAGS.intra_op_threads:
        tf.config.threading.set_intra_op_parallelism_threads(FLAGS.intra_op_threads)
    if FLAGS.inter_op_threads:
        tf.config.threading.set_inter_op_parallelism_threads(FLAGS.inter_op_threads)
    if FLAGS.xla == "autoclustering":
        tf.config.optimizer.set_jit("autoclustering")
    import keras

    keras.mixed_precision.set_global_policy(FLAGS.mixed_precision)
    return tf


def xla_name(jit):
    return jit if isinstance(jit, str) else ("on " if jit else "off")


def measure_memory(mode, jit):
    config = dict(mode=mode, model_name=FLAGS.model, batch_size=FLAGS.batch_size, image_size=FLAGS.image_size,
                  num_classes=FLAGS.num_classes, jit_compile=jit is True, warmup=FLAGS.warmup, steps=3,
                  mixed_precision=FLAGS.mixed_precision)
    result = subprocess.run([sys.executable, "-m", "benchmarks.step_memory", json.dumps(config)], cwd=ROOT,
                            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if result.returncode != 0:
        raise RuntimeError(f"memory of {mode} failed:\n{result.stderr[-3000:]}")
    line = [line for line in result.stdout.splitlines() if line.startswith("MEMORY ")][-1]
    return json.loads(line[len("MEMORY "):])


def main(argv):
    del argv
    unknown = sorted(set(FLAGS.modes) - set(MODES))
    if unknown:
        raise app.UsageError(f"--modes: unknown {', '.join(unknown)}; known: {', '.join(MODES)}")
    start_tensorflow()
    from benchmarks import step_benchmark as sb
    from benchmarks import tfnn_resnet
    import tensorflow as tf

    from rmwnet_tf.train import resolve_jit

    def default_jit_compile(variant):
        """XLA as a run's `--jit_compile=auto` picks it (one device): per device type and step kind."""
        return resolve_jit("auto", tf.distribute.get_strategy(), variant.uses_meta, variant.meta_every)

    modes = ["plain"] + [m for m in MODES if m in FLAGS.modes and m != "plain"]
    variants = [sb.VARIANTS_BY_MODE[m] for m in modes]

    def settings_for(variant):
        if FLAGS.xla == "default":
            return (default_jit_compile(variant),)
        return {"both": (False, True), "on": (True,), "off": (False,), "autoclustering": ("auto",)}[FLAGS.xla]

    def default_key(variant):
        jits = settings_for(variant)
        jit = default_jit_compile(variant)
        return (variant.mode, jit if jit in jits else jits[0])

    shape = (FLAGS.image_size, FLAGS.image_size, 3)
    medians = {}
    if FLAGS.timing:
        batch = sb.synthetic_batch(FLAGS.batch_size, shape, FLAGS.num_classes, seed=0)
        spe = FLAGS.steps_per_execution
        steps = {
            (variant.mode, jit): sb.build_step(
                variant, model_name=FLAGS.model, batch_size=FLAGS.batch_size, input_shape=shape,
                num_classes=FLAGS.num_classes, jit_compile=jit is True, steps_per_execution=spe,
            )
            for variant in variants
            for jit in settings_for(variant)
        }
        # A meta_every cycle per sample: ceil(k / steps_per_execution) calls.
        calls = {key: -(-sb.VARIANTS_BY_MODE[key[0]].meta_every // spe) for key in steps}
        plain_key = default_key(variants[0])
        tfnn = FLAGS.tfnn and FLAGS.model == "resnet32"
        if tfnn:
            net = tfnn_resnet.TfnnResNet32(num_classes=FLAGS.num_classes, in_channels=3)
            step = tfnn_resnet.make_train_step(net, jit_compile=plain_key[1] is True)
            steps[("tfnn_plain", plain_key[1])] = sb.compile_steps(step, jit_compile=False,
                                                                   steps_per_execution=spe)
        medians = sb.time_interleaved(steps, batch, warmup=FLAGS.warmup, rounds=FLAGS.steps, calls=calls,
                                      steps_per_call=spe)
        labels = {v.mode: v.label for v in variants}
        labels["tfnn_plain"] = "plain CE step, bare tf.nn ResNet-32 (reference)"
        for (mode, jit), median in medians.items():
            print(f"{FLAGS.model} batch {FLAGS.batch_size} xla={xla_name(jit)} "
                  f"{labels[mode]:48s} {median:7.3f} s/step (median of {FLAGS.steps})")
        for jit in dict.fromkeys(j for v in variants for j in settings_for(v)):
            if ("plain", jit) not in medians:
                continue
            for variant in variants[1:]:
                if (variant.mode, jit) in medians:
                    print(f"xla={xla_name(jit)} {variant.label:48s} "
                          f"ratio to plain = {medians[(variant.mode, jit)] / medians[('plain', jit)]:.2f}")
        if FLAGS.xla == "both":
            for variant in variants:
                print(f"{variant.label:48s} xla on/off = "
                      f"{medians[(variant.mode, True)] / medians[(variant.mode, False)]:.2f}")
        for variant in variants:
            print(f"time {variant.mode} = {medians[default_key(variant)]:.4f} s")
        for variant in variants[1:]:
            print(f"ratio {variant.mode}/plain = {medians[default_key(variant)] / medians[plain_key]:.2f}")
        if tfnn:
            tfnn_time = medians[("tfnn_plain", plain_key[1])]
            print(f"time tfnn_plain = {tfnn_time:.4f} s")
            print(f"ratio keras_plain/tfnn_plain = {medians[plain_key] / tfnn_time:.2f}")

    if FLAGS.memory:
        memory = {v.mode: measure_memory(v.mode, default_key(v)[1]) for v in variants}
        plain_mib = memory["plain"]["step_mib"]
        for mode, result in memory.items():
            ratio = result["step_mib"] / plain_mib if plain_mib > 0 else float("nan")
            print(f"memory {mode} = {result['step_mib']:.1f} MiB (ratio to plain {ratio:.2f}) "
                  f"[peak {result['peak_mib']:.0f} MiB from {result['peak_source']}, "
                  f"after build {result['baseline_mib']:.0f} MiB]")

    if FLAGS.timing and "exact" in modes:
        plain_key, meta_key = default_key(variants[0]), default_key(sb.VARIANTS_BY_MODE["exact"])
        print(f"default: plain step xla={xla_name(plain_key[1]).strip()}; "
              f"{sb.VARIANTS_BY_MODE['exact'].label} xla={xla_name(meta_key[1]).strip()}")
        print(f"ratio meta/plain = {medians[meta_key] / medians[plain_key]:.2f}")


if __name__ == "__main__":
    app.run(main)
