"""Build data sets by name from configuration (training recipes, ``evaluate``).

``build_dataset(name, split, **cfg)`` returns a map-style data set of sample dicts
(:func:`joint_perception.data.transforms.make_sample` contract); ``build_mixture`` concatenates
several (e.g. synthetic scenes + real NYUv2 frames). Names:

==============  ===============================================  ===========================
name            reader                                           main keys
==============  ===============================================  ===========================
synthetic       ``data.synthetic.SyntheticScenes``               length, height, width, seed
nyuv2_labeled   ``data.nyuv2.NYUv2Labeled``                      mat_path, splits_path, class_mapping
nyud_mt         ``data.nyuv2.NYUDMultiTask``                     root
nyu_folder      ``data.nyuv2.NYUFolder``                         root, frames
sunrgbd         ``data.sunrgbd.SUNRGBD``                         root, split_file, seg_mat, meta_order
cityscapes      ``data.cityscapes.Cityscapes``                   root
kitti           ``data.kitti.KITTIDepth``                        raw_root, depth_root, split_file
rosbag          ``data.recordings.RosbagRecording``              bag, stride, max_frames, normals
sevenscenes     ``data.sevenscenes.SevenScenes``                 root, labels, normals, cache_dir, frames, layout
==============  ===============================================  ===========================

Every name also accepts ``max_items`` (keep the first N items) and ``repeat`` (repeat the
set N times per epoch, for tiny real sets mixed with large synthetic ones).

:func:`dataset_targets` says which tasks (``depth``, ``segmentation``, ``normals``) a built data
set has ground truth for, through the wrappers here (a reader's ``targets`` attribute, else
what the reader is known to supply); the ``train`` command uses it to refuse a model that
trains a task without ground truth instead of training that head on a loss of zero.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from collections.abc import Sequence

from joint_perception.data.transforms import make_sample

__all__ = [
    "build_dataset",
    "dataset_targets",
    "build_mixture",
    "dataset_options",
    "reader_class",
    "DATASETS",
    "Subset",
    "Repeat",
]

#: name -> (module, class) of the reader; imported on first use
_READERS: dict[str, tuple[str, str]] = {
    "synthetic": ("joint_perception.data.synthetic", "SyntheticScenes"),
    "nyuv2_labeled": ("joint_perception.data.nyuv2", "NYUv2Labeled"),
    "nyud_mt": ("joint_perception.data.nyuv2", "NYUDMultiTask"),
    "nyu_folder": ("joint_perception.data.nyuv2", "NYUFolder"),
    "sunrgbd": ("joint_perception.data.sunrgbd", "SUNRGBD"),
    "cityscapes": ("joint_perception.data.cityscapes", "Cityscapes"),
    "kitti": ("joint_perception.data.kitti", "KITTIDepth"),
    "rosbag": ("joint_perception.data.recordings", "RosbagRecording"),
    "sevenscenes": ("joint_perception.data.sevenscenes", "SevenScenes"),
}

DATASETS = tuple(_READERS)

#: keys every data set spec accepts besides its reader's arguments (see build_dataset)
COMMON_OPTIONS = ("max_items", "repeat")

#: seed offset of the synthetic validation/test split, so it never overlaps training scenes
SYNTHETIC_VAL_SEED_OFFSET = 1_000_003


class Subset:
    """The first ``n`` items of a data set (or the given indices)."""

    def __init__(self, dataset, indices: Sequence[int]):
        self.dataset = dataset
        self.indices = list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        return self.dataset[self.indices[i]]


class Repeat:
    """A data set repeated ``times`` times (index ``i`` -> ``i % len``)."""

    def __init__(self, dataset, times: int):
        if times < 1:
            raise ValueError(f"repeat must be >= 1, got {times}")
        self.dataset, self.times = dataset, int(times)

    def __len__(self) -> int:
        return len(self.dataset) * self.times

    def __getitem__(self, i: int):
        return self.dataset[i % len(self.dataset)]


class _SyntheticContract:
    """Adapts ``SyntheticScenes`` items to the sample contract (int64 labels, names)."""

    def __init__(self, scenes):
        self.scenes = scenes

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, i: int) -> dict:
        s = self.scenes[i]
        return make_sample(
            s["rgb"], s["K"], s["depth"],
            s.get("labels") if s.get("has_labels", True) else None,
            s.get("normals") if s.get("has_normals", True) else None,
            name=f"synthetic{self.scenes.seed}_{i}",
        )  # fmt: skip


def _sunrgbd_targets(ds) -> tuple[str, ...]:
    frames = getattr(ds, "frames", [])
    labelled = ds.seg_mat is not None or (
        bool(frames) and (ds.root / frames[0] / "label" / "label37.png").exists()
    )
    return ("depth", "segmentation") if labelled else ("depth",)


#: reader class name -> the tasks it supplies, for readers without a ``targets`` attribute
_KNOWN_TARGETS = {
    "SyntheticScenes": lambda ds: ("depth", "segmentation", "normals"),
    "SUNRGBD": _sunrgbd_targets,
    "Cityscapes": lambda ds: ("depth", "segmentation"),
    "KITTIDepth": lambda ds: ("depth",),
    "SevenScenes": lambda ds: (
        ("depth",) + (("segmentation",) if ds.labels else ()) + (("normals",) if ds.normals else ())
    ),
}


def dataset_targets(ds) -> frozenset[str] | None:
    """The tasks a data set has ground truth for, or None when that cannot be told.

    Follows :class:`Subset`, :class:`Repeat`, the synthetic adapter, ``ConcatDataset``
    (union) and any wrapper with a ``dataset`` attribute (e.g. ``data.transforms.Transformed``)
    down to the reader; a reader's ``targets`` attribute wins over :data:`_KNOWN_TARGETS`.
    A wrapper may add tasks with an ``added_targets`` attribute (teacher pseudo-labels add
    ``segmentation``).
    """
    if hasattr(ds, "targets"):
        return frozenset(ds.targets)
    if hasattr(ds, "datasets"):  # ConcatDataset
        parts = [dataset_targets(d) for d in ds.datasets]
        if any(p is None for p in parts):
            return None
        return frozenset().union(*parts)
    inner = getattr(ds, "dataset", None) or getattr(ds, "scenes", None)
    if inner is not None:
        base = dataset_targets(inner)
        if base is None:
            return None
        return base | frozenset(getattr(ds, "added_targets", ()))
    known = _KNOWN_TARGETS.get(type(ds).__name__)
    return None if known is None else frozenset(known(ds))


def reader_class(name: str) -> type:
    """The reader class behind data set ``name``.

    Raises:
        KeyError: unknown name (lists the known ones).
    """
    if name not in _READERS:
        raise KeyError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")
    module, cls = _READERS[name]
    return getattr(importlib.import_module(module), cls)


def dataset_options(name: str) -> tuple[str, ...]:
    """The configuration keys ``build_dataset(name, split, **cfg)`` accepts: the reader's
    constructor arguments (``split`` excepted: ``build_dataset`` sets it), the
    ``SceneOptions`` fields for ``synthetic`` and :data:`COMMON_OPTIONS`.

    Raises:
        KeyError: unknown name.
    """
    cls = reader_class(name)
    keys = [
        p.name
        for p in inspect.signature(cls).parameters.values()
        if p.name != "split" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    if name == "synthetic":
        from joint_perception.data.synthetic import SceneOptions

        keys += [f.name for f in dataclasses.fields(SceneOptions)]
    return (*keys, *COMMON_OPTIONS)


def build_dataset(name: str, split: str = "train", **cfg):
    """Instantiate data set ``name`` for ``split`` ("train", "val", "test", ...).

    Raises:
        KeyError: unknown name (lists the known ones).
        TypeError: unknown configuration keys for that reader.
    """
    cls = reader_class(name)
    max_items = cfg.pop("max_items", None)
    repeat = cfg.pop("repeat", 1)
    if name == "synthetic":
        cfg = dict(cfg)
        seed = int(cfg.pop("seed", 0)) + (0 if split == "train" else SYNTHETIC_VAL_SEED_OFFSET)
        ds = _SyntheticContract(cls(seed=seed, **cfg))
    elif name == "nyuv2_labeled":
        ds = cls(split="test" if split in ("val", "test") else split, **cfg)
    elif name == "nyud_mt":
        ds = cls(split="val" if split in ("val", "test") else split, **cfg)
    elif name == "sunrgbd":
        ds = cls(split="test" if split == "val" else split, **cfg)
    elif name == "cityscapes":
        ds = cls(split="val" if split == "test" else split, **cfg)
    elif name == "sevenscenes":
        ds = cls(split="val" if split in ("val", "test") else split, **cfg)
    else:  # nyu_folder, kitti, rosbag: one fixed file list each, no split argument
        ds = cls(**cfg)
    if max_items is not None:
        ds = Subset(ds, range(min(int(max_items), len(ds))))
    if repeat != 1:
        ds = Repeat(ds, int(repeat))
    return ds


def build_mixture(specs: Sequence[dict], split: str = "train"):
    """Concatenate data sets; each spec is ``{"name": ..., **cfg}``.

    Returns:
        the single data set for one spec, else a ``torch.utils.data.ConcatDataset``.

    Raises:
        ValueError: empty list or a spec without ``name``.
    """
    if not specs:
        raise ValueError("a data set mixture needs at least one entry")
    sets = []
    for spec in specs:
        spec = dict(spec)
        if "name" not in spec:
            raise ValueError(f"data set spec without 'name': {spec}")
        sets.append(build_dataset(spec.pop("name"), split, **spec))
    if len(sets) == 1:
        return sets[0]
    from torch.utils.data import ConcatDataset

    return ConcatDataset(sets)
