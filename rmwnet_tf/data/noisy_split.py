"""The noisy split: the labels training sees, the optional subset, the meta split and the
normalisation statistics, all decided once, in numpy, before any pipeline is built.

Sources only deliver pixels and the labels that came with them, and pipelines only look
indices up, so every decision about which sample carries which label and which samples form
the meta set lives here, in one inspectable ``NoisyData``. Reproducibility: everything random
is a pure function of the seed; ``prepare`` uses numpy ``SeedSequence`` streams.
"""

from __future__ import annotations

import csv
import dataclasses
import pathlib

import numpy as np

from rmwnet_tf import noise as noise_lib
from rmwnet_tf.data.sources import ImageSource
from rmwnet_tf.datasets import TRAINING_PARTS

META_LABEL_KINDS = ("clean", "noisy", "none")

# numpy streams of ``prepare`` (the noise module uses spawn keys 0 and 1, the synthetic
# source 102).
_SUBSET_STREAM, _META_STREAM, _PART_STREAM, _FOLD_STREAM = 100, 101, 103, 104


@dataclasses.dataclass(eq=False)
class CachedFeatures:
    """A frozen backbone's features of every image a run looks at, computed once
    (rmwnet_tf/feature_cache.py): the pipelines then hand these to a head-only classifier.

    Only the source training samples the run uses (training and meta sets) have a row, so a
    small `--train_size` out of a large source costs only its own images.
    """

    rows: np.ndarray  # int32 [N_source_train]: row in `train` of each source sample; -1 if unused
    train: np.ndarray  # float32 [U, D]
    test: np.ndarray  # float32 [N_test, D]


@dataclasses.dataclass(eq=False)
class NoisyData:
    """Everything the pipelines need: pixels, the label table training sees, the split."""

    source: ImageSource
    given_labels: np.ndarray  # int32 [N], one per source training sample
    clean_labels: np.ndarray | None  # int32 [N]; None when unknown
    train_indices: np.ndarray  # int64 [N_train], into source.x_train
    meta_indices: np.ndarray  # int64 [M], into source.x_train
    meta_labels: np.ndarray  # int32 [M]
    mean: np.ndarray  # float32 [3], of training images scaled to [0, 1]
    std: np.ndarray  # float32 [3]
    noise_matrix: np.ndarray | None  # nominal [K,K] used for injection
    # A head-only run's frozen-backbone features: the classifier's input instead of the pixels.
    features: CachedFeatures | None = None
    # Cross-fitting: the training fold left out (--holdout_folds), predicted once at the end.
    heldout_indices: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))
    # Device copies of these arrays, made once by the pipelines (pipelines.cached_tensor) and
    # shared by every pipeline built from this object; this module stays free of TensorFlow.
    device_copies: dict = dataclasses.field(default_factory=dict, init=False, repr=False)

    @property
    def num_classes(self) -> int:
        return self.source.num_classes

    @property
    def is_noisy(self) -> np.ndarray | None:
        if self.clean_labels is None:
            return None
        return self.given_labels != self.clean_labels

    def describe(self) -> dict:
        """Sizes and realised noise, for logs and run summaries."""
        info = {
            "num_train": int(len(self.train_indices)),
            "num_meta": int(len(self.meta_indices)),
            "num_test": int(len(self.source.y_test)),
            "num_classes": self.num_classes,
        }
        if self.clean_labels is not None:
            info["train_noise_rate"] = noise_lib.realised_rate(
                self.clean_labels[self.train_indices], self.given_labels[self.train_indices]
            )
            if len(self.meta_indices):
                info["meta_noise_rate"] = noise_lib.realised_rate(
                    self.clean_labels[self.meta_indices], self.meta_labels
                )
        return info



def prepare(
    source: ImageSource,
    *,
    noise_type: str,
    noise_rate: float,
    seed: int,
    meta_size: int,
    meta_label_kind: str,
    noisy_labels_path=None,
    source_labels_are_clean: bool = True,
    train_size: int | None = None,
    hold_out_meta: bool = False,
    part: str = "all",
    part_seed: int = 0,
    clean_samples_only: bool = False,
    holdout_folds: int = 0,
    holdout_fold: int = 0,
) -> NoisyData:
    """Build the label table, the (optional) subset and the meta split.

    The meta set is class balanced by the clean labels when known, else by the given
    labels; ``meta_size % K`` leftover samples go to seeded-random classes, one each.
    ``meta_label_kind="none"`` means no meta set (the base method), whatever meta_size says,
    unless ``hold_out_meta``: then the meta split is made as for the meta methods (same
    samples, labels as given) and left out of training, so that a Base run trains on exactly
    the images a meta method trains on (comparisons need the same training set).

    ``part`` ("a" or "b") restricts everything (subset, meta set, training set) to one half of
    the source's training samples (`training_part`), so a run on b never sees an image a run on
    a trained on, e.g. a backbone pretrained on a and fine-tuned on b's noisy labels.
    ``clean_samples_only`` (the oracle) then drops the training samples whose given label is
    wrong, after the meta split, so it trains on the clean part of the same images.
    ``holdout_folds`` splits the training set that remains into that many folds (`holdout_split`)
    and trains on all but ``holdout_fold``, which becomes ``heldout_indices``: the runs of every
    fold of one seed share the noise, the meta split and the folds, so together they predict
    each training sample exactly once out of sample.

    Checked here: only what needs the data (sample and class counts; the noise rate against
    the class count, inside `noise.corrupt_labels`). The rules about the settings alone (meta
    set vs method, external labels vs synthetic noise, train_size vs meta_size, clean meta
    labels) live in `Config.problems`, which `train.run` applies before loading any data.
    """
    num_classes, num_samples = source.num_classes, len(source.y_train)
    # -- validate what depends on the data before any work --
    if meta_label_kind not in META_LABEL_KINDS:
        raise ValueError(f"meta_label_kind={meta_label_kind!r}; expected one of {META_LABEL_KINDS}")
    meta_size = 0 if meta_label_kind == "none" and not hold_out_meta else int(meta_size)
    if 0 < meta_size < num_classes:
        raise ValueError(
            f"meta_size={meta_size} is smaller than the {num_classes} classes; the class-balanced "
            f"meta set needs at least one sample per class (--meta_size >= {num_classes})"
        )
    if meta_size >= num_samples:
        raise ValueError(
            f"meta_size={meta_size} leaves no training samples out of {num_samples}"
        )
    pool = training_part(source.y_train, part, part_seed)
    if meta_size >= len(pool):
        raise ValueError(f"meta_size={meta_size} leaves no training samples out of the {len(pool)} of part {part}")
    if train_size is not None and train_size > len(pool):
        where = "source training samples" if part == "all" else f"training samples of part {part}"
        raise ValueError(f"train_size={train_size} exceeds the {len(pool)} {where}")

    # -- the label table: given labels for every source training sample, computed once --
    source_labels = np.asarray(source.y_train, np.int64)
    clean = source_labels if source_labels_are_clean else None
    external = noisy_labels_path is not None or source.given_train is not None
    if source.given_train is not None:  # labels that came with the images (CIFAR-N)
        given = np.asarray(source.given_train, np.int64)
        matrix = None
    elif noisy_labels_path is not None:
        given = load_label_file(noisy_labels_path, num_samples, num_classes)
        if clean is not None:
            check_agreement(given, clean, num_classes, noisy_labels_path)
        matrix = None
    else:
        given = noise_lib.corrupt_labels(source_labels, noise_type, noise_rate, num_classes, seed)
        matrix = None if noise_type == "none" else noise_lib.transition_matrix(
            noise_type, noise_rate, num_classes, seed
        )

    # -- subset, then the meta split out of it --
    if train_size is not None:
        pool = pool[_stratified_subset(source_labels[pool], train_size, _numpy_rng(seed, _SUBSET_STREAM))]
    balance_by = clean if clean is not None else given
    meta_rng = _numpy_rng(seed, _META_STREAM)
    meta = _balanced_meta(pool, balance_by[pool], meta_size, num_classes, meta_rng)
    train = np.setdiff1d(pool, meta).astype(np.int64)
    if clean_samples_only:
        if clean is None:
            raise ValueError("training on the clean samples only needs the clean labels")
        train = train[given[train] == clean[train]]
    heldout = np.zeros(0, np.int64)
    if holdout_folds:
        folds = holdout_split(given[train], holdout_folds, _numpy_rng(seed, _FOLD_STREAM))
        train, heldout = train[folds != holdout_fold], train[folds == holdout_fold]

    if meta_label_kind == "clean":
        meta_labels = clean[meta]
    elif meta_label_kind == "noisy" and not external:
        redrawn = noise_lib.corrupt_labels(
            source_labels, noise_type, noise_rate, num_classes, seed, draw=1
        )
        meta_labels = redrawn[meta]
    else:
        meta_labels = given[meta]

    mean, std = channel_stats(source.x_train, train)
    return NoisyData(
        source=source,
        given_labels=given.astype(np.int32),
        clean_labels=None if clean is None else clean.astype(np.int32),
        train_indices=train,
        meta_indices=meta,
        meta_labels=np.asarray(meta_labels, np.int32),
        mean=mean,
        std=std,
        noise_matrix=matrix,
        heldout_indices=heldout,
    )


def holdout_split(labels: np.ndarray, folds: int, rng) -> np.ndarray:
    """The fold (0 .. folds - 1) of each sample: within each label a seeded permutation dealt
    round-robin, so every fold holds each label's samples to within one."""
    assignment = np.empty(len(labels), np.int64)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        assignment[members] = np.arange(len(members)) % folds
    return assignment


def training_part(labels, part: str, part_seed: int) -> np.ndarray:
    """Source indices (sorted) of one half of the training set: "a", "b", or "all" of it.

    Each class is shuffled by `part_seed` alone and split in two (a takes the first
    floor(n_c / 2)), so the halves are disjoint, cover the set, keep the class frequencies, and
    are the same for every run seed: the pretraining run and every noisy run agree on them.
    """
    labels = np.asarray(labels)
    if part == "all":
        return np.arange(len(labels), dtype=np.int64)
    if part not in TRAINING_PARTS:
        raise ValueError(f"part must be one of {', '.join(TRAINING_PARTS)}, got {part!r}")
    rng = _numpy_rng(part_seed, _PART_STREAM)
    halves = {"a": [], "b": []}
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        halves["a"].append(members[: len(members) // 2])
        halves["b"].append(members[len(members) // 2:])
    return np.sort(np.concatenate(halves[part])).astype(np.int64)


def _numpy_rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream,)))


def _stratified_subset(labels: np.ndarray, size: int, rng) -> np.ndarray:
    """Per-class counts proportional to the source (largest remainder), members random."""
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * size / counts.sum()
    take = np.floor(exact).astype(np.int64)
    leftover = size - take.sum()
    take[np.argsort(-(exact - take), kind="stable")[:leftover]] += 1
    chosen = [
        rng.choice(np.flatnonzero(labels == c), n, replace=False) for c, n in zip(classes, take)
    ]
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def _balanced_meta(pool, pool_labels, meta_size: int, num_classes: int, rng) -> np.ndarray:
    if meta_size == 0:
        return np.zeros(0, np.int64)
    per_class = np.full(num_classes, meta_size // num_classes)
    per_class[rng.permutation(num_classes)[: meta_size % num_classes]] += 1
    chosen = []
    for c in range(num_classes):
        members = pool[pool_labels == c]
        if len(members) < per_class[c]:
            raise ValueError(
                f"class {c} has {len(members)} samples, fewer than the {per_class[c]} the "
                f"balanced meta set of meta_size={meta_size} needs"
            )
        chosen.append(rng.choice(members, per_class[c], replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def load_label_file(path, num_samples: int, num_classes: int) -> np.ndarray:
    """Read external labels: .npy int array, or .csv with one label per line or a 'label'
    column under a header. They must follow the source's training-sample order."""
    path = pathlib.Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"noisy labels file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            _check_npy_header(path, num_samples)
            labels = np.load(path, allow_pickle=False)
        except _LabelCountError:
            raise
        except (EOFError, ValueError, OSError) as error:  # empty, truncated, or not a .npy
            reason = " ".join(str(error).split()) or type(error).__name__
            raise ValueError(
                f"noisy labels file {str(path)!r} is not a readable .npy array ({reason}); "
                "write it with numpy.save(path, labels)"
            ) from None
    elif suffix == ".csv":
        labels = _read_label_csv(path)
    else:
        raise ValueError(f"noisy labels file {str(path)!r} must be .npy or .csv")
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"noisy labels in {str(path)!r} must be 1-D, got shape {labels.shape}")
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        if not np.issubdtype(labels.dtype, np.floating) or np.any(labels != np.round(labels)):
            raise ValueError(
                f"noisy labels in {str(path)!r} must be integers (dtype {labels.dtype})"
            )
    if len(labels) != num_samples:
        raise ValueError(
            f"noisy labels file {str(path)!r} has {len(labels)} labels but the source has "
            f"{num_samples} training samples"
        )
    labels = labels.astype(np.int64)
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        raise ValueError(
            f"noisy labels file {str(path)!r} has labels outside [0, {num_classes}), "
            f"e.g. {labels[bad[0]]} at row {bad[0]}"
        )
    return labels


def _check_npy_header(path: pathlib.Path, num_samples: int) -> None:
    """Read the .npy header alone and refuse a wrong label count before any memory is taken.

    Why: a header claiming 10^12 elements made `np.load` fail with a MemoryError that named
    no file. A header numpy cannot parse raises ValueError, reported by the caller."""
    with open(path, "rb") as handle:
        try:
            version = np.lib.format.read_magic(handle)
        except ValueError:
            return  # empty or not a .npy at all: np.load's own message says so
        if version == (1, 0):
            shape, _, _ = np.lib.format.read_array_header_1_0(handle)
        elif version == (2, 0):
            shape, _, _ = np.lib.format.read_array_header_2_0(handle)
        else:
            return  # a newer format: np.load reads (and checks) it
    if len(shape) == 1 and shape[0] != num_samples:
        raise _LabelCountError(
            f"noisy labels file {str(path)!r} has {shape[0]} labels but the source has "
            f"{num_samples} training samples"
        )


class _LabelCountError(ValueError):
    """The label count is wrong: reported as it is, not as an unreadable file."""


def check_agreement(given, clean, num_classes: int, path) -> None:
    """Stop when external labels cannot be labels of these samples in this order.

    Labels in another sample order (e.g. CIFAR-10N, in the official order, given to the image
    folder, which is ordered by class) pass every format check and train on noise. Two signs,
    with the clean labels known: agreement no better than chance (what independent labels
    with these class frequencies would reach, plus four standard deviations), or a clean class
    whose most frequent given label is another class (past the majority limit: nothing to
    learn). Either stops the run with the likely cause.
    """
    given, clean = np.asarray(given), np.asarray(clean)
    n = len(clean)
    if n == 0:
        return
    agreement = float(np.mean(given == clean))
    p_given = np.bincount(given, minlength=num_classes) / n
    p_clean = np.bincount(clean, minlength=num_classes) / n
    chance = float(np.sum(p_given * p_clean))
    margin = 4 * np.sqrt(max(chance * (1 - chance), 1e-12) / n)
    problem = None
    if agreement <= chance + margin:
        problem = f"agree with the source's labels on {agreement:.1%} of samples, about chance ({chance:.1%})"
    else:
        counts = np.zeros((num_classes, num_classes), np.int64)
        np.add.at(counts, (clean, given), 1)
        present = counts.sum(1) > 0
        wrong = np.flatnonzero(present & (counts.argmax(1) != np.arange(num_classes)))
        if wrong.size:
            problem = (f"give most samples of class {wrong[0]} another label ({len(wrong)} of "
                       f"{int(present.sum())} classes past the majority limit)")
    if problem:
        raise ValueError(
            f"noisy labels file {str(path)!r}: its labels {problem}; they are probably in another "
            "sample order than the source (the image folder orders by class, then file name); "
            "for labels in the official CIFAR order use rmwnet_tf.data.official_to_folder_order, "
            "or if the source's labels are not clean, add --nosource_labels_are_clean"
        )


def _read_label_csv(path: pathlib.Path) -> np.ndarray:
    # utf-8-sig: Excel writes a byte-order mark first, which would hide the 'label' header.
    with open(path, newline="", encoding="utf-8-sig") as handle:
        rows = [row for row in csv.reader(handle) if row and any(cell.strip() for cell in row)]
    if not rows:
        return np.zeros(0, np.int64)
    header = [cell.strip().lower() for cell in rows[0]]
    column = 0
    if not _is_number(header[0]):
        if "label" not in header:
            raise ValueError(
                f"noisy labels file {str(path)!r} has a header without a 'label' column"
            )
        column, rows = header.index("label"), rows[1:]
    try:
        return np.array([float(row[column]) for row in rows])
    except (ValueError, IndexError) as error:
        raise ValueError(f"noisy labels file {str(path)!r}: unreadable row ({error})") from None


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def official_to_folder_order(values, official_labels) -> np.ndarray:
    """Reorder per-image values given in the official CIFAR order into image-folder order.

    The offline copy names the k-th official image of class c ``train/<c>/k.jpg``, so the
    folder order (class, then k) is a stable sort of the official labels.
    """
    order = np.argsort(np.asarray(official_labels), kind="stable")
    return np.asarray(values)[order]


def channel_stats(images: np.ndarray, indices, chunk: int = 4096):
    """Per-channel mean/std of images scaled to [0, 1], accumulated in float64 chunks."""
    indices = np.asarray(indices)
    if indices.size == 0:
        raise ValueError("no training images to compute normalisation statistics from")
    total = np.zeros(3)
    total_sq = np.zeros(3)
    for start in range(0, len(indices), chunk):
        part = images[indices[start : start + chunk]].reshape(-1, 3).astype(np.float64) / 255.0
        total += part.sum(0)
        total_sq += np.square(part).sum(0)
    count = len(indices) * images.shape[1] * images.shape[2]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - np.square(mean), 0.0))
    return mean.astype(np.float32), np.maximum(std, 1e-3).astype(np.float32)
