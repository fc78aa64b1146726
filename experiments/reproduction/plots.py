"""The report's figures, drawn with rmwnet_tf.figures (Agg canvas, no pyplot state).

Per setting with finished cells: test accuracy over training for every method of the grid, the fit
rates per evaluation (clean fitted, noisy memorised, noisy corrected) per method, and the learned
W(loss) of every method that learns one (RMNW-Net on GCE too). `calibration_plot` draws the fit
rates of any single run folder (the calibration evidence of BUILD_NOTES.md "Protocol v2").
Everything is read from the runs' JSON files and, for the learned W, compact.read_samples: no
network is rebuilt.
"""

from __future__ import annotations

import pathlib
from typing import Sequence

import numpy as np

from rmwnet_tf import figures
from rmwnet_tf.methods import METHODS
from experiments.reproduction.cells import read_json
from experiments.reproduction.compact import read_samples
from experiments.reproduction.protocol import (
    GRID_METHODS,
    METHOD_LABELS,
    SETTINGS,
    WEIGHTING_METHODS,
    Setting,
)

PLOTTED_METHODS = GRID_METHODS  # every method a grid can hold; one without finished cells is left out

METHOD_COLORS = {"base": "tab:gray", "mwnet": "tab:green", "mnwnet": "tab:orange", "rmnwnet": "tab:blue",
                 "rmnwnet_gce": "tab:cyan", "gce": "tab:purple", "oracle": "black"}
FIT_CURVES = (("fit/clean_fitted", "clean fitted", "tab:blue"),
              ("fit/noisy_memorised", "noisy memorised", "tab:red"),
              ("fit/noisy_corrected", "noisy corrected", "tab:green"))


# ------------------------------------------------------------------------------------ run folders
def run_history(run_dir) -> list[dict]:
    """A run's per-epoch rows: results.json["history"] when finished, else history.json."""
    run_dir = pathlib.Path(run_dir)
    results = read_json(run_dir / "results.json")
    if results and results.get("history"):
        return results["history"]
    return read_json(run_dir / "history.json") or []


def evaluated(history: Sequence[dict], key: str) -> tuple[list[int], list[float]]:
    """(epochs, values) of the rows that hold `key` (evaluation rows, for test/* and fit/*)."""
    rows = [row for row in history if row.get(key) is not None]
    return [int(row["epoch"]) for row in rows], [float(row[key]) for row in rows]


def lr_drops(history: Sequence[dict]) -> list[int]:
    """Epochs after which the learning rate fell (the `lr` of the next epoch's row is lower)."""
    drops = []
    for previous, row in zip(history, history[1:]):
        if previous.get("lr") is not None and row.get("lr") is not None and row["lr"] < previous["lr"]:
            drops.append(int(previous["epoch"]))
    return drops


def run_lr_drops(run_dir, history: Sequence[dict] = ()) -> list[int]:
    """The epochs after which a run's lr fell: its config's `lr_boundaries`, else read from `history`.

    The config is preferred: a history row's `lr` is read before the epoch's first step, and at a
    boundary that step still runs at the old rate, so the rows show each drop one epoch late.
    """
    run_dir = pathlib.Path(run_dir)
    config = (read_json(run_dir / "results.json") or {}).get("config") or read_json(run_dir / "config.json") or {}
    boundaries = config.get("lr_boundaries")
    if isinstance(boundaries, str):
        try:
            return [int(part) for part in boundaries.split(",") if part.strip()]
        except ValueError:
            pass
    return lr_drops(history)


def _mean_curve(histories: Sequence[Sequence[dict]], key: str) -> tuple[list[int], np.ndarray] | None:
    """Mean over runs at the epochs every run evaluated."""
    curves = [dict(zip(*evaluated(h, key))) for h in histories]
    curves = [c for c in curves if c]
    if not curves:
        return None
    epochs = sorted(set.intersection(*(set(c) for c in curves)))
    if not epochs:
        return None
    return epochs, np.mean([[c[e] for e in epochs] for c in curves], axis=0)


def _mark_drops(axes, drops: Sequence[int]) -> None:
    for position, epoch in enumerate(drops):
        axes.axvline(epoch, color="0.5", linestyle=":", linewidth=1,
                     label="lr ÷10" if position == 0 else None)


def _save(figure, path: pathlib.Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(figures.to_png(figure))
    return path.name


# ------------------------------------------------------------------------------------ the grid's plots
def make_plots(entries: Sequence[dict], plots_dir, settings: Sequence[Setting] = SETTINGS) -> dict[str, list[str]]:
    """PNG figures per setting with finished cells: {setting: [file names]}."""
    plots_dir = pathlib.Path(plots_dir)
    made: dict[str, list[str]] = {}
    for setting in settings:
        done = [e for e in entries if e["setting"] == setting.name and e["status"] == "done"]
        if not done:
            continue
        histories = {method: [run_history(e["model_dir"]) for e in done if e["method"] == method]
                     for method in PLOTTED_METHODS}
        drops = next((run_lr_drops(e["model_dir"], run_history(e["model_dir"])) for e in done), [])
        files = []
        for name, figure in (("accuracy", _accuracy_figure(setting, histories, drops)),
                             ("fit", _fit_figure(setting, histories, drops)),
                             ("weights", _weights_figure(setting, done))):
            if figure is not None:
                files.append(_save(figure, plots_dir / f"{setting.name}_{name}.png"))
        made[setting.name] = files
    return made


def _accuracy_figure(setting: Setting, histories: dict[str, list], drops: Sequence[int]):
    """Test accuracy at every evaluation, mean over each method's finished seeds; lr drops dotted."""
    figure = figures.new_figure((900, 420))
    axes = figure.add_subplot()
    for method in PLOTTED_METHODS:
        curve = _mean_curve(histories[method], "test/accuracy")
        if curve is None:
            continue
        seeds = len(histories[method])
        axes.plot(curve[0], curve[1] * 100.0, marker="o", markersize=2.5, color=METHOD_COLORS[method],
                  label=f"{METHOD_LABELS[method]} ({seeds} seed{'s' if seeds > 1 else ''})")
    if not axes.lines:
        return None
    _mark_drops(axes, drops)
    axes.set(title=f"Test accuracy during training, {setting.label}", xlabel="epoch", ylabel="test accuracy (%)")
    axes.grid(alpha=0.3)
    axes.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)  # beside the curves, never on them
    figure.tight_layout()
    return figure


def _fit_figure(setting: Setting, histories: dict[str, list], drops: Sequence[int]):
    """Per method: shares of clean labels fitted, wrong labels memorised and corrected, per evaluation."""
    methods = [m for m in PLOTTED_METHODS if _mean_curve(histories[m], "fit/clean_fitted") is not None]
    if not methods:
        return None
    figure = figures.new_figure((max(300 * len(methods) + 60, 560), 340))
    axes_row = figure.subplots(1, len(methods), sharey=True, squeeze=False)[0]
    for axes, method in zip(axes_row, methods):
        for key, label, color in FIT_CURVES:
            curve = _mean_curve(histories[method], key)
            if curve is not None:
                axes.plot(curve[0], curve[1] * 100.0, color=color, label=label)
        _mark_drops(axes, drops)
        axes.set(title=METHOD_LABELS[method], xlabel="epoch", ylim=(0, 100))
        axes.grid(alpha=0.3)
    axes_row[0].set_ylabel("% of training samples (un-augmented)")
    axes_row[0].legend(loc="best", fontsize=7)
    figure.suptitle(f"What the network fits during training, {setting.label}", fontsize=10)
    figure.tight_layout()
    return figure


def _lowest_seed(done: Sequence[dict], method: str) -> dict | None:
    runs = sorted((e for e in done if e["method"] == method), key=lambda e: e["seed"])
    return runs[0] if runs else None


def _weights_figure(setting: Setting, done: Sequence[dict]):
    """W(loss) of the final model of each method with a learned W (lowest finished seed): every training
    sample's (final loss, weight) pair from its per-sample data (compact.read_samples), clean and noisy
    labels coloured. Exact for the final model, since W depends on the loss alone. The loss stored is
    the CE; a method whose W reads another loss (GCE, a decreasing function of p_y as CE is) is drawn
    against the CE too, and its curve says so."""
    lowest = [e for e in (_lowest_seed(done, m) for m in WEIGHTING_METHODS) if e is not None]
    per_sample = {e["model_dir"]: read_samples(e["model_dir"]) for e in lowest}
    runs = [e for e in lowest if per_sample[e["model_dir"]]["loss"] is not None]
    if not runs:
        return None
    figure = figures.new_figure((max(330 * len(runs) + 60, 560), 340))
    axes_row = figure.subplots(1, len(runs), squeeze=False)[0]
    for axes, entry in zip(axes_row, runs):
        samples = per_sample[entry["model_dir"]]
        loss, weight = samples["loss"], samples["weight"]
        noisy = samples["noisy"] if samples["noisy"] is not None else np.zeros(loss.size, bool)
        for mask, color, label in ((~noisy, "tab:blue", "clean label"), (noisy, "tab:red", "noisy label")):
            if mask.any():
                axes.scatter(loss[mask], weight[mask], s=3, alpha=0.3, color=color, label=label, rasterized=True)
        order = np.argsort(loss)
        reads = METHODS[entry["method"]].train_loss
        axes.plot(loss[order], weight[order], color="0.2", linewidth=1,
                  label="W(loss)" if reads == "ce" else f"W({reads.upper()} loss)")
        rho, auc = entry.get("final/weights/loss_spearman"), entry.get("final/detection/auc")
        axes.set(title=f"{METHOD_LABELS[entry['method']]} (seed {entry['seed']}): "
                       f"ρ {'—' if rho is None else f'{rho:+.2f}'}, AUC {'—' if auc is None else f'{auc:.3f}'}",
                 xlabel="final training loss (CE on the given label)", ylabel="W(loss)")
        axes.title.set_fontsize(9)
        axes.grid(alpha=0.3)
        axes.legend(loc="best", fontsize=7, markerscale=3)
    figure.suptitle(f"Learned weighting function at the end of training, {setting.label}", fontsize=10)
    figure.tight_layout()
    return figure
