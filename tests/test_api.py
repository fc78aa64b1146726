"""The public Python API (issue 34): a Keras user's classifier, arrays or tf.data, the stock callbacks.

Everything runs a tiny Sequential CNN on 8x8 random images for 1-3 epochs: these tests pin the
plumbing (layouts, resumption, saving, the numbers each call returns), not learning.
"""

import csv
import inspect
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import rmwnet_tf
from rmwnet_tf import losses
from rmwnet_tf.api import pairing
from rmwnet_tf.methods import METHODS

from tests.helpers.api_data import CLASSES, X, X_META, Y, Y_META, classifier

CLEAN = np.where(np.arange(48) % 4 == 0, (Y + 1) % CLASSES, Y)  # a quarter of the labels "wrong"


def model(method="rmnwnet", **compile_args):
    built = rmwnet_tf.MetaWeightModel(classifier(), method=method, seed=0)
    built.compile(**compile_args)
    return built


def fit(built, epochs=1, **kwargs):
    meta = dict(meta_data=(X_META, Y_META)) if built.spec.uses_meta else {}
    return built.fit(X, Y, batch_size=16, epochs=epochs, verbose=0, **meta, **kwargs)


def all_weights(built):
    """Classifier, weighting net and both optimizers' variables, as arrays."""
    variables = list(built.classifier.weights) + list(built.optimizer.variables)
    if built.vnet is not None:
        variables += list(built.vnet.weights) + list(built.vnet_optimizer.variables)
    return [np.array(v) for v in variables]


# ------------------------------------------------------------------------------------ the package
def test_import_is_light_and_exports_the_api():
    code = ("import sys, rmwnet_tf; assert 'tensorflow' not in sys.modules; "
            "names = dir(rmwnet_tf); assert {'MetaWeightModel', 'rank_suspects', 'WeightHistograms'} <= set(names)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
    assert rmwnet_tf.METHODS is METHODS
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        rmwnet_tf.nope  # noqa: B018


@pytest.mark.parametrize("function", ["__init__", "compile", "fit"])
def test_help_explains_every_argument(function):
    cls = rmwnet_tf.MetaWeightModel
    doc = cls.__doc__ if function == "__init__" else getattr(cls, function).__doc__
    names = [p for p in inspect.signature(getattr(cls, function)).parameters if p not in ("self", "kwargs")]
    undocumented = [name for name in names if f"{name}:" not in doc and f"{name}," not in doc]
    assert names and undocumented == []


# ------------------------------------------------------------------------------------ fit / evaluate / predict
TRAIN_LOGS = ["train/accuracy", "train/loss"]
META_LOGS = ["meta/loss", "train/weight_mean", "train/weighted_loss"]


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_fits_numpy_arrays_and_evaluates(method):
    built = model(method)
    history = fit(built, validation_data=(X_META, Y_META))
    expected = TRAIN_LOGS + (META_LOGS if METHODS[method].uses_meta else []) + ["val_accuracy", "val_loss"]
    assert sorted(history.history) == sorted(expected)
    assert int(built.optimizer.iterations) == 3  # 48 samples in batches of 16
    assert all(np.isfinite(v[0]) for v in history.history.values())


def test_evaluate_and_predict_are_the_classifiers_loss_accuracy_and_logits():
    built = model("base")
    logits = np.asarray(built.classifier(X, training=False))
    result = built.evaluate(X, Y, batch_size=20, verbose=0, return_dict=True)
    assert sorted(result) == ["accuracy", "loss"]
    assert result["accuracy"] == pytest.approx(float((logits.argmax(-1) == Y).mean()), abs=1e-7)
    assert result["loss"] == pytest.approx(float(np.mean(losses.cross_entropy(Y, logits))), rel=1e-6)
    np.testing.assert_allclose(built.predict(X, batch_size=20, verbose=0), logits, rtol=1e-6, atol=1e-6)
    dataset = tf.data.Dataset.from_tensor_slices((X, Y[:, None])).batch(20)  # Keras' CIFAR labels: [n, 1]
    assert built.evaluate(dataset, verbose=0, return_dict=True) == pytest.approx(result, rel=1e-6)
    np.testing.assert_allclose(built.predict(dataset, verbose=0), logits, rtol=1e-6, atol=1e-6)


def test_fit_on_tf_data_takes_the_batches_as_given():
    built = model()
    train = tf.data.Dataset.from_tensor_slices((X, Y[:, None])).batch(12)
    meta = tf.data.Dataset.from_tensor_slices({"image": X_META, "label": Y_META}).batch(5)
    history = built.fit(train, meta_data=meta, epochs=2, verbose=0)
    assert int(built.optimizer.iterations) == 8
    assert len(history.history["meta/loss"]) == 2


def test_bad_input_fails_with_one_clear_line():
    built = model()
    cases = [
        (lambda: built.fit(X, Y, epochs=1, verbose=0), "learns its weighting from a meta set: pass fit\\(..., meta_data="),
        (lambda: model("base").fit(X, Y, meta_data=(X_META, Y_META), verbose=0), "uses no meta set"),
        (lambda: built.train_step((tf.constant(X[:4]), tf.constant(Y[:4]))), "needs a meta batch"),
        (lambda: fit(built, sample_weight=np.ones(48)), "weights the samples itself"),
        (lambda: built.fit(X, np.eye(CLASSES)[Y], meta_data=(X_META, Y_META), verbose=0), "one-hot"),
        (lambda: built.fit(X, Y[:40], meta_data=(X_META, Y_META), verbose=0), "48 images but 40 labels"),
        (lambda: fit(built, meta_batch_size=13), "exceeds the 12 meta samples"),
        (lambda: built.evaluate(tf.data.Dataset.from_tensor_slices(X).batch(8), verbose=0), "must be \\(images, labels\\)"),
        (lambda: rmwnet_tf.MetaWeightModel(classifier()).compile(loss="mse"), "no loss= here"),
        (lambda: rmwnet_tf.MetaWeightModel(classifier(), method="nope"), "unknown method 'nope'"),
        (lambda: rmwnet_tf.MetaWeightModel(keras.Sequential([keras.layers.Dense(3)])), "not built"),
        (lambda: rmwnet_tf.MetaWeightModel(keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, "softmax")])),
         "ends in a softmax"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()


def test_the_whole_model_refuses_keras_saving_and_says_what_to_use(tmp_path):
    with pytest.raises(NotImplementedError, match=r"save_weights\('x.weights.h5'\).*classifier.save\('x.keras'\)"):
        model().save(tmp_path / "x.keras")


# ------------------------------------------------------------------------------------ data pairing
def test_meta_stream_is_a_pure_function_of_the_step():
    images, labels = np.arange(10)[:, None].astype(np.float32), np.arange(10)
    step = tf.Variable(0, dtype=tf.int64)
    stream = pairing.meta_stream(images, labels, batch_size=4, seed=3, step=step)
    from_zero = [b.numpy() for b, _ in stream.take(7)]
    step.assign(3)
    from_three = [b.numpy() for b, _ in stream.take(4)]  # the same dataset, a new iterator
    np.testing.assert_array_equal(np.concatenate(from_zero[3:]), np.concatenate(from_three))
    positions = np.concatenate(from_zero).reshape(-1)
    assert sorted(positions[:10]) == list(range(10)) and sorted(positions[10:20]) == list(range(10))  # passes
    assert not np.array_equal(positions[:10], positions[10:20])  # reshuffled between passes


def test_training_arrays_are_shuffled_by_epoch_alone():
    images, labels = np.arange(10)[:, None].astype(np.float32), np.arange(10)
    step = tf.Variable(0, dtype=tf.int64)
    epoch = pairing.train_epoch(images, labels, batch_size=4, seed=3, shuffle=True, step=step)
    assert epoch.cardinality() == 3
    first = np.concatenate([b.numpy() for _, b in epoch])
    step.assign(2)  # still epoch 0
    again = np.concatenate([b.numpy() for _, b in epoch])
    step.assign(3)  # epoch 1
    second = np.concatenate([b.numpy() for _, b in epoch])
    np.testing.assert_array_equal(first, again)
    assert sorted(first) == sorted(second) == list(range(10)) and not np.array_equal(first, second)


# ------------------------------------------------------------------------------------ per-sample outputs
def test_sample_weights_and_ranking_follow_the_weighting_net():
    built = model()
    fit(built)
    logits = built.classifier(X, training=False)
    loss = np.asarray(losses.cross_entropy(Y, logits))
    weights = built.sample_weights((X, Y), batch_size=20)
    np.testing.assert_allclose(weights, built.weight_function(loss), rtol=1e-5)
    ranking = rmwnet_tf.rank_suspects(built, tf.data.Dataset.from_tensor_slices((X, Y)).batch(20))
    assert sorted(ranking.indices) == list(range(48))
    assert np.all(np.diff(ranking.weights) >= 0)  # least trusted first
    np.testing.assert_allclose(ranking.losses, loss[ranking.indices], rtol=1e-5)
    np.testing.assert_array_equal(ranking.given_labels, Y[ranking.indices])
    np.testing.assert_array_equal(ranking.predicted_labels, np.argmax(logits, -1)[ranking.indices])
    assert len(ranking.top(5)) == 5 and ranking.top(5).indices.tolist() == ranking.indices[:5].tolist()


def test_rmnwnet_gce_weights_read_the_gce_loss_while_the_ranking_reports_the_cross_entropy():
    built = model("rmnwnet_gce")
    fit(built)
    logits = built.classifier(X, training=False)
    gce, ce = (np.asarray(loss(Y, logits)) for loss in (losses.generalized_cross_entropy, losses.cross_entropy))
    np.testing.assert_allclose(built.sample_weights((X, Y), batch_size=20), built.weight_function(gce), rtol=1e-5)
    assert not np.allclose(built.weight_function(gce), built.weight_function(ce), rtol=1e-3)  # the test can tell
    ranking = rmwnet_tf.rank_suspects(built, (X, Y))
    np.testing.assert_allclose(ranking.losses, ce[ranking.indices], rtol=1e-5)


def test_base_ranks_by_loss_and_writes_the_review_csv(tmp_path):
    built = model("base")
    ranking = rmwnet_tf.rank_suspects(built, (X, Y))
    assert np.all(ranking.weights == 1.0) and np.all(np.diff(ranking.losses) <= 0)
    ranking.to_csv(tmp_path / "scores.csv", clean_labels=CLEAN)
    with open(tmp_path / "scores.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["index"]) for r in rows] == ranking.indices.tolist()
    assert [int(r["suspicion_rank"]) for r in rows] == list(range(1, 49))
    assert sum(int(r["is_noisy"]) for r in rows) == 12


# ------------------------------------------------------------------------------------ stock callbacks
class StopAfterFirstEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            raise KeyboardInterrupt("killed")


def test_backup_and_restore_resumes_to_the_uninterrupted_weights(tmp_path):
    uninterrupted = model()
    fit(uninterrupted, epochs=2)
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    interrupted = model()
    with pytest.raises(KeyboardInterrupt):
        fit(interrupted, epochs=2, callbacks=[backup, StopAfterFirstEpoch()])
    restarted = model()  # a new process would build it so
    history = fit(restarted, epochs=2, callbacks=[keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))])
    assert len(history.history["train/loss"]) == 1  # epoch 2 only
    assert not np.array_equal(all_weights(restarted)[0], all_weights(model())[0])  # trained, not the initial weights
    for got, want in zip(all_weights(restarted), all_weights(uninterrupted), strict=True):
        np.testing.assert_array_equal(got, want)


def test_model_checkpoint_weights_hold_the_weighting_net_and_optimizers(tmp_path):
    built = model()
    path = str(tmp_path / "epoch{epoch}.weights.h5")
    fit(built, epochs=2, callbacks=[keras.callbacks.ModelCheckpoint(path, save_weights_only=True)])
    assert sorted(os.listdir(tmp_path)) == ["epoch1.weights.h5", "epoch2.weights.h5"]
    loaded = model()
    loaded.load_weights(str(tmp_path / "epoch2.weights.h5"))
    for got, want in zip(all_weights(loaded), all_weights(built), strict=True):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(NotImplementedError, match="cannot be saved whole"):
        fit(model(), callbacks=[keras.callbacks.ModelCheckpoint(str(tmp_path / "x.keras"))])


def test_early_stopping_and_lr_plateau_on_the_noisy_meta_sets_accuracy():
    built = model(optimizer=keras.optimizers.SGD(0.05))
    # min_delta=1: no epoch after the first improves, so both act at their first chance.
    stop = keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max", min_delta=1.0, patience=2)
    plateau = keras.callbacks.ReduceLROnPlateau(monitor="val_accuracy", mode="max", min_delta=1.0, patience=1,
                                                factor=0.5)
    history = fit(built, epochs=6, validation_data=(X_META, Y_META), callbacks=[stop, plateau])
    assert len(history.history["val_accuracy"]) == 3
    assert float(built.optimizer.learning_rate) == pytest.approx(0.025 / 2, rel=1e-7)  # cut after epochs 2, 3


def _event_tags(folder):
    tags = {}
    for name in os.listdir(folder):
        for event in tf.compat.v1.train.summary_iterator(os.path.join(folder, name)):
            for value in event.summary.value:
                tags.setdefault(value.tag, []).append(event.step)
    return tags


def test_tensorboard_csv_logger_and_weight_histograms(tmp_path):
    built = model()
    callbacks = [
        keras.callbacks.TensorBoard(str(tmp_path / "tb")),
        keras.callbacks.CSVLogger(str(tmp_path / "log.csv")),
        rmwnet_tf.WeightHistograms(str(tmp_path / "tb"), (X, Y), clean_labels=CLEAN),
    ]
    fit(built, epochs=2, validation_data=(X_META, Y_META), callbacks=callbacks)
    assert sorted(os.listdir(tmp_path / "tb")) == ["train", "validation", "weights"]
    assert {"epoch_train/loss", "epoch_meta/loss"} <= set(_event_tags(tmp_path / "tb" / "train"))
    assert {"epoch_accuracy", "epoch_loss"} <= set(_event_tags(tmp_path / "tb" / "validation"))
    assert _event_tags(tmp_path / "tb" / "weights") == {
        tag: [0, 1] for tag in ("weights/all", "weights/clean", "weights/noisy", "weights/curve")}
    with open(tmp_path / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [row["epoch"] for row in rows] == ["0", "1"]
    assert set(TRAIN_LOGS + META_LOGS + ["val_accuracy", "val_loss"]) <= set(rows[0])
