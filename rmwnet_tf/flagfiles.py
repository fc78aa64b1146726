"""The shipped flagfiles by name: `--preset=NAME` means `--flagfile=<configs>/NAME.flags`.

Why: a wheel installed outside the clone has no `configs/` folder for `--flagfile` to point
at, yet the paper's settings and the quick start should run from it by one command
(`rmwnet-train --preset=quickstart`). The wheel carries configs/*.flags as the package data
`rmwnet_tf/configs/` (pyproject.toml); in a clone they are read where they are written
(scripts/make_configs.py), so there is one copy. Pure Python: read before any TensorFlow import.
"""

from __future__ import annotations

import pathlib

HERE = pathlib.Path(__file__).resolve().parent
# In an installed wheel, then in a clone (or an editable install of one).
FOLDERS = (HERE / "configs", HERE.parent / "configs")


def folder() -> pathlib.Path | None:
    return next((path for path in FOLDERS if path.is_dir() and any(path.glob("*.flags"))), None)


def names() -> list[str]:
    found = folder()
    return sorted(path.stem for path in found.glob("*.flags")) if found else []


def path(name: str) -> pathlib.Path:
    """The flagfile of preset `name`; an unknown name fails naming the known ones."""
    found = folder()
    if found is None or not (found / f"{name}.flags").is_file():
        raise ValueError(f"--preset: unknown preset {name!r}; known: {', '.join(names()) or 'none (no configs found)'}")
    return found / f"{name}.flags"


def expand(argv: list[str]) -> list[str]:
    """`--preset=NAME` (or `--preset NAME`) replaced in place by `--flagfile=<its file>`, so flags
    after it override the preset's, as after a --flagfile."""
    expanded, arguments = [], iter(argv)
    for argument in arguments:
        for prefix in ("--preset=", "-preset="):
            if argument.startswith(prefix):
                expanded.append(f"--flagfile={path(argument[len(prefix):])}")
                break
        else:
            if argument in ("--preset", "-preset"):
                name = next(arguments, None)
                if name is None:
                    raise ValueError("--preset needs a name, e.g. --preset=quickstart")
                expanded.append(f"--flagfile={path(name)}")
            else:
                expanded.append(argument)
    return expanded
