"""Config checks and the TF-free registries the flags take their names from."""

import subprocess
import sys

import pytest

from rmwnet_tf.classifiers import CLASSIFIERS
from rmwnet_tf.config import Config, upgrade_saved
from rmwnet_tf.datasets import DATASETS
from rmwnet_tf.meta_steps import META_STEPS, get_meta_step
from rmwnet_tf.methods import METHODS


def choices(name):
    return next(f.metadata["choices"] for f in Config.__dataclass_fields__.values() if f.name == name)


def test_flag_choices_are_the_registries_names():
    assert choices("dataset") == ("cifar10", "cifar100", "cifar10_n", "cifar100_n", "image_folder",
                                  "synthetic") == tuple(DATASETS)
    assert choices("model") == ("resnet32", "wrn28_10", "small_cnn", "tiny", "mobilenet_v3_small",
                                "efficientnet_v2_b0", "resnet50_v2") == tuple(CLASSIFIERS)
    assert choices("trainable") == ("all", "head") and Config().weights == "auto"
    assert choices("meta_step") == ("exact", "jvp", "nested", "head") == tuple(META_STEPS)
    assert Config().meta_step == "exact"
    assert choices("method") == ("base", "mwnet", "mnwnet", "rmnwnet", "gce", "rmnwnet_gce",
                                 "oracle") == tuple(METHODS)


def test_meta_steps_map_to_one_gradient_and_scope_each():
    assert {s.name: (s.grad, s.scope, s.exact) for s in META_STEPS.values()} == {
        "exact": ("double_backward", "full", True), "jvp": ("jvp", "full", True),
        "nested": ("nested", "full", True), "head": ("double_backward", "head", False)}
    with pytest.raises(ValueError, match="unknown meta step 'fast'; known: exact, jvp, nested, head"):
        get_meta_step("fast")


def test_class_counts_come_from_the_dataset_registry():
    assert {d.name: d.num_classes for d in DATASETS.values()} == {
        "cifar10": 10, "cifar100": 100, "cifar10_n": 10, "cifar100_n": 100, "image_folder": None,
        "synthetic": None}
    assert Config(dataset="mnist").problems() == [
        ("dataset", "'mnist' is not one of cifar10, cifar100, cifar10_n, cifar100_n, image_folder, synthetic")]
    # flip2 at 0.65 is allowed for 10 classes and for 100: the limit is 2/3 either way
    assert Config(dataset="cifar100", noise_type="flip2", noise_rate=0.65).problems() == []


@pytest.mark.parametrize("settings, expected", [
    (dict(train_size=500, meta_size=500), [("train_size", "500 leaves no training data after --meta_size=500")]),
    (dict(method="base", train_size=500, meta_size=500), []),  # base has no meta set
    (dict(method="base", meta_size=-1), [("meta_size", "must be >= 0, got -1")]),
    (dict(method="mnwnet", meta_size=0), [("meta_size", "method mnwnet needs meta samples (got --meta_size=0)")]),
    (dict(method="mwnet", source_labels_are_clean=False),
     [("method", "mwnet needs clean meta labels, but --nosource_labels_are_clean says they are unknown; "
                 "use rmnwnet, which needs no clean samples")]),
    (dict(meta_step="head"), []),
    (dict(meta_every=4), []),
    (dict(meta_every=0), [("meta_every", "must be a positive integer, got 0")]),
    # Issue 36: numpy's seed limit, and empty generated splits, only showed up once the data loaded.
    (dict(seed=2**32 - 1), []),
    (dict(seed=2**32), [("seed", "must be between 0 and 4294967295 (2**32 - 1), got 4294967296")]),
    (dict(seed=-1), [("seed", "must be between 0 and 4294967295 (2**32 - 1), got -1")]),
    (dict(part_seed=2**40), []),  # only numpy's SeedSequence reads it: any integer >= 0
    (dict(part_seed=-1), [("part_seed", "must be >= 0, got -1")]),
    (dict(dataset="synthetic", synthetic_test_size=0),
     [("synthetic_test_size", "must be a positive number of images with --dataset=synthetic, got 0")]),
    (dict(synthetic_train_size=0), []),  # only --dataset=synthetic reads it
])
def test_rules_on_settings_alone_live_in_config(settings, expected):
    assert Config(**settings).problems() == expected


@pytest.mark.parametrize("settings, expected", [
    (dict(classes="5,6,7,8,9"), []),
    (dict(classes="dog, frog"), []),  # names are resolved when the data is read
    (dict(classes="3"), [("classes", "needs at least 2 classes, got '3'")]),
    (dict(classes="1,2,1"), [("classes", "lists 1 more than once")]),
    (dict(classes="-1,2"), [("classes", "class indices start at 0, got '-1,2'")]),
    (dict(classes="8,10"), [("classes", "cifar10 has classes 0..9, got '8,10'")]),
    (dict(dataset="synthetic", classes="0,40"), []),  # the generator decides its class count
    (dict(classes="0,1", meta_size=1), [("meta_size", "1 is smaller than the 2 classes of --classes=0,1; "
                                         "the class-balanced meta set needs at least one sample per class")]),
    # the noise is checked against the kept classes: flip2 at 0.6 needs K >= 3
    (dict(classes="0,1", noise_type="flip2", noise_rate=0.6), [("noise_rate", None)]),
    (dict(dataset="cifar10_n", label_key="worse_label", classes="0,1"),
     [("classes", "is not available with --dataset=cifar10_n: its human labels may name a class left out")]),
])
def test_class_selection_is_checked_with_the_flags(settings, expected):
    problems = Config(**settings).problems()
    assert [(flag, message if expected_message else None)
            for (flag, message), (_, expected_message) in zip(problems, expected)] == expected


def test_external_labels_exclude_synthetic_noise(tmp_path):
    labels = tmp_path / "labels.npy"
    labels.write_bytes(b"")
    assert Config(noisy_labels=str(labels), noise_type="flip", noise_rate=0.2).problems() == [
        ("noise_type", "must be 'none' when --noisy_labels supplies the noisy labels")]


def test_registries_and_config_import_no_tensorflow():
    code = ("import sys, rmwnet_tf.config, rmwnet_tf.classifiers, rmwnet_tf.datasets, rmwnet_tf.meta_steps; "
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["False", "False"], result.stderr


@pytest.mark.parametrize("legacy, meta_step", [
    ({"meta_grad": "double_backward", "meta_scope": "full"}, "exact"),
    ({"meta_grad": "jvp", "meta_scope": "full"}, "jvp"),
    ({"meta_grad": "nested", "meta_scope": "full"}, "nested"),
    ({"meta_grad": "jvp", "meta_scope": "head"}, "head"),
])
def test_config_json_of_older_runs_is_read_in_todays_names(legacy, meta_step):
    defaults = Config().to_dict()
    assert upgrade_saved({"seed": 3, **legacy}) == {**defaults, "seed": 3, "meta_step": meta_step}
    assert upgrade_saved({"seed": 3, "meta_step": "jvp"}) == {**defaults, "seed": 3, "meta_step": "jvp"}
    assert upgrade_saved(None) is None


def test_fields_added_since_a_run_was_written_take_their_defaults():
    written_before = {k: v for k, v in Config(seed=4, method="base").to_dict().items()
                      if k not in ("meta_every", "eval_every", "hold_out_meta")}
    assert upgrade_saved(written_before) == Config(seed=4, method="base").to_dict()
    assert "checkpoint_every_steps" not in upgrade_saved(written_before)  # not recorded


def test_weighting_net_fields_do_not_make_a_base_run_different():
    saved = Config(method="base").to_dict()
    other_vnet = {"vnet_optimizer": "adam", "vnet_lr": 0.02, "meta_step": "head", "meta_every": 4}
    assert Config(method="base", **other_vnet).differences_from(saved) == {}
    assert Config(method="base", lr=0.1).differences_from(saved) == {"lr": (0.05, 0.1)}
    meta_saved = Config(method="rmnwnet").to_dict()
    assert Config(method="rmnwnet", vnet_lr=0.02).differences_from(meta_saved) == {"vnet_lr": (0.001, 0.02)}
    assert Config(method="rmnwnet", vnet_lr=0.02).differences_from(meta_saved, ignore=("vnet_lr",)) == {}
