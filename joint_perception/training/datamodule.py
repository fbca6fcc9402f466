"""LightningDataModule: data sets from the recipe, joint transforms, loaders.

Training items: the ``data.train`` mixture (``data.registry.build_mixture``) through the
training transforms (``data.transforms.build_transforms(train=True)``: cover-resize, random
scale/crop/flip/rotation/jitter, canonical focal) to the network ``input_size``. Validation:
one loader per ``data.val`` entry (its ``tag`` names the metrics), plain resize.
Lightning adds a ``DistributedSampler`` under DDP; for validation it pads the last batch with
repeated frames, so DDP validation numbers may count a few frames twice — run ``evaluate`` for
the reported metrics.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import lightning
from torch.utils.data import DataLoader

from joint_perception.data.registry import Repeat, build_dataset
from joint_perception.data.transforms import Transformed, build_transforms
from joint_perception.training.config import resolve_section
from joint_perception.training.pseudo_labels import TeacherLabels

__all__ = ["JointDataModule", "val_tags", "build_spec", "check_task_targets"]


def build_spec(spec: Mapping[str, Any], split: str, progress: bool = True):
    """One data set from a recipe spec ``{"name", **reader options, "repeat"?, "teacher_labels"?,
    "teacher_min_confidence"?}``: the reader (``data.registry.build_dataset``), then — when
    ``teacher_labels`` names a DeepLab PASCAL ``.tflite`` — teacher pseudo-labels merged into
    its labels (:class:`~joint_perception.training.pseudo_labels.TeacherLabels`, cached on
    disk, computed here with a progress bar), then the repetition.

    Raises:
        ValueError: a spec without ``name``, or with a value left as ``'???'`` (a recipe's
            "you must set this", e.g. the bag of config/train/finetune_rosbag.yaml). Errors of
            the reader and the teacher pass through.
    """
    spec = dict(spec)
    if "name" not in spec:
        raise ValueError(f"data set spec without 'name': {spec}")
    unset = [k for k, v in spec.items() if v == "???"]
    if unset:
        raise ValueError(
            f"data set {spec['name']!r} ({split}): set {', '.join(unset)} on the command line, "
            f"e.g. data.{split}.0.{unset[0]}=..."
        )
    name = spec.pop("name")
    teacher = spec.pop("teacher_labels", None)
    min_conf = float(spec.pop("teacher_min_confidence", 0.7))
    repeat = int(spec.pop("repeat", 1))
    ds = build_dataset(name, split, **spec)
    if teacher:
        import json

        identity = json.dumps(
            {"name": name, "split": split, **{k: str(v) for k, v in spec.items()}}, sort_keys=True
        )
        ds = TeacherLabels(ds, teacher, min_conf, identity=identity)
        ds.prepare(progress)
    return Repeat(ds, repeat) if repeat != 1 else ds


def check_task_targets(
    tasks: Sequence[str],
    datasets: Sequence[Any],
    specs: Sequence[Mapping[str, Any]],
    arch: str,
    allowed_missing: Sequence[str] = (),
) -> None:
    """Refuse to train a task that no training data set has ground truth for.

    A model's loss for a task without ground truth is an attached zero (``models.losses``), so
    that head would "train" silently on nothing (e.g. PAP's normals on the NYUv2 .mat). A
    mixture where only some sets supply a task is fine (per-sample ``has_*`` masks).

    Args:
        tasks: the model's tasks.
        datasets: the built training sets, one per spec (before the transforms).
        specs: their recipe specs (for the message).
        arch: the model's registry name (for the message).
        allowed_missing: tasks the recipe lets go without ground truth
            (``data.allow_missing_targets``).

    Raises:
        ValueError: a task without ground truth in any set, naming the task, the sets and what
            they supply, and pointing at docs/data.md.
    """
    from joint_perception.data.registry import dataset_targets

    found = [dataset_targets(ds) for ds in datasets]
    if any(f is None for f in found):  # a reader that cannot tell: do not guess
        return
    have = frozenset().union(*found)
    missing = [t for t in tasks if t not in have and t not in allowed_missing]
    if missing:
        what = "; ".join(
            f"data.train[{i}] {s.get('name')!r} supplies {', '.join(sorted(f)) or 'nothing'}"
            for i, (s, f) in enumerate(zip(specs, found, strict=True))
        )
        raise ValueError(
            f"model {arch!r} trains {', '.join(missing)}, but no training data set has "
            f"{', '.join(missing)} ground truth ({what}). Its loss would be a silent zero. Add "
            "a set with that ground truth (docs/data.md: e.g. nyud_mt with normals/, or "
            "nyuv2_labeled normals_root=... / normals_from_depth=true) or train without the "
            f"task (model.tasks=[{', '.join(t for t in tasks if t not in missing)}]); "
            "data.allow_missing_targets accepts it deliberately (e.g. frozen branches)."
        )


def val_tags(val_specs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Metric prefixes of the validation sets: ``tag`` or ``<name><index>``."""
    return [str(s.get("tag", f"{s['name']}{i}")) for i, s in enumerate(val_specs)]


def _single_thread_worker(worker_id: int) -> None:
    """Loader workers use one thread each (torch, OpenCV): no oversubscription of the cores the
    training process uses. Random transforms are seeded per item from torch's generator (see
    ``data.transforms.Transformed``), which DataLoader already seeds distinctly per worker."""
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)


class JointDataModule(lightning.LightningDataModule):
    """Args:
    data_cfg: the recipe's ``data`` section (:class:`training.config.DataConfig`); missing
        keys take the recipe defaults, unknown keys are refused.
    input_size: network (H, W).
    mean, std: the model's RGB normalisation.
    """

    def __init__(
        self,
        data_cfg: Mapping[str, Any],
        input_size: Sequence[int],
        mean: Sequence[float] = (0.485, 0.456, 0.406),
        std: Sequence[float] = (0.229, 0.224, 0.225),
    ):
        super().__init__()
        self.cfg = resolve_section("data", data_cfg)
        if not self.cfg["train"]:
            raise ValueError("recipe data.train is empty: list at least one data set")
        self.size = (int(input_size[0]), int(input_size[1]))
        aug = self.cfg["augment"]
        focal = self.cfg["canonical_focal"]
        self.train_tf = build_transforms(
            self.size, True, canonical_focal=focal, mean=mean, std=std, **aug
        )
        self.eval_tf = build_transforms(self.size, False, canonical_focal=focal, mean=mean, std=std)
        self.train_set = None
        self.train_parts: list = []  # the training sets before the transforms
        self.val_sets: list = []

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            from torch.utils.data import ConcatDataset

            sets = [build_spec(spec, "train") for spec in self.cfg["train"]]
            self.train_parts = sets
            self.train_set = Transformed(
                sets[0] if len(sets) == 1 else ConcatDataset(sets), self.train_tf
            )
            self.val_sets = []
            for spec in self.cfg["val"]:
                spec = {k: v for k, v in spec.items() if k != "tag"}
                name = spec.pop("name")
                self.val_sets.append(Transformed(build_dataset(name, "val", **spec), self.eval_tf))

    def _loader(self, ds, batch_size: int, shuffle: bool, drop_last: bool) -> DataLoader:
        workers = int(self.cfg["num_workers"])
        return DataLoader(
            ds,
            batch_size=batch_size,
            shuffle=shuffle,
            drop_last=drop_last,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=False,
            worker_init_fn=_single_thread_worker if workers > 0 else None,
        )

    def train_dataloader(self) -> DataLoader:
        bs = int(self.cfg["batch_size"])
        return self._loader(self.train_set, bs, True, len(self.train_set) >= bs)

    def val_dataloader(self):
        bs = int(self.cfg["val_batch_size"] or self.cfg["batch_size"])
        return [self._loader(ds, bs, False, False) for ds in self.val_sets]
