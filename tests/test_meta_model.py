"""The meta step: exact meta-gradient, one BN update, wiring of the methods, Theorem 1.

The exactness tests run for every meta method's training loss: `rmnwnet` (CE) and
`rmnwnet_gce` (the weighting net reads, and the steps weight, per-sample GCE losses).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from rmwnet_tf import lookahead, losses, models
from rmwnet_tf.meta_model import MetaWeightModel
from rmwnet_tf.methods import METHODS
from rmwnet_tf.noise import transition_matrix

# One meta method per training loss: what the look-ahead differentiates differs between them.
TRAIN_LOSS_METHODS = ["rmnwnet", "rmnwnet_gce"]

NUM_CLASSES = 5
BATCH = 16
SHAPE = (8, 8, 3)


def make_batch(seed=0, n=BATCH):
    rng = np.random.default_rng(seed)
    images = lambda: tf.constant(rng.normal(size=(n, *SHAPE)), tf.float32)  # noqa: E731
    labels = lambda: tf.constant(rng.integers(0, NUM_CLASSES, n), tf.int32)  # noqa: E731
    train = {"image": images(), "label": labels()}
    labels()  # a draw that once made clean labels: kept so the seeded batches stay the ones
    #           the finite-difference tolerance was set on (float32 differences of ~1e-7)
    return {"train": train, "meta": {"image": images(), "label": labels()}}


def make_model(method="rmnwnet", *, lr=0.1, vnet_lr=1.0, weight_decay=0.0, vnet_weight_decay=0.0,
               seed=0, **kwargs):
    classifier = models.build("tiny", num_classes=NUM_CLASSES, input_shape=SHAPE, seed=seed)
    vnet = models.build_vnet(seed=seed) if METHODS[method].uses_meta else None
    model = MetaWeightModel(classifier, vnet, method=method,
                            weight_decay=weight_decay, vnet_weight_decay=vnet_weight_decay, **kwargs)
    model.compile(keras.optimizers.SGD(lr),
                  keras.optimizers.SGD(vnet_lr) if vnet is not None else None)
    return model


def lookahead_meta_loss(model, train, meta, vnet_values=None, sample_weights=None):
    return lookahead.lookahead_meta_loss(model.lookahead_context(), train, meta, vnet_values, sample_weights)


def meta_gradient(model, train, meta, objective=None):
    """Reference dL_meta/dTheta by nested tapes (second order) through the virtual step, straight
    to the weighting net's parameters, without updating anything."""
    objective = objective or lookahead_meta_loss
    vnet_values = [tf.convert_to_tensor(v) for v in model.vnet.trainable_variables]
    with tf.GradientTape() as tape:
        tape.watch(vnet_values)
        value = objective(model, train, meta, vnet_values)
    return tape.gradient(value, vnet_values)


def head_lookahead_meta_loss(model, train, meta, vnet_values):
    """L_meta after a virtual step that moves the last Dense layer only (what `head` approximates
    the full step by), written like the full reference: nested tapes, no closed form."""
    context = model.lookahead_context()
    classifier = model.classifier
    dense = classifier.layers[-1]
    moved = [v is dense.kernel or v is dense.bias for v in classifier.trainable_variables]
    assert sum(moved) == 2
    params = [tf.convert_to_tensor(v) for v in classifier.trainable_variables]
    fixed = [tf.convert_to_tensor(v) for v in classifier.non_trainable_variables]
    with tf.GradientTape() as inner:
        inner.watch(params)
        logits, _ = classifier.stateless_call(params, fixed, train["image"], training=True)
        per_sample = context.train_loss(train["label"], logits)
        weighted = tf.reduce_sum(context.sample_weights(per_sample, vnet_values) * per_sample)
    grads = inner.gradient(weighted, params)
    w_hat = [p - context.lr * g if m else p for p, g, m in zip(params, grads, moved)]
    return lookahead.meta_objective(context, meta, w_hat, fixed)


def values(variables):
    return [np.array(v) for v in variables]


def rel_error(got, ref):
    got = np.concatenate([np.ravel(g) for g in got])
    ref = np.concatenate([np.ravel(r) for r in ref])
    return np.linalg.norm(got - ref) / np.linalg.norm(ref)


def step_theta_gradient(model, batch, *, jit_compile=False, objective=None):
    """The gradient the production step applied to Theta, read off a plain SGD update."""
    reference = meta_gradient(model, batch["train"], batch["meta"], objective)
    scale = 1.0 / max(float(tf.reduce_max(tf.abs(g))) for g in reference)
    model.vnet_optimizer.learning_rate = scale  # a step of size ~1 keeps float32 cancellation small
    before = values(model.vnet.trainable_variables)
    tf.function(model.train_step, jit_compile=jit_compile)(batch)
    after = values(model.vnet.trainable_variables)
    return [(b - a) / scale for b, a in zip(before, after)], [np.array(r) for r in reference]


@pytest.mark.parametrize("method", TRAIN_LOSS_METHODS)
@pytest.mark.parametrize("meta_step", ["exact", "jvp", "nested"])
@pytest.mark.parametrize("weight_norm", ["sum", "mean"])
def test_production_meta_gradient_matches_nested_reference(method, meta_step, weight_norm):
    model = make_model(method, meta_step=meta_step, weight_norm=weight_norm)
    applied, reference = step_theta_gradient(model, make_batch())
    assert rel_error(applied, reference) <= 1e-4


@pytest.mark.parametrize("method", TRAIN_LOSS_METHODS)
def test_meta_gradient_matches_reference_under_xla(method):
    model = make_model(method)
    applied, reference = step_theta_gradient(model, make_batch(), jit_compile=True)
    assert rel_error(applied, reference) <= 1e-4


@pytest.mark.parametrize("method", TRAIN_LOSS_METHODS)
def test_reference_weights_the_methods_training_loss(method):
    """The reference differentiates the loss the method trains on, so the tests above pin the
    production steps to that loss: the two losses' look-aheads differ."""
    model, batch = make_model(method), make_batch()
    other = "rmnwnet" if method == "rmnwnet_gce" else "rmnwnet_gce"
    own = meta_gradient(model, batch["train"], batch["meta"])
    model.train_loss_fn = losses.TRAIN_LOSSES[METHODS[other].train_loss]
    assert model.lookahead_context().train_loss is model.train_loss_fn
    assert rel_error(meta_gradient(model, batch["train"], batch["meta"]), own) > 1e-2


def kink_free_direction(model, train, eps, rng):
    """A random direction in Theta along which no hidden ReLU of W changes sign on this batch's
    training losses within +-2 eps: W is only piecewise smooth in Theta, and a central difference
    across a kink measures neither side (it did, by 20-26%, with GCE's losses on a random direction).
    The pre-activations l_i a_j + b_j are linear along the segment, so its two ends tell."""
    theta = values(model.vnet.trainable_variables)  # hidden kernel [1, H], bias [H], output kernel, bias
    per_sample = np.array(model.train_loss_fn(train["label"], model.classifier(train["image"], training=True)))
    direction = [rng.normal(size=t.shape).astype(np.float32) for t in theta]
    centre = np.sign(per_sample[:, None] * theta[0] + theta[1])
    crossing = np.zeros(centre.shape[1], bool)
    for end in (2 * eps, -2 * eps):
        moved = per_sample[:, None] * (theta[0] + end * direction[0]) + theta[1] + end * direction[1]
        crossing |= (np.sign(moved) != centre).any(axis=0)
    assert crossing.sum() < len(crossing) // 4  # most hidden units still move
    direction[0][:, crossing], direction[1][crossing] = 0.0, 0.0
    return [tf.constant(d) for d in direction]


@pytest.mark.parametrize("method", TRAIN_LOSS_METHODS)
def test_reference_meta_gradient_agrees_with_central_finite_differences(method):
    """The virtual step at lr 1 moves the meta loss enough for float32 differences to resolve
    the directional derivative (measured: 0.02% off for CE, 0.07% for GCE)."""
    model = make_model(method, lr=1.0)
    batch = make_batch(1)
    eps = 3e-2
    gradient = meta_gradient(model, batch["train"], batch["meta"])
    theta = [tf.convert_to_tensor(v) for v in model.vnet.trainable_variables]
    direction = kink_free_direction(model, batch["train"], eps, np.random.default_rng(0))
    plus = lookahead_meta_loss(model, batch["train"], batch["meta"],
                               [t + eps * d for t, d in zip(theta, direction)])
    minus = lookahead_meta_loss(model, batch["train"], batch["meta"],
                                [t - eps * d for t, d in zip(theta, direction)])
    finite_difference = float(plus - minus) / (2 * eps)
    analytic = sum(float(tf.reduce_sum(g * d)) for g, d in zip(gradient, direction))
    assert analytic != 0.0
    assert finite_difference == pytest.approx(analytic, rel=1e-2)


@pytest.mark.parametrize("method", TRAIN_LOSS_METHODS)
@pytest.mark.parametrize("meta_step", ["exact", "nested", "head"])
def test_real_step_uses_updated_vnet_and_updates_bn_once(meta_step, method):
    """Weights after a step = one SGD step on the training loss weighted by the *new* VNet at w,
    the VNet reading that same loss; `train/loss` is the mean CE for every method."""
    lr, decay = 0.1, 5e-4
    train_loss = losses.TRAIN_LOSSES[METHODS[method].train_loss]
    model = make_model(method, meta_step=meta_step, lr=lr, weight_decay=decay, vnet_lr=1e-2)
    batch = make_batch(2)
    twin = models.build("tiny", num_classes=NUM_CLASSES, input_shape=SHAPE, seed=0)
    twin.set_weights(model.classifier.get_weights())

    logs = tf.function(model.train_step)(batch)

    x, y = batch["train"]["image"], batch["train"]["label"]
    with tf.GradientTape() as tape:
        logits = twin(x, training=True)  # exactly one BN moving-statistics update
        per_sample = train_loss(y, logits)
        raw = tf.reshape(model.vnet(tf.reshape(tf.stop_gradient(per_sample), [-1, 1])), [-1])
        objective = tf.reduce_sum(tf.stop_gradient(raw / tf.reduce_sum(raw)) * per_sample)
    grads = tape.gradient(objective, twin.trainable_variables)
    for variable, grad in zip(twin.trainable_variables, grads):
        variable.assign_sub(lr * (grad + decay * variable))

    for got, want in zip(model.classifier.trainable_variables, twin.trainable_variables):
        np.testing.assert_allclose(np.array(got), np.array(want), rtol=1e-5, atol=1e-6)
    for got, want in zip(model.classifier.non_trainable_variables, twin.non_trainable_variables):
        np.testing.assert_allclose(np.array(got), np.array(want), rtol=1e-6, atol=1e-7)
    assert float(logs["train/weight_mean"]) == pytest.approx(float(tf.reduce_mean(raw)), rel=1e-6)
    assert float(logs["train/weighted_loss"]) == pytest.approx(float(objective), rel=1e-6)
    mean_ce = float(tf.reduce_mean(losses.cross_entropy(y, logits)))
    assert float(logs["train/loss"]) == pytest.approx(mean_ce, rel=1e-6)


def test_weighted_gce_objective_with_w_one_is_the_mean_gce_step():
    """W = 1 (a saturated VNet): sum_i W~_i l_gce_i is the mean GCE loss, and rmnwnet_gce's real
    step is `gce`'s plain step on it (both normalisations give W~ = 1/n)."""
    batch = make_batch(8)
    for weight_norm in ("sum", "mean"):
        model = make_model("rmnwnet_gce", weight_norm=weight_norm, vnet_lr=1e-2)
        kernel, bias = model.vnet.layers[-1].kernel, model.vnet.layers[-1].bias
        kernel.assign(tf.zeros_like(kernel))
        bias.assign(tf.fill(bias.shape, 100.0))  # sigmoid(100) is 1.0 in float32, its gradient 0
        np.testing.assert_array_equal(model.weight_function(np.linspace(0, 1 / losses.GCE_Q, 7)), np.ones(7))
        plain = make_model("gce")
        logs = tf.function(model.train_step)(batch)
        plain_logs = tf.function(plain.train_step)({"train": batch["train"]})
        y, x = batch["train"]["label"], batch["train"]["image"]
        mean_gce = float(tf.reduce_mean(losses.generalized_cross_entropy(
            y, make_model("gce").classifier(x, training=True))))
        assert float(logs["train/weighted_loss"]) == pytest.approx(mean_gce, rel=1e-6)
        assert float(logs["train/weight_mean"]) == 1.0
        assert float(logs["train/loss"]) == float(plain_logs["train/loss"])  # the mean CE, both
        for got, want in zip(model.classifier.weights, plain.classifier.weights):
            np.testing.assert_allclose(np.array(got), np.array(want), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("method", ["mwnet", "mnwnet", "rmnwnet", "rmnwnet_gce"])
def test_a_meta_step_changes_theta(method):
    model = make_model(method, vnet_lr=1e-2)
    before = values(model.vnet.trainable_variables)
    logs = tf.function(model.train_step)(make_batch(3))
    after = values(model.vnet.trainable_variables)
    assert any(np.abs(a - b).max() > 0 for a, b in zip(after, before))
    assert float(logs["meta/loss"]) > 0


def test_base_never_builds_the_weighting_path():
    model = make_model("base")
    assert model.vnet is None and model.meta_loss_fn is None and model.vnet_optimizer is None
    batch = make_batch(4)
    logs = tf.function(model.train_step)({"train": batch["train"]})  # no meta batch needed
    assert set(logs) == {"train/loss", "train/accuracy"}  # no weights, no meta loss to report
    np.testing.assert_array_equal(model.weight_function(np.array([0.1, 5.0])), [1.0, 1.0])


@pytest.mark.parametrize(
    "method, meta_labels, meta_loss, train_loss",
    [("base", None, None, losses.cross_entropy),
     ("mwnet", "clean", losses.cross_entropy, losses.cross_entropy),
     ("mnwnet", "noisy", losses.cross_entropy, losses.cross_entropy),
     ("rmnwnet", "noisy", losses.mean_absolute_error, losses.cross_entropy),
     ("rmnwnet_gce", "noisy", losses.mean_absolute_error, losses.generalized_cross_entropy),
     ("gce", None, None, losses.generalized_cross_entropy)],
)
def test_methods_are_wired_as_specified(method, meta_labels, meta_loss, train_loss):
    assert METHODS[method].meta_labels == meta_labels
    model = make_model(method)
    assert model.meta_loss_fn is meta_loss
    assert model.train_loss_fn is train_loss
    if model.vnet is not None:
        assert model.lookahead_context().train_loss is train_loss


def test_unknown_options_are_rejected():
    with pytest.raises(ValueError, match="weight_norm"):
        make_model(weight_norm="median")
    with pytest.raises(ValueError, match="unknown meta step 'magic'; known: exact, jvp, nested, head"):
        make_model(meta_step="magic")
    with pytest.raises(ValueError, match="unknown method"):
        MetaWeightModel(models.build("tiny", num_classes=NUM_CLASSES, input_shape=SHAPE),
                        method="coteaching")


def test_head_step_runs_and_updates_theta():
    model = make_model(meta_step="head", vnet_lr=1e-2)
    before = values(model.vnet.trainable_variables)
    tf.function(model.train_step)(make_batch(6))
    assert any(np.abs(a - b).max() > 0 for a, b in zip(values(model.vnet.trainable_variables), before))


@pytest.mark.parametrize("method", TRAIN_LOSS_METHODS)
def test_head_step_is_the_exact_meta_gradient_of_a_head_only_virtual_step(method):
    """`head`'s closed form (per-sample logit gradients read off the training loss) against the
    nested-tape reference of a virtual step that moves the last Dense layer only."""
    model = make_model(method, meta_step="head")
    applied, reference = step_theta_gradient(model, make_batch(), objective=head_lookahead_meta_loss)
    assert rel_error(applied, reference) <= 1e-4
    full = meta_gradient(model, make_batch()["train"], make_batch()["meta"])
    assert rel_error(reference, full) > 1e-2  # an approximation of the full step, not the same


def test_logit_gradients_are_the_losses_closed_forms():
    """CE: softmax - onehot; GCE (1 - p_y^q)/q: p_y^q (softmax - onehot)."""
    rng = np.random.default_rng(9)
    logits = tf.constant(rng.normal(size=(6, NUM_CLASSES)) * 2, tf.float32)
    labels = tf.constant(rng.integers(0, NUM_CLASSES, 6), tf.int32)
    probs = tf.nn.softmax(logits).numpy()
    delta = probs - np.eye(NUM_CLASSES)[labels.numpy()]
    p_y = probs[np.arange(6), labels.numpy()]
    np.testing.assert_allclose(losses.logit_gradients(losses.cross_entropy, labels, logits), delta,
                               rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(losses.logit_gradients(losses.generalized_cross_entropy, labels, logits),
                               p_y[:, None] ** losses.GCE_Q * delta, rtol=1e-5, atol=1e-7)


def _per_sample_meta_gradient(model, train, meta):
    """dL_meta/d(weight_i) at the current weights: the signal the VNet is trained on (-lr s_i)."""
    raw = model.raw_weights(losses.cross_entropy(train["label"], model.classifier(train["image"])))
    weights = tf.convert_to_tensor(model.normalise(raw))
    with tf.GradientTape() as tape:
        tape.watch(weights)
        value = lookahead_meta_loss(model, train, meta, sample_weights=weights)
    return tape.gradient(value, weights)


def _expected_meta_gradients(model, batch, meta_loss, matrix):
    """E over label noise of the meta-gradients (wrt Theta, and wrt each sample weight), exactly.

    Linearity in the meta labels: E[grad] = sum_c T[y, c] * grad(every meta label set to c).
    """
    theta_total, sample_total = 0.0, 0.0
    for c in range(NUM_CLASSES):
        relabelled = dict(batch["meta"], label=tf.fill([BATCH], c))
        model.meta_loss_fn = lambda labels, logits, c=c: (
            tf.gather(tf.constant(matrix[:, c], tf.float32), batch["meta"]["label"])
            * meta_loss(labels, logits))
        theta = meta_gradient(model, batch["train"], relabelled)
        theta_total = theta_total + np.concatenate([np.ravel(g) for g in theta])
        sample_total = sample_total + np.array(_per_sample_meta_gradient(model, batch["train"], relabelled))
    return theta_total, sample_total


def _cosine(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.parametrize("eta", [0.4, 0.6])
def test_theorem_1_mae_meta_gradient_is_noise_tolerant(eta):
    """Uniform noise: E[MAE meta-gradient] = (1 - eta) * the clean one; CE's is less aligned.

    Alignment is measured on the per-sample meta-gradients (which sample should weigh more):
    the Theta-gradient is a smooth image of them and is nearly parallel for any loss.
    """
    model = make_model()
    batch = make_batch(7)
    noisy_matrix = transition_matrix("uniform", eta, NUM_CLASSES, seed=0)
    cosines = {}
    for name, fn in (("mae", losses.mean_absolute_error), ("ce", losses.cross_entropy)):
        clean_theta, clean_samples = _expected_meta_gradients(model, batch, fn, np.eye(NUM_CLASSES))
        noisy_theta, noisy_samples = _expected_meta_gradients(model, batch, fn, noisy_matrix)
        cosines[name] = _cosine(noisy_samples, clean_samples)
        if name == "mae":
            np.testing.assert_allclose(noisy_theta, (1 - eta) * clean_theta, rtol=1e-3,
                                       atol=1e-3 * np.abs(clean_theta).max())
            np.testing.assert_allclose(noisy_samples, (1 - eta) * clean_samples, rtol=1e-3,
                                       atol=1e-3 * np.abs(clean_samples).max())
    assert cosines["mae"] >= 0.999
    assert cosines["ce"] < 0.99, cosines  # measured: 0.982 at eta=0.4, 0.953 at eta=0.6


def test_fit_under_a_strategy_goes_through_our_symbolic_build_override(monkeypatch):
    """`MetaWeightModel._maybe_symbolic_build` overrides a private Keras hook (why: its docstring).

    No public route avoids Keras' symbolic build under a strategy (fit calls the hook whenever the
    model was created in a strategy scope). If Keras renames the hook or stops calling it, the
    override becomes dead code and multi-worker fit breaks again (tested only with `-m slow`);
    this fails first. pyproject pins keras to the tested minor version for the same reason.
    """
    assert callable(getattr(keras.Model, "_maybe_symbolic_build", None))
    assert "_maybe_symbolic_build" in vars(MetaWeightModel)  # ours, not Keras' inherited one
    calls = []
    override = MetaWeightModel._maybe_symbolic_build

    def spy(self, iterator=None, data_batch=None):
        calls.append((iterator is not None, data_batch))
        return override(self, iterator=iterator, data_batch=data_batch)

    monkeypatch.setattr(MetaWeightModel, "_maybe_symbolic_build", spy)
    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
        model = make_model()
    model.fit(tf.data.Dataset.from_tensors(make_batch(3)), epochs=1, verbose=0)
    assert calls == [(True, None)]
