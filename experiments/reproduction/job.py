"""The whole job behind scripts/reproduce.py: run the unfinished cells, then rewrite the report.

The report is rebuilt from the run folders every time, even after a failed or interrupted
run, so it always shows exactly what exists on disk.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import shlex
from typing import Callable, Sequence

from absl import logging

from rmwnet_tf.config import Config
from rmwnet_tf.files import write_text
from experiments.reproduction.cells import (
    RunTally,
    StaleRunError,
    cells_on_disk,
    check_cells,
    collect_entries,
    inspect_cell,
    refuse_stale_cells,
    run_cells,
    stale_message,
)
from experiments.reproduction.compact import compact_run
from experiments.reproduction.paired import PairedClaim
from experiments.reproduction.paper import as_json as paper_json
from experiments.reproduction.plots import make_plots
from experiments.reproduction.protocol import SETTINGS, Protocol, Setting, grid, planned_cells, pretrain_config
from experiments.reproduction import cheap_steps, report, vnet_candidates


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
    claims: list[PairedClaim]


REPORT_SETTINGS = ("uniform40", "uniform60")  # the headline; other settings appear once they have runs
# A cell outside the planned grid is shown when a run of this protocol is in its folder.
SHOWN_OUTSIDE_THE_PLAN = ("done", "partial")


def report_entries(protocol: Protocol, runs_dir) -> list[dict]:
    """The planned grid's entries in running order (`Family.plan`; "not run" where nothing ran yet),
    then every other cell of its methods with a run on disk. Counted against the plan, a finished
    grid reads finished; a cell run beyond it is still shown, never hidden."""
    planned = planned_cells(protocol.family)
    in_plan = set(planned)
    others = [cell for cell in cells_on_disk(runs_dir, protocol.family.methods) if cell not in in_plan]
    return collect_entries(planned, protocol, runs_dir) + [
        entry for entry in collect_entries(others, protocol, runs_dir) if entry["status"] in SHOWN_OUTSIDE_THE_PLAN]


def write_report(protocol: Protocol, runs_dir, out_dir, *, command: str) -> Outcome:
    """A protocol's reproduction.json, REPRODUCTION.md and plots/, from the run folders on disk: its
    planned grid and every other cell with a run (`report_entries`); the tables show the headline
    settings and every other one with runs."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, report_path = out_dir / "reproduction.json", out_dir / "REPRODUCTION.md"
    settings = [s for s in SETTINGS if s.name in REPORT_SETTINGS or (pathlib.Path(runs_dir) / s.name).is_dir()]
    entries = report_entries(protocol, runs_dir)
    idle = idle_timings(pathlib.Path(runs_dir))
    choice_path = out_dir / protocol.candidates_dir / "choice.json"
    vnet_choice = json.loads(choice_path.read_text()) if choice_path.exists() else None
    gates = report.evaluate_gates(entries, protocol, [(row["cell"], row["seconds"]) for row in idle], vnet_choice)
    claims, target_rows = report.judge_claims(entries, settings), report.targets(entries)
    pretrain = report.pretrain_summary(protocol)
    plots = make_plots(entries, out_dir / "plots", settings)
    others = report.other_reports(protocol.name, out_dir)
    cheap = cheap_steps.find_cheap_variants(out_dir, protocol.name, protocol.config_fields())
    write_text(json_path, json.dumps({
        "protocol": protocol.name, "protocol_fields": protocol.config_fields(), "runs_dir": str(runs_dir),
        "command": command, "pretrain": pretrain, "entry_keys": ENTRY_KEYS_DOC, "entries": entries,
        "gates": [dataclasses.asdict(g) for g in gates], "targets": target_rows,
        "claims": [{"number": c.claim.number, "statement": c.claim.statement, "verdict": c.verdict,
                    "coverage": c.coverage, "comparisons": [
                        {"setting": st, "a": a, "b": b, "verdict": v,
                         "difference": None if d is None else {"mean": d.mean, "low": d.low, "high": d.high,
                                                               "per_seed": dict(d.per_seed)}}
                        for st, a, b, d, v in c.comparisons]} for c in claims],
        "idle_timings": idle, "paper": paper_json(),
        "cheap_steps": cheap_steps.as_json(entries, cheap, settings),
        "other_reports": [{"protocol": name, "report": link} for name, link in others],
    }, indent=2) + "\n")
    write_text(report_path, report.render(
        entries, protocol, command=command, gates=gates, claims=claims, target_rows=target_rows, plots=plots,
        settings=settings, pretrain=pretrain, cleaning=report.cleaning_section(protocol, out_dir),
        vnet_choice=report.vnet_choice_section(out_dir, protocol), others=others,
        tries=report.tries_section(protocol),
        cheap_steps=cheap_steps.section(entries, cheap, settings)))
    return Outcome(None, json_path, report_path, entries, claims)


# What an entry of a reproduction.json holds (docs/reproduction.md, "Reduced-scale reproduction").
ENTRY_KEYS_DOC = {
    "protocol": "the protocol's name (v3...)", "setting": "noise setting (uniform40, ...)", "method": "--method",
    "seed": "--seed", "status": "done | partial | not run | stale",
    "final/test/accuracy": "test accuracy after the last epoch",
    "best/test/accuracy": "best test accuracy over the evaluations (picked on the test set)",
    "selected/test/accuracy": "test accuracy at the epoch of best meta-set accuracy (gold-free)",
    "final/detection/auc": "AUC of W as a clean-label score, final model, whole training set (meta methods)",
    "best/detection/auc": "the same, best over the evaluations (the paper's Table 3 definition)",
    "final/detection/auc_loss": "AUC of -loss (the small-loss rule), final model",
    "best/detection/auc_loss": "the same, best over the evaluations",
    "final/fit/noisy_memorised": "share of wrongly labelled training samples predicted as their wrong label (memorised)",
}


def idle_timings(runs_dir: pathlib.Path) -> list[dict]:
    """Cells timed with nothing else running on the machine (G6), recorded by hand with their command."""
    try:
        return json.loads((runs_dir / "idle_timings.json").read_text())
    except (OSError, ValueError):
        return []


def reproduce(*, settings: Sequence[Setting], methods: Sequence[str], seeds: Sequence[int], protocol: Protocol,
              runs_dir=None, out_dir=None, max_cells: int | None = None,
              report_only: bool = False, command: str = "python scripts/reproduce.py",
              run_fn: Callable[[Config], dict] | None = None, log=logging.info) -> Outcome:
    """Run the unfinished cells (unless report_only), then rebuild the report. Runs and report go
    to the protocol's folders unless others are given.

    The report is rebuilt even when a run fails or is interrupted, so it always shows what
    exists on disk.
    """
    runs_dir, out_dir = runs_dir or protocol.runs_dir, out_dir or protocol.out_dir
    tally = None
    if not report_only:
        cells = grid(settings, methods, seeds)
        problems = check_cells(cells, protocol, runs_dir)
        if problems:
            raise ProtocolError(problems)
        refuse_stale_cells(cells, protocol, runs_dir)
        try:
            ensure_pretrained(protocol, run_fn=run_fn, log=log)
            tally = run_cells(cells, protocol, runs_dir, max_cells=max_cells, run_fn=run_fn, log=log,
                              earlier_run=vnet_candidates.candidate_cell(protocol.name, runs_dir))
        finally:
            outcome = write_report(protocol, runs_dir, out_dir, command=command)
        outcome.tally = tally
        return outcome
    return write_report(protocol, runs_dir, out_dir, command=command)


def ensure_pretrained(protocol: Protocol, *, run_fn: Callable[[Config], dict] | None = None,
                      log=logging.info) -> None:
    """Train the classifier a protocol's cells start from (`init_from`), once: a finished
    pretraining run is reused by every cell; a half-done one resumes."""
    config = pretrain_config(protocol)
    if config is None:
        return
    state = inspect_cell(config)
    if state.status == "done":
        return
    if state.status == "stale":
        raise StaleRunError(stale_message(config, state))
    if run_fn is None:
        from rmwnet_tf import train  # heavy import, only when something will train

        run_fn = train.run
    log(f"pretraining {config.model_dir} (once, for every cell)")
    run_fn(config)
    compact_run(config.model_dir)  # its checkpoint is what the cells read, not its per-sample files


def command_line(argv: Sequence[str]) -> str:
    """The invocation as a copy-pastable shell line, for the report."""
    return " ".join(shlex.quote(part) for part in ["python", "scripts/reproduce.py", *argv])
