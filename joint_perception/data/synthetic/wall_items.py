"""What is fixed to the walls and under the ceiling: framed doors, windows with blinds,
curtains and radiators, pictures, posters, whiteboards, mirrors, TVs, shelves, notices,
clocks, towels, fire extinguishers (:func:`_add_wall_items`, by room type); soffits, ducts,
beams, switches and sockets (:func:`_add_structures`).

``_WALL_BUILDERS`` maps a wall item kind to its builder ``(builder, kit)``; a room type draws
its items from ``_WALL_ITEMS``.
"""

from __future__ import annotations

from functools import partial

from joint_perception.data.synthetic.materials import _Kit
from joint_perception.data.synthetic.placement import _Builder, _part
from joint_perception.data.synthetic.scene import NOISE, STRIPES, WINDOW, Material
from joint_perception.nyuv2_classes import ID40


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


def _flat_sizes(r) -> dict:
    """Flat wall item kind -> (width, height, bottom z, depth, label), metres. The sizes of all
    kinds are drawn on every call, whichever kind is placed, so the layout stream advances by
    the same amount for every kind."""
    return {
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
    }


def _whiteboard_material(r, k: _Kit) -> int:
    return k.text(
        k.color(s=(0, 0.02), v=(0.92, 1.0)),
        k.color(h=(0.55, 1.0), s=(0.3, 0.9), v=(0.1, 0.6)),
        r.uniform(18, 35),
        True,
    )


def _mirror_material(r, k: _Kit) -> int:
    return k.add(
        Material(
            k.color(h=(0.5, 0.6), s=(0.05, 0.15), v=(0.6, 0.8)),
            (0.4, 0.42, 0.45),
            NOISE,
            3.0,
            **k._gloss(0.2, 0.4),
        )
    )


#: Flat wall item kind -> material ``(r, k) -> material id``.
_FLAT_MATERIALS = {
    "picture": lambda r, k: k.image(int(r.choice(3, p=[0.25, 0.6, 0.15]))),
    "poster": lambda r, k: k.image(2 if r.random() < 0.5 else 0, scale=(1.5, 4.0)),
    "whiteboard": _whiteboard_material,
    "mirror": _mirror_material,
    "television": lambda r, k: k.screen(r.random() < 0.35),
    "clock": lambda r, k: k.text((0.95, 0.95, 0.92), (0.05, 0.05, 0.05), 25.0, True),
    "extinguisher": lambda r, k: k.plain(
        h=(0.98, 1.0), s=(0.8, 0.95), v=(0.6, 0.85), gloss=(0.05, 0.1)
    ),
}


def _wall_flat(b: _Builder, k: _Kit, kind: str) -> None:
    """Pictures, posters, whiteboards, mirrors, wall TVs, clocks, fire extinguishers: one flat
    box of :func:`_flat_sizes` with a material of ``_FLAT_MATERIALS``."""
    r = b.rng
    w, h, z, d, label = _flat_sizes(r)[kind]
    h = min(h, b.scene.size[2] - z - 0.05)
    m = _FLAT_MATERIALS[kind](r, k)
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
#: Wall items besides doors and windows: kind -> builder ``(b, k)``.
_WALL_BUILDERS = {
    "papers": _wall_papers,
    "shelves": _wall_shelves,
    "towel": _wall_towel,
    **{kind: partial(_wall_flat, kind=kind) for kind in _FLAT_MATERIALS},
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
        _WALL_BUILDERS[menu[int(r.integers(len(menu)))]](b, k)
