"""Sources, the noisy-label table and meta split, and the tf.data pipelines."""

import pathlib
import re
import shutil
import subprocess
import tarfile
import types

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from rmwnet_tf import data
from rmwnet_tf import noise
from rmwnet_tf.errors import UserError

K = 10


def first(dataset):
    return {name: value.numpy() for name, value in next(iter(dataset)).items()}


def take(dataset, count):
    return [{k: v.numpy() for k, v in batch.items()} for batch in dataset.take(count)]


def source_index(images, nd):
    """Which source training image each un-augmented, normalised batch image is (random pixels
    make every image unique), now that batches carry no sample index."""
    pixels = np.round((np.asarray(images) * nd.std + nd.mean) * 255).astype(np.uint8)
    lookup = {image.tobytes(): i for i, image in enumerate(nd.source.x_train)}
    return np.array([lookup[image.tobytes()] for image in pixels])


def indexed_source(num_train=400, num_test=50, num_classes=K, size=32, seed=0):
    """Random pixels (so crops are distinguishable) and balanced labels."""
    rng = np.random.default_rng(seed)
    return data.ImageSource(
        x_train=rng.integers(0, 256, (num_train, size, size, 3), dtype=np.uint8),
        y_train=np.arange(num_train, dtype=np.int64) % num_classes,
        x_test=rng.integers(0, 256, (num_test, size, size, 3), dtype=np.uint8),
        y_test=np.arange(num_test, dtype=np.int64) % num_classes,
        class_names=[f"c{c}" for c in range(num_classes)],
    )


@pytest.fixture(scope="module")
def source():
    return indexed_source()


@pytest.fixture(scope="module")
def noisy(source):
    return data.prepare(
        source, noise_type="flip", noise_rate=0.4, seed=1, meta_size=100, meta_label_kind="noisy"
    )


# -- synthetic source ---------------------------------------------------------------------


def test_synthetic_is_seeded_balanced_and_sized():
    a = data.load_source("synthetic", synthetic_train_size=300, synthetic_test_size=50, seed=4)
    b = data.load_source("synthetic", synthetic_train_size=300, synthetic_test_size=50, seed=4)
    c = data.load_source("synthetic", synthetic_train_size=300, synthetic_test_size=50, seed=5)
    assert a.x_train.shape == (300, 32, 32, 3) and a.x_train.dtype == np.uint8
    assert a.x_test.shape == (50, 32, 32, 3) and a.y_train.dtype == np.int64
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.x_train, c.x_train)
    np.testing.assert_array_equal(np.bincount(a.y_train), np.full(K, 30))
    assert a.num_classes == K and a.x_train.std() > 20  # not blank


def test_synthetic_sizes_and_classes_are_configurable():
    small = data.make_synthetic(40, 8, num_classes=4, image_size=20, seed=0)
    assert small.x_train.shape == (40, 20, 20, 3) and small.num_classes == 4
    assert set(small.y_train) == {0, 1, 2, 3}


def test_select_classes_keeps_their_samples_relabelled_in_the_order_given():
    source = data.make_synthetic(60, 30, num_classes=6, image_size=8, seed=0)
    picked = data.select_classes(source, ["4", "1"])
    assert picked.class_names == [source.class_names[4], source.class_names[1]]
    keep = np.isin(source.y_train, [4, 1])
    np.testing.assert_array_equal(picked.x_train, source.x_train[keep])
    np.testing.assert_array_equal(picked.y_train, np.where(source.y_train[keep] == 4, 0, 1))
    np.testing.assert_array_equal(picked.y_test, np.where(source.y_test[np.isin(source.y_test, [4, 1])] == 4, 0, 1))
    by_name = data.select_classes(source, [source.class_names[4], source.class_names[1]])
    np.testing.assert_array_equal(by_name.y_train, picked.y_train)
    with pytest.raises(ValueError, match=r"--classes: 'zebra' is neither a class name nor an index"):
        data.select_classes(source, ["zebra", "1"])
    with pytest.raises(ValueError, match=r"names a class twice"):
        data.select_classes(source, ["1", source.class_names[1]])


def test_unknown_source_and_missing_data_dir():
    with pytest.raises(ValueError, match="unknown dataset 'mnist'"):
        data.load_source("mnist")
    with pytest.raises(ValueError, match="needs --data_dir"):
        data.load_source("image_folder")


def test_tfds_failure_names_the_offline_alternative(monkeypatch):
    import tensorflow_datasets as tfds

    def offline(*args, **kwargs):
        raise ConnectionError("Failed to resolve storage.googleapis.com")

    monkeypatch.setattr(tfds, "load", offline)
    monkeypatch.setattr(data.sources, "probe_download_host", lambda host: None)  # host reachable
    with pytest.raises(RuntimeError, match="ConnectionError: Failed to resolve storage.googleapis.com. See "
                       "README, 'A prepared tensorflow-datasets copy' and 'Offline, from an image folder'"):
        data.load_source("cifar10", tfds_data_dir="/nonexistent")


def test_tfds_images_become_rgb_of_the_requested_size(monkeypatch):
    import tensorflow_datasets as tfds

    gray = np.full((5, 28, 28, 1), 120, np.uint8)  # MNIST-like: 1 channel, 28x28
    info = types.SimpleNamespace(features={"label": types.SimpleNamespace(names=["a", "b"])})

    def fake_load(name, **kwargs):
        assert not kwargs.get("as_supervised")  # feature dicts: CIFAR-N's extra label keys ride along
        split = tf.data.Dataset.from_tensor_slices({"image": gray, "label": np.array([0, 1, 0, 1, 1], np.int64)})
        return (split, split), info

    monkeypatch.setattr(tfds, "load", fake_load)
    monkeypatch.setattr(data.sources, "probe_download_host", lambda host: None)  # host reachable
    src = data.load_source("cifar10")
    assert src.x_train.shape == (5, 32, 32, 3) and src.class_names == ["a", "b"]
    np.testing.assert_array_equal(src.x_test, np.full((5, 32, 32, 3), 120))
    np.testing.assert_array_equal(src.y_train, [0, 1, 0, 1, 1])


def test_hand_built_sources_are_checked():
    good = indexed_source(num_train=10, num_test=5)
    with pytest.raises(ValueError, match=r"x_train must be uint8 \[N,H,W,3\]"):
        data.ImageSource(good.x_train.astype(np.float32), good.y_train, good.x_test, good.y_test,
                         good.class_names)
    with pytest.raises(ValueError, match=r"y_test has labels outside \[0, 10\)"):
        data.ImageSource(good.x_train, good.y_train, good.x_test, good.y_test + 10,
                         good.class_names)


# -- image folder -------------------------------------------------------------------------


def save(path, pixels, **kwargs):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, **kwargs)


@pytest.fixture
def folder(tmp_path):
    """Three classes, mixed formats, channels and sizes; 'ant' sorts before 'cat' and 'dog'."""
    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    exact = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    save(root / "train/cat/b.png", exact)                                         # RGB PNG 32x32
    save(root / "train/cat/a.jpg", rng.integers(0, 256, (20, 24, 3), dtype=np.uint8))  # JPEG 20x24
    save(root / "train/ant/x.png", np.full((40, 40), 77, np.uint8))              # gray PNG 40x40
    save(root / "train/ant/y.jpeg", np.full((32, 32), 200, np.uint8), quality=100)  # gray JPEG
    rgba = np.dstack([np.full((24, 20, 3), 50, np.uint8), np.full((24, 20), 9, np.uint8)])
    save(root / "train/dog/z.png", rgba)                                          # RGBA PNG
    save(root / "train/dog/w.bmp", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    (root / "train/dog/notes.txt").write_text("not an image")                     # ignored
    save(root / "test/dog/t.png", exact)
    save(root / "test/ant/u.png", exact[..., 0])
    return root, exact


def test_image_folder_loads_mixed_formats_in_documented_order(folder, tmp_path):
    root, exact = folder
    src = data.load_source("image_folder", data_dir=root, cache_dir=None)
    assert src.class_names == ["ant", "cat", "dog"]
    assert src.x_train.shape == (6, 32, 32, 3) and src.x_train.dtype == np.uint8
    # class order, then file name: ant/x.png, ant/y.jpeg, cat/a.jpg, cat/b.png, dog/w.bmp, dog/z.png
    np.testing.assert_array_equal(src.y_train, [0, 0, 1, 1, 2, 2])
    assert src.y_train.dtype == np.int64
    np.testing.assert_array_equal(src.x_train[0], np.full((32, 32, 3), 77))  # gray, resized
    assert np.abs(src.x_train[1].astype(int) - 200).max() <= 1  # gray JPEG -> 3 channels
    np.testing.assert_array_equal(src.x_train[3], exact)  # lossless, untouched
    np.testing.assert_array_equal(src.x_train[5], np.full((32, 32, 3), 50))  # alpha dropped
    np.testing.assert_array_equal(src.y_test, [0, 2])
    np.testing.assert_array_equal(src.x_test[1], exact)
    np.testing.assert_array_equal(src.x_test[0], np.repeat(exact[..., :1], 3, axis=-1))


def test_image_folder_size_and_explicit_class_list(folder):
    root, _ = folder
    src = data.load_image_folder(root, image_size=16, class_names=["dog", "cat", "ant"],
                                 cache_dir=None)
    assert src.x_train.shape == (6, 16, 16, 3) and src.class_names == ["dog", "cat", "ant"]
    np.testing.assert_array_equal(src.y_train, [0, 0, 1, 1, 2, 2])  # dog first now
    with pytest.raises(ValueError, match=r"\['dog'\] .* are not in class_names"):
        data.load_image_folder(root, class_names=["ant", "cat"], cache_dir=None)
    with pytest.raises(FileNotFoundError, match="class 'eel' has no folder"):
        data.load_image_folder(root, class_names=["ant", "cat", "dog", "eel"], cache_dir=None)


def test_image_folder_cache_hits_and_misses(folder, tmp_path, monkeypatch):
    root, _ = folder
    cache = tmp_path / "cache"
    fresh = data.load_image_folder(root, cache_dir=cache)
    assert len(list(cache.glob("image_folder-*.npz"))) == 1
    real_decode = data.sources.decode_images

    def must_not_decode(*args):
        raise AssertionError("should have come from the cache")

    monkeypatch.setattr(data.sources, "decode_images", must_not_decode)
    cached = data.load_image_folder(root, cache_dir=cache)
    for name in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(cached, name), getattr(fresh, name))
    save(root / "train/cat/c.png", np.zeros((32, 32, 3), np.uint8))  # a new file: cache miss
    monkeypatch.setattr(data.sources, "decode_images", real_decode)
    assert len(data.load_image_folder(root, cache_dir=cache).y_train) == 7
    assert len(list(cache.glob("image_folder-*.npz"))) == 2


def test_truncated_image_cache_is_rebuilt_with_a_warning(folder, tmp_path, caplog):
    """Issue 22: a cut-short cache file raised BadZipFile on every run until deleted by hand."""
    root, _ = folder
    cache = tmp_path / "cache"
    fresh = data.load_image_folder(root, cache_dir=cache)
    (cached_file,) = cache.glob("image_folder-*.npz")
    cached_file.write_bytes(cached_file.read_bytes()[:100])
    with caplog.at_level("WARNING"):
        again = data.load_image_folder(root, cache_dir=cache)
    np.testing.assert_array_equal(again.x_train, fresh.x_train)
    assert any(f"image cache {cached_file} is unreadable" in r.getMessage() and "rebuild" in r.getMessage()
               for r in caplog.records)
    assert cached_file.stat().st_size > 1000  # rebuilt in place
    with np.load(cached_file) as rebuilt:
        np.testing.assert_array_equal(rebuilt["x_train"], fresh.x_train)


@pytest.mark.parametrize("decoder", ["tf", "pil"])
def test_16_bit_greyscale_png_keeps_its_values(tmp_path, monkeypatch, decoder):
    """Issue 22: PIL's convert("RGB") clipped 16-bit values at 255 (a white image)."""
    values = (np.arange(16 * 16, dtype=np.uint16).reshape(16, 16) * 250)
    path = tmp_path / "grey16.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I")
    if decoder == "pil":  # the path taken when TF rejects any file of the call
        def reject(paths, size):
            raise tf.errors.InvalidArgumentError(None, None, "rejected")
        monkeypatch.setattr(data.sources, "_decode_with_tf", reject)
    decoded = data.decode_images([str(path)], 16)[0]
    expected = (values >> 8).astype(np.uint8)
    for channel in range(3):
        np.testing.assert_array_equal(decoded[..., channel], expected)


def test_image_folder_origin_follows_file_names_and_sizes(folder, tmp_path):
    root, _ = folder
    before = data.load_image_folder(root, cache_dir=None).origin
    assert before.startswith("image_folder:8 files:sha256:")
    shutil.copytree(root, tmp_path / "copy")
    assert data.load_image_folder(tmp_path / "copy", cache_dir=None).origin == before  # a copy: same input
    save(root / "test/dog/v.png", np.zeros((32, 32, 3), np.uint8))
    assert data.load_image_folder(root, cache_dir=None).origin != before


def test_image_folder_errors_name_the_path(folder, tmp_path):
    root, _ = folder
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="nowhere' does not exist"):
        data.load_image_folder(missing, cache_dir=None)

    (root / "train/eel").mkdir()
    with pytest.raises(ValueError, match="eel' contains no images"):
        data.load_image_folder(root, cache_dir=None)
    (root / "train/eel").rmdir()

    save(root / "test/fox/f.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match=r"\['fox'\] in .*test' are not training classes"):
        data.load_image_folder(root, cache_dir=None)
    (root / "test/fox/f.png").unlink()
    (root / "test/fox").rmdir()

    (root / "train/cat/broken.png").write_bytes(b"this is not a png")
    with pytest.raises(ValueError, match="cannot decode image file .*broken.png"):
        data.load_image_folder(root, cache_dir=None)


@pytest.mark.parametrize("layout, message", [
    ({"train/a/x.png"}, "has no test/ subfolder"),
    ({"test/a/x.png"}, "has no train/ subfolder"),
    ({"train/a/x.txt", "test/a/x.png"}, "a' contains no images"),
])
def test_image_folder_layout_errors(tmp_path, layout, message):
    for relative in layout:
        path = tmp_path / relative
        if relative.endswith(".png"):
            save(path, np.zeros((4, 4, 3), np.uint8))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("x")
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        data.load_image_folder(tmp_path, cache_dir=None)


CIFAR_COPY = pathlib.Path(__file__).resolve().parents[2] / "shared/data/cifar10"


@pytest.mark.needs_cifar
@pytest.mark.skipif(not (CIFAR_COPY / "cifar10-jpeg.tar.gz").is_file(), reason="no offline copy")
def test_offline_cifar10_copy_loads_as_image_folder(tmp_path):
    archive = CIFAR_COPY / "cifar10-jpeg.tar.gz"
    if shutil.which("tar"):  # ~10x faster than tarfile for 60,000 members
        subprocess.run(["tar", "xzf", str(archive), "-C", str(tmp_path)], check=True)
    else:
        with tarfile.open(archive) as opened:
            opened.extractall(tmp_path, filter="data")
    src = data.load_source("image_folder", data_dir=tmp_path, cache_dir=None)
    official = np.load(CIFAR_COPY / "official_order_labels.npz")
    assert src.x_train.shape == (50000, 32, 32, 3) and src.x_test.shape == (10000, 32, 32, 3)
    assert src.class_names[:3] == ["airplane", "automobile", "bird"]
    in_folder_order = data.official_to_folder_order(official["y_train"], official["y_train"])
    np.testing.assert_array_equal(src.y_train, in_folder_order)
    np.testing.assert_array_equal(src.y_test, np.sort(official["y_test"], kind="stable"))


def test_official_to_folder_order():
    official_labels = np.array([1, 0, 1, 0, 2])
    per_image = np.array([10, 11, 12, 13, 14])  # e.g. noisy labels in official order
    # folder order: class 0 (official 1, 3), class 1 (official 0, 2), class 2 (official 4)
    reordered = data.official_to_folder_order(per_image, official_labels)
    np.testing.assert_array_equal(reordered, [11, 13, 10, 12, 14])


# -- prepare: label table, subset, meta split ---------------------------------------------


def test_noise_table_is_corrupt_labels_of_the_source(source, noisy):
    expected = noise.corrupt_labels(source.y_train, "flip", 0.4, K, seed=1)
    np.testing.assert_array_equal(noisy.given_labels, expected)
    np.testing.assert_array_equal(noisy.clean_labels, source.y_train)
    matrix = noise.transition_matrix("flip", 0.4, K, seed=1)
    np.testing.assert_array_equal(noisy.noise_matrix, matrix)
    np.testing.assert_array_equal(noisy.is_noisy, expected != source.y_train)
    assert noisy.given_labels.dtype == np.int32 and noisy.clean_labels.dtype == np.int32
    assert noisy.train_indices.dtype == np.int64 and noisy.meta_indices.dtype == np.int64
    assert noisy.meta_labels.dtype == np.int32 and noisy.num_classes == K


def test_meta_split_is_balanced_disjoint_and_complete(source, noisy):
    meta, train = noisy.meta_indices, noisy.train_indices
    np.testing.assert_array_equal(np.bincount(source.y_train[meta], minlength=K), np.full(K, 10))
    assert np.intersect1d(meta, train).size == 0
    np.testing.assert_array_equal(np.union1d(meta, train), np.arange(len(source.y_train)))
    assert len(train) == 300 and noisy.describe()["num_meta"] == 100


def test_noisy_meta_labels_are_an_independent_draw(source, noisy):
    redrawn = noise.corrupt_labels(source.y_train, "flip", 0.4, K, seed=1, draw=1)
    np.testing.assert_array_equal(noisy.meta_labels, redrawn[noisy.meta_indices])
    assert not np.array_equal(noisy.meta_labels, noisy.given_labels[noisy.meta_indices])


def test_clean_and_no_meta(source):
    clean = data.prepare(source, noise_type="uniform", noise_rate=0.5, seed=1, meta_size=50,
                         meta_label_kind="clean")
    np.testing.assert_array_equal(clean.meta_labels, source.y_train[clean.meta_indices])
    base = data.prepare(source, noise_type="uniform", noise_rate=0.5, seed=1, meta_size=50,
                        meta_label_kind="none")
    assert base.meta_indices.size == 0 and base.meta_labels.size == 0
    np.testing.assert_array_equal(base.train_indices, np.arange(len(source.y_train)))
    with pytest.raises(ValueError, match="no meta set"):
        data.meta_dataset(base, batch_size=10, seed=0)


def test_same_seed_same_split_other_seed_differs(source):
    def run(seed):
        return data.prepare(source, noise_type="uniform", noise_rate=0.4, seed=seed, meta_size=100,
                            meta_label_kind="noisy")

    a, b, c = run(2), run(2), run(3)
    for name in ("given_labels", "meta_indices", "meta_labels", "train_indices"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
        assert not np.array_equal(getattr(a, name), getattr(c, name))


def test_meta_size_not_divisible_spreads_the_rest(source):
    nd = data.prepare(source, noise_type="none", noise_rate=0, seed=0, meta_size=25,
                      meta_label_kind="clean")
    counts = np.bincount(source.y_train[nd.meta_indices], minlength=K)
    assert counts.sum() == 25 and set(counts) == {2, 3}


def test_train_size_subset_is_stratified_and_contains_meta(source):
    nd = data.prepare(source, noise_type="flip2", noise_rate=0.3, seed=0, meta_size=50,
                      meta_label_kind="noisy", train_size=200)
    used = np.union1d(nd.train_indices, nd.meta_indices)
    assert len(used) == 200 and len(nd.train_indices) == 150
    np.testing.assert_array_equal(np.bincount(source.y_train[used], minlength=K), np.full(K, 20))
    meta_counts = np.bincount(source.y_train[nd.meta_indices], minlength=K)
    np.testing.assert_array_equal(meta_counts, np.full(K, 5))
    # the label table still covers every source sample
    assert len(nd.given_labels) == len(source.y_train)


def test_normalisation_statistics_come_from_training_images(source, noisy):
    pixels = source.x_train[noisy.train_indices].reshape(-1, 3) / 255.0
    np.testing.assert_allclose(noisy.mean, pixels.mean(0), rtol=0, atol=1e-6)
    np.testing.assert_allclose(noisy.std, pixels.std(0), rtol=0, atol=1e-6)
    assert noisy.mean.dtype == np.float32 and noisy.std.dtype == np.float32


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(noise_type="flip", noise_rate=0.6), ValueError, "makes the flipped class the majority"),
    (dict(meta_size=400), ValueError, "meta_size=400 leaves no training samples out of 400"),
    (dict(meta_label_kind="gold"), ValueError, "meta_label_kind='gold'"),
    (dict(train_size=401), ValueError, "train_size=401 exceeds the 400 source training samples"),
])
def test_prepare_refuses_bad_settings(source, kwargs, error, message):
    settings = dict(noise_type="flip", noise_rate=0.4, seed=0, meta_size=100,
                    meta_label_kind="noisy")
    settings.update(kwargs)
    with pytest.raises(error, match=message):
        data.prepare(source, **settings)


def test_meta_needs_enough_samples_of_every_class():
    skewed = indexed_source()
    skewed.y_train[skewed.y_train == 9] = 0
    with pytest.raises(ValueError, match="class 9 has 0 samples, fewer than the 10"):
        data.prepare(skewed, noise_type="none", noise_rate=0, seed=0, meta_size=100,
                     meta_label_kind="clean")


# -- external noisy labels ----------------------------------------------------------------


@pytest.fixture
def external(tmp_path, source):
    labels = (source.y_train + (np.arange(len(source.y_train)) % 3 == 0)) % K  # a third flipped
    npy = tmp_path / "noisy.npy"
    np.save(npy, labels)
    plain = tmp_path / "plain.csv"
    plain.write_text("\n".join(map(str, labels)) + "\n")
    header = tmp_path / "header.csv"
    header.write_text("index,label\n" + "".join(f"{i},{y}\n" for i, y in enumerate(labels)))
    return labels, {"npy": npy, "plain": plain, "header": header}


@pytest.mark.parametrize("kind", ["npy", "plain", "header"])
def test_external_labels_replace_synthetic_noise(source, external, kind):
    labels, paths = external
    nd = data.prepare(source, noise_type="none", noise_rate=0.0, seed=0, meta_size=100,
                      meta_label_kind="noisy", noisy_labels_path=paths[kind])
    np.testing.assert_array_equal(nd.given_labels, labels)
    np.testing.assert_array_equal(nd.meta_labels, labels[nd.meta_indices])
    np.testing.assert_array_equal(nd.clean_labels, source.y_train)
    assert nd.noise_matrix is None
    train = nd.train_indices
    expected_rate = np.mean(labels[train] != source.y_train[train])
    assert nd.describe()["train_noise_rate"] == pytest.approx(expected_rate, rel=0, abs=1e-12)


def test_external_labels_with_unknown_clean_labels(source, external):
    labels, paths = external
    nd = data.prepare(source, noise_type="none", noise_rate=0.0, seed=0, meta_size=100,
                      meta_label_kind="noisy", noisy_labels_path=paths["npy"],
                      source_labels_are_clean=False)
    assert nd.clean_labels is None and nd.is_noisy is None
    assert "train_noise_rate" not in nd.describe()
    # balanced by the given labels when the clean ones are unknown
    np.testing.assert_array_equal(np.bincount(labels[nd.meta_indices], minlength=K), np.full(K, 10))
    batch = first(data.train_dataset(nd, batch_size=32, seed=0, augment=False))
    np.testing.assert_array_equal(batch["label"], labels[source_index(batch["image"], nd)])
    evaluation = first(data.train_eval_dataset(nd, batch_size=32))
    np.testing.assert_array_equal(evaluation["label"], labels[nd.train_indices[:32]])


def test_external_label_errors_name_the_file(source, external, tmp_path):
    _, paths = external
    settings = dict(noise_rate=0.0, seed=0, meta_size=100, meta_label_kind="noisy")
    short = tmp_path / "short.npy"
    np.save(short, np.zeros(5, np.int64))
    with pytest.raises(ValueError, match="short.npy' has 5 labels but the source has 400"):
        data.prepare(source, noise_type="none", noisy_labels_path=short, **settings)
    wide = tmp_path / "wide.csv"
    wide.write_text("\n".join(["3"] * 399 + ["10"]))
    with pytest.raises(ValueError, match=r"wide.csv' has labels outside \[0, 10\), e.g. 10 at row"):
        data.prepare(source, noise_type="none", noisy_labels_path=wide, **settings)
    with pytest.raises(FileNotFoundError, match="absent.npy' does not exist"):
        data.prepare(source, noise_type="none", noisy_labels_path=tmp_path / "absent.npy",
                     **settings)
    no_column = tmp_path / "no_column.csv"
    no_column.write_text("index,target\n0,1\n")
    with pytest.raises(ValueError, match="no_column.csv' has a header without a 'label' column"):
        data.prepare(source, noise_type="none", noisy_labels_path=no_column, **settings)



def test_csv_with_a_byte_order_mark_reads_its_label_column(source, external, tmp_path):
    """Issue 22: Excel's CSV starts with a BOM, which hid the 'label' header."""
    labels, paths = external
    excel = tmp_path / "excel.csv"
    excel.write_bytes(b"\xef\xbb\xbf" + b"label,index\n" + "".join(f"{y},{i}\n" for i, y in enumerate(labels)).encode())
    nd = data.prepare(source, noise_type="none", noise_rate=0.0, seed=0, meta_size=100,
                      meta_label_kind="noisy", noisy_labels_path=excel)
    np.testing.assert_array_equal(nd.given_labels, labels)


def test_npy_header_claiming_a_huge_array_is_refused_before_loading(source, tmp_path):
    """Issue 22: a header claiming 10^12 elements ended in a MemoryError naming no file."""
    huge = tmp_path / "huge.npy"
    header = {"descr": "<i8", "fortran_order": False, "shape": (10**12,)}
    with open(huge, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, header)
        handle.write(np.zeros(400, np.int64).tobytes())
    with pytest.raises(ValueError, match="huge.npy' has 1000000000000 labels but the source has 400 training"):
        data.prepare(source, noise_type="none", noise_rate=0.0, seed=0, meta_size=100, meta_label_kind="noisy",
                     noisy_labels_path=huge)


# -- tf.data ops, eagerly and inside a pipeline -------------------------------------------


def test_stream_key_eager_and_in_pipeline():
    eager = [data.stream_key(7, 2, epoch, 3).numpy() for epoch in range(3)]
    assert len({tuple(k) for k in eager}) == 3
    piped = tf.data.Dataset.range(3).map(lambda e: data.stream_key(7, 2, e, 3))
    piped = list(piped.as_numpy_iterator())
    np.testing.assert_array_equal(piped, eager)
    assert not np.array_equal(data.stream_key(7, 1, 0).numpy(), data.stream_key(7, 2, 0).numpy())


def test_epoch_order_is_a_seeded_permutation_eager_and_in_pipeline():
    orders = [data.epoch_order(50, data.stream_key(0, 1, e)).numpy() for e in range(2)]
    for order in orders:
        np.testing.assert_array_equal(np.sort(order), np.arange(50))
    assert not np.array_equal(orders[0], orders[1])
    piped = tf.data.Dataset.range(2).map(lambda e: data.epoch_order(50, data.stream_key(0, 1, e)))
    np.testing.assert_array_equal(list(piped.as_numpy_iterator()), orders)


def reference_crops(image, pad=4):
    """Every crop/flip the augmentation may produce, from the textbook pad-then-slice."""
    height, width = image.shape[:2]
    padded = np.pad(image, [(pad, pad), (pad, pad), (0, 0)], mode="reflect")
    crops = []
    for top in range(2 * pad + 1):
        for left in range(2 * pad + 1):
            crop = padded[top : top + height, left : left + width]
            crops += [crop, crop[:, ::-1]]
    return np.stack(crops)


def matching_crop(output, image):
    hits = np.flatnonzero(np.all(reference_crops(image) == output, axis=(1, 2, 3)))
    assert hits.size == 1, "output is not exactly one pad/crop/flip of its input"
    return int(hits[0])


@pytest.mark.parametrize("height, width", [(32, 32), (20, 24)])
def test_crop_flip_is_a_real_crop_drawn_per_example(height, width):
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    batch = np.repeat(image[None], 64, axis=0)  # the same image 64 times
    key = data.stream_key(0, 2, 0, 0)
    out = data.random_crop_flip(batch, key).numpy()
    assert out.shape == batch.shape and out.dtype == np.uint8
    choices = [matching_crop(crop, image) for crop in out]
    assert len(set(choices)) > 20  # each example gets its own crop and flip (162 possible)
    assert {c % 2 for c in choices} == {0, 1}  # both flipped and unflipped occur
    np.testing.assert_array_equal(data.random_crop_flip(batch, key).numpy(), out)
    other_key = data.stream_key(0, 2, 0, 1)
    assert not np.array_equal(data.random_crop_flip(batch, other_key).numpy(), out)
    piped = tf.data.Dataset.from_tensors(batch).map(lambda b: data.random_crop_flip(b, key))
    np.testing.assert_array_equal(next(iter(piped)).numpy(), out)


def test_gather_crop_flip_equals_gather_then_crop():
    table = np.random.default_rng(1).integers(0, 256, (30, 12, 12, 3), dtype=np.uint8)
    index = np.array([3, 3, 29, 0, 7], np.int32)
    key = data.stream_key(5, 2, 1, 4)
    fused = data.gather_crop_flip(table, index, key).numpy()
    np.testing.assert_array_equal(fused, data.random_crop_flip(table[index], key).numpy())
    piped = tf.data.Dataset.from_tensors(index).map(lambda i: data.gather_crop_flip(table, i, key))
    np.testing.assert_array_equal(next(iter(piped)).numpy(), fused)
    for crop, i in zip(fused, index):
        matching_crop(crop, table[i])


def test_zero_pad_only_flips():
    image = np.random.default_rng(2).integers(0, 256, (1, 8, 8, 3), dtype=np.uint8)
    out = data.random_crop_flip(np.repeat(image, 16, 0), data.stream_key(0, 0), pad=0).numpy()
    for crop in out:
        assert np.array_equal(crop, image[0]) or np.array_equal(crop, image[0, :, ::-1])


def test_normalize_eager_and_in_pipeline():
    pixels = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3) * 2
    mean, std = np.float32([0.1, 0.5, 0.9]), np.float32([0.2, 0.25, 0.3])
    expected = (pixels / 255.0 - mean) / std
    eager = data.normalize(pixels, mean, std).numpy()
    assert eager.dtype == np.float32
    np.testing.assert_allclose(eager, expected, rtol=0, atol=1e-5)
    piped = tf.data.Dataset.from_tensors(pixels).map(lambda p: data.normalize(p, mean, std))
    np.testing.assert_array_equal(next(iter(piped)).numpy(), eager)


# -- pipelines ----------------------------------------------------------------------------


def test_train_batches_have_contract_shapes_and_lookups(source, noisy):
    dataset = data.train_dataset(noisy, batch_size=32, seed=0, augment=False)
    spec = dataset.element_spec
    assert set(spec) == {"image", "label"}  # clean labels never ride in a training batch
    assert spec["image"].shape.as_list() == [32, 32, 32, 3] and spec["image"].dtype == tf.float32
    assert spec["label"].shape.as_list() == [32] and spec["label"].dtype == tf.int32
    batch = first(dataset)
    index = source_index(batch["image"], noisy)
    np.testing.assert_array_equal(batch["label"], noisy.given_labels[index])
    assert np.isin(index, noisy.train_indices).all()


def test_each_epoch_is_a_fresh_permutation_of_training_indices(noisy):
    steps = data.steps_per_epoch(noisy, 32)
    assert steps == 300 // 32
    batches = take(data.train_dataset(noisy, batch_size=32, seed=0, augment=False), 2 * steps)
    epochs = [
        source_index(np.concatenate([b["image"] for b in batches[e * steps : (e + 1) * steps]]), noisy)
        for e in range(2)
    ]
    for indices in epochs:
        assert len(np.unique(indices)) == steps * 32 and np.isin(indices, noisy.train_indices).all()
        assert not np.isin(indices, noisy.meta_indices).any()
    assert not np.array_equal(epochs[0], epochs[1])


def test_same_seed_and_epoch_replays_the_same_batches(noisy):
    steps = data.steps_per_epoch(noisy, 32)
    resumed = take(data.train_dataset(noisy, batch_size=32, seed=4, start_epoch=1), 2)
    again = take(data.train_dataset(noisy, batch_size=32, seed=4, start_epoch=1), 2)
    uninterrupted = take(data.train_dataset(noisy, batch_size=32, seed=4), steps + 2)[steps:]
    for a, b, c in zip(resumed, again, uninterrupted):
        for name in a:
            np.testing.assert_array_equal(a[name], b[name])
            np.testing.assert_array_equal(a[name], c[name])
    other = first(data.train_dataset(noisy, batch_size=32, seed=5, start_epoch=1))
    assert not np.array_equal(other["image"], resumed[0]["image"])


def test_train_augmentation_differs_within_a_batch():
    same = indexed_source(num_train=64)
    same.x_train[:] = same.x_train[0]
    nd = data.prepare(same, noise_type="none", noise_rate=0, seed=0, meta_size=0,
                      meta_label_kind="none")
    images = first(data.train_dataset(nd, batch_size=64, seed=0))["image"]
    assert len({image.tobytes() for image in images}) > 20
    plain = first(data.train_dataset(nd, batch_size=64, seed=0, augment=False))
    expected = data.normalize(same.x_train[:64], nd.mean, nd.std).numpy()
    np.testing.assert_array_equal(plain["image"], expected)  # all 64 are the same image


def test_meta_stream_is_infinite_balanced_and_resumable(noisy):
    batches = take(data.meta_dataset(noisy, batch_size=30, seed=2), 12)  # 3.6 meta epochs
    assert all(b["image"].shape == (30, 32, 32, 3) for b in batches)
    labels = np.concatenate([b["label"] for b in batches[:10]])  # exactly 3 epochs
    expected = 3 * np.bincount(noisy.meta_labels, minlength=K)
    np.testing.assert_array_equal(np.bincount(labels, minlength=K), expected)
    resumed = take(data.meta_dataset(noisy, batch_size=30, seed=2, start_step=7), 5)  # 2 epochs
    for a, b in zip(resumed, batches[7:]):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])
    other = first(data.meta_dataset(noisy, batch_size=30, seed=3))
    assert not np.array_equal(other["image"], batches[0]["image"])


def test_meta_stream_follows_the_augment_setting(noisy, source):
    batch = first(data.meta_dataset(noisy, batch_size=8, seed=0, augment=False))
    index = source_index(batch["image"], noisy)
    assert np.isin(index, noisy.meta_indices).all()


def test_pad_scales_with_the_image_side():
    assert [data.augment_pad(size) for size in (32, 16, 24, 64, 8, 4)] == [4, 2, 3, 8, 1, 1]


def test_meta_images_are_augmented_meta_samples(noisy, source):
    batch = first(data.meta_dataset(noisy, batch_size=8, seed=0))
    pixels = np.round(batch["image"] * noisy.std * 255 + noisy.mean * 255).astype(np.uint8)
    meta_position = {int(i): p for p, i in enumerate(noisy.meta_indices)}
    crops = {i: reference_crops(source.x_train[i]) for i in meta_position}
    for crop, label in zip(pixels, batch["label"]):
        owners = [i for i in meta_position if (crops[i] == crop).all(axis=(1, 2, 3)).any()]
        assert len(owners) == 1 and noisy.meta_labels[meta_position[owners[0]]] == label


def test_test_and_train_eval_streams_are_finite_and_unaugmented(source, noisy):
    tests = take(data.test_dataset(noisy, batch_size=16), 100)
    assert [len(b["label"]) for b in tests] == [16, 16, 16, 2]
    images = np.concatenate([b["image"] for b in tests])
    expected = data.normalize(source.x_test, noisy.mean, noisy.std).numpy()
    np.testing.assert_array_equal(images, expected)
    np.testing.assert_array_equal(np.concatenate([b["label"] for b in tests]), source.y_test)
    evaluation = take(data.train_eval_dataset(noisy, batch_size=64), 100)
    images = np.concatenate([b["image"] for b in evaluation])
    np.testing.assert_array_equal(images, data.normalize(source.x_train[noisy.train_indices], noisy.mean,
                                                         noisy.std).numpy())
    np.testing.assert_array_equal(np.concatenate([b["label"] for b in evaluation]),
                                  noisy.given_labels[noisy.train_indices])
    metas = take(data.meta_eval_dataset(noisy, batch_size=64), 100)
    np.testing.assert_array_equal(np.concatenate([b["image"] for b in metas]),
                                  data.normalize(source.x_train[noisy.meta_indices], noisy.mean,
                                                 noisy.std).numpy())
    np.testing.assert_array_equal(np.concatenate([b["label"] for b in metas]), noisy.meta_labels)


def test_batch_larger_than_training_set_is_refused(noisy):
    with pytest.raises(ValueError, match="batch_size=301 exceeds the 300 training samples"):
        data.train_dataset(noisy, batch_size=301, seed=0)


def test_meta_set_smaller_than_the_classes_is_refused(source):
    with pytest.raises(ValueError, match=r"meta_size=9 is smaller than the 10 classes; the class-balanced meta set "
                                         r"needs at least one sample per class \(--meta_size >= 10\)"):
        data.prepare(source, noise_type="none", noise_rate=0.0, seed=0, meta_size=9, meta_label_kind="noisy")
    assert len(data.prepare(source, noise_type="none", noise_rate=0.0, seed=0, meta_size=10,
                            meta_label_kind="noisy").meta_indices) == 10


@pytest.mark.parametrize("case", ["other_order", "majority_flipped", "heavy_but_learnable"])
def test_external_labels_that_cannot_belong_to_these_samples_are_refused(source, tmp_path, case):
    clean = source.y_train  # 400 samples, classes in turn: 0, 1, ..., 9, 0, ...
    if case == "other_order":  # the right labels, ordered by class (as an image folder is)
        labels = np.sort(clean)
    elif case == "majority_flipped":  # 60% of every class moved to the next class
        labels = np.where((np.arange(len(clean)) // K) % 5 < 3, (clean + 1) % K, clean)
    else:  # 55% uniform-like noise, but the true class stays the most frequent label
        rng = np.random.default_rng(0)
        labels = np.where(rng.random(len(clean)) < 0.55, rng.integers(0, K, len(clean)), clean)
    path = tmp_path / "labels.npy"
    np.save(path, labels)
    settings = dict(noise_type="none", noise_rate=0.0, seed=0, meta_size=10, meta_label_kind="noisy",
                    noisy_labels_path=path)
    if case == "heavy_but_learnable":
        np.testing.assert_array_equal(data.prepare(source, **settings).given_labels, labels)
        return
    expected = {"other_order": r"agree with the source's labels on 10\.0% of samples, about chance \(10\.0%\)",
                "majority_flipped": r"give most samples of class 0 another label \(10 of 10 classes past the "
                                    r"majority limit\)"}[case]
    with pytest.raises(ValueError, match=rf"labels.npy': its labels {expected}; they are probably in another "
                                         r"sample order.*official_to_folder_order"):
        data.prepare(source, **settings)
    # Not knowing the clean labels, there is nothing to compare with: accepted.
    data.prepare(source, **settings, source_labels_are_clean=False)


def test_every_dataset_names_a_loader_kind_and_every_kind_has_its_loader():
    from rmwnet_tf.data import sources
    from rmwnet_tf.datasets import DATASETS, LOADER_KINDS

    assert tuple(sources.LOADERS) == LOADER_KINDS
    assert {d.loader for d in DATASETS.values()} == set(LOADER_KINDS)
    assert sorted(sources.DOWNLOAD_HOSTS) == ["cifar10", "cifar100", "cifar100_n", "cifar10_n"]


def test_a_dangling_link_among_the_images_is_named_not_skipped(folder):
    """Issue 36: a link named 77.png to a file that is gone was skipped without a word, so the
    count of images dropped silently. A link to an existing image is read as that image."""
    root, exact = folder
    (root / "train/cat/ok.png").symlink_to(root / "train/cat/b.png")
    loaded = data.load_image_folder(root, cache_dir=None)
    assert len(loaded.x_train) == 7
    (root / "train/cat/77.png").symlink_to(root / "train/cat/moved_away.png")
    with pytest.raises(UserError, match=re.escape(
            f"image file '{root}/train/cat/77.png' is a symbolic link to '{root}/train/cat/moved_away.png', which "
            "does not exist; point the link at the image, or remove it (every image in the folder is read)")):
        data.load_image_folder(root, cache_dir=None)
    (root / "train/cat/78.PNG").symlink_to("nowhere.png")  # the first is named, with the count of the others
    with pytest.raises(UserError, match=re.escape(f"image file '{root}/train/cat/77.png' (and 1 more) is a symbolic")):
        data.load_image_folder(root, cache_dir=None)
