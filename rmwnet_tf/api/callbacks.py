"""`WeightHistograms`: the weighting net's view of the training set in TensorBoard, epoch by epoch."""

from __future__ import annotations

import os

import keras
import numpy as np
import tensorflow as tf

from rmwnet_tf import outputs
from rmwnet_tf.api import ranking


class WeightHistograms(keras.callbacks.Callback):
    """Writes, after every `every`-th epoch, the weights W(loss) of the training samples as
    TensorBoard histograms and the W(loss) curve as an image, the pictures the command line
    writes: `weights/all`, `weights/clean` and `weights/noisy` (when the clean labels are known:
    do the wrong labels get the small weights?) and `weights/curve` (W over the losses seen,
    above a histogram of them).

    Args:
        log_dir: where to write; the events go to `log_dir/weights`, so the `log_dir` of a
            `keras.callbacks.TensorBoard` shows them as one more run beside `train` and `validation`.
        data: the training samples with their given labels, un-augmented: (images, labels)
            arrays or a `tf.data.Dataset` of (images, labels) batches, in a fixed order.
        clean_labels: the true labels of `data`, in the same order, when known (synthetic noise,
            a benchmark); they split the histogram into clean and noisy labels. Default: unknown.
        every: write after every `every`-th epoch (the pass over `data` costs an inference epoch).
        batch_size: images per inference batch when `data` are arrays.

    The step of each summary is the epoch index, as in Keras' own TensorBoard callback. A model
    without a weighting net (Base, GCE, oracle) writes nothing.
    """

    def __init__(self, log_dir, data, *, clean_labels=None, every: int = 1, batch_size: int = 256):
        super().__init__()
        if int(every) != every or every < 1:
            raise ValueError(f"every must be an integer >= 1, got {every!r}")
        self.log_dir = os.path.join(str(log_dir), "weights")
        self.data, self.every, self.batch_size = data, int(every), int(batch_size)
        self.clean_labels = None if clean_labels is None else np.asarray(clean_labels).reshape(-1)
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        if self.model.vnet is None or (epoch + 1) % self.every:
            return
        samples = ranking.score(self.model, self.data, batch_size=self.batch_size)
        if self.clean_labels is not None:
            if len(self.clean_labels) != len(samples["given"]):
                raise ValueError(f"clean_labels holds {len(self.clean_labels)} labels for {len(samples['given'])} samples")
            samples["noisy"] = self.clean_labels != samples["given"]
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        with self._writer.as_default(step=epoch):
            outputs.write_weight_summaries(self.model.weight_function, samples, epoch)
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
