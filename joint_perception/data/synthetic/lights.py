"""The lights of a random room (:func:`_add_lighting`): ceiling panels, downlights and
pendants as area emitters with fixtures, lit lamp shades, daylight through windows, point
lights for ``lighting="point"``, colour temperatures and the tinted ambient term."""

from __future__ import annotations

import math

import numpy as np

from joint_perception.data.synthetic.color import _LUMA, kelvin_to_rgb
from joint_perception.data.synthetic.materials import _rand_color
from joint_perception.data.synthetic.options import SceneOptions
from joint_perception.data.synthetic.scene import PLAIN, Material, Scene
from joint_perception.data.synthetic.shading import _illuminant
from joint_perception.nyuv2_classes import ID40


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
