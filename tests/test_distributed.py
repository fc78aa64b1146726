"""MirroredStrategy over two logical CPUs gives the single-device step (global-batch semantics)."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

SCRIPT = pathlib.Path(__file__).parent / "helpers" / "distributed_step.py"
ROOT = SCRIPT.parents[2]
# The helper runs as a script (sys.path[0] = tests/helpers): import this checkout's package, not
# whichever rmwnet_tf is installed (an editable install may point at another worktree).
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def run(strategy, method, variant, jit=False, meta_every=1):
    result = subprocess.run([sys.executable, str(SCRIPT), strategy, method, variant, "1" if jit else "0",
                             str(meta_every)],
                            capture_output=True, text=True, timeout=300, env=ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    line = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


SLOW = pytest.mark.slow


@pytest.mark.parametrize("method, variant, meta_every", [
    ("base", "exact", 1), ("rmnwnet", "exact", 1),
    # 3 steps: meta, weighted, meta. One device takes the tf.cond schedule; two CPU replicas the
    # masked one (no collectives inside a tf.cond there), so this also pins the two against each other.
    ("rmnwnet", "exact", 2),
    pytest.param("mwnet", "jvp", 1, marks=SLOW), pytest.param("rmnwnet", "nested", 1, marks=SLOW),
    pytest.param("rmnwnet", "head", 1, marks=SLOW), pytest.param("rmnwnet", "nested", 2, marks=SLOW),
    # A non-CE training loss: W reads GCE, train/loss gathers the CE besides (meta and weighted steps).
    pytest.param("rmnwnet_gce", "exact", 2, marks=SLOW),
])
def test_mirrored_matches_single_device(method, variant, meta_every):
    single = run("default", method, variant, meta_every=meta_every)
    mirrored = run("mirrored", method, variant, meta_every=meta_every)
    assert (single["replicas"], mirrored["replicas"]) == (1, 2)
    for name in ("classifier", "vnet"):
        for a, b in zip(single[name], mirrored[name]):
            np.testing.assert_allclose(np.array(b), np.array(a), rtol=2e-4, atol=2e-6)
    for key in single["logs"]:
        assert mirrored["logs"][key] == pytest.approx(single["logs"][key], rel=1e-4), key
