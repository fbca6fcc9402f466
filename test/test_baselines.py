"""Trivial baselines scored beside every model (joint_perception.baselines + the evaluator)."""

from __future__ import annotations

import numpy as np
import pytest

from joint_perception import baselines as base
from joint_perception.accuracy import AccuracyEvaluator, FrameReference, baseline_table


def test_layout_band_rows():
    lab = base.layout_band_labels(20, 3)
    assert lab.dtype == np.uint8 and lab.shape == (20, 3)
    # round(0.1 * 20) = 2 ceiling rows, floor from round(0.75 * 20) = 15
    assert (
        (lab[:2] == base.CEILING).all()
        and (lab[2:15] == base.WALL).all()
        and (lab[15:] == base.FLOOR).all()
    )
    with pytest.raises(ValueError):
        base.layout_band_labels(10, 10, 0.8, 0.5)
    with pytest.raises(ValueError):
        base.constant_depth(0, 4)


def test_margins_rules():
    model = {
        "depth": {"abs_rel": 0.29, "delta1": 0.56},
        "segmentation": {"miou": 0.12, "pixel_acc": 0.6},
    }
    baseline = {
        "depth": {"abs_rel": 0.4, "delta1": 0.4},
        "segmentation": {"miou": 0.04, "pixel_acc": 0.5},
    }
    m = base.margins(model, baseline)
    assert m["abs_rel"]["need"] == pytest.approx(0.3) and m["abs_rel"]["ok"]
    assert m["delta1"]["need"] == pytest.approx(0.55) and m["delta1"]["ok"]
    assert m["miou"]["need"] == pytest.approx(0.12) and m["miou"]["ok"]
    assert m["pixel_acc"]["need"] == pytest.approx(0.6) and m["pixel_acc"]["ok"]
    model["depth"]["abs_rel"] = 0.31
    assert not base.margins(model, baseline)["abs_rel"]["ok"]
    assert base.margins({"depth": None}, baseline) == {}


def test_evaluator_scores_baselines_on_the_same_frames():
    K = np.array([[50.0, 0, 15.5], [0, 50.0, 11.5], [0, 0, 1]])
    gt = np.full((24, 32), 2.0, np.float32)
    labels = base.layout_band_labels(24, 32)
    labels[:, :4] = 7  # a table the band cannot know
    ev = AccuracyEvaluator(40)
    ev.add(
        0,
        pred_depth=np.full_like(gt, 2.0),
        pred_labels=labels,
        ref=FrameReference(K=K, depth=gt, labels=labels),
    )
    agg = ev.aggregate()
    b = agg["baselines"]
    assert b["depth"]["abs_rel"] == pytest.approx(abs(base.CONSTANT_DEPTH_M - 2.0) / 2.0, rel=1e-6)
    assert b["segmentation"]["pixel_acc"] == pytest.approx(28 / 32)
    assert agg["margins"]["abs_rel"]["ok"] and agg["margins"]["pixel_acc"]["ok"]
    head, rows = baseline_table(agg)
    assert head[0] == "metric" and {r[0] for r in rows} >= {"depth abs rel", "labels mIoU"}


def test_baselines_reproduce_the_published_numbers_on_nyuv2_test(shared_data):
    """On the 10 NYUv2 test frames: constant 2.666 m = abs rel 0.400 / delta1 0.417; layout band
    = mIoU40 0.038 / pixel accuracy 0.394 (the numbers quoted in the README)."""
    from joint_perception.data.nyuv2 import NYUFolder

    ds = NYUFolder(shared_data / "nyuv2_test")
    ev = AccuracyEvaluator(40)
    for i in range(len(ds)):
        s = ds[i]
        gt = np.where(s["depth"] > 0, s["depth"], np.nan).astype(np.float32)
        ev.add(i, ref=FrameReference(K=s["K"], depth=gt, labels=s["labels"]))
    b = ev.aggregate()["baselines"]
    assert len(ds) == 10
    assert b["depth"]["abs_rel"] == pytest.approx(0.400, abs=5e-4)
    assert b["depth"]["delta1"] == pytest.approx(0.417, abs=5e-4)
    assert b["segmentation"]["miou"] == pytest.approx(0.038, abs=5e-4)
    assert b["segmentation"]["pixel_acc"] == pytest.approx(0.394, abs=5e-4)
