"""Test harness for perception_node tests: a real node plus a client node in one rclpy context.

Not a test module (no ``test_`` prefix): imported by test_node.py / test_node_bad_input.py.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from joint_perception.ros.perception_node import PerceptionNode
from joint_perception.ros.topics import OUTPUT_TOPICS, message_class

# relative output topic -> message class, from the node's topic table
OUTPUT_TYPES = {t.name: message_class(t.msg_type) for t in OUTPUT_TOPICS}
FRAME_ID = "camera_color_optical_frame"
_ns_counter = itertools.count()


def export_tiny_model(out_dir: Path, size=(64, 80)) -> Path:
    """An untrained realtime model exported to ONNX at a small input size (contract tests)."""
    import torch

    from joint_perception.export.onnx_export import export_onnx
    from joint_perception.models import build_model

    torch.manual_seed(0)
    export_onnx(build_model("realtime"), out_dir, input_size=size)
    return out_dir


def nyu_frame(shared_data: Path, index: int = 1):
    """(rgb HxWx3 uint8, K 3x3) of a real NYUv2 test frame."""
    rgb = cv2.cvtColor(
        cv2.imread(str(shared_data / "nyuv2_test" / "rgb" / f"{index:04d}.png")), cv2.COLOR_BGR2RGB
    )
    k = json.loads((shared_data / "nyuv2_test" / "manifest.json").read_text())[
        "intrinsics_rgb_640x480"
    ]
    K = np.array([[k["fx"], 0, k["cx"]], [0, k["fy"], k["cy"]], [0, 0, 1]], dtype=np.float64)
    return rgb, K


def image_msg(rgb: np.ndarray, stamp_ns: int, encoding: str = "rgb8", frame_id: str = FRAME_ID):
    msg = Image()
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    msg.header.frame_id = frame_id
    msg.height, msg.width = rgb.shape[:2]
    msg.encoding = encoding
    msg.step = rgb.shape[1] * (rgb.shape[2] if rgb.ndim == 3 else 1) * rgb.itemsize
    msg.data = rgb.tobytes()
    return msg


def camera_info_msg(
    K, height: int, width: int, stamp_ns: int, d=(0.0,) * 5, frame_id: str = FRAME_ID
):
    msg = CameraInfo()
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    msg.header.frame_id = frame_id
    msg.height, msg.width = height, width
    msg.distortion_model = "plumb_bob"
    msg.d = [float(x) for x in d]
    msg.k = [float(x) for x in np.asarray(K, dtype=np.float64).ravel()]
    msg.r = [1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0]
    P = np.zeros((3, 4))
    P[:, :3] = K
    msg.p = [float(x) for x in P.ravel()]
    return msg


class NodeHarness:
    """Runs a :class:`PerceptionNode` and a client node (publishers + recording subscribers).

    Args:
        model_dir: exported model.
        params: parameter overrides for the node.
        outputs: relative output topics the client subscribes to.
        autostart: configure and activate the (lifecycle) node before spinning and wait until
            the client's topics matched; False leaves it unconfigured.
    """

    def __init__(
        self,
        model_dir: Path,
        params: dict | None = None,
        outputs=tuple(OUTPUT_TYPES),
        autostart: bool = True,
    ):
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx)
        self.ns = f"/jp_test_{next(_ns_counter)}"
        overrides = {
            "model": str(model_dir),
            "backend": "onnxruntime",
            "diagnostics_period_s": 0.2,
            **(params or {}),
        }
        self.node = PerceptionNode(
            context=self.ctx,
            namespace=self.ns,
            parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()],
        )
        if autostart and not self.node.autostart():
            err = self.node.configure_error
            self.node.destroy_node()
            rclpy.shutdown(context=self.ctx)
            raise RuntimeError(f"perception node did not start: {err}")
        self.client = Node("harness", context=self.ctx, namespace=self.ns)
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.pub_image = self.client.create_publisher(Image, "image", reliable)
        self.pub_compressed = self.client.create_publisher(
            CompressedImage, "image/compressed", reliable
        )
        self.pub_info = self.client.create_publisher(CameraInfo, "camera_info", reliable)
        self.received: dict[str, list] = {t: [] for t in outputs}
        self.diagnostics: list = []
        self._lock = threading.Lock()
        self.subs = []
        for topic in outputs:
            self.subs.append(
                self.client.create_subscription(
                    OUTPUT_TYPES[topic], topic, self._recorder(topic), reliable
                )
            )
        self.client.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        self.executor = SingleThreadedExecutor(context=self.ctx)
        self.executor.add_node(self.node)
        self.executor.add_node(self.client)
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()
        if autostart:
            self.wait_for(self._matched, 10.0, "node and client topics did not match")

    def _matched(self) -> bool:
        pub_in = self.pub_compressed if self.node.compressed else self.pub_image
        return (
            pub_in.get_subscription_count() > 0
            and self.pub_info.get_subscription_count() > 0
            and all(s.get_publisher_count() > 0 for s in self.subs)
        )

    def _recorder(self, topic):
        def cb(msg):
            with self._lock:
                self.received[topic].append(msg)

        return cb

    def _on_diag(self, msg):
        with self._lock:
            self.diagnostics.append(msg)

    @staticmethod
    def wait_for(predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s: {what}")
            time.sleep(0.02)

    def send(self, image, info=None) -> None:
        if info is not None:
            self.pub_info.publish(info)
            time.sleep(0.02)  # camera_info first, as a driver does
        (self.pub_compressed if isinstance(image, CompressedImage) else self.pub_image).publish(
            image
        )

    def wait_outputs(self, stamp_ns: int, topics=None, timeout: float = 20.0) -> dict:
        """The first message on each topic with header stamp ``stamp_ns``."""
        topics = list(topics or self.received)

        def found():
            with self._lock:
                return all(any(_stamp(m) == stamp_ns for m in self.received[t]) for t in topics)

        self.wait_for(found, timeout, f"outputs {topics} for stamp {stamp_ns}")
        with self._lock:
            return {t: next(m for m in self.received[t] if _stamp(m) == stamp_ns) for t in topics}

    def close(self) -> None:
        self.node.close()
        self.executor.shutdown()
        self._thread.join(5)
        self.node.destroy_node()
        self.client.destroy_node()
        rclpy.shutdown(context=self.ctx)


def _stamp(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
