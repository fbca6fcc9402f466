"""Per-frame pre- and post-processing around a :class:`~joint_perception.runtime.base.Backend`.

docs/architecture.md "Runtime pipeline": an (H, W, 3) uint8 RGB frame and the 3x3 intrinsics
K of that frame go in; metric depth, labels, confidence and surface normals at an output size
(default: the input size) come out, with the intrinsics of that output size. No ROS here.

Depth with a canonical focal length (``metadata.canonical_focal``, set for models trained
camera-independent, as in Metric3D / "CAM-Convs"-style focal normalisation): the network
predicts the depth a camera of focal ``f_c`` would see, so the metric depth of this camera is
``d * f_net / f_c`` with ``f_net`` the frame's fx scaled to the network input size.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import cv2
import numpy as np

from joint_perception.geometry import (
    normalize_and_orient,
    orient_towards_camera,
    pixel_rays,
    scale_intrinsics,
    validate_intrinsics,
)
from joint_perception.metadata import ModelMetadata
from joint_perception.runtime.base import Backend, Prediction
from joint_perception.tasks import OUTPUT_NAMES

OUTPUTS = frozenset(OUTPUT_NAMES)
"""Names accepted in ``want`` (:data:`joint_perception.tasks.OUTPUT_NAMES`)."""


def rep117_depth(depth: np.ndarray, min_depth: float, max_depth: float) -> np.ndarray:
    """Depth with REP 117's special values outside ``[min_depth, max_depth]``.

    REP 117 (used by REP 118 depth images): "too close to the sensor to quantify" is -Inf,
    "out of range" (beyond the maximum) is +Inf, an erroneous or missing measurement is NaN.

    Args:
        depth: (H, W) float metres along z.
        min_depth, max_depth: the valid range in metres (inclusive).

    Returns:
        (H, W) float32: ``depth`` inside the range, -Inf below ``min_depth``, +Inf above
        ``max_depth``, NaN where ``depth`` is not finite.
    """
    d = np.asarray(depth, dtype=np.float32)
    out = np.full(d.shape, np.nan, dtype=np.float32)
    finite = np.isfinite(d)
    out[finite] = d[finite]
    out[finite & (d < np.float32(min_depth))] = -np.inf
    out[finite & (d > np.float32(max_depth))] = np.inf
    return out


@dataclass
class PerceptionResult:
    """Outputs for one frame at the output size (h, w); None when not requested/available.

    Attributes:
        depth: (h, w) float32 metres along z (REP 118) with REP 117's special values: -Inf
            nearer than the depth range's minimum, +Inf beyond its maximum, NaN no estimate
            (the network gave no finite value).
        labels: (h, w) uint8 (uint16 with more than 255 classes), 0 = void.
        confidence: (h, w) float32 in [0, 1].
        normals: (h, w, 3) float32 unit vectors, camera optical frame, ``n . ray < 0``;
            NaN where undefined.
        K: (3, 3) float64 intrinsics of the output size.
        timings_ms: per-stage wall time (``preprocess``, ``inference``, ``postprocess``).
    """

    depth: np.ndarray | None
    labels: np.ndarray | None
    confidence: np.ndarray | None
    normals: np.ndarray | None
    K: np.ndarray
    timings_ms: dict[str, float] = field(default_factory=dict)


def preprocess_image(rgb: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Resize one RGB frame to the network input and scale to [0, 1].

    INTER_AREA when shrinking (anti-aliased), INTER_LINEAR when enlarging; the resize maps
    pixel centres as :func:`joint_perception.geometry.scale_intrinsics` assumes.

    Args:
        rgb: (H, W, 3) uint8 RGB.
        size_hw: network input (h, w).

    Returns:
        (1, 3, h, w) float32 C-contiguous in [0, 1] (the ONNX ``image`` input).

    Raises:
        ValueError: not a non-empty (H, W, 3) uint8 array.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or rgb.size == 0:
        raise ValueError(f"expected (H, W, 3) uint8 RGB, got {rgb.shape} {rgb.dtype}")
    h, w = int(size_hw[0]), int(size_hw[1])
    if rgb.shape[:2] != (h, w):
        shrink = rgb.shape[0] * rgb.shape[1] > h * w
        interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        rgb = cv2.resize(rgb, (w, h), interpolation=interp)
    out = np.empty((1, 3, h, w), dtype=np.float32)
    np.divide(rgb.transpose(2, 0, 1), np.float32(255.0), out=out[0], dtype=np.float32)
    return out


def _resize(img: np.ndarray, size_hw: tuple[int, int], interp: int) -> np.ndarray:
    if img.shape[:2] == tuple(size_hw):
        return img
    return cv2.resize(img, (size_hw[1], size_hw[0]), interpolation=interp)


class Pipeline:
    """Pre-process -> backend -> post-process for one model.

    Args:
        backend: any :class:`Backend` (its outputs follow the metadata graph contract).
        metadata: the model's metadata (defaults to ``backend.metadata``); its
            ``min_depth``/``max_depth`` are the published depth range and its
            ``canonical_focal`` enables the focal rescale. To publish another range, pass
            ``dataclasses.replace(metadata, min_depth=..., max_depth=...)``.
    """

    def __init__(self, backend: Backend, metadata: ModelMetadata | None = None):
        self.backend = backend
        self.metadata = metadata if metadata is not None else backend.metadata
        m = self.metadata
        self.net_size = (int(m.input_height), int(m.input_width))
        self.min_depth = float(m.min_depth)
        self.max_depth = float(m.max_depth)
        self.label_dtype = np.uint8 if m.num_classes <= 255 else np.uint16

    def preprocess(self, rgb: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB -> (1, 3, h, w) float32 network input; see
        :func:`preprocess_image`."""
        return preprocess_image(rgb, self.net_size)

    def postprocess(
        self,
        pred: Prediction,
        K_in,
        in_size: tuple[int, int],
        out_size: tuple[int, int] | None = None,
        want: Iterable[str] = OUTPUTS,
    ) -> PerceptionResult:
        """Turn network-resolution outputs into the published ones (first batch item).

        Steps: depth is resized (linear) to the output size, multiplied by
        ``f_net / canonical_focal`` when set, and given REP 117's special values outside
        ``[min_depth, max_depth]`` (:func:`rep117_depth`); labels are resized nearest-neighbour
        (pixel-centre exact) and cast to uint8/uint16; confidence linear; normals are
        oriented towards the camera at the network size, resized linearly, renormalised
        and oriented again with the output rays (so ``n . ray <= 0`` holds exactly).

        Args:
            pred: backend output at the network size.
            K_in: 3x3 intrinsics of the input image.
            in_size: input image (H, W).
            out_size: published (h, w); default ``in_size``.
            want: subset of :data:`OUTPUTS`; others are not computed (None).

        Returns:
            :class:`PerceptionResult` (``timings_ms`` left empty; :meth:`run` fills it).

        Raises:
            ValueError: invalid ``K_in`` or sizes, unknown names in ``want``.
        """
        want = set(want)
        unknown = want - OUTPUTS
        if unknown:
            raise ValueError(f"unknown output(s) {sorted(unknown)}; choose from {sorted(OUTPUTS)}")
        in_size = (int(in_size[0]), int(in_size[1]))
        out_size = in_size if out_size is None else (int(out_size[0]), int(out_size[1]))
        if min(in_size + out_size) <= 0:
            raise ValueError(f"sizes must be positive, got in {in_size}, out {out_size}")
        K_out = scale_intrinsics(K_in, in_size, out_size)
        depth = labels = conf = normals = None

        if "depth" in want and pred.depth is not None:
            depth = _resize(pred.depth[0], out_size, cv2.INTER_LINEAR)
            f_c = self.metadata.canonical_focal
            scale = 1.0
            if f_c:
                f_net = scale_intrinsics(K_in, in_size, self.net_size)[0, 0]
                scale = f_net / float(f_c)
            if scale != 1.0:
                depth = np.multiply(depth, np.float32(scale), dtype=np.float32)
            depth = rep117_depth(depth, self.min_depth, self.max_depth)

        if "labels" in want and pred.labels is not None:
            lab = pred.labels[0].astype(self.label_dtype)
            labels = _resize(lab, out_size, cv2.INTER_NEAREST_EXACT)  # lab is a copy

        if "confidence" in want and pred.confidence is not None:
            conf = _resize(pred.confidence[0], out_size, cv2.INTER_LINEAR)
            conf = np.clip(conf, 0.0, 1.0, dtype=np.float32)

        if "normals" in want and pred.normals is not None:
            n = np.array(pred.normals[0], dtype=np.float32)  # copy: oriented in place
            if n.shape[:2] != out_size:
                K_net = scale_intrinsics(K_in, in_size, self.net_size)
                orient_towards_camera(n, pixel_rays(K_net, *self.net_size))
                n = _resize(n, out_size, cv2.INTER_LINEAR)
            normals = normalize_and_orient(n, pixel_rays(K_out, *out_size))

        return PerceptionResult(depth, labels, conf, normals, K_out)

    def run(
        self,
        rgb: np.ndarray,
        K,
        out_size: tuple[int, int] | None = None,
        want: Iterable[str] = OUTPUTS,
    ) -> PerceptionResult:
        """Full per-frame pipeline.

        Args:
            rgb: (H, W, 3) uint8 RGB input frame.
            K: its 3x3 intrinsics (rectified).
            out_size: (h, w) of the outputs; default (H, W).
            want: outputs to compute (subset of :data:`OUTPUTS`).

        Returns:
            :class:`PerceptionResult` with ``timings_ms`` = {"preprocess", "inference",
            "postprocess"} in milliseconds.

        Raises:
            ValueError: bad image, intrinsics, sizes or ``want``.
        """
        validate_intrinsics(K)
        t0 = time.perf_counter()
        batch = self.preprocess(rgb)
        t1 = time.perf_counter()
        pred = self.backend.predict(batch)
        t2 = time.perf_counter()
        result = self.postprocess(pred, K, rgb.shape[:2], out_size, want)
        t3 = time.perf_counter()
        result.timings_ms = {
            "preprocess": (t1 - t0) * 1e3,
            "inference": (t2 - t1) * 1e3,
            "postprocess": (t3 - t2) * 1e3,
        }
        return result
