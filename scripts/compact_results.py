"""Compact every kept study run under a folder: per-sample files give way to samples.npz where an
analysis reads them (experiments/reproduction/compact.py says which); the reproduction job does
this itself for each cell it finishes.

    python scripts/compact_results.py results/
"""

import pathlib
import sys

# Running this file puts only scripts/ on sys.path: add the repository root (experiments/ is not installed).
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from experiments.reproduction.compact import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
