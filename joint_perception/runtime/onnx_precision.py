"""The ONNX graph a strongly typed TensorRT engine of each precision is built from.

TensorRT 11 builds every network strongly typed, and this package asks TensorRT 10 for the
same (``NetworkDefinitionCreationFlag.STRONGLY_TYPED``): each tensor keeps the type the ONNX
graph gives it, and the weakly typed precision flags (``BuilderFlag.FP16``/``INT8``, removed in
TensorRT 11) are never set. The precision of an engine is therefore the precision of its ONNX
graph:

* ``fp32``: the exported model as it is;
* ``fp16``: :func:`convert_fp16` - weights and activations in float16, with the graph's
  inputs and outputs, and the operators of :func:`fp32_ops`, left in float32;
* ``int8``: a Q/DQ graph from real calibration frames
  (:func:`joint_perception.export.quantize.quantize_qdq`; the un-quantised rest stays float32).

:func:`onnx_precision` reads which of the three a graph is, so a build never silently turns an
"fp16" request into an FP32 engine.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import onnx
from onnx import TensorProto, helper

from joint_perception.io_utils import atomic_write_bytes

LOG = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")

#: Operators kept in float32 besides onnxconverter-common's ``DEFAULT_OP_BLOCK_LIST`` (ops
#: without float16 kernels, index/shape producers such as TopK, Range, NonMaxSuppression):
#: reductions of squares and log-sum-exp, whose intermediate sums overflow float16 (largest
#: finite value 65504) long before their results do - e.g. the L2 norm that makes the normals
#: unit vectors.
EXTRA_FP32_OPS = ("ReduceL2", "ReduceSumSquare", "LpNormalization", "ReduceLogSumExp")

#: ``Resize`` runs in float16 unless it takes ``roi`` or ``scales`` (ONNX types ``scales`` as
#: float32 only; PyTorch exports ``sizes``), so it is removed from the default block list and
#: such nodes are kept float32 one by one.
_FP16_RESIZE = "Resize"

_FP16_MAX = 65504.0
_FP16_MIN_SUBNORMAL = 2.0**-24


def fp32_ops() -> tuple[str, ...]:
    """Operator types :func:`convert_fp16` keeps in float32 (sorted).

    Raises:
        ImportError: onnxconverter-common is not installed.
    """
    float16 = _float16_module()
    default = set(float16.DEFAULT_OP_BLOCK_LIST) - {_FP16_RESIZE}
    return tuple(sorted(default | set(EXTRA_FP32_OPS)))


def _float16_module():
    try:
        from onnxconverter_common import float16
    except ImportError as exc:
        raise ImportError(
            "FP16 TensorRT engines are built from an FP16 ONNX model made with "
            "onnxconverter-common: pip install 'onnxconverter-common>=1.14' (extra "
            f"joint_perception[tensorrt]) ({exc})"
        ) from exc
    return float16


def io_types(model: onnx.ModelProto) -> dict[str, int]:
    """``{graph input/output name: TensorProto element type}`` (initializers excluded)."""
    inits = {i.name for i in model.graph.initializer}
    return {
        v.name: v.type.tensor_type.elem_type
        for v in [*model.graph.input, *model.graph.output]
        if v.name not in inits
    }


def onnx_precision(model: onnx.ModelProto | str | os.PathLike) -> str:
    """The precision an engine built from this graph has: ``"int8"``, ``"fp16"`` or ``"fp32"``.

    ``int8``: the graph has QuantizeLinear/DequantizeLinear nodes; ``fp16``: otherwise any
    float16 weight, constant or Cast to float16; else ``fp32``.
    """
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model), load_external_data=False)
    graph = model.graph
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in graph.node):
        return "int8"
    if any(t.data_type == TensorProto.FLOAT16 for t in graph.initializer):
        return "fp16"
    for node in graph.node:
        for attr in node.attribute:
            if node.op_type == "Cast" and attr.name == "to" and attr.i == TensorProto.FLOAT16:
                return "fp16"
            if attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == TensorProto.FLOAT16:
                return "fp16"
    return "fp32"


def _float_param_resizes(model: onnx.ModelProto) -> list[str]:
    """Names of Resize nodes with a non-empty ``roi`` or ``scales`` input (named if unnamed)."""
    names = []
    for i, node in enumerate(model.graph.node):
        if node.op_type == _FP16_RESIZE and any(node.input[1:3]):
            node.name = node.name or f"{_FP16_RESIZE}_{i}"
            names.append(node.name)
    return names


def _restore_output_types(model: onnx.ModelProto, wanted: dict[str, int]) -> list[str]:
    """Cast graph outputs whose type changed back to ``wanted`` (returns their names).

    onnxconverter-common keeps the graph IO types, except for an output produced by an
    operator it leaves in float32 - that output comes back float16.
    """
    fixed = []
    for out in model.graph.output:
        want = wanted.get(out.name)
        have = out.type.tensor_type.elem_type
        if want is None or want == have:
            continue
        inner = f"{out.name}_as_{TensorProto.DataType.Name(have).lower()}"
        for node in model.graph.node:
            node.output[:] = [inner if o == out.name else o for o in node.output]
            node.input[:] = [inner if i == out.name else i for i in node.input]
        model.graph.node.append(
            helper.make_node("Cast", [inner], [out.name], name=f"{out.name}_cast", to=want)
        )
        out.type.tensor_type.elem_type = want
        fixed.append(out.name)
    return fixed


def convert_fp16(onnx_in: str | os.PathLike, onnx_out: str | os.PathLike) -> Path:
    """Write a float16 copy of a float32 ONNX model for a strongly typed FP16 engine.

    onnxconverter-common's ``convert_float_to_float16`` with ``keep_io_types=True``: the
    ``image`` input stays float32 (N, 3, H, W) and every output keeps its type (float32
    ``depth``/``confidence``/``normals``, int32 ``labels``), converted at the graph's edges.
    Operators of :func:`fp32_ops`, and Resize nodes with ``roi``/``scales``, stay float32.
    Constants are clamped to float16's finite range (|x| <= 65504) and values below its
    smallest subnormal (2**-24) become that value, instead of inf and 0.

    Args:
        onnx_in: the float32 model.
        onnx_out: destination (written atomically; parent directories created).

    Returns:
        ``Path(onnx_out)``.

    Raises:
        ImportError: onnxconverter-common is not installed.
        ValueError: ``onnx_in`` is not a float32 model (already fp16 or Q/DQ), or the result
            changed an input type or does not pass ``onnx.checker``.
    """
    float16 = _float16_module()
    src, dst = Path(onnx_in), Path(onnx_out)
    model = onnx.load(str(src))
    have = onnx_precision(model)
    if have != "fp32":
        raise ValueError(f"{src} is already an {have} graph; convert the float32 model")
    before = io_types(model)
    keep = _float_param_resizes(model)
    with warnings.catch_warnings(record=True) as clamped:  # one warning per clamped tensor
        warnings.simplefilter("always")
        converted = float16.convert_float_to_float16(
            model,
            min_positive_val=_FP16_MIN_SUBNORMAL,
            max_finite_val=_FP16_MAX,
            keep_io_types=True,
            op_block_list=list(fp32_ops()),
            node_block_list=keep,
        )
    for w in clamped:
        LOG.debug("FP16 conversion of %s: %s", src, w.message)
    fixed = _restore_output_types(converted, before)
    after = io_types(converted)
    if after != before:
        changed = sorted(n for n in before if after.get(n) != before[n])
        raise ValueError(f"FP16 conversion of {src} changed the types of {changed}")
    try:
        onnx.checker.check_model(converted)
    except onnx.checker.ValidationError as exc:
        raise ValueError(f"FP16 conversion of {src} is not valid ONNX: {exc}") from exc
    atomic_write_bytes(dst, converted.SerializeToString())
    LOG.info(
        "FP16 ONNX written: %s (%d constants clamped to float16's range; float32 kept for %s%s%s)",
        dst,
        len(clamped),
        ", ".join(sorted({n.op_type for n in model.graph.node} & set(fp32_ops()))) or "no ops",
        f"; Resize nodes {keep}" if keep else "",
        f"; outputs {fixed} cast back" if fixed else "",
    )
    return dst
