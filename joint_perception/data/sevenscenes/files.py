"""The files of a 7-Scenes sequence folder: the frame list, depth PNGs, poses and the depth
camera's intrinsics.

A sequence folder holds ``frame-NNNNNN.color.jpg`` (640x480 RGB), ``frame-NNNNNN.depth.png``
(uint16 millimetres; 0 and 65535 invalid), ``frame-NNNNNN.pose.txt`` (4x4 camera-to-world,
metres, from KinectFusion tracking of the *depth* camera) and optionally
``camera-intrinsics.txt`` (the depth camera's default K: fx = fy = 585, cx = 320, cy = 240).
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from joint_perception.data.sevenscenes.calibration import DEPTH_K
from joint_perception.geometry import validate_intrinsics

_INVALID_MM = 65535


def read_depth_mm(path: str | os.PathLike) -> np.ndarray:
    """Read a 7-Scenes depth PNG (uint16 millimetres) as (H, W) float32 metres, 0 = invalid.

    Both 0 and 65535 (the Kinect's "no reading" codes) become 0.

    Raises:
        FileNotFoundError: missing file.
        ValueError: not a single-channel 16-bit PNG (the message names the file).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"7-Scenes depth not found: {path}")
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise ValueError(f"cannot decode depth PNG {path}")
    if raw.ndim != 2 or raw.dtype != np.uint16:
        raise ValueError(
            f"{path}: expected a single-channel uint16 PNG, got {raw.shape} {raw.dtype}"
        )
    depth = raw.astype(np.float32) / np.float32(1000.0)
    depth[raw == _INVALID_MM] = 0.0
    return depth


def read_pose(path: str | os.PathLike) -> np.ndarray:
    """Read ``frame-NNNNNN.pose.txt``: the 4x4 camera-to-world transform (metres) of the depth
    camera, (4, 4) float64.

    Raises:
        FileNotFoundError: missing file.
        ValueError: not 16 finite numbers with a last row (0, 0, 0, 1).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"7-Scenes pose not found: {path}")
    try:
        T = np.array(path.read_text().split(), dtype=np.float64)
    except ValueError as exc:
        raise ValueError(f"{path}: not a 4x4 matrix of numbers: {exc}") from exc
    if T.size != 16 or not np.all(np.isfinite(T)):
        raise ValueError(f"{path}: expected 16 finite numbers (4x4 pose), got {T.size}")
    T = T.reshape(4, 4)
    if not np.allclose(T[3], [0.0, 0.0, 0.0, 1.0], atol=1e-6):
        raise ValueError(f"{path}: last row of the pose must be 0 0 0 1, got {T[3].tolist()}")
    return T


def read_intrinsics(root: str | os.PathLike) -> np.ndarray:
    """The depth camera's K from ``ROOT/camera-intrinsics.txt``, or :data:`DEPTH_K` when absent.

    Raises:
        ValueError: the file is not a 3x3 camera matrix.
    """
    path = Path(root) / "camera-intrinsics.txt"
    if not path.exists():
        return DEPTH_K.copy()
    try:
        K = np.array(path.read_text().split(), dtype=np.float64)
    except ValueError as exc:
        raise ValueError(f"{path}: not a 3x3 matrix of numbers: {exc}") from exc
    if K.size != 9:
        raise ValueError(f"{path}: expected 9 numbers (3x3 K), got {K.size}")
    try:
        return validate_intrinsics(K.reshape(3, 3))
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc


def list_frames(root: str | os.PathLike) -> list[int]:
    """Sorted frame numbers N of ``ROOT/frame-NNNNNN.color.jpg``.

    Raises:
        FileNotFoundError: ``root`` is not a directory or holds no frames.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"7-Scenes sequence folder not found: {root}")
    ids = []
    for p in root.glob("frame-*.color.jpg"):
        stem = p.name[len("frame-") : -len(".color.jpg")]
        if stem.isdigit():
            ids.append(int(stem))
    if not ids:
        raise FileNotFoundError(
            f"{root}: no frame-NNNNNN.color.jpg files (not a 7-Scenes sequence?)"
        )
    return sorted(ids)


def _frame_path(root: Path, idx: int, kind: str) -> Path:
    ext = "jpg" if kind == "color" else ("png" if kind == "depth" else "txt")
    return root / f"frame-{idx:06d}.{kind}.{ext}"
