"""A reduced-scale reproduction of Ghosh & Lan (WACV 2021), Tables 1-3, on CIFAR-10.

Base, MW-Net*, MNW-Net, RMNW-Net and the references (GCE, an oracle) are trained under the
paper's noise settings with one shared, reduced budget per protocol (`PROTOCOLS`: v4, the current
study, and v3 with its tries v3.1-v3.3; v1, v2 and v2.1 are retired behind the tag study-v2.1);
the runs' results are gathered into `reproduction.json`, gates and the paper's claims are
judged on them with stated rules, and `REPRODUCTION.md` (with plots) is written for people to read.

`scripts/reproduce.py` is the command line; everything it does lives here so that tests can
drive it. Reading results, judging claims and writing the report need no TensorFlow (only
training does), so `--report_only` is quick.

Modules, in the order data flows: `protocol` (budget, settings, grid, the registry of protocols),
`cells` (run folders, training, one entry per cell), `compact` (what a kept run keeps per sample,
and its reader), `paper` (the paper's CIFAR-10 numbers), `claims` (the paper's claims and the
metrics they are stated in), `paired` (paired differences and verdicts), `gates`, `cheap_steps`,
`plots`, `report` (REPRODUCTION.md), `job` (the whole job). The names below are the surface that
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
    format_mean_std,
    paper_claims,
)
from experiments.reproduction.compact import compact_run, read_samples
from experiments.reproduction.plots import lr_drops, make_plots, run_history, run_lr_drops
from experiments.reproduction.job import Outcome, ProtocolError, command_line, reproduce, write_report
from experiments.reproduction.protocol import (
    CURRENT,
    METHOD_ORDER,
    PROTOCOL,
    PROTOCOL_V3,
    PROTOCOL_V4,
    PROTOCOLS,
    PRETRAIN_V3,
    PRETRAIN_V4,
    REFERENCE_METHODS,
    SETTINGS,
    SETTINGS_BY_NAME,
    V3_PRETRAIN_DIR,
    V3_RUNS_DIR,
    V3_SEEDS,
    V4_PRETRAIN_DIR,
    V4_RUNS_DIR,
    V4_SEEDS,
    Cell,
    Family,
    Protocol,
    Setting,
    cell_config,
    grid,
    parse_methods,
    parse_seeds,
    parse_settings,
    planned_cells,
    pretrain_config,
    protocol_with,
)

__all__ = [
    "lr_drops", "make_plots", "run_history", "run_lr_drops",
    "ACCURACY", "AUC_BEST", "AUC_FINAL", "Summary", "paper_claims", "FIT_KEYS", "RUN_KEYS", "read_samples",
    "compact_run", "FAILS", "HOLDS", "NOT_YET_MEASURED", "RESULT_KEYS", "RUN_ONLY_KEYS",
    "CURRENT", "PROTOCOL_V3", "PROTOCOLS", "PRETRAIN_V3", "REFERENCE_METHODS", "V3_PRETRAIN_DIR", "V3_RUNS_DIR",
    "V3_SEEDS", "PROTOCOL_V4", "PRETRAIN_V4", "V4_PRETRAIN_DIR", "V4_RUNS_DIR", "V4_SEEDS", "pretrain_config",
    "METHOD_ORDER", "PROTOCOL", "SETTINGS", "SETTINGS_BY_NAME", "Cell", "CellState", "Family", "Outcome",
    "Protocol", "ProtocolError", "RunTally", "Setting", "StaleRunError", "cell_config", "collect_entries",
    "command_line", "format_mean_std", "grid", "inspect_cell", "parse_methods", "parse_seeds",
    "parse_settings", "planned_cells", "protocol_with", "reproduce", "run_cells", "write_report",
]
