"""A reduced-scale reproduction of Ghosh & Lan (WACV 2021), Tables 1-3, on CIFAR-10.

Base, MW-Net*, MNW-Net and RMNW-Net are trained under the paper's noise settings with one
shared, reduced budget (`PROTOCOL`); the runs' results are gathered into
`reproduction.json`, the paper's claims are checked against them with stated rules, and
`REPRODUCTION.md` (with plots) is written for people to read.

`scripts/reproduce.py` is the command line; everything it does lives here so that tests can
drive it. Reading results, judging claims and writing the report need no TensorFlow (only
training does), so `--report_only` is quick.

Sections: protocol, grid, cells on disk, running, entries, aggregation, claims, cost,
paper, plots, report, the whole job.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import os
import pathlib
import shlex
import statistics
from typing import Callable, Iterable, Sequence

import numpy as np
from absl import logging

from rmwnet_tf.config import Config


# ------------------------------------------------------------------------------------ protocol
@dataclasses.dataclass(frozen=True)
class Protocol:
    """The reduced budget every method gets: a small fraction of the paper's compute.

    How it was scaled from the paper (CIFAR-10: 50,000 training images of 32x32, of which
    1,000 form the meta set; WRN-28-10 for uniform and flip noise, ResNet-32 for flip2; SGD
    with momentum 0.9, weight decay 5e-4, batch 100; a weighting net W(loss) with 100 hidden
    units trained with lr 1e-3, weight decay 5e-4; tens of thousands of steps on a GPU):

    - data: a seeded, class-balanced subset of 6,000 training images, of which 1,000 are the
      meta set as in the paper, leaving 5,000 to train on (10x fewer); Base has no meta set
      and trains on all 6,000. The test set is CIFAR-10's full 10,000 images.
    - images: the offline CIFAR-10 JPEG copy (quality 75) resized to 16x16 (4x fewer pixels).
    - model: `small_cnn` (141k parameters) instead of WRN-28-10 (36.5M) or ResNet-32 (464k),
      the same network for every noise type, so that a run takes minutes on 2 CPU cores.
    - schedule: 24 epochs of 50 steps (1,200 steps); lr 0.05 divided by 10 after epochs 19
      and 22, i.e. at about 0.8 and 0.9 of training, keeping the paper's late drops.
    - weighting net: Adam instead of SGD at the same lr 1e-3, as configs/quickstart.flags
      does, so that W learns within about a thousand steps.
    - kept as in the paper: batch 100, meta batch 100, classifier SGD (Nesterov) lr 0.05,
      momentum 0.9, weight decay 5e-4 for both nets, crop+flip augmentation, noise models.
    """

    dataset: str = "image_folder"
    data_dir: str = "data/cifar10"
    image_size: int = 16
    model: str = "small_cnn"
    train_size: int = 6000
    meta_size: int = 1000
    batch_size: int = 100
    meta_batch_size: int = 100
    epochs: int = 24
    lr: float = 0.05
    lr_boundaries: str = "19,22"
    lr_decay: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    vnet_optimizer: str = "adam"
    vnet_lr: float = 1e-3
    vnet_weight_decay: float = 5e-4
    augment: bool = True
    export: bool = False
    # Only read with dataset=synthetic (smoke tests); kept at Config's defaults otherwise.
    synthetic_train_size: int = 4000
    synthetic_test_size: int = 1000

    def config_fields(self) -> dict:
        return dataclasses.asdict(self)


PROTOCOL = Protocol()


def protocol_with(overrides: dict) -> Protocol:
    """PROTOCOL with the given fields replaced; a None value keeps the protocol's value.

    Leaving image_folder without naming a data_dir drops the folder, which Config refuses for
    any other dataset (e.g. `--dataset=cifar10` on a machine with internet).
    """
    changes = {key: value for key, value in overrides.items() if value is not None}
    unknown = sorted(set(changes) - {field.name for field in dataclasses.fields(Protocol)})
    if unknown:
        raise ValueError(f"not protocol fields: {', '.join(unknown)}")
    if changes.get("dataset") == "cifar100":
        raise ValueError("--dataset: this reproduces the paper's CIFAR-10 tables; cifar100 is not one of them")
    if changes.get("dataset", PROTOCOL.dataset) != "image_folder" and "data_dir" not in changes:
        changes["data_dir"] = ""
    return dataclasses.replace(PROTOCOL, **changes)


# ------------------------------------------------------------------------------------ grid
@dataclasses.dataclass(frozen=True)
class Setting:
    name: str  # folder and flag name
    noise_type: str
    noise_rate: float
    label: str  # as the report shows it


SETTINGS = (
    Setting("uniform40", "uniform", 0.4, "uniform 40%"),
    Setting("uniform60", "uniform", 0.6, "uniform 60%"),
    Setting("flip2_20", "flip2", 0.2, "flip2 20%"),
    Setting("flip2_40", "flip2", 0.4, "flip2 40%"),
    Setting("flip15", "flip", 0.15, "flip 15%"),
    Setting("flip30", "flip", 0.3, "flip 30%"),
    Setting("none0", "none", 0.0, "no noise (0%)"),
)
SETTINGS_BY_NAME = {setting.name: setting for setting in SETTINGS}
UNIFORM_SETTINGS = ("uniform40", "uniform60")
HEAVY_NOISE_SETTINGS = ("uniform60", "flip30", "flip2_40")
NOISY_SETTINGS = tuple(s.name for s in SETTINGS if s.noise_type != "none")

METHOD_ORDER = ("base", "mwnet", "mnwnet", "rmnwnet")
META_METHODS = ("mwnet", "mnwnet", "rmnwnet")
METHOD_LABELS = {"base": "Base", "mwnet": "MW-Net*", "mnwnet": "MNW-Net", "rmnwnet": "RMNW-Net"}
DEFAULT_SEEDS = (0, 1)
DEFAULT_RUNS_DIR = "runs/reproduction"
DEFAULT_OUT_DIR = "results"


@dataclasses.dataclass(frozen=True)
class Cell:
    setting: Setting
    method: str
    seed: int

    @property
    def label(self) -> str:
        return f"{self.setting.name}/{self.method}/seed{self.seed}"

    def model_dir(self, runs_dir) -> pathlib.Path:
        return pathlib.Path(runs_dir) / self.setting.name / self.method / f"seed{self.seed}"


def grid(settings: Sequence[Setting], methods: Sequence[str], seeds: Sequence[int]) -> list[Cell]:
    """Setting by setting, then seed, then method.

    So a complete one-seed comparison of the four methods exists before a setting's next seed
    starts, and the first setting (uniform 40%) is complete before any other begins.
    """
    ordered_methods = [m for m in METHOD_ORDER if m in methods]
    return [Cell(s, m, seed) for s in settings for seed in seeds for m in ordered_methods]


def parse_settings(text: str) -> list[Setting]:
    names = _split(text) or [s.name for s in SETTINGS]
    unknown = [name for name in names if name not in SETTINGS_BY_NAME]
    if unknown:
        raise ValueError(f"--settings: unknown {', '.join(unknown)}; known: {', '.join(SETTINGS_BY_NAME)}")
    return [SETTINGS_BY_NAME[name] for name in dict.fromkeys(names)]


def parse_methods(text: str) -> list[str]:
    names = _split(text) or list(METHOD_ORDER)
    unknown = [name for name in names if name not in METHOD_ORDER]
    if unknown:
        raise ValueError(f"--methods: unknown {', '.join(unknown)}; known: {', '.join(METHOD_ORDER)}")
    return [m for m in METHOD_ORDER if m in names]


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(part) for part in _split(text)]
    except ValueError:
        raise ValueError(f"--seeds: expects comma-separated integers like '0,1', got {text!r}") from None
    if not seeds or any(seed < 0 for seed in seeds):
        raise ValueError(f"--seeds: expects non-negative integers, got {text!r}")
    return list(dict.fromkeys(seeds))


def _split(text: str) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def cell_config(cell: Cell, protocol: Protocol, runs_dir) -> Config:
    return Config(
        **protocol.config_fields(),
        noise_type=cell.setting.noise_type,
        noise_rate=cell.setting.noise_rate,
        method=cell.method,
        seed=cell.seed,
        model_dir=str(cell.model_dir(runs_dir)),
    )


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
    saved = _read_json(model_dir / "config.json")
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
    results = _read_json(model_dir / "results.json")
    if results is not None:
        completed = int(results.get("epochs_completed", 0))
        if completed == config.epochs:
            return CellState("done", results=results, epochs_completed=completed)
        if completed > config.epochs:
            return CellState("stale", epochs_completed=completed,
                             differences={"epochs": (completed, config.epochs)})
    history = _read_json(model_dir / "history.json") or []
    return CellState("partial", epochs_completed=len(history))


def _read_json(path: pathlib.Path):
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
    return entry


def train_seconds(history: Iterable[dict]) -> float:
    """Seconds spent in training steps, summed over epochs (evaluation excluded)."""
    return float(sum(row.get("train_seconds") or 0.0 for row in history))


def collect_entries(cells: Sequence[Cell], protocol: Protocol, runs_dir) -> list[dict]:
    entries = []
    for cell in cells:
        config = cell_config(cell, protocol, runs_dir)
        entries.append(entry_for(cell, config, inspect_cell(config)))
    return entries


# ------------------------------------------------------------------------------------ aggregation
@dataclasses.dataclass(frozen=True)
class Summary:
    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float | None:
        """Sample standard deviation over seeds (n - 1); None for a single seed."""
        return statistics.stdev(self.values) if self.n > 1 else None


def summarize(entries: Iterable[dict], setting: str, method: str, key: str) -> Summary | None:
    values = tuple(
        float(e[key]) for e in entries
        if e["setting"] == setting and e["method"] == method and e["status"] == "done" and e.get(key) is not None
    )
    return Summary(values) if values else None


def format_mean_std(values: Sequence[float] | Summary | None, *, scale: float = 1.0, digits: int = 2) -> str:
    """"mean ± std" over seeds; just the value for one seed; "—" when nothing is measured."""
    summary = values
    if summary is not None and not isinstance(summary, Summary):
        summary = Summary(tuple(summary)) if len(summary) else None
    if summary is None:
        return "—"
    if summary.std is None:
        return f"{summary.mean * scale:.{digits}f}"
    return f"{summary.mean * scale:.{digits}f} ± {summary.std * scale:.{digits}f}"


# ------------------------------------------------------------------------------------ claims
HOLDS, FAILS, NOT_YET_MEASURED = "HOLDS", "FAILS", "NOT YET MEASURED"


@dataclasses.dataclass(frozen=True)
class Metric:
    key: str  # field of an entry
    name: str
    scale: float  # entry value -> shown value
    digits: int
    approx_tolerance: float  # in shown units: the smallest gap "≈" always forgives


# Final, not best, accuracy: the best epoch is picked on the test set, which flatters a method.
ACCURACY = Metric("test_accuracy_final", "final test accuracy", 100.0, 2, approx_tolerance=1.0)
AUC = Metric("detection_auc_final_pass", "detection AUC of the final weights", 1.0, 4, approx_tolerance=0.01)

RELATION_RULES = {
    "approx": "≈: |mean difference| ≤ max(1 point, pooled std of the seeds)",
    "greater": ">: mean difference > 0 and > pooled std of the seeds",
    "not_lower": "≥: mean difference ≥ −(pooled std of the seeds), i.e. not lower beyond the seeds' spread",
}


@dataclasses.dataclass(frozen=True)
class Claim:
    number: int
    statement: str
    metric: Metric
    relation: str  # a key of RELATION_RULES
    pairs: tuple[tuple[str, str, str], ...]  # (setting, method a, method b): "a <relation> b"


def paper_claims() -> tuple[Claim, ...]:
    return (
        Claim(1, "RMNW-Net ≈ MW-Net* although it uses no clean samples", ACCURACY, "approx",
              tuple((s.name, "rmnwnet", "mwnet") for s in SETTINGS)),
        Claim(2, "RMNW-Net > MNW-Net under uniform noise", ACCURACY, "greater",
              tuple((s, "rmnwnet", "mnwnet") for s in UNIFORM_SETTINGS)),
        Claim(3, "every meta method > Base under heavy noise (uniform 60%, flip 30%, flip2 40%)", ACCURACY,
              "greater", tuple((s, m, "base") for s in HEAVY_NOISE_SETTINGS for m in META_METHODS)),
        Claim(4, "RMNW-Net's detection AUC ≥ MW-Net*'s", AUC, "not_lower",
              tuple((s, "rmnwnet", "mwnet") for s in NOISY_SETTINGS)),
    )


@dataclasses.dataclass(frozen=True)
class Comparison:
    setting: str
    method_a: str
    method_b: str
    a: Summary
    b: Summary
    difference: float  # in shown units
    tolerance: float  # in shown units
    holds: bool

    def describe(self, metric: Metric, relation: str) -> str:
        """One Markdown line with the numbers the verdict rests on."""
        label = SETTINGS_BY_NAME[self.setting].label
        a = format_mean_std(self.a, scale=metric.scale, digits=metric.digits)
        b = format_mean_std(self.b, scale=metric.scale, digits=metric.digits)
        threshold = f"{self.tolerance:.{metric.digits}f}"
        needs = {"approx": f"needs |Δ| ≤ {threshold}", "greater": f"needs Δ > {threshold}",
                 "not_lower": f"needs Δ ≥ −{threshold}"}[relation]
        return (f"{label}: {markdown(METHOD_LABELS[self.method_a])} {a} vs "
                f"{markdown(METHOD_LABELS[self.method_b])} {b}: Δ {self.difference:+.{metric.digits}f}, "
                f"{needs} ({self.a.n}+{self.b.n} seeds) → {'holds' if self.holds else 'fails'}")


@dataclasses.dataclass(frozen=True)
class ClaimResult:
    claim: Claim
    verdict: str
    comparisons: tuple[Comparison, ...]

    @property
    def coverage(self) -> str:
        return f"{len(self.comparisons)} of {len(self.claim.pairs)} comparisons measured"


def pooled_std(a: Summary, b: Summary) -> float:
    """Root mean square of the two seeds' standard deviations; a one-seed side counts as 0.

    With one seed per side the spread is unknown, so the rules then reduce to comparing means
    (and the report says how many seeds each comparison rests on).
    """
    return math.sqrt(((a.std or 0.0) ** 2 + (b.std or 0.0) ** 2) / 2.0)


def compare(relation: str, a: Summary, b: Summary, metric: Metric) -> tuple[float, float, bool]:
    """(difference, tolerance, holds) of "a <relation> b", in the metric's shown units."""
    difference = (a.mean - b.mean) * metric.scale
    spread = pooled_std(a, b) * metric.scale
    if relation == "approx":
        tolerance = max(metric.approx_tolerance, spread)
        return difference, tolerance, abs(difference) <= tolerance
    if relation == "greater":
        return difference, spread, difference > 0 and difference > spread
    if relation == "not_lower":
        return difference, spread, difference >= -spread
    raise ValueError(f"unknown relation {relation!r}")


def evaluate_claim(claim: Claim, entries: Sequence[dict]) -> ClaimResult:
    """HOLDS if every measured comparison holds, FAILS if any fails, else NOT YET MEASURED."""
    comparisons = []
    for setting, method_a, method_b in claim.pairs:
        a = summarize(entries, setting, method_a, claim.metric.key)
        b = summarize(entries, setting, method_b, claim.metric.key)
        if a is None or b is None:
            continue
        difference, tolerance, holds = compare(claim.relation, a, b, claim.metric)
        comparisons.append(Comparison(setting, method_a, method_b, a, b, difference, tolerance, holds))
    if not comparisons:
        verdict = NOT_YET_MEASURED
    else:
        verdict = HOLDS if all(c.holds for c in comparisons) else FAILS
    return ClaimResult(claim, verdict, tuple(comparisons))


def evaluate_claims(entries: Sequence[dict]) -> list[ClaimResult]:
    return [evaluate_claim(claim, entries) for claim in paper_claims()]


# ------------------------------------------------------------------------------------ cost
def cost_rows(entries: Sequence[dict]) -> list[dict]:
    """Mean training seconds per step of each method over its finished cells, and the ratio to Base.

    Per step, not per run: Base has no meta set, so it takes more steps per epoch.
    """
    per_method = {}
    for method in METHOD_ORDER:
        values = [e["seconds_per_step"] for e in entries
                  if e["method"] == method and e["status"] == "done" and e["seconds_per_step"]]
        per_method[method] = values
    base = statistics.fmean(per_method["base"]) if per_method["base"] else None
    rows = []
    for method, values in per_method.items():
        mean = statistics.fmean(values) if values else None
        rows.append({
            "method": method, "cells": len(values), "seconds_per_step": mean,
            "ratio_to_base": mean / base if mean is not None and base else None,
        })
    return rows


# ------------------------------------------------------------------------------------ paper
# The paper's CIFAR-10 numbers, as setting -> method -> value (accuracy in %, AUC in [0, 1]);
# a value is a float, or a string copied as printed ("mean ± std").
# fill from the paper (Ghosh & Lan, WACV 2021, Tables 1-3); not available offline here.
# (The stored public material searched held the paper's abstract and its official code, not
# its tables; a third-party summary quoting a few figures was found but is not the paper, so
# nothing was taken from it. The official code, github.com/arghosh/RobustMW-Net trainer.py,
# prints the *best* test accuracy over training: the paper's accuracies compare most
# directly with our "best" column.)
PAPER_TABLES: dict[str, dict[str, dict[str, float | str | None]]] = {
    setting.name: {method: {"test_accuracy": None, "detection_auc": None} for method in METHOD_ORDER}
    for setting in SETTINGS
}
PAPER_MISSING = "n/a (not available offline)"


def paper_value(setting: str, method: str, key: str, digits: int) -> str:
    value = PAPER_TABLES.get(setting, {}).get(method, {}).get(key)
    if value is None:
        return PAPER_MISSING
    return value if isinstance(value, str) else f"{value:.{digits}f}"


# ------------------------------------------------------------------------------------ plots
def make_plots(entries: Sequence[dict], plots_dir) -> tuple[dict[str, list[str]], str | None]:
    """PNG figures per setting; returns ({setting: [file names]}, reason when skipped).

    matplotlib is an optional extra (`plots`), imported only here, with a file-only backend.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return {}, "matplotlib is not installed (pip install -e \".[plots]\"), so no plots were drawn"
    plots_dir = pathlib.Path(plots_dir)
    made: dict[str, list[str]] = {}
    for setting in SETTINGS:
        done = [e for e in entries if e["setting"] == setting.name and e["status"] == "done"]
        if not done:
            continue
        plots_dir.mkdir(parents=True, exist_ok=True)
        files = []
        for name, draw in (("weights", _draw_weights), ("accuracy", _draw_accuracy)):
            figure = draw(plt, setting, done)
            if figure is None:
                continue
            path = plots_dir / f"{setting.name}_{name}.png"
            figure.savefig(path, dpi=90, metadata={"Software": None})
            plt.close(figure)
            files.append(path.name)
        made[setting.name] = files
    return made, None


def _first_seed_runs(done: Sequence[dict], methods: Sequence[str]) -> list[dict]:
    """The lowest-seed finished run of each method (one picture per method, not an average)."""
    runs = []
    for method in methods:
        candidates = sorted((e for e in done if e["method"] == method), key=lambda e: e["seed"])
        if candidates:
            runs.append(candidates[0])
    return runs


def read_sample_scores(path) -> dict[str, np.ndarray]:
    table = np.genfromtxt(path, delimiter=",", names=True, ndmin=1)
    names = table.dtype.names
    return {
        "weight": np.asarray(table["weight"], dtype=np.float64),
        "loss": np.asarray(table["loss"], dtype=np.float64),
        "is_noisy": np.asarray(table["is_noisy"], dtype=bool) if "is_noisy" in names else None,
    }


def _draw_weights(plt, setting: Setting, done: Sequence[dict]):
    """Row 1: W(loss) at the end of training; row 2: weights of clean vs noisy samples.

    Both come from sample_scores.csv, which holds every training sample's final loss and
    weight, so no network has to be rebuilt.
    """
    runs = [e for e in _first_seed_runs(done, META_METHODS)
            if (pathlib.Path(e["model_dir"]) / "sample_scores.csv").exists()]
    if not runs:
        return None
    figure, axes = plt.subplots(2, len(runs), figsize=(max(4.2 * len(runs), 6.4), 6.4), squeeze=False)
    for column, entry in enumerate(runs):
        scores = read_sample_scores(pathlib.Path(entry["model_dir"]) / "sample_scores.csv")
        noisy = scores["is_noisy"] if scores["is_noisy"] is not None else np.zeros(scores["weight"].size, bool)
        title = f"{METHOD_LABELS[entry['method']]} (seed {entry['seed']})"
        curve, histogram = axes[0][column], axes[1][column]
        order = np.argsort(scores["loss"])
        curve.plot(scores["loss"][order], scores["weight"][order], color="0.3", linewidth=1, label="W(loss)")
        for mask, color, label in ((~noisy, "tab:blue", "clean label"), (noisy, "tab:orange", "noisy label")):
            if mask.any():
                curve.scatter(scores["loss"][mask], scores["weight"][mask], s=4, alpha=0.35, color=color,
                              label=label, rasterized=True)
        curve.set(title=title, xlabel="training loss (CE on the given label)", ylabel="weight W(loss)")
        curve.legend(loc="best", fontsize=7)
        low, high = float(scores["weight"].min()), float(scores["weight"].max())
        bins = np.linspace(low, high if high > low else low + 1e-6, 40)  # the weights' own range
        for mask, color, label in ((~noisy, "tab:blue", "clean"), (noisy, "tab:orange", "noisy")):
            if mask.any():
                histogram.hist(scores["weight"][mask], bins=bins, alpha=0.6, color=color, density=True,
                               label=f"{label} ({int(mask.sum())})")
        auc = entry.get("detection_auc_final_pass")
        histogram.set(title="AUC " + ("—" if auc is None else f"{auc:.3f}"), xlabel="weight", ylabel="density")
        histogram.legend(loc="best", fontsize=7)
    figure.suptitle(f"Learned weights at the end of training, {setting.label}")
    figure.tight_layout()
    return figure


def _draw_accuracy(plt, setting: Setting, done: Sequence[dict]):
    """Test accuracy per epoch, averaged over each method's finished seeds."""
    figure, axis = plt.subplots(figsize=(6.4, 4.2))
    drawn = False
    for method in METHOD_ORDER:
        curves = []
        for entry in (e for e in done if e["method"] == method):
            results = _read_json(pathlib.Path(entry["model_dir"]) / "results.json") or {}
            curve = [row.get("test/accuracy") for row in results.get("history") or []]
            if curve and all(value is not None for value in curve):
                curves.append(curve)
        if not curves:
            continue
        length = min(len(c) for c in curves)
        mean = np.mean([c[:length] for c in curves], axis=0) * 100.0
        axis.plot(np.arange(1, length + 1), mean, marker="o", markersize=3,
                  label=f"{METHOD_LABELS[method]} ({len(curves)} seed{'s' if len(curves) > 1 else ''})")
        drawn = True
    if not drawn:
        plt.close(figure)
        return None
    axis.set(title=f"Test accuracy during training, {setting.label}", xlabel="epoch", ylabel="test accuracy (%)")
    axis.xaxis.get_major_locator().set_params(integer=True)
    axis.grid(alpha=0.3)
    axis.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    return figure


# ------------------------------------------------------------------------------------ report
def markdown(text: str) -> str:
    """Escape the asterisk of "MW-Net*", which Markdown would otherwise read as emphasis."""
    return text.replace("*", "\\*")

def canonical_commands() -> list[str]:
    return [
        "# once: the offline CIFAR-10 copy (JPEG), as README.md says",
        "mkdir -p data/cifar10 && tar xzf ../shared/data/cifar10/cifar10-jpeg.tar.gz -C data/cifar10",
        "# the whole grid; rerun the same command to continue after an interruption",
        "python scripts/reproduce.py",
        "# or a few cells per sitting (uniform 40% first), then again later",
        "python scripts/reproduce.py --max_cells=4",
        "# rebuild this report from the runs on disk, without training",
        "python scripts/reproduce.py --report_only",
        "# with internet instead of the JPEG copy (tensorflow-datasets; other runs folder)",
        "python scripts/reproduce.py --dataset=cifar10 --runs_dir=runs/reproduction_tfds",
    ]


def dataset_description(protocol: Protocol) -> str:
    if protocol.dataset == "image_folder":
        return f"CIFAR-10 (JPEG copy, `{protocol.data_dir}`)"
    if protocol.dataset == "cifar10":
        return "CIFAR-10 (tensorflow-datasets)"
    return f"`{protocol.dataset}` data"


def render_report(entries: Sequence[dict], claims: Sequence[ClaimResult], cost: Sequence[dict],
                  protocol: Protocol, *, command: str, plots: dict[str, list[str]],
                  plots_note: str | None, settings: Sequence[Setting], seeds: Sequence[int]) -> str:
    sections = [
        _report_header(entries, protocol, settings, seeds),
        _report_protocol(protocol, command),
        _report_accuracy(entries, settings),
        _report_auc(entries, settings),
        _report_claims(claims),
        _report_cost(cost),
        _report_plots(plots, plots_note),
        _report_progress(entries, settings),
    ]
    return "\n\n".join(section.rstrip() for section in sections) + "\n"


def _report_header(entries, protocol, settings, seeds) -> str:
    done = sum(e["status"] == "done" for e in entries)
    lines = [
        "# Reduced-scale reproduction of RMNW-Net (Ghosh & Lan, WACV 2021), Tables 1–3",
        "",
        f"Base, MW-Net\\*, MNW-Net and RMNW-Net on {dataset_description(protocol)} under the paper's "
        "label-noise settings, all with the same reduced budget (below). Generated by "
        "`scripts/reproduce.py` from the runs on disk; every number here is read from a run's "
        "`results.json` or `sample_scores.csv`.",
        "",
        f"**Cells finished: {done} of {len(entries)}** ({len(settings)} settings × "
        f"{len(METHOD_ORDER)} methods × {len(seeds)} seeds). Missing cells show “—”; "
        "mean ± sample std over seeds, a single seed shows its value alone.",
    ]
    if protocol.dataset == "image_folder":
        lines += ["", "The images were decoded from JPEG (quality 75), not the lossless originals: expect "
                      "accuracies a little below clean-CIFAR figures."]
    if protocol.dataset not in ("image_folder", "cifar10"):
        lines += ["", f"> **Smoke run on `{protocol.dataset}` data, not CIFAR-10: these numbers say "
                      "nothing about the paper.**"]
    return "\n".join(lines)


def _report_protocol(protocol: Protocol, command: str) -> str:
    shown = {key: value for key, value in protocol.config_fields().items()
             if protocol.dataset == "synthetic" or not key.startswith("synthetic_")}
    rows = [f"| `{key}` | {_code(value)} |" for key, value in shown.items()]
    changed = {key: value for key, value in shown.items() if getattr(PROTOCOL, key) != value}
    note = ("" if not changed else
            "\n\n**This report's protocol differs from `PROTOCOL`:** "
            + ", ".join(f"`{k}`: {_code(v)}" for k, v in changed.items()) + ".")
    return "\n".join([
        "## Protocol",
        "",
        "From `rmwnet_tf/reproduction.py` (`PROTOCOL`):",
        "",
        inspect.cleandoc(Protocol.__doc__),
        "",
        "| setting | value |",
        "|---|---|",
        *rows,
    ]) + note + "\n\n" + "\n".join([
        "Per cell, on top of this: `noise_type`/`noise_rate` of the setting, `method`, `seed`; "
        "flip2 and flip targets are drawn from the seed. The meta set of MNW-Net and RMNW-Net "
        "is noisy (an independent draw of the same noise), that of MW-Net\\* clean.",
        "",
        "### Commands",
        "",
        "```sh",
        *canonical_commands(),
        "```",
        "",
        "This report was built by:",
        "",
        "```sh",
        command,
        "```",
    ])


def _code(value) -> str:
    return "(empty)" if value == "" else f"`{value}`"


def _report_accuracy(entries, settings) -> str:
    rows = []
    for setting in settings:
        for method in METHOD_ORDER:
            final = summarize(entries, setting.name, method, "test_accuracy_final")
            best = summarize(entries, setting.name, method, "test_accuracy_best")
            rows.append(f"| {setting.label} | {markdown(METHOD_LABELS[method])} | "
                        f"{format_mean_std(final, scale=100.0)} | {format_mean_std(best, scale=100.0)} | "
                        f"{paper_value(setting.name, method, 'test_accuracy', 2)} |")
    return "\n".join([
        "## Test accuracy (%) (paper: Tables 1–2)",
        "",
        "“final”: after the last epoch; “best”: the best epoch (chosen on the test set, as the "
        "official code's `best_accuracy` is, so optimistic)." + _paper_note(),
        "",
        "| noise | method | final | best | paper |",
        "|---|---|---|---|---|",
        *rows,
    ])


def _paper_note() -> str:
    filled = any(value is not None for methods in PAPER_TABLES.values()
                 for keys in methods.values() for value in keys.values())
    return "" if filled else (" The paper's figures could not be read offline: `PAPER_TABLES` in "
                              "`rmwnet_tf/reproduction.py` is empty until someone fills it from the paper.")


def _report_auc(entries, settings) -> str:
    rows = []
    for setting in settings:
        if setting.noise_type == "none":
            continue
        for method in META_METHODS:
            cells = [format_mean_std(summarize(entries, setting.name, method, key), digits=4)
                     for key in ("detection_auc_final_pass", "detection_auc_final", "detection_auc_best",
                                 "detection_auc_loss_final_pass")]
            rows.append(f"| {setting.label} | {markdown(METHOD_LABELS[method])} | {' | '.join(cells)} | "
                        f"{paper_value(setting.name, method, 'detection_auc', 4)} |")
    return "\n".join([
        "## Detection AUC (paper: Table 3)",
        "",
        "AUC of the weight W(loss) as a score for “this training label is clean” (1 = every clean "
        "sample weighs more than every noisy one, 0.5 = chance). “final pass”: the final networks "
        "on every training sample, un-augmented; “last epoch” / “best epoch”: the weights recorded "
        "during an epoch's training steps; “−loss”: the small-loss rule, for reference. "
        "Not defined without noise or for Base (no weights)." + _paper_note(),
        "",
        "| noise | method | final pass | last epoch | best epoch | −loss | paper |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ])


def _report_claims(claims: Sequence[ClaimResult]) -> str:
    lines = [
        "## The paper's claims at this scale",
        "",
        f"Accuracy claims use the {ACCURACY.name} in points (not the best epoch's, which is picked on "
        f"the test set), the detection claim the {AUC.name} (final pass). "
        "Pooled std = root mean square of the two methods' seed std (0 for a single seed, whose "
        "spread is unknown). A claim HOLDS when every measured comparison holds, FAILS when any "
        "fails, and is NOT YET MEASURED when no comparison has both methods finished.",
        "",
    ]
    for result in claims:
        claim = result.claim
        lines += [
            f"**{claim.number}. {markdown(claim.statement)}: {result.verdict}** ({result.coverage}; rule "
            f"{RELATION_RULES[claim.relation]})",
            "",
        ]
        lines += [f"- {c.describe(claim.metric, claim.relation)}" for c in result.comparisons]
        if result.comparisons:
            lines.append("")
    return "\n".join(lines)


def _report_cost(cost: Sequence[dict]) -> str:
    rows = []
    for row in cost:
        ratio = "—" if row["ratio_to_base"] is None else f"{row['ratio_to_base']:.2f}×"
        seconds = _seconds(row["seconds_per_step"])
        rows.append(f"| {markdown(METHOD_LABELS[row['method']])} | {row['cells']} | {seconds} | {ratio} |")
    return "\n".join([
        "## Cost at this scale",
        "",
        "Training seconds per step (the `train_seconds` of every epoch in `results.json`, "
        "evaluation excluded, divided by the steps), averaged over each method's finished cells. "
        "Timings depend on the machine and its load at the time.",
        "",
        "| method | cells | s / step | × Base |",
        "|---|---|---|---|",
        *rows,
    ])


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _report_plots(plots: dict[str, list[str]], plots_note: str | None) -> str:
    lines = ["## Plots", ""]
    if plots_note:
        return "\n".join(lines + [f"Skipped: {plots_note}."])
    if not plots:
        return "\n".join(lines + ["None yet: no cell has finished."])
    lines.append("Per setting, from the lowest finished seed of each method: the learned weighting "
                 "function W(loss) over every training sample's final loss (clean and noisy labels "
                 "coloured), the weights of clean vs noisy samples, and test accuracy per epoch "
                 "(mean over finished seeds).")
    for setting in SETTINGS:
        for name in plots.get(setting.name, []):
            lines += ["", f"![{setting.label}: {name.rsplit('_', 1)[-1][:-4]}](plots/{name})"]
    return "\n".join(lines)


def _report_progress(entries: Sequence[dict], settings: Sequence[Setting]) -> str:
    """Which cells are finished, so the next sitting knows what is left."""
    rows = []
    for setting in settings:
        cells = []
        for method in METHOD_ORDER:
            mine = [e for e in entries if e["setting"] == setting.name and e["method"] == method]
            done = sum(e["status"] == "done" for e in mine)
            extra = [f"{sum(e['status'] == s for e in mine)} {s}" for s in ("partial", "stale")
                     if any(e["status"] == s for e in mine)]
            cells.append(f"{done}/{len(mine)}" + (f" ({', '.join(extra)})" if extra else ""))
        rows.append(f"| {setting.label} | {' | '.join(cells)} |")
    return "\n".join([
        "## Progress",
        "",
        "Finished seeds per cell (“partial”: training started, resumes on the next run; “stale”: "
        "the folder holds a run of another protocol and is ignored).",
        "",
        "| noise | " + " | ".join(markdown(METHOD_LABELS[m]) for m in METHOD_ORDER) + " |",
        "|---|" + "---|" * len(METHOD_ORDER),
        *rows,
    ])


# ------------------------------------------------------------------------------------ the whole job
class ProtocolError(ValueError):
    """The cells about to run have config problems (reported before any training)."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


@dataclasses.dataclass
class Outcome:
    tally: RunTally | None
    json_path: pathlib.Path
    report_path: pathlib.Path
    entries: list[dict]
    claims: list[ClaimResult]


def report_grid(seeds: Sequence[int]) -> list[Cell]:
    """The report always covers the whole grid (default seeds plus any asked for), whatever subset ran."""
    return grid(SETTINGS, METHOD_ORDER, list(dict.fromkeys([*DEFAULT_SEEDS, *seeds])))


def claims_as_json(claims: Sequence[ClaimResult]) -> list[dict]:
    def side(summary: Summary) -> dict:
        return {"mean": summary.mean, "std": summary.std, "seeds": summary.n}

    return [{
        "number": r.claim.number, "statement": r.claim.statement, "verdict": r.verdict,
        "metric": r.claim.metric.key, "rule": RELATION_RULES[r.claim.relation], "coverage": r.coverage,
        "comparisons": [{
            "setting": c.setting, "a": c.method_a, "b": c.method_b, "a_summary": side(c.a),
            "b_summary": side(c.b), "difference": c.difference, "tolerance": c.tolerance, "holds": c.holds,
        } for c in r.comparisons],
    } for r in claims]


def write_report(protocol: Protocol, runs_dir, out_dir, *, seeds: Sequence[int], command: str) -> Outcome:
    """Read every cell of the grid from disk and write reproduction.json, REPRODUCTION.md and plots/."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = collect_entries(report_grid(seeds), protocol, runs_dir)
    claims = evaluate_claims(entries)
    cost = cost_rows(entries)
    plots, plots_note = make_plots(entries, out_dir / "plots")
    json_path, report_path = out_dir / "reproduction.json", out_dir / "REPRODUCTION.md"
    _write_text(json_path, json.dumps({
        "protocol": protocol.config_fields(), "runs_dir": str(runs_dir), "command": command,
        "entries": entries, "claims": claims_as_json(claims), "cost": cost, "paper": PAPER_TABLES,
    }, indent=2) + "\n")
    _write_text(report_path, render_report(
        entries, claims, cost, protocol, command=command, plots=plots, plots_note=plots_note,
        settings=SETTINGS, seeds=list(dict.fromkeys([*DEFAULT_SEEDS, *seeds])),
    ))
    return Outcome(None, json_path, report_path, entries, claims)


def _write_text(path: pathlib.Path, text: str) -> None:
    """Write-then-rename, so an interrupted write never leaves half a report."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def reproduce(*, settings: Sequence[Setting], methods: Sequence[str], seeds: Sequence[int], protocol: Protocol,
              runs_dir=DEFAULT_RUNS_DIR, out_dir=DEFAULT_OUT_DIR, max_cells: int | None = None,
              report_only: bool = False, command: str = "python scripts/reproduce.py",
              run_fn: Callable[[Config], dict] | None = None, log=logging.info) -> Outcome:
    """Run the unfinished cells (unless report_only), then rebuild the report.

    The report is rebuilt even when a run fails or is interrupted, so it always shows what
    exists on disk.
    """
    tally = None
    if not report_only:
        cells = grid(settings, methods, seeds)
        problems = check_cells(cells, protocol, runs_dir)
        if problems:
            raise ProtocolError(problems)
        refuse_stale_cells(cells, protocol, runs_dir)
        try:
            tally = run_cells(cells, protocol, runs_dir, max_cells=max_cells, run_fn=run_fn, log=log)
        finally:
            outcome = write_report(protocol, runs_dir, out_dir, seeds=seeds, command=command)
        outcome.tally = tally
        return outcome
    return write_report(protocol, runs_dir, out_dir, seeds=seeds, command=command)


def command_line(argv: Sequence[str]) -> str:
    """The invocation as a copy-pastable shell line, for the report."""
    return " ".join(shlex.quote(part) for part in ["python", "scripts/reproduce.py", *argv])
