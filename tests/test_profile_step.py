"""The step profiler's bookkeeping: op categories, time shared among concurrent ops, the fallback.

The parsing runs on small hand-built traces, so the expected sums are exact; the end-to-end run
of scripts/profile_step.py is opt-in (`python -m pytest -m benchmark`).
"""

import pathlib
import re
import subprocess
import sys

import pytest
from tensorflow.compiler.xla.service import hlo_pb2
from tensorflow.tsl.profiler.protobuf import xplane_pb2

from benchmarks import step_trace as ps

ROOT = pathlib.Path(__file__).resolve().parents[1]
LAYERS = ps.Layers(
    conv_widths={"stem_conv": 16, "stage2_block1_conv1": 32, "stage3_block1_conv2": 64},
    batch_norms=frozenset({"stem_bn", "stage2_block1_bn1"}),
    optimizers=frozenset({"sgd"}),
    kernels=frozenset({(3, 3, 3, 16), (3, 3, 16, 32), (3, 3, 64, 64)}),
)


def test_categories_sum_exactly():
    ops = [
        ps.Op("resnet32_1/stem_conv_1/convolution", "_MklNativeConv2D", 10, 8),
        ps.Op("gradient_tape/resnet32_1/stage2_block1_conv1_1/convolution/Conv2DBackpropInput",
              "_MklNativeConv2DBackpropInput", 20, 15),
        ps.Op("gradient_tape/resnet32_1/stage2_block1_conv1_1/convolution/Conv2DBackpropFilter",
              "_MklNativeConv2DBackpropFilter", 30, 25),
        ps.Op("gradient_tape/gradient_tape/resnet32/stage3_block1_conv2/convolution/Conv2D", "Conv2D", 5, 5),
        ps.Op("convolution.7", "Conv2DBackpropFilter", 7, 7, width=64),  # XLA, no metadata: width from shapes
        ps.Op("convolution.8", "Conv2D", 1, 1),  # no layer, no width
        ps.Op("resnet32_1/stem_bn_1/moments/SquaredDifference", "SquaredDifference", 4, 4),
        ps.Op("resnet32_1/stem_bn_1/AssignVariableOp", "AssignVariableOp", 1, 1),
        ps.Op("gradient_tape/resnet32_1/stage2_block1_bn1_1/batchnorm/mul_1/Mul_1", "Mul", 6, 6),
        ps.Op("bn/FusedBatchNormV3", "FusedBatchNormV3", 2, 2),
        ps.Op("bn/FusedBatchNormGradV3", "FusedBatchNormGradV3", 3, 3),
        ps.Op("sgd/AssignVariableOp_1", "AssignVariableOp", 8, 8),
        ps.Op("sgd_1/Mul", "Mul", 2, 2),
        ps.Op("train/ResourceApplyKerasMomentum", "ResourceApplyKerasMomentum", 1, 1),
        ps.Op("gradient_tape/resnet32_1/stage2_block1_relu1_1/ReluGrad", "ReluGrad", 9, 9),
        ps.Op("sub_3", "Sub", 2, 2),  # the lookahead w - lr g: not the optimizer's scope
    ]
    assert ps.aggregate(ops, LAYERS) == {
        (ps.CONV_FWD, 16): [10, 8],
        (ps.CONV_BWD_INPUT, 32): [20, 15],
        (ps.CONV_BWD_FILTER, 32): [30, 25],
        (ps.CONV_FWD, 64): [5, 5],
        (ps.CONV_BWD_FILTER, 64): [7, 7],
        (ps.CONV_FWD, None): [1, 1],
        (ps.BN_FWD, None): [4 + 1 + 2, 4 + 1 + 2],
        (ps.BN_BWD, None): [6 + 3, 6 + 3],
        (ps.OPTIMIZER, None): [8 + 2 + 1, 8 + 2 + 1],
        (ps.OTHER, None): [9 + 2, 9 + 2],
    }


def _plane(events_by_line):
    """A /host:CPU plane: {line id: [(event name, start ps, duration ps)]}."""
    plane = xplane_pb2.XPlane(id=1, name="/host:CPU")
    ids = {}
    for line_id, events in events_by_line.items():
        line = plane.lines.add(id=line_id, name=f"thread{line_id}", timestamp_ns=0)
        for name, start, duration in events:
            ids.setdefault(name, len(ids) + 1)
            plane.event_metadata[ids[name]].CopyFrom(xplane_pb2.XEventMetadata(id=ids[name], name=name))
            line.events.add(metadata_id=ids[name], offset_ps=start, duration_ps=duration)
    return plane


def test_wall_time_is_shared_among_concurrent_ops_and_the_rows_add_up():
    space = xplane_pb2.XSpace()
    space.planes.append(_plane({
        1: [(ps.STEP_TRACE, 0, 100), ("ExecutorState::Process", 5, 60),
            ("stem_conv/convolution:Conv2D", 10, 40), ("mul:Mul", 20, 10),  # mul nested in the conv
            ("late:Mul", 150, 10)],  # outside the step window: ignored
        2: [("sgd/Mul:Mul", 40, 20), ("fn:__inference_fn_1", 0, 90)],  # a call op only wraps others
    }))
    profile = ps.parse_space(space, LAYERS)
    assert (profile.steps, profile.wall_ps, profile.busy_ps) == (1, 100, 50)
    times = {op.name: (op.ps, op.wall_ps) for op in profile.ops}
    # conv: 10-20 alone, 30-40 alone, 40-50 shared with sgd; mul: 20-30; sgd: 40-50 shared, 50-60 alone
    assert times == {"stem_conv/convolution": (30, 25), "mul": (10, 10), "sgd/Mul": (20, 15)}
    rows = {label.strip(): (ms, share, op_ms) for label, ms, share, op_ms in ps.table_rows(profile, LAYERS)}
    assert rows["conv forward"] == (25e-9, 0.25, 30e-9)
    assert rows["16 channels"] == (25e-9, 0.25, 30e-9)
    assert rows["remainder: Python + dispatch (no op running)"] == (50e-9, 0.5, None)
    assert rows["step (wall, under the profiler)"] == (100e-9, 1.0, 60e-9)
    categories = [rows[c][0] for c in ps.CATEGORIES]
    assert sum(categories) + rows["remainder: Python + dispatch (no op running)"][0] == pytest.approx(100e-9)


def _conv(output, lhs, rhs, window_size):
    """An XLA-CPU convolution in its canonical NHWC/HWIO form, and its operands by id."""
    ins = hlo_pb2.HloInstructionProto(id=3, name="convolution.1", opcode="convolution", operand_ids=[1, 2])
    ins.shape.dimensions.extend(output)
    d = ins.convolution_dimension_numbers
    d.input_batch_dimension, d.input_feature_dimension, d.input_spatial_dimensions[:] = 0, 3, [1, 2]
    d.kernel_spatial_dimensions[:], d.kernel_input_feature_dimension, d.kernel_output_feature_dimension = \
        [0, 1], 2, 3
    d.output_batch_dimension, d.output_feature_dimension, d.output_spatial_dimensions[:] = 0, 3, [1, 2]
    for _ in range(2):
        ins.window.dimensions.add(size=window_size, stride=1, padding_low=1, padding_high=1)
    operands = {i: hlo_pb2.HloInstructionProto(id=i, opcode="fusion") for i in (1, 2)}
    operands[1].shape.dimensions.extend(lhs)
    operands[2].shape.dimensions.extend(rhs)
    return ins, operands


def test_xla_convolutions_without_metadata_are_told_apart_by_shape():
    kernels = LAYERS.kernels
    forward = _conv([100, 8, 8, 64], [100, 8, 8, 64], [3, 3, 64, 64], 3)
    assert ps.hlo_conv(*forward, kernels) == ("Conv2D", 64)
    # filter gradient: (cin, kh, kw, cout), window = the activation (also when smaller than the kernel)
    assert ps.hlo_conv(*_conv([64, 3, 3, 64], [64, 8, 8, 100], [8, 8, 100, 64], 8), kernels) == \
        ("Conv2DBackpropFilter", 64)
    assert ps.hlo_conv(*_conv([64, 3, 3, 64], [64, 2, 2, 4], [2, 2, 4, 64], 2), kernels) == \
        ("Conv2DBackpropFilter", 64)
    assert ps.hlo_conv(*_conv([16, 3, 3, 32], [16, 8, 8, 4], [8, 8, 4, 32], 8)) == ("Conv2DBackpropFilter", 32)
    ins, operands = forward
    for dim in ins.window.dimensions:
        dim.window_reversal = True
    assert ps.hlo_conv(ins, operands, kernels) == ("Conv2DBackpropInput", 64)


def test_an_unreadable_trace_gives_one_line(tmp_path):
    profile, reason = ps.parse_logdir(str(tmp_path), LAYERS)
    assert profile is None and reason.startswith("FileNotFoundError: no .xplane.pb under")
    (tmp_path / "host.xplane.pb").write_bytes(b"\x00not a proto")
    profile, reason = ps.parse_logdir(str(tmp_path), LAYERS)
    assert profile is None and "\n" not in reason and reason


def test_layers_of_the_resnet32_meta_model():
    from benchmarks import step_benchmark as sb

    model = sb.build_model(sb.VARIANTS_BY_MODE["exact"], model_name="resnet32", batch_size=4,
                           input_shape=(8, 8, 3), num_classes=10)
    layers = ps.layers_of(model)
    assert len(layers.conv_widths) == 31 and len(layers.batch_norms) == 31
    assert sorted(set(layers.conv_widths.values())) == [16, 32, 64]
    assert layers.conv_widths["stage2_block1_conv1"] == 32
    assert (3, 3, 16, 32) in layers.kernels and (3, 3, 3, 16) in layers.kernels
    assert len(layers.optimizers) == 2


@pytest.mark.benchmark
def test_profile_script_prints_a_table_per_step_kind():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts/profile_step.py"), "--model=tiny", "--image_size=8", "--batch_size=4",
         "--steps=2", "--warmup=1", "--top=3"],
        capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert re.search(r"^profile plain .* xla=off: 2 steps, [0-9.]+ ms/step under the profiler", out, re.M)
    assert re.search(r"^profile exact .* xla=on: 2 steps", out, re.M)
    assert "no op times" not in out
    assert len(re.findall(r"^conv backward filter +[0-9.]+ +[0-9.]+%", out, re.M)) == 2
    assert len(re.findall(r"^step \(wall, under the profiler\) +[0-9.]+ +100\.0%", out, re.M)) == 2
