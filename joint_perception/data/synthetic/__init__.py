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

Modules, one idea each (a module imports only those above it in this list):

* :mod:`~.options` — :class:`SceneOptions`, :data:`BASIC_OPTIONS`: the knobs of the random
  scene distribution.
* :mod:`~.scene` — the scene model: :class:`Scene` (room, boxes, lights), :class:`Material`
  and the texture kind ids (``PLAIN`` ... ``PANEL``).
* :mod:`~.camera` — :class:`Camera` (pinhole, pose) and :func:`sample_intrinsics`.
* :mod:`~.color` — luminance weights, HSV, :func:`kelvin_to_rgb`.
* :mod:`~.noise` — value noise and the integer hash behind textures and sampling.
* :mod:`~.raycast` — :func:`camera_rays`, :func:`cast_rays` and the hit geometry of a view.
* :mod:`~.textures` — procedural albedo, one function per texture kind.
* :mod:`~.occlusion` — ambient occlusion and soft shadows at reduced resolution.
* :mod:`~.shading` — direct light, highlights, ambient term and auto exposure.
* :mod:`~.effects` — the camera simulation: :class:`CameraEffects`,
  :func:`draw_camera_effects`, :func:`apply_camera_effects`.
* :mod:`~.rendering` — :func:`render`: one sample of a scene seen by a camera.
* :mod:`~.materials` — the material kit of a random scene; wall, floor, ceiling materials.
* :mod:`~.placement` — placing composites without overlaps; tops that carry clutter.
* :mod:`~.furniture` — the furniture catalogue: kind -> builder.
* :mod:`~.furnishing` — which furniture a room type gets and how it is arranged.
* :mod:`~.wall_items` — doors, windows, pictures ... on the walls; ducts and beams.
* :mod:`~.clutter` — small objects on the furniture tops and the floor.
* :mod:`~.lights` — the lights of a random room and its ambient term.
* :mod:`~.pose` — where the camera stands and what it is aimed at.
* :mod:`~.rooms` — :func:`sample_scene`: a random furnished room and a camera in it.
* :mod:`~.dataset` — :func:`render_scene`, :class:`SyntheticScenes`.
* :mod:`~.preview` — :func:`save_preview` (``python -m joint_perception.data.synthetic``).
"""

from joint_perception.data.synthetic.camera import Camera, sample_intrinsics
from joint_perception.data.synthetic.color import kelvin_to_rgb
from joint_perception.data.synthetic.dataset import SyntheticScenes, render_scene
from joint_perception.data.synthetic.effects import (
    CameraEffects,
    apply_camera_effects,
    draw_camera_effects,
)
from joint_perception.data.synthetic.options import BASIC_OPTIONS, SceneOptions
from joint_perception.data.synthetic.preview import save_preview
from joint_perception.data.synthetic.raycast import camera_rays, cast_rays
from joint_perception.data.synthetic.rendering import render
from joint_perception.data.synthetic.rooms import sample_scene
from joint_perception.data.synthetic.scene import (
    BOOKS,
    CARPET,
    GRID,
    IMAGE,
    NOISE,
    PAINT,
    PANEL,
    PLAIN,
    STRIPES,
    TEXT,
    TILES,
    WEAVE,
    WINDOW,
    WOOD,
    Material,
    Scene,
)

__all__ = [
    "BASIC_OPTIONS",
    "BOOKS",
    "CARPET",
    "GRID",
    "IMAGE",
    "NOISE",
    "PAINT",
    "PANEL",
    "PLAIN",
    "STRIPES",
    "TEXT",
    "TILES",
    "WEAVE",
    "WINDOW",
    "WOOD",
    "Camera",
    "CameraEffects",
    "Material",
    "Scene",
    "SceneOptions",
    "SyntheticScenes",
    "apply_camera_effects",
    "camera_rays",
    "cast_rays",
    "draw_camera_effects",
    "kelvin_to_rgb",
    "render",
    "render_scene",
    "sample_intrinsics",
    "sample_scene",
    "save_preview",
]
