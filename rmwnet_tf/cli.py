"""The `rmwnet-train` command (also `python scripts/train.py`): flags in, a run directory out.

    python scripts/train.py --flagfile=configs/cifar10_flip30.flags [--method=base ...]

Every error ends the command with one line on stderr, `error: ...`, and exit code 2 (no Python
traceback; `RMWNET_TRACEBACK=1` keeps the full stack). SIGTERM or Ctrl-C during training saves a
checkpoint at the next step boundary and exits with 128 + the signal number and a line saying
how to resume.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags, logging

from rmwnet_tf import console
from rmwnet_tf import errors
from rmwnet_tf import flags as flags_lib

flags_lib.define_flags()
FLAGS = flags.FLAGS


def _fail(message: str, code: int = 2):
    print(message, file=sys.stderr)
    sys.exit(code)


def _main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])} (flags start with --)")
    console.quiet()
    config = flags_lib.config_from_flags()
    problem = flags_lib.first_problem(config)
    if problem:
        _fail(f"error: {problem}")
    try:
        console.import_tensorflow()
        # heavy imports only once the flags are known to be good
        from rmwnet_tf import train

        if errors.want_traceback():
            import keras

            keras.config.disable_traceback_filtering()
        results = train.run(config)
    except KeyboardInterrupt:  # outside training (there Ctrl-C saves and raises Interrupted)
        if errors.want_traceback():
            raise
        _fail(f"error: interrupted (Ctrl-C); the same command resumes from the newest checkpoint in "
              f"{config.model_dir}/checkpoints, if there is one", 130)
    except Exception as error:
        checkpointing = sys.modules.get("rmwnet_tf.checkpointing")
        if checkpointing and isinstance(error, checkpointing.Interrupted):  # saved, resumable
            _fail(str(error), error.exit_code)
        if errors.want_traceback():  # for bug reports: the full stack
            raise
        _fail(errors.one_line(error))
    print(done_line(config.model_dir, results))


def done_line(model_dir: str, results: dict) -> str:
    """The last line of a run: where the outputs are, what to open, and the headline numbers
    named for what they are: the last epoch's accuracy and the selected model's (the one a user
    without clean labels would keep: export_selected/), or why there is none."""
    parts = [f"done: outputs in {model_dir}/ (samples ranked by suspicion: sample_scores.csv; "
             f"numbers: results.json; curves: tensorboard --logdir {model_dir}/tensorboard)"]
    accuracy = results.get("test_accuracy_final")
    if accuracy is not None:
        selected = results.get("test_accuracy_selected")
        if selected is not None:
            exported = ": export_selected/" if results.get("config", {}).get("export", True) else ""
            parts.append(f"test accuracy {accuracy:.4f} (last epoch), {selected:.4f} (epoch "
                         f"{results['selected_epoch']}, selected by meta-set accuracy, no clean labels used{exported})")
        else:
            parts.append(f"test accuracy {accuracy:.4f} (last epoch; no selected epoch: no meta set held out)")
    auc = results.get("detection_auc_final")
    if auc is not None:
        parts.append(f"noisy-label detection AUC {auc:.4f} (final weights, whole training set)")
    return "  ".join(parts)


def main():
    logging.set_verbosity(logging.INFO)
    # --helpshort lists the main module's key flags: make the run's flags those.
    for name in flags_lib.flag_names():
        FLAGS.register_key_flag_for_module(sys.argv[0], FLAGS[name])
    app.run(_main)
