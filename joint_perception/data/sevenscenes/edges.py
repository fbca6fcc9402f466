"""How well depth and colour agree along edges: occluding depth edges, the distance to the
colour image's Canny edges, and the residual of depth-edge points projected into the colour
image (the cost of :mod:`~.calibrate`, also drawn by :mod:`~.figures`)."""

from __future__ import annotations

import cv2
import numpy as np


def depth_edge_mask(
    depth: np.ndarray, rel: float = 0.05, abs_m: float = 0.05, border: int = 2
) -> np.ndarray:
    """Occluding depth edges: pixels whose depth is valid and that have a valid 4-neighbour
    farther away by more than ``max(abs_m, rel * z)`` metres (the near side of a depth
    discontinuity, which is where the object boundary is in the colour image too).

    Args:
        depth: (H, W) float metres, 0 = invalid.
        rel, abs_m: jump thresholds (relative, metres).
        border: pixels along the image border that are never edges.

    Returns:
        (H, W) bool.
    """
    d = np.asarray(depth, np.float32)
    h, w = d.shape
    thr = np.maximum(np.float32(abs_m), np.float32(rel) * d)
    valid = d > 0
    m = np.zeros((h, w), bool)
    for dy, dx in ((0, 1), (1, 0), (0, -1), (-1, 0)):
        src = d[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)]
        ys, xs = slice(max(-dy, 0), h + min(-dy, 0)), slice(max(-dx, 0), w + min(-dx, 0))
        here = d[ys, xs]
        m[ys, xs] |= valid[ys, xs] & (src > 0) & (src - here > thr[ys, xs])
    if border:
        m[:border] = m[-border:] = False
        m[:, :border] = m[:, -border:] = False
    return m


def edge_distance_map(
    rgb_or_gray: np.ndarray, low: int = 40, high: int = 120, tau: float = 10.0
) -> np.ndarray:
    """Distance (pixels) from every pixel to the nearest Canny edge of the colour image,
    truncated at ``tau``; (H, W) float32. The image is blurred (Gaussian, sigma 1.2) first."""
    img = np.asarray(rgb_or_gray)
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if img.ndim == 3 else img
    edges = cv2.Canny(cv2.GaussianBlur(gray, (5, 5), 1.2), low, high)
    dist = cv2.distanceTransform((edges == 0).astype(np.uint8), cv2.DIST_L2, 5)
    return np.minimum(dist, np.float32(tau)).astype(np.float32)


def edge_residuals(
    X: np.ndarray, dist: np.ndarray, K_color: np.ndarray, t: np.ndarray, R=None
) -> np.ndarray:
    """Distance (pixels, truncated as ``dist``) from each projected depth-edge point to the
    nearest colour edge: ``X`` (N, 3) depth-frame points (metres), ``dist`` from
    :func:`edge_distance_map`; bilinear lookup, points outside the image get the truncation
    value. Returns (N,) float32."""
    R = np.eye(3) if R is None else np.asarray(R, np.float64)
    Xc = X @ R.T + np.asarray(t, np.float64)
    z = np.maximum(Xc[:, 2], 1e-6)
    u = (K_color[0, 0] * Xc[:, 0] + K_color[0, 1] * Xc[:, 1]) / z + K_color[0, 2]
    v = K_color[1, 1] * Xc[:, 1] / z + K_color[1, 2]
    tau = float(dist.max()) if dist.size else 0.0
    out = cv2.remap(
        dist, u.astype(np.float32)[None], v.astype(np.float32)[None], cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT, borderValue=tau,
    )  # fmt: skip
    return out.ravel()
