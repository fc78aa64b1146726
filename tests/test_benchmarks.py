"""The benchmark scripts run and print their figures (opt-in: `python -m pytest -m benchmark`)."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.benchmark
def test_step_benchmark_ends_with_the_ratio_line():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts/benchmark_step.py"), "--model=tiny", "--steps=3", "--warmup=1"],
        capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert re.fullmatch(r"ratio meta/plain = \d+\.\d\d", lines[-1])
    assert sum("s/step" in line for line in lines) == 16  # 8 modes x XLA on/off
    modes = ["exact", "jvp", "nested", "head", "every2", "every4", "every8"]
    ratios = [line.split("/")[0][len("ratio "):] for line in lines if re.fullmatch(r"ratio \w+/plain = [0-9.]+", line)]
    assert ratios == modes + ["meta"]


@pytest.mark.benchmark
def test_settings_benchmark_prints_one_line_per_setting():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts/benchmark_settings.py"), "--model=tiny", "--image_size=8",
         "--batch_size=8", "--steps=3", "--warmup=1", "--settings=baseline,onednn=off,steps_per_execution=4"],
        capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    pattern = r"(\S+) plain [0-9.]+ s meta [0-9.]+ s ratio_to_baseline plain [0-9.]+ meta [0-9.]+"
    assert [re.fullmatch(pattern, line).group(1) for line in lines] == ["baseline", "onednn=off",
                                                                        "steps_per_execution=4"]
    assert lines[0].endswith("ratio_to_baseline plain 1.00 meta 1.00")


@pytest.mark.benchmark
def test_step_benchmark_memory_and_tfnn_lines():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts/benchmark_step.py"), "--model=resnet32", "--image_size=8",
         "--batch_size=4", "--steps=3", "--warmup=1", "--xla=default", "--modes=plain,every2", "--memory"],
        capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert re.search(r"^ratio keras_plain/tfnn_plain = \d+\.\d\d$", out, re.M)
    assert re.search(r"^memory plain = -?[0-9.]+ MiB \(ratio to plain 1\.00\)", out, re.M)
    assert re.search(r"^memory every2 = -?[0-9.]+ MiB \(ratio to plain -?[0-9.]+\)", out, re.M)


@pytest.mark.benchmark
def test_input_benchmark_reports_images_per_second():
    result = subprocess.run([sys.executable, str(ROOT / "scripts/benchmark_input.py")],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    assert re.search(r"images/s", result.stdout)


@pytest.mark.benchmark
def test_official_pytorch_step_prints_both_times_and_the_ratio():
    """Opt-in twice over: needs torch (the torch-reference extra) and the official code, a checkout
    or git directory named by RMWNET_OFFICIAL_REPO."""
    pytest.importorskip("torch")
    repo = os.environ.get("RMWNET_OFFICIAL_REPO")
    if not repo or not pathlib.Path(repo).exists():
        pytest.skip("set RMWNET_OFFICIAL_REPO to a checkout (or git directory) of the official RMNW-Net code")
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/official_pytorch_step.py"), f"--official_repo={repo}",
         "--batch_size=4", "--image_size=8", "--steps=2", "--warmup=1", "--threads=1"],
        capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert re.fullmatch(r"time torch_plain = \d+\.\d{4} s", lines[-3])
    assert re.fullmatch(r"time torch_meta = \d+\.\d{4} s", lines[-2])
    assert re.fullmatch(r"ratio torch_meta/torch_plain = \d+\.\d\d", lines[-1])
