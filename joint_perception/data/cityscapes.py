"""Cityscapes reader (Cordts et al., "The Cityscapes Dataset for Semantic Urban Scene
Understanding", CVPR 2016): images, 19-class labels and depth from disparity.

Layout (as downloaded): ``leftImg8bit/<split>/<city>/<stem>_leftImg8bit.png``,
``gtFine/<split>/<city>/<stem>_gtFine_labelTrainIds.png`` (made by the cityscapesScripts
``createTrainIdLabelImgs``; 0..18, 255 = void), ``disparity/<split>/<city>/<stem>_disparity.png``
(uint16) and ``camera/<split>/<city>/<stem>_camera.json``.

Conventions of this reader: labels are shifted to the project's ``0 = void, 1..19``; depth
follows the Cityscapes README: ``disparity = (p - 1) / 256`` for ``p > 0`` and
``depth = baseline * fx / disparity`` (``p <= 1`` invalid). K from the camera JSON
(``fx, fy, u0, v0``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from joint_perception.data.nyuv2 import read_image, read_png
from joint_perception.data.transforms import make_sample

__all__ = ["Cityscapes", "disparity_to_depth", "read_camera_json", "NUM_CLASSES", "CLASS_NAMES"]

NUM_CLASSES = 19
CLASS_NAMES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)  # fmt: skip


def disparity_to_depth(raw: np.ndarray, baseline: float, fx: float) -> np.ndarray:
    """uint16 Cityscapes disparity PNG -> float32 metres; ``p <= 1`` invalid (0)."""
    raw = np.asarray(raw)
    disp = (raw.astype(np.float32) - 1.0) / 256.0
    depth = np.zeros(raw.shape, np.float32)
    ok = raw > 1
    depth[ok] = baseline * fx / disp[ok]
    return depth


def read_camera_json(path) -> tuple[np.ndarray, float]:
    """``*_camera.json`` -> (K 3x3 float64, baseline metres). Errors name the file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Cityscapes camera file not found: {path}")
    try:
        cam = json.loads(path.read_text())
        intr, baseline = cam["intrinsic"], float(cam["extrinsic"]["baseline"])
        K = np.array(
            [[intr["fx"], 0.0, intr["u0"]], [0.0, intr["fy"], intr["v0"]], [0.0, 0.0, 1.0]],
            np.float64,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: not a Cityscapes camera JSON ({exc})") from exc
    if baseline <= 0 or K[0, 0] <= 0:
        raise ValueError(f"{path}: baseline and fx must be positive")
    return K, baseline


class Cityscapes:
    """Cityscapes frames for one split (``train``, ``val``, ``test``).

    Args:
        root: directory holding leftImg8bit/, gtFine/, disparity/, camera/.
        split: split folder name.
        with_depth: read disparity + camera (False for label-only use).
    """

    def __init__(self, root, split: str = "train", with_depth: bool = True):
        self.root = Path(root)
        img_dir = self.root / "leftImg8bit" / split
        if not img_dir.is_dir():
            raise FileNotFoundError(f"Cityscapes images not found: {img_dir}")
        self.split = split
        self.with_depth = with_depth
        self.files = sorted(img_dir.glob("*/*_leftImg8bit.png"))
        if not self.files:
            raise ValueError(f"{img_dir}: no *_leftImg8bit.png files")

    def __len__(self) -> int:
        return len(self.files)

    def _sibling(self, img: Path, top: str, suffix: str) -> Path:
        stem = img.name[: -len("_leftImg8bit.png")]
        return self.root / top / self.split / img.parent.name / f"{stem}_{suffix}"

    def __getitem__(self, i: int) -> dict:
        img = self.files[i]
        rgb = read_image(img)
        lp = self._sibling(img, "gtFine", "gtFine_labelTrainIds.png")
        labels = None
        if lp.exists():
            t = read_png(lp).astype(np.int64)
            bad = (t >= NUM_CLASSES) & (t != 255)
            if bad.any():
                raise ValueError(f"{lp}: trainIds outside 0..18/255: {np.unique(t[bad])[:5]}")
            labels = np.where(t == 255, 0, t + 1)
        depth = None
        camera = self._sibling(img, "camera", "camera.json")
        if camera.exists():
            K, baseline = read_camera_json(camera)
        else:
            raise FileNotFoundError(f"Cityscapes camera file not found: {camera} (needed for K)")
        if self.with_depth:
            dp = self._sibling(img, "disparity", "disparity.png")
            raw = read_png(dp)
            if raw.shape != rgb.shape[:2]:
                raise ValueError(
                    f"{dp}: disparity {raw.shape} does not match image {rgb.shape[:2]}"
                )
            depth = disparity_to_depth(raw, baseline, K[0, 0])
        return make_sample(rgb, K, depth, labels, None, name=img.name[: -len("_leftImg8bit.png")])
