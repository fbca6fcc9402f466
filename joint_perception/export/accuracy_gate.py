"""Accuracy gate: does an optimised backend still compute what the fp32 ONNX model computes?

FP16 overflow (inf/NaN), INT8 scale errors and broken engine builds must be caught when the
engine is built, not by users. :func:`run_gate` runs a candidate backend (TensorRT engine,
torch FP16, a Q/DQ model in ONNX Runtime...) and the ONNX Runtime fp32 reference on the same
real frames and measures, over all pixels of all frames:

* ``depth_abs_rel``: mean |d_c - d_r| / d_r over pixels where both are finite and d_r > 0
  (the NYUv2 "abs rel" metric, with the reference as ground truth);
* ``label_agreement``: fraction of pixels whose class id is equal;
* ``normal_angle_deg``: mean angle between candidate and reference normals, degrees;
* ``nonfinite_fraction``: fraction of non-finite values in the candidate's float outputs
  (depth, confidence, normals) - FP16 overflow shows up here.

Each metric is compared with :class:`GateThresholds` (defaults per precision); the result is a
:class:`GateResult`, recorded in the engine's cache sidecar by
:func:`joint_perception.export.export_engine.build_engine_with_gate`. :func:`enforce` applies
the policy: ``"refuse"`` raises :class:`EngineRefused`,
``"warn"`` logs a warning.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from joint_perception.metadata import ModelMetadata, load_metadata
from joint_perception.runtime.base import Backend, Prediction

LOG = logging.getLogger(__name__)

POLICIES = ("refuse", "warn")


class EngineRefused(RuntimeError):
    """The accuracy gate refused the engine (``result`` holds the metrics)."""

    def __init__(self, message: str, result: GateResult):
        super().__init__(message)
        self.result = result


@dataclass
class GateThresholds:
    """Largest acceptable differences from the fp32 reference.

    Attributes:
        depth_abs_rel: max mean relative depth difference (0.01 = 1 %).
        label_agreement: min fraction of equal labels.
        normal_angle_deg: max mean normal angle difference, degrees.
        nonfinite_fraction: max fraction of NaN/inf candidate values (0 = none allowed).
    """

    depth_abs_rel: float = 0.01
    label_agreement: float = 0.99
    normal_angle_deg: float = 2.0
    nonfinite_fraction: float = 0.0


#: Default thresholds per precision (fp32 engines differ only by kernel choice; INT8 loses more).
DEFAULT_THRESHOLDS = {
    "fp32": GateThresholds(0.002, 0.998, 0.5, 0.0),
    "fp16": GateThresholds(0.01, 0.99, 2.0, 0.0),
    "int8": GateThresholds(0.05, 0.95, 5.0, 0.0),
}


@dataclass
class GateConfig:
    """Gate thresholds + policy (``"refuse"`` or ``"warn"``); ``enabled=False`` skips it."""

    thresholds: GateThresholds = field(default_factory=GateThresholds)
    policy: str = "refuse"
    enabled: bool = True

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"gate policy must be one of {POLICIES}, got {self.policy!r}")

    @classmethod
    def for_precision(
        cls, precision: str, policy: str = "refuse", enabled: bool = True
    ) -> GateConfig:
        """Default thresholds for ``"fp32"``, ``"fp16"`` or ``"int8"``.

        Raises:
            ValueError: unknown precision or policy.
        """
        if precision not in DEFAULT_THRESHOLDS:
            raise ValueError(
                f"precision must be one of {sorted(DEFAULT_THRESHOLDS)}, got {precision!r}"
            )
        t = DEFAULT_THRESHOLDS[precision]
        return cls(GateThresholds(**asdict(t)), policy, enabled)


@dataclass
class GateResult:
    """Outcome of :func:`run_gate`.

    Attributes:
        passed: every metric within its threshold.
        metrics: ``depth_abs_rel``, ``label_agreement``, ``normal_angle_deg``,
            ``nonfinite_fraction`` (only those the model has), plus ``frames``.
        thresholds: the thresholds used.
        failures: one sentence per violated threshold.
        candidate, reference: backend descriptions.
    """

    passed: bool
    metrics: dict[str, float]
    thresholds: dict[str, float]
    failures: list[str]
    candidate: str = ""
    reference: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-able (non-finite metrics become strings so strict JSON can store them)."""
        d = asdict(self)
        d["metrics"] = {k: (v if math.isfinite(v) else repr(v)) for k, v in self.metrics.items()}
        return d


class _Accumulator:
    """Running sums over batches, so the gate uses O(batch) memory for any number of frames."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, float] = {}

    def add(self, name: str, total: float, count: float) -> None:
        self.sums[name] = self.sums.get(name, 0.0) + float(total)
        self.counts[name] = self.counts.get(name, 0.0) + float(count)

    def mean(self, name: str) -> float:
        c = self.counts.get(name, 0.0)
        return self.sums[name] / c if c > 0 else float("nan")


def _accumulate(acc: _Accumulator, cand: Prediction, ref: Prediction) -> None:
    floats = [a for a in (cand.depth, cand.confidence, cand.normals) if a is not None]
    acc.add(
        "nonfinite_fraction",
        sum(int((~np.isfinite(a)).sum()) for a in floats),
        sum(a.size for a in floats),
    )
    if ref.depth is not None and cand.depth is not None:
        d_c, d_r = cand.depth.astype(np.float64), ref.depth.astype(np.float64)
        valid = np.isfinite(d_c) & np.isfinite(d_r) & (d_r > 0)
        acc.add(
            "depth_abs_rel", float((np.abs(d_c - d_r)[valid] / d_r[valid]).sum()), int(valid.sum())
        )
    if ref.labels is not None and cand.labels is not None:
        acc.add("label_agreement", int((cand.labels == ref.labels).sum()), cand.labels.size)
    if ref.normals is not None and cand.normals is not None:
        n_c, n_r = cand.normals.astype(np.float64), ref.normals.astype(np.float64)
        valid = np.isfinite(n_c).all(-1) & np.isfinite(n_r).all(-1)
        nc = n_c[valid] / np.maximum(np.linalg.norm(n_c[valid], axis=-1, keepdims=True), 1e-12)
        nr = n_r[valid] / np.maximum(np.linalg.norm(n_r[valid], axis=-1, keepdims=True), 1e-12)
        ang = np.degrees(np.arccos(np.clip((nc * nr).sum(-1), -1.0, 1.0)))
        acc.add("normal_angle_deg", float(ang.sum()), int(valid.sum()))


def compare(
    candidate: Backend,
    reference: Backend,
    frames: np.ndarray,
    thresholds: GateThresholds,
    batch_size: int = 1,
) -> GateResult:
    """Run both backends on ``frames`` and check the differences against ``thresholds``.

    Args:
        candidate: backend under test.
        reference: fp32 reference backend.
        frames: (N, 3, H, W) float32 in [0, 1] (pre-processed, e.g. ``CalibrationFrames.images``).
        thresholds: limits.
        batch_size: frames per ``predict`` call (engines are usually built for batch 1).

    Returns:
        :class:`GateResult`. A metric with no valid pixels is NaN and counts as a failure.

    Raises:
        ValueError: ``frames`` is not (N, 3, H, W) float32 with N >= 1.
    """
    if frames.ndim != 4 or frames.shape[1] != 3 or frames.dtype != np.float32 or len(frames) == 0:
        raise ValueError(
            f"gate frames must be (N>=1, 3, H, W) float32, got {frames.shape} {frames.dtype}"
        )
    acc = _Accumulator()
    for i in range(0, len(frames), batch_size):
        batch = np.ascontiguousarray(frames[i : i + batch_size])
        _accumulate(acc, candidate.predict(batch), reference.predict(batch))
    metrics = {name: acc.mean(name) for name in acc.sums}
    metrics["frames"] = float(len(frames))
    failures = []
    t = thresholds
    checks = [
        ("depth_abs_rel", t.depth_abs_rel, "max"),
        ("label_agreement", t.label_agreement, "min"),
        ("normal_angle_deg", t.normal_angle_deg, "max"),
        ("nonfinite_fraction", t.nonfinite_fraction, "max"),
    ]
    for name, limit, kind in checks:
        if name not in metrics:
            continue
        v = metrics[name]
        ok = math.isfinite(v) and (v <= limit if kind == "max" else v >= limit)
        if not ok:
            failures.append(f"{name} {v:.4g} {'>' if kind == 'max' else '<'} {limit:g}")
    if metrics.get("nonfinite_fraction", 0.0) > 0:
        failures.append("non-finite outputs (NaN/inf): FP16 overflow or a broken engine")
    result = GateResult(
        not failures, metrics, asdict(t), failures, candidate.describe(), reference.describe()
    )
    LOG.info(
        "accuracy gate %s: %s",
        "PASSED" if result.passed else "FAILED",
        ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()),
    )
    return result


def reference_backend(
    onnx_path: str | os.PathLike, metadata: ModelMetadata | None = None
) -> Backend:
    """ONNX Runtime fp32 on CPU for ``onnx_path`` (the gate's reference).

    Args:
        onnx_path: the fp32 model.
        metadata: its metadata (default: ``metadata.json`` next to it).
    """
    onnx_path = Path(onnx_path)
    meta = metadata or load_metadata(onnx_path)
    from joint_perception.runtime.onnxruntime_backend import OnnxRuntimeBackend

    return OnnxRuntimeBackend(onnx_path, metadata=meta, providers=["CPUExecutionProvider"])


def run_gate(
    candidate: Backend,
    reference: Backend | str | os.PathLike,
    frames: np.ndarray,
    config: GateConfig | None = None,
    metadata: ModelMetadata | None = None,
) -> GateResult:
    """:func:`compare` with a reference given as a backend or as the fp32 ONNX file.

    Args:
        candidate: backend under test.
        reference: a :class:`Backend`, or the fp32 ``.onnx`` path (run with ONNX Runtime CPU).
        frames: (N, 3, H, W) float32 in [0, 1].
        config: thresholds (default :class:`GateThresholds`).
        metadata: model metadata for the reference backend (default: read next to the ONNX).
    """
    config = config or GateConfig()
    ref = (
        reference
        if isinstance(reference, Backend)
        else reference_backend(Path(reference), metadata)
    )
    try:
        return compare(candidate, ref, frames, config.thresholds)
    finally:
        if ref is not reference:
            ref.close()


def enforce(result: GateResult, policy: str, what: str = "engine") -> None:
    """Apply the policy to a gate result.

    Raises:
        EngineRefused: ``policy == "refuse"`` and the gate failed (message lists the failures).
        ValueError: unknown policy.
    """
    if policy not in POLICIES:
        raise ValueError(f"gate policy must be one of {POLICIES}, got {policy!r}")
    if result.passed:
        return
    msg = f"{what} differs from ONNX Runtime fp32: " + "; ".join(result.failures)
    if policy == "refuse":
        raise EngineRefused(msg, result)
    LOG.warning("accuracy gate (policy warn): %s", msg)
