"""One evaluation pass: every number a run reports about its model, under its final name.

`evaluate(model, data)` runs the classifier in inference mode (no augmentation, BatchNorm
moving statistics) over the test set, every training sample and the meta set, and returns

- `metrics`: one flat dict of scalars keyed by the names TensorBoard, history.json, the console
  and results.json all use (`test/accuracy`, `detection/auc`, `fit/noisy_memorised`, ...);
- `samples`: per-training-sample arrays (source index, given label, prediction, loss, weight,
  class probabilities) for sample_scores.csv, pred_probs.npy and the pictures.

Two per-sample losses, because they answer two questions. `loss` is the CE for every method:
the small-loss rule's score (`detection/auc_loss`), `test/loss`, sample_scores.csv's column, the
same number whichever method trained the classifier. `train_loss` is the loss the method's
classifier minimises (`MetaWeightModel.train_loss_fn`), the weighting net's input in training:
so `weight` = W(train_loss), and every weight figure (`weights/*`, `detection/auc`, the W(loss)
curve over its histogram) reads W where training reads it. The two are the same array for a CE
method; for `rmnwnet_gce` W sees GCE. Both are decreasing functions of p_y, so rank statistics
against either (`weights/loss_spearman`, the AUC mirror below) agree.

It is the only producer of these numbers: the train step reports only its running means
(`train/*`, `meta/loss`), so nothing has to leave the compiled step per sample. Because every
evaluated number comes from one model at one point of training, they are comparable across
epochs and methods; the paper's detection AUC (Table 3) is the best over training of this same
per-epoch figure.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from rmwnet_tf import data as data_lib
from rmwnet_tf import losses as losses_lib
from rmwnet_tf import metrics as metrics_lib


@dataclasses.dataclass
class Evaluation:
    metrics: dict  # final name -> float (absent when undefined, e.g. no clean labels)
    samples: dict  # per training sample, in data.train_indices order: index, given, clean and
    #                noisy (data.is_noisy; both None without clean labels), predicted, loss (CE),
    #                train_loss (the weighting net's input), weight, probs [N, K]


def predict_fn(model):
    """One compiled inference function per model, shared by the three passes: probabilities,
    the CE and the method's training loss (the same tensor for a CE method)."""
    is_ce = model.spec.train_loss == "ce"

    @tf.function
    def predict(images, labels):
        logits = model.classifier(images, training=False)
        loss = losses_lib.cross_entropy(labels, logits)
        return tf.nn.softmax(logits), loss, loss if is_ce else model.train_loss_fn(labels, logits)

    return predict


def inference_pass(predict, dataset) -> dict:
    """`predict` (from `predict_fn`) over a dataset of {"image", "label"} batches, concatenated:
    probs, loss (CE), train_loss, label. The one loop behind every evaluation and the Python
    API's per-sample scores (api/ranking.py); empty arrays for an empty dataset."""
    parts = {"probs": [], "loss": [], "train_loss": [], "label": []}
    for batch in dataset:
        probs, loss, train_loss = predict(batch["image"], batch["label"])
        parts["probs"].append(probs.numpy())
        parts["loss"].append(loss.numpy())
        parts["train_loss"].append(train_loss.numpy())
        parts["label"].append(batch["label"].numpy())
    if not parts["label"]:
        return {key: np.zeros((0,)) for key in parts}
    return {key: np.concatenate(value) for key, value in parts.items()}


def _rate(mask, where) -> float | None:
    """Share of `where` that also satisfies `mask`; None when `where` is empty."""
    return float(mask[where].mean()) if where.any() else None


def spearman(a, b) -> float | None:
    """Spearman's rank correlation (average ranks for ties); None when either is constant."""
    ra, rb = metrics_lib.average_ranks(np.asarray(a)), metrics_lib.average_ranks(np.asarray(b))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    return float((ra * rb).sum() / denominator) if denominator > 0 else None


def heldout_predictions(model, data: data_lib.NoisyData, *, batch_size: int, predict=None) -> dict | None:
    """The classifier's probabilities on the training fold --holdout_folds left out (None without
    one): {"index": source indices, "probs": [N_fold, K]}, out of sample for cleanlab."""
    if not len(data.heldout_indices):
        return None
    heldout = inference_pass(predict or predict_fn(model), data_lib.heldout_eval_dataset(data, batch_size=batch_size))
    return {"index": data.heldout_indices, "probs": heldout["probs"]}


def evaluate(model, data: data_lib.NoisyData, *, batch_size: int, predict=None) -> Evaluation:
    """Metrics and per-sample arrays of `model` (a MetaWeightModel) on `data`.

    `predict` may be a function returned by `predict_fn(model)` to reuse its compiled graph
    across calls (the training loop keeps one).
    """
    predict = predict or predict_fn(model)
    metrics: dict = {}

    # ---- test set: what the user cares about
    test = inference_pass(predict, data_lib.test_dataset(data, batch_size=batch_size))
    metrics["test/accuracy"] = float((test["probs"].argmax(-1) == test["label"]).mean())
    metrics["test/loss"] = float(test["loss"].mean())

    # ---- training set, un-augmented: weights, detection and what the network fits
    train = inference_pass(predict, data_lib.train_eval_dataset(data, batch_size=batch_size))
    index = data.train_indices
    given, predicted, loss = train["label"], train["probs"].argmax(-1), train["loss"]
    weight = model.weight_function(train["train_loss"])  # W reads what it reads in training
    samples = dict(index=index, given=given, predicted=predicted, loss=loss, train_loss=train["train_loss"],
                   weight=weight, probs=train["probs"], clean=None, noisy=None)
    metrics["fit/given_accuracy"] = float((predicted == given).mean())
    if model.vnet is not None:
        metrics["weights/mean"] = float(weight.mean())
        # Effective sample size of the normalised weights over the training set, as a fraction
        # of it: (sum w)^2 / (N sum w^2). Near 1: every sample counts; a W that collapsed onto a
        # few samples (what preceded every divergence at v2) drives it towards 0.
        square_sum = float(np.square(weight, dtype=np.float64).sum())
        if square_sum > 0:
            metrics["weights/ess_fraction"] = float(weight.sum(dtype=np.float64) ** 2 / (len(weight) * square_sum))
        rho = spearman(weight, loss)
        if rho is not None:
            metrics["weights/loss_spearman"] = rho
    if data.clean_labels is not None:
        clean, noisy = data.clean_labels[index], data.is_noisy[index]
        samples["clean"], samples["noisy"] = clean, noisy
        # The three rates the memorisation regime is read from: a network that fits its wrong
        # labels (memorised) instead of predicting the true class (corrected).
        for name, value in (
            ("fit/clean_fitted", _rate(predicted == given, ~noisy)),
            ("fit/noisy_memorised", _rate(predicted == given, noisy)),
            ("fit/noisy_corrected", _rate(predicted == clean, noisy)),
        ):
            if value is not None:
                metrics[name] = value
        # AUC of a "this label is clean" score: the learned weight, and the small-loss rule
        # (-loss, CE for every method) that any weighting must beat to add value. W depends on
        # the training loss alone, a decreasing function of p_y as the CE is, so detection/auc
        # is detection/auc_loss or one minus it: the Spearman sign says which.
        for name, score in (("detection/auc", weight if model.vnet is not None else None),
                            ("detection/auc_loss", -loss)):
            auc = None if score is None else metrics_lib.detection_auc(score, noisy)
            if auc is not None:
                metrics[name] = auc
        if model.vnet is not None and noisy.any() and (~noisy).any():
            metrics["weights/clean_mean"] = float(weight[~noisy].mean())
            metrics["weights/noisy_mean"] = float(weight[noisy].mean())

    # ---- meta set, un-augmented, with its own (possibly noisy) labels: gold-free signals
    if len(data.meta_indices):
        meta = inference_pass(predict, data_lib.meta_eval_dataset(data, batch_size=batch_size))
        picked = np.take_along_axis(meta["probs"], meta["label"][:, None].astype(np.int64), -1)[:, 0]
        metrics["meta/accuracy"] = float((meta["probs"].argmax(-1) == meta["label"]).mean())
        # MAE of the paper: ||onehot(y) - softmax||_1 = 2 (1 - p_y).
        metrics["meta/mae"] = float((2.0 * (1.0 - picked)).mean())
    return Evaluation(metrics=metrics, samples=samples)
