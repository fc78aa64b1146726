"""How hard the meta step pushes the weighting net, with CE and with GCE as the training loss.

    python -m experiments.reproduction.meta_signal --run=results/runs_v4/uniform40/rmnwnet_gce/seed0 \
        [--batches=10] [--out=table.md] [--checkpoint=<prefix>] [--at=start] [--root=<dir>]

Why: in protocol v4 `rmnwnet_gce`'s weighting net W never learned (W noisy/clean stayed ~1.08,
Spearman(W, loss) +1 for 30 epochs) while `rmnwnet`'s turned by epoch 4, with the same
weighting-net optimizer and meta loss. The meta-gradient is (rmwnet_tf/lookahead.py)

    dL_meta/dTheta = -lr * sum_i s_i dW~_i/dTheta,   s_i = G . grad l_i(w),

and with GCE grad l_i = p_y^q grad CE_i (a wrong label, small p_y, gives a damped s_i), while
W's input lives in [0, 1/q] instead of CE's [0, ~5]. This measures, rather than assumes, how much
weaker that makes the push: at one state of a run (classifier, weighting net, lr), on the run's
next `--batches` train batches and as many meta batches, it computes s with the production
look-ahead (`exact`) for the training loss CE and for GCE (same classifier, same meta loss: the
run's), the Theta gradient each implies through the weighting net as it is, and reports per
training loss:

- the loss's 5th/50th/95th percentiles over clean and over wrongly labelled samples (W's input);
- mean s_i over clean and over noisy samples (s > 0: up-weighting the sample lowers L_meta);
- |dL_meta/dTheta|, the global norm of the Theta gradient averaged over the batches (no weight decay);
- the gap W(noisy median loss) - W(clean median loss) now, and its change in one plain SGD step
  of the run's weighting-net lr along -gradient (-vnet_lr * grad_Theta(gap) . gradient; the
  run's momentum 0.9 multiplies a steady push by up to 10): negative pushes noisy weights below
  clean ones;

and the GCE/CE ratio of each signal. (With one G, s_gce_i = p_y^q s_ce_i exactly; but G is taken at
each loss's own virtual weights, so that holds only as the classifier's lr goes to 0.)

The state: by default the run's newest checkpoint in <run>/checkpoints, which for a finished run
is the END of training (lr decayed 100x), not the first epochs where the weighting net failed to
turn; `--checkpoint=<prefix>` picks another saved state, and `--at=start` rebuilds epoch 0 by
the training code's own path (`train.build_model` after `keras.utils.set_random_seed(seed)`,
which seeds the weighting net from seed + 1, then `init_from.load_initial_weights` with the
config's --init_from / --init_head). Batches are the run's own (`train.epoch_dataset`) from the
state's position on. Relative paths in config.json (data_dir, init_from, ...) are read against
`--root` (default: the working directory), the folder the run was started in. Reads files only.
"""

from __future__ import annotations

import dataclasses
import pathlib
import sys
from typing import NamedTuple, Sequence

import numpy as np

USAGE = ("expected --run=<run folder> [--batches=<positive integer>] [--out=<file.md>] "
         "[--checkpoint=<checkpoint prefix>] [--at=start] [--root=<dir>]")
OPTIONS = ("run", "batches", "out", "checkpoint", "at", "root")
PATH_FIELDS = ("data_dir", "tfds_data_dir", "init_from", "noisy_labels")  # relative to where the run was started
TRAIN_LOSSES = ("ce", "gce")
PERCENTILES = (5, 50, 95)


class State(NamedTuple):
    config: object  # rmwnet_tf.config.Config
    data: object  # rmwnet_tf.data.NoisyData
    model: object  # rmwnet_tf.meta_model.MetaWeightModel
    epoch: int  # completed epochs at this state
    step: int  # step inside the next epoch
    where: str  # for the report


class Signal(NamedTuple):
    """One batch's look-ahead under one training loss."""

    losses: np.ndarray  # [n] the training loss per sample (W's input)
    s: np.ndarray  # [n] s_i = G . grad l_i(w)
    gradient: list  # dL_meta/dTheta, one array per weighting-net variable


# ------------------------------------------------------------------------------------ the state
def read_config(run: pathlib.Path, root: str | None):
    from rmwnet_tf import outputs
    from rmwnet_tf.config import Config, upgrade_saved
    from rmwnet_tf.errors import UserError

    saved = upgrade_saved(outputs.read_json(run / "config.json"))
    if saved is None:
        raise UserError(f"--run={run}: no config.json there (not a run folder of this tool)")
    fields = {f.name for f in dataclasses.fields(Config)}
    config = Config(**{k: v for k, v in saved.items() if k in fields})
    if root:
        config = dataclasses.replace(config, **{name: str(pathlib.Path(root) / getattr(config, name))
                                                for name in PATH_FIELDS if getattr(config, name)
                                                and not pathlib.Path(getattr(config, name)).is_absolute()})
    return config, saved


def load_state(run, *, root=None, checkpoint=None, at_start=False) -> State:
    """The run's classifier, weighting net and data, at a checkpoint or at the start of training."""
    import keras

    from rmwnet_tf import checkpointing, fingerprints, init_from, train
    from rmwnet_tf import data as data_lib
    from rmwnet_tf.errors import UserError
    from rmwnet_tf.methods import get_method

    run = pathlib.Path(run)
    if not run.is_dir():
        raise UserError(f"--run={run}: no such folder")
    config, saved = read_config(run, root)
    if not get_method(config.method).uses_meta:
        raise UserError(f"--run={run}: method {config.method!r} has no weighting net")
    if config.caches_features:
        raise UserError(f"--run={run}: a head-only run on cached features is not supported here")
    keras.utils.set_random_seed(config.seed)  # as train.py: the weighting net's init at --at=start
    data = train.load_data(config)
    if data.clean_labels is None:
        raise UserError(f"--run={run}: its data has no clean labels, so clean and noisy samples cannot be told apart")
    fingerprints.check(saved.get(fingerprints.KEY), fingerprints.of_inputs(config, data), config)
    steps = data_lib.steps_per_epoch(data, config.batch_size)
    model = train.build_model(config, data, steps, jit=False)
    if at_start:
        loaded = (init_from.load_initial_weights(model.image_classifier, config.init_from, keep_head=config.init_head)
                  if config.init_from else "the seeded initialisation")
        return State(config, data, model, 0, 0, f"start of training (classifier: {loaded}; weighting net: seeded init)")
    prefix = checkpoint or next(iter(checkpointing.candidates(run / "checkpoints")), None)
    if prefix is None:
        raise UserError(f"--run={run}: no checkpoint in {run / 'checkpoints'}; pass --checkpoint= or --at=start")
    epoch_var = keras.Variable(0, dtype="int64", trainable=False, name="epoch")
    try:
        train.checkpoint_for(model, epoch_var).restore(str(prefix)).assert_existing_objects_matched()
    except Exception as error:  # TF's errors for a missing or foreign checkpoint are of many kinds
        raise UserError(f"--checkpoint={prefix}: not a checkpoint of this run ({type(error).__name__})") from None
    epoch = int(epoch_var.numpy())
    step = int(model.optimizer.iterations.numpy()) - epoch * steps
    return State(config, data, model, epoch, step, f"{prefix} (epoch {epoch} done, step {step})")


def run_batches(state: State, count: int) -> list[tuple[dict, dict, np.ndarray]]:
    """The run's next `count` (train, meta, is_noisy) batches from the state's position.

    The run's own pipeline (`train.epoch_dataset`) on a copy of the data whose label table holds
    each sample's index: the batch's "label" then says which samples it drew."""
    import tensorflow as tf

    from rmwnet_tf import train
    from rmwnet_tf import data as data_lib

    data, config = state.data, state.config
    indexed = dataclasses.replace(data, given_labels=np.arange(len(data.given_labels), dtype=np.int32))
    steps = data_lib.steps_per_epoch(data, config.batch_size)
    found, epoch, step = [], state.epoch, state.step
    while len(found) < count:
        for batch in train.epoch_dataset(config, indexed, epoch, steps, step).take(count - len(found)):
            index = batch["train"]["label"].numpy()
            found.append(({"image": batch["train"]["image"], "label": tf.constant(data.given_labels[index])},
                          batch["meta"], data.is_noisy[index]))
        epoch, step = epoch + 1, 0
    return found


# ------------------------------------------------------------------------------------ the signals
def signal(model, train, meta, loss_name: str, step=None) -> Signal:
    """s and dL_meta/dTheta for one batch with `loss_name` as the training loss, by the production
    `exact` look-ahead; the classifier's BN moving statistics are put back afterwards."""
    from rmwnet_tf import lookahead
    from rmwnet_tf import losses as losses_lib

    context = dataclasses.replace(model.lookahead_context(), train_loss=losses_lib.TRAIN_LOSSES[loss_name])
    step = step or lookahead.step_for("exact", model.classifier)
    fixed = [v.numpy() for v in model.classifier.non_trainable_variables]
    ahead = step(context, train, meta)
    for variable, value in zip(model.classifier.non_trainable_variables, fixed):
        variable.assign(value)
    gradient = model.vnet_meta_gradient(ahead.forward.global_losses, ahead.s, context.lr)
    return Signal(np.asarray(ahead.forward.losses), np.asarray(ahead.s), [np.asarray(g) for g in gradient])


def summarise(model, signals: Sequence[Signal], noisy: np.ndarray, vnet_lr: float) -> dict:
    """One row of the table from a training loss's signals on every batch."""
    import tensorflow as tf

    losses = np.concatenate([s.losses for s in signals])
    s = np.concatenate([x.s for x in signals])
    gradient = [np.mean(parts, axis=0) for parts in zip(*(x.gradient for x in signals))]
    clean_median, noisy_median = np.median(losses[~noisy]), np.median(losses[noisy])
    with tf.GradientTape() as tape:
        w = model.raw_weights(tf.constant([noisy_median, clean_median], tf.float32))
        gap = w[0] - w[1]
    gap_gradient = tape.gradient(gap, model.vnet.trainable_variables)
    return {
        "loss_clean": np.percentile(losses[~noisy], PERCENTILES),
        "loss_noisy": np.percentile(losses[noisy], PERCENTILES),
        "s_clean": float(np.mean(s[~noisy])),
        "s_noisy": float(np.mean(s[noisy])),
        "grad_norm": float(np.sqrt(sum(np.sum(g.astype(np.float64) ** 2) for g in gradient))),
        "gap": float(gap),
        "gap_step": float(-vnet_lr * sum(np.sum(np.asarray(a, np.float64) * b)
                                         for a, b in zip(gap_gradient, gradient))),
    }


def measure(state: State, count: int) -> tuple[dict[str, dict], np.ndarray]:
    """({training loss: row}, is_noisy of the samples) over the run's next `count` batches, at this one state."""
    from rmwnet_tf import lookahead

    batches = run_batches(state, count)
    noisy = np.concatenate([b[2] for b in batches])
    step = lookahead.step_for("exact", state.model.classifier)
    rows = {name: summarise(state.model, [signal(state.model, t, m, name, step) for t, m, _ in batches], noisy,
                            state.config.vnet_lr)
            for name in TRAIN_LOSSES}
    return rows, noisy


# ------------------------------------------------------------------------------------ the report
COLUMNS = (
    ("s_clean", "mean s clean"),
    ("s_noisy", "mean s noisy"),
    ("grad_norm", "abs dL_meta/dTheta"),
    ("gap", "W gap now (noisy - clean median)"),
    ("gap_step", "W gap change per SGD step"),
)


def table(rows: dict[str, dict]) -> str:
    percentiles = "/".join(f"p{p}" for p in PERCENTILES)
    header = ["training loss", f"loss clean {percentiles}", f"loss noisy {percentiles}", *(n for _, n in COLUMNS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, row in rows.items():
        spread = ["/".join(f"{v:.3g}" for v in row[k]) for k in ("loss_clean", "loss_noisy")]
        lines.append("| " + " | ".join([name.upper(), *spread, *(f"{row[k]:.3g}" for k, _ in COLUMNS)]) + " |")
    ce, gce = rows["ce"], rows["gce"]
    ratios = [f"{gce[k] / ce[k]:.3g}" if ce[k] else "-" for k, _ in COLUMNS]
    medians = [f"p50 {gce[k][1] / ce[k][1]:.3g}" if ce[k][1] else "-" for k in ("loss_clean", "loss_noisy")]
    lines.append("| " + " | ".join(["GCE/CE", *medians, *ratios]) + " |")
    return "\n".join(lines) + "\n"


def report(state: State, rows: dict[str, dict], count: int, noisy: np.ndarray) -> str:
    config = state.config
    lr = float(np.asarray(state.model.optimizer.learning_rate))
    return (f"Meta signal of {config.model_dir} ({config.method}, meta loss {state.model.spec.meta_loss}) at "
            f"{state.where}: classifier lr {lr:g}, weighting-net lr {config.vnet_lr:g}; {count} train and meta "
            f"batches, {len(noisy)} samples of which {int(noisy.sum())} wrongly labelled.\n\n" + table(rows))


def parse(argv: Sequence[str]) -> dict | None:
    options = dict(a.removeprefix("--").split("=", 1) for a in argv if a.startswith("--") and "=" in a)
    bad = [a for a in argv if not (a.startswith("--") and "=" in a)] + sorted(set(options) - set(OPTIONS))
    batches = options.get("batches", "10")
    if bad or "run" not in options or not batches.isdigit() or int(batches) < 1:
        return None
    if options.get("at", "start") != "start" or ("at" in options and "checkpoint" in options):
        return None
    return dict(options, batches=int(batches))


def main(argv: Sequence[str]) -> int:
    options = parse(argv)
    if options is None:
        print(f"error: {USAGE}", file=sys.stderr)
        return 2
    if not pathlib.Path(options["run"]).is_dir():
        print(f"error: --run={options['run']}: no such folder", file=sys.stderr)
        return 2
    from rmwnet_tf.errors import one_line, want_traceback

    try:
        state = load_state(options["run"], root=options.get("root"), checkpoint=options.get("checkpoint"),
                           at_start="at" in options)
        rows, noisy = measure(state, options["batches"])
    except Exception as error:
        if want_traceback():
            raise
        print(one_line(error), file=sys.stderr)
        return 2
    text = report(state, rows, options["batches"], noisy)
    print(text, end="")
    if options.get("out"):
        pathlib.Path(options["out"]).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
