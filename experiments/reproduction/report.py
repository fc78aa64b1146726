"""REPRODUCTION.md: protocol, tables beside the paper's, targets, claims (with the paper's own
numbers as a sanity row), detection, memorisation, gold-free selection, plots, calibration,
variants, cost and progress. Cells not yet run show "—" everywhere."""

from __future__ import annotations

import inspect
from typing import Sequence

from experiments.reproduction import paper
from experiments.reproduction.claims import (
    RELATION_RULES,
    ClaimResult,
    TargetResult,
    format_mean_std,
    summarize,
)
from experiments.reproduction.protocol import (
    META_METHODS,
    METHOD_LABELS,
    METHOD_ORDER,
    PROTOCOL,
    PROTOCOLS,
    RATIONALES,
    RATIONALE_V2_1,
    SETTINGS,
    Protocol,
    Setting,
    markdown,
)

# ------------------------------------------------------------------------------------ paper
PAPER_NONE = "not in the paper"


def paper_accuracy(setting: str, method: str) -> str:
    value = paper.accuracy(setting, method)
    return PAPER_NONE if value is None else f"{value[0]:.2f} ± {value[1]:.2f}"


def paper_auc(setting: str, method: str) -> str:
    value = paper.detection_auc(setting, method)
    return PAPER_NONE if value is None else f"{value:.4f}"


def paper_json() -> dict:
    """The paper's numbers as reproduction.json carries them."""
    return {"source": paper.SOURCE, "seeds": paper.SEEDS, "table1_accuracy": paper.TABLE1,
            "table2_accuracy": paper.TABLE2, "table3_detection_auc": paper.TABLE3,
            "setting_columns": paper.ACCURACY_COLUMNS}


def render_report(entries: Sequence[dict], claims: Sequence[ClaimResult], cost: Sequence[dict],
                  protocol: Protocol, *, command: str, plots: dict[str, list[str]], settings: Sequence[Setting],
                  seeds: Sequence[int], variants: Sequence[dict] = (), targets: Sequence[TargetResult] = (),
                  paper_targets: Sequence[TargetResult] = (), sanity: Sequence[ClaimResult] = (),
                  calibration: Sequence[dict] = ()) -> str:
    """The report's Markdown; `variants` are other protocols' reproduction.json contents (plus "name"),
    `calibration` the rows of `plots.calibration_plot` (plus "plot", its file name)."""
    sections = [
        _report_header(entries, protocol, settings, seeds),
        _report_protocol(protocol, command),
        _report_accuracy(entries, settings),
        _report_targets(targets, paper_targets),
        _report_diverged(entries),
        _report_claims(claims, sanity),
        _report_auc(entries, settings),
        _report_fit(entries, settings),
        _report_selection(entries, settings),
        _report_plots(plots, settings),
        _report_calibration(calibration),
        _report_cheap_modes(variants, entries, protocol),
        _report_variants(variants, entries, protocol),
        _report_cost(cost),
        _report_progress(entries, settings),
    ]
    return "\n\n".join(section.rstrip() for section in sections) + "\n"


def _acc(summary) -> str:
    return format_mean_std(summary, scale=100.0)


def _report_accuracy(entries, settings) -> str:
    rows = []
    for setting in settings:
        for method in METHOD_ORDER:
            final = summarize(entries, setting.name, method, "final/test/accuracy")
            best = summarize(entries, setting.name, method, "best/test/accuracy")
            seeds = 0 if final is None else final.n
            rows.append(f"| {setting.label} | {markdown(METHOD_LABELS[method])} | {seeds} | {_acc(final)} | "
                        f"{_acc(best)} | {paper_accuracy(setting.name, method)} |")
    columns = ", ".join(f"{label} → {table} {column}" for label, (table, column) in (
        (s.label, paper.ACCURACY_COLUMNS[s.name]) for s in settings))
    return "\n".join([
        "## Test accuracy (%) beside the paper's (Tables 1–2)",
        "",
        "“final”: after the last epoch; “best”: the best evaluation (picked on the test set, as the "
        "official code's printed accuracy is, so optimistic). “paper”: CIFAR-10, mean ± std of 5 seeds at "
        f"full scale ({paper.SOURCE}; copied into `experiments/reproduction/paper.py`). Paper columns: "
        f"{columns} (the paper's networks: WRN-28-10 for uniform and flip, ResNet-32 for flip2; ours: "
        "the protocol's).",
        "",
        "| noise | method | seeds | final | best | paper |",
        "|---|---|---|---|---|---|",
        *rows,
    ])


def _target_line(result: TargetResult) -> str:
    target = result.target
    digits = target.metric.digits
    a_label = markdown(METHOD_LABELS[target.method_a])
    if target.method_b is None:
        judged = f"{a_label} {format_mean_std(result.a, scale=target.metric.scale, digits=digits)}"
    else:
        judged = (f"{a_label} {format_mean_std(result.a, scale=target.metric.scale, digits=digits)} vs "
                  f"{markdown(METHOD_LABELS[target.method_b])} "
                  f"{format_mean_std(result.b, scale=target.metric.scale, digits=digits)}")
    if result.value is not None and target.method_b is not None:
        judged += f": Δ {result.value:+.{digits}f}"
    return f"{judged} → **{result.verdict}**" if result.value is not None else "—"


def _report_targets(targets: Sequence[TargetResult], paper_targets: Sequence[TargetResult]) -> str:
    paper_by_statement = {r.target.statement: r for r in paper_targets}
    rows = []
    for result in targets:
        target = result.target
        mine = "NOT YET MEASURED" if result.value is None else _target_line(result)
        theirs = paper_by_statement.get(target.statement)
        rows.append(f"| {markdown(target.statement)} | {target.metric.name} | {mine} | "
                    f"{'—' if theirs is None else _target_line(theirs)} |")
    return "\n".join([
        "## The issue's targets at uniform 40%",
        "",
        "Fixed bars read off Table 1 (accuracy) and Table 3 (AUC), judged on the seeds' means. "
        "The paper's column applies the same bar to its own numbers (its AUC is the best over training).",
        "",
        "| target | metric | ours | paper |",
        "|---|---|---|---|",
        *rows,
    ])


def _report_diverged(entries: Sequence[dict]) -> str:
    """Finished cells whose training diverged: they count in the verdicts as the rules say, and
    the reader must see that a mean or a pooled std containing one is dominated by it."""
    bad = [e for e in entries if e.get("diverged")]
    lines = ["## Diverged cells", "",
             "A cell diverged when its training CE after the last epoch is above its first epoch's "
             "(healthy cells end far below it). Diverged cells stay in every table and verdict, as the "
             "rules were fixed; a mean, std or pooled std that includes one is dominated by it, so an "
             "≈ claim can hold and a > claim fail through the spread alone."]
    if not bad:
        return "\n".join(lines + ["", "None."])
    labels = {setting.name: setting.label for setting in SETTINGS}
    lines += [""] + [f"- {labels.get(e['setting'], e['setting'])}, {markdown(METHOD_LABELS[e['method']])}, seed {e['seed']}: final test "
                     f"accuracy {_percent(e.get('final/test/accuracy'))}%" for e in bad]
    return "\n".join(lines)


def _report_claims(claims: Sequence[ClaimResult], sanity: Sequence[ClaimResult]) -> str:
    sanity_by_number = {r.claim.number: r for r in sanity}
    rows = []
    for result in claims:
        claim = result.claim
        check = sanity_by_number.get(claim.number)
        rows.append(f"| {claim.number} | {markdown(claim.statement)} | {claim.scope} | {claim.metric.name} | "
                    f"{claim.tolerance.replace('|', chr(92) + '|')} | **{result.verdict}** ({result.coverage}) | "
                    f"{'—' if check is None else check.verdict} |")
    lines = [
        "## The paper's claims at this scale",
        "",
        "Each claim as the paper states it for CIFAR-10 (Sections 3–4), restricted to the settings "
        "where the paper makes it, with a stated tolerance. Δ = mean of the first method − mean of "
        "the second, in the metric's units (accuracy in points); pooled std = root mean square of "
        "the two sides' seed std (0 when unknown, e.g. one seed or the paper's AUC). A claim HOLDS "
        "when every measured comparison holds, FAILS when any fails, NOT YET MEASURED when no "
        "comparison has both sides finished. The rules were fixed before protocol v2's results came "
        "in. **Sanity row**: the same rules applied to the paper's own CIFAR-10 numbers "
        "(mean ± std of 5 seeds); a rule failing there would state the claim wrongly.",
        "",
        "| # | claim | scope | metric | tolerance | ours | paper's own numbers |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        "Rules: " + "; ".join(RELATION_RULES.values()) + " (the margin per claim is in the table).",
        "",
    ]
    for result in claims:
        claim = result.claim
        lines += [f"**{claim.number}. {markdown(claim.statement)}: {result.verdict}** "
                  f"(paper: {markdown(claim.source)})", ""]
        lines += [f"- {c.describe(claim.metric, claim.relation)}" for c in result.comparisons]
        check = sanity_by_number.get(claim.number)
        if check is not None:
            lines += [f"- paper, {c.describe(claim.metric, claim.relation)}" for c in check.comparisons]
        lines.append("")
    return "\n".join(lines)


def _report_auc(entries, settings) -> str:
    def cell(setting, method, key):
        return format_mean_std(summarize(entries, setting, method, key), digits=4)

    rows = []
    for setting in settings:
        if setting.noise_type == "none":
            continue
        base = cell(setting.name, "base", "final/detection/auc_loss")
        for method in META_METHODS:
            rho = format_mean_std(summarize(entries, setting.name, method, "final/weights/loss_spearman"), digits=2)
            rows.append(
                f"| {setting.label} | {markdown(METHOD_LABELS[method])} | "
                f"{cell(setting.name, method, 'final/detection/auc')} | "
                f"{cell(setting.name, method, 'best/detection/auc')} | "
                f"{cell(setting.name, method, 'final/detection/auc_loss')} | {base} | {rho} | "
                f"{paper_auc(setting.name, method)} |")
    return "\n".join([
        "## Detection AUC (paper: Table 3)",
        "",
        "AUC of a score as “this training label is clean” over the whole un-augmented training set "
        "(1 = every clean sample scores above every noisy one, 0.5 = chance). “W final”: the learned "
        "weight W(loss) of the final model (`final/detection/auc` in reproduction.json); “W best”: "
        "the best of the per-evaluation AUCs (Table 3's definition); “−loss”: the small-loss rule on the "
        "same final model; “Base −loss”: Base's final model with the small-loss rule, the trivial "
        "detector a weighting must beat to add anything; ρ: Spearman correlation of W with the loss on "
        "the final model. W depends on the loss alone, so when W is monotone, AUC(W) = AUC(−loss) if "
        "it decreases (ρ = −1: the right direction, noisy labels down-weighted) and 1 − AUC(−loss) if it "
        "increases (ρ = +1); ρ near 0 means W is flat or not monotone over the losses seen. “paper”: "
        "Table 3 (best over training, CIFAR-10).",
        "",
        "| noise | method | W final | W best | −loss | Base −loss | ρ(W, loss) | paper |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
    ])


def _report_fit(entries, settings) -> str:
    rows = []
    for setting in settings:
        for method in METHOD_ORDER:
            keys = ("final/fit/clean_fitted",) if setting.noise_type == "none" else (
                "final/fit/clean_fitted", "final/fit/noisy_memorised", "final/fit/noisy_corrected")
            cells = [format_mean_std(summarize(entries, setting.name, method, key), scale=100.0, digits=1)
                     for key in keys]
            cells += ["n/a"] * (3 - len(cells))
            rows.append(f"| {setting.label} | {markdown(METHOD_LABELS[method])} | {' | '.join(cells)} |")
    return "\n".join([
        "## What the final network fits on its training samples (%)",
        "",
        "The final evaluation's `fit/*` metrics (un-augmented training set): “clean fitted”: correctly "
        "labelled samples predicted as their label; “noisy memorised”: wrongly labelled samples "
        "predicted as their *wrong* label; “noisy corrected”: wrongly labelled samples predicted as "
        "their true label. Sample weighting protects a model from memorising noisy labels; where Base "
        "memorises little, there is little for it to win. Per evaluation: the `*_fit.png` plots.",
        "",
        "| noise | method | clean fitted | noisy memorised | noisy corrected |",
        "|---|---|---|---|---|",
        *rows,
    ])


def selection_rows(entries: Sequence[dict], settings: Sequence[Setting]) -> list[dict]:
    """Per setting × method with finished cells: mean final, best and selected accuracy and the gaps.

    The gaps are means over the seeds that have all three numbers.
    """
    rows = []
    for setting in settings:
        for method in METHOD_ORDER:
            done = [e for e in entries if e["setting"] == setting.name and e["method"] == method
                    and e["status"] == "done"]
            complete = [e for e in done if all(e.get(k) is not None for k in
                                               ("final/test/accuracy", "best/test/accuracy", "selected/test/accuracy"))]
            if not done:
                continue
            rows.append({
                "setting": setting, "method": method,
                "final": summarize(done, setting.name, method, "final/test/accuracy"),
                "best": summarize(done, setting.name, method, "best/test/accuracy"),
                "selected": summarize(done, setting.name, method, "selected/test/accuracy"),
                "selected_mae": summarize(done, setting.name, method, "selected_by_meta_mae/test/accuracy"),
                "selected_mae_minus_best": _mean([e["selected_by_meta_mae/test/accuracy"] - e["best/test/accuracy"]
                                                  for e in complete if e.get("selected_by_meta_mae/test/accuracy") is not None]),
                "selected_minus_best": _mean([e["selected/test/accuracy"] - e["best/test/accuracy"] for e in complete]),
                "selected_minus_final": _mean([e["selected/test/accuracy"] - e["final/test/accuracy"] for e in complete]),
                "seeds": len(done),
            })
    return rows


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _points(value: float | None) -> str:
    return "—" if value is None else f"{value * 100.0:+.2f}"


def _report_selection(entries, settings) -> str:
    rows = [f"| {r['setting'].label} | {markdown(METHOD_LABELS[r['method']])} | {r['seeds']} | {_acc(r['final'])} | "
            f"{_acc(r['best'])} | {_acc(r['selected'])} | {_points(r['selected_minus_best'])} | "
            f"{_points(r['selected_minus_final'])} | {_acc(r['selected_mae'])} | {_points(r['selected_mae_minus_best'])} |"
            for r in selection_rows(entries, settings)]
    lines = [
        "## Gold-free checkpoint selection (issue #13)",
        "",
        "Test accuracy (%) of picks among a run's evaluations: “final” (the last), “best” (the "
        "highest *test* accuracy: picked with the test labels, an upper bound no user has), "
        "“selected” (the highest accuracy on the run's own meta set with its own labels, noisy for "
        "MNW-Net and RMNW-Net, ties to the earlier epoch: needs no clean label; the tool's "
        "`selected/epoch`, `rmwnet_tf/selection.py`), and “by meta MAE” (the lowest MAE on the same "
        "set: the first criterion, replaced after protocol v2.1's uniform cells, BUILD_NOTES.md "
        "“Gold-free selection: accuracy, not MAE”). Both are recomputed here from each run's history, "
        "whichever criterion the run itself used. Means over finished seeds; the gaps in points. "
        "Base holds its meta set out of training and is scored on it too.",
        "",
        "| noise | method | seeds | final | best (test-picked) | selected (meta accuracy) | selected − best | "
        "selected − final | by meta MAE | by MAE − best |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *rows,
    ]
    if not rows:
        lines.append("| — | — | 0 | — | — | — | — | — | — | — |")
    return "\n".join(lines)


def _report_plots(plots: dict[str, list[str]], settings: Sequence[Setting]) -> str:
    lines = ["## Plots", ""]
    if not plots:
        return "\n".join(lines + ["None yet: no cell has finished."])
    lines.append("Per setting with finished cells: test accuracy at every evaluation (mean over finished "
                 "seeds, lr drops dotted: Base's fall after them is memorisation), the fit rates per "
                 "evaluation per method (`_fit`), and the learned W(loss) of the final model of each "
                 "meta method (lowest finished seed; every training sample's final loss and weight from "
                 "its `sample_scores.csv`, kept as `samples.npz`, clean and noisy labels coloured; `_weights`).")
    for setting in settings:
        for name in plots.get(setting.name, []):
            kind = name[len(setting.name) + 1:-4]
            lines += ["", f"![{setting.label}: {kind}](plots/{name})"]
    return "\n".join(lines)


def _report_calibration(calibration: Sequence[dict]) -> str:
    lines = [
        "## Calibration: does Base memorise under this protocol?",
        "",
        "Protocol v2 was sized so that Base memorises the noisy labels as in the paper (the regime "
        "sample weighting is for); the evidence (Base at uniform 60%, several protocol tries) is in "
        "BUILD_NOTES.md, “Protocol v2”. Run folders given by `--calibration_runs`:",
    ]
    if not calibration:
        return "\n".join(lines + ["", "None given to this build."])
    lines += [
        "",
        "| run | method | epochs | noisy memorised (end) | clean fitted (end) | best test acc. | final test acc. |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in calibration:
        epochs = f"{row['epochs_completed']}/{row['epochs'] or '?'}" + ("" if row["finished"] else " (unfinished)")
        lines.append(
            f"| `{row['run_dir']}` | {row['method'] or '—'} | {epochs} | "
            f"{_percent(row['final/fit/noisy_memorised'])} | {_percent(row['final/fit/clean_fitted'])} | "
            f"{_percent(row['best/test/accuracy'])} | {_percent(row['final/test/accuracy'])} |")
    for row in calibration:
        lines += ["", f"![calibration: {row['run_dir']}](plots/{row['plot']})"]
    return "\n".join(lines)


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100.0:.1f}"


# Shown under a variant's heading (the differences of config fields do not say everything).
VARIANT_NOTES = {
    "v1": ("Protocol v1 (`PROTOCOL_V1`, sessions 1–3): small_cnn, late lr drops (79% and 92% of "
           "training), a 4-px pad at 16×16, and Base trained on all 6,000 images against the meta "
           "methods' 5,000. There Base never memorised the noisy labels, so that grid tested another "
           "regime than the paper's. Its own report lists its variants (e.g. no augmentation) and its "
           "own claim list (numbered differently from this one)."),
    "vnet_adam": ("Candidate 1 for protocol v2.1's weighting net, **rejected**: the weighting net on Adam (lr 1e-3, v1's "
                  "choice) instead of SGD at lr 0.0185, after 3 of v2's 4 uniform RMNW-Net cells diverged (W "
                  "collapsed, the normalised weights concentrated on a few samples, the training CE exploded). "
                  "Its check, fixed before the runs (BUILD_NOTES.md, *A VNet setting that does not diverge*): "
                  "RMNW-Net on the 4 uniform cells, no cell's training CE above its epoch-1 value after epoch 5. "
                  "The first cell, uniform 60% seed 1, diverged the same way (CE 3.67 at epoch 1, 4.70 at 17) and "
                  "was stopped at epoch 20."),
    "v2": ("Protocol v2 (`PROTOCOL_V2`, sessions 4–6): this protocol with the weighting net's SGD lr scaled "
           "from the paper's 1e-3 to 0.0185 (the ratio of pre-drop steps). 3 of its 4 uniform RMNW-Net "
           "cells diverged: W collapsed, the normalised weights concentrated on a few samples per batch "
           "and the training CE exploded (BUILD_NOTES.md, *RMNW-Net diverged*). Its Base cells are "
           "this grid's (Base has no weighting net)."),
}


# ------------------------------------------------------------------------------------ report
def canonical_commands(protocol_name: str = PROTOCOL.name) -> list[str]:
    """The commands that rerun this report's grid. Every one names the protocol unless it is the
    flag's default (v2.1), so a command copied from v3's report never runs v2.1's grid."""
    reproduce = "python scripts/reproduce.py" + ("" if protocol_name == PROTOCOL.name
                                                 else f" --protocol={protocol_name}")
    commands = [
        "# once: the CIFAR-10 JPEG copy unpacked into data/cifar10/{train,test}/<class>/ "
        "(README.md, *Training on CIFAR*)",
        "# the whole grid; rerun the same command to continue after an interruption",
        reproduce,
        "# or a few cells per sitting (uniform 40% first), then again later",
        f"{reproduce} --max_cells=4",
        "# rebuild this report from the runs on disk, without training",
        f"{reproduce} --report_only",
    ]
    if protocol_name == PROTOCOL.name:  # only v2.1's report draws the calibration runs
        commands += [
            "# ... with the calibration section: Base run folders, comma-separated (kept for later rebuilds)",
            f"{reproduce} --report_only --calibration_runs=runs/calibration/a,runs/calibration/b",
        ]
    return commands + [
        "# with internet instead of the JPEG copy (tensorflow-datasets; other runs folder)",
        f"{reproduce} --dataset=cifar10 --runs_dir=runs/reproduction_tfds",
    ]


def dataset_description(protocol: Protocol) -> str:
    if protocol.dataset == "image_folder":
        return f"CIFAR-10 (JPEG copy, `{protocol.data_dir}`)"
    if protocol.dataset == "cifar10":
        return "CIFAR-10 (tensorflow-datasets)"
    return f"`{protocol.dataset}` data"


def _report_header(entries, protocol, settings, seeds) -> str:
    done = sum(e["status"] == "done" for e in entries)
    lines = [
        "# Reduced-scale reproduction of RMNW-Net (Ghosh & Lan, WACV 2021), Tables 1–3: protocol v2.1",
        "",
        f"Base, MW-Net\\*, MNW-Net and RMNW-Net on {dataset_description(protocol)} under the paper's "
        "label-noise settings, all with the same reduced budget (below). Generated by "
        "`scripts/reproduce.py` from the runs on disk; every number here is read from a run's "
        "`results.json` or its per-sample data (`samples.npz`).",
        "",
        f"**Cells finished: {done} of {len(entries)}** ({len(settings)} settings × "
        f"{len(METHOD_ORDER)} methods × {len(seeds)} seeds). Missing cells show “—”; "
        "mean ± sample std over seeds, a single seed shows its value alone. The grid is filled over "
        "several sittings, uniform 40% and 60% first. The earlier protocols' grids (v1, and v2 whose "
        "weighting net diverged) are summarised under “Variants tried”.",
    ]
    if protocol.dataset == "image_folder":
        lines += ["", "The images were decoded from JPEG (quality 75), not the lossless originals: expect "
                      "accuracies a little below clean-CIFAR figures."]
    if protocol.dataset not in ("image_folder", "cifar10"):
        lines += ["", f"> **Smoke run on `{protocol.dataset}` data, not CIFAR-10: these numbers say "
                      "nothing about the paper.**"]
    return "\n".join(lines)


def _report_protocol(protocol: Protocol, command: str) -> str:
    shown = {key: value for key, value in protocol.config_fields().items()
             if protocol.dataset == "synthetic" or not key.startswith("synthetic_")}
    rows = [f"| `{key}` | {_code(value)} |" for key, value in shown.items()]
    rows.append(f"| Base holds the meta set out (`hold_out_meta`) | {_code(protocol.base_holds_out_meta)} |")
    # Against the protocol it names (v3's report is not a v2.1 variant); a variant says what it changed.
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
        inspect.cleandoc(RATIONALES.get(protocol.name, RATIONALE_V2_1)),
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
        *canonical_commands(protocol.name),
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


def _report_variants(variants: Sequence[dict], entries: Sequence[dict], protocol: Protocol) -> str:
    """Other protocols run into sub-folders of the report folder (e.g. to probe a failing claim)."""
    lines = [
        "## Variants tried",
        "",
        "Runs of the same grid under another protocol (its differences from this report's are in "
        "each heading), each with its own report in a sub-folder "
        "(written by `scripts/reproduce.py --out_dir=<this folder>/<name> --runs_dir=<its runs>` "
        "plus the changed flags). Finished cells only; the numbers of this report's table are "
        "repeated beside them where the same cell exists here.",
    ]
    if not variants:
        return "\n".join(lines + ["", "None yet."])
    mine = protocol.config_fields()
    for variant in variants:
        changed = {key: value for key, value in variant["protocol"].items() if key in mine and mine[key] != value}
        done = [e for e in variant["entries"] if e["status"] == "done"]
        lines += ["", f"### `{variant['name']}`: "
                      + (", ".join(f"`{k}` = {_code(v)}" for k, v in changed.items()) or "same protocol"),
                  "", f"[Its report]({variant['name']}/REPRODUCTION.md), built by `{variant['command']}`."]
        if variant["name"] in VARIANT_NOTES:
            lines += ["", VARIANT_NOTES[variant["name"]]]
        if not done:
            lines += ["", "No finished cell yet."]
            continue
        lines += ["", "| noise | method | seeds | final test accuracy | here | noisy memorised | here |",
                  "|---|---|---|---|---|---|---|"]
        for setting in SETTINGS:
            for method in METHOD_ORDER:
                accuracy = summarize(done, setting.name, method, "final/test/accuracy")
                if accuracy is None:
                    continue
                here = summarize(entries, setting.name, method, "final/test/accuracy")
                memorised = summarize(done, setting.name, method, "final/fit/noisy_memorised")
                memorised_here = summarize(entries, setting.name, method, "final/fit/noisy_memorised")
                lines.append(
                    f"| {setting.label} | {markdown(METHOD_LABELS[method])} | {accuracy.n} | "
                    f"{format_mean_std(accuracy, scale=100.0)} | {format_mean_std(here, scale=100.0)} | "
                    f"{format_mean_std(memorised, scale=100.0, digits=1)} | "
                    f"{format_mean_std(memorised_here, scale=100.0, digits=1)} |")
        verdicts = [f"claim {c['number']} {c['verdict']} ({c['coverage']})" for c in variant["claims"]
                    if c["comparisons"]]
        if verdicts:
            lines += ["", "Its own claims, on its finished cells: " + "; ".join(verdicts) + "."]
    return "\n".join(lines)


# Fields whose change makes a variant a cheaper meta step of the same method (issue #14).
CHEAP_MODE_FIELDS = ("meta_step", "meta_every")
# The bar for a cheap mode, against the exact step on the same cells (seed means).
CHEAP_MODE_ACCURACY_POINTS = 1.0
CHEAP_MODE_AUC = 0.02


def cheap_mode_variants(variants: Sequence[dict], protocol: Protocol) -> list[dict]:
    """The variants that differ from this protocol only in how the meta step is computed."""
    mine = protocol.config_fields()
    cheap = []
    for variant in variants:
        changed = {k for k, v in variant["protocol"].items() if k in mine and mine[k] != v}
        if changed and changed <= set(CHEAP_MODE_FIELDS):
            cheap.append(variant)
    return cheap


def _mode_label(protocol_fields: dict) -> str:
    if protocol_fields.get("meta_step", "exact") != "exact":
        return f"`meta_step={protocol_fields['meta_step']}`"
    if protocol_fields.get("meta_every", 1) != 1:
        return f"`meta_every={protocol_fields['meta_every']}`"
    return "exact (this grid)"


def _report_cheap_modes(variants: Sequence[dict], entries: Sequence[dict], protocol: Protocol) -> str:
    """Cheap meta steps as extra rows beside the exact step's cells (issue #14), not as methods."""
    lines = [
        "## Cheap meta steps (issue #14)",
        "",
        f"RMNW-Net with a cheaper meta step, on the same cells as the exact step. The bar: final test "
        f"accuracy within {CHEAP_MODE_ACCURACY_POINTS:g} point and final detection AUC within "
        f"{CHEAP_MODE_AUC:g} of the exact step's, on the seeds both have finished (means). "
        "s / step is the training time per step of these runs (the machine's load at the time "
        "included); the step benchmark in BUILD_NOTES.md gives the idle cost ratios. \"diverged\" "
        "counts the row's cells whose training diverged (see Diverged cells): a mean over a diverged "
        "cell says more about that cell than about the meta step.",
    ]
    cheap = cheap_mode_variants(variants, protocol)
    if not cheap:
        return "\n".join(lines + ["", "No cheap-mode variant run yet."])
    lines += ["", "| noise | meta step | seeds | final test accuracy | Δ vs exact | detection AUC (final) "
                  "| Δ vs exact | s / step | diverged | within the bar |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    exact_entries = [e for e in entries if e["method"] == "rmnwnet" and e["status"] == "done"]
    for setting in SETTINGS:
        for label, rows in [("exact (this grid)", exact_entries)] + [
                (_mode_label(v["protocol"]), [e for e in v["entries"] if e["method"] == "rmnwnet"
                                              and e["status"] == "done"]) for v in cheap]:
            mine = [e for e in rows if e["setting"] == setting.name]
            if not mine:
                continue
            seeds = {e["seed"] for e in mine}
            paired = [e for e in exact_entries if e["setting"] == setting.name and e["seed"] in seeds]
            accuracy = summarize(mine, setting.name, "rmnwnet", "final/test/accuracy")
            auc = summarize(mine, setting.name, "rmnwnet", "final/detection/auc")
            exact_accuracy = summarize(paired, setting.name, "rmnwnet", "final/test/accuracy")
            exact_auc = summarize(paired, setting.name, "rmnwnet", "final/detection/auc")
            seconds = [e["seconds_per_step"] for e in mine if e.get("seconds_per_step")]
            is_exact = rows is exact_entries
            d_acc = d_auc = verdict = "—"
            if not is_exact and exact_accuracy and accuracy and len(paired) == len(mine):
                delta_acc = (accuracy.mean - exact_accuracy.mean) * 100.0
                d_acc = f"{delta_acc:+.2f}"
                ok = abs(delta_acc) <= CHEAP_MODE_ACCURACY_POINTS
                if auc and exact_auc:
                    delta_auc = auc.mean - exact_auc.mean
                    d_auc = f"{delta_auc:+.4f}"
                    ok = ok and abs(delta_auc) <= CHEAP_MODE_AUC
                verdict = "yes" if ok else "**no**"
            n_diverged = sum(bool(e.get("diverged")) for e in mine)
            lines.append(
                f"| {setting.label} | {label} | {', '.join(str(s) for s in sorted(seeds))} | "
                f"{format_mean_std(accuracy, scale=100.0)} | {d_acc} | {format_mean_std(auc, digits=4)} | {d_auc} | "
                f"{_seconds(sum(seconds) / len(seconds) if seconds else None)} | {n_diverged} of {len(mine)} | "
                f"{verdict} |")
    return "\n".join(lines)


def _report_cost(cost: Sequence[dict]) -> str:
    rows = []
    for row in cost:
        ratio = "—" if row["ratio_to_base"] is None else f"{row['ratio_to_base']:.2f}×"
        seconds = _seconds(row["seconds_per_step"])
        rows.append(f"| {markdown(METHOD_LABELS[row['method']])} | {row['cells']} | {seconds} | {ratio} |")
    return "\n".join([
        "## Cost at this scale",
        "",
        "Training seconds per step (the `train_seconds` of every epoch in `results.json`, "
        "evaluation excluded, divided by the steps), averaged over each method's finished cells. "
        "Timings depend on the machine and its load at the time.",
        "",
        "| method | cells | s / step | × Base |",
        "|---|---|---|---|",
        *rows,
    ])


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _report_progress(entries: Sequence[dict], settings: Sequence[Setting]) -> str:
    """Which cells are finished, so the next sitting knows what is left."""
    rows = []
    for setting in settings:
        cells = []
        for method in METHOD_ORDER:
            mine = [e for e in entries if e["setting"] == setting.name and e["method"] == method]
            done = sum(e["status"] == "done" for e in mine)
            extra = [f"{sum(e['status'] == s for e in mine)} {s}" for s in ("partial", "stale")
                     if any(e["status"] == s for e in mine)]
            cells.append(f"{done}/{len(mine)}" + (f" ({', '.join(extra)})" if extra else ""))
        rows.append(f"| {setting.label} | {' | '.join(cells)} |")
    return "\n".join([
        "## Progress",
        "",
        "Finished seeds per cell (“partial”: training started, resumes on the next run; “stale”: "
        "the folder holds a run of another protocol and is ignored).",
        "",
        "| noise | " + " | ".join(markdown(METHOD_LABELS[m]) for m in METHOD_ORDER) + " |",
        "|---|" + "---|" * len(METHOD_ORDER),
        *rows,
    ])


