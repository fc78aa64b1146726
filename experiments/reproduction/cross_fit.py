"""Cleanlab's out-of-sample probabilities for one Base cell of a protocol, then the cleaning comparison.

    python -m experiments.reproduction.cross_fit                 # protocol v3, uniform 40%, seed 0
    python -m experiments.reproduction.cross_fit --protocol=v4   # protocol v4 (results/cleaning_v4.md)

cleanlab recommends out-of-sample probabilities: each training sample predicted by a model that
never trained on it. Here that is the Base cell's own run repeated FOLDS times with
`--holdout_folds=FOLDS --holdout_fold=j` (every other setting the cell's: same noisy labels, meta
split held out, schedule), each trained on the other folds and predicting fold j. The runs go to
`<runs_dir>/<setting>/base_folds/seed<seed>/fold<j>/`, one at a time (an interrupted one resumes);
then `experiments/cleaning_comparison.py` compares our RMNW-Net ranking, the small-loss rule,
cleanlab on in-sample probabilities and cleanlab on these, and writes `<out_dir>/cleaning_<family>.md`
(cleaning_v3.md, cleaning_v4.md), which the protocol's report shows. Their cost is reported in Base runs (optimizer steps).
"""

from __future__ import annotations

import dataclasses
import pathlib
import subprocess
import sys
from typing import Callable, Sequence

from absl import logging

from experiments.reproduction.cells import inspect_cell
from experiments.reproduction.compact import CLEANING_PROTOCOLS, compact_run
from experiments.reproduction.protocol import PROTOCOLS, SETTINGS_BY_NAME, Cell, cell_config
from rmwnet_tf.config import Config

FOLDS = 4
SETTING = "uniform40"


def compared_protocols() -> list[str]:
    """The protocols whose cells compact.py keeps the comparison's inputs for."""
    return [name for name, p in PROTOCOLS.items() if p.family and p.family.name in CLEANING_PROTOCOLS]


def folds_done(protocol_name: str, seed: int) -> bool:
    return all(inspect_cell(config).status == "done" for config in fold_configs(protocol_name, seed))


def fold_configs(protocol_name: str, seed: int) -> list[Config]:
    runs_dir = PROTOCOLS[protocol_name].runs_dir
    base = cell_config(Cell(SETTINGS_BY_NAME[SETTING], "base", seed), PROTOCOLS[protocol_name], runs_dir)
    folder = pathlib.Path(runs_dir) / SETTING / "base_folds" / f"seed{seed}"
    return [dataclasses.replace(base, holdout_folds=FOLDS, holdout_fold=j, model_dir=str(folder / f"fold{j}"))
            for j in range(FOLDS)]


def comparison_command(protocol_name: str, seed: int) -> list[str]:
    runs_dir, out_dir = PROTOCOLS[protocol_name].runs_dir, PROTOCOLS[protocol_name].out_dir
    cell = pathlib.Path(runs_dir) / SETTING
    return [sys.executable, "experiments/cleaning_comparison.py", f"--meta_run={cell / 'rmnwnet' / f'seed{seed}'}",
            f"--base_run={cell / 'base' / f'seed{seed}'}",
            f"--heldout_runs={','.join(c.model_dir for c in fold_configs(protocol_name, seed))}",
            f"--markdown_out={pathlib.Path(out_dir) / PROTOCOLS[protocol_name].cleaning_file}"]


def run_folds(configs: Sequence[Config], run_fn: Callable[[Config], dict] | None = None) -> list[str]:
    """Train the folds not finished yet, one at a time; return the folders trained now."""
    trained = []
    for config in configs:
        if inspect_cell(config).status == "done":
            continue
        if run_fn is None:
            from rmwnet_tf import train  # TensorFlow only when something trains

            run_fn = train.run
        print(f"fold {config.holdout_fold + 1}/{len(configs)}: {config.model_dir}", flush=True)
        run_fn(config)
        compact_run(config.model_dir)  # keeps the held-out probabilities the comparison reads
        trained.append(config.model_dir)
    return trained


def main(argv: Sequence[str]) -> int:
    options = dict(a.removeprefix("--").split("=", 1) for a in argv if a.startswith("--") and "=" in a)
    unknown = [a for a in argv if not (a.startswith("--") and "=" in a)] + sorted(set(options) - {"protocol", "seed"})
    name, seed = options.get("protocol", "v3"), options.get("seed", "0")
    compared = compared_protocols()
    if unknown or name not in compared or not seed.isdigit():
        print(f"error: expected --protocol=<one of {', '.join(compared)}> and --seed=<non-negative integer>",
              file=sys.stderr)
        return 2
    logging.set_verbosity(logging.INFO)  # train.run's epoch lines: progress on a half-hour job
    run_folds(fold_configs(name, int(seed)))
    return subprocess.run(comparison_command(name, int(seed))).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
