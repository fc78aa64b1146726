"""Image sources, the noisy-label table, the meta split, and the tf.data pipelines.

Data flows one way: ``load_source`` (pixels + the labels that came with them) ->
``prepare`` (the labels training sees, the meta split, normalisation) -> ``train_dataset`` /
``meta_dataset`` / ``test_dataset`` / ``train_eval_dataset`` (batches).

Reproducibility: everything random is a pure function of a seed. ``prepare`` uses numpy
``SeedSequence`` streams; the pipelines use stateless TF ops keyed by
(seed, stream, epoch or step), so a resumed run sees exactly the batches an uninterrupted
run would have seen, whatever the parallelism.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
import pathlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import tensorflow as tf

from rmwnet_tf import noise as noise_lib

SOURCES = ("cifar10", "cifar100", "image_folder", "synthetic")
META_LABEL_KINDS = ("clean", "noisy", "none")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
CACHE_ENV_VAR = "RMWNET_CACHE_DIR"
DEFAULT_CACHE_DIR = "~/.cache/rmwnet_tf"
AUGMENT_PAD = 4

# numpy streams of ``prepare`` (the noise module uses spawn keys 0 and 1).
_SUBSET_STREAM, _META_STREAM, _SYNTH_STREAM = 100, 101, 102
# TF stateless streams of the pipelines.
_TRAIN_ORDER, _TRAIN_AUGMENT, _META_ORDER, _META_AUGMENT = 1, 2, 3, 4


# ----------------------------------------------------------------------------------------
# Sources
# ----------------------------------------------------------------------------------------


@dataclasses.dataclass(eq=False)
class ImageSource:
    """Pixels and the labels that came with them (uint8 [N,S,S,3], int64 [N])."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list

    def __post_init__(self):
        """Catch hand-built sources that would fail far away, inside a tf.data graph."""
        for split, images, labels in (("train", self.x_train, self.y_train),
                                      ("test", self.x_test, self.y_test)):
            if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
                raise ValueError(
                    f"x_{split} must be uint8 [N,H,W,3], got {images.dtype} {images.shape}"
                )
            if labels.shape != (len(images),):
                raise ValueError(
                    f"y_{split} {labels.shape} does not match x_{split} {images.shape}"
                )
            if labels.size and (labels.min() < 0 or labels.max() >= len(self.class_names)):
                raise ValueError(f"y_{split} has labels outside [0, {len(self.class_names)})")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def load_source(
    name: str,
    *,
    data_dir=None,
    tfds_data_dir=None,
    image_size: int = 32,
    class_names=None,
    synthetic_train_size: int = 4000,
    synthetic_test_size: int = 1000,
    synthetic_num_classes: int = 10,
    seed: int = 0,
    cache_dir="auto",
) -> ImageSource:
    """Load a source as 3-channel uint8 images of ``image_size`` x ``image_size``.

    ``cache_dir`` only matters for ``image_folder``: "auto" caches decoded arrays under
    ``$RMWNET_CACHE_DIR`` or ``~/.cache/rmwnet_tf``; None disables the cache.
    """
    if name in ("cifar10", "cifar100"):
        return _load_tfds(name, tfds_data_dir, image_size)
    if name == "image_folder":
        if data_dir is None:
            raise ValueError(
                "dataset 'image_folder' needs --data_dir=<folder with train/ and test/>"
            )
        return load_image_folder(
            data_dir, image_size=image_size, class_names=class_names, cache_dir=cache_dir
        )
    if name == "synthetic":
        return make_synthetic(
            synthetic_train_size,
            synthetic_test_size,
            num_classes=synthetic_num_classes,
            image_size=image_size,
            seed=seed,
        )
    raise ValueError(f"unknown dataset {name!r}; expected one of {SOURCES}")


def _load_tfds(name: str, tfds_data_dir, image_size: int) -> ImageSource:
    import tensorflow_datasets as tfds  # slow import; only this source needs it

    try:
        (train, test), info = tfds.load(
            name,
            split=["train", "test"],
            data_dir=tfds_data_dir,
            batch_size=-1,
            as_supervised=True,
            with_info=True,
        )
    except Exception as error:  # tfds raises many types when it cannot download
        raise RuntimeError(
            f"could not load {name!r} with tensorflow_datasets (data_dir={tfds_data_dir!r}): "
            f"{type(error).__name__}: {error}. If this machine has no internet, prepare the "
            "dataset elsewhere and pass --tfds_data_dir, or use the offline image-folder "
            "source: --dataset=image_folder --data_dir=<folder with train/ and test/> "
            "(see README, 'Offline CIFAR-10')."
        ) from error
    (x_train, y_train), (x_test, y_test) = tfds.as_numpy(train), tfds.as_numpy(test)
    return ImageSource(
        x_train=_to_rgb_size(x_train, image_size),
        y_train=np.asarray(y_train, np.int64),
        x_test=_to_rgb_size(x_test, image_size),
        y_test=np.asarray(y_test, np.int64),
        class_names=list(info.features["label"].names),
    )


def _to_rgb_size(images: np.ndarray, size: int, chunk: int = 2048) -> np.ndarray:
    """Bring a uniform uint8 stack [N,H,W,C] to [N,size,size,3]."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    images = images[..., :3]
    if images.shape[1:3] == (size, size):
        return np.ascontiguousarray(images, np.uint8)
    parts = [
        _resize_uint8(images[i : i + chunk], size).numpy() for i in range(0, len(images), chunk)
    ]
    return np.concatenate(parts) if parts else np.zeros((0, size, size, 3), np.uint8)


def _resize_uint8(images, size: int):
    """Antialiased bilinear resize, rounded back to uint8; returns a tensor."""
    resized = tf.image.resize(images, [size, size], antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)


# -- image folder -------------------------------------------------------------------------


def load_image_folder(data_dir, *, image_size: int = 32, class_names=None, cache_dir="auto"):
    """Load ``<data_dir>/train/<class>/*`` and ``<data_dir>/test/<class>/*``.

    Class index = position in ``class_names`` if given, else in the sorted folder names of
    train/. Sample order = class order, then file name (plain string sort), so per-sample
    side data (e.g. external noisy labels) must follow that order; zero-padded file names
    keep it equal to numeric order. Files with other extensions and hidden files are ignored.
    """
    root = pathlib.Path(data_dir).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {str(root)!r} does not exist")
    for split in ("train", "test"):
        if not (root / split).is_dir():
            raise FileNotFoundError(
                f"image folder {str(root)!r} has no {split}/ subfolder "
                "(expected <data_dir>/train/<class>/*.jpg and <data_dir>/test/<class>/*.jpg)"
            )
    names = _class_names(root / "train", class_names)
    train_files, train_labels = _list_split(root / "train", names, require_every_class=True)
    test_files, test_labels = _list_split(root / "test", names, require_every_class=False)

    cache_path = _cache_path(cache_dir, root, image_size, names, train_files + test_files)
    if cache_path is not None and cache_path.is_file():
        with np.load(cache_path, allow_pickle=False) as cached:
            return ImageSource(
                cached["x_train"], cached["y_train"], cached["x_test"], cached["y_test"], names
            )
    source = ImageSource(
        x_train=decode_images(train_files, image_size),
        y_train=np.asarray(train_labels, np.int64),
        x_test=decode_images(test_files, image_size),
        y_test=np.asarray(test_labels, np.int64),
        class_names=names,
    )
    if cache_path is not None:
        _write_cache(cache_path, source)
    return source


def _class_names(train_dir: pathlib.Path, explicit) -> list:
    found = _subfolders(train_dir)
    if not found:
        raise ValueError(f"{str(train_dir)!r} has no class folders")
    if explicit is None:
        return found
    explicit = [str(c) for c in explicit]
    if len(set(explicit)) != len(explicit):
        raise ValueError(f"class_names has duplicates: {explicit}")
    unlisted = sorted(set(found) - set(explicit))
    if unlisted:
        raise ValueError(f"class folders {unlisted} in {str(train_dir)!r} are not in class_names")
    return explicit


def _subfolders(folder: pathlib.Path) -> list:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _list_split(split_dir: pathlib.Path, names: list, *, require_every_class: bool):
    folders = _subfolders(split_dir)
    unknown = sorted(set(folders) - set(names))
    if unknown:
        raise ValueError(
            f"class folders {unknown} in {str(split_dir)!r} are not training classes {names}"
        )
    files, labels = [], []
    for index, name in enumerate(names):
        folder = split_dir / name
        if not folder.is_dir():
            if require_every_class:
                raise FileNotFoundError(f"class {name!r} has no folder {str(folder)!r}")
            continue
        images = sorted(
            entry.path
            for entry in os.scandir(folder)
            if entry.is_file()
            and not entry.name.startswith(".")
            and entry.name.lower().endswith(IMAGE_EXTENSIONS)
        )
        if not images:
            raise ValueError(
                f"class folder {str(folder)!r} contains no images ({'/'.join(IMAGE_EXTENSIONS)})"
            )
        files += images
        labels += [index] * len(images)
    if not files:
        raise ValueError(f"{str(split_dir)!r} contains no images")
    return files, labels


def decode_images(paths, image_size: int) -> np.ndarray:
    """Decode image files to uint8 [N,S,S,3], resizing those of another size.

    Fast path: TF decoders in a parallel tf.data map over batches (JPEG with the accurate
    DCT, so pixels equal PIL's). Any file TF rejects sends the whole call through PIL,
    which either copes or names the offending file.
    """
    if not paths:
        return np.zeros((0, image_size, image_size, 3), np.uint8)
    try:
        return _decode_with_tf(paths, image_size)
    except tf.errors.OpError:
        return _decode_with_pil(paths, image_size)


def _decode_one(path, size: int):
    raw = tf.io.read_file(path)
    image = tf.cond(
        tf.io.is_jpeg(raw),
        lambda: tf.io.decode_jpeg(raw, channels=3, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_image(raw, channels=3, expand_animations=False),
    )
    shape = tf.shape(image)
    same_size = tf.logical_and(tf.equal(shape[0], size), tf.equal(shape[1], size))
    image = tf.cond(same_size, lambda: image, lambda: _resize_uint8(image, size))
    return tf.ensure_shape(image, [size, size, 3])


def _decode_with_tf(paths, size: int, batch: int = 256) -> np.ndarray:
    spec = tf.TensorSpec([size, size, 3], tf.uint8)

    def decode_chunk(chunk):
        return tf.map_fn(lambda path: _decode_one(path, size), chunk, fn_output_signature=spec)

    decoded = (
        tf.data.Dataset.from_tensor_slices(list(paths))
        .batch(batch)
        .map(decode_chunk, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    )
    return np.concatenate([images.numpy() for images in decoded])


def _decode_with_pil(paths, size: int) -> np.ndarray:
    from PIL import Image

    def decode(path):
        try:
            with Image.open(path) as image:
                pixels = np.asarray(image.convert("RGB"))
        except Exception as error:
            raise ValueError(f"cannot decode image file {path!r}: {error}") from error
        if pixels.shape[:2] != (size, size):
            pixels = _resize_uint8(tf.constant(pixels), size).numpy()
        return pixels

    with ThreadPoolExecutor(max_workers=4) as pool:
        return np.stack(list(pool.map(decode, paths)))


def _cache_path(cache_dir, root, image_size, names, files):
    """The cache file is named by everything the decoded arrays depend on, so a changed,
    added or removed file (size or mtime) simply misses the cache."""
    if cache_dir is None or cache_dir is False:
        return None
    if cache_dir == "auto":
        cache_dir = os.environ.get(CACHE_ENV_VAR, DEFAULT_CACHE_DIR)
    digest = hashlib.sha256()
    digest.update(json.dumps(["v1", str(root.resolve()), image_size, names]).encode())
    for path in files:
        stat = os.stat(path)
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return pathlib.Path(cache_dir).expanduser() / f"image_folder-{digest.hexdigest()[:24]}.npz"


def _write_cache(path: pathlib.Path, source: ImageSource) -> None:
    """Write atomically (rename) so a crash or a concurrent run never sees half a file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(
            partial,
            x_train=source.x_train,
            y_train=source.y_train,
            x_test=source.x_test,
            y_test=source.y_test,
        )
        os.replace(partial, path)
    except OSError:
        pass  # a cache that cannot be written only costs time


# -- synthetic ----------------------------------------------------------------------------


def make_synthetic(
    train_size: int = 4000,
    test_size: int = 1000,
    *,
    num_classes: int = 10,
    image_size: int = 32,
    seed: int = 0,
) -> ImageSource:
    """A learnable stand-in for CIFAR that needs no files.

    Each class is a smooth periodic colour pattern (a base colour plus a few plane waves).
    Every image is its class pattern circularly shifted, with random contrast and
    brightness, blended with another class's pattern and covered in pixel noise: a small
    CNN learns it within a minute or two, but not in one step.
    """
    if num_classes < 2 or train_size < 1 or test_size < 1:
        raise ValueError("synthetic data needs num_classes >= 2 and positive sizes")
    proto_rng, train_rng, test_rng = (
        np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_SYNTH_STREAM, i)))
        for i in range(3)
    )
    patterns = _class_patterns(proto_rng, num_classes, image_size)
    x_train, y_train = _draw_synthetic(train_rng, patterns, train_size)
    x_test, y_test = _draw_synthetic(test_rng, patterns, test_size)
    names = [f"class_{c}" for c in range(num_classes)]
    return ImageSource(x_train, y_train, x_test, y_test, names)


def _class_patterns(rng, num_classes: int, size: int) -> np.ndarray:
    grid = np.arange(size, dtype=np.float32) / size
    rows, cols = np.meshgrid(grid, grid, indexing="ij")
    patterns = np.empty((num_classes, size, size, 3), np.float32)
    for c in range(num_classes):
        pattern = np.broadcast_to(rng.uniform(0.3, 0.7, 3), (size, size, 3)).copy()
        for _ in range(3):
            freq_r, freq_c = rng.integers(-3, 4, size=2)  # integer: periodic, survives shifts
            wave = np.cos(2 * np.pi * (freq_r * rows + freq_c * cols) + rng.uniform(0, 2 * np.pi))
            pattern += wave[..., None] * rng.uniform(-0.2, 0.2, 3)
        patterns[c] = pattern
    return patterns


def _draw_synthetic(rng, patterns: np.ndarray, count: int):
    num_classes, size = patterns.shape[0], patterns.shape[1]
    labels = rng.permutation(np.arange(count) % num_classes).astype(np.int64)
    distractors = (labels + rng.integers(1, num_classes, count)) % num_classes
    images = np.empty((count, size, size, 3), np.uint8)
    for start in range(0, count, 512):
        part = slice(start, min(start + 512, count))
        n = part.stop - part.start
        base = _random_circular_shift(rng, patterns[labels[part]])
        other = _random_circular_shift(rng, patterns[distractors[part]])
        blend = rng.uniform(0.0, 0.45, (n, 1, 1, 1)).astype(np.float32)
        contrast = rng.uniform(0.6, 1.4, (n, 1, 1, 1)).astype(np.float32)
        brightness = rng.normal(0.0, 0.08, (n, 1, 1, 1)).astype(np.float32)
        mixed = (1 - blend) * base + blend * other
        mixed = (mixed - 0.5) * contrast + 0.5 + brightness
        mixed += rng.normal(0.0, 0.12, mixed.shape).astype(np.float32)
        images[part] = np.clip(np.round(mixed * 255), 0, 255).astype(np.uint8)
    return images, labels


def _random_circular_shift(rng, images: np.ndarray) -> np.ndarray:
    count, size = images.shape[0], images.shape[1]
    shift = rng.integers(0, size, (2, count, 1))
    rows, cols = (np.arange(size) + shift[0]) % size, (np.arange(size) + shift[1]) % size
    return images[np.arange(count)[:, None, None], rows[:, :, None], cols[:, None, :]]


# ----------------------------------------------------------------------------------------
# Noisy labels and the meta split
# ----------------------------------------------------------------------------------------


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
    _tensors: dict = dataclasses.field(default_factory=dict, init=False, repr=False)

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

    def _tensor(self, name: str, build):
        """One device copy per array, shared by all pipelines built from this object."""
        if name not in self._tensors:
            self._tensors[name] = tf.constant(build())
        return self._tensors[name]


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
) -> NoisyData:
    """Build the label table, the (optional) subset and the meta split.

    The meta set is class balanced by the clean labels when known, else by the given
    labels; ``meta_size % K`` leftover samples go to seeded-random classes, one each.
    ``meta_label_kind="none"`` means no meta set (the base method), whatever meta_size says.
    """
    num_classes, num_samples = source.num_classes, len(source.y_train)
    # -- validate everything before any work --
    noise_lib.validate_noise(noise_type, noise_rate, num_classes)
    if meta_label_kind not in META_LABEL_KINDS:
        raise ValueError(f"meta_label_kind={meta_label_kind!r}; expected one of {META_LABEL_KINDS}")
    if noisy_labels_path is not None and noise_type != "none":
        raise ValueError(
            f"noisy_labels_path={str(noisy_labels_path)!r} replaces synthetic noise, so "
            f"noise_type must be 'none' (got noise_type={noise_type!r})"
        )
    meta_size = 0 if meta_label_kind == "none" else int(meta_size)
    if meta_size < 0:
        raise ValueError(f"meta_size must be >= 0, got {meta_size}")
    if meta_label_kind != "none" and meta_size == 0:
        raise ValueError(f"meta_label_kind={meta_label_kind!r} needs meta_size > 0")
    if meta_label_kind == "clean" and not source_labels_are_clean:
        raise ValueError(
            "meta_label_kind='clean' needs clean labels, but source_labels_are_clean=False"
        )
    if meta_size >= num_samples:
        raise ValueError(
            f"meta_size={meta_size} leaves no training samples out of {num_samples}"
        )
    if train_size is not None and not meta_size < train_size <= num_samples:
        raise ValueError(
            f"train_size={train_size} must exceed meta_size={meta_size} and be at most the "
            f"{num_samples} source training samples"
        )

    # -- the label table: given labels for every source training sample, computed once --
    source_labels = np.asarray(source.y_train, np.int64)
    clean = source_labels if source_labels_are_clean else None
    if noisy_labels_path is not None:
        given = load_label_file(noisy_labels_path, num_samples, num_classes)
        matrix = None
    else:
        given = noise_lib.corrupt_labels(source_labels, noise_type, noise_rate, num_classes, seed)
        matrix = None if noise_type == "none" else noise_lib.transition_matrix(
            noise_type, noise_rate, num_classes, seed
        )

    # -- subset, then the meta split out of it --
    pool = np.arange(num_samples, dtype=np.int64)
    if train_size is not None:
        pool = _stratified_subset(source_labels, train_size, _numpy_rng(seed, _SUBSET_STREAM))
    balance_by = clean if clean is not None else given
    meta_rng = _numpy_rng(seed, _META_STREAM)
    meta = _balanced_meta(pool, balance_by[pool], meta_size, num_classes, meta_rng)
    train = np.setdiff1d(pool, meta).astype(np.int64)

    if meta_label_kind == "clean":
        meta_labels = clean[meta]
    elif meta_label_kind == "noisy" and noisy_labels_path is None:
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
    )


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
        labels = np.load(path, allow_pickle=False)
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


def _read_label_csv(path: pathlib.Path) -> np.ndarray:
    with open(path, newline="") as handle:
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


# ----------------------------------------------------------------------------------------
# tf.data building blocks (each usable eagerly and inside a pipeline)
# ----------------------------------------------------------------------------------------


def stream_key(seed, stream, *counters):
    """A stateless-op seed [2] int64 for (seed, stream, counters...): independent streams
    that need no state, so parallel and resumed pipelines agree."""
    key = tf.stack([tf.cast(seed, tf.int64), tf.cast(stream, tf.int64)])
    for counter in counters:
        key = tf.random.experimental.stateless_fold_in(key, tf.cast(counter, tf.int64))
    return key


def epoch_order(num_items: int, key):
    """A permutation of range(num_items), a pure function of ``key``."""
    return tf.random.experimental.stateless_shuffle(tf.range(num_items, dtype=tf.int64), seed=key)


def random_crop_flip(images, key, pad: int = AUGMENT_PAD):
    """Reflect-pad by ``pad``, random crop back to H x W, random horizontal flip: drawn per
    example from ``key``. A uint8 (or any dtype) batch [B,H,W,C] in, same shape out."""
    images = tf.convert_to_tensor(images)
    return gather_crop_flip(images, tf.range(tf.shape(images)[0]), key, pad)


def gather_crop_flip(table, index, key, pad: int = AUGMENT_PAD):
    """``random_crop_flip(tf.gather(table, index), key)`` as one gather.

    Padding, cropping and flipping only move pixels, so each output pixel's source pixel
    is computed (reflection folded into the index) and fetched with a single gather from
    the flattened table: measured ~4x faster than pad + batched gathers and faster than a
    per-example map (scripts/benchmark_input.py), while every example still gets its own
    crop and flip.
    """
    table = tf.convert_to_tensor(table)
    index = tf.cast(index, tf.int32)
    height, width, channels = tf.shape(table)[1], tf.shape(table)[2], tf.shape(table)[3]
    draws = tf.random.stateless_uniform(
        [3, tf.shape(index)[0]], seed=key, minval=0, maxval=2**30, dtype=tf.int32
    )
    top = draws[0] % (2 * pad + 1) - pad
    left = draws[1] % (2 * pad + 1) - pad
    flip = tf.equal(draws[2] % 2, 1)
    rows = _reflect(top[:, None] + tf.range(height)[None, :], height)
    cols = tf.range(width)[None, :]
    cols = _reflect(left[:, None] + tf.where(flip[:, None], width - 1 - cols, cols), width)
    # int64: tables of more than 2**31 pixels exist (e.g. 1M images of 64x64)
    rows, cols = tf.cast(rows, tf.int64), tf.cast(cols, tf.int64)
    height, width = tf.cast(height, tf.int64), tf.cast(width, tf.int64)
    image_row = tf.cast(index, tf.int64)[:, None, None] * height + rows[:, :, None]
    pixel = image_row * width + cols[:, None, :]
    return tf.gather(tf.reshape(table, [-1, channels]), pixel)


def _reflect(position, size):
    """Mirror positions outside [0, size) back inside, edge excluded (like pad REFLECT)."""
    return (size - 1) - tf.abs((size - 1) - tf.abs(position))


def normalize(images, mean, std):
    """uint8 -> float32 scaled to [0, 1], then standardised per channel (one multiply-add)."""
    scale = 1.0 / (255.0 * np.asarray(std, np.float64))
    offset = -np.asarray(mean, np.float64) / np.asarray(std, np.float64)
    scale, offset = tf.constant(scale, tf.float32), tf.constant(offset, tf.float32)
    return tf.cast(images, tf.float32) * scale + offset


def _finish(dataset: tf.data.Dataset, make_batch) -> tf.data.Dataset:
    """Parallel, order-preserving map; with stateless keys the output is reproducible."""
    dataset = dataset.map(make_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    options = tf.data.Options()
    options.deterministic = True
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)


def _tables(data: NoisyData):
    """(images, given labels, clean labels or -1) as tensors shared by all pipelines."""
    images = data._tensor("x_train", lambda: data.source.x_train)
    given = data._tensor("given", lambda: data.given_labels.astype(np.int32))
    if data.clean_labels is None:
        clean = data._tensor("clean", lambda: np.full(len(data.given_labels), -1, np.int32))
    else:
        clean = data._tensor("clean", lambda: data.clean_labels.astype(np.int32))
    return images, given, clean


# ----------------------------------------------------------------------------------------
# Pipelines
# ----------------------------------------------------------------------------------------


def steps_per_epoch(data: NoisyData, batch_size: int) -> int:
    steps = len(data.train_indices) // batch_size
    if steps < 1:
        raise ValueError(
            f"batch_size={batch_size} exceeds the {len(data.train_indices)} training samples"
        )
    return steps


def train_dataset(
    data: NoisyData, *, batch_size: int, seed: int, start_epoch: int = 0, augment: bool = True
) -> tf.data.Dataset:
    """Infinite epochs of full batches; epoch e's order and augmentation depend only on
    (seed, e), so resuming at ``start_epoch`` replays the uninterrupted run. The noise is
    applied here, by looking each index up in the label table."""
    steps = steps_per_epoch(data, batch_size)
    num_train = len(data.train_indices)
    train_indices = data._tensor("train_indices", lambda: data.train_indices.astype(np.int32))
    images, given, clean = _tables(data)

    def epoch_batches(epoch):
        order = epoch_order(num_train, stream_key(seed, _TRAIN_ORDER, epoch))
        batches = tf.reshape(tf.gather(train_indices, order[: steps * batch_size]), [steps, -1])
        step = tf.range(steps, dtype=tf.int64)
        return tf.data.Dataset.from_tensor_slices((tf.fill([steps], epoch), step, batches))

    def make_batch(epoch, step, index):
        if augment:
            key = stream_key(seed, _TRAIN_AUGMENT, epoch, step)
            pixels = gather_crop_flip(images, index, key)
        else:
            pixels = tf.gather(images, index)
        return {
            "image": normalize(pixels, data.mean, data.std),
            "label": tf.gather(given, index),
            "clean_label": tf.gather(clean, index),
            "index": index,
        }

    return _finish(tf.data.Dataset.counter(start_epoch).flat_map(epoch_batches), make_batch)


def meta_dataset(
    data: NoisyData, *, batch_size: int, seed: int, start_step: int = 0
) -> tf.data.Dataset:
    """Infinite augmented meta batches with their own order and augmentation streams.

    Batch t holds positions [tB, (t+1)B) of an endless chain of per-epoch permutations of
    the meta set, so it depends only on (seed, t): a run resumed at ``start_step`` sees
    the batches the uninterrupted run would have seen.
    """
    size = len(data.meta_indices)
    if size == 0:
        raise ValueError("this NoisyData has no meta set (meta_label_kind='none')")
    first = start_step * batch_size
    meta_indices = data._tensor("meta_indices", lambda: data.meta_indices.astype(np.int32))
    meta_labels = data._tensor("meta_labels", lambda: data.meta_labels.astype(np.int32))
    images = data._tensor("x_train", lambda: data.source.x_train)

    def epoch_positions(epoch):
        order = epoch_order(size, stream_key(seed, _META_ORDER, epoch))
        return tf.data.Dataset.from_tensor_slices(order)

    positions = (
        tf.data.Dataset.counter(first // size)
        .flat_map(epoch_positions)
        .skip(first % size)
        .batch(batch_size, drop_remainder=True)
    )

    def make_batch(step, position):
        index = tf.gather(meta_indices, position)
        pixels = gather_crop_flip(images, index, stream_key(seed, _META_AUGMENT, step))
        return {
            "image": normalize(pixels, data.mean, data.std),
            "label": tf.gather(meta_labels, position),
        }

    return _finish(tf.data.Dataset.zip(tf.data.Dataset.counter(start_step), positions), make_batch)


def test_dataset(data: NoisyData, *, batch_size: int) -> tf.data.Dataset:
    """All test images once, in order, not augmented (the last batch may be short)."""
    images = data._tensor("x_test", lambda: data.source.x_test)
    labels = data._tensor("y_test", lambda: data.source.y_test.astype(np.int32))

    def make_batch(index):
        pixels = tf.gather(images, index)
        return {"image": normalize(pixels, data.mean, data.std), "label": tf.gather(labels, index)}

    return _finish(tf.data.Dataset.range(len(data.source.y_test)).batch(batch_size), make_batch)


def train_eval_dataset(data: NoisyData, *, batch_size: int) -> tf.data.Dataset:
    """Every training sample once, in index order, not augmented: for per-sample scores."""
    images, given, clean = _tables(data)

    def make_batch(index):
        return {
            "image": normalize(tf.gather(images, index), data.mean, data.std),
            "label": tf.gather(given, index),
            "clean_label": tf.gather(clean, index),
            "index": index,
        }

    indices = tf.data.Dataset.from_tensor_slices(data.train_indices.astype(np.int32))
    return _finish(indices.batch(batch_size), make_batch)
