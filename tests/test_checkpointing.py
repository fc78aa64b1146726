"""Checkpoints: mid-epoch interruption resumes bit-identically, the last few are kept, a bad
newest one falls back to an older good one, and none usable stops with one line."""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys

import pytest
import tensorflow as tf

from rmwnet_tf import checkpointing, train
from rmwnet_tf.config import Config

ROOT = pathlib.Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}  # the scripts import this checkout's package

# 300 samples - 50 meta = 250 training samples: 5 steps of 50 per epoch.
SMALL = dict(
    dataset="synthetic", synthetic_train_size=300, synthetic_test_size=100, noise_type="uniform",
    noise_rate=0.4, method="rmnwnet", meta_size=50, model="tiny", batch_size=50, meta_batch_size=50,
    lr=0.05, lr_boundaries="1", seed=3, export=False,
)


def config(tmp_path, name="run", **overrides):
    return Config(**{**SMALL, "epochs": 2, "model_dir": str(tmp_path / name), **overrides})


def as_flags(cfg: Config) -> list:
    return [f"--{key}={value}" for key, value in cfg.to_dict().items()]


def checkpoint_names(model_dir) -> list:
    return sorted(p.name for p in (pathlib.Path(model_dir) / "checkpoints").glob("ckpt-*.index"))


def saved_values(prefix) -> dict:
    reader = tf.train.load_checkpoint(prefix)
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if not name.startswith(("_CHECKPOINTABLE_OBJECT_GRAPH", "save_counter"))}  # bookkeeping


def send_sigterm_before(step):
    """Patch: the real SIGTERM handler gets a real signal when `step` steps are done."""
    original = checkpointing.StepCheckpoints.on_train_batch_begin

    def on_train_batch_begin(self, batch, logs=None):
        if int(self.checkpoints.optimizer.iterations.numpy()) == step:
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, batch, logs)

    return on_train_batch_begin


def test_checkpoint_every_steps_keeps_the_last_three(tmp_path):
    train.run(config(tmp_path, checkpoint_every_steps=2))
    # saves after steps 2, 4, 5 (epoch end), 6, 8, 10 (epoch end): the newest three stay
    assert checkpoint_names(tmp_path / "run") == ["ckpt-10.index", "ckpt-6.index", "ckpt-8.index"]
    # How a run is saved is not what it trains: not recorded, so earlier run folders stay "the same run".
    assert "checkpoint_every_steps" not in json.loads((tmp_path / "run" / "config.json").read_text())


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory):
    """A finished 2-epoch run (ckpt-5, ckpt-10), copied by each test that damages it."""
    tmp_path = tmp_path_factory.mktemp("two_epochs")
    cfg = config(tmp_path)
    train.run(cfg)
    return pathlib.Path(cfg.model_dir)


def damage(prefix: pathlib.Path, how: str) -> pathlib.Path:
    data, index = prefix.with_name(prefix.name + ".data-00000-of-00001"), prefix.with_name(prefix.name + ".index")
    if how == "truncated":
        data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    elif how == "garbled":
        raw = bytearray(data.read_bytes())
        raw[len(raw) // 3: len(raw) // 3 + 64] = bytes(64)[::-1] if any(raw[len(raw) // 3: len(raw) // 3 + 64]) else b"\xff" * 64
        data.write_bytes(bytes(raw))
    elif how == "data_missing":
        data.unlink()
    elif how == "index_truncated":
        index.write_bytes(index.read_bytes()[:20])
    return index


@pytest.mark.parametrize("how", ["truncated", "garbled", "data_missing", "index_truncated"])
def test_bad_newest_checkpoint_falls_back_with_a_warning(two_epochs, tmp_path, how, caplog):
    model_dir = tmp_path / "run"
    shutil.copytree(two_epochs, model_dir)
    bad_index = damage(model_dir / "checkpoints" / "ckpt-10", how)
    with caplog.at_level("WARNING"):
        results = train.run(config(tmp_path, epochs=3))  # one more epoch than was trained
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"checkpoint {bad_index} is unusable (")
    assert warnings[0].endswith(f"resuming from the older {model_dir}/checkpoints/ckpt-5 (epoch 1, step 0): "
                                "the training after it is done again")
    assert [row["epoch"] for row in results["history"]] == [1, 2, 3]  # epoch 2 retrained
    assert results["steps"] == 15


def test_no_usable_checkpoint_stops_with_one_line(two_epochs, tmp_path):
    model_dir = tmp_path / "run"
    shutil.copytree(two_epochs, model_dir)
    for prefix in ("ckpt-5", "ckpt-10"):
        damage(model_dir / "checkpoints" / prefix, "truncated")
    before = sorted(p.name for p in (model_dir / "checkpoints").iterdir())
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts/train.py"), *as_flags(config(tmp_path, epochs=3))],
        capture_output=True, text=True, timeout=300, env=ENV)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: no usable checkpoint in {model_dir}/checkpoints (ckpt-10: ")
    assert "; ckpt-5: " in lines[0]
    assert lines[0].endswith("move that folder aside to keep it, or rerun with --overwrite to start this run "
                             "again from scratch")
    assert sorted(p.name for p in (model_dir / "checkpoints").iterdir()) == before  # nothing deleted


def test_sigterm_to_the_command_saves_and_says_how_to_resume(tmp_path):
    cfg = config(tmp_path, epochs=200, export=False)
    process = subprocess.Popen([sys.executable, str(ROOT / "scripts/train.py"), *as_flags(cfg)],
                               stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=ENV)
    lines = []
    for line in process.stderr:  # wait until training runs
        lines.append(line)
        if "epoch 2/200" in line:
            process.send_signal(signal.SIGTERM)
            break
    rest, _ = process.communicate(timeout=120)
    stderr = "".join(lines) + _
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert "Traceback" not in stderr
    # Acknowledged at once (issue 22), then stopped at the step's end with the checkpoint.
    assert ("SIGTERM: stopping after this step, with a checkpoint; Ctrl-C again to stop now without saving"
            in stderr.splitlines()[:-1])
    last = stderr.splitlines()[-1]
    assert last.startswith(f"stopped by SIGTERM: saved checkpoint {cfg.model_dir}/checkpoints/ckpt-")
    assert last.endswith("run the same command again to resume from it")
    saved = last.split("saved checkpoint ")[1].split(" ")[0]
    assert pathlib.Path(saved + ".index").exists()
    assert tf.train.latest_checkpoint(str(pathlib.Path(cfg.model_dir) / "checkpoints")) == saved
