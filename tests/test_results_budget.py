"""results/ stays small: what a clone carries of the study (issue 35), read from `git ls-files`.

The budgets, and why (BUILD_NOTES "Results that stay small"):
- a kept run folder at most RUN_BUDGET, 768 KiB: the largest today is v3's uniform 40% RMNW-Net
  cell, 490 KiB (10,000 samples with the float32 probabilities the cleaning comparison reads); a
  10,000-sample cell with the tool's full per-sample outputs is about 970 KiB (68 of the 127
  folders were, before compaction);
- all of results/ at most TOTAL_BUDGET, 28 MiB: 23.2 MiB today, and a `git clone --depth 1` of
  42 MB; the margin holds protocol v4's ~50 cells (about 80 KB of JSON each, and a samples.npz
  where an analysis reads one) with a fresh clone still under the 50 MB the issue asks for;
- no tracked file under results/ is one of the tool's per-sample outputs: they are compacted
  (experiments/reproduction/compact.py) and .gitignore keeps them out. This catches the small
  runs too (protocol v2's 2,000-sample cells were 290 KiB with them).
The pretrained classifiers' checkpoints, which every v3 or v4 cell starts from, count in the total only.
"""

import collections
import pathlib
import subprocess

import pytest

from experiments.reproduction.compact import FULL_OUTPUTS

ROOT = pathlib.Path(__file__).resolve().parents[1]
MiB = 1 << 20
RUN_BUDGET = 768 * 1024
TOTAL_BUDGET = 28 * MiB
EXEMPT = ("results/runs_v3/pretrain/checkpoints/", "results/runs_v4/pretrain/checkpoints/")


def tracked_sizes() -> dict[str, int]:
    """Every tracked file under results/ with its size on disk (a symlink counts as itself)."""
    try:
        listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "results"], capture_output=True,
                                check=True).stdout.decode()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    files = [name for name in listed.split("\0") if name and ((ROOT / name).is_symlink() or (ROOT / name).exists())]
    if not files:
        pytest.skip("results/ is not tracked here")
    return {name: (ROOT / name).lstat().st_size for name in files}


def run_folder_sizes(sizes: dict[str, int]) -> dict[str, int]:
    """Bytes per run folder (a folder with a config.json), each file counted in the innermost one."""
    runs = sorted({name.rsplit("/", 1)[0] for name in sizes if name.endswith("/config.json")}, key=len, reverse=True)
    totals = collections.Counter({run: 0 for run in runs})
    for name, size in sizes.items():
        owner = next((run for run in runs if name.startswith(run + "/")), None)
        if owner is not None and not name.startswith(EXEMPT):
            totals[owner] += size
    return dict(totals)


def test_every_kept_run_folder_is_within_its_budget():
    sizes = run_folder_sizes(tracked_sizes())
    assert len(sizes) > 75  # the study's runs are found (82 since v1/v2/v2.1's left, issue 35)
    over = {run: size for run, size in sizes.items() if size > RUN_BUDGET}
    assert over == {}, f"run folders over {RUN_BUDGET // 1024} KiB (compact them: scripts/compact_results.py)"


def test_all_of_results_is_within_its_budget():
    total = sum(tracked_sizes().values())
    assert total <= TOTAL_BUDGET, f"results/ holds {total / MiB:.1f} MiB, over its {TOTAL_BUDGET // MiB} MiB budget"


def test_no_per_sample_output_of_the_tool_is_tracked():
    tracked = [name for name in tracked_sizes() if name.rsplit("/", 1)[-1] in FULL_OUTPUTS or name.endswith(".npy")]
    assert tracked == []


def test_a_folder_is_counted_once_in_its_innermost_run():
    sizes = {"results/a/config.json": 1, "results/a/results.json": 10, "results/a/fold0/config.json": 100,
             "results/a/fold0/samples.npz": 1000, "results/REPORT.md": 5,
             "results/runs_v3/pretrain/config.json": 2, "results/runs_v3/pretrain/checkpoints/ckpt": 10_000}
    assert run_folder_sizes(sizes) == {"results/a": 11, "results/a/fold0": 1100, "results/runs_v3/pretrain": 2}
