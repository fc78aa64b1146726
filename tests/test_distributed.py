"""MirroredStrategy over two logical CPUs gives the single-device step (global-batch semantics)."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

SCRIPT = pathlib.Path(__file__).parent / "helpers" / "distributed_step.py"


def run(strategy, method, variant, jit=False):
    result = subprocess.run([sys.executable, str(SCRIPT), strategy, method, variant, "1" if jit else "0"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    line = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


SLOW = pytest.mark.slow


@pytest.mark.parametrize("method, variant", [
    ("base", "exact"), ("rmnwnet", "exact"),
    pytest.param("mwnet", "jvp", marks=SLOW), pytest.param("rmnwnet", "nested", marks=SLOW),
    pytest.param("rmnwnet", "head", marks=SLOW),
])
def test_mirrored_matches_single_device(method, variant):
    single, mirrored = run("default", method, variant), run("mirrored", method, variant)
    assert (single["replicas"], mirrored["replicas"]) == (1, 2)
    for name in ("classifier", "vnet"):
        for a, b in zip(single[name], mirrored[name]):
            np.testing.assert_allclose(np.array(b), np.array(a), rtol=2e-4, atol=2e-6)
    for key in single["logs"]:
        assert mirrored["logs"][key] == pytest.approx(single["logs"][key], rel=1e-4), key
