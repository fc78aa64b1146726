"""Writes every configs/*.flags from experiments/presets.py (the one source of the settings).

    python scripts/make_configs.py            # (re)write configs/*.flags
    python scripts/make_configs.py --check    # exit 1, naming the files, if any is not current

A flagfile in configs/ that no preset produces is reported (and left alone): delete it or add
its preset.
"""

import pathlib
import sys

# experiments/ sits beside rmwnet_tf/ in the repository and is not installed with the wheel;
# running this file puts only scripts/ on sys.path, so add the repository root.
ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from absl import app, flags  # noqa: E402

from experiments.presets import all_presets, flagfile_text  # noqa: E402

flags.DEFINE_bool("check", False, "Only compare configs/ with the presets; exit 1 if they differ.")
flags.DEFINE_string("out_dir", str(ROOT / "configs"), "Where the flagfiles go.")


def outdated(out_dir: pathlib.Path) -> tuple[list[str], list[str]]:
    """(files that differ from their preset or are missing, flagfiles no preset produces)."""
    expected = {f"{preset.name}.flags": flagfile_text(preset) for preset in all_presets()}
    differ = [name for name, text in expected.items()
              if not (out_dir / name).exists() or (out_dir / name).read_text() != text]
    strays = sorted(path.name for path in out_dir.glob("*.flags") if path.name not in expected)
    return differ, strays


def main(argv):
    del argv
    out_dir = pathlib.Path(flags.FLAGS.out_dir)
    differ, strays = outdated(out_dir)
    for name in strays:
        print(f"not from a preset: {out_dir / name}", file=sys.stderr)
    if flags.FLAGS.check:
        for name in differ:
            print(f"not current: {out_dir / name}", file=sys.stderr)
        return 1 if differ or strays else 0
    out_dir.mkdir(parents=True, exist_ok=True)
    for preset in all_presets():
        (out_dir / f"{preset.name}.flags").write_text(flagfile_text(preset))
    print(f"wrote {len(all_presets())} flagfiles to {out_dir} ({len(differ)} changed)")
    return 1 if strays else 0


if __name__ == "__main__":
    app.run(main)
