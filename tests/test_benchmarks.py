"""The benchmark scripts run and print their figures (opt-in: `python -m pytest -m benchmark`)."""

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
