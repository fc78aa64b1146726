"""The command line: every flagfile parses, bad input stops early with one line naming the flag."""

import pathlib
import subprocess
import sys

import pytest
from absl import flags

from rmwnet_tf import flags as flags_lib

ROOT = pathlib.Path(__file__).resolve().parents[1]
FLAGFILES = sorted((ROOT / "configs").glob("*.flags"))


def parse(argv):
    values = flags.FlagValues()
    flags_lib.define_flags(values)
    values(["prog", *argv])
    return flags_lib.config_from_flags(values)


@pytest.mark.parametrize("path", FLAGFILES, ids=lambda p: p.stem)
def test_every_flagfile_parses(path):
    config = parse([f"--flagfile={path}"])
    problems = config.problems()
    if config.data_dir and not pathlib.Path(config.data_dir).is_dir():  # the CIFAR copy, not extracted
        problems = [p for p in problems if p[0] != "data_dir"]
    assert problems == []


def test_paper_flagfile_values():
    config = parse([f"--flagfile={ROOT / 'configs/cifar10_flip30.flags'}"])
    assert (config.noise_type, config.noise_rate, config.model, config.boundaries) == ("flip", 0.3, "wrn28_10", [36, 38])
    assert (config.batch_size, config.meta_size, config.lr, config.epochs) == (100, 1000, 0.05, 120)
    overridden = parse([f"--flagfile={ROOT / 'configs/cifar10_flip30.flags'}", "--method=base"])
    assert overridden.method == "base"


BAD_INPUTS = [
    (["--dataset=imagenet"], "--dataset"),
    (["--noise_type=flip", "--noise_rate=0.6"], "--noise_rate"),
    (["--noise_type=uniform", "--noise_rate=1.2"], "--noise_rate"),
    (["--noise_type=flip2", "--noise_rate=-0.1"], "--noise_rate"),
    (["--noise_rate=0.3"], "--noise_rate"),  # noise_type none
    (["--dataset=image_folder"], "--data_dir"),
    (["--dataset=image_folder", "--data_dir=/no/such/folder"], "--data_dir"),
    (["--noisy_labels=/no/such/labels.npy"], "--noisy_labels"),
    (["--method=mwnet", "--nosource_labels_are_clean"], "--method"),
    (["--method=rmnwnet", "--meta_size=0"], "--meta_size"),
    (["--batch_size=0"], "--batch_size"),
    (["--lr=-1"], "--lr"),
    (["--lr_boundaries=50,40"], "--lr_boundaries"),
    (["--model=vgg"], "--model"),
    (["--no_such_flag=1"], "no_such_flag"),
]


@pytest.mark.parametrize("argv, flag", BAD_INPUTS, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_bad_input_stops_with_one_line_naming_the_flag(argv, flag, tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts/train.py"), f"--model_dir={tmp_path / 'run'}", *argv],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    assert flag in result.stderr
    errors = [line for line in result.stderr.splitlines() if "rror" in line]
    assert len(errors) == 1, result.stderr
    assert not (tmp_path / "run").exists(), "nothing is done before the flags are checked"


def test_wrong_length_label_file_is_reported_without_traceback(tmp_path):
    import numpy as np

    labels = tmp_path / "labels.npy"
    np.save(labels, np.zeros(7, np.int64))
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts/train.py"), "--dataset=synthetic", "--synthetic_train_size=200",
         "--synthetic_test_size=50", "--meta_size=20", f"--noisy_labels={labels}", "--model=tiny",
         f"--model_dir={tmp_path / 'run'}"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "labels.npy" in result.stderr and "200" in result.stderr
