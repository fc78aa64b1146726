"""--strategy=multi_worker: two worker processes on localhost train one run together."""

import json
import os
import pathlib
import socket
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_two_workers_on_localhost_train_one_run(tmp_path):
    cluster = {"worker": [f"localhost:{port}" for port in free_ports(2)]}
    args = [sys.executable, str(ROOT / "scripts/train.py"), "--strategy=multi_worker", "--dataset=synthetic",
            "--synthetic_train_size=400", "--synthetic_test_size=100", "--noise_type=uniform",
            "--noise_rate=0.4", "--meta_size=100", "--model=tiny", "--epochs=2", "--batch_size=50",
            "--meta_batch_size=50", "--jit_compile=false", f"--model_dir={tmp_path / 'run'}"]
    workers = []
    for index in range(2):
        env = dict(os.environ, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
        workers.append(subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [worker.communicate(timeout=600) for worker in workers]
    for worker, (out, err) in zip(workers, outputs):
        assert worker.returncode == 0, err[-3000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["epochs_completed"] == 2
    assert results["steps"] == 2 * (300 // 50)
    assert 0.0 <= results["final"]["test/accuracy"] <= 1.0
    assert (tmp_path / "run" / "export" / "saved_model.pb").exists()
    assert "done:" in outputs[0][0] and "done:" in outputs[1][0]
