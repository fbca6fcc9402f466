"""runtime.onnx_rewrite: the channels-last segmentation tail gives the original graph's labels
(exactly) and confidence (to the last bits)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from joint_perception.runtime.base import prediction_from_outputs
from joint_perception.runtime.onnx_rewrite import channels_last_class_tail
from joint_perception.runtime.onnxruntime_backend import OnnxRuntimeBackend

C, H, W = 5, 3, 4  # logits (N, C, H, W), enlarged x4


def _tail_model(
    *,
    use_scales=False,
    argmax=None,
    confidence=False,
    extra_output=False,
    other_consumer=None,
    opset=17,
):
    """x (N, C, H, W) -> Resize x4 (linear, half_pixel) -> ArgMax over the class axis
    [-> confidence = 1 / ReduceSum(Exp(up - ReduceMax(up)))], as the exporter writes it."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", C, H, W])
    inits, nodes = [], []
    if use_scales:
        inits.append(numpy_helper.from_array(np.array([1, 1, 4, 4], np.float32), "scales"))
        resize_in = ["x", "", "scales"]
    else:
        nodes += [
            helper.make_node("Shape", ["x"], ["shape"]),
            helper.make_node("Slice", ["shape", "zero", "two"], ["nc"]),
            helper.make_node("Concat", ["nc", "hw"], ["sizes"], axis=0),
        ]
        inits += [
            numpy_helper.from_array(np.array([0], np.int64), "zero"),
            numpy_helper.from_array(np.array([2], np.int64), "two"),
            numpy_helper.from_array(np.array([4 * H, 4 * W], np.int64), "hw"),
        ]
        resize_in = ["x", "", "", "sizes"]
        if opset < 13:  # roi and scales are required inputs before opset 13: empty tensors
            inits += [
                numpy_helper.from_array(np.zeros(0, np.float32), "no_roi"),
                numpy_helper.from_array(np.zeros(0, np.float32), "no_scales"),
            ]
            resize_in = ["x", "no_roi", "no_scales", "sizes"]
    nodes.append(
        helper.make_node(
            "Resize", resize_in, ["up"], mode="linear", coordinate_transformation_mode="half_pixel"
        )
    )
    attrs = {"axis": 1, "keepdims": 0, **(argmax or {})}
    nodes.append(helper.make_node("ArgMax", ["up"], ["labels"], **attrs))
    shape = ["N", C, 4 * H, 4 * W]
    if attrs["keepdims"]:
        shape[attrs["axis"]] = 1
    else:
        del shape[attrs["axis"]]
    outs = [helper.make_tensor_value_info("labels", TensorProto.INT64, shape)]
    hw = ["N", 4 * H, 4 * W]
    if confidence:  # "initializer" or "node": where the class-axis tensor of ReduceSum lives
        axis = numpy_helper.from_array(np.array([1], np.int64), "class_axis")
        if confidence == "node":  # as torch.onnx writes it
            nodes.append(helper.make_node("Constant", [], ["class_axis"], value=axis))
        else:
            inits.append(axis)
        nodes += [
            helper.make_node("ReduceMax", ["up"], ["peak"], axes=[1], keepdims=1),
            helper.make_node("Sub", ["up", "peak"], ["shifted"]),
            helper.make_node("Exp", ["shifted"], ["e"]),
            helper.make_node("ReduceSum", ["e", "class_axis"], ["total"], keepdims=0),
            helper.make_node("Reciprocal", ["total"], ["confidence"]),
        ]
        outs.append(helper.make_tensor_value_info("confidence", TensorProto.FLOAT, hw))
    if extra_output:
        outs.append(helper.make_tensor_value_info("up", TensorProto.FLOAT, ["N", C, 4 * H, 4 * W]))
    if other_consumer == "softmax":
        nodes.append(helper.make_node("Softmax", ["up"], ["soft"], axis=1))
        outs.append(helper.make_tensor_value_info("soft", TensorProto.FLOAT, [*hw[:1], C, *hw[1:]]))
    if other_consumer == "per_class_bias":
        inits.append(numpy_helper.from_array(np.ones((1, C, 1, 1), np.float32), "bias"))
        nodes += [
            helper.make_node("Add", ["up", "bias"], ["biased"]),
            helper.make_node("ReduceMax", ["biased"], ["bmax"], axes=[1], keepdims=0),
        ]
        outs.append(helper.make_tensor_value_info("bmax", TensorProto.FLOAT, hw))
    graph = helper.make_graph(nodes, "tail", [x], outs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model)
    return model


def _run(model, x):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})


def _rewritten(model):
    out = onnx.ModelProto()
    out.CopyFrom(model)
    n = channels_last_class_tail(out)
    onnx.checker.check_model(out)
    return n, out


@pytest.mark.parametrize("use_scales", [False, True])
@pytest.mark.parametrize("confidence", [None, "initializer", "node"])
@pytest.mark.parametrize("last", [0, 1])
def test_rewritten_tail_gives_the_same_labels_and_confidence(use_scales, confidence, last):
    model = _tail_model(
        use_scales=use_scales, confidence=confidence, argmax={"select_last_index": last}
    )
    n, rewritten = _rewritten(model)
    assert n == 1
    ops = [node.op_type for node in rewritten.graph.node]
    assert "Transpose" in ops and ops.count("Resize") == 1
    argmax = next(node for node in rewritten.graph.node if node.op_type == "ArgMax")
    assert {a.name: helper.get_attribute_value(a) for a in argmax.attribute}["axis"] == 3
    if confidence:  # the class-axis tensor of ReduceSum is replaced, the old one dropped
        assert "class_axis" not in {t.name for t in rewritten.graph.initializer}
        assert "class_axis" not in {i for node in rewritten.graph.node for i in node.output}
    rng = np.random.default_rng(0)
    for batch in (1, 3):
        for _ in range(20):
            # a coarse value grid makes near-ties (and exact ties: first/last index) common
            x = rng.integers(-4, 5, (batch, C, H, W)).astype(np.float32) / 4
            want, got = _run(model, x), _run(rewritten, x)
            np.testing.assert_array_equal(got[0], want[0])
            if confidence:
                np.testing.assert_allclose(got[1], want[1], rtol=2e-6, atol=0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"argmax": {"axis": 2}},  # not the class axis
        {"argmax": {"keepdims": 1}},  # (N, 1, h, w) is a graph output: its layout would change
        {"extra_output": True},  # the enlarged maps are a graph output
        {"other_consumer": "softmax"},  # an op the rewrite does not know
        {"other_consumer": "per_class_bias"},  # a (1, C, 1, 1) operand: not layout-free
        {"other_consumer": "if"},  # an If branch reads the enlarged maps
        {"opset": 12},  # optional Resize inputs need opset 13
    ],
)
def test_graphs_outside_the_pattern_are_left_alone(kwargs):
    model = _tail_model(**kwargs)
    if kwargs.get("other_consumer") == "if":  # control flow reading an outer tensor
        branch = helper.make_graph(
            [helper.make_node("Identity", ["up"], ["branch_out"])],
            "branch",
            [],
            [helper.make_tensor_value_info("branch_out", TensorProto.FLOAT, None)],
        )
        model.graph.initializer.append(numpy_helper.from_array(np.array(True), "cond"))
        model.graph.node.append(
            helper.make_node("If", ["cond"], ["chosen"], then_branch=branch, else_branch=branch)
        )
    before = model.SerializeToString()
    assert channels_last_class_tail(model) == 0
    assert model.SerializeToString() == before


def test_graphs_without_a_class_axis_tail_skip_shape_inference(monkeypatch):
    """A graph with no Resize, or no ArgMax/Reduce*, is returned before the (start-up costly)
    shape inference; one with the tail is inferred and rewritten."""
    from onnx import shape_inference

    calls = []
    real = shape_inference.infer_shapes
    monkeypatch.setattr(
        shape_inference, "infer_shapes", lambda m, *a, **k: calls.append(1) or real(m, *a, **k)
    )
    no_reduce = _tail_model()
    for n in no_reduce.graph.node:
        if n.op_type == "ArgMax":
            n.op_type, n.domain = "Identity", ""
            del n.attribute[:]
    assert channels_last_class_tail(no_reduce) == 0 and calls == []
    assert channels_last_class_tail(_tail_model()) == 1 and calls == [1]


def test_backend_rewrites_the_cpu_tail(tiny_model_dir):
    """The backend runs the rewritten tail with and without confidence; labels, depth and
    normals are the file's own graph's exactly, confidence to 2e-6."""
    plain = ort.InferenceSession(
        str(tiny_model_dir / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    names = [o.name for o in plain.get_outputs()]
    every = OnnxRuntimeBackend(tiny_model_dir)
    default = OnnxRuntimeBackend(tiny_model_dir, outputs=("depth", "labels", "normals"))
    assert every.rewrites == 1 and default.rewrites == 1
    assert "class tail channels-last" in default.describe()
    rng = np.random.default_rng(3)
    for _ in range(5):
        x = rng.random((1, 3, 64, 80), dtype=np.float32)
        want = prediction_from_outputs(dict(zip(names, plain.run(None, {"image": x}))))
        for backend in (every, default):
            got = backend.predict(x)
            np.testing.assert_array_equal(got.labels, want.labels)
            np.testing.assert_array_equal(got.depth, want.depth)
            np.testing.assert_array_equal(got.normals, want.normals)
        np.testing.assert_allclose(every.predict(x).confidence, want.confidence, rtol=2e-6, atol=0)


def test_shipped_model_outputs_unchanged_on_real_frames(shipped, shipped_frames):
    """The shipped model on the 10 NYUv2 frames: the rewritten graph's labels are the file's
    own graph's pixel for pixel, confidence within 2e-6."""
    plain = ort.InferenceSession(str(shipped / "model.onnx"), providers=["CPUExecutionProvider"])
    names = [o.name for o in plain.get_outputs()]
    backend = OnnxRuntimeBackend(shipped)
    assert backend.rewrites == 1
    for image in shipped_frames.images:
        batch = image[None]
        want = prediction_from_outputs(dict(zip(names, plain.run(None, {"image": batch}))))
        got = backend.predict(batch)
        np.testing.assert_array_equal(got.labels, want.labels)
        np.testing.assert_array_equal(got.depth, want.depth)
        np.testing.assert_array_equal(got.normals, want.normals)
        np.testing.assert_allclose(got.confidence, want.confidence, rtol=2e-6, atol=0)
