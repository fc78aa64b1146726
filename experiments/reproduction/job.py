"""The whole job behind scripts/reproduce.py: run the unfinished cells, then rewrite the report.

The report is rebuilt from the run folders every time, even after a failed or interrupted
run, so it always shows exactly what exists on disk.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re
import shlex
from typing import Callable, Sequence

from absl import logging

from rmwnet_tf.config import Config
from rmwnet_tf.files import write_text
from experiments.reproduction.cells import (
    RunTally,
    StaleRunError,
    check_cells,
    collect_entries,
    inspect_cell,
    refuse_stale_cells,
    run_cells,
    stale_message,
)
from experiments.reproduction.claims import (
    ClaimResult,
    Summary,
    TargetResult,
    cost_rows,
    evaluate_claims,
    evaluate_targets,
    paper_target_row,
    sanity_row,
)
from experiments.reproduction.compact import compact_run
from experiments.reproduction.plots import calibration_plot, make_plots
from experiments.reproduction.protocol import (
    DEFAULT_OUT_DIR,
    DEFAULT_RUNS_DIR,
    DEFAULT_SEEDS,
    FAMILY_METHODS,
    METHOD_ORDER,
    PROTOCOL_SEEDS,
    SETTINGS,
    V3_SEEDS,
    Cell,
    Protocol,
    Setting,
    candidates_dir,
    family,
    grid,
    pretrain_config,
)
from experiments.reproduction import cheap_steps, report_v3
from experiments.reproduction.report import paper_json, render_report


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


def _side(summary: Summary | None) -> dict | None:
    return None if summary is None else {"mean": summary.mean, "std": summary.std, "seeds": summary.n}


def claims_as_json(claims: Sequence[ClaimResult]) -> list[dict]:
    return [{
        "number": r.claim.number, "statement": r.claim.statement, "source": r.claim.source,
        "verdict": r.verdict, "metric": r.claim.metric.key, "relation": r.claim.relation,
        "margin": r.claim.margin, "tolerance": r.claim.tolerance, "scope": list(r.claim.settings),
        "coverage": r.coverage,
        "comparisons": [{
            "setting": c.setting, "a": c.method_a, "b": c.method_b, "a_summary": _side(c.a),
            "b_summary": _side(c.b), "difference": c.difference, "tolerance": c.tolerance, "holds": c.holds,
        } for c in r.comparisons],
    } for r in claims]


def targets_as_json(targets: Sequence[TargetResult]) -> list[dict]:
    return [{
        "statement": r.target.statement, "setting": r.target.setting, "metric": r.target.metric.key,
        "a": r.target.method_a, "b": r.target.method_b, "relation": r.target.relation,
        "threshold": r.target.threshold, "verdict": r.verdict, "value": r.value,
        "a_summary": _side(r.a), "b_summary": _side(r.b),
    } for r in targets]


V3_REPORT_SETTINGS = ("uniform40", "uniform60")  # the headline; other settings appear once they have runs


def write_report_v3(protocol: Protocol, runs_dir, out_dir, *, seeds: Sequence[int], command: str) -> Outcome:
    """Protocol v3's reproduction.json, REPRODUCTION.md and plots/, from the run folders on disk."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, report_path = out_dir / "reproduction.json", out_dir / "REPRODUCTION.md"
    settings = [s for s in SETTINGS if s.name in V3_REPORT_SETTINGS or (pathlib.Path(runs_dir) / s.name).is_dir()]
    seeds = list(dict.fromkeys([*PROTOCOL_SEEDS.get(protocol.name, V3_SEEDS), *seeds]))
    entries = collect_entries(grid(settings, FAMILY_METHODS[family(protocol.name)], seeds), protocol, runs_dir)
    idle = idle_timings(pathlib.Path(runs_dir))
    choice_path = out_dir / candidates_dir(protocol.name) / "choice.json"
    vnet_choice = json.loads(choice_path.read_text()) if choice_path.exists() else None
    gates = report_v3.evaluate_gates(entries, protocol, [(row["cell"], row["seconds"]) for row in idle], vnet_choice)
    claims, target_rows = report_v3.judge_claims(entries, settings), report_v3.targets(entries)
    pretrain = report_v3.pretrain_summary(protocol)
    plots = make_plots(entries, out_dir / "plots", settings)
    others = report_v3.other_reports(protocol.name, out_dir)
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
    write_text(report_path, report_v3.render_v3(
        entries, protocol, command=command, gates=gates, claims=claims, target_rows=target_rows, plots=plots,
        settings=settings, seeds=seeds, pretrain=pretrain, cleaning=report_v3.cleaning_section(out_dir),
        vnet_choice=report_v3.vnet_choice_section(out_dir, protocol.name, protocol.vnet_lr), others=others,
        cheap_steps=cheap_steps.section(entries, cheap, settings)))
    return Outcome(None, json_path, report_path, entries, [])


# What an entry of v3's reproduction.json holds (docs/reproduction.md, "Reduced-scale reproduction").
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


def write_report(protocol: Protocol, runs_dir, out_dir, *, seeds: Sequence[int], command: str,
                 calibration_runs: Sequence[str] | None = None) -> Outcome:
    """Read every cell of the grid from disk and write reproduction.json, REPRODUCTION.md and plots/.

    `calibration_runs`: run folders for the calibration section; None keeps the ones the previous
    report in `out_dir` named (so a training sitting does not drop the section), [] drops them.
    """
    if protocol.name.startswith(("v3", "v4")):
        return write_report_v3(protocol, runs_dir, out_dir, seeds=seeds, command=command)
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, report_path = out_dir / "reproduction.json", out_dir / "REPRODUCTION.md"
    if calibration_runs is None:
        calibration_runs = previous_calibration_runs(json_path)
    entries = collect_entries(report_grid(seeds), protocol, runs_dir)
    claims, targets = evaluate_claims(entries), evaluate_targets(entries)
    sanity, paper_targets = sanity_row(), paper_target_row()
    cost = cost_rows(entries)
    plots = make_plots(entries, out_dir / "plots", SETTINGS)
    calibration = calibration_rows(calibration_runs, out_dir / "plots")
    write_text(json_path, json.dumps({
        "protocol": protocol.config_fields(), "runs_dir": str(runs_dir), "command": command,
        "entries": entries, "claims": claims_as_json(claims), "targets": targets_as_json(targets),
        "sanity": {"claims": claims_as_json(sanity), "targets": targets_as_json(paper_targets)},
        "calibration_runs": list(calibration_runs), "calibration": calibration,
        "cost": cost, "paper": paper_json(),
    }, indent=2) + "\n")
    write_text(report_path, render_report(
        entries, claims, cost, protocol, command=command, plots=plots,
        settings=SETTINGS, seeds=list(dict.fromkeys([*DEFAULT_SEEDS, *seeds])),
        variants=find_variants(out_dir), targets=targets, paper_targets=paper_targets, sanity=sanity,
        calibration=calibration,
    ))
    return Outcome(None, json_path, report_path, entries, claims)


def previous_calibration_runs(json_path: pathlib.Path) -> list[str]:
    try:
        return list(json.loads(json_path.read_text()).get("calibration_runs") or [])
    except (OSError, ValueError, AttributeError):
        return []


def calibration_rows(run_dirs: Sequence[str], plots_dir: pathlib.Path) -> list[dict]:
    """One calibration plot and table row per run folder; a folder without epochs is skipped with a warning."""
    rows = []
    for position, run_dir in enumerate(run_dirs):
        slug = re.sub(r"[^A-Za-z0-9]+", "_", "_".join(pathlib.Path(run_dir).parts[-3:])).strip("_")
        name = f"calibration_{position}_{slug}.png"
        try:
            row = calibration_plot(run_dir, plots_dir / name)
        except ValueError as error:
            logging.warning("calibration run skipped: %s", error)
            continue
        rows.append({**row, "plot": name})
    return rows


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


def reproduce(*, settings: Sequence[Setting], methods: Sequence[str], seeds: Sequence[int], protocol: Protocol,
              runs_dir=DEFAULT_RUNS_DIR, out_dir=DEFAULT_OUT_DIR, max_cells: int | None = None,
              report_only: bool = False, command: str = "python scripts/reproduce.py",
              calibration_runs: Sequence[str] | None = None, run_fn: Callable[[Config], dict] | None = None, log=logging.info) -> Outcome:
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
            ensure_pretrained(protocol, run_fn=run_fn, log=log)
            tally = run_cells(cells, protocol, runs_dir, max_cells=max_cells, run_fn=run_fn, log=log)
        finally:
            outcome = write_report(protocol, runs_dir, out_dir, seeds=seeds, command=command,
                                   calibration_runs=calibration_runs)
        outcome.tally = tally
        return outcome
    return write_report(protocol, runs_dir, out_dir, seeds=seeds, command=command,
                        calibration_runs=calibration_runs)


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
