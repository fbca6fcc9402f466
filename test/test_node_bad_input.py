"""perception_node refuses each kind of bad input: warns (rate-limited), skips, counts, survives."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip("rclpy")

from rclpy.parameter import Parameter  # noqa: E402
from ros_node_harness import NodeHarness, camera_info_msg, export_tiny_model, image_msg  # noqa: E402
from sensor_msgs.msg import CompressedImage  # noqa: E402

K = np.array([[100.0, 0, 79.5], [0, 100.0, 59.5], [0, 0, 1]])
H, W = 120, 160
RGB = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
_stamp = iter(range(1_000_000_000, 2_000_000_000, 1_000_000))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return export_tiny_model(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def raw_node(model_dir):
    h = NodeHarness(model_dir, {"warn_throttle_s": 60.0}, outputs=("depth/image",))
    yield h
    h.close()


def _skipped(h, reason):
    return h.node.stats.snapshot()["skipped"].get(reason, 0)


def _assert_still_works(h):
    s = next(_stamp)
    h.send(image_msg(RGB, s), camera_info_msg(K, H, W, s))
    h.wait_outputs(s, timeout=10)


def _bad_step(s):
    m = image_msg(RGB, s)
    m.step = W * 3 - 1
    return m


def _short_data(s):
    m = image_msg(RGB, s)
    m.data = m.data[: len(m.data) - W * 3]
    return m


def _empty(s):
    m = image_msg(RGB, s)
    m.data = b""
    return m


def _unsupported(s):
    return image_msg(np.zeros((H, W), np.float32), s, encoding="32FC1")


def _unknown_encoding(s):
    m = image_msg(RGB, s)
    m.encoding = "bayer_rggb8"
    return m


def _empty_frame_id(s):
    # REP 105: outputs in no frame cannot be placed in the TF tree; skipped, not published
    return image_msg(RGB, s, frame_id="")


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (_unsupported, "unsupported_encoding"),
        (_unknown_encoding, "unsupported_encoding"),
        (_bad_step, "malformed_image"),
        (_short_data, "malformed_image"),
        (_empty, "empty_image"),
        (_empty_frame_id, "empty_frame_id"),
    ],
)
def test_bad_image_is_skipped_counted_and_node_survives(raw_node, make, reason):
    h = raw_node
    before = _skipped(h, reason)
    for _ in range(3):
        s = next(_stamp)
        h.send(make(s), camera_info_msg(K, H, W, s))
    h.wait_for(lambda: _skipped(h, reason) == before + 3, 10, f"3 skips counted as {reason}")
    _assert_still_works(h)
    h.wait_for(
        lambda: any(
            f"skipped_{reason}" in {kv.key for kv in d.status[0].values}
            for d in list(h.diagnostics)[-3:]
        ),
        5,
        "reason in /diagnostics",
    )


@pytest.mark.parametrize(
    ("k", "reason"),
    [
        (np.zeros((3, 3)), "invalid_camera_info"),
        (np.array([[np.nan, 0, 79.5], [0, 100.0, 59.5], [0, 0, 1]]), "invalid_camera_info"),
        # fx = 1e-300: a 180-degree field of view, every point infinite (issue 14)
        (np.array([[1e-300, 0, 79.5], [0, 100.0, 59.5], [0, 0, 1]]), "absurd_camera_info"),
        (np.array([[100.0, 0, 1e6], [0, 100.0, 59.5], [0, 0, 1]]), "absurd_camera_info"),
    ],
)
def test_bad_camera_info_is_skipped(raw_node, k, reason):
    h = raw_node
    before = _skipped(h, reason)
    s = next(_stamp)
    h.send(image_msg(RGB, s), camera_info_msg(k, H, W, s))
    h.wait_for(lambda: _skipped(h, reason) == before + 1, 10, reason)
    _assert_still_works(h)


def test_binning_that_leaves_no_pixel_is_absurd(raw_node):
    h = raw_node
    before = _skipped(h, "absurd_camera_info")
    s = next(_stamp)
    info = camera_info_msg(K, H, W, s)
    info.binning_x = info.binning_y = 1000
    h.send(image_msg(RGB, s), info)
    h.wait_for(lambda: _skipped(h, "absurd_camera_info") == before + 1, 10, "absurd binning")
    _assert_still_works(h)


def test_frame_above_max_input_pixels_is_refused_on_its_declared_size(raw_node):
    h = raw_node
    before = _skipped(h, "input_too_large")
    h.node.set_parameters([Parameter("max_input_pixels", value=H * W - 1)])
    try:
        s = next(_stamp)
        h.send(image_msg(RGB, s), camera_info_msg(K, H, W, s))
        h.wait_for(lambda: _skipped(h, "input_too_large") == before + 1, 10, "input_too_large")
    finally:
        h.node.set_parameters([Parameter("max_input_pixels", value=0)])  # 0 = no limit
    _assert_still_works(h)


def test_warnings_are_rate_limited_per_reason(raw_node, capfd):
    h = raw_node
    capfd.readouterr()
    before = _skipped(h, "malformed_image")
    for _ in range(4):
        s = next(_stamp)
        h.send(_bad_step(s), camera_info_msg(K, H, W, s))
    h.wait_for(lambda: _skipped(h, "malformed_image") == before + 4, 10, "4 skips")
    err = capfd.readouterr().err
    # warn_throttle_s = 60: at most the first of the four is logged (none if an earlier test
    # already warned for this reason), yet all four are counted
    assert err.count("malformed image") <= 1, err


def test_missing_camera_info_then_recovery(model_dir):
    h = NodeHarness(model_dir, outputs=("depth/image",))
    try:
        for _ in range(2):  # no CameraInfo yet: the first waits, the second displaces it
            h.send(image_msg(RGB, next(_stamp)))
            time.sleep(0.05)
        h.wait_for(lambda: _skipped(h, "no_camera_info") == 1, 10, "no_camera_info counted")
        _assert_still_works(h)
    finally:
        h.close()


def test_distorted_camera_info_warns_once_and_is_processed(raw_node):
    h = raw_node
    for _ in range(2):
        s = next(_stamp)
        h.send(image_msg(RGB, s), camera_info_msg(K, H, W, s, d=(0.1, -0.05, 0, 0, 0)))
        h.wait_outputs(s, timeout=10)
    assert h.node.stats.snapshot()["warnings"]["distorted_camera_info"] >= 2
    assert "distorted_camera_info" in h.node._warned_once


def test_undecodable_compressed_is_skipped(model_dir):
    h = NodeHarness(model_dir, {"input_transport": "compressed"}, outputs=("depth/image",))
    try:
        s = next(_stamp)
        bad = CompressedImage(format="jpeg", data=b"\xff\xd8\xffnot a jpeg at all")
        bad.header.stamp.sec, bad.header.stamp.nanosec = divmod(s, 10**9)
        bad.header.frame_id = "cam"
        h.send(bad, camera_info_msg(K, H, W, s))
        h.wait_for(lambda: _skipped(h, "undecodable_compressed") == 1, 10, "undecodable")
        s = next(_stamp)
        ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(RGB, cv2.COLOR_RGB2BGR))
        good = CompressedImage(format="jpeg", data=jpg.tobytes())
        good.header.stamp.sec, good.header.stamp.nanosec = divmod(s, 10**9)
        good.header.frame_id = "cam"
        h.send(good, camera_info_msg(K, H, W, s))
        out = h.wait_outputs(s, timeout=10)
        assert (out["depth/image"].height, out["depth/image"].width) == (H, W)
    finally:
        h.close()
