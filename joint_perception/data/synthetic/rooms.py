"""A random furnished room and a camera in it (:func:`sample_scene`): the room type and size
(``_ROOM_SPECS``, NYUv2-like mix), then wall items, furniture, structures, lights, clutter,
intrinsics and pose, from separate random streams (:class:`_Streams`)."""

from __future__ import annotations

import numpy as np

from joint_perception.data.synthetic.camera import Camera, sample_intrinsics
from joint_perception.data.synthetic.clutter import _add_clutter
from joint_perception.data.synthetic.furnishing import _furnish
from joint_perception.data.synthetic.lights import _add_lighting
from joint_perception.data.synthetic.materials import _Kit, _mat_ceiling, _mat_floor, _mat_wall
from joint_perception.data.synthetic.options import SceneOptions
from joint_perception.data.synthetic.placement import _Builder
from joint_perception.data.synthetic.pose import _aim_camera, _camera_spot, _view_is_informative
from joint_perception.data.synthetic.scene import Scene
from joint_perception.data.synthetic.wall_items import _add_structures, _add_wall_items

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
