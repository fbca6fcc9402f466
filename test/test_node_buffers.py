"""perception_node's reused output buffers (issue 13) and memory after a large frame (issue 14).

The worker writes every output into reused buffers and publishes messages whose data *is* those
buffers. The bytes on the wire must be those of the copying path (a fresh pipeline run and the
plain message builders) on every frame, across frames of different content and size; and after
a 4K frame among 640x480 ones, the buffers of the large frame are freed and handed back
(malloc_trim), so the resident set returns to its steady state.
"""

from __future__ import annotations

import dataclasses
import gc

import cv2
import numpy as np
import psutil
import pytest

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip("rclpy")

from ros_node_harness import NodeHarness, camera_info_msg, export_tiny_model, image_msg  # noqa: E402

from joint_perception.colormap import colorize_labels, normals_to_rgb  # noqa: E402
from joint_perception.pointcloud import pack_depth  # noqa: E402
from joint_perception.ros import conversions  # noqa: E402
from joint_perception.ros.transport_formats import (  # noqa: E402
    encode_compressed,
    encode_compressed_depth,
)
from joint_perception.runtime.factory import create_backend  # noqa: E402
from joint_perception.runtime.processing import Pipeline  # noqa: E402

#: RSS above the steady 640x480 state allowed once 640x480 frames follow a 4K frame. Measured
#: on the 2-core machine: +44 MiB with the release (peak +456 MiB), +195 MiB without it (the
#: large frame's rays cache and freed buffers kept in the heap).
AFTER_4K_RSS_BOUND = 96 * 2**20
#: Topics that make the node compute every network output (depth, labels, colour, normals,
#: confidence) into its buffers at 4K while the messages themselves stay small: Fast DDS keeps
#: the largest sample of each raw topic in its publisher and subscriber history pools
#: (rmw_fastrtps' PREALLOCATED_WITH_REALLOC), memory of the transport, not of the node, which
#: would hide what this test measures (docs/performance.md "Memory after a large frame").
SMALL_MESSAGE_TOPICS = (
    "depth/image/compressedDepth",
    "segmentation/labels/compressed",
    "segmentation/color/compressed",
    "normals/camera_info",
    "confidence/camera_info",
)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return export_tiny_model(tmp_path_factory.mktemp("model"))


def _scene(seed: int, h: int, w: int) -> np.ndarray:
    """A smooth random colour image (several classes, varied depth)."""
    small = np.random.default_rng(seed).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def _K(h: int, w: int) -> np.ndarray:
    f = 0.9 * w
    return np.array([[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1.0]])


def _reference(node, model_dir, rgb, K, info, header) -> dict:
    """The messages of the copying path: a fresh pipeline without buffers, plain builders."""
    backend = create_backend(model_dir, backend="onnxruntime")
    try:
        meta = backend.metadata
        pipe = Pipeline(backend, dataclasses.replace(meta))
        res = pipe.run(rgb, K)
    finally:
        backend.close()
    h, w = rgb.shape[:2]
    p = node.params
    color = colorize_labels(res.labels, node.palette)
    cam = conversions.scaled_camera_info(info, h, w)
    cam.header = header
    img = conversions.array_to_image_msg
    fmt_d, data_d = encode_compressed_depth(
        res.depth, depth_max=pipe.max_depth, depth_quantization=100.0, png_level=3
    )
    fmt_l, data_l = encode_compressed(res.labels, "mono8", "png", png_level=3)
    fmt_c, data_c = encode_compressed(color, "rgb8", "jpeg", jpeg_quality=90, png_level=3)
    assert p["compressed.color_format"] == "jpeg" and p["compressed.png_level"] == 3
    return {
        "depth/image": img(res.depth, "32FC1", header),
        "depth/camera_info": cam,
        "depth/image/compressedDepth": conversions.compressed_msg(fmt_d, data_d, header),
        "segmentation/labels": img(res.labels, "mono8", header),
        "segmentation/camera_info": cam,
        "segmentation/labels/compressed": conversions.compressed_msg(fmt_l, data_l, header),
        "segmentation/color": img(color, "rgb8", header),
        "segmentation/color/compressed": conversions.compressed_msg(fmt_c, data_c, header),
        "normals/image": img(res.normals, "32FC3", header),
        "normals/camera_info": cam,
        "normals/color": img(normals_to_rgb(res.normals), "rgb8", header),
        "points": conversions.cloud_to_msg(
            pack_depth(res.depth, res.K, rgb=rgb, labels=res.labels), header
        ),
        "confidence/image": img(res.confidence, "32FC1", header),
        "confidence/camera_info": cam,
    }


def test_outputs_over_reused_buffers_are_the_copying_path_bytes(model_dir):
    """Frames of different content and size in a row: every topic's message is the copying
    path's, field for field and byte for byte (so a buffer overwritten by the next frame never leaks into a
    published one, and a size change reallocates correctly)."""
    h = NodeHarness(model_dir, {"publish_confidence": True})
    try:
        frames = [(1, 480, 640), (2, 480, 640), (3, 240, 320), (4, 480, 640)]
        stamp = 9_000_000_000
        for seed, fh, fw in frames:
            stamp += 1_000_000
            rgb, K = _scene(seed, fh, fw), _K(fh, fw)
            msg, info = image_msg(rgb, stamp), camera_info_msg(K, fh, fw, stamp)
            h.send(msg, info)
            out = h.wait_outputs(stamp, timeout=60)
            ref = _reference(h.node, model_dir, rgb, K, info, msg.header)
            assert set(out) == set(ref)
            for topic, got in out.items():
                # every field, data byte for byte (serialised bytes would also compare CDR
                # padding, which is not data)
                assert got == ref[topic], f"{topic} differs at frame {seed} ({fw}x{fh})"
                assert bytes(got.data if hasattr(got, "data") else b"") == bytes(
                    ref[topic].data if hasattr(ref[topic], "data") else b""
                )
        assert h.node._state is not None and h.node._state.size == ((480, 640), (480, 640))
    finally:
        h.close()
    assert h.node._state is None  # cleanup released the buffers


def test_memory_returns_to_steady_state_after_a_4k_frame(model_dir):
    """A 3840x2160 frame between 640x480 ones: the node drops the large buffers (and the large
    frame's cached rays) and trims the heap at the next smaller frame; RSS comes back within
    AFTER_4K_RSS_BOUND of the steady state."""
    proc = psutil.Process()
    h = NodeHarness(model_dir, {"publish_confidence": True}, outputs=SMALL_MESSAGE_TOPICS)
    try:
        stamp = 10_000_000_000

        def send(hw, seed):
            nonlocal stamp
            stamp += 1_000_000
            rgb = _scene(seed, *hw)
            h.send(image_msg(rgb, stamp), camera_info_msg(_K(*hw), *hw, stamp))
            h.wait_outputs(stamp, timeout=120)
            for msgs in h.received.values():  # the test's own copies of the outputs
                msgs.clear()
            gc.collect()

        for i in range(4):
            send((480, 640), i)
        steady = proc.memory_info().rss
        send((2160, 3840), 10)
        big = proc.memory_info().rss
        for i in range(4):
            send((480, 640), 20 + i)
        after = proc.memory_info().rss
        state = h.node._state
        assert state.size == ((480, 640), (480, 640))
        held = sum(len(state.buffers.storage(n)) for n in state.buffers.names())
        assert held < 20 * 2**20, f"{held / 2**20:.0f} MiB of buffers held at 640x480"
    finally:
        h.close()
    mib = 2**20
    assert after - steady < AFTER_4K_RSS_BOUND, (
        f"RSS steady {steady / mib:.0f} MiB, after the 4K frame {big / mib:.0f} MiB, "
        f"640x480 again {after / mib:.0f} MiB"
    )
    print(f"RSS MiB: steady {steady / mib:.0f}, 4K {big / mib:.0f}, after {after / mib:.0f}")
