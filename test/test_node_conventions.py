"""perception_node and the ROS conventions around its outputs: CameraInfo binning/ROI, the
image_transport compressed formats (read back by independent decoders), /diagnostics that
recovers, backend fallback on /rosout, and the shipped parameter file under a namespace."""

from __future__ import annotations

import contextlib
import io
import struct
import time

import pytest

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip("rclpy")

import numpy as np  # noqa: E402
from PIL import Image as PILImage  # noqa: E402
from ros_node_harness import (  # noqa: E402
    NodeHarness,
    camera_info_msg,
    export_tiny_model,
    image_msg,
)

from joint_perception.image_codec import decode_image  # noqa: E402
from joint_perception.pointcloud import unpack  # noqa: E402
from joint_perception.ros.diagnostics import status_values  # noqa: E402
from joint_perception.ros.parameters import load_yaml_parameters  # noqa: E402
from joint_perception.runtime.factory import create_backend  # noqa: E402
from joint_perception.runtime.processing import Pipeline  # noqa: E402

STAMP = 1_700_000_000_000_000_000
FULL_K = np.array([[200.0, 0, 161.0], [0, 190.0, 118.0], [0, 0, 1]])  # a 320x240 calibration
RGB = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return export_tiny_model(tmp_path_factory.mktemp("model"))


def _array(msg):
    return decode_image(msg.encoding, msg.height, msg.width, msg.step, msg.data, msg.is_bigendian)


def _cloud(msg):
    return unpack(
        msg.data, msg.fields, msg.point_step, msg.height, msg.width, msg.row_step, msg.is_bigendian
    )


def _binned(binning=0, roi=None):
    """A CameraInfo calibrated at 320x240 describing a 160x120 image (binning 2, or an ROI)."""
    info = camera_info_msg(FULL_K, 240, 320, STAMP)
    info.binning_x = info.binning_y = binning
    if roi is not None:
        info.roi.x_offset, info.roi.y_offset, info.roi.width, info.roi.height = roi
    return info


@pytest.mark.parametrize(
    ("binning", "roi", "K_image"),
    [
        # image_geometry: fx' = fx / b, cx' = (cx - x_offset) / b
        (2, None, [[100.0, 0, 80.5], [0, 95.0, 59.0], [0, 0, 1]]),
        (0, (100, 60, 160, 120), [[200.0, 0, 61.0], [0, 190.0, 58.0], [0, 0, 1]]),
    ],
    ids=["binning2", "roi"],
)
def test_binning_and_roi_give_the_k_of_the_published_image(model_dir, binning, roi, K_image):
    K_image = np.array(K_image)
    outputs = ("points", "depth/image", "depth/camera_info", "normals/image")
    h = NodeHarness(model_dir, {"min_depth": 0.01, "max_depth": 1000.0}, outputs=outputs)
    try:
        h.send(image_msg(RGB, STAMP), _binned(binning, roi))
        out = h.wait_outputs(STAMP)
        warnings = h.node.stats.snapshot()["warnings"]
    finally:
        h.close()
    assert "camera_info_size_mismatch" not in warnings  # the CameraInfo describes this image
    info = out["depth/camera_info"]
    assert (info.height, info.width, info.binning_x, info.binning_y) == (120, 160, 0, 0)
    np.testing.assert_allclose(np.reshape(info.k, (3, 3)), K_image, rtol=1e-12)

    depth = _array(out["depth/image"])
    pts = _cloud(out["points"])
    ok = np.isfinite(depth)
    assert ok.mean() > 0.9
    v, u = np.nonzero(ok)
    z = depth[ok]
    # x = (u - cx) z / fx with the K of the published image (not scaled twice)
    np.testing.assert_allclose(pts["x"][ok], (u - K_image[0, 2]) * z / K_image[0, 0], rtol=1e-5)
    np.testing.assert_allclose(pts["y"][ok], (v - K_image[1, 2]) * z / K_image[1, 1], rtol=1e-5)

    # normals equal the pipeline's with that K (they are oriented by the rays of K)
    backend = create_backend(model_dir, backend="onnxruntime")
    meta = backend.metadata
    import dataclasses

    pipeline = Pipeline(backend, dataclasses.replace(meta, min_depth=0.01, max_depth=1000.0))
    expected = pipeline.run(RGB, K_image, want={"normals", "depth"})
    np.testing.assert_allclose(_array(out["normals/image"]), expected.normals, atol=1e-5)
    np.testing.assert_allclose(depth, expected.depth, rtol=1e-6)


def _pil(data) -> np.ndarray:
    return np.array(PILImage.open(io.BytesIO(bytes(data))))


def test_compressed_outputs_follow_image_transport(model_dir):
    topics = (
        "depth/image",
        "depth/image/compressedDepth",
        "segmentation/labels",
        "segmentation/labels/compressed",
        "segmentation/color",
        "segmentation/color/compressed",
    )
    h = NodeHarness(model_dir, {"min_depth": 0.3, "max_depth": 8.0}, outputs=topics)
    try:
        K = np.array([[100.0, 0, 79.5], [0, 100.0, 59.5], [0, 0, 1]])
        h.send(image_msg(RGB, STAMP), camera_info_msg(K, 120, 160, STAMP))
        out = h.wait_outputs(STAMP)
    finally:
        h.close()
    for topic in topics:
        assert out[topic].header.frame_id == out["depth/image"].header.frame_id

    labels = _array(out["segmentation/labels"])
    msg = out["segmentation/labels/compressed"]
    assert msg.format == "mono8; png compressed "
    np.testing.assert_array_equal(_pil(msg.data), labels)  # lossless

    color = _array(out["segmentation/color"])
    msg = out["segmentation/color/compressed"]
    assert msg.format == "rgb8; jpeg compressed bgr8"
    assert np.abs(_pil(msg.data).astype(int) - color).mean() < 4.0  # JPEG q90

    depth = _array(out["depth/image"])
    msg = out["depth/image/compressedDepth"]
    assert msg.format == "32FC1; compressedDepth png"
    data = bytes(msg.data)
    fmt, a, b = struct.unpack("<iff", data[:12])  # compressed_depth_image_transport's header
    assert fmt == 0 and a == pytest.approx(100.0 * 101.0)
    assert b == pytest.approx(1.0 - a / 8.0)  # depth_max = the published max_depth
    q = _pil(data[12:]).astype(np.float64)
    with np.errstate(divide="ignore"):
        decoded = np.where(q != 0, a / (q - b), np.nan)
    np.testing.assert_array_equal(np.isfinite(decoded), np.isfinite(depth))
    ok = np.isfinite(depth)
    assert np.all(np.abs(decoded[ok] - depth[ok]) <= depth[ok] ** 2 / a + 1e-6)


def test_compressed_outputs_are_computed_only_when_subscribed(model_dir):
    h = NodeHarness(model_dir, outputs=("depth/image",))
    calls = []
    for name in ("depth/image/compressedDepth", "segmentation/color/compressed"):
        build = h.node._builders[name]
        h.node._builders[name] = lambda f, name=name, build=build: calls.append(name) or build(f)
    try:
        K = np.array([[100.0, 0, 79.5], [0, 100.0, 59.5], [0, 0, 1]])
        h.send(image_msg(RGB, STAMP), camera_info_msg(K, 120, 160, STAMP))
        h.wait_outputs(STAMP)
        assert h.node.wanted_outputs() == {"depth"} and calls == []
    finally:
        h.close()


def _levels(h):
    return [(d.status[0].level, status_values(d.status[0])) for d in list(h.diagnostics)]


def test_diagnostics_warn_after_a_skip_and_recover_once_frames_flow(model_dir):
    h = NodeHarness(
        model_dir,
        {"diagnostics_window_s": 1.0, "diagnostics_period_s": 0.1},
        outputs=("depth/image",),
    )
    K = np.array([[100.0, 0, 79.5], [0, 100.0, 59.5], [0, 0, 1]])
    try:
        bad = image_msg(RGB, STAMP)
        bad.encoding = "bayer_rggb8"
        h.send(bad, camera_info_msg(K, 120, 160, STAMP))
        h.wait_for(
            lambda: any(lv == b"\x01" and v.get("frames_skipped") == "1" for lv, v in _levels(h)),
            10,
            "WARN after the skipped frame",
        )
        h.diagnostics.clear()
        stamp = STAMP
        # frames flow (no skip) for more than the window: OK again, totals kept
        deadline = time.monotonic() + 30
        while not any(lv == b"\x00" for lv, _ in _levels(h)):
            assert time.monotonic() < deadline, "diagnostics did not return to OK"
            stamp += 1
            h.send(image_msg(RGB, stamp), camera_info_msg(K, 120, 160, stamp))
            h.wait_outputs(stamp)
        level, values = next((lv, v) for lv, v in _levels(h) if lv == b"\x00")
    finally:
        h.close()
    assert values["frames_skipped"] == "1" and values["skipped_unsupported_encoding"] == "1"
    assert values["frames_skipped_in_window"] == "0" and int(values["frames_processed"]) >= 1


def test_backend_fallback_is_a_warning_on_rosout(model_dir):
    import importlib.util

    import torch
    from rcl_interfaces.msg import Log
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    if importlib.util.find_spec("tensorrt") is not None or torch.cuda.is_available():
        pytest.skip("this machine has TensorRT or CUDA: backend:=tensorrt does not fall back")
    h = NodeHarness(model_dir, {"backend": "tensorrt"}, outputs=("depth/image",), autostart=False)
    logs = []
    try:
        qos = QoSProfile(
            depth=1000,
            reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL,
        )
        h.client.create_subscription(Log, "/rosout", logs.append, qos)
        assert h.node.autostart(), h.node.configure_error
        fqn = h.node.get_fully_qualified_name().lstrip("/").replace("/", ".")
        h.wait_for(
            lambda: any(
                m.level == Log.WARN and m.name == fqn and "'tensorrt' was requested" in m.msg
                for m in list(logs)
            ),
            10,
            "the fallback warning of the node on /rosout",
        )
        assert h.node.backend.name == "onnxruntime"
        # the factory's own record (with the reason) is forwarded too
        assert any(
            "unavailable" in m.msg and "falling back" in m.msg and m.name == fqn for m in logs
        )
    finally:
        h.close()


def test_shipped_params_file_applies_to_a_namespaced_node(repo_root, model_dir, tmp_path):
    """config/perception.yaml (key ``/**``) reaches a node in a namespace; a file generated the
    same way with other values sets them on the perception node under a namespace."""
    from rclpy.parameter import Parameter

    from joint_perception.ros.perception_node import PerceptionNode

    shipped = repo_root / "config" / "perception.yaml"
    expected = load_yaml_parameters(shipped)
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    try:
        node = rclpy.create_node(
            "perception_node",
            namespace="/front_cfg/cam",
            context=ctx,
            cli_args=["--ros-args", "--params-file", str(shipped)],
            automatically_declare_parameters_from_overrides=True,
        )
        got = {n: p.value for n, p in node.get_parameters_by_prefix("").items()}
        node.destroy_node()
        assert {k: got.get(k) for k in expected} == expected  # every value matched the node

        changed = shipped.read_text()
        for old, new in (
            ("points_decimation: 1", "points_decimation: 3"),
            ("publish_confidence: false", "publish_confidence: true"),
            ("warn_throttle_s: 5.0", "warn_throttle_s: 7.5"),
        ):
            assert old in changed
            changed = changed.replace(old, new)
        params = tmp_path / "params.yaml"
        params.write_text(changed)
        node = PerceptionNode(
            context=ctx,
            namespace="/front_cfg",
            cli_args=["--ros-args", "--params-file", str(params)],
            parameter_overrides=[
                Parameter("model", value=str(model_dir)),
                Parameter("backend", value="onnxruntime"),
            ],
        )
        try:
            assert node.autostart(), node.configure_error
            assert node.params["points_decimation"] == 3 and node.params["warn_throttle_s"] == 7.5
            assert "confidence/image" in node.publishers_by_topic
        finally:
            node.close()
            node.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)


def test_depth_outside_the_range_has_rep117_values(model_dir):
    """REP 117/118 on the wire: -Inf nearer than min_depth, +Inf beyond max_depth; the cloud
    has NaN points there, and compressedDepth (which has no infinities) decodes both as NaN."""
    import dataclasses

    K = np.array([[100.0, 0, 79.5], [0, 100.0, 59.5], [0, 0, 1]])
    backend = create_backend(model_dir, backend="onnxruntime")
    wide = dataclasses.replace(backend.metadata, min_depth=1e-3, max_depth=1e4)
    reference = Pipeline(backend, wide).run(RGB, K, want={"depth"}).depth
    lo, hi = (float(q) for q in np.quantile(reference, [0.3, 0.7], method="nearest"))
    topics = ("depth/image", "depth/image/compressedDepth", "points")
    h = NodeHarness(model_dir, {"min_depth": lo, "max_depth": hi}, outputs=topics)
    try:
        h.send(image_msg(RGB, STAMP), camera_info_msg(K, 120, 160, STAMP))
        out = h.wait_outputs(STAMP)
    finally:
        h.close()
    depth = _array(out["depth/image"])
    near, far = reference < lo, reference > hi
    assert near.any() and far.any()
    assert np.all(depth[near] == -np.inf) and np.all(depth[far] == np.inf)
    inside = ~near & ~far
    np.testing.assert_allclose(depth[inside], reference[inside], rtol=1e-6)
    pts = _cloud(out["points"])
    assert np.isnan(pts["z"][near | far]).all() and np.isfinite(pts["z"][inside]).all()
    data = bytes(out["depth/image/compressedDepth"].data)
    q = _pil(data[12:]).astype(np.float64)
    assert np.all(q[near | far] == 0)  # the transport's "no depth": NaN after decoding
    assert np.all(q[inside] != 0)  # in range (<= depth_max = max_depth): a value


def test_camera_is_subscribed_only_while_an_output_has_a_subscriber(model_dir):
    """Publisher matched events drive the camera subscription (as depth_image_proc does); a
    frame already queued when the last subscriber left is not even decoded."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    K = np.array([[100.0, 0, 79.5], [0, 100.0, 59.5], [0, 0, 1]])
    h = NodeHarness(model_dir, outputs=("depth/image",))
    decoded = []
    decode = h.node._decode
    h.node._decode = lambda msg: decoded.append(msg) or decode(msg)
    try:
        h.wait_for(lambda: h.node.camera_subscribed, 10.0, "camera subscribed (output matched)")
        for sub in list(h.subs):
            h.client.destroy_subscription(sub)
        h.wait_for(lambda: h.pub_image.get_subscription_count() == 0, 5.0, "camera unsubscribed")
        assert not h.node.camera_subscribed and h.pub_info.get_subscription_count() == 0

        # the check before decoding: nobody listens, so the frame is counted idle, not decoded
        info = camera_info_msg(K, 120, 160, STAMP)
        assert h.node.process(image_msg(RGB, STAMP), info, time.monotonic()) is False
        assert decoded == [] and h.node.stats.snapshot()["frames_idle"] == 1

        # a subscriber comes back: the camera is subscribed again and frames flow
        got = []
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        h.client.create_subscription(Image, "depth/image", got.append, reliable)
        h.wait_for(lambda: h.pub_image.get_subscription_count() > 0, 5.0, "camera resubscribed")
        h.wait_for(lambda: h.pub_info.get_subscription_count() > 0, 5.0, "camera_info too")
        h.send(image_msg(RGB, STAMP + 1), camera_info_msg(K, 120, 160, STAMP + 1))
        h.wait_for(lambda: bool(got), 20.0, "depth after resubscribing")
        assert len(decoded) == 1
    finally:
        h.close()


@contextlib.contextmanager
def _configured_nodes_on_a_recording_pool(model_dir, name: str, param_sets):
    """Nodes configured one after the other on one :class:`BackendPool` whose factory records
    ``(backend, options)`` of every backend it creates (then builds an ONNX Runtime one).
    Yields ``(calls, pool)``; the nodes and their context are torn down after."""
    from rclpy.parameter import Parameter

    from joint_perception.ros.perception_node import SUCCESS, PerceptionNode
    from joint_perception.runtime.shared import BackendPool

    calls = []

    def create(path, backend, device, **options):
        calls.append((backend, options))
        return create_backend(path, backend="onnxruntime")

    pool = BackendPool(create=create)
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    nodes = []
    try:
        for i, params in enumerate(param_sets):
            nodes.append(
                PerceptionNode(
                    context=ctx,
                    namespace=f"/{name}_{i}",
                    pool=pool,
                    parameter_overrides=[
                        Parameter("model", value=str(model_dir)),
                        *(Parameter(k, value=v) for k, v in params.items()),
                    ],
                )
            )
            assert nodes[-1].trigger_configure() == SUCCESS, nodes[-1].configure_error
        yield calls, pool
    finally:
        for node in nodes:
            node.close()
            node.destroy_node()
        rclpy.shutdown(context=ctx)


@pytest.mark.parametrize("precision", ["int8", "best"])
def test_precision_parameter_selects_the_engine_the_backend_loads(model_dir, precision):
    """The node's ``precision`` and ``latency_target_ms`` reach the backend factory (the
    TensorRT backend's engine choice, runtime/engine_select.py; other backends ignore them),
    and nodes with another precision do not share a backend."""
    other = "fp32" if precision != "fp32" else "int8"
    param_sets = [
        {"backend": "tensorrt", "precision": prec, "latency_target_ms": 8.0}
        for prec in (precision, precision, other)
    ]
    with _configured_nodes_on_a_recording_pool(model_dir, "precision_test", param_sets) as (
        calls,
        pool,
    ):
        assert [c[0] for c in calls] == ["tensorrt", "tensorrt"]  # the 2nd node shared the 1st
        assert calls[0][1]["precision"] == precision
        assert calls[0][1]["latency_target_ms"] == 8.0
        assert calls[1][1]["precision"] != precision
        assert len(pool.backends()) == 2


def test_threading_parameters_reach_the_backend_and_split_the_pool(model_dir):
    """``intra_op_threads`` / ``intra_op_spinning`` reach the backend factory (issue 13), and
    they are part of the shared backend's key: nodes with other threading options get their own
    backend, nodes with the same ones share."""
    param_sets = [
        {"backend": "onnxruntime", "intra_op_threads": threads, "intra_op_spinning": spin}
        for threads, spin in ((1, False), (1, False), (2, True))
    ]
    with _configured_nodes_on_a_recording_pool(model_dir, "threads_test", param_sets) as (
        calls,
        pool,
    ):
        assert [(c[1]["intra_op_threads"], c[1]["intra_op_spinning"]) for c in calls] == [
            (1, False),
            (2, True),
        ]
        assert sorted(users for _, users in pool.backends()) == [1, 2]
