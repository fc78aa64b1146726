"""The meta-signal diagnostic (experiments/reproduction/meta_signal.py): its s_i are the meta loss's
sensitivity to each sample's weight through one virtual SGD step, for both training losses; its
Theta gradient is the nested reference's; a bad command line ends in one line and exit code 2."""

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from experiments.reproduction import meta_signal
from rmwnet_tf import lookahead, losses, models
from rmwnet_tf.meta_model import MetaWeightModel

NUM_CLASSES, BATCH, SHAPE = 5, 16, (8, 8, 3)


def make_model(lr):
    classifier = models.build("tiny", num_classes=NUM_CLASSES, input_shape=SHAPE, seed=0)
    model = MetaWeightModel(classifier, models.build_vnet(seed=1), method="rmnwnet",
                            weight_decay=0.0, vnet_weight_decay=0.0)
    model.compile(keras.optimizers.SGD(lr), keras.optimizers.SGD(1.0))
    return model


def make_batch(seed):
    rng = np.random.default_rng(seed)
    part = lambda: {"image": tf.constant(rng.normal(size=(BATCH, *SHAPE)), tf.float32),  # noqa: E731
                    "label": tf.constant(rng.integers(0, NUM_CLASSES, BATCH), tf.int32)}
    return part(), part()


def context_for(model, loss_name):
    return dataclasses.replace(model.lookahead_context(), train_loss=losses.TRAIN_LOSSES[loss_name])


@pytest.mark.parametrize("loss_name", meta_signal.TRAIN_LOSSES)
def test_s_is_minus_the_meta_loss_derivative_in_each_sample_weight_over_lr(loss_name):
    """s_i = -dL_meta/d eps_i / lr, eps_i added to sample i's normalised weight in the virtual step:
    central differences in float32 at lr 1 (measured: within 1% of s)."""
    model = make_model(lr=1.0)
    train, meta = make_batch(0)
    got = meta_signal.signal(model, train, meta, loss_name)
    context = context_for(model, loss_name)
    weights = context.sample_weights(tf.constant(got.losses))
    eps = 1e-2
    expected = []
    for i in range(BATCH):
        bump = eps * tf.one_hot(i, BATCH)
        plus = lookahead.lookahead_meta_loss(context, train, meta, sample_weights=weights + bump)
        minus = lookahead.lookahead_meta_loss(context, train, meta, sample_weights=weights - bump)
        expected.append(-float(plus - minus) / (2 * eps) / float(context.lr))
    expected = np.array(expected)
    assert np.abs(expected).max() > 1e-3  # a signal to compare
    assert np.linalg.norm(got.s - expected) / np.linalg.norm(expected) < 1e-2


def test_gce_s_is_p_y_to_the_q_times_ce_s_when_the_virtual_step_does_not_move():
    """grad GCE_i = p_y^q grad CE_i, so with the same G the two s differ by p_y^q exactly. G is the
    meta loss's gradient at the virtual weights, which each training loss moves differently, so
    the identity is exact only at lr 0 (at lr > 0 it is not asserted)."""
    model = make_model(lr=0.0)
    train, meta = make_batch(1)
    ce = meta_signal.signal(model, train, meta, "ce")
    gce = meta_signal.signal(model, train, meta, "gce")
    p_y = np.exp(-ce.losses)
    assert np.abs(ce.s).max() > 1e-3
    np.testing.assert_allclose(gce.s, p_y ** losses.GCE_Q * ce.s, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(gce.losses, (1 - p_y ** losses.GCE_Q) / losses.GCE_Q, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("loss_name", meta_signal.TRAIN_LOSSES)
def test_theta_gradient_is_the_nested_reference(loss_name):
    model = make_model(lr=0.1)
    train, meta = make_batch(2)
    got = meta_signal.signal(model, train, meta, loss_name)
    context = context_for(model, loss_name)
    theta = [tf.convert_to_tensor(v) for v in model.vnet.trainable_variables]
    with tf.GradientTape() as tape:
        tape.watch(theta)
        value = lookahead.lookahead_meta_loss(context, train, meta, vnet_values=theta)
    reference = np.concatenate([np.ravel(g) for g in tape.gradient(value, theta)])
    flat = np.concatenate([np.ravel(g) for g in got.gradient])
    assert np.linalg.norm(flat - reference) / np.linalg.norm(reference) < 1e-4


def test_the_row_reads_clean_and_noisy_samples_apart():
    model = make_model(lr=0.1)
    train, meta = make_batch(3)
    signals = [meta_signal.signal(model, train, meta, "ce")]
    noisy = np.arange(BATCH) % 4 == 0
    row = meta_signal.summarise(model, signals, noisy, vnet_lr=1e-3)
    assert row["s_noisy"] == pytest.approx(float(np.mean(signals[0].s[noisy])))
    assert row["s_clean"] == pytest.approx(float(np.mean(signals[0].s[~noisy])))
    np.testing.assert_allclose(row["loss_noisy"], np.percentile(signals[0].losses[noisy], [5, 50, 95]))
    # the gap's change in one SGD step is its first-order change: a central difference over a step
    # back and forth, sized to move the gap by ~1e-3 (resolvable in float32), agrees
    vnet_lr = 1e-3 / abs(meta_signal.summarise(model, signals, noisy, vnet_lr=1.0)["gap_step"])
    predicted = meta_signal.summarise(model, signals, noisy, vnet_lr=vnet_lr)["gap_step"]
    theta = [v.numpy() for v in model.vnet.trainable_variables]
    gaps = []
    for sign in (1, -1):
        for variable, value, g in zip(model.vnet.trainable_variables, theta, signals[0].gradient):
            variable.assign(value - sign * vnet_lr * g)
        gaps.append(meta_signal.summarise(model, signals, noisy, vnet_lr=vnet_lr)["gap"])
    assert (gaps[0] - gaps[1]) / 2 == pytest.approx(predicted, rel=1e-2)


@pytest.mark.parametrize("argv", [["--run=/no/such/run"], ["--batches=3"], ["--run=x", "--batches=0"],
                                  ["--run=x", "--at=end"], ["--run=x", "--colour=red"]])
def test_bad_input_is_one_line_and_exit_code_2(argv, capsys):
    assert meta_signal.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


def test_a_folder_without_config_is_one_line_and_exit_code_2(tmp_path, capsys):
    assert meta_signal.main([f"--run={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: --run={tmp_path}: no config.json there (not a run folder of this tool)\n"
