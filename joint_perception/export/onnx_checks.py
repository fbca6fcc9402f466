"""ONNX hygiene before a TensorRT build: checker, opset, static shapes, supported operators.

TensorRT's ONNX parser (onnx-tensorrt) fails late and per node on graphs it cannot take, after
the user has waited for the builder to start. :func:`check_onnx` finds those problems up front
and cheaply, without TensorRT: it runs ``onnx.checker`` (full check with shape inference),
reads the opset, verifies that the input shape is static, lists the operator types and flags
every operator missing from :data:`TRT10_SUPPORTED_OPS` (the "Y" rows of onnx-tensorrt's
``docs/operators.md`` for TensorRT 10, opsets 9..20) or from a non-standard domain (for example
ONNX Runtime's ``com.microsoft`` fused ops, which TensorRT cannot parse).

:func:`fold_constants` folds constant sub-graphs (onnx-graphsurgeon when installed, else ONNX
Runtime's offline optimiser at ``ORT_ENABLE_BASIC``, which only folds constants and removes
redundant nodes, so the result stays standard ONNX). :func:`make_static` pins the input shape.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from joint_perception.io_utils import atomic_write_bytes
from joint_perception.onnx_io import load_onnx

LOG = logging.getLogger(__name__)

#: Opset range TensorRT 10's ONNX parser supports (onnx-tensorrt docs/operators.md).
TRT10_OPSET_RANGE = (9, 20)

#: ONNX operators (default domain) that TensorRT 10's ONNX parser supports, from the
#: onnx-tensorrt support matrix for TensorRT 10 (restrictions on attributes/types apply and
#: are reported by the parser itself). Operators whose support we could not confirm for 10.0
#: are left out (a false alarm is cheaper than a failed build); unsupported ones, e.g.
#: ``Bernoulli, BitShift, BitwiseAnd, Compress, ConcatFromSequence, ConvInteger, DFT, Det,
#: DynamicQuantizeLinear, MatMulInteger, MaxRoiPool, MaxUnpool, Multinomial, Optional*,
#: QLinearConv, QLinearMatMul, Sequence*, SplitToSequence, STFT, String*, TfIdfVectorizer,
#: Unique``, are absent.
_TRT10_OPS_TEXT = """
    Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization
    Cast CastLike Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh
    CumSum DepthToSpace DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike
    Flatten Floor Gather GatherElements GatherND Gelu Gemm GlobalAveragePool GlobalLpPool
    GlobalMaxPool Greater GreaterOrEqual GridSample GroupNormalization GRU Hardmax HardSigmoid
    HardSwish Identity If ImageScaler InstanceNormalization IsInf IsNaN LayerNormalization
    LeakyRelu Less LessOrEqual Log LogSoftmax Loop LRN LSTM LpNormalization LpPool MatMul Max
    MaxPool Mean Min Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or Pad ParametricSoftplus
    Pow PRelu QuantizeLinear RandomUniform RandomUniformLike Range Reciprocal ReduceL1 ReduceL2
    ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum
    ReduceSumSquare Relu Reshape Resize ReverseSequence RNN RoiAlign Round ScaledTanh Scan
    Scatter ScatterElements ScatterND Selu Shape Sigmoid Sign Sin Sinh Size Slice Softmax
    Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK
    Transpose Trilu Unsqueeze Upsample Where Xor
"""
TRT10_SUPPORTED_OPS: frozenset[str] = frozenset(_TRT10_OPS_TEXT.split())

_DEFAULT_DOMAINS = ("", "ai.onnx")


@dataclass
class OnnxReport:
    """What :func:`check_onnx` found.

    Attributes:
        path: the checked file.
        opset: default-domain opset of the model.
        inputs: input name -> shape (ints; ``None`` for a symbolic/unknown dimension).
        outputs: output name -> shape, same convention.
        op_counts: operator type -> number of nodes (``domain::Op`` for non-default domains).
        unsupported_ops: operator types TensorRT 10 cannot parse (sorted).
        initializer_bytes: total size of the weights stored in the graph.
        errors: problems that make a TensorRT build fail (checker errors, unsupported ops,
            opset out of range, dynamic input shapes).
        warnings: things worth knowing that do not stop a build.
    """

    path: Path
    opset: int = 0
    inputs: dict[str, list[int | None]] = field(default_factory=dict)
    outputs: dict[str, list[int | None]] = field(default_factory=dict)
    op_counts: dict[str, int] = field(default_factory=dict)
    unsupported_ops: list[str] = field(default_factory=list)
    initializer_bytes: int = 0
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing in :attr:`errors` would stop a TensorRT build."""
        return not self.errors

    @property
    def static_input(self) -> bool:
        """True when every input dimension is a fixed positive integer."""
        return all(d is not None and d > 0 for shape in self.inputs.values() for d in shape)

    def summary(self) -> str:
        """Multi-line human-readable report (for the CLI log)."""
        lines = [
            f"ONNX {self.path}: opset {self.opset}, "
            f"{sum(self.op_counts.values())} nodes, {len(self.op_counts)} op types, "
            f"weights {self.initializer_bytes / 2**20:.1f} MiB",
            "  inputs:  " + ", ".join(f"{k}{v}" for k, v in self.inputs.items()),
            "  outputs: " + ", ".join(f"{k}{v}" for k, v in self.outputs.items()),
        ]
        lines += [f"  ERROR: {e}" for e in self.errors]
        lines += [f"  warning: {w}" for w in self.warnings]
        lines.append("  -> OK for TensorRT 10" if self.ok else "  -> NOT buildable by TensorRT 10")
        return "\n".join(lines)


def _shape(value_info: onnx.ValueInfoProto) -> list[int | None]:
    dims = value_info.type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") else None for d in dims]


def check_onnx(path: str | os.PathLike) -> OnnxReport:
    """Check an ONNX model for a TensorRT 10 build without needing TensorRT.

    Args:
        path: ``.onnx`` file (weights embedded or external data next to it).

    Returns:
        :class:`OnnxReport`; ``report.ok`` is False when the build would fail.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not a parsable ONNX protobuf.
    """
    p = Path(path)
    model = load_onnx(p)
    report = OnnxReport(path=p)
    try:
        onnx.checker.check_model(str(p), full_check=True)
    except Exception as exc:  # onnx.checker.ValidationError, shape inference errors
        report.errors.append(f"onnx.checker: {str(exc).strip().splitlines()[0]}")

    for imp in model.opset_import:
        if imp.domain in _DEFAULT_DOMAINS:
            report.opset = int(imp.version)
    lo, hi = TRT10_OPSET_RANGE
    if not lo <= report.opset <= hi:
        report.errors.append(f"opset {report.opset} outside TensorRT 10's range {lo}..{hi}")

    init_names = {t.name for t in model.graph.initializer}
    for vi in model.graph.input:
        if vi.name not in init_names:
            report.inputs[vi.name] = _shape(vi)
    for vi in model.graph.output:
        report.outputs[vi.name] = _shape(vi)
    for name, shape in report.inputs.items():
        if any(d is None or d <= 0 for d in shape):
            report.errors.append(
                f"input {name!r} has dynamic shape {shape}: run make_static() or give the "
                "engine build an optimisation profile (--min/--opt/--max shapes)"
            )

    counts: Counter[str] = Counter()
    unsupported: set[str] = set()
    for node in _all_nodes(model.graph):
        if node.domain in _DEFAULT_DOMAINS:
            key = node.op_type
            if key not in TRT10_SUPPORTED_OPS:
                unsupported.add(key)
        else:
            key = f"{node.domain}::{node.op_type}"
            unsupported.add(key)
        counts[key] += 1
    report.op_counts = dict(sorted(counts.items()))
    report.unsupported_ops = sorted(unsupported)
    if unsupported:
        report.errors.append(
            "operators TensorRT 10 cannot parse: "
            + ", ".join(f"{op} (x{counts[op]})" for op in report.unsupported_ops)
        )

    report.initializer_bytes = int(sum(_tensor_nbytes(t) for t in model.graph.initializer))
    if counts.get("Constant", 0) > 0 or counts.get("Shape", 0) > 0:
        report.warnings.append(
            f"{counts.get('Constant', 0)} Constant / {counts.get('Shape', 0)} Shape nodes: "
            "fold_constants() may simplify the graph"
        )
    return report


def _all_nodes(graph: onnx.GraphProto):
    """Nodes of ``graph`` and of its sub-graphs (If/Loop/Scan bodies)."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _all_nodes(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from _all_nodes(g)


def _tensor_nbytes(t: onnx.TensorProto) -> int:
    n = 1
    for d in t.dims:
        n *= int(d)
    try:
        itemsize = onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
    except Exception:  # string/unknown types
        itemsize = 1
    return n * itemsize


def fold_constants(path: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Fold constant sub-graphs and drop redundant nodes; writes ``out`` atomically.

    Uses onnx-graphsurgeon (``graph.fold_constants().cleanup()``) when installed, otherwise
    ONNX Runtime's offline optimisation at ``ORT_ENABLE_BASIC`` saved through
    ``SessionOptions.optimized_model_filepath`` (basic level only applies standard-ONNX
    rewrites, so no ``com.microsoft`` ops appear). The result is re-checked with
    ``onnx.checker``.

    Args:
        path: input ``.onnx``.
        out: output ``.onnx`` (may equal ``path``).

    Returns:
        ``Path(out)``.

    Raises:
        FileNotFoundError / ValueError: unreadable input (see :func:`check_onnx`).
    """
    src = Path(path)
    dst = Path(out)
    model = load_onnx(src)
    try:
        import onnx_graphsurgeon as gs  # type: ignore[import-not-found]

        graph = gs.import_onnx(model)
        graph.fold_constants().cleanup().toposort()
        folded = gs.export_onnx(graph)
        folded.opset_import[:] = model.opset_import
        data = folded.SerializeToString()
        LOG.info("folded constants with onnx-graphsurgeon: %s", dst)
    except ImportError:
        import tempfile

        import onnxruntime as ort

        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        with tempfile.TemporaryDirectory() as tmp:
            tmp_out = Path(tmp) / "folded.onnx"
            so.optimized_model_filepath = str(tmp_out)
            ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"])
            data = tmp_out.read_bytes()
        LOG.info("folded constants with ONNX Runtime (ORT_ENABLE_BASIC): %s", dst)
    onnx.checker.check_model(onnx.load_from_string(data))
    return atomic_write_bytes(dst, data)


def make_static(
    path: str | os.PathLike,
    out: str | os.PathLike,
    input_shape: tuple[int, ...] | list[int],
    input_name: str | None = None,
) -> Path:
    """Pin an input's shape (e.g. ``(1, 3, 240, 320)``) and re-infer the other shapes.

    Args:
        path: input ``.onnx``.
        out: output ``.onnx`` (written atomically; may equal ``path``).
        input_shape: the static shape, positive ints, same rank as the input.
        input_name: which graph input; default the first non-initializer input.

    Returns:
        ``Path(out)``.

    Raises:
        ValueError: rank mismatch, non-positive dimension, a fixed dimension that conflicts
            with ``input_shape``, or unknown input name.
    """
    shape = [int(d) for d in input_shape]
    if any(d <= 0 for d in shape):
        raise ValueError(f"static shape must be positive, got {shape}")
    model = load_onnx(path)
    init_names = {t.name for t in model.graph.initializer}
    inputs = [vi for vi in model.graph.input if vi.name not in init_names]
    if input_name is None:
        target = inputs[0]
    else:
        matches = [vi for vi in inputs if vi.name == input_name]
        if not matches:
            raise ValueError(
                f"{path}: no input named {input_name!r}; have {[v.name for v in inputs]}"
            )
        target = matches[0]
    dims = target.type.tensor_type.shape.dim
    if len(dims) != len(shape):
        raise ValueError(f"{path}: input {target.name!r} has rank {len(dims)}, got shape {shape}")
    for i, (d, s) in enumerate(zip(dims, shape, strict=True)):
        if d.HasField("dim_value") and d.dim_value not in (0, s):
            raise ValueError(
                f"{path}: input {target.name!r} dim {i} is fixed at {d.dim_value}, cannot set {s}"
            )
        d.Clear()
        d.dim_value = s
    # Drop stale intermediate/output shapes so inference recomputes them from the new input.
    del model.graph.value_info[:]
    for vi in model.graph.output:
        for d in vi.type.tensor_type.shape.dim:
            if not d.HasField("dim_value"):
                d.Clear()
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    onnx.checker.check_model(model)
    return atomic_write_bytes(out, model.SerializeToString())
