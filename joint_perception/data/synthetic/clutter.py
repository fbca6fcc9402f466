"""Clutter: small objects on the tops of the furniture and on the floor (books, boxes,
bottles, cups, bowls, papers, laptops, monitors with keyboards, desk lamps, photo frames,
bags, clothes, appliances, plants), chosen by support (:func:`_add_clutter`).

Each maker in ``_OBJECTS`` returns parts in the object's frame (origin at the centre of its
bottom) and its half width and half depth.
"""

from __future__ import annotations

import math

import numpy as np

from joint_perception.data.synthetic.materials import _Kit
from joint_perception.data.synthetic.placement import _Builder, _part, _Support
from joint_perception.data.synthetic.scene import NOISE, Material


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
