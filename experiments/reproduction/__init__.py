"""A reduced-scale reproduction of Ghosh & Lan (WACV 2021), Tables 1-3, on CIFAR-10.

Base, MW-Net*, MNW-Net and RMNW-Net are trained under the paper's noise settings with one
shared, reduced budget (`PROTOCOL`); the runs' results are gathered into
`reproduction.json`, the paper's claims are checked against them with stated rules, and
`REPRODUCTION.md` (with plots) is written for people to read.

`scripts/reproduce.py` is the command line; everything it does lives here so that tests can
drive it. Reading results, judging claims and writing the report need no TensorFlow (only
training does), so `--report_only` is quick.

Modules, in the order data flows: `protocol` (budget, settings, grid), `cells` (run folders,
training, one entry per cell), `paper` (the paper's CIFAR-10 numbers), `claims` (verdicts,
targets, the paper's own numbers as a sanity row, cost), `plots` (and `calibration_plot`), `report`
(REPRODUCTION.md), `job` (the whole job), `compact` (what a kept run keeps per sample, and its reader). The names below are the surface that
scripts/reproduce.py and the tests use.
"""


from experiments.reproduction.cells import (
    RUN_KEYS,
    FIT_KEYS,
    RESULT_KEYS,
    RUN_ONLY_KEYS,
    CellState,
    RunTally,
    StaleRunError,
    collect_entries,
    inspect_cell,
    run_cells,
)
from experiments.reproduction.claims import (
    ACCURACY,
    AUC_BEST,
    AUC_FINAL,
    FAILS,
    HOLDS,
    NOT_YET_MEASURED,
    Summary,
    cost_rows,
    evaluate_claims,
    evaluate_targets,
    format_mean_std,
    paper_claims,
    paper_target_row,
    sanity_row,
)
from experiments.reproduction.compact import compact_run, read_samples
from experiments.reproduction.plots import calibration_plot, lr_drops, make_plots, run_history, run_lr_drops
from experiments.reproduction.job import Outcome, ProtocolError, command_line, reproduce, write_report
from experiments.reproduction.protocol import (
    DEFAULT_OUT_DIR,
    DEFAULT_RUNS_DIR,
    DEFAULT_SEEDS,
    METHOD_ORDER,
    PROTOCOL,
    PROTOCOL_V3,
    PROTOCOLS,
    PROTOCOL_DIRS,
    PROTOCOL_SEEDS,
    PRETRAIN_V3,
    REFERENCE_METHODS,
    SETTINGS,
    V3_OUT_DIR,
    V3_PRETRAIN_DIR,
    V3_RUNS_DIR,
    V3_SEEDS,
    PROTOCOL_V4,
    PRETRAIN_V4,
    V4_OUT_DIR,
    V4_PRETRAIN_DIR,
    V4_RUNS_DIR,
    V4_SEEDS,
    SETTINGS_BY_NAME,
    Cell,
    Protocol,
    Setting,
    cell_config,
    grid,
    parse_methods,
    parse_seeds,
    parse_settings,
    pretrain_config,
    protocol_with,
)

__all__ = [
    "calibration_plot", "lr_drops", "make_plots", "run_history", "run_lr_drops",
    "ACCURACY", "AUC_BEST", "AUC_FINAL", "Summary", "evaluate_targets", "paper_claims",
    "paper_target_row", "sanity_row", "FIT_KEYS", "RUN_KEYS", "read_samples", "compact_run", "FAILS", "HOLDS", "NOT_YET_MEASURED", "RESULT_KEYS", "RUN_ONLY_KEYS",
    "PROTOCOL_V3", "PROTOCOLS", "PROTOCOL_DIRS", "PROTOCOL_SEEDS", "PRETRAIN_V3", "REFERENCE_METHODS", "V3_OUT_DIR", "V3_PRETRAIN_DIR",
    "V3_RUNS_DIR", "V3_SEEDS", "PROTOCOL_V4", "PRETRAIN_V4", "V4_OUT_DIR", "V4_PRETRAIN_DIR", "V4_RUNS_DIR",
    "V4_SEEDS", "pretrain_config",
    "DEFAULT_OUT_DIR", "DEFAULT_RUNS_DIR", "DEFAULT_SEEDS", "METHOD_ORDER", "PROTOCOL", "SETTINGS",
    "SETTINGS_BY_NAME", "Cell", "CellState", "Outcome", "Protocol", "ProtocolError", "RunTally",
    "Setting", "StaleRunError", "cell_config", "collect_entries", "command_line", "cost_rows",
    "evaluate_claims", "format_mean_std", "grid", "inspect_cell", "parse_methods", "parse_seeds",
    "parse_settings", "protocol_with", "reproduce", "run_cells", "write_report",
]
