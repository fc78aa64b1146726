"""Which training samples does each meta objective ask to up-weight? A direct measurement.

    python experiments/meta_gradient_direction.py --setting=uniform40 --seed=0 \
        --epochs=1,4,12,24,52,60,100

Why. In the reproduction (protocol v2) MW-Net* and MNW-Net learned a weighting W(loss) that
*increases* with the loss (Spearman rho = +1, detection AUC 0.38) while RMNW-Net learned the
decreasing one (rho = -1, AUC 0.80). All three start from the same VNet (its random init is
increasing for seed 0), so either the CE meta objective really asks for high-loss samples in
this regime, or its VNet just never moved far enough to turn round. This script measures the
ask itself, independent of any VNet or its optimizer.

What. A Base classifier is trained with the protocol (same data, same schedule) and, at each
listed epoch, for a number of (train batch, meta batch) pairs drawn like the ones training
sees, the per-sample meta-gradient signal of the virtual step is computed for four meta
objectives: CE or MAE on the clean or the noisy meta labels. With uniform weights 1/n,

    w_hat = w - lr * mean_i grad l_i(w),   G = grad L_meta(w_hat),   s_i = G . grad l_i(w),

and dL_meta/d eps_i = -lr * s_i: the meta objective asks to up-weight sample i iff s_i is above
the batch's weighted mean (the weights are normalised per batch). Reported per objective:
Spearman(s, loss) over the pooled samples (`rho`; > 0: it asks for an increasing W, as MW-Net*
learned), the correlation of s and the loss after centring both per batch (`r_c`, the part a
VNet gradient linear in s can follow), and AUC(s; clean vs noisy) (> 0.5: it prefers the
correctly labelled samples). Train batches are drawn at random from the training set and
augmented like training; the meta batch is the same images for the four objectives.
"""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np
from absl import app, flags

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

FLAGS = flags.FLAGS
flags.DEFINE_string("setting", "uniform40", "Reproduction setting (noise type and rate).")
flags.DEFINE_integer("seed", 0, "Seed (data split, noise, init) as in the grid.")
flags.DEFINE_list("epochs", ["1", "4", "12", "24", "52", "60", "100"], "Measure after these epochs.")
flags.DEFINE_integer("pairs", 10, "(train batch, meta batch) pairs per measurement.")
flags.DEFINE_string("out", "", "Also write the table as JSON here.")

OBJECTIVES = (("ce", "clean"), ("ce", "noisy"), ("mae", "clean"), ("mae", "noisy"))
NAMES = {("ce", "clean"): "MW-Net* (CE, clean)", ("ce", "noisy"): "MNW-Net (CE, noisy)",
         ("mae", "clean"): "MAE, clean", ("mae", "noisy"): "RMNW-Net (MAE, noisy)"}


def per_sample_signal(model, train, meta, meta_labels, loss_name, lr):
    """Losses l_i and s_i = G . grad l_i(w) for one pair, uniform virtual-step weights."""
    import tensorflow as tf

    from rmwnet_tf import losses as losses_lib

    classifier = model.classifier
    params = [tf.convert_to_tensor(v) for v in classifier.trainable_variables]
    frozen = [tf.convert_to_tensor(v) for v in classifier.non_trainable_variables]
    x, y = train["image"], train["label"]

    def train_losses(values):
        logits, _ = classifier.stateless_call(values, frozen, x, training=True)
        return losses_lib.cross_entropy(y, logits)

    with tf.GradientTape() as tape:
        tape.watch(params)
        losses = train_losses(params)
        mean_loss = tf.reduce_mean(losses)
    grads = tape.gradient(mean_loss, params)
    w_hat = [p - lr * g for p, g in zip(params, grads)]
    meta_fn = losses_lib.get_meta_loss(loss_name)
    with tf.GradientTape() as tape:
        tape.watch(w_hat)
        logits, _ = classifier.stateless_call(w_hat, frozen, meta["image"], training=True)
        meta_loss = tf.reduce_mean(meta_fn(meta_labels, logits))
    g_meta = tape.gradient(meta_loss, w_hat)
    with tf.autodiff.ForwardAccumulator(params, g_meta) as acc:
        jvp_losses = train_losses(params)
    return losses.numpy(), acc.jvp(jvp_losses).numpy()


def summarise(losses, signal, noisy) -> dict:
    """Pooled statistics of [pairs, n] arrays (one row per batch)."""
    from scipy import stats
    from sklearn import metrics as sk_metrics

    # The VNet's gradient is linear in s and, through the per-batch normalisation, sees s and
    # the loss relative to their batch: the correlation of the batch-centred values is the
    # part of the ask a W linear in the loss can follow (its sign: the slope asked for).
    centred_s = signal - signal.mean(axis=1, keepdims=True)
    centred_l = losses - losses.mean(axis=1, keepdims=True)
    return dict(
        spearman_signal_loss=float(stats.spearmanr(signal.ravel(), losses.ravel()).statistic),
        pearson_centred=float(np.corrcoef(centred_s.ravel(), centred_l.ravel())[0, 1]),
        auc_signal_clean=float(sk_metrics.roc_auc_score(~noisy.ravel(), signal.ravel())) if noisy.any() else None,
    )


def draw_batch(data, pool, labels, rng, size, config, key):
    """A batch of `size` samples of `pool` (indices into the source) with the given label table,
    augmented like training when the protocol augments."""
    import tensorflow as tf

    from rmwnet_tf.data import pipelines

    index = rng.choice(pool, size=size, replace=False)
    table = pipelines.cached_tensor(data, "x_train", lambda: data.source.x_train)
    if config.augment:
        pixels = pipelines.gather_crop_flip(table, index, key, pipelines.augment_pad(config.image_size))
    else:
        pixels = tf.gather(table, index)
    return index, {"image": pipelines.normalize(pixels, data.mean, data.std),
                   "label": tf.constant(labels[index], tf.int32)}


def main(argv):
    del argv
    from experiments.reproduction import protocol as protocol_lib
    from rmwnet_tf import train as train_lib
    from rmwnet_tf.data import pipelines

    setting = protocol_lib.parse_settings(FLAGS.setting)[0]
    cell = protocol_lib.grid([setting], ["base"], [FLAGS.seed])[0]
    config = protocol_lib.cell_config(cell, protocol_lib.PROTOCOL, "/tmp/unused")
    # Base on the meta methods' training set (the meta set held out, as in the grid).
    data = train_lib.load_data(config)
    assert config.hold_out_meta and data.clean_labels is not None
    steps_per_epoch = len(data.train_indices) // config.batch_size
    model = train_lib.build_model(config, data, steps_per_epoch, jit=False)
    schedule = train_lib.learning_rate(config, steps_per_epoch)
    label_tables = {"clean": data.clean_labels, "noisy": data.given_labels}
    rng = np.random.default_rng(1000 + FLAGS.seed)

    epochs = sorted(int(e) for e in FLAGS.epochs)
    rows = []
    for epoch in range(1, epochs[-1] + 1):
        model.fit(train_lib.epoch_dataset(config, data, epoch - 1, steps_per_epoch), verbose=0)
        if epoch not in epochs:
            continue
        step = epoch * steps_per_epoch
        lr = float(schedule(step)) if callable(schedule) else float(schedule)
        pooled = {key: ([], [], []) for key in OBJECTIVES}
        for pair in range(FLAGS.pairs):
            key = pipelines.stream_key(FLAGS.seed, 99, epoch, pair)
            index, train = draw_batch(data, data.train_indices, data.given_labels, rng, config.batch_size,
                                      config, key)
            noisy = data.given_labels[index] != data.clean_labels[index]
            meta_index = rng.choice(data.meta_indices, size=config.meta_batch_size, replace=False)
            for loss_name, kind in OBJECTIVES:
                _, meta = draw_batch(data, meta_index, label_tables[kind], np.random.default_rng(pair),
                                     config.meta_batch_size, config, pipelines.stream_key(FLAGS.seed, 98, epoch, pair))
                losses, signal = per_sample_signal(model, train, meta, meta["label"], loss_name, lr)
                for part, value in zip(pooled[(loss_name, kind)], (losses, signal, noisy)):
                    part.append(value)
        row = dict(epoch=epoch, lr=lr)
        for key in OBJECTIVES:
            row[key[0] + "_" + key[1]] = summarise(*(np.stack(part) for part in pooled[key]))
        rows.append(row)
        print(_format_row(row), flush=True)
    if FLAGS.out:
        pathlib.Path(FLAGS.out).write_text(json.dumps(dict(setting=FLAGS.setting, seed=FLAGS.seed,
                                                           pairs=FLAGS.pairs, rows=rows), indent=1))
    return 0


def _format_row(row) -> str:
    parts = [f"epoch {row['epoch']:3d} lr {row['lr']:.4g}"]
    for key in OBJECTIVES:
        cell = row[key[0] + "_" + key[1]]
        parts.append(f"{NAMES[key]}: rho {cell['spearman_signal_loss']:+.2f} r_c {cell['pearson_centred']:+.2f} "
                     f"AUC {cell['auc_signal_clean']:.2f}")
    return " | ".join(parts)


if __name__ == "__main__":
    app.run(main)
