"""Geometric pseudo-labels: floor, wall and ceiling pixels of one frame from its depth, its pose
and the scene layout (:func:`geometric_labels`)."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from joint_perception.data.sevenscenes.layout import SceneLayout
from joint_perception.data.sevenscenes.normals import normals_from_disparity_planes
from joint_perception.geometry import pixel_ray_planes

#: NYUv2-40 ids used by the geometric pseudo-labels (:data:`nyuv2_classes.NAMES40`).
WALL, FLOOR, CEILING = 1, 2, 22


def geometric_labels(
    depth: np.ndarray,
    K: np.ndarray,
    pose: np.ndarray,
    layout: SceneLayout,
    normals: np.ndarray | None = None,
    normal_tol_deg: float = 20.0,
    dist_tol: float = 0.05,
) -> np.ndarray:
    """Floor / wall / ceiling pseudo-labels of one frame from its depth and the scene layout.

    A pixel is floor (NYU40 id 2) when its normal is within ``normal_tol_deg`` of up and its
    point within ``dist_tol`` of the floor plane; ceiling (22) likewise with a downward normal
    and the ceiling plane; wall (1) when its normal is within ``normal_tol_deg`` of horizontal
    and of a wall's normal and its point within ``dist_tol`` of that wall plane, strictly
    between floor and ceiling. Every other pixel is void (0): absent planes, invalid depth and
    pixels without a normal are never labelled. Conservative by design: what lies on a plane
    (a rug, a poster, a closed door flush with the wall) takes the plane's label.

    Args:
        depth: (H, W) float32 metres in the camera of ``K`` (0 invalid).
        K: 3x3 intrinsics of ``depth``.
        pose: (4, 4) camera-to-world transform of that camera (same world as ``layout``).
        layout: :class:`SceneLayout`.
        normals: (H, W, 3) camera-frame unit normals (NaN / 0 invalid); computed with
            :func:`normals_from_disparity_planes` when None.
        normal_tol_deg, dist_tol: tolerances (degrees, metres).

    Measured: on a synthetic box room with a cabinet (test/test_sevenscenes.py) precision
    100 % for floor, wall and ceiling with recall 96-98 % of the pixels with depth; the cabinet
    is never labelled. On redkitchen (50 frames, every 20th): floor 3.4 % of the pixels on
    average (max 21.6 %, present in 84 % of the frames), wall 6.5 % (max 13.1 %, 98 %),
    ceiling 0 (not seen). Points on the floor / walls lie within 1.4 / 2.2 cm (std) of their
    planes, so ``dist_tol`` = 5 cm keeps ~97 % / ~86 % of them.

    Returns:
        (H, W) int64 labels in {0, 1, 2, 22}.
    """
    depth = np.asarray(depth, np.float32)
    if depth.ndim != 2:
        raise ValueError(f"depth must be (H, W) float metres, got {depth.shape}")
    h, w = depth.shape
    if normals is None:
        normals = normals_from_disparity_planes(depth, K)
    normals = np.ascontiguousarray(normals, np.float32)
    if normals.shape != (h, w, 3):
        raise ValueError(f"normals must be ({h}, {w}, 3), got {normals.shape}")
    along = _world_projections(depth, normals, K, pose)
    # valid: depth > 0 and a non-zero, finite normal (NaN fails every comparison below too)
    valid = (
        (depth > 0) & (cv2.transform(normals * normals, np.ones((1, 3), np.float32)) > 0.25)
    ).reshape(-1)
    height, cos_up = along(np.asarray(layout.up, np.float64))
    c = np.float32(np.cos(np.radians(normal_tol_deg)))
    s = np.float32(np.sin(np.radians(normal_tol_deg)))
    labels = np.zeros(h * w, np.int64)
    _mark_floor_and_ceiling(labels, valid, height, cos_up, layout, c, dist_tol)
    if layout.walls:
        _mark_walls(labels, valid, height, cos_up, along, layout, c, s, dist_tol)
    return labels.reshape(h, w)


def _world_projections(
    depth: np.ndarray, normals: np.ndarray, K: np.ndarray, pose: np.ndarray
) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """``along(vec_world)`` -> (point . vec, normal . vec) of every pixel, flat float32, in world
    coordinates but computed in the camera frame."""
    h, w = depth.shape
    T = np.asarray(pose, np.float64)
    R, t = T[:3, :3], T[:3, 3]
    rx, ry = pixel_ray_planes(K, h, w)

    def along(vec_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(point . vec, normal . vec) in world coordinates, computed in the camera frame."""
        v = (R.T @ vec_world).astype(np.float32)
        pt = (depth * (rx * v[0] + ry * v[1] + v[2])).reshape(-1) + np.float32(t @ vec_world)
        return pt, cv2.transform(normals, v.reshape(1, 3)).reshape(-1)

    return along


def _mark_floor_and_ceiling(
    labels: np.ndarray,
    valid: np.ndarray,
    height: np.ndarray,
    cos_up: np.ndarray,
    layout: SceneLayout,
    c: np.float32,
    dist_tol: float,
) -> None:
    """Set FLOOR, then CEILING in the flat ``labels`` where the normal's cosine to up is above
    ``c`` (below ``-c``) and the height within ``dist_tol`` of the plane."""
    if layout.floor_height is not None:
        labels[
            valid & (cos_up > c) & (np.abs(height - np.float32(layout.floor_height)) < dist_tol)
        ] = FLOOR
    if layout.ceiling_height is not None:
        labels[
            valid & (cos_up < -c) & (np.abs(height - np.float32(layout.ceiling_height)) < dist_tol)
        ] = CEILING


def _mark_walls(
    labels: np.ndarray,
    valid: np.ndarray,
    height: np.ndarray,
    cos_up: np.ndarray,
    along: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    layout: SceneLayout,
    c: np.float32,
    s: np.float32,
    dist_tol: float,
) -> None:
    """Set WALL in the flat ``labels`` where the normal is within ``asin(s)`` of horizontal and
    has a cosine above ``c`` to a wall's normal, the point lies within ``dist_tol`` of that wall
    and strictly between floor and ceiling (by ``dist_tol``); later walls win."""
    cand = valid & (np.abs(cos_up) < s)
    if layout.floor_height is not None:
        cand &= height > np.float32(layout.floor_height + dist_tol)
    if layout.ceiling_height is not None:
        cand &= height < np.float32(layout.ceiling_height - dist_tol)
    for nvec, off in layout.walls:
        dist, cos_n = along(np.asarray(nvec, np.float64))
        labels[cand & (cos_n > c) & (np.abs(dist - np.float32(off)) < dist_tol)] = WALL
