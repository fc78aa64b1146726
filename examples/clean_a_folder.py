"""Find the probably wrong labels of an image folder: train RMNW-Net on it, rank, look at the suspects.

The folder holds one subfolder per class (`<folder>/<class>/<image>`), the layout
`keras.utils.image_dataset_from_directory` reads. A random tenth of it serves as the meta set:
no label needs checking first. Every image is then ranked, and the most suspicious are written
to `<out>/suspects.csv` (most suspicious first) and drawn in `<out>/suspects.png`.

    python examples/clean_a_folder.py --folder=path/to/images --out=review
    python examples/clean_a_folder.py --tiny    # a generated folder with known wrong labels, seconds
"""

import argparse
import csv
import os
import pathlib
import tempfile

import keras
import numpy as np
from PIL import Image

import rmwnet_tf
from rmwnet_tf import figures
from rmwnet_tf.data import make_synthetic


def demo_folder(root: pathlib.Path, count: int, image_size: int) -> None:
    """Generated images filed by class, a third of them into a wrong class's folder."""
    source = make_synthetic(count, 1, num_classes=4, image_size=image_size, seed=0)
    rng = np.random.default_rng(0)
    for i, (image, label) in enumerate(zip(source.x_train, source.y_train)):
        filed = (label + rng.integers(1, 4)) % 4 if rng.random() < 1 / 3 else label
        folder = root / f"class_{filed}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i:05d}_truly_class_{label}.png")


def classifier(image_size: int, num_classes: int) -> keras.Model:
    return keras.Sequential([
        keras.Input((image_size, image_size, 3)), keras.layers.Rescaling(1 / 255),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu"), keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(64, 3, padding="same", activation="relu"), keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(num_classes),  # logits
    ])


def main(folder=None, out=None, *, image_size=32, epochs=20, show=64, tiny=False) -> list[dict]:
    if tiny:
        image_size, epochs, show = 8, 2, 8
    if folder is None:
        folder = pathlib.Path(tempfile.mkdtemp(prefix="rmwnet_demo_folder_"))
        demo_folder(folder, 64 if tiny else 1200, image_size)
    out = pathlib.Path(out or tempfile.mkdtemp(prefix="rmwnet_review_"))
    out.mkdir(parents=True, exist_ok=True)

    dataset = keras.utils.image_dataset_from_directory(folder, image_size=(image_size, image_size),
                                                       batch_size=None, shuffle=False, verbose=False)
    paths, class_names = dataset.file_paths, dataset.class_names
    images = np.stack([image for image, _ in dataset.as_numpy_iterator()])
    labels = np.array([label for _, label in dataset.as_numpy_iterator()])

    meta = np.random.default_rng(0).permutation(len(labels))[: max(len(labels) // 10, len(class_names))]
    train = np.setdiff1d(np.arange(len(labels)), meta)
    keras.utils.set_random_seed(0)
    model = rmwnet_tf.MetaWeightModel(classifier(image_size, len(class_names)), seed=0)
    model.compile(keras.optimizers.SGD(0.03, momentum=0.9, nesterov=True), vnet_optimizer=keras.optimizers.Adam(1e-3))
    model.fit(images[train], labels[train], meta_data=(images[meta], labels[meta]), batch_size=32, epochs=epochs,
              verbose=0 if tiny else 2)

    ranking = rmwnet_tf.rank_suspects(model, (images, labels))  # every image, the meta set's too
    rows = [dict(rank=rank + 1, path=paths[i], given=class_names[given], predicted=class_names[predicted],
                 weight=f"{weight:.4g}", loss=f"{loss:.4g}")
            for rank, (i, given, predicted, weight, loss) in enumerate(zip(
                ranking.indices, ranking.given_labels, ranking.predicted_labels, ranking.weights, ranking.losses))]
    with open(out / "suspects.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    top = ranking.top(show)
    sheet = figures.suspects_figure(images[top.indices].astype(np.uint8),
                                    [f"{row['given']} -> {row['predicted']}\nw {row['weight']}" for row in rows[:show]],
                                    title=f"{show} most suspicious labels")
    (out / "suspects.png").write_bytes(figures.to_png(sheet))
    print(f"{len(rows)} images ranked; most suspicious first in {out / 'suspects.csv'}, pictures in {out / 'suspects.png'}")
    for row in rows[:5]:
        print(f"  {row['rank']}. {os.path.relpath(row['path'], folder)}: labelled {row['given']}, "
              f"predicted {row['predicted']}, weight {row['weight']}")
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", help="one subfolder per class (default: a generated demo folder)")
    parser.add_argument("--out", help="where suspects.csv and suspects.png go (default: a new temp folder)")
    parser.add_argument("--image_size", type=int, default=32, help="images are resized to this square side")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--show", type=int, default=64, help="suspects drawn in suspects.png")
    parser.add_argument("--tiny", action="store_true", help="a tiny generated folder: seconds (the test suite's run)")
    args = parser.parse_args()
    main(args.folder, args.out, image_size=args.image_size, epochs=args.epochs, show=args.show, tiny=args.tiny)
