"""Keras callbacks that watch a MetaWeightModel train: per-sample records,
TensorBoard summaries, a one-line epoch report, and the sample-score CSV.

They only read what the model exposes (record_* variables, weight_function,
optimizer, fit logs) and never influence how a step is computed.

Order in `fit(callbacks=[...])`: SampleRecorder, TensorBoardSummaries,
EpochSummaryLine. TensorBoardSummaries adds test/*, detection/* and lr to the
epoch logs, so EpochSummaryLine and Keras' History (appended by fit after all
user callbacks) see them only if they come after it.
"""

from __future__ import annotations

import os
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from rmwnet_tf import figures
from rmwnet_tf.metrics import detection_auc, suspicion_ranks

# fit log key -> TensorBoard tag. Validation data is the test set here, hence val_* -> test/*.
SCALAR_TAGS = {
    "train/loss": "train/loss",
    "train/weighted_loss": "train/weighted_loss",
    "train/accuracy": "train/accuracy",
    "meta/loss": "meta/loss",
    "weights/mean": "weights/mean",
    "val_accuracy": "test/accuracy",
    "val_loss": "test/loss",
}
HISTORY_KEYS = ("test/accuracy", "test/loss", "detection/auc", "detection/auc_loss")


def current_learning_rate(optimizer) -> float:
    """The classifier lr the next step will use.

    Keras 3's `optimizer.learning_rate` already evaluates a schedule at
    `optimizer.iterations`, so this works for constants and schedules alike.
    """
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


class SampleRecorder(keras.callbacks.Callback):
    """Per-sample raw weight and loss for the current epoch, indexed by source index.

    Why: the detection AUC and the weight histograms need every training
    sample's weight, which fit's logs (batch means) do not carry. After each
    train batch the three record variables are packed into one [3, B] float32
    tensor (indices bit-cast, so exact) and copied to host once.

    Arrays have length `num_samples` (the full source training set); entries
    not seen this epoch are NaN in `weights`/`losses` and False in `seen`.
    A sample seen twice in one epoch keeps its latest values.
    Needs fit's steps_per_execution == 1: otherwise on_train_batch_end runs
    once per execution and only the last of those batches is recorded.
    Not async-safe on purpose: the variables are overwritten by the next step.
    """

    def __init__(self, num_samples: int):
        super().__init__()
        self.num_samples = int(num_samples)
        self._reset()

    def _reset(self) -> None:
        self.weights = np.full(self.num_samples, np.nan, dtype=np.float32)
        self.losses = np.full(self.num_samples, np.nan, dtype=np.float32)
        self.seen = np.zeros(self.num_samples, dtype=bool)

    def on_train_begin(self, logs=None):
        missing = [n for n in ("record_weights", "record_losses", "record_indices") if not hasattr(self.model, n)]
        if missing:
            raise AttributeError(f"SampleRecorder needs model variables {missing} (see notes/CONTRACT.md)")
        if (getattr(self.model, "steps_per_execution", 1) or 1) > 1:
            logging.warning("SampleRecorder: steps_per_execution > 1, only the last batch of each execution "
                            "is recorded; detection metrics will cover a subset of the samples.")

    def on_epoch_begin(self, epoch, logs=None):
        self._reset()

    def on_train_batch_end(self, batch, logs=None):
        weights, losses, indices = self._fetch_last_batch()
        if indices.size and (indices.min() < 0 or indices.max() >= self.num_samples):
            raise IndexError(
                f"record_indices out of range [0, {self.num_samples}): min {indices.min()}, max {indices.max()}"
            )
        self.weights[indices] = weights
        self.losses[indices] = losses
        self.seen[indices] = True

    def _fetch_last_batch(self):
        model = self.model
        packed = tf.stack([
            tf.cast(tf.convert_to_tensor(model.record_weights), tf.float32),
            tf.cast(tf.convert_to_tensor(model.record_losses), tf.float32),
            tf.bitcast(tf.cast(tf.convert_to_tensor(model.record_indices), tf.int32), tf.float32),
        ]).numpy()
        return packed[0], packed[1], np.ascontiguousarray(packed[2]).view(np.int32)


class TensorBoardSummaries(keras.callbacks.Callback):
    """Epoch-level TensorBoard summaries, plus the detection metrics in `logs`.

    Writes to one event-file directory, `log_dir`, at step = epoch + 1 (the
    number of epochs completed):
      scalars    train/loss, train/weighted_loss, train/accuracy, meta/loss,
                 weights/mean, test/accuracy, test/loss (from val_*), lr,
                 detection/auc (weight as clean-score; needs is_noisy, not for
                 method base), detection/auc_loss (-loss as clean-score, the
                 small-loss criterion; needs is_noisy)
      histograms weights/all, and weights/clean, weights/noisy when is_noisy is known
      image      weights/curve: W(loss) over [0, max loss seen this epoch],
                 every `curve_every` epochs and at the last epoch (0 disables)
    Scalars missing from the logs (e.g. no validation this epoch) are skipped.
    Adds test/accuracy, test/loss, detection/auc, detection/auc_loss and lr to
    `logs` (when defined) and appends those four per epoch to `history`
    (None when undefined), ready for results.json.

    `is_noisy`: bool [num_samples] aligned with recorder indices, or None.
    """

    def __init__(self, log_dir: str, recorder: SampleRecorder, is_noisy=None, curve_every: int = 1,
                 curve_points: int = 200):
        super().__init__()
        self.log_dir = log_dir
        self.recorder = recorder
        self.is_noisy = None if is_noisy is None else np.asarray(is_noisy, dtype=bool).reshape(-1)
        if self.is_noisy is not None and self.is_noisy.size != recorder.num_samples:
            raise ValueError(f"is_noisy has {self.is_noisy.size} entries, recorder {recorder.num_samples}")
        self.curve_every = int(curve_every)
        self.curve_points = int(curve_points)
        self.history: list[dict] = []
        self._writer = None
        self._noted_skip = False

    # -- fit hooks -------------------------------------------------------------

    def on_train_begin(self, logs=None):
        self._open_writer()

    def _open_writer(self):
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        return self._writer

    def on_epoch_end(self, epoch, logs=None):
        logs = {} if logs is None else logs
        step = epoch + 1
        seen = self.recorder.seen
        if not seen.any():
            logging.warning("SampleRecorder saw no batch in epoch %d; is it in fit's callbacks?", step)
        results = {
            "test/accuracy": _maybe_float(logs.get("val_accuracy")),
            "test/loss": _maybe_float(logs.get("val_loss")),
            **self._detection_metrics(seen),
        }
        lr = current_learning_rate(self.model.optimizer)

        with self._open_writer().as_default(step=step):
            for key, tag in SCALAR_TAGS.items():
                if logs.get(key) is not None:
                    tf.summary.scalar(tag, float(logs[key]))
            tf.summary.scalar("lr", lr)
            for tag in ("detection/auc", "detection/auc_loss"):
                if results[tag] is not None:
                    tf.summary.scalar(tag, results[tag])
            self._write_weight_histograms(seen)
            if self._curve_due(epoch) and seen.any():
                tf.summary.image("weights/curve", self.weight_curve_image(step)[None], max_outputs=1)
        self._writer.flush()

        logs.update({k: v for k, v in results.items() if v is not None})
        logs["lr"] = lr
        self.history.append({"epoch": step, **results})

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        """Release the event file (call once training, including resumes, is over)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # -- pieces ------------------------------------------------------------------

    def _detection_metrics(self, seen: np.ndarray) -> dict:
        """AUCs over the samples seen this epoch; None when undefined."""
        metrics = {"detection/auc": None, "detection/auc_loss": None}
        method = getattr(self.model, "method", None)
        if (self.is_noisy is None or method == "base") and not self._noted_skip:
            reason = "no clean labels are known" if self.is_noisy is None else "method base has no learned weights"
            logging.info("detection/auc not logged: %s.", reason)
            self._noted_skip = True
        if self.is_noisy is None:
            return metrics
        weights, losses = self.recorder.weights, self.recorder.losses
        if method != "base":
            usable = seen & np.isfinite(weights)  # a diverged step must not crash training here
            metrics["detection/auc"] = detection_auc(weights[usable], self.is_noisy[usable])
        usable = seen & np.isfinite(losses)
        metrics["detection/auc_loss"] = detection_auc(-losses[usable], self.is_noisy[usable])
        return metrics

    def _write_weight_histograms(self, seen: np.ndarray) -> None:
        weights = self.recorder.weights
        usable = seen & np.isfinite(weights)
        if not usable.any():
            return
        tf.summary.histogram("weights/all", weights[usable])
        if self.is_noisy is None:
            return
        for tag, subset in (("weights/clean", usable & ~self.is_noisy), ("weights/noisy", usable & self.is_noisy)):
            if subset.any():
                tf.summary.histogram(tag, weights[subset])

    def _curve_due(self, epoch: int) -> bool:
        if self.curve_every <= 0:
            return False
        last_epoch = self.params.get("epochs") if self.params else None
        return (epoch + 1) % self.curve_every == 0 or epoch + 1 == last_epoch

    def weight_curve_image(self, step: int) -> np.ndarray:
        """W(loss) on [0, max loss seen] as uint8 [height, width, 3] (figures.CURVE_SIZE); bars: losses seen."""
        seen_losses = self.recorder.losses[self.recorder.seen]
        seen_losses = seen_losses[np.isfinite(seen_losses)]
        max_loss = float(seen_losses.max()) if seen_losses.size else 0.0
        if max_loss <= 0:
            max_loss = 1.0
        grid = np.linspace(0.0, max_loss, self.curve_points, dtype=np.float32)
        curve = np.asarray(self.model.weight_function(grid), dtype=np.float64).reshape(-1)
        return figures.to_rgb(figures.weight_curve_figure(grid, curve, title=f"W(loss), epoch {step}",
                                                          seen_losses=seen_losses))


class EpochSummaryLine(keras.callbacks.Callback):
    """One compact progress line per epoch, e.g.

    epoch 3/120  train/loss 1.234  test/accuracy 0.8123  detection/auc 0.912  lr 0.05  42.1 s  (1187 img/s)

    Fields absent from the logs are left out. Time is the whole epoch
    (training + validation); img/s counts training only (steps x batch size
    over the time up to the last train batch). Place it after
    TensorBoardSummaries, which adds test/* and detection/* to the logs.
    `batch_size` defaults to the length of model.record_indices (global batch).
    """

    FIELDS = (("train/loss", "{:.3f}"), ("test/accuracy", "{:.4f}"), ("detection/auc", "{:.3f}"))

    def __init__(self, total_epochs: int, print_fn=print, batch_size: int | None = None):
        super().__init__()
        self.total_epochs = int(total_epochs)
        self.print_fn = print_fn
        self.batch_size = batch_size
        self._epoch_start = self._train_end = None
        self._steps = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = self._train_end = time.perf_counter()
        self._steps = 0

    def on_train_batch_end(self, batch, logs=None):
        self._steps = batch + 1  # fit passes the index of the last step executed
        self._train_end = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.print_fn(self.format_line(epoch, logs or {}))

    def format_line(self, epoch: int, logs: dict) -> str:
        parts = [f"epoch {epoch + 1}/{self.total_epochs}"]
        parts += [f"{key} {fmt.format(float(logs[key]))}" for key, fmt in self.FIELDS if logs.get(key) is not None]
        lr = logs.get("lr")
        if lr is None and getattr(self.model, "optimizer", None) is not None:
            lr = current_learning_rate(self.model.optimizer)
        if lr is not None:
            parts.append(f"lr {float(lr):.3g}")
        parts.append(f"{time.perf_counter() - self._epoch_start:.1f} s")
        batch_size = self.batch_size or _record_batch_size(self.model)
        train_seconds = self._train_end - self._epoch_start
        if batch_size and self._steps and train_seconds > 0:
            parts.append(f"({self._steps * batch_size / train_seconds:.0f} img/s)")
        return "  ".join(parts)


def write_sample_scores(path, *, indices, given_labels, predicted_labels, weights, losses, clean_labels=None):
    """Write the per-sample review list as CSV, most suspicious label first.

    Columns: index,given_label,predicted_label,weight,loss,suspicion_rank and,
    when clean labels are known, clean_label,is_noisy (1 if given != clean).
    Floats have 6 significant digits. Rows are sorted by suspicion_rank (see
    metrics.suspicion_ranks). Returns the path.
    """
    indices = np.asarray(indices).reshape(-1)
    columns = {
        "index": indices,
        "given_label": np.asarray(given_labels).reshape(-1),
        "predicted_label": np.asarray(predicted_labels).reshape(-1),
        "weight": np.asarray(weights, dtype=np.float64).reshape(-1),
        "loss": np.asarray(losses, dtype=np.float64).reshape(-1),
    }
    columns["suspicion_rank"] = suspicion_ranks(columns["weight"], columns["loss"], indices)
    if clean_labels is not None:
        columns["clean_label"] = np.asarray(clean_labels).reshape(-1)
        columns["is_noisy"] = (columns["given_label"] != columns["clean_label"]).astype(np.int64)
    lengths = {name: col.size for name, col in columns.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"columns differ in length: {lengths}")

    order = np.argsort(columns["suspicion_rank"], kind="stable")
    formatted = {
        name: [f"{v:.6g}" for v in col[order]] if col.dtype.kind == "f" else [str(int(v)) for v in col[order]]
        for name, col in columns.items()
    }
    lines = [",".join(columns)] + [",".join(row) for row in zip(*formatted.values())]
    parent = os.path.dirname(str(path))
    if parent:
        tf.io.gfile.makedirs(parent)
    with tf.io.gfile.GFile(str(path), "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def _maybe_float(value):
    return None if value is None else float(value)


def _record_batch_size(model):
    record = getattr(model, "record_indices", None)
    return None if record is None else int(record.shape[0])
