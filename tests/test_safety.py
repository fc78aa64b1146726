"""Issue 22: nothing outside the run is ever touched, nothing inside it is ever lost.

One test (or parameter) per case of the issue: --overwrite, the lock, links among the outputs,
changed inputs, --epochs below the checkpoint, missing checkpoints, results.json written last
and missing outputs rebuilt, signals through the final outputs, truncated JSON, a NaN loss,
checkpoint staging leftovers, the environment variables. Runs go through `train.run` in this
process (the CLI turns every error raised here into one `error:` line, tests/test_cli.py).
"""

import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from rmwnet_tf import checkpointing, errors, run_lock, train
from rmwnet_tf import export as export_lib
from rmwnet_tf.config import Config
from rmwnet_tf.export import load_exported

import test_checkpointing as checkpointing_tests  # SIGTERM at a step

# 200 samples - 20 meta = 180 training samples: 3 steps of 50 (the rest dropped) per epoch.
TINY = dict(dataset="synthetic", synthetic_train_size=200, synthetic_test_size=50, noise_type="uniform",
            noise_rate=0.4, method="rmnwnet", meta_size=20, meta_batch_size=20, batch_size=50, model="tiny",
            lr=0.05, lr_boundaries="", seed=1, suspects=4)


def config(model_dir, **overrides):
    return Config(**{**TINY, "epochs": 1, "export": False, "model_dir": str(model_dir), **overrides})


def listing(folder) -> dict:
    """{relative path: bytes} of every file under `folder`."""
    folder = pathlib.Path(folder)
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 1-epoch run with its exports, copied by each test that changes it."""
    model_dir = tmp_path_factory.mktemp("finished") / "run"
    train.run(config(model_dir, export=True))
    return model_dir


@pytest.fixture
def run_copy(finished, tmp_path):
    shutil.copytree(finished, tmp_path / "run", symlinks=True)
    return tmp_path / "run"


# ------------------------------------------------------------------------------------ --overwrite
def test_overwrite_refuses_a_folder_that_is_not_a_run(tmp_path):
    foreign = tmp_path / "notes"
    (foreign / "sub").mkdir(parents=True)
    (foreign / "precious.txt").write_text("keep me")
    before = listing(tmp_path)
    with pytest.raises(errors.UserError, match=r"is not a run folder of this tool \(no config.json; it holds "
                                               r"precious.txt, sub\); --overwrite only removes a run"):
        train.run(config(foreign, overwrite=True))
    assert listing(tmp_path) == before and (foreign / "sub").is_dir()


@pytest.mark.parametrize("where", [".", "..", "/", "link"])
def test_overwrite_never_removes_the_working_directory_a_folder_above_it_or_a_link(tmp_path, monkeypatch, where):
    work = tmp_path / "work"
    work.mkdir()
    (work / "config.json").write_text("{}")  # even if it looked like a run
    (work / "precious.txt").write_text("keep me")
    monkeypatch.chdir(work)
    if where == "link":
        (tmp_path / "link").symlink_to(work)
        where = str(tmp_path / "link")
    before = listing(tmp_path)
    expected = {".": "is the working directory", "..": "is a folder above the working directory",
                "/": "is a folder above the working directory"}.get(where, "is a symbolic link")
    with pytest.raises(errors.UserError, match=expected):
        train.run(config(where, overwrite=True))
    assert listing(tmp_path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["work"] + (["link"] if "link" in where else []))


def test_overwrite_keeps_the_old_run_when_the_new_start_fails(run_copy, tmp_path):
    before = listing(run_copy)
    bad_labels = tmp_path / "labels.npy"
    np.save(bad_labels, np.zeros(7, np.int64))
    with pytest.raises(ValueError, match="labels.npy' has 7 labels"):
        train.run(config(run_copy, overwrite=True, noise_type="none", noise_rate=0.0, noisy_labels=str(bad_labels)))
    assert listing(run_copy) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.npy", "run"]  # no lock, nothing aside


def test_overwrite_replaces_a_run_once_the_new_data_has_loaded(run_copy, tmp_path):
    results = train.run(config(run_copy, overwrite=True, lr=0.02))
    assert results["config"]["lr"] == 0.02
    assert json.loads((run_copy / "config.json").read_text())["lr"] == 0.02
    assert not (run_copy / "export").exists()  # the old run's files are gone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_an_interrupted_overwrite_puts_the_old_run_back(run_copy, tmp_path):
    """kill -9 between the move aside and the data: the old run waits under a hidden name."""
    before = listing(run_copy)
    aside = tmp_path / ".run.overwritten-abc123"
    os.rename(run_copy, aside)
    results = train.run(config(run_copy))  # the same run: put back, found finished
    assert results["epochs_completed"] == 1
    assert listing(run_copy) == before and not aside.exists()


# ------------------------------------------------------------------------------------ the lock
def test_a_second_start_in_a_busy_folder_is_refused_naming_the_pid(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = run_lock.lock_path(tmp_path / "run")
        lock.write_text(f"{holder.pid} {os.uname().nodename}\n")
        with pytest.raises(errors.UserError, match=rf"--model_dir={tmp_path}/run is in use by process {holder.pid} "
                                                   rf"\(lock file {lock}\); wait for it"):
            train.run(config(tmp_path / "run"))
        assert lock.read_text().split()[0] == str(holder.pid)  # not taken from its owner
        assert not (tmp_path / "run").exists()
    finally:
        holder.kill()
        holder.wait()


def test_a_stale_lock_after_kill_9_is_taken_over(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    lock = run_lock.lock_path(tmp_path / "run")
    lock.write_text(f"{gone.pid} {os.uname().nodename}\n")
    assert train.run(config(tmp_path / "run"))["epochs_completed"] == 1
    assert not lock.exists()  # released at the end


def test_two_starts_at_once_get_the_lock_once():
    """O_EXCL: of two simultaneous attempts exactly one succeeds."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        outcomes = []

        def attempt():
            try:
                outcomes.append(run_lock.acquire(pathlib.Path(folder) / "run"))
            except errors.UserError as error:
                outcomes.append(error)

        path = run_lock.lock_path(pathlib.Path(folder) / "run")
        path.write_text("1 elsewhere\n")  # held on another host: never taken over
        threads = [threading.Thread(target=attempt) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert all(isinstance(o, errors.UserError) and "in use by process 1 on elsewhere" in str(o) for o in outcomes)


# Issue 36: a link, an empty or an unreadable lock file made every start say "try again", forever.
@pytest.mark.parametrize("target", ["a file elsewhere", "nothing"])
def test_a_lock_file_that_is_a_link_is_refused_and_never_followed(tmp_path, target):
    elsewhere = tmp_path / "elsewhere.txt"
    if target == "a file elsewhere":
        elsewhere.write_text("keep me")
    lock = run_lock.lock_path(tmp_path / "run")
    lock.symlink_to(elsewhere)
    with pytest.raises(errors.UserError, match=re.escape(
            f"--model_dir={tmp_path}/run: its lock file {lock} is a symbolic link (to {elsewhere}); a lock is never "
            f"taken through a link: remove the link (rm {lock}) and start again")):
        train.run(config(tmp_path / "run"))
    assert lock.is_symlink() and os.readlink(lock) == str(elsewhere)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".run.lock"] + (["elsewhere.txt"] if elsewhere.exists() else [])
    assert not elsewhere.exists() or elsewhere.read_text() == "keep me"


@pytest.mark.parametrize("content", [b"", b"\xff\xfe garbage"], ids=["empty", "unreadable"])
def test_an_old_empty_or_unreadable_lock_is_taken_over_with_a_warning(tmp_path, content, caplog):
    lock = run_lock.lock_path(tmp_path / "run")
    lock.write_bytes(content)  # a crash between creating the lock file and writing the PID
    an_hour_ago = time.time() - 3600
    os.utime(lock, (an_hour_ago, an_hour_ago))
    with caplog.at_level("WARNING"):
        assert train.run(config(tmp_path / "run"))["epochs_completed"] == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert [w for w in warnings if w.startswith(f"taking over the lock file {lock}: it is empty or unreadable and ")] \
        != [], warnings
    assert not lock.exists()  # released at the end


def test_a_fresh_empty_lock_is_a_start_writing_it_and_is_not_taken(tmp_path, monkeypatch):
    """The race: a concurrent start creates the file and writes its PID a moment later. Within
    the grace seconds an empty lock is looked at again, not taken; after them it is taken."""
    monkeypatch.setattr(run_lock, "EMPTY_LOCK_GRACE_SECONDS", 2.0)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = run_lock.lock_path(tmp_path / "run")
        lock.write_bytes(b"")
        writer = threading.Timer(0.5, lambda: lock.write_text(f"{holder.pid} {os.uname().nodename}\n"))
        writer.start()
        with pytest.raises(errors.UserError, match=rf"is in use by process {holder.pid} \(lock file {lock}\)"):
            run_lock.acquire(tmp_path / "run")
        writer.join()
    finally:
        holder.kill()
        holder.wait()
    lock.write_bytes(b"")  # never written: taken once it has stayed empty for the grace seconds
    assert run_lock.acquire(tmp_path / "run") == lock
    assert lock.read_text().split()[0] == str(os.getpid())
    run_lock.release(lock)


# ------------------------------------------------------------------------------------ links, exports
@pytest.mark.parametrize("name", ["export", "tensorboard", "sample_scores.csv"])
def test_a_link_where_an_output_goes_is_refused_and_its_target_kept(run_copy, tmp_path, name):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious.txt").write_text("keep me")
    target = elsewhere if name != "sample_scores.csv" else elsewhere / "precious.txt"
    if (run_copy / name).is_dir():
        shutil.rmtree(run_copy / name)
    elif (run_copy / name).exists():
        (run_copy / name).unlink()
    (run_copy / name).symlink_to(target)
    with pytest.raises(errors.UserError, match=rf"{run_copy / name} is a symbolic link \(to .*\); the run writes"):
        train.run(config(run_copy, export=True))
    assert listing(elsewhere) == {"precious.txt": b"keep me"}


def test_an_export_folder_holding_other_files_is_refused_before_training(tmp_path):
    (tmp_path / "run" / "export").mkdir(parents=True)
    (tmp_path / "run" / "export" / "notes.txt").write_text("mine")
    with pytest.raises(errors.UserError, match=r"export holds files that are not this run's SavedModel \(notes.txt\)"):
        train.run(config(tmp_path / "run", export=True))
    assert listing(tmp_path / "run") == {"export/notes.txt": b"mine"}


# ------------------------------------------------------------------------------------ finished runs
def test_a_finished_run_rebuilds_missing_outputs_from_its_final_checkpoint(run_copy, finished):
    results_before = (run_copy / "results.json").read_bytes()
    for name in ("export", "export_selected"):
        shutil.rmtree(run_copy / name)
    (run_copy / "pred_probs.npy").unlink()
    (run_copy / "suspects.png").write_bytes(b"")  # cut short
    (run_copy / "export_selected").mkdir()  # a partial export: no saved_model.pb
    results = train.run(config(run_copy, export=True))
    assert (run_copy / "results.json").read_bytes() == results_before and results["epochs_completed"] == 1
    for name in ("sample_scores.csv", "given_labels.npy", "sample_index.npy"):
        assert (run_copy / name).read_bytes() == (finished / name).read_bytes(), name
    np.testing.assert_allclose(np.load(run_copy / "pred_probs.npy"), np.load(finished / "pred_probs.npy"), atol=1e-6)
    assert (run_copy / "suspects.png").stat().st_size > 1000
    # By value: the rebuilt export predicts the final model's probabilities on the training images.
    data = train.load_data(config(run_copy))
    index = np.load(run_copy / "sample_index.npy")[:16]
    for name in ("export", "export_selected"):
        predicted = load_exported(str(run_copy / name))(data.source.x_train[index])
        np.testing.assert_allclose(predicted, np.load(finished / "pred_probs.npy")[:16], atol=1e-5)


@pytest.mark.parametrize("damage", ["cut in half", "deleted"])
def test_a_finished_runs_damaged_history_is_rebuilt_from_results_json(run_copy, finished, damage, caplog):
    """Issue 36: a history.json cut in half stayed so, and the rerun said `done:` without a word."""
    history = run_copy / "history.json"
    if damage == "deleted":
        history.unlink()
    else:
        history.write_text(history.read_text()[: history.stat().st_size // 2])
    with caplog.at_level("WARNING"):
        assert train.run(config(run_copy))["epochs_completed"] == 1
    assert history.read_bytes() == (finished / "history.json").read_bytes()
    problem = "missing" if damage == "deleted" else "not readable JSON (cut short or edited)"
    assert f"{history} was {problem}; rewritten from the history of 1 epoch that results.json holds" in [
        r.getMessage() for r in caplog.records if r.levelname == "WARNING"]


def test_a_damaged_history_without_a_copy_in_results_json_is_refused(run_copy):
    results = json.loads((run_copy / "results.json").read_text())
    del results["history"]
    (run_copy / "results.json").write_text(json.dumps(results))
    (run_copy / "history.json").write_text("[{")
    with pytest.raises(errors.UserError, match=re.escape(
            f"{run_copy}/history.json is not readable JSON (cut short or edited), and {run_copy}/results.json holds no "
            "copy of the history to rebuild it from: restore it, or move the run folder aside (or rerun with "
            "--overwrite) to start this run again")):
        train.run(config(run_copy))


def test_missing_checkpoints_under_results_json_are_refused_not_retrained(run_copy):
    shutil.rmtree(run_copy / "checkpoints")
    with pytest.raises(train.RunError, match=r"results.json records 1 trained epochs, but .*checkpoints holds no "
                                             r"checkpoint to go on from; put the checkpoints back"):
        train.run(config(run_copy, epochs=2))
    with pytest.raises(train.RunError, match="holds no checkpoint"):  # nor rebuilt from nothing
        (run_copy / "sample_scores.csv").unlink()
        train.run(config(run_copy))


def test_checkpoint_staging_leftovers_are_removed(run_copy):
    """kill -9 in the middle of a save left checkpoints/ckpt-N_temp/ forever."""
    for leftover in ("checkpoints/ckpt-2_temp", "selected/classifier_temp", "export.partial-123"):
        (run_copy / leftover).mkdir()
        (run_copy / leftover / "part-00000-of-00001.data-00000-of-00001").write_bytes(b"half")
    train.run(config(run_copy, export=True))
    assert not [p for p in run_copy.rglob("*") if "_temp" in p.name or ".partial-" in p.name]


@pytest.mark.parametrize("name", ["config.json", "history.json", "results.json"])
def test_a_truncated_json_file_is_named(run_copy, name):
    path = run_copy / name
    path.write_text(path.read_text()[:40])
    with pytest.raises(errors.UserError, match=rf"{path} is not readable JSON \(.*\); it was cut short or edited"):
        train.run(config(run_copy, epochs=2))


# ------------------------------------------------------------------------------------ resuming
def test_changed_labels_file_is_refused_on_resume_and_old_folders_still_resume(tmp_path):
    labels = tmp_path / "labels.csv"
    rng = np.random.default_rng(0)
    source_labels = train.load_data(config(tmp_path / "probe")).source.y_train
    given = np.where(rng.random(200) < 0.25, rng.integers(0, 10, 200), source_labels)
    labels.write_text("\n".join(map(str, given)) + "\n")
    settings = dict(noise_type="none", noise_rate=0.0, noisy_labels=str(labels))
    train.run(config(tmp_path / "run", **settings))
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert set(saved["fingerprints"]) == {"source_labels", "noisy_labels"}
    edited = np.where(rng.random(200) < 0.2, rng.integers(0, 10, 200), given)
    labels.write_text("\n".join(map(str, edited)) + "\n")
    with pytest.raises(errors.UserError, match=rf"was trained on other inputs: the labels file --noisy_labels={labels} "
                                               "has other contents since the run started. Put the original"):
        train.run(config(tmp_path / "run", epochs=2, **settings))
    # A folder from before fingerprints: no key to compare, so it resumes (and records them now).
    del saved["fingerprints"]
    (tmp_path / "run" / "config.json").write_text(json.dumps(saved))
    assert train.run(config(tmp_path / "run", epochs=2, **settings))["epochs_completed"] == 2
    assert "fingerprints" in json.loads((tmp_path / "run" / "config.json").read_text())


def test_epochs_below_the_checkpoint_position_is_refused(tmp_path, monkeypatch):
    with monkeypatch.context() as patch:  # stopped at step 2 of 3 in epoch 2
        patch.setattr(checkpointing.StepCheckpoints, "on_train_batch_begin", checkpointing_tests.send_sigterm_before(4))
        with pytest.raises(checkpointing.Interrupted):
            train.run(config(tmp_path / "run", epochs=2))
    with pytest.raises(train.RunError, match=r"--epochs=1 is below the position of the newest checkpoint \(step 2 of 3 "
                                             r"in epoch 2\); resume with --epochs=2 or more"):
        train.run(config(tmp_path / "run", epochs=1))
    assert not (tmp_path / "run" / "results.json").exists()


def test_sigterm_during_the_final_export_then_rerun_writes_every_output(tmp_path, monkeypatch):
    real_export = export_lib.export_classifier

    def export_then_sigterm(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # arrives during the export; the handler is still there
        return real_export(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(export_lib, "export_classifier", export_then_sigterm)
        with pytest.raises(checkpointing.Interrupted, match=r"stopped by SIGTERM during the final outputs: the training "
                                                            r"is complete and saved in .*ckpt-3; run the same command"):
            train.run(config(tmp_path / "run", export=True))
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert not (tmp_path / "run" / "results.json").exists()  # so the rerun knows
    results = train.run(config(tmp_path / "run", export=True))
    assert results["epochs_completed"] == 1 and results["steps"] == 3
    assert (tmp_path / "run" / "results.json").exists()
    assert (tmp_path / "run" / "export_selected" / "saved_model.pb").exists()


def test_a_nan_loss_says_lower_the_learning_rate(tmp_path):
    with pytest.raises(train.RunError, match=r"the loss became NaN in epoch 1 \(train/loss (nan|inf)\); lower --lr "
                                             r"\(now 1e\+30\)"):
        train.run(config(tmp_path / "run", lr=1e30, method="base", noise_type="none", noise_rate=0.0))


# ------------------------------------------------------------------------------------ signals
def test_ctrl_c_is_acknowledged_at_once_inside_a_long_step(tmp_path, capfd):
    """The handler waits for the step; the acknowledgement does not."""
    checkpoints = checkpointing.RunCheckpoints(tmp_path, tmp_path)
    stopper = checkpointing.StepCheckpoints(checkpoints)
    threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGINT)).start()
    with stopper.installed():
        started = time.perf_counter()
        # One long call into C that releases the GIL, as a train step does (TensorFlow): no Python
        # handler runs before it returns.
        matrix = np.ones((4000, 4000), np.float32)
        matrix @ matrix
        step_seconds = time.perf_counter() - started
        echo = stopper._echo
        assert stopper.requested == signal.SIGINT  # the handler ran once the "step" returned
    err = capfd.readouterr().err
    assert "SIGINT: stopping after this step, with a checkpoint; Ctrl-C again to stop after this step without " \
           "saving" in err
    assert echo.acknowledged == "SIGINT"
    assert echo.acknowledged_at < started + step_seconds - 0.1, "acknowledged only when the step ended"
    assert step_seconds > 0.3, "the busy loop was too short to show anything"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# ------------------------------------------------------------------------------------ environment
@pytest.mark.parametrize("value, reason", [("{bad", "Expecting property name"), ("[1, 2]", "not a JSON object")])
def test_a_malformed_tf_config_is_named(monkeypatch, value, reason):
    monkeypatch.setenv("TF_CONFIG", value)
    with pytest.raises(train.RunError, match=rf"the environment variable TF_CONFIG is not usable for "
                                             rf"--strategy=multi_worker \({reason}"):
        train.make_strategy("multi_worker")


@pytest.mark.parametrize("value", ["http://proxy:99999", "http://[bad"])
def test_a_malformed_https_proxy_is_named(monkeypatch, value):
    from rmwnet_tf.data import sources

    for name in ("HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("https_proxy", value)
    with pytest.raises(ValueError, match=rf"the environment variable https_proxy='{re.escape(value)}' is not a proxy "
                                         "address.*; set it like http://host:port, or unset it"):
        sources.probe_download_host("www.cs.toronto.edu")


SECOND_CTRL_C = """
import os, signal, sys, time
sys.path.insert(0, {root!r})
import numpy as np
from rmwnet_tf import checkpointing
checkpointing.SECOND_INTERRUPT_EXITS = True  # as the command line sets it
stopper = checkpointing.StepCheckpoints(checkpointing.RunCheckpoints({folder!r}, {folder!r}))
with stopper.installed():
    print("ready", flush=True)
    matrix = np.ones((3000, 3000), np.float32)
    deadline = time.time() + 120
    while time.time() < deadline:  # steps; between them the first Ctrl-C's handler runs
        matrix @ matrix
print("not stopped", flush=True)
"""


def test_a_second_ctrl_c_stops_the_command_at_once_without_saving(tmp_path):
    root = str(pathlib.Path(__file__).resolve().parents[1])
    process = subprocess.Popen([sys.executable, "-c", SECOND_CTRL_C.format(root=root, folder=str(tmp_path))],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"
    process.send_signal(signal.SIGINT)
    # The second Ctrl-C once the first is acknowledged (a fixed sleep lost the race on a loaded CI machine).
    acknowledged = []
    for line in process.stderr:
        acknowledged.append(line.rstrip("\n"))
        if line.startswith("SIGINT: stopping"):
            break
    process.send_signal(signal.SIGINT)
    started = time.perf_counter()
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert time.perf_counter() - started < 5
    lines = acknowledged + err.splitlines()
    assert lines[-2] == ("SIGINT: stopping after this step, with a checkpoint; Ctrl-C again to stop now without "
                         "saving")
    assert lines[-1] == ("error: stopped at once by a second Ctrl-C, without saving; the same command resumes from "
                         f"the newest checkpoint in {tmp_path}")
    assert "not stopped" not in out
