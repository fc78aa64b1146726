"""The one writer: where a run's numbers go, never how they were computed.

Each epoch's row (train means from the step, the evaluation's metrics, lr, timings; every key
a final name) goes to TensorBoard, history.json and the console line in one call, so a metric
has the same name everywhere. At the end: results.json, sample_scores.csv, pred_probs.npy and
given_labels.npy.
"""

from __future__ import annotations

import json
import os
import pathlib

import numpy as np
import tensorflow as tf

from rmwnet_tf.errors import UserError
from rmwnet_tf.files import write_text
from rmwnet_tf.metrics import suspicion_ranks
from rmwnet_tf import figures

# Console line: these keys, in this order, when present (the rest go to files only).
CONSOLE_KEYS = ("train/loss", "test/accuracy", "detection/auc", "fit/noisy_memorised", "lr")
# Keys of a history row that are bookkeeping, not TensorBoard scalars.
NOT_SCALARS = ("epoch", "train_seconds", "wall_seconds", "images_per_second")


def write_json(path: pathlib.Path, value) -> None:
    """Write-then-rename, so an interrupted run never leaves half a file behind."""
    write_text(path, json.dumps(value, indent=2, default=_json_default))


def read_json(path: pathlib.Path):
    """The file's value, or None if there is no file. A file that does not parse (cut short by a
    full disk, edited by hand) is named in the error: JSON's own message names no file."""
    path = pathlib.Path(path)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as error:  # JSONDecodeError is a ValueError
        raise UserError(
            f"{path} is not readable JSON ({' '.join(str(error).split())}); it was cut short or edited: "
            "restore it, or move the run folder aside (or rerun with --overwrite) to start this run again"
        ) from None


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value)}")


def console_line(row: dict, total_epochs: int) -> str:
    parts = [f"epoch {row['epoch']}/{total_epochs}"]
    for key in CONSOLE_KEYS:
        if row.get(key) is not None:
            parts.append(f"{key} {row[key]:.4g}" if key != "lr" else f"lr {row[key]:.3g}")
    if row.get("train_seconds"):
        parts.append(f"{row['train_seconds']:.1f} s")
    if row.get("images_per_second"):
        parts.append(f"({row['images_per_second']:.0f} img/s)")
    return "  ".join(parts)


class RunWriter:
    """Sends each epoch's row to TensorBoard, history.json and the console.

    `history` starts as the rows of earlier sittings of a resumed run (copied: from here the
    writer owns the list, and the loop reads `writer.history`); rows are appended here and the
    whole list rewritten each epoch (atomically), so history.json always matches the newest
    checkpoint.
    """

    def __init__(self, write_dir: pathlib.Path, *, total_epochs: int, history: list, print_fn,
                 weight_function=None, suspects=None):
        self.write_dir = pathlib.Path(write_dir)
        self.total_epochs, self.history, self.print_fn = total_epochs, list(history), print_fn
        self.weight_function = weight_function
        self.suspects = suspects  # a Suspects, or None for no contact sheet
        self._tensorboard = tf.summary.create_file_writer(str(self.write_dir / "tensorboard"))

    def epoch(self, row: dict, evaluation=None) -> None:
        self.history.append(row)
        write_json(self.write_dir / "history.json", self.history)
        with self._tensorboard.as_default(step=row["epoch"]):
            for key, value in row.items():
                if key not in NOT_SCALARS and value is not None and np.ndim(value) == 0:
                    tf.summary.scalar(key, float(value))
            if evaluation is not None:
                self._pictures(evaluation.samples, row["epoch"])
        self._tensorboard.flush()
        self.print_fn(console_line(row, self.total_epochs))

    def _pictures(self, samples: dict, epoch: int) -> None:
        if self.suspects is not None:
            tf.summary.image("suspects", figures.to_rgb(self.suspects.figure(samples, epoch))[None])
        if self.weight_function is not None:
            write_weight_summaries(self.weight_function, samples, epoch)

    def close(self) -> None:
        self._tensorboard.close()


def write_weight_summaries(weight_function, samples: dict, epoch: int) -> None:
    """To the default summary writer: histograms of the training samples' weights (weights/all,
    and weights/clean, weights/noisy where `samples["noisy"]` is known) and the W(loss) curve over
    `samples["train_loss"]`, the losses the weighting net reads."""
    weight = samples["weight"]
    tf.summary.histogram("weights/all", weight)
    noisy = samples.get("noisy")
    if noisy is not None:
        for tag, subset in (("weights/clean", ~noisy), ("weights/noisy", noisy)):
            if subset.any():
                tf.summary.histogram(tag, weight[subset])
    # Over the losses W reads (the method's training loss: GCE's lie in [0, 1/q], not CE's range).
    tf.summary.image("weights/curve", weight_curve_image(weight_function, samples["train_loss"], epoch)[None])


def weight_curve_image(weight_function, losses, epoch: int, points: int = 200) -> np.ndarray:
    """W(loss) on [0, the largest training loss] as an RGB image, over a histogram of the losses
    (`losses`: the weighting net's inputs, evaluate's `samples["train_loss"]`)."""
    losses = np.asarray(losses)[np.isfinite(losses)]
    top = float(losses.max()) if losses.size and losses.max() > 0 else 1.0
    grid = np.linspace(0.0, top, points, dtype=np.float32)
    curve = np.asarray(weight_function(grid), dtype=np.float64).reshape(-1)
    return figures.to_rgb(figures.weight_curve_figure(grid, curve, title=f"W(loss), epoch {epoch}",
                                                      seen_losses=losses))


class Suspects:
    """The most suspicious training images with their given label, prediction and weight.

    Suspicion is the order of sample_scores.csv (lowest weight, then highest loss), so the
    sheet shows its first rows. Class names come from the source (CIFAR names, folder names).
    """

    def __init__(self, images, class_names, count: int = 64):
        self.images, self.class_names, self.count = images, list(class_names), int(count)

    def rows(self, samples: dict) -> np.ndarray:
        """Positions (into the samples' arrays) of the `count` most suspicious samples."""
        ranks = suspicion_ranks(samples["weight"], samples["loss"], samples["index"])
        return np.argsort(ranks, kind="stable")[: self.count]

    def caption(self, samples: dict, row: int) -> str:
        name = self.class_names
        lines = [f"given {name[samples['given'][row]]}", f"pred {name[samples['predicted'][row]]}",
                 f"w {samples['weight'][row]:.3g}  #{samples['index'][row]}"]
        return "\n".join(lines)

    def figure(self, samples: dict, epoch: int | None = None):
        rows = self.rows(samples)
        title = f"{len(rows)} most suspicious training labels" + (f", epoch {epoch}" if epoch else "")
        return figures.suspects_figure(self.images[samples["index"][rows]],
                                       [self.caption(samples, row) for row in rows], title=title)


def write_sample_outputs(write_dir: pathlib.Path, samples: dict, suspects: Suspects | None = None) -> None:
    """sample_scores.csv (the review list) and the arrays other tools read.

    pred_probs.npy [N, K] and given_labels.npy [N] hold the training samples in the source's
    order (row i is source sample sample_index.npy[i]), so
    `cleanlab.filter.find_label_issues(given_labels, pred_probs)` runs on them directly.
    """
    write_dir = pathlib.Path(write_dir)
    write_sample_scores(
        write_dir / "sample_scores.csv", indices=samples["index"], given_labels=samples["given"],
        predicted_labels=samples["predicted"], weights=samples["weight"], losses=samples["loss"],
        clean_labels=samples.get("clean"),
    )
    np.save(write_dir / "pred_probs.npy", samples["probs"].astype(np.float32))
    np.save(write_dir / "given_labels.npy", np.asarray(samples["given"], np.int64))
    np.save(write_dir / "sample_index.npy", np.asarray(samples["index"], np.int64))
    if suspects is not None:
        (write_dir / "suspects.png").write_bytes(figures.to_png(suspects.figure(samples)))


def write_heldout_outputs(write_dir: pathlib.Path, heldout: dict) -> None:
    """heldout_probs.npy [N_fold, K] and heldout_index.npy [N_fold] (source indices): the final
    classifier on the fold it never trained on (--holdout_folds)."""
    np.save(pathlib.Path(write_dir) / "heldout_probs.npy", heldout["probs"].astype(np.float32))
    np.save(pathlib.Path(write_dir) / "heldout_index.npy", np.asarray(heldout["index"], np.int64))


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
