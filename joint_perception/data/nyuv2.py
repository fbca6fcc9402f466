"""NYU Depth V2 readers (Silberman et al., "Indoor Segmentation and Support Inference from RGBD
Images", ECCV 2012), in the three layouts users have.

* :class:`NYUv2Labeled` — the official labeled set ``nyu_depth_v2_labeled.mat`` (MATLAB v7.3 =
  HDF5, read with h5py). MATLAB writes column-major, so h5py sees ``images`` as (N, 3, W, H)
  uint8, ``depths`` as (N, W, H) float metres (in-painted) and ``labels`` as (N, W, H) with the
  894 raw class ids (0 = unlabelled); items are transposed back to HxW. The standard 795 / 654
  split comes from ``splits.mat`` (``trainNdxs`` / ``testNdxs``, 1-based). Labels map
  894 -> 40 with ``classMapping40.mat`` (``mapClass``, Gupta et al. CVPR 2013) or an explicit
  array, and 40 -> 13 with :data:`nyuv2_classes.MAP40_TO_13` (Couprie et al. 2013).
* :class:`NYUDMultiTask` — ``NYUD_MT`` folders as released for multi-task learning, in both
  public forms: the ASTMT archive ``NYUD_MT.tgz`` (Maninis et al., CVPR 2019:
  ``depth/<id>.mat`` ("depth", metres), ``segmentation/<id>.mat`` ("segmentation", 0 = void,
  1..40), ``normals/<id>.jpg`` (n = 2 rgb / 255 - 1), ``edge/<id>.png``) and its re-release
  with Vandenhende et al., "Multi-Task Learning for Dense Prediction Tasks", TPAMI 2021
  (``depth/<id>.npy``, ``segmentation/<id>.png``, ``normals/<id>.npy``, ``edge/<id>.npy``);
  ``images/<id>.jpg``, ``gt_sets/train.txt`` / ``val.txt`` in both. 16-bit ``depth/<id>.png``
  (mm), RGB ``normals/<id>.png`` and ``edges/<id>.png`` are read too.
* Each reader's ``targets`` names the tasks whose ground truth it supplies (``depth``,
  ``segmentation``, ``normals``); the ``train`` command refuses a model that trains a task no
  training set supplies (docs/data.md).
* :class:`NYUFolder` — the layout of ``../shared/data/nyuv2_test`` and ``nyuv2_train_depth``:
  ``rgb/IIII.png``, ``depth_mm/IIII.png`` (uint16 mm, 0 invalid), optional ``label40/``,
  ``label13/``, ``normal/`` (sparse) and ``manifest.json`` with the intrinsics.

All items follow the sample contract (:func:`transforms.make_sample`); K is the NYU RGB camera
(:data:`nyuv2_classes.NYU_K`) unless the files say otherwise. Errors name the file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from joint_perception.data.transforms import make_sample
from joint_perception.nyuv2_classes import MAP40_TO_13, NYU_K, NYU_SIZE

__all__ = [
    "load_splits",
    "load_class_mapping_894_to_40",
    "NYUv2Labeled",
    "NYUDMultiTask",
    "NYUFolder",
    "read_image",
    "read_depth_png",
    "read_normals_png",
]


# --------------------------------------------------------------------------- file helpers
def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a colour image file as HxWx3 uint8 RGB. Raises FileNotFoundError / ValueError."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"image not found: {path}")
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"cannot decode image {path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_png(path: str | os.PathLike, dtype_kind: str = "u") -> np.ndarray:
    """Read a single-channel PNG unchanged (8 or 16 bit). Raises with the file name."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"file not found: {path}")
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError(f"cannot decode PNG {path}")
    if img.ndim != 2 or img.dtype.kind != dtype_kind:
        raise ValueError(
            f"{path}: expected a single-channel integer PNG, got {img.shape} {img.dtype}"
        )
    return img


def read_depth_png(path: str | os.PathLike, scale: float = 1000.0) -> np.ndarray:
    """uint16 depth PNG -> HxW float32 metres (value / ``scale``), 0 = invalid.

    Raises:
        ValueError: not a 16-bit single-channel PNG (message names the file).
    """
    d = read_png(path)
    if d.dtype != np.uint16:
        raise ValueError(f"{path}: depth PNG must be 16-bit, got {d.dtype}")
    return d.astype(np.float32) / float(scale)


def read_normals_png(path: str | os.PathLike) -> np.ndarray:
    """RGB-encoded normals PNG (n = rgb / 127.5 - 1) -> HxWx3 float32 unit vectors; pixels whose
    decoded length is < 0.5 (the grey (127, 127, 127) "no normal" code) become 0 (invalid)."""
    n = read_image(path).astype(np.float32) / 127.5 - 1.0
    length = np.linalg.norm(n, axis=-1, keepdims=True)
    ok = length > 0.5
    return np.where(ok, n / np.maximum(length, 1e-6), 0.0).astype(np.float32)


def _load_normals_file(path: Path) -> np.ndarray:
    """Normals from ``.npy`` (H x W x 3 float; lengths < 0.5 invalid) or an RGB image
    (``.png`` / ``.jpg``, n = rgb / 127.5 - 1): H x W x 3 float32 unit vectors, 0 = invalid."""
    if path.suffix == ".npy":
        n = np.load(path).astype(np.float32)
        if n.ndim != 3 or n.shape[2] != 3:
            raise ValueError(f"{path}: normals must be H x W x 3, got {n.shape}")
        length = np.linalg.norm(n, axis=-1, keepdims=True)
        return np.where(length > 0.5, n / np.maximum(length, 1e-6), 0.0).astype(np.float32)
    return read_normals_png(path)


def parse_normal_axes(spec: str) -> tuple[np.ndarray, np.ndarray]:
    """``"x,-z,y"`` -> (channel order, signs): REP 103 component k = sign_k * decoded[order_k].

    Normal maps in the wild use different axis conventions; this converts them to the optical
    frame (x right, y down, z forward). ``"x,y,z"`` keeps the decoded vector.

    Raises:
        ValueError: not a signed permutation of x, y, z.
    """
    parts = [p.strip() for p in spec.split(",")]
    axes = [p.lstrip("+-") for p in parts]
    if len(parts) != 3 or sorted(axes) != ["x", "y", "z"]:
        raise ValueError(f"normal_axes must be a signed permutation like 'x,-z,y', got {spec!r}")
    order = np.array(["xyz".index(a) for a in axes])
    signs = np.array([-1.0 if p.startswith("-") else 1.0 for p in parts], np.float32)
    return order, signs


def _apply_axes(normals: np.ndarray, spec: str) -> np.ndarray:
    if spec == "x,y,z":
        return normals
    order, signs = parse_normal_axes(spec)
    return np.ascontiguousarray(normals[..., order] * signs, dtype=np.float32)


def _mat_field(path: Path, key: str) -> np.ndarray:
    """One array of a MATLAB (v5) file, e.g. ``depth/<id>.mat`` of NYUD_MT. Errors name it."""
    import scipy.io

    try:
        m = scipy.io.loadmat(str(path))
    except Exception as exc:  # scipy raises several types for a bad file
        raise ValueError(f"cannot read {path}: {exc}") from exc
    if key not in m:
        raise ValueError(f"{path}: no {key!r} array")
    return np.asarray(m[key])


def load_splits(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """``splits.mat`` -> {"train": 0-based indices (795,), "test": (654,)}.

    Raises:
        FileNotFoundError, ValueError: missing file or keys (named).
    """
    import scipy.io

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"NYUv2 split file not found: {path}")
    try:
        m = scipy.io.loadmat(str(path))
    except Exception as exc:  # scipy raises several types for a bad file
        raise ValueError(f"cannot read NYUv2 split file {path}: {exc}") from exc
    for key in ("trainNdxs", "testNdxs"):
        if key not in m:
            raise ValueError(f"{path}: no {key!r} (expected the official splits.mat)")
    return {
        "train": m["trainNdxs"].ravel().astype(np.int64) - 1,
        "test": m["testNdxs"].ravel().astype(np.int64) - 1,
    }


def load_class_mapping_894_to_40(
    mapping: str | os.PathLike | Sequence[int] | np.ndarray,
) -> np.ndarray:
    """The 894 -> 40 lookup table (length 895, index 0 = void -> 0).

    Args:
        mapping: ``classMapping40.mat`` (its ``mapClass`` field, 894 entries for raw ids 1..894)
            or an array of 894 (ids 1..894) or 895 (ids 0..894) entries.

    Raises:
        ValueError: wrong length, ids outside 0..40, or a file without ``mapClass``.
    """
    if isinstance(mapping, (str, os.PathLike)):
        import scipy.io

        path = Path(mapping)
        if not path.exists():
            raise FileNotFoundError(f"class mapping file not found: {path}")
        try:
            m = scipy.io.loadmat(str(path))
        except Exception as exc:
            raise ValueError(f"cannot read class mapping {path}: {exc}") from exc
        if "mapClass" not in m:
            raise ValueError(f"{path}: no 'mapClass' (expected classMapping40.mat)")
        arr = m["mapClass"].ravel()
    else:
        arr = np.asarray(mapping).ravel()
    if arr.size == 894:
        arr = np.concatenate([[0], arr])
    if arr.size != 895:
        raise ValueError(f"894->40 mapping must have 894 or 895 entries, got {arr.size}")
    arr = arr.astype(np.int64)
    if arr.min() < 0 or arr.max() > 40:
        raise ValueError(f"894->40 mapping has ids outside 0..40 ({arr.min()}..{arr.max()})")
    arr[0] = 0
    return arr


def _remap(
    labels: np.ndarray, num_classes: int, map894: np.ndarray | None, source: str
) -> np.ndarray:
    if num_classes == 894:
        return labels.astype(np.int64)
    if map894 is None:
        raise ValueError(
            f"{source}: raw 894-class labels need a class mapping (classMapping40.mat)"
        )
    if labels.max(initial=0) > 894:
        raise ValueError(f"{source}: label id {labels.max()} exceeds 894")
    lab40 = map894[labels.astype(np.int64)]
    return lab40 if num_classes == 40 else MAP40_TO_13[lab40].astype(np.int64)


# --------------------------------------------------------------------------- labeled .mat
class NYUv2Labeled:
    """The 1449-frame labeled set from ``nyu_depth_v2_labeled.mat``.

    Args:
        mat_path: the .mat file (HDF5).
        split: ``"train"`` (795), ``"test"`` (654) or ``"all"`` (1449).
        splits_path: ``splits.mat``; required unless split == "all".
        class_mapping: ``classMapping40.mat`` path or array (see
            :func:`load_class_mapping_894_to_40`); required for 40 / 13 classes.
        num_classes: 40, 13 or 894 (raw).
        normals_root: optional folder of surface-normal ground truth for the labeled frames,
            one file per frame named by its 1-based index in the .mat: ``IIII.png`` (RGB,
            n = rgb / 127.5 - 1, as ``nyuv2_test/normal``), ``IIII.jpg`` or ``IIII.npy``
            (H x W x 3 float); frames without a file have no normals. docs/data.md says where
            such normals come from.
        normals_from_depth: compute normals from the (filled) depth of each frame instead, by
            local planes fitted to its disparity
            (:func:`joint_perception.data.sevenscenes.normals_from_disparity_planes`): our
            approximation, not a published normal ground truth.
        normal_axes: axis convention of the files under ``normals_root`` (see
            :func:`parse_normal_axes`).

    Items: sample dicts at 480x640 with ``K = NYU_K``; normals only from ``normals_root`` or
    ``normals_from_depth`` (``targets`` says which tasks have ground truth).

    Raises:
        FileNotFoundError / ValueError naming the file on a missing or malformed input.
    """

    KEYS = ("images", "depths", "labels")

    def __init__(
        self,
        mat_path: str | os.PathLike,
        split: str = "train",
        splits_path: str | os.PathLike | None = None,
        class_mapping=None,
        num_classes: int = 40,
        normals_root: str | os.PathLike | None = None,
        normals_from_depth: bool = False,
        normal_axes: str = "x,y,z",
    ):
        import h5py

        self.path = Path(mat_path)
        if normals_root is not None and normals_from_depth:
            raise ValueError("give normals_root or normals_from_depth, not both")
        self.normals_root = None if normals_root is None else Path(normals_root)
        if self.normals_root is not None and not self.normals_root.is_dir():
            raise FileNotFoundError(f"NYUv2 normals folder not found: {self.normals_root}")
        self.normals_from_depth = bool(normals_from_depth)
        parse_normal_axes(normal_axes)
        self.normal_axes = normal_axes
        if num_classes not in (13, 40, 894):
            raise ValueError(f"num_classes must be 13, 40 or 894, got {num_classes}")
        self.num_classes = num_classes
        if not self.path.exists():
            raise FileNotFoundError(f"NYUv2 labeled set not found: {self.path}")
        try:
            with h5py.File(self.path, "r") as f:
                missing = [k for k in self.KEYS if k not in f]
                if missing:
                    raise ValueError(
                        f"{self.path}: missing dataset(s) {missing} (not nyu_depth_v2_labeled.mat?)"
                    )
                n = f["images"].shape[0]
                if f["images"].ndim != 4 or f["images"].shape[1] != 3:
                    raise ValueError(
                        f"{self.path}: 'images' has shape {f['images'].shape}, expected (N, 3, W, H)"
                    )
                for k in ("depths", "labels"):
                    if f[k].shape != (n, *f["images"].shape[2:]):
                        raise ValueError(
                            f"{self.path}: {k!r} shape {f[k].shape} does not match images"
                        )
        except OSError as exc:
            raise ValueError(f"cannot open {self.path} as HDF5 (MATLAB v7.3): {exc}") from exc
        if split == "all":
            self.indices = np.arange(n)
        elif split in ("train", "test"):
            if splits_path is None:
                raise ValueError("split 'train'/'test' needs splits_path (splits.mat)")
            self.indices = load_splits(splits_path)[split]
            if self.indices.size and (self.indices.min() < 0 or self.indices.max() >= n):
                raise ValueError(f"{splits_path}: indices outside the {n} frames of {self.path}")
        else:
            raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
        self.map894 = None if class_mapping is None else load_class_mapping_894_to_40(class_mapping)
        if num_classes != 894 and self.map894 is None:
            raise ValueError(
                "40/13-class labels need class_mapping (classMapping40.mat or an array)"
            )
        self._file = None
        self._pid = None

    def __len__(self) -> int:
        return int(self.indices.size)

    @property
    def targets(self) -> tuple[str, ...]:
        """Tasks with ground truth: depth, segmentation (+ normals when configured)."""
        has_normals = self.normals_from_depth or (
            self.normals_root is not None and any(self.normals_root.iterdir())
        )
        return ("depth", "segmentation", "normals") if has_normals else ("depth", "segmentation")

    def _normals(self, idx: int, depth: np.ndarray, K: np.ndarray) -> np.ndarray | None:
        if self.normals_from_depth:
            from joint_perception.data.sevenscenes.normals import normals_from_disparity_planes

            n = normals_from_disparity_planes(depth, K)
            return np.where(np.isfinite(n), n, 0.0).astype(np.float32)
        if self.normals_root is None:
            return None
        stem = f"{idx + 1:04d}"
        for ext in (".png", ".jpg", ".npy"):
            p = self.normals_root / f"{stem}{ext}"
            if p.exists():
                n = _load_normals_file(p)
                if n.shape[:2] != depth.shape:
                    raise ValueError(f"{p}: normals {n.shape} do not match the image {depth.shape}")
                return _apply_axes(n, self.normal_axes)
        return None

    def _h5(self):
        import h5py

        if self._file is None or self._pid != os.getpid():  # HDF5 handles do not survive fork
            self._file = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._file

    def __getitem__(self, i: int) -> dict:
        idx = int(self.indices[i])
        f = self._h5()
        rgb = np.ascontiguousarray(f["images"][idx].transpose(2, 1, 0)).astype(np.uint8)
        depth = np.ascontiguousarray(f["depths"][idx].T).astype(np.float32)
        raw = np.ascontiguousarray(f["labels"][idx].T)
        labels = _remap(raw, self.num_classes, self.map894, str(self.path))
        K = NYU_K if rgb.shape[:2] == NYU_SIZE else _scaled_k(rgb.shape[0], rgb.shape[1])
        normals = self._normals(idx, depth, K)
        return make_sample(rgb, K, depth, labels, normals, name=f"nyu{idx + 1:04d}")


def _scaled_k(h: int, w: int) -> np.ndarray:
    from joint_perception.nyuv2_classes import scaled_nyu_k

    return scaled_nyu_k(h, w)


def _nyu_k_for(h: int, w: int) -> np.ndarray:
    """NYU_K for an image of h x w: exact at 480x640; a centred crop of 480x640 otherwise when
    smaller (the usual NYUD_MT / Eigen border crop), else a resize."""
    if (h, w) == NYU_SIZE:
        return NYU_K.copy()
    if h <= NYU_SIZE[0] and w <= NYU_SIZE[1]:
        K = NYU_K.copy()
        K[0, 2] -= (NYU_SIZE[1] - w) // 2
        K[1, 2] -= (NYU_SIZE[0] - h) // 2
        return K
    return _scaled_k(h, w)


# --------------------------------------------------------------------------- NYUD_MT
class NYUDMultiTask:
    """NYUD_MT folders (images, depth, segmentation, normals, edge(s), gt_sets/<split>.txt), in
    either public release (module docstring).

    Args:
        root: the NYUD_MT directory.
        split: ``"train"`` or ``"val"`` (reads ``gt_sets/<split>.txt``).
        K: intrinsics of the stored images; default NYU_K (centred crop if the images are
            smaller than 640x480, e.g. 425x560).
        num_classes: 40 or 13 (40-class files converted with MAP40_TO_13).
        depth_png_scale: units per metre of 16-bit depth PNGs (1000 = mm).
        normal_axes: axis convention of the stored normals (see :class:`NYUFolder`).

    Items carry ``edges`` (HxW uint8 0/1) when an edge folder has the frame. ``targets``: the
    tasks whose folder exists (``depth/``, ``segmentation/``, ``normals/``).

    Raises:
        FileNotFoundError: no ``gt_sets/<split>.txt`` (the message says where NYUD_MT comes
            from).
    """

    IMAGE_EXTS = (".jpg", ".png")
    _FOLDERS = {"depth": "depth", "segmentation": "segmentation", "normals": "normals"}

    def __init__(
        self,
        root,
        split: str = "train",
        K=None,
        num_classes: int = 40,
        depth_png_scale: float = 1000.0,
        normal_axes: str = "x,y,z",
    ):
        self.root = Path(root)
        parse_normal_axes(normal_axes)
        self.normal_axes = normal_axes
        if num_classes not in (13, 40):
            raise ValueError(f"num_classes must be 40 or 13, got {num_classes}")
        self.num_classes = num_classes
        list_file = self.root / "gt_sets" / f"{split}.txt"
        if not list_file.exists():
            raise FileNotFoundError(
                f"NYUD_MT split list not found: {list_file} (NYUD_MT is the multi-task release "
                "of the 795/654 NYUv2 frames with depth, 40-class labels, normals and edges: "
                "NYUD_MT.tgz of ASTMT or the Multi-Task-Learning-PyTorch re-release, unpacked "
                "so that images/, depth/, segmentation/, normals/ and gt_sets/ lie in data.root; "
                "docs/data.md)"
            )
        self.ids = [ln.strip() for ln in list_file.read_text().splitlines() if ln.strip()]
        if not self.ids:
            raise ValueError(f"{list_file}: empty split list")
        self.K = None if K is None else np.asarray(K, np.float64)
        self.depth_png_scale = depth_png_scale
        self.list_file = list_file

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def targets(self) -> tuple[str, ...]:
        """Tasks with a ground-truth folder."""
        return tuple(t for t, d in self._FOLDERS.items() if (self.root / d).is_dir())

    def _find(self, folder: str, fid: str, exts: Sequence[str]) -> Path | None:
        for ext in exts:
            p = self.root / folder / f"{fid}{ext}"
            if p.exists():
                return p
        return None

    def __getitem__(self, i: int) -> dict:
        fid = self.ids[i]
        img_path = self._find("images", fid, self.IMAGE_EXTS)
        if img_path is None:
            raise FileNotFoundError(
                f"{self.root / 'images'}: no image for id {fid!r} (listed in {self.list_file})"
            )
        rgb = read_image(img_path)
        h, w = rgb.shape[:2]
        depth = None
        dp = self._find("depth", fid, (".npy", ".mat", ".png"))
        if dp is not None:
            if dp.suffix == ".npy":
                depth = np.load(dp).astype(np.float32)
            elif dp.suffix == ".mat":
                depth = _mat_field(dp, "depth").astype(np.float32)
            else:
                depth = read_depth_png(dp, self.depth_png_scale)
            depth = np.squeeze(depth)
            if depth.shape != (h, w):
                raise ValueError(f"{dp}: depth shape {depth.shape} does not match image {h}x{w}")
        labels = None
        sp = self._find("segmentation", fid, (".png", ".mat"))
        if sp is not None:
            if sp.suffix == ".mat":
                labels = np.rint(_mat_field(sp, "segmentation")).astype(np.int64)
            else:
                labels = read_png(sp).astype(np.int64)
            if labels.shape != (h, w):
                raise ValueError(f"{sp}: labels {labels.shape} do not match image {h}x{w}")
            if labels.max(initial=0) > 40:
                raise ValueError(f"{sp}: label id {labels.max()} outside 0..40")
            if self.num_classes == 13:
                labels = MAP40_TO_13[labels].astype(np.int64)
        normals = None
        npth = self._find("normals", fid, (".npy", ".png", ".jpg"))
        if npth is not None:
            normals = _apply_axes(_load_normals_file(npth), self.normal_axes)
        K = self.K if self.K is not None else _nyu_k_for(h, w)
        s = make_sample(rgb, K, depth, labels, normals, name=fid)
        ep = self._find("edges", fid, (".png",)) or self._find("edge", fid, (".png", ".npy"))
        if ep is not None:
            edge = np.load(ep) if ep.suffix == ".npy" else read_png(ep)
            s["edges"] = (np.squeeze(edge) > 0).astype(np.uint8)
        return s


# --------------------------------------------------------------------------- NYUFolder
class NYUFolder:
    """Frames stored as ``rgb/IIII.png`` + ``depth_mm/IIII.png`` (+ ``label40/``, ``label13/``,
    ``normal/``, ``manifest.json``), e.g. ``../shared/data/nyuv2_test``.

    Args:
        root: the directory.
        num_classes: 40 (``label40/``) or 13 (``label13/``); frames without a label file get
            ``has_labels=False``.
        frames: optional subset of frame stems (e.g. ``["0001", "0433"]``).
        normal_axes: axis convention of the stored normal PNGs as a signed permutation mapping
            to REP 103 (see :func:`parse_normal_axes`). The decoded ``normal/0433.png`` of
            ``../shared/data/nyuv2_test`` agrees best with normals computed from its depth for
            ``"x,-z,y"`` (median 29 deg vs 85 deg as stored); "x,y,z" keeps the files as-is.

    K comes from ``manifest.json`` (``intrinsics_rgb_640x480``) or NYU_K when absent.
    """

    def __init__(
        self,
        root,
        num_classes: int = 40,
        frames: Sequence[str] | None = None,
        normal_axes: str = "x,y,z",
    ):
        self.root = Path(root)
        parse_normal_axes(normal_axes)
        self.normal_axes = normal_axes
        if not (self.root / "rgb").is_dir():
            raise FileNotFoundError(f"NYU folder has no rgb/ directory: {self.root}")
        if num_classes not in (13, 40):
            raise ValueError(f"num_classes must be 40 or 13, got {num_classes}")
        self.num_classes = num_classes
        stems = sorted(p.stem for p in (self.root / "rgb").glob("*.png"))
        if frames is not None:
            missing = sorted(set(map(str, frames)) - set(stems))
            if missing:
                raise FileNotFoundError(f"{self.root / 'rgb'}: no frame(s) {missing}")
            stems = [s for s in stems if s in set(map(str, frames))]
        if not stems:
            raise ValueError(f"{self.root / 'rgb'}: no PNG frames")
        self.stems = stems
        self.K = NYU_K.copy()
        manifest = self.root / "manifest.json"
        if manifest.exists():
            try:
                intr = json.loads(manifest.read_text())["intrinsics_rgb_640x480"]
                self.K = np.array(
                    [[intr["fx"], 0.0, intr["cx"]], [0.0, intr["fy"], intr["cy"]], [0.0, 0.0, 1.0]],
                    np.float64,
                )
            except (KeyError, TypeError, json.JSONDecodeError) as exc:
                raise ValueError(f"{manifest}: cannot read intrinsics_rgb_640x480: {exc}") from exc

    def __len__(self) -> int:
        return len(self.stems)

    @property
    def targets(self) -> tuple[str, ...]:
        """depth, plus segmentation / normals when their folders hold a file of these frames."""
        out = ["depth"]
        if any((self.root / f"label{self.num_classes}" / f"{s}.png").exists() for s in self.stems):
            out.append("segmentation")
        if any((self.root / "normal" / f"{s}.png").exists() for s in self.stems):
            out.append("normals")
        return tuple(out)

    def __getitem__(self, i: int) -> dict:
        stem = self.stems[i]
        rgb = read_image(self.root / "rgb" / f"{stem}.png")
        depth = read_depth_png(self.root / "depth_mm" / f"{stem}.png")
        lp = self.root / f"label{self.num_classes}" / f"{stem}.png"
        labels = read_png(lp).astype(np.int64) if lp.exists() else None
        if labels is not None and labels.max(initial=0) > self.num_classes:
            raise ValueError(f"{lp}: label id {labels.max()} outside 0..{self.num_classes}")
        npth = self.root / "normal" / f"{stem}.png"
        normals = _apply_axes(read_normals_png(npth), self.normal_axes) if npth.exists() else None
        K = self.K if rgb.shape[:2] == NYU_SIZE else _nyu_k_for(*rgb.shape[:2])
        return make_sample(rgb, K, depth, labels, normals, name=stem)
