"""The furniture catalogue: ``_FURNITURE`` maps a kind (table, desk, chair, sofa, bed,
bookshelf, cabinet, wardrobe, fridge, counter, toilet, plant ...) to its builder.

Each builder takes the layout stream ``r`` and the material kit ``k`` and returns parts
[(centre, half, label, material)] in the composite's frame (origin on the floor, back towards
-y, front +y) and its half width, half depth and height.
"""

from __future__ import annotations

from functools import partial

from joint_perception.data.synthetic.placement import _part
from joint_perception.data.synthetic.scene import NOISE, Material


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


#: The catalogue: kind -> builder ``(r, k) -> (parts, (half width, half depth, height))``.
_FURNITURE = {
    "table": _fur_table,
    "coffee table": partial(_fur_table, low=True),
    "desk": _fur_desk,
    "chair": _fur_chair,
    "office chair": _fur_office_chair,
    "sofa": _fur_sofa,
    "armchair": partial(_fur_sofa, armchair=True),
    "bed": _fur_bed,
    "bookshelf": _fur_bookshelf,
    "shelves": _fur_shelves,
    "tv stand": _fur_tv_stand,
    "counter": _fur_counter,
    "floor lamp": _fur_floor_lamp,
    "plant": _fur_plant,
    **{kind: partial(_fur_block, kind=kind) for kind in _BLOCKS},
    "toilet": partial(_fur_bath, kind="toilet"),
    "sink": partial(_fur_bath, kind="sink"),
    "bathtub": partial(_fur_bath, kind="bathtub"),
    "box": partial(_fur_small, kind="box"),
    "trash can": partial(_fur_small, kind="trash can"),
}
