"""CPU-only ONNX graph rewrite: the segmentation tail channels-last (ONNX Runtime runs it faster).

Every exported model ends its segmentation branch with class logits of shape (N, C, h/4, w/4)
enlarged bilinearly to (N, C, h, w) and then reduced over the class axis: ``labels`` =
ArgMax(axis=1) and ``confidence`` = 1 / ReduceSum(Exp(l - ReduceMax(l))) (the maximum softmax
probability). On ONNX Runtime's CPU provider the class axis is the strided one: the enlarged
maps are reordered out of its blocked (NCHWc) layout and every reduction walks C planes per
pixel. :func:`channels_last_class_tail` transposes the *small* logits to channels-last instead,
enlarges them there and reduces over the contiguous last axis:

    Transpose(logits, perm=[0, 2, 3, 1]) -> Resize(sizes/scales gathered in the same order)
    -> ArgMax / Reduce* over axis 3 (keepdims reductions stay (N, h, w, 1)), element-wise ops
    between them unchanged

Values: every enlarged logit is the same weighted sum of the same four neighbours and Max /
ArgMax do not depend on the order they visit the classes, so ``labels`` are exactly the
original graph's (0 of 4.2 M pixels differed on 220 real frames with the shipped model; the
tests compare them). A ReduceSum adds the classes in another order, so ``confidence`` may
differ in its last bits (at most 9.5e-7 on 110 real frames; a declared change, tested).

Shipped model, 120x160, one thread: 5.94 -> 5.55 ms per frame with the node's default outputs
(no confidence), 7.56 -> 6.48 ms with every output (docs/performance.md). The rewrite is made
in memory for ONNX Runtime's CPU provider only; the exported file, the contract TensorRT and
torch users read, is unchanged. Anything outside the pattern leaves the graph as it is.
"""

from __future__ import annotations

import numpy as np

_TO_NHWC = [0, 2, 3, 1]
_REDUCE = {
    "ReduceMax",
    "ReduceMin",
    "ReduceSum",
    "ReduceMean",
    "ReduceProd",
    "ReduceLogSumExp",
    "ReduceLogSum",
    "ReduceL1",
    "ReduceL2",
    "ReduceSumSquare",
}
_UNARY = {"Exp", "Log", "Neg", "Reciprocal", "Sigmoid", "Relu", "Abs", "Sqrt", "Tanh", "Identity"}
_BINARY = {"Add", "Sub", "Mul", "Div", "Max", "Min"}


def channels_last_class_tail(model) -> int:
    """Run each class-axis tail after a 4-D Resize channels-last, in place (module docstring).

    A Resize is rewritten when everything downstream of its output, up to tensors without the
    class axis (ArgMax / Reduce* over axis 1 with ``keepdims=0``), is ArgMax/ArgMin or a
    reduction over axis 1, an element-wise op between such tensors or with a scalar constant;
    none of those tensors may be a graph output. Needs opset >= 13 (optional Resize inputs);
    graphs with control flow (If/Loop/Scan) or that ONNX shape inference cannot handle are
    left alone.

    Args:
        model: an ``onnx.ModelProto`` (modified in place).

    Returns:
        The number of Resize tails rewritten (0: the graph is unchanged).
    """
    from onnx import shape_inference

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 13:
        return 0
    graph = model.graph
    ops = {n.op_type for n in graph.node}
    if "Resize" not in ops or not ops & (_REDUCE | {"ArgMax", "ArgMin"}):
        return 0  # no tail to rewrite: spare the shape inference (backend start-up)
    if any(a.g.node or a.graphs for n in graph.node for a in n.attribute):
        return 0  # If/Loop/Scan bodies read outer tensors without naming them as inputs
    try:
        ranks = _ranks(shape_inference.infer_shapes(model).graph)
    except Exception:  # noqa: BLE001 - a graph ONNX cannot infer: leave it as it is
        return 0
    consumers: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    scalars = _scalar_constants(graph)
    outputs = {o.name for o in graph.output}
    plans = []
    for node in graph.node:
        if node.op_type == "Resize":
            plan = _plan(node, graph, ranks, consumers, scalars, outputs)
            if plan is not None:
                plans.append(plan)
    for k, (resize, region, edits) in enumerate(plans):
        _apply(graph, resize, region, edits, f"channels_last_tail{k}")
    if plans:
        _drop_unused_constants(graph)
    return len(plans)


def _plan(resize, graph, ranks, consumers, scalars, outputs):
    """(resize, region tensors, [(node, how)]) or None when outside the pattern."""
    attrs = _attrs(resize)
    x, roi, scales, sizes = (list(resize.input) + [""] * 4)[:4]
    if ranks.get(x) != 4 or "axes" in attrs:
        return None
    if attrs.get("coordinate_transformation_mode", b"half_pixel") == b"tf_crop_and_resize":
        return None
    if roi and _initializer_size(graph, roi) != 0:
        return None
    if not (sizes or (scales and _initializer_size(graph, scales) == 4)):
        return None
    region, queue, edits, seen, binary = {resize.output[0]}, [resize.output[0]], [], set(), []
    while queue:
        t = queue.pop()
        if t in outputs:
            return None
        for n in consumers.get(t, []):
            if id(n) in seen:
                continue
            seen.add(id(n))
            a, op = _attrs(n), n.op_type
            if op in ("ArgMax", "ArgMin"):
                if a.get("axis", 0) not in (1, -3):
                    return None
                edits.append((n, "axis"))
                keep = a.get("keepdims", 1)
            elif op in _REDUCE:
                if n.input[0] != t or _reduce_axes(n, graph) not in ([1], [-3]):
                    return None
                edits.append((n, "axes"))
                keep = a.get("keepdims", 1)
            elif op in _UNARY:
                keep = 1
            elif op in _BINARY:
                binary.append(n)
                keep = 1
            else:
                return None
            if keep:
                region.add(n.output[0])
                queue.append(n.output[0])
    for n in binary:  # both operands laid out alike (or a scalar), checked once all are known
        if not all(i in region or i in scalars for i in n.input):
            return None
    if not edits:
        return None
    return resize, region, edits


def _apply(graph, resize, region, edits, tag):
    from onnx import helper, numpy_helper

    x, _, scales, sizes = (list(resize.input) + [""] * 4)[:4]
    perm = f"{tag}/perm"
    axis3 = f"{tag}/axes"
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array(_TO_NHWC, np.int64), perm),
            numpy_helper.from_array(np.array([3], np.int64), axis3),
        ]
    )
    target = sizes or scales
    new = [
        helper.make_node("Transpose", [x], [f"{tag}/x"], perm=_TO_NHWC, name=f"{tag}/T"),
        helper.make_node("Gather", [target, perm], [f"{tag}/target"], axis=0, name=f"{tag}/G"),
        helper.make_node(
            "Resize",
            [f"{tag}/x", "", "", f"{tag}/target"] if sizes else [f"{tag}/x", "", f"{tag}/target"],
            list(resize.output),
            name=f"{tag}/R",
            **_attrs(resize),
        ),
    ]
    for node, how in edits:
        if how == "axis":
            _set_attr(node, "axis", 3)
        elif any(a.name == "axes" for a in node.attribute):
            _set_attr(node, "axes", [3])
        else:
            node.input[1] = axis3
    kept = [v for v in graph.value_info if v.name not in region]  # their shapes changed
    del graph.value_info[:]
    graph.value_info.extend(kept)
    nodes = []
    for n in graph.node:
        nodes.extend(new if n is resize else [n])
    del graph.node[:]
    graph.node.extend(nodes)


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _set_attr(node, name, value) -> None:
    from onnx import helper

    others = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend([*others, helper.make_attribute(name, value)])


def _constant(graph, name):
    """The TensorProto of an initializer or a Constant node's ``value`` named ``name``, or None
    (a tensor computed at run time)."""
    t = next((t for t in graph.initializer if t.name == name), None)
    if t is None:
        node = next(
            (n for n in graph.node if n.op_type == "Constant" and n.output[0] == name), None
        )
        t = None if node is None else _attrs(node).get("value")
    return t


def _initializer_size(graph, name) -> int | None:
    t = _constant(graph, name)
    return None if t is None else int(np.prod(t.dims, dtype=np.int64))


def _reduce_axes(node, graph) -> list[int] | None:
    a = _attrs(node)
    if "axes" in a:
        return list(a["axes"])
    if len(node.input) > 1 and node.input[1]:
        from onnx import numpy_helper

        t = _constant(graph, node.input[1])
        return None if t is None else numpy_helper.to_array(t).astype(int).ravel().tolist()
    return None  # every axis: not a class-axis reduction


def _scalar_constants(graph) -> set[str]:
    names = {t.name for t in graph.initializer if int(np.prod(t.dims, dtype=np.int64)) <= 1}
    for n in graph.node:
        if n.op_type == "Constant":
            value = _attrs(n).get("value")
            if value is not None and int(np.prod(value.dims, dtype=np.int64)) <= 1:
                names.add(n.output[0])
    return names


def _ranks(graph) -> dict[str, int]:
    infos = list(graph.value_info) + list(graph.input) + list(graph.output)
    return {
        v.name: len(v.type.tensor_type.shape.dim)
        for v in infos
        if v.type.HasField("tensor_type") and v.type.tensor_type.HasField("shape")
    }


def _drop_unused_constants(graph) -> None:
    """Initializers and Constant nodes nothing reads any more (the class-axis tensors the
    rewritten reductions no longer use), so ONNX Runtime has nothing to warn about."""
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    used |= {i.name for i in graph.input}  # an initializer that is also an input (IR < 4)
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = [n for n in graph.node if n.op_type != "Constant" or n.output[0] in used]
    del graph.node[:]
    graph.node.extend(nodes)
