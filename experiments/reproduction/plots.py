"""The report's figures: learned weighting functions, clean vs noisy weights, accuracy curves."""

from __future__ import annotations

import pathlib
from typing import Sequence

import matplotlib
import numpy as np

from experiments.reproduction.cells import read_json, read_sample_scores
from experiments.reproduction.protocol import META_METHODS, METHOD_LABELS, METHOD_ORDER, SETTINGS, Setting

# ------------------------------------------------------------------------------------ plots
def make_plots(entries: Sequence[dict], plots_dir) -> dict[str, list[str]]:
    """PNG figures per setting: {setting: [file names]}, drawn with the file-only Agg backend."""
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after choosing the backend
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
    return made


def _first_seed_runs(done: Sequence[dict], methods: Sequence[str]) -> list[dict]:
    """The lowest-seed finished run of each method (one picture per method, not an average)."""
    runs = []
    for method in methods:
        candidates = sorted((e for e in done if e["method"] == method), key=lambda e: e["seed"])
        if candidates:
            runs.append(candidates[0])
    return runs


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
            results = read_json(pathlib.Path(entry["model_dir"]) / "results.json") or {}
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


