"""Fingerprints of a run's inputs, recorded in config.json and checked when the run resumes.

Why: the settings alone do not pin the data. A labels file edited between a stop and the
resume (same path, other contents) resumed on mixed labels without a word: the realised noise
went from 0.247 to 0.366 halfway through the run. So config.json records, beside the settings
(under the key ``fingerprints``, so that comparing settings works as before), digests of what
was read: the --noisy_labels file, the image folder's file list and sizes (or the tfds
dataset's version), and the source's labels. A resume whose inputs differ is refused. A run
folder written before fingerprints existed has none to compare: it resumes, and records them.
"""

from __future__ import annotations

import hashlib

import numpy as np

from rmwnet_tf.errors import UserError

KEY = "fingerprints"  # in config.json


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()[:32]


def _file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return "sha256:" + digest.hexdigest()[:32]


def of_inputs(config, data) -> dict:
    """{input: digest} of what this run read."""
    source = data.source
    prints = {"source_labels": _sha256(np.ascontiguousarray(source.y_train, np.int64).tobytes())}
    if source.given_train is not None:
        prints["source_given_labels"] = _sha256(np.ascontiguousarray(source.given_train, np.int64).tobytes())
    if source.origin:
        prints["source"] = source.origin
    if config.noisy_labels:
        prints["noisy_labels"] = _file_sha256(config.noisy_labels)
    return prints


def _describe(key: str, config) -> str:
    return {
        "noisy_labels": f"the labels file --noisy_labels={config.noisy_labels} has other contents",
        "source": (f"the images in --data_dir={config.data_dir} are other files (names or sizes)" if config.data_dir
                   else f"the --dataset={config.dataset} copy is another version"),
        "source_labels": f"the labels of --dataset={config.dataset} differ",
        "source_given_labels": f"the --label_key={config.label_key} labels differ",
    }.get(key, key)


def check(saved: dict | None, now: dict, config) -> None:
    """Refuse to resume on inputs other than those the run started with."""
    if not saved:
        return  # a run folder from before fingerprints were recorded
    changed = [key for key in now if key in saved and saved[key] != now[key]]
    if changed:
        raise UserError(
            f"--model_dir={config.model_dir} was trained on other inputs: "
            f"{'; '.join(_describe(key, config) for key in changed)} since the run started. Put the original "
            "inputs back to resume it, or start again with --overwrite (or another --model_dir)"
        )
