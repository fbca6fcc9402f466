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
rosbag          ``data.recordings.RosbagRecording``              bag, stride, max_frames
sevenscenes     ``data.sevenscenes.SevenScenes``                 root, labels, normals, cache_dir, frames, layout
==============  ===============================================  ===========================

Every name also accepts ``max_items`` (keep the first N items) and ``repeat`` (repeat the
set N times per epoch, for tiny real sets mixed with large synthetic ones).
"""

from __future__ import annotations

from collections.abc import Sequence

from joint_perception.data.transforms import make_sample

__all__ = ["build_dataset", "build_mixture", "DATASETS", "Subset", "Repeat"]

DATASETS = ("synthetic", "nyuv2_labeled", "nyud_mt", "nyu_folder", "sunrgbd", "cityscapes", "kitti", "rosbag", "sevenscenes")

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


def build_dataset(name: str, split: str = "train", **cfg):
    """Instantiate data set ``name`` for ``split`` ("train", "val", "test", ...).

    Raises:
        KeyError: unknown name (lists the known ones).
        TypeError: unknown configuration keys for that reader.
    """
    max_items = cfg.pop("max_items", None)
    repeat = cfg.pop("repeat", 1)
    if name == "synthetic":
        from joint_perception.data.synthetic import SyntheticScenes

        cfg = dict(cfg)
        seed = int(cfg.pop("seed", 0)) + (0 if split == "train" else SYNTHETIC_VAL_SEED_OFFSET)
        ds = _SyntheticContract(SyntheticScenes(seed=seed, **cfg))
    elif name == "nyuv2_labeled":
        from joint_perception.data.nyuv2 import NYUv2Labeled

        ds = NYUv2Labeled(split="test" if split in ("val", "test") else split, **cfg)
    elif name == "nyud_mt":
        from joint_perception.data.nyuv2 import NYUDMultiTask

        ds = NYUDMultiTask(split="val" if split in ("val", "test") else split, **cfg)
    elif name == "nyu_folder":
        from joint_perception.data.nyuv2 import NYUFolder

        ds = NYUFolder(**cfg)
    elif name == "sunrgbd":
        from joint_perception.data.sunrgbd import SUNRGBD

        ds = SUNRGBD(split="test" if split == "val" else split, **cfg)
    elif name == "cityscapes":
        from joint_perception.data.cityscapes import Cityscapes

        ds = Cityscapes(split="val" if split == "test" else split, **cfg)
    elif name == "kitti":
        from joint_perception.data.kitti import KITTIDepth

        ds = KITTIDepth(**cfg)
    elif name == "rosbag":
        from joint_perception.data.recordings import RosbagRecording

        ds = RosbagRecording(**cfg)
    elif name == "sevenscenes":
        from joint_perception.data.sevenscenes import SevenScenes

        ds = SevenScenes(split="val" if split in ("val", "test") else split, **cfg)
    else:
        raise KeyError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")
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
