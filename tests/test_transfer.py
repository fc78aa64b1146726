"""Training on one half of the training set, starting from weights of a run on the other half
(--part, --init_from), and the two reference methods of the fine-tune regime (oracle, gce)."""

import numpy as np
import pytest
import tensorflow as tf

from rmwnet_tf import data, losses, models, selection, train
from rmwnet_tf.config import Config
from rmwnet_tf.data.noisy_split import training_part
from rmwnet_tf.errors import UserError
from rmwnet_tf.init_from import load_initial_weights

from test_data import indexed_source

K = 10
SMALL = dict(
    dataset="synthetic", synthetic_train_size=400, synthetic_test_size=100, noise_type="uniform",
    noise_rate=0.4, meta_size=50, model="tiny", batch_size=50, meta_batch_size=50, lr=0.05,
    lr_boundaries="", epochs=1, export=False, suspects=0, seed=3,
)


def config(tmp_path, name, **overrides):
    return Config(**{**SMALL, "model_dir": str(tmp_path / name), **overrides})


# -- the a/b halves --------------------------------------------------------------------------


def test_parts_are_disjoint_complete_stratified_and_fixed_by_part_seed_alone():
    labels = np.random.default_rng(0).integers(0, K, 1001)
    a, b = training_part(labels, "a", 7), training_part(labels, "b", 7)
    assert np.intersect1d(a, b).size == 0
    np.testing.assert_array_equal(np.union1d(a, b), np.arange(1001))
    counts = np.bincount(labels, minlength=K)
    np.testing.assert_array_equal(np.bincount(labels[a], minlength=K), counts // 2)
    np.testing.assert_array_equal(np.bincount(labels[b], minlength=K), counts - counts // 2)
    np.testing.assert_array_equal(training_part(labels, "a", 7), a)  # a pure function of part_seed
    assert not np.array_equal(training_part(labels, "a", 8), a)
    np.testing.assert_array_equal(training_part(labels, "all", 7), np.arange(1001))


def test_everything_a_run_on_b_trains_on_lies_in_b_whatever_the_run_seed():
    source = indexed_source(num_train=400)
    a = training_part(source.y_train, "a", 0)
    for seed in (0, 1, 2):
        nd = data.prepare(source, noise_type="uniform", noise_rate=0.4, seed=seed, meta_size=50,
                          meta_label_kind="noisy", part="b", train_size=150)
        used = np.union1d(nd.train_indices, nd.meta_indices)
        assert len(used) == 150 and len(nd.train_indices) == 100
        assert np.intersect1d(used, a).size == 0
        # the normalisation statistics come from b's training images too
        np.testing.assert_allclose(nd.mean, data.channel_stats(source.x_train, nd.train_indices)[0])


def test_part_too_small_for_the_request_is_refused_naming_the_part():
    source = indexed_source(num_train=400)
    with pytest.raises(ValueError, match="exceeds the 200 training samples of part a"):
        data.prepare(source, noise_type="none", noise_rate=0, seed=0, meta_size=0,
                     meta_label_kind="none", part="a", train_size=300)


def test_selection_never_reads_the_test_set():
    history = [{"epoch": e, "meta/accuracy": m, "test/accuracy": t}
               for e, m, t in ((1, 0.5, 0.9), (2, 0.7, 0.1), (3, 0.6, 0.5))]
    shuffled = [dict(row, **{"test/accuracy": 1 - row["test/accuracy"]}) for row in history]
    assert selection.select_epoch(history) == selection.select_epoch(shuffled) == 2


# -- reference methods -------------------------------------------------------------------------


def test_oracle_trains_on_the_clean_samples_of_the_images_base_trains_on(tmp_path):
    base = train.load_data(config(tmp_path, "base", method="base", hold_out_meta=True))
    oracle = train.load_data(config(tmp_path, "oracle", method="oracle", hold_out_meta=True))
    clean = base.given_labels[base.train_indices] == base.clean_labels[base.train_indices]
    np.testing.assert_array_equal(oracle.train_indices, base.train_indices[clean])
    assert 0 < len(oracle.train_indices) < len(base.train_indices)


def test_oracle_needs_clean_labels_and_noise_to_leave_out():
    problems = dict(Config(**{**SMALL, "method": "oracle", "source_labels_are_clean": False}).problems())
    assert "trains on the correctly labelled samples only" in problems["method"]
    problems = dict(Config(**{**SMALL, "method": "oracle", "noise_type": "none", "noise_rate": 0.0}).problems())
    assert "method" in problems


def test_gce_is_kerass_generalized_cross_entropy_at_q_0_7():
    logits = tf.constant([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    labels = tf.constant([0, 2])
    p = tf.nn.softmax(logits).numpy()[[0, 1], [0, 2]]
    np.testing.assert_allclose(losses.generalized_cross_entropy(labels, logits).numpy(),
                               (1 - p**0.7) / 0.7, rtol=1e-6)


def test_gce_run_trains_on_gce_and_reports_ce(tmp_path):
    gce = train.run(config(tmp_path, "gce", method="gce"))
    base = train.run(config(tmp_path, "base", method="base"))
    assert gce["history"][0]["train/loss"] != base["history"][0]["train/loss"]  # another objective
    assert gce["final"]["test/accuracy"] is not None and "weights/mean" not in gce["final"]


# -- --init_from -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A finished run on part a (clean labels), as the fine-tune protocol pretrains."""
    tmp_path = tmp_path_factory.mktemp("pretrain")
    cfg = config(tmp_path, "a", method="base", noise_type="none", noise_rate=0.0, meta_size=0, part="a")
    train.run(cfg)
    return tmp_path / "a"


def _classifier(seed=11, num_classes=K, size=32):
    return models.build("tiny", num_classes=num_classes, input_shape=(size, size, 3), seed=seed)


def test_init_from_a_run_folder_loads_its_final_classifier(pretrained):
    classifier = _classifier()
    initial = [v.numpy() for v in classifier.variables]
    loaded = load_initial_weights(classifier, pretrained)
    assert loaded.endswith("ckpt-4 (classifier weights)")  # 200 images of a, batch 50: 4 steps
    reader = tf.train.load_checkpoint(str(pretrained / "checkpoints" / "ckpt-4"))
    stored = [reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
              if not name.startswith("_CHECKPOINTABLE_OBJECT_GRAPH")]
    for before, variable in zip(initial, classifier.variables):  # BatchNorm statistics included
        value = variable.numpy()
        assert any(s.shape == value.shape and np.array_equal(s, value) for s in stored), variable.path
        assert not np.array_equal(before, value), variable.path


def test_init_from_a_weights_file_and_mismatches_in_one_line(pretrained, tmp_path):
    source = _classifier()
    load_initial_weights(source, pretrained)
    path = tmp_path / "clf.weights.h5"
    source.save_weights(str(path))
    target = _classifier(seed=5)
    load_initial_weights(target, path)
    for a, b in zip(source.variables, target.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for source_path in (pretrained, path):
        with pytest.raises(UserError, match=r"--init_from=.*(same --model|fits this classifier)") as error:
            load_initial_weights(_classifier(num_classes=5), source_path)
        assert "\n" not in str(error.value)


def test_noinit_head_takes_the_features_and_keeps_the_fresh_seeded_head(pretrained):
    loaded_all = _classifier()
    load_initial_weights(loaded_all, pretrained)
    fresh = _classifier(seed=3)
    initial_head = [v.numpy() for v in fresh.get_layer("logits").weights]
    message = load_initial_weights(fresh, pretrained, keep_head=False)
    assert message.endswith("(classifier weights), with this run's fresh logits layer")
    head = {v.path for v in fresh.get_layer("logits").weights}
    assert len(head) == 2  # kernel and bias
    for ours, theirs in zip(fresh.variables, loaded_all.variables):
        expected = theirs.numpy()
        if ours.path in head:  # the head: this run's seeded initial values, bit for bit
            expected = initial_head[[v.path for v in fresh.get_layer("logits").weights].index(ours.path)]
        np.testing.assert_array_equal(ours.numpy(), expected, err_msg=ours.path)
    assert not np.array_equal(initial_head[0], loaded_all.get_layer("logits").weights[0].numpy())
    assert dict(Config(**{**SMALL, "init_head": False}).problems())["init_head"] == (
        "--noinit_head only applies with --init_from (a fresh head is the default without it)")


def test_init_from_must_exist_and_be_a_run_folder_or_weights_file(tmp_path):
    (tmp_path / "w.h5").write_text("x")
    for value, message in ((str(tmp_path / "nope"), "does not exist"),
                           (str(tmp_path / "w.h5"), "neither a run folder nor a .weights.h5 file")):
        assert message in dict(Config(**{**SMALL, "init_from": value}).problems())["init_from"]
    with pytest.raises(UserError, match="no checkpoint in"):
        load_initial_weights(_classifier(), tmp_path)


def test_fine_tuning_on_b_starts_from_the_pretrained_weights(pretrained, tmp_path):
    cold = train.run(config(tmp_path, "cold", method="base", part="b"))
    warm = train.run(config(tmp_path, "warm", method="base", part="b", init_from=str(pretrained)))
    assert warm["config"]["init_from"] == str(pretrained) and warm["config"]["part"] == "b"
    assert warm["history"][0]["train/loss"] != cold["history"][0]["train/loss"]
    again = train.run(config(tmp_path, "warm2", method="base", part="b", init_from=str(pretrained)))
    assert again["history"][0]["train/loss"] == warm["history"][0]["train/loss"]  # deterministic start
