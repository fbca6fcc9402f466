"""Joint data augmentation for RGB, depth, labels, normals and intrinsics (numpy / cv2).

Every transform takes and returns the *sample dict* of docs/architecture.md and keeps all
modalities geometrically consistent:

==========  ==========================  ================================================
key         type                        meaning
==========  ==========================  ================================================
rgb         HxWx3 uint8                 RGB image
depth       HxW float32                 metres along z (REP 103 optical frame), 0 = invalid
labels      HxW int64                   0 = void, 1..C
normals     HxWx3 float32               unit vectors, optical frame; all-zero = invalid
K           3x3 float64                 intrinsics of *this* image (pixel centres at integers)
has_labels  bool                        the sample has semantic ground truth
has_normals bool                        the sample has normal ground truth
==========  ==========================  ================================================

Rules (pixel-centre convention of :mod:`joint_perception.geometry`):

* resize by s: ``K`` scaled with :func:`geometry.scale_intrinsics`; depth, labels, normals
  resampled with nearest neighbour (no mixing of valid and invalid depth, no fractional labels);
* crop at (x0, y0): ``cx -= x0``, ``cy -= y0`` — back-projected points are unchanged;
* horizontal flip: ``u' = W - 1 - u``, ``cx' = W - 1 - cx``, ``n_x' = -n_x``;
* rotation by a about the principal point (a camera roll about the optical axis): depth unchanged,
  ``(n_x, n_y)`` rotated by the same 2-D rotation, ``K`` unchanged (exact for fx = fy, a close
  approximation otherwise);
* random scale: ``"zoom"`` models a focal-length change (K scaled, depth unchanged);
  ``"closer"`` (Eigen et al., NIPS 2014) models moving towards the scene: depth divided by s and
  K scaled, so the back-projected cloud is the original scaled by 1/s (shape and normals kept);
* :class:`CanonicalFocal` makes the depth target ``depth * f_c / fx`` so a model trained at a
  canonical focal length ``f_c`` (pixels, at the network input size) is metric for any camera
  once the runtime multiplies its output by ``fx_net / f_c`` (runtime.processing).

Random transforms draw from the ``np.random.Generator`` passed to ``__call__``; wrap a data set
with :class:`Transformed` to get a per-item generator seeded from torch's generator (so
``lightning.seed_everything`` makes runs reproducible and epochs differ).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import cv2
import numpy as np

from joint_perception.geometry import scale_intrinsics

__all__ = [
    "make_sample",
    "Compose",
    "Resize",
    "RandomScale",
    "RandomCrop",
    "CenterCrop",
    "RandomHorizontalFlip",
    "RandomRotation",
    "ColorJitter",
    "CanonicalFocal",
    "ToTensor",
    "Transformed",
    "build_transforms",
]

Sample = dict

#: per-pixel keys moved by the geometric transforms ("edges": optional HxW uint8 edge map)
_SPATIAL = ("rgb", "depth", "labels", "normals", "edges")


def make_sample(
    rgb: np.ndarray,
    K: np.ndarray,
    depth: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    normals: np.ndarray | None = None,
    name: str = "",
) -> Sample:
    """Build a sample dict in the contract above, filling absent targets.

    Args:
        rgb: HxWx3 uint8.
        K: 3x3 intrinsics of ``rgb``.
        depth: HxW metres (NaN/inf/<= 0 become 0 = invalid), or None (all invalid).
        labels: HxW ints (0 void) or None (-> zeros, ``has_labels=False``).
        normals: HxWx3 or None (-> zeros, ``has_normals=False``); non-finite -> 0.
        name: identifier for error messages and figures.

    Raises:
        ValueError: shapes that do not match ``rgb`` or a non-uint8 image.
    """
    rgb = np.ascontiguousarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"{name}: rgb must be HxWx3 uint8, got {rgb.shape} {rgb.dtype}")
    h, w = rgb.shape[:2]
    if depth is None:
        depth = np.zeros((h, w), np.float32)
    depth = np.asarray(depth, dtype=np.float32)
    if depth.shape != (h, w):
        raise ValueError(f"{name}: depth shape {depth.shape} does not match image {h}x{w}")
    depth = np.where(np.isfinite(depth) & (depth > 0), depth, 0.0).astype(np.float32)
    has_labels = labels is not None
    labels = np.zeros((h, w), np.int64) if labels is None else np.asarray(labels).astype(np.int64)
    if labels.shape != (h, w):
        raise ValueError(f"{name}: labels shape {labels.shape} does not match image {h}x{w}")
    has_normals = normals is not None
    if normals is None:
        normals = np.zeros((h, w, 3), np.float32)
    normals = np.asarray(normals, dtype=np.float32)
    if normals.shape != (h, w, 3):
        raise ValueError(f"{name}: normals shape {normals.shape} does not match image {h}x{w}x3")
    normals = np.where(np.isfinite(normals).all(-1, keepdims=True), normals, 0.0).astype(np.float32)
    return {
        "rgb": rgb,
        "depth": depth,
        "labels": labels,
        "normals": normals,
        "K": np.array(K, dtype=np.float64).reshape(3, 3),
        "has_labels": bool(has_labels),
        "has_normals": bool(has_normals),
        "name": name,
    }


class Compose:
    """Apply transforms in order: ``Compose([Resize(...), RandomHorizontalFlip()])(sample, rng)``."""

    def __init__(self, transforms: Sequence[Callable]):
        self.transforms = list(transforms)

    def __call__(self, sample: Sample, rng: np.random.Generator | None = None):
        rng = rng if rng is not None else np.random.default_rng()
        for t in self.transforms:
            sample = t(sample, rng)
        return sample


def _resize(sample: Sample, h: int, w: int) -> Sample:
    s = dict(sample)
    H, W = sample["rgb"].shape[:2]
    if (h, w) == (H, W):
        return s
    interp = cv2.INTER_AREA if h < H and w < W else cv2.INTER_LINEAR
    s["rgb"] = cv2.resize(sample["rgb"], (w, h), interpolation=interp)
    s["depth"] = cv2.resize(sample["depth"], (w, h), interpolation=cv2.INTER_NEAREST)
    s["labels"] = cv2.resize(
        sample["labels"].astype(np.int32), (w, h), interpolation=cv2.INTER_NEAREST
    ).astype(np.int64)
    s["normals"] = cv2.resize(sample["normals"], (w, h), interpolation=cv2.INTER_NEAREST)
    if "edges" in sample:
        s["edges"] = cv2.resize(sample["edges"], (w, h), interpolation=cv2.INTER_NEAREST)
    s["K"] = scale_intrinsics(sample["K"], (H, W), (h, w))
    return s


class Resize:
    """Resize every modality to the network size (height, width); K scaled, depth unchanged."""

    def __init__(self, height: int, width: int):
        if height <= 0 or width <= 0:
            raise ValueError(f"Resize needs a positive size, got {height}x{width}")
        self.size = (int(height), int(width))

    def __call__(self, sample: Sample, rng=None) -> Sample:
        return _resize(sample, *self.size)


class RandomScale:
    """Scale the image by s ~ U(min_scale, max_scale).

    Args:
        min_scale, max_scale: range of s (> 0).
        mode: ``"closer"`` (depth /= s, Eigen et al. 2014) or ``"zoom"`` (depth unchanged,
            a focal-length change). K is scaled in both modes.
    """

    def __init__(self, min_scale: float = 1.0, max_scale: float = 1.5, mode: str = "closer"):
        if not 0 < min_scale <= max_scale:
            raise ValueError(f"need 0 < min_scale <= max_scale, got {min_scale}, {max_scale}")
        if mode not in ("closer", "zoom"):
            raise ValueError(f"RandomScale mode must be 'closer' or 'zoom', got {mode!r}")
        self.range = (float(min_scale), float(max_scale))
        self.mode = mode

    def apply(self, sample: Sample, s: float) -> Sample:
        """Deterministic version with a given scale ``s``."""
        H, W = sample["rgb"].shape[:2]
        out = _resize(sample, max(1, round(H * s)), max(1, round(W * s)))
        if self.mode == "closer":
            out["depth"] = (out["depth"] / s).astype(np.float32)
        return out

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        return self.apply(sample, float(rng.uniform(*self.range)))


def crop(sample: Sample, y0: int, x0: int, h: int, w: int) -> Sample:
    """Crop rows y0:y0+h and columns x0:x0+w; ``cx -= x0``, ``cy -= y0``.

    Raises:
        ValueError: the window leaves the image.
    """
    H, W = sample["rgb"].shape[:2]
    if y0 < 0 or x0 < 0 or y0 + h > H or x0 + w > W:
        raise ValueError(f"crop {h}x{w} at ({y0}, {x0}) leaves the {H}x{W} image")
    s = dict(sample)
    for k in _SPATIAL:
        if k in sample:
            s[k] = np.ascontiguousarray(sample[k][y0 : y0 + h, x0 : x0 + w])
    K = np.array(sample["K"], dtype=np.float64)
    K[0, 2] -= x0
    K[1, 2] -= y0
    s["K"] = K
    return s


class RandomCrop:
    """Crop a random (height, width) window (the image must be at least that large)."""

    def __init__(self, height: int, width: int):
        self.size = (int(height), int(width))

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        H, W = sample["rgb"].shape[:2]
        h, w = self.size
        if h > H or w > W:
            raise ValueError(f"RandomCrop {h}x{w} is larger than the {H}x{W} image")
        return crop(sample, int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1)), h, w)


class CenterCrop:
    """Crop the central (height, width) window."""

    def __init__(self, height: int, width: int):
        self.size = (int(height), int(width))

    def __call__(self, sample: Sample, rng=None) -> Sample:
        H, W = sample["rgb"].shape[:2]
        h, w = self.size
        return crop(sample, (H - h) // 2, (W - w) // 2, h, w)


def hflip(sample: Sample) -> Sample:
    """Mirror horizontally: ``cx' = W - 1 - cx`` and normal x negated."""
    s = dict(sample)
    W = sample["rgb"].shape[1]
    for k in _SPATIAL:
        if k in sample:
            s[k] = np.ascontiguousarray(sample[k][:, ::-1])
    s["normals"] = s["normals"] * np.array([-1.0, 1.0, 1.0], np.float32)
    K = np.array(sample["K"], dtype=np.float64)
    K[0, 2] = W - 1 - K[0, 2]
    K[0, 1] = -K[0, 1]
    s["K"] = K
    return s


class RandomHorizontalFlip:
    """Flip with probability ``p`` (see :func:`hflip`)."""

    def __init__(self, p: float = 0.5):
        self.p = float(p)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        return hflip(sample) if rng.random() < self.p else sample


def rotate(sample: Sample, degrees: float) -> Sample:
    """Roll the camera: rotate the image by ``degrees`` (counter-clockwise on screen) about the
    principal point. Depth and K unchanged, normals' (x, y) rotated with the image, uncovered
    pixels invalid (rgb 0, depth 0, labels void, normals 0)."""
    H, W = sample["rgb"].shape[:2]
    K = sample["K"]
    M = cv2.getRotationMatrix2D((float(K[0, 2]), float(K[1, 2])), float(degrees), 1.0)
    s = dict(sample)
    warp = dict(dsize=(W, H), borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    s["rgb"] = cv2.warpAffine(sample["rgb"], M, flags=cv2.INTER_LINEAR, **warp)
    s["depth"] = cv2.warpAffine(sample["depth"], M, flags=cv2.INTER_NEAREST, **warp)
    s["labels"] = cv2.warpAffine(
        sample["labels"].astype(np.int32), M, flags=cv2.INTER_NEAREST, **warp
    ).astype(np.int64)
    if "edges" in sample:
        s["edges"] = cv2.warpAffine(sample["edges"], M, flags=cv2.INTER_NEAREST, **warp)
    n = cv2.warpAffine(sample["normals"], M, flags=cv2.INTER_NEAREST, **warp)
    R = M[:, :2].astype(np.float32)  # image-plane rotation, same axes as the optical x, y
    nxy = n[..., :2] @ R.T
    s["normals"] = np.ascontiguousarray(
        np.concatenate([nxy, n[..., 2:]], axis=-1), dtype=np.float32
    )
    return s


class RandomRotation:
    """Rotate by a ~ U(-max_degrees, max_degrees) (see :func:`rotate`)."""

    def __init__(self, max_degrees: float = 5.0):
        self.max_degrees = float(max_degrees)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        return rotate(sample, float(rng.uniform(-self.max_degrees, self.max_degrees)))


class ColorJitter:
    """Random brightness, contrast and saturation factors in ``[1 - x, 1 + x]`` (RGB only)."""

    def __init__(self, brightness: float = 0.2, contrast: float = 0.2, saturation: float = 0.2):
        self.b, self.c, self.s = float(brightness), float(contrast), float(saturation)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        img = sample["rgb"].astype(np.float32)
        img *= rng.uniform(1 - self.b, 1 + self.b)
        gray = img @ np.array([0.299, 0.587, 0.114], np.float32)
        img = (img - gray.mean()) * rng.uniform(1 - self.c, 1 + self.c) + gray.mean()
        gray = (img @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
        img = (img - gray) * rng.uniform(1 - self.s, 1 + self.s) + gray
        s = dict(sample)
        s["rgb"] = np.clip(img + 0.5, 0, 255).astype(np.uint8)
        return s


class CanonicalFocal:
    """Normalise the depth target to a canonical focal length: ``depth *= f_c / fx``.

    Apply after the final resize/crop so ``fx`` is the focal length at the network input. The
    runtime undoes it with ``depth *= fx_net / f_c`` (the model's ``canonical_focal``
    metadata). The factor is stored as ``sample["focal_scale"]``.
    """

    def __init__(self, focal: float):
        if focal <= 0:
            raise ValueError(f"canonical focal length must be > 0, got {focal}")
        self.focal = float(focal)

    def __call__(self, sample: Sample, rng=None) -> Sample:
        s = dict(sample)
        scale = self.focal / float(sample["K"][0, 0])
        s["depth"] = (sample["depth"] * scale).astype(np.float32)
        s["focal_scale"] = scale
        return s


class ToTensor:
    """Sample dict -> the model batch item of models/base.py (torch tensors).

    Output: ``image`` (3,H,W) float32 normalised with ``mean``/``std`` from [0, 1] RGB,
    ``depth`` (1,H,W) float32 metres (0 invalid), ``labels`` (H,W) int64, ``normals`` (3,H,W)
    float32, ``K`` (3,3) float32, ``has_labels``/``has_normals`` bool tensors, ``rgb`` (H,W,3)
    uint8 tensor (for figures) and ``focal_scale`` float (1 without :class:`CanonicalFocal`).
    """

    def __init__(
        self,
        mean: Sequence[float] = (0.485, 0.456, 0.406),
        std: Sequence[float] = (0.229, 0.224, 0.225),
    ):
        self.mean = np.asarray(mean, np.float32).reshape(3, 1, 1)
        self.std = np.asarray(std, np.float32).reshape(3, 1, 1)

    def __call__(self, sample: Sample, rng=None) -> dict:
        import torch

        img = sample["rgb"].transpose(2, 0, 1).astype(np.float32) / 255.0
        img = (img - self.mean) / self.std
        return {
            "image": torch.from_numpy(np.ascontiguousarray(img)),
            "depth": torch.from_numpy(np.ascontiguousarray(sample["depth"], np.float32)[None]),
            "labels": torch.from_numpy(np.ascontiguousarray(sample["labels"], np.int64)),
            "normals": torch.from_numpy(
                np.ascontiguousarray(sample["normals"].transpose(2, 0, 1), np.float32)
            ),
            "K": torch.from_numpy(np.asarray(sample["K"], np.float32)),
            "has_labels": torch.tensor(bool(sample["has_labels"])),
            "has_normals": torch.tensor(bool(sample["has_normals"])),
            "rgb": torch.from_numpy(np.ascontiguousarray(sample["rgb"])),
            "focal_scale": torch.tensor(float(sample.get("focal_scale", 1.0))),
            **(
                {"edges": torch.from_numpy(np.ascontiguousarray(sample["edges"]))}
                if "edges" in sample
                else {}
            ),
        }


class Transformed:
    """A map-style data set with a transform applied per item.

    The random generator of item ``i`` is seeded with ``(a draw from torch's default generator,
    i)``: the draw advances with every item, so augmentations differ between epochs even with
    persistent loader workers, and the whole sequence is reproducible under ``seed_everything``
    (torch seeds each worker's generator from the loader's base seed).
    """

    def __init__(self, dataset, transform: Callable):
        self.dataset = dataset
        self.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        import torch

        rng = np.random.default_rng([int(torch.randint(0, 2**62, (1,))), int(index)])
        return self.transform(self.dataset[index], rng)


def build_transforms(
    size: Sequence[int],
    train: bool,
    scale: Sequence[float] | None = (1.0, 1.5),
    scale_mode: str = "closer",
    flip: bool = True,
    rotation: float = 0.0,
    color_jitter: float = 0.2,
    canonical_focal: float | None = None,
    mean: Sequence[float] = (0.485, 0.456, 0.406),
    std: Sequence[float] = (0.229, 0.224, 0.225),
) -> Compose:
    """The standard pipeline ending in :class:`ToTensor` at the network ``size`` (h, w).

    Training: resize so the image covers ``size`` (aspect kept), optional rotation, random scale,
    random crop to ``size``, flip, colour jitter. Evaluation: plain resize to ``size``.
    Both end with :class:`CanonicalFocal` when ``canonical_focal`` is set, then ToTensor.
    """
    h, w = int(size[0]), int(size[1])
    if scale and scale[0] < 1.0:
        raise ValueError(
            f"training scale range must start at >= 1 (the crop needs the image), got {scale}"
        )
    ts: list[Callable] = []
    if train:
        ts.append(_CoverResize(h, w))
        if rotation:
            ts.append(RandomRotation(rotation))
        if scale:
            ts.append(RandomScale(scale[0], scale[1], scale_mode))
        ts.append(RandomCrop(h, w))
        if flip:
            ts.append(RandomHorizontalFlip())
        if color_jitter:
            ts.append(ColorJitter(color_jitter, color_jitter, color_jitter))
    else:
        ts.append(Resize(h, w))
    if canonical_focal:
        ts.append(CanonicalFocal(canonical_focal))
    ts.append(ToTensor(mean, std))
    return Compose(ts)


class _CoverResize:
    """Resize keeping the aspect ratio so that the image covers (h, w) exactly in one dimension."""

    def __init__(self, h: int, w: int):
        self.h, self.w = h, w

    def __call__(self, sample: Sample, rng=None) -> Sample:
        H, W = sample["rgb"].shape[:2]
        s = max(self.h / H, self.w / W)
        return _resize(
            sample, max(self.h, math.ceil(H * s - 1e-6)), max(self.w, math.ceil(W * s - 1e-6))
        )
