"""Architecture, initialisation and functional-call properties of rmwnet_tf.models."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from rmwnet_tf.classifiers import CLASSIFIERS
from rmwnet_tf.models import BUILDERS, build, build_vnet

CHEAP_MODELS = ["tiny", "small_cnn", "resnet32"]


def trainable_count(model):
    return sum(int(np.prod(v.shape)) for v in model.trainable_variables)


def layer_kernel(model, name):
    return model.get_layer(name).kernel.numpy()


@pytest.fixture(scope="module")
def wrn():
    # Built once for the whole module (36.5M parameters); 24x24 so the same model also
    # covers "works at other input sizes". Parameter counts do not depend on image size.
    return build("wrn28_10", num_classes=10, input_shape=(24, 24, 3), seed=0)


@pytest.fixture(scope="module")
def resnet():
    return build("resnet32", num_classes=10, seed=0)


# --- architecture ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, num_classes, expected_trainable, expected_total",
    [
        ("resnet32", 10, 464_154, 466_426),  # He et al.'s 0.46M; total adds BN moving stats
        ("resnet32", 100, 470_004, 472_276),
        ("small_cnn", 10, 141_034, 141_674),
        ("tiny", 10, 322, 338),
    ],
)
def test_parameter_counts(name, num_classes, expected_trainable, expected_total):
    model = build(name, num_classes=num_classes)
    assert trainable_count(model) == expected_trainable
    assert model.count_params() == expected_total


def test_wrn_parameter_count(wrn):
    assert trainable_count(wrn) == 36_479_194  # the standard WRN-28-10 figure for K=10
    assert wrn.count_params() == 36_497_146


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="resnet32.*wrn28_10|wrn28_10.*resnet32"):
        build("resnet18", num_classes=10)


@pytest.mark.parametrize("name", CHEAP_MODELS)
def test_other_input_size_gives_logits(name):
    model = build(name, num_classes=7, input_shape=(24, 24, 3), seed=0)
    logits = model(np.zeros((2, 24, 24, 3), np.float32), training=False)
    assert logits.shape == (2, 7)
    assert model.get_layer("logits").activation is keras.activations.linear


def test_wrn_runs_at_other_input_size(wrn):
    logits = wrn(np.random.default_rng(0).normal(size=(2, 24, 24, 3)).astype(np.float32))
    assert logits.shape == (2, 10)
    assert wrn.get_layer("logits").activation is keras.activations.linear


def _check_layer_defaults(model):
    batch_norms = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    assert batch_norms and convs
    for layer in batch_norms:
        assert layer.momentum == 0.9 and layer.epsilon == 1e-5, layer.name
    for layer in convs:
        assert not layer.use_bias, layer.name


@pytest.mark.parametrize("name", CHEAP_MODELS)
def test_batch_norm_and_conv_defaults_match_pytorch(name):
    _check_layer_defaults(build(name, num_classes=10))


def test_wrn_batch_norm_and_conv_defaults_match_pytorch(wrn):
    _check_layer_defaults(wrn)


def test_resnet_stride_two_convs_pad_symmetrically(resnet):
    # PyTorch pads 1 on every side; TF "same" would shift the stride-2 grid by a pixel
    # relative to the x[::2, ::2] shortcut.
    assert resnet.get_layer("stage2_block1_conv1").padding == "valid"
    assert resnet.get_layer("stage2_block1_conv1_pad").padding == ((1, 1), (1, 1))


# --- initialisation ----------------------------------------------------------------------


def _assert_untruncated_normal(weights, expected_std, rel_tol):
    w = weights.reshape(-1)
    assert abs(w.mean()) < 4 * expected_std / math.sqrt(w.size)
    assert w.std() == pytest.approx(expected_std, rel=rel_tol)
    # A normal puts 4.55% of its mass beyond 2σ; Keras' truncated normal puts none there.
    assert np.mean(np.abs(w) > 2 * expected_std) > 0.03


def test_resnet_conv_init_is_he_normal_fan_in_untruncated(resnet):
    kernel = layer_kernel(resnet, "stage3_block5_conv2")  # 3x3x64x64
    _assert_untruncated_normal(kernel, math.sqrt(2 / (9 * 64)), rel_tol=0.03)
    stem = layer_kernel(resnet, "stem_conv")  # fan_in 27 (fan_out would give 144)
    assert stem.std() == pytest.approx(math.sqrt(2 / 27), rel=0.15)


def test_resnet_logits_init(resnet):
    # Reference applies kaiming_normal to the Linear kernel and leaves PyTorch's bias init.
    _assert_untruncated_normal(layer_kernel(resnet, "logits"), math.sqrt(2 / 64), rel_tol=0.12)
    bias = resnet.get_layer("logits").bias.numpy()
    assert np.all(np.abs(bias) <= 1 / 8) and np.any(bias != 0)


def test_wrn_conv_init_is_he_normal_fan_out_untruncated(wrn):
    kernel = layer_kernel(wrn, "group3_block4_conv2")  # 3x3x640x640
    _assert_untruncated_normal(kernel, math.sqrt(2 / (9 * 640)), rel_tol=0.01)
    stem = layer_kernel(wrn, "stem_conv")  # fan_out 144 (fan_in would give 27)
    assert stem.std() == pytest.approx(math.sqrt(2 / 144), rel=0.15)
    shortcut = layer_kernel(wrn, "group1_block1_shortcut")  # 1x1x16x160, fan_out 160
    assert shortcut.std() == pytest.approx(math.sqrt(2 / 160), rel=0.1)


def test_wrn_logits_init(wrn):
    kernel = layer_kernel(wrn, "logits")
    bound = 1 / math.sqrt(640)
    assert np.all(np.abs(kernel) <= bound)
    assert kernel.std() == pytest.approx(bound / math.sqrt(3), rel=0.1)  # std of U(±bound)
    assert np.all(wrn.get_layer("logits").bias.numpy() == 0)


def test_same_seed_same_weights_and_layers_get_distinct_seeds():
    first = build("resnet32", num_classes=10, seed=3)
    again = build("resnet32", num_classes=10, seed=3)
    other = build("resnet32", num_classes=10, seed=4)
    for a, b in zip(first.weights, again.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not np.array_equal(layer_kernel(first, "stem_conv"), layer_kernel(other, "stem_conv"))
    # Two same-shaped layers of one model must not share an initial tensor.
    assert not np.array_equal(
        layer_kernel(first, "stage1_block1_conv1"), layer_kernel(first, "stage1_block1_conv2")
    )


# --- functional (stateless) evaluation -----------------------------------------------------


@pytest.mark.parametrize("name", ["tiny", "resnet32"])
def test_stateless_call_matches_call_and_leaves_model_untouched(name):
    model = build(name, num_classes=10, seed=0)
    images = np.random.default_rng(1).normal(size=(4, 32, 32, 3)).astype(np.float32)
    trainable = [tf.identity(v.value) for v in model.trainable_variables]
    non_trainable = [tf.identity(v.value) for v in model.non_trainable_variables]
    stats_before = [v.numpy() for v in model.non_trainable_variables]

    logits, new_stats = model.stateless_call(trainable, non_trainable, images, training=True)

    for variable, before in zip(model.non_trainable_variables, stats_before):
        np.testing.assert_array_equal(variable.numpy(), before)
    assert any(not np.allclose(new, old) for new, old in zip(new_stats, stats_before))

    expected_logits = model(images, training=True)  # now really updates the moving stats
    np.testing.assert_array_equal(np.asarray(logits), np.asarray(expected_logits))
    for variable, new in zip(model.non_trainable_variables, new_stats):
        np.testing.assert_allclose(variable.numpy(), np.asarray(new), rtol=1e-6, atol=1e-7)


def test_virtual_weights_are_differentiable_under_xla():
    """The lookahead pattern: evaluate at w - lr * g(Θ) and differentiate w.r.t. Θ."""
    model = build("tiny", num_classes=3, input_shape=(8, 8, 3), seed=0)
    step_scale = tf.Variable(0.1)
    images = tf.random.stateless_normal((4, 8, 8, 3), seed=[0, 1])

    @tf.function(jit_compile=True)
    def meta_gradient():
        with tf.GradientTape() as tape:
            virtual = [v - step_scale * tf.ones_like(v) for v in model.trainable_variables]
            non_trainable = [v.value for v in model.non_trainable_variables]
            logits, _ = model.stateless_call(virtual, non_trainable, images, training=True)
            loss = tf.reduce_mean(tf.square(logits))
        return tape.gradient(loss, step_scale)

    grad = meta_gradient()
    assert grad is not None and np.isfinite(grad.numpy()) and grad.numpy() != 0


def test_builds_and_trains_under_mirrored_strategy():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        model = build("tiny", num_classes=3, input_shape=(8, 8, 3), seed=0)
        optimizer = keras.optimizers.SGD(0.1)
        optimizer.build(model.trainable_variables)
    images = tf.random.stateless_normal((4, 8, 8, 3), seed=[0, 2])
    labels = tf.constant([0, 1, 2, 0])

    @tf.function
    def step():
        def replica_step():
            with tf.GradientTape() as tape:
                logits = model(images, training=True)
                loss = tf.reduce_mean(
                    keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
                )
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            return loss

        return strategy.reduce("SUM", strategy.run(replica_step), axis=None)

    kernel_before = model.get_layer("block_conv").kernel.numpy()
    assert np.isfinite(step().numpy())
    assert not np.array_equal(kernel_before, model.get_layer("block_conv").kernel.numpy())


# --- weighting net -----------------------------------------------------------------------


def test_vnet_init_bounds_and_output_range():
    vnet = build_vnet(hidden=100, seed=0)
    hidden, out = vnet.get_layer("vnet_hidden"), vnet.get_layer("vnet_weight")
    assert hidden.kernel.shape == (1, 100) and out.kernel.shape == (100, 1)
    for layer, fan_in in [(hidden, 1), (out, 100)]:
        bound = 1 / math.sqrt(fan_in)
        for tensor in (layer.kernel.numpy(), layer.bias.numpy()):
            assert np.all(np.abs(tensor) <= bound)
            assert np.any(tensor != 0)
    # Bias is U(±1) for the hidden layer: spread, not a constant.
    assert hidden.bias.numpy().std() == pytest.approx(1 / math.sqrt(3), rel=0.25)

    losses = np.linspace(0, 20, 64, dtype=np.float32)[:, None]
    weights = np.asarray(vnet(losses))
    assert weights.shape == (64, 1)
    assert np.all((weights > 0) & (weights < 1))


def test_vnet_seeded_and_validates_hidden():
    a, b = build_vnet(seed=5), build_vnet(seed=5)
    for x, y in zip(a.weights, b.weights):
        np.testing.assert_array_equal(x.numpy(), y.numpy())
    with pytest.raises(ValueError):
        build_vnet(hidden=0)


def test_every_registered_classifier_has_a_builder():
    assert list(CLASSIFIERS) == ["resnet32", "wrn28_10", "small_cnn", "tiny", "mobilenet_v3_small",
                                 "efficientnet_v2_b0", "resnet50_v2"]
    assert set(BUILDERS) == set(CLASSIFIERS)  # the keras.applications ones: tests/test_pretrained.py


def test_unknown_model_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown model 'vgg16'; known: resnet32, wrn28_10, small_cnn, tiny, "
                                         "mobilenet_v3_small, efficientnet_v2_b0, resnet50_v2"):
        build("vgg16", num_classes=10)
