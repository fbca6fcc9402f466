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

import functools
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import cv2
import numpy as np

from joint_perception.buffers import OutputBuffers
from joint_perception.colormap import colorize_labels, normals_to_rgb
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


def rep117_depth(
    depth: np.ndarray, min_depth: float, max_depth: float, out: np.ndarray | None = None
) -> np.ndarray:
    """Depth with REP 117's special values outside ``[min_depth, max_depth]``.

    REP 117 (used by REP 118 depth images): "too close to the sensor to quantify" is -Inf,
    "out of range" (beyond the maximum) is +Inf, an erroneous or missing measurement is NaN.

    Args:
        depth: (H, W) float metres along z.
        min_depth, max_depth: the valid range in metres (inclusive).
        out: (H, W) float32 array to write into (may be ``depth`` itself: in place, no
            allocation); default a new array.

    Returns:
        (H, W) float32 (``out`` when given): ``depth`` inside the range, -Inf below
        ``min_depth``, +Inf above ``max_depth``, NaN where ``depth`` is not finite.

    Raises:
        ValueError: ``out`` of another shape or dtype.
    """
    d = np.asarray(depth)
    if out is None:
        out = np.empty(d.shape, np.float32)
    elif out.shape != d.shape or out.dtype != np.float32:
        raise ValueError(f"out must be float32 {d.shape}, got {out.dtype} {out.shape}")
    no_estimate = ~np.isfinite(d)  # judged before -Inf/+Inf are written
    if out is not d:
        np.copyto(out, d, casting="same_kind")
    np.copyto(out, np.float32(-np.inf), where=out < np.float32(min_depth))
    np.copyto(out, np.float32(np.inf), where=out > np.float32(max_depth))
    np.copyto(out, np.float32(np.nan), where=no_estimate)
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
        color: (h, w, 3) uint8 RGB colour-coded labels when a palette was given, else None.
        normals_color: (h, w, 3) uint8 RGB of ``normals`` as
            :func:`joint_perception.colormap.normals_to_rgb` codes them, when asked for
            (``normals_color=True``), else None.
    """

    depth: np.ndarray | None
    labels: np.ndarray | None
    confidence: np.ndarray | None
    normals: np.ndarray | None
    K: np.ndarray
    timings_ms: dict[str, float] = field(default_factory=dict)
    color: np.ndarray | None = None
    normals_color: np.ndarray | None = None


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


_INTERPOLATION = {np.dtype(np.float32): cv2.INTER_LINEAR}
"""Resize of each output dtype: linear for float maps (depth, confidence), nearest (pixel-centre
exact) for everything else (labels, colours, unit normals)."""


def _resize_into(img: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Resize ``img`` to ``dst``'s size into ``dst`` (a copy when the sizes agree); returns
    ``dst``. Floats linear, except 3-channel normals, which are nearest like integers."""
    if img.shape[:2] == dst.shape[:2]:
        np.copyto(dst, img)
        return dst
    interp = cv2.INTER_NEAREST_EXACT
    if img.ndim == 2 and img.dtype == np.float32:
        interp = cv2.INTER_LINEAR
    cv2.resize(img, (dst.shape[1], dst.shape[0]), dst=dst, interpolation=interp)
    return dst


@functools.lru_cache(maxsize=8)
def _nearest_map(src: int, dst: int) -> np.ndarray:
    """Source index of every destination index of a ``cv2.INTER_NEAREST_EXACT`` resize
    (read off OpenCV itself, so it is exact), (dst,) int64, non-decreasing."""
    idx = np.arange(src, dtype=np.float32)[None, :]
    out = cv2.resize(idx, (dst, 1), interpolation=cv2.INTER_NEAREST_EXACT)[0]
    return out.astype(np.int64)


def orient_upsampled(normals: np.ndarray, net_normals: np.ndarray, K_out) -> np.ndarray:
    """Flip, in place, the output normals that face away from their own output ray after a
    nearest resize of ``net_normals`` (oriented against the network pixels' rays).

    The dot product of a normal with the rays of the output pixels copied from one network
    pixel is affine in (u, v), so it is checked at the four corners of that block: blocks
    whose corners all see the normal from the front (the almost-all) are left alone, and only
    the pixels of the others (grazing normals) are checked one by one.

    Args:
        normals: (h, w, 3) float32, the nearest resize of ``net_normals``; modified in place.
        net_normals: (hn, wn, 3) float32 unit normals, ``n . ray_net <= 0``.
        K_out: 3x3 intrinsics of the output size (h, w).

    Returns:
        ``normals``, with ``n . ray <= 0`` for every output pixel's ray
        (:func:`joint_perception.geometry.pixel_rays` of ``K_out``).
    """
    _flip_facing_away(normals, net_normals, K_out)
    return normals


def _flip_facing_away(normals: np.ndarray, net_normals: np.ndarray, K_out) -> np.ndarray:
    """:func:`orient_upsampled`'s work; returns the flat pixel indices it flipped ((k,) int64,
    usually empty)."""
    h, w = normals.shape[:2]
    hn, wn = net_normals.shape[:2]
    mx, my = _nearest_map(wn, w), _nearest_map(hn, h)
    cols, rows = np.arange(wn), np.arange(hn)
    x0, x1 = np.searchsorted(mx, cols, "left"), np.searchsorted(mx, cols, "right") - 1
    y0, y1 = np.searchsorted(my, rows, "left"), np.searchsorted(my, rows, "right") - 1
    used = (x1 >= x0)[None, :] & (y1 >= y0)[:, None]
    K = np.asarray(K_out, dtype=np.float64)
    fx, s, cx, fy, cy = K[0, 0], K[0, 1], K[0, 2], K[1, 1], K[1, 2]
    n = net_normals.astype(np.float64)
    worst = np.full((hn, wn), -np.inf)
    for ys in (y0, y1):
        ry = ((np.clip(ys, 0, h - 1) - cy) / fy)[:, None]
        for xs in (x0, x1):
            rx = (np.clip(xs, 0, w - 1)[None, :] - cx - s * ry) / fx
            np.maximum(worst, n[..., 0] * rx + n[..., 1] * ry + n[..., 2], out=worst)
    risky = used & (worst > -1e-4)  # margin for float32 rays and rounding
    if not risky.any():
        return np.zeros(0, np.int64)
    mask = cv2.resize(risky.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST_EXACT)
    idx = np.flatnonzero(mask)
    flat = normals.reshape(-1, 3)
    dots = np.einsum("ij,ij->i", flat[idx], pixel_rays(K_out, h, w).reshape(-1, 3)[idx])
    flipped = idx[dots > 0]
    flat[flipped] *= np.float32(-1.0)
    return flipped


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
        buffers: OutputBuffers | None = None,
        palette: np.ndarray | None = None,
        normals_color: bool = False,
    ) -> PerceptionResult:
        """Turn network-resolution outputs into the published ones (first batch item).

        Steps: depth is resized (linear) to the output size, multiplied by
        ``f_net / canonical_focal`` when set, and given REP 117's special values outside
        ``[min_depth, max_depth]`` (:func:`rep117_depth`, in place); labels are resized
        nearest-neighbour (pixel-centre exact) and cast to uint8/uint16; the colour image (with
        ``palette``) is coded at the network size and resized nearest like the labels (the same
        bytes as coding the output labels); confidence linear; normals are normalised and
        oriented towards the camera at the network size, then enlarged nearest-neighbour (unit
        length exactly; the few output pixels whose ray sees a copied normal from behind are
        flipped, so ``n . ray <= 0`` holds for every output ray) — or, for an output smaller
        than the network, oriented, shrunk linearly and normalised at the output size.

        Args:
            pred: backend output at the network size.
            K_in: 3x3 intrinsics of the input image.
            in_size: input image (H, W).
            out_size: published (h, w); default ``in_size``.
            want: subset of :data:`OUTPUTS`; others are not computed (None).
            buffers: write every output (and intermediate) into these reused arrays instead
                of allocating per frame (names: ``depth``, ``labels``, ``color``,
                ``confidence``, ``normals``); the result's arrays are then overwritten by the
                next call with the same ``buffers``. Values are identical either way.
            palette: (N, 3) uint8 class colours; when given and labels are wanted, the
                result's ``color`` is the (h, w, 3) uint8 colour-coded label image.
            normals_color: with normals wanted, also give ``normals_color``, the bytes of
                :func:`joint_perception.colormap.normals_to_rgb` of the output normals — coded
                at the network size and enlarged nearest like them, the flipped pixels coded
                again (buffer ``normals.color``).

        Returns:
            :class:`PerceptionResult` (``timings_ms`` left empty; :meth:`run` fills it).

        Raises:
            ValueError: invalid ``K_in`` or sizes, unknown names in ``want``, a label outside
                the palette.
        """
        want = set(want)
        unknown = want - OUTPUTS
        if unknown:
            raise ValueError(f"unknown output(s) {sorted(unknown)}; choose from {sorted(OUTPUTS)}")
        in_size = (int(in_size[0]), int(in_size[1]))
        out_size = in_size if out_size is None else (int(out_size[0]), int(out_size[1]))
        if min(in_size + out_size) <= 0:
            raise ValueError(f"sizes must be positive, got in {in_size}, out {out_size}")
        buf = OutputBuffers() if buffers is None else buffers
        K_out = scale_intrinsics(K_in, in_size, out_size)
        depth = labels = conf = normals = color = None

        if "depth" in want and pred.depth is not None:
            depth = _resize_into(pred.depth[0], buf.array("depth", out_size, np.float32))
            f_c = self.metadata.canonical_focal
            scale = 1.0
            if f_c:
                f_net = scale_intrinsics(K_in, in_size, self.net_size)[0, 0]
                scale = f_net / float(f_c)
            if scale != 1.0:
                np.multiply(depth, np.float32(scale), out=depth, dtype=np.float32)
            rep117_depth(depth, self.min_depth, self.max_depth, out=depth)

        if "labels" in want and pred.labels is not None:
            net = pred.labels[0].shape
            lab = buf.array("labels.net", net, self.label_dtype)
            np.copyto(lab, pred.labels[0], casting="unsafe")
            labels = _resize_into(lab, buf.array("labels", out_size, self.label_dtype))
            if palette is not None:
                coded = colorize_labels(lab, palette)
                color = _resize_into(coded, buf.array("color", (*out_size, 3), np.uint8))

        if "confidence" in want and pred.confidence is not None:
            conf = _resize_into(pred.confidence[0], buf.array("confidence", out_size, np.float32))
            np.clip(conf, 0.0, 1.0, out=conf, dtype=np.float32)

        normals_rgb = None
        if "normals" in want and pred.normals is not None:
            src = pred.normals[0]
            rgb_shape = (*out_size, 3)
            if src.shape[:2] == out_size:
                normals = buf.array("normals", rgb_shape, np.float32)
                np.copyto(normals, src)
                normalize_and_orient(normals, pixel_rays(K_out, *out_size))
            else:
                n = buf.array("normals.net", src.shape, np.float32)
                np.copyto(n, src)
                K_src = scale_intrinsics(K_in, in_size, src.shape[:2])
                rays_src = pixel_rays(K_src, *src.shape[:2])
                dst = buf.array("normals", rgb_shape, np.float32)
                if out_size[0] >= src.shape[0] and out_size[1] >= src.shape[1]:
                    normalize_and_orient(n, rays_src)
                    normals = _resize_into(n, dst)  # nearest: unit length kept exactly
                    flipped = _flip_facing_away(normals, n, K_out)
                    if normals_color:  # coded per pixel, so it commutes with the nearest copy
                        small = normals_to_rgb(
                            n,
                            out=buf.array("normals.color.net", n.shape, np.uint8),
                            scratch=buf.array("normals.color.net.f", n.shape, np.float32),
                        )
                        normals_rgb = _resize_into(
                            small, buf.array("normals.color", rgb_shape, np.uint8)
                        )
                        if flipped.size:
                            again = normals.reshape(-1, 3)[flipped][None]
                            normals_rgb.reshape(-1, 3)[flipped] = normals_to_rgb(again)[0]
                else:  # shrinking: average (linear), then normalise at the output size
                    orient_towards_camera(n, rays_src)
                    cv2.resize(n, out_size[::-1], dst=dst, interpolation=cv2.INTER_LINEAR)
                    normals = normalize_and_orient(dst, pixel_rays(K_out, *out_size))
            if normals_color and normals_rgb is None:  # not coded at the network size
                normals_rgb = normals_to_rgb(
                    normals,
                    out=buf.array("normals.color", rgb_shape, np.uint8),
                    scratch=buf.array("normals.color.f", rgb_shape, np.float32),
                )

        return PerceptionResult(
            depth, labels, conf, normals, K_out, color=color, normals_color=normals_rgb
        )

    def run(
        self,
        rgb: np.ndarray,
        K,
        out_size: tuple[int, int] | None = None,
        want: Iterable[str] = OUTPUTS,
        buffers: OutputBuffers | None = None,
        palette: np.ndarray | None = None,
        normals_color: bool = False,
    ) -> PerceptionResult:
        """Full per-frame pipeline.

        Args:
            rgb: (H, W, 3) uint8 RGB input frame.
            K: its 3x3 intrinsics (rectified).
            out_size: (h, w) of the outputs; default (H, W).
            want: outputs to compute (subset of :data:`OUTPUTS`).
            buffers, palette, normals_color: see :meth:`postprocess` (reused output arrays;
                colour coding of the labels and of the normals).

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
        result = self.postprocess(
            pred, K, rgb.shape[:2], out_size, want, buffers, palette, normals_color
        )
        t3 = time.perf_counter()
        result.timings_ms = {
            "preprocess": (t1 - t0) * 1e3,
            "inference": (t2 - t1) * 1e3,
            "postprocess": (t3 - t2) * 1e3,
        }
        return result
