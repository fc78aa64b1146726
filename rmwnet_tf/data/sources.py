"""Image sources: CIFAR through tensorflow_datasets, a folder of image files, or generated data.

Every source is reduced to one ``ImageSource`` (uint8 RGB arrays of a single size and the
labels that came with them), so label noise, the meta split and the pipelines work the same
whatever the pixels came from. Decoding a folder of images is slow, so its decoded arrays are
cached on disk, named by everything they depend on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import tensorflow as tf
from absl import logging

from rmwnet_tf.datasets import DATASETS
from rmwnet_tf.errors import UserError

SOURCES = tuple(DATASETS)  # the names of the TF-free registry rmwnet_tf.datasets
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
CACHE_ENV_VAR = "RMWNET_CACHE_DIR"
DEFAULT_CACHE_DIR = "~/.cache/rmwnet_tf"

# numpy stream of the synthetic source (the noisy split uses spawn keys 100 and 101, the
# noise module 0 and 1).
_SYNTH_STREAM = 102


@dataclasses.dataclass(eq=False)
class ImageSource:
    """Pixels and the labels that came with them (uint8 [N,S,S,3], int64 [N])."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list
    # Training labels to train on that came with the images (CIFAR-N's human labels), in the
    # same sample order; y_train then stays the clean truth. None: y_train is what there is.
    given_train: np.ndarray | None = None
    # What the pixels came from, for the run's input fingerprints (a resumed run refuses other
    # inputs): the tfds dataset and version, or a digest of the image folder's file names and
    # sizes. Empty for generated data, which the settings alone determine.
    origin: str = ""

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
    label_key: str = "",
) -> ImageSource:
    """Load a source as 3-channel uint8 images of ``image_size`` x ``image_size``.

    ``cache_dir`` only matters for ``image_folder``: "auto" caches decoded arrays under
    ``$RMWNET_CACHE_DIR`` or ``~/.cache/rmwnet_tf``; None disables the cache.
    """
    dataset = DATASETS.get(name)
    if dataset is None:
        raise ValueError(f"unknown dataset {name!r}; expected one of {SOURCES}")
    options = dict(data_dir=data_dir, tfds_data_dir=tfds_data_dir, image_size=image_size, class_names=class_names,
                   synthetic_train_size=synthetic_train_size, synthetic_test_size=synthetic_test_size,
                   synthetic_num_classes=synthetic_num_classes, seed=seed, cache_dir=cache_dir, label_key=label_key)
    return LOADERS[dataset.loader](name, **options)


def _from_tfds(name, *, tfds_data_dir, image_size, label_key, **_) -> ImageSource:
    return _load_tfds(name, tfds_data_dir, image_size, label_key=label_key)


def _from_folder(name, *, data_dir, image_size, class_names, cache_dir, **_) -> ImageSource:
    if data_dir is None:
        raise ValueError(f"dataset {name!r} needs --data_dir=<folder with train/ and test/>")
    return load_image_folder(data_dir, image_size=image_size, class_names=class_names, cache_dir=cache_dir)


def _generated(name, *, synthetic_train_size, synthetic_test_size, synthetic_num_classes, image_size, seed,
               **_) -> ImageSource:
    return make_synthetic(synthetic_train_size, synthetic_test_size, num_classes=synthetic_num_classes,
                          image_size=image_size, seed=seed)


def select_classes(source: ImageSource, classes) -> ImageSource:
    """The source restricted to `classes` (indices or names, in the order wanted), relabelled
    0..K-1 in that order, with their names kept.

    Why: a user may train on some classes of a larger source, and the reproduction's protocol v4
    pretrains on some CIFAR-10 classes and fine-tunes on the others (new classes, so that training
    has something to learn). Selecting after loading keeps one decoded cache per folder whatever
    subset a run takes. The kept samples keep the source's order.
    """
    names = [str(name) for name in source.class_names]
    indices = []
    for entry in classes:
        entry = str(entry).strip()
        if entry in names:
            indices.append(names.index(entry))
        elif entry.isdigit() and int(entry) < len(names):
            indices.append(int(entry))
        else:
            raise ValueError(f"--classes: {entry!r} is neither a class name nor an index of this source "
                             f"(classes 0..{len(names) - 1}: {', '.join(names)})")
    if len(set(indices)) != len(indices):
        raise ValueError(f"--classes: {', '.join(map(str, classes))} names a class twice")
    if source.given_train is not None:
        raise ValueError("--classes: not available for a source with its own noisy training labels")
    relabel = np.full(len(names), -1, np.int64)
    relabel[indices] = np.arange(len(indices))
    keep_train = relabel[source.y_train] >= 0
    keep_test = relabel[source.y_test] >= 0
    return dataclasses.replace(
        source, x_train=source.x_train[keep_train], y_train=relabel[source.y_train[keep_train]],
        x_test=source.x_test[keep_test], y_test=relabel[source.y_test[keep_test]],
        class_names=[names[index] for index in indices],
    )


# One loader per kind of source (datasets.LOADER_KINDS); every option is handed to each, which takes its own.
LOADERS = {"tfds": _from_tfds, "image_folder": _from_folder, "synthetic": _generated}


# Where tensorflow-datasets downloads each source from (checked before a download is tried).
DOWNLOAD_HOSTS = {name: "www.cs.toronto.edu" for name, dataset in DATASETS.items() if dataset.loader == "tfds"}
# CIFAR-N's tfds builders number their classes without names. CIFAR-10's ten are short enough to
# keep here; CIFAR-100's come from a prepared cifar100 in the same data_dir when there is one.
CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
PROBE_SECONDS = 3.0
# README sections that the offline message points to (a test keeps them in the README).
README_TFDS_COPY = "A prepared tensorflow-datasets copy"
README_IMAGE_FOLDER = "Offline, from an image folder"


def _load_tfds(name: str, tfds_data_dir, image_size: int, label_key: str = "") -> ImageSource:
    try:
        import tensorflow_datasets as tfds  # slow import; only this source needs it
    except ImportError as error:
        raise RuntimeError(
            f"--dataset={name} needs tensorflow-datasets, which does not import ({error}); "
            'reinstall with pip install -e ".[dev]"'
        ) from error
    try:
        builder = tfds.builder(name, data_dir=tfds_data_dir)
        prepared = tf.io.gfile.exists(os.path.join(builder.data_dir, "dataset_info.json"))
    except Exception as error:
        raise _tfds_error(name, tfds_data_dir, error) from error
    if not prepared:
        unreachable = probe_download_host(DOWNLOAD_HOSTS.get(name))
        if unreachable:
            raise RuntimeError(
                f"cannot download {name}: {unreachable}, and {builder.data_dir} holds no prepared "
                f"copy. Either pass --tfds_data_dir=<folder holding a prepared {name}> (README, "
                f"'{README_TFDS_COPY}'), or train from images on disk with --dataset=image_folder "
                f"--data_dir=<folder with train/ and test/> (README, '{README_IMAGE_FOLDER}')."
            )
    try:
        (train, test), info = tfds.load(name, split=["train", "test"], data_dir=tfds_data_dir, with_info=True)
        # The tfds builder keeps CIFAR-N's labels aligned with its images (the CIFAR-N files index
        # the official order; the builder maps them), so they are read side by side, never re-sorted.
        keys = ("label", label_key) if label_key else ("label",)
        (x_train, *train_labels), (x_test, y_test, *_) = _to_arrays(train, keys), _to_arrays(test, ("label",))
        names = list(CIFAR10_NAMES) if name == "cifar10_n" else list(info.features["label"].names)
        if name == "cifar100_n":
            names = _cifar100_names(tfds_data_dir) or names
    except Exception as error:  # tfds raises many types when it cannot download or read
        raise _tfds_error(name, tfds_data_dir, error) from error
    return ImageSource(
        x_train=_to_rgb_size(x_train, image_size),
        y_train=np.asarray(train_labels[0], np.int64),
        x_test=_to_rgb_size(x_test, image_size),
        y_test=np.asarray(y_test, np.int64),
        class_names=names,
        given_train=np.asarray(train_labels[1], np.int64) if label_key else None,
        origin=f"tfds:{name}:{builder.version}",
    )


def _cifar100_names(tfds_data_dir) -> list | None:
    """CIFAR-100's class names if a prepared cifar100 says them (its names come with its files)."""
    import tensorflow_datasets as tfds  # already imported by the caller; a name lookup here

    try:
        names = list(tfds.builder("cifar100", data_dir=tfds_data_dir).info.features["label"].names)
    except Exception:  # not prepared, or unreadable: numbered classes it is
        return None
    return names if len(names) == 100 and not names[0].isdigit() else None


def _to_arrays(dataset, label_keys=("label",), chunk: int = 5000):
    """(images, *labels) numpy arrays of a tfds split of feature dicts, read in chunks.

    Not tfds' ``batch_size=-1``: that sizes its one batch from the split counts in the
    dataset's metadata, which ``tfds.testing.mock_data`` leaves empty (a batch of
    sys.maxsize aborts the process), and it holds a second full copy while converting."""
    images, labels = [], {key: [] for key in label_keys}
    for batch in dataset.batch(chunk).prefetch(1):
        images.append(batch["image"].numpy())
        for key in label_keys:
            labels[key].append(batch[key].numpy())
    if not images:
        raise ValueError("the split is empty")
    return (np.concatenate(images), *(np.concatenate(labels[key]) for key in label_keys))


def _tfds_error(name, tfds_data_dir, error) -> RuntimeError:
    reason = " ".join(str(error).split())[:300]
    return RuntimeError(
        f"could not load {name!r} with tensorflow_datasets (--tfds_data_dir={tfds_data_dir or ''!r}): "
        f"{type(error).__name__}: {reason}. See README, '{README_TFDS_COPY}' and "
        f"'{README_IMAGE_FOLDER}'."
    )


def probe_download_host(host, port: int = 443, timeout: float = PROBE_SECONDS) -> str | None:
    """None if a connection to ``host`` (or the HTTPS proxy, when one is set) opens within
    ``timeout`` seconds, else why not. Why: without a network tensorflow-datasets retries its
    download for minutes with no message; this turns that into a few seconds and one line."""
    if not host:
        return None
    import socket
    import urllib.parse
    import urllib.request

    proxy = urllib.request.getproxies().get("https")
    if proxy:
        try:
            parsed = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
            host, port = parsed.hostname, parsed.port or 80
        except ValueError as error:  # a bad port, brackets: the parser's message names no variable
            host, port = None, f"{error}"
        if not host:
            variable = next((name for name in ("https_proxy", "HTTPS_PROXY") if os.environ.get(name)), "https_proxy")
            raise ValueError(
                f"the environment variable {variable}={proxy!r} is not a proxy address"
                f"{f' ({port})' if isinstance(port, str) else ''}; set it like http://host:port, or unset it"
            )
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as error:
        what = f"the proxy {host}:{port}" if proxy else f"{host}:{port}"
        return f"{what} is unreachable ({type(error).__name__}: {error})"
    return None


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
    keep it equal to numeric order. Files with other extensions and hidden files are ignored;
    an image's name that is a link to nothing stops the load, naming it.
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

    origin = folder_origin(root, train_files + test_files)
    cache_path = _cache_path(cache_dir, root, image_size, names, train_files + test_files)
    if cache_path is not None and cache_path.is_file():
        try:
            with np.load(cache_path, allow_pickle=False) as cached:
                return ImageSource(cached["x_train"], cached["y_train"], cached["x_test"], cached["y_test"],
                                   names, origin=origin)
        except Exception as error:  # BadZipFile, ValueError, KeyError, OSError: a cut-short or garbled file
            # Only a copy of what the images decode to: rebuilt, not a reason to stop.
            logging.warning("image cache %s is unreadable (%s: %s); decoding the images again to rebuild it",
                            cache_path, type(error).__name__, " ".join(str(error).split())[:200])
    source = ImageSource(
        x_train=decode_images(train_files, image_size),
        y_train=np.asarray(train_labels, np.int64),
        x_test=decode_images(test_files, image_size),
        y_test=np.asarray(test_labels, np.int64),
        class_names=names,
        origin=origin,
    )
    if cache_path is not None:
        _write_cache(cache_path, source)
    return source


def folder_origin(root: pathlib.Path, files) -> str:
    """A digest of the folder's image files (names relative to it, and sizes): an added, removed,
    renamed or rewritten-to-another-size file changes it; a copy of the folder elsewhere does not."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{os.path.relpath(path, root)}\0{os.stat(path).st_size}\n".encode())
    return f"image_folder:{len(files)} files:sha256:{digest.hexdigest()[:32]}"


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
        named = [entry for entry in os.scandir(folder)
                 if not entry.name.startswith(".") and entry.name.lower().endswith(IMAGE_EXTENSIONS)]
        _refuse_dangling_links(named)
        images = sorted(entry.path for entry in named if entry.is_file())
        if not images:
            raise ValueError(
                f"class folder {str(folder)!r} contains no images ({'/'.join(IMAGE_EXTENSIONS)})"
            )
        files += images
        labels += [index] * len(images)
    if not files:
        raise ValueError(f"{str(split_dir)!r} contains no images")
    return files, labels


def _refuse_dangling_links(entries) -> None:
    """An image's name that is a symbolic link to nothing (a moved or deleted target) stops the
    load, naming it. Why: it used to be skipped without a word, so the user's count of images
    dropped silently (a link to an existing file is read as that file)."""
    dangling = sorted(entry.path for entry in entries if entry.is_symlink() and not entry.is_file()
                      and not entry.is_dir())
    if dangling:
        more = f" (and {len(dangling) - 1} more)" if len(dangling) > 1 else ""
        raise UserError(
            f"image file {dangling[0]!r}{more} is a symbolic link to {os.readlink(dangling[0])!r}, which does not "
            "exist; point the link at the image, or remove it (every image in the folder is read)"
        )


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
                pixels = _pil_rgb8(image)
        except Exception as error:
            raise ValueError(f"cannot decode image file {path!r}: {error}") from error
        if pixels.shape[:2] != (size, size):
            pixels = _resize_uint8(tf.constant(pixels), size).numpy()
        return pixels

    with ThreadPoolExecutor(max_workers=4) as pool:
        return np.stack(list(pool.map(decode, paths)))


def _pil_rgb8(image) -> np.ndarray:
    """uint8 RGB pixels of a PIL image. 16-bit greyscale (modes I;16*, and I for 16-bit PNGs)
    keeps its top 8 bits, as TF's decoders do: PIL's own convert("RGB") clips such values at
    255, so a 16-bit PNG came out white."""
    if image.mode.startswith("I"):
        wide = np.clip(np.asarray(image).astype(np.int64), 0, 65535) >> 8
        return np.repeat(wide.astype(np.uint8)[..., None], 3, axis=-1)
    return np.asarray(image.convert("RGB"))


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
