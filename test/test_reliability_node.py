"""perception_node under oversized and inconsistent input (issue 14): a PNG decompression bomb is
refused on its header (counted as input_too_large, memory bounded, the next good frame is
processed), compressed bytes of another codec than declared are refused, a 4K frame passes, and a
frame whose messages cannot all be built publishes none of them (publish_failed)."""

from __future__ import annotations

import threading
import tracemalloc

import cv2
import numpy as np
import psutil
import pytest

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip("rclpy")

from ros_node_harness import NodeHarness, camera_info_msg, export_tiny_model, image_msg  # noqa: E402
from sensor_msgs.msg import CompressedImage  # noqa: E402

K = np.array([[100.0, 0, 79.5], [0, 100.0, 59.5], [0, 0, 1]])
H, W = 120, 160
RGB = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
#: the bomb decodes to 8192 x 8192 x 3 = 201 MB (twice with the RGB copy); refused on its
#: header, it must not raise the process's RSS by more than this
BOMB_RSS_BOUND = 64 * 2**20


class PeakRss:
    """Sample this process's RSS every 2 ms in a thread; ``peak`` is the largest seen."""

    def __init__(self) -> None:
        self.proc = psutil.Process()
        self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def stop(self) -> int:
        self._stop.set()
        self._t.join()
        return self.peak


def _compressed(data: bytes, fmt: str, stamp: int) -> CompressedImage:
    msg = CompressedImage(format=fmt, data=data)
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 10**9)
    msg.header.frame_id = "cam"
    return msg


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return export_tiny_model(tmp_path_factory.mktemp("model"))


def test_png_bomb_is_refused_with_bounded_memory(model_dir):
    ok, bomb = cv2.imencode(".png", np.zeros((8192, 8192), np.uint8))
    assert ok and bomb.size < 1_000_000
    h = NodeHarness(model_dir, {"input_transport": "compressed"}, outputs=("depth/image",))
    try:
        s = 3_000_000_000
        ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(RGB, cv2.COLOR_RGB2BGR))
        h.send(_compressed(jpg.tobytes(), "jpeg", s), camera_info_msg(K, H, W, s))
        h.wait_outputs(s, timeout=30)  # warm: buffers and the session exist
        base = psutil.Process().memory_info().rss
        rss = PeakRss()
        s += 1_000_000
        h.send(_compressed(bomb.tobytes(), "png", s), camera_info_msg(K, 8192, 8192, s))
        h.wait_for(
            lambda: h.node.stats.snapshot()["skipped"].get("input_too_large", 0) == 1,
            30,
            "the bomb was not counted",
        )
        peak = rss.stop()
        assert peak - base < BOMB_RSS_BOUND, f"RSS rose by {(peak - base) / 2**20:.0f} MiB"
        s += 1_000_000
        h.send(_compressed(jpg.tobytes(), "jpeg", s), camera_info_msg(K, H, W, s))
        out = h.wait_outputs(s, timeout=30)
        assert (out["depth/image"].height, out["depth/image"].width) == (H, W)
    finally:
        h.close()


def test_4k_frame_is_processed(model_dir):
    h = NodeHarness(model_dir, {"output_resolution": "network"}, outputs=("depth/image",))
    try:
        s = 4_000_000_000
        rgb = np.zeros((2160, 3840, 3), np.uint8)
        K4 = np.array([[2000.0, 0, 1919.5], [0, 2000.0, 1079.5], [0, 0, 1]])
        h.send(image_msg(rgb, s), camera_info_msg(K4, 2160, 3840, s))
        out = h.wait_outputs(s, timeout=60)
        assert out["depth/image"].height > 0
        assert not h.node.stats.snapshot()["skipped"]
    finally:
        h.close()


def _skipped(h, reason):
    return h.node.stats.snapshot()["skipped"].get(reason, 0)


@pytest.mark.parametrize(
    ("codec", "fmt"),
    [(".png", "jpeg"), (".bmp", "jpeg"), (".jpg", "png")],
)
def test_compressed_bytes_of_another_codec_are_refused(model_dir, codec, fmt):
    h = NodeHarness(model_dir, {"input_transport": "compressed"}, outputs=("depth/image",))
    try:
        s = 5_000_000_000
        ok, data = cv2.imencode(codec, cv2.cvtColor(RGB, cv2.COLOR_RGB2BGR))
        h.send(_compressed(data.tobytes(), fmt, s), camera_info_msg(K, H, W, s))
        h.wait_for(
            lambda: _skipped(h, "compressed_format_mismatch") == 1, 30, "mismatch not counted"
        )
        assert _skipped(h, "undecodable_compressed") == 0
        s += 1_000_000
        ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(RGB, cv2.COLOR_RGB2BGR))
        h.send(_compressed(jpg.tobytes(), "jpeg", s), camera_info_msg(K, H, W, s))
        h.wait_outputs(s, timeout=30)
    finally:
        h.close()


#: the outputs the whole-frame tests subscribe to: an image, a CameraInfo, the cloud, colour
WHOLE_FRAME = ("depth/image", "depth/camera_info", "points", "segmentation/color")


def _assert_nothing_published_for(h, stamp):
    for topic, msgs in h.received.items():
        stamps = [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in msgs]
        assert stamp not in stamps, f"{topic} was published for the failed frame"


def test_nan_projection_matrix_publishes_nothing_of_that_frame(model_dir):
    """Depth needs no P, depth/camera_info does: a NaN in P used to leave depth published and the
    rest missing; now no message of that stamp goes out and the frame counts as publish_failed."""
    h = NodeHarness(model_dir, outputs=WHOLE_FRAME)
    try:
        s = 6_000_000_000
        bad = camera_info_msg(K, H, W, s)
        bad.p = [float("nan")] * 12
        h.send(image_msg(RGB, s), bad)
        h.wait_for(lambda: _skipped(h, "publish_failed") == 1, 30, "publish_failed not counted")
        good = s + 1_000_000
        h.send(image_msg(RGB, good), camera_info_msg(K, H, W, good))
        h.wait_outputs(good, timeout=30)  # reliable, in order: the failed frame would be here
        _assert_nothing_published_for(h, s)
    finally:
        h.close()


def test_memory_error_in_a_builder_publishes_nothing_of_that_frame(model_dir):
    h = NodeHarness(model_dir, outputs=WHOLE_FRAME)
    try:
        s = 7_000_000_000
        h.send(image_msg(RGB, s), camera_info_msg(K, H, W, s))
        first = h.wait_outputs(s, timeout=30)
        real = h.node._builders["points"]

        def fail(frame):
            raise MemoryError("simulated")

        h.node._builders["points"] = fail
        s += 1_000_000
        h.send(image_msg(RGB, s), camera_info_msg(K, H, W, s))
        h.wait_for(lambda: _skipped(h, "publish_failed") == 1, 30, "publish_failed not counted")
        h.node._builders["points"] = real
        good = s + 1_000_000
        h.send(image_msg(RGB, good), camera_info_msg(K, H, W, good))
        out = h.wait_outputs(good, timeout=30)
        _assert_nothing_published_for(h, s)
        # the next good frame is bit-exact with the first one (same input)
        for topic in ("depth/image", "points", "segmentation/color"):
            assert bytes(out[topic].data) == bytes(first[topic].data), topic
    finally:
        h.close()


def test_camera_messages_lost_in_transport_are_counted(model_dir):
    """The camera subscription carries a message-lost event handler; what the middleware reports
    lost (``rmw_message_lost_status_t``) is counted as ``lost_in_transport`` in /diagnostics
    and the node goes on processing. (The event itself is raised by Fast DDS for best-effort
    samples it could not deliver, e.g. over the shared-memory segment; provoking one on
    purpose is not deterministic, so the handler is driven with the status's two fields; the
    real ``rmw_message_lost_status_t`` is read-only from Python.)"""
    import types

    h = NodeHarness(model_dir, outputs=WHOLE_FRAME)
    try:
        s = 8_000_000_000
        h.send(image_msg(RGB, s), camera_info_msg(K, H, W, s))
        h.wait_outputs(s, timeout=30)
        image_sub = h.node._input_subs[0]
        assert image_sub.event_handlers  # registered with the middleware
        h.node._on_message_lost(types.SimpleNamespace(total_count=3, total_count_change=3))
        assert _skipped(h, "lost_in_transport") == 3
        good = s + 1_000_000
        h.send(image_msg(RGB, good), camera_info_msg(K, H, W, good))
        h.wait_outputs(good, timeout=30)
    finally:
        h.close()


def test_a_36_mb_raw_frame_is_refused_on_its_header_and_counted(model_dir):
    """A 4096x3072 rgb8 frame (37.7 MB, above ``max_input_pixels``) through DDS to the node (the
    harness shares the node's process, so Fast DDS delivers it in-process, not through the
    shared-memory segment): refused on its declared size before any pixel is touched, counted
    as input_too_large, memory bounded, and the next good frame is processed.

    Memory is the exact peak of Python-level allocations (``tracemalloc``; numpy arrays
    included), not sampled RSS: the RSS of one 2 ms sample could or could not catch the
    transient C copy rmw makes while the message is taken (a fresh clone measured 108 MiB
    once, the bound is 88), so that check depended on timing. Here: receiving costs rclpy's
    two transient copies of the data (74 MiB measured); the same frame processed (with
    ``max_input_pixels`` raised) peaked at 1487 MiB."""
    h = NodeHarness(model_dir, outputs=WHOLE_FRAME)
    try:
        warm = 8_500_000_000  # first frame: the backend's arena and the output buffers exist
        h.send(image_msg(RGB, warm), camera_info_msg(K, H, W, warm))
        h.wait_outputs(warm, timeout=30)
        big = np.zeros((3072, 4096, 3), np.uint8)
        s = 9_000_000_000
        msg = image_msg(big, s)
        assert len(msg.data) == 37_748_736
        del big
        K_big = K.copy()
        K_big[:2] *= 25.6
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            h.send(msg, camera_info_msg(K_big, 3072, 4096, s))
            h.wait_for(
                lambda: _skipped(h, "input_too_large") == 1, 30, "input_too_large not counted"
            )
            rise = tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()
        # rclpy's conversion of the received message (two transient copies of its data)
        assert rise < 2 * len(msg.data) + 16 * 2**20, rise / 2**20
        good = s + 1_000_000
        h.send(image_msg(RGB, good), camera_info_msg(K, H, W, good))
        h.wait_outputs(good, timeout=30)
        _assert_nothing_published_for(h, s)
    finally:
        h.close()
