"""Exact ray casting: the nearest room face or box per pixel (:func:`cast_rays`) and the hit
geometry of one view (:func:`_trace`: normals, world and box-local hit points, footprints).

Vectorised over pixels in numpy; every box is tested only against the rays inside its
projected bounding rectangle, nearest boxes first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from joint_perception.data.synthetic.camera import Camera
from joint_perception.data.synthetic.scene import Scene

_NEAR = 1e-3  # metres; hits closer than this along the ray are ignored


def camera_rays(K: np.ndarray, height: int, width: int) -> np.ndarray:
    """Per-pixel ray directions ``K^-1 [u, v, 1]`` in the camera frame, z component = 1.

    Pixel centres are at integer coordinates. Returns (3, H, W) float32, so that the point
    hit at ray parameter ``t`` has optical-axis depth exactly ``t``.
    """
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3) or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(f"K must be a 3x3 intrinsics matrix with positive focal, got {K}")
    u = (np.arange(width, dtype=np.float64) - K[0, 2]) / K[0, 0]
    v = (np.arange(height, dtype=np.float64) - K[1, 2]) / K[1, 1]
    rays = np.empty((3, height, width), dtype=np.float32)
    rays[0] = u
    rays[1] = v[:, None]
    rays[2] = 1.0
    return rays


def _matvec(M: np.ndarray, v: np.ndarray, axis: int) -> np.ndarray:
    """``M @ v`` for 3x3 ``M`` and arrays of 3-vectors along ``axis`` (0 or -1).

    Written as explicit multiply-adds: numpy's matmul would hand (N, 3) x (3, 3) to a
    multi-threaded BLAS, which oversubscribes the small CPUs this runs on.
    """
    comps = [np.take(v, i, axis=axis) for i in range(3)]
    out = [M[r, 0] * comps[0] + M[r, 1] * comps[1] + M[r, 2] * comps[2] for r in range(3)]
    return np.stack(out, axis=axis)


def _box_arrays(scene: Scene):
    centers = np.asarray(scene.centers, dtype=np.float64)
    halves = np.asarray(scene.halves, dtype=np.float64)
    yaws = np.asarray(scene.yaws, dtype=np.float64)
    return centers, halves, yaws


def _projected_rects(scene: Scene, cam: Camera, height: int, width: int):
    """Conservative pixel rectangles ``(k, v0, v1, u0, u1, zmin)`` of the boxes ``k >= 6``
    that can be in view, nearest first (``zmin``: smallest camera-frame z of a corner); all
    boxes at once; a box reaching behind the camera gets the full image."""
    centers, halves, yaws = _box_arrays(scene)
    n = scene.num_objects - 6
    if n <= 0:
        return []
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
    loc = signs[None, :, :] * halves[6:, None, :]  # (n, 8, 3)
    cs, sn = np.cos(yaws[6:])[:, None], np.sin(yaws[6:])[:, None]
    rel = [
        centers[6:, None, 0] + cs * loc[..., 0] - sn * loc[..., 1] - cam.position[0],
        centers[6:, None, 1] + sn * loc[..., 0] + cs * loc[..., 1] - cam.position[1],
        centers[6:, None, 2] + loc[..., 2] - cam.position[2],
    ]
    R = cam.R  # world -> camera: R^T (p - o)
    x, y, z = (R[0, a] * rel[0] + R[1, a] * rel[1] + R[2, a] * rel[2] for a in range(3))
    visible = ~np.all(z <= _NEAR, axis=1)
    behind = np.any(z <= 0.05, axis=1)
    zs = np.where(z > 0.05, z, 1.0)
    with np.errstate(invalid="ignore"):
        u = cam.K[0, 0] * x / zs + cam.K[0, 2]
        v = cam.K[1, 1] * y / zs + cam.K[1, 2]
    u0 = np.clip(np.floor(u.min(1)) - 1, 0, width).astype(int)
    u1 = np.clip(np.ceil(u.max(1)) + 2, 0, width).astype(int)
    v0 = np.clip(np.floor(v.min(1)) - 1, 0, height).astype(int)
    v1 = np.clip(np.ceil(v.max(1)) + 2, 0, height).astype(int)
    u0[behind], v0[behind], u1[behind], v1[behind] = 0, 0, width, height
    keep = np.flatnonzero(visible & (u0 < u1) & (v0 < v1))
    zmin = np.maximum(z.min(axis=1), 0.0)  # no point of a box is nearer than its corners
    keep = keep[np.argsort(zmin[keep], kind="stable")]  # front to back
    return [(int(k) + 6, v0[k], v1[k], u0[k], u1[k], zmin[k]) for k in keep]


def _room_exit(size: np.ndarray, o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where the rays ``o + t d`` (``d``: (3, H, W) float32 world directions) leave the room
    from inside: ``t`` (H, W) float32 and the face code (H, W) int8 of the nearest room face."""
    height, width = d.shape[1:]
    t = np.full((height, width), np.inf, dtype=np.float32)
    face = np.zeros((height, width), dtype=np.int8)
    with np.errstate(divide="ignore", invalid="ignore"):
        for axis, da in enumerate((d[0], d[1], d[2])):
            pos = da > 0
            ta = np.where(pos, (size[axis] - o[axis]) / da, -o[axis] / da).astype(np.float32)
            ta[~np.isfinite(ta) | (ta <= 0)] = np.inf
            better = ta < t
            t[better] = ta[better]
            face[better] = 2 * axis + pos[better]
    return t, face


def _box_hits(o, c, h, yaw: float, ddx, ddy, ddz, tsl):
    """Slab test of the rays ``o + t (ddx, ddy, ddz)`` against the box of centre ``c``, half
    extents ``h`` and ``yaw``, keeping hits nearer than ``tsl``: ``(hit mask, t of the hits,
    face code of the entering face)``, or None when no ray hits."""
    cs, sn = math.cos(yaw), math.sin(yaw)
    rx, ry, rz = o - c
    lo = (cs * rx + sn * ry, -sn * rx + cs * ry, rz)
    ld = (cs * ddx + sn * ddy, -sn * ddx + cs * ddy, ddz)
    tmins, tf = [], None
    with np.errstate(divide="ignore", invalid="ignore"):
        for a in range(3):
            t1 = (-h[a] - lo[a]) / ld[a]
            t2 = (h[a] - lo[a]) / ld[a]
            tmins.append(np.minimum(t1, t2))
            tf = np.maximum(t1, t2) if tf is None else np.minimum(tf, np.maximum(t1, t2))
        tn = np.maximum(np.maximum(tmins[0], tmins[1]), tmins[2])
        hit = (tn <= tf) & (tn > _NEAR) & (tn < tsl)
    if not hit.any():
        return None
    tnh = tn[hit]
    # entering face: the first axis whose slab is entered last, on its - side when
    # moving in the + direction
    na = np.argmax(np.stack([tm[hit] for tm in tmins]) == tnh, axis=0).astype(np.int8)
    lda = np.choose(na, (ld[0][hit], ld[1][hit], ld[2][hit]))
    return hit, tnh, 2 * na + (lda < 0)


def cast_rays(scene: Scene, cam: Camera, height: int, width: int):
    """Nearest hit per pixel.

    Returns:
        ``t`` (H, W) float32 depth along the optical axis (metres), ``obj`` (H, W) int32
        object id, ``face`` (H, W) int8 face code ``2 * axis + side`` (side 1 = + face) in the
        object's local frame, and the world ray directions (3, H, W) float32.

    Raises:
        ValueError: if the camera is not strictly inside the room.
    """
    size = np.asarray(scene.size)
    o = cam.position
    if np.any(o <= 0) or np.any(o >= size):
        raise ValueError(f"camera position {o} is not inside the room [0, {size}]")
    rays_c = camera_rays(cam.K, height, width)
    R = cam.R.astype(np.float32)
    d = _matvec(R, rays_c, axis=0)
    dx, dy, dz = d[0], d[1], d[2]
    t, face = _room_exit(size, o, d)
    obj = face.astype(np.int32)  # room face k is object k

    centers, halves, yaws = _box_arrays(scene)
    for k, v0, v1, u0, u1, zmin in _projected_rects(scene, cam, height, width):
        sl = (slice(v0, v1), slice(u0, u1))
        tsl = t[sl]
        if tsl.max() <= zmin:
            continue  # everything in its rectangle is already nearer than the box can be
        found = _box_hits(o, centers[k], halves[k], yaws[k], dx[sl], dy[sl], dz[sl], tsl)
        if found is None:
            continue
        hit, tnh, face_code = found
        tsl[hit] = tnh
        face[sl][hit] = face_code
        obj[sl][hit] = k
    return t, obj, face, d


def _face_normals(scene: Scene) -> np.ndarray:
    """(N, 6, 3) world normal of each object face, room faces pointing into the room."""
    _, _, yaws = _box_arrays(scene)
    n = scene.num_objects
    local = np.zeros((6, 3))
    for f in range(6):
        local[f, f // 2] = 1.0 if f % 2 else -1.0
    cs, sn = np.cos(yaws), np.sin(yaws)
    out = np.empty((n, 6, 3))
    out[:, :, 0] = cs[:, None] * local[:, 0] - sn[:, None] * local[:, 1]
    out[:, :, 1] = sn[:, None] * local[:, 0] + cs[:, None] * local[:, 1]
    out[:, :, 2] = local[:, 2]
    out[:6] *= -1.0  # inside of the room
    return out


@dataclass
class _Hits:
    """Ray-cast geometry of one view: (H, W) maps and flattened (N = H * W) hit arrays."""

    t: np.ndarray  # (H, W) float32 depth along the optical axis
    obj: np.ndarray  # (H, W) int32 object ids
    normals: np.ndarray  # (H, W, 3) float32 camera-frame normals facing the camera
    of: np.ndarray  # (N,) object id
    ff: np.ndarray  # (N,) face code
    P: np.ndarray  # (N, 3) float32 world hit points
    nw: np.ndarray  # (N, 3) float32 world normals facing the camera
    view: np.ndarray  # (N, 3) float32 unit vectors from the hit point to the camera
    p_local: np.ndarray  # (N, 3) float32 hit points in the box frame
    footprint: np.ndarray  # (N,) float32 pixel footprint on the surface (metres)


def _trace(scene: Scene, cam: Camera, height: int, width: int) -> _Hits:
    """Cast the camera rays and derive normals, world/local hit points and footprints."""
    t, obj, face, d = cast_rays(scene, cam, height, width)
    if not np.all(np.isfinite(t)):
        raise RuntimeError("synthetic renderer left pixels without a hit inside a closed room")
    n_world = _face_normals(scene)[obj, face].astype(np.float32)  # (H, W, 3)
    n_cam = _matvec(cam.R.T.astype(np.float32), n_world, axis=-1)
    rays_c = camera_rays(cam.K, height, width)  # camera frame, z = 1
    flip = n_cam[..., 0] * rays_c[0] + n_cam[..., 1] * rays_c[1] + n_cam[..., 2] > 0
    n_cam[flip] *= -1.0
    tf = t.reshape(-1)
    of = obj.reshape(-1)
    dw = d.reshape(3, -1).T  # world ray directions, camera-frame z = 1
    ray_len = np.sqrt(np.einsum("ij,ij->i", dw, dw))
    P = cam.position.astype(np.float32)[None, :] + tf[:, None] * dw
    nw = n_world.reshape(-1, 3) * np.where(flip.reshape(-1, 1), -1.0, 1.0).astype(np.float32)
    view = -dw / ray_len[:, None]
    centers, _, yaws = _box_arrays(scene)
    rel = P - centers.astype(np.float32)[of]
    cs, sn = np.cos(yaws).astype(np.float32)[of], np.sin(yaws).astype(np.float32)[of]
    p_local = np.stack(
        [cs * rel[:, 0] + sn * rel[:, 1], -sn * rel[:, 0] + cs * rel[:, 1], rel[:, 2]], axis=1
    )
    cosv = np.abs(np.einsum("ij,ij->i", nw, view))
    f = math.sqrt(cam.K[0, 0] * cam.K[1, 1])
    footprint = tf * ray_len / np.float32(f) / np.maximum(cosv, np.float32(0.2))
    return _Hits(t, obj, n_cam, of, face.reshape(-1), P, nw, view, p_local, footprint)
