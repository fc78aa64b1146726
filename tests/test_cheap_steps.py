"""The cheap meta steps at v3: found as variants of the protocol, paired by seed with the exact step."""

import json

import pytest

from experiments import reproduction as rep
from experiments.reproduction import cheap_steps
from test_reproduction_v3 import SMOKE, fake_run

U40 = rep.SETTINGS_BY_NAME["uniform40"]


def cell(method, seed, accuracy, auc, memorised=0.5, seconds=0.4, setting="uniform40"):
    return {"setting": setting, "method": method, "seed": seed, "status": "done", "final/test/accuracy": accuracy,
            "final/detection/auc": auc, "best/detection/auc": auc + 0.05, "final/fit/noisy_memorised": memorised,
            "seconds_per_step": seconds}


EXACT = [cell("rmnwnet", 0, 0.50, 0.83), cell("rmnwnet", 1, 0.52, 0.87), cell("rmnwnet", 2, 0.51, 0.85),
         cell("base", 0, 0.41, 0.80)]


def variant(*entries, label="meta_step=head"):
    return cheap_steps.CheapVariant("v3_cheap_head", label, tuple(entries))


def test_differences_are_cheap_minus_exact_on_the_common_seeds():
    found = cheap_steps.compare(EXACT, variant(cell("rmnwnet", 0, 0.495, 0.82, seconds=0.2),
                                               cell("rmnwnet", 1, 0.51, 0.86, seconds=0.2)), "uniform40")
    assert found.seeds == (0, 1)
    accuracy = found.differences["final/test/accuracy"]
    assert [round(v, 6) for _, v in accuracy.per_seed] == [-0.5, -1.0] and accuracy.mean == pytest.approx(-0.75)
    assert found.differences["final/detection/auc"].mean == pytest.approx(-0.01)
    assert found.differences["seconds_per_step"].mean == pytest.approx(-0.2)
    assert found.within_bar is True


@pytest.mark.parametrize("accuracies, aucs", [
    ((0.48, 0.51), (0.83, 0.87)),  # -1.5 points on average
    ((0.50, 0.52), (0.80, 0.85)),  # -0.025 AUC on average
    ((0.52, 0.54), (0.83, 0.87)),  # +2 points: the bar is "within", as issue 14's
])
def test_the_bar_reads_the_paired_means_of_accuracy_and_final_auc(accuracies, aucs):
    cheap = [cell("rmnwnet", seed, a, u) for seed, (a, u) in enumerate(zip(accuracies, aucs))]
    assert cheap_steps.compare(EXACT, variant(*cheap), "uniform40").within_bar is False


def test_no_common_seed_no_row():
    assert cheap_steps.compare(EXACT, variant(cell("rmnwnet", 4, 0.5, 0.8)), "uniform40") is None
    assert cheap_steps.compare(EXACT, variant(cell("rmnwnet", 0, 0.5, 0.8, setting="uniform60")), "uniform40") is None
    text = cheap_steps.section(EXACT, [variant(cell("rmnwnet", 4, 0.5, 0.8))], [U40])
    assert text.endswith("No cheap-step variant has a seed in common with the grid yet.")
    assert cheap_steps.section(EXACT, [], [U40]) == ""


def test_the_section_has_one_row_per_variant_and_setting_with_its_verdict():
    head = variant(cell("rmnwnet", 0, 0.47, 0.70), cell("rmnwnet", 1, 0.49, 0.74))
    every4 = cheap_steps.CheapVariant("v3_cheap_every4", "meta_every=4", (cell("rmnwnet", 0, 0.50, 0.83),))
    rows = cheap_steps.section(EXACT, [head, every4], [U40]).splitlines()[-2:]
    assert rows[0].startswith("| uniform 40% | `meta_step=head` ([report](v3_cheap_head/REPRODUCTION.md)) | "
                              "-3.00 [-3.00, -3.00] (n=2: -3.00, -3.00) | -0.1300 [")
    assert rows[0].endswith("| **no** |")
    assert rows[1].startswith("| uniform 40% | `meta_every=4` ([report](v3_cheap_every4/REPRODUCTION.md)) | "
                              "+0.00 (n=1: +0.00) |") and rows[1].endswith("| yes |")


def write_report(folder, name, fields, entries=()):
    folder.mkdir(parents=True)
    (folder / "reproduction.json").write_text(json.dumps({"protocol": name, "protocol_fields": fields,
                                                          "entries": list(entries)}))


def test_only_variants_differing_in_the_meta_step_alone_are_cheap_steps(tmp_path):
    fields = {"meta_step": "exact", "meta_every": 1, "vnet_lr": 0.003}
    write_report(tmp_path / "a_head", "v3", {**fields, "meta_step": "head"})
    write_report(tmp_path / "b_every4", "v3", {**fields, "meta_every": 4})
    write_report(tmp_path / "c_other_lr", "v3", {**fields, "meta_step": "head", "vnet_lr": 0.01})
    write_report(tmp_path / "d_other_protocol", "v3.2", {**fields, "meta_step": "head"})
    write_report(tmp_path / "e_same", "v3", fields)
    (tmp_path / "g_v2_format").mkdir()
    (tmp_path / "g_v2_format" / "reproduction.json").write_text(json.dumps({"protocol": fields, "entries": []}))
    (tmp_path / "f_broken").mkdir()
    (tmp_path / "f_broken" / "reproduction.json").write_text("{not json")
    found = cheap_steps.find_cheap_variants(tmp_path, "v3", fields)
    assert [(v.folder, v.label) for v in found] == [("a_head", "meta_step=head"), ("b_every4", "meta_every=4")]


def test_a_cheap_variant_run_by_reproduce_appears_in_the_main_report(tmp_path):
    protocol = rep.protocol_with({**SMOKE, "init_from": str(tmp_path / "pretrain")}, base=rep.PROTOCOL_V3)
    calls, out = [], tmp_path / "results"
    rep.reproduce(settings=[U40], methods=["rmnwnet"], seeds=[0, 1], protocol=protocol,
                  runs_dir=tmp_path / "runs", out_dir=out, run_fn=fake_run(calls))
    head = protocol.replace(meta_step="head")
    rep.reproduce(settings=[U40], methods=["rmnwnet"], seeds=[0, 1], protocol=head,
                  runs_dir=tmp_path / "runs_head", out_dir=out / "v3_cheap_head", run_fn=fake_run(calls))
    rep.reproduce(settings=[U40], methods=["rmnwnet"], seeds=[0, 1], protocol=protocol,
                  runs_dir=tmp_path / "runs", out_dir=out, report_only=True)
    saved = json.loads((out / "reproduction.json").read_text())
    # fake_run writes no weights, so no detection AUC: the bar waits for it
    assert [(r["setting"], r["meta_step"], r["within_bar"]) for r in saved["cheap_steps"]] == [
        ("uniform40", "meta_step=head", None)]
    assert saved["cheap_steps"][0]["differences"]["final/test/accuracy"]["per_seed"] == {"0": 0.0, "1": 0.0}
    text = (out / "REPRODUCTION.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| uniform 40% | `meta_step=head`"))
    assert row.startswith("| uniform 40% | `meta_step=head` ([report](v3_cheap_head/REPRODUCTION.md)) | +0.00 [+0.00, +0.00]")
    assert row.endswith("| — |")


def test_a_report_names_what_its_protocol_changed_against_the_protocol_it_is_a_variant_of():
    from experiments.reproduction.report import _report_protocol

    assert "differs from" not in _report_protocol(rep.PROTOCOL_V3, "cmd")
    text = _report_protocol(rep.PROTOCOL_V3.replace(meta_step="head"), "cmd")
    assert "**This report's protocol differs from `PROTOCOLS['v3']`:** `meta_step`: `head`." in text
