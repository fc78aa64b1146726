"""The writer: sample_scores.csv and the console line, exactly."""

import csv
import types

import numpy as np
import pytest

from rmwnet_tf import outputs
from rmwnet_tf.outputs import Suspects, console_line, write_sample_scores


def _sample_columns():
    return dict(
        indices=np.array([10, 11, 12, 13, 14]),
        given_labels=np.array([1, 2, 0, 3, 1]),
        predicted_labels=np.array([1, 0, 0, 2, 1]),
        weights=np.array([0.5, 0.2, 0.5, 0.2, 0.912345678]),
        losses=np.array([1.0, 0.3, 2.0, 0.3, 0.123456789]),
    )


def test_sample_scores_csv_with_clean_labels(tmp_path):
    path = tmp_path / "out" / "sample_scores.csv"
    write_sample_scores(path, clean_labels=np.array([1, 0, 0, 2, 1]), **_sample_columns())
    with open(path) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["index", "given_label", "predicted_label", "weight", "loss", "suspicion_rank",
                       "clean_label", "is_noisy"]
    body = rows[1:]
    assert len(body) == 5
    assert [int(r[5]) for r in body] == [1, 2, 3, 4, 5]
    assert [r[0] for r in body] == ["11", "13", "12", "10", "14"]
    assert body[0] == ["11", "2", "0", "0.2", "0.3", "1", "0", "1"]
    assert body[-1] == ["14", "1", "1", "0.912346", "0.123457", "5", "1", "0"]


def test_sample_scores_csv_without_clean_labels(tmp_path):
    path = tmp_path / "sample_scores.csv"
    write_sample_scores(path, **_sample_columns())
    with open(path) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["index", "given_label", "predicted_label", "weight", "loss", "suspicion_rank"]
    assert len(rows) == 6 and all(len(r) == 6 for r in rows)
    assert sorted(int(r[5]) for r in rows[1:]) == [1, 2, 3, 4, 5]


def test_sample_scores_rejects_ragged_columns(tmp_path):
    columns = _sample_columns()
    columns["losses"] = columns["losses"][:4]
    with pytest.raises(ValueError):
        write_sample_scores(tmp_path / "x.csv", **columns)


def test_console_line_names_metrics_as_everywhere_else():
    row = {"epoch": 3, "train/loss": 1.23456, "test/accuracy": 0.5, "detection/auc": 0.91234,
           "lr": 0.005, "train_seconds": 2.04, "images_per_second": 980.4, "fit/clean_fitted": 0.9}
    assert console_line(row, 10) == (
        "epoch 3/10  train/loss 1.235  test/accuracy 0.5  detection/auc 0.9123  lr 0.005  2.0 s  (980 img/s)")


def test_console_line_skips_what_was_not_evaluated():
    assert console_line({"epoch": 1, "train/loss": 2.0, "lr": 0.1}, 2) == "epoch 1/2  train/loss 2  lr 0.1"


def test_suspects_are_the_first_rows_of_the_review_list_with_named_captions():
    images = np.arange(6 * 4 * 4 * 3, dtype=np.uint8).reshape(6, 4, 4, 3)
    samples = dict(index=np.array([1, 3, 4, 5]), given=np.array([0, 1, 2, 0]), predicted=np.array([0, 2, 2, 1]),
                   weight=np.array([0.9, 0.1, 0.5, 0.1]), loss=np.array([0.1, 2.0, 0.7, 3.0]))
    suspects = Suspects(images, ["cat", "dog", "ship"], count=3)
    rows = suspects.rows(samples)
    assert rows.tolist() == [3, 1, 2]  # weight 0.1 (higher loss first), then 0.5
    assert suspects.caption(samples, 3) == "given cat\npred dog\nw 0.1  #5"
    figure = suspects.figure(samples, epoch=2)
    assert [axes.get_title() for axes in figure.axes] == [suspects.caption(samples, r) for r in rows]
    np.testing.assert_array_equal(figure.axes[0].images[0].get_array(), images[5])


def test_the_weight_curve_is_drawn_over_the_losses_the_weighting_net_reads(tmp_path, monkeypatch):
    """For rmnwnet_gce W reads GCE losses (evaluate's `train_loss`), not the CE `loss`: the curve's
    range and histogram are theirs."""
    drawn = []

    def fake_curve(weight_function, losses, epoch, points=200):
        drawn.append(np.asarray(losses))
        return np.zeros((4, 4, 3), np.uint8)

    monkeypatch.setattr(outputs, "weight_curve_image", fake_curve)
    writer = outputs.RunWriter(tmp_path, total_epochs=1, history=[], print_fn=lambda line: None,
                               weight_function=lambda losses: np.ones(len(losses)))
    samples = dict(weight=np.array([0.2, 0.8]), noisy=None, loss=np.array([3.0, 0.1]),
                   train_loss=np.array([1.2, 0.05]))
    writer.epoch({"epoch": 1, "train/loss": 1.0}, evaluation=types.SimpleNamespace(samples=samples))
    writer.close()
    assert len(drawn) == 1
    np.testing.assert_array_equal(drawn[0], samples["train_loss"])
