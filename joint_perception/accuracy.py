"""Accuracy of depth, labels and normals against ground truth, per frame and over a set: the
one scoring path of training validation, ``evaluate`` and ``replay``.

Built on the accumulators of :mod:`joint_perception.metrics` (NYUv2 conventions, pixel-wise
over the whole set):

* depth: abs rel, RMSE, delta1..3 ... over all valid GT pixels of the set, and the same broken
  down by GT distance (default bins (0, 2], (2, 4], (4, 10] m — navigation cares most about
  near obstacles);
* segmentation: mIoU, pixel accuracy and per-class IoU from the accumulated confusion matrix
  (void ignored);
* normals: angular error against explicit GT normals when given, else (``derive_normals``)
  against normals computed from the GT depth with
  :func:`joint_perception.geometry.normals_from_depth` (central differences of back-projected
  points; NaN at holes and borders, which are excluded);
* baselines (:mod:`joint_perception.baselines`, no test ground truth used): the same depth and
  segmentation metrics for a constant depth and for the layout band on the same frames, and
  :func:`joint_perception.baselines.margins` — whether the model clears the project's margins
  over them.

Predictions at another resolution than the GT are resized nearest-neighbour to the GT size
(no mixing of valid and NaN pixels). The evaluator's state is public and additive
(:meth:`AccuracyEvaluator.state_dict`, :meth:`~AccuracyEvaluator.merge`), so DDP ranks or
halves of a set combine exactly. Ground truth from bags and labelled folders:
:mod:`joint_perception.evaluation.references`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from joint_perception import baselines as base
from joint_perception.geometry import normals_from_depth
from joint_perception.metrics import Accumulator, DepthMetrics, NormalMetrics, SegmentationMetrics

__all__ = [
    "DEFAULT_RANGES",
    "FrameReference",
    "AccuracyEvaluator",
    "baseline_table",
    "depth_error_map",
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
        pred: (H, W) float metres, non-finite (NaN, REP 117's +-Inf) where no usable
            prediction (resized to ``gt`` if needed).
        gt: (H, W) float metres, NaN/<= 0 invalid.

    Returns:
        (H, W) float32, NaN where either is invalid.
    """
    gt = np.asarray(gt, dtype=np.float32)
    pred = _to_size(np.asarray(pred, dtype=np.float32), gt.shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        err = np.abs(pred - gt) / gt
    err[~(gt > 0) | ~np.isfinite(pred)] = np.nan
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
        per_frame: keep a record of every frame's metrics (:meth:`result`); off for training
            validation, where only the set matters.

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
        per_frame: bool = True,
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
        self.per_frame = bool(per_frame)
        self.frames: list[dict] = []
        self.n_frames = 0
        self.baseline_depth = DepthMetrics(**self._dm_kwargs) if baselines else None
        self._band_ids = _band_class_map(self.num_classes) if baselines else None
        self.baseline_seg = (
            SegmentationMetrics(self.num_classes) if self._band_ids is not None else None
        )

    @staticmethod
    def _bin_name(lo: float, hi: float) -> str:
        return f"{lo:g}-{hi:g}"

    def accumulators(self) -> dict[str, Accumulator]:
        """Every accumulator by name (``depth``, ``depth/<range>``, ``segmentation``,
        ``normals``, ``baseline_depth``, ``baseline_segmentation``)."""
        acc: dict[str, Accumulator] = {
            "depth": self.depth,
            "segmentation": self.seg,
            "normals": self.normals,
        }
        acc.update({f"depth/{k}": v for k, v in self.depth_bins.items()})
        if self.baseline_depth is not None:
            acc["baseline_depth"] = self.baseline_depth
        if self.baseline_seg is not None:
            acc["baseline_segmentation"] = self.baseline_seg
        return acc

    def state_dict(self) -> dict[str, np.ndarray]:
        """The additive state of every accumulator (``"<accumulator>/<array>"`` keys) and the
        frame count; sum it across DDP ranks and :meth:`load_state_dict` the sum."""
        out = {"frames": np.array([self.n_frames], dtype=np.int64)}
        for name, acc in self.accumulators().items():
            out.update({f"{name}:{k}": v for k, v in acc.state_dict().items()})
        return out

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        """Replace the state with ``state`` (as :meth:`state_dict` gives it).

        Raises:
            ValueError: keys or shapes of another configuration.
        """
        mine = self.state_dict()
        if set(state) != set(mine):
            raise ValueError(f"state keys differ: {sorted(set(state) ^ set(mine))[:4]}")
        self.n_frames = int(np.asarray(state["frames"]).reshape(-1)[0])
        for name, acc in self.accumulators().items():
            prefix = f"{name}:"
            acc.load_state_dict(
                {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            )

    def merge(self, other: AccuracyEvaluator) -> None:
        """Add ``other``'s frames (same configuration) to this evaluator."""
        theirs = other.accumulators()
        if set(theirs) != set(self.accumulators()):
            raise ValueError("cannot merge evaluators of different configurations")
        for name, acc in self.accumulators().items():
            acc.merge(theirs[name])
        self.n_frames += other.n_frames
        self.frames.extend(other.frames)

    def _add_depth(self, pred: np.ndarray, gt: np.ndarray, rec: dict) -> None:
        pred = _to_size(np.asarray(pred, dtype=np.float32), gt.shape)
        self.depth.update(pred, gt)
        if self.per_frame:
            one = DepthMetrics(**self._dm_kwargs)
            one.update(pred, gt)
            rec["depth"] = _finite_dict(one.compute())
        by_range = {}
        with np.errstate(invalid="ignore"):
            for (lo, hi), (name, acc) in zip(
                zip(self.edges, self.edges[1:]), self.depth_bins.items()
            ):
                gt_bin = np.where((gt > lo) & (gt <= hi), gt, np.nan)
                acc.update(pred, gt_bin)
                if self.per_frame:
                    m = DepthMetrics(**self._dm_kwargs)
                    m.update(pred, gt_bin)
                    r = m.compute()
                    by_range[name] = _finite_dict(
                        {k: r[k] for k in ("abs_rel", "rmse", "delta1", "n_pixels")}
                    )
        if self.per_frame:
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
        self.n_frames += 1
        if ref is None:
            if self.per_frame:
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
            if self.per_frame:
                one = SegmentationMetrics(self.num_classes)
                one.update(lab, ref.labels)
                r = one.compute()
                rec["segmentation"] = _finite_dict(
                    {k: r[k] for k in ("miou", "pixel_acc", "n_pixels")}
                )
        if pred_normals is not None:
            gt_n = ref.normals
            if gt_n is None and ref.depth is not None and self.derive_normals:
                gt_n = normals_from_depth(ref.depth, ref.K)
            if gt_n is not None:
                pn = _to_size(np.asarray(pred_normals, dtype=np.float32), gt_n.shape[:2])
                self.normals.update(pn, gt_n)
                if self.per_frame:
                    one_n = NormalMetrics()
                    one_n.update(pn, gt_n)
                    rec["normals"] = _finite_dict(one_n.compute())
        if self.per_frame:
            self.frames.append(rec)
        return rec

    def aggregate(self) -> dict:
        """Set-wise metrics: ``depth``, ``depth_by_range``, ``segmentation`` (with
        ``iou_per_class`` as ``{name: IoU}``), ``normals`` (``normals_reference`` says which
        GT), and with baselines ``baselines`` (``{"depth": constant depth, "segmentation":
        layout band}``) and ``margins`` (:func:`joint_perception.baselines.margins`); tasks
        never evaluated are None. NaN becomes None."""
        out: dict = {
            "frames": self.n_frames,
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
