"""Estimating the colour camera's intrinsics and the depth -> colour translation from the data
by edge alignment (:func:`estimate_registration`; results in :mod:`~.calibration`)."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from joint_perception.data.sevenscenes.edges import (
    depth_edge_mask,
    edge_distance_map,
    edge_residuals,
)
from joint_perception.data.sevenscenes.files import (
    _frame_path,
    list_frames,
    read_depth_mm,
    read_intrinsics,
)


@dataclasses.dataclass
class _EdgeFrame:
    X: np.ndarray  # (N, 3) float64 depth-frame points of the occluding depth edges
    dist: np.ndarray  # (H, W) truncated distance map of the colour edges
    idx: int


def _edge_frame(root: Path, idx: int, K_depth: np.ndarray, tau: float) -> _EdgeFrame:
    depth = read_depth_mm(_frame_path(root, idx, "depth"))
    gray = cv2.imread(str(_frame_path(root, idx, "color")), cv2.IMREAD_GRAYSCALE)
    if gray is None:
        raise ValueError(f"cannot decode {_frame_path(root, idx, 'color')}")
    m = depth_edge_mask(depth)
    v, u = np.nonzero(m)
    z = depth[v, u].astype(np.float64)
    Ki = np.linalg.inv(K_depth)
    X = (np.stack([u, v, np.ones_like(u)], 1).astype(np.float64) @ Ki.T) * z[:, None]
    return _EdgeFrame(X, edge_distance_map(gray, tau=tau), idx)


def _params_to_model(p: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    fx, fy, cx, cy, tx, ty = (float(x) for x in p)
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]]), np.array([tx, ty, 0.0])


def _mean_residual(p, frames: Sequence[_EdgeFrame], sub: int = 1) -> float:
    K, t = _params_to_model(p)
    tot, n = 0.0, 0
    for f in frames:
        r = edge_residuals(f.X[::sub], f.dist, K, t)
        tot += float(r.sum())
        n += r.size
    return tot / max(n, 1)


def _pattern_search(p0, steps, min_steps, frames, sub: int) -> tuple[np.ndarray, float]:
    """Coordinate (compass) search: try +-step on each parameter, keep improvements, halve the
    steps when none helps, stop when every step is below its minimum."""
    p = np.array(p0, float)
    steps = np.array(steps, float)
    min_steps = np.array(min_steps, float)
    best = _mean_residual(p, frames, sub)
    for _ in range(500):
        improved = False
        for k in np.nonzero(steps > 0)[0]:
            for sign in (1.0, -1.0):
                q = p.copy()
                q[k] += sign * steps[k]
                s = _mean_residual(q, frames, sub)
                if s < best - 1e-7:
                    p, best, improved = q, s, True
                    break
        if not improved:
            steps = np.where(steps > 0, steps / 2, 0.0)
            if np.all((steps < min_steps) | (steps == 0)):
                break
    return p, best


@dataclasses.dataclass
class RegistrationEstimate:
    """Result of :func:`estimate_registration` (all residuals are truncated colour-edge
    distances in pixels of the projected occluding depth edges; ``inliers`` = share < 1.5 px)."""

    K_color: np.ndarray
    t: np.ndarray
    frames: list[int]
    heldout_frames: list[int]
    #: {"identity" | "scale_offset_0.90_-5_-1" | "estimate": {"fit_mean", "heldout_mean",
    #: "heldout_median", "heldout_inliers"}}
    residual: dict
    per_frame_shift: np.ndarray  # (F, 2) best extra (dx, dy) pixel shift per held-out frame
    per_frame_residual: np.ndarray  # (F,) mean residual per held-out frame with the estimate
    seconds: float

    def summary(self) -> dict:
        sh = self.per_frame_shift
        return {
            "K_color": np.round(self.K_color, 2).tolist(),
            "t_m": np.round(self.t, 4).tolist(),
            "fit_frames": len(self.frames),
            "heldout_frames": len(self.heldout_frames),
            "residual_px": self.residual,
            "per_frame_shift_px": {
                "mean": np.round(sh.mean(0), 2).tolist(),
                "std": np.round(sh.std(0), 2).tolist(),
                "p5": np.round(np.percentile(sh, 5, axis=0), 2).tolist(),
                "p95": np.round(np.percentile(sh, 95, axis=0), 2).tolist(),
            },
            "per_frame_residual_px": {
                "median": round(float(np.median(self.per_frame_residual)), 3),
                "p95": round(float(np.percentile(self.per_frame_residual, 95)), 3),
            },
            "seconds": round(self.seconds, 1),
        }


def _residual_stats(p, fit, held) -> dict:
    K, t = _params_to_model(p)
    r_fit = np.concatenate([edge_residuals(f.X, f.dist, K, t) for f in fit])
    r_held = np.concatenate([edge_residuals(f.X, f.dist, K, t) for f in held])
    return {
        "fit_mean": round(float(r_fit.mean()), 3),
        "heldout_mean": round(float(r_held.mean()), 3),
        "heldout_median": round(float(np.median(r_held)), 3),
        "heldout_inliers": round(float((r_held < 1.5).mean()), 3),
    }


def estimate_registration(
    root: str | os.PathLike,
    frames: Sequence[int] | None = None,
    heldout: Sequence[int] | None = None,
    tau: float = 10.0,
    log=None,
) -> RegistrationEstimate:
    """Estimate the colour intrinsics and the depth -> colour translation by edge alignment.

    Method: in each frame the occluding depth edges (:func:`depth_edge_mask`, the near side of
    jumps > max(5 cm, 5 %)) are back-projected with the depth K and projected into the colour
    image with a candidate (``fx, fy, cx, cy, t_x, t_y``); the cost is the mean distance from
    the projected points to the nearest Canny edge of the colour image, truncated at ``tau``
    pixels (a robust chamfer distance, :func:`edge_residuals`), summed over all frames. Search:
    a grid over (f = fx = fy, cx, cy) with t = 0 on every 8th edge point (f 470..600 step 10,
    cx, cy +-30 px step 5), then a coarse-to-fine compass search over all six parameters (steps
    halved down to 0.25 px / 0.5 mm) on every 2nd point, then on all points. The result is
    checked on held-out frames, and the per-frame spread is the extra (dx, dy) shift that fits
    each held-out frame best (dx, then dy, each on a grid of +-8 px in 0.5 px steps), which
    shows how far single frames move (colour and depth are not exposed at the same instant, so
    fast motion shifts a frame).

    Args:
        root: sequence folder.
        frames: frame numbers to fit (default every 10th: 0, 10, ..., >= 50 frames advised).
        heldout: frames to check on (default the frames 5 after each fit frame).
        tau: truncation of the edge distance (pixels).
        log: optional ``print``-like callable for progress.

    Returns:
        :class:`RegistrationEstimate`.

    Raises:
        FileNotFoundError: missing sequence or frame files.
        ValueError: no fit frames, or no depth edges in them.
    """
    t0 = time.perf_counter()
    root = Path(root)
    all_ids = list_frames(root)
    K_depth = read_intrinsics(root)
    frames = list(all_ids[::10]) if frames is None else [int(i) for i in frames]
    if heldout is None:
        have = set(all_ids)
        heldout = [i + 5 for i in frames if i + 5 in have]
    heldout = [int(i) for i in heldout]
    say = log or (lambda *a: None)
    if not frames:
        raise ValueError("estimate_registration needs at least one fit frame (50 or more advised)")
    fit = [_edge_frame(root, i, K_depth, tau) for i in frames]
    held = [_edge_frame(root, i, K_depth, tau) for i in heldout] or fit
    if sum(len(f.X) for f in fit) == 0:
        raise ValueError(f"{root}: no depth edges in the fit frames")
    say(f"{len(fit)} fit frames ({sum(len(f.X) for f in fit)} edge points), {len(held)} held-out")
    p = _fit_parameters(fit, K_depth, say)
    K, t = _params_to_model(p)
    per_shift, per_res = _per_frame_fit(p, held)
    return RegistrationEstimate(
        K_color=K, t=t, frames=frames, heldout_frames=heldout,
        residual=_reference_residuals(p, fit, held, K_depth),
        per_frame_shift=per_shift, per_frame_residual=per_res,
        seconds=time.perf_counter() - t0,
    )  # fmt: skip


def _fit_parameters(fit: Sequence[_EdgeFrame], K_depth: np.ndarray, say) -> np.ndarray:
    """``(fx, fy, cx, cy, t_x, t_y)`` that minimise the mean edge residual over ``fit``: a grid
    over (f = fx = fy, cx, cy) with t = 0 on every 8th edge point (f 470..600 step 10; cx, cy
    within +-30 px of the depth camera's, step 5), then the compass search on every 2nd point,
    then on all points."""
    c0x, c0y = float(K_depth[0, 2]), float(K_depth[1, 2])
    best = (np.inf, None)
    for f in np.arange(470.0, 601.0, 10.0):
        for cx in np.arange(c0x - 30, c0x + 31, 5.0):
            for cy in np.arange(c0y - 30, c0y + 31, 5.0):
                p = (f, f, cx, cy, 0.0, 0.0)
                s = _mean_residual(p, fit, sub=8)
                if s < best[0]:
                    best = (s, p)
    say(f"grid: {best[1][:4]} -> {best[0]:.3f} px")
    p, s = _pattern_search(
        best[1], (8, 8, 4, 4, 0.01, 0.01), (0.25, 0.25, 0.25, 0.25, 5e-4, 5e-4), fit, sub=2
    )
    say(f"compass (1/2 points): {np.round(p, 4).tolist()} -> {s:.3f} px")
    p, s = _pattern_search(
        p, (1, 1, 1, 1, 0.002, 0.002), (0.25, 0.25, 0.25, 0.25, 5e-4, 5e-4), fit, sub=1
    )
    say(f"compass (all points): {np.round(p, 4).tolist()} -> {s:.3f} px")
    return p


def _reference_residuals(p, fit, held, K_depth: np.ndarray) -> dict:
    """:func:`_residual_stats` of no registration (the depth K), of the scale + offset model of
    ../shared/data/README.md and of the estimate ``p``."""
    f0 = float(K_depth[0, 0])
    c0x, c0y = float(K_depth[0, 2]), float(K_depth[1, 2])
    readme = (0.9 * f0, 0.9 * f0, c0x - 5, c0y - 1, 0.0, 0.0)  # ../shared/data/README.md
    return {
        "identity": _residual_stats((f0, f0, c0x, c0y, 0.0, 0.0), fit, held),
        "scale_offset_0.90_-5_-1": _residual_stats(readme, fit, held),
        "estimate": _residual_stats(p, fit, held),
    }


def _frame_residual(fr: _EdgeFrame, p) -> float:
    """Mean edge residual of one frame with the parameters ``p``."""
    return float(edge_residuals(fr.X, fr.dist, *_params_to_model(p)).mean())


def _per_frame_fit(p, held: Sequence[_EdgeFrame]) -> tuple[np.ndarray, np.ndarray]:
    """Per held-out frame: the extra (dx, dy) shift of the principal point that fits it best
    (dx first, then dy with that dx, each on a grid of +-8 px in 0.5 px steps), (F, 2); and its
    mean residual with ``p``, (F,)."""
    shifts = np.arange(-8.0, 8.01, 0.5)
    per_shift, per_res = [], []
    for fr in held:
        r = [_frame_residual(fr, (p[0], p[1], p[2] + dx, p[3], p[4], p[5])) for dx in shifts]
        bx = shifts[int(np.argmin(r))]
        r = [_frame_residual(fr, (p[0], p[1], p[2] + bx, p[3] + dy, p[4], p[5])) for dy in shifts]
        by = shifts[int(np.argmin(r))]
        per_shift.append((bx, by))
        per_res.append(_frame_residual(fr, p))
    return np.array(per_shift), np.array(per_res)
