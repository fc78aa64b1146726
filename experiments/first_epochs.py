"""The first epochs of one reproduction cell, to see whether it diverges (train CE rising).

    python experiments/first_epochs.py --setting=uniform40 --seed=1 --method=rmnwnet
    python experiments/first_epochs.py --setting=uniform40 --seed=1 --vnet_optimizer=sgd --vnet_lr=0.001

Why: protocol v2's uniform40/rmnwnet/seed1 cell diverged within its first epochs (BUILD_NOTES.md,
*RMNW-Net diverged at uniform 40%, seed 1*). A cell's first epochs run exactly as in the grid
(its Config from experiments.reproduction.cell_config; lr drops lie far later), so a few
epochs tell whether a seed or a VNet setting is stable, in about a minute. Prints one line:
(epoch, train CE, raw weight mean) per epoch. The run folder is a scratch one, overwritten.
"""

from __future__ import annotations

import dataclasses
import pathlib
import sys

from absl import app, flags

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

FLAGS = flags.FLAGS
flags.DEFINE_string("setting", "uniform40", "Reproduction setting.")
flags.DEFINE_integer("seed", 0, "Seed of the cell.")
flags.DEFINE_string("method", "rmnwnet", "Method of the cell.")
flags.DEFINE_integer("epochs", 6, "Epochs to run (before the protocol's first lr drop).", lower_bound=1)
flags.DEFINE_string("vnet_optimizer", None, "Override the protocol's VNet optimizer (sgd, adam).")
flags.DEFINE_float("vnet_lr", None, "Override the protocol's VNet lr.")
flags.DEFINE_string("jit_compile", "auto", "auto, true or false.")
flags.DEFINE_string("model_dir", "runs/first_epochs", "Scratch run folder (overwritten).")


def main(argv):
    del argv
    from experiments.reproduction import protocol as protocol_lib
    from rmwnet_tf import train

    setting = protocol_lib.parse_settings(FLAGS.setting)[0]
    cell = protocol_lib.grid([setting], [FLAGS.method], [FLAGS.seed])[0]
    config = protocol_lib.cell_config(cell, protocol_lib.PROTOCOL, "runs/unused")
    overrides = {k: getattr(FLAGS, k) for k in ("vnet_optimizer", "vnet_lr") if getattr(FLAGS, k) is not None}
    config = dataclasses.replace(config, epochs=FLAGS.epochs, eval_every=FLAGS.epochs, model_dir=FLAGS.model_dir,
                                 overwrite=True, suspects=0, export=False, jit_compile=FLAGS.jit_compile, **overrides)
    results = train.run(config)
    print(f"{FLAGS.setting} {FLAGS.method} seed {FLAGS.seed} vnet {config.vnet_optimizer} {config.vnet_lr:g}: "
          + " ".join(f"({row['epoch']}, {row['train/loss']:.2f}, {row.get('train/weight_mean', 1.0):.3f})"
                     for row in results["history"]))
    return 0


if __name__ == "__main__":
    app.run(main)
