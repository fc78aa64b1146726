"""The grid's run folders: what each holds, training the unfinished ones, one result entry per cell.

Everything here reads JSON written by train.run, never TensorFlow objects, so inspecting
and reporting stay quick; only training itself imports TensorFlow.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Callable, Iterable, Sequence

import numpy as np
from absl import logging

from rmwnet_tf.config import Config, upgrade_saved
from experiments.reproduction.protocol import Cell, Protocol, cell_config


# ------------------------------------------------------------------------------------ cells on disk
# Config fields that say how or where a run is executed, not what is trained: a finished run
# still counts when only these differ. Kept equal to train.RESUMABLE_CHANGES minus "epochs"
# (a test checks it); copied because importing train would pull in TensorFlow.
RUN_ONLY_KEYS = ("model_dir", "overwrite", "jit_compile", "strategy", "export")


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
    expected = config.to_dict()
    differences = {
        key: (saved.get(key), value)
        for key, value in expected.items()
        if key not in RUN_ONLY_KEYS + ("epochs",) and saved.get(key) != value
    }
    if differences:
        return CellState("stale", differences=differences)
    results = read_json(model_dir / "results.json")
    if results is not None:
        completed = int(results.get("epochs_completed", 0))
        if completed == config.epochs:
            return CellState("done", results=results, epochs_completed=completed)
        if completed > config.epochs:
            return CellState("stale", epochs_completed=completed,
                             differences={"epochs": (completed, config.epochs)})
    history = read_json(model_dir / "history.json") or []
    return CellState("partial", epochs_completed=len(history))


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
    for cell in cells:
        for flag, message in cell_config(cell, protocol, runs_dir).problems():
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


def run_cells(cells: Sequence[Cell], protocol: Protocol, runs_dir, *, max_cells: int | None = None,
              run_fn: Callable[[Config], dict] | None = None, log=logging.info) -> RunTally:
    """Train every cell that is not finished, in grid order, at most `max_cells` of them.

    Finished cells are skipped without calling `run_fn`; a half-done one is handed to it and
    resumes from its last checkpoint (train.run's own behaviour). A cell holding another
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
        log(f"cell {position}/{len(cells)}: {cell.label}{resume}")
        run_fn(config)
        tally.newly_run.append(cell.label)
    return tally


# ------------------------------------------------------------------------------------ entries
RESULT_KEYS = ("test_accuracy_final", "test_accuracy_best", "detection_auc_final", "detection_auc_best",
               "detection_auc_final_pass", "detection_auc_loss_final_pass", "steps", "wall_seconds")


def entry_for(cell: Cell, config: Config, state: CellState) -> dict:
    """One line of reproduction.json: a cell's identity, status and (when done) its numbers."""
    entry = {
        "setting": cell.setting.name, "noise_type": cell.setting.noise_type,
        "noise_rate": cell.setting.noise_rate, "method": cell.method, "seed": cell.seed,
        "model_dir": config.model_dir, "status": state.status,
        "epochs_completed": state.epochs_completed, "epochs": config.epochs,
    }
    results = state.results if state.status == "done" else None
    for key in RESULT_KEYS:
        entry[key] = None if results is None else results.get(key)
    entry["train_seconds"] = None if results is None else train_seconds(results.get("history") or [])
    entry["seconds_per_step"] = (
        entry["train_seconds"] / entry["steps"] if entry["train_seconds"] and entry["steps"] else None
    )
    realised = None if results is None else results.get("noise_realised")
    entry["noise_rate_realised"] = realised.get("rate") if realised else None
    scores_path = pathlib.Path(config.model_dir) / "sample_scores.csv"
    fits = fit_rates(read_sample_scores(scores_path)) if results is not None and scores_path.exists() else {}
    for key in FIT_KEYS:
        entry[key] = fits.get(key)
    return entry


# What the final network predicts on its own training samples (un-augmented final pass).
# "noisy_fitted" is memorisation: the share of wrongly labelled samples predicted as their wrong
# label. Meta-weighting can only help Base when Base memorises, so the report shows it next to
# the accuracies.
FIT_KEYS = ("clean_fitted_final", "noisy_fitted_final", "noisy_corrected_final")


def read_sample_scores(path) -> dict[str, np.ndarray]:
    """sample_scores.csv as arrays; the label columns are None when the file lacks them."""
    table = np.genfromtxt(path, delimiter=",", names=True, ndmin=1)
    names = table.dtype.names

    def column(name, dtype):
        return np.asarray(table[name], dtype=dtype) if name in names else None

    return {
        "weight": column("weight", np.float64), "loss": column("loss", np.float64),
        "is_noisy": column("is_noisy", bool), "given_label": column("given_label", np.int64),
        "predicted_label": column("predicted_label", np.int64), "clean_label": column("clean_label", np.int64),
    }


def fit_rates(scores: dict) -> dict:
    """Shares of clean samples fitted, noisy samples memorised and noisy samples corrected.

    Empty when the true labels are unknown; a share is None when its group is empty (no noise).
    """
    if any(scores.get(key) is None for key in ("is_noisy", "given_label", "predicted_label", "clean_label")):
        return {}
    noisy, predicted = scores["is_noisy"], scores["predicted_label"]

    def share(mask, target):
        return float(np.mean(predicted[mask] == target[mask])) if mask.any() else None

    return {
        "clean_fitted_final": share(~noisy, scores["given_label"]),
        "noisy_fitted_final": share(noisy, scores["given_label"]),
        "noisy_corrected_final": share(noisy, scores["clean_label"]),
    }


def train_seconds(history: Iterable[dict]) -> float:
    """Seconds spent in training steps, summed over epochs (evaluation excluded)."""
    return float(sum(row.get("train_seconds") or 0.0 for row in history))


def collect_entries(cells: Sequence[Cell], protocol: Protocol, runs_dir) -> list[dict]:
    entries = []
    for cell in cells:
        config = cell_config(cell, protocol, runs_dir)
        entries.append(entry_for(cell, config, inspect_cell(config)))
    return entries


