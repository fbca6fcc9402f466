"""Several cameras in one process (``perception_node --cameras``): one node per camera namespace,
each with its own topics, CameraInfo and diagnostics, all on ONE backend (one model in memory)."""

from __future__ import annotations

import itertools
import threading
import time

import pytest

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip("rclpy")

import numpy as np  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from ros_node_harness import camera_info_msg, export_tiny_model, image_msg  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402

from joint_perception.ros.diagnostics import status_values  # noqa: E402
from joint_perception.ros.perception_node import camera_namespaces, make_nodes  # noqa: E402
from joint_perception.runtime.shared import BackendPool  # noqa: E402

_run = itertools.count()
STAMP = 1_700_000_000_000_000_000


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return export_tiny_model(tmp_path_factory.mktemp("model"))


def _wait(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s: {what}")
        time.sleep(0.02)


def test_camera_namespaces():
    assert camera_namespaces(["front", "/abs/rear"], "/robot") == ["/robot/front", "/abs/rear"]
    assert camera_namespaces(["a/b"], "/") == ["/a/b"]
    with pytest.raises(ValueError, match="not a valid ROS namespace"):
        camera_namespaces(["9cam"])
    with pytest.raises(ValueError, match="same namespace"):
        camera_namespaces(["a", "/a"])


@pytest.mark.parametrize("n_cameras", [2, 4])
def test_cameras_share_one_backend_with_their_own_topics(model_dir, n_cameras):
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    pool = BackendPool()
    base = f"/mc_test_{next(_run)}"
    names = [f"{base}/cam{i}" for i in range(n_cameras)]
    nodes = make_nodes(
        names,
        pool=pool,
        context=ctx,
        parameter_overrides=[
            Parameter("model", value=str(model_dir)),
            Parameter("backend", value="onnxruntime"),
            Parameter("diagnostics_period_s", value=0.2),
        ],
    )
    client = rclpy.create_node("mc_client", context=ctx, namespace=base)
    executor = SingleThreadedExecutor(context=ctx)
    got: dict[str, list] = {ns: [] for ns in names}
    infos: dict[str, list] = {ns: [] for ns in names}
    diags: dict[str, dict] = {}
    lock = threading.Lock()
    try:
        assert [n.get_fully_qualified_name() for n in nodes] == [
            f"{ns}/perception_node" for ns in names
        ]
        for node in nodes:
            assert node.autostart(), node.configure_error
        # ONE model in memory: every node holds a handle on the same backend
        assert len(pool.backends()) == 1 and pool.backends()[0][1] == n_cameras
        assert len({id(node.backend.inner) for node in nodes}) == 1

        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        pubs = {}
        for ns in names:
            client.create_subscription(
                Image, f"{ns}/depth/image", lambda m, ns=ns: got[ns].append(m), reliable
            )
            client.create_subscription(
                CameraInfo, f"{ns}/depth/camera_info", lambda m, ns=ns: infos[ns].append(m), 10
            )
            pubs[ns] = (
                client.create_publisher(Image, f"{ns}/image", reliable),
                client.create_publisher(CameraInfo, f"{ns}/camera_info", reliable),
            )

        def on_diag(msg):
            for status in msg.status:
                with lock:
                    diags[status.name] = status_values(status)

        client.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
        for node in nodes:
            executor.add_node(node)
        executor.add_node(client)
        spin = threading.Thread(target=executor.spin, daemon=True)
        spin.start()
        _wait(
            lambda: all(p.get_subscription_count() > 0 for p, _ in pubs.values()),
            10,
            "every camera node subscribed its own camera",
        )
        # each camera: its own image size and focal length
        for i, ns in enumerate(names):
            h, w = 60 + 12 * i, 80 + 16 * i
            K = np.array(
                [[50.0 + 10 * i, 0, (w - 1) / 2], [0, 50.0 + 10 * i, (h - 1) / 2], [0, 0, 1]]
            )
            rgb = np.random.default_rng(i).integers(0, 256, (h, w, 3), dtype=np.uint8)
            image_pub, info_pub = pubs[ns]
            info_pub.publish(camera_info_msg(K, h, w, STAMP + i))
            time.sleep(0.05)
            image_pub.publish(image_msg(rgb, STAMP + i))
        _wait(lambda: all(got[ns] and infos[ns] for ns in names), 30, "outputs of every camera")
        for i, ns in enumerate(names):
            depth, info = got[ns][0], infos[ns][0]
            assert (depth.height, depth.width) == (60 + 12 * i, 80 + 16 * i)
            assert depth.header.stamp.nanosec == (STAMP + i) % 10**9
            assert info.k[0] == pytest.approx(50.0 + 10 * i)
        _wait(
            lambda: all(
                diags.get(f"joint_perception: {ns}/perception_node", {}).get("frames_processed")
                == "1"
                for ns in names
            ),
            10,
            "a diagnostics status per camera",
        )
        for ns in names:
            assert diags[f"joint_perception: {ns}/perception_node"]["backend_users"] == str(
                n_cameras
            )
    finally:
        executor.shutdown()
        for node in nodes:
            node.close()
            node.destroy_node()
        client.destroy_node()
        rclpy.shutdown(context=ctx)
    assert pool.backends() == []  # the last node released the model
