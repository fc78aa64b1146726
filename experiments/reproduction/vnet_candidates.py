"""Choose protocol v3's weighting-net optimizer by the rule fixed in BUILD_NOTES before any meta cell ran.

    python -m experiments.reproduction.vnet_candidates                     # protocol v3
    python -m experiments.reproduction.vnet_candidates --protocol=v3.1     # a later try of it

Candidates in order (SGD lr 1e-3, the paper's; then 3e-3; then 1e-2); the first whose RMNW-Net and
MW-Net* cells pass G4 (by the first drop Spearman(W, loss) <= -0.9 and W noisy/clean <= 0.6) and G5
(W mean >= 0.1 and ESS/N >= 0.5 at every evaluation) in every seed wins. The choice reads those
weight statistics only, never test accuracy. A candidate's cells run to the first drop only
(`--epochs=<first drop>`; the lr schedule does not depend on --epochs, so the winner's cells later
resume to the full length bit for bit), one cell at a time, seed by seed; one failing cell fails
its candidate (the gate asks for every seed), so the next candidate starts at once. Seeds 0, 1, 2;
then 3 and 4 if none of the cells run had a W that rose with the loss at its first evaluation (the
gate must see W turn, not only start right).

Each cell is `scripts/reproduce.py --protocol=<name>` with the candidate's --vnet_lr, in
<runs_dir>_candidates/vnet_lr_<lr>/ (its report in <out_dir>/v3_candidates/vnet_lr_<lr>/), with
the protocol's default folders (v3: results/runs_v3, results/v3); the decision with every cell's
numbers goes to <out_dir>/v3_candidates/choice.md and choice.json, which the report shows.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import subprocess
import sys
from typing import Callable, Mapping, Sequence

from experiments.reproduction import gates
from experiments.reproduction.protocol import PROTOCOLS
from rmwnet_tf.config import Config
from rmwnet_tf.files import write_text  # write-then-rename

CANDIDATE_LRS = (1e-3, 3e-3, 1e-2)
METHODS = gates.G4_METHODS
FIRST_SEEDS = (0, 1, 2)
EXTRA_SEEDS = (3, 4)
SETTING = "uniform40"
PROTOCOL_NAME = "v3"  # main() sets it from --protocol
RUNS_ROOT = pathlib.Path(PROTOCOLS[PROTOCOL_NAME].runs_dir + "_candidates")
OUT_ROOT = pathlib.Path(PROTOCOLS[PROTOCOL_NAME].out_dir) / PROTOCOLS[PROTOCOL_NAME].candidates_dir


def use_protocol(name: str) -> None:
    global PROTOCOL_NAME, RUNS_ROOT, OUT_ROOT
    protocol = PROTOCOLS[name]
    PROTOCOL_NAME, RUNS_ROOT = name, pathlib.Path(protocol.runs_dir + "_candidates")
    OUT_ROOT = pathlib.Path(protocol.out_dir) / protocol.candidates_dir


def first_drop() -> int:
    return PROTOCOLS[PROTOCOL_NAME].first_drop


@dataclasses.dataclass
class CellVerdict:
    method: str
    seed: int
    passed: bool | None  # None: the cell has not reached the first drop
    rose_first: bool | None  # W rose with the loss at the first evaluation
    line: str


def judge_cell(method: str, seed: int, history: Sequence[Mapping], drop: int) -> CellVerdict:
    """G4 at the first drop and G5 at every evaluation up to it, for one cell's history."""
    history = [row for row in history if row["epoch"] <= drop]
    at_drop = gates.travel_at(history, drop)
    rose = gates.first_evaluation_rose(history)
    if at_drop is None:
        return CellVerdict(method, seed, None, rose, f"{method} seed {seed}: not evaluated at epoch {drop} yet")
    (rho, ratio), (low_mean, low_ess) = at_drop, gates.lowest_weights(history)
    g4, g5 = gates.travelled(rho, ratio), gates.stable(low_mean, low_ess)
    start = "rose" if rose else "fell"
    line = (f"{method} seed {seed}: W {start} with the loss at the first evaluation; at epoch {drop} "
            f"Spearman(W, loss) {rho:+.3f}, W noisy/clean {ratio:.3f} (G4 {'passes' if g4 else 'fails'}); "
            f"lowest W mean {low_mean:.3f}, lowest ESS/N {'—' if low_ess is None else f'{low_ess:.3f}'} (G5 {'passes' if g5 else 'fails'})")
    return CellVerdict(method, seed, g4 and g5, rose, line)


def cell_order(seeds: Sequence[int]) -> list[tuple[str, int]]:
    return [(method, seed) for seed in seeds for method in METHODS]


@dataclasses.dataclass
class CandidateVerdict:
    lr: float
    status: str  # "wins", "fails", "incomplete"
    cells: list[CellVerdict]


def judge_candidate(lr: float, histories: Mapping[tuple[str, int], Sequence[Mapping]], drop: int) -> CandidateVerdict:
    """Walk the cells in their running order; stop at the first failure or the first missing cell.
    Seeds 3 and 4 join when no cell of seeds 0-2 had a W that rose with the loss at first."""
    verdicts: list[CellVerdict] = []
    for seeds in (FIRST_SEEDS, EXTRA_SEEDS):
        if seeds is EXTRA_SEEDS and any(v.rose_first for v in verdicts):
            break
        for method, seed in cell_order(seeds):
            verdict = judge_cell(method, seed, histories.get((method, seed), []), drop)
            verdicts.append(verdict)
            if not verdict.passed:
                return CandidateVerdict(lr, "incomplete" if verdict.passed is None else "fails", verdicts)
    return CandidateVerdict(lr, "wins", verdicts)


def lr_name(lr: float) -> str:
    return f"vnet_lr_{lr:g}"


def candidate_cell(protocol_name: str, runs_dir) -> Callable[[Config], pathlib.Path | None]:
    """Where this rule trained a grid cell's first epochs at the cell's own weighting-net lr.

    The grid (job.reproduce) continues those runs instead of training the same epochs again
    (cells.continue_earlier_run); only for the protocol's own runs folder, whose layout the
    candidates' folders repeat.
    """
    protocol = PROTOCOLS[protocol_name]
    root = pathlib.Path(protocol.runs_dir + "_candidates")

    def find(config: Config) -> pathlib.Path | None:
        if pathlib.Path(runs_dir) != pathlib.Path(protocol.runs_dir):
            return None
        where = root / lr_name(config.vnet_lr) / pathlib.Path(config.model_dir).relative_to(runs_dir)
        return where if where.is_dir() else None

    return find


def read_histories(runs_dir: pathlib.Path) -> dict[tuple[str, int], list[dict]]:
    histories = {}
    for path in runs_dir.glob(f"{SETTING}/*/seed*/history.json"):
        method, seed = path.parent.parent.name, int(path.parent.name.removeprefix("seed"))
        histories[(method, seed)] = json.loads(path.read_text())
    return histories


def reproduce_command(lr: float, method: str, seeds: Sequence[int], runs_dir, out_dir, epochs: int | None,
                      protocol: str | None = None) -> list[str]:
    """scripts/reproduce.py on one method's uniform-40% cells at a weighting-net lr, in their own
    folders (`epochs`: stopped there, e.g. at the first drop; None: the protocol's)."""
    command = [sys.executable, "scripts/reproduce.py", f"--protocol={protocol or PROTOCOL_NAME}", f"--settings={SETTING}",
               f"--methods={method}", f"--seeds={','.join(map(str, seeds))}", f"--vnet_lr={lr:g}",
               f"--runs_dir={runs_dir}", f"--out_dir={out_dir}"]
    return command + ([f"--epochs={epochs}"] if epochs else [])


def run_command(command: Sequence[str]) -> None:
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True)


def run_cell(lr: float, method: str, seed: int, drop: int) -> None:
    run_command(reproduce_command(lr, method, [seed], RUNS_ROOT / lr_name(lr), OUT_ROOT / lr_name(lr), drop))


def choose(run: Callable[[float, str, int, int], None] = run_cell, read=read_histories) -> list[CandidateVerdict]:
    """Run candidates until one wins; return every candidate judged so far."""
    drop = first_drop()
    judged = []
    for lr in CANDIDATE_LRS:
        while True:
            verdict = judge_candidate(lr, read(RUNS_ROOT / lr_name(lr)), drop)
            if verdict.status != "incomplete":
                break
            missing = verdict.cells[-1]
            run(lr, missing.method, missing.seed, drop)
        judged.append(verdict)
        write_choice(judged)
        if verdict.status == "wins":
            break
    return judged


def verdict_line(judged: Sequence[CandidateVerdict], winner: float | None) -> str:
    """The rule's outcome: a winner, no winner once every candidate has failed, or still running."""
    if winner is not None:
        return f"**Chosen: SGD lr {winner:g}.**"
    ended = len(judged) == len(CANDIDATE_LRS) and all(v.status == "fails" for v in judged)
    return "**No candidate passes: the rule has ended without a winner.**" if ended else "**No candidate has won yet.**"


def write_choice(judged: Sequence[CandidateVerdict]) -> None:
    OUT_ROOT.mkdir(parents=True, exist_ok=True)
    lines = [f"# Protocol {PROTOCOL_NAME}: the weighting net's optimizer (G4 and G5 at the first drop)", "",
             f"Written by `python -m experiments.reproduction.vnet_candidates --protocol={PROTOCOL_NAME}`; the rule is in BUILD_NOTES.md "
             "(\"Protocol v3: the gates\"; v4: \"Reproduction protocol v4\"). Cells run in this order and a candidate stops at its first failing "
             "cell.", ""]
    for verdict in judged:
        lines.append(f"## SGD lr {verdict.lr:g}: {verdict.status}")
        lines.extend(f"- {cell.line}" for cell in verdict.cells)
        lines.append("")
    winner = next((v.lr for v in judged if v.status == "wins"), None)
    lines.append(verdict_line(judged, winner))
    payload = {"candidates": [{"vnet_lr": v.lr, "status": v.status,
                               "cells": [dataclasses.asdict(c) for c in v.cells]} for v in judged],
               "chosen_vnet_lr": winner}
    for name, text in (("choice.md", "\n".join(lines) + "\n"), ("choice.json", json.dumps(payload, indent=1) + "\n")):
        write_text(OUT_ROOT / name, text)


def main(argv: Sequence[str]) -> int:
    names = [a.split("=", 1)[1] for a in argv if a.startswith("--protocol=")]
    choosing = list(PROTOCOLS)  # every protocol the study runs chooses its weighting net by this rule
    unknown = [a for a in argv if not a.startswith("--protocol=")] + [n for n in names if n not in choosing]
    if unknown:
        print(f"error: expected only --protocol=<one of {', '.join(choosing)}>, "
              f"got {' '.join(unknown)}", file=sys.stderr)
        return 2
    use_protocol(names[-1] if names else "v3")
    judged = choose()
    print((OUT_ROOT / "choice.md").read_text())
    return 0 if judged and judged[-1].status == "wins" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
