"""Procedural indoor scenes: the project's own RGB + depth + labels + normals training data.

A scene is a closed room (axis-aligned box: floor, ceiling, four walls) furnished with
yaw-rotated boxes that carry NYU-40 labels (:mod:`joint_perception.nyuv2_classes`):
composites standing on the floor (table = top + 4 legs, chair = seat + back + legs, sofa,
bed with pillows, bookshelf with rows of books, counter over cabinets, ...), thin boxes on the
walls (door, window with blinds or curtains, picture, whiteboard, mirror, television,
shelves), floor mats and a ceiling lamp. Rendering is exact ray casting in numpy, vectorised
over pixels: every box is tested only against the rays inside its projected bounding
rectangle. Shading is Lambertian with 1-3 point lights plus ambient, procedural textures
(plain, value noise, wood grain, tiles, stripes, book spines), an ambient-occlusion-like
darkening near room edges and under furniture, auto exposure, gamma, mild blur and noise.

Frames
    World: REP 103, metres, z up, floor at ``z = 0``; the room spans
    ``[0, Lx] x [0, Ly] x [0, Lz]``. Camera: REP 103 optical frame (x right, y down,
    z forward); ``Camera.R`` maps camera-frame vectors to the world, ``Camera.position`` is
    the optical centre in the world.

Sample contract (docs/architecture.md): ``rgb`` HxWx3 uint8, ``depth`` HxW float32 metres
along the optical axis (z), ``labels`` HxW uint8 NYU-40 ids, ``normals`` HxWx3 float32 unit
vectors in the camera frame facing the camera, ``K`` 3x3 float64, ``has_labels`` and
``has_normals`` True.

Use :class:`SyntheticScenes` as a map-style data set, :func:`render_scene` for one random
sample, or build a :class:`Scene` and :class:`Camera` by hand and call :func:`render`.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from joint_perception.nyuv2_classes import ID40, NYU_K, NYU_SIZE

# Texture kinds (per material).
PLAIN, NOISE, WOOD, TILES, STRIPES, BOOKS, WINDOW = range(7)
_NEAR = 1e-3  # metres; hits closer than this along the ray are ignored


@dataclass
class Material:
    """Surface appearance. Colours are sRGB in [0, 1]; ``scale`` is texture cycles per metre."""

    color: tuple[float, float, float]
    color2: tuple[float, float, float] = (0.0, 0.0, 0.0)
    kind: int = PLAIN
    scale: float = 1.0
    emissive: float = 0.0  # radiance relative to the exposure target, for windows and lamps


@dataclass
class Scene:
    """A room with boxes, lights and materials.

    Object ids ``0..5`` are the room faces in face-code order ``(x-min, x-max, y-min, y-max,
    z-min = floor, z-max = ceiling)``; ids ``6..`` are boxes added with :meth:`add_box`.

    Attributes:
        size: room extent ``(Lx, Ly, Lz)`` in metres.
        centers, halves: (N, 3) float64 box centres and half extents (world, metres).
        yaws: (N,) float64 rotation about world z (radians).
        labels: (N,) NYU-40 id per object.
        material_ids: (N,) index into ``materials``.
        grounded: (N,) bool, boxes resting on the floor (cast a contact shadow).
        lights: (M, 3) light positions, ``light_power`` (M,), ``light_color`` (M, 3).
        ambient: ambient light level.
    """

    size: tuple[float, float, float]
    materials: list[Material] = field(default_factory=list)
    centers: list = field(default_factory=list)
    halves: list = field(default_factory=list)
    yaws: list = field(default_factory=list)
    labels: list = field(default_factory=list)
    material_ids: list = field(default_factory=list)
    grounded: list = field(default_factory=list)
    lights: list = field(default_factory=list)
    light_power: list = field(default_factory=list)
    light_color: list = field(default_factory=list)
    ambient: float = 0.35

    @classmethod
    def empty_room(
        cls,
        size: tuple[float, float, float],
        wall: Material | None = None,
        floor: Material | None = None,
        ceiling: Material | None = None,
    ) -> Scene:
        """A room of ``size = (Lx, Ly, Lz)`` metres with plain materials and one central light.

        Raises:
            ValueError: if any extent is not positive.
        """
        if min(size) <= 0:
            raise ValueError(f"room size must be positive, got {size}")
        scene = cls(size=tuple(float(s) for s in size))
        half = np.asarray(scene.size) / 2
        mats = [
            wall or Material((0.8, 0.78, 0.74)),
            floor or Material((0.55, 0.45, 0.35)),
            ceiling or Material((0.92, 0.92, 0.92)),
        ]
        face_mat = (0, 0, 0, 0, 1, 2)
        face_label = (ID40["wall"],) * 4 + (ID40["floor"], ID40["ceiling"])
        scene.materials.extend(mats)
        for k in range(6):
            scene._append(half, half, 0.0, face_label[k], face_mat[k], False)
        scene.add_light((half[0], half[1], scene.size[2] - 0.3), 1.0)
        return scene

    def _append(self, center, half, yaw, label, mat_id, grounded) -> int:
        self.centers.append(np.asarray(center, dtype=np.float64))
        self.halves.append(np.asarray(half, dtype=np.float64))
        self.yaws.append(float(yaw))
        self.labels.append(int(label))
        self.material_ids.append(int(mat_id))
        self.grounded.append(bool(grounded))
        return len(self.labels) - 1

    def add_material(self, material: Material) -> int:
        """Register a material; returns its index."""
        self.materials.append(material)
        return len(self.materials) - 1

    def add_box(
        self,
        center,
        half,
        yaw: float,
        label: int,
        material: int | Material,
        grounded: bool = False,
    ) -> int:
        """Add a box: world ``center`` (3,), half extents ``half`` (3,) in metres, ``yaw``
        about world z in radians, NYU-40 ``label``; returns its object id.

        Raises:
            ValueError: for a non-positive half extent or a label outside 1..40.
        """
        half = np.asarray(half, dtype=np.float64)
        if half.shape != (3,) or np.any(half <= 0):
            raise ValueError(f"box half extents must be 3 positive numbers, got {half}")
        if not 1 <= int(label) <= 40:
            raise ValueError(f"box label must be a NYU-40 id in 1..40, got {label}")
        if isinstance(material, Material):
            material = self.add_material(material)
        return self._append(center, half, yaw, label, material, grounded)

    def add_light(self, position, power: float = 1.0, color=(1.0, 1.0, 1.0)) -> None:
        """Add a point light at world ``position`` (metres) with relative ``power``."""
        self.lights.append(np.asarray(position, dtype=np.float64))
        self.light_power.append(float(power))
        self.light_color.append(np.asarray(color, dtype=np.float64))

    @property
    def num_objects(self) -> int:
        return len(self.labels)


@dataclass
class Camera:
    """Pinhole camera: ``K`` 3x3 (pixels), ``R`` 3x3 camera-to-world rotation, ``position``
    (3,) optical centre in the world (metres). The camera frame is REP 103 optical."""

    K: np.ndarray
    R: np.ndarray
    position: np.ndarray

    @classmethod
    def look(
        cls,
        position,
        yaw: float,
        pitch: float = 0.0,
        roll: float = 0.0,
        K: np.ndarray | None = None,
    ) -> Camera:
        """Camera at world ``position`` looking along world heading ``yaw`` (radians, 0 = +x,
        counter-clockwise seen from above), ``pitch`` up-positive, ``roll`` about the optical
        axis (radians). ``K`` defaults to ``NYU_K``."""
        c, s = math.cos(yaw), math.sin(yaw)
        Rz = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        # optical frame at yaw = 0: x right = -y_world, y down = -z_world, z forward = +x_world
        R0 = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
        cp, sp = math.cos(pitch), math.sin(pitch)
        Rx = np.array([[1.0, 0.0, 0.0], [0.0, cp, -sp], [0.0, sp, cp]])
        cr, sr = math.cos(roll), math.sin(roll)
        Rr = np.array([[cr, -sr, 0.0], [sr, cr, 0.0], [0.0, 0.0, 1.0]])
        K = NYU_K.copy() if K is None else np.asarray(K, dtype=np.float64)
        return cls(K=K, R=Rz @ R0 @ Rx @ Rr, position=np.asarray(position, dtype=np.float64))


@dataclass
class SceneOptions:
    """Knobs of the random scene distribution (all passable as ``**options``).

    Attributes:
        room_x, room_y, room_z: (min, max) room extent in metres.
        camera_height: (min, max) optical centre height in metres.
        pitch_deg, roll_deg: (min, max) camera pitch (up-positive) and roll in degrees.
        focal_jitter: relative jitter of the NYU-like focal length (0.1 = +-10 %).
        furniture: (min, max) number of floor-standing furniture composites.
        wall_items: (min, max) number of wall-mounted items besides doors and windows.
        lights: (min, max) number of point lights.
        noise: std of additive sensor noise (sRGB units in [0, 1]).
        blur: Gaussian blur sigma in pixels (0 disables).
        room_types: which furnishing styles to draw from.
    """

    room_x: tuple[float, float] = (3.0, 8.0)
    room_y: tuple[float, float] = (3.0, 8.0)
    room_z: tuple[float, float] = (2.4, 3.2)
    camera_height: tuple[float, float] = (0.8, 1.8)
    pitch_deg: tuple[float, float] = (-25.0, 10.0)
    roll_deg: tuple[float, float] = (-5.0, 5.0)
    focal_jitter: float = 0.1
    furniture: tuple[int, int] = (6, 12)
    wall_items: tuple[int, int] = (2, 5)
    lights: tuple[int, int] = (1, 3)
    noise: float = 0.012
    blur: float = 0.6
    room_types: tuple[str, ...] = ("bedroom", "living", "office", "kitchen", "bathroom")

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> SceneOptions:
        """Build from keyword arguments; unknown names raise ``TypeError`` naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise TypeError(f"unknown synthetic scene option(s) {unknown}; known: {sorted(known)}")
        return cls(**kwargs)


# --------------------------------------------------------------------------------------------
# Ray casting


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


def _projected_rect(corners_w, cam: Camera, height: int, width: int):
    """Conservative pixel rectangle (v0, v1, u0, u1) of world points, or None if off-screen."""
    pc = (corners_w - cam.position) @ cam.R  # world -> camera: R^T (p - o)
    z = pc[:, 2]
    if np.all(z <= _NEAR):
        return None
    if np.any(z <= 0.05):
        return 0, height, 0, width
    u = cam.K[0, 0] * pc[:, 0] / z + cam.K[0, 2]
    v = cam.K[1, 1] * pc[:, 1] / z + cam.K[1, 2]
    u0, u1 = max(int(math.floor(u.min())) - 1, 0), min(int(math.ceil(u.max())) + 2, width)
    v0, v1 = max(int(math.floor(v.min())) - 1, 0), min(int(math.ceil(v.max())) + 2, height)
    if u0 >= u1 or v0 >= v1:
        return None
    return v0, v1, u0, u1


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

    # Room (inside): exit through the nearest face along each axis.
    t = np.full((height, width), np.inf, dtype=np.float32)
    face = np.zeros((height, width), dtype=np.int8)
    with np.errstate(divide="ignore", invalid="ignore"):
        for axis, da in enumerate((dx, dy, dz)):
            pos = da > 0
            ta = np.where(pos, (size[axis] - o[axis]) / da, -o[axis] / da).astype(np.float32)
            ta[~np.isfinite(ta) | (ta <= 0)] = np.inf
            better = ta < t
            t[better] = ta[better]
            face[better] = 2 * axis + pos[better]
    obj = face.astype(np.int32)  # room face k is object k

    centers, halves, yaws = _box_arrays(scene)
    signs = np.array(
        [[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64
    )
    for k in range(6, scene.num_objects):
        c, h, yaw = centers[k], halves[k], yaws[k]
        cs, sn = math.cos(yaw), math.sin(yaw)
        rot = np.array([[cs, -sn, 0.0], [sn, cs, 0.0], [0.0, 0.0, 1.0]])
        rect = _projected_rect(c + (signs * h) @ rot.T, cam, height, width)
        if rect is None:
            continue
        sl = (slice(rect[0], rect[1]), slice(rect[2], rect[3]))
        rx, ry, rz = o - c
        lo = (cs * rx + sn * ry, -sn * rx + cs * ry, rz)
        ddx, ddy, ddz = dx[sl], dy[sl], dz[sl]
        ld = (cs * ddx + sn * ddy, -sn * ddx + cs * ddy, ddz)
        with np.errstate(divide="ignore", invalid="ignore"):
            tn = tf = None
            near_axis = None
            for a in range(3):
                inv = 1.0 / ld[a]
                t1 = (-h[a] - lo[a]) * inv
                t2 = (h[a] - lo[a]) * inv
                tmin = np.minimum(t1, t2)
                tmax = np.maximum(t1, t2)
                if tn is None:
                    tn, tf = tmin, tmax
                    near_axis = np.zeros(tn.shape, dtype=np.int8)
                else:
                    upd = tmin > tn
                    tn = np.where(upd, tmin, tn)
                    near_axis[upd] = a
                    tf = np.minimum(tf, tmax)
            tsl = t[sl]
            hit = (tn <= tf) & (tn > _NEAR) & (tn < tsl)
        if not hit.any():
            continue
        tsl[hit] = tn[hit]
        na = near_axis[hit]
        # entering face: the - side when moving in +axis direction
        lda = np.choose(na, (ld[0][hit], ld[1][hit], ld[2][hit]))
        face[sl][hit] = 2 * na + (lda < 0)
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


# --------------------------------------------------------------------------------------------
# Shading


class _Noise:
    """2-D value noise from a 256x256 random lattice, bilinear with smoothstep."""

    def __init__(self, rng: np.random.Generator):
        self.table = rng.random((256, 256), dtype=np.float32)

    def __call__(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        xf, yf = np.floor(x), np.floor(y)
        fx, fy = x - xf, y - yf
        fx = fx * fx * (3 - 2 * fx)
        fy = fy * fy * (3 - 2 * fy)
        xi = xf.astype(np.int64) & 255
        yi = yf.astype(np.int64) & 255
        x1, y1 = (xi + 1) & 255, (yi + 1) & 255
        tb = self.table
        a = tb[yi, xi] + fx * (tb[yi, x1] - tb[yi, xi])
        b = tb[y1, xi] + fx * (tb[y1, x1] - tb[y1, xi])
        return a + fy * (b - a)

    def fbm(self, x, y, octaves: int = 2) -> np.ndarray:
        out = self(x, y)
        amp, total = 0.5, 1.0
        for o in range(1, octaves):
            out = out + amp * self(x * 2**o + 17.0 * o, y * 2**o - 31.0 * o)
            total += amp
            amp *= 0.5
        return out / total


def _hash01(k: np.ndarray) -> np.ndarray:
    """Deterministic pseudo-random value in [0, 1) per integer."""
    k = (k.astype(np.int64) * 2654435761 + 12345) & 0xFFFFFFFF
    k = (k ^ (k >> 15)) * 2246822519 & 0xFFFFFFFF
    return ((k ^ (k >> 13)) & 0xFFFF).astype(np.float32) / 65536.0


def _albedo(scene: Scene, obj, face, p_local, noise: _Noise) -> np.ndarray:
    """sRGB albedo (P, 3) for hit pixels given object ids, faces and box-local hit points."""
    mats = scene.materials
    mid = np.asarray(scene.material_ids)[obj]
    col1 = np.array([m.color for m in mats], dtype=np.float32)[mid]
    col2 = np.array([m.color2 for m in mats], dtype=np.float32)[mid]
    kind = np.array([m.kind for m in mats], dtype=np.int8)[mid]
    scale = np.array([m.scale for m in mats], dtype=np.float32)[mid]
    axis = face // 2
    # texture coordinates on the face plane, metres (+ per-object offset)
    u = np.where(axis == 0, p_local[:, 1], p_local[:, 0])
    v = np.where(axis == 2, p_local[:, 1], p_local[:, 2])
    off = (obj.astype(np.float32) * 7.31) % 50.0
    u = u + off
    v = v + 0.5 * off
    s = scale
    grain = noise.fbm(u * s, v * s, 2)
    mix = np.where((kind == NOISE) | (kind == WINDOW), grain, np.float32(0.0))
    i = np.flatnonzero(kind == WOOD)
    if i.size:
        ui, vi, si = u[i], v[i], s[i]
        wood = np.sin((vi * si * 6.0 + 4.0 * noise(ui * 0.7 * si, vi * 4.0 * si)) * 2.0) * 0.5 + 0.5
        mix[i] = wood**3
    i = np.flatnonzero(kind == TILES)
    if i.size:
        us, vs = u[i] * s[i], v[i] * s[i]
        ti, tj = np.floor(us), np.floor(vs)
        fu, fv = us - ti, vs - tj
        grout = np.minimum(np.minimum(fu, 1 - fu), np.minimum(fv, 1 - fv)) < 0.03
        mix[i] = np.where(grout, 1.0, 0.15 * ((ti + tj) % 2) + 0.1 * grain[i])
    i = np.flatnonzero(kind == STRIPES)
    if i.size:
        mix[i] = (np.sin(v[i] * s[i] * 2 * math.pi) > 0.6) * 0.8 + 0.2 * grain[i]
    albedo = col1 + mix[:, None] * (col2 - col1)
    books = kind == BOOKS
    if books.any():
        bi = np.floor(u[books] * s[books])
        hue = _hash01(bi + 1000 * obj[books])
        val = 0.35 + 0.5 * _hash01(bi * 7 + 3)
        gap = (u[books] * s[books] - bi) < 0.08
        rgb = _hsv_to_rgb(hue, 0.25 + 0.5 * _hash01(bi * 13 + 5), val)
        rgb[gap] *= 0.3
        albedo[books] = rgb
    win = kind == WINDOW
    if win.any():
        grad = np.clip(0.6 + 0.4 * (v[win] - np.floor(v[win])), 0, 1)
        albedo[win] = col1[win] * grad[:, None] + 0.15 * (grain[win, None] - 0.5)
    return np.clip(albedo, 0.0, 1.0)


def _hsv_to_rgb(h, s, v) -> np.ndarray:
    h = np.asarray(h, dtype=np.float32) * 6.0
    s = np.asarray(s, dtype=np.float32)
    v = np.asarray(v, dtype=np.float32)
    k = np.stack([(5.0 + h) % 6, (3.0 + h) % 6, (1.0 + h) % 6], axis=-1)
    return v[..., None] - v[..., None] * s[..., None] * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def render(
    scene: Scene,
    cam: Camera,
    height: int,
    width: int,
    rng: np.random.Generator | None = None,
    noise: float = 0.0,
    blur: float = 0.0,
) -> dict[str, Any]:
    """Render one sample of ``scene`` seen by ``cam`` at ``height`` x ``width`` pixels.

    Geometry outputs are exact (no anti-aliasing); ``rng`` drives textures and sensor noise
    (a fixed default is used when ``None``), ``noise`` is the additive noise std and ``blur``
    the Gaussian sigma in pixels applied to the RGB image only.

    Returns:
        dict with ``rgb`` (H, W, 3) uint8, ``depth`` (H, W) float32 metres (z), ``labels``
        (H, W) uint8 NYU-40, ``normals`` (H, W, 3) float32 unit camera-frame normals facing
        the camera, ``K`` (3, 3) float64, ``has_labels`` and ``has_normals`` True.

    Raises:
        ValueError: for a non-positive image size or a camera outside the room.
    """
    import cv2

    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    rng = np.random.default_rng(0) if rng is None else rng
    t, obj, face, d = cast_rays(scene, cam, height, width)
    if not np.all(np.isfinite(t)):
        raise RuntimeError("synthetic renderer left pixels without a hit inside a closed room")

    # Normals: world face normal -> camera frame (R^T n).
    n_world = _face_normals(scene)[obj, face].astype(np.float32)  # (H, W, 3)
    Rt = cam.R.T.astype(np.float32)
    n_cam = _matvec(Rt, n_world, axis=-1)
    flip = np.sum(n_cam * np.moveaxis(_matvec(Rt, d, axis=0), 0, -1), axis=-1) > 0
    n_cam[flip] *= -1.0

    # World hit points and box-local coordinates (flattened).
    tf = t.reshape(-1)
    of = obj.reshape(-1)
    ff = face.reshape(-1)
    P = cam.position.astype(np.float32)[None, :] + tf[:, None] * d.reshape(3, -1).T
    centers, halves, yaws = _box_arrays(scene)
    rel = P - centers.astype(np.float32)[of]
    cs, sn = np.cos(yaws).astype(np.float32)[of], np.sin(yaws).astype(np.float32)[of]
    p_local = np.stack(
        [cs * rel[:, 0] + sn * rel[:, 1], -sn * rel[:, 0] + cs * rel[:, 1], rel[:, 2]], axis=1
    )
    tex_noise = _Noise(rng)
    albedo = _albedo(scene, of, ff, p_local, tex_noise)
    lin = albedo**2.2

    # Lambertian point lights + ambient.
    nw = n_world.reshape(-1, 3) * np.where(flip.reshape(-1, 1), -1.0, 1.0).astype(np.float32)
    irr = np.full((tf.size, 3), scene.ambient, dtype=np.float32)
    r0sq = 6.0
    for pos, power, color in zip(scene.lights, scene.light_power, scene.light_color):
        L = pos.astype(np.float32) - P
        d2 = np.einsum("ij,ij->i", L, L)
        cosang = np.maximum(np.einsum("ij,ij->i", nw, L), 0.0) / np.sqrt(d2)
        irr += (power * cosang * r0sq / (r0sq + d2))[:, None] * color.astype(np.float32)

    # Ambient-occlusion-like darkening: near room edges and under furniture.
    size = np.asarray(scene.size, dtype=np.float32)
    dist = np.stack([P[:, 0], size[0] - P[:, 0], P[:, 1], size[1] - P[:, 1]], axis=1)
    dist = np.concatenate([dist, P[:, 2:3], size[2] - P[:, 2:3]], axis=1)
    second = np.partition(dist, 1, axis=1)[:, 1]
    ao = 1.0 - 0.35 * np.exp(-second / 0.25)  # second-nearest plane: edges and corners
    ao *= np.where(of >= 6, 1.0 - 0.3 * np.exp(-P[:, 2] / 0.15), 1.0)
    floor_px = np.flatnonzero(of == 4)
    if floor_px.size:
        pf = P[floor_px]
        for k in np.flatnonzero(np.asarray(scene.grounded)):
            c, h, yaw = centers[k], halves[k], yaws[k]
            dxy = pf[:, :2] - c[:2].astype(np.float32)
            lx = np.abs(math.cos(yaw) * dxy[:, 0] + math.sin(yaw) * dxy[:, 1]) - h[0]
            ly = np.abs(-math.sin(yaw) * dxy[:, 0] + math.cos(yaw) * dxy[:, 1]) - h[1]
            out = np.hypot(np.maximum(lx, 0), np.maximum(ly, 0))
            strength = 0.45 * min(1.0, 0.3 / max(c[2] - h[2] + 0.3, 0.3))
            ao[floor_px] *= 1.0 - strength * np.exp(-out / 0.12)
    lin = lin * irr * ao[:, None]

    emis = np.array([m.emissive for m in scene.materials], dtype=np.float32)[
        np.asarray(scene.material_ids)[of]
    ]
    lum = 0.2126 * lin[:, 0] + 0.7152 * lin[:, 1] + 0.0722 * lin[:, 2]
    exposure = 0.2 / max(float(np.mean(lum[emis == 0])) if np.any(emis == 0) else 0.2, 1e-4)
    lin = lin * exposure
    lin = np.where(emis[:, None] > 0, albedo**2.2 * emis[:, None], lin)
    img = np.clip(lin, 0.0, 1.0) ** (1.0 / 2.2)
    img = img.reshape(height, width, 3).astype(np.float32)
    if blur > 0:
        img = cv2.GaussianBlur(img, (0, 0), blur)
    if noise > 0:
        img = img + rng.normal(0.0, noise, img.shape).astype(np.float32)
    rgb = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)

    labels = np.asarray(scene.labels, dtype=np.uint8)[obj]
    return {
        "rgb": rgb,
        "depth": t.astype(np.float32),
        "labels": labels,
        "normals": np.ascontiguousarray(n_cam, dtype=np.float32),
        "K": np.array(cam.K, dtype=np.float64),
        "has_labels": True,
        "has_normals": True,
    }


# --------------------------------------------------------------------------------------------
# Random scenes


def _rand_color(rng, h=(0.0, 1.0), s=(0.0, 1.0), v=(0.0, 1.0)) -> tuple[float, float, float]:
    rgb = _hsv_to_rgb(rng.uniform(*h), rng.uniform(*s), rng.uniform(*v))
    return tuple(float(x) for x in rgb)


def _darker(c, f) -> tuple[float, float, float]:
    return tuple(float(x * f) for x in c)


def _mat_wood(rng) -> Material:
    if rng.random() < 0.3:  # laminate: white, grey or black
        c = _rand_color(rng, s=(0.0, 0.08), v=rng.choice([(0.1, 0.2), (0.45, 0.6), (0.8, 0.95)]))
        return Material(c, _darker(c, 0.9), NOISE, 8.0)
    c = _rand_color(rng, h=(0.05, 0.11), s=(0.35, 0.7), v=(0.3, 0.8))
    return Material(c, _darker(c, 0.7), WOOD, rng.uniform(1.5, 4.0))


def _mat_fabric(rng) -> Material:
    c = _rand_color(rng, s=(0.1, 0.6), v=(0.25, 0.85))
    return Material(c, _darker(c, 0.8), NOISE, rng.uniform(10.0, 30.0))


def _mat_plain(rng, v=(0.7, 0.95), s=(0.0, 0.1)) -> Material:
    c = _rand_color(rng, s=s, v=v)
    return Material(c, _darker(c, 0.95), NOISE, 5.0)


class _Builder:
    """Places furniture and wall items in a room without overlaps and clear of the camera."""

    def __init__(self, rng: np.random.Generator, scene: Scene, cam_xy, opts: SceneOptions):
        self.rng, self.scene, self.cam_xy, self.opts = rng, scene, np.asarray(cam_xy), opts
        self.footprints: list[np.ndarray] = []  # axis-aligned [x0, y0, x1, y1] on the floor
        self.wall_rects: list[list[tuple[float, float, float, float]]] = [[], [], [], []]

    # walls: 0: y = 0, 1: x = Lx, 2: y = Ly, 3: x = 0, in counter-clockwise order
    def wall_frame(self, w: int):
        """(origin, along unit vector, inward normal, length) of wall ``w``."""
        Lx, Ly, _ = self.scene.size
        return [
            (np.array([0.0, 0.0]), np.array([1.0, 0.0]), np.array([0.0, 1.0]), Lx),
            (np.array([Lx, 0.0]), np.array([0.0, 1.0]), np.array([-1.0, 0.0]), Ly),
            (np.array([Lx, Ly]), np.array([-1.0, 0.0]), np.array([0.0, -1.0]), Lx),
            (np.array([0.0, Ly]), np.array([0.0, -1.0]), np.array([1.0, 0.0]), Ly),
        ][w]

    def _free_wall(self, w, a0, a1, z0, z1) -> bool:
        return all(
            a1 <= b0 or a0 >= b1 or z1 <= c0 or z0 >= c1 for b0, b1, c0, c1 in self.wall_rects[w]
        )

    def _free_floor(self, rect, margin=0.05) -> bool:
        x0, y0, x1, y1 = rect
        Lx, Ly, _ = self.scene.size
        if x0 < -1e-6 or y0 < -1e-6 or x1 > Lx + 1e-6 or y1 > Ly + 1e-6:
            return False
        cx, cy = self.cam_xy
        if x0 - 0.5 < cx < x1 + 0.5 and y0 - 0.5 < cy < y1 + 0.5:
            return False
        return all(
            x1 + margin <= f[0] or x0 - margin >= f[2] or y1 + margin <= f[1] or y0 - margin >= f[3]
            for f in self.footprints
        )

    def place(self, parts, base_xy, yaw, grounded=True):
        """Add ``parts`` = [(center_local, half, label, material)] at ``base_xy`` and ``yaw``."""
        cs, sn = math.cos(yaw), math.sin(yaw)
        for c, h, label, mat in parts:
            cw = np.array(
                [base_xy[0] + cs * c[0] - sn * c[1], base_xy[1] + sn * c[0] + cs * c[1], c[2]]
            )
            self.scene.add_box(cw, h, yaw, label, mat, grounded=grounded and c[2] - h[2] < 0.02)

    def footprint(self, base_xy, yaw, hw, hd) -> np.ndarray:
        cs, sn = abs(math.cos(yaw)), abs(math.sin(yaw))
        ex, ey = cs * hw + sn * hd, sn * hw + cs * hd
        return np.array([base_xy[0] - ex, base_xy[1] - ey, base_xy[0] + ex, base_xy[1] + ey])

    def try_against_wall(self, parts, hw, hd, height, tries=12) -> bool:
        """Place a composite with its back (local -y) against a random wall."""
        for _ in range(tries):
            w = int(self.rng.integers(4))
            origin, along, inward, length = self.wall_frame(w)
            if length < 2 * hw + 0.1:
                continue
            a = self.rng.uniform(hw + 0.02, length - hw - 0.02)
            if not self._free_wall(w, a - hw, a + hw, 0.0, height):
                continue
            base = origin + a * along + (hd + 0.005) * inward
            yaw = math.atan2(-inward[0], inward[1])
            fp = self.footprint(base, yaw, hw, hd)
            if self._free_floor(fp):
                self.place(parts, base, yaw)
                self.footprints.append(fp)
                self.wall_rects[w].append((a - hw, a + hw, 0.0, height))
                return True
        return False

    def try_free(self, parts, hw, hd, tries=12, yaw=None) -> tuple | None:
        """Place a composite anywhere on the floor; returns (base_xy, yaw) or None."""
        Lx, Ly, _ = self.scene.size
        for _ in range(tries):
            yw = self.rng.uniform(-math.pi, math.pi) if yaw is None else yaw
            base = np.array([self.rng.uniform(0.3, Lx - 0.3), self.rng.uniform(0.3, Ly - 0.3)])
            fp = self.footprint(base, yw, hw, hd)
            if self._free_floor(fp):
                self.place(parts, base, yw)
                self.footprints.append(fp)
                return base, yw
        return None

    def try_wall_item(self, parts_fn, width, z0, z1, depth, tries=12) -> bool:
        """Mount a thin item (local frame: x along the wall, y out of the wall, z up)."""
        for _ in range(tries):
            w = int(self.rng.integers(4))
            origin, along, inward, length = self.wall_frame(w)
            if length < width + 0.2:
                continue
            a = self.rng.uniform(width / 2 + 0.1, length - width / 2 - 0.1)
            if not self._free_wall(w, a - width / 2, a + width / 2, z0, z1):
                continue
            base = origin + a * along
            yaw = math.atan2(-inward[0], inward[1])
            self.place(parts_fn(depth), base, yaw, grounded=False)
            self.wall_rects[w].append((a - width / 2, a + width / 2, z0, z1))
            return True
        return False


def _legs(hw, hd, height, t, mat, inset=0.03):
    out = []
    for sx in (-1, 1):
        for sy in (-1, 1):
            c = (sx * (hw - inset - t), sy * (hd - inset - t), height / 2)
            out.append((c, (t, t, height / 2), None, mat))
    return out


def _with_label(parts, label):
    return [(c, h, label if lab is None else lab, m) for c, h, lab, m in parts]


def _furniture(kind: str, rng, scene: Scene):
    """Parts in the composite's local frame (origin on the floor, back at -y) and (hw, hd, h)."""
    u = rng.uniform
    L = ID40
    if kind == "table":
        hw, hd, h = u(0.4, 0.9), u(0.35, 0.6), u(0.70, 0.78)
        m = scene.add_material(_mat_wood(rng))
        parts = [((0, 0, h - 0.02), (hw, hd, 0.02), L["table"], m)]
        parts += _legs(hw, hd, h - 0.04, 0.025, m)
        return _with_label(parts, L["table"]), (hw, hd, h)
    if kind == "desk":
        hw, hd, h = u(0.5, 0.8), u(0.3, 0.4), u(0.72, 0.76)
        m = scene.add_material(_mat_wood(rng))
        parts = [((0, 0, h - 0.015), (hw, hd, 0.015), L["desk"], m)]
        parts += [
            ((s * (hw - 0.015), 0, (h - 0.03) / 2), (0.015, hd, (h - 0.03) / 2), L["desk"], m)
            for s in (-1, 1)
        ]
        parts.append(
            ((hw - 0.25, 0, (h - 0.03) / 2), (0.2, hd - 0.01, (h - 0.03) / 2), L["desk"], m)
        )
        return parts, (hw, hd, h)
    if kind == "chair":
        hw, hd, sh = u(0.2, 0.26), u(0.2, 0.25), u(0.42, 0.48)
        m = scene.add_material(_mat_wood(rng) if rng.random() < 0.6 else _mat_fabric(rng))
        bh = u(0.35, 0.5)
        parts = [((0, 0, sh - 0.025), (hw, hd, 0.025), None, m)]
        parts.append(((0, -hd + 0.02, sh + bh / 2), (hw, 0.02, bh / 2), None, m))
        parts += _legs(hw, hd, sh - 0.05, 0.018, m, inset=0.0)
        return _with_label(parts, L["chair"]), (hw, hd, sh + bh)
    if kind == "sofa":
        hw, hd = u(0.8, 1.2), u(0.4, 0.48)
        m = scene.add_material(_mat_fabric(rng))
        parts = [((0, 0.05, 0.21), (hw - 0.2, hd - 0.05, 0.21), None, m)]
        parts.append(((0, -hd + 0.1, 0.4), (hw, 0.1, 0.4), None, m))
        parts += [((s * (hw - 0.1), 0.05, 0.3), (0.1, hd - 0.05, 0.3), None, m) for s in (-1, 1)]
        pm = scene.add_material(_mat_fabric(rng))
        for s in (-1, 1):
            if rng.random() < 0.7:
                parts.append(
                    ((s * (hw - 0.45), -hd + 0.28, 0.6), (0.2, 0.07, 0.18), L["pillow"], pm)
                )
        return _with_label(parts, L["sofa"]), (hw, hd, 0.8)
    if kind == "bed":
        hw, hd = u(0.5, 1.0), u(0.95, 1.05)
        m = scene.add_material(_mat_fabric(rng))
        wm = scene.add_material(_mat_wood(rng))
        parts = [((0, 0.02, 0.25), (hw, hd - 0.02, 0.25), L["bed"], m)]
        parts.append(((0, -hd + 0.02, 0.5), (hw + 0.03, 0.02, 0.5), L["bed"], wm))
        pm = scene.add_material(_mat_plain(rng, v=(0.75, 0.95)))
        n_p = 2 if hw > 0.7 else 1
        for i in range(n_p):
            x = 0.0 if n_p == 1 else (i - 0.5) * hw
            parts.append(
                ((x, -hd + 0.3, 0.56), (min(0.3, hw / n_p - 0.05), 0.18, 0.06), L["pillow"], pm)
            )
        return parts, (hw + 0.03, hd, 1.0)
    if kind == "bookshelf":
        hw, hd, h = u(0.35, 0.6), u(0.14, 0.2), u(1.2, 2.1)
        m = scene.add_material(_mat_wood(rng))
        bm = scene.add_material(Material((0.5, 0.5, 0.5), kind=BOOKS, scale=u(20, 40)))
        t = 0.015
        parts = [((s * (hw - t), 0, h / 2), (t, hd, h / 2), L["bookshelf"], m) for s in (-1, 1)]
        parts.append(((0, -hd + t / 2, h / 2), (hw - 2 * t, t / 2, h / 2), L["bookshelf"], m))
        n = max(2, int(h / 0.35))
        for i in range(n + 1):
            z = i * (h - t) / n + t / 2
            parts.append(((0, 0.0, z), (hw - 2 * t, hd, t / 2), L["bookshelf"], m))
            if i < n and rng.random() < 0.85:
                bh = u(0.15, 0.26)
                bw = (hw - 2 * t) * u(0.5, 1.0)
                parts.append(
                    (
                        (-(hw - 2 * t) + bw, 0.0, z + t / 2 + bh / 2),
                        (bw, hd - 0.02, bh / 2),
                        L["books"],
                        bm,
                    )
                )
        return parts, (hw, hd, h)
    if kind in ("cabinet", "dresser", "night stand", "refridgerator", "otherfurniture"):
        dims = {
            "cabinet": ((0.3, 0.6), (0.2, 0.3), (0.8, 2.0)),
            "dresser": ((0.5, 0.8), (0.22, 0.28), (0.75, 1.1)),
            "night stand": ((0.2, 0.28), (0.18, 0.22), (0.45, 0.6)),
            "refridgerator": ((0.3, 0.4), (0.3, 0.35), (1.6, 1.9)),
            "otherfurniture": ((0.2, 0.6), (0.2, 0.4), (0.4, 1.2)),
        }[kind]
        hw, hd, h = (u(*r) for r in dims)
        if kind == "refridgerator":
            mat = (
                _mat_plain(rng, v=(0.75, 0.95))
                if rng.random() < 0.7
                else _mat_plain(rng, v=(0.5, 0.6))
            )
        else:
            mat = _mat_wood(rng)
        if kind == "dresser":
            mat = Material(mat.color, _darker(mat.color, 0.55), STRIPES, 1.0 / u(0.18, 0.25))
        m = scene.add_material(mat)
        parts = [((0, 0, h / 2), (hw, hd, h / 2), L[kind], m)]
        if kind == "night stand" and rng.random() < 0.7:
            lm = scene.add_material(
                Material(
                    _rand_color(rng, h=(0.08, 0.14), s=(0.2, 0.5), v=(0.9, 1.0)),
                    kind=PLAIN,
                    emissive=0.9,
                )
            )
            parts.append(((0, 0, h + 0.2), (0.1, 0.1, 0.11), L["lamp"], lm))
            parts.append(((0, 0, h + 0.045), (0.02, 0.02, 0.045), L["lamp"], m))
        return parts, (hw, hd, h)
    if kind == "counter":
        hw, hd = u(0.6, 1.5), u(0.28, 0.32)
        cm = scene.add_material(_mat_wood(rng))
        tm = scene.add_material(
            _mat_plain(rng, v=(0.3, 0.9))
            if rng.random() < 0.5
            else Material(
                _rand_color(rng, s=(0, 0.1), v=(0.4, 0.9)),
                _rand_color(rng, s=(0, 0.1), v=(0.2, 0.5)),
                NOISE,
                20.0,
            )
        )
        parts = [((0, -0.02, 0.44), (hw - 0.01, hd - 0.02, 0.44), L["cabinet"], cm)]
        parts.append(((0, 0.0, 0.9), (hw, hd, 0.02), L["counter"], tm))
        if rng.random() < 0.6:
            parts.append(
                (
                    (u(-hw + 0.3, hw - 0.3), 0.0, 0.935),
                    (0.22, 0.17, 0.015),
                    L["sink"],
                    scene.add_material(_mat_plain(rng, v=(0.6, 0.8))),
                )
            )
        parts.append(((0, -hd + 0.15, 1.6), (hw, 0.15, 0.35), L["cabinet"], cm))  # wall cabinets
        return parts, (hw, hd, 1.95)
    if kind in ("toilet", "bathtub", "sink"):
        wm = scene.add_material(_mat_plain(rng, v=(0.88, 0.98), s=(0.0, 0.03)))
        if kind == "toilet":
            parts = [
                ((0, 0.08, 0.2), (0.18, 0.25, 0.2), L["toilet"], wm),
                ((0, -0.22, 0.55), (0.2, 0.09, 0.17), L["toilet"], wm),
            ]
            return parts, (0.2, 0.33, 0.72)
        if kind == "bathtub":
            hw, hd = u(0.7, 0.85), u(0.35, 0.4)
            parts = [((0, 0, 0.27), (hw, hd, 0.27), L["bathtub"], wm)]
            return parts, (hw, hd, 0.55)
        parts = [
            ((0, 0, 0.8), (0.25, 0.22, 0.06), L["sink"], wm),
            ((0, -0.1, 0.37), (0.08, 0.08, 0.37), L["sink"], wm),
        ]
        return parts, (0.25, 0.22, 0.86)
    if kind == "box":
        hw, hd, h = u(0.1, 0.3), u(0.1, 0.3), u(0.15, 0.5)
        m = scene.add_material(
            Material(
                _rand_color(rng, h=(0.07, 0.1), s=(0.4, 0.6), v=(0.5, 0.75)), kind=NOISE, scale=15.0
            )
        )
        return [((0, 0, h / 2), (hw, hd, h / 2), L["box"], m)], (hw, hd, h)
    raise ValueError(f"unknown furniture kind {kind!r}")


_ROOM_FURNITURE = {
    "bedroom": (
        ["bed"],
        ["night stand", "dresser", "cabinet", "chair", "box", "desk", "bookshelf"],
    ),
    "living": (
        ["sofa"],
        ["table", "chair", "bookshelf", "cabinet", "box", "otherfurniture", "sofa"],
    ),
    "office": (
        ["desk"],
        ["chair", "bookshelf", "cabinet", "box", "table", "desk", "otherfurniture"],
    ),
    "kitchen": (["counter"], ["refridgerator", "table", "chair", "cabinet", "box", "counter"]),
    "bathroom": (["toilet"], ["sink", "bathtub", "cabinet", "box"]),
}
_FREE_STANDING = {"table", "chair", "box", "otherfurniture"}


def _add_wall_items(b: _Builder, rng, n_extra: int) -> None:
    u = rng.uniform
    L = ID40
    s = b.scene
    if rng.random() < 0.85:  # door
        dm = s.add_material(_mat_wood(rng) if rng.random() < 0.6 else _mat_plain(rng))
        w = u(0.8, 0.95)
        b.try_wall_item(
            lambda d: [((0, d, 1.03), (w / 2, d, 1.03), L["door"], dm)], w, 0.0, 2.1, 0.02
        )
    for _ in range(int(rng.integers(0, 3))):  # windows, with blinds or curtains
        w, z0 = u(0.8, 1.8), u(0.7, 1.1)
        z1 = min(z0 + u(1.0, 1.5), s.size[2] - 0.2)
        sky = Material(
            _rand_color(rng, h=(0.52, 0.62), s=(0.05, 0.3), v=(0.85, 1.0)),
            kind=WINDOW,
            emissive=u(1.3, 2.2),
        )
        wm = s.add_material(sky)
        fm = s.add_material(_mat_plain(rng, v=(0.8, 0.95)))
        style = rng.choice(["plain", "blinds", "curtain"])

        def parts(d, w=w, z0=z0, z1=z1, wm=wm, fm=fm, style=style):
            zc, hz = (z0 + z1) / 2, (z1 - z0) / 2
            out = [((0, 0.005, zc), (w / 2, 0.005, hz), L["window"], wm)]
            out += [
                ((0, 0.02, z), (w / 2 + 0.05, 0.02, 0.04), L["window"], fm)
                for z in (z0 - 0.04, z1 + 0.04)
            ]
            if style == "blinds":
                bm = s.add_material(
                    Material(
                        _rand_color(rng, s=(0, 0.15), v=(0.75, 0.95)),
                        (0.35, 0.35, 0.35),
                        STRIPES,
                        1 / 0.03,
                    )
                )
                bz0 = z0 + (z1 - z0) * u(0.2, 0.8)
                out.append(
                    ((0, 0.03, (bz0 + z1) / 2), (w / 2, 0.01, (z1 - bz0) / 2), L["blinds"], bm)
                )
            elif style == "curtain":
                cc = _rand_color(rng, s=(0.1, 0.6), v=(0.3, 0.9))
                cm = s.add_material(Material(cc, _darker(cc, 0.75), STRIPES, 6.0))
                ch = (min(z1 + 0.15, s.size[2]) - 0.02) / 2
                for sx in (-1, 1):
                    out.append(
                        ((sx * (w / 2 + 0.1), 0.06, ch + 0.02), (0.22, 0.02, ch), L["curtain"], cm)
                    )
            return out

        b.try_wall_item(parts, w + 0.7, 0.0 if style == "curtain" else z0 - 0.1, z1 + 0.2, 0.02)
    singles = ["picture", "picture", "whiteboard", "mirror", "television", "shelves", "picture"]
    for _ in range(n_extra):
        kind = singles[int(rng.integers(len(singles)))]
        if kind == "shelves":
            w, z = u(0.6, 1.2), u(1.2, 1.8)
            m = s.add_material(_mat_wood(rng))
            pm = s.add_material(_mat_fabric(rng))

            def parts(d, w=w, z=z, m=m, pm=pm):
                out = [
                    ((0, 0.12, z + i * 0.35), (w / 2, 0.12, 0.012), L["shelves"], m)
                    for i in range(2)
                ]
                out.append(
                    ((u(-w / 3, w / 3), 0.1, z + 0.1), (0.08, 0.06, 0.09), L["otherprop"], pm)
                )
                return out

            b.try_wall_item(parts, w, z - 0.05, z + 0.6, 0.12)
            continue
        w, h, z = {
            "picture": (u(0.3, 0.9), u(0.3, 0.7), u(1.2, 1.6)),
            "whiteboard": (u(1.2, 2.0), u(0.9, 1.2), u(0.9, 1.1)),
            "mirror": (u(0.4, 0.8), u(0.6, 1.1), u(1.0, 1.3)),
            "television": (u(0.8, 1.3), u(0.5, 0.75), u(0.9, 1.3)),
        }[kind]
        if kind == "picture":
            c1, c2 = _rand_color(rng, v=(0.2, 1.0)), _rand_color(rng, v=(0.2, 1.0))
            mat = Material(c1, c2, rng.choice([NOISE, TILES, STRIPES]), u(2.0, 8.0))
        elif kind == "whiteboard":
            mat = _mat_plain(rng, v=(0.92, 1.0), s=(0.0, 0.02))
        elif kind == "mirror":
            mat = Material(
                _rand_color(rng, h=(0.5, 0.6), s=(0.05, 0.15), v=(0.6, 0.8)),
                (0.4, 0.42, 0.45),
                NOISE,
                3.0,
            )
        else:
            mat = _mat_plain(rng, v=(0.03, 0.1), s=(0.0, 0.05))
        m = s.add_material(mat)
        d = 0.04 if kind == "television" else 0.01
        b.try_wall_item(
            lambda dd, w=w, h=h, z=z, m=m, kind=kind: [
                ((0, dd, z + h / 2), (w / 2, dd, h / 2), L[kind], m)
            ],
            w,
            z,
            z + h,
            d,
        )


def sample_scene(
    rng: np.random.Generator, height: int, width: int, options: SceneOptions | None = None
) -> tuple[Scene, Camera]:
    """Draw a random furnished room and a camera inside it.

    The camera is 0.8-1.8 m high (``options.camera_height``), at least 0.5 m from walls and
    furniture, with random yaw, pitch and roll, and NYU-like intrinsics scaled to
    ``height`` x ``width`` with the focal length jittered by ``options.focal_jitter``.
    """
    opts = options or SceneOptions()
    u = rng.uniform
    size = (u(*opts.room_x), u(*opts.room_y), u(*opts.room_z))
    room_type = str(rng.choice(list(opts.room_types)))
    wall_c = _rand_color(rng, s=(0.0, 0.25), v=(0.65, 0.95))
    wall = Material(wall_c, _darker(wall_c, 0.92), NOISE, u(2.0, 6.0))
    fk = rng.random()
    if room_type in ("kitchen", "bathroom") or fk < 0.25:
        c = _rand_color(rng, s=(0.0, 0.2), v=(0.5, 0.95))
        floor = Material(c, _darker(c, 0.75), TILES, 1.0 / u(0.3, 0.6))
    elif fk < 0.65:
        floor = _mat_wood(rng)
    else:
        floor = _mat_fabric(rng)
    ceiling = _mat_plain(rng, v=(0.85, 0.97), s=(0.0, 0.05))
    scene = Scene.empty_room(size, wall, floor, ceiling)
    scene.lights.clear(), scene.light_power.clear(), scene.light_color.clear()
    scene.ambient = u(0.25, 0.5)
    for _ in range(int(rng.integers(opts.lights[0], opts.lights[1] + 1))):
        pos = (u(0.5, size[0] - 0.5), u(0.5, size[1] - 0.5), size[2] - u(0.1, 0.6))
        scene.add_light(
            pos, u(0.6, 1.4), _rand_color(rng, h=(0.06, 0.15), s=(0.0, 0.25), v=(1.0, 1.0))
        )

    cam_xy = np.array([u(0.5, size[0] - 0.5), u(0.5, size[1] - 0.5)])
    cam_z = u(*opts.camera_height)
    b = _Builder(rng, scene, cam_xy, opts)
    _add_wall_items(b, rng, int(rng.integers(opts.wall_items[0], opts.wall_items[1] + 1)))

    anchors, extras = _ROOM_FURNITURE[room_type]
    n = int(rng.integers(opts.furniture[0], opts.furniture[1] + 1))
    kinds = list(anchors) + [
        extras[int(rng.integers(len(extras)))] for _ in range(n - len(anchors))
    ]
    for kind in kinds:
        parts, (hw, hd, h) = _furniture(kind, rng, scene)
        if kind in _FREE_STANDING and rng.random() < 0.7:
            placed = b.try_free(parts, hw, hd)
            if placed is not None and kind == "table":  # chairs around the table
                base, yaw = placed
                for side in rng.permutation(4)[: int(rng.integers(1, 5))]:
                    ang = yaw + side * math.pi / 2
                    reach = (hd if side % 2 == 0 else hw) + 0.25
                    dirn = np.array([-math.sin(ang), math.cos(ang)])
                    cparts, (chw, chd, _) = _furniture("chair", rng, scene)
                    cb = base + reach * dirn
                    fp = b.footprint(cb, ang, chw, chd)
                    if b._free_floor(fp, margin=0.0):
                        b.place(cparts, cb, ang + math.pi)
                        b.footprints.append(fp)
        else:
            b.try_against_wall(parts, hw, hd, h)
    if rng.random() < 0.4:  # floor mat / rug
        m = scene.add_material(_mat_fabric(rng))
        hw, hd = u(0.3, 1.0), u(0.25, 0.7)
        b.try_free([((0, 0, 0.004), (hw, hd, 0.004), ID40["floor mat"], m)], hw, hd)
    if rng.random() < 0.6:  # ceiling lamp
        lm = scene.add_material(Material((1.0, 0.95, 0.85), kind=PLAIN, emissive=1.6))
        r, drop = u(0.12, 0.3), u(0.05, min(0.5, size[2] - cam_z - 0.4))
        xy = (u(0.6, size[0] - 0.6), u(0.6, size[1] - 0.6))
        scene.add_box((*xy, size[2] - drop / 2), (r, r, drop / 2), u(0, math.pi), ID40["lamp"], lm)

    # Look at the furnished part of the room (like a person taking a photo), with jitter.
    if b.footprints and rng.random() < 0.85:
        fp = b.footprints[int(rng.integers(len(b.footprints)))]
        target = np.array([(fp[0] + fp[2]) / 2, (fp[1] + fp[3]) / 2])
    else:
        target = np.array([u(0.0, size[0]), u(0.0, size[1])])
    to = target - cam_xy
    yaw = math.atan2(to[1], to[0]) + math.radians(rng.normal(0.0, 15.0))
    pitch = math.radians(u(*opts.pitch_deg))
    roll = math.radians(u(*opts.roll_deg))
    sy, sx = height / NYU_SIZE[0], width / NYU_SIZE[1]
    f = 1.0 + u(-opts.focal_jitter, opts.focal_jitter)
    K = np.array(
        [
            [NYU_K[0, 0] * sx * f, 0.0, (NYU_K[0, 2] + 0.5) * sx - 0.5],
            [0.0, NYU_K[1, 1] * sy * f, (NYU_K[1, 2] + 0.5) * sy - 0.5],
            [0.0, 0.0, 1.0],
        ]
    )
    cam = Camera.look((cam_xy[0], cam_xy[1], cam_z), yaw, pitch, roll, K)
    return scene, cam


def render_scene(
    rng: np.random.Generator, height: int, width: int, options: SceneOptions | None = None
) -> dict[str, Any]:
    """Random scene and camera (:func:`sample_scene`) rendered at ``height`` x ``width``.

    Returns the sample dict of :func:`render` (rgb, depth, labels, normals, K, has_*).
    """
    opts = options or SceneOptions()
    scene, cam = sample_scene(rng, height, width, opts)
    return render(scene, cam, height, width, rng, noise=opts.noise, blur=opts.blur)


class SyntheticScenes:
    """Map-style data set of procedural indoor scenes; item ``i`` depends only on (seed, i).

    Args:
        length: number of items.
        height, width: image size in pixels.
        seed: base seed; item ``i`` uses ``np.random.default_rng([seed, i])``.
        **options: fields of :class:`SceneOptions` (e.g. ``noise=0``, ``furniture=(2, 4)``).

    Raises:
        ValueError: for a negative length or non-positive size; TypeError for unknown options.
    """

    def __init__(self, length: int, height: int = 240, width: int = 320, seed: int = 0, **options):
        if length < 0:
            raise ValueError(f"length must be >= 0, got {length}")
        if height <= 0 or width <= 0:
            raise ValueError(f"image size must be positive, got {height}x{width}")
        self.length, self.height, self.width, self.seed = (
            int(length),
            int(height),
            int(width),
            int(seed),
        )
        self.options = SceneOptions.from_kwargs(**options)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not -self.length <= i < self.length:
            raise IndexError(f"index {i} out of range for SyntheticScenes of length {self.length}")
        i = i % self.length
        rng = np.random.default_rng([self.seed, i])
        return render_scene(rng, self.height, self.width, self.options)


def _label_colors() -> np.ndarray:
    """(41, 3) uint8 distinct colours for the preview (0 = black)."""
    k = np.arange(41)
    rgb = _hsv_to_rgb(
        _hash01(k * 31 + 7), 0.5 + 0.5 * _hash01(k * 17 + 1), 0.55 + 0.45 * _hash01(k * 5 + 3)
    )
    out = (rgb * 255).astype(np.uint8)
    out[0] = 0
    return out


def save_preview(
    path: str | os.PathLike, n: int = 4, height: int = 240, width: int = 320, seed: int = 0
) -> Path:
    """Write a PNG grid of ``n`` samples, one row each: rgb | depth | labels | normals.

    Depth is shown with the turbo colour map over 0-8 m, labels with a fixed palette,
    normals as ``(n + 1) / 2``. Tiles are half the render size. Written atomically.
    """
    import cv2
    from matplotlib import colormaps

    from joint_perception.io_utils import atomic_write_bytes

    ds = SyntheticScenes(n, height, width, seed=seed)
    turbo = colormaps["turbo"]
    colors = _label_colors()
    rows = []
    for i in range(n):
        s = ds[i]
        depth = (turbo(np.clip(s["depth"] / 8.0, 0, 1))[..., :3] * 255).astype(np.uint8)
        normals = ((s["normals"] + 1.0) * 127.5).astype(np.uint8)
        tiles = [s["rgb"], depth, colors[s["labels"]], normals]
        tiles = [
            cv2.resize(t, (width // 2, height // 2), interpolation=cv2.INTER_AREA) for t in tiles
        ]
        rows.append(np.concatenate(tiles, axis=1))
    grid = np.concatenate(rows, axis=0)
    ok, buf = cv2.imencode(
        ".png", cv2.cvtColor(grid, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9]
    )
    if not ok:
        raise RuntimeError("PNG encoding of the preview failed")
    return atomic_write_bytes(path, buf.tobytes())


if __name__ == "__main__":  # python -m joint_perception.data.synthetic [out.png]
    import sys

    print(save_preview(sys.argv[1] if len(sys.argv) > 1 else "docs/images/synthetic_samples.png"))
