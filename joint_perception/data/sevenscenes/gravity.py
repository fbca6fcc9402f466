"""Gravity of a sequence's world frame: "up" from the camera orientations
(:func:`gravity_from_poses`), refined with the scene's horizontal surfaces (:func:`refine_up`)."""

from __future__ import annotations

import numpy as np


def _angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    return float(
        np.degrees(
            np.arccos(np.clip(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b), -1.0, 1.0))
        )
    )


def gravity_from_poses(poses: np.ndarray) -> tuple[np.ndarray, dict]:
    """Coarse "up" from camera orientations alone.

    A hand-held camera is kept nearly free of roll, so its x (right) axis is nearly horizontal
    in every frame while its pitch varies (7-Scenes cameras mostly look down: the mean y axis is
    biased by the mean pitch, 24 deg on redkitchen). "Up" is taken as the direction most
    perpendicular to all x axes, the eigenvector of the smallest eigenvalue of
    ``sum x_i x_i^T``, signed against the mean y (down) axis. When the x axes do not span the
    horizontal plane (second eigenvalue < 5x the smallest: little yaw change) the negated mean
    y axis is returned instead.

    Args:
        poses: (N, 4, 4) camera-to-world transforms (REP 103 optical camera frames).

    Returns:
        (up (3,) float64 unit vector, diagnostics dict: eigenvalues, method, median |roll| and
        pitch in degrees).
    """
    poses = np.asarray(poses, np.float64)
    x_axes, y_axes = poses[:, :3, 0], poses[:, :3, 1]
    mean_down = y_axes.mean(0)
    mean_down /= np.linalg.norm(mean_down)
    evals, evecs = np.linalg.eigh(x_axes.T @ x_axes / len(x_axes))
    if evals[1] >= 5.0 * max(evals[0], 1e-12):
        up, method = evecs[:, 0], "camera x axes"
        if up @ mean_down > 0:
            up = -up
    else:
        up, method = -mean_down, "mean camera y axis"
    up = up / np.linalg.norm(up)
    roll = np.degrees(np.arcsin(np.clip(x_axes @ up, -1, 1)))
    pitch = np.degrees(np.arcsin(np.clip(poses[:, :3, 2] @ up, -1, 1)))
    return up, {
        "method": method,
        "x_axis_eigenvalues": [round(float(v), 4) for v in evals],
        "median_abs_roll_deg": round(float(np.median(np.abs(roll))), 2),
        "median_pitch_deg": round(float(np.median(pitch)), 2),
        "angle_to_mean_y_deg": round(_angle_deg(up, -mean_down), 2),
    }


def _horizontal_basis(up: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.array([1.0, 0.0, 0.0]) if abs(up[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = np.cross(up, a)
    e1 /= np.linalg.norm(e1)
    return e1, np.cross(up, e1)


def _sharpness(heights: np.ndarray, bin_size: float = 0.01) -> float:
    hist = np.bincount(((heights - heights.min()) / bin_size).astype(np.int64)).astype(np.float64)
    return float((hist * hist).sum()) / float(heights.size) ** 2


def refine_up(normals: np.ndarray, points: np.ndarray, up0: np.ndarray) -> tuple[np.ndarray, dict]:
    """Refine "up" with the horizontal surfaces of the scene (world frame arrays).

    Step 1: mean shift on the sphere: ``up <- normalize(sum of the normals within theta of
    up)``, theta = 20, 10, 5 deg. Step 2: horizontal planes (floor, table, counter) make the
    histogram of heights ``up . X`` of the up-facing points sharpest when ``up`` is exact; a
    coarse-to-fine tilt search (steps 1, 0.5, 0.25, 0.1, 0.05 deg) maximises the sum of squared
    1-cm bin counts.

    Args:
        normals: (N, 3) unit normals, world frame, oriented towards the cameras.
        points: (N, 3) their world points (metres).
        up0: (3,) starting estimate (e.g. :func:`gravity_from_poses`).

    Returns:
        (up (3,) float64, diagnostics: angles between the stages in degrees, support).
    """
    up = np.asarray(up0, np.float64) / np.linalg.norm(up0)
    for theta in (20.0, 10.0, 5.0):
        sel = normals @ up > np.cos(np.radians(theta))
        if sel.sum() < 100:
            break
        up = normals[sel].astype(np.float64).sum(0)
        up /= np.linalg.norm(up)
    up_ms = up.copy()
    sel = normals @ up > np.cos(np.radians(15.0))
    pts = points[sel].astype(np.float64)
    if len(pts) > 200_000:
        pts = pts[:: len(pts) // 200_000 + 1]
    best = _sharpness(pts @ up) if len(pts) else 0.0
    if len(pts) >= 100:
        for step in (1.0, 0.5, 0.25, 0.1, 0.05):
            improved = True
            while improved:
                improved = False
                e1, e2 = _horizontal_basis(up)
                for da, db in (
                    (1, 0),
                    (-1, 0),
                    (0, 1),
                    (0, -1),
                    (1, 1),
                    (1, -1),
                    (-1, 1),
                    (-1, -1),
                ):
                    cand = up + np.tan(np.radians(step)) * (da * e1 + db * e2)
                    cand /= np.linalg.norm(cand)
                    s = _sharpness(pts @ cand)
                    if s > best:
                        up, best, improved = cand, s, True
                        break
    return up, {
        "mean_shift_change_deg": round(_angle_deg(up0, up_ms), 2),
        "height_sharpness_change_deg": round(_angle_deg(up_ms, up), 2),
        "up_facing_points": int(sel.sum()),
    }
