"""The public API (rmwnet_tf.MetaWeightModel) under a two-replica MirroredStrategy (two logical CPUs).

The logical devices must be configured before TensorFlow initialises, so each scenario runs in a
subprocess (tests/helpers/api_distributed.py, tests/test_api.py's data and classifier).

Tolerance of "the same as one device": the mirrored step all-reduces gradients and gathers the
per-sample vectors, so it sums the same float32 numbers in another order; the two runs of 6
(rmnwnet) and 8 (base) steps measured at most 7e-8 apart in any weight or optimizer slot, the logs
within 1 float32 ulp (1.2e-7 at ~1). rtol 1e-5 / atol 1e-6 leave that an order of
magnitude or more of room, while a real semantic difference (a per-replica instead of a global
mean: a factor of 2 in a gradient; a metric over half the samples) is off by far more.
"""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

SCRIPT = pathlib.Path(__file__).parent / "helpers" / "api_distributed.py"
ROOT = SCRIPT.parents[2]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
RTOL, ATOL = 1e-5, 1e-6


def run(*args):
    result = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300,
                            env=ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    line = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def assert_same_training(got, want):
    assert got["iterations"] == want["iterations"]
    assert len(got["weights"]) == len(want["weights"])  # classifier, vnet and both optimizers' slots
    for a, b in zip(got["weights"], want["weights"], strict=True):
        np.testing.assert_allclose(np.array(a), np.array(b), rtol=RTOL, atol=ATOL)
    assert sorted(got["logs"]) == sorted(want["logs"])
    for key, values in want["logs"].items():
        np.testing.assert_allclose(got["logs"][key], values, rtol=RTOL, atol=ATOL, err_msg=key)


def assert_same_outputs(got, want):
    """evaluate, predict, sample_weights, rank_suspects of the distributed model = one device's."""
    for key in ("evaluate7", "evaluate48"):
        assert got[key] == pytest.approx(want[key], rel=RTOL), key
    np.testing.assert_allclose(got["predict7"], want["predict7"], rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(got["predict7"], got["logits"], rtol=0, atol=0)  # in order, uneven splits too
    np.testing.assert_allclose(got["sample_weights"], want["sample_weights"], rtol=RTOL, atol=ATOL)
    assert got["ranking"]["indices"] == want["ranking"]["indices"]
    np.testing.assert_allclose(got["ranking"]["weights"], want["ranking"]["weights"], rtol=RTOL, atol=ATOL)


def test_mirrored_fit_evaluate_predict_and_rank_match_one_device():
    runs = run("train", "default", "mirrored")
    single, mirrored = runs["default"], runs["mirrored"]
    assert (single["replicas"], mirrored["replicas"]) == (1, 2)
    # rmnwnet on arrays (2 epochs x 3 steps of 16, meta batches of 12, validation_data) and base
    # on a tf.data pipeline (2 epochs x 4 batches of 12).
    for method in ("rmnwnet", "base"):
        assert_same_training(mirrored[method], single[method])
    assert_same_outputs(mirrored["rmnwnet"], single["rmnwnet"])
    # batch 7 splits 4 + 3 over the replicas: the evaluation is still over every sample (before
    # the fix, Keras' mean of the replicas' means: 0.370 instead of 0.375 on an untrained model).
    assert mirrored["rmnwnet"]["evaluate7"] == pytest.approx(mirrored["rmnwnet"]["evaluate48"], rel=RTOL)


def test_compile_outside_the_scope_trains_as_inside():
    """The default optimizers are created in the model's strategy, wherever compile is called."""
    runs = run("train", "default", "mirrored_compile_outside")
    single, outside = runs["default"], runs["mirrored_compile_outside"]
    assert outside["replicas"] == 2
    assert_same_training(outside["rmnwnet"], single["rmnwnet"])
    assert_same_outputs(outside["rmnwnet"], single["rmnwnet"])


SCOPES = ("built in different tf.distribute strategy scopes (or one in none): build both inside the same "
          "`with strategy.scope():`")
SPLIT = "does not split evenly over the 2 replicas of the tf.distribute strategy; pass a multiple of 2"


def test_what_cannot_work_under_a_strategy_is_refused_in_one_sentence():
    refused = run("refusals")
    expected = {
        "classifier_outside": f"the classifier and the MetaWeightModel were {SCOPES}",
        "vnet_outside": f"the vnet and the MetaWeightModel were {SCOPES}",
        "model_outside": f"the classifier and the MetaWeightModel were {SCOPES}",
        "optimizer_outside": "compile(): the optimizer was created outside the tf.distribute strategy scope of "
                             "the model: create it inside the same `with strategy.scope():`",
        "odd_batch_size": f"fit(): batch_size=15 {SPLIT}",
        "odd_last_batch": "fit(): the last training batch holds 15 samples, which do not split evenly over the "
                          "2 replicas; pick a batch_size that leaves a multiple of 2 (or none) over, or drop those "
                          "samples",
        "odd_meta_batch_size": f"fit(): meta_batch_size=11 {SPLIT}",
        "odd_dataset_batch": "fit(): a training batch of the dataset does not split evenly over the replicas of "
                             "the tf.distribute strategy: batch it in multiples of the replica count "
                             "(drop_remainder=True)",
    }
    assert sorted(refused) == sorted(expected)
    for case, message in expected.items():
        assert refused[case] == ["ValueError", message], case
