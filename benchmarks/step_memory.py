"""Peak memory of one step kind, measured in a fresh process (CPU: resident set size).

Why a process per step kind: TensorFlow's CPU allocator and glibc keep freed memory mapped, so
in a shared process the second step kind would reuse the first one's pages and look free.

What is measured: the process's resident set size (RSS), from /proc/self/status.
  baseline = VmRSS after building the model and its optimizers, before the first step;
  warmup steps run (the first compiles: graph optimisation and XLA transients excluded);
  the peak RSS (VmHWM) is then reset by writing 5 to /proc/self/clear_refs (Linux >= 4.0) and
  `steps` more steps run (at least one meta_every cycle);
  reported = VmHWM - baseline: the step's working set (activations, gradients, the second
  backward's intermediates) plus what compiling left resident.
Where clear_refs cannot be written, the peak falls back to getrusage(RUSAGE_SELF).ru_maxrss,
which then includes the compile-time peak; the output says which was used.
`tf.config.experimental.get_memory_info` would give the allocator's own peak, but only for GPUs.

    python -m benchmarks.step_memory '{"mode": "exact", "model_name": "resnet32", ...}'
prints one line `MEMORY {json}`.
"""

from __future__ import annotations

import json
import resource
import sys


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def measure(mode, *, model_name, batch_size, image_size, num_classes, jit_compile, warmup, steps,
            mixed_precision="float32"):
    import keras

    from benchmarks import step_benchmark as sb

    keras.mixed_precision.set_global_policy(mixed_precision)
    variant = sb.VARIANTS_BY_MODE[mode]
    shape = (image_size, image_size, 3)
    batch = sb.synthetic_batch(batch_size, shape, num_classes, seed=0)
    model = sb.build_model(variant, model_name=model_name, batch_size=batch_size, input_shape=shape,
                           num_classes=num_classes)
    step = sb.compile_steps(model.train_step, jit_compile=jit_compile)
    baseline = _status_kib("VmRSS")
    for _ in range(warmup):
        float(step(batch)["train/loss"])
    reset = _reset_peak()
    for _ in range(max(steps, variant.meta_every)):
        float(step(batch)["train/loss"])
    peak = _status_kib("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"mode": mode, "baseline_mib": baseline / 1024, "peak_mib": peak / 1024,
            "step_mib": (peak - baseline) / 1024, "peak_source": "VmHWM" if reset else "ru_maxrss"}


if __name__ == "__main__":
    print("MEMORY " + json.dumps(measure(**json.loads(sys.argv[1]))))
