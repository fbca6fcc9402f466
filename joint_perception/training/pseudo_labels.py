"""Semantic pseudo-labels for real frames without ground truth, from a segmentation teacher.

Real RGB-D recordings (7-Scenes, a robot's own bags, the NYUv2 *train* depth frames) have metric
depth but no semantic labels. A network trained on PASCAL VOC (the DeepLabV3-MobileNetV2 of
:mod:`joint_perception.models.pascal_teacher`) recognises the objects the two label sets share —
chair, sofa, table, television, person and a few "other props" — on real photos, which the
synthetic scenes cannot teach. :class:`TeacherLabels` wraps a data set and adds those labels:

* the teacher runs once per frame at ``(16 k + 1)``-sized input (DeepLab's aligned-corners
  grid; the frame is resized to the nearest such size, the labels resized back with nearest
  neighbour), its PASCAL classes are mapped to NYUv2-40 ids
  (:func:`~joint_perception.models.pascal_teacher.pascal_to_nyu40`), and a pixel keeps its label
  only where the teacher's softmax probability is at least ``min_confidence``; background and
  PASCAL classes NYUv2 does not name stay void (0), so they add no loss;
* the labels are **merged** into the frame's own labels: a pixel labelled by the teacher takes
  the teacher's class (objects over the geometric wall / floor / ceiling pseudo-labels of
  :mod:`joint_perception.data.sevenscenes`), every other pixel keeps what it had;
* results are cached as PNG files (atomic writes) under ``cache_dir/<key>/``, the key hashing
  the teacher file's SHA-256, the data set's identity and the settings, so a run computes each
  frame once and every later run (or data loader worker) reads it.

The cache is filled eagerly by :meth:`TeacherLabels.prepare` (a progress bar, one frame at a
time on the calling process) so data loader workers never run the teacher.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from joint_perception.io_utils import atomic_write_bytes, sha256_file

log = logging.getLogger(__name__)

__all__ = ["TeacherLabels", "DEFAULT_CACHE_DIR"]

DEFAULT_CACHE_DIR = (
    Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    / "joint_perception"
    / "pseudo_labels"
)


def _aligned(n: int, stride: int = 16) -> int:
    """Nearest size of the form ``stride * k + 1`` (>= stride + 1)."""
    return max(stride * round((n - 1) / stride) + 1, stride + 1)


class TeacherLabels:
    """A data set whose samples carry teacher pseudo-labels merged into their own labels.

    Args:
        dataset: map-style data set of sample dicts (``data.transforms.make_sample`` contract)
            with an ``identity`` — a string naming it and its frames, used in the cache key
            (default: its class name and length; pass ``identity`` when that is ambiguous).
        teacher_path: the DeepLabV3-MobileNetV2 PASCAL ``.tflite`` file.
        min_confidence: softmax probability a teacher label needs, in (0, 1].
        cache_dir: where the PNG label maps are kept (default
            ``~/.cache/joint_perception/pseudo_labels``).
        identity: see ``dataset``.

    Raises:
        FileNotFoundError: no teacher file.
        ValueError: ``min_confidence`` outside (0, 1].
    """

    def __init__(
        self,
        dataset,
        teacher_path: str | os.PathLike,
        min_confidence: float = 0.7,
        cache_dir: str | os.PathLike | None = None,
        identity: str | None = None,
    ):
        teacher_path = Path(teacher_path)
        if not teacher_path.is_file():
            raise FileNotFoundError(f"teacher weights not found: {teacher_path}")
        if not 0 < min_confidence <= 1:
            raise ValueError(f"min_confidence must be in (0, 1], got {min_confidence}")
        self.dataset = dataset
        self.added_targets = ("segmentation",)  # data.registry.dataset_targets
        self.teacher_path = teacher_path
        self.min_confidence = float(min_confidence)
        ident = (
            identity or f"{type(dataset).__name__}:{len(dataset)}:{getattr(dataset, 'root', '')}"
        )
        key = json.dumps(
            {
                "teacher": sha256_file(teacher_path),
                "data": ident,
                "min_confidence": self.min_confidence,
                "version": 1,
            },
            sort_keys=True,
        )
        self.cache = (
            Path(cache_dir or DEFAULT_CACHE_DIR) / hashlib.sha256(key.encode()).hexdigest()[:16]
        )
        self._teacher = None

    def __len__(self) -> int:
        return len(self.dataset)

    def _path(self, i: int) -> Path:
        return self.cache / f"{i:06d}.png"

    def _teacher_net(self):
        if self._teacher is None:
            from joint_perception.models.pascal_teacher import pascal_teacher_from_tflite

            self._teacher = pascal_teacher_from_tflite(self.teacher_path)
        return self._teacher

    def teacher_labels(self, rgb: np.ndarray) -> np.ndarray:
        """(H, W) uint8 NYUv2-40 ids from the teacher for one (H, W, 3) uint8 RGB frame (0 where
        the teacher sees background, a class NYUv2 does not name, or is not confident)."""
        import torch

        from joint_perception.models.pascal_teacher import pascal_to_nyu40

        net = self._teacher_net()
        h, w = rgb.shape[:2]
        sh, sw = _aligned(h), _aligned(w)
        x = cv2.resize(
            rgb, (sw, sh), interpolation=cv2.INTER_AREA if sh * sw < h * w else cv2.INTER_LINEAR
        )
        x = torch.from_numpy(x).permute(2, 0, 1)[None].float() / 255.0
        x = (x - torch.tensor(net.mean).view(1, 3, 1, 1)) / torch.tensor(net.std).view(1, 3, 1, 1)
        with torch.no_grad():
            prob = torch.softmax(net(x), dim=1)[0]
        conf, cls = prob.max(dim=0)
        nyu = pascal_to_nyu40(cls.numpy()).astype(np.uint8)
        nyu[conf.numpy() < self.min_confidence] = 0
        return cv2.resize(nyu, (w, h), interpolation=cv2.INTER_NEAREST)

    def prepare(self, progress: bool = True) -> int:
        """Compute and cache the labels of every frame not cached yet; returns how many were
        computed. Safe to interrupt (each file is written atomically)."""
        todo = [i for i in range(len(self.dataset)) if not self._path(i).exists()]
        if not todo:
            return 0
        import torch
        from tqdm import tqdm

        threads = torch.get_num_threads()
        log.info("teacher pseudo-labels: %d frames -> %s", len(todo), self.cache)
        for i in tqdm(todo, desc="teacher pseudo-labels", disable=not progress, unit="frame"):
            lab = self.teacher_labels(self.dataset[i]["rgb"])
            ok, png = cv2.imencode(".png", lab)
            if not ok:
                raise RuntimeError(f"cannot encode pseudo-labels of frame {i}")
            atomic_write_bytes(self._path(i), png.tobytes())
        torch.set_num_threads(threads)
        self._teacher = None  # free it before data loader workers fork
        return len(todo)

    def __getitem__(self, i: int) -> dict[str, Any]:
        s = dict(self.dataset[i])
        path = self._path(i)
        lab = cv2.imread(str(path), cv2.IMREAD_UNCHANGED) if path.exists() else None
        if lab is None:
            lab = self.teacher_labels(s["rgb"])  # not prepared: compute (slow) without caching
        if lab.shape != s["rgb"].shape[:2]:
            raise ValueError(
                f"cached pseudo-labels {path} are {lab.shape}, frame is {s['rgb'].shape[:2]}"
            )
        own = s["labels"] if s.get("has_labels") else np.zeros(lab.shape, np.int64)
        s["labels"] = np.where(lab > 0, lab, own).astype(np.int64)
        s["has_labels"] = True
        return s
