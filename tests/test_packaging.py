"""The wheel's contents as declared in pyproject.toml, and `--preset=NAME` (issue 34)."""

import pathlib
import subprocess
import sys
import tomllib

import pytest

from rmwnet_tf import flagfiles

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_every_package_folder_is_in_the_wheel():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "rmwnet_tf").rglob("__init__.py")}
    assert sorted(setuptools["packages"]) == sorted(folders | {"rmwnet_tf.configs"})
    assert setuptools["package-dir"] == {"rmwnet_tf.configs": "configs"}


def test_presets_are_the_shipped_flagfiles():
    assert flagfiles.folder() == ROOT / "configs"  # in a clone; in a wheel rmwnet_tf/configs
    assert flagfiles.names() == sorted(p.stem for p in (ROOT / "configs").glob("*.flags"))
    assert {"quickstart", "cifar10_flip30"} <= set(flagfiles.names())


def test_a_preset_expands_in_place_so_later_flags_override_it():
    quickstart = ROOT / "configs" / "quickstart.flags"
    assert flagfiles.expand(["prog", "--preset=quickstart", "--epochs=1"]) == [
        "prog", f"--flagfile={quickstart}", "--epochs=1"]
    assert flagfiles.expand(["prog", "--epochs=1", "--preset", "quickstart"]) == [
        "prog", "--epochs=1", f"--flagfile={quickstart}"]
    with pytest.raises(ValueError, match="unknown preset 'nope'; known: cifar100_flip15, "):
        flagfiles.expand(["prog", "--preset=nope"])
    with pytest.raises(ValueError, match="--preset needs a name"):
        flagfiles.expand(["prog", "--preset"])


def test_an_unknown_preset_is_one_line_and_exit_2():
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"), "--preset=nope"],
                          capture_output=True, text=True, cwd=ROOT, check=False)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert done.stderr.startswith("error: --preset: unknown preset 'nope'; known: ")
