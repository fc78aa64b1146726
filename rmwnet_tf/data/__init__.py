"""Image sources, the noisy-label table, the meta split, and the tf.data pipelines.

Data flows one way, one module per step, and no module imports a later one:
``sources.load_source`` (pixels + the labels that came with them) ->
``noisy_split.prepare`` (the labels training sees, the meta split, normalisation) ->
``pipelines.train_dataset`` / ``meta_dataset`` / ``test_dataset`` / ``train_eval_dataset`` /
``heldout_eval_dataset`` (batches).

Reproducibility: everything random is a pure function of a seed (numpy ``SeedSequence``
streams in the noisy split, stateless TF ops keyed by (seed, stream, epoch or step) in the
pipelines), so a resumed run sees exactly the batches an uninterrupted run would have seen.

The package re-exports the public names so callers need only ``from rmwnet_tf import data``.
These are copies of the bindings: to replace a function in a test, patch it in the module
that looks it up (e.g. ``data.sources.decode_images``), not here.
"""

from rmwnet_tf.data.sources import (
    CACHE_ENV_VAR,
    DEFAULT_CACHE_DIR,
    IMAGE_EXTENSIONS,
    SOURCES,
    ImageSource,
    decode_images,
    load_image_folder,
    load_source,
    make_synthetic,
    select_classes,
)
from rmwnet_tf.data.noisy_split import (
    META_LABEL_KINDS,
    NoisyData,
    channel_stats,
    load_label_file,
    official_to_folder_order,
    prepare,
)
from rmwnet_tf.data.pipelines import (
    AUGMENT_PAD,
    augment_pad,
    epoch_order,
    gather_crop_flip,
    heldout_eval_dataset,
    meta_dataset,
    meta_eval_dataset,
    normalize,
    random_crop_flip,
    steps_per_epoch,
    stream_key,
    test_dataset,
    train_dataset,
    train_eval_dataset,
)

__all__ = [
    # sources
    "SOURCES",
    "IMAGE_EXTENSIONS",
    "CACHE_ENV_VAR",
    "DEFAULT_CACHE_DIR",
    "ImageSource",
    "load_source",
    "load_image_folder",
    "decode_images",
    "make_synthetic",
    "select_classes",
    # noisy split
    "META_LABEL_KINDS",
    "NoisyData",
    "prepare",
    "load_label_file",
    "official_to_folder_order",
    "channel_stats",
    # pipelines
    "AUGMENT_PAD",
    "augment_pad",
    "stream_key",
    "epoch_order",
    "random_crop_flip",
    "gather_crop_flip",
    "normalize",
    "steps_per_epoch",
    "train_dataset",
    "meta_dataset",
    "meta_eval_dataset",
    "test_dataset",
    "train_eval_dataset",
    "heldout_eval_dataset",
]
