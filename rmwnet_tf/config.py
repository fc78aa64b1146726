"""Every user-facing setting of a training run, with defaults and checks, in one place.

Pure Python (no TensorFlow), so that a bad flag is reported before any heavy import or work.
`flags.py` turns these fields into absl flags; `train.run` takes a `Config`.
"""

from __future__ import annotations

import dataclasses
import math
import os

from rmwnet_tf import noise
from rmwnet_tf.classifiers import CLASSIFIERS, TRAINABLE_CHOICES, WEIGHTS_CHOICES, resolved_weights
from rmwnet_tf.datasets import DATASETS, TRAINING_PARTS
from rmwnet_tf.meta_steps import META_STEPS
from rmwnet_tf.methods import METHODS

STRATEGIES = ("default", "mirrored", "multi_worker")
# Fields only the weighting net and its meta step read. A method without one (Base) trains the
# same whatever they say, so two of its runs that differ only there are the same run: a Base run
# resumes, and a finished Base cell of the reproduction counts, under any weighting-net setting.
# Fields marked run_only say how or where a run executes, not what it trains: they may change
# between a run and its resumption, and a finished reproduction cell still counts under others.
WEIGHTING_NET_FIELDS = ("vnet_optimizer", "vnet_lr", "vnet_momentum", "vnet_weight_decay", "weight_norm",
                        "meta_step", "meta_every")
JIT_CHOICES = ("auto", "true", "false")
# Image sides a run accepts: below 8 the classifiers' pooling fails (small_cnn at 3) and the
# crop augmentation is meaningless; above 1024 the decoded arrays alone outgrow any machine
# (100000 asked for 37 GiB and failed in numpy).
IMAGE_SIZE_RANGE = (8, 1024)
MAX_BOUNDARY = 1_000_000  # epochs; larger ones overflowed the step counter in Keras' schedule
# --seed goes to keras.utils.set_random_seed, whose numpy half takes 0 .. 2**32 - 1 (outside it a
# run stopped with numpy's "Seed must be between 0 and 2**32 - 1", naming no flag, after the data
# had been read); --part_seed only feeds numpy's SeedSequence, which takes any integer >= 0.
MAX_SEED = 2**32 - 1
# Fields holding a path, which a deleted working directory makes meaningless when relative.
PATH_FIELDS = ("model_dir", "data_dir", "tfds_data_dir", "noisy_labels", "init_from", "weights")


def _field(default, help_text, **extra):
    return dataclasses.field(default=default, metadata={"help": help_text, **extra})


@dataclasses.dataclass
class Config:
    # ---- data
    dataset: str = _field("cifar10", "Training data source.", choices=tuple(DATASETS))
    data_dir: str = _field("", "For dataset=image_folder: a folder with train/<class>/* and test/<class>/*.")
    tfds_data_dir: str = _field("", "tensorflow-datasets data_dir (default: tfds' own, ~/tensorflow_datasets).")
    image_size: int = _field(32, "Images are resized to image_size x image_size.")
    synthetic_train_size: int = _field(4000, "For dataset=synthetic: number of training images.")
    synthetic_test_size: int = _field(1000, "For dataset=synthetic: number of test images.")
    train_size: int = _field(0, "Use a seeded, class-balanced subset of this many training images (0: all).")
    classes: str = _field("", "Train and test on some of the source's classes only: comma-separated class indices or "
                          "names (e.g. 5,6,7,8,9 or dog,frog,horse,ship,truck), relabelled 0..K-1 in the order "
                          "given, their names kept. Empty: every class.")
    part: str = _field("all", "Train on one fixed half of the source's training set: a or b (disjoint, "
                       "class-stratified, drawn by --part_seed alone, whatever --seed says), e.g. pretrain on "
                       "a, then fine-tune on b with --init_from; all: the whole set. The test set is never "
                       "part of either.", choices=TRAINING_PARTS)
    part_seed: int = _field(0, "Seed of the a/b halving of the training set (--part).")
    augment: bool = _field(True, "Reflect-pad 4, random crop and random flip per training example.")
    # ---- label noise
    noise_type: str = _field("none", "Synthetic label noise injected into the training labels.",
                             choices=noise.NOISE_TYPES)
    noise_rate: float = _field(
        0.0, "Noise rate eta of noise_type, as the paper defines it. uniform: each label is redrawn with "
        "probability eta from all K classes (its own included), so only eta*(K-1)/K of the labels "
        "change (0.36 at eta=0.4, K=10); flip/flip2: a fraction eta moves to the one/two flip "
        "target(s). Ignored with --noisy_labels.")
    label_key: str = _field("", "For cifar10_n / cifar100_n: the human label set to train on (cifar10_n: "
                            "aggre_label, random_label1..3, worse_label; cifar100_n: noise_label).")
    noisy_labels: str = _field("", "A .npy or .csv of training labels (source order) replacing synthetic "
                               "noise; needs --noise_type=none, and --noise_rate is then ignored.")
    source_labels_are_clean: bool = _field(
        True, "Treat the source's own labels as the clean truth (enables detection AUC).")
    # ---- method
    method: str = _field("rmnwnet", "The training method; " + "; ".join(f"{m.name}: {m.summary}"
                                                                   for m in METHODS.values()) + ".",
                         choices=tuple(METHODS))
    meta_size: int = _field(1000, "Meta samples taken (class-balanced) out of the training set.")
    hold_out_meta: bool = _field(False, "Methods without a meta set (base, gce, oracle): leave out of training the meta_size samples a meta "
                                 "method would take, so every method trains on the same images.")
    holdout_folds: int = _field(0, "Cross-fitting (e.g. cleanlab on out-of-sample probabilities): split the training "
                                "set into this many seeded folds, class-balanced by given label, and leave fold "
                                "--holdout_fold out of training; the run writes the final classifier's probabilities "
                                "on it (heldout_probs.npy, heldout_index.npy). 0: off.")
    holdout_fold: int = _field(0, "The fold --holdout_folds leaves out of training (0 .. holdout_folds - 1).")
    weight_norm: str = _field("sum", "Normalise sample weights by their batch sum (official code) or by n.",
                              choices=("sum", "mean"))
    meta_step: str = _field("exact", "; ".join(f"{s.name}: {s.summary}" for s in META_STEPS.values()) + ".",
                            choices=tuple(META_STEPS))
    meta_every: int = _field(1, "Update the weighting net on one step in meta_every (steps whose count is a "
                             "multiple of it); the other steps only weight the loss by the current net.")
    # ---- model and optimisation
    model: str = _field("resnet32", "Classifier architecture.", choices=tuple(CLASSIFIERS))
    init_from: str = _field("", "Start the classifier from weights this tool trained: a run folder (its "
                            "newest checkpoint) or a .weights.h5 file; same --model, classes and image size.")
    init_head: bool = _field(True, "With --init_from: take its last (`logits`) layer too. false: keep this run's "
                             "fresh, seeded head, as a fine-tune on new classes needs (the class count must still "
                             "match).")
    epochs: int = _field(120, "Training epochs.")
    batch_size: int = _field(100, "Global train batch size (split across replicas).")
    meta_batch_size: int = _field(100, "Global meta batch size.")
    lr: float = _field(0.05, "Classifier SGD learning rate.")
    lr_boundaries: str = _field("40,50", "Comma-separated epochs after which lr is multiplied by lr_decay.")
    lr_decay: float = _field(0.1, "Learning-rate factor at each boundary.")
    momentum: float = _field(0.9, "Classifier SGD (Nesterov) momentum.")
    weight_decay: float = _field(5e-4, "Classifier L2 coefficient, coupled as in PyTorch's SGD.")
    vnet_optimizer: str = _field("sgd", "Weighting-net optimizer (sgd: Nesterov momentum).", choices=("sgd", "adam"))
    vnet_lr: float = _field(1e-3, "Weighting-net learning rate.")
    vnet_momentum: float = _field(0.9, "Weighting-net SGD momentum.")
    vnet_weight_decay: float = _field(5e-4, "Weighting-net L2 coefficient (coupled).")
    # ---- a pretrained backbone (a keras.applications --model, given a new Dense head)
    weights: str = _field("auto", "Initial backbone weights of a keras.applications --model: imagenet "
                          "(downloaded by Keras on first use), none (random), or a weights file of the backbone "
                          "(.h5 or .weights.h5, e.g. the file imagenet would download); auto: imagenet for "
                          "those, none for the architectures built here.")
    trainable: str = _field("all", "all: fine-tune every layer; head: freeze a pretrained backbone (inference "
                            "mode) and train the Dense head only; without --augment its features are then "
                            "computed once and cached.", choices=TRAINABLE_CHOICES)
    # ---- run
    seed: int = _field(0, "Seed of the noise, the meta split, the data order and the initial weights.")
    model_dir: str = _field("runs/default", "Where checkpoints, TensorBoard logs and results go.", run_only=True)
    overwrite: bool = _field(False, "Delete an existing model_dir instead of resuming it.", run_only=True)
    jit_compile: str = _field("auto", "XLA for the train step: auto picks by device type (off on CPU, "
                              "where it was measured slower; on on GPU).", choices=JIT_CHOICES, run_only=True)
    strategy: str = _field("default", "default (one device), mirrored (all local GPUs), multi_worker "
                           "(TF_CONFIG).", choices=STRATEGIES, run_only=True)
    export: bool = _field(True, "Write a SavedModel of the classifier to model_dir/export at the end.", run_only=True)
    suspects: int = _field(64, "Images in suspects.png and TensorBoard's `suspects` sheet: the most suspicious "
                           "training labels (0: no sheet).")
    steps_per_execution: int = _field(1, "Train steps per compiled call (fewer Python round trips).", run_only=True)
    eval_every: int = _field(1, "Evaluate (test set, un-augmented training set, meta set) every this many "
                             "epochs, and always after the last one.", run_only=True)
    checkpoint_every_steps: int = _field(
        0, "Also save a checkpoint every this many steps inside an epoch (0: only at epoch ends). "
        "SIGTERM and Ctrl-C always save one at the next step boundary.", recorded=False)

    # ------------------------------------------------------------------ derived
    @property
    def boundaries(self) -> list[int]:
        return parse_boundaries(self.lr_boundaries)

    @property
    def class_selection(self) -> list[str]:
        """--classes as its comma-separated entries (indices or names), in the order given."""
        return [part.strip() for part in self.classes.split(",") if part.strip()]

    @property
    def caches_features(self) -> bool:
        """A head-only run without augmentation: the frozen backbone sees each image once, so its
        features are computed once and the steps train the head on them (feature_cache.py)."""
        return self.trainable == "head" and not self.augment

    def to_dict(self) -> dict:
        """The run's identity, as config.json and results.json record it and as run folders are
        compared. Fields with ``recorded=False`` only say how a run is saved, not what it trains,
        so they are left out: adding one must not make every earlier run folder "different"."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)
                if field.metadata.get("recorded", True)}

    def differences_from(self, saved: dict, ignore=()) -> dict:
        """{field: (saved value, this value)} for every recorded field in which a run folder's
        (upgraded) config.json differs from this one, except `ignore` and the fields this run's
        method never reads (WEIGHTING_NET_FIELDS for Base)."""
        skip = set(ignore)
        method = METHODS.get(self.method)
        if method is not None and not method.uses_meta:
            skip |= set(WEIGHTING_NET_FIELDS)
        return {key: (saved.get(key), value) for key, value in self.to_dict().items()
                if key not in skip and saved.get(key) != value}

    # ------------------------------------------------------------------ checks
    def problems(self) -> list[tuple[str, str]]:
        """(flag, message) for every bad value or contradiction, without touching the data."""
        found = []

        def bad(flag, message):
            found.append((flag, message))

        for name in self._relative_paths_without_working_directory():
            bad(name, f"{getattr(self, name)!r} is relative to the working directory, which no longer exists "
                "(deleted or moved since this shell entered it); cd to an existing folder, or give an "
                "absolute path")
        for field in dataclasses.fields(self):
            choices = field.metadata.get("choices")
            value = getattr(self, field.name)
            if choices and value not in choices:
                bad(field.name, f"{value!r} is not one of {', '.join(choices)}")
        for name in ("epochs", "batch_size", "meta_batch_size", "image_size", "eval_every",
                     "steps_per_execution", "meta_every"):
            if getattr(self, name) < 1:
                bad(name, f"must be a positive integer, got {getattr(self, name)}")
        for name in ("train_size", "meta_size", "synthetic_train_size", "synthetic_test_size",
                     "checkpoint_every_steps", "suspects"):
            if getattr(self, name) < 0:
                bad(name, f"must be >= 0, got {getattr(self, name)}")
        if self.dataset == "synthetic":  # generated data needs images in both splits
            for name in ("synthetic_train_size", "synthetic_test_size"):
                if getattr(self, name) == 0:
                    bad(name, "must be a positive number of images with --dataset=synthetic, got 0")
        if not 0 <= self.seed <= MAX_SEED:
            bad("seed", f"must be between 0 and {MAX_SEED} (2**32 - 1), got {self.seed}")
        if self.part_seed < 0:
            bad("part_seed", f"must be >= 0, got {self.part_seed}")
        for name in ("lr", "vnet_lr"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                bad(name, f"must be a positive number, got {value}")
        for name in ("momentum", "vnet_momentum", "weight_decay", "vnet_weight_decay", "lr_decay"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                bad(name, f"must be a non-negative number, got {value}")
        try:
            parse_boundaries(self.lr_boundaries)
        except ValueError as error:
            bad("lr_boundaries", str(error))
        low, high = IMAGE_SIZE_RANGE
        if self.image_size >= 1 and not low <= self.image_size <= high:
            bad("image_size", f"must be between {low} and {high} pixels, got {self.image_size}")
        if not self.model_dir.strip():
            bad("model_dir", "is empty; give the run's folder, e.g. --model_dir=runs/my_run")

        classifier = CLASSIFIERS.get(self.model)
        if classifier is not None:
            if self.weights not in WEIGHTS_CHOICES:  # a file
                if not os.path.isfile(self.weights):
                    bad("weights", f"{self.weights!r} is neither one of {', '.join(WEIGHTS_CHOICES)} nor a file")
                elif not self.weights.endswith(".h5"):
                    bad("weights", f"{self.weights!r} is not a Keras weights file (.h5 or .weights.h5)")
                elif not is_hdf5(self.weights):
                    bad("weights", f"{self.weights!r} is not an HDF5 file (Keras weights files are; this one is "
                        "cut short or something else): give the backbone's weights file, e.g. the one "
                        "--weights=imagenet downloads")
            if not classifier.pretrained and self.weights not in ("auto", "none"):
                backbones = ", ".join(c.name for c in CLASSIFIERS.values() if c.pretrained)
                bad("weights", f"--model={self.model} is built from scratch here; pretrained weights are for "
                    f"the keras.applications backbones ({backbones})")
            elif self.trainable == "head" and resolved_weights(self.model, self.weights) is None:
                bad("trainable", "head freezes the backbone, which needs pretrained weights: a keras.applications "
                    "--model with --weights=imagenet or a weights file")

        dataset = DATASETS.get(self.dataset)
        if dataset is not None and dataset.from_folder:
            if not self.data_dir:
                bad("data_dir", "is required with --dataset=image_folder")
            elif not os.path.isdir(self.data_dir):
                bad("data_dir", f"{self.data_dir!r} is not a folder")
        elif self.data_dir:
            bad("data_dir", f"is only used with --dataset=image_folder (got --dataset={self.dataset})")
        if dataset is not None and dataset.label_keys:
            if self.label_key not in dataset.label_keys:
                bad("label_key", f"{self.label_key!r} is not a label set of {self.dataset}; one of "
                    f"{', '.join(dataset.label_keys)}")
            if self.noise_type != "none":
                bad("noise_type", f"must be 'none' with --dataset={self.dataset}: its human labels are the noise")
            if self.noisy_labels:
                bad("noisy_labels", f"--dataset={self.dataset} brings its own noisy labels (--label_key)")
        elif self.label_key:
            bad("label_key", f"is only used with cifar10_n and cifar100_n (got --dataset={self.dataset})")
        if self.noisy_labels:
            if not os.path.isfile(self.noisy_labels):
                bad("noisy_labels", f"file {self.noisy_labels!r} does not exist")
            if self.noise_type != "none":
                bad("noise_type", "must be 'none' when --noisy_labels supplies the noisy labels")
        num_classes = dataset.num_classes if dataset is not None else None
        if self.classes.strip():
            num_classes = self._check_classes(bad, num_classes, dataset)
        if self.noise_type not in noise.NOISE_TYPES:
            pass  # reported above
        elif self.noise_type == "none":
            if self.noise_rate != 0 and not self.noisy_labels:  # external labels: rate ignored
                bad("noise_rate", f"is {self.noise_rate} but --noise_type=none injects no noise")
        else:
            try:
                noise.validate_noise(self.noise_type, self.noise_rate, num_classes or 10)
            except ValueError as error:
                bad("noise_rate", str(error))

        if not self.init_head and not self.init_from:
            bad("init_head", "--noinit_head only applies with --init_from (a fresh head is the default without it)")
        if self.init_from:
            if not os.path.exists(self.init_from):
                bad("init_from", f"{self.init_from!r} does not exist (a run folder or a .weights.h5 file)")
            elif not os.path.isdir(self.init_from) and not self.init_from.endswith(".weights.h5"):
                bad("init_from", f"{self.init_from!r} is neither a run folder nor a .weights.h5 file")

        method = METHODS.get(self.method)
        holds_meta = method is not None and (method.uses_meta or self.hold_out_meta)
        if self.hold_out_meta and method is not None and method.uses_meta:
            bad("hold_out_meta", f"only applies to methods without a meta set ({self.method} holds out "
                "its meta set anyway)")
        if method is not None and method.clean_samples_only and (
                not self.source_labels_are_clean or (self.noise_type == "none" and not self.noisy_labels
                                                     and not (dataset and dataset.label_keys))):
            bad("method", f"{self.method} trains on the correctly labelled samples only, so it needs the "
                "clean labels (--source_labels_are_clean) and noisy ones to leave out")
        if holds_meta:
            if self.meta_size < 1:
                bad("meta_size", f"method {self.method} needs meta samples (got --meta_size={self.meta_size})")
            elif num_classes and self.meta_size < num_classes:
                of = f"--classes={self.classes}" if self.classes.strip() else self.dataset
                bad("meta_size", f"{self.meta_size} is smaller than the {num_classes} classes of "
                    f"{of}; the class-balanced meta set needs at least one sample per class")
            if method.uses_meta and self.meta_size >= 1 and self.meta_batch_size > self.meta_size:
                bad("meta_batch_size", f"{self.meta_batch_size} exceeds the {self.meta_size} meta samples "
                    "(--meta_size); a meta batch would repeat samples")
            if method.meta_labels == "clean" and not self.source_labels_are_clean:
                bad("method", "mwnet needs clean meta labels, but --nosource_labels_are_clean says they "
                    "are unknown; use rmnwnet, which needs no clean samples")
        if self.holdout_folds == 1 or self.holdout_folds < 0:
            bad("holdout_folds", f"must be 0 (off) or at least 2, got {self.holdout_folds}")
        elif self.holdout_folds and not 0 <= self.holdout_fold < self.holdout_folds:
            bad("holdout_fold", f"must be between 0 and {self.holdout_folds - 1} (--holdout_folds="
                f"{self.holdout_folds}), got {self.holdout_fold}")
        elif not self.holdout_folds and self.holdout_fold:
            bad("holdout_fold", f"--holdout_fold={self.holdout_fold} needs --holdout_folds (how many folds)")
        if self.train_size and self.meta_size and holds_meta:
            if self.train_size <= self.meta_size:
                bad("train_size", f"{self.train_size} leaves no training data after --meta_size={self.meta_size}")
        return found

    def _check_classes(self, bad, source_classes: int | None, dataset) -> int:
        """--classes: entries that can be checked before the data is read (names are resolved
        against the source's class names when it is loaded). Returns the run's class count."""
        selected = self.class_selection
        duplicates = sorted({entry for entry in selected if selected.count(entry) > 1})
        if len(selected) < 2:
            bad("classes", f"needs at least 2 classes, got {self.classes!r}")
        elif duplicates:
            bad("classes", f"lists {', '.join(duplicates)} more than once")
        indices = [int(entry) for entry in selected if entry.lstrip("-").isdigit()]
        if any(index < 0 for index in indices):
            bad("classes", f"class indices start at 0, got {self.classes!r}")
        elif source_classes and any(index >= source_classes for index in indices):
            bad("classes", f"{self.dataset} has classes 0..{source_classes - 1}, got {self.classes!r}")
        if dataset is not None and dataset.label_keys:
            bad("classes", f"is not available with --dataset={self.dataset}: its human labels may name a class "
                "left out")
        if self.noisy_labels:
            bad("classes", "cannot be combined with --noisy_labels (the labels file follows the whole source's "
                "sample order); write the labels of the kept classes into an image folder of their own")
        return len(selected)

    def _relative_paths_without_working_directory(self) -> list[str]:
        """The path fields given relative to a working directory that was deleted (or moved)
        after the shell entered it: os.getcwd() then fails, and every relative path with it,
        in a FileNotFoundError naming no file, somewhere inside the run. Absolute paths still
        work there, so only relative ones are refused."""
        try:
            os.getcwd()
            return []
        except FileNotFoundError:
            pass
        return [name for name in PATH_FIELDS
                if getattr(self, name) and getattr(self, name) not in WEIGHTS_CHOICES
                and not os.path.isabs(os.path.expanduser(getattr(self, name)))]

    def validate(self) -> "Config":
        problems = self.problems()
        if problems:
            raise ConfigError(problems)
        return self


class ConfigError(ValueError):
    def __init__(self, problems):
        self.problems = problems
        super().__init__("; ".join(f"--{flag}: {message}" for flag, message in problems))


HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def is_hdf5(path) -> bool:
    """Whether `path` starts an HDF5 file: its signature at byte 0, or at 512, 1024, 2048, ...
    after a user block (the HDF5 format's rule). Why here: h5py's own error for anything else,
    "Unable to synchronously open file (file signature not found)", names neither the file nor
    the flag, and came only after TensorFlow had loaded and the data had been read."""
    try:
        with open(path, "rb") as handle:
            size, offset = os.fstat(handle.fileno()).st_size, 0
            while offset + len(HDF5_SIGNATURE) <= size:
                handle.seek(offset)
                if handle.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE:
                    return True
                offset = 512 if offset == 0 else offset * 2
    except OSError:
        return False
    return False


def upgrade_saved(saved: dict | None) -> dict | None:
    """A run folder's config.json in today's field names, so runs written before a rename still
    compare equal to the same settings (resuming, and the reproduction's finished cells).

    `meta_grad` x `meta_scope` became `meta_step`: scope head was always the head step, whatever
    meta_grad said. A field added since the folder was written takes its default: every new
    field's default is the behaviour from before it existed (`meta_every=1`, `eval_every=1`,
    `hold_out_meta=False`, ...), so the old run trained exactly that.
    """
    if saved is None:
        return saved
    upgraded = dict(saved)
    if "meta_grad" in upgraded and "meta_step" not in upgraded:
        grad, scope = upgraded.pop("meta_grad"), upgraded.pop("meta_scope", "full")
        upgraded["meta_step"] = "head" if scope == "head" else {"double_backward": "exact"}.get(grad, grad)
    for field in dataclasses.fields(Config):
        if field.metadata.get("recorded", True) and field.name not in upgraded:
            upgraded[field.name] = field.default
    return upgraded


def parse_boundaries(text: str) -> list[int]:
    text = text.strip()
    if not text:
        return []
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        raise ValueError(f"expects comma-separated epochs like '40,50', got {text!r}") from None
    if any(v < 1 for v in values) or values != sorted(set(values)):
        raise ValueError(f"epochs must be positive and increasing, got {text!r}")
    if values[-1] > MAX_BOUNDARY:
        raise ValueError(f"epochs must be at most {MAX_BOUNDARY:,}, got {text!r}")
    return values


RUN_ONLY_FIELDS = tuple(field.name for field in dataclasses.fields(Config) if field.metadata.get("run_only"))
