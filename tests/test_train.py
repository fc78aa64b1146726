"""The training run end to end: every artifact, resume, refusal to mix runs, the export."""

import csv
import json
import pathlib
import signal
import time

import numpy as np
import pytest
import tensorflow as tf

from rmwnet_tf import checkpointing, selection, summary, train
from rmwnet_tf.config import Config
from rmwnet_tf.export import load_exported

import test_checkpointing as checkpointing_tests  # its helpers: SIGTERM at a step, checkpoint contents

SMALL = dict(
    dataset="synthetic", synthetic_train_size=300, synthetic_test_size=100, noise_type="uniform",
    noise_rate=0.4, method="rmnwnet", meta_size=50, model="tiny", batch_size=50, meta_batch_size=50,
    lr=0.05, lr_boundaries="1", seed=3,
)


def config(tmp_path, name="run", **overrides):
    return Config(**{**SMALL, "epochs": 2, "model_dir": str(tmp_path / name), **overrides})


def event_tags(log_dir: pathlib.Path) -> set:
    tags = set()
    for path in log_dir.rglob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            tags.update(value.tag for value in event.summary.value)
    return tags


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("e2e")
    cfg = config(tmp_path)
    return cfg, train.run(cfg)


def test_run_writes_results_json(finished_run):
    cfg, results = finished_run
    saved = json.loads((pathlib.Path(cfg.model_dir) / "results.json").read_text())
    assert saved["epochs_completed"] == 2
    assert saved["steps"] == 2 * (250 // 50)  # 300 train - 50 meta = 250 samples, batch 50
    assert saved["config"] == cfg.to_dict()
    assert saved["xla"] is False  # --jit_compile=auto on CPU (the tests' device)
    flat = summary.flat(saved)
    for key in ("final/test/accuracy", "best/test/accuracy", "best_epoch/test/accuracy", "final/detection/auc",
                "best/detection/auc", "final/detection/auc_loss", "best/detection/auc_loss"):
        assert flat[key] is not None, key
    assert saved["wall_seconds"] > 0 and saved["images_per_second"] > 0
    assert saved["train_seconds"] == sum(row["train_seconds"] for row in saved["history"])
    # The throughput is the images trained over those same seconds (one sum, not two).
    assert saved["images_per_second"] == pytest.approx(saved["steps"] * 50 / saved["train_seconds"], rel=1e-12)
    assert saved["best"]["test/accuracy"] >= saved["final"]["test/accuracy"]
    # One producer: the summary fields are the last history row's evaluated numbers.
    last = saved["history"][-1]
    assert saved["final"]["test/accuracy"] == last["test/accuracy"]
    assert saved["final"]["detection/auc"] == last["detection/auc"]
    assert saved["final"]["fit/noisy_memorised"] == last["fit/noisy_memorised"]
    matrix = np.array(saved["noise_realised"]["matrix"])
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0)
    assert 0.2 < saved["noise_realised"]["rate"] < 0.5  # eta=0.4 uniform over 10 classes: 0.36
    assert [row["epoch"] for row in saved["history"]] == [1, 2]


def test_run_writes_sample_scores(finished_run):
    cfg, _ = finished_run
    with open(pathlib.Path(cfg.model_dir) / "sample_scores.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["index", "given_label", "predicted_label", "weight", "loss", "suspicion_rank",
                             "clean_label", "is_noisy"]
    assert len(rows) == 250
    assert sorted(int(r["suspicion_rank"]) for r in rows) == list(range(1, 251))
    assert len({int(r["index"]) for r in rows}) == 250


def test_run_writes_the_suspects_sheet(finished_run):
    cfg, _ = finished_run
    png = (pathlib.Path(cfg.model_dir) / "suspects.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    image = tf.io.decode_png(png).numpy()
    assert image.shape == (8 * 170 + 30, 8 * 150, 4)  # 64 images, 8 per row, and a title


def test_run_writes_arrays_cleanlab_reads(finished_run):
    cfg, results = finished_run
    folder = pathlib.Path(cfg.model_dir)
    probs, given = np.load(folder / "pred_probs.npy"), np.load(folder / "given_labels.npy")
    index = np.load(folder / "sample_index.npy")
    assert probs.shape == (250, 10) and given.shape == (250,) and index.shape == (250,)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert np.all(np.diff(index) > 0)  # the source's sample order
    with open(folder / "sample_scores.csv") as f:
        rows = {int(r["index"]): r for r in csv.DictReader(f)}
    assert [int(rows[i]["given_label"]) for i in index] == given.tolist()
    assert [int(rows[i]["predicted_label"]) for i in index] == probs.argmax(axis=1).tolist()


def test_run_writes_tensorboard_summaries(finished_run):
    cfg, _ = finished_run
    tags = event_tags(pathlib.Path(cfg.model_dir) / "tensorboard")
    expected = {"train/loss", "train/weighted_loss", "meta/loss", "test/accuracy", "test/loss", "lr",
                "train/weight_mean", "weights/mean", "detection/auc", "detection/auc_loss", "fit/noisy_memorised",
                "fit/clean_fitted", "fit/noisy_corrected", "meta/mae", "weights/clean", "weights/noisy",
                "weights/all", "weights/curve", "suspects"}
    assert expected <= tags
    # Every scalar of a history row reaches TensorBoard under the same name.
    row = json.loads((pathlib.Path(cfg.model_dir) / "history.json").read_text())[-1]
    assert {k for k in row if "/" in k or k == "lr"} <= tags


def test_export_round_trip(finished_run):
    cfg, _ = finished_run
    from rmwnet_tf import data as data_lib

    data = train.load_data(cfg)
    images = data.source.x_test[:8]
    predict = load_exported(str(pathlib.Path(cfg.model_dir) / "export"))
    restored = predict(images)
    # The in-memory model, rebuilt from the last checkpoint.
    model = train.build_model(cfg, data, data_lib.steps_per_epoch(data, cfg.batch_size), jit=False)
    epoch = tf.Variable(0, dtype=tf.int64)
    checkpoint = train.checkpoint_for(model, epoch)
    checkpoint.restore(tf.train.latest_checkpoint(str(pathlib.Path(cfg.model_dir) / "checkpoints")))
    normalised = (images.astype(np.float32) / 255.0 - data.mean) / data.std
    expected = tf.nn.softmax(model.classifier(normalised, training=False)).numpy()
    np.testing.assert_allclose(restored, expected, atol=1e-5)
    assert int(epoch.numpy()) == 2


def test_finished_run_is_not_retrained(finished_run):
    cfg, results = finished_run
    checkpoints = pathlib.Path(cfg.model_dir) / "checkpoints"
    before = sorted(p.name for p in checkpoints.iterdir())
    again = train.run(cfg)
    assert again["steps"] == results["steps"]
    assert sorted(p.name for p in checkpoints.iterdir()) == before


def test_other_run_in_same_model_dir_is_refused(finished_run):
    cfg, _ = finished_run
    other = Config(**{**cfg.to_dict(), "noise_rate": 0.2})
    with pytest.raises(train.RunError, match="--noise_rate: 0.4 there, 0.2 now"):
        train.run(other)


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    tf.config.experimental.enable_op_determinism()
    straight = train.run(config(tmp_path, "straight", epochs=2, export=False))
    train.run(config(tmp_path, "resumed", epochs=1, export=False))  # "interrupted" after epoch 1
    history_path = tmp_path / "resumed" / "history.json"
    history = json.loads(history_path.read_text())
    history[0]["wall_seconds"] = 1000.0  # as if the first sitting's epoch had taken that long
    history_path.write_text(json.dumps(history))
    started = time.perf_counter()
    resumed = train.run(config(tmp_path, "resumed", epochs=2, export=False))
    second_sitting = time.perf_counter() - started
    assert resumed["steps"] == straight["steps"]
    assert 1000.0 < resumed["wall_seconds"] <= 1000.0 + second_sitting  # both sittings counted
    for key in ("test/accuracy", "train/loss", "meta/loss", "detection/auc"):
        assert [r[key] for r in resumed["history"]] == pytest.approx(
            [r[key] for r in straight["history"]], rel=1e-5), key
    scores = [np.loadtxt(tmp_path / name / "sample_scores.csv", delimiter=",", skiprows=1)
              for name in ("straight", "resumed")]
    np.testing.assert_allclose(scores[0][:, 3:5], scores[1][:, 3:5], rtol=1e-4, atol=1e-6)


def test_gold_free_selection_picks_the_highest_meta_accuracy(finished_run):
    cfg, results = finished_run
    assert results["selected_by"] == "meta_accuracy"
    best = max(row["meta/accuracy"] for row in results["history"] if "meta/accuracy" in row)
    picked = next(r for r in results["history"] if r["epoch"] == results["selected"]["epoch"])
    assert picked["meta/accuracy"] == best
    assert results["selected"]["test/accuracy"] == picked["test/accuracy"]
    run_dir = pathlib.Path(cfg.model_dir)
    assert (run_dir / "selected" / "epoch").read_text() == str(results["selected"]["epoch"])
    assert (run_dir / "export_selected" / "saved_model.pb").exists()


def test_history_lr_is_the_lr_the_epoch_trained_with(finished_run):
    """lr_boundaries=1: epoch 1 at 0.05, epoch 2 at 0.005 (not the value read before its first step)."""
    _, results = finished_run
    np.testing.assert_allclose([row["lr"] for row in results["history"]], [0.05, 0.005], rtol=1e-6)


def test_evaluation_every_n_epochs_and_at_the_end(tmp_path):
    results = train.run(config(tmp_path, epochs=3, eval_every=2, export=False))
    evaluated = [row["epoch"] for row in results["history"] if "test/accuracy" in row]
    assert evaluated == [2, 3]
    assert all("train/loss" in row for row in results["history"])


def test_base_holding_out_meta_trains_on_the_meta_methods_images(tmp_path):
    meta = train.load_data(config(tmp_path, "meta"))
    base = train.load_data(config(tmp_path, "base", method="base", hold_out_meta=True))
    np.testing.assert_array_equal(base.train_indices, meta.train_indices)
    assert len(train.load_data(config(tmp_path, "all", method="base")).train_indices) == 300


def test_sigterm_mid_epoch_then_resume_equals_uninterrupted_run(tmp_path, monkeypatch):
    tf.config.experimental.enable_op_determinism()  # as the resume test above (process-wide)
    straight = train.run(config(tmp_path, "straight", export=False))

    with monkeypatch.context() as patch:
        patch.setattr(checkpointing.StepCheckpoints, "on_train_batch_begin", checkpointing_tests.send_sigterm_before(2))
        with pytest.raises(checkpointing.Interrupted) as stopped:
            train.run(config(tmp_path, "resumed", export=False))
    assert stopped.value.exit_code == 128 + signal.SIGTERM
    assert str(stopped.value) == (
        f"stopped by SIGTERM: saved checkpoint {tmp_path}/resumed/checkpoints/ckpt-3 (at step 3 of 5 in "
        "epoch 1); run the same command again to resume from it")
    assert checkpointing_tests.checkpoint_names(tmp_path / "resumed") == ["ckpt-3.index"]
    assert not (tmp_path / "resumed" / "history.json").exists()  # no epoch was completed
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers are put back

    resumed = train.run(config(tmp_path, "resumed", export=False))  # epoch 1 from step 3, then epoch 2
    assert resumed["steps"] == straight["steps"] == 10
    assert [row["epoch"] for row in resumed["history"]] == [1, 2]
    assert checkpointing_tests.checkpoint_names(tmp_path / "resumed") == ["ckpt-10.index", "ckpt-3.index", "ckpt-5.index"]
    expected = checkpointing_tests.saved_values(tmp_path / "straight" / "checkpoints" / "ckpt-10")
    got = checkpointing_tests.saved_values(tmp_path / "resumed" / "checkpoints" / "ckpt-10")
    assert sorted(got) == sorted(expected) and any("classifier" in name for name in got)
    for name, value in expected.items():
        np.testing.assert_array_equal(got[name], value, err_msg=name)  # bit-identical
    assert resumed["final"]["test/accuracy"] == straight["final"]["test/accuracy"]


def test_base_run_has_no_weights_but_scores_samples(tmp_path):
    results = train.run(config(tmp_path, method="base", epochs=1, export=False))
    assert results["final"].get("detection/auc") is None and "detection/auc" not in results["best"]
    assert results["final"]["detection/auc_loss"] is not None
    assert "weights/mean" not in results["final"]
    assert "meta/loss" not in results["history"][-1]
    # Nothing to select by: no meta set held out; results.json says so instead of naming a criterion.
    assert (results["selected"], results["selected_by"]) == ({}, None)
    assert results["selection_note"] == selection.NO_META_SET


def test_unknown_clean_labels_skip_detection(tmp_path):
    labels = tmp_path / "labels.npy"
    np.save(labels, np.random.default_rng(0).integers(0, 10, 300))
    results = train.run(config(tmp_path, noise_type="none", noise_rate=0.0, noisy_labels=str(labels),
                               source_labels_are_clean=False, epochs=1, export=False))
    assert results["final"].get("detection/auc") is None and results["noise_realised"] is None
    with open(tmp_path / "run" / "sample_scores.csv") as f:
        assert f.readline().strip() == "index,given_label,predicted_label,weight,loss,suspicion_rank"


@pytest.mark.slow
def test_rmnwnet_beats_base_under_40_percent_uniform_noise(tmp_path):
    """The point of the method, in a short run: base memorises the noisy labels, RMNW-Net does not.

    Small images, few samples and no augmentation make memorisation happen within 300 steps.
    Measured (seed 0): base 0.774, RMNW-Net 0.822 clean test accuracy; detection AUC 0.73. But the
    margin is fragile at this size: with TensorFlow's deterministic kernels (switched on
    process-wide by the resume tests before it) the same run gave base 0.808, RMNW-Net 0.810.
    So it is opt-in (`-m slow`) and fails honestly when the effect is not there; the quick start
    (BUILD_NOTES.md) is the larger, measured comparison.
    """
    accuracy = {}
    for method in ("base", "rmnwnet"):
        results = train.run(Config(
            dataset="synthetic", synthetic_train_size=600, synthetic_test_size=500, image_size=12,
            augment=False, noise_type="uniform", noise_rate=0.4, method=method, meta_size=100,
            model="small_cnn", epochs=30, batch_size=50, meta_batch_size=50, lr=0.1, lr_boundaries="22",
            vnet_optimizer="adam", model_dir=str(tmp_path / method), export=False, seed=0))
        accuracy[method] = results["final"]["test/accuracy"]
        if method == "rmnwnet":
            assert results["final"]["detection/auc"] > 0.6
    assert accuracy["rmnwnet"] > accuracy["base"] + 0.02, accuracy


def test_auto_xla_stays_off_for_meta_every_on_cpu():
    strategy = train.make_strategy("default")
    assert train.resolve_jit("auto", strategy, uses_meta=True, meta_every=4) is False
    assert train.resolve_jit("auto", strategy, uses_meta=True, meta_every=1) == train.default_jit_compile()
    assert train.resolve_jit("true", strategy, uses_meta=True, meta_every=4) is True  # asked for: granted
