"""The scene model: a closed room (axis-aligned box) with yaw-rotated boxes, their
:class:`Material` s and the lights (:class:`Scene`).

Frames: world is REP 103, metres, z up, floor at ``z = 0``; the room spans
``[0, Lx] x [0, Ly] x [0, Lz]``. Object ids ``0..5`` are the room faces, ``6..`` the boxes.
A material's texture ``kind`` is one of the ids below (drawn by
:mod:`joint_perception.data.synthetic.textures`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from joint_perception.nyuv2_classes import ID40

# Texture kinds (per material).
PLAIN, NOISE, WOOD, TILES, STRIPES, BOOKS, WINDOW = range(7)
CARPET, WEAVE, PAINT, IMAGE, TEXT, GRID, PANEL = range(7, 14)
#: PANEL pattern bits: layout (0 doors, 1 drawers, 2 room door) + _GRAIN for a wood base
_GRAIN = 4


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
