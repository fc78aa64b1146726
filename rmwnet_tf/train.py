"""`run(config)`: one training run from data to files on disk, resumable.

Sections: setup, data, model, resume, train, outputs. Everything a run leaves behind lives
under `config.model_dir`: config.json, checkpoints/, tensorboard/, history.json,
results.json, sample_scores.csv, export/.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import sys
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from rmwnet_tf import callbacks as callbacks_lib
from rmwnet_tf import checkpointing  # [issue11]
from rmwnet_tf import data as data_lib
from rmwnet_tf import export as export_lib
from rmwnet_tf import losses as losses_lib
from rmwnet_tf import metrics as metrics_lib
from rmwnet_tf import models
from rmwnet_tf import noise as noise_lib
from rmwnet_tf import run_folder  # [issue11]
from rmwnet_tf.config import Config
from rmwnet_tf.meta_model import MetaWeightModel, default_jit_compile
from rmwnet_tf.methods import get_method

# Settings that may change between a run and its resumption without changing what is trained.
RESUMABLE_CHANGES = ("epochs", "model_dir", "overwrite", "jit_compile", "strategy", "export")


class RunError(ValueError):
    """A problem with the run as asked for (reported without a traceback by the CLI)."""


# ------------------------------------------------------------------------------------ setup
def make_strategy(name: str) -> tf.distribute.Strategy:
    """`mirrored` uses every local GPU, or every logical CPU device when there is no GPU."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices)
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise RunError(f"--strategy: unknown strategy {name!r}")


def worker_role(strategy: tf.distribute.Strategy) -> tuple[bool, int]:
    """(is_chief, task_id). Only the chief writes the run's files; the other workers of a
    multi-worker run must still save (checkpoint saving is collective), into scratch folders."""
    resolver = getattr(strategy, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    if not task_type:
        return True, 0
    task_id = int(resolver.task_id or 0)
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "chief" or (task_type == "worker" and task_id == 0 and not has_chief), task_id


def resolve_jit(setting: str, strategy: tf.distribute.Strategy, uses_meta: bool) -> bool:
    """XLA per device type and step kind; refused where TF cannot run it (several CPU replicas)."""
    on_cpu = not tf.config.list_logical_devices("GPU")
    several = strategy.num_replicas_in_sync > 1
    if setting == "auto":
        return default_jit_compile(uses_meta) and not (on_cpu and several)
    if setting == "true" and on_cpu and several:
        raise RunError(
            "--jit_compile=true with a multi-replica strategy on CPU fails in TensorFlow "
            "(XLA cannot reach variables on another logical device); use --jit_compile=false"
        )
    return setting == "true"


def _read_json(path: pathlib.Path):
    return json.loads(path.read_text()) if path.exists() else None


def _write_json(path: pathlib.Path, value) -> None:
    """Write-then-rename, so an interrupted run never leaves half a file behind."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(value, indent=2, default=_json_default))
    os.replace(tmp, path)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value)}")


def check_model_dir(config: Config, model_dir: pathlib.Path) -> dict | None:
    """Refuse to mix two different runs in one folder; return a finished run's results."""
    saved = _read_json(model_dir / "config.json")
    if saved is None:
        return None
    changed = {
        key: (saved.get(key), value)
        for key, value in config.to_dict().items()
        if key not in RESUMABLE_CHANGES and saved.get(key) != value
    }
    if changed:
        details = ", ".join(f"--{k}: {old!r} there, {new!r} now" for k, (old, new) in changed.items())
        raise RunError(
            f"--model_dir={model_dir} holds a different run ({details}); use another "
            "--model_dir, or --overwrite to replace it"
        )
    results = _read_json(model_dir / "results.json")
    if results and results.get("epochs_completed", 0) >= config.epochs:
        return results
    return None


# ------------------------------------------------------------------------------------ data
def load_data(config: Config) -> data_lib.NoisyData:
    source = data_lib.load_source(
        config.dataset,
        data_dir=config.data_dir or None,
        tfds_data_dir=config.tfds_data_dir or None,
        image_size=config.image_size,
        synthetic_train_size=config.synthetic_train_size,
        synthetic_test_size=config.synthetic_test_size,
        seed=config.seed,
    )
    method = get_method(config.method)
    return data_lib.prepare(
        source,
        noise_type=config.noise_type,
        noise_rate=config.noise_rate,
        seed=config.seed,
        meta_size=config.meta_size,
        meta_label_kind=method.meta_labels or "none",
        noisy_labels_path=config.noisy_labels or None,
        source_labels_are_clean=config.source_labels_are_clean,
        train_size=config.train_size or None,
    )


def fit_dataset(config: Config, data: data_lib.NoisyData, start_epoch: int, steps_per_epoch: int,
                start_step: int = 0):  # [issue11] start_step: resume mid-epoch
    train = data_lib.train_dataset(
        data, batch_size=config.batch_size, seed=config.seed, start_epoch=start_epoch,
        augment=config.augment, start_step=start_step,  # [issue11]
    )
    if not get_method(config.method).uses_meta:
        return train.map(lambda batch: {"train": batch})
    meta = data_lib.meta_dataset(
        data, batch_size=config.meta_batch_size, seed=config.seed,
        start_step=start_epoch * steps_per_epoch + start_step,  # [issue11] + start_step
    )
    return tf.data.Dataset.zip({"train": train, "meta": meta})


# ------------------------------------------------------------------------------------ model
def learning_rate(config: Config, steps_per_epoch: int):
    """Piecewise-constant lr with boundaries given in epochs, as the paper states them."""
    if not config.boundaries:
        return config.lr
    boundaries = [epoch * steps_per_epoch for epoch in config.boundaries]
    values = [config.lr * config.lr_decay**i for i in range(len(boundaries) + 1)]
    return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)


def vnet_optimizer(config: Config):
    if config.vnet_optimizer == "adam":
        return keras.optimizers.Adam(config.vnet_lr)
    return keras.optimizers.SGD(config.vnet_lr, momentum=config.vnet_momentum, nesterov=config.vnet_momentum > 0)


def build_model(config: Config, data: data_lib.NoisyData, steps_per_epoch: int, jit: bool) -> MetaWeightModel:
    """Call inside the strategy scope: variables and optimizer slots are created here."""
    method = get_method(config.method)
    shape = tuple(data.source.x_train.shape[1:])
    classifier = models.build(config.model, num_classes=data.num_classes, input_shape=shape, seed=config.seed)
    vnet = models.build_vnet(seed=config.seed + 1) if method.uses_meta else None
    model = MetaWeightModel(
        classifier, vnet, method=config.method, global_batch_size=config.batch_size,
        weight_norm=config.weight_norm, meta_grad=config.meta_grad, meta_scope=config.meta_scope,
        weight_decay=config.weight_decay, vnet_weight_decay=config.vnet_weight_decay,
    )
    model.compile(
        keras.optimizers.SGD(learning_rate(config, steps_per_epoch), momentum=config.momentum,
                             nesterov=config.momentum > 0),
        vnet_optimizer(config) if method.uses_meta else None,
        jit_compile=jit,
        steps_per_execution=1,  # the sample recorder reads every batch
    )
    return model


def checkpoint_for(model: MetaWeightModel, epoch: tf.Variable) -> tf.train.Checkpoint:
    parts = dict(classifier=model.classifier, optimizer=model.optimizer, epoch=epoch)
    if model.vnet is not None:
        parts.update(vnet=model.vnet, vnet_optimizer=model.vnet_optimizer)
    return tf.train.Checkpoint(**parts)


class EpochCheckpoint(keras.callbacks.Callback):
    """After every epoch: append its logs to history.json, then save a checkpoint.

    Runs last, so the logs already hold test/* and detection/*. Only whole epochs are saved:
    the data order is a function of the epoch, so a resumed run replays the interrupted epoch.
    """

    def __init__(self, manager, epoch_var, history_path, history, train_timer):
        super().__init__()
        self.manager, self.epoch_var = manager, epoch_var
        self.history_path, self.history, self.train_timer = history_path, history, train_timer

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch + 1, "train_seconds": self.train_timer.epoch_seconds,
               "wall_seconds": time.perf_counter() - self.train_timer.epoch_started}
        row.update({k: float(v) for k, v in (logs or {}).items() if np.ndim(v) == 0})
        self.history.append(row)
        _write_json(self.history_path, self.history)
        self.epoch_var.assign(epoch + 1)
        self.manager.save()  # [issue11] a checkpointing.RunCheckpoints: numbered by global step


class TrainTimer(keras.callbacks.Callback):
    """Seconds spent on training batches in each epoch (validation excluded)."""

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_started, self.epoch_seconds = time.perf_counter(), None

    def on_test_begin(self, logs=None):
        if self.epoch_seconds is None:
            self.epoch_seconds = time.perf_counter() - self.epoch_started

    def on_epoch_end(self, epoch, logs=None):
        if self.epoch_seconds is None:
            self.epoch_seconds = time.perf_counter() - self.epoch_started


# ------------------------------------------------------------------------------------ outputs
def score_training_set(model: MetaWeightModel, data: data_lib.NoisyData, batch_size: int) -> dict:
    """Prediction, loss on the given label and weight W(loss) for every training sample."""

    @tf.function
    def predict(batch):
        logits = model.classifier(batch["image"], training=False)
        return tf.argmax(logits, -1, output_type=tf.int32), losses_lib.cross_entropy(batch["label"], logits)

    parts = {"indices": [], "predicted": [], "losses": []}
    for batch in data_lib.train_eval_dataset(data, batch_size=batch_size):
        predicted, losses = predict(batch)
        parts["indices"].append(batch["index"].numpy())
        parts["predicted"].append(predicted.numpy())
        parts["losses"].append(losses.numpy())
    scores = {key: np.concatenate(value) for key, value in parts.items()}
    scores["weights"] = model.weight_function(scores["losses"])
    return scores


def write_outputs(config, model, data, scores, history, *, model_dir, wall_seconds, images_per_second):
    indices = scores["indices"]
    clean = None if data.clean_labels is None else data.clean_labels[indices]
    callbacks_lib.write_sample_scores(
        model_dir / "sample_scores.csv", indices=indices, given_labels=data.given_labels[indices],
        predicted_labels=scores["predicted"], weights=scores["weights"], losses=scores["losses"],
        clean_labels=clean,
    )
    is_noisy = None if data.is_noisy is None else data.is_noisy[indices]
    final_auc = metrics_lib.detection_auc(scores["weights"], is_noisy) if model.vnet is not None and is_noisy is not None else None
    final_auc_loss = metrics_lib.detection_auc(-scores["losses"], is_noisy) if is_noisy is not None else None

    def column(key):
        return [row[key] for row in history if row.get(key) is not None]

    accuracies, aucs = column("test/accuracy"), column("detection/auc")
    realised = None
    if data.clean_labels is not None:
        train_clean, train_given = data.clean_labels[data.train_indices], data.given_labels[data.train_indices]
        realised = {
            "matrix": noise_lib.realised_matrix(train_clean, train_given, data.num_classes),
            "rate": noise_lib.realised_rate(train_clean, train_given),
        }
    results = {
        "epochs_completed": len(history),
        "steps": int(model.optimizer.iterations.numpy()),
        "test_accuracy_final": accuracies[-1] if accuracies else None,
        "test_accuracy_best": max(accuracies) if accuracies else None,
        "detection_auc_final": aucs[-1] if aucs else None,
        "detection_auc_best": max(aucs) if aucs else None,
        "detection_auc_final_pass": final_auc,
        "detection_auc_loss_final_pass": final_auc_loss,
        "noise_matrix_nominal": data.noise_matrix,
        "noise_realised": realised,
        "data": data.describe(),
        "wall_seconds": wall_seconds,
        "train_images_per_second": images_per_second,
        "config": config.to_dict(),
        "history": history,
    }
    _write_json(model_dir / "results.json", results)
    if config.export:
        export_lib.export_classifier(
            model.classifier, str(model_dir / "export"), mean=data.mean, std=data.std,
            image_shape=data.source.x_train.shape[1:],
        )
    return results


# ------------------------------------------------------------------------------------ run
def run(config: Config) -> dict:
    config.validate()
    started = time.perf_counter()
    # ---- setup
    strategy = make_strategy(config.strategy)  # first: multi-worker needs it before other ops
    is_chief, task_id = worker_role(strategy)
    model_dir = pathlib.Path(config.model_dir)  # the run's folder, read by every worker
    if config.overwrite and model_dir.exists() and is_chief:
        shutil.rmtree(model_dir)
    if is_chief:  # [issue11] a usable folder; a start that never trained blocks nothing
        run_folder.check_usable(model_dir)
        run_folder.forget_untrained_config(model_dir)
    finished = check_model_dir(config, model_dir)
    if finished is not None:
        logging.info("%s already holds a finished run of %d epochs; nothing to do (raise --epochs "
                     "to train on, or --overwrite to start again).", model_dir, finished["epochs_completed"])
        return finished
    write_dir = model_dir if is_chief else pathlib.Path(tempfile.mkdtemp(prefix=f"rmwnet_worker{task_id}_"))
    try:
        return _train_and_write(config, strategy, model_dir, write_dir, started)
    finally:
        if not is_chief:  # a worker's scratch copy of the run; the chief holds the real one
            shutil.rmtree(write_dir, ignore_errors=True)


def _train_and_write(config, strategy, model_dir, write_dir, started) -> dict:
    keras.utils.set_random_seed(config.seed)
    jit = resolve_jit(config.jit_compile, strategy, get_method(config.method).uses_meta)
    replicas = strategy.num_replicas_in_sync
    for name in ("batch_size", "meta_batch_size"):
        if getattr(config, name) % replicas:
            raise RunError(f"--{name}={getattr(config, name)} is not divisible by the {replicas} replicas")

    # [issue11] read every checkpoint before the data: none usable stops here, in seconds
    checkpoints = checkpointing.RunCheckpoints(model_dir / "checkpoints", write_dir / "checkpoints")

    # ---- data
    data = load_data(config)
    write_dir.mkdir(parents=True, exist_ok=True)  # [issue11] moved: a start that fails before
    _write_json(write_dir / "config.json", config.to_dict())  # this leaves nothing behind
    steps_per_epoch = data_lib.steps_per_epoch(data, config.batch_size)
    logging.info("data: %s", data.describe())

    # ---- model
    with strategy.scope():
        model = build_model(config, data, steps_per_epoch, jit)
        epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        checkpoint = checkpoint_for(model, epoch_var)
    manager = checkpoints.attach(checkpoint, epoch_var, model.optimizer, steps_per_epoch)  # [issue11]

    # ---- resume (every worker from the chief's checkpoints)
    start_epoch, start_step = checkpoints.restore()  # [issue11] newest good one, mid-epoch too
    history = [row for row in (_read_json(model_dir / "history.json") or []) if row["epoch"] <= start_epoch]
    # A resumed run's wall time counts the kept epochs of earlier sittings too (not their setup,
    # nor an epoch lost to the interruption), so a cell's cost does not depend on when it stopped.
    earlier_sittings_seconds = sum(row.get("wall_seconds") or 0.0 for row in history)

    # ---- train
    recorder = callbacks_lib.SampleRecorder(len(data.source.x_train))
    summaries = callbacks_lib.TensorBoardSummaries(str(write_dir / "tensorboard"), recorder, is_noisy=data.is_noisy)
    timer = TrainTimer()
    fit_callbacks = [
        timer, recorder, summaries,
        callbacks_lib.EpochSummaryLine(config.epochs, batch_size=config.batch_size, print_fn=logging.info),
        EpochCheckpoint(manager, epoch_var, write_dir / "history.json", history, timer),
    ]
    fit_callbacks.append(checkpointing.StepCheckpoints(  # [issue11] SIGTERM/Ctrl-C, --checkpoint_every_steps
        checkpoints, every_steps=config.checkpoint_every_steps, on_stop=[summaries.close],
        catch_signals=config.strategy != "multi_worker"))  # saving is collective there
    for first, last, steps, data_epoch, data_step in checkpointing.fit_segments(  # [issue11]
            start_epoch, start_step, config.epochs, steps_per_epoch):
        model.fit(
            fit_dataset(config, data, data_epoch, steps_per_epoch, data_step),
            epochs=last, initial_epoch=first, steps_per_epoch=steps,
            validation_data=data_lib.test_dataset(data, batch_size=config.batch_size),
            callbacks=fit_callbacks, verbose=1 if sys.stdout.isatty() else 0,
        )
    summaries.close()

    # ---- outputs
    train_seconds = sum(row["train_seconds"] or 0.0 for row in history)
    images = steps_per_epoch * config.batch_size * len(history)
    results = write_outputs(
        config, model, data, score_training_set(model, data, config.batch_size), history,
        model_dir=write_dir, wall_seconds=earlier_sittings_seconds + time.perf_counter() - started,
        images_per_second=images / train_seconds if train_seconds else None,
    )
    return results
