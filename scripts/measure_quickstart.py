"""Runs the quick start's two commands and records what they gave in results/quickstart.json,
the numbers configs/quickstart.flags quotes (scripts/make_configs.py writes its comment from them).

    python scripts/measure_quickstart.py                        # run Base and RMNW-Net, one after the other
    python scripts/measure_quickstart.py --record_only --runs_dir=DIR   # record finished runs DIR/{base,rmnwnet}
    python scripts/make_configs.py                              # then rewrite the flagfile's comment

Why a file: the flagfile's claim must come from a run, and stay true. A test checks that the
recorded runs used the quick start's current settings, so changing a setting without measuring
again fails the suite instead of leaving a stale promise.
"""

import datetime
import json
import os
import pathlib
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from absl import app, flags  # noqa: E402

from experiments.presets import QUICKSTART_JSON, quickstart_config, quickstart_identity  # noqa: E402
from rmwnet_tf import summary  # noqa: E402
from rmwnet_tf.config import Config  # noqa: E402

flags.DEFINE_string("runs_dir", "runs/quickstart_measured", "Where the two runs go (<runs_dir>/base, /rmnwnet).")
flags.DEFINE_bool("record_only", False, "Do not train: record the finished runs already in --runs_dir.")
flags.DEFINE_string("out", str(QUICKSTART_JSON), "The JSON to write.")
flags.DEFINE_string("machine", "", "How busy the machine was during the runs (default: the CPU count and, when "
                    "this script trains, the load average at its start).")
METHODS = ("base", "rmnwnet")


QUOTED = ("final/test/accuracy", "best/test/accuracy", "best_epoch/test/accuracy", "selected/test/accuracy",
          "selected/epoch", "final/fit/noisy_memorised", "final/detection/auc")


def summarise(results: dict) -> dict:
    """The numbers the claim rests on (under results.json's flattened names), and the curve behind them."""
    flat = summary.flat(summary.upgrade(results))
    curve = [round(row["test/accuracy"], 4) for row in results["history"] if row.get("test/accuracy") is not None]
    return {
        **{name: flat.get(name) for name in QUOTED},
        "largest_epoch_to_epoch_change": round(max(abs(a - b) for a, b in zip(curve[1:], curve[:-1])), 4),
        "wall_seconds": round(results["wall_seconds"], 1),
        "test_accuracy_curve": curve,
    }


def main(argv):
    del argv
    runs_dir = pathlib.Path(flags.FLAGS.runs_dir)
    machine = flags.FLAGS.machine or f"{os.cpu_count()} CPU cores"
    if not flags.FLAGS.record_only:
        machine += f", load average {os.getloadavg()[0]:.1f} at the start"
        for method in METHODS:
            command = [sys.executable, str(ROOT / "scripts/train.py"), f"--flagfile={ROOT / 'configs/quickstart.flags'}",
                       f"--method={method}", f"--model_dir={runs_dir / method}", "--overwrite"]
            started = time.perf_counter()
            subprocess.run(command, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
            print(f"{method}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    measured = {}
    for method in METHODS:
        results = json.loads((runs_dir / method / "results.json").read_text())
        config = Config(**results["config"])
        measured[method] = summarise(results)
    expected = quickstart_identity(quickstart_config())
    if quickstart_identity(config) != expected:
        changed = {k: v for k, v in quickstart_identity(config).items() if expected.get(k) != v}
        print(f"warning: these runs differ from the quick start's settings in {changed}", file=sys.stderr)
    record = {
        "date": datetime.date.today().isoformat(),
        "machine": machine,
        "commands": [f"python scripts/train.py --flagfile=configs/quickstart.flags --method={m}" for m in METHODS],
        "config": quickstart_identity(config),
        "methods": measured,
    }
    pathlib.Path(flags.FLAGS.out).write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {flags.FLAGS.out}; now run python scripts/make_configs.py")


if __name__ == "__main__":
    app.run(main)
