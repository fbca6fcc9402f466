"""Procedural indoor scenes: the project's own RGB + depth + labels + normals training data.

A scene is a closed room (axis-aligned box: floor, ceiling, four walls) furnished with
yaw-rotated boxes that carry NYU-40 labels (:mod:`joint_perception.nyuv2_classes`).

Layout
    Eight NYUv2-like room types with their own sizes (bedrooms, living rooms, kitchens,
    offices, bathrooms, dining rooms, 1.3-2.4 m wide corridors, open-plan offices up to
    14 m). Floor-standing composites (tables and coffee tables with chairs, desks with office
    chairs, desk clusters, sofas, armchairs, beds with duvets and pillows, bookshelves, open
    shelving, cabinets, wardrobes, file cabinets, dressers, night stands with lamps, fridges,
    TV stands, counters with sinks and wall cabinets, floor lamps, plants, bathroom fixtures
    with shower curtains, boxes, bins, rugs); wall items (framed doors, windows with blinds,
    curtains and radiators, pictures, posters, whiteboards, mirrors, TVs, shelves, notices,
    clocks, towels, fire extinguishers, switches and sockets); soffits, ducts and beams; and
    clutter on the tops of the furniture and on the floor (books, boxes, bottles, cups, bowls,
    papers, laptops, monitors with keyboards, desk lamps, photo frames, bags, clothes,
    appliances, plants).
Camera
    Held by a person or a robot: 0.3-1.8 m high, clear of the furniture, sometimes just in
    front of a wall, aimed at the furniture with a slightly downward pitch (blank close-ups
    are re-aimed). Intrinsics from wide (``fx = 0.45 W``) to normal (``0.9 W``) lenses,
    jittered principal point, 4:3 and 16:9 sensors resized to the output (``fy != fx``);
    every geometric output is exact for the returned ``K``.
Appearance
    Ceiling panels, downlights and pendants as area lights with cosine falloff, daylight
    through windows, lamps; colour temperatures 2700-6500 K (:func:`kelvin_to_rgb`), a
    tinted ambient term, soft shadows (shadow rays at up to ~2000 pixels to jittered points
    of the emitters, upsampled within objects), ambient occlusion at room edges and under
    furniture, Blinn-Phong highlights on glossy floors, tables, counters and screens.
    Procedural textures: painted walls with gradients and baseboards, wallpaper, two-tone
    walls, wood grain and floor planks, tiles, carpet, woven fabric and curtains, drop
    ceilings, image-like pictures and posters, text on paper and whiteboards, cabinet fronts
    with seams and handles, book spines, views of buildings or trees; thin lines stay
    visible and dense detail fades with the pixel footprint instead of aliasing.
Camera simulation (:func:`draw_camera_effects`, :func:`apply_camera_effects`)
    In linear light: exposure (auto exposure, compensation, room brightness), glare,
    vignetting, defocus and motion blur, optical blur, native sensor resolution, shot + read
    noise; then white balance (partial adaptation, errors), colour matrix, gamma, S-curve
    and JPEG compression. None of it touches depth, labels or normals.

Every feature can be switched off through :class:`SceneOptions` (:data:`BASIC_OPTIONS`
switches all of them off). Rendering is exact ray casting in numpy, vectorised over pixels:
every box is tested only against the rays inside its projected bounding rectangle. Each
scene draws from separate random streams (layout, materials, clutter, lights, pose,
intrinsics, camera), so a switched feature changes only its own part of the scene.

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
CARPET, WEAVE, PAINT, IMAGE, TEXT, GRID, PANEL = range(7, 14)
#: PANEL pattern bits: layout (0 doors, 1 drawers, 2 room door) + _GRAIN for a wood base
_GRAIN = 4
_NEAR = 1e-3  # metres; hits closer than this along the ray are ignored
_LUMA = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)  # linear-light luminance weights


@dataclass
class Material:
    """Surface appearance. Colours are sRGB in [0, 1]; ``scale`` is texture cycles per metre.

    ``color2`` is the secondary colour of a pattern (grain, grout, ink, seams), ``color3`` an
    accent (picture frames, handles, baseboards); ``pattern`` picks a variant of the texture
    ``kind``; ``gloss`` is the specular reflectance at normal incidence (0 = matte) with
    Blinn-Phong exponent ``shininess``; ``emissive`` > 0 makes the surface a light-emitting
    one whose radiance is ``emissive`` times the auto-exposure target (windows, lamps).
    """

    color: tuple[float, float, float]
    color2: tuple[float, float, float] = (0.0, 0.0, 0.0)
    kind: int = PLAIN
    scale: float = 1.0
    emissive: float = 0.0
    color3: tuple[float, float, float] = (0.0, 0.0, 0.0)
    pattern: int = 0
    gloss: float = 0.0
    shininess: float = 40.0


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
        lights: (M, 3) light positions, ``light_power`` (M,), ``light_color`` (M, 3) linear
            RGB, ``light_extent`` (M, 2, 3) half-edge vectors of a rectangular emitter (zeros:
            a point light), ``light_dir`` (M, 3) unit emission axis of a cosine emitter
            (zeros: emits equally in all directions).
        ambient: ambient (indirect) light level, ``ambient_color`` its linear RGB tint.
    """

    size: tuple[float, float, float]
    materials: list = field(default_factory=list)
    centers: list = field(default_factory=list)
    halves: list = field(default_factory=list)
    yaws: list = field(default_factory=list)
    labels: list = field(default_factory=list)
    material_ids: list = field(default_factory=list)
    grounded: list = field(default_factory=list)
    lights: list = field(default_factory=list)
    light_power: list = field(default_factory=list)
    light_color: list = field(default_factory=list)
    light_extent: list = field(default_factory=list)
    light_dir: list = field(default_factory=list)
    ambient: float = 0.35
    ambient_color: tuple[float, float, float] = (1.0, 1.0, 1.0)

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

    def add_light(
        self, position, power: float = 1.0, color=(1.0, 1.0, 1.0), extent=None, direction=None
    ) -> None:
        """Add a light at world ``position`` (metres) with relative ``power`` and linear RGB
        ``color``. ``extent``: two half-edge vectors (2, 3) of a rectangular area emitter
        (soft shadows, broad highlights); ``direction``: its emission axis, for a cosine
        (downlight, window) emitter. Both default to an isotropic point light."""
        ext = np.zeros((2, 3)) if extent is None else np.asarray(extent, dtype=np.float64)
        if ext.shape != (2, 3):
            raise ValueError(f"light extent must be two 3-vectors, got shape {ext.shape}")
        axis = np.zeros(3) if direction is None else np.asarray(direction, dtype=np.float64)
        if direction is not None:
            axis = axis / np.linalg.norm(axis)
        self.lights.append(np.asarray(position, dtype=np.float64))
        self.light_power.append(float(power))
        self.light_color.append(np.asarray(color, dtype=np.float64))
        self.light_extent.append(ext)
        self.light_dir.append(axis)

    def clear_lights(self) -> None:
        """Remove all lights."""
        for lst in (self.lights, self.light_power, self.light_color):
            lst.clear()
        self.light_extent.clear(), self.light_dir.clear()

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


_ROOM_TYPES = (
    "bedroom",
    "living",
    "kitchen",
    "office",
    "bathroom",
    "dining",
    "corridor",
    "open_office",
)
_CHOICES = {
    "intrinsics": ("varied", "nyu"),
    "lighting": ("area", "point"),
    "textures": ("rich", "basic"),
}


@dataclass
class SceneOptions:
    """Knobs of the random scene distribution (all passable as ``**options``).

    Every realism feature has its own switch so its effect can be ablated; the defaults turn
    all of them on. :data:`BASIC_OPTIONS` turns them all off.

    Layout:
        room_x, room_y, room_z: (min, max) clamps of the room extent in metres (each room type
            draws its own typical size inside them).
        room_types: furnishing styles to draw from (weighted like NYUv2's scene mix).
        furniture: (min, max) number of floor-standing furniture composites (scaled by area).
        wall_items: (min, max) number of wall-mounted items besides doors and windows.
        clutter: (min, max) number of small objects on tables, desks, counters, shelves and
            the floor (books, boxes, bottles, cups, papers, bags, monitors ...); (0, 0) = none.
    Camera pose:
        camera_height: (min, max) optical centre height in metres (triangular, mode 1.45 m).
        pitch_deg, roll_deg: (min, max) camera pitch (up-positive) and roll in degrees; pitch
            is triangular with its mode 2 degrees down (3 up below 0.8 m).
        near_wall: probability that the camera stands 0.35-0.9 m in front of a wall (a
            doorway or corner shot), looking into the room.
    Intrinsics:
        intrinsics: ``"varied"`` (below) or ``"nyu"`` (NYUv2 intrinsics scaled to the image,
            focal length jittered by ``focal_jitter``, the earlier model).
        focal_range: (min, max) of ``fx / W`` (0.45: wide, 96 deg horizontal FOV; 0.9: normal).
        principal_jitter: principal point offset from the centre, fraction of W and H.
        aspect_ratios: native sensor aspect ratios; a sensor whose aspect differs from the
            output's is resized to it (as the perception node does), so ``fy != fx``.
        sensor_widths: native sensor widths in pixels; RGB detail and noise follow a resize
            from that width (empty: rendered at the output size).
    Lighting and materials:
        lighting: ``"area"`` (ceiling panels, downlights, pendant/table/floor lamps and window
            daylight as area emitters with cosine falloff) or ``"point"`` (point lights).
        lights: (min, max) number of ceiling light sources.
        color_temperature: (min, max) Kelvin of artificial lights (window daylight: 5500-7500
            K); an empty tuple makes all lights white.
        window_light: windows let in daylight (or show a night sky).
        shadows: soft shadows of furniture (shadow rays at reduced resolution to jittered
            points of each emitter, upsampled within objects) and contact shadows.
        specular: glossy floors, tables, counters, screens (Blinn-Phong highlights).
        textures: ``"rich"`` (painted walls with gradients and baseboards, wallpaper,
            carpet, woven fabric, drop ceilings, posters with image-like content, text on
            paper and whiteboards, cabinet doors with seams and handles, building views) or
            ``"basic"`` (value noise, wood, tiles, stripes and book spines only).
    Camera simulation (``camera_effects=False``: gamma + ``blur`` + additive ``noise`` only):
        noise: sensor noise std at mid grey and base gain, sRGB units; shot + read noise added
            in linear light and amplified in dark rooms; 0 disables.
        blur: Gaussian optical blur sigma in pixels (0 disables).
        defocus, motion_blur: maximum defocus disc radius / motion-blur length as a fraction
            of the image width (small values are more likely; motion grows in dark rooms).
        vignetting: maximum relative light loss in the corners.
        glare: maximum fraction of over-exposed light spread as a wide glow.
        jpeg_quality: (min, max) JPEG quality of the output; (0, 0) disables.
        white_balance: std of the white-balance error per channel; with 0 the camera fully
            neutralises the light colour, otherwise it adapts only partially (warm casts).
        color_jitter: std of the colour-matrix cross-talk; also enables a random ISP
            saturation boost.
        exposure_ev: (min, max) exposure compensation in stops.
        brightness: (min, max) room illuminance relative to a well-lit room (log-uniform);
            darker rooms are imaged darker, noisier and with more motion blur.
        contrast: (min, max) strength of the S-shaped tone curve.
        sharpen: (min, max) amount of the ISP's unsharp masking (sigma 1 pixel).
    """

    room_x: tuple[float, float] = (1.3, 14.0)
    room_y: tuple[float, float] = (1.3, 14.0)
    room_z: tuple[float, float] = (2.3, 3.6)
    room_types: tuple[str, ...] = _ROOM_TYPES
    furniture: tuple[int, int] = (8, 16)
    wall_items: tuple[int, int] = (5, 12)
    clutter: tuple[int, int] = (10, 30)
    camera_height: tuple[float, float] = (0.3, 1.8)
    pitch_deg: tuple[float, float] = (-30.0, 20.0)
    roll_deg: tuple[float, float] = (-5.0, 5.0)
    near_wall: float = 0.3
    intrinsics: str = "varied"
    focal_range: tuple[float, float] = (0.45, 0.9)
    principal_jitter: float = 0.03
    aspect_ratios: tuple[float, ...] = (4 / 3, 16 / 9)
    sensor_widths: tuple[int, ...] = (320, 640, 1280, 1920)
    focal_jitter: float = 0.1
    lighting: str = "area"
    lights: tuple[int, int] = (1, 3)
    color_temperature: tuple[float, ...] = (2700.0, 6500.0)
    window_light: bool = True
    shadows: bool = True
    specular: bool = True
    textures: str = "rich"
    camera_effects: bool = True
    noise: float = 0.01
    blur: float = 0.5
    defocus: float = 0.005
    motion_blur: float = 0.012
    vignetting: float = 0.4
    glare: float = 0.05
    jpeg_quality: tuple[int, int] = (50, 95)
    white_balance: float = 0.05
    color_jitter: float = 0.03
    exposure_ev: tuple[float, float] = (0.0, 0.6)
    brightness: tuple[float, float] = (0.25, 4.0)
    contrast: tuple[float, float] = (0.2, 0.7)
    sharpen: tuple[float, float] = (0.0, 1.2)

    def __post_init__(self):
        for name, allowed in _CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        unknown = sorted(set(self.room_types) - set(_ROOM_TYPES))
        if unknown or not self.room_types:
            raise ValueError(f"unknown room type(s) {unknown}; known: {list(_ROOM_TYPES)}")

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> SceneOptions:
        """Build from keyword arguments; unknown names raise ``TypeError`` naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise TypeError(f"unknown synthetic scene option(s) {unknown}; known: {sorted(known)}")
        tuples = {k: tuple(v) for k, v in kwargs.items() if isinstance(v, list)}  # from YAML
        return cls(**{**kwargs, **tuples})


#: Options with every realism feature of :class:`SceneOptions` switched off (close to the
#: earlier generator's distribution: NYU intrinsics, five room types, point lights, basic
#: textures, no clutter, gamma + blur + additive noise), for ablations:
#: ``SyntheticScenes(n, **BASIC_OPTIONS)``.
BASIC_OPTIONS: dict[str, Any] = dict(
    room_x=(3.0, 8.0),
    room_y=(3.0, 8.0),
    room_z=(2.4, 3.2),
    room_types=("bedroom", "living", "office", "kitchen", "bathroom"),
    furniture=(6, 12),
    wall_items=(2, 5),
    clutter=(0, 0),
    camera_height=(0.8, 1.8),
    pitch_deg=(-25.0, 10.0),
    near_wall=0.0,
    intrinsics="nyu",
    sensor_widths=(),
    lighting="point",
    lights=(1, 3),
    color_temperature=(),
    window_light=False,
    shadows=False,
    specular=False,
    textures="basic",
    camera_effects=False,
    blur=0.6,
)


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
    for k, v0, v1, u0, u1, zmin in _projected_rects(scene, cam, height, width):
        sl = (slice(v0, v1), slice(u0, u1))
        tsl = t[sl]
        if tsl.max() <= zmin:
            continue  # everything in its rectangle is already nearer than the box can be
        c, h, yaw = centers[k], halves[k], yaws[k]
        cs, sn = math.cos(yaw), math.sin(yaw)
        rx, ry, rz = o - c
        lo = (cs * rx + sn * ry, -sn * rx + cs * ry, rz)
        ddx, ddy, ddz = dx[sl], dy[sl], dz[sl]
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
            continue
        tnh = tn[hit]
        tsl[hit] = tnh
        # entering face: the first axis whose slab is entered last, on its - side when
        # moving in the + direction
        na = np.argmax(np.stack([tm[hit] for tm in tmins]) == tnh, axis=0).astype(np.int8)
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


# --------------------------------------------------------------------------------------------
# Occlusion: ambient occlusion and soft shadows at reduced resolution


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


# --------------------------------------------------------------------------------------------
# Textures


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
    k = (np.asarray(k).astype(np.int64) * 2654435761 + 12345) & 0xFFFFFFFF
    k = (k ^ (k >> 15)) * 2246822519 & 0xFFFFFFFF
    return ((k ^ (k >> 13)) & 0xFFFF).astype(np.float32) / 65536.0


def _hsv_to_rgb(h, s, v) -> np.ndarray:
    h = np.asarray(h, dtype=np.float32) * 6.0
    s = np.asarray(s, dtype=np.float32)
    v = np.asarray(v, dtype=np.float32)
    k = np.stack([(5.0 + h) % 6, (3.0 + h) % 6, (1.0 + h) % 6], axis=-1)
    return v[..., None] - v[..., None] * s[..., None] * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def _lod(footprint: np.ndarray, freq) -> np.ndarray:
    """Weight in [0, 1] of texture detail of ``freq`` cycles per metre on a surface seen with
    pixel ``footprint`` metres: 1 when well resolved, 0 near the Nyquist limit (detail that
    would alias fades to its mean, a cheap stand-in for texture filtering)."""
    return np.clip((0.5 - footprint * freq) * 3.3, 0.0, 1.0)


def _lines(dist, width, footprint, period=np.inf) -> np.ndarray:
    """Coverage in [0, 1] of lines ``width`` metres wide, ``dist`` metres from a line centre,
    seen with pixel ``footprint``: a line thinner than a pixel still draws a one-pixel line
    of partial contrast ``width / footprint`` (as a camera would), and lines less than ~2.5
    pixels apart fade to their mean coverage ``width / period`` (no aliasing)."""
    fp = np.maximum(footprint, 1e-6)
    cov = (dist < np.maximum(width, fp) / 2) * np.minimum(1.0, width / fp)
    return np.where(fp * 2.5 > period, width / period, cov).astype(np.float32)


def _mix(c1: np.ndarray, c2: np.ndarray, t) -> np.ndarray:
    return c1 + np.asarray(t, dtype=np.float32)[:, None] * (c2 - c1)


def _frac(x: np.ndarray) -> np.ndarray:
    return x - np.floor(x)


class _TexCtx:
    """Per-pixel inputs of the texture functions (flattened hit pixels).

    ``uc, vc``: face-plane coordinates from the face centre (metres; ``v`` is up on vertical
    faces), ``hu, hv`` the face half extents, ``u, v`` coordinates shifted per object (for
    noise), ``z`` the height above the object's bottom (world height on walls)."""

    def __init__(self, scene: Scene, obj, face, p_local, footprint, noise: _Noise):
        mid = np.asarray(scene.material_ids)[obj]

        def table(attr, dtype):
            return np.take(
                np.array([getattr(m, attr) for m in scene.materials], dtype=dtype), mid, axis=0
            )

        self.col1, self.col2 = table("color", np.float32), table("color2", np.float32)
        self.col3 = table("color3", np.float32)
        self.kind, self.pattern = table("kind", np.int16), table("pattern", np.int16)
        self.s = table("scale", np.float32)
        half = np.asarray(scene.halves, dtype=np.float32)[obj]
        axis = face // 2
        self.uc = np.where(axis == 0, p_local[:, 1], p_local[:, 0])
        self.vc = np.where(axis == 2, p_local[:, 1], p_local[:, 2])
        self.hu = np.where(axis == 0, half[:, 1], half[:, 0])
        self.hv = np.where(axis == 2, half[:, 1], half[:, 2])
        self.z = p_local[:, 2] + half[:, 2]
        off = (obj.astype(np.float32) * 7.31) % 50.0
        self.u, self.v = self.uc + off, self.vc + 0.5 * off
        self.obj, self.face, self.fp, self.noise = obj, face, footprint, noise


def _tex_plain(c: _TexCtx, i):
    return c.col1[i]


def _tex_noise(c: _TexCtx, i):
    s = c.s[i]
    g = c.noise.fbm(c.u[i] * s, c.v[i] * s, 2)
    return _mix(c.col1[i], c.col2[i], 0.5 + (g - 0.5) * _lod(c.fp[i], s))


def _tex_wood(c: _TexCtx, i):
    """Wood: ``pattern`` 0 swirly rings (basic), 1 fine straight grain with slow tone changes,
    2 the same as floor planks (seams, staggered joints, per-plank tone)."""
    u, v, s = c.u[i], c.v[i], c.s[i]
    pat = c.pattern[i]
    ring = np.sin((v * s * 6.0 + 4.0 * c.noise(u * 0.7 * s, v * 4.0 * s)) * 2.0) * 0.5 + 0.5
    t = 0.3 + (ring**3 - 0.3) * _lod(c.fp[i], 2.0 * s)
    fine = pat > 0
    if fine.any():
        uf, vf, sf = u[fine], v[fine], s[fine]
        warp = c.noise(uf * 0.8 * sf, vf * 3.0 * sf)
        lines = (0.5 + 0.5 * np.sin(2 * math.pi * (vf * sf * 6.0 + 2.0 * warp))) ** 2
        tone = c.noise.fbm(uf * 0.7, vf * 2.5, 2) - 0.5
        t[fine] = 0.4 + (lines - 0.4) * 0.8 * _lod(c.fp[i][fine], 6.0 * sf) + 0.6 * tone
    out = _mix(c.col1[i], c.col2[i], t)
    planks = np.flatnonzero(pat == 2)
    if planks.size:
        vp = v[planks] * 6.5
        row = np.floor(vp)
        joint = _frac(u[planks] * 0.7 + _hash01(row * 31 + 7))
        fp = c.fp[i][planks]
        seam = np.maximum(
            _lines(np.minimum(_frac(vp), 1 - _frac(vp)) / 6.5, 0.004, fp, 1 / 6.5),
            _lines(np.minimum(joint, 1 - joint) / 0.7, 0.004, fp),
        )
        shade = 1.0 + 0.25 * (
            _hash01(row * 13 + np.floor(u[planks] * 0.7 + _hash01(row * 31 + 7))) - 0.5
        )
        out[planks] *= (shade * (1.0 - 0.5 * seam))[:, None]
    return out


def _tex_tiles(c: _TexCtx, i):
    s = c.s[i]
    us, vs = c.u[i] * s, c.v[i] * s
    ti, tj = np.floor(us), np.floor(vs)
    fu, fv = us - ti, vs - tj
    edge = np.minimum(np.minimum(fu, 1 - fu), np.minimum(fv, 1 - fv))
    grout = _lines(edge / s, 0.05 / s, c.fp[i], 0.5 / s)
    cell = _hash01(ti * 7919 + tj * 31 + c.obj[i])
    checker = np.where(c.pattern[i] == 1, 0.15 * ((ti + tj) % 2), 0.0)
    base = c.col1[i] * (1.0 + 0.12 * (cell - 0.5) - checker)[:, None]
    return _mix(base, c.col2[i], grout)


def _tex_stripes(c: _TexCtx, i):
    s = c.s[i]
    g = c.noise(c.u[i] * 5.0, c.v[i] * 5.0)
    band = (np.sin(c.v[i] * s * 2 * math.pi) > 0.6) * 0.8
    lod = _lod(c.fp[i], s)
    return _mix(c.col1[i], c.col2[i], band * lod + 0.26 * (1 - lod) + 0.2 * g)


def _tex_books(c: _TexCtx, i):
    us = c.u[i] * c.s[i]
    bi = np.floor(us)
    hue = _hash01(bi + 1000 * c.obj[i])
    val = 0.3 + 0.55 * _hash01(bi * 7 + 3)
    rgb = _hsv_to_rgb(hue, 0.25 + 0.55 * _hash01(bi * 13 + 5), val)
    lod = _lod(c.fp[i], c.s[i])
    gap = (us - bi) < 0.08
    rgb = rgb * np.where(gap, 0.3, 1.0)[:, None] * lod[:, None] + (1 - lod)[:, None] * 0.42
    label = (np.abs(c.vc[i] - 0.3 * c.hv[i]) < 0.015) & (np.abs(us - bi - 0.55) < 0.25)
    return np.where(label[:, None], 0.85, rgb)


def _tex_window(c: _TexCtx, i):
    """The view out of a window: sky gradient over buildings (pattern 1) or trees (0);
    pattern bit 2 adds mullions."""
    h = (c.vc[i] + c.hv[i]) / np.maximum(2 * c.hv[i], 1e-3)  # 0 bottom .. 1 top
    g = c.noise.fbm(c.u[i] * 3.0, c.v[i] * 3.0, 2)
    out = c.col1[i] * (0.7 + 0.35 * h + 0.1 * (g - 0.5))[:, None]
    horizon = 0.25 + 0.4 * _hash01(c.obj[i] * 3 + 1)
    low = h < horizon + 0.15 * (g - 0.5)
    bld = (c.pattern[i] & 1) == 1
    cols = _frac(c.uc[i] * 7.0) > 0.35
    flo = _frac(c.vc[i] * 5.0) > 0.45
    facade = np.where((cols & flo)[:, None], c.col3[i], c.col2[i])
    trees = c.col2[i] * (0.6 + 0.8 * c.noise.fbm(c.u[i] * 12.0, c.v[i] * 12.0, 2))[:, None]
    out = np.where((low & bld)[:, None], facade, out)
    out = np.where((low & ~bld)[:, None], trees, out)
    bar = (c.pattern[i] & 2) > 0
    bar &= (np.abs(c.uc[i]) < 0.02) | (np.abs(c.vc[i] + 0.1 * c.hv[i]) < 0.02)
    return np.where(bar[:, None], 0.45, out)


def _tex_carpet(c: _TexCtx, i):
    u, v, s = c.u[i], c.v[i], c.s[i]
    fine = c.noise(u * s, v * s) - 0.5
    mottle = c.noise.fbm(u * 1.3, v * 1.3, 2) - 0.5
    out = c.col1[i] * (1.0 + 0.7 * fine * _lod(c.fp[i], s) + 0.35 * mottle)[:, None]
    striped = c.pattern[i] == 1
    band = _frac(u * 4.0 + 0.3 * np.sin(v * 0.5)) < 0.2
    lod = _lod(c.fp[i], 4.0 * 5)
    t = np.where(striped, 0.6 * (band * lod + 0.2 * (1 - lod)), 0.0)
    return _mix(out, c.col2[i] * (1.0 + 0.5 * fine)[:, None], t)


def _tex_weave(c: _TexCtx, i):
    """Woven fabric: thread cross-hatch, creases and a plaid (1) or stripe (2) pattern, or the
    vertical folds of a curtain (3)."""
    u, v, s = c.u[i], c.v[i], c.s[i]
    weave = np.sin(u * s * 2 * math.pi) * np.sin(v * s * 2 * math.pi)
    folds = c.noise.fbm(u * 1.5, v * 1.5, 2) - 0.5
    pat = c.pattern[i]
    drape = np.sin(2 * math.pi * (u * 7.0 + 0.6 * c.noise(u * 2.0, v * 0.5))) * (pat == 3)
    shade = 1.0 + 0.15 * weave * _lod(c.fp[i], s) + 0.15 * folds + 0.3 * drape * _lod(c.fp[i], 7.0)
    lod = _lod(c.fp[i], 16.0)
    plaid = ((_frac(u * 4.0) < 0.25) | (_frac(v * 4.0) < 0.25)) & (pat == 1)
    stripe = (_frac(u * 5.0) < 0.5) & (pat == 2)
    t = 0.55 * ((plaid | stripe) * lod + ((pat == 1) | (pat == 2)) * 0.35 * (1 - lod))
    return _mix(c.col1[i], c.col2[i], t) * shade[:, None]


def _tex_paint(c: _TexCtx, i):
    """Painted wall: roller unevenness, a gradient, baseboard (color3); pattern 1 striped and
    2 dotted wallpaper (color2), 3 a two-tone wall with a chair rail."""
    u, v, z, s = c.u[i], c.v[i], c.z[i], c.s[i]
    shade = 1.0 + 0.04 * (c.noise(u * 0.4, v * 0.4) - 0.5) + 0.05 * np.clip(z / 2.5, 0, 1)
    out = c.col1[i] * shade[:, None]
    pat = c.pattern[i]
    lod = _lod(c.fp[i], 2.0 * s)
    stripe = (_frac(u * s) < 0.5) & (pat == 1)
    dots = (np.hypot(_frac(u * s) - 0.5, _frac(z * s) - 0.5) < 0.2) & (pat == 2)
    t = (stripe | dots) * lod + ((pat == 1) * 0.5 + (pat == 2) * 0.12) * (1 - lod)
    out = _mix(out, c.col2[i] * shade[:, None], 0.6 * t)
    low = (pat == 3) & (z < 0.9)
    out = np.where(low[:, None], c.col2[i] * shade[:, None], out)
    trim = (z < 0.09) | ((pat == 3) & (np.abs(z - 0.9) < 0.025))
    return np.where(trim[:, None], c.col3[i], out)


def _tex_image(c: _TexCtx, i):
    """Image-like content for pictures, posters and screens. ``pattern & 3``: 1 adds a frame
    (color3), 2 a white margin; ``pattern >> 2`` picks the content: 0 colour regions with
    hard and soft edges, 1 a landscape (sky, horizon, ground), 2 a collage of rectangles,
    3 a poster with a title bar."""
    x = c.uc[i] / np.maximum(c.hu[i], 1e-3)
    y = c.vc[i] / np.maximum(c.hv[i], 1e-3)
    seed = (c.obj[i] % 97).astype(np.float32) * 3.7
    f, style = c.s[i], c.pattern[i] >> 2
    c1, c2, c3 = c.col1[i], c.col2[i], c.col3[i]
    g1 = c.noise.fbm(x * f + seed, y * f - seed, 3)
    g2 = c.noise.fbm(x * f * 2.1 - seed, y * f * 1.7 + seed, 2)
    region = np.clip((g1 - 0.3) * 2.5, 0.0, 0.999) * 3.0  # three colour regions, hard borders
    out = np.where((region < 1)[:, None], c1, np.where((region < 2)[:, None], c2, c3))
    out = _mix(out, c2, np.clip((g2 - 0.45) * 2.0, 0, 0.6))
    horizon = 0.3 * (_hash01(c.obj[i]) - 0.5) + 0.25 * (g2 - 0.5)
    sky = _mix(np.full_like(c1, 0.9), c1, 0.4 + 0.3 * (1 - y))
    land = np.where(
        (y > horizon)[:, None], sky, _mix(c3, c2, np.clip(horizon - y, 0, 1) + 0.3 * g1)
    )
    cells = _hash01(
        np.floor((x + 1) * (1 + f)) * 31 + np.floor((y + 1) * (1 + 0.7 * f)) * 7 + c.obj[i]
    )
    collage = np.where((cells < 0.33)[:, None], c1, np.where((cells < 0.66)[:, None], c2, c3))
    title = _mix(
        c3, np.full_like(c3, 0.95), ((np.abs(y - 0.78) < 0.06) & (_frac(x * 6) < 0.7)) * 1.0
    )
    out = np.where((style == 1)[:, None], land, out)
    out = np.where((style == 2)[:, None], collage * (0.8 + 0.3 * g2)[:, None], out)
    out = np.where(((style == 3) & (y > 0.6))[:, None], title, out)
    out = out * (0.75 + 0.3 * g2)[:, None]
    edge = np.minimum(c.hu[i] - np.abs(c.uc[i]), c.hv[i] - np.abs(c.vc[i]))
    frame = (c.pattern[i] & 3) == 1
    margin = ((c.pattern[i] & 3) == 2) & (edge < 0.05)
    out = np.where((frame & (edge < 0.035))[:, None], c3 * 0.5, out)
    return np.where(margin[:, None], 0.92, out)


def _tex_text(c: _TexCtx, i):
    """Paper, notices, whiteboards: lines of word-like ink marks (color2) on color1; ``scale``
    is lines per metre, pattern 1 writes sparsely (whiteboards)."""
    s = c.s[i]
    x = c.uc[i] + c.hu[i]
    y = c.hv[i] - c.vc[i]
    row = np.floor(y * s)
    word_f = x * s * 0.4 + 3.0 * _hash01(row + 17 * c.obj[i])
    word = np.floor(word_f)
    sparse = np.where(c.pattern[i] == 1, 0.75, 0.3)
    sparse_row = c.pattern[i] == 1
    ink = (_frac(y * s) < np.where(sparse_row, 0.2, 0.55)) & (_frac(word_f) < 0.8)
    ink &= _hash01(row * 131 + word * 7 + c.obj[i] * 3) > sparse
    ink &= _hash01(row * 7 + c.obj[i]) > 0.15
    mx, my = 0.12 * c.hu[i] + 0.005, 0.1 * c.hv[i] + 0.005
    ink &= (x > mx) & (x < 2 * c.hu[i] - mx) & (y > my) & (y < 2 * c.hv[i] - my)
    ink &= x < 2 * c.hu[i] * (0.55 + 0.45 * _hash01(row * 3 + c.obj[i]))
    lod = _lod(c.fp[i], 1.4 * s)
    t = ink * lod + (1 - lod) * np.where(c.pattern[i] == 1, 0.05, 0.15)
    return _mix(c.col1[i], c.col2[i], 0.85 * t)


def _tex_grid(c: _TexCtx, i):
    """Drop ceiling: tiles of 1 / scale metres with fissures between T-bars (color2)."""
    s = c.s[i]
    us, vs = c.uc[i] * s, c.vc[i] * s
    fu, fv = _frac(us), _frac(vs)
    bar = _lines(
        np.minimum(np.minimum(fu, 1 - fu), np.minimum(fv, 1 - fv)) / s, 0.025, c.fp[i], 0.5 / s
    )
    fiss = c.noise(c.u[i] * 60.0, c.v[i] * 60.0) - 0.5
    cell = _hash01(np.floor(us) * 613 + np.floor(vs) * 37)
    base = c.col1[i] * (1.0 + 0.06 * (cell - 0.5) + 0.25 * fiss * _lod(c.fp[i], 60.0))[:, None]
    return _mix(base, c.col2[i], bar)


def _tex_panel(c: _TexCtx, i):
    """Fronts of cabinets, drawers and doors (front = local +y face, room doors both sides):
    seams (color2) and handles (color3); pattern bit ``_GRAIN`` gives a wood base."""
    pat = c.pattern[i]
    grain = (pat & _GRAIN) > 0
    base = np.empty((i.size, 3), dtype=np.float32)
    base[grain] = _tex_wood(c, i[grain])
    base[~grain] = _tex_noise(c, i[~grain])
    layout = pat & 3
    front = (c.face[i] == 3) | ((layout == 2) & (c.face[i] // 2 == 1))
    uc, vc, hu, hv = c.uc[i], c.vc[i], c.hu[i], c.hv[i]
    edge = np.minimum(hu - np.abs(uc), hv - np.abs(vc))
    s = c.s[i]
    fr = _frac((vc + hv) * s)
    fp = c.fp[i]
    seam = _lines(edge, 0.012, fp)
    seam = np.maximum(seam, _lines(np.abs(uc), 0.006, fp) * ((layout == 0) & (hu > 0.28)))
    drawer = _lines(np.minimum(fr, 1 - fr) / s, 0.006, fp, 1 / s) * (layout == 1)
    inset = _lines(np.abs(edge - 0.09), 0.01, fp) * ((layout == 2) & (np.abs(vc + 0.05) > 0.02))
    seam = np.maximum(np.maximum(seam, drawer), inset)
    handle = (layout == 0) & (np.abs(np.abs(uc) - 0.04) < 0.012) & (np.abs(vc - 0.3 * hv) < 0.06)
    handle |= (layout == 1) & (np.abs(uc) < 0.07) & (np.abs(fr - 0.5) < 0.06)
    handle |= (layout == 2) & (np.abs(uc - hu + 0.09) < 0.025) & (np.abs(vc + 0.05) < 0.025)
    base = base * (1.0 - 0.65 * seam * front)[:, None]
    return np.where((front & handle)[:, None], c.col3[i], base)


_TEXTURES = {
    PLAIN: _tex_plain,
    NOISE: _tex_noise,
    WOOD: _tex_wood,
    TILES: _tex_tiles,
    STRIPES: _tex_stripes,
    BOOKS: _tex_books,
    WINDOW: _tex_window,
    CARPET: _tex_carpet,
    WEAVE: _tex_weave,
    PAINT: _tex_paint,
    IMAGE: _tex_image,
    TEXT: _tex_text,
    GRID: _tex_grid,
    PANEL: _tex_panel,
}


def _albedo(scene: Scene, obj, face, p_local, footprint, noise: _Noise) -> np.ndarray:
    """sRGB albedo (P, 3) of hit pixels from object ids, faces, box-local hit points and
    pixel footprints (metres)."""
    c = _TexCtx(scene, obj, face, p_local, footprint, noise)
    out = np.empty((obj.size, 3), dtype=np.float32)
    for kind in np.flatnonzero(np.bincount(c.kind, minlength=len(_TEXTURES))):
        i = np.flatnonzero(c.kind == kind)
        out[i] = _TEXTURES[int(kind)](c, i)
    return np.clip(out, 0.0, 1.0)


# --------------------------------------------------------------------------------------------
# Lighting


def kelvin_to_rgb(kelvin: float) -> np.ndarray:
    """Linear RGB of a black body at ``kelvin`` (K) seen by a camera white-balanced for 6500 K,
    scaled to unit luminance: (3,) float64, red-heavy below 6500 K, blue-heavy above.

    Planck's law sampled 380-720 nm and weighted by Gaussian red/green/blue sensitivities
    (a rough camera model, good enough for relative light colours).
    """
    lam = np.arange(380.0, 721.0, 10.0)

    def response(t: float) -> np.ndarray:
        m = lam * 1e-9
        planck = m**-5 / np.expm1(0.0143877 / (m * t))
        sens = np.exp(-0.5 * ((lam[None, :] - np.array([[600.0], [545.0], [455.0]])) / 35.0) ** 2)
        return sens @ planck

    rgb = response(float(kelvin)) / response(6500.0)
    return rgb / float(_LUMA.astype(np.float64) @ rgb)


def _emission(scene: Scene, j: int, lx, ly, lz, inv, d2) -> np.ndarray:
    """Irradiance scale (N,) of light ``j`` at distance^2 ``d2`` along unit direction
    ``(lx, ly, lz) * inv`` (surface to light): point lights fall off as ``6 / (6 + d^2)``;
    area emitters as ``r0^2 / (r0^2 + d^2)`` with ``r0^2`` growing with their size and with a
    ``0.25 + 0.75 cos`` lobe about their axis."""
    ext, axis = scene.light_extent[j], scene.light_dir[j]
    size2 = float(np.sum(ext**2))
    r0sq = 6.0 if size2 == 0 and not axis.any() else 1.0 + 2.0 * size2
    e = np.float32(scene.light_power[j] * r0sq) / (np.float32(r0sq) + d2)
    if axis.any():
        a = axis.astype(np.float32)
        e *= 0.25 + 0.75 * np.maximum(-(a[0] * lx + a[1] * ly + a[2] * lz) * inv, 0.0)
    return e


def _highlight(nw, view, L, d2, lam, e, k_spec, shin, size2: float) -> np.ndarray:
    """(n,) normalised Blinn-Phong highlight of one light on glossy pixels; the lobe widens
    for large or near emitters (their solid angle blurs it)."""
    h = L + view
    h /= np.linalg.norm(h, axis=1, keepdims=True) + 1e-6
    nh = np.maximum(np.einsum("ij,ij->i", nw, h), 0.0)
    s_eff = shin / (1.0 + shin * np.float32(size2 + 0.01) / d2)
    return k_spec * (s_eff + 8.0) / 8.0 * nh**s_eff * (lam > 0) * e


def _direct_light(scene: Scene, hits: _Hits, vis: np.ndarray, gloss, shininess):
    """Diffuse irradiance (N, 3) and specular radiance (N, 3) of all lights (Lambert, and
    Blinn-Phong with a Schlick-like Fresnel boost where ``gloss`` > 0), times ``vis``."""
    px, py, pz = (np.ascontiguousarray(hits.P[:, a]) for a in range(3))
    nx, ny, nz = (np.ascontiguousarray(hits.nw[:, a]) for a in range(3))
    diffuse = np.zeros((3, px.size), dtype=np.float32)
    spec = np.zeros((px.size, 3), dtype=np.float32)
    g = np.flatnonzero(gloss > 0)
    if g.size:
        nw_g, view_g = hits.nw[g], hits.view[g]
        fres = 1.0 + 4.0 * (1.0 - np.clip(np.einsum("ij,ij->i", nw_g, view_g), 0, 1)) ** 5
        k_spec, shin = (gloss[g] * fres).astype(np.float32), shininess[g].astype(np.float32)
    for j in range(len(scene.lights)):
        pos = scene.lights[j].astype(np.float32)
        lx, ly, lz = pos[0] - px, pos[1] - py, pos[2] - pz
        d2 = lx * lx + ly * ly + lz * lz
        inv = 1.0 / np.sqrt(d2)
        lam = np.maximum((nx * lx + ny * ly + nz * lz) * inv, 0.0)
        e = _emission(scene, j, lx, ly, lz, inv, d2) * vis[:, j]
        w = e * lam
        col = scene.light_color[j].astype(np.float32)
        for c in range(3):
            diffuse[c] += w * col[c]
        if g.size:
            L = np.stack([lx[g], ly[g], lz[g]], axis=1) * inv[g, None]
            size2 = float(np.sum(scene.light_extent[j] ** 2))
            hl = _highlight(nw_g, view_g, L, d2[g], lam[g], e[g], k_spec, shin, size2)
            spec[g] += hl[:, None] * col
    return diffuse.T, spec


def _shade(scene: Scene, hits: _Hits, albedo_lin, ao, vis) -> np.ndarray:
    """Linear radiance (N, 3): albedo x (direct + ambient) x occlusion + highlights."""
    mid = np.asarray(scene.material_ids)[hits.of]
    gloss = np.array([m.gloss for m in scene.materials], dtype=np.float32)[mid]
    shin = np.array([m.shininess for m in scene.materials], dtype=np.float32)[mid]
    diffuse, spec = _direct_light(scene, hits, vis, gloss, shin)
    amb = np.float32(scene.ambient) * np.asarray(scene.ambient_color, dtype=np.float32)
    return albedo_lin * ((diffuse + amb) * ao[:, None]) + spec


def _centre_weights(height: int, width: int) -> np.ndarray:
    y = np.linspace(-1.0, 1.0, height, dtype=np.float32)[:, None]
    x = np.linspace(-1.0, 1.0, width, dtype=np.float32)[None, :]
    return (1.0 - 0.5 * (x * x + y * y) / 2.0).reshape(-1)


def _expose(lin, albedo_lin, emis, height: int, width: int) -> np.ndarray:
    """Auto exposure: centre-weighted mean luminance of the non-emissive pixels -> 0.2;
    emissive pixels get ``albedo x emissive`` (relative to that target). (H, W, 3)."""
    lum = lin @ _LUMA
    w = _centre_weights(height, width) * (emis == 0)
    mean = float(np.sum(lum * w) / np.sum(w)) if np.any(emis == 0) else 0.2
    out = lin * np.float32(0.2 / max(mean, 1e-4))
    glow = np.flatnonzero(emis > 0)
    out[glow] = albedo_lin[glow] * emis[glow, None]
    return out.reshape(height, width, 3)


def _illuminant(scene: Scene) -> np.ndarray:
    """Power-weighted mean light colour (3,), what an auto white balance would estimate."""
    if not scene.lights:
        return np.ones(3)
    w = np.asarray(scene.light_power)[:, None]
    return np.sum(np.asarray(scene.light_color) * w, axis=0) / max(float(w.sum()), 1e-9)


# --------------------------------------------------------------------------------------------
# Camera simulation


@dataclass
class CameraEffects:
    """The camera of one image, applied by :func:`apply_camera_effects` (zeros disable).

    Attributes:
        exposure_ev: exposure compensation in stops.
        glare: fraction of the light above sensor saturation spread as a wide glow.
        vignetting: relative light loss in the image corners.
        defocus_px: defocus disc radius; motion_px, motion_angle: motion-blur length (pixels)
            and direction (radians); psf_sigma: Gaussian optical blur (pixels).
        sensor_scale: native sensor width / output width (< 1: upsampled, soft and with
            correlated noise; > 1: downsampled, noise averaged).
        shot_noise: shot-noise variance per unit linear signal; read_noise: read-noise std
            (linear light, full well = 1, at the native resolution).
        wb_gains: white-balance gains (R, G, B); color_matrix: 9 numbers of a row-major 3x3
            colour matrix applied after them (empty: identity).
        contrast: strength of the S-shaped tone curve applied after the sRGB-like gamma.
        sharpen: amount of unsharp masking (sigma 1 pixel) after the tone curve.
        jpeg_quality: JPEG quality of the final image (0: no compression).
    """

    exposure_ev: float = 0.0
    glare: float = 0.0
    vignetting: float = 0.0
    defocus_px: float = 0.0
    motion_px: float = 0.0
    motion_angle: float = 0.0
    psf_sigma: float = 0.0
    sensor_scale: float = 1.0
    shot_noise: float = 0.0
    read_noise: float = 0.0
    wb_gains: tuple[float, float, float] = (1.0, 1.0, 1.0)
    color_matrix: tuple[float, ...] = ()
    contrast: float = 0.0
    sharpen: float = 0.0
    jpeg_quality: int = 0


def _white_balance(illuminant, r: float, z: np.ndarray, strength: float):
    """Gains of a camera that neutralises a fraction of the light colour (all of it when
    ``strength`` is 0) with per-channel errors; the illuminant's luminance is kept."""
    illum = np.asarray(illuminant, dtype=np.float64)
    illum = illum / float(_LUMA @ illum)
    adapt = 1.0 if strength <= 0 else 0.5 + 0.45 * r
    gains = illum**-adapt * np.exp(strength * z * np.array([1.0, 0.0, 1.0]))
    gains /= float(_LUMA @ (gains * illum))
    return tuple(float(x) for x in gains)


def _color_matrix(r: float, z: np.ndarray, jitter: float) -> tuple[float, ...]:
    """Saturation boost in [1, 1.35] with cross-talk ``jitter``; rows sum to 1 (greys stay)."""
    if jitter <= 0:
        return ()
    sat = 1.0 + 0.35 * r
    M = sat * np.eye(3) + (1.0 - sat) * np.ones((3, 1)) * _LUMA[None, :].astype(np.float64)
    M += jitter * z.reshape(3, 3)
    M /= M.sum(axis=1, keepdims=True)
    return tuple(float(x) for x in M.reshape(-1))


def draw_camera_effects(
    rng: np.random.Generator, options: SceneOptions, width: int, illuminant=(1.0, 1.0, 1.0)
) -> CameraEffects:
    """Draw one image's camera from ``options`` for an image ``width`` pixels wide lit by
    ``illuminant`` (linear RGB). A fixed number of values is drawn whatever the options, so
    switching one effect off leaves the others unchanged."""
    o = options
    r = rng.random(13)
    z = rng.standard_normal(12)
    lo, hi = o.brightness
    bright = math.exp(math.log(lo) + r[0] * (math.log(hi) - math.log(lo)))
    t_rel = min(1.0, 1.0 / bright)  # exposure time, relative to the slowest hand-held one
    gain = min(max(1.0, 1.0 / (bright * t_rel)), 3.0)
    sigma = o.noise / 1.16  # sRGB std at mid grey -> linear std at 0.18
    widths = tuple(o.sensor_widths)
    q0, q1 = o.jpeg_quality
    return CameraEffects(
        exposure_ev=o.exposure_ev[0]
        + r[1] * (o.exposure_ev[1] - o.exposure_ev[0])
        + 0.2 * math.log2(bright),
        glare=o.glare * r[2],
        vignetting=o.vignetting * r[3],
        defocus_px=o.defocus * width * r[4] ** 3,
        motion_px=o.motion_blur * width * r[5] ** 2 * t_rel,
        motion_angle=math.pi * r[6],
        psf_sigma=o.blur,
        sensor_scale=widths[int(r[7] * len(widths))] / width if widths else 1.0,
        shot_noise=0.84 * sigma**2 / 0.18 * math.sqrt(gain),  # the ISP denoises more
        read_noise=0.4 * sigma * math.sqrt(gain),  # at high gain
        wb_gains=_white_balance(illuminant, r[8], z[:3], o.white_balance),
        color_matrix=_color_matrix(r[9], z[3:12], o.color_jitter),
        contrast=o.contrast[0] + r[10] * (o.contrast[1] - o.contrast[0]),
        sharpen=o.sharpen[0] + r[12] * (o.sharpen[1] - o.sharpen[0]),
        jpeg_quality=int(round(q0 + r[11] * (q1 - q0))) if q1 > 0 else 0,
    )


def _disc_kernel(radius: float) -> np.ndarray:
    n = int(math.ceil(radius))
    yy, xx = np.mgrid[-n : n + 1, -n : n + 1]
    k = np.clip(radius + 0.5 - np.hypot(xx, yy), 0.0, 1.0).astype(np.float32)
    return k / k.sum()


def _line_kernel(length: float, angle: float) -> np.ndarray:
    n = int(math.ceil(length / 2)) + 1
    k = np.zeros((2 * n + 1, 2 * n + 1), dtype=np.float32)
    t = np.linspace(-length / 2, length / 2, max(2, int(length * 4)))
    x, y = n + t * math.cos(angle), n + t * math.sin(angle)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            np.add.at(k, (y0 + dy, x0 + dx), (wy * wx).astype(np.float32))
    return k / k.sum()


def _glare(img: np.ndarray, strength: float) -> np.ndarray:
    """Add a wide glow of the light above saturation (lens and sensor veiling glare)."""
    import cv2

    excess = np.maximum(img - 1.0, 0.0)
    if strength <= 0 or not excess.any():
        return img
    H, W = img.shape[:2]
    small = cv2.resize(excess, (max(W // 8, 1), max(H // 8, 1)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), max(W, H) / 8 / 12)
    return img + np.float32(strength) * cv2.resize(small, (W, H), interpolation=cv2.INTER_LINEAR)


def _vignette(img: np.ndarray, strength: float) -> np.ndarray:
    if strength <= 0:
        return img
    H, W = img.shape[:2]
    y = np.linspace(-1.0, 1.0, H, dtype=np.float32)[:, None] ** 2 * (H * H)
    x = np.linspace(-1.0, 1.0, W, dtype=np.float32)[None, :] ** 2 * (W * W)
    r2 = (x + y) / float(H * H + W * W)  # 1 in the corners
    return img * (1.0 - np.float32(strength) * r2 * (0.6 + 0.4 * r2))[..., None]


def _optical_blur(img: np.ndarray, fx: CameraEffects) -> np.ndarray:
    import cv2

    if fx.defocus_px >= 0.5:
        img = cv2.filter2D(img, -1, _disc_kernel(fx.defocus_px), borderType=cv2.BORDER_REFLECT)
    if fx.motion_px >= 1.0:
        kern = _line_kernel(fx.motion_px, fx.motion_angle)
        img = cv2.filter2D(img, -1, kern, borderType=cv2.BORDER_REFLECT)
    if fx.psf_sigma > 0:
        img = cv2.GaussianBlur(img, (0, 0), fx.psf_sigma)
    return img


def _add_noise(x: np.ndarray, shot: float, read: float, rng: np.random.Generator) -> np.ndarray:
    """Clip to the sensor's full well, add shot (variance ``shot * x``) and read noise, partly
    shared by the three channels (demosaicking correlates them), clip again."""
    x = np.clip(x, 0.0, 1.0)
    if shot <= 0 and read <= 0:
        return x
    std = np.sqrt(np.float32(shot) * x + np.float32(read * read))
    common = rng.standard_normal(x.shape[:2], dtype=np.float32)[..., None]
    z = rng.standard_normal(x.shape, dtype=np.float32)
    z *= np.float32(0.8)
    z += np.float32(0.6) * common
    z *= std
    z += x
    return np.clip(z, 0.0, 1.0, out=z)


def _sensor(img: np.ndarray, fx: CameraEffects, rng: np.random.Generator) -> np.ndarray:
    """Noise at the native sensor resolution, then the resize to the output size."""
    import cv2

    s = fx.sensor_scale
    if s < 0.95:
        H, W = img.shape[:2]
        size = (max(int(round(W * s)), 8), max(int(round(H * s)), 8))
        small = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
        small = _add_noise(small, fx.shot_noise, fx.read_noise, rng)
        return cv2.resize(small, (W, H), interpolation=cv2.INTER_LINEAR)
    k = max(s, 1.0)  # averaging k^2 native pixels per output pixel
    return _add_noise(img, fx.shot_noise / k**2, fx.read_noise / k, rng)


def _isp(img: np.ndarray, fx: CameraEffects) -> np.ndarray:
    """White balance, colour matrix, gamma, tone curve and sharpening -> sRGB-like values in
    [0, 1]."""
    import cv2

    img = img * np.asarray(fx.wb_gains, dtype=np.float32)
    if fx.color_matrix:
        img = cv2.transform(img, np.asarray(fx.color_matrix, dtype=np.float32).reshape(3, 3))
    img = cv2.pow(np.clip(img, 0.0, 1.0), 1 / 2.2)
    if fx.contrast > 0:
        img = img + np.float32(fx.contrast) * img * (1.0 - img) * (2.0 * img - 1.0)
    if fx.sharpen > 0:
        img = img + np.float32(fx.sharpen) * (img - cv2.GaussianBlur(img, (0, 0), 1.0))
    return np.clip(img, 0.0, 1.0)


def apply_camera_effects(
    img: np.ndarray, effects: CameraEffects, rng: np.random.Generator
) -> np.ndarray:
    """Image a linear-light (H, W, 3) float32 radiance map exposed to a mean of ~0.2:
    exposure, glare, vignetting, defocus/motion/optical blur, native-resolution sensor
    noise and saturation, white balance, colour matrix, gamma, tone curve and sharpening. Returns
    (H, W, 3) float32 sRGB-like values in [0, 1] (quantisation and JPEG follow in
    :func:`render`)."""
    img = img * np.float32(2.0**effects.exposure_ev)
    img = _glare(img, effects.glare)
    img = _vignette(img, effects.vignetting)
    img = _optical_blur(img, effects)
    img = _sensor(img, effects, rng)
    return _isp(img, effects)


def _jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    import cv2

    ok, buf = cv2.imencode(
        ".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    )
    if not ok:
        raise RuntimeError("JPEG encoding of a synthetic frame failed")
    return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])


# --------------------------------------------------------------------------------------------
# Rendering


def render(
    scene: Scene,
    cam: Camera,
    height: int,
    width: int,
    rng: np.random.Generator | None = None,
    noise: float = 0.0,
    blur: float = 0.0,
    *,
    shadows: bool = False,
    effects: CameraEffects | None = None,
) -> dict[str, Any]:
    """Render one sample of ``scene`` seen by ``cam`` at ``height`` x ``width`` pixels.

    Geometry outputs are exact (no anti-aliasing) and depend only on ``scene``, ``cam`` and
    the size. ``rng`` drives the texture noise and sensor noise (a fixed default is used when
    ``None``). ``shadows`` casts soft shadows of the furniture; ``effects`` images the
    radiance through a simulated camera (:func:`apply_camera_effects`, then JPEG), otherwise
    a plain gamma is applied. ``blur`` (Gaussian sigma, pixels) and ``noise`` (additive std,
    sRGB units) are applied to the sRGB image last, before quantisation.

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
    hits = _trace(scene, cam, height, width)
    albedo = _albedo(scene, hits.of, hits.ff, hits.p_local, hits.footprint, _Noise(rng))
    albedo_lin = cv2.pow(albedo, 2.2)  # much faster than numpy's power
    ao, vis = _occlusion(scene, hits, height, width, shadows)
    lin = _shade(scene, hits, albedo_lin, ao, vis)
    emis = np.array([m.emissive for m in scene.materials], dtype=np.float32)[
        np.asarray(scene.material_ids)[hits.of]
    ]
    img = _expose(lin, albedo_lin, emis, height, width)
    if effects is None:
        img = cv2.pow(np.clip(img, 0.0, 1.0), 1.0 / 2.2)
    else:
        img = apply_camera_effects(img, effects, rng)
    if blur > 0:
        img = cv2.GaussianBlur(img, (0, 0), blur)
    if noise > 0:
        img = img + rng.normal(0.0, noise, img.shape).astype(np.float32)
    rgb = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if effects is not None and effects.jpeg_quality > 0:
        rgb = _jpeg(rgb, effects.jpeg_quality)
    return {
        "rgb": rgb,
        "depth": hits.t.astype(np.float32),
        "labels": np.asarray(scene.labels, dtype=np.uint8)[hits.obj],
        "normals": np.ascontiguousarray(hits.normals, dtype=np.float32),
        "K": np.array(cam.K, dtype=np.float64),
        "has_labels": True,
        "has_normals": True,
    }


# --------------------------------------------------------------------------------------------
# Random scenes: materials


def _rand_color(rng, h=(0.0, 1.0), s=(0.0, 1.0), v=(0.0, 1.0)) -> tuple[float, float, float]:
    rgb = _hsv_to_rgb(rng.uniform(*h), rng.uniform(*s), rng.uniform(*v))
    return tuple(float(x) for x in rgb)


def _darker(c, f) -> tuple[float, float, float]:
    return tuple(float(min(x * f, 1.0)) for x in c)


class _Kit:
    """Materials of one random scene, drawn from the appearance stream ``rng`` only (so that
    the ``textures`` and ``specular`` options never change the geometry); every method
    registers a material with the scene and returns its index."""

    def __init__(self, rng: np.random.Generator, scene: Scene | None, opts: SceneOptions):
        self.rng, self.scene = rng, scene
        self.rich = opts.textures == "rich"
        self.glossy = opts.specular
        self.night = opts.window_light  # windows may show a night sky

    def add(self, m: Material) -> int:
        return self.scene.add_material(m)

    def color(self, h=(0.0, 1.0), s=(0.0, 1.0), v=(0.0, 1.0)):
        return _rand_color(self.rng, h, s, v)

    def _gloss(self, lo: float, hi: float, shin=(20.0, 120.0)) -> dict:
        g, s = self.rng.uniform(lo, hi), self.rng.uniform(*shin)  # drawn whatever the option
        return {"gloss": g, "shininess": s} if self.glossy and hi > 0 else {}

    def wood_material(self, gloss=(0.0, 0.0), planks: bool = False) -> Material:
        rng, gl = self.rng, self._gloss(*gloss)
        if rng.random() < 0.4:  # laminate: white, grey, beige or black
            v = [(0.1, 0.2), (0.45, 0.6), (0.8, 0.95)][int(rng.integers(3))]
            c = self.color(s=(0.0, 0.08), v=v)
            return Material(c, _darker(c, 0.9), NOISE, 8.0, **gl)
        c = self.color(h=(0.04, 0.1), s=(0.25, 0.6), v=(0.2, 0.75))
        grain = (2 if planks else 1) if self.rich else 0
        return Material(c, _darker(c, 0.75), WOOD, rng.uniform(2.0, 6.0), pattern=grain, **gl)

    def wood(self, gloss=(0.0, 0.0)) -> int:
        return self.add(self.wood_material(gloss))

    def fabric_material(self, v=(0.25, 0.85), s=(0.1, 0.6)) -> Material:
        c = self.color(s=s, v=v)
        c2 = np.asarray(self.color(s=s, v=v))
        c2 = tuple(float(x) for x in 0.6 * np.asarray(c) * 0.8 + 0.4 * c2)  # a related shade
        pattern = int(self.rng.choice(3, p=[0.7, 0.15, 0.15]))
        threads = self.rng.uniform(60.0, 160.0)
        if not self.rich:
            return Material(c, _darker(c, 0.8), NOISE, threads / 6)
        return Material(c, c2, WEAVE, threads, pattern=pattern)

    def fabric(self, v=(0.25, 0.85), s=(0.1, 0.6)) -> int:
        return self.add(self.fabric_material(v, s))

    def plain(self, v=(0.7, 0.95), s=(0.0, 0.1), gloss=(0.0, 0.0), h=(0.0, 1.0)) -> int:
        c = self.color(h=h, s=s, v=v)
        return self.add(Material(c, _darker(c, 0.95), NOISE, 5.0, **self._gloss(*gloss)))

    def panel(self, base: int, layout: int, scale: float = 5.0) -> int:
        """Cabinet/drawer/door fronts with the colours of material ``base``."""
        m = self.scene.materials[base]
        handle = self.color(s=(0.0, 0.1), v=(0.05, 0.8))
        if not self.rich:
            return base
        grain = _GRAIN if m.kind == WOOD else 0
        return self.add(
            dataclasses.replace(
                m,
                kind=PANEL,
                pattern=layout | grain,
                color3=handle,
                scale=m.scale if grain else scale,
            )
        )

    def ceramic(self) -> int:
        return self.plain(v=(0.88, 0.98), s=(0.0, 0.03), gloss=(0.04, 0.1))

    def image(self, frame: int, emissive: float = 0.0, scale=(1.0, 3.0)) -> int:
        """Image-like content (pictures, posters, screens); ``frame``: 0 none, 1, 2 margin."""
        cols = [self.color(s=(0.1, 0.7), v=(0.15, 0.95)) for _ in range(3)]
        f = self.rng.uniform(*scale)
        style = int(self.rng.integers(4))
        if not self.rich:
            return self.add(Material(cols[0], cols[1], NOISE, 3.0, emissive=emissive))
        return self.add(Material(cols[0], cols[1], IMAGE, f, emissive, cols[2], frame | style << 2))

    def text(self, paper, ink, lines: float, sparse: bool = False) -> int:
        if not self.rich:
            return self.add(Material(paper, _darker(paper, 0.9), NOISE, 5.0))
        return self.add(Material(paper, ink, TEXT, lines, pattern=int(sparse)))

    def paper(self) -> int:
        white = self.rng.random() < 0.75
        paper = (
            self.color(s=(0.0, 0.05), v=(0.85, 0.98))
            if white
            else self.color(h=(0.1, 0.6), s=(0.2, 0.6), v=(0.8, 0.98))
        )
        ink = self.color(h=(0.55, 0.7), s=(0.0, 0.6), v=(0.05, 0.35))
        return self.text(paper, ink, self.rng.uniform(40.0, 140.0))

    def screen(self, on: bool) -> int:
        if on:
            return self.image(0, emissive=self.rng.uniform(0.5, 1.1), scale=(1.0, 2.5))
        return self.plain(v=(0.02, 0.08), s=(0.0, 0.05), gloss=(0.05, 0.1))

    def curtain(self) -> int:
        c = self.color(s=(0.1, 0.6), v=(0.3, 0.9))
        if not self.rich:
            return self.add(Material(c, _darker(c, 0.75), STRIPES, 6.0))
        return self.add(Material(c, _darker(c, 0.8), WEAVE, 120.0, pattern=3))

    def books(self) -> int:
        return self.add(Material((0.5, 0.5, 0.5), kind=BOOKS, scale=self.rng.uniform(20, 40)))

    def cardboard(self) -> int:
        c = self.color(h=(0.07, 0.1), s=(0.4, 0.6), v=(0.5, 0.75))
        return self.add(Material(c, _darker(c, 0.85), NOISE, 15.0))

    def colorful(self, gloss=(0.0, 0.0)) -> int:
        return self.plain(v=(0.15, 0.9), s=(0.2, 0.75), gloss=gloss)

    def shade(self, on: bool) -> int:
        c = self.color(h=(0.08, 0.14), s=(0.1, 0.4), v=(0.85, 1.0))
        return self.add(Material(c, kind=PLAIN, emissive=self.rng.uniform(0.8, 1.4) if on else 0.0))


def _mat_wall(k: _Kit, room_type: str) -> Material:
    """Painted walls (mostly off-white), some wallpaper or two-tone; the same number of
    draws whatever the texture option."""
    rng = k.rng
    tinted = rng.random() < 0.2
    c = k.color(
        s=(0.05, 0.22) if tinted else (0.0, 0.08), v=(0.65, 0.95) if tinted else (0.78, 0.97)
    )
    pattern = int(rng.choice(4, p=[0.6, 0.12, 0.1, 0.18]))
    if room_type in ("corridor", "open_office", "office", "bathroom", "kitchen"):
        pattern = 0 if pattern in (1, 2) else pattern
    c2 = k.color(s=(0.05, 0.3), v=(0.3, 0.85))
    if pattern in (1, 2):  # wallpaper: a lighter or darker shade of the base colour
        c2 = _darker(c, 0.8 + 0.1 * rng.random())
    trims = [(0.92, 0.92, 0.9), k.color(h=(0.05, 0.1), s=(0.3, 0.55), v=(0.25, 0.55)), (0.2,) * 3]
    trim = trims[int(rng.choice(3, p=[0.6, 0.25, 0.15]))]
    scale = 1.0 / rng.uniform(0.08, 0.3)
    if not k.rich:
        return Material(c, _darker(c, 0.92), NOISE, 0.1 * scale + 2.0)
    return Material(c, c2, PAINT, scale, color3=tuple(trim), pattern=pattern)


def _mat_floor(k: _Kit, room_type: str) -> Material:
    """Tiles (kitchens, bathrooms), carpet (offices, bedrooms), wood or laminate."""
    rng = k.rng
    r, r2, r3 = rng.random(3)
    gl = k._gloss(0.03, 0.12, (30.0, 200.0))
    c = k.color(s=(0.0, 0.3), v=(0.1, 0.65))
    if room_type in ("kitchen", "bathroom") or r < 0.2:
        c = k.color(s=(0.0, 0.25), v=(0.35, 0.95))
        return Material(
            c, _darker(c, 0.7), TILES, 1.0 / (0.25 + 0.35 * r3), pattern=int(r2 < 0.3), **gl
        )
    if r > (0.35 if room_type in ("office", "open_office", "corridor", "bedroom") else 0.7):
        if k.rich:
            return Material(c, _darker(c, 0.75), CARPET, 50.0 + 70.0 * r3, pattern=int(r2 < 0.2))
        return Material(c, _darker(c, 0.8), NOISE, 20.0)
    return k.wood_material((0.03, 0.12), planks=True)


def _mat_ceiling(k: _Kit, room_type: str) -> Material:
    """Painted ceilings; drop ceilings (tiles between T-bars) in offices and corridors."""
    rng = k.rng
    c = k.color(s=(0.0, 0.05), v=(0.8, 0.97))
    bars = k.color(s=(0.0, 0.05), v=(0.55, 0.95))
    p_drop = {"office": 0.8, "open_office": 0.9, "corridor": 0.8, "kitchen": 0.3}.get(
        room_type, 0.05
    )
    if rng.random() < p_drop and k.rich:
        return Material(c, bars, GRID, 1.0 / 0.6)
    return Material(c, _darker(c, 0.95), NOISE, 5.0)


# --------------------------------------------------------------------------------------------
# Random scenes: placement

#: labels of composite parts whose top can carry clutter
_SUPPORT_LABELS = {
    "table",
    "desk",
    "counter",
    "dresser",
    "night stand",
    "cabinet",
    "shelves",
    "bed",
}


def _wall_frame(size, w: int):
    """(origin, along unit vector, inward normal, length) of wall ``w``: 0: y = 0, 1: x = Lx,
    2: y = Ly, 3: x = 0, in counter-clockwise order."""
    Lx, Ly = size[0], size[1]
    return [
        (np.array([0.0, 0.0]), np.array([1.0, 0.0]), np.array([0.0, 1.0]), Lx),
        (np.array([Lx, 0.0]), np.array([0.0, 1.0]), np.array([-1.0, 0.0]), Ly),
        (np.array([Lx, Ly]), np.array([-1.0, 0.0]), np.array([0.0, -1.0]), Lx),
        (np.array([0.0, Ly]), np.array([0.0, -1.0]), np.array([1.0, 0.0]), Ly),
    ][w]


@dataclass
class _Support:
    """A horizontal top that can carry clutter: centre (2,), half extents (2,), yaw, height,
    label and the occupied rectangles (x0, x1, y0, y1) in its frame."""

    center: np.ndarray
    half: np.ndarray
    yaw: float
    z: float
    label: str
    occupied: list = field(default_factory=list)


class _Builder:
    """Places furniture and wall items in a room without overlaps and clear of the camera;
    records the tops that can carry clutter."""

    def __init__(self, rng: np.random.Generator, scene: Scene, cam_xy, cam_z: float):
        self.rng, self.scene, self.cam_xy, self.cam_z = rng, scene, np.asarray(cam_xy), cam_z
        self.footprints: list[np.ndarray] = []  # axis-aligned [x0, y0, x1, y1] on the floor
        self.wall_rects: list[list[tuple[float, float, float, float]]] = [[], [], [], []]
        self.supports: list[_Support] = []

    def wall_frame(self, w: int):
        return _wall_frame(self.scene.size, w)

    def _free_wall(self, w, a0, a1, z0, z1) -> bool:
        return all(
            a1 <= b0 or a0 >= b1 or z1 <= c0 or z0 >= c1 for b0, b1, c0, c1 in self.wall_rects[w]
        )

    def free_floor(self, rect, margin=0.05, cam_clear=0.35) -> bool:
        x0, y0, x1, y1 = rect
        Lx, Ly, _ = self.scene.size
        if x0 < -1e-6 or y0 < -1e-6 or x1 > Lx + 1e-6 or y1 > Ly + 1e-6:
            return False
        cx, cy = self.cam_xy
        if x0 - cam_clear < cx < x1 + cam_clear and y0 - cam_clear < cy < y1 + cam_clear:
            return False
        return all(
            x1 + margin <= f[0] or x0 - margin >= f[2] or y1 + margin <= f[1] or y0 - margin >= f[3]
            for f in self.footprints
        )

    def place(self, parts, base_xy, yaw, grounded=True) -> None:
        """Add ``parts`` = [(center_local, half, label, material)] at ``base_xy`` and ``yaw``."""
        cs, sn = math.cos(yaw), math.sin(yaw)
        for c, h, label, mat in parts:
            cw = np.array(
                [base_xy[0] + cs * c[0] - sn * c[1], base_xy[1] + sn * c[0] + cs * c[1], c[2]]
            )
            self.scene.add_box(cw, h, yaw, label, mat, grounded=grounded and c[2] - h[2] < 0.02)
        self._register_supports(parts, base_xy, yaw)

    def _register_supports(self, parts, base_xy, yaw) -> None:
        names = {v: k for k, v in ID40.items()}
        cs, sn = math.cos(yaw), math.sin(yaw)
        new = []
        for c, h, label, _ in parts:
            top = c[2] + h[2]
            if names[label] in _SUPPORT_LABELS and 0.25 < top < 1.9 and h[0] * h[1] > 0.02:
                if top > self.cam_z - 0.05 and names[label] != "shelves":
                    continue  # tops above the eye are invisible
                xy = np.array(
                    [base_xy[0] + cs * c[0] - sn * c[1], base_xy[1] + sn * c[0] + cs * c[1]]
                )
                new.append((_Support(xy, np.array(h[:2], float), yaw, top, names[label]), c))
        for sup, c in new:  # other parts resting on this top occupy it
            for c2, h2, _, _ in parts:
                if abs(c2[2] - h2[2] - sup.z) < 0.012 and abs(c2[0] - c[0]) < sup.half[0]:
                    dx, dy = c2[0] - c[0], c2[1] - c[1]
                    sup.occupied.append((dx - h2[0], dx + h2[0], dy - h2[1], dy + h2[1]))
            self.supports.append(sup)

    def footprint(self, base_xy, yaw, hw, hd) -> np.ndarray:
        cs, sn = abs(math.cos(yaw)), abs(math.sin(yaw))
        ex, ey = cs * hw + sn * hd, sn * hw + cs * hd
        return np.array([base_xy[0] - ex, base_xy[1] - ey, base_xy[0] + ex, base_xy[1] + ey])

    def try_against_wall(self, parts, hw, hd, height, tries=12) -> tuple | None:
        """Place a composite with its back (local -y) against a random wall; (base, yaw)."""
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
            if self.free_floor(fp):
                self.place(parts, base, yaw)
                self.footprints.append(fp)
                self.wall_rects[w].append((a - hw, a + hw, 0.0, height))
                return base, yaw
        return None

    def try_free(self, parts, hw, hd, tries=12, yaw=None, margin=0.05) -> tuple | None:
        """Place a composite anywhere on the floor; returns (base_xy, yaw) or None."""
        Lx, Ly, _ = self.scene.size
        for _ in range(tries):
            yw = self.rng.uniform(-math.pi, math.pi) if yaw is None else yaw
            base = np.array([self.rng.uniform(0.3, Lx - 0.3), self.rng.uniform(0.3, Ly - 0.3)])
            fp = self.footprint(base, yw, hw, hd)
            if self.free_floor(fp, margin=margin):
                self.place(parts, base, yw)
                self.footprints.append(fp)
                return base, yw
        return None

    def try_wall_item(self, parts_fn, width, z0, z1, depth, tries=12, wall=None) -> bool:
        """Mount a thin item (local frame: x along the wall, y out of the wall, z up)."""
        for _ in range(tries):
            w = int(self.rng.integers(4)) if wall is None else wall
            origin, along, inward, length = self.wall_frame(w)
            if length < width + 0.2:
                continue
            a = self.rng.uniform(width / 2 + 0.1, length - width / 2 - 0.1)
            if not self._free_wall(w, a - width / 2, a + width / 2, z0, z1):
                continue
            rel = self.cam_xy - origin
            along_c, out_c = float(rel @ along), float(rel @ inward)
            if out_c < depth + 0.3 and a - width / 2 - 0.3 < along_c < a + width / 2 + 0.3:
                continue  # too close to the camera
            base = origin + a * along
            yaw = math.atan2(-inward[0], inward[1])
            self.place(parts_fn(depth), base, yaw, grounded=False)
            self.wall_rects[w].append((a - width / 2, a + width / 2, z0, z1))
            return True
        return False


# --------------------------------------------------------------------------------------------
# Random scenes: furniture composites. Each builder takes the layout stream ``r`` and the
# material kit ``k`` and returns parts [(centre, half, label, material)] in the composite's
# frame (origin on the floor, back towards -y, front +y) and its half width, half depth and
# height.


def _part(x, y, z0, hx, hy, hz, label: str, mat: int):
    """A part of half extents (hx, hy, hz) centred at (x, y) with its bottom at height z0."""
    return ((x, y, z0 + hz), (hx, hy, hz), ID40[label], mat)


def _legs(hw, hd, height, t, mat, label, inset=0.03):
    return [
        _part(sx * (hw - inset - t), sy * (hd - inset - t), 0.0, t, t, height / 2, label, mat)
        for sx in (-1, 1)
        for sy in (-1, 1)
    ]


def _fur_table(r, k, low=False):
    if low:  # coffee table
        hw, hd, h = r.uniform(0.4, 0.65), r.uniform(0.25, 0.4), r.uniform(0.35, 0.48)
    else:
        hw, hd, h = r.uniform(0.4, 0.9), r.uniform(0.35, 0.6), r.uniform(0.7, 0.78)
    m = k.wood((0.02, 0.08))
    parts = [_part(0, 0, h - 0.04, hw, hd, 0.02, "table", m)]
    return parts + _legs(hw, hd, h - 0.04, 0.025, m, "table"), (hw, hd, h)


def _fur_desk(r, k):
    hw, hd, h = r.uniform(0.5, 0.8), r.uniform(0.3, 0.4), r.uniform(0.72, 0.76)
    m = k.wood((0.02, 0.06))
    pm = k.panel(m, 1, 1.0 / 0.18)
    leg = (h - 0.03) / 2
    parts = [_part(0, 0, h - 0.03, hw, hd, 0.015, "desk", m)]
    parts += [_part(s * (hw - 0.015), 0, 0, 0.015, hd, leg, "desk", m) for s in (-1, 1)]
    parts.append(_part(hw - 0.25, 0.0, 0.0, 0.2, hd - 0.01, leg, "desk", pm))
    return parts, (hw, hd, h)


def _fur_chair(r, k):
    hw, hd, sh = r.uniform(0.2, 0.26), r.uniform(0.2, 0.25), r.uniform(0.42, 0.48)
    m = k.wood() if r.random() < 0.6 else k.fabric()
    bh = r.uniform(0.35, 0.5)
    parts = [_part(0, 0, sh - 0.05, hw, hd, 0.025, "chair", m)]
    parts.append(_part(0, -hd + 0.02, sh, hw, 0.02, bh / 2, "chair", m))
    return parts + _legs(hw, hd, sh - 0.05, 0.018, m, "chair", inset=0.0), (hw, hd, sh + bh)


def _fur_office_chair(r, k):
    sh = r.uniform(0.44, 0.52)
    m = k.fabric(v=(0.05, 0.5))
    metal = k.plain(v=(0.05, 0.35), s=(0.0, 0.05), gloss=(0.05, 0.15))
    parts = [
        _part(0, 0, 0.01, 0.28, 0.025, 0.02, "chair", metal),
        _part(0, 0, 0.01, 0.025, 0.28, 0.02, "chair", metal),
        _part(0, 0, 0.05, 0.025, 0.025, (sh - 0.13) / 2, "chair", metal),
        _part(0, 0, sh - 0.08, 0.24, 0.24, 0.04, "chair", m),
        _part(0, -0.22, sh + 0.06, 0.21, 0.03, r.uniform(0.17, 0.27), "chair", m),
    ]
    return parts, (0.3, 0.3, sh + 0.6)


def _fur_sofa(r, k, armchair=False):
    hw = r.uniform(0.38, 0.5) if armchair else r.uniform(0.8, 1.2)
    hd = r.uniform(0.4, 0.48)
    label = "chair" if armchair else "sofa"
    m = k.fabric()
    parts = [_part(0, 0.05, 0.0, hw - 0.2, hd - 0.05, 0.21, label, m)]
    parts.append(_part(0, -hd + 0.1, 0.0, hw, 0.1, 0.4, label, m))
    parts += [_part(s * (hw - 0.1), 0.05, 0.0, 0.1, hd - 0.05, 0.3, label, m) for s in (-1, 1)]
    pm = k.fabric()
    for s in (-1, 1) if not armchair else (0,):
        if r.random() < 0.7:
            x = s * (hw - 0.45) if not armchair else 0.0
            parts.append(_part(x, -hd + 0.28, 0.42, 0.2, 0.07, 0.18, "pillow", pm))
    return parts, (hw, hd, 0.8)


def _fur_bed(r, k):
    hw, hd = r.uniform(0.5, 1.0), r.uniform(0.95, 1.05)
    m, wm = k.fabric(v=(0.6, 0.95), s=(0.0, 0.3)), k.wood()
    parts = [_part(0, 0.02, 0.0, hw, hd - 0.02, 0.25, "bed", m)]
    parts.append(_part(0, -hd + 0.02, 0.0, hw + 0.03, 0.02, 0.5, "bed", wm))
    if r.random() < 0.8:  # duvet over the lower part, draped over the sides
        bm = k.fabric()
        y0 = -hd + r.uniform(0.5, 0.8)
        parts.append(
            _part(0, (y0 + hd) / 2, 0.3, hw + 0.025, (hd - y0) / 2 + 0.02, 0.12, "bed", bm)
        )
    pm = k.plain(v=(0.75, 0.95))
    n_p = 2 if hw > 0.7 else 1
    for i in range(n_p):
        x = 0.0 if n_p == 1 else (i - 0.5) * hw
        parts.append(_part(x, -hd + 0.3, 0.5, min(0.3, hw / n_p - 0.05), 0.18, 0.06, "pillow", pm))
    return parts, (hw + 0.03, hd, 1.0)


def _fur_bookshelf(r, k):
    hw, hd, h = r.uniform(0.35, 0.6), r.uniform(0.14, 0.2), r.uniform(1.2, 2.1)
    m, bm = k.wood(), k.books()
    t = 0.015
    parts = [_part(s * (hw - t), 0, 0, t, hd, h / 2, "bookshelf", m) for s in (-1, 1)]
    parts.append(_part(0, -hd + t / 2, 0, hw - 2 * t, t / 2, h / 2, "bookshelf", m))
    n = max(2, int(h / 0.35))
    for i in range(n + 1):
        z = i * (h - t) / n
        parts.append(_part(0, 0.0, z, hw - 2 * t, hd, t / 2, "bookshelf", m))
        if i < n and r.random() < 0.85:
            bh, bw = r.uniform(0.15, 0.26), (hw - 2 * t) * r.uniform(0.5, 1.0)
            parts.append(_part(-(hw - 2 * t) + bw, 0.0, z + t, bw, hd - 0.02, bh / 2, "books", bm))
    return parts, (hw, hd, h)


def _fur_shelves(r, k):
    """Open shelving unit (clutter goes on its boards)."""
    hw, hd, h = r.uniform(0.4, 0.7), r.uniform(0.15, 0.22), r.uniform(0.8, 1.8)
    m = k.wood() if r.random() < 0.6 else k.plain(v=(0.1, 0.9))
    t = 0.015
    parts = [_part(s * (hw - t), 0, 0, t, hd, h / 2, "shelves", m) for s in (-1, 1)]
    n = max(2, int(h / 0.35))
    for i in range(1, n + 1):
        parts.append(_part(0, 0.0, i * (h - t) / n, hw - 2 * t, hd, t / 2, "shelves", m))
    return parts, (hw, hd, h)


_BLOCKS = {  # kind: (hw, hd, h ranges, front layout (0 doors, 1 drawers), drawer height, label)
    "cabinet": ((0.3, 0.6), (0.2, 0.3), (0.8, 2.0), 0, 0.2, "cabinet"),
    "wardrobe": ((0.45, 0.9), (0.28, 0.32), (1.8, 2.1), 0, 0.2, "cabinet"),
    "file cabinet": ((0.2, 0.25), (0.3, 0.35), (0.7, 1.35), 1, 0.3, "cabinet"),
    "dresser": ((0.5, 0.8), (0.22, 0.28), (0.75, 1.1), 1, 0.21, "dresser"),
    "night stand": ((0.2, 0.28), (0.18, 0.22), (0.45, 0.6), 1, 0.17, "night stand"),
    "refridgerator": ((0.3, 0.4), (0.3, 0.35), (1.6, 1.9), 0, 0.2, "refridgerator"),
    "otherfurniture": ((0.2, 0.6), (0.2, 0.4), (0.4, 1.2), 0, 0.2, "otherfurniture"),
}


def _fur_block(r, k, kind: str):
    """Cabinets, dressers, night stands, fridges: one box with door or drawer fronts."""
    (w0, w1), (d0, d1), (h0, h1), layout, drawer, label = _BLOCKS[kind]
    hw, hd, h = r.uniform(w0, w1), r.uniform(d0, d1), r.uniform(h0, h1)
    if kind == "refridgerator":
        m = k.plain(v=(0.75, 0.95) if r.random() < 0.7 else (0.5, 0.6), gloss=(0.04, 0.1))
    else:
        m = k.wood((0.0, 0.05)) if r.random() < 0.75 else k.plain(v=(0.3, 0.95))
    parts = [_part(0, 0, 0, hw, hd, h / 2, label, k.panel(m, layout, 1.0 / drawer))]
    if kind == "night stand" and r.random() < 0.7:
        parts.append(_part(0, 0, h + 0.09, 0.1, 0.1, 0.11, "lamp", k.shade(r.random() < 0.7)))
        parts.append(_part(0, 0, h, 0.02, 0.02, 0.045, "lamp", m))
    return parts, (hw, hd, h)


def _fur_tv_stand(r, k):
    hw, hd, h = r.uniform(0.5, 0.9), r.uniform(0.2, 0.25), r.uniform(0.4, 0.55)
    m = k.wood((0.0, 0.06))
    tw, th = min(hw, r.uniform(0.4, 0.7)), r.uniform(0.25, 0.42)
    scr = k.screen(r.random() < 0.4)
    parts = [
        _part(0, 0, 0, hw, hd, h / 2, "otherfurniture", k.panel(m, 0)),
        _part(0, -0.02, h, 0.1, 0.07, 0.02, "television", scr),
        _part(0, -0.02, h + 0.04, 0.025, 0.02, 0.05, "television", scr),
        _part(0, -0.02, h + 0.12, tw, 0.025, th, "television", scr),
    ]
    return parts, (hw, hd, h + 0.12 + 2 * th)


def _fur_counter(r, k):
    hw, hd = r.uniform(0.6, 1.5), r.uniform(0.28, 0.32)
    cm = k.panel(k.wood() if r.random() < 0.6 else k.plain(v=(0.3, 0.95)), 0)
    if r.random() < 0.5:
        tm = k.plain(v=(0.3, 0.9), gloss=(0.04, 0.12))
    else:
        tone = k.color(s=(0, 0.1), v=(0.4, 0.9))
        tm = k.add(
            Material(tone, k.color(s=(0, 0.1), v=(0.2, 0.5)), NOISE, 20.0, **k._gloss(0.04, 0.12))
        )
    parts = [_part(0, -0.02, 0.0, hw - 0.01, hd - 0.02, 0.44, "cabinet", cm)]
    parts.append(_part(0, 0.0, 0.88, hw, hd, 0.02, "counter", tm))
    if r.random() < 0.6:
        parts.append(
            _part(r.uniform(-hw + 0.3, hw - 0.3), 0.0, 0.92, 0.22, 0.17, 0.015, "sink", k.ceramic())
        )
    if r.random() < 0.8:
        parts.append(_part(0, -hd + 0.17, 1.4, hw, 0.17, 0.35, "cabinet", cm))  # wall cabinets
    return parts, (hw, hd, 2.15)


def _fur_bath(r, k, kind: str):
    wm = k.ceramic()
    if kind == "toilet":
        parts = [_part(0, 0.08, 0, 0.18, 0.25, 0.2, "toilet", wm)]
        parts.append(_part(0, -0.22, 0.38, 0.2, 0.09, 0.17, "toilet", wm))
        return parts, (0.2, 0.33, 0.72)
    if kind == "sink":
        parts = [_part(0, 0, 0.74, 0.25, 0.22, 0.06, "sink", wm)]
        parts.append(_part(0, -0.1, 0.0, 0.08, 0.08, 0.37, "sink", wm))
        return parts, (0.25, 0.22, 0.86)
    hw, hd = r.uniform(0.7, 0.85), r.uniform(0.35, 0.4)
    parts = [_part(0, 0, 0, hw, hd, 0.27, "bathtub", wm)]
    if r.random() < 0.6:
        cw = hw * r.uniform(0.3, 0.9)
        sc = k.fabric(v=(0.6, 0.95))
        parts.append(
            _part(-hw + cw, hd - 0.03, 0.55, cw, 0.01, r.uniform(0.6, 0.75), "shower curtain", sc)
        )
    return parts, (hw, hd, 0.55)


def _fur_floor_lamp(r, k):
    h = r.uniform(1.3, 1.65)
    metal = k.plain(v=(0.05, 0.6), s=(0.0, 0.1), gloss=(0.05, 0.15))
    rs = r.uniform(0.14, 0.22)
    parts = [
        _part(0, 0, 0, 0.13, 0.13, 0.012, "lamp", metal),
        _part(0, 0, 0.024, 0.012, 0.012, (h - 0.024) / 2, "lamp", metal),
        _part(0, 0, h - 0.05, rs, rs, r.uniform(0.1, 0.16), "lamp", k.shade(r.random() < 0.6)),
    ]
    return parts, (rs, rs, h + 0.3)


def _fur_plant(r, k):
    pr, ph = r.uniform(0.1, 0.18), r.uniform(0.15, 0.35)
    pot = k.plain(v=(0.2, 0.9), s=(0.0, 0.6), h=(0.0, 0.12))
    leaf = k.add(
        Material(
            k.color(h=(0.22, 0.38), s=(0.4, 0.8), v=(0.15, 0.5)),
            k.color(h=(0.2, 0.35), s=(0.3, 0.7), v=(0.05, 0.3)),
            NOISE,
            25.0,
        )
    )
    parts = [_part(0, 0, 0, pr, pr, ph / 2, "otherprop", pot)]
    for _ in range(int(r.integers(3, 6))):
        s = r.uniform(0.08, 0.2)
        parts.append(
            _part(
                r.uniform(-pr, pr),
                r.uniform(-pr, pr),
                ph + r.uniform(0.0, 0.4),
                s,
                s,
                s,
                "otherprop",
                leaf,
            )
        )
    return parts, (pr + 0.2, pr + 0.2, ph + 0.8)


def _fur_small(r, k, kind: str):
    if kind == "trash can":
        hw, h = r.uniform(0.12, 0.18), r.uniform(0.3, 0.45)
        return [_part(0, 0, 0, hw, hw, h / 2, "otherfurniture", k.colorful())], (hw, hw, h)
    hw, hd, h = r.uniform(0.1, 0.3), r.uniform(0.1, 0.3), r.uniform(0.15, 0.5)  # box
    return [_part(0, 0, 0, hw, hd, h / 2, "box", k.cardboard())], (hw, hd, h)


_FURNITURE = {
    "table": _fur_table,
    "coffee table": lambda r, k: _fur_table(r, k, low=True),
    "desk": _fur_desk,
    "chair": _fur_chair,
    "office chair": _fur_office_chair,
    "sofa": _fur_sofa,
    "armchair": lambda r, k: _fur_sofa(r, k, armchair=True),
    "bed": _fur_bed,
    "bookshelf": _fur_bookshelf,
    "shelves": _fur_shelves,
    "tv stand": _fur_tv_stand,
    "counter": _fur_counter,
    "floor lamp": _fur_floor_lamp,
    "plant": _fur_plant,
    **{kind: (lambda r, k, kind=kind: _fur_block(r, k, kind)) for kind in _BLOCKS},
    **{
        kind: (lambda r, k, kind=kind: _fur_bath(r, k, kind))
        for kind in ("toilet", "sink", "bathtub")
    },
    **{kind: (lambda r, k, kind=kind: _fur_small(r, k, kind)) for kind in ("box", "trash can")},
}


# --------------------------------------------------------------------------------------------
# Random scenes: wall-mounted items


def _wall_door(b: _Builder, k: _Kit) -> None:
    r = b.rng
    dm = k.panel(k.wood() if r.random() < 0.6 else k.plain(), 2)
    fm = k.plain(v=(0.5, 0.95)) if r.random() < 0.6 else dm
    w, hh = r.uniform(0.8, 0.95), r.uniform(2.0, 2.1)

    def parts(d):
        out = [_part(0, d, 0.0, w / 2, d, hh / 2, "door", dm)]
        out += [
            _part(s * (w / 2 + 0.035), 0.025, 0.0, 0.035, 0.025, hh / 2 + 0.02, "door", fm)
            for s in (-1, 1)
        ]
        out.append(_part(0, 0.025, hh, w / 2 + 0.07, 0.025, 0.035, "door", fm))
        return out

    b.try_wall_item(parts, w + 0.14, 0.0, hh + 0.07, 0.02)


def _wall_window(b: _Builder, k: _Kit, room_type: str) -> None:
    r, s = b.rng, b.scene
    w, z0 = r.uniform(0.8, 1.8), r.uniform(0.7, 1.1)
    z1 = min(z0 + r.uniform(1.0, 1.5), s.size[2] - 0.2)
    day = k.rng.random() < 0.8 or not k.night
    wm = _window_material(k, day)
    fm = k.plain(v=(0.8, 0.95))
    style = ["plain", "blinds", "curtain"][int(r.integers(3))]
    radiator = r.random() < 0.35 and z0 > 0.75
    bm = k.add(
        Material(k.color(s=(0, 0.15), v=(0.75, 0.95)), (0.35, 0.35, 0.35), STRIPES, 1 / 0.03)
    )
    cm = k.curtain()
    bz0 = z0 + (z1 - z0) * r.uniform(0.2, 0.8)
    rad_h = r.uniform(0.35, 0.55)

    def parts(d):
        zc, hz = (z0 + z1) / 2, (z1 - z0) / 2
        out = [((0, 0.005, zc), (w / 2, 0.005, hz), ID40["window"], wm)]
        out += [
            _part(0, 0.02, z - 0.04, w / 2 + 0.05, 0.02, 0.04, "window", fm)
            for z in (z0 - 0.04, z1 + 0.04)
        ]
        if style == "blinds":
            out.append(_part(0, 0.03, bz0, w / 2, 0.01, (z1 - bz0) / 2, "blinds", bm))
        elif style == "curtain":
            ch = (min(z1 + 0.15, s.size[2]) - 0.02) / 2
            out += [
                _part(sx * (w / 2 + 0.1), 0.06, 0.02, 0.22, 0.02, ch, "curtain", cm)
                for sx in (-1, 1)
            ]
        if radiator:
            out.append(_part(0, 0.07, 0.12, min(w / 2, 0.5), 0.05, rad_h / 2, "otherfurniture", fm))
        return out

    z_lo = 0.0 if style == "curtain" or radiator else z0 - 0.1
    b.try_wall_item(parts, w + 0.7, z_lo, z1 + 0.2, 0.02)


def _window_material(k: _Kit, day: bool) -> int:
    r = k.rng
    pattern = int(r.random() < 0.6) | (2 if r.random() < 0.5 else 0)
    if day:
        sky = k.color(h=(0.52, 0.62), s=(0.05, 0.3), v=(0.85, 1.0))
        out = (
            k.color(h=(0.0, 0.12), s=(0.05, 0.45), v=(0.3, 0.75))
            if pattern & 1
            else k.color(h=(0.2, 0.35), s=(0.3, 0.7), v=(0.2, 0.5))
        )
        glass = k.color(s=(0.0, 0.2), v=(0.1, 0.4))
        em = r.uniform(1.3, 2.5)
    else:
        sky = k.color(h=(0.6, 0.7), s=(0.3, 0.7), v=(0.15, 0.35))
        out = k.color(s=(0.0, 0.2), v=(0.05, 0.15))
        glass = k.color(h=(0.1, 0.15), s=(0.3, 0.6), v=(0.7, 1.0))
        em = r.uniform(0.2, 0.45)
    if not k.rich:
        return k.add(Material(sky, kind=WINDOW, emissive=em))
    return k.add(Material(sky, out, WINDOW, 1.0, em, glass, pattern))


def _wall_flat(b: _Builder, k: _Kit, kind: str) -> None:
    """Pictures, posters, whiteboards, mirrors, wall TVs, clocks, fire extinguishers."""
    r = b.rng
    w, h, z, d, label = {
        "picture": (
            r.uniform(0.25, 0.9),
            r.uniform(0.25, 0.7),
            r.uniform(1.1, 1.6),
            0.012,
            "picture",
        ),
        "poster": (
            r.uniform(0.4, 0.7),
            r.uniform(0.55, 1.0),
            r.uniform(1.0, 1.4),
            0.003,
            "picture",
        ),
        "whiteboard": (
            r.uniform(1.2, 2.0),
            r.uniform(0.9, 1.2),
            r.uniform(0.9, 1.1),
            0.012,
            "whiteboard",
        ),
        "mirror": (r.uniform(0.4, 0.8), r.uniform(0.6, 1.1), r.uniform(1.0, 1.3), 0.01, "mirror"),
        "television": (
            r.uniform(0.8, 1.3),
            r.uniform(0.5, 0.75),
            r.uniform(0.9, 1.3),
            0.04,
            "television",
        ),
        "clock": (0.28, 0.28, r.uniform(1.7, 2.0), 0.025, "otherprop"),
        "extinguisher": (0.16, 0.5, r.uniform(0.9, 1.1), 0.08, "otherprop"),
    }[kind]
    h = min(h, b.scene.size[2] - z - 0.05)
    if kind == "picture":
        m = k.image(int(r.choice(3, p=[0.25, 0.6, 0.15])))
    elif kind == "poster":
        m = k.image(2 if r.random() < 0.5 else 0, scale=(1.5, 4.0))
    elif kind == "whiteboard":
        m = k.text(
            k.color(s=(0, 0.02), v=(0.92, 1.0)),
            k.color(h=(0.55, 1.0), s=(0.3, 0.9), v=(0.1, 0.6)),
            r.uniform(18, 35),
            True,
        )
    elif kind == "mirror":
        m = k.add(
            Material(
                k.color(h=(0.5, 0.6), s=(0.05, 0.15), v=(0.6, 0.8)),
                (0.4, 0.42, 0.45),
                NOISE,
                3.0,
                **k._gloss(0.2, 0.4),
            )
        )
    elif kind == "television":
        m = k.screen(r.random() < 0.35)
    elif kind == "clock":
        m = k.text((0.95, 0.95, 0.92), (0.05, 0.05, 0.05), 25.0, True)
    else:
        m = k.plain(h=(0.98, 1.0), s=(0.8, 0.95), v=(0.6, 0.85), gloss=(0.05, 0.1))
    b.try_wall_item(lambda dd: [_part(0, dd, z, w / 2, dd, h / 2, label, m)], w, z, z + h, d)


def _wall_papers(b: _Builder, k: _Kit) -> None:
    """A cluster of notices: 1-6 sheets around a point at eye height."""
    r = b.rng
    n = int(r.integers(1, 7))
    sheets = [
        (
            r.uniform(-0.35, 0.35),
            r.uniform(-0.25, 0.25),
            r.uniform(0.08, 0.15),
            r.uniform(0.1, 0.16),
        )
        for _ in range(n)
    ]
    mats = [k.paper() for _ in range(n)]
    z = r.uniform(1.15, 1.5)

    def parts(d):
        return [
            _part(x, 0.002 + 0.001 * i, z + y - hh, hw, 0.001, hh, "paper", mats[i])
            for i, (x, y, hw, hh) in enumerate(sheets)
        ]

    b.try_wall_item(parts, 1.0, z - 0.45, z + 0.45, 0.003)


def _wall_shelves(b: _Builder, k: _Kit) -> None:
    r = b.rng
    w, z = r.uniform(0.6, 1.2), r.uniform(1.2, 1.8)
    m = k.wood()
    n = int(r.integers(1, 3))
    b.try_wall_item(
        lambda d: [
            _part(0, 0.12, z + i * 0.35 - 0.012, w / 2, 0.12, 0.012, "shelves", m) for i in range(n)
        ],
        w,
        z - 0.05,
        z + 0.6,
        0.12,
    )


def _wall_towel(b: _Builder, k: _Kit) -> None:
    r = b.rng
    w, hh, z = r.uniform(0.3, 0.6), r.uniform(0.2, 0.35), r.uniform(0.9, 1.3)
    bar, tm = k.plain(v=(0.5, 0.9), gloss=(0.05, 0.15)), k.fabric(v=(0.4, 0.95))

    def parts(d):
        return [
            _part(0, 0.05, z + hh * 2, w / 2 + 0.05, 0.012, 0.012, "otherprop", bar),
            _part(0, 0.05, z, w / 2, 0.03, hh, "towel", tm),
        ]

    b.try_wall_item(parts, w + 0.1, z, z + 2 * hh + 0.03, 0.08)


def _add_structures(b: _Builder, k: _Kit, room_type: str) -> None:
    """Soffits, ducts, pipes and beams under the ceiling (otherstructure), light switches and
    sockets on the walls (otherprop)."""
    r, s = b.rng, b.scene
    Lx, Ly, Lz = s.size
    office = room_type in ("office", "open_office", "corridor", "kitchen")
    for _ in range(int(r.integers(1, 4)) if r.random() < (0.6 if office else 0.15) else 0):
        kind, along_x = int(r.integers(3)), r.random() < 0.5
        L, across = (Lx, Ly) if along_x else (Ly, Lx)
        if kind == 0:  # soffit along a wall
            w, h = r.uniform(0.2, 0.6), r.uniform(0.15, 0.4)
            off = w / 2 if r.random() < 0.5 else across - w / 2
        else:  # duct or pipe (1) or beam (2) across the room
            w = r.uniform(0.06, 0.35) if kind == 1 else r.uniform(0.2, 0.35)
            h = w if kind == 1 else r.uniform(0.2, 0.4)
            off = r.uniform(0.5, max(0.51, across - 0.5))
        drop = r.uniform(0.0, 0.3) if kind == 1 else 0.0
        if Lz - drop - h < b.cam_z + 0.3:
            continue  # keep clear of the camera
        if kind == 1:
            m = k.plain(v=(0.3, 0.9), s=(0.0, 0.1), gloss=(0.03, 0.1))
        else:
            m = k.plain(v=(0.6, 0.95), s=(0.0, 0.05))
        c = (L / 2, off) if along_x else (off, L / 2)
        half = (L / 2, w / 2, h / 2) if along_x else (w / 2, L / 2, h / 2)
        s.add_box((c[0], c[1], Lz - drop - h / 2), half, 0.0, ID40["otherstructure"], m)
    plate = k.plain(v=(0.7, 0.95), s=(0.0, 0.05))
    for _ in range(int(r.integers(1, 6))):
        z, hw, hh = (1.2, 0.035, 0.05) if r.random() < 0.4 else (0.3, 0.035, 0.035)

        def parts(d, z=z, hw=hw, hh=hh):
            return [_part(0, d, z - hh, hw, d, hh, "otherprop", plate)]

        b.try_wall_item(parts, 2 * hw, z - hh, z + hh, 0.006, tries=4)


_WALL_ITEMS = {
    "bedroom": [
        "picture",
        "picture",
        "poster",
        "mirror",
        "television",
        "shelves",
        "clock",
        "picture",
    ],
    "living": [
        "picture",
        "picture",
        "television",
        "shelves",
        "poster",
        "clock",
        "mirror",
        "picture",
    ],
    "kitchen": ["papers", "shelves", "clock", "picture", "papers", "extinguisher"],
    "office": [
        "whiteboard",
        "papers",
        "poster",
        "shelves",
        "picture",
        "clock",
        "papers",
        "picture",
    ],
    "bathroom": ["mirror", "towel", "towel", "shelves", "picture"],
    "dining": ["picture", "picture", "mirror", "clock", "shelves", "poster"],
    "corridor": ["papers", "poster", "picture", "papers", "extinguisher", "whiteboard"],
    "open_office": ["whiteboard", "papers", "poster", "picture", "clock", "papers", "extinguisher"],
}
_DOORS = {"corridor": (1, 4), "open_office": (1, 2)}
_WINDOWS = {"corridor": (0, 1), "bathroom": (0, 1), "open_office": (1, 4)}


def _add_wall_items(b: _Builder, k: _Kit, room_type: str, n_extra: int) -> None:
    r = b.rng
    d0, d1 = _DOORS.get(room_type, (0, 1))
    n_doors = int(r.integers(d0, d1 + 1)) if d1 > 1 else int(r.random() < 0.55)
    for _ in range(n_doors):
        _wall_door(b, k)
    w0, w1 = _WINDOWS.get(room_type, (0, 2))
    for _ in range(int(r.integers(w0, w1 + 1))):
        _wall_window(b, k, room_type)
    menu = _WALL_ITEMS[room_type]
    for _ in range(n_extra):
        kind = menu[int(r.integers(len(menu)))]
        if kind == "papers":
            _wall_papers(b, k)
        elif kind == "shelves":
            _wall_shelves(b, k)
        elif kind == "towel":
            _wall_towel(b, k)
        else:
            _wall_flat(b, k, kind)


# --------------------------------------------------------------------------------------------
# Random scenes: clutter. Each maker returns parts in the object's frame (origin at the centre
# of its bottom) and its half width and half depth.


def _obj_books(r, k):
    hw, hd, z, parts = r.uniform(0.07, 0.13), r.uniform(0.09, 0.15), 0.0, []
    for _ in range(int(r.integers(1, 5))):
        t = r.uniform(0.012, 0.035)
        parts.append(
            _part(
                r.uniform(-0.01, 0.01),
                r.uniform(-0.01, 0.01),
                z,
                hw,
                hd,
                t / 2,
                "books",
                k.colorful(),
            )
        )
        z += t
    return parts, hw + 0.01, hd + 0.01


def _obj_book_row(r, k):
    w, d, h = r.uniform(0.08, 0.35), r.uniform(0.14, 0.2), r.uniform(0.16, 0.26)
    return [_part(0, 0, 0, w / 2, d / 2, h / 2, "books", k.books())], w / 2, d / 2


def _obj_box(r, k):
    hw, hd, h = r.uniform(0.05, 0.2), r.uniform(0.05, 0.2), r.uniform(0.05, 0.28)
    m = k.cardboard() if r.random() < 0.6 else k.colorful()
    return [_part(0, 0, 0, hw, hd, h / 2, "box", m)], hw, hd


def _obj_bottle(r, k):
    rb, h = r.uniform(0.025, 0.045), r.uniform(0.15, 0.3)
    m = k.colorful((0.05, 0.15))
    parts = [_part(0, 0, 0, rb, rb, h * 0.35, "otherprop", m)]
    parts.append(_part(0, 0, h * 0.7, rb * 0.45, rb * 0.45, h * 0.15, "otherprop", k.colorful()))
    return parts, rb, rb


def _obj_cup(r, k):
    rc, h = r.uniform(0.03, 0.05), r.uniform(0.07, 0.12)
    return [_part(0, 0, 0, rc, rc, h / 2, "otherprop", k.colorful((0.03, 0.1)))], rc + 0.02, rc


def _obj_bowl(r, k):
    rb, h = r.uniform(0.07, 0.13), r.uniform(0.03, 0.07)
    m = k.ceramic() if r.random() < 0.5 else k.colorful((0.03, 0.1))
    return [_part(0, 0, 0, rb, rb, h / 2, "otherprop", m)], rb, rb


def _obj_paper(r, k):
    n = int(r.integers(1, 4))
    parts = [
        _part(
            r.uniform(-0.03, 0.03),
            r.uniform(-0.03, 0.03),
            0.001 * i,
            0.105,
            0.148,
            0.0005,
            "paper",
            k.paper(),
        )
        for i in range(n)
    ]
    return parts, 0.14, 0.18


def _obj_laptop(r, k):
    body = k.plain(v=(0.05, 0.8), s=(0.0, 0.05), gloss=(0.03, 0.1))
    on = r.random() < 0.6
    parts = [
        _part(0, 0, 0, 0.16, 0.11, 0.01, "otherprop", body),
        _part(0, -0.105, 0.02, 0.16, 0.006, 0.105, "otherprop", k.screen(on)),
    ]
    return parts, 0.16, 0.12


def _obj_monitor(r, k):
    w, h = r.uniform(0.22, 0.3), r.uniform(0.13, 0.19)
    body = k.plain(v=(0.03, 0.2), s=(0.0, 0.05))
    parts = [
        _part(0, -0.05, 0, 0.1, 0.08, 0.01, "television", body),
        _part(0, -0.07, 0.02, 0.02, 0.02, 0.05, "television", body),
        _part(0, -0.06, 0.1, w, 0.02, h, "television", k.screen(r.random() < 0.6)),
        _part(0, 0.12, 0, 0.2, 0.07, 0.012, "otherprop", k.plain(v=(0.05, 0.9), s=(0.0, 0.05))),
    ]
    return parts, w, 0.2


def _obj_lamp(r, k):
    metal = k.plain(v=(0.05, 0.8), s=(0.0, 0.3), gloss=(0.05, 0.15))
    h, rs = r.uniform(0.25, 0.4), r.uniform(0.07, 0.12)
    parts = [
        _part(0, 0, 0, 0.07, 0.07, 0.01, "lamp", metal),
        _part(0, 0, 0.02, 0.01, 0.01, h / 2, "lamp", metal),
        _part(0, 0, h, rs, rs, rs * 0.8, "lamp", k.shade(r.random() < 0.5)),
    ]
    return parts, max(rs, 0.07), max(rs, 0.07)


def _obj_frame(r, k):
    w, h = r.uniform(0.07, 0.13), r.uniform(0.09, 0.15)
    return [_part(0, 0, 0, w, 0.012, h, "picture", k.image(1))], w, 0.04


def _obj_bag(r, k):
    hw, hd, h = r.uniform(0.12, 0.22), r.uniform(0.06, 0.12), r.uniform(0.15, 0.35)
    return [_part(0, 0, 0, hw, hd, h / 2, "bag", k.fabric(v=(0.05, 0.8)))], hw, hd


def _obj_clothes(r, k):
    m, parts = k.fabric(), []
    for i in range(int(r.integers(1, 4))):
        parts.append(
            _part(
                r.uniform(-0.08, 0.08),
                r.uniform(-0.08, 0.08),
                0.03 * i,
                r.uniform(0.12, 0.25),
                r.uniform(0.1, 0.2),
                r.uniform(0.01, 0.03),
                "clothes",
                m,
            )
        )
    return parts, 0.35, 0.3


def _obj_appliance(r, k):
    hw, hd, h = r.uniform(0.1, 0.26), r.uniform(0.1, 0.2), r.uniform(0.15, 0.32)
    m = k.plain(v=(0.05, 0.95), s=(0.0, 0.2), gloss=(0.04, 0.12))
    return [_part(0, 0, 0, hw, hd, h / 2, "otherprop", k.panel(m, 0))], hw, hd


def _obj_plant(r, k):
    pr = r.uniform(0.05, 0.09)
    leaf = k.add(
        Material(
            k.color(h=(0.22, 0.38), s=(0.4, 0.8), v=(0.15, 0.5)), (0.05, 0.15, 0.05), NOISE, 40.0
        )
    )
    parts = [_part(0, 0, 0, pr, pr, pr, "otherprop", k.colorful())]
    parts += [
        _part(
            r.uniform(-pr, pr),
            r.uniform(-pr, pr),
            2 * pr + r.uniform(0, 0.08),
            0.06,
            0.06,
            0.06,
            "otherprop",
            leaf,
        )
        for _ in range(3)
    ]
    return parts, pr + 0.07, pr + 0.07


_OBJECTS = {
    "books": _obj_books,
    "book row": _obj_book_row,
    "box": _obj_box,
    "bottle": _obj_bottle,
    "cup": _obj_cup,
    "bowl": _obj_bowl,
    "paper": _obj_paper,
    "laptop": _obj_laptop,
    "monitor": _obj_monitor,
    "lamp": _obj_lamp,
    "frame": _obj_frame,
    "bag": _obj_bag,
    "clothes": _obj_clothes,
    "appliance": _obj_appliance,
    "plant": _obj_plant,
}
_ON_DRESSER = {"books": 2, "box": 2, "lamp": 2, "frame": 2, "bottle": 1, "clothes": 1, "plant": 1}
_CLUTTER = {  # what lies on which support (relative weights)
    "desk": {"monitor": 3, "laptop": 2, "paper": 3, "books": 2, "cup": 2, "bottle": 1, "lamp": 1},
    "table": {
        "paper": 3,
        "books": 2,
        "cup": 3,
        "bottle": 2,
        "bowl": 2,
        "laptop": 1,
        "bag": 1,
        "box": 1,
        "plant": 1,
    },
    "counter": {"bottle": 4, "box": 2, "appliance": 3, "cup": 2, "bowl": 2, "paper": 1},
    "dresser": _ON_DRESSER,
    "night stand": _ON_DRESSER,
    "cabinet": {"books": 2, "box": 3, "frame": 1, "bottle": 1, "plant": 1, "appliance": 1},
    "shelves": {"book row": 5, "box": 3, "bottle": 1, "plant": 1, "frame": 1},
    "bed": {"clothes": 3, "bag": 1, "books": 1, "paper": 1},
    "floor": {"box": 3, "bag": 3, "clothes": 1, "books": 1},
}


def _pick(r, weights: dict) -> str:
    names = list(weights)
    p = np.array([weights[n] for n in names], dtype=np.float64)
    return names[int(r.choice(len(names), p=p / p.sum()))]


def _place_on(b: _Builder, sup: _Support, parts, hw, hd, r) -> bool:
    """Put an object on a support top, clear of what is already there."""
    if sup.label == "shelves" and max(c[2] + h[2] for c, h, _, _ in parts) > 0.3:
        return False
    for _ in range(8):
        dyaw = r.uniform(-0.4, 0.4)
        cs, sn = abs(math.cos(dyaw)), abs(math.sin(dyaw))
        ex, ey = cs * hw + sn * hd, sn * hw + cs * hd
        if ex > sup.half[0] - 0.01 or ey > sup.half[1] - 0.01:
            return False
        x = r.uniform(-sup.half[0] + ex + 0.01, sup.half[0] - ex - 0.01)
        y = r.uniform(-sup.half[1] + ey + 0.01, sup.half[1] - ey - 0.01)
        if any(
            x + ex > o[0] and x - ex < o[1] and y + ey > o[2] and y - ey < o[3]
            for o in sup.occupied
        ):
            continue
        sup.occupied.append((x - ex, x + ex, y - ey, y + ey))
        c, s = math.cos(sup.yaw), math.sin(sup.yaw)
        base = sup.center + np.array([c * x - s * y, s * x + c * y])
        lifted = [((p[0], p[1], p[2] + sup.z), h, lab, m) for p, h, lab, m in parts]
        b.place(lifted, base, sup.yaw + dyaw, grounded=False)
        return True
    return False


def _add_clutter(b: _Builder, r: np.random.Generator, k: _Kit, n: int) -> None:
    """``n`` small objects on the supports (chosen by area) or on the floor."""
    layout_rng, b.rng = b.rng, r  # floor placement draws from the clutter stream too
    supports = list(b.supports)
    for _ in range(n):
        on_floor = r.random() < 0.15 or not supports
        if on_floor:
            parts, hw, hd = _OBJECTS[_pick(r, _CLUTTER["floor"])](r, k)
            if r.random() < 0.7:  # mostly along the walls, out of the way
                b.try_against_wall(parts, hw, hd, 0.5, tries=6)
            else:
                b.try_free(parts, hw, hd, tries=6, margin=0.02)
            continue
        area = np.array([s.half[0] * s.half[1] for s in supports])
        sup = supports[int(r.choice(len(supports), p=area / area.sum()))]
        parts, hw, hd = _OBJECTS[_pick(r, _CLUTTER[sup.label])](r, k)
        _place_on(b, sup, parts, hw, hd, r)
    b.rng = layout_rng


# --------------------------------------------------------------------------------------------
# Random scenes: lights


def _fixture(
    scene: Scene, xy, half_xy, drop: float, emissive: float, color, power: float, hang=False
):
    """An emissive ceiling fixture (label lamp) with an area light just below it."""
    Lz = scene.size[2]
    c = np.asarray(color, dtype=np.float64)
    tint = tuple(float(x) for x in np.clip(c / c.max(), 0, 1) ** (1 / 2.2))
    m = scene.add_material(Material(tint, kind=PLAIN, emissive=emissive))
    scene.add_box(
        (xy[0], xy[1], Lz - drop / 2), (half_xy[0], half_xy[1], drop / 2), 0.0, ID40["lamp"], m
    )
    ext = ((0.9 * half_xy[0], 0.0, 0.0), (0.0, 0.9 * half_xy[1], 0.0))
    pos = (xy[0], xy[1], Lz - drop - 0.03)
    scene.add_light(pos, power, c, extent=ext, direction=None if hang else (0.0, 0.0, -1.0))


def _ceiling_lights(scene: Scene, r, opts: SceneOptions, room_type: str, cam_xy, color) -> None:
    Lx, Ly, Lz = scene.size
    office = room_type in ("office", "open_office", "corridor")
    p_panels = 0.85 if office else (0.4 if room_type == "kitchen" else 0.08)
    style = (
        "panels" if r.random() < p_panels else ("downlights" if r.random() < 0.55 else "pendant")
    )
    n = int(r.integers(opts.lights[0], opts.lights[1] + 1))
    emissive, power = r.uniform(1.8, 3.0), r.uniform(0.8, 1.5)
    if style == "pendant":
        for _ in range(max(1, min(n, 2))):
            rad, drop = r.uniform(0.12, 0.3), r.uniform(0.05, max(0.06, min(0.5, Lz - 2.15)))
            xy = (r.uniform(0.6, max(0.61, Lx - 0.6)), r.uniform(0.6, max(0.61, Ly - 0.6)))
            _fixture(scene, xy, (rad, rad), drop, emissive * 0.7, color, power, hang=True)
        return
    panel = style == "panels"
    half = (0.3, 0.6 if r.random() < 0.6 else 0.3) if panel else (r.uniform(0.05, 0.09),) * 2
    if r.random() < 0.5:
        half = half[::-1]
    step = (r.uniform(2.2, 3.4), r.uniform(2.2, 3.4)) if panel else (r.uniform(1.1, 1.9),) * 2
    axes = []
    for L, st, hh in ((Lx, step[0], half[0]), (Ly, step[1], half[1])):
        v = np.arange(st / 2, L, st)[:12]
        v = v + (L - v[-1] - v[0]) / 2 if v.size else np.array([L / 2])
        axes.append(np.clip(v, hh + 0.1, max(hh + 0.1, L - hh - 0.1)))
    grid = [(x, y) for x in axes[0] for y in axes[1]]
    d = [math.hypot(x - cam_xy[0], y - cam_xy[1]) for x, y in grid]
    lit = set(np.argsort(d, kind="stable")[:n].tolist())
    for i, xy in enumerate(grid[:40]):
        if i in lit:
            _fixture(scene, xy, half, 0.012, emissive, color, power * (1.0 if panel else 0.6))
        else:
            m = scene.add_material(Material((1.0, 0.98, 0.95), kind=PLAIN, emissive=emissive))
            scene.add_box(
                (xy[0], xy[1], Lz - 0.006), (half[0], half[1], 0.006), 0.0, ID40["lamp"], m
            )


def _emitter_boxes(scene: Scene, label: str, min_emissive: float) -> list[int]:
    emis = [scene.materials[m].emissive for m in scene.material_ids]
    return [
        k
        for k in range(6, scene.num_objects)
        if scene.labels[k] == ID40[label] and emis[k] >= min_emissive
    ]


def _lamp_and_window_lights(scene: Scene, r, opts: SceneOptions, kelvin) -> None:
    """Lights inside lit table/floor lamp shades and daylight through (day) windows."""
    for k in _emitter_boxes(scene, "lamp", 0.5)[:2]:
        h = scene.halves[k]
        scene.add_light(
            scene.centers[k],
            r.uniform(0.25, 0.5),
            kelvin(r.uniform(2700, 3200)),
            extent=((h[0], 0, 0), (0, h[1], 0)),
        )
    if not opts.window_light:
        return
    for k in _emitter_boxes(scene, "window", 1.0)[:2]:
        yaw, h = scene.yaws[k], scene.halves[k]
        inward = np.array([-math.sin(yaw), math.cos(yaw), 0.0])
        along = np.array([math.cos(yaw), math.sin(yaw), 0.0])
        area = 4 * h[0] * h[2]
        scene.add_light(
            scene.centers[k] + 0.05 * inward,
            r.uniform(1.0, 2.5) * min(1.0, area / 1.5),
            kelvin(r.uniform(5500, 7500)),
            extent=(h[0] * along, (0, 0, h[2])),
            direction=inward,
        )


def _add_lighting(scene: Scene, r, opts: SceneOptions, room_type: str, cam_xy) -> None:
    """Lights of a random scene (drawn from the light stream ``r``) and the ambient term."""
    scene.clear_lights()
    temps = tuple(opts.color_temperature)

    def kelvin(t):
        return kelvin_to_rgb(t) if temps else np.ones(3)

    room_k = temps[0] + r.random() * (temps[-1] - temps[0]) if temps else 6500.0
    Lx, Ly, Lz = scene.size
    if opts.lighting == "point":
        for _ in range(int(r.integers(opts.lights[0], opts.lights[1] + 1))):
            pos = (r.uniform(0.5, Lx - 0.5), r.uniform(0.5, Ly - 0.5), Lz - r.uniform(0.1, 0.6))
            tint = (
                kelvin(room_k + r.normal(0, 200))
                if temps
                else _rand_color(r, h=(0.06, 0.15), s=(0.0, 0.25), v=(1.0, 1.0))
            )
            scene.add_light(pos, r.uniform(0.6, 1.4), tint)
        if r.random() < 0.6:
            rad, drop = r.uniform(0.12, 0.3), r.uniform(0.05, max(0.06, min(0.5, Lz - 2.15)))
            m = scene.add_material(Material((1.0, 0.95, 0.85), kind=PLAIN, emissive=1.6))
            xy = (r.uniform(0.6, max(0.61, Lx - 0.6)), r.uniform(0.6, max(0.61, Ly - 0.6)))
            scene.add_box(
                (*xy, Lz - drop / 2), (rad, rad, drop / 2), r.uniform(0, math.pi), ID40["lamp"], m
            )
        scene.ambient = r.uniform(0.25, 0.5)
        scene.ambient_color = (1.0, 1.0, 1.0)
        return
    _ceiling_lights(scene, r, opts, room_type, cam_xy, kelvin(room_k))
    _lamp_and_window_lights(scene, r, opts, kelvin)
    if not scene.lights:  # a room lit only by its ambient light looks flat: add a fill light
        scene.add_light((Lx / 2, Ly / 2, Lz - 0.3), 0.6, kelvin(room_k))
    wall = np.asarray(scene.materials[0].color, dtype=np.float64) ** 2.2
    tint = _illuminant(scene) * (0.55 + 0.45 * wall / max(float(_LUMA @ wall), 1e-3))
    tint = tint / float(_LUMA @ tint)
    scene.ambient = r.uniform(0.03, 0.12)
    scene.ambient_color = tuple(float(x) for x in tint)


# --------------------------------------------------------------------------------------------
# Random scenes: rooms, camera, sampling

_ROOM_SPECS = {  # NYUv2-like mix: weight, x range, y range, z range (metres)
    "bedroom": (0.2, (2.8, 5.0), (3.0, 5.5), (2.4, 2.9)),
    "living": (0.14, (3.5, 7.0), (3.5, 6.5), (2.4, 3.2)),
    "kitchen": (0.14, (2.4, 5.0), (2.4, 4.5), (2.4, 3.0)),
    "office": (0.14, (2.8, 6.0), (2.8, 5.0), (2.5, 3.2)),
    "bathroom": (0.08, (1.6, 3.0), (1.8, 3.2), (2.3, 2.8)),
    "dining": (0.1, (3.0, 5.5), (3.0, 5.0), (2.4, 3.0)),
    "corridor": (0.08, (1.3, 2.4), (5.0, 14.0), (2.4, 3.0)),
    "open_office": (0.12, (7.0, 14.0), (6.0, 12.0), (2.7, 3.6)),
}
_ROOM_FURNITURE = {  # anchors (always tried first), extras (drawn)
    "bedroom": (
        ["bed"],
        [
            "night stand",
            "night stand",
            "dresser",
            "cabinet",
            "chair",
            "desk",
            "bookshelf",
            "box",
            "tv stand",
            "floor lamp",
            "plant",
            "shelves",
            "armchair",
        ],
    ),
    "living": (
        ["sofa"],
        [
            "coffee table",
            "armchair",
            "tv stand",
            "bookshelf",
            "cabinet",
            "floor lamp",
            "plant",
            "sofa",
            "table",
            "shelves",
            "otherfurniture",
            "box",
        ],
    ),
    "office": (
        ["desk"],
        [
            "office chair",
            "bookshelf",
            "file cabinet",
            "cabinet",
            "desk",
            "table",
            "box",
            "plant",
            "trash can",
            "shelves",
        ],
    ),
    "kitchen": (
        ["counter"],
        ["refridgerator", "table", "chair", "counter", "cabinet", "trash can", "box"],
    ),
    "bathroom": (["toilet", "sink"], ["bathtub", "cabinet", "trash can", "shelves"]),
    "dining": (
        ["table"],
        ["cabinet", "dresser", "bookshelf", "plant", "chair", "shelves", "table"],
    ),
    "corridor": (
        [],
        ["cabinet", "file cabinet", "trash can", "bookshelf", "box", "plant", "chair"],
    ),
    "open_office": (
        [],
        ["file cabinet", "cabinet", "bookshelf", "plant", "table", "trash can", "shelves"],
    ),
}
_FREE_STANDING = {
    "table",
    "coffee table",
    "chair",
    "office chair",
    "armchair",
    "box",
    "otherfurniture",
    "plant",
    "trash can",
    "floor lamp",
}


class _Streams:
    """Independent random streams of one scene, so that switching a feature on or off changes
    only the draws of that feature (e.g. the same room with and without clutter)."""

    def __init__(self, rng: np.random.Generator):
        names = ("layout", "look", "clutter", "clutter_look", "light", "pose", "intrinsics")
        for name, seed in zip(names, rng.integers(0, 2**63 - 1, size=len(names))):
            setattr(self, name, np.random.default_rng(int(seed)))


def _room(r, opts: SceneOptions) -> tuple[str, tuple[float, float, float]]:
    types = list(opts.room_types)
    w = np.array([_ROOM_SPECS[t][0] for t in types])
    room_type = types[int(r.choice(len(types), p=w / w.sum()))]
    _, xr, yr, zr = _ROOM_SPECS[room_type]
    x, y, z = r.uniform(*xr), r.uniform(*yr), r.uniform(*zr)
    if r.random() < 0.5:
        x, y = y, x
    clamp = [
        float(np.clip(v, *rng_))
        for v, rng_ in zip((x, y, z), (opts.room_x, opts.room_y, opts.room_z))
    ]
    return room_type, tuple(clamp)


def sample_intrinsics(
    rng: np.random.Generator, height: int, width: int, options: SceneOptions
) -> np.ndarray:
    """Intrinsics (3, 3) float64 of a random camera imaged at ``height`` x ``width``.

    ``"varied"``: ``fx / W`` uniform in ``focal_range``; a native aspect ratio ``a`` from
    ``aspect_ratios`` gives ``fy = fx * a * H / W`` (a 16:9 sensor resized to 4:3 has
    ``fy = 4/3 fx``); the principal point is jittered by ``principal_jitter`` x (W, H)
    around the image centre. ``"nyu"``: NYUv2's intrinsics scaled to the image, the focal
    length jittered by ``focal_jitter``.
    """
    o = options
    r = rng.random(4)
    if o.intrinsics == "nyu":
        sy, sx = height / NYU_SIZE[0], width / NYU_SIZE[1]
        f = 1.0 + (2 * r[0] - 1) * o.focal_jitter
        return np.array(
            [
                [NYU_K[0, 0] * sx * f, 0.0, (NYU_K[0, 2] + 0.5) * sx - 0.5],
                [0.0, NYU_K[1, 1] * sy * f, (NYU_K[1, 2] + 0.5) * sy - 0.5],
                [0.0, 0.0, 1.0],
            ]
        )
    fx = (o.focal_range[0] + r[0] * (o.focal_range[1] - o.focal_range[0])) * width
    aspect = o.aspect_ratios[int(r[1] * len(o.aspect_ratios))]
    fy = fx * aspect * height / width
    cx = (width - 1) / 2 + (2 * r[2] - 1) * o.principal_jitter * width
    cy = (height - 1) / 2 + (2 * r[3] - 1) * o.principal_jitter * height
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def _camera_spot(r, size, opts: SceneOptions):
    """Camera (xy, height, facing): ``facing`` is the heading into the room for a camera
    standing in front of a wall, else None."""
    Lx, Ly, Lz = size
    u = r.random(4)
    hi = min(opts.camera_height[1], Lz - 0.35)
    lo = min(opts.camera_height[0], hi)
    z = r.triangular(lo, min(max(1.45, lo), hi), hi) if hi > lo else lo
    if u[0] < opts.near_wall:
        w = int(u[1] * 4)
        origin, along, inward, length = _wall_frame(size, w)
        depth = Ly if w % 2 == 0 else Lx
        a = 0.4 + u[2] * (length - 0.8)
        xy = origin + a * along + (0.35 + u[3] * (min(0.9, depth / 2) - 0.35)) * inward
        return xy, z, math.atan2(inward[1], inward[0])
    span = [0.5 + t * (L - 1.0) if L > 1.0 else L / 2 for t, L in ((u[2], Lx), (u[3], Ly))]
    return np.array(span), z, None


def _aim_camera(r, b: _Builder, spot, opts: SceneOptions, K) -> Camera:
    """Look at the furnished part of the room (like a person taking a photo), with jitter;
    pitch mostly a little downwards."""
    xy, z, facing = spot
    u, n = r.random(3), r.standard_normal(2)
    targets = [np.array([(f[0] + f[2]) / 2, (f[1] + f[3]) / 2]) for f in b.footprints]
    if facing is not None:

        def off(t):
            return abs(
                (math.atan2(t[1] - xy[1], t[0] - xy[0]) - facing + math.pi) % (2 * math.pi)
                - math.pi
            )

        targets = [t for t in targets if off(t) < math.radians(80)]
    if targets and u[0] < 0.85:
        to = targets[int(u[1] * len(targets))] - xy
        yaw = math.atan2(to[1], to[0]) + math.radians(15.0) * n[0]
    elif facing is not None:
        yaw = facing + math.radians(30.0) * n[0]
    else:
        yaw = 2 * math.pi * u[1]
    lo, hi = opts.pitch_deg
    mode = float(np.clip(-2.0 if z > 0.8 else 3.0, lo, hi))
    pitch = r.triangular(lo, mode, hi) if hi > lo else lo
    roll = opts.roll_deg[0] + u[2] * (opts.roll_deg[1] - opts.roll_deg[0])
    return Camera.look((xy[0], xy[1], z), yaw, math.radians(pitch), math.radians(roll), K)


def _view_is_informative(scene: Scene, cam: Camera, height: int, width: int) -> bool:
    """False for a view (cast at 12 x 16 rays) with median depth under 1.2 m or one object
    filling 70 % of it: people rarely photograph a blank wall from up close."""
    s = 16.0 / width
    K = cam.K * np.array([[s, s, 1.0], [s, s, 1.0], [1.0, 1.0, 1.0]])
    K[0, 2], K[1, 2] = (cam.K[0, 2] + 0.5) * s - 0.5, (cam.K[1, 2] + 0.5) * s - 0.5
    h = max(int(round(height * s)), 4)
    t, obj, _, _ = cast_rays(scene, Camera(K, cam.R, cam.position), h, 16)
    return float(np.median(t)) > 1.2 and np.bincount(obj.reshape(-1)).max() < 0.7 * obj.size


def _transform(parts, dx: float, dy: float, turn: bool):
    """Parts shifted by (dx, dy), optionally turned by 180 degrees about z first."""
    s = -1.0 if turn else 1.0
    return [((s * c[0] + dx, s * c[1] + dy, c[2]), h, lab, m) for c, h, lab, m in parts]


def _desk_clusters(b: _Builder, k: _Kit, n: int) -> None:
    """Open-plan offices: pairs of desks back to back, each with an office chair."""
    r = b.rng
    yaw0 = math.pi / 2 * int(r.integers(2))
    for _ in range(n):
        desk, (hw, hd, _) = _fur_desk(r, k)
        chair_a, _ = _fur_office_chair(r, k)
        chair_b, _ = _fur_office_chair(r, k)
        parts = _transform(desk, 0.0, hd, False) + _transform(desk, 0.0, -hd, True)
        parts += _transform(chair_a, 0.0, 2 * hd + 0.32, True) + _transform(
            chair_b, 0.0, -2 * hd - 0.32, False
        )
        b.try_free(
            parts, max(hw, 0.3), 2 * hd + 0.62, yaw=yaw0 + math.pi * int(r.integers(2)), margin=0.5
        )


def _place_furniture(b: _Builder, k: _Kit, kind: str) -> None:
    r = b.rng
    parts, (hw, hd, h) = _FURNITURE[kind](r, k)
    if kind in _FREE_STANDING and r.random() < 0.7:
        placed = b.try_free(parts, hw, hd)
        if placed is not None and kind == "table":  # chairs around the table
            base, yaw = placed
            for side in r.permutation(4)[: int(r.integers(1, 5))]:
                ang = yaw + side * math.pi / 2
                reach = (hd if side % 2 == 0 else hw) + 0.25
                dirn = np.array([-math.sin(ang), math.cos(ang)])
                cparts, (chw, chd, _) = _fur_chair(r, k)
                cb = base + reach * dirn
                fp = b.footprint(cb, ang, chw, chd)
                if b.free_floor(fp, margin=0.0):
                    b.place(cparts, cb, ang + math.pi)
                    b.footprints.append(fp)
        return
    placed = b.try_against_wall(parts, hw, hd, h)
    if placed is not None and kind == "desk" and r.random() < 0.8:
        base, yaw = placed
        cparts, (chw, chd, _) = (_fur_office_chair if r.random() < 0.6 else _fur_chair)(r, k)
        dirn = np.array([-math.sin(yaw), math.cos(yaw)])
        cb = base + (hd + chd + r.uniform(0.0, 0.2)) * dirn
        fp = b.footprint(cb, yaw, chw, chd)
        if b.free_floor(fp, margin=0.0):
            b.place(cparts, cb, yaw + math.pi + r.uniform(-0.4, 0.4))
            b.footprints.append(fp)


def _furnish(b: _Builder, k: _Kit, room_type: str, opts: SceneOptions) -> None:
    r = b.rng
    Lx, Ly, _ = b.scene.size
    anchors, extras = _ROOM_FURNITURE[room_type]
    n = int(r.integers(opts.furniture[0], opts.furniture[1] + 1))
    n = int(round(n * min(max(Lx * Ly / 16.0, 0.4), 1.6)))
    if room_type == "corridor":
        n = min(n, 4)
    if room_type == "open_office":
        _desk_clusters(b, k, int(r.integers(2, 7)))
    kinds = list(anchors) + [extras[int(r.integers(len(extras)))] for _ in range(n - len(anchors))]
    for kind in kinds:
        _place_furniture(b, k, kind)
    if r.random() < 0.4:  # floor mat / rug
        m = k.fabric()
        hw, hd = r.uniform(0.3, 1.0), r.uniform(0.25, 0.7)
        b.try_free([_part(0, 0, 0, hw, hd, 0.004, "floor mat", m)], hw, hd)


def sample_scene(
    rng: np.random.Generator, height: int, width: int, options: SceneOptions | None = None
) -> tuple[Scene, Camera]:
    """Draw a random furnished room and a camera inside it.

    The room type is drawn from ``options.room_types`` with NYUv2-like weights (bedrooms,
    living rooms, kitchens, offices, bathrooms, dining rooms, corridors, open-plan offices)
    and sized like one; walls carry doors, windows and pictures, the floor furniture, the
    tops clutter. The camera stands clear of the furniture (sometimes just in front of a
    wall), 0.3-1.8 m high, aimed at the furniture with a pitch slightly downwards on average; its
    intrinsics come from :func:`sample_intrinsics`. Layout, materials, clutter, lights, pose
    and intrinsics use separate random streams derived from ``rng``.
    """
    opts = options or SceneOptions()
    st = _Streams(rng)
    room_type, size = _room(st.layout, opts)
    kit = _Kit(st.look, None, opts)
    wall, floor, ceiling = (
        _mat_wall(kit, room_type),
        _mat_floor(kit, room_type),
        _mat_ceiling(kit, room_type),
    )
    scene = Scene.empty_room(size, wall, floor, ceiling)
    kit.scene = scene
    spot = _camera_spot(st.pose, size, opts)
    b = _Builder(st.layout, scene, spot[0], spot[1])
    _add_wall_items(
        b, kit, room_type, int(st.layout.integers(opts.wall_items[0], opts.wall_items[1] + 1))
    )
    _furnish(b, kit, room_type, opts)
    _add_structures(b, kit, room_type)
    _add_lighting(scene, st.light, opts, room_type, spot[0])
    c0, c1 = opts.clutter
    if c1 > 0:  # last, so that clutter only ever adds boxes
        n = int(st.clutter.integers(c0, c1 + 1))
        _add_clutter(b, st.clutter, _Kit(st.clutter_look, scene, opts), n)
    K = sample_intrinsics(st.intrinsics, height, width, opts)
    for _ in range(6):  # re-aim at blank close-ups of a wall or an object
        cam = _aim_camera(st.pose, b, spot, opts, K)
        if _view_is_informative(scene, cam, height, width):
            break
    return scene, cam


def render_scene(
    rng: np.random.Generator, height: int, width: int, options: SceneOptions | None = None
) -> dict[str, Any]:
    """Random scene and camera (:func:`sample_scene`) rendered at ``height`` x ``width``,
    with the camera simulation of :func:`draw_camera_effects` (or, with
    ``camera_effects=False``, a plain gamma, ``blur`` and additive ``noise``).

    Returns the sample dict of :func:`render` (rgb, depth, labels, normals, K, has_*).
    """
    opts = options or SceneOptions()
    scene, cam = sample_scene(rng, height, width, opts)
    if not opts.camera_effects:
        return render(scene, cam, height, width, rng, opts.noise, opts.blur, shadows=opts.shadows)
    fx_rng = np.random.default_rng(int(rng.integers(0, 2**63 - 1)))
    effects = draw_camera_effects(fx_rng, opts, width, _illuminant(scene))
    return render(scene, cam, height, width, rng, shadows=opts.shadows, effects=effects)


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
