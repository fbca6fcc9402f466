"""The knobs of the random scene distribution: :class:`SceneOptions` and :data:`BASIC_OPTIONS`.

Every realism feature of the generator has its own switch, so that its effect can be ablated;
the defaults turn all of them on, :data:`BASIC_OPTIONS` turns them all off.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

#: the room types a scene can be (their sizes and weights: ``rooms._ROOM_SPECS``)
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
