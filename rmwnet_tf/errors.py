"""Errors the user can fix, and how the command line reports any error: one line, no traceback.

Why: a Python stack is noise to someone who mistyped a path or has no network; what they need
is which file or flag is wrong and what to do instead. ``RMWNET_TRACEBACK=1`` keeps the full
stack for bug reports.
"""

from __future__ import annotations

import os

TRACEBACK_ENV_VAR = "RMWNET_TRACEBACK"


class UserError(ValueError):
    """A problem with the input or the environment that the message itself explains."""


def want_traceback() -> bool:
    return os.environ.get(TRACEBACK_ENV_VAR, "") not in ("", "0")


# Raised for bad input, files and the environment: their message is the report.
EXPLAINED = (ValueError, OSError, EOFError, RuntimeError, LookupError)


def described(error: BaseException, *, limit: int | None = None, named: bool = False) -> str:
    """An exception's message on one line (TensorFlow's run over many), cut after `limit`
    characters, prefixed by its type when `named`: for quoting a caught error inside another message."""
    text = " ".join(str(error).split()) or type(error).__name__
    if limit is not None and len(text) > limit:
        text = text[:limit] + "..."
    return f"{type(error).__name__}: {text}" if named else text


def one_line(error: BaseException) -> str:
    """``error: ...`` on one line. Errors of the kinds above carry their own explanation; any
    other kind is a bug here, so its type is named and the way to get the stack added."""
    text = described(error)
    if isinstance(error, EXPLAINED) and not isinstance(error, (NotImplementedError, RecursionError)):
        if isinstance(error, (OSError, EOFError)) and type(error).__name__ not in text:
            text = f"{type(error).__name__}: {text}"
        return f"error: {text}"
    return f"error: {type(error).__name__}: {text} (an internal error; rerun with {TRACEBACK_ENV_VAR}=1 for the full stack and report it)"
