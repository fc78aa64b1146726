"""rmwnet_tf: learning from noisy labels without gold samples (RMNW-Net) in Keras 3."""

__version__ = "0.1.0"
