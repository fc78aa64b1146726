"""Rebuild every report under results/ from the runs on disk, each with the command it records.

    python scripts/rebuild_reports.py     # then `git status results/`: a report whose inputs did not change does not change

First the cleaning tables whose folds were trained (results/v3/cleaning_v3.md, results/cleaning_v4.md;
`cross_fit.comparison_command`), then every
reproduction.json of a protocol `scripts/reproduce.py` runs whose runs are kept in results/, the
deepest first (a variant's report before the report that summarises it), each by
`scripts/reproduce.py --report_only` with the flags it records; its recorded command stays as it
was, so an unchanged report is byte for byte unchanged. The retired protocols' reports (v1, v2,
v2.1 under results/v2_1/) are static: `git checkout study-v2.1` rebuilds them. Used to check that
compacting the kept runs, and moving v3's report to results/v3/, changed no number (BUILD_NOTES,
*Results that stay small*, *One study path*).
"""

import json
import pathlib
import shlex
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # experiments/ is not installed
sys.path.insert(0, str(ROOT / "scripts"))

from absl import flags  # noqa: E402

import reproduce  # noqa: E402  (scripts/reproduce.py)
from experiments.reproduction import PROTOCOLS, cross_fit  # noqa: E402


def report_paths(results_dir: pathlib.Path) -> list[pathlib.Path]:
    """Every reproduction.json of a runnable protocol whose runs are kept under results/, deepest first."""
    paths = [path for path in results_dir.glob("**/reproduction.json") if rebuildable(json.loads(path.read_text()))]
    return sorted(paths, key=lambda path: (-len(path.parts), str(path)))


def rebuildable(saved: dict) -> bool:
    """Its runs are kept in results/ and its protocol is one reproduce.py runs (a retired report
    names its protocol by a dict of fields, or by a name no longer in PROTOCOLS)."""
    protocol = saved.get("protocol")
    return str(saved["runs_dir"]).startswith("results/") and isinstance(protocol, str) and protocol in PROTOCOLS


def rebuild(path: pathlib.Path) -> int:
    argv = shlex.split(json.loads(path.read_text())["command"])[2:]  # after `python scripts/reproduce.py`
    values = flags.FlagValues()
    reproduce.define_flags(values)
    values(["reproduce.py", *argv])
    values.report_only = True  # whatever the recorded run did, only the report is rebuilt
    return reproduce.run(values, argv)  # argv, not values, names the command in the report


def main() -> int:
    status = 0
    for name in cross_fit.compared_protocols():  # the cleaning tables whose folds were trained
        if cross_fit.folds_done(name, 0):
            status = subprocess.run(cross_fit.comparison_command(name, 0), cwd=ROOT, stdout=subprocess.DEVNULL).returncode or status
    for path in report_paths(pathlib.Path("results")):
        print(f"{path}:", flush=True)
        status = rebuild(path) or status
    return status


if __name__ == "__main__":
    sys.exit(main())
