"""Write-then-rename, without TensorFlow: run files, reports and records are never left half
written by an interrupted process, and the report scripts that use this stay quick to start
(and keep TensorFlow's start-up lines out of their output)."""

from __future__ import annotations

import os
import pathlib


def write_text(path: pathlib.Path, text: str) -> None:
    """Write to a sibling .tmp file, then rename it over `path` (atomic on one filesystem)."""
    path = pathlib.Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
