"""The whole job behind scripts/reproduce.py: run the unfinished cells, then rewrite the report.

The report is rebuilt from the run folders every time, even after a failed or interrupted
run, so it always shows exactly what exists on disk.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shlex
from typing import Callable, Sequence

from absl import logging

from rmwnet_tf.config import Config
from experiments.reproduction.cells import RunTally, check_cells, collect_entries, refuse_stale_cells, run_cells
from experiments.reproduction.claims import RELATION_RULES, ClaimResult, Summary, cost_rows, evaluate_claims
from experiments.reproduction.plots import make_plots
from experiments.reproduction.protocol import (
    DEFAULT_OUT_DIR,
    DEFAULT_RUNS_DIR,
    DEFAULT_SEEDS,
    METHOD_ORDER,
    SETTINGS,
    Cell,
    Protocol,
    Setting,
    grid,
)
from experiments.reproduction.report import PAPER_TABLES, render_report


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
    plots = make_plots(entries, out_dir / "plots")
    json_path, report_path = out_dir / "reproduction.json", out_dir / "REPRODUCTION.md"
    _write_text(json_path, json.dumps({
        "protocol": protocol.config_fields(), "runs_dir": str(runs_dir), "command": command,
        "entries": entries, "claims": claims_as_json(claims), "cost": cost, "paper": PAPER_TABLES,
    }, indent=2) + "\n")
    _write_text(report_path, render_report(
        entries, claims, cost, protocol, command=command, plots=plots,
        settings=SETTINGS, seeds=list(dict.fromkeys([*DEFAULT_SEEDS, *seeds])),
        variants=find_variants(out_dir),
    ))
    return Outcome(None, json_path, report_path, entries, claims)


def find_variants(out_dir) -> list[dict]:
    """Every sub-folder of `out_dir` holding a reproduction.json (a variant's report), by name.

    Unreadable files are skipped with a warning rather than failing the main report.
    """
    variants = []
    for path in sorted(pathlib.Path(out_dir).glob("*/reproduction.json")):
        try:
            saved = json.loads(path.read_text())
            variant = {"name": path.parent.name, "protocol": saved["protocol"], "command": saved["command"],
                       "entries": saved["entries"], "claims": saved["claims"]}
        except (OSError, ValueError, KeyError) as error:
            logging.warning("skipping variant report %s: %s", path, error)
            continue
        variants.append(variant)
    return variants


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
