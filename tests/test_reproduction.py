"""The reduced-scale reproduction's machinery, whatever the protocol: grid order, cell configs,
resume bookkeeping, entries, formatting, the script's flags and exits, and one end-to-end smoke
run of scripts/reproduce.py on synthetic data. (The report and its gates and claims:
test_reproduction_v3.py; v2.1's report and its pooled-std claim rules were retired with it.)"""

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


def test_the_report_holds_the_planned_grid_and_every_other_cell_with_a_run_on_disk(tmp_path):
    from experiments.reproduction.job import report_entries

    protocol = rep.PROTOCOLS["v4"]
    u40, u60 = rep.SETTINGS_BY_NAME["uniform40"], rep.SETTINGS_BY_NAME["uniform60"]
    done = [rep.Cell(u40, "base", 0), rep.Cell(u60, "gce", 4)]  # planned; outside the plan (uniform 60%: seeds 0-2)
    rep.run_cells(done, protocol, tmp_path, run_fn=fake_run([]))
    rep.Cell(u60, "base", 3).model_dir(tmp_path).mkdir(parents=True)  # an empty folder holds no run
    (tmp_path / "uniform60" / "base" / "seed5.copying").mkdir()  # nor does an interrupted copy
    (tmp_path / "uniform40" / "base_folds" / "seed0").mkdir(parents=True)  # nor another tool's folder
    entries = report_entries(protocol, tmp_path)
    keys = [(e["setting"], e["method"], e["seed"], e["status"]) for e in entries]
    assert len(keys) == 70 + 1 and keys[-1] == ("uniform60", "gce", 4, "done")
    assert keys[0] == ("uniform40", "base", 0, "done")
    assert [e["protocol"] for e in entries] == ["v4"] * 71
    assert not [k for k in keys if k[:3] == ("uniform60", "base", 3)]


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


def shorter_run(model_dir: pathlib.Path, config, epochs: int) -> None:
    """A run of `config` stopped after `epochs` (as the weighting-net rule leaves its cells)."""
    history = [{"epoch": e, "train_seconds": 2.0} for e in range(1, epochs + 1)]
    (model_dir / "checkpoints").mkdir(parents=True)
    (model_dir / "config.json").write_text(json.dumps({**config.to_dict(), "model_dir": str(model_dir),
                                                       "epochs": epochs}))
    (model_dir / "history.json").write_text(json.dumps(history))
    (model_dir / "results.json").write_text(json.dumps({"epochs_completed": epochs, "history": history}))
    (model_dir / "samples.npz").write_bytes(b"its own final evaluation, compacted")


def test_a_cell_not_run_continues_the_shorter_run_of_the_same_cell(tmp_path):
    cells = rep.grid([rep.SETTINGS[0]], ["rmnwnet", "mwnet"], [0])
    grid_dir, earlier_dir = tmp_path / "grid", tmp_path / "candidates"
    for cell in cells:  # mwnet's earlier run used another weighting-net lr
        lr = 0.01 if cell.method == "mwnet" else rep.PROTOCOL.vnet_lr
        shorter_run(earlier_dir / cell.label, rep.cell_config(cell, rep.PROTOCOL.replace(vnet_lr=lr), grid_dir), 3)
    seen, messages = {}, []

    def run(config):
        history_path = pathlib.Path(config.model_dir) / "history.json"
        seen[config.method] = len(json.loads(history_path.read_text())) if history_path.exists() else 0
        fake_run([])(config)

    rep.run_cells(cells, rep.PROTOCOL, grid_dir, run_fn=run, log=messages.append,
                  earlier_run=lambda config: earlier_dir / pathlib.Path(config.model_dir).relative_to(grid_dir))
    assert seen == {"rmnwnet": 3, "mwnet": 0}  # another lr's run is a different cell: not continued
    assert [m for m in messages if "continuing" in m] == [
        f"cell 2/2: uniform40/rmnwnet/seed0, continuing {earlier_dir / 'uniform40/rmnwnet/seed0'} after epoch 3"]
    assert (earlier_dir / "uniform40" / "rmnwnet" / "seed0" / "history.json").exists()  # copied, not moved
    # ...without its per-sample file: this run's final evaluation writes its own
    assert (earlier_dir / "uniform40/rmnwnet/seed0/samples.npz").exists()
    assert not (grid_dir / "uniform40/rmnwnet/seed0/samples.npz").exists()
    assert not list(grid_dir.rglob("*.copying"))


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


def test_lr_drops_are_read_from_the_history():
    history = [{"epoch": 1, "lr": 0.05}, {"epoch": 2, "lr": 0.05}, {"epoch": 3, "lr": 0.005}, {"epoch": 4, "lr": 0.0005}]
    assert rep.lr_drops(history) == [2, 3]


def test_a_cell_whose_training_loss_ends_above_its_start_is_marked_diverged():
    from experiments.reproduction.cells import diverged

    assert diverged([{"train/loss": 3.9}, {"train/loss": 46.7}, {"train/loss": 29.0}]) is True
    assert diverged([{"train/loss": 3.0}, {"train/loss": 2.2}, {"train/loss": 0.4}]) is False
    assert diverged([{"train/loss": 3.0}]) is None


def test_each_regimes_plan_is_its_issues_grid_setting_by_setting_in_running_order():
    v4, v3 = rep.PROTOCOLS["v4"].family, rep.PROTOCOLS["v3"].family
    assert v4.plan == (("uniform40", (0, 1, 2, 3, 4)), ("uniform60", (0, 1, 2)), ("flip2_40", (0, 1)))
    assert v3.plan == (("uniform40", (0, 1, 2, 3, 4)), ("uniform60", (0, 1, 2)), ("flip2_40", (0, 1)),
                       ("flip30", (0, 1)))
    cells = rep.planned_cells(v4)
    assert len(cells) == 7 * (5 + 3 + 2) and len(rep.planned_cells(v3)) == 6 * (5 + 3 + 2 + 2)
    assert [c.label for c in cells[:8]] == [f"uniform40/{m}/seed0" for m in v4.methods] + ["uniform40/base/seed1"]
    assert [c.label for c in cells[34:36]] == ["uniform40/oracle/seed4", "uniform60/base/seed0"]
    assert cells[-1].label == "flip2_40/oracle/seed1"
    assert {c.seed for c in cells if c.setting.name == "uniform60"} == {0, 1, 2}
    assert rep.PROTOCOLS["v3.1"].family.plan == v3.plan  # a try plans its regime's grid


@pytest.mark.parametrize("plan", [(), (("uniform70", (0,)),), (("uniform40", ()),)])
def test_a_plan_names_known_settings_each_with_seeds(plan):
    import dataclasses

    with pytest.raises(ValueError, match="a plan is"):
        dataclasses.replace(rep.PROTOCOLS["v4"].family, plan=plan)


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


V4_METHODS = "--methods=base,mwnet,mnwnet,rmnwnet,rmnwnet_gce,gce,oracle"


def test_v4s_report_shows_one_command_per_planned_setting():
    from experiments.reproduction.report import canonical_commands

    v4 = "python scripts/reproduce.py --protocol=v4"
    assert [line for line in canonical_commands(rep.PROTOCOLS["v4"]) if not line.startswith("#")] == [
        f"{v4} --settings=uniform40 --seeds=0,1,2,3,4 {V4_METHODS}",
        f"{v4} --settings=uniform60 --seeds=0,1,2 {V4_METHODS}",
        f"{v4} --settings=flip2_40 --seeds=0,1 {V4_METHODS}",
        f"{v4} --report_only",
        f"{v4} --settings=uniform40 --seeds=0,1,2,3,4 {V4_METHODS} --dataset=cifar10 --runs_dir=runs/reproduction_tfds",
    ]
    assert "# or one cell per sitting: any of them with --max_cells=1, called again later" in canonical_commands(
        rep.PROTOCOLS["v4"])


@pytest.mark.parametrize("protocol_name", ["v3", "v3.1", "v4"])
def test_every_command_a_report_shows_parses_and_reruns_that_reports_protocol(protocol_name):
    from experiments.reproduction.report import canonical_commands

    script = load_script()
    protocol = rep.PROTOCOLS[protocol_name]
    commands = [line for line in canonical_commands(protocol) if not line.startswith("#")]
    assert len(commands) == len(protocol.family.plan) + 2
    cells = []
    for command in commands:
        program, *argv = command.split()[1:]
        assert program == "scripts/reproduce.py"
        values = parse(script, argv)
        assert values.protocol == protocol_name, command
        if not values.report_only and values.dataset is None:  # a grid command: exactly its planned cells
            cells += rep.grid(rep.parse_settings(values.settings), rep.parse_methods(values.methods),
                              rep.parse_seeds(values.seeds))
    assert cells == rep.planned_cells(protocol.family)


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
            f"--init_from={tmp_path / 'pretrain'}", f"--runs_dir={tmp_path / 'runs'}", f"--out_dir={tmp_path / 'out'}"]

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
    argv = ["--protocol=v3", "--dataset=synthetic", "--data_dir=", "--image_size=8", "--synthetic_train_size=300",
            "--synthetic_test_size=100", "--train_size=0", "--meta_size=50", "--batch_size=50", "--meta_batch_size=50",
            "--model=tiny", "--epochs=2", "--lr_boundaries=1", "--eval_every=1", "--settings=uniform40",
            "--methods=base,rmnwnet", "--seeds=0", f"--init_from={tmp_path / 'pretrain'}",
            f"--runs_dir={tmp_path / 'runs'}", f"--out_dir={out_dir}"]
    calls = []

    def counting_run(config):
        calls.append(config.model_dir)
        return train.run(config)

    assert script.run(parse(script, argv), argv, run_fn=counting_run) == 0
    assert calls[0] == str(tmp_path / "pretrain") and len(calls) == 3  # the pretraining, then two cells
    saved = json.loads((out_dir / "reproduction.json").read_text())
    assert len(saved["entries"]) == 6 * (5 + 3 + 2 + 2)  # v3's planned grid: its six methods x (settings x seeds)
    done = [e for e in saved["entries"] if e["status"] == "done"]
    assert [(e["setting"], e["method"], e["seed"]) for e in done] == [("uniform40", "base", 0),
                                                                       ("uniform40", "rmnwnet", 0)]
    for e in done:
        assert e["steps"] > 0 and e["seconds_per_step"] > 0 and e["final/test/accuracy"] is not None
    assert done[1]["final/detection/auc"] is not None
    assert all(0.0 <= e[key] <= 1.0 for e in done for key in rep.FIT_KEYS)
    report = (out_dir / "REPRODUCTION.md").read_text()
    assert "2 of 72 planned cells finished" in report
    assert "| uniform 40% | RMNW-Net | 1 |" in report and "| 90.80 ± 0.23 |" in report
    assert "NOT YET MEASURED" in report and "--methods=base,rmnwnet" in report
    for kind in ("accuracy", "fit", "weights"):
        assert (out_dir / "plots" / f"uniform40_{kind}.png").stat().st_size > 0
        assert f"](plots/uniform40_{kind}.png)" in report

    assert script.run(parse(script, argv), argv, run_fn=counting_run) == 0
    assert len(calls) == 3  # nothing trained again
    assert json.loads((out_dir / "reproduction.json").read_text()) == saved

    report_only = [*argv, "--report_only"]
    assert script.run(parse(script, report_only), report_only, run_fn=counting_run) == 0
    assert len(calls) == 3

    base_dir = tmp_path / "runs" / "uniform40" / "base" / "seed0"
    history = rep.run_history(base_dir)
    assert [row["epoch"] for row in history] == [1, 2] and rep.run_lr_drops(base_dir, history) == [1]
