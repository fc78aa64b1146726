"""A kept study run's per-sample data in one small file, and the one reader of per-sample data.

    python scripts/compact_results.py results/     # compact every kept run folder under results/

The tool writes, for its users, sample_scores.csv, pred_probs.npy, given_labels.npy and
sample_index.npy (heldout_*.npy with --holdout_folds): about 1 MB a run at the study's scale.
A run kept in results/ keeps what its report reads (config.json, history.json, results.json)
and, only where an analysis reads per-sample data, `samples.npz` holding just those fields:

- the learned-W figure (plots.py) draws loss, weight and noisy of the lowest finished seed of
  each method with a learned W (protocol.WEIGHTING_METHODS, RMNW-Net on GCE too);
- the cleaning comparison (cleaning_comparison.py, run by cross_fit.py) reads every column and
  the in-sample probabilities of the Base and RMNW-Net cells of cross_fit.SETTING at their lowest
  seed in the runs folder of a protocol in CLEANING_PROTOCOLS, and the held-out probabilities of
  the fold runs.

Rows are stored in sample_scores.csv's order (most suspicious first), so the suspicion rank is
the row number and the figure draws its points in the order it always did. Every field reads
back exactly as the tool's files hold it: probabilities stay float32 (in float16 the v3 cleaning
table's unrounded precision at k moved, 0.55090 -> 0.55118: a memorising Base's probabilities
crowd below 1.0, where float16 steps by 0.0005 and ties them); loss and weight are float32, which
holds the CSV's 6 significant digits, so printing them with 6 digits gives back the CSV's text
(kept float64 in the rare run where it would not); labels and indices the smallest unsigned
integer type that holds them.
"""

from __future__ import annotations

import os
import pathlib
import sys

import numpy as np

SAMPLES_FILE = "samples.npz"
# Everything the tool writes per sample; compact_run removes all of them.
FULL_OUTPUTS = ("sample_scores.csv", "pred_probs.npy", "given_labels.npy", "sample_index.npy",
                "heldout_probs.npy", "heldout_index.npy")

# Fields read_samples returns (None when a folder does not hold them), and who reads which.
ROW_FIELDS = ("index", "given", "predicted", "noisy", "weight", "loss", "probs")
HELDOUT_FIELDS = ("heldout_index", "heldout_probs")
WEIGHT_FIGURE_FIELDS = ("loss", "weight", "noisy")
CLEANING_FIELDS = ("index", "given", "predicted", "noisy", "loss", "probs")
CLEANING_METHODS = ("base", "rmnwnet")
# The protocols whose cells the cleaning comparison reads: v3 (results/v3/cleaning_v3.md); v4 (issue 33
# asks for it, added before its grid ran); v2's, retired, is at tag study-v2.1. A protocol that will
# have one is added here before its grid runs.
CLEANING_PROTOCOLS = ("v3", "v4")


# ------------------------------------------------------------------------------------ reading
def read_samples(folder, *, full_outputs: bool = False) -> dict:
    """A run's per-sample data from samples.npz or, when it was never compacted (or `full_outputs`),
    from the tool's full outputs: rows most suspicious first (`rank` is 1..N), widened to int64 /
    float64 / float32 (probabilities) / bool. A field the folder does not hold is None."""
    folder = pathlib.Path(folder)
    path = folder / SAMPLES_FILE
    if path.exists() and not full_outputs:
        with np.load(path) as saved:
            stored = {name: _six_digits(saved[name]) if saved[name].dtype == np.float32 and name in ("weight", "loss")
                      else saved[name] for name in saved.files}
    else:
        stored = _full_outputs(folder)
    samples = {name: _widened(name, stored[name]) if name in stored else None
               for name in ROW_FIELDS + HELDOUT_FIELDS}
    rows = next((samples[name] for name in ROW_FIELDS if samples[name] is not None), None)
    samples["rank"] = None if rows is None else np.arange(1, len(rows) + 1)
    return samples


def _full_outputs(folder: pathlib.Path) -> dict:
    stored = {}
    scores = folder / "sample_scores.csv"
    if scores.exists():
        table = np.genfromtxt(scores, delimiter=",", names=True, ndmin=1)  # sorted by suspicion_rank
        stored.update(index=table["index"], given=table["given_label"], predicted=table["predicted_label"],
                      weight=table["weight"], loss=table["loss"])
        if "is_noisy" in table.dtype.names:
            stored["noisy"] = table["is_noisy"]
        if (folder / "pred_probs.npy").exists():  # rows in sample_index.npy's order
            rows = _positions(np.load(folder / "sample_index.npy"), stored["index"], folder)
            stored["probs"] = np.load(folder / "pred_probs.npy")[rows]
    if (folder / "heldout_index.npy").exists():
        stored.update(heldout_index=np.load(folder / "heldout_index.npy"),
                      heldout_probs=np.load(folder / "heldout_probs.npy"))
    return stored


def _positions(order: np.ndarray, index: np.ndarray, folder) -> np.ndarray:
    """Where each of `index` sits in `order` (both source indices)."""
    sorter = np.argsort(order, kind="stable")
    found = sorter[np.clip(np.searchsorted(order, index, sorter=sorter), 0, len(order) - 1)]
    if len(order) != len(index) or not np.array_equal(order[found], index):
        raise ValueError(f"{folder}: sample_index.npy and sample_scores.csv hold different samples")
    return found


def _widened(name: str, values: np.ndarray) -> np.ndarray:
    if name in ("probs", "heldout_probs"):
        return np.asarray(values, np.float32)
    if name in ("weight", "loss"):
        return np.asarray(values, np.float64)
    if name == "noisy":
        return np.asarray(values).astype(bool)
    return np.asarray(values).astype(np.int64)


def _six_digits(values: np.ndarray) -> np.ndarray:
    """float32 back to the float64 that sample_scores.csv's text parses to. A float32 is within
    6e-8 (relative) of the 6-digit decimal it was made from, well inside that decimal's rounding
    interval (at least 5e-7 wide each side), so 6 digits print that decimal again."""
    return np.array([float(f"{value:.6g}") for value in values.tolist()], np.float64)


def _narrowed(name: str, values: np.ndarray) -> np.ndarray:
    if name in ("probs", "heldout_probs"):
        return values.astype(np.float32)
    if name in ("weight", "loss"):
        single = values.astype(np.float32)
        exact = np.array_equal(_six_digits(single), values, equal_nan=True)
        return single if exact else values.astype(np.float64)  # e.g. a weight below float32's normal range
    if name == "noisy":
        return values.astype(bool)
    if values.size and values.min() < 0:
        return values.astype(np.int64)
    return values.astype(np.min_scalar_type(int(values.max()) if values.size else 0))


# ------------------------------------------------------------------------------------ what is read
def fields_read(folder) -> tuple[str, ...]:
    """The per-sample fields an analysis of this study reads from a run folder (see the module
    docstring); () for every other run, whose per-sample data nobody re-reads."""
    folder = pathlib.Path(folder)
    if (folder / "heldout_index.npy").exists() or "heldout_index" in _stored_names(folder):
        return HELDOUT_FIELDS
    cell = _grid_cell(folder)
    if cell is None:
        return ()
    runs_dir, setting, method, seed = cell
    finished = [int(s.name[4:]) for s in folder.parent.glob("seed*")
                if s.name[4:].isdigit() and (s / "results.json").exists()]
    if seed != min(finished, default=seed):
        return ()
    from experiments.reproduction import cross_fit
    from experiments.reproduction.protocol import PROTOCOLS, WEIGHTING_METHODS

    fields = []
    if method in WEIGHTING_METHODS:
        fields += WEIGHT_FIGURE_FIELDS
    compared = {pathlib.Path(PROTOCOLS[name].runs_dir).resolve() for name in CLEANING_PROTOCOLS}
    if setting == cross_fit.SETTING and method in CLEANING_METHODS and runs_dir.resolve() in compared:
        fields += CLEANING_FIELDS
    return tuple(dict.fromkeys(fields))


def _grid_cell(folder: pathlib.Path):
    """(runs_dir, setting, method, seed) of a `<runs_dir>/<setting>/<method>/seed<k>` folder, else None."""
    name = folder.name
    if not (name.startswith("seed") and name[4:].isdigit()) or len(folder.parts) < 4:
        return None
    return folder.parent.parent.parent, folder.parent.parent.name, folder.parent.name, int(name[4:])


def _stored_names(folder: pathlib.Path) -> tuple[str, ...]:
    path = folder / SAMPLES_FILE
    if not path.exists():
        return ()
    with np.load(path) as saved:
        return tuple(saved.files)


# ------------------------------------------------------------------------------------ compacting
def compact_run(folder, fields: tuple[str, ...] | None = None) -> pathlib.Path | None:
    """Write `fields` (default: `fields_read(folder)`) of a finished run to samples.npz and remove
    the tool's per-sample files; returns the file written, or None when nothing was kept. A field
    the run lacks (`noisy` without clean labels) is left out, as the readers expect. A folder
    without per-sample files is left as it is, so calling this twice, or on a cell that a fake
    trainer never wrote, does nothing."""
    folder = pathlib.Path(folder)
    present = [folder / name for name in FULL_OUTPUTS if (folder / name).exists()]
    if not present:
        return None
    # The tool's files are this run's final evaluation; a samples.npz beside them is older (a run
    # continued from a compacted one, cells.continue_earlier_run), so it is never what is kept.
    samples = read_samples(folder, full_outputs=True)
    fields = [name for name in (fields_read(folder) if fields is None else fields) if samples[name] is not None]
    path = folder / SAMPLES_FILE
    if fields:
        np.savez_compressed(path, **{name: _narrowed(name, samples[name]) for name in fields})
    elif path.exists():  # an earlier compaction's, from these same files: what it kept is read no more
        path.unlink()
    for file in present:
        file.unlink()
    return path if fields else None


def run_folders(root) -> list[pathlib.Path]:
    """Every run folder (one holding config.json) under `root`, symlinked ones left out: they are
    reached through the folder they point at."""
    found = []
    for parent, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not os.path.islink(os.path.join(parent, d)))
        if "config.json" in files:
            found.append(pathlib.Path(parent))
    return found


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python scripts/compact_results.py <results folder>", file=sys.stderr)
        return 2
    for folder in run_folders(argv[0]):
        kept = compact_run(folder)
        if kept is not None:
            print(f"{folder}: {', '.join(_stored_names(folder))} ({kept.stat().st_size // 1024} KB)")
    return 0
