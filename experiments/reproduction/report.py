"""REPRODUCTION.md of every protocol the study runs (v3, its tries v3.1-v3.3, v4): pretraining,
gates, tables beside the paper's, paired differences with 95% intervals, the issue's targets, the
paper's claims judged on those intervals, the references a user would compare against (oracle,
GCE, Base's small-loss rule), plots, the protocol with its rationale, and links to the other
protocols' reports. One generator: what differs between protocols is data on the Protocol
(protocol.py), not a branch here.

Reads entries and run histories only (no TensorFlow). Cells not yet run show "—".
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import pathlib
from typing import Mapping, Sequence

from rmwnet_tf import summary
from experiments.reproduction import gates as gates_lib
from experiments.reproduction.claims import ACCURACY, AUC_BEST, HOLDS, Metric, format_mean_std, paper_claims, summarize
from experiments.reproduction.paper import accuracy_text as paper_accuracy
from experiments.reproduction.paper import auc_text as paper_auc
from experiments.reproduction.paired import PairedClaim, judge_claim, paired_difference, values_by_seed
from experiments.reproduction.paired import verdict as paired_verdict
from experiments.reproduction.plots import run_history
from experiments.reproduction.protocol import (
    METHOD_LABELS,
    GRID_METHODS,
    METHOD_ORDER,
    PROTOCOL,
    PROTOCOLS,
    RETIRED_REPORTS,
    SETTINGS_BY_NAME,
    WEIGHTING_METHODS,
    Family,
    Protocol,
    Setting,
    markdown,
    planned_cells,
    pretrain_config,
)

GATE_SETTING = "uniform40"
MEMORISED = Metric("final/fit/noisy_memorised", "wrong labels memorised at the end", 100.0, 1, " points")
# What a practitioner without gold labels compares against: Base stopped at its best noisy meta-set
# accuracy (gold-free early stopping), which at v3 recovers most of what memorisation costs Base.
BASE_SELECTED_KEY = "selected/test/accuracy"
PAIRS_AGAINST_SELECTED_BASE = ("rmnwnet", "mwnet", "mnwnet", "rmnwnet_gce", "gce")
# Both sides stopped at their own gold-free selected epoch: the pipeline a user without gold labels
# would run with either method (does the method still add anything once Base is stopped early?).
SELECTED = Metric(BASE_SELECTED_KEY, "test accuracy at the gold-free selected epoch", 100.0, 2, " points")


def other_reports(protocol_name: str, out_dir) -> list[tuple[str, str]]:
    """(summary, link relative to out_dir) of every other protocol's report, the retired ones first."""
    reports = [*RETIRED_REPORTS, *((p.name, p.summary, p.report) for p in PROTOCOLS.values())]
    return [(label, os.path.relpath(path, out_dir)) for name, label, path in reports if name != protocol_name]


# ------------------------------------------------------------------------------------ inputs
def histories(entries: Sequence[Mapping], setting: str) -> dict[str, dict[int, list]]:
    """method -> seed -> history of every cell of `setting` that trained at least one epoch."""
    found: dict[str, dict[int, list]] = {}
    for entry in entries:
        if entry["setting"] == setting and entry["epochs_completed"]:
            history = run_history(entry["model_dir"])
            if history:
                found.setdefault(entry["method"], {})[entry["seed"]] = history
    return found


def evaluate_gates(entries: Sequence[Mapping], protocol: Protocol, idle_seconds=(),
                   vnet_choice: Mapping | None = None) -> list[gates_lib.Gate]:
    """The six gates from the grid's histories; G4 and G5 from the VNet candidates' cells when the
    candidate rule (vnet_candidates.py, its choice.json as `vnet_choice`) has judged every candidate
    and none passed: then no weighting-net setting of the protocol travels, whatever the grid holds."""
    runs = histories(entries, GATE_SETTING)
    first_drop = protocol.first_drop
    base = {s: h for s, h in runs.get("base", {}).items() if s in (0, 1)}
    oracle = {s: h for s, h in runs.get("oracle", {}).items() if s in (0, 1)}
    meta = {m: runs.get(m, {}) for m in gates_lib.G4_METHODS}
    g4, g5 = gates_lib.g4_travel(meta, first_drop), gates_lib.g5_stability(meta)
    if vnet_choice is not None and no_candidate_passed(vnet_choice):
        candidates = [f"SGD lr {c['vnet_lr']:g}: {next(cell['line'] for cell in c['cells'] if cell['passed'] is False)}"
                      for c in vnet_choice["candidates"]]
        grid_cells = [f"the grid (SGD lr {protocol.vnet_lr:g}), {line}" for line in g4.details]
        g4 = dataclasses.replace(g4, passed=False, details=candidates + grid_cells)
    learnability = [gates_lib.g0_learnability(base, oracle)] if protocol.family.learnability_gate else []
    return learnability + [
        gates_lib.g1_separation(base, first_drop),
        gates_lib.g2_memorisation({s: h for s, h in base.items() if _finished(entries, "base", s)}),
        gates_lib.g3_headroom(base, oracle),
        g4,
        g5,
        gates_lib.g6_cost(list(idle_seconds)),
    ]


def no_candidate_passed(vnet_choice: Mapping) -> bool:
    """Every candidate of the rule was judged and each failed (vnet_candidates.CANDIDATE_LRS)."""
    from experiments.reproduction.vnet_candidates import CANDIDATE_LRS

    judged = vnet_choice.get("candidates") or []
    return (vnet_choice.get("chosen_vnet_lr") is None and len(judged) == len(CANDIDATE_LRS)
            and all(c["status"] == "fails" for c in judged))


def _finished(entries, method, seed) -> bool:
    return any(e["setting"] == GATE_SETTING and e["method"] == method and e["seed"] == seed
               and e["status"] == "done" for e in entries)


def pretrain_summary(protocol: Protocol) -> dict | None:
    config = pretrain_config(protocol)
    if config is None:
        return None
    path = pathlib.Path(config.model_dir) / "results.json"
    try:
        results = summary.upgrade(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {"model_dir": config.model_dir, "status": "not run"}
    return {"model_dir": config.model_dir, "status": "done",
            "final/test/accuracy": results["final"].get("test/accuracy"),
            "epochs": results.get("epochs_completed"), "wall_seconds": results.get("wall_seconds")}


def targets(entries: Sequence[Mapping]) -> list[dict]:
    """The issue's target at uniform 40% (from the paper's Tables 1 and 3)."""
    rmnw_base = paired_difference(entries, GATE_SETTING, "rmnwnet", "base", ACCURACY)
    rmnw_mw = paired_difference(entries, GATE_SETTING, "rmnwnet", "mwnet", ACCURACY)
    aucs = values_by_seed(entries, GATE_SETTING, "rmnwnet", AUC_BEST.key)
    rows = []
    if rmnw_base is None:
        rows.append(dict(statement="RMNW-Net ≥ Base + 5 points in every seed", verdict="NOT YET MEASURED", value="—"))
    else:
        every = all(v >= 5.0 for _, v in rmnw_base.per_seed)
        rows.append(dict(statement="RMNW-Net ≥ Base + 5 points in every seed", verdict=HOLDS if every else "FAILS",
                         value=rmnw_base.text()))
    if rmnw_mw is None:
        rows.append(dict(statement="RMNW-Net within 1.5 points of MW-Net*", verdict="NOT YET MEASURED", value="—"))
    else:
        rows.append(dict(statement="RMNW-Net within 1.5 points of MW-Net* (mean paired difference)",
                         verdict=HOLDS if abs(rmnw_mw.mean) <= 1.5 else "FAILS", value=rmnw_mw.text()))
    if not aucs:
        rows.append(dict(statement="RMNW-Net's detection AUC (best over training) ≥ 0.95", verdict="NOT YET MEASURED",
                         value="—"))
    else:
        mean = sum(aucs.values()) / len(aucs)
        rows.append(dict(statement="RMNW-Net's detection AUC (best over training) ≥ 0.95 (mean over seeds)",
                         verdict=HOLDS if mean >= 0.95 else "FAILS",
                         value=f"{mean:.4f} (n={len(aucs)}: {', '.join(f'{v:.4f}' for _, v in sorted(aucs.items()))})"))
    # What a practitioner without gold labels would use instead, at Base's cost (issue 21: "if RMNW-Net
    # does not beat GCE, say so"): a robust loss, and Base stopped at its best noisy-meta-set epoch.
    for statement, difference in (
            ("RMNW-Net > GCE (a robust loss at Base's cost)",
             paired_difference(entries, GATE_SETTING, "rmnwnet", "gce", ACCURACY)),
            ("RMNW-Net > Base stopped at its gold-free selected epoch",
             paired_difference(entries, GATE_SETTING, "rmnwnet", "base", ACCURACY, b_key=BASE_SELECTED_KEY))):
        rows.append(dict(statement=statement, verdict=paired_verdict("greater", difference),
                         value="—" if difference is None else difference.text()))
    # Theorem 1 holds whatever loss the classifier minimises: does weighting a robust loss add to it
    # (v4 on; a grid without the method has no such row)?
    if any(entry["method"] == "rmnwnet_gce" for entry in entries):
        difference = paired_difference(entries, GATE_SETTING, "rmnwnet_gce", "gce", ACCURACY)
        rows.append(dict(statement="RMNW-Net on GCE > GCE (the same robust loss, weighted)",
                         verdict=paired_verdict("greater", difference),
                         value="—" if difference is None else difference.text()))
    return rows + selected_against_selected(entries)


def selected_against_selected(entries: Sequence[Mapping]) -> list[dict]:
    """Each method of the grid and Base both stopped at their own gold-free selected epoch (issue 33's
    last verdict): does the method still add anything once Base is stopped early too? One row per
    method the grid holds, judged as soon as a paired seed exists."""
    held = {entry["method"] for entry in entries}
    rows = []
    for method in (m for m in PAIRS_AGAINST_SELECTED_BASE if m in held):
        difference = paired_difference(entries, GATE_SETTING, method, "base", SELECTED)
        rows.append(dict(statement=f"{METHOD_LABELS[method]} > Base, each at its own gold-free selected epoch",
                         verdict=paired_verdict("greater", difference),
                         value="—" if difference is None else difference.text()))
    return rows


def judge_claims(entries: Sequence[Mapping], settings: Sequence[Setting]) -> list[PairedClaim]:
    names = [s.name for s in settings]
    return [judged for judged in (judge_claim(c, entries, names) for c in paper_claims()) if judged.comparisons]


def vnet_choice_section(out_dir, protocol: Protocol) -> str:
    """The weighting net's optimizer as the fixed rule chose it (vnet_candidates.py), if it ran, and
    why the grid runs at its lr when the rule chose none (`protocol.grid_vnet_note`)."""
    path = pathlib.Path(out_dir) / protocol.candidates_dir / "choice.md"
    if not path.exists():
        return ""
    body = path.read_text().strip().split("\n", 1)[1].strip()  # its own title replaced by ours
    note = protocol.grid_vnet_note
    return (f"### The weighting net's optimizer, chosen on G4 and G5 ({path.parent}/)\n\n"
            + body.replace("\n## ", "\n#### ")
            + (f"\n\n**The grid runs at SGD lr {protocol.vnet_lr:g} anyway.** {markdown(note)}" if note else ""))


def mwnet_caveat(gates: Sequence[gates_lib.Gate]) -> str:
    """What a failed G4 means for every comparison with MW-Net* ('' while G4 has not failed)."""
    g4 = next((g for g in gates if g.name.startswith("G4")), None)
    if g4 is None or g4.passed is not False:
        return ""
    return ("G4 failed: MW-Net\\*'s weighting net did not keep a falling W up to the first drop, so every "
            "comparison with MW-Net\\* below is against a weaker MW-Net\\* than the paper's.")


def tries_section(protocol: Protocol) -> str:
    """The protocol's further tries (`Protocol.tries`) whose reports exist, each under its own title
    (its headings two levels down, under this section's)."""
    bodies = [pathlib.Path(path).read_text().strip() for path in protocol.tries if pathlib.Path(path).exists()]
    if not bodies:
        return ""
    demoted = ["\n".join("##" + line if line.startswith("#") else line for line in body.splitlines())
               for body in bodies]
    return "## Further tries (each fixed in BUILD_NOTES.md before its runs)\n\n" + "\n\n".join(demoted)


def cleaning_section(protocol, out_dir) -> str:
    """The cleaning comparison (experiments/cleaning_comparison.py on the protocol's Base run), if it was run."""
    path = pathlib.Path(out_dir) / protocol.cleaning_file
    return path.read_text().strip() if path.exists() else ""


# ------------------------------------------------------------------------------------ markdown
def _methods_present(entries) -> list[str]:
    present = {e["method"] for e in entries}
    return [m for m in GRID_METHODS if m in present]


def _mean(entries, setting, method, key, scale=100.0, digits=2) -> str:
    summary = summarize(entries, setting, method, key)
    return format_mean_std(summary, scale=scale, digits=digits) if summary else "—"


def _accuracy_table(entries, settings) -> str:
    rows = ["| noise | method | seeds done | final test acc. (%) | best (%) | selected, gold-free (%) | "
            "the paper's (%) |", "|---|---|---|---|---|---|---|"]
    for setting in settings:
        for method in _methods_present(entries):
            done = len(values_by_seed(entries, setting.name, method, "final/test/accuracy"))
            paper = paper_accuracy(setting.name, method) if method in METHOD_ORDER else "—"
            rows.append(f"| {setting.label} | {markdown(METHOD_LABELS[method])} | {done} | "
                        f"{_mean(entries, setting.name, method, 'final/test/accuracy')} | "
                        f"{_mean(entries, setting.name, method, 'best/test/accuracy')} | "
                        f"{_mean(entries, setting.name, method, 'selected/test/accuracy')} | {paper} |")
    return "\n".join(rows)


def _detection_table(entries, settings) -> str:
    rows = ["| noise | method | AUC of W, best (Table 3's) | AUC of W, final | small-loss AUC, best | "
            "small-loss AUC, final | wrong labels memorised at the end (%) | the paper's AUC |",
            "|---|---|---|---|---|---|---|---|"]
    for setting in settings:
        for method in _methods_present(entries):
            paper = paper_auc(setting.name, method) if method in METHOD_ORDER else "—"
            rows.append(f"| {setting.label} | {markdown(METHOD_LABELS[method])} | "
                        f"{_mean(entries, setting.name, method, 'best/detection/auc', 1.0, 4)} | "
                        f"{_mean(entries, setting.name, method, 'final/detection/auc', 1.0, 4)} | "
                        f"{_mean(entries, setting.name, method, 'best/detection/auc_loss', 1.0, 4)} | "
                        f"{_mean(entries, setting.name, method, 'final/detection/auc_loss', 1.0, 4)} | "
                        f"{_mean(entries, setting.name, method, 'final/fit/noisy_memorised', 100.0, 1)} | {paper} |")
    return "\n".join(rows)


def _travel_table(entries, settings, first_drop: int) -> str:
    """How far each meta cell's W travelled by the first lr drop, in every setting the grid has run:
    G4's statistics read per run (a gate at uniform 40% only; elsewhere they explain a result)."""
    rows = ["| noise | method | seed | W at the first evaluation | first evaluation with Spearman(W, loss) "
            f"≤ {gates_lib.G4_SPEARMAN} | Spearman(W, loss) at epoch {first_drop} | W noisy/clean at epoch "
            f"{first_drop} | G4's bar met |", "|---|---|---|---|---|---|---|---|"]
    for setting in settings:
        runs = histories(entries, setting.name)
        for method in WEIGHTING_METHODS:
            for seed, history in sorted(runs.get(method, {}).items()):
                start, at_drop = gates_lib.first_evaluation_rose(history), gates_lib.travel_at(history, first_drop)
                if start is None or at_drop is None:
                    continue
                turn = gates_lib.first_turn(history)
                rho, ratio = at_drop
                rows.append(f"| {setting.label} | {markdown(METHOD_LABELS[method])} | {seed} | "
                            f"{'rose' if start else 'fell'} with the loss | "
                            f"{'never' if turn is None else f'epoch {turn}'} | {rho:+.3f} | {ratio:.3f} | "
                            f"{'yes' if gates_lib.travelled(rho, ratio) else 'no'} |")
    if len(rows) == 2:
        return ""
    return ("## How far the weighting net travelled by the first lr drop, every setting\n\n"
            f"G4's statistics for every meta cell evaluated at epoch {first_drop}: a gate at uniform 40% "
            "only, read elsewhere to explain a result. Theorem 1 scales RMNW-Net's expected meta-gradient "
            "by 1 − η under uniform noise (0.6 at 40%, 0.4 at 60%), with more variance (its Lemma 4): "
            "the heavier the noise, the weaker and noisier the pull that turns W.\n\n" + "\n".join(rows))


PAIRS = (("rmnwnet", "base"), ("rmnwnet", "mwnet"), ("rmnwnet", "mnwnet"), ("rmnwnet", "gce"),
         ("rmnwnet_gce", "gce"), ("rmnwnet_gce", "rmnwnet"),
         ("mwnet", "base"), ("mnwnet", "base"), ("gce", "base"), ("oracle", "rmnwnet"))


def _paired_table(entries, settings) -> str:
    rows = ["| noise | a − b | final test accuracy, points: mean [95% interval] (per seed) | "
            "AUC best over training |", "|---|---|---|---|"]
    for setting in settings:
        for a, b in PAIRS:
            accuracy = paired_difference(entries, setting.name, a, b, ACCURACY)
            if accuracy is None:
                continue
            auc = paired_difference(entries, setting.name, a, b, AUC_BEST)
            rows.append(f"| {setting.label} | {markdown(METHOD_LABELS[a])} − {markdown(METHOD_LABELS[b])} | "
                        f"{accuracy.text()} | {auc.text() if auc else '—'} |")
        for a in PAIRS_AGAINST_SELECTED_BASE:
            accuracy = paired_difference(entries, setting.name, a, "base", ACCURACY, b_key=BASE_SELECTED_KEY)
            if accuracy is not None:
                rows.append(f"| {setting.label} | {markdown(METHOD_LABELS[a])} (final) − Base (gold-free selected "
                            f"epoch) | {accuracy.text()} | — |")
        for a in PAIRS_AGAINST_SELECTED_BASE:
            selected = paired_difference(entries, setting.name, a, "base", SELECTED)
            if selected is not None:
                rows.append(f"| {setting.label} | {markdown(METHOD_LABELS[a])} − Base, each at its gold-free "
                            f"selected epoch | {selected.text()} | — |")
    return "\n".join(rows) if len(rows) > 2 else "No pair of methods has a common finished seed yet."


def _gates_section(gates: Sequence[gates_lib.Gate]) -> str:
    lines = ["## The gates (fixed in BUILD_NOTES.md before any meta cell ran)", ""]
    for gate in gates:
        verdict = {True: "PASSES", False: "FAILS", None: "NOT YET DECIDED"}[gate.passed]
        lines.append(f"- **{gate.name}: {verdict}.** {gate.statement}.")
        lines += [f"  - {line}" for line in gate.details]
    return "\n".join(lines)


def _claims_section(claims: Sequence[PairedClaim], caveat: str = "") -> str:
    lines = ["## The paper's claims, judged on paired 95% intervals", "",
             "HOLDS: the whole interval satisfies the claim; FAILS: none of it does; UNDECIDED: it "
             "straddles the bound (more seeds would decide); n=1: the single difference decides.", ""]
    lines += [f"**{caveat}**", ""] if caveat else []
    for judged in claims:
        claim = judged.claim
        bound = f", margin {claim.margin:g}{claim.metric.unit}" if claim.margin else ""
        lines.append(f"- **Claim {claim.number}: {markdown(claim.statement)} — {judged.verdict}** "
                     f"({judged.coverage}; {claim.metric.name}{bound}). Source: {claim.source}")
        for setting, a, b, difference, verdict in judged.comparisons:
            value = difference.text() if difference else "—"
            lines.append(f"  - {setting}: {markdown(METHOD_LABELS[a])} − {markdown(METHOD_LABELS[b])} = "
                         f"{value}: {verdict}")
    return "\n".join(lines)


def _targets_section(rows: Sequence[dict], caveat: str = "") -> str:
    lines = ["## The issue's targets at uniform 40% (from the paper's Tables 1 and 3), and what a user has instead", "",
             f"The paper at uniform 40%: RMNW-Net {paper_accuracy('uniform40', 'rmnwnet')}, MW-Net\\* "
             f"{paper_accuracy('uniform40', 'mwnet')}, Base {paper_accuracy('uniform40', 'base')}; detection AUC "
             f"of RMNW-Net {paper_auc('uniform40', 'rmnwnet')}.", ""]
    lines += [f"**{caveat}**", ""] if caveat else []
    lines += [f"- {markdown(r['statement'])}: **{r['verdict']}** — {markdown(r['value'])}" for r in rows]
    return "\n".join(lines)


def _oracle_against_start(entries, settings, start: float) -> str:
    """Where the oracle (fine-tuned on the clean samples only) ends against the classifier every
    cell starts from: what fine-tuning in this protocol costs or gains before any noise is involved."""
    found = []  # (setting label, seeds, mean final accuracy)
    for setting in settings:
        finals = list(values_by_seed(entries, setting.name, "oracle", ACCURACY.key).values())
        if finals:
            found.append((setting.label, len(finals), sum(finals) / len(finals)))
    if not found:
        return ""
    text = " The oracle (fine-tuned on the clean samples only) ends at " + "; ".join(
        f"{100 * mean:.2f}% at {label} ({seeds} seed{'s' * (seeds != 1)}, {100 * (mean - start):+.2f} points)"
        for label, seeds, mean in found) + " against this starting point."
    if all(mean < start for _, _, mean in found):
        text += (" Fine-tuning at this protocol's lr without augmentation costs accuracy even on clean labels: "
                 "the stand-in backbone was trained on the same ten classes, which a real (ImageNet) backbone "
                 "would not be, so no user could stop here; every method below carries that loss too.")
    return text


def _pretrain_section(pretrain: dict | None, protocol: Protocol, entries=(), settings=()) -> str:
    if pretrain is None:
        return ""
    accuracy = pretrain.get("final/test/accuracy")
    seconds = pretrain.get("wall_seconds")
    text = "not trained yet" if accuracy is None else (
        f"{100 * accuracy:.2f}% test accuracy after {pretrain['epochs']} epochs"
        + ("" if seconds is None else f" ({seconds / 60:.0f} min of wall time; BUILD_NOTES says on what machine)"))
    family = protocol.family
    # Against the start only where the cells test on the pretraining's classes (v3): at v4 the start
    # has never seen the cells' classes.
    same_classes = family.pretraining.get("classes", "") == protocol.classes
    oracle = "" if accuracy is None or not same_classes else _oracle_against_start(entries, settings, accuracy)
    return (f"## Step 1: the pretrained classifier\n\n`{pretrain['model_dir']}`: ResNet-32 trained on the clean "
            f"labels of {family.pretrained_on}: **{text}**. Every cell starts from it (`--init_from`) and "
            f"{family.cells}.{oracle}")


def _plots_section(plots: Mapping[str, list[str]], settings) -> str:
    lines = ["## Plots", ""]
    for setting in settings:
        for name in plots.get(setting.name, []):
            lines.append(f"![{setting.label}: {name}](plots/{name})")
    return "\n".join(lines) if len(lines) > 2 else ""


def progress_counts(entries, family: Family) -> tuple[int, int, list[Mapping]]:
    """(planned cells finished, planned cells, the entries outside the plan): progress is counted
    against the regime's plan, not every setting × seed, so a complete grid reads complete."""
    planned = {(cell.setting.name, cell.method, cell.seed) for cell in planned_cells(family)}
    inside = [e for e in entries if (e["setting"], e["method"], e["seed"]) in planned]
    outside = [e for e in entries if (e["setting"], e["method"], e["seed"]) not in planned]
    return sum(e["status"] == "done" for e in inside), len(planned), outside


def _progress(entries, family: Family) -> str:
    done, planned, outside = progress_counts(entries, family)
    plan = "; ".join(f"{SETTINGS_BY_NAME[name].label} × seeds {', '.join(map(str, seeds))}" for name, seeds in family.plan)
    text = f"{done} of {planned} planned cells finished ({plan}; {len(family.methods)} methods each)."
    if outside:
        text += " Outside the plan, on disk: " + ", ".join(
            f"{e['setting']}/{e['method']}/seed{e['seed']} ({e['status']})" for e in outside) + "."
    return text


def grid_commands(protocol: Protocol) -> list[str]:
    """One command per setting of the plan, running exactly its planned cells (its seeds, every
    method of the regime): reproduce.py's defaults (the paper's four methods, every setting) are not
    the grid."""
    methods = ",".join(protocol.family.methods)
    return [f"python scripts/reproduce.py --protocol={protocol.name} --settings={name} "
            f"--seeds={','.join(map(str, seeds))} --methods={methods}" for name, seeds in protocol.family.plan]


def canonical_commands(protocol: Protocol) -> list[str]:
    """The commands that rerun this report's planned grid and rebuild it, each naming its protocol,
    so a command copied from one report never runs another protocol's grid."""
    grid = grid_commands(protocol)
    reproduce = f"python scripts/reproduce.py --protocol={protocol.name}"
    return [
        "# once: the CIFAR-10 JPEG copy unpacked into data/cifar10/{train,test}/<class>/ "
        "(README.md, *Training on CIFAR*)",
        "# the planned grid, one setting after another; rerun a command to continue after an interruption",
        *grid,
        "# or one cell per sitting: any of them with --max_cells=1, called again later",
        "# rebuild this report from the runs on disk, without training",
        f"{reproduce} --report_only",
        "# with internet instead of the JPEG copy (tensorflow-datasets; other runs folder), on any command above",
        f"{grid[0]} --dataset=cifar10 --runs_dir=runs/reproduction_tfds",
    ]


def _report_protocol(protocol: Protocol, command: str) -> str:
    shown = {key: value for key, value in protocol.config_fields().items()
             if protocol.dataset == "synthetic" or not key.startswith("synthetic_")}
    rows = [f"| `{key}` | {_code(value)} |" for key, value in shown.items()]
    rows.append(f"| Base holds the meta set out (`hold_out_meta`) | {_code(protocol.base_holds_out_meta)} |")
    # Against the protocol it names; a variant (e.g. a cheap meta step) says what it changed.
    registered = PROTOCOLS.get(protocol.name, PROTOCOL)
    changed = {key: value for key, value in shown.items() if registered.config.get(key) != value}
    note = ("" if not changed else
            f"\n\n**This report's protocol differs from `PROTOCOLS[{protocol.name!r}]`:** "
            + ", ".join(f"`{k}`: {_code(v)}" for k, v in changed.items()) + ".")
    return "\n".join([
        "## Protocol",
        "",
        f"From `experiments/reproduction/protocol.py` (`PROTOCOLS[{protocol.name!r}]`):",
        "",
        inspect.cleandoc(protocol.rationale),
        "",
        "| setting | value |",
        "|---|---|",
        *rows,
    ]) + note + "\n\n" + "\n".join([
        "Per cell, on top of this: `noise_type`/`noise_rate` of the setting, `method`, `seed`; "
        "flip2 and flip targets are drawn from the seed. The meta set of MNW-Net and RMNW-Net "
        "is noisy (an independent draw of the same noise), that of MW-Net\\* clean.",
        "",
        "### Commands",
        "",
        "```sh",
        *canonical_commands(protocol),
        "```",
        "",
        "This report was built by:",
        "",
        "```sh",
        command,
        "```",
    ])


def _code(value) -> str:
    return "(empty)" if value == "" else f"`{value}`"


def render(entries: Sequence[Mapping], protocol: Protocol, *, command: str, gates, claims, target_rows,
              plots, settings: Sequence[Setting], pretrain: dict | None,
              cleaning: str = "", vnet_choice: str = "", others: Sequence[tuple[str, str]] = (),
              cheap_steps: str = "", tries: str = "") -> str:
    sections = [
        f"# Reproduction, protocol {protocol.name}: {protocol.family.title}\n\n"
        "Ghosh & Lan (WACV 2021), CIFAR-10 (JPEG copy), reduced to 2 CPU cores in the regime where the "
        "paper's preconditions hold: a classifier whose loss separates clean from noisy samples, and "
        "cross-entropy that memorises the noisy labels within the budget. Why and how: BUILD_NOTES.md, "
        f"*{protocol.family.notes}*. {_progress(entries, protocol.family)}",
        _pretrain_section(pretrain, protocol, entries, settings),
        _gates_section(gates),
        vnet_choice,
        _targets_section(target_rows, mwnet_caveat(gates)),
        "## Test accuracy beside the paper's\n\nFinal = after the last epoch; best = picked on the test set "
        "(the paper's and the official code's number, flattering); selected = the epoch with the best "
        "meta-set accuracy (no clean labels needed). Mean ± std over seeds.\n\n" + _accuracy_table(entries, settings),
        "## Paired differences (same seed = same noisy labels, meta set and subset)\n\n" + _paired_table(entries, settings),
        _claims_section(claims, mwnet_caveat(gates)),
        tries,
        "## Detection and memorisation\n\nAUC of a \"this label is clean\" score over the whole un-augmented "
        "training set: the learned weight W, and Base's small-loss rule (−loss), which any weighting must "
        "beat to add value.\n\n" + _detection_table(entries, settings),
        _travel_table(entries, settings, protocol.first_drop),
        cleaning,
        cheap_steps,
        _plots_section(plots, settings),
        _report_protocol(protocol, command),
        "## Other protocols\n\n" + "\n".join(f"- [{name}]({link})" for name, link in others),
    ]
    return "\n\n".join(s for s in sections if s) + "\n"
