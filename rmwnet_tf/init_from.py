"""`--init_from`: start a classifier from weights this tool trained, not from a random draw.

Why: a practitioner fine-tunes a network that is already good at the task (pretrained on other,
clean data) on their noisy labels, and the reproduction's protocol v3 does exactly that: a
classifier pretrained on one half of CIFAR-10's training set (`--part=a`) starts every noisy
run on the other half (`--part=b`). Two sources are accepted:

- a run folder of this tool: its newest readable checkpoint (the final weights of a finished
  run), classifier only (not the optimizer, the epoch counter or the weighting net);
- a `.weights.h5` file written by `keras.Model.save_weights` for the same architecture.

Weights are loaded once, before the run's own checkpoints are looked at: a resumed run then
restores its own weights over them, so `--init_from` only decides where training *starts*.
"""

from __future__ import annotations

import pathlib

import keras
import tensorflow as tf
from absl import logging

from rmwnet_tf import checkpointing
from rmwnet_tf.errors import UserError, described


def load_initial_weights(classifier: keras.Model, source, *, keep_head: bool = True) -> str:
    """Load `source` into `classifier` (every variable, BatchNorm statistics included); return
    a one-line description of what was loaded, for the log.

    `keep_head=False` (`--noinit_head`) puts the classifier's own freshly initialised last layer
    (`logits`) back after loading: fine-tuning on classes the source never saw starts from its
    features, not from a head that maps them to other classes' logits (protocol v4).
    """
    fresh_head = None if keep_head else [value.numpy() for value in classifier.get_layer("logits").weights]
    source = pathlib.Path(source)
    flag = f"--init_from={source}"
    if source.is_dir():
        prefixes = checkpointing.candidates(source / "checkpoints")
        if not prefixes:
            raise UserError(f"{flag}: no checkpoint in {source / 'checkpoints'}; name a run folder of this "
                            "tool that trained at least one epoch, or a .weights.h5 file")
        problems = []
        for prefix in prefixes:  # the newest readable one
            try:
                status = tf.train.Checkpoint(classifier=classifier).read(prefix)
                status.expect_partial()  # the optimizer, epoch and weighting net stay behind
                status.assert_existing_objects_matched()  # every classifier variable
            except (ValueError, AssertionError, tf.errors.OpError) as error:
                problems.append(f"{pathlib.Path(prefix).name}: {described(error, limit=200)}")
                continue
            loaded = f"{prefix} (classifier weights)"
            break
        else:
            raise UserError(f"{flag}: no checkpoint fits this classifier ({'; '.join(problems)}); it must "
                            "be a run of the same --model with the same classes and --image_size")
    elif source.name.endswith(".weights.h5") and source.is_file():
        try:
            classifier.load_weights(str(source))
        except (ValueError, OSError, KeyError) as error:
            raise UserError(f"{flag}: does not fit this classifier ({described(error, limit=200)}); it must hold the "
                            "weights of the same --model with the same classes and --image_size") from None
        loaded = str(source)
    else:
        raise UserError(f"{flag}: expected a run folder or a .weights.h5 file")
    if fresh_head is not None:
        for variable, value in zip(classifier.get_layer("logits").weights, fresh_head):
            variable.assign(value)
        loaded += ", with this run's fresh logits layer"
    logging.info("classifier initialised from %s", loaded)
    return loaded
