"""The reduced-scale reproduction: grid order, resume bookkeeping, claim rules, formatting, and
one end-to-end smoke run of scripts/reproduce.py on synthetic data."""

import importlib.util
import json
import pathlib

import pytest
from absl import flags

from rmwnet_tf import summary
from experiments import reproduction as rep

REPO = pathlib.Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------ grid
def test_grid_starts_with_uniform40_all_methods_seed0_then_seed1():
    cells = rep.grid(rep.parse_settings(""), rep.parse_methods(""), rep.parse_seeds("0,1"))
    assert len(cells) == 7 * 4 * 2
    first = [(c.setting.name, c.method, c.seed) for c in cells[:8]]
    assert first == [("uniform40", m, 0) for m in ("base", "mwnet", "mnwnet", "rmnwnet")] + \
                    [("uniform40", m, 1) for m in ("base", "mwnet", "mnwnet", "rmnwnet")]
    assert [s.name for s in rep.SETTINGS] == [
        "uniform40", "uniform60", "flip2_20", "flip2_40", "flip15", "flip30", "none0"]
    assert cells[8].setting.name == "uniform60"


def test_grid_keeps_given_setting_order_and_canonical_method_order(tmp_path):
    cells = rep.grid(rep.parse_settings("flip30,uniform40"), rep.parse_methods("rmnwnet,base"), [1])
    assert [c.label for c in cells] == [
        "flip30/base/seed1", "flip30/rmnwnet/seed1", "uniform40/base/seed1", "uniform40/rmnwnet/seed1"]
    assert cells[0].model_dir(tmp_path) == tmp_path / "flip30" / "base" / "seed1"


@pytest.mark.parametrize("parse, text", [
    (rep.parse_settings, "uniform50"), (rep.parse_methods, "mwnet,coteaching"), (rep.parse_seeds, "0,x"),
])
def test_bad_grid_names_are_refused(parse, text):
    with pytest.raises(ValueError, match="--"):
        parse(text)


def test_cell_config_is_protocol_plus_cell(tmp_path):
    cell = rep.grid([rep.SETTINGS_BY_NAME["flip2_40"]], ["mwnet"], [1])[0]
    config = rep.cell_config(cell, rep.PROTOCOL, tmp_path)
    assert (config.noise_type, config.noise_rate, config.method, config.seed) == ("flip2", 0.4, "mwnet", 1)
    assert (config.model, config.image_size, config.train_size, config.epochs) == ("resnet32", 16, 3000, 160)
    assert not config.hold_out_meta
    base = rep.cell_config(rep.grid([rep.SETTINGS_BY_NAME["flip2_40"]], ["base"], [1])[0], rep.PROTOCOL, tmp_path)
    assert base.hold_out_meta
    assert config.model_dir == str(tmp_path / "flip2_40" / "mwnet" / "seed1")


def test_protocol_overrides_keep_unset_fields_and_drop_data_dir_off_image_folder():
    protocol = rep.protocol_with({"model": "tiny", "epochs": None, "dataset": "cifar10"})
    assert (protocol.model, protocol.epochs, protocol.dataset, protocol.data_dir) == ("tiny", 160, "cifar10", "")
    with pytest.raises(ValueError, match="not protocol fields: colour"):
        rep.protocol_with({"colour": "red"})


def test_run_only_keys_match_train():
    from rmwnet_tf import train

    assert set(rep.RUN_ONLY_KEYS) | {"epochs"} == set(train.RESUMABLE_CHANGES)


# ------------------------------------------------------------------------------------ resume bookkeeping
def fake_run(calls):
    """Stands in for train.run: records the call and leaves a finished run's files behind."""

    def run(config):
        calls.append(config.model_dir)
        model_dir = pathlib.Path(config.model_dir)
        model_dir.mkdir(parents=True, exist_ok=True)
        (model_dir / "config.json").write_text(json.dumps(config.to_dict()))
        history = [{"epoch": 1, "train_seconds": 2.0, "test/accuracy": 0.5}]
        (model_dir / "results.json").write_text(json.dumps({
            "epochs_completed": config.epochs, "steps": 10, **summary.summarise(history), "history": history,
        }))
        return {}

    return run


def test_max_cells_then_resume_runs_each_cell_once(tmp_path):
    cells = rep.grid([rep.SETTINGS[0]], rep.METHOD_ORDER, [0])
    calls = []
    first = rep.run_cells(cells, rep.PROTOCOL, tmp_path, max_cells=3, run_fn=fake_run(calls))
    assert len(first.newly_run) == 3 and first.left == ["uniform40/rmnwnet/seed0"]
    second = rep.run_cells(cells, rep.PROTOCOL, tmp_path, run_fn=fake_run(calls))
    assert second.newly_run == ["uniform40/rmnwnet/seed0"] and len(second.already_done) == 3
    assert len(calls) == 4
    entries = rep.collect_entries(cells, rep.PROTOCOL, tmp_path)
    assert [e["status"] for e in entries] == ["done"] * 4
    assert entries[0]["seconds_per_step"] == pytest.approx(0.2)


def test_run_of_another_protocol_is_neither_reused_nor_overwritten(tmp_path):
    cells = rep.grid([rep.SETTINGS[0]], ["base"], [0])
    protocol = rep.protocol_with({"dataset": "synthetic"})  # needs no data on disk
    rep.run_cells(cells, protocol.replace(lr=0.1), tmp_path, run_fn=fake_run([]))
    assert rep.collect_entries(cells, protocol, tmp_path)[0]["status"] == "stale"
    with pytest.raises(rep.StaleRunError, match="lr: 0.1 there, 0.05 now"):
        rep.run_cells(cells, protocol, tmp_path, run_fn=fake_run([]))
    calls, out_dir = [], tmp_path / "report"
    with pytest.raises(rep.StaleRunError):
        rep.reproduce(settings=[rep.SETTINGS[0]], methods=["base"], seeds=[0], protocol=protocol,
                      runs_dir=tmp_path, out_dir=out_dir, run_fn=fake_run(calls))
    assert calls == [] and not out_dir.exists()  # refused before training or rewriting the report


def test_base_cell_counts_under_another_weighting_net_setting_a_meta_cell_does_not(tmp_path):
    cells = rep.grid([rep.SETTINGS[0]], ["base", "rmnwnet"], [0])
    rep.run_cells(cells, rep.PROTOCOL, tmp_path, run_fn=fake_run([]))
    adam = rep.PROTOCOL.replace(vnet_optimizer="adam", vnet_lr=1e-3)
    assert [e["status"] for e in rep.collect_entries(cells, adam, tmp_path)] == ["done", "stale"]


def test_cell_finished_before_the_meta_step_rename_still_counts(tmp_path):
    cells = rep.grid([rep.SETTINGS[0]], ["rmnwnet"], [0])
    fake_run([])(rep.cell_config(cells[0], rep.PROTOCOL, tmp_path))
    config_path = tmp_path / "uniform40" / "rmnwnet" / "seed0" / "config.json"
    saved = json.loads(config_path.read_text())
    del saved["meta_step"]
    config_path.write_text(json.dumps({**saved, "meta_grad": "double_backward", "meta_scope": "full"}))
    assert rep.collect_entries(cells, rep.PROTOCOL, tmp_path)[0]["status"] == "done"


def test_half_done_cell_is_partial_and_gets_rerun(tmp_path):
    cells = rep.grid([rep.SETTINGS[0]], ["base"], [0])
    config = rep.cell_config(cells[0], rep.PROTOCOL, tmp_path)
    model_dir = pathlib.Path(config.model_dir)
    model_dir.mkdir(parents=True)
    (model_dir / "config.json").write_text(json.dumps(config.to_dict()))
    (model_dir / "history.json").write_text(json.dumps([{"epoch": 1}, {"epoch": 2}]))
    state = rep.inspect_cell(config)
    assert (state.status, state.epochs_completed) == ("partial", 2)
    calls = []
    rep.run_cells(cells, rep.PROTOCOL, tmp_path, run_fn=fake_run(calls))
    assert len(calls) == 1


# ------------------------------------------------------------------------------------ formatting
@pytest.mark.parametrize("values, kwargs, expected", [
    ([], {}, "—"),
    (None, {}, "—"),
    ([0.8512], {"scale": 100.0}, "85.12"),
    ([0.85, 0.87], {"scale": 100.0}, "86.00 ± 1.41"),
    ([0.9714, 0.9702, 0.9726], {"digits": 4}, "0.9714 ± 0.0012"),
])
def test_format_mean_std(values, kwargs, expected):
    assert rep.format_mean_std(values, **kwargs) == expected


# ------------------------------------------------------------------------------------ claims
def entry(setting, method, seed, accuracy=None, auc=None, status="done", **extra):
    return {"setting": setting, "method": method, "seed": seed, "status": status,
            "final/test/accuracy": accuracy, "best/detection/auc": auc, "final/detection/auc": auc,
            "seconds_per_step": None, **extra}


def entries_for(setting, accuracies_by_method, key="accuracy"):
    return [entry(setting, method, seed, **{key: value})
            for method, values in accuracies_by_method.items() for seed, value in enumerate(values)]


def claim(number, entries):
    return rep.evaluate_claims(entries)[number - 1]


def test_claims_state_scope_tolerance_and_source():
    claims = rep.paper_claims()
    assert [c.number for c in claims] == list(range(1, 9))
    assert [(c.scope, c.tolerance) for c in claims[:3]] == [
        ("uniform 40%, uniform 60%, no noise (0%)", "|Δ| ≤ max(1 point, pooled std)"),
        ("flip2 20%, flip2 40%, flip 15%, flip 30%", "Δ ≥ −max(3 points, pooled std)"),
        ("uniform 40%, uniform 60%", "Δ > pooled std"),
    ]
    assert claims[5].metric is rep.AUC_BEST and claims[5].settings == ("uniform40", "uniform60", "flip2_20", "flip2_40")
    assert all(c.source for c in claims)


def test_every_rule_holds_on_the_papers_own_numbers():
    for result in rep.sanity_row():
        assert result.verdict == rep.HOLDS, result.claim.statement
        assert len(result.comparisons) == len(result.claim.comparisons_asked()), result.claim.statement
    assert [r.verdict for r in rep.paper_target_row()] == [rep.HOLDS] * 3


def test_sanity_row_uses_the_papers_mean_and_std():
    flip30 = rep.sanity_row()[1].comparisons[3]
    assert (flip30.setting, flip30.a.n, flip30.b.n) == ("flip30", 5, 5)
    assert flip30.difference == pytest.approx(88.69 - 91.01)
    assert flip30.tolerance == pytest.approx(3.0)
    uniform40 = rep.sanity_row()[2].comparisons[0]
    assert uniform40.tolerance == pytest.approx(((0.23 ** 2 + 0.44 ** 2) / 2) ** 0.5)


def test_claims_without_results_are_not_yet_measured():
    partial = [entry("uniform40", m, 0, accuracy=0.8, auc=0.9, status="partial") for m in rep.METHOD_ORDER]
    assert [r.verdict for r in rep.evaluate_claims(partial)] == [rep.NOT_YET_MEASURED] * 8


@pytest.mark.parametrize("rmnwnet, mwnet, verdict", [
    ([0.850, 0.856], [0.855, 0.859], rep.HOLDS),  # 0.4 points apart
    ([0.80], [0.85], rep.FAILS),  # 5 points, one seed
    ([0.80, 0.84], [0.83, 0.85], rep.HOLDS),  # 2 points apart, pooled std 2.24
    ([0.795, 0.805], [0.815, 0.825], rep.FAILS),  # 2 points apart, pooled std 0.71
])
def test_claim1_approx_rule(rmnwnet, mwnet, verdict):
    result = claim(1, entries_for("uniform40", {"rmnwnet": rmnwnet, "mwnet": mwnet}))
    assert result.verdict == verdict
    assert result.coverage == "1 of 3 comparisons measured"


def test_claim1_fails_when_any_setting_fails_and_ignores_flip():
    entries = entries_for("uniform40", {"rmnwnet": [0.85], "mwnet": [0.85]}) + \
        entries_for("uniform60", {"rmnwnet": [0.80], "mwnet": [0.90]}) + \
        entries_for("flip30", {"rmnwnet": [0.10], "mwnet": [0.90]})
    result = claim(1, entries)
    assert result.verdict == rep.FAILS
    assert [c.holds for c in result.comparisons] == [True, False]
    assert result.comparisons[1].describe(rep.ACCURACY, "approx") == (
        "uniform 60%: RMNW-Net 80.00 vs MW-Net\\* 90.00: Δ -10.00, needs |Δ| ≤ 1.00 (1+1 seeds) → fails")


@pytest.mark.parametrize("rmnwnet, verdict", [([0.880], rep.HOLDS), ([0.875], rep.FAILS)])
def test_claim2_allows_three_points_below_mwnet_under_flip(rmnwnet, verdict):
    assert claim(2, entries_for("flip30", {"rmnwnet": rmnwnet, "mwnet": [0.905]})).verdict == verdict


@pytest.mark.parametrize("rmnwnet, mnwnet, verdict", [
    ([0.80, 0.81], [0.75, 0.76], rep.HOLDS),  # +5 points, pooled std 0.71
    ([0.80, 0.81], [0.70, 0.88], rep.FAILS),  # +1.5 points, pooled std 9.0
    ([0.75], [0.76], rep.FAILS),  # lower
    ([0.76], [0.75], rep.HOLDS),  # one seed each: the means decide
])
def test_claim3_greater_rule_on_uniform_noise(rmnwnet, mnwnet, verdict):
    assert claim(3, entries_for("uniform60", {"rmnwnet": rmnwnet, "mnwnet": mnwnet})).verdict == verdict


def test_claim3_ignores_flip_noise_where_claim4_expects_mnwnet_ahead():
    entries = entries_for("flip30", {"rmnwnet": [0.70], "mnwnet": [0.90]})
    assert claim(3, entries).verdict == rep.NOT_YET_MEASURED
    assert claim(4, entries).verdict == rep.HOLDS
    assert claim(4, entries_for("flip15", {"rmnwnet": [0.90], "mnwnet": [0.70]})).verdict == rep.FAILS


def test_claim5_needs_every_meta_method_above_base_under_noise():
    good = entries_for("flip2_40", {"base": [0.60, 0.61], "mwnet": [0.70, 0.71], "mnwnet": [0.66, 0.67],
                                    "rmnwnet": [0.69, 0.70]})
    assert claim(5, good).verdict == rep.HOLDS
    assert claim(5, good).coverage == "3 of 12 comparisons measured"
    bad = good + entries_for("uniform60", {"base": [0.50], "mwnet": [0.60], "mnwnet": [0.49], "rmnwnet": [0.55]})
    assert claim(5, bad).verdict == rep.FAILS
    assert claim(5, entries_for("flip30", {"base": [0.1], "mwnet": [0.9]})).verdict == rep.NOT_YET_MEASURED


@pytest.mark.parametrize("rmnwnet, mwnet, verdict", [
    ([0.97], [0.95], rep.HOLDS),
    ([0.95], [0.97], rep.FAILS),
    ([0.94, 0.96], [0.95, 0.97], rep.HOLDS),  # 0.01 lower, pooled std 0.014
    ([0.90, 0.91], [0.95, 0.96], rep.FAILS),
])
def test_claim6_auc_not_lower_rule(rmnwnet, mwnet, verdict):
    entries = entries_for("flip2_20", {"rmnwnet": rmnwnet, "mwnet": mwnet}, key="auc")
    assert claim(6, entries).verdict == verdict


def test_claim7_forgives_two_hundredths_under_flip_and_claim8_needs_rmnwnet_above_mnwnet():
    assert claim(7, entries_for("flip15", {"rmnwnet": [0.96], "mwnet": [0.979]}, key="auc")).verdict == rep.HOLDS
    assert claim(7, entries_for("flip15", {"rmnwnet": [0.95], "mwnet": [0.979]}, key="auc")).verdict == rep.FAILS
    assert claim(8, entries_for("flip15", {"rmnwnet": [0.95], "mnwnet": [0.30]}, key="auc")).verdict == rep.HOLDS
    assert claim(8, entries_for("uniform40", {"rmnwnet": [0.90], "mnwnet": [0.93]}, key="auc")).verdict == rep.FAILS


def test_targets_at_uniform40():
    entries = entries_for("uniform40", {"base": [0.50, 0.52], "mwnet": [0.60], "rmnwnet": [0.56, 0.58]})
    entries[-2]["final/detection/auc"], entries[-1]["final/detection/auc"] = 0.97, 0.94
    results = rep.evaluate_targets(entries)
    assert [(r.verdict, round(r.value, 6)) for r in results] == [
        (rep.HOLDS, 6.0), (rep.FAILS, -3.0), (rep.HOLDS, 0.955)]
    assert [r.verdict for r in rep.evaluate_targets(entries[:2])] == [rep.NOT_YET_MEASURED] * 3


def test_cost_is_seconds_per_step_relative_to_base():
    entries = [dict(entry("uniform40", "base", 0), seconds_per_step=0.1),
               dict(entry("flip30", "base", 0), seconds_per_step=0.3),
               dict(entry("uniform40", "rmnwnet", 0), seconds_per_step=0.5)]
    rows = {row["method"]: row for row in rep.cost_rows(entries)}
    assert rows["base"]["seconds_per_step"] == pytest.approx(0.2) and rows["base"]["cells"] == 2
    assert rows["rmnwnet"]["ratio_to_base"] == pytest.approx(2.5)
    assert rows["mwnet"]["seconds_per_step"] is None and rows["mwnet"]["ratio_to_base"] is None


# ------------------------------------------------------------------------------------ entries and tables
def finished_run(model_dir, config, results):
    model_dir = pathlib.Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "config.json").write_text(json.dumps(config.to_dict()))
    (model_dir / "results.json").write_text(json.dumps({"epochs_completed": config.epochs, **results}))


def test_entry_reads_results_and_final_metrics(tmp_path):
    cell = rep.grid([rep.SETTINGS_BY_NAME["uniform60"]], ["rmnwnet"], [0])[0]
    config = rep.cell_config(cell, rep.PROTOCOL, tmp_path)
    finished_run(config.model_dir, config, {
        "steps": 3200, "wall_seconds": 700.0, "train_seconds": 320.0,
        "final": {"epoch": 8, "test/accuracy": 0.6, "detection/auc": 0.9, "detection/auc_loss": 0.91,
                  "fit/noisy_memorised": 0.2, "fit/clean_fitted": 0.8, "fit/noisy_corrected": 0.5,
                  "weights/loss_spearman": -0.97, "meta/mae": 0.9},
        "best": {"test/accuracy": 0.65, "detection/auc": 0.95}, "best_epoch": {"test/accuracy": 52},
        "selected": {"epoch": 4, "test/accuracy": 0.61},
        "history": [{"epoch": 4, "train_seconds": 320.0, "meta/accuracy": 0.5, "meta/mae": 1.0, "test/accuracy": 0.61},
                    {"epoch": 8, "train_seconds": 0.0, "meta/accuracy": 0.4, "meta/mae": 0.9, "test/accuracy": 0.6}],
        "noise_realised": {"rate": 0.55},
    })
    e = rep.collect_entries([cell], rep.PROTOCOL, tmp_path)[0]
    assert (e["setting"], e["method"], e["seed"], e["status"]) == ("uniform60", "rmnwnet", 0, "done")
    assert (e["final/test/accuracy"], e["best/test/accuracy"]) == (0.6, 0.65)
    assert e["best_epoch/test/accuracy"] == 52
    # The selection as results.json recorded it; the MAE's (the criterion it replaced) from the history.
    assert (e["selected/epoch"], e["selected/test/accuracy"]) == (4, 0.61)
    assert (e["selected_by_meta_mae/epoch"], e["selected_by_meta_mae/test/accuracy"]) == (8, 0.6)
    assert (e["final/detection/auc"], e["best/detection/auc"]) == (0.9, 0.95)
    assert e["final/detection/auc_loss"] == 0.91
    assert (e["final/fit/noisy_memorised"], e["final/fit/clean_fitted"], e["final/fit/noisy_corrected"]) == (0.2, 0.8, 0.5)
    assert (e["final/weights/loss_spearman"], e["final/meta/mae"], e["final/weights/clean_mean"]) == (-0.97, 0.9, None)
    assert e["seconds_per_step"] == pytest.approx(0.1) and e["noise_rate_realised"] == 0.55


def test_unrun_cells_have_every_number_empty(tmp_path):
    e = rep.collect_entries(rep.grid([rep.SETTINGS[0]], ["base"], [0]), rep.PROTOCOL, tmp_path)[0]
    assert e["status"] == "not run"
    assert all(e[key] is None for key in (*rep.RESULT_KEYS, *rep.RUN_KEYS))


def full_entry(setting, method, seed, numbers=None, **values):
    """A finished cell's entry; `numbers` by their reproduction.json names (final/test/accuracy, ...)."""
    base = {key: None for key in (*rep.RESULT_KEYS, *rep.RUN_KEYS)}
    return {**base, "setting": setting, "method": method, "seed": seed, "status": "done",
            "seconds_per_step": None, "model_dir": "nowhere", **(numbers or {}), **values}


def render(entries):
    from experiments.reproduction import report

    return report.render_report(entries, rep.evaluate_claims(entries), rep.cost_rows(entries), rep.PROTOCOL,
                                command="python scripts/reproduce.py", plots={}, settings=rep.SETTINGS, seeds=[0, 1],
                                targets=rep.evaluate_targets(entries), paper_targets=rep.paper_target_row(),
                                sanity=rep.sanity_row())


def test_report_tables_show_ours_beside_the_paper():
    entries = [
        full_entry("uniform40", "base", 0, {"final/test/accuracy": 0.50, "best/test/accuracy": 0.55,
                   "selected/test/accuracy": 0.52, "final/detection/auc_loss": 0.8}),
        full_entry("uniform40", "base", 1, {"final/test/accuracy": 0.52, "best/test/accuracy": 0.57,
                   "selected/test/accuracy": 0.50, "final/detection/auc_loss": 0.82}),
        full_entry("uniform40", "rmnwnet", 0, {"final/test/accuracy": 0.60, "best/test/accuracy": 0.62,
                   "selected/test/accuracy": 0.61, "selected_by_meta_mae/test/accuracy": 0.58,
                   "final/detection/auc": 0.9, "best/detection/auc": 0.93, "final/detection/auc_loss": 0.9,
                   "final/weights/loss_spearman": -0.99}),
    ]
    report = render(entries)
    assert "| uniform 40% | Base | 2 | 51.00 ± 1.41 | 56.00 ± 1.41 | 68.07 ± 1.23 |" in report
    assert "| uniform 40% | RMNW-Net | 1 | 60.00 | 62.00 | 90.80 ± 0.23 |" in report
    assert "| flip 30% | Base | 0 | — | — | not in the paper |" in report
    assert "| uniform 40% | RMNW-Net | 0.9000 | 0.9300 | 0.9000 | 0.8100 ± 0.0141 | -0.99 | 0.9848 |" in report
    assert "| uniform 40% | MW-Net\\* | — | — | — | 0.8100 ± 0.0141 | — | 0.9714 |" in report
    assert "| uniform 40% | Base | 2 | 51.00 ± 1.41 | 56.00 ± 1.41 | 51.00 ± 1.41 | -5.00 | +0.00 | — | — |" in report
    assert "| uniform 40% | RMNW-Net | 1 | 60.00 | 62.00 | 61.00 | -1.00 | +1.00 | 58.00 | -4.00 |" in report
    assert ("| RMNW-Net ≥ Base + 5 points | final test accuracy | RMNW-Net 60.00 vs Base 51.00 ± 1.41: "
            "Δ +9.00 → **HOLDS** |") in report
    assert "| RMNW-Net within 1.5 points of MW-Net\\* | final test accuracy | NOT YET MEASURED |" in report
    assert "| 5 | every meta method > Base under label noise |" in report and "(1 of 12 comparisons measured) | HOLDS |" in report
    assert "Cells finished: 3 of 3" in report


def test_lr_drops_are_read_from_the_history():
    history = [{"epoch": 1, "lr": 0.05}, {"epoch": 2, "lr": 0.05}, {"epoch": 3, "lr": 0.005}, {"epoch": 4, "lr": 0.0005}]
    assert rep.lr_drops(history) == [2, 3]


# ------------------------------------------------------------------------------------ variants
def test_variant_reports_in_sub_folders_are_summarised_in_the_main_report(tmp_path, caplog):
    settings, seeds = [rep.SETTINGS_BY_NAME["uniform60"]], [0]
    out_dir = tmp_path / "results"
    variant = rep.protocol_with({"augment": False, "dataset": "synthetic"})
    rep.reproduce(settings=settings, methods=["base"], seeds=seeds, protocol=variant,
                  runs_dir=tmp_path / "runs_variant", out_dir=out_dir / "no_augment", run_fn=fake_run([]),
                  command="python scripts/reproduce.py --augment=false")
    (out_dir / "broken").mkdir(parents=True)
    (out_dir / "broken" / "reproduction.json").write_text("{not json")
    main = rep.protocol_with({"dataset": "synthetic"})
    rep.reproduce(settings=settings, methods=["base"], seeds=seeds, protocol=main, runs_dir=tmp_path / "runs",
                  out_dir=out_dir, run_fn=fake_run([]))
    report = (out_dir / "REPRODUCTION.md").read_text()
    section = report[report.index("## Variants tried"):report.index("## Cost")]
    assert "### `no_augment`: `augment` = `False`" in section
    assert "[Its report](no_augment/REPRODUCTION.md), built by `python scripts/reproduce.py --augment=false`" in section
    assert "| uniform 60% | Base | 1 | 50.00 | 50.00 | — | — |" in section
    assert "broken" not in section
    assert any("skipping variant report" in record.getMessage() for record in caplog.records)


def test_a_cell_whose_training_loss_ends_above_its_start_is_marked_diverged():
    from experiments.reproduction import report
    from experiments.reproduction.cells import diverged

    assert diverged([{"train/loss": 3.9}, {"train/loss": 46.7}, {"train/loss": 29.0}]) is True
    assert diverged([{"train/loss": 3.0}, {"train/loss": 2.2}, {"train/loss": 0.4}]) is False
    assert diverged([{"train/loss": 3.0}]) is None
    entries = [full_entry("uniform40", "rmnwnet", 1, {"final/test/accuracy": 0.1}, diverged=True),
               full_entry("uniform40", "rmnwnet", 0, {"final/test/accuracy": 0.39}, diverged=False)]
    section = report._report_diverged(entries)
    assert section.endswith("\n\n- uniform 40%, RMNW-Net, seed 1: final test accuracy 10.0%")
    assert report._report_diverged(entries[1:]).endswith("\n\nNone.")


def test_cheap_meta_steps_are_rows_beside_the_exact_step():
    from experiments.reproduction import report

    exact = [full_entry("uniform40", "rmnwnet", seed, {"final/test/accuracy": acc, "final/detection/auc": auc},
                        seconds_per_step=0.2)
             for seed, acc, auc in ((0, 0.40, 0.80), (1, 0.42, 0.82))]
    exact[1]["diverged"] = True
    head = {"name": "cheap_head", "protocol": {**rep.PROTOCOL.config_fields(), "meta_step": "head"},
            "entries": [full_entry("uniform40", "rmnwnet", 0, {"final/test/accuracy": 0.395, "final/detection/auc": 0.79},
                                   seconds_per_step=0.1)]}
    every4 = {"name": "cheap_every4", "protocol": {**rep.PROTOCOL.config_fields(), "meta_every": 4},
              "entries": [full_entry("uniform40", "rmnwnet", 0, {"final/test/accuracy": 0.38, "final/detection/auc": 0.80})]}
    other = {"name": "no_augment", "protocol": {**rep.PROTOCOL.config_fields(), "augment": False}, "entries": []}
    assert [v["name"] for v in report.cheap_mode_variants([head, every4, other], rep.PROTOCOL)] == [
        "cheap_head", "cheap_every4"]
    section = report._report_cheap_modes([head, every4, other], exact, rep.PROTOCOL)
    assert "| uniform 40% | exact (this grid) | 0, 1 | 41.00 ± 1.41 | — | 0.8100 ± 0.0141 | — | 0.200 | 1 of 2 | — |" in section
    # compared with the exact step on seed 0 only (40.00, 0.8000)
    assert "| uniform 40% | `meta_step=head` | 0 | 39.50 | -0.50 | 0.7900 | -0.0100 | 0.100 | 0 of 1 | yes |" in section
    assert "| uniform 40% | `meta_every=4` | 0 | 38.00 | -2.00 | 0.8000 | +0.0000 | — | 0 of 1 | **no** |" in section
    assert "uniform 60%" not in section


# ------------------------------------------------------------------------------------ the script
def load_script():
    spec = importlib.util.spec_from_file_location("reproduce_script", REPO / "scripts" / "reproduce.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse(script, argv):
    values = flags.FlagValues()
    script.define_flags(values)
    values(["reproduce.py", *argv])
    return values


@pytest.mark.parametrize("protocol_name", ["v2.1", "v3", "v3.1"])
def test_every_command_a_report_shows_parses_and_reruns_that_reports_protocol(protocol_name):
    from experiments.reproduction.report import canonical_commands

    script = load_script()
    commands = [line for line in canonical_commands(protocol_name) if not line.startswith("#")]
    assert len(commands) == (5 if protocol_name == "v2.1" else 4)
    for command in commands:
        program, *argv = command.split()[1:]
        assert program == "scripts/reproduce.py"
        assert parse(script, argv).protocol == protocol_name, command


def test_missing_cifar_copy_is_reported_before_any_work(tmp_path, capsys):
    script = load_script()
    argv = [f"--data_dir={tmp_path / 'nowhere'}", f"--runs_dir={tmp_path / 'runs'}", f"--out_dir={tmp_path / 'out'}"]
    calls = []
    assert script.run(parse(script, argv), argv, run_fn=fake_run(calls)) == 2
    assert calls == [] and not (tmp_path / "out").exists()
    assert "--data_dir:" in capsys.readouterr().err


def test_a_stopped_cell_ends_the_grid_with_one_line_and_the_signal_exit_code(tmp_path, capsys):
    import signal

    from rmwnet_tf import checkpointing

    script = load_script()
    argv = ["--dataset=synthetic", "--settings=uniform40", "--methods=base", "--seeds=0",
            f"--runs_dir={tmp_path / 'runs'}", f"--out_dir={tmp_path / 'out'}"]

    def stopped_run(config):
        raise checkpointing.Interrupted(signal.SIGTERM, "ckpt-7", 3, 0, 20)

    assert script.run(parse(script, argv), argv, run_fn=stopped_run) == 128 + signal.SIGTERM
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "stopped by SIGTERM: saved checkpoint ckpt-7 (after epoch 3)" in err
    assert "resumes the grid" in err


def test_smoke_run_writes_report_and_second_run_trains_nothing(tmp_path):
    from rmwnet_tf import train

    script = load_script()
    out_dir = tmp_path / "results"
    argv = ["--dataset=synthetic", "--synthetic_train_size=300", "--synthetic_test_size=100", "--train_size=0",
            "--meta_size=50", "--batch_size=50", "--meta_batch_size=50", "--model=tiny", "--epochs=2",
            "--lr_boundaries=1", "--eval_every=1", "--settings=uniform40", "--methods=base,rmnwnet", "--seeds=0",
            f"--runs_dir={tmp_path / 'runs'}", f"--out_dir={out_dir}"]
    calls = []

    def counting_run(config):
        calls.append(config.model_dir)
        return train.run(config)

    assert script.run(parse(script, argv), argv, run_fn=counting_run) == 0
    assert len(calls) == 2
    saved = json.loads((out_dir / "reproduction.json").read_text())
    assert len(saved["entries"]) == 56
    done = [e for e in saved["entries"] if e["status"] == "done"]
    assert [(e["setting"], e["method"], e["seed"]) for e in done] == [("uniform40", "base", 0),
                                                                       ("uniform40", "rmnwnet", 0)]
    for e in done:
        assert e["steps"] > 0 and e["seconds_per_step"] > 0 and e["final/test/accuracy"] is not None
    assert done[1]["final/detection/auc"] is not None
    assert all(0.0 <= e[key] <= 1.0 for e in done for key in rep.FIT_KEYS)
    report = (out_dir / "REPRODUCTION.md").read_text()
    assert "Cells finished: 2 of 56" in report
    assert "| uniform 40% | RMNW-Net | 1 |" in report and "| 90.80 ± 0.23 |" in report
    assert "NOT YET MEASURED" in report and "--methods=base,rmnwnet" in report
    for kind in ("accuracy", "fit", "weights"):
        assert (out_dir / "plots" / f"uniform40_{kind}.png").stat().st_size > 0
        assert f"](plots/uniform40_{kind}.png)" in report
    assert "None given to this build." in report

    assert script.run(parse(script, argv), argv, run_fn=counting_run) == 0
    assert len(calls) == 2  # nothing trained again
    assert json.loads((out_dir / "reproduction.json").read_text()) == saved

    report_only = [*argv, "--report_only"]
    assert script.run(parse(script, report_only), report_only, run_fn=counting_run) == 0
    assert len(calls) == 2

    # the calibration section, from a Base run folder of this grid given by path
    base_dir = tmp_path / "runs" / "uniform40" / "base" / "seed0"
    history = rep.run_history(base_dir)
    assert [row["epoch"] for row in history] == [1, 2] and rep.run_lr_drops(base_dir, history) == [1]
    summary = rep.calibration_plot(base_dir, tmp_path / "calibration.png")
    assert (tmp_path / "calibration.png").stat().st_size > 0
    assert (summary["method"], summary["epochs_completed"], summary["epochs"], summary["finished"]) == ("base", 2, 2, True)
    assert summary["final/test/accuracy"] == history[-1]["test/accuracy"]
    assert summary["best/test/accuracy"] == max(row["test/accuracy"] for row in history)
    assert 0.0 <= summary["final/fit/noisy_memorised"] <= 1.0 and 0.0 <= summary["final/fit/clean_fitted"] <= 1.0
    calibrated = [*report_only, f"--calibration_runs={base_dir},{tmp_path / 'missing'}"]
    assert script.run(parse(script, calibrated), calibrated, run_fn=counting_run) == 0
    for rebuild in (calibrated, report_only):  # a later build without the flag keeps the section
        assert script.run(parse(script, rebuild), rebuild, run_fn=counting_run) == 0
        report = (out_dir / "REPRODUCTION.md").read_text()
        section = report[report.index("## Calibration"):report.index("## Variants tried")]
        row = (f"| `{base_dir}` | base | 2/2 | {summary['final/fit/noisy_memorised'] * 100:.1f} | "
               f"{summary['final/fit/clean_fitted'] * 100:.1f} | {summary['best/test/accuracy'] * 100:.1f} | "
               f"{summary['final/test/accuracy'] * 100:.1f} |")
        assert row in section and "missing" not in section
        plot = json.loads((out_dir / "reproduction.json").read_text())["calibration"][0]["plot"]
        assert f"](plots/{plot})" in section and (out_dir / "plots" / plot).stat().st_size > 0
    assert len(calls) == 2
