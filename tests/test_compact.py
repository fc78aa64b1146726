"""A kept run's compact per-sample file: what it keeps, for whom, and that the readers get it back."""

import json

import numpy as np
import pytest

from experiments.reproduction import compact
from experiments.reproduction.compact import (
    CLEANING_FIELDS,
    HELDOUT_FIELDS,
    WEIGHT_FIGURE_FIELDS,
    compact_run,
    fields_read,
    read_samples,
    run_folders,
)
from rmwnet_tf.outputs import write_heldout_outputs, write_sample_outputs

PROBS = np.array([[0.7, 0.1, 0.1, 0.1], [0.25, 0.25, 0.25, 0.25], [1 / 3, 1 / 3, 1 / 6, 1 / 6],
                  [0.0, 0.0, 1e-9, 1.0 - 1e-9], [0.4, 0.3, 0.2, 0.1]], np.float32)


def _finished_run(folder, *, with_probs=True):
    """The tool's own per-sample outputs (rmwnet_tf.outputs) for 5 training samples in source order."""
    folder.mkdir(parents=True)
    samples = dict(index=np.array([3, 7, 9, 12, 40000]), given=np.array([1, 2, 0, 3, 1]),
                   clean=np.array([1, 0, 0, 2, 1]), predicted=np.array([1, 0, 0, 2, 1]),
                   weight=np.array([0.5, 0.2, 0.5, 0.2, 0.912345678]), loss=np.array([1.0, 0.3, 2.0, 0.3, 0.123456789]),
                   probs=PROBS)
    write_sample_outputs(folder, samples)
    if not with_probs:
        (folder / "pred_probs.npy").unlink()
    (folder / "config.json").write_text("{}")
    (folder / "results.json").write_text(json.dumps({"steps": 10}))
    return folder


def test_the_tools_outputs_read_most_suspicious_first(tmp_path):
    samples = read_samples(_finished_run(tmp_path / "run"))
    # lowest weight first (indices 7 and 12 tie on weight and loss: lower index first), then highest loss
    np.testing.assert_array_equal(samples["index"], [7, 12, 9, 3, 40000])
    np.testing.assert_array_equal(samples["rank"], [1, 2, 3, 4, 5])
    np.testing.assert_array_equal(samples["given"], [2, 3, 0, 1, 1])
    np.testing.assert_array_equal(samples["predicted"], [0, 2, 0, 1, 1])
    np.testing.assert_array_equal(samples["noisy"], [True, True, False, False, False])
    np.testing.assert_array_equal(samples["weight"], [0.2, 0.2, 0.5, 0.5, 0.912346])  # the CSV's 6 digits
    np.testing.assert_array_equal(samples["loss"], [0.3, 0.3, 2.0, 1.0, 0.123457])
    np.testing.assert_array_equal(samples["probs"], PROBS[[1, 3, 2, 0, 4]])
    assert samples["heldout_index"] is None and samples["heldout_probs"] is None


def test_compact_run_keeps_exactly_the_fields_asked_in_small_types_and_removes_the_rest(tmp_path):
    folder = _finished_run(tmp_path / "run")
    full = read_samples(folder)
    assert compact_run(folder, CLEANING_FIELDS + WEIGHT_FIGURE_FIELDS) == folder / "samples.npz"
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "results.json", "samples.npz"]
    with np.load(folder / "samples.npz") as stored:
        assert {name: stored[name].dtype.name for name in stored.files} == {
            "index": "uint16", "given": "uint8", "predicted": "uint8", "noisy": "bool", "loss": "float32",
            "probs": "float32", "weight": "float32"}
    kept = read_samples(folder)
    for name in ("index", "given", "predicted", "noisy", "rank", "weight", "loss", "probs"):
        np.testing.assert_array_equal(kept[name], full[name])  # exact: float32 holds the CSV's 6 digits
        assert kept[name].dtype == full[name].dtype
    assert compact_run(folder) is None  # nothing left to compact: the folder stays as it is
    assert (folder / "samples.npz").exists()



def test_compaction_keeps_the_runs_own_outputs_over_an_older_samples_file_beside_them(tmp_path):
    """A run continued from a compacted one (cells.continue_earlier_run) once carried the earlier
    run's samples.npz; compaction re-read it and kept the earlier run's data (v4's uniform40/
    rmnwnet/seed0: epoch 10's losses, and no probabilities, in place of epoch 30's)."""
    folder = _finished_run(tmp_path / "run")
    fresh = read_samples(folder)
    np.savez_compressed(folder / "samples.npz", loss=np.array([9.0, 9.0], np.float32))  # an older run's
    compact_run(folder, CLEANING_FIELDS)
    kept = read_samples(folder)
    for name in ("index", "loss", "probs"):
        np.testing.assert_array_equal(kept[name], fresh[name])

def test_a_run_nobody_reads_per_sample_keeps_no_per_sample_file(tmp_path):
    folder = _finished_run(tmp_path / "run")
    np.savez_compressed(folder / "samples.npz", loss=np.zeros(5))  # an earlier compaction's, read no more
    assert compact_run(folder, ()) is None
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "results.json"]
    assert all(value is None for value in read_samples(folder).values())


def test_a_field_the_run_lacks_is_left_out(tmp_path):
    folder = _finished_run(tmp_path / "run", with_probs=False)
    compact_run(folder, ("loss", "probs"))
    with np.load(folder / "samples.npz") as stored:
        assert stored.files == ["loss"]


def test_a_fold_run_keeps_its_held_out_probabilities(tmp_path):
    folder = _finished_run(tmp_path / "fold1")
    write_heldout_outputs(folder, dict(index=np.array([44, 5]), probs=PROBS[:2]))
    assert fields_read(folder) == HELDOUT_FIELDS
    compact_run(folder)
    kept = read_samples(folder)
    np.testing.assert_array_equal(kept["heldout_index"], [44, 5])
    np.testing.assert_array_equal(kept["heldout_probs"], PROBS[:2])
    assert kept["loss"] is None and fields_read(folder) == HELDOUT_FIELDS


def test_the_cleaning_comparison_reads_the_same_run_before_and_after(tmp_path):
    from experiments import cleaning_comparison

    folder = _finished_run(tmp_path / "run")
    before = cleaning_comparison.load_run(folder)
    compact_run(folder, CLEANING_FIELDS)
    after = cleaning_comparison.load_run(folder)
    for key in ("index", "given", "noisy", "rank", "predicted", "loss", "probs"):
        np.testing.assert_array_equal(after[key], before[key])
    np.testing.assert_array_equal(before["index"], [3, 7, 9, 12, 40000])  # source order, as pred_probs.npy
    np.testing.assert_array_equal(after["probs"], PROBS)
    assert after["steps"] == 10


def test_a_value_float32_cannot_hold_to_6_digits_keeps_its_column_in_float64(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    write_sample_outputs(folder, dict(index=np.array([0, 1]), given=np.array([0, 1]), predicted=np.array([0, 1]),
                                      weight=np.array([1.23456e-44, 0.5]), loss=np.array([0.25, 3.0]),
                                      probs=PROBS[:2, :2]))
    full = read_samples(folder)
    compact_run(folder, ("weight", "loss"))
    with np.load(folder / "samples.npz") as stored:
        assert (stored["weight"].dtype.name, stored["loss"].dtype.name) == ("float64", "float32")
    kept = read_samples(folder)
    np.testing.assert_array_equal(kept["weight"], [1.23456e-44, 0.5])
    np.testing.assert_array_equal(kept["weight"], full["weight"])
    np.testing.assert_array_equal(kept["loss"], full["loss"])


def _cell(root, runs_dir, setting, method, seed):
    folder = root / runs_dir / setting / method / f"seed{seed}"
    folder.mkdir(parents=True)
    (folder / "results.json").write_text("{}")
    return folder


def test_per_sample_data_is_kept_where_the_weight_figure_or_the_cleaning_comparison_reads_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # results/runs_v3 is protocol v3's own runs folder, relative to here
    v3, variant = "results/runs_v3", "results/runs_v3_head"
    # the figure: the lowest finished seed of each meta method
    assert fields_read(_cell(tmp_path, variant, "uniform60", "mwnet", 0)) == WEIGHT_FIGURE_FIELDS
    assert fields_read(_cell(tmp_path, variant, "uniform60", "mwnet", 1)) == ()
    assert fields_read(_cell(tmp_path, variant, "uniform60", "gce", 0)) == ()
    assert fields_read(_cell(tmp_path, variant, "uniform60", "rmnwnet_gce", 0)) == WEIGHT_FIGURE_FIELDS  # a W too
    # the comparison: Base and RMNW-Net of cross_fit.SETTING in a protocol's own runs folder
    assert fields_read(_cell(tmp_path, v3, "uniform40", "base", 0)) == CLEANING_FIELDS
    assert fields_read(_cell(tmp_path, v3, "uniform40", "rmnwnet", 0)) == (
        "loss", "weight", "noisy", "index", "given", "predicted", "probs")
    assert fields_read(_cell(tmp_path, variant, "uniform40", "base", 0)) == ()
    assert fields_read(_cell(tmp_path, "results/runs_v3_1", "uniform40", "base", 0)) == ()  # no comparison there
    assert fields_read(_cell(tmp_path, v3, "uniform60", "base", 0)) == ()
    # a seed finished before a lower one keeps its data until the lower one exists
    later = _cell(tmp_path, v3, "flip30", "rmnwnet", 2)
    assert fields_read(later) == WEIGHT_FIGURE_FIELDS
    _cell(tmp_path, v3, "flip30", "rmnwnet", 1)
    assert fields_read(later) == ()
    pretrain = tmp_path / v3 / "pretrain"
    pretrain.mkdir()
    assert fields_read(pretrain) == ()


def test_the_one_off_command_compacts_every_run_folder_once_and_skips_symlinks(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    real = _finished_run(tmp_path / "results" / "runs_x" / "uniform60" / "mnwnet" / "seed0")
    alias = tmp_path / "results" / "runs_y" / "uniform60" / "mnwnet"
    alias.mkdir(parents=True)
    (alias / "seed0").symlink_to(real)
    assert run_folders("results") == [real.relative_to(tmp_path)]
    assert compact.main(["results"]) == 0
    assert capsys.readouterr().out.startswith("results/runs_x/uniform60/mnwnet/seed0: loss, weight, noisy (")
    assert sorted(p.name for p in real.iterdir()) == ["config.json", "results.json", "samples.npz"]
    assert compact.main([]) == 2


def test_a_fake_trainer_that_wrote_nothing_leaves_nothing_to_compact(tmp_path):
    assert compact_run(tmp_path / "never_written") is None
    assert not (tmp_path / "never_written").exists()
    with pytest.raises(ValueError, match="hold different samples"):
        compact._positions(np.array([1, 2]), np.array([1, 3]), "run")


def test_restoring_outputs_refuses_bad_input_in_one_line(tmp_path, capsys):
    from experiments.reproduction import restore_outputs

    assert restore_outputs.main([]) == 2
    assert capsys.readouterr().err.strip() == f"error: {restore_outputs.USAGE}"
    assert restore_outputs.main([f"--run={tmp_path}"]) == 2
    assert capsys.readouterr().err.strip() == f"error: --run={tmp_path}: not a finished run (no results.json)"
