"""Which training labels are wrong? Our ranking against cleanlab's and the small-loss rule.

    pip install "cleanlab>=2.6"      # optional: only this comparison needs it
    python experiments/cleaning_comparison.py --meta_run=DIR --base_run=DIR [--heldout_runs=DIR,DIR,DIR,DIR]

Both run folders must hold the same training set with known clean labels (the tool's
sample_scores.csv with `is_noisy` and pred_probs.npy, or a kept study run's samples.npz: both read
by experiments/reproduction/compact.read_samples), e.g. the reproduction's uniform40/rmnwnet/seed0
and uniform40/base/seed0 cells. Detectors:

- ours: `suspicion_rank` of the meta run (lowest weight W(loss) first, then highest loss);
  its flagged set: the samples whose prediction disagrees with their given label;
- cleanlab: `cleanlab.filter.find_label_issues(given_labels, pred_probs)` on the meta run's and
  on the Base run's in-sample probabilities (its own flagged set; ranked by self-confidence);
- small loss: the Base run's loss, highest first; flagged: prediction disagrees with the label;
- cleanlab out of sample (`--heldout_runs`, cleanlab's own recommendation): the Base runs of
  `--holdout_folds=F --holdout_fold=0..F-1` with the Base run's other settings each predict the
  fold they never trained on; together they give every training sample one out-of-sample
  probability row. Their cost is reported in Base runs: their summed optimizer steps over the
  Base run's (the same step cost; seconds would depend on what else the machine ran).

For each: size, precision and recall of the flagged set, and precision at k for k = the number
of truly mislabelled samples (the ranking's quality at the size that matters).
"""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np
from absl import app, flags

# `python experiments/cleaning_comparison.py` puts only experiments/ on sys.path: add the repository root.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from experiments.reproduction.compact import read_samples  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("meta_run", None, "Run folder of a meta method (RMNW-Net).")
flags.DEFINE_string("base_run", None, "Run folder of a Base run on the same training set.")
flags.DEFINE_list("heldout_runs", [], "Run folders of the cross-fitting Base runs (--holdout_folds, one per fold): "
                  "adds cleanlab on out-of-sample probabilities.")
flags.DEFINE_string("markdown_out", None, "Also write the table, with a heading naming both runs, to this Markdown file "
                    "(results/v3/cleaning_v3.md is shown in the v3 report, results/cleaning_v4.md in v4's).")


def load_run(folder) -> dict:
    """A run's samples in source order (ascending index), as the tool's pred_probs.npy holds them."""
    folder = pathlib.Path(folder)
    samples = read_samples(folder)
    if samples["noisy"] is None:
        raise ValueError(f"{folder}: clean labels unknown (no is_noisy column); nothing to compare against")
    if samples["probs"] is None:
        raise ValueError(f"{folder}: no in-sample probabilities (pred_probs.npy, or kept in samples.npz)")
    order = np.argsort(samples["index"], kind="stable")
    results = _read_json(folder / "results.json")
    return dict(index=samples["index"][order], probs=samples["probs"][order], given=samples["given"][order],
                noisy=samples["noisy"][order], rank=samples["rank"][order], loss=samples["loss"][order],
                predicted=samples["predicted"][order], steps=results.get("steps"),
                config=_read_json(folder / "config.json"))


def _read_json(path: pathlib.Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


# What a fold run must share with the Base run for its held-out fold to be the Base run's samples
# with the Base run's labels (the folds themselves are checked sample by sample).
SAME_DRAW = ("dataset", "seed", "noise_type", "noise_rate", "train_size", "meta_size", "hold_out_meta", "part",
             "part_seed", "method")


def load_heldout(folders, base: dict) -> dict:
    """The fold runs' out-of-sample probabilities in the Base run's sample order, and their cost
    in Base runs (optimizer steps). Every training sample of the Base run must be predicted exactly once."""
    rows = {int(i): position for position, i in enumerate(base["index"])}
    probs = np.full_like(base["probs"], np.nan)
    seen = np.zeros(len(rows), bool)
    steps = 0
    for folder in map(pathlib.Path, folders):
        config = _read_json(folder / "config.json")
        differ = [key for key in SAME_DRAW if config.get(key) != base["config"].get(key)]
        if differ:
            raise ValueError(f"{folder}: not the Base run's draw ({', '.join(f'--{k}' for k in differ)} differ)")
        samples = read_samples(folder)
        index, fold_probs = samples["heldout_index"], samples["heldout_probs"]
        if index is None:
            raise ValueError(f"{folder}: no held-out probabilities (not a --holdout_folds run?)")
        positions = [rows.get(int(i), -1) for i in index]
        if min(positions, default=0) < 0 or seen[positions].any():
            raise ValueError(f"{folder}: its held-out fold is not a fresh part of {len(rows)} training samples of the "
                             "Base run (another seed, subset or fold?)")
        seen[positions], probs[positions] = True, fold_probs
        steps += _read_json(folder / "results.json")["steps"]
    if not seen.all():
        raise ValueError(f"the held-out folds cover {seen.sum()} of the Base run's {len(seen)} training samples")
    return dict(probs=probs, base_runs=steps / base["steps"], folds=len(folders))


def scores(flagged: np.ndarray, order: np.ndarray, noisy: np.ndarray) -> dict:
    """flagged: bool mask; order: positions, most suspicious first."""
    k = int(noisy.sum())
    hits = noisy[flagged].sum()
    return dict(flagged=int(flagged.sum()), precision=hits / max(flagged.sum(), 1), recall=hits / max(k, 1),
                precision_at_k=noisy[order[:k]].mean(), k=k)


def compare(meta: dict, base: dict, heldout: dict | None = None) -> dict[str, dict]:
    from cleanlab.filter import find_label_issues

    if not all(np.array_equal(meta[key], base[key]) for key in ("index", "noisy", "given")):
        raise ValueError("the two runs do not hold the same training samples and labels")
    noisy = meta["noisy"]
    result = {"ours (RMNW-Net weight ranking)": scores(
        meta["predicted"] != meta["given"], np.argsort(meta["rank"], kind="stable"), noisy)}
    probabilities = [("cleanlab on RMNW-Net's pred_probs", meta["probs"]), ("cleanlab on Base's pred_probs", base["probs"])]
    if heldout is not None:
        probabilities.append((f"cleanlab on {heldout['folds']}-fold out-of-sample Base probabilities "
                              f"(cost {heldout['base_runs']:.2f} Base runs)", heldout["probs"]))
    for name, probs in probabilities:
        flagged = find_label_issues(base["given"], probs)
        self_confidence = probs[np.arange(len(base["given"])), base["given"]]
        result[name] = scores(flagged, np.argsort(self_confidence, kind="stable"), noisy)
    result["small loss (Base)"] = scores(base["predicted"] != base["given"], np.argsort(-base["loss"], kind="stable"),
                                         noisy)
    return result


def markdown(result: dict[str, dict]) -> str:
    k = next(iter(result.values()))["k"]
    lines = [f"| detector | flagged | precision | recall | precision at k = {k} |", "|---|---|---|---|---|"]
    for name, s in result.items():
        lines.append(f"| {name} | {s['flagged']} | {s['precision']:.3f} | {s['recall']:.3f} | {s['precision_at_k']:.3f} |")
    return "\n".join(lines)


def main(argv):
    del argv
    if not FLAGS.meta_run or not FLAGS.base_run:
        sys.exit("error: --meta_run and --base_run are both required")
    base = load_run(FLAGS.base_run)
    heldout = load_heldout(FLAGS.heldout_runs, base) if FLAGS.heldout_runs else None
    table = markdown(compare(load_run(FLAGS.meta_run), base, heldout))
    print(table)
    folds = f" --heldout_runs={','.join(FLAGS.heldout_runs)}" if FLAGS.heldout_runs else ""
    if FLAGS.markdown_out:
        pathlib.Path(FLAGS.markdown_out).write_text(
            "## Cleaning the training set: our ranking against cleanlab and the small-loss rule\n\n"
            f"Final models of `{FLAGS.meta_run}` (RMNW-Net) and `{FLAGS.base_run}` (Base), the same training "
            "set; precision at k with k = the number of wrong labels. Command: `python "
            f"experiments/cleaning_comparison.py --meta_run={FLAGS.meta_run} --base_run={FLAGS.base_run}{folds} "
            f"--markdown_out={FLAGS.markdown_out}`.\n\n{table}\n")


if __name__ == "__main__":
    app.run(main)
