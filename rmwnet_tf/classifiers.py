"""The classifier architectures by name, as data: no TensorFlow, so flags can be checked first.

`config.py` takes its `--model` choices from here; `models/` holds one builder per own
architecture and builds every `keras.applications` backbone listed here the same way
(`models/pretrained.py`), so adding a backbone is one entry below.
"""

from __future__ import annotations

import dataclasses


# --weights values besides a file path. `auto`: imagenet for a keras.applications backbone, none
# (random init, the paper's setting) for the architectures built here.
WEIGHTS_CHOICES = ("auto", "imagenet", "none")
TRAINABLE_CHOICES = ("all", "head")


@dataclasses.dataclass(frozen=True)
class Classifier:
    name: str
    summary: str
    # A pretrained backbone: its constructor in keras.applications (None: built here, from scratch).
    application: str | None = None
    # The side the backbone sees: images of any --image_size are resized to it inside the model.
    input_size: int | None = None
    # (scale, offset) taking [0, 255] pixels to what the backbone's first layer expects, after its
    # own preprocessing layer when it has one (MobileNetV3, EfficientNetV2: include_preprocessing).
    pixel_scale_offset: tuple[float, float] = (1.0, 0.0)
    # Where keras.applications downloads the backbone's ImageNet weights (include_top=False) from:
    # named in the offline message; a test checks that Keras asks for exactly this file.
    imagenet_url: str | None = None

    @property
    def pretrained(self) -> bool:
        return self.application is not None


_APPLICATIONS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"

CLASSIFIERS: dict[str, Classifier] = {
    c.name: c
    for c in (
        Classifier("resnet32", "ResNet-32 (0.46M parameters), the paper's network for flip2 noise"),
        Classifier("wrn28_10", "Wide ResNet 28-10 (36.5M parameters), the paper's network for uniform and flip noise"),
        Classifier("small_cnn", "a small CNN for CPU runs (not in the paper)"),
        Classifier("tiny", "a minimal CNN with BatchNorm for unit tests"),
        Classifier("mobilenet_v3_small", "keras.applications MobileNetV3Small (0.94M backbone parameters), "
                   "the small pretrained backbone: CPU fine-tuning is affordable", "MobileNetV3Small", 224,
                   imagenet_url=_APPLICATIONS_URL + "mobilenet_v3/weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5"),
        Classifier("efficientnet_v2_b0", "keras.applications EfficientNetV2B0 (5.9M backbone parameters), "
                   "the medium pretrained backbone", "EfficientNetV2B0", 224,
                   imagenet_url=_APPLICATIONS_URL + "efficientnet_v2/efficientnetv2-b0_notop.h5"),
        Classifier("resnet50_v2", "keras.applications ResNet50V2 (23.6M backbone parameters), a large "
                   "pretrained backbone: a GPU job", "ResNet50V2", 224, (1 / 127.5, -1.0),
                   imagenet_url=_APPLICATIONS_URL + "resnet/resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    )
}


def get_classifier(name: str) -> Classifier:
    try:
        return CLASSIFIERS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(CLASSIFIERS)}") from None


def resolved_weights(model: str, weights: str) -> str | None:
    """What `--weights` means for `--model`: "imagenet", a file path, or None (random init)."""
    if weights == "auto":
        weights = "imagenet" if get_classifier(model).pretrained else "none"
    return None if weights == "none" else weights
