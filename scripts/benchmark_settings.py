"""Times the plain and the default meta step under each runtime setting of issue #15.

    python scripts/benchmark_settings.py --model=resnet32 --batch_size=100 --rounds=3

Every setting runs scripts/benchmark_step.py in its own process (threads, oneDNN and
autoclustering must be fixed before TensorFlow starts, and a fresh process keeps one setting's
caches from helping the next). The settings are interleaved: each round runs every setting once,
in turn, so a drift of the shared machine's speed hits them all alike; the figure per setting is
the median over rounds. Each run times `plain` and `exact` only, each at its default XLA setting
unless the setting is about XLA. One line per setting:

    SETTING plain X s meta Y s ratio_to_baseline plain A meta B

A and B are X and Y over the baseline's (all defaults). No product default is changed.
"""

import pathlib
import re
import statistics
import subprocess
import sys

from absl import app, flags

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rmwnet_tf.classifiers import CLASSIFIERS  # noqa: E402

SETTINGS = {
    "baseline": [],
    "intra_op_threads=1": ["--intra_op_threads=1"],
    "intra_op_threads=2": ["--intra_op_threads=2"],
    "inter_op_threads=1": ["--inter_op_threads=1"],
    "onednn=off": ["--onednn=off"],
    "onednn=on": ["--onednn=on"],
    "xla=off": ["--xla=off"],
    "xla=jit_compile": ["--xla=on"],
    "xla=autoclustering": ["--xla=autoclustering"],
    "mixed_bfloat16": ["--mixed_precision=mixed_bfloat16"],
    "steps_per_execution=4": ["--steps_per_execution=4"],
}

FLAGS = flags.FLAGS
flags.DEFINE_enum("model", "resnet32", list(CLASSIFIERS), "Classifier to time.")
flags.DEFINE_integer("batch_size", 100, "Train and meta batch size.", lower_bound=1)
flags.DEFINE_integer("image_size", 32, "Image height and width.", lower_bound=8)
flags.DEFINE_integer("steps", 5, "Timed rounds inside each run.", lower_bound=3)
flags.DEFINE_integer("warmup", 2, "Untimed steps per step kind inside each run.", lower_bound=1)
flags.DEFINE_integer("rounds", 1, "Runs per setting, interleaved across settings.", lower_bound=1)
flags.DEFINE_list("settings", list(SETTINGS), f"Settings to run, from {', '.join(SETTINGS)}.")


def run_setting(extra):
    argv = [sys.executable, str(ROOT / "scripts" / "benchmark_step.py"), f"--model={FLAGS.model}",
            f"--batch_size={FLAGS.batch_size}", f"--image_size={FLAGS.image_size}", f"--steps={FLAGS.steps}",
            f"--warmup={FLAGS.warmup}", "--modes=plain,exact", "--notfnn", "--xla=default", *extra]
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{result.stderr[-3000:]}")
    times = dict(re.findall(r"^time (plain|exact) = ([0-9.]+) s$", result.stdout, re.M))
    return float(times["plain"]), float(times["exact"])


def main(argv):
    del argv
    unknown = sorted(set(FLAGS.settings) - set(SETTINGS))
    if unknown:
        raise app.UsageError(f"--settings: unknown {', '.join(unknown)}; known: {', '.join(SETTINGS)}")
    names = ["baseline"] + [s for s in FLAGS.settings if s != "baseline"]
    samples = {name: [] for name in names}
    for _ in range(FLAGS.rounds):
        for name in names:
            samples[name].append(run_setting(SETTINGS[name]))
    medians = {name: (statistics.median(p for p, _ in runs), statistics.median(m for _, m in runs))
               for name, runs in samples.items()}
    base_plain, base_meta = medians["baseline"]
    for name, (plain, meta) in medians.items():
        print(f"{name} plain {plain:.4f} s meta {meta:.4f} s "
              f"ratio_to_baseline plain {plain / base_plain:.2f} meta {meta / base_meta:.2f}")


if __name__ == "__main__":
    app.run(main)
