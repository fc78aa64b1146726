"""Does `--steps_per_execution` speed up training through `fit` on this machine?

    python benchmarks/fit_steps_per_execution.py [--model=resnet32 --image_size=16 --rounds=4]

Times one epoch of `model.fit` (the production path: `train.build_model`, `train.epoch_dataset`)
per setting, for Base and RMNW-Net, with steps_per_execution 1 and 4, interleaved round-robin in
one process so that the machine's drift hits every variant alike. Prints the median seconds per
step and the ratio spe4/spe1 per method. The first epoch of each variant (compilation) is not
timed. Synthetic data of the reduced protocol's shape (16x16, 2,000 training images, batch 100).
"""

from __future__ import annotations

import dataclasses
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # run from anywhere

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "resnet32", "Classifier.")
flags.DEFINE_integer("image_size", 16, "Image side.")
flags.DEFINE_integer("rounds", 4, "Timed epochs per variant.")


def main(argv):
    del argv
    from rmwnet_tf import data as data_lib
    from rmwnet_tf import train
    from rmwnet_tf.config import Config

    variants = {}
    for method in ("base", "rmnwnet"):
        for spe in (1, 4):
            config = Config(dataset="synthetic", synthetic_train_size=3000, synthetic_test_size=100,
                            image_size=FLAGS.image_size, model=FLAGS.model, method=method, meta_size=1000,
                            noise_type="uniform", noise_rate=0.4, steps_per_execution=spe, export=False)
            data = train.load_data(config)
            steps = data_lib.steps_per_epoch(data, config.batch_size)
            jit = train.resolve_jit(config.jit_compile, train.make_strategy("default"), method != "base")
            model = train.build_model(config, data, steps, jit)
            variants[(method, spe)] = (config, data, steps, model)

    def one_epoch(key, epoch):
        config, data, steps, model = variants[key]
        started = time.perf_counter()
        model.fit(train.epoch_dataset(config, data, epoch, steps), epochs=1, steps_per_epoch=steps,
                  shuffle=False, verbose=0)
        return (time.perf_counter() - started) / steps

    for key in variants:
        one_epoch(key, 0)  # compile
    times = {key: [] for key in variants}
    for epoch in range(1, FLAGS.rounds + 1):
        for key in variants:
            times[key].append(one_epoch(key, epoch))
    for (method, spe), values in times.items():
        print(f"{method} steps_per_execution={spe}: {np.median(values):.4f} s/step (median of {len(values)})")
    for method in ("base", "rmnwnet"):
        ratio = np.median(times[(method, 4)]) / np.median(times[(method, 1)])
        print(f"ratio {method} spe4/spe1 = {ratio:.3f}")


if __name__ == "__main__":
    app.run(main)
