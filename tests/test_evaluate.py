"""evaluate(): every number against a plain numpy reference computed from the same classifier."""

import numpy as np
import pytest

from rmwnet_tf import data as data_lib
from rmwnet_tf import evaluate as evaluate_lib
from rmwnet_tf import models
from rmwnet_tf.meta_model import MetaWeightModel


def _data(method_labels="noisy"):
    source = data_lib.load_source("synthetic", image_size=8, synthetic_train_size=230,
                                  synthetic_test_size=70, seed=1)
    return data_lib.prepare(source, noise_type="uniform", noise_rate=0.5, seed=1, meta_size=30,
                            meta_label_kind=method_labels)


def _model(data, method="rmnwnet"):
    classifier = models.build("tiny", num_classes=10, input_shape=(8, 8, 3), seed=0)
    vnet = models.build_vnet(seed=1) if method != "base" else None
    return MetaWeightModel(classifier, vnet, method=method)


def _reference_probs(model, data, indices, images):
    x = (images[indices].astype(np.float32) / 255.0 - data.mean) / data.std
    logits = np.asarray(model.classifier(x, training=False), np.float64)
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("batch_size", [50, 64])  # with and without a short last batch
def test_metrics_equal_the_numpy_reference(batch_size):
    data = _data()
    model = _model(data)
    result = evaluate_lib.evaluate(model, data, batch_size=batch_size)
    m = result.metrics

    test_probs = _reference_probs(model, data, np.arange(70), data.source.x_test)
    y_test = data.source.y_test
    assert m["test/accuracy"] == pytest.approx((test_probs.argmax(-1) == y_test).mean(), abs=1e-12)
    assert m["test/loss"] == pytest.approx(-np.log(test_probs[np.arange(70), y_test]).mean(), rel=1e-4)

    index = data.train_indices
    probs = _reference_probs(model, data, index, data.source.x_train)
    given, clean = data.given_labels[index], data.clean_labels[index]
    predicted = probs.argmax(-1)
    noisy = given != clean
    assert 0 < noisy.sum() < len(index)
    assert m["fit/clean_fitted"] == pytest.approx((predicted == given)[~noisy].mean(), abs=1e-12)
    assert m["fit/noisy_memorised"] == pytest.approx((predicted == given)[noisy].mean(), abs=1e-12)
    assert m["fit/noisy_corrected"] == pytest.approx((predicted == clean)[noisy].mean(), abs=1e-12)
    loss = -np.log(probs[np.arange(len(index)), given])
    np.testing.assert_allclose(result.samples["loss"], loss, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(result.samples["train_loss"], result.samples["loss"])  # a CE method
    np.testing.assert_allclose(result.samples["probs"], probs, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(result.samples["index"], index)
    weight = model.weight_function(result.samples["loss"])
    assert m["weights/mean"] == pytest.approx(weight.mean(), rel=1e-6)
    assert m["weights/noisy_mean"] == pytest.approx(weight[noisy].mean(), rel=1e-6)
    from rmwnet_tf.metrics import detection_auc
    assert m["detection/auc"] == detection_auc(weight, noisy)
    assert m["detection/auc_loss"] == detection_auc(-result.samples["loss"], noisy)

    meta_probs = _reference_probs(model, data, data.meta_indices, data.source.x_train)
    picked = meta_probs[np.arange(30), data.meta_labels]
    assert m["meta/mae"] == pytest.approx((2 * (1 - picked)).mean(), rel=1e-5)
    assert m["meta/accuracy"] == pytest.approx((meta_probs.argmax(-1) == data.meta_labels).mean(), abs=1e-12)


def test_the_weighting_net_reads_the_gce_loss_and_the_small_loss_rule_the_ce():
    """rmnwnet_gce: every weight number is W of the per-sample GCE loss, what W reads in training;
    `loss` (detection/auc_loss, sample_scores.csv) stays the CE, as for every method."""
    from rmwnet_tf.losses import GCE_Q
    from rmwnet_tf.metrics import detection_auc
    data = _data()
    model = _model(data, "rmnwnet_gce")
    result = evaluate_lib.evaluate(model, data, batch_size=64)
    m, samples = result.metrics, result.samples
    index = data.train_indices
    probs = _reference_probs(model, data, index, data.source.x_train)
    p_given = probs[np.arange(len(index)), data.given_labels[index]]
    gce = (1 - p_given**GCE_Q) / GCE_Q
    np.testing.assert_allclose(samples["train_loss"], gce, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(samples["loss"], -np.log(p_given), rtol=1e-4, atol=1e-6)
    assert np.abs(samples["train_loss"] - samples["loss"]).max() > 0.1  # the two differ
    weight = model.weight_function(samples["train_loss"])
    np.testing.assert_array_equal(samples["weight"], weight)
    assert not np.allclose(model.weight_function(samples["loss"]), weight, rtol=1e-3, atol=0)
    noisy = samples["noisy"]
    assert m["weights/mean"] == pytest.approx(weight.mean(), rel=1e-6)
    assert m["detection/auc"] == detection_auc(weight, noisy)
    assert m["detection/auc_loss"] == detection_auc(-samples["loss"], noisy)


@pytest.mark.parametrize("method", ["rmnwnet", "rmnwnet_gce"])
def test_auc_of_the_weight_is_the_loss_auc_or_its_mirror(method):
    """W depends on the training loss alone, a decreasing function of p_y as the CE is: its AUC is
    the small-loss AUC when W falls with the loss, its mirror when W rises."""
    data = _data()
    model = _model(data, method)
    m = evaluate_lib.evaluate(model, data, batch_size=50).metrics
    if m["weights/loss_spearman"] < 0:
        assert m["detection/auc"] == pytest.approx(m["detection/auc_loss"], abs=1e-9)
    else:
        assert m["detection/auc"] == pytest.approx(1 - m["detection/auc_loss"], abs=1e-9)


def test_base_has_no_weight_metrics_and_unknown_clean_labels_no_detection():
    data = _data("none")
    m = evaluate_lib.evaluate(_model(data, "base"), data, batch_size=50).metrics
    assert not any(key.startswith("weights/") for key in m) and "detection/auc" not in m
    assert "detection/auc_loss" in m and "meta/mae" not in m
    source = data.source
    unknown = data_lib.prepare(source, noise_type="none", noise_rate=0.0, seed=1, meta_size=30,
                               meta_label_kind="noisy", source_labels_are_clean=False)
    m = evaluate_lib.evaluate(_model(unknown), unknown, batch_size=50).metrics
    assert not any(key.startswith(("detection/", "fit/noisy", "fit/clean")) for key in m)
    assert {"test/accuracy", "fit/given_accuracy", "weights/mean", "meta/mae"} <= set(m)
