"""The paper's CIFAR-10 numbers, copied by hand so that the report never reads anything at run time.

Source: A. Ghosh and A. Lan, "Do We Really Need Gold Samples for Sample Weighting under Label
Noise?", WACV 2021 (arXiv 2104.09045):

- Table 1: test accuracy (%) on the clean CIFAR-10 test set under uniform noise (WRN-28-10) and
  flip2 noise (ResNet-32), mean ± std over five seeds; CIFAR-10 rows only.
- Table 2: the same under flip noise (WRN-28-10), MW-Net*, MNW-Net and RMNW-Net only (the paper
  has no Base under flip noise); CIFAR-10 columns only.
- Table 3: AUC of the weighting net's output as a "this training label is clean" score, the best
  value seen during training (one number per cell, no std); CIFAR-10 columns only.

Full-scale protocol (not ours): 49,000 training + 1,000 meta images of 32×32, 120 epochs. The
paper does not say which epoch its accuracies come from; the official code
(github.com/arghosh/RobustMW-Net, trainer.py) prints the best test accuracy over training.

Our settings map onto the paper's columns by name; our "none0" (no noise) maps onto Table 1's
flip2 0% column, the ResNet-32 one (the network of protocol v2), not the WRN-28-10 uniform 0%.
"""

from __future__ import annotations

SOURCE = ("Ghosh & Lan, \"Do We Really Need Gold Samples for Sample Weighting under Label Noise?\", "
          "WACV 2021 (arXiv 2104.09045), Tables 1–3, CIFAR-10")
SEEDS = 5  # every accuracy of Tables 1-2 is mean ± std over five seeds

# Table 1, CIFAR-10: column -> method -> (mean, std) in %. None: the paper prints "–".
TABLE1_COLUMNS = ("uniform0", "uniform40", "uniform60", "flip2_0", "flip2_20", "flip2_40")
_TABLE1_ROWS = {
    "l2rw": ((92.38, 0.10), (86.92, 0.19), (82.24, 0.36), (89.25, 0.37), (87.86, 0.36), (85.66, 0.51)),
    "glc": ((94.30, 0.19), (88.28, 0.03), (83.49, 0.24), (91.02, 0.20), (89.68, 0.33), (88.92, 0.24)),
    "mwnet": ((95.15, 0.13), (90.35, 0.21), (86.52, 0.09), (92.35, 0.29), (90.28, 0.27), (87.04, 0.89)),
    "base": ((95.60, 0.22), (68.07, 1.23), (55.12, 3.03), (92.89, 0.32), (76.83, 2.30), (70.77, 2.31)),
    "reed_hard": ((94.38, 0.14), (81.26, 0.51), (73.53, 1.54), (92.31, 0.25), (88.28, 0.36), (81.06, 0.76)),
    "s_model": ((83.79, 0.11), (79.58, 0.33), None, (83.61, 0.13), (79.25, 0.30), (75.73, 0.32)),
    "self_paced": ((90.81, 0.34), (86.41, 0.29), (53.10, 1.78), (88.52, 0.21), (87.03, 0.34), (81.63, 0.63)),
    "focal_loss": ((95.70, 0.15), (75.96, 1.31), (51.87, 1.19), (93.03, 0.16), (86.45, 0.19), (80.45, 0.97)),
    "co_teaching": ((88.67, 0.25), (74.81, 0.34), (73.06, 0.25), (89.87, 0.10), (82.83, 0.85), (75.41, 0.21)),
    "d2l": ((94.64, 0.33), (85.60, 0.13), (68.02, 0.41), (92.02, 0.14), (87.66, 0.40), (83.89, 0.46)),
    "fine_tuning": ((95.65, 0.15), (80.47, 0.27), (78.75, 2.40), (93.23, 0.23), (82.47, 3.64), (74.07, 1.56)),
    "mentornet": ((94.35, 0.42), (87.33, 0.22), (82.80, 1.35), (92.13, 0.30), (86.36, 0.31), (81.76, 0.28)),
    "mnwnet": ((94.98, 0.10), (88.80, 0.44), (84.26, 0.18), (92.45, 0.11), (90.67, 0.18), (87.92, 0.44)),
    "rmnwnet": ((95.23, 0.13), (90.80, 0.23), (86.31, 0.28), (92.66, 0.13), (89.78, 0.24), (85.38, 0.37)),
}
TABLE1 = {column: {method: row[i] for method, row in _TABLE1_ROWS.items()}
          for i, column in enumerate(TABLE1_COLUMNS)}

# Table 2, CIFAR-10 (flip noise, WRN-28-10): column -> method -> (mean, std) in %.
TABLE2_COLUMNS = ("flip0", "flip15", "flip30")
_TABLE2_ROWS = {
    "mwnet": ((95.15, 0.13), (93.73, 0.20), (91.01, 0.31)),
    "mnwnet": ((94.98, 0.10), (93.75, 0.15), (92.01, 0.23)),
    "rmnwnet": ((95.23, 0.13), (93.17, 0.12), (88.69, 0.53)),
}
TABLE2 = {column: {method: row[i] for method, row in _TABLE2_ROWS.items()}
          for i, column in enumerate(TABLE2_COLUMNS)}

# Table 3, CIFAR-10: column -> method -> detection AUC (best over training, no std).
TABLE3_COLUMNS = ("uniform40", "uniform60", "flip2_20", "flip2_40", "flip15", "flip30")
_TABLE3_ROWS = {
    "mwnet": (0.9714, 0.9631, 0.9487, 0.9647, 0.9857, 0.9721),
    "mnwnet": (0.9346, 0.8874, 0.2531, 0.5137, 0.2692, 0.4901),
    "rmnwnet": (0.9848, 0.9879, 0.9692, 0.9694, 0.9807, 0.9614),
}
TABLE3 = {column: {method: row[i] for method, row in _TABLE3_ROWS.items()}
          for i, column in enumerate(TABLE3_COLUMNS)}

# Our setting -> (table, column). Every setting of protocol.SETTINGS has an accuracy column.
ACCURACY_COLUMNS = {
    "uniform40": ("Table 1", "uniform40"), "uniform60": ("Table 1", "uniform60"),
    "flip2_20": ("Table 1", "flip2_20"), "flip2_40": ("Table 1", "flip2_40"),
    "flip15": ("Table 2", "flip15"), "flip30": ("Table 2", "flip30"),
    "none0": ("Table 1", "flip2_0"),
}
NETWORK = {"Table 1": {"uniform": "WRN-28-10", "flip2": "ResNet-32"}, "Table 2": {"flip": "WRN-28-10"}}


def accuracy(setting: str, method: str) -> tuple[float, float] | None:
    """(mean, std) test accuracy in % of `method` at our `setting`; None where the paper has none."""
    table, column = ACCURACY_COLUMNS.get(setting, (None, None))
    source = {"Table 1": TABLE1, "Table 2": TABLE2}.get(table, {})
    return source.get(column, {}).get(method)


def detection_auc(setting: str, method: str) -> float | None:
    """Table 3's AUC (best over training) of `method` at `setting`; None for Base and no noise."""
    return TABLE3.get(setting, {}).get(method)


# ------------------------------------------------------------------------------------ as reports show them
NONE = "not in the paper"


def accuracy_text(setting: str, method: str) -> str:
    """The paper's accuracy as the report's tables show it ("90.80 ± 0.23", or NONE)."""
    value = accuracy(setting, method)
    return NONE if value is None else f"{value[0]:.2f} ± {value[1]:.2f}"


def auc_text(setting: str, method: str) -> str:
    value = detection_auc(setting, method)
    return NONE if value is None else f"{value:.4f}"


def as_json() -> dict:
    """The paper's numbers as reproduction.json carries them."""
    return {"source": SOURCE, "seeds": SEEDS, "table1_accuracy": TABLE1, "table2_accuracy": TABLE2,
            "table3_detection_auc": TABLE3, "setting_columns": ACCURACY_COLUMNS}
