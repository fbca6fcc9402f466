"""Colour coding for visualisation: label palettes, depth (turbo) and normal images.

All outputs are (H, W, 3) uint8 RGB, ready for an ``rgb8`` image. Invalid pixels (void label,
NaN depth, NaN normal) are black.
"""

from __future__ import annotations

import cv2
import numpy as np


def label_palette(num_classes: int) -> np.ndarray:
    """Deterministic, well-separated colours for labels 0..num_classes.

    The PASCAL VOC bit-interleave scheme: bit ``j`` of the label's bits ``3i, 3i+1, 3i+2``
    sets bit ``7 - i`` of R, G, B. Label 0 (void) is black.

    Returns:
        (num_classes + 1, 3) uint8 RGB.

    Raises:
        ValueError: ``num_classes < 0``.
    """
    if num_classes < 0:
        raise ValueError(f"num_classes must be >= 0, got {num_classes}")
    ids = np.arange(num_classes + 1, dtype=np.int64)
    pal = np.zeros((num_classes + 1, 3), dtype=np.int64)
    c = ids.copy()
    for shift in range(7, -1, -1):
        for ch in range(3):
            pal[:, ch] |= ((c >> ch) & 1) << shift
        c >>= 3
        if not c.any():
            break
    return pal.astype(np.uint8)


def palette_from_metadata(class_colors, num_classes: int) -> np.ndarray:
    """The palette of a model: its ``class_colors`` (0..C) when complete, else
    :func:`label_palette`. Returns (num_classes + 1, 3) uint8."""
    if class_colors is not None and len(class_colors) >= num_classes + 1:
        pal = np.asarray(class_colors[: num_classes + 1], dtype=np.int64)
        if pal.ndim == 2 and pal.shape[1] == 3 and pal.min() >= 0 and pal.max() <= 255:
            return pal.astype(np.uint8)
    return label_palette(num_classes)


def colorize_labels(labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Map (H, W) integer labels to colours.

    Args:
        labels: (H, W) non-negative integers (uint8/uint16/int32), 0 = void.
        palette: (N, 3) uint8, e.g. :func:`label_palette`.

    Returns:
        (H, W, 3) uint8 RGB.

    Raises:
        ValueError: a label >= len(palette) or < 0 (message gives the value).
    """
    labels = np.asarray(labels)
    if labels.dtype.kind not in "ui":
        raise ValueError(f"labels must be integers, got {labels.dtype}")
    if labels.size:
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= len(palette):
            raise ValueError(
                f"label values {lo}..{hi} outside the palette of {len(palette)} colours"
            )
    palette = np.asarray(palette, dtype=np.uint8)
    if labels.dtype == np.uint8 and labels.ndim == 2 and palette.shape == (len(palette), 3):
        # uint8 fast path: a 256-entry per-channel table (cv2.LUT, ~5x faster than np.take)
        lut = np.zeros((256, 1, 3), dtype=np.uint8)
        lut[: len(palette), 0] = palette[:256]
        return cv2.LUT(cv2.cvtColor(labels, cv2.COLOR_GRAY2RGB), lut)
    return np.take(palette, labels, axis=0)


def _turbo_lut() -> np.ndarray:
    lut = cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], cv2.COLORMAP_TURBO)
    out = np.zeros((257, 3), dtype=np.uint8)  # index 256 = invalid -> black
    out[:256] = lut[:, 0, ::-1]
    return out


_TURBO = _turbo_lut()


def colorize_depth(depth: np.ndarray, min_depth: float, max_depth: float) -> np.ndarray:
    """Turbo colour map of metric depth (near = blue, far = red); NaN/inf black.

    Args:
        depth: (H, W) float metres.
        min_depth, max_depth: range mapped to the ends of the colour map (values are
            clipped), ``min_depth < max_depth``.

    Returns:
        (H, W, 3) uint8 RGB.

    Raises:
        ValueError: empty range.
    """
    if not min_depth < max_depth:
        raise ValueError(f"need min_depth < max_depth, got {min_depth}, {max_depth}")
    depth = np.asarray(depth, dtype=np.float32)
    scale = np.float32(255.0 / (max_depth - min_depth))
    t = (depth - np.float32(min_depth)) * scale
    np.clip(t, 0, 255, out=t)
    idx = np.full(depth.shape, 256, dtype=np.int32)
    finite = np.isfinite(depth)
    idx[finite] = (t[finite] + 0.5).astype(np.int32)
    return np.take(_TURBO, idx, axis=0)


def normals_to_rgb(
    normals: np.ndarray, out: np.ndarray | None = None, scratch: np.ndarray | None = None
) -> np.ndarray:
    """Encode unit normals as colours, ``rgb = round((n + 1) / 2 * 255)``; NaN black.

    The common NYUv2 visualisation (inverse: ``n = rgb / 127.5 - 1``).

    Args:
        normals: (H, W, 3) float, components in [-1, 1].
        out: (H, W, 3) uint8 array to write into (reused buffers: no allocation).
        scratch: (H, W, 3) float32 work array (overwritten); default a new one.

    Returns:
        (H, W, 3) uint8 RGB (``out`` when given); the same bytes with or without ``out``.

    Raises:
        ValueError: not (H, W, 3), or ``out`` / ``scratch`` of another shape or dtype.
    """
    n = np.asarray(normals, dtype=np.float32)
    if n.ndim != 3 or n.shape[2] != 3:
        raise ValueError(f"normals must be (H, W, 3), got {n.shape}")
    for name, arr, dtype in (("out", out, np.uint8), ("scratch", scratch, np.float32)):
        if arr is not None and (
            arr.shape != n.shape or arr.dtype != dtype or not arr.flags.c_contiguous
        ):
            raise ValueError(
                f"{name} must be a C-contiguous {np.dtype(dtype).name} {n.shape}, "
                f"got {arr.dtype} {arr.shape}"
            )
    v = np.empty(n.shape, np.float32) if scratch is None else scratch
    np.add(n, np.float32(1.0), out=v)
    np.multiply(v, np.float32(127.5), out=v)
    np.clip(v, np.float32(0.0), np.float32(255.0), out=v)  # NaN stays NaN; inf saturates here
    if np.isnan(v.sum()):  # rare: only then find the pixels (finite sum: every v <= 255)
        v[np.isnan(v).any(axis=2)] = 0.0
    # round half to even and convert in one SIMD pass (the values are in [0, 255] here, so
    # the "Abs" and saturation of convertScaleAbs change nothing): the bytes of np.rint + cast
    h = n.shape[0]
    if out is None:
        out = np.empty(n.shape, np.uint8)
    cv2.convertScaleAbs(v.reshape(h, -1), dst=out.reshape(h, -1))
    return out


def overlay(rgb: np.ndarray, color: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend ``color`` over ``rgb``: ``(1 - alpha) * rgb + alpha * color`` (uint8, rounded).

    Raises:
        ValueError: different shapes or alpha outside [0, 1].
    """
    if rgb.shape != color.shape:
        raise ValueError(f"overlay needs equal shapes, got {rgb.shape} and {color.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    return cv2.addWeighted(rgb, 1.0 - alpha, color, alpha, 0.0)
