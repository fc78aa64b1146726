"""A further v4 try, fixed in writing before its runs: RMNW-Net on GCE with a weighting-net lr
scaled for GCE's weaker meta-gradient (BUILD_NOTES.md, "RMNW-Net on GCE: why its weighting net
did not turn, and a try").

    python -m experiments.reproduction.gce_weighting_try                  # run what is missing, report
    python -m experiments.reproduction.gce_weighting_try --judge_only     # the candidates' short cells only
    python -m experiments.reproduction.gce_weighting_try --report_only    # the report from the runs on disk

Why: in the grid (weighting-net SGD lr 3e-3, RMNW-Net's) `rmnwnet_gce`'s W never turned, and
`experiments/reproduction/meta_signal.py` measured why at the start of training: the weighting
net's meta-gradient under a GCE training loss is 0.062x its size under CE at the same state (one
step moves W's noisy-minus-clean gap 0.016x as far), because a GCE gradient carries p_y^q and W's
GCE inputs span [0, 1/q]. So the grid's `rmnwnet_gce` asks whether W can weight GCE losses at an
lr chosen for CE; this try asks whether it can at an lr scaled for GCE.

The rule (the weighting-net rule's shape, one method): candidates TRY_LRS in order (the lr that
matches the gradient's size, then the one that matches the gap's step); each judged by G4 at the
first drop and G5 up to it on `rmnwnet_gce` seeds 0, 1, 2 (uniform 40%, `--epochs=<first drop>`),
stopping at its first failing cell. The first candidate whose three cells pass is the try's lr;
its five uniform-40% cells then train to the end (continuing the short cells) and are compared with
the grid's GCE and `rmnwnet_gce`, paired per seed. No candidate passing is the try's result.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import sys
from typing import Callable, Mapping, Sequence

from experiments.reproduction import vnet_candidates
from experiments.reproduction.cells import collect_entries, continue_earlier_run, inspect_cell
from experiments.reproduction.claims import ACCURACY
from experiments.reproduction.paired import paired_difference
from experiments.reproduction.protocol import PROTOCOLS, SETTINGS_BY_NAME, Cell, cell_config
from rmwnet_tf.files import write_text

PROTOCOL_NAME = "v4"
METHOD = "rmnwnet_gce"
SETTING = "uniform40"
GRID_LR = 3e-3  # protocol.GRID_VNET_LR_V4, the grid's rmnwnet_gce
# 3e-3 / 0.062 (meta-gradient size, GCE/CE at the start) and 3e-3 / 0.016 (the gap's step), rounded.
TRY_LRS = (0.05, 0.2)
JUDGED_SEEDS = (0, 1, 2)
FULL_SEEDS = (0, 1, 2, 3, 4)
RUNS_ROOT = pathlib.Path("results/runs_v4_gce_try")
OUT_DIR = pathlib.Path("results/v4_gce_try")
COMPARED = ("gce", "rmnwnet_gce")  # the grid's cells the try's full cells are paired with


def protocol(lr: float):
    return PROTOCOLS[PROTOCOL_NAME].replace(vnet_lr=lr)


def short_dir(lr: float) -> pathlib.Path:
    return RUNS_ROOT / "first_drop" / vnet_candidates.lr_name(lr)


def full_dir(lr: float) -> pathlib.Path:
    return RUNS_ROOT / "full" / vnet_candidates.lr_name(lr)


def cell(seed: int) -> Cell:
    return Cell(SETTINGS_BY_NAME[SETTING], METHOD, seed)


def history(run_dir: pathlib.Path) -> list[dict]:
    path = run_dir / "history.json"
    return json.loads(path.read_text()) if path.is_file() else []


def judge(lr: float, drop: int) -> tuple[str, list[vnet_candidates.CellVerdict]]:
    """("passes" | "fails" | "incomplete", the cells judged in order up to the first not passing)."""
    verdicts = []
    for seed in JUDGED_SEEDS:
        run_dir = pathlib.Path(cell_config(cell(seed), protocol(lr), short_dir(lr)).model_dir)
        verdict = vnet_candidates.judge_cell(METHOD, seed, history(run_dir), drop)
        verdicts.append(verdict)
        if not verdict.passed:
            return ("incomplete" if verdict.passed is None else "fails"), verdicts
    return "passes", verdicts


def reproduce_command(lr: float, seeds: Sequence[int], runs_dir: pathlib.Path, epochs: int | None) -> list[str]:
    return vnet_candidates.reproduce_command(lr, METHOD, seeds, runs_dir, OUT_DIR / runs_dir.relative_to(RUNS_ROOT),
                                             epochs, protocol=PROTOCOL_NAME)


def continue_short_cells(lr: float) -> None:
    """Bring each judged short cell into the empty full folder of the same cell (the grid's way)."""
    for seed in JUDGED_SEEDS:
        config = cell_config(cell(seed), protocol(lr), full_dir(lr))
        short = pathlib.Path(cell_config(cell(seed), protocol(lr), short_dir(lr)).model_dir)
        if inspect_cell(config).status == "not run" and short.is_dir():
            continue_earlier_run(config, short)


def chosen_lr(judged: Mapping[float, tuple[str, list]]) -> float | None:
    return next((lr for lr in TRY_LRS if judged.get(lr, ("",))[0] == "passes"), None)


def run_try(run: Callable[[Sequence[str]], None] | None = vnet_candidates.run_command, *,
            full: bool = True) -> dict[float, tuple[str, list]]:
    """Judge the candidates in order, training what each needs; then (`full`) the winner's full
    cells. With `run=None` nothing is trained: the judgement of the runs on disk."""
    drop = PROTOCOLS[PROTOCOL_NAME].first_drop
    judged = {}
    for lr in TRY_LRS:
        while (outcome := judge(lr, drop))[0] == "incomplete" and run is not None:
            run(reproduce_command(lr, [outcome[1][-1].seed], short_dir(lr), drop))
        judged[lr] = outcome
        if outcome[0] == "passes":
            if full and run is not None:
                continue_short_cells(lr)
                run(reproduce_command(lr, FULL_SEEDS, full_dir(lr), None))
            break
        if outcome[0] == "incomplete":
            break
    return judged


def report(judged: Mapping[float, tuple[str, list]]) -> str:
    lines = ["# Protocol v4, a further try: RMNW-Net on GCE at a weighting-net lr scaled for GCE", "",
             "Written by `python -m experiments.reproduction.gce_weighting_try`; the try and its rule were fixed "
             "in BUILD_NOTES.md (\"RMNW-Net on GCE: why its weighting net did not turn, and a try\") before its runs. "
             f"The grid's `{METHOD}` (weighting-net SGD lr {GRID_LR:g}) stays the protocol's.", ""]
    for lr in TRY_LRS:
        if lr not in judged:
            continue
        status, verdicts = judged[lr]
        lines += [f"## SGD lr {lr:g}: {status} (G4 at epoch {PROTOCOLS[PROTOCOL_NAME].first_drop}, G5 up to it)"]
        lines += [f"- {v.line}" for v in verdicts] + [""]
    lr = chosen_lr(judged)
    if lr is None:
        ended = len(judged) == len(TRY_LRS) and all(s == "fails" for s, _ in judged.values())
        lines.append("**No candidate passes: the try ends here.**" if ended else "**Not decided yet.**")
        return "\n".join(lines) + "\n"
    lines += [f"**The try's lr: {lr:g}.** Its uniform-40% cells against the grid's, final test accuracy, "
              "paired per seed (points):", ""]
    lines += comparison(lr)
    return "\n".join(lines) + "\n"


def comparison(lr: float) -> list[str]:
    entries = [dict(e, method="try") for e in collect_entries([cell(s) for s in FULL_SEEDS], protocol(lr), full_dir(lr))]
    grid = PROTOCOLS[PROTOCOL_NAME]
    entries += collect_entries([Cell(SETTINGS_BY_NAME[SETTING], m, s) for m in COMPARED for s in FULL_SEEDS],
                               grid, grid.runs_dir)
    lines = ["| try − | seeds | per seed | mean [95% interval] |", "|---|---|---|---|"]
    for other in COMPARED:
        difference = paired_difference(entries, SETTING, "try", other, ACCURACY)
        if difference is None:
            lines.append(f"| {other} | 0 | — | — |")
            continue
        per_seed = ", ".join(f"{s}: {v:+.2f}" for s, v in difference.per_seed)
        interval = "" if difference.low is None else f" [{difference.low:+.2f}, {difference.high:+.2f}]"
        lines.append(f"| {other} | {difference.n} | {per_seed} | {difference.mean:+.2f}{interval} |")
    return lines


def main(argv: Sequence[str]) -> int:
    modes = ("--report_only", "--judge_only")
    unknown = [a for a in argv if a not in modes]
    if unknown or len(argv) > 1:
        print(f"error: expected no arguments or one of {', '.join(modes)}, got {' '.join(argv)}", file=sys.stderr)
        return 2
    judged = run_try(None) if argv == ["--report_only"] else run_try(full=argv != ["--judge_only"])
    text = report(judged)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    write_text(OUT_DIR / "try.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
