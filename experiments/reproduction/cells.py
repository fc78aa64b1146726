"""The grid's run folders: what each holds, training the unfinished ones, one result entry per cell.

Everything here reads JSON written by train.run, never TensorFlow objects, so inspecting
and reporting stay quick; only training itself imports TensorFlow.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
from typing import Callable, Sequence

from absl import logging

from rmwnet_tf import selection, summary
from rmwnet_tf.config import RUN_ONLY_FIELDS, Config, upgrade_saved
from experiments.reproduction.compact import SAMPLES_FILE, compact_run
from experiments.reproduction.protocol import SETTINGS, Cell, Protocol, cell_config, grid, pretrain_config


# ------------------------------------------------------------------------------------ cells on disk
# Config fields that say how or where a run is executed, not what is trained: a finished run
# still counts when only these differ (`epochs` is compared separately: more is "partial").
RUN_ONLY_KEYS = RUN_ONLY_FIELDS


@dataclasses.dataclass
class CellState:
    status: str  # "done" | "partial" | "not run" | "stale"
    results: dict | None = None
    epochs_completed: int = 0
    differences: dict = dataclasses.field(default_factory=dict)


class StaleRunError(RuntimeError):
    """A cell's folder holds a run of another protocol; it is neither reused nor overwritten."""


def inspect_cell(config: Config) -> CellState:
    """What a cell's folder holds, read from its JSON files without TensorFlow.

    "stale" means the folder was trained under other settings (e.g. before the protocol was
    tuned): its numbers must not be reported as this protocol's, and train.run would refuse it.
    """
    model_dir = pathlib.Path(config.model_dir)
    saved = upgrade_saved(read_json(model_dir / "config.json"))
    if saved is None:
        return CellState("not run")
    differences = config.differences_from(saved, ignore=RUN_ONLY_KEYS + ("epochs",))
    if differences:
        return CellState("stale", differences=differences)
    results = summary.upgrade(read_json(model_dir / "results.json"))
    if results is not None:
        completed = int(results.get("epochs_completed", 0))
        if completed == config.epochs:
            return CellState("done", results=results, epochs_completed=completed)
        if completed > config.epochs:
            return CellState("stale", epochs_completed=completed,
                             differences={"epochs": (completed, config.epochs)})
    history = read_json(model_dir / "history.json") or []
    return CellState("partial", epochs_completed=len(history))


def cells_on_disk(runs_dir, methods: Sequence[str]) -> list[Cell]:
    """Every cell of `methods` with a folder under runs_dir (<setting>/<method>/seed<k>/), in grid
    order: what the report shows besides the planned grid, so that no run is hidden."""
    runs_dir, cells = pathlib.Path(runs_dir), []
    for setting in SETTINGS:
        seeds = sorted({int(path.name[4:]) for path in runs_dir.glob(f"{setting.name}/*/seed*")
                        if path.name[4:].isdigit()})  # not an interrupted copy's seed<k>.copying
        cells += [cell for cell in grid([setting], methods, seeds) if cell.model_dir(runs_dir).is_dir()]
    return cells


def read_json(path: pathlib.Path):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def _describe_differences(differences: dict) -> str:
    return ", ".join(f"{key}: {old!r} there, {new!r} now" for key, (old, new) in differences.items())


# ------------------------------------------------------------------------------------ running
@dataclasses.dataclass
class RunTally:
    newly_run: list[str] = dataclasses.field(default_factory=list)
    already_done: list[str] = dataclasses.field(default_factory=list)
    left: list[str] = dataclasses.field(default_factory=list)


def check_cells(cells: Sequence[Cell], protocol: Protocol, runs_dir) -> list[str]:
    """Every config problem of the cells about to run, as `--flag: message` lines, before any work."""
    problems = {}
    pretraining = pretrain_config(protocol)
    if pretraining is not None:
        for flag, message in pretraining.problems():
            problems.setdefault(f"--{flag}: {message} (the pretraining run)", None)
    for cell in cells:
        for flag, message in cell_config(cell, protocol, runs_dir).problems():
            if flag == "init_from" and pretraining is not None:
                continue  # the pretraining step makes it before any cell runs
            problems.setdefault(f"--{flag}: {message}", None)
    return list(problems)


def stale_message(config: Config, state: CellState) -> str:
    return (f"{config.model_dir} holds a run of another protocol ({_describe_differences(state.differences)}); "
            "move it away or pass --runs_dir=<a new folder>")


def refuse_stale_cells(cells: Sequence[Cell], protocol: Protocol, runs_dir) -> None:
    """Stop before any training (and before the report is rewritten) if a cell holds another protocol's run."""
    for cell in cells:
        config = cell_config(cell, protocol, runs_dir)
        state = inspect_cell(config)
        if state.status == "stale":
            raise StaleRunError(stale_message(config, state))


def continue_earlier_run(config: Config, earlier_dir: pathlib.Path) -> int:
    """Copy a shorter run of this very cell into its empty folder, so that training continues it.

    The weighting-net rule trains its candidates' cells to the first drop only, with the grid's
    config but --epochs; the lr schedule does not depend on --epochs, so continuing such a run to
    the full length takes the steps the uninterrupted run would take (test_train's resumed run
    equals the uninterrupted one). Returns the epochs it brought (0: nothing usable there, so
    nothing copied). The copy lands under a temporary name first: an interrupted copy is never
    mistaken for a run.
    """
    earlier = inspect_cell(dataclasses.replace(config, model_dir=str(earlier_dir)))
    if earlier.status != "partial" or not earlier.epochs_completed or not (earlier_dir / "checkpoints").is_dir():
        return 0
    target = pathlib.Path(config.model_dir)
    staging = target.with_name(target.name + ".copying")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(earlier_dir, staging)
    (staging / SAMPLES_FILE).unlink(missing_ok=True)  # the earlier run's final evaluation, not this run's
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staging, target)
    return earlier.epochs_completed


def run_cells(cells: Sequence[Cell], protocol: Protocol, runs_dir, *, max_cells: int | None = None,
              run_fn: Callable[[Config], dict] | None = None, log=logging.info,
              earlier_run: Callable[[Config], pathlib.Path | None] | None = None) -> RunTally:
    """Train every cell that is not finished, in grid order, at most `max_cells` of them.

    Finished cells are skipped without calling `run_fn`; a half-done one is handed to it and
    resumes from its last checkpoint (train.run's own behaviour). A cell not run yet starts from
    `earlier_run(config)`, a shorter run of the same cell, when there is one
    (continue_earlier_run; the grid passes the weighting-net rule's cells). A cell just finished is
    compacted (compact.compact_run): its per-sample files give way to samples.npz where an
    analysis reads them. A cell holding another
    protocol's run stops everything: mixing protocols in one table would mislead.
    """
    if run_fn is None:
        from rmwnet_tf import train  # heavy import, only when something will train

        run_fn = train.run
    tally = RunTally()
    for position, cell in enumerate(cells, start=1):
        config = cell_config(cell, protocol, runs_dir)
        state = inspect_cell(config)
        if state.status == "done":
            tally.already_done.append(cell.label)
            continue
        if state.status == "stale":
            raise StaleRunError(stale_message(config, state))
        if max_cells is not None and len(tally.newly_run) >= max_cells:
            tally.left.append(cell.label)
            continue
        resume = f", resuming after epoch {state.epochs_completed}" if state.epochs_completed else ""
        earlier = earlier_run(config) if earlier_run is not None and state.status == "not run" else None
        if earlier is not None and (brought := continue_earlier_run(config, earlier)):
            resume = f", continuing {earlier} after epoch {brought}"
        log(f"cell {position}/{len(cells)}: {cell.label}{resume}")
        run_fn(config)
        compact_run(config.model_dir)  # a kept study run keeps only what an analysis reads per sample
        tally.newly_run.append(cell.label)
    return tally


# ------------------------------------------------------------------------------------ entries
# Copied from results.json under its own flattened names (rmwnet_tf/summary.py): final/... is the last
# evaluation, best/... the highest over the evaluations, selected/... the epoch the meta set picks.
# final/detection/auc is the final model's AUC of W over the whole un-augmented training set;
# final/detection/auc_loss the same for -loss (every method); final/fit/noisy_memorised the share of
# wrongly labelled samples the final network predicts as their wrong label (meta-weighting can only
# help Base when Base memorises, so the report shows it).
RESULT_KEYS = ("final/test/accuracy", "best/test/accuracy", "best_epoch/test/accuracy", "selected/test/accuracy",
               "selected/epoch", "final/detection/auc", "best/detection/auc", "final/detection/auc_loss",
               "best/detection/auc_loss", "final/fit/clean_fitted", "final/fit/noisy_memorised",
               "final/fit/noisy_corrected", "final/weights/loss_spearman", "final/weights/clean_mean",
               "final/weights/noisy_mean", "final/weights/ess_fraction", "final/meta/mae")
RUN_KEYS = ("steps", "wall_seconds", "train_seconds")
FIT_KEYS = ("final/fit/clean_fitted", "final/fit/noisy_memorised", "final/fit/noisy_corrected")


def diverged(history) -> bool | None:
    """A run diverged when its training CE after the last epoch is above its first epoch's:
    every healthy run of the protocol ends far below it (3.0 -> 0.4-1.9), a diverged one far
    above (uniform40/rmnwnet/seed1: 3.9 -> 29)."""
    losses = [row.get("train/loss") for row in history if row.get("train/loss") is not None]
    return None if len(losses) < 2 else bool(losses[-1] > losses[0])


def entry_for(cell: Cell, config: Config, state: CellState) -> dict:
    """One line of reproduction.json: a cell's identity, status and (when done) its numbers, under
    results.json's names, plus the selection by the meta MAE (the criterion the meta accuracy
    replaced; the retired v2.1 report compared the two)."""
    entry = {
        "setting": cell.setting.name, "noise_type": cell.setting.noise_type,
        "noise_rate": cell.setting.noise_rate, "method": cell.method, "seed": cell.seed,
        "model_dir": config.model_dir, "status": state.status,
        "epochs_completed": state.epochs_completed, "epochs": config.epochs,
    }
    results = state.results if state.status == "done" else None
    flat = summary.flat(results or {})
    entry.update({key: flat.get(key) for key in RESULT_KEYS})
    entry.update({key: (results or {}).get(key) for key in RUN_KEYS})
    by_mae = selection.selected_row((results or {}).get("history") or [], "meta_mae")
    entry["selected_by_meta_mae/epoch"] = by_mae.get("epoch")
    entry["selected_by_meta_mae/test/accuracy"] = by_mae.get("test/accuracy")
    entry["seconds_per_step"] = (
        entry["train_seconds"] / entry["steps"] if entry["train_seconds"] and entry["steps"] else None
    )
    entry["diverged"] = None if results is None else diverged(results.get("history") or [])
    realised = None if results is None else results.get("noise_realised")
    entry["noise_rate_realised"] = realised.get("rate") if realised else None
    return entry


def collect_entries(cells: Sequence[Cell], protocol: Protocol, runs_dir) -> list[dict]:
    entries = []
    for cell in cells:
        config = cell_config(cell, protocol, runs_dir)
        entries.append({"protocol": protocol.name, **entry_for(cell, config, inspect_cell(config))})
    return entries


