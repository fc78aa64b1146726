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

Issue 36: two kinds of lock file could never be taken, so every start said "try again" forever.
A symbolic link there (to a file elsewhere, or dangling) is refused with what to do: the lock is
never read or written through a link. An empty or unreadable lock (a crash between creating the
file and writing its PID leaves one) is taken over with a warning naming it, once it is stale;
see `EMPTY_LOCK_GRACE_SECONDS` for why it is not at once.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import socket
import stat
import time

from absl import logging

from rmwnet_tf.errors import UserError

# How long a lock file may stay empty (or unreadable) before it is taken over. Why a wait at all:
# a start creates the file (O_EXCL) and writes its PID in the next statement, so a concurrent
# start may find it empty for a moment; taking that over would let both run. Why this long: that
# moment is microseconds, but a process on a loaded machine can be descheduled for a second or
# two between the two statements. The age is the file's mtime or, if that is in the future (a
# clock set back), how long this start has itself seen it empty; either way a lock left by a
# crash is taken over within these seconds, and one being written is never taken.
EMPTY_LOCK_GRACE_SECONDS = 5.0
_LOOK_AGAIN_SECONDS = 0.2


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


def _check_not_a_link(path: pathlib.Path, model_dir) -> os.stat_result | None:
    """The lock file's own status (a link not followed), or None if there is none; a link or
    anything else that is not a plain file is refused: never read, written or removed."""
    try:
        status = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(status.st_mode):
        raise UserError(
            f"--model_dir={model_dir}: its lock file {path} is a symbolic link (to {os.readlink(path)}); a lock is "
            f"never taken through a link: remove the link (rm {path}) and start again"
        )
    if not stat.S_ISREG(status.st_mode):
        raise UserError(
            f"--model_dir={model_dir}: its lock file {path} is not a file (a folder or a device?); remove it "
            "and start again"
        )
    return status


def _remove_if_unchanged(path: pathlib.Path, seen: os.stat_result) -> None:
    """Remove a stale lock only if it is still the file judged stale (same inode, time and size):
    a concurrent start may have taken it over and made a new one in between."""
    with contextlib.suppress(FileNotFoundError):
        now = os.lstat(path)
        if (now.st_ino, now.st_mtime_ns, now.st_size) == (seen.st_ino, seen.st_mtime_ns, seen.st_size):
            os.remove(path)


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
    first_seen_empty = None  # when this start first found the lock empty or unreadable
    deadline = time.monotonic() + EMPTY_LOCK_GRACE_SECONDS + 10.0
    while time.monotonic() < deadline:  # a stale lock is removed and the creation tried again
        _check_not_a_link(path, model_dir)
        try:  # O_EXCL fails on any existing name, a dangling link too; O_NOFOLLOW for good measure
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except FileExistsError:
            seen = _check_not_a_link(path, model_dir)
            if seen is None:
                continue  # released in between: try again
            pid, host = _holder(path)
            if pid is None:  # empty or unreadable: being written, or left by a crash
                first_seen_empty = first_seen_empty or time.monotonic()
                age = max(time.time() - seen.st_mtime, time.monotonic() - first_seen_empty)
                if age < EMPTY_LOCK_GRACE_SECONDS:
                    time.sleep(_LOOK_AGAIN_SECONDS)
                    continue
                logging.warning("taking over the lock file %s: it is empty or unreadable and %.0f s old (what a start "
                                "that crashed before writing its process id leaves)", path, age)
                _remove_if_unchanged(path, seen)
                continue
            same_host = host in ("", socket.gethostname())
            if same_host and (pid == os.getpid() or not _alive(pid)):
                _remove_if_unchanged(path, seen)  # stale: its process is gone (kill -9, a crash)
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
