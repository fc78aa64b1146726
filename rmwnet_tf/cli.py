"""The `rmwnet-train` command (also `python scripts/train.py`): flags in, a run directory out.

    python scripts/train.py --flagfile=configs/cifar10_flip30.flags [--method=base ...]
"""

from __future__ import annotations

import os
import sys

from absl import app, flags, logging

from rmwnet_tf import flags as flags_lib

flags_lib.define_flags()
FLAGS = flags.FLAGS


def _main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])} (flags start with --)")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    config = flags_lib.config_from_flags()
    problem = flags_lib.first_problem(config)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    from rmwnet_tf import train  # heavy import only once the flags are known to be good

    if os.environ.get("RMWNET_TRACEBACK"):
        import keras

        keras.config.disable_traceback_filtering()

    try:
        results = train.run(config)
    except (train.RunError, ValueError, FileNotFoundError) as error:
        if os.environ.get("RMWNET_TRACEBACK"):  # for bug reports: the full stack
            raise
        logging.error("%s", error)
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    accuracy = results.get("test_accuracy_final")
    auc = results.get("detection_auc_final")
    print(f"done: {config.model_dir}  test/accuracy {accuracy if accuracy is None else f'{accuracy:.4f}'}"
          f"  detection/auc {auc if auc is None else f'{auc:.4f}'}")


def main():
    logging.set_verbosity(logging.INFO)
    # --helpshort lists the main module's key flags: make the run's flags those.
    for name in flags_lib.flag_names():
        FLAGS.register_key_flag_for_module(sys.argv[0], FLAGS[name])
    app.run(_main)
