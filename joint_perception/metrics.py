"""Depth, segmentation and surface-normal metrics (numpy), shared by training, evaluation and
replay so every number the project reports is computed one way.

All metrics accumulate over a whole evaluation set and are *pixel-wise over all valid pixels of
the set* (the NYUv2 convention, docs/contracts.md section 5), not averages of per-image means:

* depth (Eigen et al., NIPS 2014): abs_rel, sq_rel, rmse, rmse_log, log10, silog,
  delta1/2/3 (threshold accuracy, ``max(p/g, g/p) < 1.25^k``);
* segmentation (Long et al., FCN, CVPR 2015): pixel accuracy, mean class accuracy, mean IoU and
  frequency-weighted IoU from an accumulated confusion matrix, void ignored;
* normals (Fouhey et al., ICCV 2013; Eigen & Fergus, ICCV 2015): mean, median and RMSE of the
  angular error in degrees and the fraction of pixels below 11.25, 22.5 and 30 degrees.

Usage::

    dm = DepthMetrics(max_depth=10.0)
    for pred, gt in frames:
        dm.update(pred, gt)
    print(dm.compute()["abs_rel"])
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "Accumulator",
    "DepthMetrics",
    "depth_metrics",
    "depth_metrics_by_range",
    "eigen_crop_mask",
    "SegmentationMetrics",
    "NormalMetrics",
]

# Eigen crop as fractions of the image (rows y0:y1, cols x0:x1).
# NYU: rows 45:471, cols 41:601 of 480x640 (Eigen et al. 2014 evaluation code).
# KITTI: the Garg/Eigen crop used by every KITTI Eigen-split paper.
_CROPS = {
    "nyu": (45 / 480, 471 / 480, 41 / 640, 601 / 640),
    "kitti": (0.40810811, 0.99189189, 0.03594771, 0.96405229),
}


def eigen_crop_mask(height: int, width: int, kind: str = "nyu") -> np.ndarray:
    """Bool (H, W) mask of the Eigen evaluation crop.

    Args:
        height, width: image size in pixels (the NYU crop is scaled from 480x640).
        kind: ``"nyu"`` or ``"kitti"``.

    Raises:
        ValueError: unknown kind.
    """
    if kind not in _CROPS:
        raise ValueError(f"unknown Eigen crop {kind!r}; expected one of {sorted(_CROPS)}")
    y0, y1, x0, x1 = _CROPS[kind]
    m = np.zeros((height, width), dtype=bool)
    m[int(y0 * height) : int(y1 * height), int(x0 * width) : int(x1 * width)] = True
    return m


class Accumulator:
    """Public, mergeable state shared by the metric accumulators: everything they hold is a
    dict of numpy arrays that **add up** (sums, counts, confusion matrices, histograms), so
    the state of two halves of a set merged (:meth:`merge`) — or summed across DDP ranks
    (:meth:`state_dict` / :meth:`load_state_dict`) — equals the state of the whole set."""

    _state: dict[str, np.ndarray]

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of the additive state arrays."""
        return {k: v.copy() for k, v in self._state.items()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Replace the state (e.g. with the sum of every rank's :meth:`state_dict`).

        Raises:
            ValueError: other keys or shapes than this accumulator's.
        """
        if set(state) != set(self._state) or any(
            np.shape(state[k]) != v.shape for k, v in self._state.items()
        ):
            raise ValueError(f"state keys/shapes {sorted(state)} do not fit {type(self).__name__}")
        self._state = {
            k: np.asarray(state[k], dtype=v.dtype).copy() for k, v in self._state.items()
        }

    def merge(self, other: Accumulator) -> None:
        """Add ``other``'s state (same class and settings) to this one."""
        if type(other) is not type(self):
            raise TypeError(f"cannot merge {type(other).__name__} into {type(self).__name__}")
        for k, v in other._state.items():
            self._state[k] += v


def _as_batch(a: np.ndarray, name: str, channels: int | None = None) -> np.ndarray:
    a = np.asarray(a)
    want = 2 if channels is None else 3
    if a.ndim == want:
        a = a[None]
    if a.ndim != want + 1 or (channels is not None and a.shape[-1] != channels):
        shape = "HxW or NxHxW" if channels is None else f"HxWx{channels} or NxHxWx{channels}"
        raise ValueError(f"{name} must be {shape}, got shape {a.shape}")
    return a


class DepthMetrics(Accumulator):
    """Accumulating depth metrics over a set.

    Validity: a GT pixel counts when it is finite and ``min_depth < gt <= max_depth`` (and inside
    the Eigen crop when enabled). Non-finite predictions (NaN = "no depth" from the runtime) at
    valid GT pixels are *missing predictions*: they are excluded from the error metrics and
    reported through ``coverage`` = predicted / valid GT pixels. Finite predictions are clipped to
    ``[min_depth, max_depth]`` as the standard evaluation code does.

    ``silog`` follows the KITTI benchmark: ``100 * sqrt(mean(d^2) - mean(d)^2)``, d = log p - log g.

    Args:
        min_depth, max_depth: metres; NYU uses (1e-3, 10], KITTI (1e-3, 80].
        eigen_crop: False, True/``"nyu"`` or ``"kitti"``.
    """

    _KEYS = (
        "abs_rel",
        "sq_rel",
        "sq_err",
        "sq_log",
        "log10",
        "log_d",
        "delta1",
        "delta2",
        "delta3",
    )

    def __init__(
        self, min_depth: float = 1e-3, max_depth: float = 10.0, eigen_crop: bool | str = False
    ):
        if not 0 <= min_depth < max_depth:
            raise ValueError(f"need 0 <= min_depth < max_depth, got {min_depth}, {max_depth}")
        self.min_depth = float(min_depth)
        self.max_depth = float(max_depth)
        self.crop = "nyu" if eigen_crop is True else (eigen_crop or None)
        if self.crop is not None and self.crop not in _CROPS:
            raise ValueError(f"unknown Eigen crop {eigen_crop!r}")
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated."""
        # sums of the per-pixel terms in _KEYS order; counts = (evaluated, valid GT) pixels
        self._state = {"sums": np.zeros(len(self._KEYS)), "counts": np.zeros(2, dtype=np.int64)}

    @property
    def n_valid_gt(self) -> int:
        """Valid GT pixels seen so far (evaluated or not)."""
        return int(self._state["counts"][1])

    def valid_mask(self, gt: np.ndarray) -> np.ndarray:
        """Bool mask (same shape as ``gt``, HxW or NxHxW) of GT pixels that count."""
        with np.errstate(invalid="ignore"):
            m = np.isfinite(gt) & (gt > self.min_depth) & (gt <= self.max_depth)
        if self.crop is not None:
            m &= eigen_crop_mask(gt.shape[-2], gt.shape[-1], self.crop)
        return m

    def update(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """Add a frame or a batch.

        Args:
            pred: HxW or NxHxW metres (float), NaN where the model gives no depth.
            gt: same shape, metres; NaN or <= 0 invalid.

        Raises:
            ValueError: shapes differ or are not 2-D/3-D.
        """
        pred = _as_batch(pred, "pred").astype(np.float64, copy=False)
        gt = _as_batch(gt, "gt").astype(np.float64, copy=False)
        if pred.shape != gt.shape:
            raise ValueError(f"pred shape {pred.shape} != gt shape {gt.shape}")
        m = self.valid_mask(gt)
        counts = self._state["counts"]
        counts[1] += int(m.sum())
        m &= np.isfinite(pred)
        p = np.clip(pred[m], self.min_depth, self.max_depth)
        g = gt[m]
        if p.size == 0:
            return
        err = p - g
        d = np.log(p) - np.log(g)
        ratio = np.maximum(p / g, g / p)
        self._state["sums"] += [
            np.sum(np.abs(err) / g),  # abs_rel
            np.sum(err * err / g),  # sq_rel
            np.sum(err * err),  # sq_err
            np.sum(d * d),  # sq_log
            np.sum(np.abs(np.log10(p) - np.log10(g))),  # log10
            np.sum(d),  # log_d
            np.sum(ratio < 1.25),  # delta1
            np.sum(ratio < 1.25**2),  # delta2
            np.sum(ratio < 1.25**3),  # delta3
        ]
        counts[0] += int(p.size)

    def compute(self) -> dict[str, float]:
        """Metrics over everything accumulated.

        Returns:
            dict with abs_rel, sq_rel, rmse (m), rmse_log, log10, silog, delta1..3 (fractions),
            n_pixels (evaluated) and coverage (evaluated / valid GT pixels). With no evaluated
            pixel the error metrics are NaN.
        """
        n, n_gt = (int(c) for c in self._state["counts"])
        s = dict(zip(self._KEYS, self._state["sums"].tolist()))
        out: dict[str, float] = {
            "n_pixels": n,
            "coverage": n / n_gt if n_gt else float("nan"),
        }
        if n == 0:
            for k in (
                "abs_rel",
                "sq_rel",
                "rmse",
                "rmse_log",
                "log10",
                "silog",
                "delta1",
                "delta2",
                "delta3",
            ):
                out[k] = float("nan")
            return out
        mean_d = s["log_d"] / n
        out.update(
            abs_rel=s["abs_rel"] / n,
            sq_rel=s["sq_rel"] / n,
            rmse=math.sqrt(s["sq_err"] / n),
            rmse_log=math.sqrt(s["sq_log"] / n),
            log10=s["log10"] / n,
            silog=100.0 * math.sqrt(max(s["sq_log"] / n - mean_d * mean_d, 0.0)),
            delta1=s["delta1"] / n,
            delta2=s["delta2"] / n,
            delta3=s["delta3"] / n,
        )
        return out


def depth_metrics(pred: np.ndarray, gt: np.ndarray, **kwargs) -> dict[str, float]:
    """One-shot :class:`DepthMetrics` (keyword arguments go to its constructor)."""
    dm = DepthMetrics(**kwargs)
    dm.update(pred, gt)
    return dm.compute()


def depth_metrics_by_range(
    pred: np.ndarray, gt: np.ndarray, edges: Sequence[float] = (0, 2, 4, 10), **kwargs
) -> dict[str, dict[str, float]]:
    """Depth metrics per GT-distance bin ``(edges[i], edges[i+1]]`` metres.

    Args:
        pred, gt: HxW or NxHxW metres.
        edges: increasing bin edges in metres.
        kwargs: :class:`DepthMetrics` options (``max_depth``, ``eigen_crop``...); predictions
            are clipped to the global ``[min_depth, max_depth]``, not to the bin.

    Returns:
        ``{"0-2": metrics, "2-4": metrics, ...}`` (keys formatted with ``:g``).
    """
    if len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:])):
        raise ValueError(f"edges must be increasing with at least two values, got {edges}")
    gt = np.asarray(gt, dtype=np.float64)
    out = {}
    for lo, hi in zip(edges, edges[1:]):
        with np.errstate(invalid="ignore"):
            in_bin = (gt > lo) & (gt <= hi)
        # GT outside the bin becomes invalid; predictions keep the global clipping range
        out[f"{lo:g}-{hi:g}"] = depth_metrics(pred, np.where(in_bin, gt, np.nan), **kwargs)
    return out


class SegmentationMetrics(Accumulator):
    """Confusion-matrix segmentation metrics accumulated over a set.

    Class ids: with ``ignore_index=0`` (the project convention) real classes are 1..C and 0 is
    void; with any other ``ignore_index`` (e.g. 255) classes are 0..C-1. GT pixels equal to
    ``ignore_index`` (or outside the class range) are skipped; a prediction outside the class
    range (e.g. predicted void) on a valid pixel counts as a miss for the GT class.

    ``iou_per_class[c]`` is NaN for a class absent from both GT and prediction; such classes are
    excluded from miou (as torchmetrics' ``MulticlassJaccardIndex(average="macro")``, against
    which the tests check it when torchmetrics is installed).

    Args:
        num_classes: C.
        ignore_index: the void id.
    """

    def __init__(self, num_classes: int, ignore_index: int = 0):
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.offset = 1 if ignore_index == 0 else 0
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated."""
        # rows: GT class, columns: predicted class + one "other" column
        self._state = {
            "confusion": np.zeros((self.num_classes, self.num_classes + 1), dtype=np.int64)
        }

    @property
    def confusion(self) -> np.ndarray:
        """(C, C + 1) int64 confusion matrix: rows GT class, columns predicted class and a last
        column for predictions outside 1..C (read-only view of the state)."""
        view = self._state["confusion"].view()
        view.flags.writeable = False
        return view

    def update(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """Add label maps (HxW or NxHxW, integer ids).

        Raises:
            ValueError: shapes differ.
        """
        pred = np.asarray(pred)
        gt = np.asarray(gt)
        if pred.shape != gt.shape:
            raise ValueError(f"pred shape {pred.shape} != gt shape {gt.shape}")
        c = self.num_classes
        g = gt.reshape(-1).astype(np.int64) - self.offset
        p = pred.reshape(-1).astype(np.int64) - self.offset
        keep = (g >= 0) & (g < c) & (gt.reshape(-1) != self.ignore_index)
        g, p = g[keep], p[keep]
        p = np.where((p >= 0) & (p < c), p, c)
        self._state["confusion"] += np.bincount(g * (c + 1) + p, minlength=c * (c + 1)).reshape(
            c, c + 1
        )

    def compute(self) -> dict:
        """Returns pixel_acc, mean_acc, miou, fwiou (fractions in [0, 1]), iou_per_class (list,
        NaN for absent classes) and n_pixels."""
        cm = self._state["confusion"]
        c = self.num_classes
        tp = np.diag(cm[:, :c]).astype(np.float64)
        gt_count = cm.sum(1).astype(np.float64)
        pred_count = cm[:, :c].sum(0).astype(np.float64)
        union = gt_count + pred_count - tp
        total = gt_count.sum()
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = np.where(union > 0, tp / union, np.nan)
            acc = np.where(gt_count > 0, tp / gt_count, np.nan)
        present = ~np.isnan(iou)
        freq = gt_count / total if total else np.zeros(c)
        return {
            "pixel_acc": float(tp.sum() / total) if total else float("nan"),
            "mean_acc": float(np.nanmean(acc)) if np.any(gt_count > 0) else float("nan"),
            "miou": float(np.mean(iou[present])) if present.any() else float("nan"),
            "fwiou": float(np.sum(freq[present] * iou[present])) if total else float("nan"),
            "iou_per_class": [float(v) for v in iou],
            "n_pixels": int(total),
        }


class NormalMetrics(Accumulator):
    """Angular error of surface normals, accumulated over a set.

    A GT pixel is valid when finite and non-zero; a non-finite prediction at a valid pixel is a
    missing prediction (excluded, reported via ``coverage``). Vectors are normalised before
    ``angle = arccos(clip(n_p . n_g, -1, 1))``. The state is additive: the sum and sum of
    squares of the angles, the counts, and a histogram of the angles in :data:`BIN_DEG` bins
    from which the median is read (the order statistics are placed evenly inside their bin, so
    it is within ``BIN_DEG / 2`` of numpy's median); the thresholds 11.25, 22.5 and 30 degrees
    are bin edges, so those fractions are exact.
    """

    #: histogram bin width in degrees (18000 bins over [0, 180])
    BIN_DEG = 0.01
    _BINS = 18000

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated."""
        self._state = {
            "hist": np.zeros(self._BINS, dtype=np.int64),
            "sums": np.zeros(2),  # sum of angles, sum of squared angles (degrees)
            "counts": np.zeros(2, dtype=np.int64),  # (evaluated, valid GT) pixels
        }

    def update(self, pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> None:
        """Add normals.

        Args:
            pred, gt: HxWx3 or NxHxWx3 (channel last, camera optical frame).
            mask: optional bool HxW / NxHxW restricting the evaluated pixels.

        Raises:
            ValueError: shapes differ or are not (N)xHxWx3.
        """
        pred = _as_batch(pred, "pred normals", 3).astype(np.float64, copy=False)
        gt = _as_batch(gt, "gt normals", 3).astype(np.float64, copy=False)
        if pred.shape != gt.shape:
            raise ValueError(f"pred shape {pred.shape} != gt shape {gt.shape}")
        gn = np.linalg.norm(gt, axis=-1)
        valid = np.isfinite(gn) & (gn > 1e-6)
        if mask is not None:
            valid &= np.asarray(mask, dtype=bool).reshape(valid.shape)
        counts = self._state["counts"]
        counts[1] += int(valid.sum())
        pn = np.linalg.norm(pred, axis=-1)
        valid &= np.isfinite(pn) & (pn > 1e-6)
        dot = np.sum(pred[valid] * gt[valid], axis=-1) / (pn[valid] * gn[valid])
        a = np.degrees(np.arccos(np.clip(dot, -1.0, 1.0)))
        idx = np.minimum((a / self.BIN_DEG + 1e-9).astype(np.int64), self._BINS - 1)
        self._state["hist"] += np.bincount(idx, minlength=self._BINS)
        self._state["sums"] += [a.sum(), (a * a).sum()]
        counts[0] += int(a.size)

    def _fraction_below(self, deg: float) -> float:
        n = int(self._state["counts"][0])
        return float(self._state["hist"][: int(round(deg / self.BIN_DEG))].sum() / n)

    def _order_statistic(self, j: int) -> float:
        """The j-th smallest angle (1-based), placed evenly inside its histogram bin."""
        hist = self._state["hist"]
        cum = np.cumsum(hist)
        b = int(np.searchsorted(cum, j))
        before = int(cum[b - 1]) if b > 0 else 0
        return float((b + (j - before - 0.5) / hist[b]) * self.BIN_DEG)

    def _median(self) -> float:
        n = int(self._state["counts"][0])
        if n % 2:
            return self._order_statistic(n // 2 + 1)
        return 0.5 * (self._order_statistic(n // 2) + self._order_statistic(n // 2 + 1))

    def compute(self) -> dict[str, float]:
        """mean, median, rmse (degrees), pct_11_25, pct_22_5, pct_30 (fractions), n_pixels,
        coverage."""
        n, n_gt = (int(c) for c in self._state["counts"])
        cov = n / n_gt if n_gt else float("nan")
        if n == 0:
            nan = float("nan")
            return dict(
                mean=nan,
                median=nan,
                rmse=nan,
                pct_11_25=nan,
                pct_22_5=nan,
                pct_30=nan,
                n_pixels=0,
                coverage=cov,
            )
        total, total_sq = self._state["sums"].tolist()
        return {
            "mean": total / n,
            "median": self._median(),
            "rmse": math.sqrt(total_sq / n),
            "pct_11_25": self._fraction_below(11.25),
            "pct_22_5": self._fraction_below(22.5),
            "pct_30": self._fraction_below(30.0),
            "n_pixels": n,
            "coverage": cov,
        }
