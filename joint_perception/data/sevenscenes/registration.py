"""Depth -> colour registration: a depth image resampled into the colour camera (forward warp
with a z-buffer) and the colour camera's pose (model and constants:
:mod:`~.calibration`)."""

from __future__ import annotations

import numpy as np

from joint_perception.data.sevenscenes.calibration import (
    COLOR_K,
    DEPTH_K,
    DEPTH_TO_COLOR_R,
    DEPTH_TO_COLOR_T,
    IMAGE_SIZE,
)
from joint_perception.geometry import pixel_rays, validate_intrinsics


def register_depth(
    depth: np.ndarray,
    K_depth: np.ndarray = DEPTH_K,
    K_color: np.ndarray = COLOR_K,
    R: np.ndarray = DEPTH_TO_COLOR_R,
    t: np.ndarray = DEPTH_TO_COLOR_T,
    size: tuple[int, int] = IMAGE_SIZE,
) -> np.ndarray:
    """Resample a depth image into the colour camera (forward warp with a z-buffer).

    Every valid depth pixel is back-projected with ``K_depth``, moved with ``X_c = R X_d + t``
    and projected with ``K_color`` to the nearest colour pixel centre; where several points land
    on one pixel the smallest colour-frame z wins. Pixels that receive no point are 0 (holes are
    left, not filled). Vectorised numpy (``np.minimum.at``), no per-pixel Python loop.

    Args:
        depth: (H, W) float depth in metres along the depth camera's optical axis; 0, NaN, inf
            and negative values are invalid.
        K_depth: 3x3 intrinsics of ``depth``.
        K_color: 3x3 intrinsics of the colour image.
        R: 3x3 rotation and ``t``: (3,) translation in metres, depth -> colour optical frame.
        size: (height, width) of the colour image.

    Returns:
        (height, width) float32 colour-frame z in metres (REP 103), 0 = invalid.

    Raises:
        ValueError: non-2-D or non-float depth, invalid K, wrong R/t shapes.
    """
    depth = np.asarray(depth)
    if depth.ndim != 2 or depth.dtype.kind != "f":
        raise ValueError(f"depth must be (H, W) float metres, got {depth.shape} {depth.dtype}")
    R = np.asarray(R, np.float64)
    t = np.asarray(t, np.float64).reshape(-1)
    if R.shape != (3, 3) or t.shape != (3,):
        raise ValueError(f"R must be 3x3 and t of length 3, got {R.shape} and {t.shape}")
    Kc = validate_intrinsics(K_color)
    h, w = int(size[0]), int(size[1])
    a, b, c = _rotated_rays(K_depth, R, *depth.shape)
    valid = np.isfinite(depth) & (depth > 0)
    z = np.where(valid, depth, 0.0).astype(np.float32, copy=False)
    # X_c = R (z * ray) + t = z * (R ray) + t, on the whole grid in float32
    tf = t.astype(np.float32)
    zc = z * c + tf[2]
    keep = valid & (zc > 1e-6)
    inv = np.float32(1.0) / np.where(keep, zc, np.float32(1.0))
    xc = (z * a + tf[0]) * inv
    yc = (z * b + tf[1]) * inv
    u = np.rint(np.float32(Kc[0, 0]) * xc + np.float32(Kc[0, 1]) * yc + np.float32(Kc[0, 2]))
    v = np.rint(np.float32(Kc[1, 1]) * yc + np.float32(Kc[1, 2]))
    keep &= (u >= 0) & (u <= w - 1) & (v >= 0) & (v <= h - 1)
    lin = (v * np.float32(w) + u)[keep].astype(np.int64)  # exact: < 2^24
    out = np.full(h * w, np.inf, np.float32)
    np.minimum.at(out, lin, zc[keep])
    out[np.isinf(out)] = 0.0
    return out.reshape(h, w)


_ROT_RAYS: dict[tuple, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}


def _rotated_rays(
    K: np.ndarray, R: np.ndarray, h: int, w: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The three planes of ``R K^-1 [u, v, 1]`` (float32, cached for the last few (K, R, size))."""
    key = (np.asarray(K, np.float64).tobytes(), np.asarray(R, np.float64).tobytes(), h, w)
    hit = _ROT_RAYS.get(key)
    if hit is None:
        rays = pixel_rays(K, h, w).reshape(-1, 3) @ np.asarray(R, np.float32).T
        hit = tuple(np.ascontiguousarray(rays[:, k].reshape(h, w)) for k in range(3))
        if len(_ROT_RAYS) >= 4:
            _ROT_RAYS.pop(next(iter(_ROT_RAYS)))
        _ROT_RAYS[key] = hit
    return hit


def colour_camera_pose(
    pose_depth: np.ndarray, R=DEPTH_TO_COLOR_R, t=DEPTH_TO_COLOR_T
) -> np.ndarray:
    """Camera-to-world pose of the colour camera from the depth camera's (4, 4) pose:
    ``T_wc = T_wd [R | t]^-1`` (float64)."""
    T_cd = np.eye(4)
    T_cd[:3, :3] = np.asarray(R, np.float64)
    T_cd[:3, 3] = np.asarray(t, np.float64)
    return np.asarray(pose_depth, np.float64) @ np.linalg.inv(T_cd)
