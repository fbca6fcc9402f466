"""perception_node on a real NYUv2 frame: every output's contract, dropping, lazy outputs.

Real rclpy in one process (loopback DDS from conftest), an untrained realtime model exported
at 64x80 (the contract does not need a trained model).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip("rclpy")

from ros_node_harness import (  # noqa: E402
    FRAME_ID,
    NodeHarness,
    camera_info_msg,
    export_tiny_model,
    image_msg,
    nyu_frame,
)

from joint_perception.colormap import normals_to_rgb  # noqa: E402
from joint_perception.geometry import scale_intrinsics  # noqa: E402
from joint_perception.image_codec import decode_image  # noqa: E402
from joint_perception.pointcloud import unpack, unpack_rgb  # noqa: E402
from joint_perception.ros.diagnostics import status_values  # noqa: E402

STAMP = 1_700_000_000_123_456_789


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return export_tiny_model(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def frame(shared_data):
    return nyu_frame(shared_data, 1)


def _array(msg):
    return decode_image(msg.encoding, msg.height, msg.width, msg.step, msg.data, msg.is_bigendian)


def test_every_output_follows_the_contract(model_dir, frame):
    rgb, K = frame
    h = NodeHarness(model_dir, {"publish_confidence": True, "min_depth": 0.2, "max_depth": 8.0})
    try:
        h.send(image_msg(rgb, STAMP), camera_info_msg(K, 480, 640, STAMP - 5))
        out = h.wait_outputs(STAMP)
    finally:
        h.close()
    for topic, msg in out.items():  # input header unchanged on every output
        assert msg.header.frame_id == FRAME_ID, topic
        assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == divmod(STAMP, 10**9), topic

    depth_msg = out["depth/image"]
    assert (depth_msg.encoding, depth_msg.height, depth_msg.width) == ("32FC1", 480, 640)
    depth = _array(depth_msg)
    finite = np.isfinite(depth)
    assert finite.any()
    assert depth[finite].min() >= 0.2 and depth[finite].max() <= 8.0

    info = out["depth/camera_info"]
    assert (info.height, info.width) == (480, 640)
    np.testing.assert_allclose(np.reshape(info.k, (3, 3)), K, rtol=1e-9)

    labels_msg = out["segmentation/labels"]
    assert (labels_msg.encoding, labels_msg.height, labels_msg.width) == ("mono8", 480, 640)
    labels = _array(labels_msg)
    assert labels.dtype == np.uint8 and labels.max() <= 40

    color = out["segmentation/color"]
    assert (color.encoding, color.height, color.width) == ("rgb8", 480, 640)
    assert _array(color).shape == (480, 640, 3)

    normals_msg = out["normals/image"]
    assert (normals_msg.encoding, normals_msg.height, normals_msg.width) == ("32FC3", 480, 640)
    normals = _array(normals_msg)
    ok = np.isfinite(normals).all(axis=2)
    assert ok.mean() > 0.99
    np.testing.assert_allclose(np.linalg.norm(normals[ok], axis=1), 1.0, atol=1e-3)
    assert out["normals/color"].encoding == "rgb8"  # what RViz can show (no 32FC3 there)
    np.testing.assert_array_equal(_array(out["normals/color"]), normals_to_rgb(normals))

    conf = _array(out["confidence/image"])
    assert out["confidence/image"].encoding == "32FC1" and conf.shape == (480, 640)
    assert np.nanmin(conf) >= 0.0 and np.nanmax(conf) <= 1.0

    # a camera_info beside every image output, all equal to depth/camera_info
    for topic in ("segmentation/camera_info", "normals/camera_info", "confidence/camera_info"):
        assert (out[topic].height, out[topic].width) == (480, 640), topic
        np.testing.assert_array_equal(np.reshape(out[topic].k, (3, 3)), np.reshape(info.k, (3, 3)))
        np.testing.assert_array_equal(out[topic].p, info.p)

    cloud = out["points"]
    assert (cloud.height, cloud.width, cloud.is_dense) == (480, 640, False)
    assert [f.name for f in cloud.fields] == ["x", "y", "z", "rgb", "label"]
    pts = unpack(
        cloud.data,
        cloud.fields,
        cloud.point_step,
        cloud.height,
        cloud.width,
        cloud.row_step,
        cloud.is_bigendian,
    )
    # z equals the depth image wherever finite, NaN elsewhere; x, y follow the pinhole model
    np.testing.assert_array_equal(np.isfinite(pts["z"]), finite)
    np.testing.assert_allclose(pts["z"][finite], depth[finite], rtol=1e-6)
    v, u = np.nonzero(finite)
    np.testing.assert_allclose(
        pts["x"][finite], (u - K[0, 2]) / K[0, 0] * depth[finite], rtol=1e-4, atol=1e-5
    )
    np.testing.assert_array_equal(pts["label"], labels)
    np.testing.assert_array_equal(unpack_rgb(pts["rgb"]), rgb)


def test_network_resolution_scales_camera_info_and_decimates_points(model_dir, frame):
    rgb, K = frame
    h = NodeHarness(
        model_dir,
        {"output_resolution": "network", "points_decimation": 2},
        outputs=("depth/image", "depth/camera_info", "points"),
    )
    try:
        h.send(image_msg(rgb, STAMP), camera_info_msg(K, 480, 640, STAMP))
        out = h.wait_outputs(STAMP)
    finally:
        h.close()
    assert (out["depth/image"].height, out["depth/image"].width) == (64, 80)
    info = out["depth/camera_info"]
    assert (info.height, info.width) == (64, 80)
    K_net = np.reshape(info.k, (3, 3))
    # pixel-centre convention: fx' = fx * 80/640, cx' = (cx + 0.5) * 80/640 - 0.5
    np.testing.assert_allclose(K_net[0, 0], 518.8579 * 0.125, rtol=1e-9)
    np.testing.assert_allclose(K_net[1, 1], 519.46961 * 64 / 480, rtol=1e-9)
    np.testing.assert_allclose(K_net[0, 2], (325.58245 + 0.5) * 0.125 - 0.5, rtol=1e-9)
    np.testing.assert_allclose(K_net, scale_intrinsics(K, (480, 640), (64, 80)), rtol=1e-9)
    np.testing.assert_allclose(np.reshape(info.p, (3, 4))[:, :3], K_net, rtol=1e-9)
    assert (out["points"].height, out["points"].width) == (32, 40)


def test_burst_drops_stale_frames_and_counts_them(model_dir, frame):
    rgb, K = frame
    h = NodeHarness(model_dir, outputs=("depth/image", "points", "normals/image"))
    try:
        h.pub_info.publish(camera_info_msg(K, 480, 640, STAMP))
        time.sleep(0.1)
        stamps = [STAMP + i * 1_000_000 for i in range(15)]
        for s in stamps:  # 200 Hz: faster than the worker, slow enough for the executor
            h.pub_image.publish(image_msg(rgb, s))
            time.sleep(0.005)
        h.wait_outputs(stamps[-1], topics=["depth/image"])  # the newest frame always survives
        time.sleep(0.3)
        snap = h.node.stats.snapshot()
        got = {m.header.stamp.nanosec for m in h.received["depth/image"]}
        h.wait_for(
            lambda: any(
                status_values(d.status[0]).get("frames_processed") == str(snap["frames_processed"])
                for d in h.diagnostics
            ),
            5.0,
            "diagnostics with the final counts",
        )
        diag = next(status_values(d.status[0]) for d in reversed(h.diagnostics))
    finally:
        h.close()
    assert snap["frames_received"] == snap["frames_processed"] + snap["frames_dropped"]
    assert snap["frames_dropped"] >= 1 and snap["frames_processed"] == len(got)
    assert len(got) < len(stamps)
    assert diag["frames_dropped"] == str(snap["frames_dropped"])
    assert diag["backend"] == "onnxruntime" and diag["backend_reason"]
    for key in (
        "rate_hz",
        "latency_p50_ms",
        "latency_p95_ms",
        "stage_inference_p50_ms",
        "stage_decode_p50_ms",
        "stage_publish_p50_ms",
        "model",
    ):
        assert key in diag, key


def test_outputs_without_subscribers_are_not_computed(model_dir, frame):
    rgb, K = frame
    h = NodeHarness(model_dir, outputs=("depth/image",))
    try:
        assert h.node.wanted_outputs() == {"depth"}
        h.send(image_msg(rgb, STAMP), camera_info_msg(K, 480, 640, STAMP))
        h.wait_outputs(STAMP)
        stages = h.node.stats.snapshot()["stages_p50_ms"]
        for sub in list(h.subs):
            h.client.destroy_subscription(sub)
        h.wait_for(lambda: not h.node.wanted_outputs(), 5.0, "subscriptions to go away")
        # lazy camera subscription: without an output subscriber the camera is not subscribed
        h.wait_for(lambda: h.pub_image.get_subscription_count() == 0, 5.0, "camera unsubscribed")
        assert not h.node.camera_subscribed and h.pub_info.get_subscription_count() == 0
        snap = h.node.stats.snapshot()
    finally:
        h.close()
    assert snap["frames_processed"] == 1 and snap["frames_skipped"] == 0
    assert {"decode", "preprocess", "inference", "postprocess", "publish"} <= set(stages)


def test_the_backend_runs_only_what_the_enabled_topics_need(model_dir):
    """The network outputs the node computes follow the publish_* parameters: by default
    (no confidence topic) the graph runs without its confidence tail; with confidence on and
    normals off, the reverse; the published frames are the same either way."""
    rgb = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    K = np.array([[100.0, 0, 79.5], [0, 100.0, 59.5], [0, 0, 1]])
    got = {}
    for params in ({}, {"publish_confidence": True, "publish_normals": False}):
        h = NodeHarness(model_dir, params, outputs=("depth/image", "segmentation/labels"))
        try:
            got[bool(params)] = h.node.backend.inner.output_names
            h.send(image_msg(rgb, STAMP), camera_info_msg(K, 120, 160, STAMP))
            out = h.wait_outputs(STAMP)
            got[(bool(params), "bytes")] = {t: bytes(m.data) for t, m in out.items()}
        finally:
            h.close()
    assert got[False] == ["depth", "labels", "normals"]
    assert got[True] == ["depth", "labels", "confidence"]
    assert got[(False, "bytes")] == got[(True, "bytes")]


def test_auto_backend_reports_its_choice_and_why(model_dir):
    """``backend: auto`` on a machine without TensorRT/CUDA picks ONNX Runtime and says why."""
    import importlib.util

    import torch

    if importlib.util.find_spec("tensorrt") is not None or torch.cuda.is_available():
        pytest.skip("this machine has TensorRT or CUDA: auto picks another backend here")
    h = NodeHarness(model_dir, {"backend": "auto"}, outputs=("depth/image",))
    try:
        h.wait_for(lambda: bool(h.diagnostics), 10.0, "a diagnostics message")
        diag = status_values(h.diagnostics[-1].status[0])
    finally:
        h.close()
    assert diag["backend"] == "onnxruntime"
    assert diag["backend_reason"].startswith("auto: tensorrt not importable")
    assert "no CUDA device" in diag["backend_reason"]


@pytest.mark.parametrize("precision", ["int8", "best"])
def test_tensorrt_precision_falls_back_without_tensorrt_and_frames_still_flow(
    model_dir, frame, precision
):
    """``backend: tensorrt`` with a ``precision`` on a machine without TensorRT: the node
    falls back to the next backend (which ignores the TensorRT options) and says why."""
    import importlib.util

    import torch

    if importlib.util.find_spec("tensorrt") is not None or torch.cuda.is_available():
        pytest.skip("this machine has TensorRT or CUDA: the fallback is not taken here")
    params = {"backend": "tensorrt", "precision": precision, "latency_target_ms": 8.0}
    h = NodeHarness(model_dir, params, outputs=("depth/image",))
    try:
        assert h.node.params["precision"] == precision
        rgb, K = frame
        h.send(image_msg(rgb, STAMP), camera_info_msg(K, 480, 640, STAMP))
        depth = h.wait_outputs(STAMP, ["depth/image"])["depth/image"]
        h.wait_for(lambda: bool(h.diagnostics), 10.0, "a diagnostics message")
        diag = status_values(h.diagnostics[-1].status[0])
    finally:
        h.close()
    assert diag["backend"] == "onnxruntime"
    assert diag["backend_reason"].startswith("backend=tensorrt: tensorrt not importable")
    assert (depth.height, depth.width) == (480, 640)


def test_camera_aware_depth_one_image_two_camera_infos(tmp_path, frame):
    """A model trained at a canonical focal length (metadata ``canonical_focal``) is metric for
    any camera: the same picture sent with a CameraInfo of half the focal length comes back at
    half the depth (pixel for pixel where both are in range)."""
    import json

    rgb, K = frame
    model = export_tiny_model(tmp_path / "m")
    meta = json.loads((model / "metadata.json").read_text())
    meta.update(canonical_focal=40.0, min_depth=0.01, max_depth=1000.0)
    (model / "metadata.json").write_text(json.dumps(meta))
    K_half = K.copy()
    K_half[0, 0] /= 2
    K_half[1, 1] /= 2
    h = NodeHarness(model, {"camera_info_sync": "exact"}, outputs=("depth/image",))
    try:
        h.send(image_msg(rgb, STAMP), camera_info_msg(K, 480, 640, STAMP))
        full = _array(h.wait_outputs(STAMP)["depth/image"])
        h.send(image_msg(rgb, STAMP + 1), camera_info_msg(K_half, 480, 640, STAMP + 1))
        half = _array(h.wait_outputs(STAMP + 1)["depth/image"])
    finally:
        h.close()
    both = np.isfinite(full) & np.isfinite(half)
    assert both.mean() > 0.99
    np.testing.assert_allclose(half[both], 0.5 * full[both], rtol=1e-5)
