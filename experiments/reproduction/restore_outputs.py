"""A finished run's per-sample outputs again, from its final checkpoint, when compaction dropped a field
an analysis now reads.

    python -m experiments.reproduction.restore_outputs --run=results/runs_v4/uniform40/rmnwnet/seed0

Why: v4's uniform40/rmnwnet/seed0 and mwnet/seed0 were continued from the weighting-net rule's
10-epoch runs, whose samples.npz came along and which compaction then re-read instead of the
finished run's own outputs (fixed in compact.compact_run and cells.continue_earlier_run): they
kept epoch 10's per-sample data, and RMNW-Net's no probabilities, which the cleaning comparison
needs. Their final checkpoints (epoch 30, the state of each run's own final evaluation) are still
on disk, so the final evaluation is repeated with the training code's own evaluation
(`evaluate.evaluate`), written as the tool writes it (`outputs.write_sample_outputs`) and
compacted again (`compact.compact_run`).
Nothing is written unless the repeat is the same model: its final test accuracy, detection AUCs,
memorised share and mean weight must equal results.json's exactly. (The kept samples.npz cannot be
the reference: it is the earlier run's.)
"""

from __future__ import annotations

import json
import pathlib
import sys
from typing import Sequence

USAGE = "expected --run=<finished run folder> [--root=<dir>]"


def repeat_final_evaluation(run: pathlib.Path, root: str | None = None):
    from experiments.reproduction import meta_signal
    from rmwnet_tf import evaluate

    state = meta_signal.load_state(run, root=root)
    return evaluate.evaluate(state.model, state.data, batch_size=state.config.batch_size)


CHECKED = ("test/accuracy", "detection/auc", "detection/auc_loss", "fit/noisy_memorised", "weights/mean")


def mismatch(run: pathlib.Path, evaluation) -> str | None:
    """Why the repeated evaluation is not the run's final one, or None when it is: every final
    metric computed from the per-sample arrays must come out exactly as results.json has it."""
    final = json.loads((run / "results.json").read_text())["final"]
    differ = [f"{key} {evaluation.metrics.get(key)} against {final[key]}" for key in CHECKED
              if key in final and evaluation.metrics.get(key) != final[key]]
    return "; ".join(differ) or None


def restore(run, root: str | None = None) -> pathlib.Path:
    from experiments.reproduction import compact
    from rmwnet_tf import outputs
    from rmwnet_tf.errors import UserError

    run = pathlib.Path(run)
    if not (run / "results.json").is_file():
        raise UserError(f"--run={run}: not a finished run (no results.json)")
    evaluation = repeat_final_evaluation(run, root)
    why = mismatch(run, evaluation)
    if why is not None:
        raise UserError(f"--run={run}: its newest checkpoint is not the state of its final evaluation ({why})")
    outputs.write_sample_outputs(run, evaluation.samples)
    return compact.compact_run(run)


def main(argv: Sequence[str]) -> int:
    options = dict(a.removeprefix("--").split("=", 1) for a in argv if a.startswith("--") and "=" in a)
    if "run" not in options or set(options) - {"run", "root"} or len(options) != len(argv):
        print(f"error: {USAGE}", file=sys.stderr)
        return 2
    from rmwnet_tf.errors import one_line, want_traceback

    try:
        path = restore(options["run"], options.get("root"))
    except Exception as error:
        if want_traceback():
            raise
        print(one_line(error), file=sys.stderr)
        return 2
    from experiments.reproduction import compact

    print(f"{path}: {', '.join(compact._stored_names(pathlib.Path(options['run'])))}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
