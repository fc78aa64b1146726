"""`run(config)`: one training run from data to files on disk, resumable.

Sections: setup, data, model, resume, loop (train one epoch -> evaluate -> write -> checkpoint),
final outputs. Every number a run reports is produced once, by `evaluate.evaluate` (or, for the
train-step means, by the step itself), and written once, by `outputs.RunWriter`. Everything a
run leaves behind lives under `config.model_dir`: config.json, checkpoints/, tensorboard/,
history.json, results.json, sample_scores.csv, pred_probs.npy, given_labels.npy,
sample_index.npy, export/.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import shutil
import sys
import tempfile
import time

import keras
import tensorflow as tf
from absl import logging

from rmwnet_tf import checkpointing
from rmwnet_tf.api import model as api_model
from rmwnet_tf import data as data_lib
from rmwnet_tf import evaluate as evaluate_lib
from rmwnet_tf import export as export_lib
from rmwnet_tf import fingerprints
from rmwnet_tf import init_from
from rmwnet_tf import feature_cache
from rmwnet_tf import models
from rmwnet_tf import outputs
from rmwnet_tf import run_folder
from rmwnet_tf import run_lock
from rmwnet_tf import selection
from rmwnet_tf import summary
from rmwnet_tf import noise as noise_lib
from rmwnet_tf.config import RUN_ONLY_FIELDS, Config, upgrade_saved
from rmwnet_tf.meta_model import MetaWeightModel
from rmwnet_tf.methods import get_method

# Settings that may change between a run and its resumption without changing what is trained.
RESUMABLE_CHANGES = ("epochs", *RUN_ONLY_FIELDS)


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
        check_tf_config(os.environ.get("TF_CONFIG", ""))
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise RunError(f"--strategy: unknown strategy {name!r}")


def check_tf_config(text: str) -> None:
    """TF's own parser fails on a malformed TF_CONFIG with a message naming no variable."""
    if not text.strip():
        return  # unset: one worker
    try:
        value = json.loads(text)
    except ValueError as error:
        value, reason = None, " ".join(str(error).split())
    else:
        reason = "not a JSON object with 'cluster' and 'task'"
    if not (isinstance(value, dict) and isinstance(value.get("cluster"), dict) and isinstance(value.get("task"), dict)):
        raise RunError(
            f"the environment variable TF_CONFIG is not usable for --strategy=multi_worker ({reason}); set it "
            'like {"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", "index": 0}}'
        )


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


def default_jit_compile() -> bool:
    """XLA by device type, as measured (BUILD_NOTES.md "XLA on CPU", scripts/benchmark_step.py).

    On CPU, off for every step kind: with oneDNN's convolution kernels (AVX-512 machine, 2
    cores, ResNet-32, batch 100, interleaved in one process) XLA made the plain step 1.67x
    slower at 32x32 and 1.19x at 16x16, and the exact meta step 1.48x and 1.22x slower (an
    older CPU had measured XLA 9-16% faster for the meta steps; the kernels, not the step
    kind, decide). On GPU XLA is the usual win.
    """
    return bool(tf.config.list_physical_devices("GPU"))


def resolve_jit(setting: str, strategy: tf.distribute.Strategy, uses_meta: bool, meta_every: int = 1) -> bool:
    """XLA per device type and step kind; refused where TF cannot run it (several CPU replicas).

    `auto` never compiles a `meta_every > 1` step with XLA, on any device: its tf.cond step
    under XLA took 120-196x the plain step on CPU (BUILD_NOTES, "Step cost on an idle machine";
    unmeasured on GPU, so not risked there either). On CPU `default_jit_compile` is off anyway."""
    on_cpu = not tf.config.list_logical_devices("GPU")
    several = strategy.num_replicas_in_sync > 1
    if setting == "auto":
        if uses_meta and meta_every > 1:
            return False
        return default_jit_compile() and not (on_cpu and several)
    if setting == "true" and on_cpu and several:
        raise RunError(
            "--jit_compile=true with a multi-replica strategy on CPU fails in TensorFlow "
            "(XLA cannot reach variables on another logical device); use --jit_compile=false"
        )
    return setting == "true"


def check_model_dir(config: Config, model_dir: pathlib.Path) -> dict | None:
    """Refuse to mix two different runs in one folder; return a finished run's results."""
    saved = upgrade_saved(outputs.read_json(model_dir / "config.json"))
    if saved is None:
        return None
    changed = config.differences_from(saved, ignore=RESUMABLE_CHANGES)
    if changed:
        details = ", ".join(f"--{k}: {old!r} there, {new!r} now" for k, (old, new) in changed.items())
        raise RunError(
            f"--model_dir={model_dir} holds a different run ({details}); use another "
            "--model_dir, or --overwrite to replace it"
        )
    results = summary.upgrade(outputs.read_json(model_dir / "results.json"))
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
        label_key=config.label_key,
    )
    if config.class_selection:
        source = data_lib.select_classes(source, config.class_selection)
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
        hold_out_meta=config.hold_out_meta,
        part=config.part,
        part_seed=config.part_seed,
        clean_samples_only=method.clean_samples_only,
        holdout_folds=config.holdout_folds,
        holdout_fold=config.holdout_fold,
    )


def epoch_dataset(config: Config, data: data_lib.NoisyData, epoch: int, steps_per_epoch: int,
                  start_step: int = 0):
    """The batches of one epoch from `start_step` on (a run resumed mid-epoch); a pure function
    of (seed, epoch, step), so resuming replays them."""
    train = data_lib.train_dataset(
        data, batch_size=config.batch_size, seed=config.seed, start_epoch=epoch,
        augment=config.augment, start_step=start_step,
    ).take(steps_per_epoch - start_step)
    if not get_method(config.method).uses_meta:
        return train.map(lambda batch: {"train": batch})
    meta = data_lib.meta_dataset(
        data, batch_size=config.meta_batch_size, seed=config.seed,
        start_step=epoch * steps_per_epoch + start_step, augment=config.augment,
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
    classifier = models.build(config.model, num_classes=data.num_classes, input_shape=shape, seed=config.seed,
                              weights=config.weights, trainable=config.trainable, input_stats=(data.mean, data.std))
    # A head-only run without augmentation trains the head on cached backbone features (feature_cache.py).
    trained = feature_cache.head_network(classifier) if config.caches_features else classifier
    # The public class a Keras user builds (rmwnet_tf.MetaWeightModel): one way to train. It builds
    # the weighting net from seed + 1, as this function always did.
    model = api_model.MetaWeightModel(
        trained, method=config.method, seed=config.seed, weight_norm=config.weight_norm,
        meta_step=config.meta_step, meta_every=config.meta_every, weight_decay=config.weight_decay,
        vnet_weight_decay=config.vnet_weight_decay, image_classifier=classifier,
    )
    model.compile(
        keras.optimizers.SGD(learning_rate(config, steps_per_epoch), momentum=config.momentum,
                             nesterov=config.momentum > 0),
        vnet_optimizer(config) if method.uses_meta else None,
        jit_compile=jit,
        steps_per_execution=config.steps_per_execution,
    )
    return model


def checkpoint_for(model: MetaWeightModel, epoch: tf.Variable) -> tf.train.Checkpoint:
    parts = dict(classifier=model.image_classifier, optimizer=model.optimizer, epoch=epoch)
    if model.vnet is not None:
        parts.update(vnet=model.vnet, vnet_optimizer=model.vnet_optimizer)
    return tf.train.Checkpoint(**parts)


def final_results(config, data, history, *, steps, wall_seconds, images_trained, xla=None) -> dict:
    """results.json: the history's numbers under their own names by the row they come from
    (summary.py: final, best, best_epoch, selected), the realised noise, and the run's cost
    (`images_trained` over the history's summed training seconds)."""
    sections = summary.summarise(history)
    realised = None
    if data.clean_labels is not None:
        train_clean, train_given = data.clean_labels[data.train_indices], data.given_labels[data.train_indices]
        realised = {
            "matrix": noise_lib.realised_matrix(train_clean, train_given, data.num_classes),
            "rate": noise_lib.realised_rate(train_clean, train_given),
        }
    return {
        "epochs_completed": len(history),
        "steps": steps,
        **sections,
        "noise_matrix_nominal": data.noise_matrix,
        "noise_realised": realised,
        "data": data.describe(),
        "wall_seconds": wall_seconds,
        "images_per_second": images_trained / sections["train_seconds"] if sections["train_seconds"] else None,
        "xla": xla,  # what --jit_compile resolved to (in the last sitting, if resumed)
        "config": config.to_dict(),
        "history": history,
    }


# ------------------------------------------------------------------------------------ run
def run(config: Config) -> dict:
    config.validate()
    started = time.perf_counter()
    # ---- setup
    strategy = make_strategy(config.strategy)  # first: multi-worker needs it before other ops
    is_chief, task_id = worker_role(strategy)
    model_dir = pathlib.Path(config.model_dir)  # the run's folder, read by every worker
    if not is_chief:
        return _start(config, strategy, model_dir, started, is_chief, task_id)
    # The chief: a usable folder, one process in it (run_lock), --overwrite only of a run and
    # only once the new one has loaded its data (run_folder.overwriting), no links among the
    # outputs, no leftovers of an interrupted write; a start that never trained blocks nothing.
    run_folder.check_usable(model_dir)
    if config.overwrite:  # before the lock file is made beside it (and again under the lock)
        run_folder.check_overwrite(model_dir)
    with run_lock.locked(model_dir), run_folder.overwriting(model_dir, config.overwrite) as replaced:
        run_folder.check_outputs(model_dir)
        run_folder.remove_partial_writes(model_dir)
        run_folder.forget_untrained_config(model_dir)
        return _start(config, strategy, model_dir, started, is_chief, task_id, on_data_loaded=replaced.discard)


def _start(config, strategy, model_dir, started, is_chief, task_id, on_data_loaded=lambda: None) -> dict:
    finished = check_model_dir(config, model_dir)
    if finished is not None and is_chief:
        run_folder.repair_history(model_dir, finished)
    if finished is not None:
        missing = run_folder.missing_outputs(model_dir, config, finished)
        if not missing:
            logging.info("%s already holds a finished run of %d epochs; nothing to do (raise --epochs "
                         "to train on, or --overwrite to start again).", model_dir, finished["epochs_completed"])
            return finished
        logging.warning("%s holds a finished run without %s; writing them again from its final checkpoint",
                        model_dir, ", ".join(missing))
    write_dir = model_dir if is_chief else pathlib.Path(tempfile.mkdtemp(prefix=f"rmwnet_worker{task_id}_"))
    try:
        return _train_and_write(config, strategy, model_dir, write_dir, started, finished, on_data_loaded)
    finally:
        if not is_chief:  # a worker's scratch copy of the run; the chief holds the real one
            shutil.rmtree(write_dir, ignore_errors=True)


def _train_and_write(config, strategy, model_dir, write_dir, started, finished=None,
                     on_data_loaded=lambda: None) -> dict:
    keras.utils.set_random_seed(config.seed)
    jit = resolve_jit(config.jit_compile, strategy, get_method(config.method).uses_meta, config.meta_every)
    replicas = strategy.num_replicas_in_sync
    for name in ("batch_size", "meta_batch_size"):
        if getattr(config, name) % replicas:
            raise RunError(f"--{name}={getattr(config, name)} is not divisible by the {replicas} replicas")

    # Every checkpoint is read before the data: if none is usable, the run stops in seconds.
    checkpoints = checkpointing.RunCheckpoints(model_dir / "checkpoints", write_dir / "checkpoints")
    results_before = outputs.read_json(model_dir / "results.json")
    if results_before is not None and not checkpoints.good:  # not a silent retrain from epoch 1
        raise RunError(
            f"{model_dir}/results.json records {results_before.get('epochs_completed')} trained epochs, but "
            f"{model_dir}/checkpoints holds no checkpoint to go on from; put the checkpoints back, or start "
            "again with --overwrite"
        )
    models.pretrained.check_weights_available(config.model, config.weights)  # offline: seconds, not minutes

    # ---- data
    data = load_data(config)
    inputs = fingerprints.of_inputs(config, data)  # the same inputs as when the run started
    fingerprints.check((outputs.read_json(model_dir / "config.json") or {}).get(fingerprints.KEY), inputs, config)
    on_data_loaded()  # --overwrite: only now is the earlier run deleted
    write_dir.mkdir(parents=True, exist_ok=True)  # only now: a start that fails before this
    outputs.write_json(write_dir / "config.json",  # leaves nothing behind
                       {**config.to_dict(), fingerprints.KEY: inputs})
    steps_per_epoch = data_lib.steps_per_epoch(data, config.batch_size)
    logging.info("data: %s", data.describe())

    # ---- model
    with strategy.scope():
        model = build_model(config, data, steps_per_epoch, jit)
        if config.init_from:  # where training starts; a resumed run's own checkpoint overrides it
            init_from.load_initial_weights(model.image_classifier, config.init_from, keep_head=config.init_head)
        epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        checkpoint = checkpoint_for(model, epoch_var)
    checkpoints.attach(checkpoint, epoch_var, model.optimizer, steps_per_epoch)

    # ---- resume (every worker from the chief's checkpoints): the newest good one, mid-epoch too
    start_epoch, start_step = checkpoints.restore()
    if start_epoch * steps_per_epoch + start_step > config.epochs * steps_per_epoch:
        where = (f"epoch {start_epoch}" if not start_step else
                 f"step {start_step} of {steps_per_epoch} in epoch {start_epoch + 1}")
        raise RunError(
            f"--epochs={config.epochs} is below the position of the newest checkpoint ({where}); resume with "
            f"--epochs={start_epoch + (start_step > 0)} or more, or start again with --overwrite"
        )
    if start_epoch < config.epochs:
        finished = None  # epochs to train: new results
    if config.caches_features:  # the frozen backbone's features of every image, once (feature_cache.py)
        data = feature_cache.with_features(data, model.image_classifier, batch_size=config.batch_size)
    earlier_rows = [row for row in (outputs.read_json(model_dir / "history.json") or []) if row["epoch"] <= start_epoch]
    # A resumed run's wall time counts the kept epochs of earlier sittings too (not their setup,
    # nor an epoch lost to the interruption), so a cell's cost does not depend on when it stopped.
    earlier_sittings_seconds = sum(row.get("wall_seconds") or 0.0 for row in earlier_rows)

    # ---- loop: train one epoch -> evaluate -> write -> checkpoint
    suspects = outputs.Suspects(data.source.x_train, data.source.class_names, config.suspects) if config.suspects else None
    # The writer owns the history from here: it appends each epoch's row and rewrites history.json.
    writer = outputs.RunWriter(write_dir, total_epochs=config.epochs, history=earlier_rows, print_fn=logging.info,
                               weight_function=model.weight_function if model.vnet is not None else None,
                               suspects=suspects)
    predict = evaluate_lib.predict_fn(model)
    selected = tf.train.Checkpoint(classifier=model.image_classifier)  # the gold-free pick, see selection.py
    # SIGTERM / Ctrl-C: a checkpoint at the next step boundary, then `checkpointing.Interrupted`.
    stopper = checkpointing.StepCheckpoints(
        checkpoints, every_steps=config.checkpoint_every_steps, on_stop=[writer.close],
        catch_signals=config.strategy != "multi_worker")  # saving is collective there
    evaluation = None
    with stopper.installed():
        for epoch in range(start_epoch, config.epochs):
            epoch_started = time.perf_counter()
            first_step, start_step = start_step, 0  # only the epoch a run resumes in starts mid-way
            steps = steps_per_epoch - first_step
            fitted = model.fit(epoch_dataset(config, data, epoch, steps_per_epoch, first_step), epochs=1,
                               steps_per_epoch=steps, shuffle=False, callbacks=[stopper],
                               verbose=1 if sys.stdout.isatty() else 0)
            train_seconds = time.perf_counter() - epoch_started
            # The lr of the epoch's steps after its first (Keras' schedule drops one step after the
            # boundary: at the boundary iteration itself the old value still applies).
            lr = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
            row = {"epoch": epoch + 1, "lr": lr, **{k: float(v[-1]) for k, v in fitted.history.items()}}
            if not math.isfinite(row.get("train/loss", 0.0)):
                raise RunError(
                    f"the loss became NaN in epoch {epoch + 1} (train/loss {row['train/loss']}); lower --lr (now "
                    f"{config.lr:g}) and start again (--overwrite replaces this run)"
                )
            last = epoch + 1 == config.epochs
            evaluation = None
            if last or (epoch + 1) % config.eval_every == 0:
                evaluation = evaluate_lib.evaluate(model, data, batch_size=config.batch_size, predict=predict)
                row.update(evaluation.metrics)
            row.update(train_seconds=train_seconds, wall_seconds=time.perf_counter() - epoch_started,
                       images_per_second=steps * config.batch_size / train_seconds)
            if evaluation is not None and selection.select_epoch(writer.history + [row]) == epoch + 1:
                selected.write(str(write_dir / "selected" / "classifier"))
                (write_dir / "selected" / "epoch").write_text(str(epoch + 1))
            writer.epoch(row, evaluation)
            epoch_var.assign(epoch + 1)
            stopper.stop_if_requested(checkpoints.save())  # a stop asked for during evaluation
        writer.close()

        # ---- final outputs (a resumed, already trained run is evaluated once more), still under the
        # signal handler: a stop here says so, and as results.json comes last, the rerun writes them.
        def stop_if_requested():
            stopper.stop_if_requested(checkpoints.manager.latest_checkpoint or str(write_dir / "checkpoints"),
                                      during="the final outputs")

        if evaluation is None:
            evaluation = evaluate_lib.evaluate(model, data, batch_size=config.batch_size, predict=predict)
        stop_if_requested()
        outputs.write_sample_outputs(write_dir, evaluation.samples, suspects)
        heldout = evaluate_lib.heldout_predictions(model, data, batch_size=config.batch_size, predict=predict)
        if heldout is not None:
            outputs.write_heldout_outputs(write_dir, heldout)
        history = writer.history
        results = final_results(
            config, data, history, steps=int(model.optimizer.iterations.numpy()),
            wall_seconds=earlier_sittings_seconds + time.perf_counter() - started,
            images_trained=steps_per_epoch * config.batch_size * len(history), xla=jit,
        )
        if config.export:
            stop_if_requested()
            export_lib.export_classifier(
                model.image_classifier, str(write_dir / "export"), mean=data.mean, std=data.std,
                image_shape=data.source.x_train.shape[1:],
            )
            saved_epoch = write_dir / "selected" / "epoch"
            selected_epoch = results["selected"].get("epoch")
            if selected_epoch is not None and (
                    not saved_epoch.exists() or saved_epoch.read_text() != str(selected_epoch)):
                # A run begun before the criterion changed kept another epoch's weights.
                logging.warning("export_selected/ not written: the selected checkpoint on disk is not epoch %s",
                                selected_epoch)
            elif selected_epoch is not None:
                stop_if_requested()
                selected.read(str(write_dir / "selected" / "classifier")).assert_existing_objects_matched()
                export_lib.export_classifier(
                    model.image_classifier, str(write_dir / "export_selected"), mean=data.mean, std=data.std,
                    image_shape=data.source.x_train.shape[1:],
                )
        stop_if_requested()
        if finished is not None:  # a finished run's missing outputs, rewritten: its results stand
            return finished
        outputs.write_json(write_dir / "results.json", results)  # last: its presence means "all written"
    return results
