"""The run's folder (--model_dir): usable before any work, and never blocked by a failed start.

Why: a folder that is a file, lies under a file or cannot be written used to fail with a raw
traceback after the data had been loaded; and a start that failed before training (no
network, a bad label file) left its config.json behind, so the next attempt with other data
flags was refused as "a different run" although nothing had been trained.
"""

from __future__ import annotations

import os
import pathlib
import tempfile

from absl import logging

from rmwnet_tf.checkpointing import candidates
from rmwnet_tf.errors import UserError


def check_usable(model_dir) -> None:
    """Check that ``model_dir`` is, or can be made, a folder that files can be written in."""
    model_dir = pathlib.Path(model_dir)
    flag = f"--model_dir={model_dir}"
    if model_dir.exists() and not model_dir.is_dir():
        raise UserError(f"{flag} is an existing file, not a folder; choose another --model_dir")
    blocking = next((p for p in model_dir.absolute().parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise UserError(f"{flag} lies under {blocking}, which is a file; choose another --model_dir")
    created = [p for p in (model_dir, *model_dir.parents) if not p.exists()]
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=model_dir):
            pass
        for folder in created:  # only a probe: a start that fails later leaves no empty folders
            folder.rmdir()
    except OSError as error:
        raise UserError(
            f"{flag} cannot be written ({type(error).__name__}: {error.strerror or error}); "
            "choose a folder you can write to"
        ) from error


def forget_untrained_config(model_dir) -> None:
    """Remove config.json of a folder in which nothing was trained (no checkpoint, no results):
    it only records a start that failed, and must not make the next attempt "a different run"."""
    model_dir = pathlib.Path(model_dir)
    config = model_dir / "config.json"
    if config.exists() and not candidates(model_dir / "checkpoints") and not (model_dir / "results.json").exists():
        logging.info("%s: no checkpoint yet, so the configuration of the earlier start is replaced", model_dir)
        os.remove(config)
