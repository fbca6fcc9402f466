"""INT8 with the few layers that cannot take it left in float: a per-layer sensitivity search.

Quantising every weighted layer of the shipped model (Q/DQ on the inputs of each Conv,
:mod:`joint_perception.export.quantize`) moves its outputs far from FP32: on the NYUv2 frames,
depth differs by 22 % and 38 % of the labels change. One layer does most of it: the depthwise
convolution of MobileNetV2's first block sees activations up to about +-40 (ImageNet weights
with folded batch norm), so one INT8 step of its per-tensor scale is ~0.3. The usual remedy of
post-training quantisation — leave the most sensitive layers in higher precision (TensorRT's
"Explicit quantization" guide: Q/DQ placement decides the precision of each layer) — is done
here from measurements:

1. quantise the whole graph and compare it, in ONNX Runtime, with the FP32 model on the
   calibration frames using the accuracy gate's metrics and thresholds
   (:func:`joint_perception.export.accuracy_gate.compare`); if it passes, that graph is used;
2. otherwise rank the weighted layers by the error of quantising each **alone**, as a multiple
   of the gate's limits: ``score = max(depth_abs_rel / limit, (1 - label_agreement) /
   (1 - limit), normal_angle_deg / limit)`` (infinite with non-finite outputs);
3. leave the top 1, 2, 4, ... ``max_float`` layers unquantised (no Q/DQ on their inputs:
   TensorRT runs them in the graph's float type) until the graph passes.

The ONNX Runtime check is a proxy for the engine (TensorRT fuses and picks kernels its own
way): ``export_engine`` still gates the built engine itself.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from joint_perception.export.accuracy_gate import (
    DEFAULT_THRESHOLDS,
    GateResult,
    GateThresholds,
    compare,
)
from joint_perception.export.calibration import CalibrationFrames
from joint_perception.export.quantize import QUANTIZED_OPS, quantize_qdq
from joint_perception.io_utils import atomic_write_bytes

__all__ = ["MixedInt8Report", "weighted_nodes", "sensitivity_score", "quantize_mixed"]

LOG = logging.getLogger(__name__)


@dataclass
class MixedInt8Report:
    """What :func:`quantize_mixed` did.

    Attributes:
        float_nodes: names of the weighted nodes left unquantised (empty: all INT8).
        passed: the written graph met the thresholds in ONNX Runtime.
        metrics: the gate metrics of the written graph against FP32.
        sensitivity: ``(node, score)`` ranked most sensitive first; empty when the fully
            quantised graph passed (no search was needed).
        tried: ``{number of float nodes: gate metrics}`` of every graph checked.
    """

    float_nodes: list[str]
    passed: bool
    metrics: dict[str, float]
    sensitivity: list[tuple[str, float]] = field(default_factory=list)
    tried: dict[int, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def weighted_nodes(onnx_path: str | os.PathLike) -> list[str]:
    """Names of the nodes :func:`quantize_qdq` quantises (:data:`QUANTIZED_OPS`), graph order."""
    model = onnx.load(str(onnx_path), load_external_data=False)
    return [n.name for n in model.graph.node if n.op_type in QUANTIZED_OPS]


def sensitivity_score(result: GateResult, limits: GateThresholds) -> float:
    """A gate result as a multiple of its limits (1.0 = at the limit; see module docstring)."""
    m = result.metrics
    if m.get("nonfinite_fraction", 0.0) > limits.nonfinite_fraction:
        return math.inf
    parts = []
    if "depth_abs_rel" in m:
        parts.append(m["depth_abs_rel"] / limits.depth_abs_rel)
    if "label_agreement" in m:
        parts.append((1.0 - m["label_agreement"]) / max(1.0 - limits.label_agreement, 1e-9))
    if "normal_angle_deg" in m:
        parts.append(m["normal_angle_deg"] / limits.normal_angle_deg)
    score = max(parts, default=0.0)
    return score if math.isfinite(score) else math.inf


def quantize_mixed(
    onnx_in: str | os.PathLike,
    onnx_out: str | os.PathLike,
    frames: CalibrationFrames,
    limits: GateThresholds | None = None,
    max_float: int = 8,
    candidates: Sequence[str] | None = None,
    method: str = "auto",
    calibrate_method: str = "minmax",
    metadata=None,
) -> MixedInt8Report:
    """Write the Q/DQ graph of ``onnx_in`` with the fewest layers left in float that keeps its
    outputs within ``limits`` of FP32 on ``frames`` (module docstring).

    Args:
        onnx_in: the FP32 model of an export directory (its ``metadata.json`` beside it, or
            ``metadata``).
        onnx_out: where the chosen Q/DQ graph goes (replaced atomically).
        frames: real calibration frames at the model's input size (also the check's frames).
        limits: the thresholds (default the gate's INT8 ones,
            ``accuracy_gate.DEFAULT_THRESHOLDS["int8"]``).
        max_float: most layers left unquantised; when even that fails, the graph with
            ``max_float`` float layers is written and ``passed`` is False.
        candidates: weighted nodes the search may leave in float (default all of them).
        method, calibrate_method: as :func:`joint_perception.export.quantize.quantize_qdq`.
        metadata: the model's :class:`~joint_perception.metadata.ModelMetadata`.

    Returns:
        :class:`MixedInt8Report`.

    Raises:
        ValueError: ``max_float < 0``, a candidate that is not a weighted node, and the errors
            of :func:`quantize_qdq`.
    """
    from joint_perception.export.accuracy_gate import reference_backend
    from joint_perception.metadata import load_metadata
    from joint_perception.runtime.onnxruntime_backend import OnnxRuntimeBackend

    if max_float < 0:
        raise ValueError(f"max_float must be >= 0, got {max_float}")
    src = Path(onnx_in)
    limits = limits or DEFAULT_THRESHOLDS["int8"]
    meta = metadata or load_metadata(src)
    names = weighted_nodes(src)
    pool = list(names if candidates is None else candidates)
    unknown = sorted(set(pool) - set(names))
    if unknown:
        raise ValueError(f"not weighted nodes of {src.name}: {unknown}")
    reference = reference_backend(src, meta)
    derived = dataclasses.replace(meta, onnx_sha256="")  # Q/DQ graphs hash differently
    work = Path(tempfile.mkdtemp(prefix="int8_mixed_"))

    def check(path: Path) -> GateResult:
        cand = OnnxRuntimeBackend(path, metadata=derived, providers=["CPUExecutionProvider"])
        try:
            return compare(cand, reference, frames.images, limits)
        finally:
            cand.close()

    def quantize(path: Path, **kw) -> Path:
        return quantize_qdq(src, path, frames, method, calibrate_method, **kw)

    try:
        full = check(quantize(work / "all.onnx"))
        report = MixedInt8Report([], full.passed, full.metrics, tried={0: full.metrics})
        best = work / "all.onnx"
        if not full.passed and max_float > 0 and pool:
            LOG.info(
                "INT8 of every layer fails the check (%s): measuring %d layers one by one",
                "; ".join(full.failures),
                len(pool),
            )
            scored = []
            for i, name in enumerate(pool, 1):
                one = check(quantize(work / "one.onnx", nodes_to_quantize=[name]))
                scored.append((name, sensitivity_score(one, limits)))
                if i % 10 == 0 or i == len(pool):
                    LOG.info("sensitivity: %d/%d layers", i, len(pool))
            scored.sort(key=lambda t: -t[1])
            report.sensitivity = scored
            k = 1
            while True:
                keep = [n for n, _ in scored[:k]]
                path = work / f"float{k}.onnx"
                res = check(quantize(path, nodes_to_exclude=keep))
                report.tried[k] = res.metrics
                report.float_nodes, report.passed, report.metrics, best = (
                    keep,
                    res.passed,
                    res.metrics,
                    path,
                )
                LOG.info("%d layer(s) in float: %s", k, "passes" if res.passed else "fails")
                if res.passed or k >= min(max_float, len(scored)):
                    break
                k = min(2 * k, max_float, len(scored))
        dst = atomic_write_bytes(onnx_out, best.read_bytes())
    finally:
        reference.close()
        shutil.rmtree(work, ignore_errors=True)
    LOG.info(
        "INT8 graph %s: %d layer(s) in float %s, %s",
        dst,
        len(report.float_nodes),
        report.float_nodes,
        "within the limits" if report.passed else "STILL OUTSIDE the limits",
    )
    return report
