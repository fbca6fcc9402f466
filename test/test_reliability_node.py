"""perception_node under oversized input (issue 14): a PNG decompression bomb is refused on its
header (counted, memory bounded, the next good frame is processed) and a 4K frame passes."""

from __future__ import annotations

import threading

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
            lambda: h.node.stats.snapshot()["skipped"].get("undecodable_compressed", 0) == 1,
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
