"""Furnishing a room: which furniture each room type gets (``_ROOM_FURNITURE``), free-standing
or against a wall, chairs around tables and at desks, desk clusters in open-plan offices and
rugs (:func:`_furnish`)."""

from __future__ import annotations

import math

import numpy as np

from joint_perception.data.synthetic.furniture import (
    _FURNITURE,
    _fur_chair,
    _fur_desk,
    _fur_office_chair,
)
from joint_perception.data.synthetic.materials import _Kit
from joint_perception.data.synthetic.options import SceneOptions
from joint_perception.data.synthetic.placement import _Builder, _part

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
