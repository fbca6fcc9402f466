"""SUN RGB-D reader (Song, Lichtenberg & Xiao, "SUN RGB-D: A RGB-D Scene Understanding Benchmark
Suite", CVPR 2015) in the official toolbox layout.

Layout: ``SUNRGBD/<sensor>/<...>/<frame>/`` folders (sensors kv1, kv2, realsense, xtion), each
with ``image/<name>.jpg``, ``depth_bfx/<name>.png`` (refined) and/or ``depth/<name>.png``,
and ``intrinsics.txt`` (3x3, row-major: per-sensor intrinsics).

* Depth PNGs are uint16 with the toolbox's 3-bit circular shift (``read3dPoints.m``):
  ``depth_m = ((d >> 3) | (d << 13)) / 1000`` (in 16 bits), 0 invalid; values above 8 m are
  unreliable and set invalid by the toolbox too.
* Split: the toolbox's ``traintestSUNRGBD/allsplit.mat`` (``alltrain`` / ``alltest`` cell
  arrays of frame paths ending in ``SUNRGBD/<sensor>/...``) or a text file with one frame path
  (relative to the root) per line.
* 37-class labels (Song et al. 2015; 0 = void): either the toolbox's ``SUNRGBD2Dseg.mat``
  (MATLAB v7.3 / HDF5, ``SUNRGBD2Dseg/seglabel``, one object reference per frame in
  ``SUNRGBDMeta`` order, each (W, H)) together with that order as a text file of frame paths
  (``meta_order``), or a per-frame ``label/label37.png`` (uint8/uint16) inside the frame folder.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from joint_perception.data.nyuv2 import read_image, read_png
from joint_perception.data.transforms import make_sample

__all__ = ["SUNRGBD", "decode_sunrgbd_depth", "read_intrinsics_txt", "find_frames", "NUM_CLASSES"]

NUM_CLASSES = 37
MAX_DEPTH = 8.0


def decode_sunrgbd_depth(raw: np.ndarray) -> np.ndarray:
    """uint16 toolbox depth -> float32 metres: ``((d >> 3) | (d << 13)) / 1000`` in 16 bits;
    0 and values > 8 m invalid (0)."""
    if raw.dtype != np.uint16:
        raise ValueError(f"SUN RGB-D depth must be uint16, got {raw.dtype}")
    d = ((raw >> 3) | (raw << 13)).astype(np.float32) / 1000.0
    d[d > MAX_DEPTH] = 0.0
    return d


def read_intrinsics_txt(path: str | os.PathLike) -> np.ndarray:
    """``intrinsics.txt`` (9 numbers, row-major) -> 3x3 float64. Errors name the file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"SUN RGB-D intrinsics not found: {path}")
    try:
        vals = np.array(path.read_text().split(), dtype=np.float64)
    except ValueError as exc:
        raise ValueError(f"{path}: not 9 numbers: {exc}") from exc
    if vals.size != 9:
        raise ValueError(f"{path}: expected 9 numbers (3x3 K), got {vals.size}")
    K = vals.reshape(3, 3)
    if K[0, 0] <= 0 or K[1, 1] <= 0 or not np.allclose(K[2], [0, 0, 1]):
        raise ValueError(f"{path}: not a camera matrix: {K.tolist()}")
    return K


def find_frames(root: str | os.PathLike) -> list[str]:
    """Frame folders (relative to ``root``, sorted) that hold ``image/`` and ``intrinsics.txt``."""
    root = Path(root)
    return sorted(
        str(p.parent.relative_to(root))
        for p in root.rglob("intrinsics.txt")
        if (p.parent / "image").is_dir()
    )


def _rel_after_sunrgbd(path: str) -> str:
    """'/n/fs/sun3d/data/SUNRGBD/kv1/NYUdata/NYU0001/' -> 'kv1/NYUdata/NYU0001'."""
    p = path.strip().rstrip("/")
    return p.split("SUNRGBD/", 1)[1] if "SUNRGBD/" in p else p


def _load_split(split_file: Path, split: str) -> list[str]:
    if split_file.suffix == ".mat":
        import scipy.io

        try:
            m = scipy.io.loadmat(str(split_file))
        except Exception as exc:
            raise ValueError(f"cannot read SUN RGB-D split {split_file}: {exc}") from exc
        key = {"train": "alltrain", "test": "alltest"}.get(split)
        if key is None or key not in m:
            raise ValueError(
                f"{split_file}: no {key or split!r} (expected allsplit.mat with alltrain/alltest)"
            )
        return [_rel_after_sunrgbd(str(np.asarray(c).ravel()[0])) for c in m[key].ravel()]
    return [_rel_after_sunrgbd(ln) for ln in split_file.read_text().splitlines() if ln.strip()]


class SUNRGBD:
    """SUN RGB-D frames with depth, per-sensor K and optional 37-class labels.

    Args:
        root: the ``SUNRGBD`` directory (sensor folders inside).
        split: ``"train"``/``"test"`` with ``split_file``, or ``"all"``.
        split_file: ``allsplit.mat`` or a text list of frame paths.
        seg_mat: ``SUNRGBD2Dseg.mat``; needs ``meta_order``.
        meta_order: text file, one frame path per line in SUNRGBDMeta order (the order of
            ``seg_mat``).
        prefer_bfx: use ``depth_bfx`` (refined) when present.
    """

    def __init__(
        self,
        root,
        split: str = "all",
        split_file=None,
        seg_mat=None,
        meta_order=None,
        prefer_bfx: bool = True,
        frames: Sequence[str] | None = None,
    ):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"SUN RGB-D root not found: {self.root}")
        if frames is not None:
            self.frames = [str(f) for f in frames]
        elif split == "all":
            self.frames = find_frames(self.root)
        else:
            if split_file is None:
                raise ValueError(
                    f"SUN RGB-D split {split!r} needs split_file (allsplit.mat or a list)"
                )
            split_file = Path(split_file)
            if not split_file.exists():
                raise FileNotFoundError(f"SUN RGB-D split file not found: {split_file}")
            self.frames = _load_split(split_file, split)
        if not self.frames:
            raise ValueError(f"no SUN RGB-D frames found under {self.root}")
        self.prefer_bfx = prefer_bfx
        self.seg_mat = None if seg_mat is None else Path(seg_mat)
        self._seg_index: dict[str, int] = {}
        if self.seg_mat is not None:
            if meta_order is None:
                raise ValueError(
                    "seg_mat (SUNRGBD2Dseg.mat) needs meta_order (frame paths in its order)"
                )
            order = [
                _rel_after_sunrgbd(ln)
                for ln in Path(meta_order).read_text().splitlines()
                if ln.strip()
            ]
            self._seg_index = {f: i for i, f in enumerate(order)}
            if not self.seg_mat.exists():
                raise FileNotFoundError(f"SUNRGBD2Dseg.mat not found: {self.seg_mat}")
        self._h5 = None
        self._pid = None

    def __len__(self) -> int:
        return len(self.frames)

    def _first(self, folder: Path, exts: Sequence[str]) -> Path | None:
        if not folder.is_dir():
            return None
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in exts)
        return files[0] if files else None

    def _labels_from_mat(self, frame: str) -> np.ndarray | None:
        import h5py

        if frame not in self._seg_index:
            return None
        if self._h5 is None or self._pid != os.getpid():
            self._h5 = h5py.File(self.seg_mat, "r")
            self._pid = os.getpid()
        try:
            refs = self._h5["SUNRGBD2Dseg"]["seglabel"]
            ref = np.asarray(refs).ravel()[self._seg_index[frame]]
            return np.asarray(self._h5[ref]).T.astype(np.int64)
        except (KeyError, ValueError) as exc:
            raise ValueError(
                f"{self.seg_mat}: cannot read SUNRGBD2Dseg/seglabel for {frame}: {exc}"
            ) from exc

    def __getitem__(self, i: int) -> dict:
        frame = self.frames[i]
        d = self.root / frame
        img = self._first(d / "image", (".jpg", ".png"))
        if img is None:
            raise FileNotFoundError(f"{d / 'image'}: no image")
        rgb = read_image(img)
        dp = (self._first(d / "depth_bfx", (".png",)) if self.prefer_bfx else None) or self._first(
            d / "depth", (".png",)
        )
        depth = None
        if dp is not None:
            depth = decode_sunrgbd_depth(read_png(dp))
            if depth.shape != rgb.shape[:2]:
                raise ValueError(f"{dp}: depth {depth.shape} does not match image {rgb.shape[:2]}")
        K = read_intrinsics_txt(d / "intrinsics.txt")
        labels = self._labels_from_mat(frame) if self.seg_mat is not None else None
        lp = d / "label" / "label37.png"
        if labels is None and lp.exists():
            labels = read_png(lp).astype(np.int64)
        if labels is not None:
            if labels.shape != rgb.shape[:2]:
                raise ValueError(
                    f"{frame}: labels {labels.shape} do not match image {rgb.shape[:2]}"
                )
            if labels.max(initial=0) > NUM_CLASSES:
                raise ValueError(f"{frame}: label id {labels.max()} outside 0..{NUM_CLASSES}")
        return make_sample(rgb, K, depth, labels, None, name=frame)
