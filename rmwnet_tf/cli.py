"""The `rmwnet-train` command (also `python scripts/train.py`): flags in, a run directory out.

    python scripts/train.py --flagfile=configs/cifar10_flip30.flags [--method=base ...]

Every error ends the command with one line on stderr, `error: ...`, and exit code 2 (no Python
traceback; `RMWNET_TRACEBACK=1` keeps the full stack), flag parsing included: absl's own
reports (two lines and exit 1, or the whole help for a stray argument) are rewritten here. SIGTERM or Ctrl-C during training saves a
checkpoint at the next step boundary and exits with 128 + the signal number and a line saying
how to resume.
"""

from __future__ import annotations

import sys

from absl import app, flags, logging

from rmwnet_tf import console
from rmwnet_tf import errors
from rmwnet_tf import flagfiles
from rmwnet_tf import flags as flags_lib

flags_lib.define_flags()
FLAGS = flags.FLAGS
# Read by `flagfiles.expand` before absl parses; defined so that --help lists it.
flags.DEFINE_string("preset", None, "A shipped flagfile by name, e.g. quickstart or cifar10_flip30 "
                    "(configs/<name>.flags; later flags override it).")


def _fail(message: str, code: int = 2):
    print(message, file=sys.stderr)
    sys.exit(code)


HELP_HINT = "python scripts/train.py --helpshort lists the flags"


def parse_flags(argv: list[str]) -> list[str]:
    """absl's parsing with its errors as one `error:` line and exit 2, naming the flag or file.

    Why: absl prints two lines and exits 1 for an unknown flag or a bad value, a Python stack
    for a flagfile that is not text, and 148 lines of help for a stray argument (a flagfile
    line without its leading --), while the README promises one line and exit 2."""
    try:
        argv = flagfiles.expand(argv)
    except ValueError as error:
        _fail(f"error: {error}")
    try:
        remaining = FLAGS(argv)
    except flags.UnrecognizedFlagError as error:
        suggested = str(error).partition("Did you mean:")[2].strip(" ?").split(", ")
        hint = f" (did you mean --{' or --'.join(suggested)}?)" if suggested != [""] else ""
        _fail(f"error: unknown flag --{error.flagname}{hint}; {HELP_HINT}")
    except flags.Error as error:  # a bad value ("flag --x=v: ..."), an unreadable flagfile
        text = " ".join(str(error).split()).replace("ERROR:: ", "")
        _fail(f"error: {text}; {HELP_HINT}")
    except UnicodeDecodeError as error:
        _fail(f"error: {_undecodable_flagfile(argv)} is not a text file ({error.reason} at byte "
              f"{error.start}); a flagfile holds one --flag=value per line")
    if len(remaining) > 1:
        _fail(f"error: unexpected argument {remaining[1]!r}: flags start with -- (in a flagfile "
              f"too: one --flag=value per line); {HELP_HINT}")
    return remaining


def _undecodable_flagfile(argv) -> str:
    """The --flagfile that does not decode (absl's error does not say which)."""
    for arg in argv[1:]:
        if arg.startswith(("--flagfile=", "-flagfile=")):
            path = arg.split("=", 1)[1]
            try:
                with open(path, encoding="utf-8") as handle:
                    handle.read()
            except UnicodeDecodeError:
                return f"--flagfile={path}"
            except OSError:
                continue
    return "a --flagfile (or one it includes)"


def _main(argv):
    console.quiet()
    config = flags_lib.config_from_flags()
    problem = flags_lib.first_problem(config)
    if problem:
        _fail(f"error: {problem}")
    try:
        console.import_tensorflow()
        # heavy imports only once the flags are known to be good
        from rmwnet_tf import checkpointing, train

        checkpointing.SECOND_INTERRUPT_EXITS = True  # a second Ctrl-C stops at once, mid-step

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
    final, selected = results.get("final") or {}, results.get("selected") or {}
    accuracy = final.get("test/accuracy")
    if accuracy is not None:
        if selected.get("test/accuracy") is not None:
            exported = ": export_selected/" if results.get("config", {}).get("export", True) else ""
            parts.append(f"test accuracy {accuracy:.4f} (last epoch), {selected['test/accuracy']:.4f} (epoch "
                         f"{selected['epoch']}, selected by meta-set accuracy, no clean labels used{exported})")
        else:
            parts.append(f"test accuracy {accuracy:.4f} (last epoch; no selected epoch: no meta set held out)")
    auc = final.get("detection/auc")
    if auc is not None:
        parts.append(f"noisy-label detection AUC {auc:.4f} (final weights, whole training set)")
    return "  ".join(parts)


def main():
    logging.set_verbosity(logging.INFO)
    # --helpshort lists the main module's key flags: make the run's flags those.
    for name in (*flags_lib.flag_names(), "preset"):
        FLAGS.register_key_flag_for_module(sys.argv[0], FLAGS[name])
    app.run(_main, flags_parser=parse_flags)
