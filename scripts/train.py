"""Train a classifier on noisy labels; see README.md and configs/ for examples.

    python scripts/train.py --flagfile=configs/quickstart.flags
"""

import pathlib
import sys

# Running this file puts only scripts/ on sys.path: add the repository root, so a clone runs its
# own rmwnet_tf even where another copy is installed (the installed `rmwnet-train` needs none).
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from rmwnet_tf.cli import main  # noqa: E402

if __name__ == "__main__":
    main()
