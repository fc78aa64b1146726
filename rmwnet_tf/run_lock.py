"""One process per run folder: a lock file holding the PID of the process working in it.

Why: two starts in the same --model_dir at once (say, the same command in two terminals) both
trained and both finished with `done:`; the folder ended with one run's config and results and
both runs' checkpoints and TensorBoard events. Now the second start is refused in one line
naming the PID that holds the folder.

The lock is a file next to the folder, ``<parent>/.<name>.lock`` (created with O_EXCL, so of
two simultaneous starts exactly one gets it), not inside it: ``--overwrite`` moves the old
folder aside while the lock must stay put, and a start that fails must leave no folder behind.
It is removed when the run ends, however it ends; after ``kill -9`` or a power cut it stays,
and the next start takes it over once no process with its PID is alive (on this machine: the
lock records the host too, and one from another host is never taken over).
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import socket
import time

from rmwnet_tf.errors import UserError


def lock_path(model_dir) -> pathlib.Path:
    """Where the lock of ``model_dir`` lives (by its resolved path, so a link and its target
    share one lock)."""
    folder = pathlib.Path(model_dir).resolve()
    return folder.parent / f".{folder.name}.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _holder(path: pathlib.Path) -> tuple[int | None, str]:
    """(pid, host) recorded in a lock file; (None, "") if it cannot be read (being written)."""
    try:
        pid, _, host = path.read_text().strip().partition(" ")
        return int(pid), host
    except (OSError, ValueError):
        return None, ""


def acquire(model_dir) -> pathlib.Path:
    """Take the lock of ``model_dir`` or raise UserError naming the process that holds it."""
    path = lock_path(model_dir)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(
            f"--model_dir={model_dir}: cannot create its lock file {path} ({type(error).__name__}: "
            f"{error.strerror or error}); the folder holding the run folder must be writable"
        ) from None
    me = f"{os.getpid()} {socket.gethostname()}"
    for _ in range(3):  # a stale lock is removed and the creation tried again
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            pid, host = _holder(path)
            if pid is None:
                time.sleep(0.2)  # just created by another start, not written yet: look again
                continue
            same_host = host in ("", socket.gethostname())
            if same_host and (pid == os.getpid() or not _alive(pid)):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)  # stale: its process is gone (kill -9, a crash)
                continue
            where = "" if same_host else f" on {host}"
            raise UserError(
                f"--model_dir={model_dir} is in use by process {pid}{where} (lock file {path}); wait for it "
                "to finish or stop it, or use another --model_dir"
            ) from None
        with os.fdopen(fd, "w") as handle:
            handle.write(me + "\n")
        return path
    raise UserError(f"--model_dir={model_dir}: could not take the lock file {path}; try again")


def release(path: pathlib.Path) -> None:
    """Remove the lock if it is still this process's."""
    pid, _ = _holder(path)
    if pid == os.getpid():
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


@contextlib.contextmanager
def locked(model_dir):
    """Hold the lock of ``model_dir`` for the block; folders created for the lock file alone
    are removed with it (a start that fails leaves nothing behind)."""
    parent = lock_path(model_dir).parent
    created = [folder for folder in (parent, *parent.parents) if not folder.exists()]
    path = acquire(model_dir)
    try:
        yield path
    finally:
        release(path)
        for folder in created:  # deepest first; a folder the run filled stays
            with contextlib.suppress(OSError):
                folder.rmdir()
