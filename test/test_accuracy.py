"""Per-frame and aggregate accuracy (joint_perception.accuracy) and the references read from
bags and folders (evaluation.references), with hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from joint_perception.accuracy import AccuracyEvaluator, FrameReference, depth_error_map
from joint_perception.evaluation.references import labels_from_folder, load_references

K = np.array([[100.0, 0, 3.5], [0, 100.0, 3.5], [0, 0, 1]])


def _gt_depth():
    # 8x8: left half 1 m, right half 3 m, bottom-right quarter 5 m
    d = np.full((8, 8), 1.0, np.float32)
    d[:, 4:] = 3.0
    d[4:, 4:] = 5.0
    return d


def test_depth_per_frame_aggregate_and_ranges():
    gt = _gt_depth()
    ev = AccuracyEvaluator(num_classes=3)
    f1 = ev.add(1, pred_depth=gt * 1.1, ref=FrameReference(K=K, depth=gt))
    assert f1["depth"]["abs_rel"] == pytest.approx(0.1, rel=1e-5)
    assert f1["depth"]["delta1"] == 1.0
    assert f1["depth_by_range"]["0-2"]["n_pixels"] == 32
    assert f1["depth_by_range"]["2-4"]["n_pixels"] == 16
    assert f1["depth_by_range"]["4-10"]["n_pixels"] == 16
    assert f1["depth_by_range"]["4-10"]["rmse"] == pytest.approx(0.5, rel=1e-5)
    # second frame: perfect except NaN (missing) predictions on the 1 m half
    pred2 = gt.copy()
    pred2[:, :4] = np.nan
    f2 = ev.add(2, pred_depth=pred2, ref=FrameReference(K=K, depth=gt))
    assert f2["depth"]["abs_rel"] == pytest.approx(0.0, abs=1e-7)
    assert f2["depth"]["coverage"] == pytest.approx(0.5)
    assert f2["depth_by_range"]["0-2"]["abs_rel"] is None  # nothing evaluated there
    agg = ev.aggregate()
    # pixel-wise over the set: 64 pixels at 0.1 + 32 pixels at 0 -> 0.1 * 64 / 96
    assert agg["depth"]["abs_rel"] == pytest.approx(0.1 * 64 / 96, rel=1e-5)
    assert agg["depth"]["n_pixels"] == 96
    assert agg["depth_by_range"]["0-2"]["abs_rel"] == pytest.approx(0.1, rel=1e-5)
    assert agg["depth_by_range"]["4-10"]["abs_rel"] == pytest.approx(0.05, rel=1e-5)
    assert agg["segmentation"] is None and agg["normals"] is None


def test_segmentation_per_class_iou():
    gt = np.array([[1, 1, 2, 2], [1, 1, 2, 0]], np.uint8)
    pred = np.array([[1, 2, 2, 2], [1, 1, 3, 3]], np.uint8)
    ev = AccuracyEvaluator(num_classes=3, class_names=["wall", "floor", "bed"])
    rec = ev.add("a", pred_labels=pred, ref=FrameReference(K=K, labels=gt))
    # class 1: TP 3, GT 4, pred 3 -> 3/4; class 2: TP 2, GT 3, pred 3 -> 2/4; class 3: 0/1
    assert rec["segmentation"]["miou"] == pytest.approx((0.75 + 0.5 + 0.0) / 3)
    assert rec["segmentation"]["pixel_acc"] == pytest.approx(5 / 7)
    per_class = ev.aggregate()["segmentation"]["iou_per_class"]
    assert per_class == pytest.approx({"wall": 0.75, "floor": 0.5, "bed": 0.0})


def test_normals_against_normals_from_gt_depth():
    gt = np.full((6, 6), 2.0, np.float32)  # fronto-parallel wall: normal (0, 0, -1)
    pred = np.zeros((6, 6, 3), np.float32)
    a = np.radians(30.0)
    pred[...] = (np.sin(a), 0.0, -np.cos(a))  # tilted by 30 degrees
    ev = AccuracyEvaluator(num_classes=1)
    rec = ev.add(0, pred_normals=pred, ref=FrameReference(K=K, depth=gt))
    assert rec["normals"]["mean"] == pytest.approx(30.0, abs=1e-3)
    assert rec["normals"]["n_pixels"] == 16  # the one-pixel border has no GT normal
    assert ev.aggregate()["normals"]["pct_30"] == 0.0  # 30 is not below 30


def test_predictions_are_resized_to_the_gt():
    gt = _gt_depth()
    small = gt[::2, ::2] * 1.2
    rec = AccuracyEvaluator(1).add(0, pred_depth=small, ref=FrameReference(K=K, depth=gt))
    assert rec["depth"]["abs_rel"] == pytest.approx(0.2, rel=1e-5)


def test_depth_error_map():
    gt = np.array([[2.0, np.nan], [0.0, 4.0]], np.float32)
    pred = np.array([[2.5, 1.0], [1.0, np.nan]], np.float32)
    err = depth_error_map(pred, gt)
    assert err[0, 0] == pytest.approx(0.25)
    assert np.isnan(err[0, 1]) and np.isnan(err[1, 0]) and np.isnan(err[1, 1])


def test_bad_ranges_refused():
    with pytest.raises(ValueError, match="increasing"):
        AccuracyEvaluator(range_edges=(0, 4, 2))
    with pytest.raises(ValueError, match="class names"):
        AccuracyEvaluator(num_classes=2, class_names=["a"])


def test_labels_from_folder_pairs_by_rgb(shared_data, tmp_path):
    import cv2

    folder = shared_data / "nyuv2_test"
    rgb433 = cv2.cvtColor(cv2.imread(str(folder / "rgb" / "0433.png")), cv2.COLOR_BGR2RGB)
    rgb1 = cv2.cvtColor(cv2.imread(str(folder / "rgb" / "0001.png")), cv2.COLOR_BGR2RGB)
    labs = labels_from_folder(folder, [rgb1, rgb433])  # 433 is not 2nd in the manifest
    want = cv2.imread(str(folder / "label40" / "0433.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(labs[1], want)
    noise = np.random.default_rng(0).integers(0, 255, rgb1.shape, dtype=np.uint8)
    with pytest.raises(ValueError, match="matches no RGB image"):
        labels_from_folder(folder, [noise])
    with pytest.raises(FileNotFoundError, match="manifest"):
        labels_from_folder(tmp_path, [rgb1])


def test_references_from_a_real_bag(shared_data):
    refs = load_references(
        shared_data / "bags" / "nyuv2_test3_sqlite3", labelled_folder=shared_data / "nyuv2_test"
    )
    assert len(refs) == 3
    ref = refs[sorted(refs)[1]]  # idx 433: raw depth with holes
    assert ref.depth.shape == (480, 640) and ref.labels.shape == (480, 640)
    assert 0.2 < np.isnan(ref.depth).mean() < 0.5
    # GT against itself: perfect depth and labels
    ev = AccuracyEvaluator(40)
    rec = ev.add(0, pred_depth=ref.depth, pred_labels=ref.labels, ref=ref)
    assert rec["depth"]["abs_rel"] == pytest.approx(0.0, abs=1e-7)
    assert rec["segmentation"]["pixel_acc"] == 1.0


def test_references_with_a_labels_topic(tmp_path):
    from joint_perception.data.rosbag_io import (
        CAMERA_INFO,
        IMAGE,
        BagTopics,
        BagWriter,
        camera_info_msg,
        image_msg,
    )

    topics = BagTopics()
    rgb = np.zeros((6, 8, 3), np.uint8)
    depth_mm = np.full((6, 8), 1500, np.uint16)
    depth_mm[0, 0] = 0  # invalid
    labels = np.arange(48, dtype=np.uint8).reshape(6, 8) % 5
    Ks = np.array([[10.0, 0, 3.5], [0, 10.0, 2.5], [0, 0, 1]])
    bag = tmp_path / "bag"
    with BagWriter(bag) as w:
        for i, t in enumerate((1_000_000_000, 1_500_000_000)):
            w.write(topics.color_info, CAMERA_INFO, camera_info_msg(t, "cam", Ks, 6, 8), t)
            w.write(topics.color, IMAGE, image_msg(t, "cam", rgb, "rgb8"), t)
            w.write(topics.depth, IMAGE, image_msg(t, "cam", depth_mm, "16UC1"), t)
            w.write("/gt/labels", IMAGE, image_msg(t, "cam", labels + i, "mono8"), t)
    refs = load_references(bag, labels_topic="/gt/labels", num_classes=5)
    assert sorted(refs) == [1_000_000_000, 1_500_000_000]
    np.testing.assert_array_equal(refs[1_500_000_000].labels, labels + 1)
    d = refs[1_000_000_000].depth
    assert np.isnan(d[0, 0]) and d[1, 1] == pytest.approx(1.5)
    with pytest.raises(ValueError, match="no labels topic '/nope'"):
        load_references(bag, labels_topic="/nope")
    with pytest.raises(ValueError, match="not both"):
        load_references(bag, labelled_folder=tmp_path, labels_topic="/gt/labels")


def test_evaluator_state_merges_exactly():
    """Two halves of a set merged (or summed through state_dict, as DDP ranks do) give exactly
    the metrics of the whole set; per_frame=False keeps only the set."""
    rng = np.random.default_rng(0)
    frames = []
    for _ in range(4):
        gt = rng.uniform(0.5, 9.0, (8, 8)).astype(np.float32)
        labels = rng.integers(0, 4, (8, 8))
        normals = rng.normal(size=(8, 8, 3)).astype(np.float32)
        frames.append(
            (
                gt * rng.uniform(0.8, 1.2, gt.shape).astype(np.float32),
                rng.integers(1, 4, (8, 8)),
                normals + rng.normal(0, 0.2, normals.shape).astype(np.float32),
                FrameReference(K=K, depth=gt, labels=labels, normals=normals),
            )
        )
    whole = AccuracyEvaluator(3)
    a, b = AccuracyEvaluator(3, per_frame=False), AccuracyEvaluator(3, per_frame=False)
    for i, (d, lab, n, ref) in enumerate(frames):
        whole.add(i, d, lab, n, ref)
        (a if i < 2 else b).add(i, d, lab, n, ref)
    summed = {k: a.state_dict()[k] + b.state_dict()[k] for k in a.state_dict()}
    a.merge(b)
    c = AccuracyEvaluator(3, per_frame=False)
    c.load_state_dict(summed)
    for ev in (a, c):
        got, want = ev.aggregate(), whole.aggregate()
        assert got["frames"] == 4 and ev.frames == []
        for task in ("depth", "segmentation", "normals"):
            for k, v in want[task].items():
                if isinstance(v, float):
                    assert got[task][k] == pytest.approx(v, rel=1e-12), (task, k)
        for k, v in want["baselines"]["depth"].items():
            assert got["baselines"]["depth"][k] == pytest.approx(v, rel=1e-12), k
    with pytest.raises(ValueError):
        c.load_state_dict({"frames": np.array([1])})
