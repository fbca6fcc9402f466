"""Calibration frames: real rosbag frames pre-processed like the runtime; random data refused."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest

from joint_perception.export.calibration import CalibrationFrames


def test_frames_preprocessed_like_runtime_hand_computed():
    # 2x4 -> 1x2 with INTER_AREA is the mean of each 2x2 block
    rgb = np.zeros((2, 4, 3), np.uint8)
    rgb[:, :2] = [10, 20, 30]
    rgb[0, 2:] = [255, 0, 51]
    rgb[1, 2:] = [255, 0, 153]
    frames = CalibrationFrames.from_rgb([rgb, rgb], (1, 2))
    out = frames.images
    assert out.shape == (2, 3, 1, 2) and out.dtype == np.float32
    np.testing.assert_allclose(out[0, :, 0, 0], np.array([10, 20, 30]) / 255, atol=1e-6)
    np.testing.assert_allclose(out[1, :, 0, 1], np.array([255, 0, 102]) / 255, atol=1e-6)
    # same size: only the scaling
    same = CalibrationFrames.from_rgb([rgb], (2, 4)).images
    np.testing.assert_allclose(same[0, 2, 1, 3], 153 / 255, atol=1e-7)
    with pytest.raises(ValueError, match="uint8 RGB"):
        CalibrationFrames.from_rgb([rgb.astype(np.float32)], (1, 2))


def test_frames_from_real_bag_match_the_png(shared_data):
    bag = shared_data / "bags" / "nyuv2_test3_sqlite3"
    frames = CalibrationFrames.from_bag(bag, (60, 80), max_frames=64)
    assert frames.images.shape == (3, 3, 60, 80)  # the bag holds idx 1, 433, 464
    assert frames.images.dtype == np.float32
    assert not frames.is_random
    assert frames.images.min() >= 0.0 and frames.images.max() <= 1.0
    for i, idx in enumerate((1, 433, 464)):
        bgr = cv2.imread(str(shared_data / "nyuv2_test" / "rgb" / f"{idx:04d}.png"))
        ref = cv2.resize(bgr[:, :, ::-1], (80, 60), interpolation=cv2.INTER_AREA)
        np.testing.assert_allclose(frames.images[i], ref.transpose(2, 0, 1) / 255.0, atol=1e-6)
    assert frames.describe() == {
        "source": f"bag {bag} topic auto",
        "frames": 3,
        "size_hw": [60, 80],
        "random": False,
    }
    assert [b.shape for b in frames.batches(2)] == [(2, 3, 60, 80), (1, 3, 60, 80)]


def test_compressed_topic_and_frame_limit(shared_data):
    bag = shared_data / "bags" / "nyuv2_test3_sqlite3"
    raw = CalibrationFrames.from_bag(bag, (60, 80), max_frames=2)
    jpeg = CalibrationFrames.from_bag(
        bag, (60, 80), max_frames=2, topic="/camera/color/image_raw/compressed"
    )
    assert len(raw) == len(jpeg) == 2
    diff = np.abs(raw.images - jpeg.images)
    assert 0 < diff.mean() < 0.02  # JPEG q90: close, not identical


def test_bag_errors_name_the_problem(shared_data, tmp_path):
    bag = shared_data / "bags" / "nyuv2_test3_sqlite3"
    with pytest.raises(ValueError, match="no image topic '/nope'"):
        CalibrationFrames.from_bag(bag, (60, 80), topic="/nope")
    with pytest.raises(FileNotFoundError, match="missing_bag"):
        CalibrationFrames.from_bag(tmp_path / "missing_bag", (60, 80))


def test_random_data_refused_unless_allowed_and_then_logged(caplog):
    with pytest.raises(ValueError, match="refusing to calibrate on random data"):
        CalibrationFrames.random((8, 8))
    with caplog.at_level(logging.ERROR):
        frames = CalibrationFrames.random((8, 10), n=3, allow_random=True)
    assert frames.is_random and frames.images.shape == (3, 3, 8, 10)
    assert any(r.levelno == logging.ERROR and "RANDOM" in r.getMessage() for r in caplog.records)


def test_from_rgb_validates():
    with pytest.raises(ValueError, match="max_frames"):
        CalibrationFrames.from_rgb([np.zeros((4, 4, 3), np.uint8)], (2, 2), max_frames=0)
    with pytest.raises(ValueError, match="no calibration frames"):
        CalibrationFrames.from_rgb([], (2, 2))
    with pytest.raises(ValueError, match="float32"):
        CalibrationFrames(np.zeros((1, 3, 2, 2), np.float64), "x")


def test_from_dataset_spreads_frames_over_the_split():
    frames = CalibrationFrames.from_dataset(
        "synthetic", (24, 32), max_frames=3, length=5, height=48, width=64
    )
    assert frames.images.shape == (3, 3, 24, 32)
    assert frames.source == "dataset synthetic split train"
    from joint_perception.data.registry import build_dataset
    from joint_perception.runtime.processing import preprocess_image

    ds = build_dataset("synthetic", "train", length=5, height=48, width=64)
    # evenly spaced: items 0, 2, 4
    np.testing.assert_allclose(frames.images[1], preprocess_image(ds[2]["rgb"], (24, 32))[0])
    np.testing.assert_allclose(frames.images[2], preprocess_image(ds[4]["rgb"], (24, 32))[0])
