"""The command line: every flagfile parses, bad input stops early with one line naming the flag."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from rmwnet_tf.methods import METHODS
from absl import flags

from rmwnet_tf import flags as flags_lib

ROOT = pathlib.Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}  # the script must import this checkout's package
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
    (["--dataset=synthetic", "--meta_size=5", "--meta_batch_size=5"], "meta_size=5 is smaller than the 10 classes; the class-balanced meta set needs at least one sample per class (--meta_size >= 10)"),
    (["--meta_size=50", "--meta_batch_size=100"], "--meta_batch_size: 100 exceeds the 50 meta samples"),
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
        capture_output=True, text=True, timeout=120, env=ENV,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    assert flag in result.stderr
    errors = [line for line in result.stderr.splitlines() if "rror" in line]
    assert len(errors) == 1, result.stderr
    assert not (tmp_path / "run").exists(), "nothing is done before the flags are checked"


def _flagfile(tmp_path, name, content: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(content)
    return f"--flagfile={path}"


# Issue 22: absl's own reports were two lines and exit 1, a traceback, or 148 lines of help.
PARSE_ERRORS = {
    "unknown_flag": (lambda tmp: ["--no_such_flag=1"],
                     "error: unknown flag --no_such_flag; python scripts/train.py --helpshort lists the flags"),
    "misspelt_flag": (lambda tmp: ["--metod=base"], "error: unknown flag --metod (did you mean --meta_batch_size or "
                      "--meta_every or --meta_size or --meta_step or --method?); "),
    "bad_enum": (lambda tmp: ["--method=foo"], "error: flag --method=foo: value should be one of "
                 f"<{'|'.join(METHODS)}>; "),
    "bad_int": (lambda tmp: ["--epochs=abc"], "error: flag --epochs=abc: invalid literal for int()"),
    "missing_flagfile": (lambda tmp: ["--flagfile=/no/such.flags"], "error: Unable to open flagfile: "),
    "binary_flagfile": (lambda tmp: [_flagfile(tmp, "bin.flags", b"--epochs=2\n\xff\xfe\x00junk\n")],
                        "error: --flagfile={tmp}/bin.flags is not a text file (invalid start byte at byte 11); "
                        "a flagfile holds one --flag=value per line"),
    "garbage_line": (lambda tmp: [_flagfile(tmp, "garbage.flags", b"--epochs=2\nmethod=base\n")],
                     "error: unexpected argument 'method=base': flags start with -- (in a flagfile too: one "
                     "--flag=value per line); python scripts/train.py --helpshort lists the flags"),
    "stray_argument": (lambda tmp: ["stray"], "error: unexpected argument 'stray': flags start with --"),
}


@pytest.mark.parametrize("case", sorted(PARSE_ERRORS))
def test_flag_parsing_errors_are_one_line_with_exit_2(tmp_path, case):
    argv, expected = PARSE_ERRORS[case]
    line = one_error_line(train_cli(f"--model_dir={tmp_path / 'run'}", *argv(tmp_path), timeout=120))
    assert line.startswith(expected.format(tmp=tmp_path))
    assert not (tmp_path / "run").exists()


# Issue 22: values absl accepts but a run cannot use, refused before TensorFlow is imported.
VALUE_ERRORS = [
    (["--image_size=100000"], "error: --image_size: must be between 8 and 1024 pixels, got 100000"),
    (["--image_size=1"], "error: --image_size: must be between 8 and 1024 pixels, got 1"),
    (["--lr_boundaries=99999999999999999999"],
     "error: --lr_boundaries: epochs must be at most 1,000,000, got '99999999999999999999'"),
    (["--suspects=-5"], "error: --suspects: must be >= 0, got -5"),
    (["--model_dir="], "error: --model_dir: is empty; give the run's folder, e.g. --model_dir=runs/my_run"),
    # Issue 36: these stopped after TensorFlow had loaded and the data was read, naming no flag.
    (["--seed=-1"], "error: --seed: must be between 0 and 4294967295 (2**32 - 1), got -1"),
    (["--seed=1099511627776"], "error: --seed: must be between 0 and 4294967295 (2**32 - 1), got 1099511627776"),
    (["--part=a", "--part_seed=-1"], "error: --part_seed: must be >= 0, got -1"),
    (["--dataset=synthetic", "--synthetic_test_size=0"],
     "error: --synthetic_test_size: must be a positive number of images with --dataset=synthetic, got 0"),
    (["--dataset=synthetic", "--synthetic_train_size=0"],
     "error: --synthetic_train_size: must be a positive number of images with --dataset=synthetic, got 0"),
]


@pytest.mark.parametrize("argv, expected", VALUE_ERRORS, ids=lambda v: v[0] if isinstance(v, list) else None)
def test_unusable_values_are_one_line_naming_the_flag(tmp_path, argv, expected):
    (tmp_path / "precious.txt").write_text("keep me")
    result = subprocess.run([sys.executable, str(ROOT / "scripts/train.py"), f"--model_dir={tmp_path / 'run'}",
                             "--overwrite", *argv], capture_output=True, text=True, timeout=120, env=ENV, cwd=tmp_path)
    assert one_error_line(result) == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious.txt"]


def test_help_still_prints_the_flags():
    result = train_cli("--helpshort", timeout=120)
    assert "--lr_boundaries" in result.stdout and "error:" not in result.stderr
    help_text = " ".join(result.stdout.split())  # absl wraps the help lines
    for method in METHODS.values():  # --method's help comes from the registry: a new method is listed
        assert f"{method.name}: {method.summary}" in help_text, method.name


def test_wrong_length_label_file_is_reported_without_traceback(tmp_path):
    import numpy as np

    labels = tmp_path / "labels.npy"
    np.save(labels, np.zeros(7, np.int64))
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts/train.py"), "--dataset=synthetic", "--synthetic_train_size=200",
         "--synthetic_test_size=50", "--meta_size=20", "--meta_batch_size=20", f"--noisy_labels={labels}", "--model=tiny",
         f"--model_dir={tmp_path / 'run'}"],
        capture_output=True, text=True, timeout=300, env=ENV,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "labels.npy" in result.stderr and "200" in result.stderr


# ---------------------------------------------------------------------------- user errors at run time
TINY = ["--dataset=synthetic", "--synthetic_train_size=200", "--synthetic_test_size=50", "--meta_size=20",
        "--meta_batch_size=20", "--batch_size=50", "--model=tiny", "--epochs=1", "--export=false"]


def train_cli(*argv, timeout=300):
    return subprocess.run([sys.executable, str(ROOT / "scripts/train.py"), *argv],
                          capture_output=True, text=True, timeout=timeout, env=ENV)


def one_error_line(result) -> str:
    """The run failed with exit code 2 and exactly one line on stderr, no traceback."""
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_empty_npy_label_file_is_one_line(tmp_path):
    labels = tmp_path / "labels.npy"
    labels.write_bytes(b"")
    line = one_error_line(train_cli(*TINY, "--noise_type=none", f"--noisy_labels={labels}",
                                    f"--model_dir={tmp_path / 'run'}"))
    assert line == (f"error: noisy labels file '{labels}' is not a readable .npy array (No data left in file); "
                    "write it with numpy.save(path, labels)")
    assert not (tmp_path / "run").exists()  # nothing left behind to block the next attempt


@pytest.mark.parametrize("case", ["existing_file", "under_a_file", "read_only"])
def test_unusable_model_dir_is_one_line(tmp_path, case):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("keep me")
    if case == "read_only":
        if not pathlib.Path("/sys/kernel").is_dir():
            pytest.skip("needs Linux sysfs: read-only even for root")
        model_dir = pathlib.Path("/sys/kernel/rmwnet_run")
        expected = f"error: --model_dir={model_dir} cannot be written ("
    elif case == "existing_file":
        model_dir = blocker
        expected = f"error: --model_dir={model_dir} is an existing file, not a folder; choose another --model_dir"
    else:
        model_dir = blocker / "run"
        expected = f"error: --model_dir={model_dir} lies under {blocker}, which is a file; choose another --model_dir"
    line = one_error_line(train_cli(*TINY, f"--model_dir={model_dir}"))
    assert line.startswith(expected)
    assert blocker.read_text() == "keep me" and sorted(tmp_path.iterdir()) == [blocker]


def test_external_labels_in_another_sample_order_are_refused(tmp_path):
    from rmwnet_tf import data

    source = data.make_synthetic(200, 50, seed=0)
    labels = tmp_path / "official_order.npy"
    np.save(labels, np.sort(source.y_train))  # right labels, wrong (class-sorted) order
    line = one_error_line(train_cli(*TINY, "--noise_type=none", f"--noisy_labels={labels}",
                                    f"--model_dir={tmp_path / 'run'}"))
    assert line.startswith(f"error: noisy labels file '{labels}': its labels agree with the source's labels on ")
    assert "about chance (10.0%); they are probably in another sample order" in line
    assert "use rmwnet_tf.data.official_to_folder_order" in line


def test_readme_external_labels_example_on_a_cpu_flagfile_works_as_written(tmp_path):
    readme = (ROOT / "README.md").read_text()
    command = next(line.strip() for line in readme.splitlines()
                   if "--flagfile=configs/cpu_cifar10_uniform40.flags" in line and "--noisy_labels=" in line)
    argv = command.split()[2:]  # after "python scripts/train.py"
    labels = tmp_path / "labels.npy"
    np.save(labels, np.zeros(10, np.int64))
    argv = [f"--noisy_labels={labels}" if a.startswith("--noisy_labels=") else a for a in argv]
    argv = [f"--flagfile={ROOT / a.split('=', 1)[1]}" if a.startswith("--flagfile=") else a for a in argv]
    config = parse(argv)
    assert (config.noise_type, config.noise_rate, config.noisy_labels) == ("none", 0.4, str(labels))
    problems = [p for p in config.problems() if p[0] != "data_dir"]  # the CIFAR copy is not extracted here
    assert problems == []


def test_a_run_prints_a_quiet_console_and_a_useful_done_line(tmp_path):
    model_dir = tmp_path / "run"
    result = train_cli(*TINY, "--epochs=2", "--export=true", "--noise_type=uniform", "--noise_rate=0.4",
                       f"--model_dir={model_dir}")
    assert result.returncode == 0, result.stderr
    for noise in ("cuInit", "Sharding callback duration", "All log messages before absl", "oneDNN",
                  "Traceback", "shuffle=True", "Assets written to"):
        assert noise not in result.stderr, noise
    assert sum("epoch " in line for line in result.stderr.splitlines()) == 2
    done = result.stdout.splitlines()[-1]
    assert done.startswith(f"done: outputs in {model_dir}/ (samples ranked by suspicion: sample_scores.csv; "
                           f"numbers: results.json; curves: tensorboard --logdir {model_dir}/tensorboard)  "
                           "test accuracy ")
    assert done.endswith(" (final weights, whole training set)")
    assert "noisy-label detection AUC " in done
    results = json.loads((model_dir / "results.json").read_text())
    assert (f"test accuracy {results['final']['test/accuracy']:.4f} (last epoch), {results['selected']['test/accuracy']:.4f} "
            f"(epoch {results['selected']['epoch']}, selected by meta-set accuracy, no clean labels used: "
            "export_selected/)  noisy-label detection AUC ") in done
    for name in ("config.json", "history.json", "results.json", "sample_scores.csv", "checkpoints",
                 "tensorboard", "export"):
        assert (model_dir / name).exists(), name
    readme = (ROOT / "README.md").read_text()
    outputs = readme.split("## Outputs")[1].split("\n## ")[0]
    for name in sorted(p.name for p in model_dir.iterdir()):
        assert f"`{name}" in outputs, f"README Outputs table misses {name}"


def test_done_line_of_a_run_without_selection_says_why():
    # In a subprocess: importing rmwnet_tf.cli defines the flags, which other test modules' flags clash with.
    code = """if True:
        from rmwnet_tf import cli, selection
        base = {"final": {"test/accuracy": 0.879}, "selected": {}, "selected_by": None,
                "selection_note": selection.NO_META_SET}
        print(cli.done_line("runs/b", base))
        selected = {"epoch": 31, "test/accuracy": 0.952}
        print(cli.done_line("runs/m", dict(base, selected=selected, config={"export": False})))
    """
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=ENV)
    base, meta = result.stdout.splitlines()
    assert base.endswith("  test accuracy 0.8790 (last epoch; no selected epoch: no meta set held out)")
    assert meta.endswith(
        "  test accuracy 0.8790 (last epoch), 0.9520 (epoch 31, selected by meta-set accuracy, no clean labels used)")


def test_rmwnet_traceback_keeps_the_full_stack(tmp_path):
    labels = tmp_path / "labels.npy"
    labels.write_bytes(b"")
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts/train.py"), *TINY, "--noise_type=none", f"--noisy_labels={labels}",
         f"--model_dir={tmp_path / 'run'}"],
        capture_output=True, text=True, timeout=300, env={**ENV, "RMWNET_TRACEBACK": "1"})
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.rstrip().endswith("write it with numpy.save(path, labels)")


def test_error_lines_name_unexpected_errors_as_internal():
    from rmwnet_tf import errors

    assert errors.one_line(ValueError("--x: bad\n  value")) == "error: --x: bad value"
    assert errors.one_line(EOFError("No data left in file")) == "error: EOFError: No data left in file"
    assert errors.one_line(TypeError("unsupported operand")) == (
        "error: TypeError: unsupported operand (an internal error; rerun with RMWNET_TRACEBACK=1 for the full "
        "stack and report it)")


def test_run_folder_refusals_are_one_line(tmp_path):
    """Issue 22, through the command: a folder that is not a run under --overwrite, and a folder
    another live process holds; each one line, exit 2, nothing touched."""
    from rmwnet_tf import run_lock

    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    line = one_error_line(train_cli(*TINY, f"--model_dir={foreign}", "--overwrite"))
    assert line == (f"error: --model_dir={foreign} is not a run folder of this tool (no config.json; it holds "
                    "precious.txt); --overwrite only removes a run: choose another --model_dir, or empty that "
                    "folder yourself")
    lock = run_lock.lock_path(tmp_path / "run")
    lock.write_text(f"{os.getpid()} {os.uname().nodename}\n")  # this test's process: alive
    line = one_error_line(train_cli(*TINY, f"--model_dir={tmp_path / 'run'}"))
    assert line == (f"error: --model_dir={tmp_path / 'run'} is in use by process {os.getpid()} (lock file {lock}); "
                    "wait for it to finish or stop it, or use another --model_dir")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".run.lock", "notes"]
    assert (foreign / "precious.txt").read_text() == "keep me"


def test_a_quoted_error_is_one_line_cut_and_optionally_named():
    from rmwnet_tf import errors

    error = ValueError("Shapes   (3, 3)\n  and (4, 4)\tdiffer")
    assert errors.described(error) == "Shapes (3, 3) and (4, 4) differ"
    assert errors.described(error, limit=6, named=True) == "ValueError: Shapes..."
    assert errors.described(KeyError()) == "KeyError"
    assert errors.one_line(error) == "error: Shapes (3, 3) and (4, 4) differ"


def test_a_weights_file_of_garbage_is_one_line_naming_the_flag_and_the_file(tmp_path):
    """Issue 36: `error: OSError: Unable to synchronously open file (file signature not found)`,
    after TensorFlow had loaded."""
    garbage = tmp_path / "bad.weights.h5"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    line = one_error_line(train_cli(*TINY, "--model=mobilenet_v3_small", f"--weights={garbage}",
                                    f"--model_dir={tmp_path / 'run'}", timeout=120))
    assert line == (f"error: --weights: {str(garbage)!r} is not an HDF5 file (Keras weights files are; this one is cut "
                    "short or something else): give the backbone's weights file, e.g. the one --weights=imagenet "
                    "downloads")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("model_dir, expected", [
    ("runs/x", "error: --model_dir: 'runs/x' is relative to the working directory, which no longer exists (deleted or "
               "moved since this shell entered it); cd to an existing folder, or give an absolute path"),
    (None, "done: outputs in "),  # absolute paths still work there
])
def test_a_deleted_working_directory_is_named_for_relative_paths(tmp_path, model_dir, expected):
    """Issue 36: `error: FileNotFoundError: [Errno 2] No such file or directory`."""
    gone = tmp_path / "gone"
    gone.mkdir()
    model_dir = model_dir or str(tmp_path / "run")
    command = [sys.executable, str(ROOT / "scripts/train.py"), *TINY, f"--model_dir={model_dir}"]
    # The shell enters the folder, removes it, and starts the command there.
    result = subprocess.run(["sh", "-c", 'cd "$0" && rmdir "$0" && exec "$@"', str(gone), *command],
                            capture_output=True, text=True, timeout=300, env=ENV)
    if expected.startswith("error:"):
        assert one_error_line(result) == expected
    else:
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(expected + model_dir)
