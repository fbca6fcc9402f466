"""Accuracy of recorded (or directly computed) outputs against ground truth, per frame and
aggregate, with the shared :mod:`joint_perception.metrics` (NYUv2 conventions, DESIGN.md 5).

* depth: abs rel, RMSE, delta1..3 ... over all valid GT pixels of the set, and the same broken
  down by GT distance (default bins (0, 2], (2, 4], (4, 10] m — navigation cares most about
  near obstacles);
* segmentation: mIoU, pixel accuracy and per-class IoU from the accumulated confusion matrix
  (void ignored), when labels exist: a labels topic of the bag (:func:`labels_from_topic`),
  or a labelled folder such as
  ``../shared/data/nyuv2_test`` whose ``manifest.json`` lists the frames in bag order
  (:func:`labels_from_folder`, checked by RGB agreement);
* normals: angular error against explicit GT normals when given, else (``derive_normals``)
  against normals computed from the GT depth with
  :func:`joint_perception.geometry.normals_from_depth` (central differences of back-projected
  points; NaN at holes and borders, which are excluded);
* baselines (:mod:`joint_perception.baselines`, no test ground truth used): the same depth and
  segmentation metrics for a constant depth and for the layout band on the same frames, and
  :func:`joint_perception.baselines.margins` — whether the model clears the project's margins
  over them.

Predictions at another resolution than the GT are resized nearest-neighbour to the GT size
(no mixing of valid and NaN pixels). Recorded outputs are read back from a replay's output
bag with :func:`load_recorded_outputs`. No ROS import: bags are read with ``rosbags``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from joint_perception import baselines as base
from joint_perception.geometry import normals_from_depth
from joint_perception.metrics import DepthMetrics, NormalMetrics, SegmentationMetrics

__all__ = [
    "FrameReference",
    "AccuracyEvaluator",
    "baseline_table",
    "depth_error_map",
    "labels_from_folder",
    "labels_from_topic",
    "load_references",
    "load_recorded_outputs",
]

DEFAULT_RANGES = (0.0, 2.0, 4.0, 10.0)


@dataclass
class FrameReference:
    """Ground truth (and input) of one frame.

    Attributes:
        rgb: (H, W, 3) uint8 input image (for report samples), or None.
        K: (3, 3) float64 intrinsics of the GT images.
        depth: (H, W) float32 metres along z, NaN invalid, or None.
        labels: (H, W) integer class ids (0 void), or None.
        normals: (H, W, 3) float32 GT unit normals (optical frame), or None (then derived from
            ``depth``).
    """

    K: np.ndarray
    rgb: np.ndarray | None = None
    depth: np.ndarray | None = None
    labels: np.ndarray | None = None
    normals: np.ndarray | None = None


def _to_size(a: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    if a.shape[:2] == hw:
        return a
    return cv2.resize(a, (hw[1], hw[0]), interpolation=cv2.INTER_NEAREST)


def depth_error_map(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-pixel absolute relative depth error ``|pred - gt| / gt``.

    Args:
        pred: (H, W) float metres, NaN where no prediction (resized to ``gt`` if needed).
        gt: (H, W) float metres, NaN/<= 0 invalid.

    Returns:
        (H, W) float32, NaN where either is invalid.
    """
    gt = np.asarray(gt, dtype=np.float32)
    pred = _to_size(np.asarray(pred, dtype=np.float32), gt.shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        err = np.abs(pred - gt) / gt
    err[~(gt > 0)] = np.nan
    return err.astype(np.float32, copy=False)


def _finite_dict(d: Mapping) -> dict:
    """NaN -> None so results serialise to strict JSON."""
    out = {}
    for k, v in d.items():
        if isinstance(v, float) and not np.isfinite(v):
            out[k] = None
        elif isinstance(v, list):
            out[k] = [None if isinstance(x, float) and not np.isfinite(x) else x for x in v]
        else:
            out[k] = v
    return out


class AccuracyEvaluator:
    """Per-frame and aggregate accuracy over a set of frames.

    Args:
        num_classes: segmentation classes (1..C, 0 = void).
        class_names: names of classes 1..C (reported with the per-class IoU).
        min_depth, max_depth: GT validity range in metres (NYU: (1e-3, 10]).
        range_edges: increasing GT-distance bin edges in metres.
        eigen_crop: as :class:`joint_perception.metrics.DepthMetrics`.
        baselines: also score the constant depth and the layout band
            (:mod:`joint_perception.baselines`) on every frame with ground truth; the layout
            band needs NYUv2-40 (or 13, mapped) class ids.
        derive_normals: without GT normals, score normals against normals derived from the GT
            depth (False: only frames with GT normals count).

    Raises:
        ValueError: invalid edges or depth range.
    """

    def __init__(
        self,
        num_classes: int = 40,
        class_names: Sequence[str] | None = None,
        min_depth: float = 1e-3,
        max_depth: float = 10.0,
        range_edges: Sequence[float] = DEFAULT_RANGES,
        eigen_crop: bool | str = False,
        baselines: bool = True,
        derive_normals: bool = True,
    ):
        edges = [float(e) for e in range_edges]
        if len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:])):
            raise ValueError(f"range_edges must be increasing with >= 2 values, got {range_edges}")
        self.edges = edges
        self.num_classes = int(num_classes)
        self.class_names = (
            list(class_names)
            if class_names
            else [f"class_{i}" for i in range(1, self.num_classes + 1)]
        )
        if len(self.class_names) != self.num_classes:
            raise ValueError(f"{len(self.class_names)} class names for {num_classes} classes")
        self._dm_kwargs = dict(min_depth=min_depth, max_depth=max_depth, eigen_crop=eigen_crop)
        self.depth = DepthMetrics(**self._dm_kwargs)
        self.depth_bins = {
            self._bin_name(lo, hi): DepthMetrics(**self._dm_kwargs)
            for lo, hi in zip(edges, edges[1:])
        }
        self.seg = SegmentationMetrics(self.num_classes)
        self.normals = NormalMetrics()
        self.derive_normals = bool(derive_normals)
        self.frames: list[dict] = []
        self.baseline_depth = DepthMetrics(**self._dm_kwargs) if baselines else None
        self._band_ids = _band_class_map(self.num_classes) if baselines else None
        self.baseline_seg = (
            SegmentationMetrics(self.num_classes) if self._band_ids is not None else None
        )

    @staticmethod
    def _bin_name(lo: float, hi: float) -> str:
        return f"{lo:g}-{hi:g}"

    def _add_depth(self, pred: np.ndarray, gt: np.ndarray, rec: dict) -> None:
        pred = _to_size(np.asarray(pred, dtype=np.float32), gt.shape)
        one = DepthMetrics(**self._dm_kwargs)
        one.update(pred, gt)
        self.depth.update(pred, gt)
        rec["depth"] = _finite_dict(one.compute())
        by_range = {}
        with np.errstate(invalid="ignore"):
            for (lo, hi), (name, acc) in zip(
                zip(self.edges, self.edges[1:]), self.depth_bins.items()
            ):
                gt_bin = np.where((gt > lo) & (gt <= hi), gt, np.nan)
                acc.update(pred, gt_bin)
                m = DepthMetrics(**self._dm_kwargs)
                m.update(pred, gt_bin)
                r = m.compute()
                by_range[name] = _finite_dict(
                    {k: r[k] for k in ("abs_rel", "rmse", "delta1", "n_pixels")}
                )
        rec["depth_by_range"] = by_range

    def add(
        self,
        key,
        pred_depth: np.ndarray | None = None,
        pred_labels: np.ndarray | None = None,
        pred_normals: np.ndarray | None = None,
        ref: FrameReference | None = None,
    ) -> dict:
        """Add one frame; returns (and keeps) its per-frame metrics.

        Args:
            key: frame identifier reported back (e.g. header stamp in ns).
            pred_depth: (h, w) float32 metres, NaN = no prediction.
            pred_labels: (h, w) integer class ids.
            pred_normals: (h, w, 3) float32 unit normals, optical frame.
            ref: the frame's ground truth; a task is evaluated only when both the prediction
                and its GT exist (normals need GT normals or GT depth + K).

        Returns:
            ``{"key", "depth", "depth_by_range", "segmentation", "normals"}`` (absent tasks
            omitted); NaN values become None.

        Raises:
            ValueError: shapes that do not fit (from the metrics module).
        """
        rec: dict = {"key": key}
        if ref is None:
            self.frames.append(rec)
            return rec
        if pred_depth is not None and ref.depth is not None:
            self._add_depth(pred_depth, ref.depth, rec)
        if self.baseline_depth is not None and ref.depth is not None:
            self.baseline_depth.update(base.constant_depth(*ref.depth.shape[:2]), ref.depth)
        if self.baseline_seg is not None and ref.labels is not None:
            band = self._band_ids[base.layout_band_labels(*ref.labels.shape[:2])]
            self.baseline_seg.update(band, ref.labels)
        if pred_labels is not None and ref.labels is not None:
            lab = _to_size(np.asarray(pred_labels), ref.labels.shape)
            self.seg.update(lab, ref.labels)
            one = SegmentationMetrics(self.num_classes)
            one.update(lab, ref.labels)
            r = one.compute()
            rec["segmentation"] = _finite_dict({k: r[k] for k in ("miou", "pixel_acc", "n_pixels")})
        if pred_normals is not None:
            gt_n = ref.normals
            if gt_n is None and ref.depth is not None and self.derive_normals:
                gt_n = normals_from_depth(ref.depth, ref.K)
            if gt_n is not None:
                pn = _to_size(np.asarray(pred_normals, dtype=np.float32), gt_n.shape[:2])
                self.normals.update(pn, gt_n)
                one_n = NormalMetrics()
                one_n.update(pn, gt_n)
                rec["normals"] = _finite_dict(one_n.compute())
        self.frames.append(rec)
        return rec

    def aggregate(self) -> dict:
        """Set-wise metrics: ``depth``, ``depth_by_range``, ``segmentation`` (with
        ``iou_per_class`` as ``{name: IoU}``), ``normals`` (``normals_reference`` says which
        GT), and with baselines ``baselines`` (``{"depth": constant depth, "segmentation":
        layout band}``) and ``margins`` (:func:`joint_perception.baselines.margins`); tasks
        never evaluated are None. NaN becomes None."""
        out: dict = {
            "frames": len(self.frames),
            "depth": None,
            "depth_by_range": None,
            "segmentation": None,
            "normals": None,
        }
        d = self.depth.compute()
        if d["n_pixels"]:
            out["depth"] = _finite_dict(d)
            out["depth_by_range"] = {
                k: _finite_dict(v.compute()) for k, v in self.depth_bins.items()
            }
        s = self.seg.compute()
        if s["n_pixels"]:
            per_class = {
                name: (None if not np.isfinite(v) else v)
                for name, v in zip(self.class_names, s["iou_per_class"])
            }
            out["segmentation"] = _finite_dict(
                {**{k: v for k, v in s.items() if k != "iou_per_class"}}
            )
            out["segmentation"]["iou_per_class"] = per_class
        n = self.normals.compute()
        if n["n_pixels"]:
            out["normals"] = _finite_dict(n)
        if self.baseline_depth is not None:
            b: dict = {
                "depth": None,
                "segmentation": None,
                "definition": {
                    "depth": f"constant {base.CONSTANT_DEPTH_M} m",
                    "segmentation": f"layout band: top {base.CEILING_FRACTION:g} ceiling, "
                    f"from {base.FLOOR_FRACTION:g} down floor, wall between",
                },
            }
            d = self.baseline_depth.compute()
            if d["n_pixels"]:
                b["depth"] = _finite_dict(d)
            if self.baseline_seg is not None:
                s = self.baseline_seg.compute()
                if s["n_pixels"]:
                    b["segmentation"] = _finite_dict(
                        {k: v for k, v in s.items() if k != "iou_per_class"}
                    )
            out["baselines"] = b
            out["margins"] = base.margins(out, b)
        return out

    def result(self) -> dict:
        """``{"aggregate": aggregate(), "per_frame": [...], "normals_reference": str}``."""
        return {
            "aggregate": self.aggregate(),
            "per_frame": list(self.frames),
            "normals_reference": "GT normals where given, else normals_from_depth(GT depth)",
        }


_MARGIN_LABELS = {
    "abs_rel": ("depth abs rel", "<= 0.75 x constant"),
    "delta1": ("depth delta1", ">= constant + 0.15"),
    "miou": ("labels mIoU", ">= 3 x layout band"),
    "pixel_acc": ("labels pixel accuracy", ">= layout band + 0.10"),
}


def baseline_table(aggregate: Mapping) -> tuple[list[str], list[list[str]]] | None:
    """Model beside the baselines, one row per metric, for reports and the console.

    Args:
        aggregate: :meth:`AccuracyEvaluator.aggregate` (with ``margins``).

    Returns:
        (header, rows) — ``metric | model | baseline | needed | clears`` — or None when no
        metric has both a model and a baseline value.
    """
    margins = aggregate.get("margins") or {}
    if not margins:
        return None
    rows = []
    for key, m in margins.items():
        label, rule = _MARGIN_LABELS[key]
        rows.append(
            [
                label,
                f"{m['model']:.3f}",
                f"{m['baseline']:.3f}",
                f"{rule} = {m['need']:.3f}",
                "yes" if m["ok"] else "NO",
            ]
        )
    return ["metric", "model", "baseline", "needed", "clears"], rows


def _band_class_map(num_classes: int) -> np.ndarray | None:
    """Lookup NYUv2-40 id -> the evaluated class ids (identity for 40 classes, ``MAP40_TO_13``
    for 13), or None when the classes are not NYUv2's (no layout band baseline then)."""
    if num_classes == 40:
        return np.arange(41, dtype=np.uint8)
    if num_classes == 13:
        from joint_perception.nyuv2_classes import MAP40_TO_13

        return np.asarray(MAP40_TO_13, dtype=np.uint8)
    return None


def labels_from_folder(
    folder: str | os.PathLike,
    rgbs: Sequence[np.ndarray],
    num_classes: int = 40,
    max_mean_abs_diff: float = 3.0,
) -> list[np.ndarray]:
    """Semantic GT of a labelled folder for a sequence of bag frames.

    The bags in ``../shared/data/bags`` hold test frames without labels, in the frame order of
    ``nyuv2_test/manifest.json``. The i-th bag frame is paired with the i-th manifest frame
    when their RGB images agree (mean absolute difference <= ``max_mean_abs_diff`` grey
    levels); otherwise (a bag holding a subset, e.g. ``nyuv2_test3_sqlite3``) with the folder
    frame whose RGB agrees. Pairing therefore never silently uses the wrong labels.

    Args:
        folder: e.g. ``../shared/data/nyuv2_test`` (``manifest.json`` with
            ``frames[*].index1449``, ``rgb/IIII.png``, ``label40/IIII.png``).
        rgbs: the bag's (H, W, 3) uint8 RGB frames in bag order.
        num_classes: 40 or 13 (reads ``label40/`` or ``label13/``).
        max_mean_abs_diff: RGB agreement threshold (JPEG-free bags match exactly).

    Returns:
        one (H, W) uint8 label map (0 void) per bag frame.

    Raises:
        FileNotFoundError: folder, manifest or an image missing.
        ValueError: manifest unreadable; a bag frame that matches no folder frame (names it).
    """
    from joint_perception.data.nyuv2 import read_image, read_png

    folder = Path(folder)
    manifest = folder / "manifest.json"
    if not manifest.is_file():
        raise FileNotFoundError(f"labelled folder has no manifest.json: {folder}")
    try:
        stems = [f"{int(e['index1449']):04d}" for e in json.loads(manifest.read_text())["frames"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{manifest}: cannot read frames[*].index1449: {exc}") from exc
    cache: dict[str, np.ndarray] = {}

    def folder_rgb(stem: str) -> np.ndarray:
        if stem not in cache:
            cache[stem] = read_image(folder / "rgb" / f"{stem}.png")
        return cache[stem]

    def agrees(stem: str, rgb: np.ndarray) -> bool:
        ref = folder_rgb(stem)
        return ref.shape == rgb.shape and float(np.mean(cv2.absdiff(ref, rgb))) <= max_mean_abs_diff

    out = []
    for i, rgb in enumerate(rgbs):
        stem = (
            stems[i]
            if i < len(stems) and agrees(stems[i], rgb)
            else next((s for s in stems if agrees(s, rgb)), None)
        )
        if stem is None:
            raise ValueError(
                f"bag frame {i} matches no RGB image of {folder / 'rgb'}; "
                "cannot pair it with labels"
            )
        lab = read_png(folder / f"label{num_classes}" / f"{stem}.png")
        if lab.max(initial=0) > num_classes:
            raise ValueError(
                f"{folder}/label{num_classes}/{stem}.png: id {lab.max()} > {num_classes}"
            )
        out.append(lab)
    return out


def labels_from_topic(bag: str | os.PathLike, topic: str) -> dict[int, np.ndarray]:
    """Semantic GT recorded in a bag: ``{header stamp ns: (H, W) class ids}``.

    Args:
        bag: rosbag2 directory.
        topic: sensor_msgs/Image topic with ``mono8``/``8UC1``/``mono16``/``16UC1`` class ids
            (0 = void).

    Raises:
        ValueError: the topic is not in the bag, or a message has another encoding (both name
            the bag and topic).
    """
    from rosbags.highlevel import AnyReader

    from joint_perception.image_codec import decode_image

    out: dict[int, np.ndarray] = {}
    with AnyReader([Path(bag)]) as reader:
        conns = [c for c in reader.connections if c.topic == topic]
        if not conns:
            have = ", ".join(sorted({c.topic for c in reader.connections}))
            raise ValueError(f"{bag}: no labels topic {topic!r} (bag has: {have})")
        for conn, _, raw in reader.messages(connections=conns):
            msg = reader.deserialize(raw, conn.msgtype)
            if msg.encoding not in ("mono8", "8UC1", "mono16", "16UC1"):
                raise ValueError(
                    f"{bag} topic {topic}: labels must be mono8/8UC1/mono16/16UC1,"
                    f" got {msg.encoding!r}"
                )
            stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            out[stamp] = np.array(
                decode_image(
                    msg.encoding, msg.height, msg.width, msg.step, msg.data, msg.is_bigendian
                ),
                copy=True,
            )
    return out


def load_references(
    bag: str | os.PathLike,
    labelled_folder: str | os.PathLike | None = None,
    num_classes: int = 40,
    topics=None,
    labels_topic: str | None = None,
) -> dict[int, FrameReference]:
    """Ground truth of every colour frame of an input bag, keyed by header stamp (ns).

    Depth and K come from the bag (16UC1 mm or 32FC1 m depth topic, colour camera_info);
    labels from a labels topic of the bag (same header stamp), or from a labelled folder
    paired in bag order (:func:`labels_from_folder`).

    Args:
        bag: rosbag2 directory.
        labelled_folder: optional labelled data set folder.
        num_classes: label set of that folder.
        topics: :class:`joint_perception.data.rosbag_io.BagTopics` (RealSense-style default).
        labels_topic: optional labels topic in the bag (see :func:`labels_from_topic`).

    Raises:
        ValueError: both label sources given; label maps whose size differs from the frames;
            as :func:`joint_perception.data.rosbag_io.iter_frames`, :func:`labels_from_folder`
            and :func:`labels_from_topic`.
    """
    from joint_perception.data.rosbag_io import BagTopics, iter_frames

    if labelled_folder is not None and labels_topic is not None:
        raise ValueError("give either a labelled folder or a labels topic, not both")
    frames = list(iter_frames(bag, topics or BagTopics()))
    if labels_topic is not None:
        by_stamp = labels_from_topic(bag, labels_topic)
        labels = [by_stamp.get(f.stamp_ns) for f in frames]
        source = f"{bag} topic {labels_topic}"
    elif labelled_folder is not None:
        labels = labels_from_folder(labelled_folder, [f.rgb for f in frames], num_classes)
        source = str(labelled_folder)
    else:
        labels, source = [None] * len(frames), ""
    refs = {}
    for f, lab in zip(frames, labels):
        if lab is not None and lab.shape != f.rgb.shape[:2]:
            raise ValueError(
                f"{source}: label map {lab.shape} does not match the bag "
                f"frame {f.rgb.shape[:2]} at stamp {f.stamp_ns}"
            )
        refs[f.stamp_ns] = FrameReference(K=f.K, rgb=f.rgb, depth=f.depth, labels=lab)
    return refs


def load_recorded_outputs(
    output_bag: str | os.PathLike, topics: Mapping[str, str]
) -> dict[int, dict[str, np.ndarray]]:
    """Decode recorded node outputs from a replay's output bag.

    Args:
        output_bag: rosbag2 directory written by ``replay``.
        topics: ``{"depth": topic, "labels": topic, "normals": topic, ...}``; each a
            sensor_msgs/Image topic (32FC1 depth, mono8/mono16 labels, 32FC3 normals).

    Returns:
        ``{header stamp ns: {name: array}}`` (first message per stamp and topic); depth is
        float32 metres with NaN invalid (as published).

    Raises:
        FileNotFoundError: no bag there.
        ImageFormatError: a message that does not decode (names the topic).
    """
    from rosbags.highlevel import AnyReader

    from joint_perception.image_codec import decode_image

    path = Path(output_bag)
    if not path.exists():
        raise FileNotFoundError(f"output bag not found: {path}")
    by_topic = {t: name for name, t in topics.items()}
    out: dict[int, dict[str, np.ndarray]] = {}
    with AnyReader([path]) as reader:
        conns = [c for c in reader.connections if c.topic in by_topic]
        for conn, _, raw in reader.messages(connections=conns):
            msg = reader.deserialize(raw, conn.msgtype)
            stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            name = by_topic[conn.topic]
            slot = out.setdefault(stamp, {})
            if name in slot:
                continue
            arr = decode_image(
                msg.encoding, msg.height, msg.width, msg.step, msg.data, msg.is_bigendian
            )
            slot[name] = np.array(arr, copy=True)
    return out
