"""Train a classifier on noisy labels; see README.md and configs/ for examples.

    python scripts/train.py --flagfile=configs/quickstart.flags
"""

from rmwnet_tf.cli import main

if __name__ == "__main__":
    main()
