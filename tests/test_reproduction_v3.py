"""Protocol v3 (the fine-tune regime): its cells and pretraining, the gates, paired intervals and
verdicts, and one end-to-end smoke run on synthetic data (pretraining included)."""

import json
import math
import pathlib

import numpy as np
import pytest

from experiments import reproduction as rep
from rmwnet_tf import summary
from experiments.reproduction import gates, paired, report
from experiments.reproduction.claims import ACCURACY, FAILS, HOLDS, NOT_YET_MEASURED


# ------------------------------------------------------------------------------------ protocol
def test_v3_cells_fine_tune_on_half_b_from_the_pretraining_run(tmp_path):
    protocol = rep.PROTOCOL_V3
    u40 = rep.SETTINGS_BY_NAME["uniform40"]
    cells = {m: rep.cell_config(rep.Cell(u40, m, 2), protocol, tmp_path) for m in ("rmnwnet", "base", "oracle", "gce")}
    rmnw = cells["rmnwnet"]
    assert (rmnw.part, rmnw.init_from, rmnw.train_size, rmnw.meta_size) == ("b", rep.V3_PRETRAIN_DIR, 11000, 1000)
    assert (rmnw.epochs, rmnw.lr_boundaries, rmnw.augment, rmnw.eval_every) == (30, "10,13", False, 2)
    assert not rmnw.hold_out_meta
    assert all(cells[m].hold_out_meta for m in ("base", "oracle", "gce"))  # the meta methods' images
    pretrain = rep.pretrain_config(protocol)
    assert (pretrain.part, pretrain.method, pretrain.noise_type, pretrain.augment) == ("a", "base", "none", True)
    assert (pretrain.model_dir, pretrain.model, pretrain.image_size) == (rep.V3_PRETRAIN_DIR, "resnet32", 16)
    assert rep.pretrain_config(rep.PROTOCOL) is None  # the base (v2.1's values) trains from scratch


def test_v4_pretrains_on_five_classes_and_fine_tunes_on_the_other_five_with_a_fresh_head(tmp_path):
    cell = rep.cell_config(rep.Cell(rep.SETTINGS_BY_NAME["uniform40"], "rmnwnet", 3), rep.PROTOCOLS["v4"], tmp_path)
    assert (cell.classes, cell.part, cell.init_from, cell.init_head) == ("5,6,7,8,9", "all", rep.V4_PRETRAIN_DIR, False)
    v3 = rep.cell_config(rep.Cell(rep.SETTINGS_BY_NAME["uniform40"], "rmnwnet", 3), rep.PROTOCOL_V3, tmp_path)
    same = ("train_size", "meta_size", "epochs", "lr", "lr_boundaries", "augment", "eval_every", "image_size", "model")
    assert [getattr(cell, name) for name in same] == [getattr(v3, name) for name in same]  # only the regime changes
    pretrain = rep.pretrain_config(rep.PROTOCOLS["v4"])
    assert (pretrain.classes, pretrain.part, pretrain.model_dir) == ("0,1,2,3,4", "all", rep.V4_PRETRAIN_DIR)
    assert pretrain.to_dict() == {**rep.pretrain_config(rep.PROTOCOL_V3).to_dict(), "part": "all",
                                  "classes": "0,1,2,3,4", "model_dir": rep.V4_PRETRAIN_DIR}
    assert not set(pretrain.class_selection) & set(cell.class_selection)  # the cells' classes are new


# ------------------------------------------------------------------------------------ gates
def history(*rows):
    return [dict(epoch=e, **values) for e, values in rows]


def base_run(auc_before_drop, memorised, accuracies):
    rows = [(2 * i + 2, {"detection/auc_loss": auc, "test/accuracy": acc})
            for i, (auc, acc) in enumerate(zip(auc_before_drop, accuracies))]
    rows[-1][1]["fit/noisy_memorised"] = memorised
    return history(*rows)


def test_g0_asks_the_oracle_to_beat_bases_best_and_its_own_start_by_three_points_in_every_seed():
    base = {s: history((2, {"test/accuracy": 0.70}), (30, {"test/accuracy": 0.55})) for s in (0, 1)}
    learns = history((2, {"test/accuracy": 0.70}), (30, {"test/accuracy": 0.73}))
    result = gates.g0_learnability(base, {0: learns, 1: learns})
    assert result.passed is True
    assert result.details[0] == ("seed 0: oracle final 0.7300 − Base best 0.7000 = +3.00 points; "
                                 "oracle final − its first evaluation 0.7000 = +3.00 points")
    flat = history((2, {"test/accuracy": 0.72}), (30, {"test/accuracy": 0.74}))  # beats Base, not its start
    assert gates.g0_learnability(base, {0: learns, 1: flat}).passed is False
    below_base = history((2, {"test/accuracy": 0.60}), (30, {"test/accuracy": 0.72}))
    assert gates.g0_learnability(base, {0: learns, 1: below_base}).passed is False
    assert gates.g0_learnability(base, {0: learns}).passed is None  # two paired seeds needed


def test_only_v4_is_judged_by_g0():
    names = {p: [g.name for g in report.evaluate_gates([], rep.PROTOCOLS[p])] for p in ("v3", "v4")}
    assert names["v4"] == ["G0 learnability", *names["v3"]] and "G0 learnability" not in names["v3"]


def test_g1_takes_the_best_small_loss_auc_up_to_the_first_drop_in_every_seed():
    good = base_run([0.80, 0.86, 0.70], 0.9, [0.6, 0.6, 0.5])
    late = history((2, {"detection/auc_loss": 0.84}), (12, {"detection/auc_loss": 0.99}))
    assert gates.g1_separation({0: good, 1: good}, first_drop=10).passed is True
    result = gates.g1_separation({0: good, 1: late}, first_drop=10)
    assert result.passed is False and result.details[1] == "seed 1: best detection/auc_loss up to epoch 10 = 0.840"
    assert gates.g1_separation({0: good}, first_drop=10).passed is None  # two seeds needed


def test_g2_needs_memorisation_and_a_fall_of_five_points():
    ok = base_run([0.9] * 3, 0.70, [0.66, 0.60, 0.61])
    assert gates.g2_memorisation({0: ok, 1: ok}).passed is True
    small_fall = base_run([0.9] * 3, 0.95, [0.66, 0.62, 0.6101])
    assert gates.g2_memorisation({0: ok, 1: small_fall}).passed is False
    little_memorised = base_run([0.9] * 3, 0.69, [0.66, 0.50, 0.40])
    assert gates.g2_memorisation({0: ok, 1: little_memorised}).passed is False


def test_a_gate_asked_of_every_seed_fails_at_its_first_failing_seed_but_waits_to_pass():
    memorised = history((2, {"test/accuracy": 0.60}), (30, {"test/accuracy": 0.40, "fit/noisy_memorised": 0.9}))
    barely = history((2, {"test/accuracy": 0.60}), (30, {"test/accuracy": 0.58, "fit/noisy_memorised": 0.3}))
    assert gates.g2_memorisation({0: memorised}).passed is None  # one seed of two: not yet
    assert gates.g2_memorisation({0: barely}).passed is False  # one failing seed decides
    assert gates.g2_memorisation({0: memorised, 1: memorised}).passed is True


def test_g3_is_the_mean_paired_gap_to_the_oracle():
    base = {s: history((30, {"test/accuracy": 0.50})) for s in (0, 1)}
    oracle = {0: history((30, {"test/accuracy": 0.60})), 1: history((30, {"test/accuracy": 0.565}))}
    result = gates.g3_headroom(base, oracle)
    assert result.passed is True and result.details[-1] == "mean +8.25 points"
    assert gates.g3_headroom(base, {0: oracle[0], 1: history((30, {"test/accuracy": 0.555}))}).passed is False
    assert gates.g3_headroom(base, {0: oracle[0]}).passed is None


def meta_run(first_rho, rho, noisy, clean):
    return history((2, {"weights/loss_spearman": first_rho}),
                   (10, {"weights/loss_spearman": rho, "weights/noisy_mean": noisy, "weights/clean_mean": clean}))


def test_g4_every_seed_of_both_methods_at_the_first_drop_with_one_that_rose_first():
    fell = meta_run(-0.5, -0.95, 0.3, 0.6)
    rose = meta_run(+0.5, -0.92, 0.35, 0.6)
    runs = {"rmnwnet": {0: fell, 1: rose, 2: fell}, "mwnet": {0: fell, 1: fell, 2: fell}}
    assert gates.g4_travel(runs, first_drop=10).passed is True
    runs["mwnet"][2] = meta_run(-0.5, -0.95, 0.37, 0.6)  # noisy/clean 0.617 > 0.6
    assert gates.g4_travel(runs, first_drop=10).passed is False
    none_rose = {"rmnwnet": {s: fell for s in range(3)}, "mwnet": {s: fell for s in range(3)}}
    result = gates.g4_travel(none_rose, first_drop=10)
    assert result.passed is None and "more seeds are needed" in result.details[-1]
    assert gates.g4_travel({"rmnwnet": {0: rose}}, first_drop=10).passed is None


def test_the_turn_is_the_first_evaluation_at_which_w_falls_as_g4_asks():
    late = history((2, {"weights/loss_spearman": 1.0}), (4, {"weights/loss_spearman": -0.89}),
                   (6, {}), (8, {"weights/loss_spearman": -0.9}), (10, {"weights/loss_spearman": -1.0}))
    assert gates.first_turn(late) == 8
    assert gates.first_turn(history((2, {"weights/loss_spearman": 0.3}))) is None
    assert gates.first_turn(history((2, {}))) is None


def test_the_travel_table_reads_g4s_statistics_for_every_meta_cell_of_every_setting(monkeypatch):
    settings = [rep.SETTINGS_BY_NAME["uniform40"], rep.SETTINGS_BY_NAME["uniform60"]]
    slow = history((2, {"weights/loss_spearman": 1.0}), (8, {"weights/loss_spearman": -0.99}),
                   (10, {"weights/loss_spearman": -1.0, "weights/noisy_mean": 0.41, "weights/clean_mean": 0.5}))
    runs = {"uniform40": {"rmnwnet": {1: meta_run(-0.5, -0.95, 0.3, 0.6), 0: meta_run(+0.5, -0.92, 0.35, 0.6)},
                          "base": {0: history((2, {}))}},
            "uniform60": {"mnwnet": {0: meta_run(+0.8, +0.7, 0.6, 0.5), 2: history((2, {"weights/loss_spearman": 1.0}))},
                          "rmnwnet": {0: slow}}}
    monkeypatch.setattr(report, "histories", lambda entries, setting: runs[setting])
    lines = report._travel_table([], settings, first_drop=10).splitlines()
    assert lines[0] == "## How far the weighting net travelled by the first lr drop, every setting"
    assert lines[-4:] == [
        "| uniform 40% | RMNW-Net | 0 | rose with the loss | epoch 10 | -0.920 | 0.583 | yes |",
        "| uniform 40% | RMNW-Net | 1 | fell with the loss | epoch 10 | -0.950 | 0.500 | yes |",
        "| uniform 60% | MNW-Net | 0 | rose with the loss | never | +0.700 | 1.200 | no |",
        "| uniform 60% | RMNW-Net | 0 | rose with the loss | epoch 8 | -1.000 | 0.820 | no |",
    ]  # Base has no W; a cell not yet evaluated at the first drop (uniform 60% MNW-Net seed 2) is left out
    assert lines[-5].startswith("|---")
    monkeypatch.setattr(report, "histories", lambda entries, setting: {})
    assert report._travel_table([], settings, first_drop=10) == ""


def test_step_1_says_where_the_oracle_ends_against_the_classifier_every_cell_starts_from():
    settings = [rep.SETTINGS_BY_NAME["uniform40"], rep.SETTINGS_BY_NAME["uniform60"]]
    pretrain = {"model_dir": "runs/pretrain", "final/test/accuracy": 0.66, "epochs": 15}

    def oracle(setting, seed, accuracy, status="done"):
        return {"setting": setting, "method": "oracle", "seed": seed, "status": status,
                "final/test/accuracy": accuracy}

    entries = [oracle("uniform40", 0, 0.62), oracle("uniform40", 1, 0.63), oracle("uniform40", 2, None, "not run"),
               {"setting": "uniform40", "method": "base", "seed": 0, "status": "done", "final/test/accuracy": 0.9}]
    text = report._pretrain_section(pretrain, rep.PROTOCOL_V3, entries, settings)
    assert ("The oracle (fine-tuned on the clean samples only) ends at 62.50% at uniform 40% (2 seeds, -3.50 "
            "points) against this starting point. Fine-tuning at this protocol's lr without augmentation costs "
            "accuracy even on clean labels") in text
    above = report._pretrain_section(pretrain, rep.PROTOCOL_V3, entries + [oracle("uniform60", 0, 0.70)], settings)
    assert "uniform 60% (1 seed, +4.00 points) against this starting point." in above
    assert "costs accuracy" not in above  # said only when the oracle ends below the start everywhere
    assert "oracle" not in report._pretrain_section(pretrain, rep.PROTOCOL_V3, entries[-1:], settings)


def fake_entries(family, status="done"):
    return [{"setting": c.setting.name, "method": c.method, "seed": c.seed, "status": status}
            for c in rep.planned_cells(family)]


def test_progress_is_counted_against_the_plan_so_a_complete_grid_reads_complete():
    import dataclasses

    uniform = dataclasses.replace(rep.PROTOCOL_V4.family, plan=rep.PROTOCOL_V4.family.plan[:2])  # issue 33's 56
    assert report._progress(fake_entries(uniform), uniform) == (
        "56 of 56 planned cells finished (uniform 40% × seeds 0, 1, 2, 3, 4; uniform 60% × seeds 0, 1, 2; "
        "7 methods each).")
    v4 = rep.PROTOCOL_V4.family
    entries = fake_entries(v4)
    entries[-1]["status"] = "partial"
    assert report._progress(entries, v4).startswith("69 of 70 planned cells finished (uniform 40% × seeds 0, 1, 2, 3, 4; "
                                                    "uniform 60% × seeds 0, 1, 2; flip2 40% × seeds 0, 1; 7 methods each).")
    assert report.progress_counts(fake_entries(v4, "not run"), v4) == (0, 70, [])


def test_a_finished_cell_outside_the_plan_is_counted_apart_and_named():
    v4 = rep.PROTOCOL_V4.family
    outside = [{"setting": "uniform60", "method": "rmnwnet", "seed": 4, "status": "done"},
               {"setting": "flip30", "method": "base", "seed": 0, "status": "partial"}]
    done, planned, extra = report.progress_counts(fake_entries(v4)[:7] + outside, v4)
    assert (done, planned, extra) == (7, 70, outside)
    assert report._progress(fake_entries(v4)[:7] + outside, v4).endswith(
        "7 methods each). Outside the plan, on disk: uniform60/rmnwnet/seed4 (done), flip30/base/seed0 (partial).")


def test_g5_looks_at_every_evaluation_and_g6_at_idle_timings():
    steady = history(*[(e, {"weights/mean": 0.5, "weights/ess_fraction": 0.8}) for e in (2, 4, 6)])
    collapsed = history((2, {"weights/mean": 0.5, "weights/ess_fraction": 0.8}),
                        (4, {"weights/mean": 0.5, "weights/ess_fraction": 0.45}))
    assert gates.g5_stability({"rmnwnet": {0: steady, 1: steady}, "mwnet": {0: steady}}).passed is True
    assert gates.g5_stability({"rmnwnet": {0: steady, 1: collapsed}, "mwnet": {0: steady}}).passed is False
    assert gates.g6_cost([("uniform40/rmnwnet/seed0", 1199.0)]).passed is True
    assert gates.g6_cost([("uniform40/rmnwnet/seed0", 1201.0)]).passed is False
    assert gates.g6_cost([]).passed is None


# ------------------------------------------------------------------------------------ VNet candidates
def candidate_run(first_rho, rho, ratio, ess=0.8):
    steady = {"weights/mean": 0.5, "weights/ess_fraction": ess}
    return history((2, {"weights/loss_spearman": first_rho, **steady}),
                   (10, {"weights/loss_spearman": rho, "weights/noisy_mean": 0.5 * ratio,
                         "weights/clean_mean": 0.5, **steady}))


def test_a_candidate_runs_seed_by_seed_and_stops_at_its_first_failing_cell():
    from experiments.reproduction import vnet_candidates as vc

    good, rose_good = candidate_run(-0.5, -0.95, 0.5), candidate_run(+0.5, -0.93, 0.55)
    histories = {("rmnwnet", 0): good, ("mwnet", 0): candidate_run(+0.5, -0.85, 0.5)}  # rho -0.85 > -0.9
    verdict = vc.judge_candidate(1e-3, histories, drop=10)
    assert verdict.status == "fails" and [(c.method, c.seed) for c in verdict.cells] == [("rmnwnet", 0), ("mwnet", 0)]
    assert "G4 fails" in verdict.cells[-1].line
    histories = {("rmnwnet", 0): good, ("mwnet", 0): good, ("rmnwnet", 1): candidate_run(-0.5, -0.95, 0.5, ess=0.4)}
    assert vc.judge_candidate(1e-3, histories, drop=10).cells[-1].line.endswith("(G5 fails)")
    histories = {("rmnwnet", 0): good, ("mwnet", 0): rose_good}
    verdict = vc.judge_candidate(1e-3, histories, drop=10)
    assert verdict.status == "incomplete" and (verdict.cells[-1].method, verdict.cells[-1].seed) == ("rmnwnet", 1)
    all_seeds = {(m, s): good for m in ("rmnwnet", "mwnet") for s in range(3)}
    assert vc.judge_candidate(1e-3, {**all_seeds, ("mwnet", 2): rose_good}, drop=10).status == "wins"
    verdict = vc.judge_candidate(1e-3, all_seeds, drop=10)  # no W rose first: seeds 3 and 4 are needed
    assert verdict.status == "incomplete" and verdict.cells[-1].seed == 3


def test_the_candidate_driver_runs_the_missing_cells_in_order_until_one_wins(tmp_path, monkeypatch):
    from experiments.reproduction import vnet_candidates as vc

    monkeypatch.chdir(tmp_path)
    runs = {}  # lr -> {(method, seed): history}; 1e-3 fails at its first cell, 3e-3 wins
    ran = []

    def run(lr, method, seed, drop):
        ran.append((lr, method, seed, drop))
        runs.setdefault(lr, {})[(method, seed)] = (candidate_run(+0.5, -0.5, 0.9) if lr == 1e-3
                                                   else candidate_run(+0.5 if seed == 0 else -0.5, -0.95, 0.5))

    def read(path):
        lr = float(path.name.removeprefix("vnet_lr_"))
        return dict(runs.get(lr, {}))

    judged = vc.choose(run=run, read=read)
    assert [v.status for v in judged] == ["fails", "wins"]
    assert ran == [(1e-3, "rmnwnet", 0, 10)] + [(3e-3, m, s, 10) for s in range(3) for m in ("rmnwnet", "mwnet")]
    choice = json.loads((tmp_path / "results/v3/v3_candidates/choice.json").read_text())
    assert choice["chosen_vnet_lr"] == 3e-3
    assert "Chosen: SGD lr 0.003" in (tmp_path / "results/v3/v3_candidates/choice.md").read_text()



def test_the_choice_says_the_rule_has_ended_once_every_candidate_fails(tmp_path, monkeypatch):
    from experiments.reproduction import vnet_candidates as vc

    monkeypatch.chdir(tmp_path)
    runs = {}  # every candidate's first cell fails G4

    def run(lr, method, seed, drop):
        runs.setdefault(lr, {})[(method, seed)] = candidate_run(+0.5, -0.5, 0.9)

    judged = vc.choose(run=run, read=lambda path: dict(runs.get(float(path.name.removeprefix("vnet_lr_")), {})))
    assert [v.status for v in judged] == ["fails"] * len(vc.CANDIDATE_LRS)
    choice = (tmp_path / "results/v3/v3_candidates/choice.md").read_text()
    assert "No candidate passes: the rule has ended without a winner." in choice and "won yet" not in choice
    assert vc.verdict_line(judged[:1], None) == "**No candidate has won yet.**"  # later candidates still to run

# ------------------------------------------------------------------------------------ paired statistics
def test_interval_is_the_students_t_interval_of_the_mean():
    mean, low, high = paired.interval([1.0, 2.0, 3.0])
    half = 4.303 * 1.0 / math.sqrt(3)
    assert mean == 2.0 and low == pytest.approx(2.0 - half) and high == pytest.approx(2.0 + half)
    assert paired.interval([4.0]) == (4.0, None, None)


def entry(setting, method, seed, accuracy):
    return {"setting": setting, "method": method, "seed": seed, "status": "done", "final/test/accuracy": accuracy}


def test_paired_difference_uses_common_seeds_in_points():
    entries = [entry("uniform40", "rmnwnet", s, a) for s, a in ((0, 0.60), (1, 0.62), (2, 0.64))] + \
              [entry("uniform40", "base", s, a) for s, a in ((0, 0.50), (1, 0.51))]
    difference = paired.paired_difference(entries, "uniform40", "rmnwnet", "base", ACCURACY)
    assert [s for s, _ in difference.per_seed] == [0, 1]
    assert [round(v, 6) for _, v in difference.per_seed] == [10.0, 11.0]
    assert difference.mean == pytest.approx(10.5)


def test_a_method_is_also_paired_with_bases_gold_free_selected_epoch():
    entries = [entry("uniform40", "rmnwnet", s, a) for s, a in ((0, 0.60), (1, 0.62))] + [
        {**entry("uniform40", "base", s, final), "selected/test/accuracy": chosen}
        for s, final, chosen in ((0, 0.41, 0.58), (1, 0.42, 0.59))]
    difference = paired.paired_difference(entries, "uniform40", "rmnwnet", "base", ACCURACY,
                                          b_key="selected/test/accuracy")
    assert [round(v, 6) for _, v in difference.per_seed] == [2.0, 3.0]
    rows = report._paired_table(entries, [rep.SETTINGS_BY_NAME["uniform40"]]).splitlines()
    assert rows[2].startswith("| uniform 40% | RMNW-Net − Base | +19.50")
    assert rows[3].startswith("| uniform 40% | RMNW-Net (final) − Base (gold-free selected epoch) | +2.50")
    assert len(rows) == 4  # RMNW-Net has no selected epoch here: no selected-vs-selected row


def test_both_stopped_at_their_gold_free_selected_epoch_is_a_pair_of_its_own():
    entries = [{**entry("uniform40", m, s, 0.5), "selected/test/accuracy": chosen}
               for m, s, chosen in (("rmnwnet", 0, 0.585), ("rmnwnet", 1, 0.60), ("base", 0, 0.58), ("base", 1, 0.59))]
    rows = report._paired_table(entries, [rep.SETTINGS_BY_NAME["uniform40"]]).splitlines()
    assert rows[-1] == ("| uniform 40% | RMNW-Net − Base, each at its gold-free selected epoch | "
                        "+0.75 [-2.43, +3.93] (n=2: +0.50, +1.00) | — |")


def test_the_targets_end_with_what_a_user_has_without_gold_labels():
    entries = [entry("uniform40", "rmnwnet", s, a) for s, a in ((0, 0.50), (1, 0.52), (2, 0.51))] + [
        entry("uniform40", "gce", s, a) for s, a in ((0, 0.58), (1, 0.59), (2, 0.60))] + [
        {**entry("uniform40", "base", s, 0.41), "selected/test/accuracy": chosen} for s, chosen in ((0, 0.48), (1, 0.49))]
    rows = {row["statement"]: row for row in report.targets(entries)}
    gce, selected = rows["RMNW-Net > GCE (a robust loss at Base's cost)"], rows[
        "RMNW-Net > Base stopped at its gold-free selected epoch"]
    assert (gce["statement"], gce["verdict"]) == ("RMNW-Net > GCE (a robust loss at Base's cost)", FAILS)
    assert gce["value"].startswith("-8.00 [") and gce["value"].endswith("(n=3: -8.00, -7.00, -9.00)")
    assert selected["statement"] == "RMNW-Net > Base stopped at its gold-free selected epoch"
    assert (selected["verdict"], selected["value"]) == (paired.UNDECIDED, "+2.50 [-3.85, +8.85] (n=2: +2.00, +3.00)")


def test_a_grid_with_rmnwnet_on_gce_is_judged_against_gce_too():
    entries = [entry("uniform40", "gce", s, a) for s, a in ((0, 0.58), (1, 0.59), (2, 0.60))]
    assert all("RMNW-Net on GCE" not in row["statement"] for row in report.targets(entries))  # v3: no such row
    entries += [entry("uniform40", "rmnwnet_gce", s, a) for s, a in ((0, 0.60), (1, 0.62), (2, 0.625))]
    last = next(row for row in report.targets(entries) if row["statement"].startswith("RMNW-Net on GCE > GCE"))
    assert (last["statement"], last["verdict"]) == ("RMNW-Net on GCE > GCE (the same robust loss, weighted)", HOLDS)
    assert last["value"].startswith("+2.50 [") and last["value"].endswith("(n=3: +2.00, +3.00, +2.50)")


def test_the_targets_end_with_every_method_and_base_each_at_its_own_gold_free_selected_epoch():
    entries = [{**entry("uniform40", m, s, 0.5), "selected/test/accuracy": chosen} for m, s, chosen in (
        ("base", 0, 0.58), ("base", 1, 0.59), ("base", 2, 0.60),
        ("rmnwnet_gce", 0, 0.60), ("rmnwnet_gce", 1, 0.62), ("rmnwnet_gce", 2, 0.625))]
    entries += [entry("uniform40", "gce", s, 0.6) for s in range(3)]  # no selected epoch yet; no MW-Net* in the grid
    assert [(row["statement"], row["verdict"], row["value"]) for row in report.targets(entries)[-2:]] == [
        ("RMNW-Net on GCE > Base, each at its own gold-free selected epoch", HOLDS,
         "+2.50 [+1.26, +3.74] (n=3: +2.00, +3.00, +2.50)"),
        ("GCE > Base, each at its own gold-free selected epoch", NOT_YET_MEASURED, "—")]
    assert not any(row["statement"].startswith("MW-Net") for row in report.targets(entries))


def test_rmnwnet_on_gce_is_drawn_with_the_other_methods(monkeypatch):
    from experiments.reproduction import plots

    setting = rep.SETTINGS_BY_NAME["uniform40"]
    histories = {m: [] for m in plots.PLOTTED_METHODS}
    histories["rmnwnet_gce"] = [history((2, {"test/accuracy": 0.7}), (4, {"test/accuracy": 0.75}))]
    legend = plots._accuracy_figure(setting, histories, [10]).axes[0].get_legend_handles_labels()[1]
    assert legend == ["RMNW-Net on GCE (1 seed)", "lr ÷10"]
    samples = {"loss": np.array([0.1, 2.0]), "weight": np.array([0.5, 0.1]), "noisy": np.array([False, True])}
    monkeypatch.setattr(plots, "read_samples", lambda folder: samples)
    done = [{"method": "rmnwnet_gce", "seed": 0, "model_dir": "run"}]
    axes = plots._weights_figure(setting, done).axes[0]
    assert axes.get_title().startswith("RMNW-Net on GCE (seed 0)")
    assert axes.get_legend_handles_labels()[1][-1] == "W(GCE loss)"


@pytest.mark.parametrize("relation, values, margin, expected", [
    ("greater", [1.0, 1.2, 1.4], 0.0, HOLDS),
    ("greater", [-1.0, -1.2, -1.4], 0.0, FAILS),
    ("greater", [-1.0, 1.0, 2.0], 0.0, paired.UNDECIDED),
    ("approx", [0.1, -0.1, 0.0], 1.0, HOLDS),
    ("approx", [3.0, 3.1, 3.2], 1.0, FAILS),
    ("not_lower", [-2.0, -2.1, -2.2], 3.0, HOLDS),
    ("not_lower", [-4.0, -4.1, -4.2], 3.0, FAILS),
])
def test_verdicts_on_the_interval(relation, values, margin, expected):
    mean, low, high = paired.interval(values)
    difference = paired.PairedDifference("u", "a", "b", ACCURACY, tuple(enumerate(values)), mean, low, high)
    assert paired.verdict(relation, difference, margin) == expected
    assert paired.verdict(relation, None, margin) == NOT_YET_MEASURED


def test_claims_state_scope_and_source():
    claims = rep.paper_claims()
    assert [c.number for c in claims] == list(range(1, 9))
    assert [(c.settings, c.relation, c.margin) for c in claims[:3]] == [
        (("uniform40", "uniform60", "none0"), "approx", 1.0),
        (("flip2_20", "flip2_40", "flip15", "flip30"), "not_lower", 3.0),
        (("uniform40", "uniform60"), "greater", 0.0),
    ]
    assert claims[5].metric is rep.AUC_BEST and claims[5].settings == ("uniform40", "uniform60", "flip2_20", "flip2_40")
    assert all(c.source for c in claims)


# ------------------------------------------------------------------------------------ end to end
SMOKE = dict(dataset="synthetic", data_dir="", model="tiny", image_size=8, synthetic_train_size=400,
             synthetic_test_size=100, train_size=150, meta_size=50, batch_size=50, meta_batch_size=50,
             epochs=2, lr_boundaries="1", eval_every=1)


def fake_run(calls):
    """Stands in for train.run: a finished run's config, history and results, Base-like numbers."""

    def run(config):
        calls.append(config.model_dir)
        model_dir = pathlib.Path(config.model_dir)
        model_dir.mkdir(parents=True, exist_ok=True)
        rows = [{"epoch": e, "train_seconds": 1.0, "test/accuracy": 0.5 + 0.01 * config.seed,
                 "detection/auc_loss": 0.9, "fit/noisy_memorised": 0.8} for e in range(1, config.epochs + 1)]
        (model_dir / "config.json").write_text(json.dumps(config.to_dict()))
        (model_dir / "history.json").write_text(json.dumps(rows))
        (model_dir / "results.json").write_text(json.dumps({
            "epochs_completed": config.epochs, "steps": 10, **summary.summarise(rows), "history": rows}))
        return {}

    return run


def test_v3_job_pretrains_first_then_reuses_everything(tmp_path):
    protocol = rep.protocol_with({**SMOKE, "init_from": str(tmp_path / "pretrain")}, base=rep.PROTOCOL_V3)
    calls, settings = [], [rep.SETTINGS_BY_NAME["uniform40"]]
    for expected in (5, 0):
        calls.clear()
        rep.reproduce(settings=settings, methods=["base", "rmnwnet"], seeds=[0, 1], protocol=protocol,
                      runs_dir=tmp_path / "runs", out_dir=tmp_path / "out", run_fn=fake_run(calls))
        assert len(calls) == expected
        if expected:
            assert calls[0] == str(tmp_path / "pretrain")
    saved = json.loads((tmp_path / "out" / "reproduction.json").read_text())
    assert saved["protocol"] == "v3" and saved["pretrain"]["status"] == "done"
    g1 = next(g for g in saved["gates"] if g["name"] == "G1 separation")
    assert g1["passed"] is True and g1["details"][0] == "seed 0: best detection/auc_loss up to epoch 1 = 0.900"
    claims_text = (tmp_path / "out" / "REPRODUCTION.md").read_text()
    assert "RMNW-Net − Base | +0.00 [+0.00, +0.00] (n=2: +0.00, +0.00)" in claims_text


@pytest.mark.slow
def test_smoke_v3_pretrains_once_then_fills_cells_and_writes_the_report(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    protocol = rep.protocol_with({**SMOKE, "init_from": str(tmp_path / "pretrain")}, base=rep.PROTOCOL_V3)
    calls = []

    def run(config):
        from rmwnet_tf import train

        calls.append(config.model_dir)
        return train.run(config)

    settings = [rep.SETTINGS_BY_NAME["uniform40"]]
    outcome = rep.reproduce(settings=settings, methods=["base", "rmnwnet", "oracle"], seeds=[0], protocol=protocol,
                            runs_dir=tmp_path / "runs", out_dir=tmp_path / "out", run_fn=run)
    assert calls[0] == str(tmp_path / "pretrain") and len(calls) == 4
    saved = json.loads((tmp_path / "out" / "reproduction.json").read_text())
    done = [e for e in saved["entries"] if e["status"] == "done"]
    assert {(e["protocol"], e["method"]) for e in done} == {("v3", "base"), ("v3", "rmnwnet"), ("v3", "oracle")}
    for key in ("final/test/accuracy", "best/detection/auc", "best/detection/auc_loss", "final/fit/noisy_memorised"):
        assert key in saved["entry_keys"] and all(key in e for e in done)
    assert [g["name"] for g in saved["gates"]][:2] == ["G1 separation", "G2 memorisation"]
    text = (tmp_path / "out" / "REPRODUCTION.md").read_text()
    assert text.startswith("# Reproduction, protocol v3") and "Step 1: the pretrained classifier" in text
    assert "[v2.1" in text  # the earlier protocols are linked below
    calls.clear()
    rep.reproduce(settings=settings, methods=["base", "rmnwnet", "oracle"], seeds=[0], protocol=protocol,
                  runs_dir=tmp_path / "runs", out_dir=tmp_path / "out", run_fn=run)
    assert calls == []  # the pretraining and every cell are reused


def test_the_report_shows_the_vnet_choice_under_its_own_heading(tmp_path):
    assert report.vnet_choice_section(tmp_path, rep.PROTOCOLS["v3.1"]) == ""
    (tmp_path / "v3_candidates").mkdir()
    (tmp_path / "v3_candidates" / "choice.md").write_text("# title\n\nintro\n\n## SGD lr 0.001: fails\n- a cell\n")
    assert report.vnet_choice_section(tmp_path, rep.PROTOCOLS["v3.1"]) == (  # no grid note: v3.1 chose by the rule
        f"### The weighting net's optimizer, chosen on G4 and G5 ({tmp_path / 'v3_candidates'}/)\n\n"
        "intro\n\n#### SGD lr 0.001: fails\n- a cell")



def test_the_report_shows_the_further_tries_that_exist_two_heading_levels_down(tmp_path):
    assert rep.PROTOCOLS["v4"].tries == ("results/v4_gce_try/try.md",)
    first, missing = tmp_path / "try.md", tmp_path / "none.md"
    first.write_text("# A try\n\nwhy\n\n## SGD lr 0.05: fails\n- a cell\n")
    protocol = rep.PROTOCOLS["v4"].replace(tries=(str(missing), str(first)))
    assert report.tries_section(protocol) == ("## Further tries (each fixed in BUILD_NOTES.md before its runs)\n\n"
                                              "### A try\n\nwhy\n\n#### SGD lr 0.05: fails\n- a cell")
    assert report.tries_section(protocol.replace(tries=(str(missing),))) == ""

def test_g4_fails_when_the_candidate_rule_judged_every_candidate_and_none_passed():
    def candidate(lr, status):
        return {"vnet_lr": lr, "status": status, "cells": [
            {"passed": True, "line": "rmnwnet seed 0: fine"}, {"passed": False, "line": f"mwnet seed 1: drifted at {lr:g}"}]}

    none_passed = {"chosen_vnet_lr": None, "candidates": [candidate(lr, "fails") for lr in (1e-3, 3e-3, 1e-2)]}
    gates = {g.name: g for g in report.evaluate_gates([], rep.PROTOCOL_V3, vnet_choice=none_passed)}
    assert gates["G4 weighting-net travel"].passed is False
    assert gates["G4 weighting-net travel"].details[1] == "SGD lr 0.003: mwnet seed 1: drifted at 0.003"
    assert gates["G5 stability"].passed is None
    assert report.mwnet_caveat(list(gates.values())).startswith("G4 failed: MW-Net\\*'s weighting net")
    two_judged = {"chosen_vnet_lr": None, "candidates": none_passed["candidates"][:2]}
    assert {g.name: g for g in report.evaluate_gates([], rep.PROTOCOL_V3, vnet_choice=two_judged)}[
        "G4 weighting-net travel"].passed is None


def test_when_no_candidate_passed_the_grids_own_cells_join_g4_and_decide_g5(monkeypatch):
    def candidate(lr):
        return {"vnet_lr": lr, "status": "fails", "cells": [{"passed": False, "line": f"mwnet seed 0: drifted"}]}

    none_passed = {"chosen_vnet_lr": None, "candidates": [candidate(lr) for lr in (1e-3, 3e-3, 1e-2)]}
    held = candidate_run(+0.5, -0.95, 0.3)
    monkeypatch.setattr(report, "histories", lambda entries, setting: {
        "rmnwnet": {0: held, 1: held}, "mwnet": {0: candidate_run(-0.9, -0.5, 0.7)}})
    found = {g.name: g for g in report.evaluate_gates([], rep.PROTOCOL_V3, vnet_choice=none_passed)}
    g4, g5 = found["G4 weighting-net travel"], found["G5 stability"]
    assert g4.passed is False and len(g4.details) == 3 + 3
    assert g4.details[3] == ("the grid (SGD lr 0.003), rmnwnet seed 0: W rose with the loss at the first evaluation; "
                             "at epoch 10 Spearman(W, loss) -0.950, W noisy/clean 0.300")
    assert g5.passed is True and len(g5.details) == 3  # three meta cells, W mean 0.5 and ESS/N 0.8 throughout


def test_the_grid_notes_why_it_runs_at_its_vnet_lr_when_no_candidate_won(tmp_path):
    (tmp_path / "v3_candidates").mkdir()
    (tmp_path / "v3_candidates" / "choice.md").write_text("# title\n\nintro\n")
    section = report.vnet_choice_section(tmp_path, rep.PROTOCOL_V3)
    assert section.split("\n\n")[-1].startswith("**The grid runs at SGD lr 0.003 anyway.** BUILD_NOTES.md")
    assert "MW-Net\\*'s W drifted" in section and "G4 stays FAILED" in section
    assert "anyway" not in report.vnet_choice_section(tmp_path, rep.PROTOCOLS["v3.2"])


def test_the_v3_tries_keep_the_budget_and_the_paper_vnet_lr_while_the_grid_uses_its_own():
    def steps(protocol):
        return (protocol.train_size - protocol.meta_size) // protocol.batch_size * protocol.epochs

    assert {name: steps(rep.PROTOCOLS[name]) for name in ("v3", "v3.1", "v3.2", "v3.3")} == dict.fromkeys(
        ("v3", "v3.1", "v3.2", "v3.3"), 3000)
    v33 = rep.PROTOCOLS["v3.3"]
    assert (v33.train_size, v33.epochs, v33.lr_boundaries, v33.eval_every) == (21000, 15, "5,6", 1)
    assert (rep.PROTOCOLS["v3"].first_drop, v33.first_drop) == (10, 5)
    assert [rep.PROTOCOLS[n].vnet_lr for n in ("v3", "v3.1", "v3.2", "v3.3")] == [3e-3, 1e-3, 1e-3, 1e-3]
    assert (v33.runs_dir, v33.out_dir) == ("results/runs_v3_3", "results/v3_3")


def test_each_registered_protocol_carries_its_folders_seeds_regime_and_rationale():
    assert list(rep.PROTOCOLS) == ["v3", "v3.1", "v3.2", "v3.3", "v4"] and rep.CURRENT == "v4"
    assert {name: (p.runs_dir, p.out_dir, p.seeds, p.family.name) for name, p in rep.PROTOCOLS.items()} == {
        "v3": ("results/runs_v3", "results/v3", (0, 1, 2, 3, 4), "v3"),
        "v3.1": ("results/runs_v3_1", "results/v3_1", (0, 1, 2, 3, 4), "v3"),
        "v3.2": ("results/runs_v3_2", "results/v3_2", (0, 1, 2, 3, 4), "v3"),
        "v3.3": ("results/runs_v3_3", "results/v3_3", (0, 1, 2, 3, 4), "v3"),
        "v4": ("results/runs_v4", "results", (0, 1, 2, 3, 4), "v4"),
    }
    assert [p.rationale.split(":")[0] for p in rep.PROTOCOLS.values()] == [
        "Protocol v3", "Protocol v3.1 (v3 with augmentation)", "Protocol v3.2 (v3 at lr 0.1)",
        "Protocol v3.3 (v3 with twice the images)", "Protocol v4"]
    assert [name for name, p in rep.PROTOCOLS.items() if p.grid_vnet_note] == ["v3", "v4"]  # no candidate won
    assert (rep.PROTOCOLS["v3"].vnet_lr, rep.PROTOCOLS["v4"].vnet_lr) == (3e-3, 3e-3)
    assert rep.PROTOCOLS["v4"].family.methods == ("base", "mwnet", "mnwnet", "rmnwnet", "rmnwnet_gce", "gce", "oracle")
    assert rep.PROTOCOLS["v3.2"].family is rep.PROTOCOLS["v3"].family  # a try inherits its regime


def test_every_report_links_the_others_relative_to_itself():
    assert report.other_reports("v4", "results") == [
        (summary, path) for summary, path in zip(
            [rep.protocol.RETIRED_REPORTS[0][1]] + [rep.PROTOCOLS[n].summary for n in ("v3", "v3.1", "v3.2", "v3.3")],
            ["v2_1/REPRODUCTION.md", "v3/REPRODUCTION.md", "v3_1/REPRODUCTION.md", "v3_2/REPRODUCTION.md",
             "v3_3/REPRODUCTION.md"])]
    assert [path for _, path in report.other_reports("v3", "results/v3")] == [
        "../v2_1/REPRODUCTION.md", "../v3_1/REPRODUCTION.md", "../v3_2/REPRODUCTION.md", "../v3_3/REPRODUCTION.md",
        "../REPRODUCTION.md"]


def test_the_candidate_driver_follows_the_protocol_it_is_given():
    from experiments.reproduction import vnet_candidates as vc

    try:
        vc.use_protocol("v3.1")
        assert (str(vc.RUNS_ROOT), str(vc.OUT_ROOT)) == ("results/runs_v3_1_candidates", "results/v3_1/v3_candidates")
        assert vc.first_drop() == 10 and rep.PROTOCOLS["v3.1"].augment is True
    finally:
        vc.use_protocol("v3")
    assert (str(vc.RUNS_ROOT), str(vc.OUT_ROOT)) == ("results/runs_v3_candidates", "results/v3/v3_candidates")
    assert vc.main(["--protocol=v2.1"]) == 2


def test_the_grid_finds_the_rules_cell_at_its_own_weighting_net_lr_in_its_own_runs_folder(tmp_path, monkeypatch):
    from experiments.reproduction import vnet_candidates as vc

    monkeypatch.chdir(tmp_path)
    cell = rep.grid([rep.SETTINGS_BY_NAME["uniform40"]], ["rmnwnet"], [1])[0]
    protocol = rep.PROTOCOLS["v4"]
    config = rep.cell_config(cell, protocol.replace(vnet_lr=0.01), protocol.runs_dir)
    find = vc.candidate_cell("v4", protocol.runs_dir)
    assert find(config) is None  # the rule never ran it
    ran = pathlib.Path("results/runs_v4_candidates/vnet_lr_0.01/uniform40/rmnwnet/seed1")
    ran.mkdir(parents=True)
    assert find(config) == ran
    assert find(rep.cell_config(cell, protocol.replace(vnet_lr=0.003), protocol.runs_dir)) is None
    assert vc.candidate_cell("v4", "elsewhere")(rep.cell_config(cell, protocol, "elsewhere")) is None
