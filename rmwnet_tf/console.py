"""A quiet console for the command line: what TensorFlow prints that a user cannot act on is
dropped, so the lines left (epoch lines, warnings, the final ``done:`` line) are read.

Measured on a CPU machine (TensorFlow 2.21, see BUILD_NOTES.md): importing TensorFlow prints
six lines ("All log messages before absl::InitializeLog() ...", oneDNN, "Could not find cuda
drivers") that ``TF_CPP_MIN_LOG_LEVEL`` cannot silence, because they come before TF's logging
is set up, and the first device query prints an E-level ``failed call to cuInit`` line. Both
happen inside ``import_tensorflow``, which points the process's stderr at /dev/null for that
moment only (a Python error there is still raised, and reported). Every checkpoint save logs
"Sharding callback duration" at INFO, and every export three more INFO lines: an absl log filter
drops those; keras warns that ``shuffle`` is ignored for a tf.data input, which it is by design.
"""

from __future__ import annotations

import logging as std_logging
import os
import sys
import warnings

from absl import logging

NOISE = (
    "Sharding callback duration",
    "Assets written to",
    "Writing fingerprint to",
    "contains input name(s)",
)


class _DropNoise(std_logging.Filter):
    def filter(self, record):
        message = record.getMessage() if record.args else str(record.msg)
        return not any(part in message for part in NOISE)


def quiet() -> None:
    """Call before TensorFlow is imported."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.get_absl_handler().addFilter(_DropNoise())
    warnings.filterwarnings("ignore", message=r".*`shuffle=True` was passed, but will be ignored.*")


def import_tensorflow():
    """Import TensorFlow and probe its devices with stderr muted at the file-descriptor level."""
    sys.stderr.flush()
    saved, muted = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(muted, 2)
    try:
        import tensorflow as tf

        tf.config.list_physical_devices()
    finally:
        os.dup2(saved, 2)
        os.close(muted)
        os.close(saved)
    return tf
