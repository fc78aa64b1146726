"""Where the time of one train step goes, per op category, from TensorFlow's profiler (issue #15).

Why: `scripts/benchmark_step.py` says how long a step takes, not why; the meta step's cost over the
plain step could sit in the extra convolution passes, in batch norm's many small ops, or in Python
and tf.function dispatch. This module profiles a few steps of one step kind with
`tf.profiler.experimental` and sums the trace's op times into categories; `scripts/profile_step.py`
is its command line.

What the trace holds, and how it is read (the `.xplane.pb` written under the log directory, parsed
with the XSpace proto that ships with TensorFlow; no TensorBoard plugin is needed):
  * TF executor (XLA off): one event per op kernel, named `op_name:OpType`, on the executor's
    threads (`tf_Compute/...`);
  * XLA (jit_compile=True): one event per HLO thunk (a fusion, a convolution, a copy) with the stats
    `hlo_op` and `hlo_module`; the compiled modules are in the `/host:metadata` plane, and each HLO
    instruction's metadata names the TF op (name and type) it was lowered from. A fusion counts
    as the op of its root instruction.
Only events that start inside the `profile_step` windows around the steps count. Two times per op:
  * op time (thread time): its duration minus the ops nested in it on the same thread;
  * wall time: every instant of the step is split evenly among the ops running at that instant
    (on a 2-core CPU the executor runs a layer's input and filter gradients side by side), so the
    categories' wall times add up to the time during which any op ran, and `remainder` is the
    rest of the step: Python, tf.function dispatch, the executor's own bookkeeping between ops.
The categories' wall times plus the remainder are the step's wall time exactly.

The profiler adds its own overhead (a TraceMe per op), so the script also times the same steps
without it; compare the two before trusting the small categories.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re

STEP_TRACE = "profile_step"  # the TraceMe around each profiled step (`_r=1` makes it a step for TensorBoard)

CONV_FWD = "conv forward"
CONV_BWD_INPUT = "conv backward input"
CONV_BWD_FILTER = "conv backward filter"
BN_FWD = "batch norm forward"
BN_BWD = "batch norm backward"
OTHER = "element-wise and other ops"
OPTIMIZER = "optimizer update"
CATEGORIES = (CONV_FWD, CONV_BWD_INPUT, CONV_BWD_FILTER, BN_FWD, BN_BWD, OTHER, OPTIMIZER)
CONV_CATEGORIES = (CONV_FWD, CONV_BWD_INPUT, CONV_BWD_FILTER)

# Ops that only call other ops (whose inner ops are traced themselves, often on other threads).
WRAPPER_TYPES = {"PartitionedCall", "StatefulPartitionedCall", "XlaLaunch", "_XlaRun", "_XlaCompile",
                 "While", "StatelessWhile", "If", "StatelessIf", "Case", "StatelessCase"}
OPTIMIZER_TYPE = re.compile(r"^(Resource)?(Sparse)?Apply")  # ResourceApplyKerasMomentum etc.
OPTIMIZER_SCOPE = re.compile(r"^(sgd|adam\w*|rmsprop|momentum|\w*optimizer)(_\d+)?$", re.IGNORECASE)
TF_OP_EVENT = re.compile(r"^(?P<name>[^:\s][^:]*):(?P<type>[A-Za-z_]\w*)$")


@dataclasses.dataclass(frozen=True)
class Op:
    """One op event's times over the profiled steps, in picoseconds (see the module docstring).

    `name` and `type` are the TF op's (under XLA: from the HLO instruction's metadata, or the HLO
    instruction's name and opcode when the metadata is empty); `width` is a convolution's channel
    count read off its HLO shapes (TF executor events carry no shapes: their width comes from the
    layer in the op name).
    """

    name: str
    type: str
    ps: float = 0.0
    wall_ps: float = 0.0
    width: int | None = None


@dataclasses.dataclass(frozen=True)
class Layers:
    """What the op names and HLO shapes are matched against.

    conv_widths: conv layer name -> filters; kernels: conv kernel shapes (kh, kw, cin, cout);
    batch_norms, optimizers: layer and optimizer names (the name scopes of their ops).
    """

    conv_widths: dict
    batch_norms: frozenset = frozenset()
    optimizers: frozenset = frozenset()
    kernels: frozenset = frozenset()


@dataclasses.dataclass
class Profile:
    """Picoseconds summed over `steps` step windows."""

    steps: int
    wall_ps: float
    busy_ps: float  # time during which at least one op ran
    ops: list


def layers_of(model) -> Layers:
    """The Layers of a MetaWeightModel: its classifier's convs and BNs, its optimizers' names."""
    import keras

    convs, kernels, norms = {}, set(), set()
    for layer in _all_layers(model.classifier):
        if isinstance(layer, keras.layers.Conv2D):
            convs[layer.name] = int(layer.filters)
            kernels.add(tuple(int(d) for d in layer.kernel.shape))
        elif isinstance(layer, keras.layers.BatchNormalization):
            norms.add(layer.name)
    optimizers = {o.name for o in (model.optimizer, getattr(model, "vnet_optimizer", None)) if o is not None}
    return Layers(convs, frozenset(norms), frozenset(optimizers), frozenset(kernels))


def _all_layers(layer):
    yield layer
    for inner in getattr(layer, "layers", ()):
        yield from _all_layers(inner)


# ------------------------------------------------------------------ categories
def _match(component: str, names) -> str | None:
    """The layer a name-scope component belongs to: Keras appends `_1`, `_2` to repeated scopes."""
    if component in names:
        return component
    stripped = re.sub(r"_\d+$", "", component)
    return stripped if stripped in names else None


def _conv_kind(op_type: str) -> str | None:
    if "Conv2DBackpropFilter" in op_type:
        return CONV_BWD_FILTER
    if "Conv2DBackpropInput" in op_type:
        return CONV_BWD_INPUT
    if "Conv2D" in op_type:  # Conv2D, _MklNativeConv2D, _FusedConv2D, ...
        return CONV_FWD
    return None


def categorise(op: Op, layers: Layers) -> tuple[str, int | None]:
    """(category, conv width or None) of one op: from its type first, its name scope second.

    Keras runs batch norm as moments/rsqrt/mul ops under the layer's scope, and every gradient of
    them sits under a `gradient_tape` scope; the optimizer is its scope (Keras' `sgd/...`) or an
    Apply* kernel. A conv's width is its layer's `filters` when a scope names the layer.
    """
    parts = op.name.split("/")
    kind = _conv_kind(op.type)
    if kind is not None:
        width = next((layers.conv_widths[m] for p in parts if (m := _match(p, layers.conv_widths))), op.width)
        return kind, width
    if "FusedBatchNorm" in op.type:
        return (BN_BWD if "Grad" in op.type else BN_FWD), None
    if any(_match(p, layers.batch_norms) for p in parts):
        return (BN_BWD if any(p.startswith("gradient_tape") for p in parts) else BN_FWD), None
    if OPTIMIZER_TYPE.match(op.type) or _match(parts[0], layers.optimizers) or OPTIMIZER_SCOPE.match(parts[0]):
        return OPTIMIZER, None
    return OTHER, None


def aggregate(ops, layers: Layers) -> dict:
    """(category, width) -> [op ps, wall ps]; width is None except in the conv categories."""
    totals: dict = {}
    for op in ops:
        total = totals.setdefault(categorise(op, layers), [0.0, 0.0])
        total[0] += op.ps
        total[1] += op.wall_ps
    return totals


# ------------------------------------------------------------------ HLO (XLA) instructions
def hlo_instructions(space, layers: Layers) -> dict:
    """(module name, instruction name) -> (op name, op type, conv width), from the HLO protos."""
    from tensorflow.compiler.xla.service import hlo_pb2

    table = {}
    for plane in space.planes:
        if plane.name != "/host:metadata":
            continue
        for metadata in plane.event_metadata.values():
            for stat in metadata.stats:
                if plane.stat_metadata[stat.metadata_id].name == "Hlo Proto":
                    proto = hlo_pb2.HloProto()
                    proto.ParseFromString(stat.bytes_value)
                    table.update(_module_table(proto.hlo_module, layers))
    return table


def _module_table(module, layers: Layers) -> dict:
    by_id = {i.id: i for c in module.computations for i in c.instructions}
    table = {}
    for computation in module.computations:
        for ins in computation.instructions:
            name, op_type, width = ins.metadata.op_name, ins.metadata.op_type, None
            if ins.opcode == "convolution":
                kind, width = hlo_conv(ins, by_id, layers.kernels)
                op_type = op_type if _conv_kind(op_type) else kind
            table[(module.name, ins.name)] = (name or ins.name, op_type or ins.opcode, width)
    return table


def hlo_conv(ins, by_id, kernels=frozenset()) -> tuple[str, int | None]:
    """A convolution's TF kind and width from its shapes: for instructions without metadata.

    XLA-CPU canonicalises the dimension numbers (NHWC, HWIO), so they cannot tell the kinds apart.
    A filter gradient outputs a kernel: (cin, kh, kw, cout) read as (batch, spatial, feature) is
    a kernel shape of the model, or failing that, its window (the activation) is larger than its
    output. An input gradient reverses the kernel or dilates its input (strides). Width = the
    larger channel count, which for these ResNets is the layer's `filters`.
    """
    dnums, window = ins.convolution_dimension_numbers, list(ins.window.dimensions)
    out = list(ins.shape.dimensions)
    batch, feature = out[dnums.output_batch_dimension], out[dnums.output_feature_dimension]
    spatial = [out[d] for d in dnums.output_spatial_dimensions]
    as_kernel = (*spatial, batch, feature)
    if as_kernel in kernels or (not kernels and any(w.size > s for w, s in zip(window, spatial))):
        return "Conv2DBackpropFilter", max(batch, feature)
    rhs = by_id.get(ins.operand_ids[1]) if len(ins.operand_ids) > 1 else None
    kernel = list(rhs.shape.dimensions) if rhs is not None else []
    width = max(kernel[dnums.kernel_input_feature_dimension], kernel[dnums.kernel_output_feature_dimension]) \
        if kernel else None
    backward = any(w.window_reversal or w.base_dilation > 1 for w in window) or (
        rhs is not None and rhs.opcode == "reverse")
    return ("Conv2DBackpropInput" if backward else "Conv2D"), width


# ------------------------------------------------------------------ trace parsing
def find_xplane(logdir: str) -> str:
    """The newest `.xplane.pb` under `logdir` (the profiler writes plugins/profile/<time>/<host>)."""
    paths = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
    if not paths:
        raise FileNotFoundError(f"no .xplane.pb under {logdir}")
    return max(paths, key=os.path.getmtime)


def read_xspace(path: str):
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    with open(path, "rb") as f:
        space.ParseFromString(f.read())
    return space


def _stats(plane, event) -> dict:
    """An event's stats by name, with those of its metadata (XLA puts hlo_op on either)."""
    stats = {}
    for stat in list(plane.event_metadata[event.metadata_id].stats) + list(event.stats):
        kind = stat.WhichOneof("value")
        value = getattr(stat, kind) if kind else None
        if kind == "ref_value":
            value = plane.stat_metadata[value].name
        stats[plane.stat_metadata[stat.metadata_id].name] = value
    return stats


def _event_op(plane, event, name: str, hlo: dict) -> Op | None:
    """The Op of a trace event, or None when it is not an op (or only wraps other ops)."""
    match = TF_OP_EVENT.match(name)
    if match:
        wrapper = match["type"] in WRAPPER_TYPES or match["type"].startswith("__")  # __inference_*: a call
        return None if wrapper else Op(match["name"], match["type"])
    if name.startswith("end: ") or not (event.stats or plane.event_metadata[event.metadata_id].stats):
        return None
    stats = _stats(plane, event)
    if "hlo_op" not in stats:
        return None
    default = (stats["hlo_op"], re.sub(r"\.\d+$", "", stats["hlo_op"]), None)
    op_name, op_type, width = hlo.get((stats.get("hlo_module"), stats["hlo_op"]), default)
    return Op(op_name, op_type, width=width)


def _events(space, hlo: dict):
    """Op events as (thread, start ps, end ps, Op) and the step windows as (start ps, end ps)."""
    ops, steps = [], []
    for plane in space.planes:
        if not plane.name.startswith(("/host:CPU", "/device:")):
            continue
        for line in plane.lines:
            base = line.timestamp_ns * 1000
            for event in line.events:
                start = base + event.offset_ps
                name = plane.event_metadata[event.metadata_id].name
                if name == STEP_TRACE:
                    steps.append((start, start + event.duration_ps))
                elif (op := _event_op(plane, event, name, hlo)) is not None:
                    ops.append(((plane.id, line.id), start, start + event.duration_ps, op))
    return ops, sorted(steps)


def innermost_segments(intervals) -> list:
    """(start, end, index) pieces of one thread's (start, end) intervals, each piece given to the
    innermost interval open then: a nested op's time is not also its parent's."""
    items = sorted((s, -e, i) for i, (s, e) in enumerate(intervals))
    segments, stack, cursor = [], [], None  # stack: [end, index]

    def close_until(time):
        nonlocal cursor
        while stack and stack[-1][0] <= time:
            end, index = stack.pop()
            if end > cursor:
                segments.append((cursor, end, index))
                cursor = end

    for start, neg_end, index in items:
        close_until(start)
        if stack and start > cursor:
            segments.append((cursor, start, stack[-1][1]))
        stack.append([min(-neg_end, stack[-1][0]) if stack else -neg_end, index])
        cursor = start
    close_until(float("inf"))
    return segments


def share_wall_time(segments, n: int) -> tuple[list, float]:
    """Wall ps per index (each instant split evenly among the segments open then), and busy ps."""
    boundaries = sorted([(s, 1, i) for s, e, i in segments if e > s] + [(e, -1, i) for s, e, i in segments if e > s])
    wall, active, busy, previous = [0.0] * n, {}, 0.0, None
    for time, change, index in boundaries:
        if active and time > previous:
            for open_index in active:
                wall[open_index] += (time - previous) / len(active)
            busy += time - previous
        previous = time
        active[index] = active.get(index, 0) + change
        if active[index] == 0:
            del active[index]
    return wall, busy


def parse_space(space, layers: Layers = Layers({})) -> Profile:
    """Op and wall times inside the step windows of one profiled run.

    Raises ValueError when the trace has no step window or no op event in one (the caller prints
    a one-line fallback).
    """
    events, steps = _events(space, hlo_instructions(space, layers))
    if not steps:
        raise ValueError(f"no '{STEP_TRACE}' events in the trace")
    inside = [(thread, start, min(end, t), op) for thread, start, end, op in events
              for s, t in steps if s <= start < t]
    if not inside:
        raise ValueError("no op events inside the profiled steps (was the host tracer off?)")
    segments = []
    for thread in {e[0] for e in inside}:
        indices = [i for i, e in enumerate(inside) if e[0] == thread]
        segments += [(s, e, indices[k]) for s, e, k in innermost_segments([inside[i][1:3] for i in indices])]
    wall, busy = share_wall_time(segments, len(inside))
    thread = [0.0] * len(inside)
    for s, e, i in segments:
        thread[i] += e - s
    ops = [dataclasses.replace(e[3], ps=thread[i], wall_ps=wall[i]) for i, e in enumerate(inside)]
    return Profile(steps=len(steps), wall_ps=float(sum(t - s for s, t in steps)), busy_ps=busy, ops=ops)


def parse_logdir(logdir: str, layers: Layers) -> tuple[Profile | None, str]:
    """The run's Profile, or None and the reason in one line (the caller's fallback)."""
    try:
        return parse_space(read_xspace(find_xplane(logdir)), layers), ""
    except Exception as error:  # whatever stops the trace being read leaves the wall time only
        return None, (f"{type(error).__name__}: {error}".splitlines() or [""])[0]


# ------------------------------------------------------------------ the table
def table_rows(profile: Profile, layers: Layers) -> list:
    """(label, wall ms/step, share of the step, op ms/step or None) rows; the wall column adds up
    to the step's wall time. Conv categories are followed by one row per layer width when known."""
    totals = aggregate(profile.ops, layers)
    per_step = profile.steps * 1e9  # ps -> ms per step

    def row(label, op_ps, wall_ps):
        return label, wall_ps / per_step, wall_ps / profile.wall_ps, None if op_ps is None else op_ps / per_step

    rows = []
    for category in CATEGORIES:
        keys = sorted((k for k in totals if k[0] == category), key=lambda k: (k[1] is None, k[1] or 0))
        rows.append(row(category, sum(totals[k][0] for k in keys), sum(totals[k][1] for k in keys)))
        if category in CONV_CATEGORIES and any(k[1] is not None for k in keys):
            rows += [row(f"  {k[1]} channels" if k[1] else "  width unknown", *totals[k]) for k in keys]
    rows.append(row("remainder: Python + dispatch (no op running)", None, profile.wall_ps - profile.busy_ps))
    rows.append(row("step (wall, under the profiler)", sum(t[0] for t in totals.values()), profile.wall_ps))
    return rows


def format_table(rows) -> str:
    lines = [f"{'category':46s} {'ms/step':>9s} {'share':>7s} {'op ms/step':>11s}"]
    for label, ms, share, op_ms in rows:
        lines.append(f"{label:46s} {ms:9.2f} {share:7.1%} " + (f"{op_ms:11.2f}" if op_ms is not None else ""))
    return "\n".join(line.rstrip() for line in lines)


def top_ops(profile: Profile, layers: Layers, n: int) -> list:
    """The `n` op names (Keras' `_1` scope suffixes merged) with the most wall time:
    (wall ms/step, category, name:type)."""
    merged: dict = {}
    for op in profile.ops:
        key = (categorise(op, layers)[0], re.sub(r"_\d+(?=/|$)", "", op.name) + ":" + op.type)
        merged[key] = merged.get(key, 0.0) + op.wall_ps
    ranked = sorted(merged.items(), key=lambda item: -item[1])[:n]
    return [(ps / (profile.steps * 1e9), category, name) for (category, name), ps in ranked]


# ------------------------------------------------------------------ running the steps
def time_steps(step, batch, *, steps: int) -> list:
    """Seconds per call of the compiled `step`, each waiting for its loss (no profiler)."""
    import time

    seconds = []
    for _ in range(steps):
        start = time.perf_counter()
        float(step(batch)["train/loss"])
        seconds.append(time.perf_counter() - start)
    return seconds


def profile_steps(step, batch, *, steps: int, logdir: str) -> list:
    """`steps` calls of the compiled `step` under the profiler, tracing into `logdir`; seconds per call.

    Each call sits in a `profile_step` TraceMe (a step for TensorBoard's overview page) and waits
    for its loss, so the window holds all of the step's work. The Python tracer stays off: it
    would trace every Python call and swamp the step.
    """
    import time

    import tensorflow as tf

    options = tf.profiler.experimental.ProfilerOptions(host_tracer_level=2, python_tracer_level=0,
                                                       device_tracer_level=1)
    seconds = []
    tf.profiler.experimental.start(logdir, options=options)
    try:
        for i in range(steps):
            start = time.perf_counter()
            with tf.profiler.experimental.Trace(STEP_TRACE, step_num=i, _r=1):
                float(step(batch)["train/loss"])
            seconds.append(time.perf_counter() - start)
    finally:
        tf.profiler.experimental.stop()
    return seconds
