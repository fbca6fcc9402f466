"""A 7-Scenes sequence as registered RGB-D training frames: :class:`SevenScenes` (splits,
registered depth, normals, pseudo-labels, optional cache)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from joint_perception.data.sevenscenes.cache import _decode_normals, _digest, _encode_normals
from joint_perception.data.sevenscenes.calibration import (
    COLOR_K,
    DEPTH_TO_COLOR_R,
    DEPTH_TO_COLOR_T,
    IMAGE_SIZE,
)
from joint_perception.data.sevenscenes.files import (
    _frame_path,
    list_frames,
    read_depth_mm,
    read_intrinsics,
    read_pose,
)
from joint_perception.data.sevenscenes.labels import geometric_labels
from joint_perception.data.sevenscenes.layout import SceneLayout, estimate_scene_layout
from joint_perception.data.sevenscenes.normals import normals_from_disparity_planes
from joint_perception.data.sevenscenes.registration import colour_camera_pose, register_depth
from joint_perception.data.transforms import make_sample

#: Frames with index < VAL_START are the training split, the others validation.
VAL_START = 800


class SevenScenes:
    """One 7-Scenes sequence (Shotton et al. CVPR 2013; Glocker et al. ISMAR 2013) as registered
    RGB-D training frames.

    Items follow the sample contract (:func:`transforms.make_sample`) in the **colour** image:
    ``rgb`` (480, 640, 3) uint8; ``depth`` (480, 640) float32 metres along the colour camera's
    optical axis, resampled with :func:`register_depth` (0 = invalid: sensor holes, pixels no
    depth point lands on, and a 20-43 px border outside the depth camera's narrower view);
    ``K`` = :data:`COLOR_K` (3x3 float64); ``normals`` (480, 640, 3) float32 from the sensor
    depth (:func:`normals_from_disparity_planes`, colour optical frame, zeros = invalid) when
    ``normals=True``; ``labels`` (480, 640) int64 when ``labels="geometry"``: floor (2), wall (1)
    and ceiling (22) pseudo-labels from :func:`geometric_labels`, everything else void (0).

    Args:
        root: the sequence folder (``frame-NNNNNN.{color.jpg,depth.png,pose.txt}``).
        split: ``"train"`` (frames < :data:`VAL_START` = 800), ``"val"`` (>= 800) or ``"all"``.
        labels: None (``has_labels=False``) or ``"geometry"``.
        normals: also return normals from the depth (``has_normals=True``).
        cache_dir: optional directory for registered depth / normals / labels (16-bit PNG
            millimetres, 8-bit RGB normals within 0.5 deg, 8-bit labels), written atomically in
            a sub-folder named after the sequence and a hash of everything that affects them.
            Never the repository.
        frames: optional explicit frame numbers (overrides ``split``).
        layout: :class:`SceneLayout`, its dict, or a JSON file; estimated with
            :func:`estimate_scene_layout` when None and labels are asked for (about 3 s; kept
            in ``cache_dir`` when given). The layout uses all frames of the sequence, so train
            and validation labels come from the same planes.

    Reading cost (redkitchen, CPU time per item on a loaded 2-core machine): ~35 ms depth only,
    ~45 ms with normals and labels; from a filled cache ~17 ms depth only, ~30 ms with normals
    and labels (JPEG and PNG decoding dominate); ~0.5 MB of cache per frame.

    Raises:
        FileNotFoundError: missing folder or frames.
        ValueError: unknown split or labels mode, an empty split.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        labels: str | None = None,
        normals: bool = True,
        cache_dir: str | os.PathLike | None = None,
        frames: Sequence[int] | None = None,
        layout: SceneLayout | dict | str | os.PathLike | None = None,
    ):
        self.root = Path(root)
        ids = list_frames(self.root)
        if labels not in (None, "geometry"):
            raise ValueError(f"labels must be None or 'geometry', got {labels!r}")
        if frames is not None:
            have = set(ids)
            missing = sorted(int(i) for i in frames if int(i) not in have)
            if missing:
                raise FileNotFoundError(f"{self.root}: no frame(s) {missing[:10]}")
            self.frames = [int(i) for i in frames]
        elif split == "train":
            self.frames = [i for i in ids if i < VAL_START]
        elif split == "val":
            self.frames = [i for i in ids if i >= VAL_START]
        elif split == "all":
            self.frames = ids
        else:
            raise ValueError(f"split must be 'train', 'val' or 'all', got {split!r}")
        if not self.frames:
            raise ValueError(
                f"{self.root}: split {split!r} has no frames (frames are {ids[0]}..{ids[-1]})"
            )
        self.split = split
        self.labels = labels
        self.normals = bool(normals)
        self.K = COLOR_K.copy()
        self.K_depth = read_intrinsics(self.root)
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.layout = None
        if labels == "geometry":
            self.layout = self._load_layout(layout)
        key = {
            "root": str(self.root.resolve()),
            "K_depth": self.K_depth.tolist(),
            "K_color": COLOR_K.tolist(),
            "R": DEPTH_TO_COLOR_R.tolist(),
            "t": DEPTH_TO_COLOR_T.tolist(),
            "layout": None if self.layout is None else self.layout.planes(),
        }
        self._frame_cache = None
        if self.cache_dir is not None:
            self._frame_cache = self.cache_dir / f"sevenscenes-{self.root.name}-{_digest(key)}"

    def _load_layout(self, layout) -> SceneLayout:
        if isinstance(layout, SceneLayout):
            return layout
        if isinstance(layout, dict):
            return SceneLayout.from_dict(layout)
        if layout is not None:
            path = Path(layout)
            if not path.exists():
                raise FileNotFoundError(f"7-Scenes layout file not found: {path}")
            try:
                return SceneLayout.from_dict(json.loads(path.read_text()))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: not JSON: {exc}") from exc
        cached = None
        if self.cache_dir is not None:
            digest = _digest({"root": str(self.root.resolve())})
            cached = self.cache_dir / f"sevenscenes-{self.root.name}-{digest}-layout.json"
            if cached.exists():
                try:
                    return SceneLayout.from_dict(json.loads(cached.read_text()))
                except (ValueError, json.JSONDecodeError):
                    pass  # a damaged cache file is recomputed and replaced
        est = estimate_scene_layout(self.root)
        if cached is not None:
            from joint_perception.io_utils import atomic_write_json

            atomic_write_json(cached, est.to_dict())
        return est

    def __len__(self) -> int:
        return len(self.frames)

    def pose(self, i: int) -> np.ndarray:
        """(4, 4) float64 camera-to-world pose of item ``i``'s **colour** camera (metres)."""
        return colour_camera_pose(read_pose(_frame_path(self.root, self.frames[i], "pose")))

    def _cached(self, idx: int, kind: str) -> Path | None:
        return (
            None if self._frame_cache is None else self._frame_cache / f"frame-{idx:06d}.{kind}.png"
        )

    def _read_cached(self, path: Path | None, flags: int) -> np.ndarray | None:
        if path is None or not path.exists():
            return None
        return cv2.imread(str(path), flags)  # None for a damaged file: recomputed below

    def _write_cached(self, path: Path | None, img: np.ndarray) -> None:
        if path is None:
            return
        from joint_perception.io_utils import atomic_write_bytes

        ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 1])
        if ok:
            atomic_write_bytes(path, buf.tobytes())

    def registered_depth(self, i: int) -> np.ndarray:
        """Item ``i``'s depth registered into the colour image, (480, 640) float32 metres."""
        idx = self.frames[i]
        path = self._cached(idx, "depth")
        raw = self._read_cached(path, cv2.IMREAD_UNCHANGED)
        if raw is not None and raw.dtype == np.uint16 and raw.shape == IMAGE_SIZE:
            return raw.astype(np.float32) / np.float32(1000.0)
        depth = register_depth(
            read_depth_mm(_frame_path(self.root, idx, "depth")), self.K_depth, self.K
        )
        if path is not None:
            mm = np.rint(depth * 1000.0).clip(0, 65534).astype(np.uint16)
            self._write_cached(path, mm)
            depth = mm.astype(np.float32) / np.float32(1000.0)  # identical with and without cache
        return depth

    def __getitem__(self, i: int) -> dict:
        idx = self.frames[i]
        from joint_perception.data.nyuv2 import read_image

        rgb = read_image(_frame_path(self.root, idx, "color"))
        if rgb.shape[:2] != IMAGE_SIZE:
            raise ValueError(
                f"{_frame_path(self.root, idx, 'color')}: expected 640x480, got {rgb.shape[1]}x{rgb.shape[0]}"
            )
        depth = self.registered_depth(i)
        normals = labels = None
        if self.normals or self.labels:
            npath = self._cached(idx, "normals")
            enc = self._read_cached(npath, cv2.IMREAD_COLOR)
            if enc is not None and enc.shape == (*IMAGE_SIZE, 3):
                normals = _decode_normals(cv2.cvtColor(enc, cv2.COLOR_BGR2RGB))
            else:
                normals = normals_from_disparity_planes(depth, self.K)
                if npath is not None:
                    enc = _encode_normals(normals)
                    self._write_cached(npath, cv2.cvtColor(enc, cv2.COLOR_RGB2BGR))
                    normals = _decode_normals(enc)  # what later reads of the cache return
        if self.labels == "geometry":
            lpath = self._cached(idx, "labels")
            lab = self._read_cached(lpath, cv2.IMREAD_UNCHANGED)
            if lab is not None and lab.dtype == np.uint8 and lab.shape == IMAGE_SIZE:
                labels = lab.astype(np.int64)
            else:
                labels = geometric_labels(depth, self.K, self.pose(i), self.layout, normals)
                self._write_cached(lpath, labels.astype(np.uint8))
        return make_sample(rgb, self.K, depth, labels, normals if self.normals else None,
                           name=f"7scenes/{self.root.name}/frame-{idx:06d}")  # fmt: skip
