"""How much light reaches a surface point: ambient occlusion (room edges, under furniture,
contact shadows of grounded boxes) and soft shadows (:func:`_occlusion`).

Both are evaluated at reduced resolution (~2000 pixels; shadow rays to jittered, stratified
points of each emitter), smoothed and upsampled within objects, so nothing bleeds across
object borders.
"""

from __future__ import annotations

import math

import numpy as np

from joint_perception.data.synthetic.noise import _hash01
from joint_perception.data.synthetic.raycast import _box_arrays, _Hits
from joint_perception.data.synthetic.scene import Scene


def _lowres_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the pixels where occlusion is evaluated (~2000, or one in 30 for
    small images): the pixels nearest to the sample positions of a ``cv2.resize`` from that
    grid back to the image."""
    n = min(2000.0, max(300.0, height * width / 30.0))
    step = max(2.0, math.sqrt(height * width / n))
    h, w = max(2, int(round(height / step))), max(2, int(round(width / step)))
    rows = np.clip(np.round((np.arange(h) + 0.5) * height / h - 0.5), 0, height - 1)
    cols = np.clip(np.round((np.arange(w) + 0.5) * width / w - 0.5), 0, width - 1)
    return rows.astype(np.intp), cols.astype(np.intp)


def _smooth_within_objects(vals: np.ndarray, obj_lr: np.ndarray) -> np.ndarray:
    """3x3 box filter of (h, w, C) ``vals`` that averages only samples of the same object."""
    h, w = obj_lr.shape
    pv = np.pad(vals, ((1, 1), (1, 1), (0, 0)), mode="edge")
    po = np.pad(obj_lr, 1, mode="edge")
    acc = np.zeros_like(vals)
    wsum = np.zeros((h, w), dtype=np.float32)
    for dy in range(3):
        for dx in range(3):
            same = (po[dy : dy + h, dx : dx + w] == obj_lr).astype(np.float32)
            acc += same[..., None] * pv[dy : dy + h, dx : dx + w]
            wsum += same
    return acc / wsum[..., None]


def _upsample_within_objects(vals, obj_lr, obj) -> np.ndarray:
    """Bilinear upsampling of (h, w, C) samples on the :func:`_lowres_grid` to the (H, W)
    pixels of ``obj``; where the four samples around a pixel do not all lie on its object,
    only those that do are used (no shadow or occlusion bleeds across object borders).
    Returns (H * W, C)."""
    import cv2

    H, W = obj.shape
    h, w, C = vals.shape
    out = cv2.resize(vals, (W, H), interpolation=cv2.INTER_LINEAR).reshape(H * W, C)
    fy = np.clip((np.arange(H) + 0.5) * h / H - 0.5, 0, h - 1)
    fx = np.clip((np.arange(W) + 0.5) * w / W - 0.5, 0, w - 1)
    y0, x0 = np.floor(fy).astype(np.intp), np.floor(fx).astype(np.intp)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    objf = obj.reshape(-1)
    corners = [(yy, xx) for yy in (y0, y1) for xx in (x0, x1)]
    mixed = np.zeros(H * W, dtype=bool)
    for yy, xx in corners:
        mixed |= obj_lr[np.ix_(yy, xx)].reshape(-1) != objf
    bad = np.flatnonzero(mixed)
    if not bad.size:
        return out
    by, bx = bad // W, bad % W
    wy, wx = (fy - y0)[by].astype(np.float32), (fx - x0)[bx].astype(np.float32)
    acc = np.zeros((bad.size, C), dtype=np.float32)
    wsum = np.zeros(bad.size, dtype=np.float32)
    for (yy, xx), wgt in zip(corners, ((1 - wy) * (1 - wx), (1 - wy) * wx, wy * (1 - wx), wy * wx)):
        iy, ix = yy[by], xx[bx]
        wgt = wgt * ((obj_lr[iy, ix] == objf[bad]) + np.float32(1e-3))
        acc += wgt[:, None] * vals[iy, ix]
        wsum += wgt
    out[bad] = acc / wsum[:, None]
    return out


def _ambient_occlusion(scene: Scene, P: np.ndarray, of: np.ndarray) -> np.ndarray:
    """(n,) darkening near room edges, under furniture and around grounded boxes."""
    size = np.asarray(scene.size, dtype=np.float32)
    dist = np.stack(
        [P[:, 0], size[0] - P[:, 0], P[:, 1], size[1] - P[:, 1], P[:, 2], size[2] - P[:, 2]], 1
    )
    second = np.partition(dist, 1, axis=1)[:, 1]
    ao = 1.0 - 0.35 * np.exp(-second / 0.25)  # second-nearest plane: edges and corners
    ao *= np.where(of >= 6, 1.0 - 0.3 * np.exp(-P[:, 2] / 0.15), 1.0)
    floor_px = np.flatnonzero(of == 4)
    if floor_px.size:
        centers, halves, yaws = _box_arrays(scene)
        pf = P[floor_px]
        for k in np.flatnonzero(np.asarray(scene.grounded)):
            c, h, yaw = centers[k], halves[k], yaws[k]
            dxy = pf[:, :2] - c[:2].astype(np.float32)
            lx = np.abs(math.cos(yaw) * dxy[:, 0] + math.sin(yaw) * dxy[:, 1]) - h[0]
            ly = np.abs(-math.sin(yaw) * dxy[:, 0] + math.cos(yaw) * dxy[:, 1]) - h[1]
            out = np.hypot(np.maximum(lx, 0), np.maximum(ly, 0))
            strength = 0.45 * min(1.0, 0.3 / max(c[2] - h[2] + 0.3, 0.3))
            ao[floor_px] *= 1.0 - strength * np.exp(-out / 0.12)
    return ao.astype(np.float32)


def _occluders(scene: Scene, limit: int = 24):
    """Centres, half extents and yaws (float32) of the largest non-emissive boxes."""
    n = scene.num_objects
    if n <= 6:
        return None
    centers, halves, yaws = _box_arrays(scene)
    emis = np.array([m.emissive for m in scene.materials])[np.asarray(scene.material_ids)]
    k = np.arange(6, n)
    hs = np.sort(halves[k], axis=1)
    size = hs[:, 1] * hs[:, 2]  # the two largest half extents
    keep = (emis[k] == 0) & (hs[:, 0] >= 0.012) & (size > 0.0012)
    k, size = k[keep], size[keep]
    if not k.size:
        return None
    k = k[np.argsort(-size, kind="stable")[:limit]]
    f32 = np.float32
    return centers[k].astype(f32), halves[k].astype(f32), yaws[k].astype(f32)


def _segment_blocked(P: np.ndarray, Q: np.ndarray, occ) -> np.ndarray:
    """(n,) bool: the segment P -> Q (both (n, 3) world) passes through an occluder box."""
    c, h, yaw = occ
    cs, sn = np.cos(yaw), np.sin(yaw)
    D = Q - P
    rx, ry = P[:, 0:1] - c[:, 0], P[:, 1:2] - c[:, 1]
    lo = (cs * rx + sn * ry, -sn * rx + cs * ry, P[:, 2:3] - c[:, 2])
    ld = (
        cs * D[:, 0:1] + sn * D[:, 1:2],
        -sn * D[:, 0:1] + cs * D[:, 1:2],
        np.broadcast_to(D[:, 2:3], rx.shape),
    )
    tn = np.full(rx.shape, -np.inf, dtype=np.float32)
    tf = np.full(rx.shape, np.inf, dtype=np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        for a in range(3):
            inv = 1.0 / ld[a]
            t1 = (-h[:, a] - lo[a]) * inv
            t2 = (h[:, a] - lo[a]) * inv
            np.maximum(tn, np.minimum(t1, t2), out=tn)
            np.minimum(tf, np.maximum(t1, t2), out=tf)
        return ((tn < tf) & (tf > 1e-3) & (tn < 0.999)).any(axis=1)


def _light_samples(scene: Scene, j: int, h: int, w: int) -> np.ndarray:
    """(h * w, 3) points on emitter ``j`` (its centre for point lights) for an h x w grid of
    shadow rays: each 3x3 block of the grid covers the emitter's 9 strata once (jittered
    within them), so that the 3x3 smoothing of the visibility averages a stratified set."""
    gi, gj = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    k = (gi * w + gj).reshape(-1)
    a = ((gi % 3).reshape(-1) + _hash01(k * 3 + 7919 * j + 1)) / 1.5 - 1.0
    b = ((gj % 3).reshape(-1) + _hash01(k * 5 + 104729 * j + 2)) / 1.5 - 1.0
    ext = scene.light_extent[j].astype(np.float32)
    return scene.lights[j].astype(np.float32) + a[:, None] * ext[0] + b[:, None] * ext[1]


def _occlusion(scene: Scene, hits: _Hits, height: int, width: int, shadows: bool):
    """Ambient occlusion (N,) and per-light visibility (N, M) in [0, 1].

    Both are evaluated on a coarse grid (:func:`_lowres_grid`; visibility: one shadow ray
    per grid pixel and light, to a stratified jittered point of the emitter, so area lights
    give soft penumbrae), smoothed and upsampled within objects."""
    rows, cols = _lowres_grid(height, width)
    sub = (rows[:, None] * width + cols[None, :]).ravel()
    P, of = hits.P[sub], hits.of[sub]
    planes = [_ambient_occlusion(scene, P, of)]
    n_lights = len(scene.lights)
    occ = _occluders(scene) if shadows and n_lights else None
    if occ is not None:
        Ps = P + np.float32(2e-3) * hits.nw[sub]
        for j in range(n_lights):
            blocked = _segment_blocked(Ps, _light_samples(scene, j, rows.size, cols.size), occ)
            planes.append(1.0 - blocked.astype(np.float32))
    obj_lr = of.reshape(rows.size, cols.size)
    vals = np.stack(planes, axis=-1).reshape(rows.size, cols.size, -1).astype(np.float32)
    vals = _smooth_within_objects(_smooth_within_objects(vals, obj_lr), obj_lr)
    full = _upsample_within_objects(vals, obj_lr, hits.obj)
    vis = full[:, 1:] if occ is not None else np.ones((hits.of.size, n_lights), dtype=np.float32)
    return full[:, 0], vis
