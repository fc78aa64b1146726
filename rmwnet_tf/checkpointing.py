"""A run's checkpoints: keep the last few, resume from the newest good one, save on SIGTERM/Ctrl-C.

Why a module of its own: a cluster stops jobs with SIGTERM, users with Ctrl-C, and disks fill
up or truncate files. None of that should cost more than the steps since the last save, and
none of it should end in a raw traceback. Everything here works around keras ``Model.fit``
(callbacks and a list of fit segments), so the run loop itself only needs a few wiring lines.

Position of a checkpoint: the ``epoch`` variable counts completed epochs and the classifier
optimizer's ``iterations`` counts steps, so the step inside the current epoch is
``iterations - epoch * steps_per_epoch``; checkpoints are numbered by ``iterations``
(``ckpt-<global step>``). The data order and augmentation are pure functions of
(seed, epoch, step), so a run resumed mid-epoch replays exactly the batches an uninterrupted
run would have seen, and ends with bit-identical weights.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import re
import signal
import sys
import threading
import time

import keras
import tensorflow as tf
from absl import logging

from rmwnet_tf import errors

KEEP = 3  # checkpoints kept on disk: the newest, and older ones to fall back to
# Set by the command line: there a second Ctrl-C ends the process at once (exit 130), even inside
# a long step. Off for a library caller (a notebook's kernel must survive): a second Ctrl-C then
# raises KeyboardInterrupt once the step returns, as Python does.
SECOND_INTERRUPT_EXITS = False
_NAME = re.compile(r"^ckpt-(\d+)\.index$")


class NoUsableCheckpoint(ValueError):
    """Every checkpoint in the run's folder is unreadable (reported as one line by the CLI)."""


class Interrupted(Exception):
    """SIGTERM or SIGINT arrived during training; a checkpoint was saved and fit was left."""

    def __init__(self, signum: int, path: str, epoch: int, step: int, steps_per_epoch: int, during: str = ""):
        self.signum, self.path = signum, path
        self.exit_code = 128 + signum  # the shell's convention for "stopped by this signal"
        name = signal.Signals(signum).name
        where = (f"after epoch {epoch}" if step == 0 else
                 f"at step {step} of {steps_per_epoch} in epoch {epoch + 1}")
        if during:  # the training is complete and saved: what is left is only written again
            super().__init__(f"stopped by {name} during {during}: the training is complete and saved in "
                             f"{path}; run the same command again to write them")
            return
        super().__init__(
            f"stopped by {name}: saved checkpoint {path} ({where}); run the same command again "
            "to resume from it"
        )


def candidates(directory) -> list[str]:
    """Checkpoint prefixes found on disk (by their .index files), newest first.

    Scanning the folder, not TF's ``checkpoint`` state file, so a garbled or missing state
    file does not hide the checkpoints themselves."""
    directory = pathlib.Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), str(directory / f"ckpt-{m.group(1)}"))
             for m in map(_NAME.match, os.listdir(directory)) if m]
    return [prefix for _, prefix in sorted(found, reverse=True)]


def read_problem(prefix: str) -> str | None:
    """Why the checkpoint at ``prefix`` cannot be read, or None. Reads every tensor, so a
    truncated or garbled data file (checksums) or a missing one is found before any work."""
    try:
        reader = tf.train.load_checkpoint(prefix)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except Exception as error:  # TF raises OpError subclasses, ValueError, or plain errors
        return errors.described(error, limit=300, named=True)
    return None


class RunCheckpoints:
    """The checkpoints of one run folder.

    Create it before loading data: it reads every checkpoint in ``read_dir`` once and, if
    there are checkpoints but none is readable, stops at once (nothing else to resume from,
    and starting over would silently discard the run). Then ``attach`` the model's
    checkpoint, ``restore`` the newest good one and ``save`` (numbered by global step).
    """

    def __init__(self, read_dir, write_dir, keep: int = KEEP):
        self.read_dir, self.write_dir, self.keep = pathlib.Path(read_dir), pathlib.Path(write_dir), keep
        self.good, self.bad = [], []  # prefixes; (prefix, reason)
        for prefix in candidates(self.read_dir):
            problem = read_problem(prefix)
            if problem:
                self.bad.append((prefix, problem))
            else:
                self.good.append(prefix)
        if self.bad and not self.good:
            raise NoUsableCheckpoint(self._none_usable())
        self.manager = self.checkpoint = self.epoch_var = self.steps_per_epoch = None

    def _none_usable(self) -> str:
        details = "; ".join(f"{os.path.basename(p)}: {reason}" for p, reason in self.bad)
        return (f"no usable checkpoint in {self.read_dir} ({details}); move that folder aside to "
                "keep it, or rerun with --overwrite to start this run again from scratch")

    def attach(self, checkpoint: tf.train.Checkpoint, epoch_var, optimizer, steps_per_epoch: int):
        self.checkpoint, self.epoch_var, self.optimizer = checkpoint, epoch_var, optimizer
        self.steps_per_epoch = int(steps_per_epoch)
        try:
            self.manager = tf.train.CheckpointManager(checkpoint, str(self.write_dir), max_to_keep=self.keep)
        except Exception as error:  # a garbled `checkpoint` state file: it is only an index
            logging.warning("ignoring unreadable %s (%s)", self.write_dir / "checkpoint", errors.described(error, limit=300, named=True))
            (self.write_dir / "checkpoint").unlink()
            self.manager = tf.train.CheckpointManager(checkpoint, str(self.write_dir), max_to_keep=self.keep)
        return self

    def position(self) -> tuple[int, int]:
        """(completed epochs, step inside the next epoch) of the model's current state."""
        epoch = int(self.epoch_var.numpy())
        return epoch, int(self.optimizer.iterations.numpy()) - epoch * self.steps_per_epoch

    def restore(self) -> tuple[int, int]:
        """Restore the newest good checkpoint; return its position ((0, 0): none, fresh start).

        A bad newer checkpoint is named in a warning; the training after the one restored is
        simply done again (same batches, so the result is unchanged)."""
        bad = list(self.bad)
        for prefix in self.good:
            try:
                self.checkpoint.restore(prefix).assert_existing_objects_matched()
                epoch, step = self.position()
                if not 0 <= step < self.steps_per_epoch:
                    raise ValueError(f"its step count does not fit {self.steps_per_epoch} steps per epoch")
            except Exception as error:
                bad.append((prefix, errors.described(error, limit=300, named=True)))
                continue
            for bad_prefix, reason in bad:
                logging.warning(
                    "checkpoint %s.index is unusable (%s); resuming from the older %s (epoch %d, step %d): "
                    "the training after it is done again", bad_prefix, reason, prefix, epoch, step)
            logging.info("resumed from %s (epoch %d, step %d)", prefix, epoch, step)
            return epoch, step
        if bad:
            self.bad = bad
            raise NoUsableCheckpoint(self._none_usable())
        return 0, 0

    def save(self) -> str:
        return self.manager.save(checkpoint_number=int(self.optimizer.iterations.numpy()))


class SignalEcho:
    """Says at once that SIGTERM or Ctrl-C arrived, while the main thread is still inside a step.

    Why: Python runs a signal handler only between bytecodes of the main thread, and a train
    step is one call into TensorFlow (WRN-28-10 on CPU: ~100 s), so the handler, and any word
    from it, waited for the step to end; the silence invited the second Ctrl-C, which stops
    without saving. CPython's C-level handler writes the signal number to the wakeup fd at
    once, whatever the main thread is doing; a thread reads it and prints. With
    `SECOND_INTERRUPT_EXITS` (the command line) a second Ctrl-C ends the process from that
    thread at once, as the message promises.
    """

    def __init__(self, resume_hint: str):
        self.resume_hint, self.interrupts, self.acknowledged, self.acknowledged_at = resume_hint, 0, None, None
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)
        self._previous = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        threading.Thread(target=self._watch, name="signal-echo", daemon=True).start()

    def _watch(self):
        with open(self._read, "rb", buffering=0) as pipe:
            while chunk := pipe.read(64):
                for signum in chunk:
                    self._seen(signum)

    def _seen(self, signum: int):
        if signum not in (signal.SIGTERM, signal.SIGINT):
            return
        if signum == signal.SIGINT:
            self.interrupts += 1
        if self.interrupts >= 2 and SECOND_INTERRUPT_EXITS:
            print(f"error: stopped at once by a second Ctrl-C, without saving; {self.resume_hint}",
                  file=sys.stderr, flush=True)
            os._exit(128 + signal.SIGINT)
        if self.acknowledged is None:
            self.acknowledged, self.acknowledged_at = signal.Signals(signum).name, time.perf_counter()
            again = "now" if SECOND_INTERRUPT_EXITS else "after this step"
            print(f"{self.acknowledged}: stopping after this step, with a checkpoint; Ctrl-C again to stop "
                  f"{again} without saving", file=sys.stderr, flush=True)

    def close(self):
        signal.set_wakeup_fd(self._previous)
        os.close(self._write)  # the thread reads the end of the pipe and closes it


class StepCheckpoints(keras.callbacks.Callback):
    """Saves every ``every_steps`` steps, and on SIGTERM/SIGINT at the next step boundary.

    On a signal it saves, runs ``on_stop`` (e.g. closing the TensorBoard writer) and raises
    ``Interrupted`` out of fit, so no half epoch is evaluated or logged as finished. A stop
    asked for in the last step of an epoch, or during the evaluation after it, waits for that
    epoch's own checkpoint: the loop saves it and calls `stop_if_requested`, inside
    `installed()`, which keeps the signals caught between the per-epoch `fit` calls. A second
    signal acts as usual (Ctrl-C twice stops at once). Signals are only caught in the main thread.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, checkpoints: RunCheckpoints, *, every_steps: int = 0, catch_signals: bool = True,
                 on_stop=()):
        super().__init__()
        self.checkpoints, self.every_steps = checkpoints, int(every_steps)
        self.catch_signals, self.on_stop = catch_signals, list(on_stop)
        self.requested = None  # the signal number once one arrived
        self._previous = {}
        self._echo = None

    # -- signals
    def _handle(self, signum, frame):
        self.requested = signum
        signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))

    def _install(self):
        if not self.catch_signals or self._previous or threading.current_thread() is not threading.main_thread():
            return
        for signum in self.SIGNALS:
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._handle)
        self._echo = SignalEcho(f"the same command resumes from the newest checkpoint in {self.checkpoints.write_dir}")

    def _uninstall(self):
        for signum, previous in self._previous.items():
            if signal.getsignal(signum) == self._handle:
                signal.signal(signum, previous)
        self._previous = {}
        if self._echo is not None:
            self._echo.close()
            self._echo = None

    @contextlib.contextmanager
    def installed(self):
        """Catch the signals for the whole training loop, evaluations and saves included (the
        loop calls `fit` once per epoch, so fit's own begin/end hooks would leave gaps)."""
        self._install()
        self._managed = True
        try:
            yield self
        finally:
            self._managed = False
            self._uninstall()

    def stop_if_requested(self, path, during: str = "") -> None:
        """Call after the epoch's own checkpoint `path` is saved (or between the final outputs,
        `during` naming them): stop there if asked to."""
        if self.requested is not None:
            self._stop(path, during)

    # -- fit hooks
    def on_train_begin(self, logs=None):
        if not getattr(self, "_managed", False):
            self._install()

    def on_train_end(self, logs=None):
        if not getattr(self, "_managed", False):
            self._uninstall()

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.checkpoints.optimizer.iterations.numpy())
        if step % self.checkpoints.steps_per_epoch == 0:
            return  # an epoch end: the loop saves its checkpoint after the evaluation
        if self.requested is not None:
            self._stop(self.checkpoints.save())
        if self.every_steps and step % self.every_steps == 0:
            self.checkpoints.save()

    def _stop(self, path, during: str = ""):
        self._uninstall()
        for callback in self.on_stop:
            callback()
        epoch, step = self.checkpoints.position()
        raise Interrupted(self.requested, path, epoch, step, self.checkpoints.steps_per_epoch, during)
