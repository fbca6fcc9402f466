"""INT8 by explicit quantisation: insert Q/DQ nodes into the ONNX model from real frames.

TensorRT's implicit INT8 calibrators and ``BuilderFlag.INT8`` are gone in TensorRT 11 (deprecated
since 10.1 and 10.12); an INT8 engine is built, strongly typed, from an ONNX graph with
``QuantizeLinear``/``DequantizeLinear`` pairs whose scales come from calibration
(:mod:`joint_perception.runtime.onnx_precision`). What TensorRT's ONNX parser takes and fuses:

* symmetric signed INT8 (zero point 0) for activations and weights;
* per-channel weight scales on the output-channel axis, per-tensor activation scales;
* Q/DQ on the *inputs* of the weighted operators (:data:`QUANTIZED_OPS`) only: their outputs,
  the heads' outputs included (depth, logits, normals), stay float, so no output is rounded to
  256 levels;
* biases stay float32 (TensorRT folds them into the INT8 convolution; a DequantizeLinear of an
  INT32 bias, ONNX Runtime's default, is not an input type TensorRT's parser accepts).

The rest of the graph stays float32 with both quantisers, so the INT8 engine is INT8 where
:data:`QUANTIZED_OPS` run and FP32 elsewhere.

:func:`quantize_qdq` uses NVIDIA Model Optimizer (``modelopt.onnx.quantization.quantize``,
``high_precision_dtype="fp32"``), which places Q/DQ the way TensorRT fuses best, when it is
importable; otherwise ONNX Runtime's ``quantize_static(..., quant_format=QuantFormat.QDQ)``
over a :class:`CalibrationDataReader` that feeds the frames. Both refuse random frames
(:class:`~joint_perception.export.calibration.CalibrationFrames`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import onnx

from joint_perception.export.calibration import CalibrationFrames
from joint_perception.io_utils import atomic_write_bytes

LOG = logging.getLogger(__name__)

#: Operators whose inputs get Q/DQ (the compute-heavy ones TensorRT runs in INT8).
QUANTIZED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
METHODS = ("auto", "modelopt", "onnxruntime")


def quantize_qdq(
    onnx_in: str | os.PathLike,
    onnx_out: str | os.PathLike,
    frames: CalibrationFrames,
    method: str = "auto",
    calibrate_method: str = "minmax",
    nodes_to_quantize: list[str] | None = None,
    nodes_to_exclude: list[str] | None = None,
) -> Path:
    """Write a Q/DQ (explicitly quantised INT8) copy of ``onnx_in`` to ``onnx_out``.

    Args:
        onnx_in: fp32 model (ONNX contract of :mod:`joint_perception.metadata`).
        onnx_out: destination (replaced atomically).
        frames: real calibration frames at the model's input size.
        method: ``"auto"`` (Model Optimizer if importable, else ONNX Runtime),
            ``"modelopt"`` or ``"onnxruntime"``.
        calibrate_method: ``"minmax"``, ``"entropy"`` or ``"percentile"``.
        nodes_to_quantize: quantise only these nodes (names; default every node of
            :data:`QUANTIZED_OPS`).
        nodes_to_exclude: leave these nodes unquantised (no Q/DQ on their inputs: they stay
            float; :mod:`joint_perception.export.int8_mixed` picks them).

    Returns:
        ``Path(onnx_out)``.

    Raises:
        ValueError: random frames, unknown method, or frames of the wrong size.
        ImportError: ``method="modelopt"`` without Model Optimizer installed.
    """
    if frames.is_random:
        LOG.error(
            "quantising with RANDOM calibration data (%s): INT8 accuracy will be poor",
            frames.source,
        )
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    src, dst = Path(onnx_in), Path(onnx_out)
    model = onnx.load(str(src), load_external_data=False)
    inits = {t.name for t in model.graph.initializer}
    vi = next(v for v in model.graph.input if v.name not in inits)
    want = [d.dim_value for d in vi.type.tensor_type.shape.dim][2:]
    if all(want) and tuple(want) != frames.size_hw:
        raise ValueError(
            f"{src} expects {want[0]}x{want[1]} input, calibration frames are {frames.size_hw}"
        )

    nodes = {"nodes_to_quantize": nodes_to_quantize, "nodes_to_exclude": nodes_to_exclude}
    # The quantisers write to a path: into a private directory, then into place atomically
    # (io_utils: a whole file or none, the usual file mode)
    with tempfile.TemporaryDirectory(prefix="quantize_qdq_") as work:
        tmp = Path(work) / "model.qdq.onnx"
        if method in ("auto", "modelopt"):
            try:
                _quantize_modelopt(src, tmp, frames, vi.name, calibrate_method, nodes)
                used = "modelopt"
            except ImportError:
                if method == "modelopt":
                    raise
                _quantize_ort(src, tmp, frames, vi.name, calibrate_method, nodes)
                used = "onnxruntime"
        else:
            _quantize_ort(src, tmp, frames, vi.name, calibrate_method, nodes)
            used = "onnxruntime"
        onnx.checker.check_model(str(tmp))
        atomic_write_bytes(dst, tmp.read_bytes())
    LOG.info(
        "Q/DQ INT8 model written with %s from %d frames of %s: %s",
        used,
        len(frames),
        frames.source,
        dst,
    )
    return dst


def _quantize_modelopt(
    src: Path,
    dst: Path,
    frames: CalibrationFrames,
    input_name: str,
    calibrate_method: str,
    nodes: dict,
) -> None:
    from modelopt.onnx.quantization import quantize  # type: ignore[import-not-found]

    quantize(
        onnx_path=str(src),
        quantize_mode="int8",
        calibration_data={input_name: frames.images},
        calibration_method={"minmax": "max", "entropy": "entropy", "percentile": "max"}[
            calibrate_method
        ],
        high_precision_dtype="fp32",  # as the ONNX Runtime path: un-quantised ops stay FP32
        output_path=str(dst),
        **nodes,
    )


class _FramesReader:
    """ONNX Runtime ``CalibrationDataReader`` over calibration frames, one frame per call."""

    def __init__(self, frames: CalibrationFrames, input_name: str):
        self._frames = frames
        self._name = input_name
        self._it = iter(frames.batches(1))

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._it, None)
        return None if batch is None else {self._name: batch}

    def rewind(self) -> None:
        self._it = iter(self._frames.batches(1))


def _quantize_ort(
    src: Path,
    dst: Path,
    frames: CalibrationFrames,
    input_name: str,
    calibrate_method: str,
    nodes: dict,
) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    reader_cls = type("FramesReader", (_FramesReader, CalibrationDataReader), {})
    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    if calibrate_method not in methods:
        raise ValueError(
            f"calibrate_method must be one of {sorted(methods)}, got {calibrate_method!r}"
        )
    # The model goes in as a ModelProto: given a path, ONNX Runtime writes its shape-inferred
    # copy beside it (``<stem>-inferred.onnx``), i.e. into the user's model directory, which
    # may be read-only (an installed share/) or quantised by another process at the same time.
    with _without_preprocess_advice():
        quantize_static(
            onnx.load(str(src)),
            str(dst),
            reader_cls(frames, input_name),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(QUANTIZED_OPS),
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=methods[calibrate_method],
            **nodes,
            extra_options={
                # TensorRT: symmetric INT8 (zero point 0) for activations and weights.
                "ActivationSymmetric": True,
                "WeightSymmetric": True,
                # Float bias: TensorRT's parser takes no DequantizeLinear of an INT32 tensor.
                "QuantizeBias": False,
                # Q/DQ only on the inputs of the weighted ops, never on their (head) outputs.
                "OpTypesToExcludeOutputQuantization": list(QUANTIZED_OPS),
            },
        )


class _PreprocessAdvice(logging.Filter):
    """Drops ONNX Runtime's "Please consider to run pre-processing before quantization", which
    it logs on the root logger at every ``quantize_static`` call (66 times in one INT8 layer
    search). The advice does not apply: the graph is already shape-inferred and
    constant-folded by the exporter, and its optimisations would change the graph that is
    checked against FP32."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Please consider")


@contextlib.contextmanager
def _without_preprocess_advice():
    root = logging.getLogger()
    advice = _PreprocessAdvice()
    root.addFilter(advice)
    try:
        yield
    finally:
        root.removeFilter(advice)


def count_qdq(onnx_path: str | os.PathLike) -> tuple[int, int]:
    """(number of QuantizeLinear, number of DequantizeLinear) nodes in a model."""
    model = onnx.load(str(onnx_path), load_external_data=False)
    q = sum(n.op_type == "QuantizeLinear" for n in model.graph.node)
    dq = sum(n.op_type == "DequantizeLinear" for n in model.graph.node)
    return q, dq
