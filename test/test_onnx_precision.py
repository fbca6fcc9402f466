"""The ONNX graphs strongly typed engines are built from: FP16 conversion and INT8 Q/DQ.

Both are checked by type and placement (what TensorRT's parser takes) and by running them in
ONNX Runtime on real NYUv2 frames against the FP32 model with the accuracy gate's metrics.
"""

from __future__ import annotations

import collections
import dataclasses

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from joint_perception.export.accuracy_gate import DEFAULT_THRESHOLDS, compare
from joint_perception.export.quantize import QUANTIZED_OPS, quantize_qdq
from joint_perception.metadata import load_metadata
from joint_perception.runtime.onnx_precision import (
    convert_fp16,
    fp32_ops,
    io_types,
    onnx_precision,
)
from joint_perception.runtime.onnxruntime_backend import OnnxRuntimeBackend

pytest.importorskip("onnxconverter_common", reason="FP16 conversion needs onnxconverter-common")

F32, F16, I8 = TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.INT8


def _backend(path, meta):
    """ONNX Runtime CPU on a derived graph (its hash differs from the exported model's)."""
    return OnnxRuntimeBackend(
        path, metadata=dataclasses.replace(meta, onnx_sha256=""), providers=["CPUExecutionProvider"]
    )


def _gate(candidate_path, model_dir, frames, precision):
    meta = load_metadata(model_dir)
    reference = OnnxRuntimeBackend(model_dir, providers=["CPUExecutionProvider"])
    return compare(
        _backend(candidate_path, meta), reference, frames.images, DEFAULT_THRESHOLDS[precision]
    )


# ------------------------------------------------------------------------------------- FP16


def test_fp16_graph_types_of_the_shipped_model(shipped, tmp_path):
    src = shipped / "model.onnx"
    dst = convert_fp16(src, tmp_path / "model.fp16.onnx")
    before, after = onnx.load(str(src)), onnx.load(str(dst))
    assert (onnx_precision(before), onnx_precision(after)) == ("fp32", "fp16")
    # the ONNX contract is unchanged: float32 image in; float32 depth/confidence/normals and
    # int32 labels out
    assert io_types(after) == io_types(before)
    assert io_types(after)["labels"] == TensorProto.INT32
    # every float weight is float16 now
    kinds = collections.Counter(t.data_type for t in after.graph.initializer)
    assert kinds[F16] > 60 and kinds[F32] == 0, kinds
    # numerically fragile ops stay float32: the L2 norm of the normals is fed by a Cast to FP32
    produced = {o: n for n in after.graph.node for o in n.output}
    [l2] = [n for n in after.graph.node if n.op_type == "ReduceL2"]
    cast = produced[l2.input[0]]
    assert cast.op_type == "Cast" and cast.attribute[0].i == F32
    # the Resizes (torch exports them with `sizes`) run in FP16: no Cast on their data input
    resizes = [n for n in after.graph.node if n.op_type == "Resize"]
    assert resizes and all(produced[r.input[0]].op_type != "Cast" for r in resizes)
    assert "ReduceL2" in fp32_ops() and "Resize" not in fp32_ops()


def test_fp16_graph_on_real_frames_passes_the_fp16_gate(shipped, shipped_frames, tmp_path):
    dst = convert_fp16(shipped / "model.onnx", tmp_path / "model.fp16.onnx")
    res = _gate(dst, shipped, shipped_frames, "fp16")
    assert res.passed, res.failures
    m = res.metrics
    # measured on the 10 NYUv2 test frames: abs rel 2.8e-4, labels 99.91 %, normals 0.033 deg
    assert 0 < m["depth_abs_rel"] < 0.002  # really FP16 (not 0), and 5x inside the gate
    assert 0.99 < m["label_agreement"] < 1.0
    assert 0 < m["normal_angle_deg"] < 0.5
    assert m["nonfinite_fraction"] == 0.0


def test_fp16_keeps_output_types_when_the_producer_stays_fp32(tmp_path):
    """onnxconverter-common leaves an output FP16 when a blocked op produces it; repaired."""
    x = helper.make_tensor_value_info("image", F32, [1, 3, 4, 4])
    norm = helper.make_tensor_value_info("norm", F32, [1, 1, 4, 4])
    scaled = helper.make_tensor_value_info("scaled", F32, [1, 3, 4, 4])
    w = numpy_helper.from_array(np.full((1,), 2.0, np.float32), "w")
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["image", "w"], ["scaled"]),
            helper.make_node("ReduceL2", ["scaled"], ["norm"], axes=[1], keepdims=1),
        ],
        "toy",
        [x],
        [norm, scaled],
        [w],
    )
    src = tmp_path / "toy.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), src)
    dst = convert_fp16(src, tmp_path / "toy.fp16.onnx")
    model = onnx.load(str(dst))
    assert io_types(model) == {"image": F32, "norm": F32, "scaled": F32}
    import onnxruntime as ort

    sess = ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"])
    image = np.random.default_rng(0).random((1, 3, 4, 4), dtype=np.float32)
    got_norm, got_scaled = sess.run(["norm", "scaled"], {"image": image})
    assert got_norm.dtype == np.float32
    np.testing.assert_allclose(got_norm, np.linalg.norm(2 * image, axis=1, keepdims=True), 1e-3)
    np.testing.assert_allclose(got_scaled, 2 * image, 1e-3)


def test_resize_with_scales_stays_fp32_and_valid(tmp_path):
    x = helper.make_tensor_value_info("image", F32, [1, 3, 4, 4])
    y = helper.make_tensor_value_info("up", F32, [1, 3, 8, 8])
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    graph = helper.make_graph(
        [helper.make_node("Resize", ["image", "", "scales"], ["up"], mode="linear")],
        "up",
        [x],
        [y],
        [scales],
    )
    src = tmp_path / "up.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), src)
    model = onnx.load(str(convert_fp16(src, tmp_path / "up.fp16.onnx")))
    [scales_out] = [t for t in model.graph.initializer if t.name == "scales"]
    assert scales_out.data_type == F32  # ONNX types Resize scales as float32 only
    [resize] = [n for n in model.graph.node if n.op_type == "Resize"]
    assert resize.input[0] == "image"  # no Cast to FP16 in front


def test_fp16_refuses_a_graph_that_is_not_fp32(tiny_model_dir, tmp_path):
    fp16 = convert_fp16(tiny_model_dir / "model.onnx", tmp_path / "a.onnx")
    with pytest.raises(ValueError, match="already an fp16 graph"):
        convert_fp16(fp16, tmp_path / "b.onnx")
    assert not (tmp_path / "b.onnx").exists()


# ------------------------------------------------------------------------------------- INT8


def _qdq_facts(model: onnx.ModelProto) -> dict:
    inits = {t.name: t for t in model.graph.initializer}
    produced = {o: n for n in model.graph.node for o in n.output}
    consumers = collections.defaultdict(list)
    for n in model.graph.node:
        for i in n.input:
            consumers[i].append(n)
    dqs = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    qs = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]

    def dq_input_type(n):
        if n.input[0] in inits:
            return inits[n.input[0]].data_type
        q = produced[n.input[0]]
        return inits[q.input[2]].data_type  # a Q's output type is its zero point's

    weight_axes = collections.Counter()
    for n in dqs:
        if n.input[0] in inits:
            users = {c.op_type for c in consumers[n.output[0]]}
            axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
            weight_axes[(tuple(sorted(users)), axis)] += 1
    outputs = {o.name for o in model.graph.output}
    # the last weighted op before each graph output (the heads' final convolutions)
    heads, stack, seen = set(), list(outputs), set()
    while stack:
        t = stack.pop()
        if t in seen or t not in produced:
            continue
        seen.add(t)
        n = produced[t]
        if n.op_type in QUANTIZED_OPS:
            heads.add(n.output[0])
        else:
            stack.extend(n.input)
    zero_points = [numpy_helper.to_array(inits[n.input[2]]) for n in [*qs, *dqs]]
    return {
        "q": len(qs),
        "dq": len(dqs),
        "dq_input_types": collections.Counter(dq_input_type(n) for n in dqs),
        "dq_feed_weighted_op": all(
            any(c.op_type in QUANTIZED_OPS for c in consumers[n.output[0]]) for n in dqs
        ),
        "weight_axes": weight_axes,
        "quantized_head_outputs": [h for h in heads if any(c in qs for c in consumers[h])],
        "outputs_from_qdq": [o for o in outputs if produced[o].op_type.endswith("QuantizeLinear")],
        "nonzero_zero_points": sum(bool(z.any()) for z in zero_points),
    }


def test_int8_qdq_graph_is_what_tensorrt_takes(shipped, shipped_frames, tmp_path):
    dst = quantize_qdq(shipped / "model.onnx", tmp_path / "model.int8.onnx", shipped_frames,
                       method="onnxruntime")  # fmt: skip
    model = onnx.load(str(dst))
    facts = _qdq_facts(model)
    assert onnx_precision(model) == "int8"
    assert facts["q"] > 50 and facts["dq"] > facts["q"]  # activations Q+DQ, weights DQ only
    # every DQ input is INT8: no INT32 bias DQ (TensorRT's parser takes INT8/FP8/INT4)
    assert set(facts["dq_input_types"]) == {I8}
    # Q/DQ sit on the inputs of the weighted ops, per-channel weights on the output channel
    assert facts["dq_feed_weighted_op"]
    assert set(facts["weight_axes"]) == {(("Conv",), 0)}
    # the heads' outputs (depth, logits, normals before their activations) are not quantised
    assert facts["quantized_head_outputs"] == [] and facts["outputs_from_qdq"] == []
    assert facts["nonzero_zero_points"] == 0  # symmetric
    # float biases: the un-quantised rest stays FP32
    conv_bias = [
        t for n in model.graph.node if n.op_type == "Conv" and len(n.input) > 2
        for t in model.graph.initializer if t.name == n.input[2]
    ]  # fmt: skip
    assert conv_bias and {t.data_type for t in conv_bias} == {F32}
    assert io_types(model) == io_types(onnx.load(str(shipped / "model.onnx")))


def test_int8_qdq_graph_on_real_frames(shipped, shipped_frames, tmp_path):
    """The shipped model quantised whole on the 10 NYUv2 test frames, scored on the same
    frames: the INT8 gate must refuse what the quantiser cannot keep accurate.

    Measured on the ImageNet-initialised default model (issue 9): depth abs rel 0.227, label
    agreement 57.3 %, normals 26.3 deg against FP32 (row F: 0.224, 61.8 %, 25.9 deg, identical
    with minmax and entropy calibration). Traced by quantising one layer at a time (``export.int8_mixed``): the first
    block's depthwise convolution and its projection carry it; with those two left in float the
    graph passes (``test/test_int8_mixed.py``), which is what ``export_engine`` builds.
    """
    dst = quantize_qdq(shipped / "model.onnx", tmp_path / "model.int8.onnx", shipped_frames,
                       method="onnxruntime")  # fmt: skip
    res = _gate(dst, shipped, shipped_frames, "int8")
    m = res.metrics
    assert m["nonfinite_fraction"] == 0.0 and m["frames"] == 10
    assert m["depth_abs_rel"] > 0 and m["normal_angle_deg"] > 0
    assert 0 < m["label_agreement"] < 1
    thresholds = DEFAULT_THRESHOLDS["int8"]
    assert not res.passed
    assert (
        m["depth_abs_rel"] > thresholds.depth_abs_rel
        or m["label_agreement"] < thresholds.label_agreement
        or m["normal_angle_deg"] > thresholds.normal_angle_deg
    )
