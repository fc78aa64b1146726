"""Callbacks and detection metrics, driven by a fake MetaWeightModel.

The fake honours the contract's observable surface (record_* variables,
weight_function, method, optimizer, fit log keys) with W(loss) = exp(-loss),
so these tests do not depend on the real meta train step.
"""

import csv
import glob
import logging
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from rmwnet_tf.callbacks import EpochSummaryLine, SampleRecorder, TensorBoardSummaries, write_sample_scores
from rmwnet_tf.metrics import average_ranks, detection_auc, suspicion_ranks

NUM_SOURCE = 80  # source training set; only TRAIN_SIZE of them are trained on (rest: "meta split")
TRAIN_SIZE = 64
BATCH = 16
FEATURES = 8
CLASSES = 4
EPOCHS = 2
LR0 = 0.3


# -- metrics -----------------------------------------------------------------------


def test_average_ranks_share_ties():
    np.testing.assert_array_equal(average_ranks([3.0, 1.0, 3.0, 2.0]), [3.5, 1.0, 3.5, 2.0])


@pytest.mark.parametrize(
    "scores, is_noisy, expected",
    [
        ([0.9, 0.8, 0.2, 0.1], [False, False, True, True], 1.0),  # clean all above noisy
        ([0.1, 0.2, 0.8, 0.9], [False, False, True, True], 0.0),  # reversed
        ([0.5, 0.5, 0.5, 0.5], [False, True, False, True], 0.5),  # all tied
        # clean {0.9, 0.8} vs noisy {0.8, 0.3}: pairs 1 + 1 + 0.5 (tie) + 1 = 3.5 of 4
        ([0.9, 0.8, 0.8, 0.3], [False, True, False, True], 0.875),
        # clean {3, 1} vs noisy {2}: one win, one loss
        ([3.0, 2.0, 1.0], [False, True, False], 0.5),
        # clean {2} vs noisy {1, 3, 0}: beats two of three
        ([1.0, 2.0, 3.0, 0.0], [True, False, True, True], 2.0 / 3.0),
    ],
)
def test_detection_auc_exact(scores, is_noisy, expected):
    assert detection_auc(scores, is_noisy) == pytest.approx(expected, abs=1e-12)


def test_detection_auc_undefined_with_one_class():
    assert detection_auc([0.1, 0.7], [False, False]) is None
    assert detection_auc([0.1, 0.7], [True, True]) is None


def test_detection_auc_rejects_nan():
    with pytest.raises(ValueError, match="finite"):
        detection_auc([0.1, np.nan], [False, True])


def test_suspicion_ranks_weight_then_loss_then_index():
    weights = [0.5, 0.2, 0.5, 0.2, 0.9]
    losses = [1.0, 0.3, 2.0, 0.3, 0.1]
    # 0.2 tie with equal losses -> lower position first; 0.5 tie -> higher loss first
    np.testing.assert_array_equal(suspicion_ranks(weights, losses), [4, 1, 3, 2, 5])
    # explicit sample indices decide the last tie instead of position
    np.testing.assert_array_equal(suspicion_ranks(weights, losses, indices=[9, 8, 7, 6, 5]), [4, 2, 3, 1, 5])


# -- a fake MetaWeightModel ---------------------------------------------------------------


class FakeMetaWeightModel(keras.Model):
    """Linear classifier whose "learned" weights are W(loss) = exp(-loss); fills the record variables.

    It descends the plain mean CE so that it learns within a few steps (weighting
    by exp(-loss) from a random start mostly reinforces the initial guesses);
    the callbacks only need the weights to be observable, not to be used.
    """

    def __init__(self, method="mwnet"):
        super().__init__()
        self.method = method
        self.classifier = keras.layers.Dense(CLASSES)
        self.record_weights = keras.Variable(np.ones(BATCH, np.float32), trainable=False, name="record_weights")
        self.record_losses = keras.Variable(np.zeros(BATCH, np.float32), trainable=False, name="record_losses")
        self.record_indices = keras.Variable(
            np.zeros(BATCH, np.int32), dtype="int32", trainable=False, name="record_indices"
        )

    def call(self, images, training=False):
        return self.classifier(images)

    def weight_function(self, losses):
        losses = np.asarray(losses, np.float32)
        return np.ones_like(losses) if self.method == "base" else np.exp(-losses)

    def train_step(self, data):
        images, labels = data["image"], data["label"]
        with tf.GradientTape() as tape:
            logits = self(images, training=True)
            losses = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
            mean_loss = tf.reduce_mean(losses)
        grads = tape.gradient(mean_loss, self.trainable_variables)
        weights = tf.ones_like(losses) if self.method == "base" else tf.exp(-losses)
        weighted_loss = tf.reduce_mean(weights * losses)
        self.optimizer.apply_gradients(zip(grads, self.trainable_variables))
        self.record_weights.assign(weights)
        self.record_losses.assign(losses)
        self.record_indices.assign(data["index"])
        return {
            "train/loss": mean_loss,
            "train/accuracy": _accuracy(labels, logits),
            "train/weighted_loss": weighted_loss,
            "meta/loss": tf.constant(0.0),
            "weights/mean": tf.reduce_mean(weights),
        }

    def test_step(self, data):
        logits = self(data["image"])
        losses = keras.losses.sparse_categorical_crossentropy(data["label"], logits, from_logits=True)
        return {"loss": tf.reduce_mean(losses), "accuracy": _accuracy(data["label"], logits)}


def _accuracy(labels, logits):
    return tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels), tf.float32))


def _toy_problem():
    """Separable 4-class data, a quarter of the labels flipped; infinite like data.train_dataset."""
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 2, (CLASSES, FEATURES)).astype(np.float32)
    clean = rng.integers(0, CLASSES, NUM_SOURCE).astype(np.int32)
    images = centers[clean] + rng.normal(0, 0.5, (NUM_SOURCE, FEATURES)).astype(np.float32)
    given = clean.copy()
    flipped = rng.choice(NUM_SOURCE, NUM_SOURCE // 4, replace=False)
    given[flipped] = (given[flipped] + 1) % CLASSES
    train_indices = np.sort(rng.choice(NUM_SOURCE, TRAIN_SIZE, replace=False)).astype(np.int32)
    train = tf.data.Dataset.from_tensor_slices(
        {"image": images[train_indices], "label": given[train_indices], "index": train_indices}
    ).batch(BATCH, drop_remainder=True).repeat()
    test_labels = rng.integers(0, CLASSES, 32).astype(np.int32)
    test_images = centers[test_labels] + rng.normal(0, 0.5, (32, FEATURES)).astype(np.float32)
    test = tf.data.Dataset.from_tensor_slices({"image": test_images, "label": test_labels}).batch(BATCH)
    return train, test, train_indices, given != clean


def _run(log_dir, *, method="mwnet", with_is_noisy=True):
    """fit 2 epochs with the three callbacks; returns what the assertions need."""
    keras.utils.set_random_seed(0)
    train, test, train_indices, is_noisy = _toy_problem()
    model = FakeMetaWeightModel(method)
    schedule = keras.optimizers.schedules.ExponentialDecay(LR0, decay_steps=TRAIN_SIZE // BATCH, decay_rate=0.5)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=schedule))
    recorder = SampleRecorder(NUM_SOURCE)
    summaries = TensorBoardSummaries(str(log_dir), recorder, is_noisy=is_noisy if with_is_noisy else None)
    lines = []
    history = model.fit(
        train, validation_data=test, epochs=EPOCHS, steps_per_epoch=TRAIN_SIZE // BATCH, verbose=0, shuffle=False,
        callbacks=[recorder, summaries, EpochSummaryLine(EPOCHS, print_fn=lines.append)],
    )
    summaries.close()
    return dict(model=model, recorder=recorder, summaries=summaries, lines=lines, history=history.history,
                events=_read_events(log_dir), train_indices=train_indices, is_noisy=is_noisy)


def _read_events(log_dir):
    """{tag: {step: ndarray}} from every event file under log_dir."""
    events = {}
    for path in glob.glob(str(log_dir / "**" / "events.out.tfevents.*"), recursive=True):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                events.setdefault(value.tag, {})[event.step] = tf.make_ndarray(value.tensor)
    return events


SCALARS = {"train/loss", "train/weighted_loss", "train/accuracy", "meta/loss", "weights/mean",
           "test/accuracy", "test/loss", "lr"}


@pytest.fixture(scope="module")
def mwnet_run(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("tb_mwnet"))


# -- SampleRecorder -----------------------------------------------------------------------


def test_recorder_holds_last_epoch_per_source_index(mwnet_run):
    recorder = mwnet_run["recorder"]
    expected_seen = np.zeros(NUM_SOURCE, bool)
    expected_seen[mwnet_run["train_indices"]] = True
    np.testing.assert_array_equal(recorder.seen, expected_seen)
    assert np.isnan(recorder.weights[~recorder.seen]).all() and np.isnan(recorder.losses[~recorder.seen]).all()
    # the fake's weights are exp(-loss): values must line up sample by sample
    np.testing.assert_allclose(recorder.weights[recorder.seen], np.exp(-recorder.losses[recorder.seen]), rtol=1e-5)


# -- TensorBoardSummaries -----------------------------------------------------------------


def test_event_files_hold_exactly_the_expected_tags(mwnet_run):
    events = mwnet_run["events"]
    expected = SCALARS | {"detection/auc", "detection/auc_loss", "weights/all", "weights/clean",
                          "weights/noisy", "weights/curve"}
    assert set(events) == expected
    for tag in expected:
        assert sorted(events[tag]) == [1, 2], tag


def test_logged_auc_matches_recorded_arrays(mwnet_run):
    recorder, is_noisy = mwnet_run["recorder"], mwnet_run["is_noisy"]
    seen = recorder.seen
    auc = detection_auc(recorder.weights[seen], is_noisy[seen])
    auc_loss = detection_auc(-recorder.losses[seen], is_noisy[seen])
    assert auc is not None and auc_loss is not None
    assert auc > 0.6  # direction check: flipped labels get lower weights once the fake has learned a little
    assert float(mwnet_run["events"]["detection/auc"][2]) == pytest.approx(auc, rel=1e-6)
    assert float(mwnet_run["events"]["detection/auc_loss"][2]) == pytest.approx(auc_loss, rel=1e-6)
    # the same numbers went into fit's history and the callback's own history
    assert mwnet_run["history"]["detection/auc"][-1] == auc
    assert mwnet_run["summaries"].history[-1] == {
        "epoch": 2, "detection/auc": auc, "detection/auc_loss": auc_loss,
        "test/accuracy": mwnet_run["history"]["val_accuracy"][-1],
        "test/loss": mwnet_run["history"]["val_loss"][-1],
    }


def test_test_scalars_and_lr(mwnet_run):
    events, history = mwnet_run["events"], mwnet_run["history"]
    for epoch in (1, 2):
        assert float(events["test/accuracy"][epoch]) == pytest.approx(history["val_accuracy"][epoch - 1])
        assert float(events["test/loss"][epoch]) == pytest.approx(history["val_loss"][epoch - 1])
        # ExponentialDecay halves the lr every epoch of steps; logged: the lr of the next step
        assert float(events["lr"][epoch]) == pytest.approx(LR0 * 0.5**epoch, rel=1e-6)
    assert history["lr"] == pytest.approx([LR0 / 2, LR0 / 4])


def test_curve_image_shape(mwnet_run):
    encoded = mwnet_run["events"]["weights/curve"][2]  # [width, height, png]
    assert int(encoded[0]) == 480 and int(encoded[1]) == 320
    image = tf.io.decode_png(encoded[2]).numpy()
    assert image.shape == (320, 480, 3) and image.dtype == np.uint8
    assert np.all(image == (0x1F, 0x5A, 0xB4), axis=-1).sum() > 100  # the curve's colour


def test_summary_line_format(mwnet_run):
    lines = mwnet_run["lines"]
    assert len(lines) == EPOCHS
    pattern = (r"epoch {e}/2  train/loss \d+\.\d{{3}}  test/accuracy \d\.\d{{4}}  detection/auc \d\.\d{{3}}"
               r"  lr {lr}  \d+\.\d s  \(\d+ img/s\)")
    assert re.fullmatch(pattern.format(e=1, lr="0.15"), lines[0]), lines[0]
    assert re.fullmatch(pattern.format(e=2, lr="0.075"), lines[1]), lines[1]


def test_without_is_noisy_detection_is_skipped(tmp_path):
    run = _run(tmp_path, with_is_noisy=False)
    assert set(run["events"]) == SCALARS | {"weights/all", "weights/curve"}
    assert "detection/auc" not in run["history"]
    assert run["summaries"].history[-1]["detection/auc"] is None
    assert "detection/auc" not in run["lines"][-1] and run["lines"][-1].startswith("epoch 2/2  train/loss")


def test_base_method_logs_only_the_small_loss_auc(tmp_path, caplog):
    with caplog.at_level(logging.INFO), caplog.at_level(logging.INFO, logger="absl"):
        run = _run(tmp_path, method="base")
    notes = [r for r in caplog.records if "detection/auc not logged" in r.getMessage()]
    assert len(notes) == 1 and "method base" in notes[0].getMessage()  # once, not every epoch
    assert "detection/auc" not in run["events"] and "detection/auc_loss" in run["events"]
    np.testing.assert_array_equal(run["events"]["weights/all"][2].shape[-1], 3)  # histogram buckets [k, 3]
    assert run["summaries"].history[-1]["detection/auc_loss"] is not None


def test_epoch_end_skips_nan_and_unseen_samples(tmp_path):
    """A diverged sample (NaN) or an unseen one must not crash training nor enter the AUC."""
    model = FakeMetaWeightModel()
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    recorder = SampleRecorder(6)
    recorder.seen[:4] = True
    recorder.weights[:4] = [0.9, np.nan, 0.2, 0.8]
    recorder.losses[:4] = [0.1, np.nan, 2.0, 0.3]
    summaries = TensorBoardSummaries(str(tmp_path), recorder, is_noisy=[False, False, True, False, True, True])
    summaries.set_model(model)
    logs = {"train/loss": 1.0}
    summaries.on_epoch_end(0, logs)
    summaries.close()
    # samples 0, 2, 3 count: clean {0.9, 0.8} vs noisy {0.2}
    assert logs["detection/auc"] == 1.0 and logs["detection/auc_loss"] == 1.0
    assert "test/accuracy" not in logs and summaries.history[0]["test/accuracy"] is None
    assert set(_read_events(tmp_path)) == {"train/loss", "lr", "detection/auc", "detection/auc_loss",
                                           "weights/all", "weights/clean", "weights/noisy", "weights/curve"}


# -- write_sample_scores ----------------------------------------------------------------------


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
