"""Every script in examples/ and the README's *From Python* block run, on tiny data (issue 34)."""

import pathlib
import re
import runpy
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run_example(name, monkeypatch, *args):
    monkeypatch.setattr(sys, "argv", [name, *args])
    return runpy.run_path(str(ROOT / "examples" / name), run_name="example")


def test_every_example_is_tested():
    assert sorted(p.name for p in (ROOT / "examples").glob("*.py")) == [
        "clean_a_folder.py", "numpy_arrays.py", "tf_data_backbone.py"]


def test_numpy_arrays(monkeypatch, capsys):
    result = run_example("numpy_arrays.py", monkeypatch)["main"](tiny=True)
    assert sorted(result["accuracy"]) == ["base", "rmnwnet"]
    assert sorted(result["ranking"].indices) == list(range(180))  # 200 images, 20 held out as the meta set
    out = capsys.readouterr().out
    assert re.search(r"^base: test accuracy 0\.\d{3}$", out, re.M) and "most suspicious training labels" in out


def test_tf_data_backbone(monkeypatch, tmp_path, capsys):
    result = run_example("tf_data_backbone.py", monkeypatch)["main"](tiny=True, weights=None, work_dir=str(tmp_path))
    assert sorted(result) == ["accuracy", "loss"]
    assert (tmp_path / "best.weights.h5").is_file()
    assert sorted(p.name for p in (tmp_path / "tensorboard").iterdir()) == ["train", "validation", "weights"]
    assert "test accuracy" in capsys.readouterr().out


def test_clean_a_folder(monkeypatch, tmp_path, capsys):
    rows = run_example("clean_a_folder.py", monkeypatch)["main"](out=tmp_path, tiny=True)
    assert [row["rank"] for row in rows] == list(range(1, 65))
    assert len({row["path"] for row in rows}) == 64
    assert (tmp_path / "suspects.png").read_bytes()[:4] == b"\x89PNG"
    lines = (tmp_path / "suspects.csv").read_text().splitlines()
    assert lines[0] == "rank,path,given,predicted,weight,loss" and len(lines) == 65
    assert "64 images ranked" in capsys.readouterr().out


def readme_block() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## From Python", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


# The README's sizes, cut to tiny ones: each replacement must find its text, so an edit of the
# README that changes these lines fails here instead of silently running the full size.
TINY = {"make_synthetic(1000, 500, image_size=16, seed=0)": "make_synthetic(200, 50, image_size=16, seed=0)",
        "epochs=10": "epochs=1", "verbose=2": "verbose=0"}


def test_readme_from_python_runs_and_prints_accuracy_and_suspects(capsys):
    code = readme_block()
    assert 15 <= len(code.strip().splitlines()) <= 25
    for full, tiny in TINY.items():
        assert code.count(full) == 1, full
        code = code.replace(full, tiny)
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    out = capsys.readouterr().out
    assert re.search(r"^test accuracy: 0\.\d+$", out, re.M)
    assert re.search(r"^most suspicious: \[(\s*\d+){10}\s*\] weights: \[", out, re.M)
