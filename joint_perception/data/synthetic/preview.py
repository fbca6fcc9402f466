"""A PNG grid of samples for the docs (:func:`save_preview`): rgb | depth | labels | normals."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from joint_perception.data.synthetic.color import _hsv_to_rgb
from joint_perception.data.synthetic.dataset import SyntheticScenes
from joint_perception.data.synthetic.noise import _hash01


def _label_colors() -> np.ndarray:
    """(41, 3) uint8 distinct colours for the preview (0 = black)."""
    k = np.arange(41)
    rgb = _hsv_to_rgb(
        _hash01(k * 31 + 7), 0.5 + 0.5 * _hash01(k * 17 + 1), 0.55 + 0.45 * _hash01(k * 5 + 3)
    )
    out = (rgb * 255).astype(np.uint8)
    out[0] = 0
    return out


def save_preview(
    path: str | os.PathLike, n: int = 4, height: int = 240, width: int = 320, seed: int = 0
) -> Path:
    """Write a PNG grid of ``n`` samples, one row each: rgb | depth | labels | normals.

    Depth is shown with the turbo colour map over 0-8 m, labels with a fixed palette,
    normals as ``(n + 1) / 2``. Tiles are half the render size. Written atomically.
    """
    import cv2
    from matplotlib import colormaps

    from joint_perception.io_utils import atomic_write_bytes

    ds = SyntheticScenes(n, height, width, seed=seed)
    turbo = colormaps["turbo"]
    colors = _label_colors()
    rows = []
    for i in range(n):
        s = ds[i]
        depth = (turbo(np.clip(s["depth"] / 8.0, 0, 1))[..., :3] * 255).astype(np.uint8)
        normals = ((s["normals"] + 1.0) * 127.5).astype(np.uint8)
        tiles = [s["rgb"], depth, colors[s["labels"]], normals]
        tiles = [
            cv2.resize(t, (width // 2, height // 2), interpolation=cv2.INTER_AREA) for t in tiles
        ]
        rows.append(np.concatenate(tiles, axis=1))
    grid = np.concatenate(rows, axis=0)
    ok, buf = cv2.imencode(
        ".png", cv2.cvtColor(grid, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9]
    )
    if not ok:
        raise RuntimeError("PNG encoding of the preview failed")
    return atomic_write_bytes(path, buf.tobytes())
