"""Cross-fitting (--holdout_folds): the folds of one seed partition its training set, each run
predicts only the fold it never trained on, and the cleaning comparison reassembles them."""

import json

import numpy as np
import pytest

from experiments import cleaning_comparison
from rmwnet_tf import data, train
from rmwnet_tf.config import Config
from rmwnet_tf.data.noisy_split import holdout_split

from test_data import indexed_source

FOLDS = 4


def prepared(fold=0, folds=FOLDS, seed=5):
    return data.prepare(indexed_source(num_train=400), noise_type="uniform", noise_rate=0.4, seed=seed, meta_size=50,
                        meta_label_kind="none", hold_out_meta=True, train_size=300, holdout_folds=folds,
                        holdout_fold=fold)


def test_the_folds_of_one_seed_partition_its_training_set_and_keep_its_meta_split():
    whole = prepared(folds=0)
    assert len(whole.heldout_indices) == 0 and len(whole.train_indices) == 250
    heldout = [prepared(fold).heldout_indices for fold in range(FOLDS)]
    np.testing.assert_array_equal(np.sort(np.concatenate(heldout)), whole.train_indices)  # each sample once
    for fold in range(FOLDS):
        split = prepared(fold)
        np.testing.assert_array_equal(np.union1d(split.train_indices, split.heldout_indices), whole.train_indices)
        assert np.intersect1d(split.train_indices, split.heldout_indices).size == 0
        np.testing.assert_array_equal(split.meta_indices, whole.meta_indices)
        np.testing.assert_array_equal(split.given_labels, whole.given_labels)
        # normalised by the images it trains on, not the held-out ones
        np.testing.assert_allclose(split.mean, data.channel_stats(split.source.x_train, split.train_indices)[0])


def test_holdout_split_deals_every_label_evenly_and_is_seeded():
    labels = np.repeat(np.arange(3), [10, 7, 4])
    folds = holdout_split(labels, 4, np.random.default_rng(0))
    for label, size in zip(range(3), (10, 7, 4)):
        counts = np.bincount(folds[labels == label], minlength=4)
        assert counts.max() - counts.min() <= 1 and counts.sum() == size
    np.testing.assert_array_equal(holdout_split(labels, 4, np.random.default_rng(0)), folds)


@pytest.mark.parametrize("folds, fold, flag, message", [
    (1, 0, "holdout_folds", "must be 0 (off) or at least 2, got 1"),
    (-2, 0, "holdout_folds", "must be 0 (off) or at least 2, got -2"),
    (4, 4, "holdout_fold", "must be between 0 and 3 (--holdout_folds=4), got 4"),
    (0, 2, "holdout_fold", "--holdout_fold=2 needs --holdout_folds (how many folds)"),
])
def test_bad_folds_are_refused_in_one_line(folds, fold, flag, message):
    problems = dict(Config(holdout_folds=folds, holdout_fold=fold).problems())
    assert problems[flag] == message


def test_a_fold_run_writes_the_final_classifiers_probabilities_on_its_fold_only(tmp_path):
    config = Config(dataset="synthetic", synthetic_train_size=300, synthetic_test_size=50, noise_type="uniform",
                    noise_rate=0.4, method="base", meta_size=0, model="tiny", batch_size=50, lr_boundaries="",
                    epochs=1, export=False, suspects=0, seed=2, holdout_folds=3, holdout_fold=1,
                    model_dir=str(tmp_path / "fold1"))
    train.run(config)
    folder = tmp_path / "fold1"
    index, probs = np.load(folder / "heldout_index.npy"), np.load(folder / "heldout_probs.npy")
    trained_on = np.load(folder / "sample_index.npy")
    assert len(index) == 100 and len(trained_on) == 200 and np.intersect1d(index, trained_on).size == 0
    assert probs.shape == (100, 10) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def _fold_folder(tmp_path, name, index, probs, steps, **config):
    folder = tmp_path / name
    folder.mkdir()
    np.save(folder / "heldout_index.npy", np.asarray(index))
    np.save(folder / "heldout_probs.npy", np.asarray(probs, np.float32))
    (folder / "results.json").write_text(json.dumps({"steps": steps}))
    (folder / "config.json").write_text(json.dumps({"seed": 0, **config}))
    return folder


def test_the_comparison_reassembles_the_folds_in_the_base_runs_order_with_their_cost(tmp_path):
    base = dict(index=np.array([10, 11, 12, 13]), probs=np.zeros((4, 2), np.float32), steps=100,
                config={"seed": 0})
    first = _fold_folder(tmp_path, "f0", [12, 10], [[0.1, 0.9], [0.2, 0.8]], 40)
    second = _fold_folder(tmp_path, "f1", [13, 11], [[0.3, 0.7], [0.4, 0.6]], 35)
    heldout = cleaning_comparison.load_heldout([first, second], base)
    np.testing.assert_allclose(heldout["probs"], [[0.2, 0.8], [0.4, 0.6], [0.1, 0.9], [0.3, 0.7]])
    assert heldout["base_runs"] == pytest.approx(0.75) and heldout["folds"] == 2
    with pytest.raises(ValueError, match="cover 2 of the Base run's 4 training samples"):
        cleaning_comparison.load_heldout([first], base)
    with pytest.raises(ValueError, match="not a fresh part"):
        cleaning_comparison.load_heldout([first, first], base)
    other_seed = _fold_folder(tmp_path, "f2", [13, 11], [[0.3, 0.7], [0.4, 0.6]], 35, seed=1)
    with pytest.raises(ValueError, match="not the Base run's draw \\(--seed differ\\)"):
        cleaning_comparison.load_heldout([first, other_seed], base)


def test_the_cross_fit_runs_are_the_base_cell_with_one_fold_left_out_each(tmp_path):
    from experiments.reproduction import cross_fit
    from experiments.reproduction.protocol import PROTOCOLS, SETTINGS_BY_NAME, Cell, cell_config

    configs = cross_fit.fold_configs("v3", 0)
    cell = cell_config(Cell(SETTINGS_BY_NAME["uniform40"], "base", 0), PROTOCOLS["v3"], "results/runs_v3")
    assert [(c.holdout_folds, c.holdout_fold) for c in configs] == [(4, j) for j in range(4)]
    assert [c.model_dir for c in configs] == [f"results/runs_v3/uniform40/base_folds/seed0/fold{j}" for j in range(4)]
    for config in configs:
        assert config.differences_from(cell.to_dict(), ignore=("model_dir",)) == {
            "holdout_folds": (0, 4), **({"holdout_fold": (0, config.holdout_fold)} if config.holdout_fold else {})}
    command = cross_fit.comparison_command("v3", 0)
    assert command[2:] == ["--meta_run=results/runs_v3/uniform40/rmnwnet/seed0",
                           "--base_run=results/runs_v3/uniform40/base/seed0",
                           "--heldout_runs=" + ",".join(c.model_dir for c in configs),
                           "--markdown_out=results/v3/cleaning_v3.md"]
    ran = []
    moved = [Config(**{**c.to_dict(), "model_dir": str(tmp_path / f"fold{c.holdout_fold}")}) for c in configs]
    assert cross_fit.run_folds(moved, run_fn=ran.append) == [c.model_dir for c in moved] and ran == moved
    assert cross_fit.main(["--seed=x"]) == 2


def test_v4s_cleaning_comparison_reads_v4s_cells_and_writes_its_own_table(capsys):
    from experiments.reproduction import cross_fit

    assert cross_fit.fold_configs("v4", 1)[2].model_dir == "results/runs_v4/uniform40/base_folds/seed1/fold2"
    assert cross_fit.comparison_command("v4", 1)[2:4] == ["--meta_run=results/runs_v4/uniform40/rmnwnet/seed1",
                                                          "--base_run=results/runs_v4/uniform40/base/seed1"]
    assert cross_fit.comparison_command("v4", 1)[-1] == "--markdown_out=results/cleaning_v4.md"
    assert cross_fit.comparison_command("v3.2", 0)[-1] == "--markdown_out=results/v3_2/cleaning_v3.md"
    assert cross_fit.main(["--protocol=v2.1"]) == 2
    assert "one of v3, v3.1, v3.2, v3.3, v4" in capsys.readouterr().err
