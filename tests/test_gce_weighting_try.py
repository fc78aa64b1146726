"""The v4 try for RMNW-Net on GCE: its rule runs the candidates' short cells in order, stops a
candidate at its first failing cell, trains the winner's full cells, and reports either outcome."""

import json
import pathlib

from experiments.reproduction import gce_weighting_try as gt


def short_history(rho, ratio, ess=0.8):
    steady = {"weights/mean": 0.5, "weights/ess_fraction": ess}
    return [{"epoch": 2, "weights/loss_spearman": 1.0, **steady},
            {"epoch": 10, "weights/loss_spearman": rho, "weights/noisy_mean": 0.5 * ratio,
             "weights/clean_mean": 0.5, **steady}]


def option(command, name):
    return next(a.split("=", 1)[1] for a in command if a.startswith(f"--{name}="))


def fake_runner(outcomes, ran):
    """A `run` that records each command and writes the short cells' histories from outcomes[lr]."""

    def run(command):
        ran.append((float(option(command, "vnet_lr")), option(command, "seeds"), option(command, "runs_dir"),
                    "--epochs=10" in command))
        if "--epochs=10" in command:
            folder = pathlib.Path(option(command, "runs_dir")) / "uniform40" / "rmnwnet_gce" / f"seed{option(command, 'seeds')}"
            folder.mkdir(parents=True)
            (folder / "history.json").write_text(json.dumps(outcomes[float(option(command, "vnet_lr"))]))

    return run


def test_the_try_runs_each_candidates_short_cells_in_order_then_the_winners_full_cells(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ran = []
    judged = gt.run_try(fake_runner({0.05: short_history(+0.5, 1.1), 0.2: short_history(-0.95, 0.5)}, ran))
    short, full = "results/runs_v4_gce_try/first_drop", "results/runs_v4_gce_try/full"
    assert ran == [(0.05, "0", f"{short}/vnet_lr_0.05", True)] + [
        (0.2, str(s), f"{short}/vnet_lr_0.2", True) for s in (0, 1, 2)] + [(0.2, "0,1,2,3,4", f"{full}/vnet_lr_0.2", False)]
    assert [judged[lr][0] for lr in gt.TRY_LRS] == ["fails", "passes"] and gt.chosen_lr(judged) == 0.2
    text = gt.report(judged)
    assert "## SGD lr 0.05: fails" in text and "(G4 fails)" in text and "**The try's lr: 0.2.**" in text
    assert "| gce | 0 | — | — |" in text  # no full cell finished: nothing paired yet


def test_no_candidate_passing_ends_the_try_without_full_cells(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ran = []
    judged = gt.run_try(fake_runner({0.05: short_history(+0.2, 0.9), 0.2: short_history(-0.95, 0.5, ess=0.3)}, ran))
    assert [(lr, seeds, short) for lr, seeds, _, short in ran] == [(0.05, "0", True), (0.2, "0", True)]
    assert [judged[lr][0] for lr in gt.TRY_LRS] == ["fails", "fails"] and gt.chosen_lr(judged) is None
    text = gt.report(judged)
    assert "**No candidate passes: the try ends here.**" in text and "(G5 fails)" in text
    assert gt.report({0.05: judged[0.05]}).endswith("**Not decided yet.**\n")  # 0.2 still to run


def test_bad_arguments_get_one_line_and_exit_code_2(capsys):
    assert gt.main(["--seeds=3"]) == 2
    assert capsys.readouterr().err.strip() == ("error: expected no arguments or one of --report_only, --judge_only, "
                                               "got --seeds=3")
    assert gt.main(["--report_only", "--judge_only"]) == 2


def test_judge_only_stops_before_the_winners_full_cells(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ran = []
    judged = gt.run_try(fake_runner({0.05: short_history(-0.95, 0.5)}, ran), full=False)
    assert [(lr, seeds, short) for lr, seeds, _, short in ran] == [(0.05, s, True) for s in "012"]
    assert gt.chosen_lr(judged) == 0.05 and 0.2 not in judged
