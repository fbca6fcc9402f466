"""Trivial baselines that use no test ground truth, scored beside every model.

A depth / segmentation model is only useful on a robot if it beats guessing. Two guesses that
need nothing but the image size:

* **constant depth** — every pixel at :data:`CONSTANT_DEPTH_M` = 2.666 m, the median of all
  valid depth pixels of the 10 NYUv2 *train* frames in ``../shared/data/nyuv2_train_depth``
  (official train split; never a test frame);
* **layout band** — the room layout as image rows: the top :data:`CEILING_FRACTION` (10 %) of
  the rows is ``ceiling``, the bottom 25 % (from :data:`FLOOR_FRACTION` = 0.75 down) ``floor``,
  everything between ``wall`` (NYUv2-40 ids 22, 2, 1).

On the 10 NYUv2 test frames of ``../shared/data/nyuv2_test`` (640x480, GT capped at 10 m) they
score depth abs rel 0.400 / delta1 0.417 and mIoU40 0.038 / pixel accuracy 0.394.

:func:`margins` states whether a model clears the margins the project holds itself to over
them (issue "a default model that beats trivial baselines"): depth abs rel <= 0.75 x the
constant's and delta1 >= the constant's + 0.15; mIoU >= 3 x the band's and pixel accuracy
>= the band's + 0.10.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = [
    "CONSTANT_DEPTH_M",
    "CEILING_FRACTION",
    "FLOOR_FRACTION",
    "constant_depth",
    "layout_band_labels",
    "margins",
]

#: metres; median of the valid depth of the 10 NYUv2 train frames (idx 3-8, 10-13)
CONSTANT_DEPTH_M = 2.666
#: fraction of the image rows, from the top, labelled ceiling by the layout band
CEILING_FRACTION = 0.10
#: rows from this fraction of the height down are labelled floor by the layout band
FLOOR_FRACTION = 0.75
#: NYUv2-40 ids (0 = void) of the layout band's three classes
WALL, FLOOR, CEILING = 1, 2, 22


def constant_depth(height: int, width: int, value: float = CONSTANT_DEPTH_M) -> np.ndarray:
    """(height, width) float32 depth map in metres, every pixel ``value``.

    Raises:
        ValueError: non-positive size or value.
    """
    if height <= 0 or width <= 0 or not value > 0:
        raise ValueError(f"need a positive size and depth, got {height}x{width}, {value} m")
    return np.full((int(height), int(width)), np.float32(value), dtype=np.float32)


def layout_band_labels(
    height: int,
    width: int,
    ceiling_fraction: float = CEILING_FRACTION,
    floor_fraction: float = FLOOR_FRACTION,
) -> np.ndarray:
    """(height, width) uint8 NYUv2-40 label map: ceiling band on top, floor band at the bottom,
    wall between.

    Rows ``[0, round(ceiling_fraction H))`` are ceiling (22), rows
    ``[round(floor_fraction H), H)`` floor (2), the rest wall (1).

    Raises:
        ValueError: non-positive size or ``not 0 <= ceiling_fraction <= floor_fraction <= 1``.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"need a positive size, got {height}x{width}")
    if not 0.0 <= ceiling_fraction <= floor_fraction <= 1.0:
        raise ValueError(f"need 0 <= ceiling {ceiling_fraction} <= floor {floor_fraction} <= 1")
    labels = np.full((int(height), int(width)), WALL, dtype=np.uint8)
    labels[: int(round(ceiling_fraction * height))] = CEILING
    labels[int(round(floor_fraction * height)) :] = FLOOR
    return labels


def margins(model: Mapping[str, Any], baseline: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Whether a model clears the project's margins over the baselines.

    Args:
        model: ``{"depth": {"abs_rel", "delta1", ...}, "segmentation": {"miou", "pixel_acc",
            ...}}`` (either task may be missing or None).
        baseline: the same for the baselines (``depth`` from the constant depth,
            ``segmentation`` from the layout band).

    Returns:
        ``{check: {"model", "baseline", "need", "ok"}}`` for each check both sides have:
        ``abs_rel`` (need <= 0.75 x baseline), ``delta1`` (>= baseline + 0.15), ``miou``
        (>= 3 x baseline), ``pixel_acc`` (>= baseline + 0.10).
    """
    rules = {
        "abs_rel": ("depth", lambda b: 0.75 * b, lambda m, n: m <= n),
        "delta1": ("depth", lambda b: b + 0.15, lambda m, n: m >= n),
        "miou": ("segmentation", lambda b: 3.0 * b, lambda m, n: m >= n),
        "pixel_acc": ("segmentation", lambda b: b + 0.10, lambda m, n: m >= n),
    }
    out: dict[str, dict[str, Any]] = {}
    for key, (task, need_of, ok_of) in rules.items():
        m = (model.get(task) or {}).get(key)
        b = (baseline.get(task) or {}).get(key)
        if m is None or b is None or not (np.isfinite(m) and np.isfinite(b)):
            continue
        need = float(need_of(float(b)))
        out[key] = {
            "model": float(m),
            "baseline": float(b),
            "need": need,
            "ok": bool(ok_of(float(m), need)),
        }
    return out
