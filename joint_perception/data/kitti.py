"""KITTI depth reader (Geiger et al. CVPR 2012; annotated depth of Uhrig et al., "Sparsity
Invariant CNNs", 3DV 2017) with Eigen split lists (Eigen et al., NIPS 2014).

Inputs as downloaded:

* raw data: ``<raw_root>/<date>/<drive>_sync/image_0{2,3}/data/<frame:010d>.png`` and
  ``<raw_root>/<date>/calib_cam_to_cam.txt`` (``P_rect_02`` / ``P_rect_03`` give K);
* annotated depth: ``<depth_root>/{train,val}/<drive>_sync/proj_depth/groundtruth/image_0{2,3}/
  <frame:010d>.png``, uint16, ``depth = value / 256`` metres, 0 = invalid;
* split lists, either the monodepth2 form ``<date>/<drive>_sync <frame> l|r`` or the BTS form
  ``<rgb path> <depth path> <focal>`` (paths relative to the roots; depth ``None`` allowed).

Frames listed without an annotated depth map are kept with all-invalid depth when
``require_depth=False`` and dropped otherwise (the count is in :attr:`KITTIDepth.dropped`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from joint_perception.data.nyuv2 import read_depth_png, read_image
from joint_perception.data.transforms import make_sample

__all__ = ["KITTIDepth", "read_calib_cam_to_cam", "read_split_list"]


def read_calib_cam_to_cam(path, camera: int = 2) -> np.ndarray:
    """K (3x3 float64) of the rectified camera ``camera`` from ``calib_cam_to_cam.txt``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"KITTI calibration not found: {path}")
    key = f"P_rect_0{camera}:"
    for line in path.read_text().splitlines():
        if line.startswith(key):
            try:
                P = np.array(line[len(key) :].split(), dtype=np.float64).reshape(3, 4)
            except ValueError as exc:
                raise ValueError(f"{path}: malformed {key} line: {exc}") from exc
            return P[:, :3].copy()
    raise ValueError(f"{path}: no {key} entry")


def read_split_list(path) -> list[tuple[str, str, int]]:
    """Parse a split list into (date/drive_sync, side 'l'|'r', frame index) entries.

    Accepts the monodepth2 form and the BTS form (see the module docstring).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"KITTI split list not found: {path}")
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            if len(parts) == 3 and parts[2] in ("l", "r"):
                out.append((parts[0].strip("/"), parts[2], int(parts[1])))
            elif parts[0].endswith(".png"):
                p = Path(parts[0])  # <date>/<drive>_sync/image_02/data/<frame>.png
                side = "l" if p.parts[-3] == "image_02" else "r"
                out.append(("/".join(p.parts[:2]), side, int(p.stem)))
            else:
                raise ValueError("unrecognised line")
        except (ValueError, IndexError) as exc:
            raise ValueError(f"{path}:{n}: cannot parse {line!r} ({exc})") from exc
    if not out:
        raise ValueError(f"{path}: empty split list")
    return out


class KITTIDepth:
    """KITTI frames with annotated depth.

    Args:
        raw_root: KITTI raw data root (date folders).
        depth_root: ``data_depth_annotated`` root (``train/`` and ``val/`` inside).
        split_file: Eigen / Eigen-benchmark split list.
        require_depth: drop frames without annotated depth.
    """

    def __init__(self, raw_root, depth_root, split_file, require_depth: bool = True):
        self.raw_root = Path(raw_root)
        self.depth_root = Path(depth_root)
        if not self.raw_root.is_dir():
            raise FileNotFoundError(f"KITTI raw root not found: {self.raw_root}")
        entries = read_split_list(split_file)
        self.items = []
        self.dropped = 0
        for drive, side, frame in entries:
            depth = self._depth_path(drive, side, frame)
            if depth is None and require_depth:
                self.dropped += 1
                continue
            self.items.append((drive, side, frame, depth))
        if not self.items:
            raise ValueError(
                f"{split_file}: none of the {len(entries)} frames has annotated depth in {self.depth_root}"
            )
        self._calib: dict[tuple[str, int], np.ndarray] = {}

    def _depth_path(self, drive: str, side: str, frame: int) -> Path | None:
        cam = "image_02" if side == "l" else "image_03"
        name = drive.split("/")[-1]
        for sub in ("train", "val"):
            p = (
                self.depth_root
                / sub
                / name
                / "proj_depth"
                / "groundtruth"
                / cam
                / f"{frame:010d}.png"
            )
            if p.exists():
                return p
        return None

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        drive, side, frame, depth_path = self.items[i]
        cam = 2 if side == "l" else 3
        rgb = read_image(self.raw_root / drive / f"image_0{cam}" / "data" / f"{frame:010d}.png")
        date = drive.split("/")[0]
        key = (date, cam)
        if key not in self._calib:
            self._calib[key] = read_calib_cam_to_cam(
                self.raw_root / date / "calib_cam_to_cam.txt", cam
            )
        depth = None
        if depth_path is not None:
            depth = read_depth_png(depth_path, scale=256.0)
            if depth.shape != rgb.shape[:2]:
                raise ValueError(
                    f"{depth_path}: depth {depth.shape} does not match image {rgb.shape[:2]}"
                )
        return make_sample(
            rgb, self._calib[key], depth, None, None, name=f"{drive}/{side}/{frame:010d}"
        )
