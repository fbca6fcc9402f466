"""Metrics against hand-computed values and torchmetrics (joint_perception.metrics)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from joint_perception.metrics import (
    DepthMetrics,
    NormalMetrics,
    SegmentationMetrics,
    depth_metrics,
    depth_metrics_by_range,
    eigen_crop_mask,
)


def test_depth_metrics_hand_values():
    pred = np.array([[1.0, 2.0], [4.0, 1.0]])
    gt = np.array([[1.0, 1.0], [5.0, 1.0]])
    m = depth_metrics(pred, gt)
    # errors: 0, 1, -1, 0 over gt 1, 1, 5, 1
    assert m["abs_rel"] == pytest.approx((0 + 1 + 0.2 + 0) / 4)
    assert m["sq_rel"] == pytest.approx((0 + 1 + 1 / 5 + 0) / 4)
    assert m["rmse"] == pytest.approx(math.sqrt(2 / 4))
    d = np.array([0, math.log(2), math.log(4 / 5), 0])
    assert m["rmse_log"] == pytest.approx(math.sqrt(np.mean(d**2)))
    assert m["log10"] == pytest.approx((math.log10(2) + abs(math.log10(0.8))) / 4)
    assert m["silog"] == pytest.approx(100 * math.sqrt(np.mean(d**2) - np.mean(d) ** 2))
    # ratios 1, 2, 1.25, 1: delta1 counts < 1.25 strictly
    assert m["delta1"] == pytest.approx(2 / 4)
    assert m["delta2"] == pytest.approx(3 / 4)  # 1.25 < 1.5625; 2 is not
    assert m["delta3"] == pytest.approx(3 / 4)  # 2 > 1.25**3 = 1.953125
    assert m["n_pixels"] == 4 and m["coverage"] == 1.0


def test_depth_delta3_boundary():
    # 2.0 > 1.25**3 = 1.953125, so the 2x pixel fails delta3 as well
    m = depth_metrics(np.array([[2.0, 1.9]]), np.array([[1.0, 1.0]]))
    assert m["delta3"] == pytest.approx(0.5)


def test_depth_invalid_gt_nan_pred_and_coverage():
    pred = np.array([[1.0, np.nan, 3.0, 2.0]])
    gt = np.array([[2.0, 2.0, 0.0, np.nan]])
    m = depth_metrics(pred, gt)
    assert m["n_pixels"] == 1
    assert m["coverage"] == pytest.approx(0.5)  # 2 valid GT pixels, 1 predicted
    assert m["abs_rel"] == pytest.approx(0.5)


def test_depth_accumulates_pixelwise_not_per_image():
    dm = DepthMetrics()
    dm.update(np.array([[2.0]]), np.array([[1.0]]))  # abs_rel 1, 1 pixel
    dm.update(np.ones((1, 3)), np.ones((1, 3)))  # abs_rel 0, 3 pixels
    assert dm.compute()["abs_rel"] == pytest.approx(1 / 4)  # per-image mean would be 0.5


def test_depth_cap_and_clipping_kitti():
    gt = np.array([[50.0, 85.0, 10.0]])
    pred = np.array([[100.0, 85.0, 10.0]])
    m = depth_metrics(pred, gt, max_depth=80.0)
    # 85 m GT excluded by the 80 m cap; 100 m prediction clipped to 80
    assert m["n_pixels"] == 2
    assert m["abs_rel"] == pytest.approx((30 / 50) / 2)
    assert depth_metrics(pred, gt, max_depth=10.0)["n_pixels"] == 1


def test_eigen_crop():
    m = eigen_crop_mask(480, 640, "nyu")
    assert m.sum() == (471 - 45) * (601 - 41)
    assert m[45, 41] and not m[44, 41] and not m[45, 601]
    k = eigen_crop_mask(375, 1242, "kitti")
    assert k[int(0.40810811 * 375), int(0.03594771 * 1242)] and not k[0, 0]
    gt = np.ones((480, 640))
    pred = np.ones((480, 640))
    pred[0, 0] = 5.0  # outside the crop: ignored
    assert depth_metrics(pred, gt, eigen_crop=True)["abs_rel"] == 0.0
    assert depth_metrics(pred, gt)["abs_rel"] > 0
    with pytest.raises(ValueError, match="Eigen crop"):
        DepthMetrics(eigen_crop="foo")


def test_depth_by_range():
    gt = np.array([[1.0, 3.0, 5.0]])
    pred = np.array([[1.5, 3.0, 4.5]])
    r = depth_metrics_by_range(pred, gt, edges=(0, 2, 4, 10))
    assert r["0-2"]["abs_rel"] == pytest.approx(0.5)
    assert r["2-4"]["abs_rel"] == 0.0
    assert r["4-10"]["abs_rel"] == pytest.approx(0.1)
    assert r["4-10"]["n_pixels"] == 1


def test_depth_shape_errors():
    with pytest.raises(ValueError, match="shape"):
        depth_metrics(np.ones((2, 2)), np.ones((2, 3)))


def test_segmentation_hand_values():
    gt = np.array([[1, 1, 2, 2], [0, 3, 3, 3]])
    pred = np.array([[1, 2, 2, 2], [1, 3, 3, 0]])
    m = SegmentationMetrics(4).compute()
    assert math.isnan(m["miou"])
    sm = SegmentationMetrics(4)
    sm.update(pred, gt)
    m = sm.compute()
    # valid pixels 7 (one void). class1: tp1 gt2 pred1 -> iou 1/2; class2: tp2 gt2 pred3 -> 2/3
    # class3: tp2 gt3 pred2 (one predicted void counts as miss) -> 2/3; class4 absent -> NaN
    assert m["pixel_acc"] == pytest.approx(5 / 7)
    assert m["mean_acc"] == pytest.approx((1 / 2 + 1 + 2 / 3) / 3)
    assert m["iou_per_class"][:3] == pytest.approx([1 / 2, 2 / 3, 2 / 3])
    assert math.isnan(m["iou_per_class"][3])
    assert m["miou"] == pytest.approx((1 / 2 + 2 / 3 + 2 / 3) / 3)
    assert m["fwiou"] == pytest.approx(2 / 7 * 1 / 2 + 2 / 7 * 2 / 3 + 3 / 7 * 2 / 3)


def test_segmentation_ignore_255():
    sm = SegmentationMetrics(2, ignore_index=255)
    sm.update(np.array([0, 1, 1]), np.array([0, 1, 255]))
    assert sm.compute()["miou"] == 1.0


def test_miou_equals_torchmetrics():
    torch = pytest.importorskip("torch")
    tm = pytest.importorskip("torchmetrics.classification")
    rng = np.random.default_rng(3)
    c = 6
    sm = SegmentationMetrics(c)
    metric = tm.MulticlassJaccardIndex(num_classes=c, average="macro", ignore_index=255)
    for _ in range(3):
        gt = rng.integers(0, c, size=(2, 12, 16))  # 0 = void; class 6 never in GT
        pred = rng.integers(1, c, size=(2, 12, 16))  # never predicts class 6 -> absent
        sm.update(pred, gt)
        # void -> 255 (ignored), classes 1..C -> 0..C-1
        metric.update(torch.from_numpy(pred - 1), torch.from_numpy(np.where(gt == 0, 255, gt - 1)))
    assert sm.compute()["miou"] == pytest.approx(float(metric.compute()), abs=1e-6)


def test_normal_metrics_hand_values():
    z = np.array([0.0, 0.0, -1.0])
    gt = np.tile(z, (1, 4, 1))
    ang = np.radians([0.0, 10.0, 20.0, 40.0])
    pred = np.stack([np.sin(ang), np.zeros(4), -np.cos(ang)], axis=-1)[None] * 2.0  # not unit
    nm = NormalMetrics()
    nm.update(pred, gt)
    m = nm.compute()
    assert m["mean"] == pytest.approx(17.5, abs=1e-4)
    # the median comes from a histogram of BIN_DEG bins (mergeable state): within half a bin
    assert m["median"] == pytest.approx(15.0, abs=NormalMetrics.BIN_DEG / 2)
    assert m["rmse"] == pytest.approx(math.sqrt((0 + 100 + 400 + 1600) / 4), abs=1e-4)
    assert (m["pct_11_25"], m["pct_22_5"], m["pct_30"]) == (0.5, 0.75, 0.75)
    nm.update(np.full((1, 2, 3), np.nan), np.tile(z, (1, 2, 1)))
    assert nm.compute()["coverage"] == pytest.approx(4 / 6)
    with pytest.raises(ValueError):
        nm.update(np.ones((4, 4)), np.ones((4, 4)))
