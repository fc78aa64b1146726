"""The run's folder (--model_dir): usable before any work, never blocked by a failed start,
and nothing outside it ever touched.

Why: a folder that is a file, lies under a file or cannot be written used to fail with a raw
traceback after the data had been loaded; and a start that failed before training (no
network, a bad label file) left its config.json behind, so the next attempt with other data
flags was refused as "a different run" although nothing had been trained.

And (issue 22) ``--overwrite`` deleted whatever folder it was given: one holding other files,
the working directory itself for ``--model_dir=`` (empty), and it did so before the new start
had loaded its data, so a start that then failed lost the old run too. Now it only removes a
folder that is recognisably a run of this tool (its config.json), never a link, the working
directory or a folder above it, and only once the new run has loaded its data: until then the
old run waits beside it under a hidden name and is put back if the start fails. Outputs are
never written through a link: a link where an output belongs is refused.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import re
import shutil
import tempfile

from absl import logging

from rmwnet_tf.checkpointing import candidates
from rmwnet_tf.errors import UserError
from rmwnet_tf.files import write_text

# Everything a run writes in its folder (docs/outputs.md; README, "Outputs"): none of it may be a link.
OUTPUTS = ("config.json", "history.json", "results.json", "sample_scores.csv", "suspects.png", "pred_probs.npy",
           "given_labels.npy", "sample_index.npy", "checkpoints", "tensorboard", "selected", "export",
           "export_selected")
SAMPLE_FILES = ("sample_scores.csv", "pred_probs.npy", "given_labels.npy", "sample_index.npy")
EXPORTS = ("export", "export_selected")
# Leftovers of an interrupted write (kill -9): TF's checkpoint staging folders, and an export's.
_PARTIAL_SAVE = re.compile(r"^(ckpt-\d+|classifier)_temp")
_PARTIAL_EXPORT = re.compile(r"^(export|export_selected)\.(partial|old)-\d+$")


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


# ------------------------------------------------------------------------------------ outputs
def check_outputs(model_dir) -> None:
    """Refuse a link where an output belongs, and an export folder holding someone else's files,
    before any work: the run would write through the link into its target, or fail at the very
    end (after the training) on the export."""
    model_dir = pathlib.Path(model_dir)
    for name in OUTPUTS:
        path = model_dir / name
        if path.is_symlink():
            raise UserError(
                f"{path} is a symbolic link (to {os.readlink(path)}); the run writes its {name} there and "
                "never follows links: remove the link (the run folder is the place for its outputs)"
            )
    for name in EXPORTS:
        path = model_dir / name
        if path.is_dir() and any(path.iterdir()) and not (path / "saved_model.pb").exists():
            strangers = sorted(p.name for p in path.iterdir())[:3]
            raise UserError(
                f"{path} holds files that are not this run's SavedModel ({', '.join(strangers)}); the run "
                f"writes its {name} there: move them elsewhere"
            )


def remove_partial_writes(model_dir) -> None:
    """Delete what an interrupted write left (``checkpoints/ckpt-N_temp/``, a half-written
    export's staging folder): only this tool writes those names, and the run holds its lock."""
    model_dir = pathlib.Path(model_dir)
    for folder, pattern in ((model_dir / "checkpoints", _PARTIAL_SAVE), (model_dir / "selected", _PARTIAL_SAVE),
                            (model_dir, _PARTIAL_EXPORT)):
        if not folder.is_dir() or folder.is_symlink():
            continue
        for entry in folder.iterdir():
            if pattern.match(entry.name):
                logging.info("removing %s, left by an interrupted write", entry)
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()


def export_complete(path) -> bool:
    path = pathlib.Path(path)
    return (path / "saved_model.pb").is_file() and (path / "variables" / "variables.index").is_file()


def missing_outputs(model_dir, config, results: dict) -> list[str]:
    """The outputs a finished run should have and does not (deleted, or cut short by an
    interruption during the final writes of an earlier version): rebuilt from its checkpoint."""
    model_dir = pathlib.Path(model_dir)
    missing = [name for name in SAMPLE_FILES + (("suspects.png",) if config.suspects else ())
               if not (model_dir / name).is_file() or not (model_dir / name).stat().st_size]
    if config.export:
        if not export_complete(model_dir / "export"):
            missing.append("export/")
        selected_epoch, saved = (results.get("selected") or {}).get("epoch"), model_dir / "selected" / "epoch"
        if (selected_epoch is not None and saved.is_file() and saved.read_text() == str(selected_epoch)
                and not export_complete(model_dir / "export_selected")):
            missing.append("export_selected/")
    return missing


def repair_history(model_dir, results: dict) -> None:
    """Rewrite a finished run's history.json from the copy its results.json carries, if the file
    is missing or not readable JSON (cut short by a full disk or an edit), with a warning naming it.

    Why: a rerun of a finished run reads results.json only, so a history.json cut in half stayed
    so while the rerun ended with `done:`; the rebuild of missing outputs did not cover it. The
    copy in results.json is the history itself (both are written from the same rows, results.json
    last), so nothing is guessed. A readable history.json is left as it is."""
    path = pathlib.Path(model_dir) / "history.json"
    try:
        json.loads(path.read_text())
        return
    except FileNotFoundError:
        problem = "missing"
    except (ValueError, UnicodeDecodeError):
        problem = "not readable JSON (cut short or edited)"
    history = results.get("history")
    if not isinstance(history, list):
        raise UserError(
            f"{path} is {problem}, and {path.parent / 'results.json'} holds no copy of the history to rebuild it "
            "from: restore it, or move the run folder aside (or rerun with --overwrite) to start this run again"
        )
    logging.warning("%s was %s; rewritten from the history of %d epoch%s that results.json holds", path, problem,
                    len(history), "" if len(history) == 1 else "s")
    write_text(path, json.dumps(history, indent=2))


# ------------------------------------------------------------------------------------ --overwrite
def _aside_names(model_dir: pathlib.Path, kind: str) -> list[pathlib.Path]:
    parent, name = model_dir.parent, model_dir.name
    if not parent.is_dir():
        return []
    return sorted(p for p in parent.iterdir() if p.name.startswith(f".{name}.{kind}-"))


def overwrite_problem(model_dir) -> str | None:
    """Why ``--overwrite`` must not remove ``model_dir``, or None."""
    text = str(model_dir)
    if not text.strip():
        return "--model_dir is empty"
    path = pathlib.Path(model_dir)
    if path.is_symlink():
        return (f"--model_dir={text} is a symbolic link (to {os.readlink(path)}); --overwrite never removes "
                "what a link points to: give the folder itself")
    resolved, here = path.resolve(), pathlib.Path.cwd().resolve()
    if resolved == here or resolved in here.parents:
        return (f"--model_dir={text} is {'the working directory' if resolved == here else 'a folder above the working directory'}"
                f" ({resolved}); --overwrite never removes it: give the run's own folder")
    if path.is_dir() and any(path.iterdir()) and not (path / "config.json").is_file():
        found = ", ".join(sorted(p.name for p in path.iterdir())[:3])
        return (f"--model_dir={text} is not a run folder of this tool (no config.json; it holds {found}); "
                "--overwrite only removes a run: choose another --model_dir, or empty that folder yourself")
    return None


def check_overwrite(model_dir) -> None:
    problem = overwrite_problem(model_dir)
    if problem:
        raise UserError(problem)


class Replaced:
    """An old run moved aside by --overwrite: deleted by `discard` (once the new run has loaded
    its data), put back by `restore` (the start failed before that)."""

    def __init__(self, model_dir: pathlib.Path, aside: pathlib.Path | None):
        self.model_dir, self.aside = model_dir, aside

    def discard(self) -> None:
        if self.aside is None:
            return
        doomed = self.aside.with_name(self.aside.name.replace(".overwritten-", ".deleting-", 1))
        os.rename(self.aside, doomed)  # a kill -9 inside rmtree leaves a name that is only ever deleted
        self.aside = None
        shutil.rmtree(doomed)
        logging.info("--overwrite: the earlier run in %s is deleted", self.model_dir)

    def restore(self) -> None:
        if self.aside is None:
            return
        _put_back(self.aside, self.model_dir)
        self.aside = None


def _put_back(aside: pathlib.Path, model_dir: pathlib.Path) -> None:
    with contextlib.suppress(OSError):
        model_dir.rmdir()  # an empty folder a failed start left; anything else stays and is reported
    if model_dir.exists():
        logging.warning("the earlier run replaced by --overwrite is kept in %s (%s is not empty)", aside, model_dir)
        return
    os.rename(aside, model_dir)


def recover_interrupted_overwrite(model_dir) -> None:
    """A start with --overwrite killed (kill -9, power) before its data loaded left the old run
    under a hidden name beside the folder: put it back; one killed while deleting it: finish."""
    model_dir = pathlib.Path(model_dir)
    for doomed in _aside_names(model_dir, "deleting"):
        shutil.rmtree(doomed, ignore_errors=True)
    for aside in _aside_names(model_dir, "overwritten"):
        logging.warning("an interrupted --overwrite start left the earlier run in %s; putting it back", aside)
        _put_back(aside, model_dir)


@contextlib.contextmanager
def overwriting(model_dir, overwrite: bool):
    """With --overwrite, move the run in ``model_dir`` aside for the block (refusing anything
    that is not a run); yields a `Replaced`. If the block fails before `discard`, the old run
    is put back. Call with the run's lock held."""
    model_dir = pathlib.Path(model_dir)
    recover_interrupted_overwrite(model_dir)
    aside = None
    if overwrite:
        check_overwrite(model_dir)
        if model_dir.is_dir() and any(model_dir.iterdir()):
            aside = pathlib.Path(tempfile.mkdtemp(prefix=f".{model_dir.name}.overwritten-", dir=model_dir.parent))
            os.rename(model_dir, aside)  # onto the empty folder just made: atomic, same file system
    replaced = Replaced(model_dir, aside)
    try:
        yield replaced
    finally:
        replaced.restore()
