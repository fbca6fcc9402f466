"""Figures for the docs: depth edges over the colour image before and after registration, and
the pseudo-labels with depth and normals."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from joint_perception.data.sevenscenes.dataset import SevenScenes
from joint_perception.data.sevenscenes.edges import depth_edge_mask
from joint_perception.data.sevenscenes.files import _frame_path, read_depth_mm, read_intrinsics
from joint_perception.data.sevenscenes.labels import CEILING, FLOOR, WALL
from joint_perception.data.sevenscenes.registration import register_depth


def _save_small_png(path: Path, rgb: np.ndarray, colors: int = 96) -> Path:
    """Write RGB as an adaptive-palette PNG (a few hundred kB for photo figures), atomically."""
    import io

    from PIL import Image

    from joint_perception.io_utils import atomic_write_bytes

    buf = io.BytesIO()
    Image.fromarray(rgb).quantize(colors=colors, dither=Image.Dither.NONE).save(
        buf, format="PNG", optimize=True
    )
    return atomic_write_bytes(path, buf.getvalue())


def _label(img: np.ndarray, text: str) -> np.ndarray:
    out = img.copy()
    cv2.rectangle(out, (0, 0), (8 + 8 * len(text), 20), (0, 0, 0), -1)
    cv2.putText(out, text, (4, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def registration_figure(
    root: str | os.PathLike,
    frames: Sequence[int],
    path: str | os.PathLike,
    crop: tuple[int, int, int, int] = (60, 80, 360, 480),
) -> Path:
    """Depth edges over the colour image, before (the raw depth image taken as registered) and
    after :func:`register_depth`, one row per frame, full-resolution crop (y0, x0, h, w).
    Before: magenta; after: green. Writes a palette PNG and returns its path."""
    root = Path(root)
    K_depth = read_intrinsics(root)
    y0, x0, ch, cw = crop
    rows = []
    for idx in frames:
        from joint_perception.data.nyuv2 import read_image

        rgb = read_image(_frame_path(root, idx, "color"))
        depth = read_depth_mm(_frame_path(root, idx, "depth"))
        grey = cv2.cvtColor(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
        grey = (grey.astype(np.float32) * 0.8).astype(np.uint8)
        before, after = grey.copy(), grey.copy()
        thick = np.ones((2, 2), np.uint8)
        before[cv2.dilate(depth_edge_mask(depth).astype(np.uint8), thick) > 0] = (255, 0, 255)
        after[
            cv2.dilate(depth_edge_mask(register_depth(depth, K_depth)).astype(np.uint8), thick) > 0
        ] = (0, 255, 0)
        rows.append(np.hstack([
            _label(before[y0 : y0 + ch, x0 : x0 + cw], f"frame {idx}: before (raw depth pixels)"),
            np.full((ch, 4, 3), 255, np.uint8),
            _label(after[y0 : y0 + ch, x0 : x0 + cw], f"frame {idx}: after registration"),
        ]))  # fmt: skip
        rows.append(np.full((4, rows[-1].shape[1], 3), 255, np.uint8))
    return _save_small_png(Path(path), np.vstack(rows[:-1]))


def pseudolabel_figure(
    dataset: SevenScenes, items: Sequence[int], path: str | os.PathLike, scale: float = 0.5
) -> Path:
    """RGB | pseudo-labels over RGB (floor green, wall blue, ceiling yellow; void unchanged) |
    registered depth | normals, one row per item, at ``scale``. Returns the written path."""
    from joint_perception.colormap import (
        colorize_depth,
        colorize_labels,
        normals_to_rgb,
        overlay,
    )

    pal = np.zeros((41, 3), np.uint8)
    pal[FLOOR], pal[WALL], pal[CEILING] = (0, 230, 0), (0, 90, 255), (255, 230, 0)
    rows = []
    for i in items:
        s = dataset[i]
        lab = s["labels"]
        frac = {
            name: float((lab == k).mean())
            for name, k in (("floor", FLOOR), ("wall", WALL), ("ceiling", CEILING))
        }
        txt = " ".join(f"{k} {100 * v:.1f}%" for k, v in frac.items())
        n = np.where((s["normals"] == 0).all(-1, keepdims=True), np.nan, s["normals"])
        d = np.where(s["depth"] > 0, s["depth"], np.nan)
        shown = np.where(
            (lab > 0)[..., None], overlay(s["rgb"], colorize_labels(lab, pal), 0.6), s["rgb"]
        )
        tiles = [s["rgb"], shown, colorize_depth(d, 0.5, 4.5), normals_to_rgb(n)]
        tiles = [
            cv2.resize(t, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) for t in tiles
        ]
        tiles[0] = _label(tiles[0], s["name"].rsplit("/", 1)[-1])
        tiles[1] = _label(tiles[1], txt)
        rows.append(np.hstack(tiles))
    return _save_small_png(Path(path), np.vstack(rows))
