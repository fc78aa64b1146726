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
    assert sum("s/step" in line for line in lines) == 10  # 5 variants x XLA on/off


@pytest.mark.benchmark
def test_input_benchmark_reports_images_per_second():
    result = subprocess.run([sys.executable, str(ROOT / "scripts/benchmark_input.py")],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    assert re.search(r"images/s", result.stdout)
