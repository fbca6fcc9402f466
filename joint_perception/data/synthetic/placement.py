"""Placing composites in a room: :class:`_Builder` puts furniture and wall items without
overlaps and clear of the camera, and records the tops that can carry clutter
(:class:`_Support`).

A composite is a list of parts ``[(centre, half, label, material)]`` (:func:`_part`) in its own
frame: origin on the floor, back towards -y, front +y (wall items: x along the wall, y out of
the wall, z up).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from joint_perception.data.synthetic.scene import Scene
from joint_perception.nyuv2_classes import ID40

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


def _part(x, y, z0, hx, hy, hz, label: str, mat: int):
    """A part of half extents (hx, hy, hz) centred at (x, y) with its bottom at height z0."""
    return ((x, y, z0 + hz), (hx, hy, hz), ID40[label], mat)
