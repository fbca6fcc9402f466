"""Stand-ins for the NYUv2 files the paper recipes read, in their real on-disk formats (not a
test module): the labeled ``.mat`` (MATLAB v7.3 = HDF5, column-major), ``splits.mat``,
``classMapping40.mat`` and the ASTMT ``NYUD_MT`` folders; plus ImageNet-style backbone weight
files written from this project's backbones (torchvision names)."""

from __future__ import annotations

from pathlib import Path

import cv2
import h5py
import numpy as np
import scipy.io
import torch

from joint_perception.data.synthetic import BASIC_OPTIONS, SyntheticScenes


def _scenes(n: int, h: int, w: int, seed: int):
    # plain rooms (BASIC_OPTIONS): stand-in frames need large planes, not photorealism
    return [SyntheticScenes(n, height=h, width=w, seed=seed, **BASIC_OPTIONS)[i] for i in range(n)]


def write_nyuv2_labeled(root: Path, n: int = 4, h: int = 48, w: int = 64) -> dict[str, Path]:
    """``nyu_depth_v2_labeled.mat`` with ``n`` frames (synthetic scenes; 40-class labels stored
    as raw ids = 40-class id so the identity mapping applies), ``splits.mat`` (train: frames
    1..n-1, test: n; 1-based) and ``classMapping40.mat`` (``mapClass``: raw 1..40 -> 1..40,
    the other raw ids -> 0). Returns the three paths."""
    root.mkdir(parents=True, exist_ok=True)
    scenes = _scenes(n, h, w, seed=11)
    rgb = np.stack([np.asarray(s["rgb"]) for s in scenes])  # (n, h, w, 3)
    depth = np.stack([np.asarray(s["depth"], np.float32) for s in scenes])
    labels = np.stack([np.asarray(s["labels"]).astype(np.uint16) for s in scenes])
    mat = root / "nyu_depth_v2_labeled.mat"
    with h5py.File(mat, "w") as f:  # MATLAB writes column-major: h5py sees (N, 3, W, H)
        f["images"] = rgb.transpose(0, 3, 2, 1)
        f["depths"] = depth.transpose(0, 2, 1)
        f["labels"] = labels.transpose(0, 2, 1)
    splits = root / "splits.mat"
    scipy.io.savemat(
        splits,
        {"trainNdxs": np.arange(1, n)[:, None], "testNdxs": np.array([[n]])},
    )
    mapping = np.zeros(894, np.int64)
    mapping[:40] = np.arange(1, 41)
    classes = root / "classMapping40.mat"
    scipy.io.savemat(classes, {"mapClass": mapping[None, :]})
    return {"mat": mat, "splits": splits, "classes": classes}


def write_nyud_mt(
    root: Path, n_train: int = 3, n_val: int = 1, h: int = 48, w: int = 64, normals: bool = True
) -> Path:
    """NYUD_MT in the ASTMT archive form: ``images/<id>.jpg``, ``depth/<id>.mat`` ("depth"),
    ``segmentation/<id>.mat`` ("segmentation"), ``normals/<id>.jpg`` (n = 2 rgb / 255 - 1),
    ``edge/<id>.png``, ``gt_sets/train.txt`` / ``val.txt``."""
    scenes = _scenes(n_train + n_val, h, w, seed=21)
    ids = [f"{i:04d}" for i in range(1, n_train + n_val + 1)]
    for d in ("images", "depth", "segmentation", "edge", "gt_sets") + (
        ("normals",) if normals else ()
    ):
        (root / d).mkdir(parents=True, exist_ok=True)
    for fid, s in zip(ids, scenes, strict=True):
        bgr = cv2.cvtColor(np.asarray(s["rgb"]), cv2.COLOR_RGB2BGR)
        assert cv2.imwrite(str(root / "images" / f"{fid}.jpg"), bgr)
        scipy.io.savemat(root / "depth" / f"{fid}.mat", {"depth": np.asarray(s["depth"])})
        lab = np.asarray(s["labels"]).astype(np.uint8)
        scipy.io.savemat(root / "segmentation" / f"{fid}.mat", {"segmentation": lab})
        if normals:
            n = np.asarray(s["normals"], np.float32)
            enc = np.clip(np.rint((n + 1.0) * 127.5), 0, 255).astype(np.uint8)
            enc = cv2.cvtColor(enc, cv2.COLOR_RGB2BGR)
            assert cv2.imwrite(
                str(root / "normals" / f"{fid}.jpg"), enc, [cv2.IMWRITE_JPEG_QUALITY, 98]
            )
        edge = (cv2.Laplacian(lab.astype(np.float32), cv2.CV_32F) != 0).astype(np.uint8) * 255
        assert cv2.imwrite(str(root / "edge" / f"{fid}.png"), edge)
    (root / "gt_sets" / "train.txt").write_text("\n".join(ids[:n_train]) + "\n")
    (root / "gt_sets" / "val.txt").write_text("\n".join(ids[n_train:]) + "\n")
    return root


def write_backbone_weights(path: Path, name: str, seed: int = 0) -> Path:
    """A classification-style weight file for backbone ``name`` (its own names, plus the
    classifier head a torchvision file carries and without BN counters, as torchvision's
    files are), from a seeded random initialisation."""
    from joint_perception.models.backbones import build_backbone

    torch.manual_seed(seed)
    net = build_backbone(name)
    state = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    if name.startswith("resnet"):
        width = net.channels[-1]
        state["fc.weight"], state["fc.bias"] = torch.zeros(1000, width), torch.zeros(1000)
    elif name == "vgg16":
        state["classifier.6.weight"], state["classifier.6.bias"] = (
            torch.zeros(1000, 4096),
            torch.zeros(1000),
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path
