"""Profiles the plain CE step and the default meta step, and prints where each step's time goes.

    python scripts/profile_step.py --model=resnet32 --batch_size=100 --modes=plain,exact --xla=default

Each step kind is built as in scripts/benchmark_step.py (benchmarks/step_benchmark.py), warmed up,
timed for --steps calls without the profiler, then run --steps more calls under
`tf.profiler.experimental`, one step kind at a time; benchmarks/step_trace.py sums the trace's op
times per category. Output per step kind:

  `profile MODE (LABEL) MODEL batch B xla=X: N steps, W ms/step under the profiler, U ms/step without`
  a table: category, wall ms per step, share of the step, op (thread) ms per step; conv rows
      are split by layer width; the wall column adds up to the step (benchmarks/step_trace.py
      says how concurrent ops share it, and what `remainder` is);
  with --top=K, the K op names with the most wall time;
or, when the trace cannot be read, one line `profile MODE: no op times (REASON)` after the first.

--logdir keeps the raw traces (one subfolder per step kind) for TensorBoard's Profile tab
(`pip install tensorboard-plugin-profile`, then `tensorboard --logdir=DIR`); without it they go
to a temporary folder that is removed.
"""

import pathlib
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
# benchmarks/ is not installed with the wheel; `python scripts/...` puts only scripts/ on sys.path.
sys.path.insert(0, str(ROOT))

from absl import app, flags  # noqa: E402

from rmwnet_tf.classifiers import CLASSIFIERS  # noqa: E402

MODES = ("plain", "exact", "jvp", "nested", "head")  # one call = one step (no meta_every cycles)

FLAGS = flags.FLAGS
flags.DEFINE_enum("model", "resnet32", list(CLASSIFIERS), "Classifier to profile.")
flags.DEFINE_integer("batch_size", 100, "Train and meta batch size.", lower_bound=1)
flags.DEFINE_integer("num_classes", 10, "Number of classes.", lower_bound=2)
flags.DEFINE_integer("image_size", 32, "Image height and width.", lower_bound=8)
flags.DEFINE_integer("steps", 5, "Profiled steps per step kind (and as many timed without the profiler).",
                     lower_bound=1)
flags.DEFINE_integer("warmup", 3, "Unprofiled steps per step kind first, the first of which compiles.",
                     lower_bound=1)
flags.DEFINE_list("modes", ["plain", "exact"], f"Step kinds to profile, from {', '.join(MODES)}.")
flags.DEFINE_enum("xla", "default", ["default", "off", "on"],
                  "jit_compile of every step kind: default (as default_jit_compile picks per step kind), off, on.")
flags.DEFINE_string("logdir", "", "Keep the traces here (subfolder per step kind); empty: a temporary folder.")
flags.DEFINE_integer("top", 0, "Also list this many op names with the most time per step kind.", lower_bound=0)


def jit_for(variant):
    from rmwnet_tf.train import default_jit_compile

    return {"off": False, "on": True}.get(FLAGS.xla, default_jit_compile())


def profile_mode(mode, logdir):
    """Build, warm up, time and profile one step kind; print its header and table."""
    import numpy as np

    from benchmarks import step_trace as ps
    from benchmarks import step_benchmark as sb

    variant, shape = sb.VARIANTS_BY_MODE[mode], (FLAGS.image_size, FLAGS.image_size, 3)
    jit = jit_for(variant)
    batch = sb.synthetic_batch(FLAGS.batch_size, shape, FLAGS.num_classes, seed=0)
    model = sb.build_model(variant, model_name=FLAGS.model, batch_size=FLAGS.batch_size, input_shape=shape,
                           num_classes=FLAGS.num_classes)
    step = sb.compile_steps(model.train_step, jit_compile=jit)
    ps.time_steps(step, batch, steps=FLAGS.warmup)
    plain_s = ps.time_steps(step, batch, steps=FLAGS.steps)
    profiled_s = ps.profile_steps(step, batch, steps=FLAGS.steps, logdir=logdir)
    print(f"profile {mode} ({variant.label}) {FLAGS.model} batch {FLAGS.batch_size} xla={'on' if jit else 'off'}: "
          f"{FLAGS.steps} steps, {np.mean(profiled_s) * 1e3:.1f} ms/step under the profiler, "
          f"{np.mean(plain_s) * 1e3:.1f} ms/step without")
    layers = ps.layers_of(model)
    profile, reason = ps.parse_logdir(logdir, layers)
    if profile is None:
        print(f"profile {mode}: no op times ({reason})")
        return
    print(ps.format_table(ps.table_rows(profile, layers)))
    for ms, category, name in ps.top_ops(profile, layers, FLAGS.top):
        print(f"  top {ms:9.2f} ms  {category:28s} {name}")


def main(argv):
    del argv
    unknown = sorted(set(FLAGS.modes) - set(MODES))
    if unknown:
        raise app.UsageError(f"--modes: unknown {', '.join(unknown)}; known: {', '.join(MODES)}")
    root = FLAGS.logdir or tempfile.mkdtemp(prefix="profile_step_")
    try:
        for mode in FLAGS.modes:
            profile_mode(mode, str(pathlib.Path(root) / mode))
    finally:
        if not FLAGS.logdir:
            import shutil

            shutil.rmtree(root, ignore_errors=True)
    if FLAGS.logdir:
        print(f"traces kept in {FLAGS.logdir} (tensorboard --logdir={FLAGS.logdir}, Profile tab)")


if __name__ == "__main__":
    app.run(main)
